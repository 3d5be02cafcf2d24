//! The simulator as written into a real database: tension, the application's own
//! life (purges, merges, late corrections), continuation, and injected defects
//! counted back with SQL on the source, rule by rule.

use std::collections::{BTreeMap, HashMap, HashSet};

use chrono::NaiveDate;
use observatoire_tests::{PgDatabase, sqlite_url, temp_dir};
use operational::simulator::{DEMO_SCALE, SimulationConfig};
use sqlx::sqlite::SqlitePool;

fn date(s: &str) -> NaiveDate {
    s.parse().unwrap()
}

fn config(deps: &[&str], from: &str, to: &str, scale: f64, defects: f64) -> SimulationConfig {
    SimulationConfig {
        departements: deps.iter().map(|d| d.to_string()).collect(),
        from: date(from),
        to: date(to),
        seed: 42,
        scale,
        defects,
    }
}

async fn pool(url: &str) -> SqlitePool {
    SqlitePool::connect(url).await.unwrap()
}

async fn count(pool: &SqlitePool, sql: &str) -> i64 {
    sqlx::query_scalar(sqlx::AssertSqlSafe(sql.to_owned()))
        .fetch_one(pool)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
}

async fn ids(pool: &SqlitePool, sql: &str) -> HashSet<i64> {
    sqlx::query_scalar::<_, i64>(sqlx::AssertSqlSafe(sql.to_owned()))
        .fetch_all(pool)
        .await
        .unwrap()
        .into_iter()
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seine_saint_denis_is_saturated_and_creuse_is_not() {
    // The command line's defaults (scale 0.05) with --departments 93,23, first half of 2025.
    let tmp = temp_dir("tension");
    let url = sqlite_url(tmp.path());
    let c = config(&["93", "23"], "2025-01-01", "2025-07-01", DEMO_SCALE, 0.0);
    observatoire::simulate(&url, &c, false, |_, _| {})
        .await
        .unwrap();
    let pool = pool(&url).await;
    let rate = |dep: &'static str| {
        let pool = pool.clone();
        async move {
            let sql = format!(
                "SELECT CAST(SUM(statut = 'NON_POURVUE') AS REAL) / SUM(statut IN ('POURVUE', 'NON_POURVUE')) \
                 FROM demande WHERE type = 'URGENCE' AND siao_departement = '{dep}'"
            );
            sqlx::query_scalar::<_, f64>(sqlx::AssertSqlSafe(sql))
                .fetch_one(&pool)
                .await
                .unwrap()
        }
    };
    let (r93, r23) = (rate("93").await, rate("23").await);
    assert!(r93 > 0.40, "DNP 93 = {r93}");
    assert!(r23 < 0.20, "DNP 23 = {r23}");
    // Isolated men are about half of the households calling the 115.
    let men = count(
        &pool,
        "SELECT COUNT(DISTINCT d.menage_id) FROM demande d JOIN menage_personne mp ON mp.menage_id = d.menage_id \
         JOIN personne p ON p.id = mp.personne_id \
         WHERE d.type = 'URGENCE' AND mp.role = 'DEMANDEUR_PRINCIPAL' AND p.sexe = 'M' \
         AND (SELECT COUNT(*) FROM menage_personne x WHERE x.menage_id = d.menage_id) = 1",
    )
    .await;
    let all = count(
        &pool,
        "SELECT COUNT(DISTINCT menage_id) FROM demande WHERE type = 'URGENCE'",
    )
    .await;
    let share = men as f64 / all as f64;
    assert!((0.40..0.60).contains(&share), "hommes seuls : {share}");
}

async fn dump(pool: &SqlitePool) -> BTreeMap<&'static str, Vec<String>> {
    let mut out = BTreeMap::new();
    for table in operational::TABLES {
        let columns: Vec<String> = table
            .columns
            .iter()
            .map(|c| format!("COALESCE(CAST({} AS TEXT), '∅')", c.name))
            .collect();
        let sql = format!(
            "SELECT {} FROM {} ORDER BY id",
            columns.join(" || '|' || "),
            table.name
        );
        let rows: Vec<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
            .fetch_all(pool)
            .await
            .unwrap();
        out.insert(table.name, rows);
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn purges_merges_and_corrections_over_years_and_continuation() {
    // 2022, then continued to July 2024: households last active in the first half of 2022
    // are purged, duplicates registered at the end of 2022 are merged in 2023 and their
    // households still there.
    let tmp = temp_dir("years");
    let url = sqlite_url(tmp.path());
    let first = config(&["93"], "2022-01-01", "2023-01-01", 0.02, 0.0);
    observatoire::simulate(&url, &first, false, |_, _| {})
        .await
        .unwrap();
    let pool_a = pool(&url).await;
    let households_a = ids(&pool_a, "SELECT id FROM menage").await;
    let persons_a = ids(&pool_a, "SELECT id FROM personne").await;
    let mut requests_of: HashMap<i64, Vec<i64>> = HashMap::new();
    for (d, m) in sqlx::query_as::<_, (i64, i64)>("SELECT id, menage_id FROM demande")
        .fetch_all(&pool_a)
        .await
        .unwrap()
    {
        requests_of.entry(m).or_default().push(d);
    }
    let links_a: HashMap<i64, i64> =
        sqlx::query_as::<_, (i64, i64)>("SELECT id, personne_id FROM demande_personne")
            .fetch_all(&pool_a)
            .await
            .unwrap()
            .into_iter()
            .collect();
    pool_a.close().await;

    let report = observatoire::simulate_continue(&url, date("2024-07-01"), |_, _| {})
        .await
        .unwrap();
    let s = &report.summary;
    assert!(s.purged_households > 0, "{s:?}");
    assert!(s.merged_persons > 0, "{s:?}");
    assert!(s.corrections > 0, "{s:?}");
    let pool_b = pool(&url).await;

    // Purged households are gone with everything attached.
    let households_b = ids(&pool_b, "SELECT id FROM menage").await;
    let purged: Vec<i64> = households_a.difference(&households_b).copied().collect();
    assert!(!purged.is_empty());
    let requests_b = ids(&pool_b, "SELECT id FROM demande").await;
    for h in &purged {
        for d in requests_of.get(h).into_iter().flatten() {
            assert!(
                !requests_b.contains(d),
                "request {d} of purged household {h}"
            );
        }
    }
    for sql in [
        "SELECT COUNT(*) FROM demande WHERE menage_id NOT IN (SELECT id FROM menage)",
        "SELECT COUNT(*) FROM demande_personne WHERE personne_id NOT IN (SELECT id FROM personne)",
        "SELECT COUNT(*) FROM demande_personne WHERE demande_id NOT IN (SELECT id FROM demande)",
        "SELECT COUNT(*) FROM menage_personne WHERE personne_id NOT IN (SELECT id FROM personne)",
        "SELECT COUNT(*) FROM prise_en_charge WHERE menage_id NOT IN (SELECT id FROM menage)",
        "SELECT COUNT(*) FROM evaluation WHERE menage_id NOT IN (SELECT id FROM menage)",
    ] {
        assert_eq!(count(&pool_b, sql).await, 0, "{sql}");
    }

    // Merged persons: deleted, and their request links now point to the person kept.
    let persons_b = ids(&pool_b, "SELECT id FROM personne").await;
    let links_b: HashMap<i64, i64> =
        sqlx::query_as::<_, (i64, i64)>("SELECT id, personne_id FROM demande_personne")
            .fetch_all(&pool_b)
            .await
            .unwrap()
            .into_iter()
            .collect();
    let moved = links_a
        .iter()
        .filter(|(link, person)| {
            !persons_b.contains(person)
                && persons_a.contains(person)
                && links_b
                    .get(link)
                    .is_some_and(|now| now != *person && persons_b.contains(now))
        })
        .count();
    assert!(moved > 0, "no link moved by a merge");

    // Late corrections: refusals turned into ANNULEE days after the call.
    let corrected = count(
        &pool_b,
        "SELECT COUNT(*) FROM demande WHERE type = 'URGENCE' AND statut = 'ANNULEE' \
         AND julianday(substr(updated_at, 1, 10)) - julianday(substr(date_demande, 1, 10)) >= 2",
    )
    .await;
    assert!(corrected > 0);

    // Continuing gives exactly what one run to the same day gives.
    let tmp2 = temp_dir("years-direct");
    let url2 = sqlite_url(tmp2.path());
    let direct = config(&["93"], "2022-01-01", "2024-07-01", 0.02, 0.0);
    observatoire::simulate(&url2, &direct, false, |_, _| {})
        .await
        .unwrap();
    let pool_c = pool(&url2).await;
    assert!(dump(&pool_b).await == dump(&pool_c).await);
}

/// Each rule of SOURCE_SCHEMA.md's last section, as its own SQL on the source
/// (SQLite; timestamps carry their Paris offset, so their first 10 characters are
/// the Paris date).
const RULES: &[(&str, &str)] = &[
    (
        "CHAMP_OBLIGATOIRE",
        "SELECT (SELECT COUNT(*) FROM demande WHERE menage_id IS NULL OR type IS NULL OR statut IS NULL OR siao_departement IS NULL OR date_demande IS NULL)
         + (SELECT COUNT(*) FROM prise_en_charge WHERE menage_id IS NULL OR dispositif_id IS NULL OR date_entree IS NULL OR nb_personnes IS NULL)
         + (SELECT COUNT(*) FROM dispositif WHERE departement IS NULL OR categorie IS NULL OR type IS NULL)
         + (SELECT COUNT(*) FROM groupe_places WHERE dispositif_id IS NULL OR nb_places IS NULL OR date_debut IS NULL)
         + (SELECT COUNT(*) FROM orientation WHERE demande_id IS NULL OR date_orientation IS NULL OR statut IS NULL)
         + (SELECT COUNT(*) FROM demande_personne WHERE demande_id IS NULL OR personne_id IS NULL)
         + (SELECT COUNT(*) FROM menage_personne WHERE menage_id IS NULL OR personne_id IS NULL OR date_debut IS NULL)",
    ),
    (
        "CODE_INCONNU_OBLIGATOIRE",
        "SELECT (SELECT COUNT(*) FROM demande WHERE type NOT IN ('URGENCE', 'INSERTION') OR statut NOT IN ('EN_COURS', 'POURVUE', 'NON_POURVUE', 'ANNULEE'))
         + (SELECT COUNT(*) FROM orientation WHERE statut NOT IN ('EN_ATTENTE', 'ACCEPTEE', 'REFUSEE_STRUCTURE', 'REFUSEE_USAGER', 'ANNULEE'))
         + (SELECT COUNT(*) FROM dispositif WHERE categorie NOT IN ('HEBERGEMENT', 'LOGEMENT_ADAPTE', 'IML', 'VEILLE_SOCIALE', 'ACCOMPAGNEMENT', 'PREMIER_ACCUEIL'))",
    ),
    (
        "CODE_INCONNU",
        "SELECT (SELECT COUNT(*) FROM demande WHERE canal NOT IN ('APPEL_115', 'MARAUDE', 'ACCUEIL_JOUR', 'PRESCRIPTEUR', 'AUTRE')
                 OR motif_non_pourvue NOT IN ('ABSENCE_PLACE', 'PLACE_INADAPTEE_COMPOSITION', 'PLACE_INADAPTEE_SANTE', 'REFUS_USAGER', 'AUTRE'))
         + (SELECT COUNT(*) FROM personne WHERE sexe NOT IN ('F', 'M', 'INCONNU') OR nationalite NOT IN ('FRANCAISE', 'UE', 'HORS_UE', 'APATRIDE', 'INCONNU'))
         + (SELECT COUNT(*) FROM menage_personne WHERE role NOT IN ('DEMANDEUR_PRINCIPAL', 'CONJOINT', 'ENFANT', 'AUTRE_ADULTE', 'AUTRE_MINEUR'))
         + (SELECT COUNT(*) FROM orientation WHERE motif_refus NOT IN ('PUBLIC_INADAPTE', 'CAPACITE', 'CONDITIONS_REFUSEES', 'LOCALISATION', 'AUTRE'))
         + (SELECT COUNT(*) FROM prise_en_charge WHERE motif_sortie NOT IN ('ACCES_LOGEMENT', 'LOGEMENT_ADAPTE', 'AUTRE_HEBERGEMENT', 'FIN_NUITEE_115', 'EXCLUSION', 'DEPART_VOLONTAIRE', 'DECES', 'INCONNU'))
         + (SELECT COUNT(*) FROM liste_attente WHERE motif_desinscription NOT IN ('ORIENTATION_ACTEE', 'ANNULATION_DEMANDE', 'REFUS', 'AUTRE'))
         + (SELECT COUNT(*) FROM evaluation WHERE type NOT IN ('FLASH', 'APPROFONDIE'))
         + (SELECT COUNT(*) FROM dispositif WHERE volet NOT IN ('URGENCE', 'INSERTION'))",
    ),
    (
        "REFERENCE_ORPHELINE",
        "SELECT (SELECT COUNT(*) FROM demande WHERE menage_id NOT IN (SELECT id FROM menage))
         + (SELECT COUNT(*) FROM demande_personne WHERE demande_id NOT IN (SELECT id FROM demande) OR personne_id NOT IN (SELECT id FROM personne))
         + (SELECT COUNT(*) FROM orientation WHERE demande_id NOT IN (SELECT id FROM demande))
         + (SELECT COUNT(*) FROM prise_en_charge WHERE dispositif_id NOT IN (SELECT id FROM dispositif) OR demande_id NOT IN (SELECT id FROM demande) OR menage_id NOT IN (SELECT id FROM menage))
         + (SELECT COUNT(*) FROM groupe_places WHERE dispositif_id NOT IN (SELECT id FROM dispositif))
         + (SELECT COUNT(*) FROM menage_personne WHERE menage_id NOT IN (SELECT id FROM menage) OR personne_id NOT IN (SELECT id FROM personne))",
    ),
    (
        "DATES_INCOHERENTES",
        "SELECT (SELECT COUNT(*) FROM prise_en_charge WHERE date_sortie < date_entree)
         + (SELECT COUNT(*) FROM groupe_places WHERE date_fin < date_debut)
         + (SELECT COUNT(*) FROM menage_personne WHERE date_fin < date_debut)",
    ),
    (
        "STATUT_SANS_DATE",
        "SELECT COUNT(*) FROM demande WHERE statut IN ('POURVUE', 'NON_POURVUE', 'ANNULEE') AND date_statut IS NULL",
    ),
    (
        "DOUBLON_115",
        "SELECT COUNT(DISTINCT b.id) FROM demande b
         JOIN demande_personne pb ON pb.demande_id = b.id
         JOIN demande_personne pa ON pa.personne_id = pb.personne_id
         JOIN demande a ON a.id = pa.demande_id
         WHERE a.id < b.id AND a.type = 'URGENCE' AND b.type = 'URGENCE'
           AND a.statut <> 'ANNULEE' AND b.statut <> 'ANNULEE'
           AND a.siao_departement = b.siao_departement
           AND substr(a.date_demande, 1, 10) = substr(b.date_demande, 1, 10)",
    ),
    (
        "MOTIF_MANQUANT",
        "SELECT COUNT(*) FROM demande WHERE statut = 'NON_POURVUE' AND motif_non_pourvue IS NULL",
    ),
    (
        "DEPARTEMENT_HORS_COG",
        "SELECT (SELECT COUNT(*) FROM demande WHERE siao_departement NOT IN (COG))
         + (SELECT COUNT(*) FROM dispositif WHERE departement NOT IN (COG))",
    ),
    (
        "SEJOURS_CHEVAUCHANTS",
        "SELECT COUNT(DISTINCT b.id) FROM prise_en_charge b JOIN prise_en_charge a
           ON a.menage_id = b.menage_id AND a.id < b.id
          AND a.date_entree < COALESCE(b.date_sortie, '9999-12-31')
          AND b.date_entree < COALESCE(a.date_sortie, '9999-12-31')
          AND b.date_sortie >= b.date_entree AND a.date_sortie >= a.date_entree",
    ),
    (
        "DEMANDE_SANS_PERSONNE",
        "SELECT COUNT(*) FROM demande d WHERE NOT EXISTS (SELECT 1 FROM demande_personne p WHERE p.demande_id = d.id)",
    ),
];

async fn rule_counts(pool: &SqlitePool) -> BTreeMap<&'static str, i64> {
    let cog = operational::territory::departements()
        .map(|d| format!("'{}'", d.code))
        .collect::<Vec<_>>()
        .join(", ");
    let mut out = BTreeMap::new();
    for (rule, sql) in RULES {
        out.insert(*rule, count(pool, &sql.replace("COG", &cog)).await);
    }
    out
}

fn manifest_counts(path: &std::path::Path) -> BTreeMap<String, i64> {
    let text = std::fs::read_to_string(path).unwrap();
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some("table,id,rule"));
    let mut out = BTreeMap::new();
    for line in lines {
        let rule = line.rsplit(',').next().unwrap().to_owned();
        *out.entry(rule).or_insert(0) += 1;
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn injected_defects_are_found_by_their_rules_and_none_without() {
    assert_eq!(RULES.len(), operational::simulator::DEFECT_RULES.len());
    for rate in [0.01, 0.0] {
        let tmp = temp_dir("defects");
        let url = sqlite_url(tmp.path());
        let c = config(&["93", "23"], "2025-01-01", "2025-05-01", 0.03, rate);
        let report = observatoire::simulate(&url, &c, false, |_, _| {})
            .await
            .unwrap();
        let manifest = tmp.path().join("defauts.csv");
        observatoire::write_manifest(&manifest, &report.defects).unwrap();
        let listed = manifest_counts(&manifest);
        let found = rule_counts(&pool(&url).await).await;
        let merges = report.summary.merge_doublons as i64;
        for (rule, n) in &found {
            let expected = listed.get(*rule).copied().unwrap_or(0)
                + if *rule == "DOUBLON_115" { merges } else { 0 };
            assert_eq!(*n, expected, "taux {rate}, règle {rule}");
            if rate > 0.0 && *rule != "DOUBLON_115" {
                assert!(*n > 0, "taux {rate} : aucun défaut {rule}");
            }
        }
        if rate == 0.0 {
            assert!(listed.is_empty(), "{listed:?}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn same_seed_same_rows_on_postgresql_and_sqlite() {
    let Some(pg) = PgDatabase::create("sim_rows").await else {
        return;
    };
    let tmp = temp_dir("sim-rows");
    let url = sqlite_url(tmp.path());
    // Written up to 1 February, then continued to 1 March on both back ends: the
    // continuation's deletions and rewrites go through each back end's own path.
    let c = config(&["93", "23"], "2025-01-01", "2025-02-01", 0.02, 0.01);
    observatoire::simulate(&url, &c, false, |_, _| {})
        .await
        .unwrap();
    observatoire::simulate(&pg.url, &c, false, |_, _| {})
        .await
        .unwrap();
    let a = observatoire::simulate_continue(&url, date("2025-03-01"), |_, _| {})
        .await
        .unwrap();
    let b = observatoire::simulate_continue(&pg.url, date("2025-03-01"), |_, _| {})
        .await
        .unwrap();
    assert!(a.deleted > 0, "exits and answers rewrite rows");
    assert_eq!((a.inserted, a.deleted), (b.inserted, b.deleted));
    let lite = pool(&url).await;
    let pgpool = sqlx::PgPool::connect(&pg.url).await.unwrap();
    for table in ["demande", "prise_en_charge", "personne", "orientation"] {
        let sql =
            format!("SELECT id, COALESCE(updated_at IS NULL, false) FROM {table} ORDER BY id");
        let a: Vec<(i64, bool)> = sqlx::query_as(sqlx::AssertSqlSafe(sql.clone()))
            .fetch_all(&lite)
            .await
            .unwrap();
        let b: Vec<(i64, bool)> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .fetch_all(&pgpool)
            .await
            .unwrap();
        assert_eq!(a, b, "{table}");
    }
    // Dates and timestamps read back identically (as Paris-dated text).
    let a: Vec<(i64, String, Option<String>)> = sqlx::query_as(
        "SELECT id, substr(date_demande, 1, 16), date_statut FROM demande ORDER BY id",
    )
    .fetch_all(&lite)
    .await
    .unwrap();
    let b: Vec<(i64, String)> = sqlx::query_as(
        "SELECT id, to_char(date_demande AT TIME ZONE 'Europe/Paris', 'YYYY-MM-DD\"T\"HH24:MI') FROM demande ORDER BY id",
    )
    .fetch_all(&pgpool)
    .await
    .unwrap();
    assert_eq!(
        a.iter()
            .map(|(i, d, _)| (*i, d.clone()))
            .collect::<Vec<_>>(),
        b
    );
    pgpool.close().await;
    pg.drop_now().await;
}
