//! `observatoire`: the command line of the SI SIAO analytics warehouse.
//! Commands and flags in English; everything printed is in French.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::NaiveDate;
use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use observatoire::config::FileConfig;
use observatoire::{Error, Result};
use operational::simulator::SimulationConfig;

/// mimalloc instead of the system allocator: the ingest and the compute allocate and free
/// millions of short-lived buffers (Arrow arrays, hash tables, per-row strings) on every
/// thread, where glibc's allocator spent a visible share of the time in page faults and
/// zeroing (BENCHMARKS.md); DataFusion's own command line uses mimalloc for the same reason.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// mimalloc's `mi_option_purge_delay` (mimalloc.h, v2 and v3 alike; the Rust bindings
/// name no constant for it).
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// For a command that ends (everything but the servers): mimalloc keeps the memory freed
/// for the next allocations instead of returning it to the OS 10 ms later, which the
/// compute paid for in page faults and page zeroing at every indicator (national lake:
/// 130.3 s → 103.6 s against DuckDB's 88 s, BENCHMARKS.md). The process's resident size
/// then stays at its peak until it exits, which a server running for months must not do.
fn keep_freed_memory() {
    // SAFETY: sets one option's value; mimalloc reads `purge_delay` each time it would
    // purge, so a change after start-up applies to every later free.
    unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, -1) };
}

#[derive(Parser)]
#[command(
    name = "observatoire",
    version,
    about = "Entrepôt d'analyse et d'observation sociale du SI SIAO",
    long_about = "Copie les données opérationnelles du SI SIAO dans un lac Delta pseudonymisé, calcule les indicateurs nationaux et les sert (API JSON, tableau de bord, SQL)."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Démonstration complète : simulation → ingestion → calcul → tableau de bord.
    Demo {
        /// Dossier des données (source SQLite, clé, lac).
        #[arg(long, env = "OBSERVATOIRE_DATA")]
        data: Option<PathBuf>,
        /// Adresse d'écoute du serveur.
        #[arg(long, env = "OBSERVATOIRE_LISTEN")]
        listen: Option<String>,
        /// Seuil du secret statistique (1 : désactivé).
        #[arg(long, env = "OBSERVATOIRE_SECRECY_THRESHOLD")]
        secrecy_threshold: Option<i64>,
    },
    /// Simule l'activité des SIAO dans une base opérationnelle (vide), ou la prolonge.
    Simulate {
        /// URL de la base : sqlite://CHEMIN ou postgres://…
        #[arg(long, env = "OBSERVATOIRE_SOURCE")]
        source: String,
        /// Départements (codes COG séparés par des virgules) ou « all ».
        #[arg(long, default_value = "75,93,13,23")]
        departments: String,
        /// Premier jour simulé (AAAA-MM-JJ).
        #[arg(long, default_value = "2025-01-01")]
        from: String,
        /// Premier jour non simulé (exclu).
        #[arg(long, default_value = "2026-01-01")]
        to: String,
        /// Taille : 1.0 donne l'ordre de grandeur du système national réel.
        #[arg(long, default_value_t = operational::simulator::DEMO_SCALE)]
        scale: f64,
        #[arg(long, default_value_t = 42)]
        seed: u64,
        /// Taux de défauts injectés, pour chaque règle de SOURCE_SCHEMA.md (0 : aucun).
        #[arg(long, default_value_t = 0.0)]
        defects: f64,
        /// Fichier CSV (table,id,rule) listant chaque défaut injecté.
        #[arg(long)]
        manifest: Option<PathBuf>,
        /// Efface d'abord les données d'une base non vide.
        #[arg(long)]
        replace: bool,
        /// Prolonge une base déjà simulée jusqu'à --to (mêmes graine, départements,
        /// échelle et taux de défauts).
        #[arg(long = "continue", conflicts_with = "replace")]
        continue_: bool,
    },
    /// Lit la base opérationnelle (ce qui a changé depuis la dernière ingestion, ou tout avec --full) et met à jour la zone détail du lac (pseudonymisée).
    Ingest {
        #[arg(long, env = "OBSERVATOIRE_SOURCE")]
        source: Option<String>,
        #[arg(long, env = "OBSERVATOIRE_DATA")]
        data: Option<PathBuf>,
        /// Accepte une ingestion qui supprime plus que la part maximale d'une table
        /// (max_delete_share, 5 % par défaut).
        #[arg(long)]
        allow_mass_delete: bool,
        /// Relit toute la source et réécrit chaque table de la zone détail en entier
        /// (sinon : lecture de ce qui a changé depuis les filigranes de la dernière
        /// ingestion).
        #[arg(long)]
        full: bool,
        /// Connexions PostgreSQL lisant en parallèle (par défaut : le nombre de cœurs,
        /// de 2 à 6).
        #[arg(long)]
        workers: Option<usize>,
    },
    /// Calcule les indicateurs et publie une nouvelle version de la base statistique ;
    /// reconstruit la zone analyste (k-anonyme) quand les données comptent un mois
    /// complet de plus qu'elle, après une purge de ménages à la source, ou sur demande.
    Compute {
        #[arg(long, env = "OBSERVATOIRE_DATA")]
        data: Option<PathBuf>,
        #[arg(long, env = "OBSERVATOIRE_SECRECY_THRESHOLD")]
        secrecy_threshold: Option<i64>,
        /// k de la zone analyste : chaque combinaison de quasi-identifiants y réunit au
        /// moins k enregistrements (11 par défaut).
        #[arg(long, env = "OBSERVATOIRE_ANALYST_K")]
        analyst_k: Option<i64>,
        /// Recalcule toutes les périodes ouvertes, même celles dont les données n'ont pas
        /// changé depuis la publication précédente (par défaut : calcul incrémental).
        #[arg(long)]
        full: bool,
        /// Reconstruit la zone analyste avec cette publication (par défaut : une fois par
        /// mois de données complet, et après une purge de ménages à la source ; deux
        /// zones publiées à un jour d'écart se recouperaient sur les seuls
        /// enregistrements de ce jour).
        #[arg(long)]
        analyst: bool,
    },
    /// Affiche le rapport de qualité des données de la dernière ingestion, par SIAO
    /// (et par mois avec --siao).
    Quality {
        #[arg(long, env = "OBSERVATOIRE_DATA")]
        data: Option<PathBuf>,
        /// Un seul SIAO (code du département), détaillé par mois.
        #[arg(long)]
        siao: Option<String>,
    },
    /// Mesure l'anonymat de la zone analyste telle qu'elle est stockée : k atteint,
    /// enregistrements supprimés, risques « procureur » (ARX).
    AnonymityReport {
        #[arg(long, env = "OBSERVATOIRE_DATA")]
        data: Option<PathBuf>,
    },
    /// Publications de la base statistique (chacune relisible : ?version=N).
    Release {
        #[command(subcommand)]
        action: ReleaseCommand,
    },
    /// Clôture et révision des périodes publiées.
    Period {
        #[command(subcommand)]
        action: PeriodCommand,
    },
    /// Bancs d'essai (à lancer sur une grosse base, hors CI).
    Bench {
        #[command(subcommand)]
        what: BenchCommand,
    },
    /// Gestion de la clé de pseudonymisation.
    Key {
        #[command(subcommand)]
        action: KeyCommand,
    },
    /// Comptes des utilisateurs (profils et territoires).
    Users {
        #[command(subcommand)]
        action: UsersCommand,
    },
    /// Jetons d'accès à l'API.
    Tokens {
        #[command(subcommand)]
        action: TokensCommand,
    },
    /// Sert l'API et le tableau de bord.
    Serve {
        #[arg(long, env = "OBSERVATOIRE_DATA")]
        data: Option<PathBuf>,
        #[arg(long, env = "OBSERVATOIRE_LISTEN")]
        listen: Option<String>,
    },
    /// Supprime du disque les fichiers et journaux Delta que seules des versions plus
    /// anciennes que la fenêtre de voyage dans le temps utilisent (droit à l'oubli).
    Vacuum {
        #[arg(long, env = "OBSERVATOIRE_DATA")]
        data: Option<PathBuf>,
        /// Fenêtre de voyage dans le temps, en jours (7 par défaut ; 0 : ne garder que
        /// la version courante).
        #[arg(long, env = "OBSERVATOIRE_TIME_TRAVEL_DAYS")]
        retention_days: Option<i64>,
    },
    /// Exécute une requête SQL (lecture seule) sur le lac et affiche le résultat.
    Sql {
        #[arg(long, env = "OBSERVATOIRE_DATA")]
        data: Option<PathBuf>,
        /// La requête, par exemple "SELECT COUNT(*) FROM demande".
        query: String,
    },
}

#[derive(Subcommand)]
enum ReleaseCommand {
    /// Liste les publications, la plus récente d'abord.
    List {
        #[arg(long, env = "OBSERVATOIRE_DATA")]
        data: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum PeriodCommand {
    /// Clôture un ou des mois (AAAA-MM) : la publication qui suit (lancée aussitôt) les
    /// publie DEFINITIF, avec toutes les périodes dont tous les jours sont dans des mois
    /// clôturés ; elles ne sont plus jamais recalculées.
    Close {
        /// Mois à clôturer, par exemple 2025-03 (plusieurs possibles).
        #[arg(required = true)]
        months: Vec<String>,
        #[arg(long, env = "OBSERVATOIRE_DATA")]
        data: Option<PathBuf>,
        #[arg(long, env = "OBSERVATOIRE_SECRECY_THRESHOLD")]
        secrecy_threshold: Option<i64>,
    },
    /// Recalcule les périodes clôturées contenant un mois, comme une révision motivée
    /// (nouvelle publication ; l'ancienne reste lisible).
    Revise {
        /// Le mois clôturé à réviser, par exemple 2025-03.
        month: String,
        /// Le motif de la révision (enregistré avec chaque valeur révisée).
        #[arg(long)]
        reason: String,
        #[arg(long, env = "OBSERVATOIRE_DATA")]
        data: Option<PathBuf>,
        #[arg(long, env = "OBSERVATOIRE_SECRECY_THRESHOLD")]
        secrecy_threshold: Option<i64>,
    },
    /// Liste les mois clôturés.
    List {
        #[arg(long, env = "OBSERVATOIRE_DATA")]
        data: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum BenchCommand {
    /// Ingestion complète contre son pair (connectorx + pyarrow écrivant du Parquet
    /// des mêmes colonnes) et sa limite (le même COPY binaire jeté dans /dev/null),
    /// sur la même base PostgreSQL, dans la même exécution.
    Ingest {
        /// Base PostgreSQL lue par les trois.
        #[arg(long, env = "OBSERVATOIRE_SOURCE")]
        source: String,
        /// Dossier de travail (vidé d'abord).
        #[arg(long, default_value = "/var/tmp/observatoire-banc-ingestion")]
        work_dir: PathBuf,
        /// Connexions lisant en parallèle (les mêmes pour les trois).
        #[arg(long)]
        workers: Option<usize>,
        /// Manches : le meilleur temps de chacun est retenu.
        #[arg(long, default_value_t = 2)]
        rounds: usize,
        /// Interpréteur Python du pair (connectorx et pyarrow installés).
        #[arg(long, default_value = "python3")]
        python: String,
    },
    /// Ingestion complète d'une base simulée, puis « simulate --continue » d'un jour (ou
    /// --days), puis ingestion incrémentale : le rapport des deux temps. La base est
    /// prolongée pour de bon.
    Incremental {
        /// Base source simulée (SQLite ou PostgreSQL), prolongée par le banc.
        #[arg(long, env = "OBSERVATOIRE_SOURCE")]
        source: String,
        /// Dossier de travail (vidé d'abord).
        #[arg(long, default_value = "/var/tmp/observatoire-banc-incremental")]
        work_dir: PathBuf,
        /// Jours simulés de plus avant l'ingestion incrémentale.
        #[arg(long, default_value_t = 1)]
        days: i64,
    },
    /// Charge de l'API : wrk (paquet Debian) sur la route des valeurs puis sur un fichier
    /// statique du même serveur, dans la même exécution ; débits, latences p50/p99,
    /// erreurs et rapport des débits.
    Api {
        /// Dossier des données servies (un lac publié).
        #[arg(long, env = "OBSERVATOIRE_DATA")]
        data: Option<PathBuf>,
        /// Chemin mesuré (route des valeurs).
        #[arg(
            long,
            default_value = "/api/v1/indicateurs/taux_dnp_115/valeurs?territoire=D93&pas=MOIS"
        )]
        path: String,
        /// Département du compte départemental qui lit.
        #[arg(long, default_value = "93")]
        departement: String,
        /// Connexions simultanées de wrk.
        #[arg(long, default_value_t = 64)]
        connections: usize,
        /// Durée de chaque mesure, en secondes.
        #[arg(long, default_value_t = 60)]
        duration: u64,
    },
    /// Calcul incrémental contre calcul complet : sur une base simulée, ingestion et
    /// première publication, « simulate --continue » d'un jour (ou --days) et ingestion
    /// incrémentale, puis le calcul incrémental et un calcul complet du même lac (les deux
    /// chronométrés), dont les chiffres courants sont comparés cellule par cellule. La
    /// base est prolongée pour de bon.
    ComputeIncremental {
        /// Base source simulée (SQLite ou PostgreSQL), prolongée par le banc.
        #[arg(long, env = "OBSERVATOIRE_SOURCE")]
        source: String,
        /// Dossier de travail (vidé d'abord).
        #[arg(long, default_value = "/var/tmp/observatoire-banc-calcul-incremental")]
        work_dir: PathBuf,
        /// Jours simulés de plus avant l'ingestion incrémentale.
        #[arg(long, default_value_t = 1)]
        days: i64,
        /// Seuil du secret statistique des deux calculs.
        #[arg(long, default_value_t = 11)]
        secrecy_threshold: i64,
    },
    /// Calcul de tous les indicateurs du catalogue contre son pair : DuckDB (paquet
    /// Python) exécutant les mêmes définitions SQL sur les mêmes fichiers Parquet de la
    /// zone détail, dans la même exécution ; puis comparaison des valeurs cellule par
    /// cellule.
    Compute {
        /// Dossier des données dont la zone détail est calculée.
        #[arg(long, env = "OBSERVATOIRE_DATA")]
        data: Option<PathBuf>,
        /// Dossier de travail (vidé d'abord).
        #[arg(long, default_value = "/var/tmp/observatoire-banc-calcul")]
        work_dir: PathBuf,
        /// Manches : le meilleur temps de chacun est retenu.
        #[arg(long, default_value_t = 2)]
        rounds: usize,
        /// Seuil du secret primaire appliqué par les deux (le secret secondaire est hors banc).
        #[arg(long, default_value_t = 11)]
        secrecy_threshold: i64,
        /// Interpréteur Python du pair (duckdb installé).
        #[arg(long, default_value = "python3")]
        python: String,
    },
}

#[derive(Subcommand)]
enum UsersCommand {
    /// Crée un compte local (le mot de passe est lu dans OBSERVATOIRE_PASSWORD ou
    /// demandé ; sans --password, le compte ne se connecte que par jeton ou par la
    /// fédération d'identité).
    Add {
        #[arg(long, env = "OBSERVATOIRE_DATA")]
        data: Option<PathBuf>,
        /// Identifiant (a-z, 0-9, « . », « _ », « - », « @ »).
        login: String,
        /// ADMINISTRATEUR_NATIONAL, ADMINISTRATEUR_REGIONAL, ADMINISTRATEUR_DEPARTEMENTAL,
        /// ADMINISTRATEUR_SIAO, ANALYSTE ou STATISTICIEN_NATIONAL.
        #[arg(long)]
        profile: String,
        /// FR, R11, D93 ou D75,D93.
        #[arg(long)]
        territory: String,
        /// Donne un mot de passe au compte (lu dans OBSERVATOIRE_PASSWORD).
        #[arg(long)]
        password: bool,
    },
    /// Liste les comptes.
    List {
        #[arg(long, env = "OBSERVATOIRE_DATA")]
        data: Option<PathBuf>,
    },
    /// Désactive un compte (ses jetons et sessions cessent aussitôt de fonctionner).
    Disable {
        #[arg(long, env = "OBSERVATOIRE_DATA")]
        data: Option<PathBuf>,
        login: String,
    },
    /// Réactive un compte.
    Enable {
        #[arg(long, env = "OBSERVATOIRE_DATA")]
        data: Option<PathBuf>,
        login: String,
    },
}

#[derive(Subcommand)]
enum TokensCommand {
    /// Émet un jeton d'accès à l'API pour un compte (affiché une seule fois).
    Create {
        #[arg(long, env = "OBSERVATOIRE_DATA")]
        data: Option<PathBuf>,
        login: String,
        /// Libellé (usage du jeton).
        #[arg(long, default_value = "script")]
        label: String,
        /// Durée de validité en jours (1 à 366).
        #[arg(long, default_value_t = 90)]
        days: i64,
    },
    /// Liste les jetons (jamais leur secret).
    List {
        #[arg(long, env = "OBSERVATOIRE_DATA")]
        data: Option<PathBuf>,
        /// Seulement ceux de ce compte.
        #[arg(long)]
        login: Option<String>,
    },
    /// Révoque un jeton par son identifiant.
    Revoke {
        #[arg(long, env = "OBSERVATOIRE_DATA")]
        data: Option<PathBuf>,
        id: String,
    },
}

#[derive(Subcommand)]
enum KeyCommand {
    /// Crée une nouvelle clé, reconstruit la zone détail avec elle depuis la source et
    /// retire l'ancienne (déplacée dans secrets/retired, ou détruite).
    Rotate {
        #[arg(long, env = "OBSERVATOIRE_SOURCE")]
        source: Option<String>,
        #[arg(long, env = "OBSERVATOIRE_DATA")]
        data: Option<PathBuf>,
        /// Détruit l'ancienne clé dès la rotation faite (sinon : à détruire soi-même).
        #[arg(long)]
        destroy_old_key: bool,
    },
}

fn spinner(message: &str) -> ProgressBar {
    let bar = ProgressBar::new_spinner();
    bar.set_style(
        ProgressStyle::with_template("{spinner} {msg} ({elapsed})").expect("valid template"),
    );
    bar.set_message(message.to_owned());
    bar.enable_steady_tick(Duration::from_millis(120));
    bar
}

/// One bar per source table while it is read: rows so far and rows per second.
struct TableBars {
    multi: MultiProgress,
    bars: Arc<Mutex<BTreeMap<&'static str, ProgressBar>>>,
}

impl TableBars {
    fn new() -> Self {
        Self {
            multi: MultiProgress::new(),
            bars: Arc::default(),
        }
    }

    fn progress(&self) -> ingest::Progress {
        let multi = self.multi.clone();
        let bars = self.bars.clone();
        Arc::new(move |table, rows| {
            let mut bars = bars.lock().expect("progress lock");
            let bar = bars.entry(table).or_insert_with(|| {
                let bar = multi.add(ProgressBar::no_length());
                bar.set_style(
                    ProgressStyle::with_template(
                        "  lecture {prefix:18} {pos:>10} lignes  {per_sec:>16}  ({elapsed})",
                    )
                    .expect("valid template"),
                );
                bar.set_prefix(table);
                bar
            });
            bar.inc(rows as u64);
        })
    }

    fn finish(&self) {
        for bar in self.bars.lock().expect("progress lock").values() {
            bar.finish_and_clear();
        }
    }
}

fn bar(len: u64, message: &str) -> ProgressBar {
    let bar = ProgressBar::new(len);
    bar.set_style(
        ProgressStyle::with_template("{msg:30} [{bar:40}] {pos}/{len} ({elapsed})")
            .expect("valid template")
            .progress_chars("=> "),
    );
    bar.set_message(message.to_owned());
    bar
}

fn parse_date(name: &str, text: &str) -> Result<NaiveDate> {
    NaiveDate::parse_from_str(text, "%Y-%m-%d").map_err(|_| {
        Error::Config(format!(
            "--{name} : date invalide « {text} » (attendu AAAA-MM-JJ)"
        ))
    })
}

fn parse_departments(text: &str) -> Result<Vec<String>> {
    if text == "all" {
        return Ok(operational::territory::departements()
            .map(|d| d.code.to_owned())
            .collect());
    }
    let list: Vec<String> = text
        .split(',')
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .collect();
    for code in &list {
        if operational::departement(code).is_none() {
            return Err(Error::Config(format!(
                "--departments : « {code} » n'est pas un département du COG"
            )));
        }
    }
    Ok(list)
}

fn percent(x: f64) -> String {
    format!("{:.1} %", x * 100.0).replace('.', ",")
}

/// A number with `digits` decimals and a decimal comma, as French readers write it.
fn french_decimal(x: f64, digits: usize) -> String {
    format!("{x:.digits$}").replace('.', ",")
}

fn print_summary(report: &observatoire::SimulationReport, elapsed: Duration) {
    let s = &report.summary;
    let c = &report.config;
    match report.continued_from {
        Some(from) => println!(
            "Simulation prolongée du {from} au {} (exclu) : {} lignes écrites, {} supprimées, en {} s.",
            c.to,
            report.inserted,
            report.deleted,
            french_decimal(elapsed.as_secs_f64(), 1)
        ),
        None => println!(
            "Simulation écrite du {} au {} (exclu), {} département(s), échelle {}, graine {} : {} lignes en {} s.",
            c.from,
            c.to,
            c.departements.len(),
            c.scale.to_string().replace('.', ","),
            c.seed,
            report.inserted,
            french_decimal(elapsed.as_secs_f64(), 1)
        ),
    }
    let rows = |t: &str| s.rows.get(t).copied().unwrap_or(0);
    println!(
        "  personnes {} · ménages {} · demandes {} · séjours {} · orientations {} · évaluations {}",
        rows("personne"),
        rows("menage"),
        rows("demande"),
        rows("prise_en_charge"),
        rows("orientation"),
        rows("evaluation")
    );
    println!(
        "  places installées (dernier jour) {} · places financées {}",
        s.places_installed, s.places_funded
    );
    println!("  demandes par type et statut :");
    for ((ty, statut), n) in &s.requests {
        println!("    {ty:<10} {statut:<12} {n}");
    }
    let mut rates: Vec<(String, f64, u64)> = s
        .dnp
        .iter()
        .filter(|(_, (_, t))| *t > 0)
        .map(|(d, (n, t))| (d.clone(), *n as f64 / *t as f64, *t))
        .collect();
    rates.sort_by(|a, b| b.1.total_cmp(&a.1));
    println!("  taux de DNP 115 par département (demandes décidées) :");
    let shown: Vec<String> = rates
        .iter()
        .map(|(d, r, t)| format!("{d} {} ({t})", percent(*r)))
        .collect();
    for line in shown.chunks(6) {
        println!("    {}", line.join(" · "));
    }
    println!("  compositions des ménages demandeurs au 115 (à leur première demande) :");
    let total: u64 = s.compositions.values().sum();
    for (composition, n) in &s.compositions {
        println!(
            "    {composition:<26} {n:>9} ({})",
            percent(*n as f64 / total.max(1) as f64)
        );
    }
    println!(
        "  vie de l'application : {} ménages purgés, {} personnes fusionnées ({} doublons 115 créés par ces fusions), {} corrections tardives",
        s.purged_households, s.merged_persons, s.merge_doublons, s.corrections
    );
    if c.defects > 0.0 {
        let mut by_rule = std::collections::BTreeMap::new();
        for d in &report.defects {
            *by_rule.entry(d.rule).or_insert(0u64) += 1;
        }
        println!("  défauts injectés (taux {}) :", c.defects);
        for (rule, n) in by_rule {
            println!("    {rule:<26} {n}");
        }
    }
}

/// Prints the summary and writes the defect manifest when asked.
fn report_simulation(
    report: &observatoire::SimulationReport,
    elapsed: Duration,
    manifest: Option<&std::path::Path>,
) -> Result<()> {
    print_summary(report, elapsed);
    if let Some(path) = manifest {
        observatoire::write_manifest(path, &report.defects)?;
        println!(
            "Manifeste des défauts : {} ({} lignes)",
            path.display(),
            report.defects.len()
        );
    }
    Ok(())
}

async fn run_simulate(
    url: &str,
    config: &SimulationConfig,
    replace: bool,
    manifest: Option<&std::path::Path>,
) -> Result<()> {
    let pb = bar(config.departements.len() as u64, "départements simulés");
    let started = std::time::Instant::now();
    let report = observatoire::simulate(url, config, replace, |done, _| {
        pb.set_position(done as u64);
    })
    .await;
    pb.finish_and_clear();
    let report = report?;
    report_simulation(&report, started.elapsed(), manifest)
}

async fn run_continue(url: &str, to: NaiveDate, manifest: Option<&std::path::Path>) -> Result<()> {
    let pb = bar(0, "départements prolongés");
    let started = std::time::Instant::now();
    let report = observatoire::simulate_continue(url, to, |done, total| {
        pb.set_length(total as u64);
        pb.set_position(done as u64);
    })
    .await;
    pb.finish_and_clear();
    let report = report?;
    report_simulation(&report, started.elapsed(), manifest)
}

async fn run_ingest(
    url: &str,
    data: &std::path::Path,
    options: &observatoire::IngestOptions,
) -> Result<()> {
    // The key is created by the ingest itself, once the source has been opened: a
    // mistyped source URL leaves nothing behind.
    let key_existed = observatoire::key_path(data).exists();
    let started = std::time::Instant::now();
    let bars = TableBars::new();
    let pb = bars
        .multi
        .add(bar((ingest::TABLES_READ.len() + 7) as u64, "ingestion"));
    let mut options = options.clone();
    options.rows = bars.progress();
    let manifest = observatoire::ingest_with_options(url, data, &options, |step| {
        // A full read has more steps than an incremental one: the bar grows if needed.
        if pb.position() >= pb.length().unwrap_or(0) {
            pb.inc_length(1);
        }
        pb.inc(1);
        pb.set_message(step.to_owned());
    })
    .await?;
    pb.finish_and_clear();
    bars.finish();
    if !key_existed && observatoire::key_path(data).exists() {
        println!(
            "Clé de pseudonymisation créée : {} (droits 0600). Conservez-la hors du lac : sans elle, les pseudonymes ne peuvent plus être prolongés.",
            observatoire::key_path(data).display()
        );
    }
    let rows: u64 = manifest.rows.values().sum();
    let quarantined: u64 = manifest
        .regles
        .iter()
        .filter(|(rule, _)| {
            ingest::quality::RULES
                .iter()
                .any(|(r, a)| r == rule && *a == ingest::quality::Action::Quarantine)
        })
        .map(|(_, n)| n)
        .sum();
    if !manifest.regles.is_empty() {
        println!("Règles de qualité des données (lignes concernées) :");
        for (rule, n) in &manifest.regles {
            println!("  {rule:<26} {n}");
        }
        println!("  dont {quarantined} lignes en quarantaine (ni stockées ni comptées).");
    }
    let doublons: u64 = manifest.doublons_suspects.values().sum();
    if doublons > 0 {
        let by_siao: Vec<String> = manifest
            .doublons_suspects
            .iter()
            .map(|(d, n)| format!("{d} {n}"))
            .collect();
        println!(
            "Doublons suspects (personnes partageant une clé de rapprochement avec une autre) : {doublons} ({}).",
            by_siao.join(" · ")
        );
    }
    println!(
        "Tables de la zone détail (lignes ; insérées, réécrites, supprimées ; en quarantaine) :"
    );
    for (table, n) in &manifest.rows {
        let c = manifest.changes.get(table).copied().unwrap_or_default();
        let q = manifest.quarantaine.get(table).copied().unwrap_or(0);
        println!(
            "  {table:<18} {n:>10} ; +{} ~{} -{} ; {q}",
            c.inserees, c.mises_a_jour, c.supprimees
        );
    }
    let how = if manifest.lecture == warehouse::READ_INCREMENTAL {
        "lecture incrémentale depuis les filigranes de l'ingestion précédente"
    } else {
        "lecture complète de la source"
    };
    println!(
        "Ingestion n° {} ({how}) terminée en {} s : {} tables, {} lignes dans la zone détail ({}).",
        manifest.run,
        format!("{:.1}", started.elapsed().as_secs_f64()).replace('.', ","),
        manifest.tables.len(),
        rows,
        data.join("lake").join("detail").display()
    );
    Ok(())
}

async fn run_compute(
    data: &std::path::Path,
    options: &indicators::ComputeOptions,
    publication: &indicators::Publication,
) -> Result<()> {
    let threshold = options.secrecy_threshold;
    let analyst_k = options.analyst.k;
    let pb = bar(indicators::CATALOGUE.len() as u64, "calcul des indicateurs");
    let release = observatoire::publish(data, options, publication, |i| {
        pb.inc(1);
        pb.set_message(i.code.to_owned());
    })
    .await?;
    pb.finish_and_clear();
    if let indicators::Publication::Revision { month, reason } = publication {
        println!(
            "Révision du mois {} (motif : {reason}) : {} valeurs recalculées.",
            indicators::closing::month_label(*month),
            release.rows
        );
    }
    let span = match (release.d0, release.d1) {
        (Some(a), Some(b)) => format!("données observées du {a} au {b}"),
        _ => "aucune donnée observée".to_owned(),
    };
    println!(
        "Publication n° {} (ingestion n° {}) : {} valeurs nouvelles ou modifiées sur {}, dont {} sous secret statistique (seuil {}) ; {}.",
        release.version,
        release.run,
        release.rows,
        release.cells,
        release.secret_rows,
        threshold,
        span
    );
    let (recomputed, pairs) = release.recomputed;
    match &release.full_reason {
        Some(reason) => {
            println!("Calcul complet ({reason}) : {recomputed} périodes × indicateurs calculées.")
        }
        None => println!(
            "Calcul incrémental : {recomputed} périodes × indicateurs recalculées sur {pairs} (les autres n'ont changé ni de données ni de jours observés), dont {} par différence (cellules précédentes corrigées des seuls ménages modifiés) ; {} indicateurs sur {} suivis par les lignes réécrites depuis la publication précédente, sans relire tous leurs enregistrements.",
            release.by_difference,
            release.from_changes,
            indicators::CATALOGUE.len(),
        ),
    }
    let tables: Vec<String> = release
        .analyst
        .iter()
        .map(|t| {
            format!(
                "{} {} enregistrements ({} supprimés)",
                t.table,
                t.records - t.suppressed,
                t.suppressed
            )
        })
        .collect();
    match &release.analyst_reason {
        Some(reason) => println!(
            "Zone analyste reconstruite ({reason} ; k = {analyst_k}, pseudonymes propres à la publication n° {}) : {}.",
            release.version,
            tables.join(" · ")
        ),
        None => println!(
            "Zone analyste conservée (publication n° {}) : ni mois de données complet de plus, ni purge de ménages depuis ; « compute --analyst » la reconstruit.",
            release.analyst_release
        ),
    }
    Ok(())
}

fn compute_options(
    file: &FileConfig,
    threshold: Option<i64>,
    analyst_k: Option<i64>,
) -> Result<indicators::ComputeOptions> {
    Ok(indicators::ComputeOptions {
        secrecy_threshold: file.secrecy_threshold(threshold)?,
        analyst: indicators::analyst::AnalystOptions {
            k: file.analyst_k(analyst_k)?,
            ..Default::default()
        },
        auto_close_days: file.auto_close_days()?,
        // The conventions' indicators are read from the data folder by `publish`.
        conventions: Vec::new(),
        full: false,
    })
}

async fn run_release_list(data: &std::path::Path) -> Result<()> {
    let list = observatoire::releases(data).await?;
    if list.is_empty() {
        println!("Aucune publication : lancez d'abord « observatoire compute ».");
        return Ok(());
    }
    println!(
        "version  ingestion  nature     seuil  lignes     calculée le                 catalogue   motif"
    );
    for r in &list {
        println!(
            "{:<8} {:<10} {:<10} {:<6} {:<10} {:<27} {:<11} {}",
            r.version,
            r.ingestion,
            r.nature,
            r.seuil_secret,
            r.lignes,
            r.calculee_le,
            r.catalogue,
            r.motif.as_deref().unwrap_or("")
        );
    }
    Ok(())
}

async fn run_period_list(data: &std::path::Path) -> Result<()> {
    let list = observatoire::closures(data).await?;
    if list.is_empty() {
        println!("Aucun mois clôturé : toutes les valeurs publiées sont PROVISOIRE.");
        return Ok(());
    }
    println!("mois     origine      clôturé le");
    for c in &list {
        println!("{:<8} {:<12} {}", c.mois, c.origine, c.cloture_le);
    }
    Ok(())
}

async fn run_quality(data: &std::path::Path, siao: Option<&str>) -> Result<()> {
    use observatoire::quality::{COMPLETUDE, CONSERVEE, DOUBLONS, LUES, QUARANTAINE};
    {
        let lines = observatoire::quality_report(data, siao).await?;
        if lines.is_empty() {
            println!("Aucune ligne dans le rapport de qualité pour ce périmètre.");
            return Ok(());
        }
        let sum = |f: &dyn Fn(&observatoire::quality::QualityLine) -> bool| -> u64 {
            lines.iter().filter(|l| f(l)).map(|l| l.lignes).sum()
        };
        let by_rule = |siao: &str, nature: &str| -> String {
            let mut m: std::collections::BTreeMap<&str, u64> = Default::default();
            for l in lines
                .iter()
                .filter(|l| l.siao == siao && l.nature == nature)
            {
                *m.entry(l.mesure.as_str()).or_default() += l.lignes;
            }
            m.iter()
                .map(|(r, n)| format!("{r} {n}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let share = |num: u64, den: u64| {
            if den == 0 {
                "sans objet".to_owned()
            } else {
                percent(num as f64 / den as f64)
            }
        };
        println!("Rapport de qualité des données (dernière ingestion complète), par SIAO :");
        let mut sites: Vec<&str> = lines.iter().map(|l| l.siao.as_str()).collect();
        sites.dedup();
        for site in sites {
            let at = |nature: &'static str| {
                move |l: &observatoire::quality::QualityLine| l.siao == site && l.nature == nature
            };
            let measure = |m: &'static str| {
                move |l: &observatoire::quality::QualityLine| {
                    l.siao == site && l.nature == COMPLETUDE && l.mesure == m
                }
            };
            let read = sum(&at(LUES));
            let quarantined = sum(&at(QUARANTAINE));
            let kept = sum(&at(CONSERVEE));
            println!("  {site} : {read} lignes lues");
            if quarantined > 0 {
                println!(
                    "    {quarantined} en quarantaine ({})",
                    by_rule(site, QUARANTAINE)
                );
            }
            if kept > 0 {
                println!(
                    "    {kept} conservées avec un défaut ({})",
                    by_rule(site, CONSERVEE)
                );
            }
            let np = sum(&measure("NON_POURVUE"));
            if np > 0 {
                println!(
                    "    motif renseigné pour {} des demandes NON_POURVUE ({np})",
                    share(sum(&measure("NON_POURVUE_AVEC_MOTIF")), np)
                );
            }
            let persons = sum(&|l| l.siao == site && l.nature == LUES && l.table == "personne");
            if persons > 0 {
                println!(
                    "    date de naissance connue pour {} des personnes ({persons})",
                    share(sum(&measure("AVEC_DATE_NAISSANCE")), persons)
                );
            }
            let doublons = sum(&at(DOUBLONS));
            if doublons > 0 {
                println!("    {doublons} personnes doublons suspects");
            }
            if siao.is_some() {
                let mut months: Vec<&str> = lines
                    .iter()
                    .filter(|l| l.siao == site)
                    .map(|l| l.mois.as_str())
                    .collect();
                months.sort();
                months.dedup();
                for m in months {
                    let of = |nature: &'static str| {
                        sum(&|l| l.siao == site && l.mois == m && l.nature == nature)
                    };
                    println!(
                        "    {m} : lues {} · quarantaine {} · conservées avec défaut {}",
                        of(LUES),
                        of(QUARANTAINE),
                        of(CONSERVEE)
                    );
                }
            }
        }
        Ok(())
    }
}

fn ratio_fr(x: f64) -> String {
    format!("{x:.4}").replace('.', ",")
}

async fn run_anonymity_report(data: &std::path::Path) -> Result<()> {
    let report = observatoire::anonymity_report(data).await?;
    let Some(first) = report.first() else {
        println!("La zone analyste ne contient aucune table.");
        return Ok(());
    };
    println!(
        "Anonymat de la zone analyste, publication n° {} (k visé : {}) :",
        first.publication, first.k_target
    );
    for t in &report {
        let r = &t.risk;
        println!("  {} :", t.table);
        println!(
            "    enregistrements lus {} · publiés {} · supprimés {} ({})",
            t.records_read,
            r.records,
            t.suppressed,
            percent(t.suppressed as f64 / t.records_read.max(1) as f64)
        );
        println!(
            "    k atteint {} ({} classes d'équivalence) · généralisation {}",
            r.k, r.classes, t.levels
        );
        println!(
            "    risque procureur : le plus élevé {} (1/{}) · enregistrements au-dessus de 1/{} : {} · moyen {}",
            ratio_fr(r.highest),
            r.k,
            t.k_target,
            r.records_at_risk,
            ratio_fr(r.average)
        );
    }
    Ok(())
}

/// A run's steps and when each ended, in seconds from its start (French decimals).
fn steps_text(steps: &[(String, std::time::Duration)]) -> String {
    steps
        .iter()
        .map(|(s, t)| {
            format!(
                "{s} {}",
                format!("{:.2}", t.as_secs_f64()).replace('.', ",")
            )
        })
        .collect::<Vec<_>>()
        .join(" · ")
}

/// Seconds with two decimals and a French decimal comma.
fn secs(d: Duration) -> String {
    format!("{:.2}", d.as_secs_f64()).replace('.', ",")
}

/// `part` as a percentage of `whole`, French style (`84,12`).
fn percent_of(part: Duration, whole: Duration) -> String {
    french_decimal(100.0 * part.as_secs_f64() / whole.as_secs_f64(), 2)
}

async fn run_bench_compute(
    data: &std::path::Path,
    work_dir: &std::path::Path,
    python: &str,
    threshold: i64,
    rounds: usize,
) -> Result<()> {
    let sp = spinner("banc d'essai du calcul");
    let bench =
        observatoire::bench::bench_compute(data, work_dir, python, threshold, rounds, |s| {
            tracing::info!("{s}");
            sp.set_message(s.to_owned())
        })
        .await;
    sp.finish_and_clear();
    let b = bench?;
    println!(
        "Banc d'essai du calcul : {} indicateurs, {} lignes de la zone détail, {} cellules, meilleur temps sur {} manches.",
        b.indicators, b.detail_rows, b.rows, b.rounds
    );
    println!(
        "  Observatoire (DataFusion, tables Delta) : {} s",
        secs(b.ours)
    );
    println!(
        "  pair DuckDB (mêmes fichiers Parquet)     : {} s",
        secs(b.peer)
    );
    println!("  par indicateur (Observatoire / DuckDB, en s) :");
    for (code, ours, peer) in &b.each {
        println!("    {code} : {} / {}", secs(*ours), secs(*peer));
    }
    println!(
        "Rapport : {}× le temps du pair (objectif ≤ 1,0).",
        format!("{:.2}", b.ours.as_secs_f64() / b.peer.as_secs_f64()).replace('.', ",")
    );
    if b.differences == 0 {
        println!(
            "Valeurs : les {} cellules sont identiques des deux côtés.",
            b.rows
        );
        Ok(())
    } else {
        println!(
            "Valeurs : {} cellules diffèrent, par exemple :",
            b.differences
        );
        for e in &b.examples {
            println!("  {e}");
        }
        Err(Error::BenchMismatch(b.differences))
    }
}

async fn run_bench_ingest(
    url: &str,
    work_dir: &std::path::Path,
    python: &str,
    options: &observatoire::IngestOptions,
    rounds: usize,
) -> Result<()> {
    let sp = spinner("banc d'essai de l'ingestion");
    let bench = observatoire::bench::bench_ingest(url, work_dir, python, options, rounds, |s| {
        sp.set_message(s.to_owned())
    })
    .await;
    sp.finish_and_clear();
    let b = bench?;
    let rate = |d| format!("{:.0}", b.rate(d));
    println!(
        "Banc d'essai de l'ingestion : {} lignes lues, {} connexions, meilleur temps sur {} manches.",
        b.rows, b.workers, b.rounds
    );
    println!(
        "  ingestion complète (lecture, qualité, pseudonymisation, Delta) : {} s, {} lignes/s",
        secs(b.ours),
        rate(b.ours)
    );
    println!(
        "    étapes (fin de chacune, en s) : {}",
        steps_text(&b.steps)
    );
    println!(
        "  pair connectorx + pyarrow (Parquet)                            : {} s, {} lignes/s",
        secs(b.peer),
        rate(b.peer)
    );
    println!(
        "  limite : COPY binaire vers /dev/null ({} Mo)                 : {} s, {} lignes/s",
        b.copy_bytes / 1_000_000,
        secs(b.limit),
        rate(b.limit)
    );
    let ratio = |x: f64| format!("{x:.2}").replace('.', ",");
    println!(
        "Rapports : {}× le pair (objectif ≥ 1,0), {}× la limite (objectif ≥ 0,5).",
        ratio(b.peer.as_secs_f64() / b.ours.as_secs_f64()),
        ratio(b.limit.as_secs_f64() / b.ours.as_secs_f64())
    );
    if let Some(cpu) = &b.cpu {
        print_ingest_cpu(cpu, b.limit);
    }
    Ok(())
}

/// What each contender of the ingest benchmark cost the machine's processors, and the
/// processor time the goal against the limit leaves to the ingest.
fn print_ingest_cpu(cpu: &observatoire::bench::IngestCpu, limit: Duration) {
    let s = |x: f64| french_decimal(x, 1);
    println!(
        "Temps de processeur de chaque mesure, en s de cœur (« le reste » : surtout PostgreSQL, qui produit les lignes) :"
    );
    let cores = cpu.cores as f64;
    let busy = 100.0 * cpu.limit.machine / (cores * limit.as_secs_f64());
    println!(
        "  limite : machine {} (occupée à {busy:.0} %), dont le lecteur {} et le reste {}",
        s(cpu.limit.machine),
        s(cpu.limit.reader),
        s(cpu.limit.rest())
    );
    println!(
        "  ingestion complète : machine {}, dont observatoire {} et le reste {}",
        s(cpu.ours.machine),
        s(cpu.ours.reader),
        s(cpu.ours.rest())
    );
    println!(
        "  pair : machine {}, dont connectorx + pyarrow {} et le reste {}",
        s(cpu.peer.machine),
        s(cpu.peer.reader),
        s(cpu.peer.rest())
    );
    // Finishing in twice the limit's time gives the machine `cores × 2 × limit` seconds
    // of processor; PostgreSQL needs about what it needed to produce the same rows.
    let budget = cores * 2.0 * limit.as_secs_f64() - cpu.limit.rest();
    println!(
        "L'objectif ≥ 0,5× la limite laisse à l'ingestion au plus {} × 2 × {} s − {} s = {} s de cœur ; le pair en a utilisé {}, l'ingestion {}.",
        cpu.cores,
        secs(limit),
        s(cpu.limit.rest()),
        s(budget),
        s(cpu.peer.reader),
        s(cpu.ours.reader)
    );
}

async fn run_rotate(url: &str, data: &std::path::Path, destroy_old: bool) -> Result<()> {
    let pb = bar((ingest::TABLES_READ.len() * 2) as u64, "rotation de la clé");
    let rotation = observatoire::rotate_key(url, data, destroy_old, |table| {
        pb.inc(1);
        pb.set_message(table.to_owned());
    })
    .await;
    pb.finish_and_clear();
    let rotation = rotation?;
    println!(
        "Clé de pseudonymisation remplacée : empreinte {} → {}. Zone détail reconstruite (ingestion n° {}) ; le lac refuse désormais l'ancienne clé.",
        rotation.old_fingerprint, rotation.new_fingerprint, rotation.manifest.run
    );
    match &rotation.retired_key {
        Some(path) => println!(
            "Ancienne clé retirée dans {} : détruisez-la dès qu'elle n'est plus utile. Tant qu'elle existe, ou tant que les anciennes versions Delta restent lisibles (lancez « observatoire vacuum »), les deux générations de pseudonymes restent rapprochables.",
            path.display()
        ),
        None => println!(
            "Ancienne clé détruite. Lancez « observatoire vacuum » pour effacer les anciennes versions de la zone détail."
        ),
    }
    Ok(())
}

async fn run_serve(
    data: PathBuf,
    listen: std::net::SocketAddr,
    oidc: Option<dashboards_api::oidc::OidcConfig>,
) -> Result<()> {
    let conventions = observatoire::conventions(&data)?;
    let config = dashboards_api::ServerConfig {
        oidc,
        ..dashboards_api::ServerConfig::new(&data).with_conventions(conventions)
    };
    dashboards_api::serve(config, listen, |addr| {
        println!("Tableau de bord : http://{addr}/ (connexion avec un compte ci-dessus)");
        println!(
            "  pages : accueil /, indicateurs /indicateurs, carte /carte, comparaison /comparaison, qualité des données /qualite"
        );
        println!("API : http://{addr}/api/v1/indicateurs (jeton : en-tête Authorization: Bearer …) — arrêt : Ctrl+C");
    })
    .await
    .map_err(|e| Error::Server(e.to_string()))
}

async fn open_accounts(data: &std::path::Path) -> Result<dashboards_api::accounts::Accounts> {
    dashboards_api::accounts::Accounts::open(&dashboards_api::accounts_path(data))
        .await
        .map_err(|e| Error::Server(e.to_string()))
}

fn account_error(e: dashboards_api::accounts::AccountError) -> Error {
    Error::Server(e.to_string())
}

async fn run_users(file: &FileConfig, action: UsersCommand) -> Result<()> {
    use dashboards_api::authz::{Profile, Scope};
    match action {
        UsersCommand::Add {
            data,
            login,
            profile,
            territory,
            password,
        } => {
            let data = file.data(data);
            let profile = Profile::parse(&profile).map_err(|e| Error::Config(e.0))?;
            let scope = Scope::parse(&territory).map_err(|e| Error::Config(e.0))?;
            let secret = if password {
                Some(std::env::var("OBSERVATOIRE_PASSWORD").map_err(|_| {
                    Error::Config(
                        "--password : donnez le mot de passe dans la variable OBSERVATOIRE_PASSWORD (jamais sur la ligne de commande)".into(),
                    )
                })?)
            } else {
                None
            };
            let accounts = open_accounts(&data).await?;
            accounts
                .add_user(&login, profile, &scope, secret.as_deref())
                .await
                .map_err(account_error)?;
            println!(
                "Compte « {login} » créé : {} sur {scope}{}.",
                profile.label(),
                if secret.is_some() {
                    ", avec mot de passe"
                } else {
                    ", sans mot de passe (jeton ou fédération d'identité)"
                }
            );
            Ok(())
        }
        UsersCommand::List { data } => {
            let accounts = open_accounts(&file.data(data)).await?;
            let list = accounts.list().await.map_err(account_error)?;
            for a in &list {
                println!(
                    "  {:<28} {:<40} {:<14} {}{}",
                    a.login,
                    a.profil.label(),
                    a.territoire,
                    if a.actif { "actif" } else { "désactivé" },
                    if a.federe { ", fédéré" } else { "" }
                );
            }
            println!("{} compte(s)", list.len());
            Ok(())
        }
        UsersCommand::Disable { data, login } => {
            let accounts = open_accounts(&file.data(data)).await?;
            accounts
                .set_active(&login, false)
                .await
                .map_err(account_error)?;
            println!("Compte « {login} » désactivé : ses jetons et sessions ne fonctionnent plus.");
            Ok(())
        }
        UsersCommand::Enable { data, login } => {
            let accounts = open_accounts(&file.data(data)).await?;
            accounts
                .set_active(&login, true)
                .await
                .map_err(account_error)?;
            println!("Compte « {login} » réactivé.");
            Ok(())
        }
    }
}

async fn run_tokens(file: &FileConfig, action: TokensCommand) -> Result<()> {
    match action {
        TokensCommand::Create {
            data,
            login,
            label,
            days,
        } => {
            let accounts = open_accounts(&file.data(data)).await?;
            let issued = accounts
                .issue_token(&login, &label, chrono::Duration::days(days))
                .await
                .map_err(account_error)?;
            println!(
                "Jeton {} pour « {login} », valable jusqu'au {} (conservez-le : il ne sera plus affiché) :",
                issued.id,
                issued.expire_le.format("%d/%m/%Y")
            );
            println!("{}", issued.token);
            Ok(())
        }
        TokensCommand::List { data, login } => {
            let accounts = open_accounts(&file.data(data)).await?;
            let list = accounts
                .tokens(login.as_deref())
                .await
                .map_err(account_error)?;
            for t in &list {
                println!(
                    "  {}  {:<28} {:<20} créé le {}, expire le {}{}",
                    t.id,
                    t.login,
                    t.libelle,
                    t.cree_le,
                    t.expire_le,
                    t.revoque_le
                        .as_ref()
                        .map(|r| format!(", révoqué le {r}"))
                        .unwrap_or_default()
                );
            }
            println!("{} jeton(s)", list.len());
            Ok(())
        }
        TokensCommand::Revoke { data, id } => {
            let accounts = open_accounts(&file.data(data)).await?;
            if accounts.revoke_token(&id).await.map_err(account_error)? {
                println!("Jeton {id} révoqué.");
                Ok(())
            } else {
                Err(Error::Config(format!(
                    "aucun jeton actif d'identifiant « {id} » (voir « observatoire tokens list »)"
                )))
            }
        }
    }
}

async fn print_demo_accounts(data: &std::path::Path) -> Result<()> {
    let accounts = dashboards_api::demo::create_demo_accounts(data, "93")
        .await
        .map_err(account_error)?;
    println!("Comptes de démonstration (un par profil ; recréés à chaque « demo ») :");
    for a in &accounts {
        println!(
            "  {:<26} {:<40} {:<6} mot de passe {}",
            a.login,
            a.profile.label(),
            a.scope.to_string(),
            a.password
        );
        println!("      jeton : {}", a.token);
    }
    Ok(())
}

async fn run(cli: Cli) -> Result<()> {
    let file = FileConfig::load()?;
    match cli.command {
        Command::Demo {
            data,
            listen,
            secrecy_threshold,
        } => {
            let data = file.data(data);
            let listen = file.listen(listen)?;
            let threshold = file.secrecy_threshold(secrecy_threshold)?;
            std::fs::create_dir_all(&data).map_err(|source| Error::Io {
                path: data.clone(),
                source,
            })?;
            let url = format!("sqlite://{}", data.join("source.db").display());
            println!("Démonstration Observatoire dans {}", data.display());
            let config = SimulationConfig::default();
            run_simulate(&url, &config, true, None).await?;
            run_ingest(&url, &data, &file.ingest_options(false)?).await?;
            let mut options = compute_options(&file, None, None)?;
            options.secrecy_threshold = threshold;
            run_compute(&data, &options, &indicators::Publication::Regular).await?;
            print_demo_accounts(&data).await?;
            run_serve(data, listen, file.oidc.clone()).await
        }
        Command::Simulate {
            source,
            departments,
            from,
            to,
            scale,
            seed,
            defects,
            manifest,
            replace,
            continue_,
        } => {
            let to = parse_date("to", &to)?;
            if continue_ {
                return run_continue(&source, to, manifest.as_deref()).await;
            }
            let config = SimulationConfig {
                departements: parse_departments(&departments)?,
                from: parse_date("from", &from)?,
                to,
                seed,
                scale,
                defects,
            };
            run_simulate(&source, &config, replace, manifest.as_deref()).await
        }
        Command::Ingest {
            source,
            data,
            allow_mass_delete,
            full,
            workers,
        } => {
            let data = file.data(data);
            let url = file.source(source, &data);
            let mut options = file.ingest_options(allow_mass_delete)?;
            options.full = full;
            if let Some(w) = workers {
                options.read.workers = w.max(1);
            }
            run_ingest(&url, &data, &options).await
        }
        Command::Compute {
            data,
            secrecy_threshold,
            analyst_k,
            full,
            analyst,
        } => {
            let data = file.data(data);
            let mut options = compute_options(&file, secrecy_threshold, analyst_k)?;
            options.full = full;
            options.analyst.rebuild = analyst;
            run_compute(&data, &options, &indicators::Publication::Regular).await
        }
        Command::Release {
            action: ReleaseCommand::List { data },
        } => run_release_list(&file.data(data)).await,
        Command::Period { action } => match action {
            PeriodCommand::Close {
                months,
                data,
                secrecy_threshold,
            } => {
                let data = file.data(data);
                let months = months
                    .iter()
                    .map(|m| indicators::closing::parse_month(m))
                    .collect::<std::result::Result<Vec<_>, _>>()
                    .map_err(observatoire::Error::from)?;
                let options = compute_options(&file, secrecy_threshold, None)?;
                let new = observatoire::close_months(&data, &months).await?;
                let labels: Vec<String> = months
                    .iter()
                    .map(|m| indicators::closing::month_label(*m))
                    .collect();
                if new.is_empty() {
                    println!("Mois déjà clôturé(s) : {}.", labels.join(", "));
                } else {
                    println!(
                        "Mois clôturé(s) : {} ; leurs périodes sont publiées DEFINITIF.",
                        new.iter()
                            .map(|m| indicators::closing::month_label(*m))
                            .collect::<Vec<_>>()
                            .join(", ")
                    );
                }
                run_compute(&data, &options, &indicators::Publication::Regular).await
            }
            PeriodCommand::Revise {
                month,
                reason,
                data,
                secrecy_threshold,
            } => {
                let data = file.data(data);
                let month =
                    indicators::closing::parse_month(&month).map_err(observatoire::Error::from)?;
                let options = compute_options(&file, secrecy_threshold, None)?;
                run_compute(
                    &data,
                    &options,
                    &indicators::Publication::Revision { month, reason },
                )
                .await
            }
            PeriodCommand::List { data } => run_period_list(&file.data(data)).await,
        },
        Command::AnonymityReport { data } => run_anonymity_report(&file.data(data)).await,
        Command::Bench {
            what:
                BenchCommand::Ingest {
                    source,
                    work_dir,
                    workers,
                    rounds,
                    python,
                },
        } => {
            let mut options = file.ingest_options(true)?;
            if let Some(w) = workers {
                options.read.workers = w.max(1);
            }
            run_bench_ingest(&source, &work_dir, &python, &options, rounds).await
        }
        Command::Bench {
            what:
                BenchCommand::Compute {
                    data,
                    work_dir,
                    rounds,
                    secrecy_threshold,
                    python,
                },
        } => {
            let data = file.data(data);
            run_bench_compute(&data, &work_dir, &python, secrecy_threshold, rounds).await
        }
        Command::Bench {
            what:
                BenchCommand::Incremental {
                    source,
                    work_dir,
                    days,
                },
        } => {
            let options = file.ingest_options(true)?;
            let sp = spinner("banc d'essai de l'ingestion incrémentale");
            let bench =
                observatoire::bench::bench_incremental(&source, &work_dir, &options, days, |s| {
                    sp.set_message(s.to_owned())
                })
                .await;
            sp.finish_and_clear();
            let b = bench?;
            println!(
                "Ingestion complète : {} s ({} lignes dans la zone détail).",
                secs(b.full),
                b.rows
            );
            let (mut ins, mut upd, mut del) = (0, 0, 0);
            for c in b.manifest.changes.values() {
                ins += c.inserees;
                upd += c.mises_a_jour;
                del += c.supprimees;
            }
            println!(
                "Ingestion incrémentale après {} jour(s) simulé(s) : {} s (+{ins} ~{upd} -{del} lignes).",
                b.days,
                secs(b.incremental)
            );
            println!("  étapes (fin de chacune, en s) : {}", steps_text(&b.steps));
            println!(
                "Rapport incrémentale / complète : {} % (objectif ≤ 2 %).",
                percent_of(b.incremental, b.full)
            );
            Ok(())
        }
        Command::Bench {
            what:
                BenchCommand::Api {
                    data,
                    path,
                    departement,
                    connections,
                    duration,
                },
        } => {
            let data = file.data(data);
            println!(
                "Charge de l'API : {connections} connexions, {duration} s par mesure, lac {}",
                data.display()
            );
            let b = observatoire::bench::api::bench_api(
                &data,
                &path,
                &departement,
                connections,
                Duration::from_secs(duration),
            )
            .await?;
            for (label, run) in [("valeurs", &b.values), ("statique", &b.statique)] {
                println!(
                    "  {label:<9} {:>10.0} requêtes/s  p50 {:>7.3} ms  p99 {:>7.3} ms  {} requêtes, {} erreur(s)  {}",
                    run.per_second, run.p50_ms, run.p99_ms, run.requests, run.errors, run.url
                );
            }
            println!(
                "Rapport des débits valeurs / statique : {:.1} % (objectif ≥ 50 %) ; p99 des valeurs {:.3} ms (objectif ≤ 10 ms)",
                100.0 * b.values.per_second / b.statique.per_second,
                b.values.p99_ms
            );
            Ok(())
        }
        Command::Bench {
            what:
                BenchCommand::ComputeIncremental {
                    source,
                    work_dir,
                    days,
                    secrecy_threshold,
                },
        } => {
            let options = indicators::ComputeOptions {
                secrecy_threshold,
                ..Default::default()
            };
            let sp = spinner("banc d'essai du calcul incrémental");
            let bench = observatoire::bench::bench_compute_incremental(
                &source,
                &work_dir,
                &options,
                days,
                |s| sp.set_message(s.to_owned()),
            )
            .await;
            sp.finish_and_clear();
            let b = bench?;
            let pairs = |r: &indicators::Release| {
                format!(
                    "{} périodes × indicateurs recalculées sur {} (dont {} par différence), {} valeurs publiées sur {}, {} indicateurs suivis par les lignes réécrites",
                    r.recomputed.0,
                    r.recomputed.1,
                    r.by_difference,
                    r.rows,
                    r.cells,
                    r.from_changes
                )
            };
            println!(
                "Lac : {} lignes dans la zone détail ; {} jour(s) simulé(s) de plus, ingérés en incrémental.",
                b.detail_rows, b.days
            );
            println!(
                "Calcul incrémental (publication n° {}) : {} s ({}).",
                b.incremental.version,
                secs(b.incremental_time),
                pairs(&b.incremental)
            );
            println!(
                "Calcul complet (publication n° {}) : {} s ({}).",
                b.full.version,
                secs(b.full_time),
                pairs(&b.full)
            );
            println!(
                "Rapport incrémental / complet : {} % (objectif ≤ 5 %).",
                percent_of(b.incremental_time, b.full_time)
            );
            // The analyst zone is rebuilt once per complete month of data (or after a
            // purge), not by every release: say what each compute did with it.
            let zone = |r: &indicators::Release| match &r.analyst_reason {
                Some(reason) => format!(
                    "reconstruite ({reason}) en {} s, dont {} s de pseudonymes propres à la publication et d'écriture",
                    secs(r.analyst_time),
                    secs(
                        r.analyst
                            .iter()
                            .map(|t| t.rekeyed_and_written)
                            .sum::<Duration>()
                    )
                ),
                None => format!(
                    "conservée (publication n° {}), décision en {} s",
                    r.analyst_release,
                    secs(r.analyst_time)
                ),
            };
            println!(
                "  Zone analyste : {} (calcul incrémental) ; {} (calcul complet).",
                zone(&b.incremental),
                zone(&b.full)
            );
            if b.differences == 0 {
                println!(
                    "Chiffres courants identiques après les deux calculs ({} cellules).",
                    b.full.cells
                );
                Ok(())
            } else {
                for e in &b.examples {
                    println!("  {e}");
                }
                Err(Error::Config(format!(
                    "{} cellules diffèrent entre le calcul incrémental et le calcul complet",
                    b.differences
                )))
            }
        }
        Command::Quality { data, siao } => run_quality(&file.data(data), siao.as_deref()).await,
        Command::Key {
            action:
                KeyCommand::Rotate {
                    source,
                    data,
                    destroy_old_key,
                },
        } => {
            let data = file.data(data);
            let url = file.source(source, &data);
            run_rotate(&url, &data, destroy_old_key).await
        }
        Command::Users { action } => run_users(&file, action).await,
        Command::Tokens { action } => run_tokens(&file, action).await,
        Command::Serve { data, listen } => {
            let data = file.data(data);
            run_serve(data, file.listen(listen)?, file.oidc.clone()).await
        }
        Command::Vacuum {
            data,
            retention_days,
        } => {
            let data = file.data(data);
            let days = file.time_travel_days(retention_days)?;
            let sp = spinner("nettoyage du lac");
            let report = observatoire::vacuum(&data, days).await;
            sp.finish_and_clear();
            let report = report?;
            let files: usize = report.iter().map(|t| t.files_deleted).sum();
            let logs: usize = report.iter().map(|t| t.logs_deleted).sum();
            for t in &report {
                println!(
                    "  {:<28} version {:>4} conservée : {} fichier(s) de données, {} journal(aux) supprimé(s)",
                    t.table, t.version, t.files_deleted, t.logs_deleted
                );
            }
            println!(
                "Nettoyage terminé ({} tables, fenêtre de {days} jour(s)) : {files} fichier(s) de données et {logs} fichier(s) de journal supprimés ; les versions antérieures à la fenêtre ne sont plus lisibles.",
                report.len()
            );
            Ok(())
        }
        Command::Sql { data, query } => {
            let data = file.data(data);
            let sp = spinner("requête en cours");
            let batches = observatoire::sql(&data, &query).await;
            sp.finish_and_clear();
            let batches = batches?;
            let table = arrow::util::pretty::pretty_format_batches(&batches)
                .map_err(|e| Error::Sql(e.to_string()))?;
            println!("{table}");
            let n: usize = batches.iter().map(|b| b.num_rows()).sum();
            println!("{n} ligne{}", if n > 1 { "s" } else { "" });
            Ok(())
        }
    }
}

/// The command line's own texts in French: clap writes its help flags, headings and
/// errors in English, and everything the command line prints is in French. Applied to
/// every command, down the tree.
fn in_french(command: clap::Command) -> clap::Command {
    command
        .disable_help_flag(true)
        .disable_help_subcommand(true)
        .subcommand_help_heading("Commandes")
        .subcommand_value_name("COMMANDE")
        .help_template(
            "{before-help}{about-with-newline}\nUtilisation : {usage}\n\n{all-args}{after-help}",
        )
        .arg(
            clap::Arg::new("aide")
                .short('h')
                .long("help")
                .action(clap::ArgAction::Help)
                .help("Affiche l'aide"),
        )
        .mut_subcommands(in_french)
}

/// The command line as typed; help, the version or an error (in French) already printed
/// when it is not a command to run.
fn parse_cli(
    args: impl IntoIterator<Item = impl Into<std::ffi::OsString> + Clone>,
) -> std::result::Result<Cli, ExitCode> {
    let command = in_french(Cli::command()).disable_version_flag(true).arg(
        clap::Arg::new("version")
            .short('V')
            .long("version")
            .action(clap::ArgAction::Version)
            .help("Affiche la version"),
    );
    let parsed = command
        .try_get_matches_from(help_as_flag(args))
        .and_then(|m| Cli::from_arg_matches(&m));
    parsed.map_err(|e| {
        use clap::error::ErrorKind;
        match e.kind() {
            ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => {
                let _ = e.print();
                ExitCode::SUCCESS
            }
            ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
                let _ = e.print();
                ExitCode::from(2)
            }
            _ => {
                eprintln!("{}", french_error(&e));
                ExitCode::from(2)
            }
        }
    })
}

/// `observatoire help [COMMANDE…]` as `observatoire [COMMANDE…] --help`: clap's own
/// `help` command describes itself in English, so it is turned off and the word kept.
fn help_as_flag(
    args: impl IntoIterator<Item = impl Into<std::ffi::OsString> + Clone>,
) -> Vec<std::ffi::OsString> {
    let mut args: Vec<std::ffi::OsString> = args.into_iter().map(Into::into).collect();
    if args.get(1).is_some_and(|a| a == "help") {
        args.remove(1);
        args.push("--help".into());
    }
    args
}

/// A clap error told in French, from what it carries (the argument, the value, the
/// suggestion, the usage line).
fn french_error(e: &clap::Error) -> String {
    use clap::error::{ContextKind, ContextValue, ErrorKind};
    let get = |kind: ContextKind| -> Option<String> {
        match e.get(kind)? {
            ContextValue::String(s) => Some(s.clone()),
            ContextValue::Strings(v) => Some(v.join(", ")),
            ContextValue::StyledStr(s) => Some(s.to_string()),
            ContextValue::StyledStrs(v) => Some(
                v.iter()
                    .map(|s| s.to_string())
                    .collect::<Vec<_>>()
                    .join(", "),
            ),
            ContextValue::Number(n) => Some(n.to_string()),
            _ => None,
        }
    };
    let arg = get(ContextKind::InvalidArg).unwrap_or_default();
    let value = get(ContextKind::InvalidValue).unwrap_or_default();
    let mut message = match e.kind() {
        ErrorKind::UnknownArgument => format!("argument inconnu : {arg}"),
        ErrorKind::InvalidSubcommand => format!(
            "commande inconnue : {}",
            get(ContextKind::InvalidSubcommand).unwrap_or_default()
        ),
        ErrorKind::MissingSubcommand => format!(
            "commande manquante{}",
            get(ContextKind::InvalidSubcommand)
                .map(|c| format!(" après {c}"))
                .unwrap_or_default()
        ),
        ErrorKind::MissingRequiredArgument => format!("argument obligatoire manquant : {arg}"),
        ErrorKind::InvalidValue | ErrorKind::ValueValidation => {
            format!("valeur invalide « {value} » pour {arg}")
        }
        ErrorKind::ArgumentConflict => format!(
            "{arg} ne peut pas être employé avec {}",
            get(ContextKind::PriorArg).unwrap_or_default()
        ),
        ErrorKind::TooManyValues | ErrorKind::TooFewValues | ErrorKind::WrongNumberOfValues => {
            format!("nombre de valeurs incorrect pour {arg}")
        }
        ErrorKind::NoEquals => format!("{arg} demande sa valeur après « = »"),
        ErrorKind::InvalidUtf8 => "un argument n'est pas de l'UTF-8 valide".to_owned(),
        _ => "ligne de commande invalide".to_owned(),
    };
    if let Some(valid) = get(ContextKind::ValidValue) {
        message.push_str(&format!(" (valeurs possibles : {valid})"));
    }
    for kind in [ContextKind::SuggestedSubcommand, ContextKind::SuggestedArg] {
        if let Some(suggested) = get(kind) {
            message.push_str(&format!(" ; vouliez-vous dire {suggested} ?"));
        }
    }
    let usage = get(ContextKind::Usage)
        .map(|u| {
            let u = u.trim();
            let u = u.strip_prefix("Usage:").unwrap_or(u).trim();
            format!("\n\nUtilisation : {u}")
        })
        .unwrap_or_default();
    format!("Erreur : {message}{usage}\n\nPour en savoir plus : --help")
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("OBSERVATOIRE_LOG")
                // By default: warnings, except two that are not the user's to act on
                // (delta-rs reporting a missing MERGE metric; sqlx timing statements,
                // which big reads always trip). OBSERVATOIRE_LOG overrides all of it.
                .unwrap_or_else(|_| {
                    tracing_subscriber::EnvFilter::new(
                        "warn,deltalake_core::operations::merge=error,sqlx::query=error",
                    )
                }),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = match parse_cli(std::env::args_os()) {
        Ok(cli) => cli,
        Err(exit) => return exit,
    };
    if !matches!(cli.command, Command::Serve { .. } | Command::Demo { .. }) {
        keep_freed_memory();
    }
    match run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("Erreur : {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn command() -> clap::Command {
        in_french(Cli::command())
    }

    fn error_of(args: &[&str]) -> String {
        let e = command()
            .try_get_matches_from(std::iter::once("observatoire").chain(args.iter().copied()))
            .expect_err("a command line refused");
        french_error(&e)
    }

    #[test]
    fn the_help_of_every_command_is_in_french() {
        command().debug_assert();
        let mut root = command();
        let help = root.render_help().to_string();
        assert!(help.contains("Utilisation : observatoire"), "{help}");
        assert!(help.contains("Commandes"), "{help}");
        assert!(help.contains("Affiche l'aide"), "{help}");
        for english in ["Usage:", "Commands:", "Print help", "Print this message"] {
            assert!(!help.contains(english), "{english} in {help}");
        }
        // Down the tree: a bench command two levels below the root.
        let mut bench = command();
        let nested = bench
            .find_subcommand_mut("bench")
            .and_then(|b| b.find_subcommand_mut("compute-incremental"))
            .expect("bench compute-incremental")
            .render_help()
            .to_string();
        assert!(nested.contains("Affiche l'aide"), "{nested}");
        assert!(nested.contains("Utilisation :"), "{nested}");
        assert!(!nested.contains("Print help"), "{nested}");
    }

    #[test]
    fn help_as_a_word_shows_the_help_of_the_commands_after_it() {
        let args = |v: &[&str]| help_as_flag(v.iter().copied());
        assert_eq!(
            args(&["observatoire", "help", "bench", "compute"]),
            args(&["observatoire", "bench", "compute", "--help"])
        );
        assert_eq!(
            args(&["observatoire", "help"]),
            args(&["observatoire", "--help"])
        );
        // Elsewhere than first, `help` is left as typed (a value, say).
        assert_eq!(
            args(&["observatoire", "sql", "help"]),
            vec!["observatoire", "sql", "help"]
        );
        let shown = command()
            .try_get_matches_from(args(&["observatoire", "help", "ingest"]))
            .expect_err("help shown");
        assert_eq!(shown.kind(), clap::error::ErrorKind::DisplayHelp);
        assert!(
            shown
                .to_string()
                .contains("Utilisation : observatoire ingest")
        );
    }

    #[test]
    fn a_mistyped_command_line_is_told_in_french_with_what_was_meant() {
        let cases: [(&[&str], &[&str]); 4] = [
            (
                &["ingets"],
                &[
                    "Erreur : commande inconnue : ingets",
                    "vouliez-vous dire ingest ?",
                    "Pour en savoir plus : --help",
                ],
            ),
            (
                &["bench", "compute-incremental"],
                &[
                    "Erreur : argument obligatoire manquant : --source <SOURCE>",
                    "Utilisation : observatoire bench compute-incremental",
                ],
            ),
            (
                &[
                    "bench",
                    "compute-incremental",
                    "--source",
                    "x",
                    "--days",
                    "deux",
                ],
                &["Erreur : valeur invalide « deux » pour --days <DAYS>"],
            ),
            (
                &["ingest", "--fulll"],
                &[
                    "Erreur : argument inconnu : --fulll",
                    "vouliez-vous dire --full ?",
                ],
            ),
        ];
        for (args, expected) in cases {
            let text = error_of(args);
            assert!(text.starts_with(expected[0]), "{text}");
            for part in expected {
                assert!(text.contains(part), "{part} not in {text}");
            }
            for english in ["error:", "Usage:", "tip:", "For more information"] {
                assert!(!text.contains(english), "{english} in {text}");
            }
        }
    }
}
