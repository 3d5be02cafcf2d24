//! The pipeline that ties the stages together, used by the command line and by the
//! end-to-end tests: simulate → ingest (read, anonymise, write the detail zone) →
//! compute (publish a release) → serve.

pub mod bench;
pub mod config;
pub mod guard;
mod incremental;
pub mod quality;
mod simulate;
pub mod state;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anonymize::{DetailBuilder, MasterKey};
use arrow::record_batch::RecordBatch;
use operational::{Source, SourceKind};
use warehouse::{Lake, RunManifest};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Source(#[from] operational::SourceError),
    #[error(transparent)]
    Simulation(#[from] operational::simulator::SimulationError),
    #[error(transparent)]
    Ingest(#[from] ingest::IngestError),
    #[error(transparent)]
    Key(#[from] anonymize::KeyError),
    #[error(transparent)]
    Anonymize(#[from] anonymize::AnonymizeError),
    #[error(transparent)]
    Warehouse(#[from] warehouse::WarehouseError),
    #[error(transparent)]
    Compute(#[from] indicators::ComputeError),
    #[error(
        "la base {0} contient déjà des données : « simulate » n'écrit que dans une base vide (ajoutez --replace pour l'effacer d'abord)"
    )]
    SourceNotEmpty(String),
    #[error(
        "la base {0} n'a pas été écrite par « simulate » : rien à prolonger (lancez d'abord « simulate » sans --continue)"
    )]
    NothingToContinue(String),
    #[error(
        "espace disque insuffisant dans {folder} : la simulation demande environ {needed_mb} Mo, {free_mb} Mo sont libres (réduisez --scale, la période ou les départements)"
    )]
    DiskSpace {
        folder: String,
        needed_mb: u64,
        free_mb: u64,
    },
    #[error("contrôle de qualité des données impossible : {0}")]
    Quality(String),
    #[error("requête SQL refusée ou invalide : {0}")]
    Sql(String),
    #[error("état de la dernière ingestion (secrets/etat) illisible : {0}")]
    State(String),
    #[error("configuration invalide : {0}")]
    Config(String),
    #[error("{0}")]
    Server(String),
    #[error(
        "banc d'essai : les deux calculs ne donnent pas les mêmes valeurs ({0} cellules diffèrent)"
    )]
    BenchMismatch(u64),
    #[error("lecture de la base statistique impossible : {0}")]
    Api(String),
    #[error(
        "la zone analyste de {0} n'existe pas encore : lancez d'abord « observatoire compute »"
    )]
    NoAnalystZone(PathBuf),
    #[error(
        "le lac est déjà en cours d'écriture par une autre opération ({holder}) : attendez sa fin ou vérifiez qu'aucune autre commande ne tourne sur ce dossier (verrou {path})"
    )]
    Locked { path: PathBuf, holder: String },
    #[error(
        "arrêt de sécurité : cette ingestion supprimerait {deleted} des {before} lignes de la table {table} ({share_percent} %, au-delà de la limite de {limit_percent} %). Vérifiez que la source est la bonne et complète ; si ces suppressions sont voulues, relancez avec --allow-mass-delete. Rien n'a été écrit."
    )]
    MassDelete {
        table: String,
        deleted: u64,
        before: u64,
        share_percent: String,
        limit_percent: String,
    },
    #[error("accès au fichier {path} impossible : {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Where the master key lives for a data folder.
pub fn key_path(data_dir: &Path) -> PathBuf {
    data_dir.join("secrets").join("pseudonymisation.key")
}

/// Whether a source already holds rows (any table).
pub async fn source_has_rows(source: &Source) -> Result<bool> {
    for name in ["demande", "menage", "dispositif"] {
        let sql = sqlx_count_sql(name);
        let n: i64 = match source {
            Source::Sqlite(pool) => {
                sqlx::query_scalar::<_, i64>(sqlx::AssertSqlSafe(sql.clone()))
                    .fetch_one(pool)
                    .await
            }
            Source::Postgres(pool) => {
                sqlx::query_scalar::<_, i64>(sqlx::AssertSqlSafe(sql.clone()))
                    .fetch_one(pool)
                    .await
            }
        }
        .map_err(operational::SourceError::from)?;
        if n > 0 {
            return Ok(true);
        }
    }
    Ok(false)
}

fn sqlx_count_sql(table: &str) -> String {
    format!("SELECT COUNT(*) FROM {table}")
}

pub use simulate::{SimulationReport, simulate, simulate_continue, write_manifest};

/// Loads (or creates, on first run) the pseudonymisation key of a data folder.
pub fn load_key(data_dir: &Path) -> Result<(MasterKey, bool)> {
    Ok(MasterKey::load_or_create(&key_path(data_dir))?)
}

/// A full ingest: reads the source, anonymises in memory, replaces the detail zone and
/// writes the run's manifest.
pub async fn ingest(url: &str, data_dir: &Path, progress: impl FnMut(&str)) -> Result<RunManifest> {
    ingest_with_options(url, data_dir, &IngestOptions::default(), progress).await
}

/// Options of an ingest.
#[derive(Clone)]
pub struct IngestOptions {
    /// The largest share of a detail table's rows one run may delete (0.05 by default).
    pub max_delete_share: f64,
    /// Lets a run delete more than `max_delete_share`.
    pub allow_mass_delete: bool,
    /// Parallel readers and id-range size of the source read.
    pub read: ingest::ReadOptions,
    /// Called as rows arrive: `(table, rows just read)`.
    pub rows: ingest::Progress,
    /// Reads the whole source and rewrites every detail table whole, instead of
    /// reading what changed since the previous run.
    pub full: bool,
    /// How far before each watermark an incremental read starts again (transactions
    /// that commit after rows with a later `updated_at`).
    pub overlap: chrono::Duration,
}

impl std::fmt::Debug for IngestOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IngestOptions")
            .field("max_delete_share", &self.max_delete_share)
            .field("allow_mass_delete", &self.allow_mass_delete)
            .field("read", &self.read)
            .field("full", &self.full)
            .finish_non_exhaustive()
    }
}

impl Default for IngestOptions {
    fn default() -> Self {
        Self {
            max_delete_share: 0.05,
            allow_mass_delete: false,
            read: ingest::ReadOptions::default(),
            rows: std::sync::Arc::new(|_, _| {}),
            full: false,
            overlap: chrono::Duration::hours(1),
        }
    }
}

/// [`ingest`] with its options.
pub async fn ingest_with_options(
    url: &str,
    data_dir: &Path,
    options: &IngestOptions,
    progress: impl FnMut(&str),
) -> Result<RunManifest> {
    let source = Source::open(url).await?;
    let _lock = guard::lock(data_dir, "ingest")?;
    let (key, _) = load_key(data_dir)?;
    ingest_with(&source, &key, data_dir, options, progress).await
}

async fn ingest_with(
    source: &Source,
    key: &MasterKey,
    data_dir: &Path,
    options: &IngestOptions,
    mut progress: impl FnMut(&str),
) -> Result<RunManifest> {
    let started = std::time::Instant::now();
    let mut progress = |step: &str| {
        tracing::debug!(
            etape = step,
            secondes = started.elapsed().as_secs_f64(),
            memoire_mo = resident_mb(),
            "étape de l'ingestion terminée"
        );
        progress(step)
    };
    let lake = Lake::new(data_dir);
    // Refuse a foreign key before reading anything.
    lake.check_key(&key.fingerprint())?;
    let previous = lake.latest_run()?;
    let run = previous.as_ref().map_or(1, |m| m.run + 1);
    // An incremental run needs the previous run's state, and a lake exactly as that run
    // left it (a run killed half-way leaves tables ahead of the manifest: the next run
    // reads everything again and writes what differs).
    let state = match &previous {
        Some(m) if !options.full && lake.is_at(m).await? => state::State::read(data_dir, m.run)?,
        _ => None,
    };
    if state.is_some() {
        progress("état précédent");
    }
    let (plans, quarantine, report, regles, doublons, watermarks, state, mode) =
        match (&previous, state) {
            (Some(previous), Some(old)) => {
                // Boxed: the run's future is large, and test threads have small stacks.
                let o = Box::pin(incremental::run(
                    source,
                    key,
                    &lake,
                    options,
                    previous,
                    old,
                    run,
                    &mut progress,
                ))
                .await?;
                (
                    o.plans,
                    o.quarantine,
                    o.report,
                    o.regles,
                    o.doublons,
                    o.watermarks,
                    o.state,
                    warehouse::READ_INCREMENTAL,
                )
            }
            _ => {
                let f =
                    Box::pin(full_read(source, key, &lake, options, run, &mut progress)).await?;
                (
                    f.plans,
                    f.quarantine,
                    f.report,
                    f.regles,
                    f.doublons,
                    f.watermarks,
                    f.state,
                    warehouse::READ_FULL,
                )
            }
        };
    if !options.allow_mass_delete {
        guard::check_mass_delete(&plans, options.max_delete_share)?;
    }
    let mut quarantined: BTreeMap<String, u64> = BTreeMap::new();
    if let Some(tables) = quarantine
        .column_by_name("table_source")
        .and_then(|c| c.as_any().downcast_ref::<arrow::array::StringArray>())
    {
        for t in tables.iter().flatten() {
            *quarantined.entry(t.to_owned()).or_default() += 1;
        }
    }
    let mut quality_tables = BTreeMap::new();
    quality_tables.insert("quarantine".to_owned(), quarantine);
    quality_tables.insert("report".to_owned(), report);
    let kind = match source.kind() {
        SourceKind::Sqlite => "sqlite",
        SourceKind::Postgres => "postgres",
    };
    let record = warehouse::RunRecord {
        source: kind.to_owned(),
        key_fingerprint: key.fingerprint(),
        regles,
        doublons_suspects: doublons,
        filigranes: watermarks,
        lecture: mode.to_owned(),
        quarantaine: quarantined,
    };
    // The run state is written on its own thread beside the tables (it is mostly copies
    // and file writes; the tables' Parquet encoding keeps the cores busy), and the
    // manifest only once both are done: a state is only used with the manifest of its
    // run, and a run killed before its manifest is read again whole.
    let state_dir = data_dir.to_owned();
    let state_written = tokio::task::spawn_blocking(move || state.write(&state_dir));
    let written = Box::pin(lake.write_tables(
        plans,
        &quality_tables,
        &record.key_fingerprint,
        &mut progress,
    ))
    .await;
    state_written
        .await
        .map_err(|e| Error::State(format!("écriture de l'état interrompue : {e}")))??;
    progress("état");
    let manifest = lake.commit_run(written?, record)?;
    state::State::prune(data_dir, manifest.run)?;
    Ok(manifest)
}

/// A full read: every table of the source, the rules, the linkage and the field policy
/// on all of it; the detail tables compared with the lake, and only what differs written
/// (or everything with `options.full`).
async fn full_read(
    source: &Source,
    key: &MasterKey,
    lake: &Lake,
    options: &IngestOptions,
    run: u64,
    progress: &mut dyn FnMut(&str),
) -> Result<incremental::Outcome> {
    let extract = ingest::read_full(source, &options.read, options.rows.clone()).await?;
    progress("lecture");
    // Each table's batches are freed as soon as they are copied into one: the whole read
    // is never held twice.
    let mut tables: BTreeMap<String, RecordBatch> = BTreeMap::new();
    for (name, table) in extract.tables {
        tables.insert(
            name.to_owned(),
            anonymize::concat(&table.schema, &table.batches)?,
        );
    }
    let watermarks = incremental::latest_updates(&tables)
        .into_iter()
        .map(|(table, at)| (table, at.to_rfc3339()))
        .collect();
    let mut state = state::State {
        run,
        tables: BTreeMap::new(),
    };
    // The run state's ids and references are taken from the rows read, on a copy of
    // the map (the columns are shared, not copied) while the rules run on the tables:
    // one thread per table beside them.
    let read = tables.clone();
    let (built, quality) = std::thread::scope(|scope| {
        // `read` is dropped as soon as the ids are taken: the rules' filtered tables
        // then replace the rows read.
        let ids = scope.spawn(move || {
            std::thread::scope(|inner| {
                let handles: Vec<_> = read
                    .iter()
                    .map(|(name, batch)| (name, inner.spawn(|| state::ids_only(name, batch))))
                    .collect();
                handles
                    .into_iter()
                    .map(|(name, h)| (name.clone(), h.join().expect("a state thread")))
                    .collect::<Vec<_>>()
            })
        });
        // The rules of SOURCE_SCHEMA.md: quarantined rows leave before anything is stored.
        let quality =
            ingest::quality::apply(&mut tables, &|d| operational::departement(d).is_some());
        (ids.join().expect("the state's thread"), quality)
    });
    let mut quality = quality.map_err(|e| Error::Quality(e.to_string()))?;
    for (name, t) in built {
        state.tables.insert(
            ingest::TABLES_READ[ingest::TABLES_READ
                .iter()
                .position(|n| *n == name)
                .expect("a table read")],
            t?,
        );
    }
    let regles = quality
        .by_rule()
        .into_iter()
        .map(|(rule, n)| (rule.to_owned(), n))
        .collect();
    progress("règles");
    // The linkage keys (names are read for this only, in memory, and dropped with
    // `tables`) beside the field policy: both only read the tables.
    let (links, detail) = std::thread::scope(|scope| {
        let links = scope.spawn(|| anonymize::linkage::person_links(key, &tables));
        let detail = DetailBuilder::new(key).build(&tables);
        (links.join().expect("the linkage thread"), detail)
    });
    drop(tables);
    let (links, detail) = (links?, detail?);
    let doublons = anonymize::linkage::count_duplicates(
        links
            .values()
            .filter_map(|l| Some((l.key?, l.siao.as_str()))),
    );
    for (name, t) in state.tables.iter_mut() {
        state::take_facts(t, quality.rows.remove(name))?;
        if *name == "personne" {
            state::fill_links(t, &links);
        }
    }
    drop(links);
    progress("liaison et pseudonymisation");
    let mut plans = Vec::new();
    for (name, batch) in detail {
        plans.push(
            lake.plan_merge("detail", &name, detail_key(&name), batch, options.full)
                .await?,
        );
    }
    progress("comparaison au lac");
    let quarantine = quality::quarantine_batch(lake, key, &quality, chrono::Utc::now()).await?;
    let report = quality::report_batch(&quality, &doublons)?;
    progress("quarantaine et rapport");
    Ok(incremental::Outcome {
        plans,
        quarantine,
        report,
        regles,
        doublons,
        watermarks,
        state,
    })
}

/// The process's resident memory in MB (Linux), for the steps' debug lines.
pub(crate) fn resident_mb() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024)
}

/// `f` on each item, on every core, largest `size` first; the results in the items'
/// order.
pub(crate) fn on_each<I: Sync, T: Send>(
    items: &[I],
    size: impl Fn(&I) -> usize,
    f: impl Fn(&I) -> T + Sync,
) -> Vec<T> {
    let mut order: Vec<usize> = (0..items.len()).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(size(&items[i])));
    let next = std::sync::atomic::AtomicUsize::new(0);
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get());
    let done: Vec<Vec<(usize, T)>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..workers.min(items.len()).max(1))
            .map(|_| {
                scope.spawn(|| {
                    let mut out = Vec::new();
                    loop {
                        let k = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        let Some(&i) = order.get(k) else {
                            return out;
                        };
                        out.push((i, f(&items[i])));
                    }
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("a worker thread"))
            .collect()
    });
    let mut all: Vec<(usize, T)> = done.into_iter().flatten().collect();
    all.sort_by_key(|(i, _)| *i);
    all.into_iter().map(|(_, t)| t).collect()
}

/// The column a detail table's rows are compared and replaced by: the row's own id (or
/// its pseudonym); evaluations, which keep no id of their own, by household.
pub fn detail_key(table: &str) -> &'static str {
    match table {
        "evaluation" => "menage_id",
        _ => "id",
    }
}

/// Computes every indicator over the latest complete run and publishes a release, with
/// its analyst zone (k-anonymous at `analyst_k`; its pseudonyms need the key).
pub async fn compute(
    data_dir: &Path,
    secrecy_threshold: i64,
    analyst_k: usize,
    progress: impl FnMut(&indicators::Indicator),
) -> Result<indicators::Release> {
    let options = indicators::ComputeOptions {
        secrecy_threshold,
        analyst: indicators::analyst::AnalystOptions {
            k: analyst_k,
            ..Default::default()
        },
        auto_close_days: None,
        conventions: Vec::new(),
        full: false,
    };
    publish(
        data_dir,
        &options,
        &indicators::Publication::Regular,
        progress,
    )
    .await
}

/// The indicators the préfet–SIAO conventions add: `<data>/conventions.toml`, a list of
/// `[[indicateur]]` tables (fields of `indicators::catalogue::ConventionDeclaration`),
/// each computed and shown only in its département.
pub fn conventions(data_dir: &Path) -> Result<Vec<indicators::Indicator>> {
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct File {
        #[serde(default)]
        indicateur: Vec<indicators::catalogue::ConventionDeclaration>,
    }
    let path = data_dir.join("conventions.toml");
    if !path.exists() {
        return Ok(Vec::new());
    }
    let text = std::fs::read_to_string(&path).map_err(|source| Error::Io {
        path: path.clone(),
        source,
    })?;
    let file: File =
        toml::from_str(&text).map_err(|e| Error::Config(format!("{} : {e}", path.display())))?;
    let mut out = Vec::new();
    for d in &file.indicateur {
        let indicator = indicators::catalogue::convention(d, &out)
            .map_err(|e| Error::Config(format!("{} : {e}", path.display())))?;
        out.push(indicator);
    }
    Ok(out)
}

/// Computes and publishes a release with every option (automatic closing, revision);
/// the conventions' indicators of `<data>/conventions.toml` are added to `options`'.
pub async fn publish(
    data_dir: &Path,
    options: &indicators::ComputeOptions,
    publication: &indicators::Publication,
    progress: impl FnMut(&indicators::Indicator),
) -> Result<indicators::Release> {
    let lake = Lake::new(data_dir);
    if lake.latest_run()?.is_none() {
        return Err(warehouse::WarehouseError::NoRun(lake.root().to_owned()).into());
    }
    let _lock = guard::lock(data_dir, "compute")?;
    let key = MasterKey::load(&key_path(data_dir))?;
    lake.check_key(&key.fingerprint())?;
    let mut options = options.clone();
    options.conventions.extend(conventions(data_dir)?);
    Ok(indicators::publish_as(&lake, &options, &key, publication, progress).await?)
}

/// Closes months (INDICATORS.md, "Closing"); returns those newly closed. Their periods
/// are published `DEFINITIF` by the next release, and never recomputed after that.
pub async fn close_months(
    data_dir: &Path,
    months: &[indicators::closing::Month],
) -> Result<Vec<indicators::closing::Month>> {
    let lake = Lake::new(data_dir);
    let _lock = guard::lock(data_dir, "period close")?;
    Ok(indicators::closing::record(&lake, months, "MANUELLE").await?)
}

/// The closures recorded.
pub async fn closures(data_dir: &Path) -> Result<Vec<indicators::closing::Closure>> {
    Ok(indicators::closing::closures(&Lake::new(data_dir)).await?)
}

/// Every recorded release, latest first.
pub async fn releases(data_dir: &Path) -> Result<Vec<dashboards_api::values::Publication>> {
    let lake = Lake::new(data_dir);
    if dashboards_api::values::latest_release(&lake)
        .await
        .map_err(Error::Api)?
        .is_none()
    {
        return Ok(Vec::new());
    }
    dashboards_api::values::publications(&lake)
        .await
        .map_err(|e| Error::Api(e.message))
}

/// What a key rotation did.
#[derive(Debug, Clone)]
pub struct Rotation {
    pub old_fingerprint: String,
    pub new_fingerprint: String,
    /// Where the old key now lives (to be destroyed), unless destroyed already.
    pub retired_key: Option<PathBuf>,
    pub manifest: RunManifest,
}

/// Rotates the pseudonymisation key: a new 256-bit key, a new detail zone built from the
/// source with it, the lake set to refuse the old key, and the old key moved to
/// `secrets/retired/<fingerprint>.key` (or destroyed with `destroy_old`). Once the old
/// key is destroyed and the older Delta versions vacuumed, the old and new generations
/// of pseudonyms cannot be linked. An interrupted rotation is resumed by running it again.
pub async fn rotate_key(
    url: &str,
    data_dir: &Path,
    destroy_old: bool,
    progress: impl FnMut(&str),
) -> Result<Rotation> {
    if std::env::var_os(anonymize::KEY_ENV).is_some() {
        return Err(Error::Config(format!(
            "la clé vient de la variable {} : la rotation écrit la nouvelle clé dans {}, retirez d'abord la variable",
            anonymize::KEY_ENV,
            key_path(data_dir).display()
        )));
    }
    let lake = Lake::new(data_dir);
    if lake.latest_run()?.is_none() {
        return Err(warehouse::WarehouseError::NoRun(lake.root().to_owned()).into());
    }
    let _lock = guard::lock(data_dir, "key rotate")?;
    let current = key_path(data_dir);
    let pending = current.with_extension("key.nouvelle");
    let old = MasterKey::load(&current)?;
    // Open the source first: a wrong URL leaves everything as it was.
    let source = Source::open(url).await?;
    let new = if pending.exists() {
        MasterKey::read(&pending)?
    } else {
        let key = MasterKey::generate()?;
        key.write_new(&pending)?;
        key
    };
    lake.rotate_key(&old.fingerprint(), &new.fingerprint())?;
    // Every pseudonym changes, no row is deleted: the mass-delete stop does not apply,
    // and every table is rewritten whole.
    let options = IngestOptions {
        allow_mass_delete: true,
        full: true,
        ..Default::default()
    };
    let manifest = ingest_with(&source, &new, data_dir, &options, progress).await?;
    let io = |path: &Path| {
        let path = path.to_owned();
        move |source| Error::Io { path, source }
    };
    let retired_dir = data_dir.join("secrets").join("retired");
    std::fs::create_dir_all(&retired_dir).map_err(io(&retired_dir))?;
    let retired = retired_dir.join(format!("{}.key", old.fingerprint()));
    std::fs::rename(&current, &retired).map_err(io(&retired))?;
    std::fs::rename(&pending, &current).map_err(io(&current))?;
    let retired_key = if destroy_old {
        // Overwrite before unlinking, so that the key's bytes do not linger in the file.
        std::fs::write(&retired, [0u8; 65]).map_err(io(&retired))?;
        std::fs::remove_file(&retired).map_err(io(&retired))?;
        None
    } else {
        Some(retired)
    };
    Ok(Rotation {
        old_fingerprint: old.fingerprint(),
        new_fingerprint: new.fingerprint(),
        retired_key,
        manifest,
    })
}

/// The data-quality report of the latest complete ingest, optionally for one SIAO.
pub async fn quality_report(
    data_dir: &Path,
    siao: Option<&str>,
) -> Result<Vec<quality::QualityLine>> {
    quality::read_report(&Lake::new(data_dir), siao).await
}

/// The analyst zone's anonymity, measured on the tables as stored.
pub async fn anonymity_report(data_dir: &Path) -> Result<Vec<indicators::analyst::TableRisk>> {
    let lake = Lake::new(data_dir);
    indicators::analyst::anonymity_report(&lake)
        .await?
        .ok_or_else(|| Error::NoAnalystZone(lake.root().to_owned()))
}

/// Removes from disk the Delta files and commits that only versions older than
/// `days` days need (a household purged in the source and gone from the detail zone at
/// the last ingest is then gone from every file of the lake).
pub async fn vacuum(data_dir: &Path, days: i64) -> Result<Vec<warehouse::VacuumedTable>> {
    let lake = Lake::new(data_dir);
    if lake.latest_run()?.is_none() {
        return Err(warehouse::WarehouseError::NoRun(lake.root().to_owned()).into());
    }
    let _lock = guard::lock(data_dir, "vacuum")?;
    Ok(lake.vacuum(chrono::Duration::days(days)).await?)
}

/// Runs a read-only SQL query over the lake (detail zone of the latest complete run and
/// the statistical base). DDL, DML and other statements are refused.
pub async fn sql(data_dir: &Path, query: &str) -> Result<Vec<RecordBatch>> {
    let lake = Lake::new(data_dir);
    let ctx = lake.session().await?;
    let options = datafusion::execution::context::SQLOptions::new()
        .with_allow_ddl(false)
        .with_allow_dml(false)
        .with_allow_statements(false);
    let frame = ctx
        .sql_with_options(query, options)
        .await
        .map_err(|e| Error::Sql(e.to_string()))?;
    frame.collect().await.map_err(|e| Error::Sql(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::on_each;

    #[test]
    fn work_spread_over_the_cores_comes_back_in_the_items_order() {
        // Sizes that make the largest-first order differ from the items' own.
        let items: Vec<u64> = vec![3, 40, 1, 17, 0, 25, 8];
        let seen = std::sync::Mutex::new(Vec::new());
        let out = on_each(
            &items,
            |n| *n as usize,
            |n| {
                seen.lock().unwrap().push(*n);
                n * 2
            },
        );
        assert_eq!(out, vec![6, 80, 2, 34, 0, 50, 16]);
        let mut seen = seen.into_inner().unwrap();
        seen.sort_unstable();
        assert_eq!(seen, vec![0, 1, 3, 8, 17, 25, 40], "each item once");
        assert!(on_each(&Vec::<u64>::new(), |_| 0, |n| *n).is_empty());
    }
}
