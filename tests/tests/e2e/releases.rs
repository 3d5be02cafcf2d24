//! The statistical base as an official statistic: past releases read back exactly, a
//! closed period survives purges in the source, and a revision changes it as a new,
//! labelled release while the former figure stays readable.

use std::collections::BTreeMap;
use std::path::Path;

use dashboards_api::StatRow;
use dashboards_api::values::{ValuesQuery, current_values};
use observatoire_tests::{all_stats, ingest_and_compute, simulate_small, sqlite_url, temp_dir};

fn options(threshold: i64) -> indicators::ComputeOptions {
    indicators::ComputeOptions {
        secrecy_threshold: threshold,
        ..Default::default()
    }
}

/// A regular release at threshold 1.
async fn publish_regular(data: &Path) -> indicators::Release {
    observatoire::publish(data, &options(1), &indicators::Publication::Regular, |_| {})
        .await
        .unwrap()
}

/// The values of `indicator` in `territory` by month, as the API reads them at `version`.
async fn monthly(
    data: &Path,
    indicator: &'static str,
    territory: &str,
    version: Option<i64>,
) -> Vec<StatRow> {
    let lake = warehouse::Lake::new(data);
    let version = version.map(|v| v.to_string());
    let q = ValuesQuery::from_params(
        indicator,
        Some(territory),
        Some("MOIS"),
        None,
        None,
        None,
        version.as_deref(),
    )
    .unwrap();
    // Read as the national administrator (every territory).
    let access = dashboards_api::authz::stats_access(&dashboards_api::authz::Principal {
        login: "test".into(),
        profile: dashboards_api::authz::Profile::AdministrateurNational,
        scope: dashboards_api::authz::Scope::France,
    });
    current_values(&lake, &access, &q).await.unwrap()
}

fn in_month<'a>(rows: &'a [StatRow], month: &str) -> &'a StatRow {
    rows.iter()
        .find(|r| r.periode == month)
        .unwrap_or_else(|| panic!("{month} absent"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_past_release_reads_back_exactly_after_two_more() {
    let tmp = temp_dir("publications");
    let url = sqlite_url(tmp.path());
    simulate_small(&url, &["23"], "2025-01-01", "2025-03-01", 0.2).await;
    let first = ingest_and_compute(&url, tmp.path(), 1).await;
    assert_eq!(first.version, 1);
    let indicators = [
        "demandes_115",
        "taux_dnp_115",
        "places_occupees",
        "personnes_demandeuses",
    ];
    let mut at_one = Vec::new();
    for i in indicators {
        at_one.push(monthly(tmp.path(), i, "D23", None).await);
    }
    // Two more months of activity, two more releases.
    for to in ["2025-04-01", "2025-05-01"] {
        let to = chrono::NaiveDate::parse_from_str(to, "%Y-%m-%d").unwrap();
        observatoire::simulate_continue(&url, to, |_, _| {})
            .await
            .unwrap();
        ingest_and_compute(&url, tmp.path(), 1).await;
    }
    let releases = observatoire::releases(tmp.path()).await.unwrap();
    let versions: Vec<i64> = releases.iter().map(|r| r.version).collect();
    assert_eq!(versions, [3, 2, 1]);
    let mut changed = false;
    for (i, before) in indicators.iter().zip(&at_one) {
        let again = monthly(tmp.path(), i, "D23", Some(1)).await;
        assert_eq!(
            &again, before,
            "{i} : publication 1 relue après les publications 2 et 3"
        );
        let now = monthly(tmp.path(), i, "D23", None).await;
        assert!(
            now.len() > before.len(),
            "{i} : mars et avril publiés depuis"
        );
        changed |= now.iter().any(|r| r.version > 1);
    }
    assert!(changed);
    assert!(
        at_one[0]
            .iter()
            .all(|r| r.version == 1 && r.statut == "PROVISOIRE")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_march_survives_a_purge_and_a_revision_changes_it() {
    let tmp = temp_dir("cloture");
    let url = sqlite_url(tmp.path());
    simulate_small(&url, &["23"], "2025-01-01", "2025-05-01", 0.2).await;
    ingest_and_compute(&url, tmp.path(), 1).await;
    let march = |rows: &[StatRow]| in_month(rows, "2025-03").clone();
    let published = march(&monthly(tmp.path(), "demandes_115", "D23", None).await);
    let march_value = published.valeur.unwrap();
    assert!(march_value > 0.0, "des demandes en mars");
    assert_eq!(published.statut, "PROVISOIRE");

    // Closing March publishes its periods DEFINITIF (release 2), nothing else.
    let new = observatoire::close_months(tmp.path(), &[(2025, 3)])
        .await
        .unwrap();
    assert_eq!(new, [(2025, 3)]);
    assert!(
        observatoire::close_months(tmp.path(), &[(2025, 3)])
            .await
            .unwrap()
            .is_empty()
    );
    let closing = publish_regular(tmp.path()).await;
    assert_eq!(closing.version, 2);
    // Same ingest run, nothing to recompute: only March's status changes.
    assert_eq!(closing.recomputed.0, 0);
    assert!(closing.rows > 0 && closing.rows < closing.cells);
    let rows = monthly(tmp.path(), "demandes_115", "D23", None).await;
    let closed = march(&rows);
    assert_eq!(
        (closed.statut.as_str(), closed.valeur, closed.version),
        ("DEFINITIF", Some(march_value), 2)
    );
    assert_eq!(in_month(&rows, "2025-04").statut, "PROVISOIRE");
    assert_eq!(in_month(&rows, "2025-02").statut, "PROVISOIRE");

    // The households that asked in March are purged from the source.
    let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
    let households = "(SELECT DISTINCT menage_id FROM demande
                       WHERE date_demande >= '2025-03-01' AND date_demande < '2025-04-01')";
    let requests = format!("(SELECT id FROM demande WHERE menage_id IN {households})");
    for sql in [
        format!("DELETE FROM orientation WHERE demande_id IN {requests}"),
        format!("DELETE FROM liste_attente WHERE demande_id IN {requests}"),
        format!("DELETE FROM demande_personne WHERE demande_id IN {requests}"),
        format!("DELETE FROM prise_en_charge WHERE menage_id IN {households}"),
        format!("DELETE FROM evaluation WHERE menage_id IN {households}"),
        format!("DELETE FROM note WHERE menage_id IN {households}"),
        format!("DELETE FROM menage_personne WHERE menage_id IN {households}"),
        format!("DELETE FROM menage WHERE id IN {households}"),
        format!("DELETE FROM demande WHERE menage_id IN {households}"),
    ] {
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .execute(&pool)
            .await
            .unwrap();
    }
    pool.close().await;
    let ingest = observatoire::IngestOptions {
        allow_mass_delete: true,
        ..Default::default()
    };
    observatoire::ingest_with_options(&url, tmp.path(), &ingest, |_| {})
        .await
        .unwrap();
    let after = publish_regular(tmp.path()).await;
    assert_eq!(after.version, 3);
    let rows = monthly(tmp.path(), "demandes_115", "D23", None).await;
    let still = march(&rows);
    assert_eq!(
        (still.valeur, still.version, still.statut.as_str()),
        (Some(march_value), 2, "DEFINITIF"),
        "mars clôturé ne change pas"
    );
    // April, still open, was recomputed by release 3.
    assert_eq!(in_month(&rows, "2025-04").version, 3);

    // A revision without a reason, or of an open month, is refused.
    let err = observatoire::publish(
        tmp.path(),
        &options(1),
        &indicators::Publication::Revision {
            month: (2025, 4),
            reason: "purge".into(),
        },
        |_| {},
    )
    .await
    .unwrap_err()
    .to_string();
    assert!(err.contains("2025-04") && err.contains("clôturé"), "{err}");
    let err = observatoire::publish(
        tmp.path(),
        &options(1),
        &indicators::Publication::Revision {
            month: (2025, 3),
            reason: " ".into(),
        },
        |_| {},
    )
    .await
    .unwrap_err()
    .to_string();
    assert!(err.contains("motif"), "{err}");

    // The revision recomputes March: the purged requests are gone.
    let revision = observatoire::publish(
        tmp.path(),
        &options(1),
        &indicators::Publication::Revision {
            month: (2025, 3),
            reason: "purge RGPD des ménages de mars".into(),
        },
        |_| {},
    )
    .await
    .unwrap();
    assert_eq!(revision.version, 4);
    let rows = monthly(tmp.path(), "demandes_115", "D23", None).await;
    let revised = march(&rows);
    assert_eq!(revised.version, 4);
    assert_eq!(revised.statut, "DEFINITIF");
    assert_eq!(
        revised.revision.as_deref(),
        Some("purge RGPD des ménages de mars")
    );
    assert!(
        revised.valeur.unwrap() < march_value,
        "{:?} < {march_value}",
        revised.valeur
    );
    // Only periods made of closed months holding March were revised.
    assert_eq!(in_month(&rows, "2025-04").version, 3);
    // Both stay readable.
    let before = march(&monthly(tmp.path(), "demandes_115", "D23", Some(3)).await);
    assert_eq!((before.valeur, before.version), (Some(march_value), 2));
    let list = observatoire::releases(tmp.path()).await.unwrap();
    assert_eq!(list[0].nature, "REVISION");
    assert!(list[0].motif.as_deref().unwrap().starts_with("2025-03"));
    assert_eq!(list[1].nature, "CALCUL");
    // A later regular release leaves the revision in place.
    publish_regular(tmp.path()).await;
    let rows = monthly(tmp.path(), "demandes_115", "D23", None).await;
    assert_eq!(march(&rows).version, 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_modality_whose_records_are_purged_is_published_again_with_nothing() {
    let tmp = temp_dir("retrait");
    let file = tmp.path().join("scenario.toml");
    std::fs::write(
        &file,
        r#"
description = "Une modalité dont la seule demande est purgée"
menage = [
  { id = 1, siao_departement = "93", date_creation = "2025-01-01" },
  { id = 2, siao_departement = "93", date_creation = "2025-01-01" },
]
demande = [
  { id = 1, menage_id = 1, type = "URGENCE", siao_departement = "93", date_demande = "2025-03-03T21:00:00+01:00", canal = "APPEL_115", statut = "NON_POURVUE", date_statut = "2025-03-03T22:00:00+01:00", motif_non_pourvue = "ABSENCE_PLACE" },
  { id = 2, menage_id = 2, type = "URGENCE", siao_departement = "93", date_demande = "2025-03-04T21:00:00+01:00", canal = "APPEL_115", statut = "NON_POURVUE", date_statut = "2025-03-04T22:00:00+01:00", motif_non_pourvue = "REFUS_USAGER" },
]
attendu = []
"#,
    )
    .unwrap();
    let scenario = observatoire_tests::load_scenario(&file).unwrap();
    let url = sqlite_url(tmp.path());
    let source = operational::Source::create(&url).await.unwrap();
    observatoire_tests::write_rows(&source, &scenario.tables).await;
    ingest_and_compute(&url, tmp.path(), 1).await;
    let motif = |rows: &[StatRow], m: &str| {
        rows.iter()
            .find(|r| {
                r.indicateur == "dnp_115"
                    && r.code_territoire == "D93"
                    && r.periode == "2025-03"
                    && r.dimension == "motif"
                    && r.modalite == m
            })
            .map(|r| (r.valeur, r.version))
    };
    let rows = observatoire_tests::all_stats(tmp.path()).await;
    assert_eq!(motif(&rows, "REFUS_USAGER"), Some((Some(1.0), 1)));

    let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
    sqlx::query("DELETE FROM demande WHERE id = 2")
        .execute(&pool)
        .await
        .unwrap();
    pool.close().await;
    let ingest = observatoire::IngestOptions {
        allow_mass_delete: true,
        ..Default::default()
    };
    observatoire::ingest_with_options(&url, tmp.path(), &ingest, |_| {})
        .await
        .unwrap();
    publish_regular(tmp.path()).await;
    // The current figure of each key is its highest version.
    let mut rows = observatoire_tests::all_stats(tmp.path()).await;
    rows.sort_by_key(|r| std::cmp::Reverse(r.version));
    assert_eq!(motif(&rows, "REFUS_USAGER"), Some((Some(0.0), 2)));
    // Unchanged, it is not published again: its current figure is release 1's.
    assert_eq!(motif(&rows, "ABSENCE_PLACE"), Some((Some(1.0), 1)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_convention_indicator_is_computed_and_shown_only_in_its_departement() {
    let tmp = temp_dir("convention");
    let file = tmp.path().join("scenario.toml");
    std::fs::write(
        &file,
        r#"
description = "Un indicateur de la convention de Seine-Saint-Denis"
menage = [
  { id = 1, siao_departement = "93", date_creation = "2025-01-01" },
  { id = 2, siao_departement = "75", date_creation = "2025-01-01" },
]
demande = [
  { id = 1, menage_id = 1, type = "URGENCE", siao_departement = "93", date_demande = "2025-03-03T21:00:00+01:00", canal = "MARAUDE", statut = "EN_COURS" },
  { id = 2, menage_id = 1, type = "URGENCE", siao_departement = "93", date_demande = "2025-03-04T21:00:00+01:00", canal = "APPEL_115", statut = "EN_COURS" },
  { id = 3, menage_id = 2, type = "URGENCE", siao_departement = "75", date_demande = "2025-03-05T21:00:00+01:00", canal = "MARAUDE", statut = "EN_COURS" },
]
attendu = []
"#,
    )
    .unwrap();
    std::fs::write(
        tmp.path().join("conventions.toml"),
        r#"
[[indicateur]]
code = "C93-01"
id = "demandes_maraude_93"
territoire = "93"
libelle = "Demandes venues des maraudes"
definition = "Demandes de la période dont le canal est MARAUDE (convention préfet–SIAO de la Seine-Saint-Denis)."
unite = "demandes"
sdc = "COMPTE"
mesure = "SUM"
sql = "SELECT siao_departement AS departement, date_demande AS jour, 1 AS w FROM demande WHERE canal = 'MARAUDE' AND statut <> 'ANNULEE'"
"#,
    )
    .unwrap();
    let scenario = observatoire_tests::load_scenario(&file).unwrap();
    let url = sqlite_url(tmp.path());
    let source = operational::Source::create(&url).await.unwrap();
    observatoire_tests::write_rows(&source, &scenario.tables).await;
    ingest_and_compute(&url, tmp.path(), 1).await;
    let rows: Vec<StatRow> = observatoire_tests::all_stats(tmp.path())
        .await
        .into_iter()
        .filter(|r| r.indicateur == "demandes_maraude_93")
        .collect();
    assert!(!rows.is_empty());
    assert!(
        rows.iter().all(|r| r.code_territoire == "D93"),
        "seulement en Seine-Saint-Denis"
    );
    let march = rows.iter().find(|r| r.periode == "2025-03").unwrap();
    assert_eq!(march.valeur, Some(1.0), "la demande 3 est à Paris");

    // The API lists it after the national catalogue, with its territory, and serves it.
    let conventions = observatoire::conventions(tmp.path()).unwrap();
    let server = observatoire_tests::TestServer::start(
        tmp.path(),
        "93",
        dashboards_api::ServerConfig::new(tmp.path()).with_conventions(conventions),
    );
    use dashboards_api::authz::Profile;
    let (_, list) = server
        .get_as(Profile::AdministrateurDepartemental, "/api/v1/indicateurs")
        .await;
    let last = list.as_array().unwrap().last().unwrap();
    assert_eq!(last["id"], "demandes_maraude_93");
    assert_eq!(last["territoire"], "93");
    let (status, values) = server
        .get_as(
            Profile::AdministrateurDepartemental,
            "/api/v1/indicateurs/demandes_maraude_93/valeurs?territoire=D93&pas=MOIS",
        )
        .await;
    assert_eq!(status, 200, "{values}");
    let values: Vec<StatRow> = serde_json::from_value(values).unwrap();
    assert_eq!(values.len(), 1);
    assert_eq!(values[0].valeur, Some(1.0));
    // Shown only where it is declared: not to a caller who cannot see the 93's cells.
    let other = observatoire_tests::TestServer::start(
        tmp.path(),
        "75",
        dashboards_api::ServerConfig {
            audit_dir: Some(tmp.path().join("journal-audit-2")),
            ..dashboards_api::ServerConfig::new(tmp.path())
                .with_conventions(observatoire::conventions(tmp.path()).unwrap())
        },
    );
    let (_, list) = other
        .get_as(Profile::AdministrateurSiao, "/api/v1/indicateurs")
        .await;
    assert!(
        list.as_array()
            .unwrap()
            .iter()
            .all(|i| i["id"] != "demandes_maraude_93"),
        "a convention of the 93 listed to the SIAO of Paris"
    );
    let (status, _) = other
        .get_as(
            Profile::AdministrateurSiao,
            "/api/v1/indicateurs/demandes_maraude_93/valeurs?territoire=D75&pas=MOIS",
        )
        .await;
    assert_eq!(status, 404);

    // A malformed convention file is refused with its name and the problem.
    std::fs::write(
        tmp.path().join("conventions.toml"),
        "[[indicateur]]\ncode = \"C93-02\"\nid = \"x\"\nterritoire = \"99\"\nlibelle = \"l\"\ndefinition = \"d\"\nunite = \"u\"\nsdc = \"COMPTE\"\nmesure = \"SUM\"\nsql = \"SELECT 1\"\n",
    )
    .unwrap();
    let err = observatoire::conventions(tmp.path())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("conventions.toml") && err.contains("99"),
        "{err}"
    );
}

/// Asserts that the current figures of a lake computed release after release (`nightly`)
/// are those of a lake built once from the same source (`once`), every column but
/// `version`.
async fn assert_same_current_figures(once: &Path, nightly: &Path) {
    let expected = current(all_stats(once).await);
    let got = current(all_stats(nightly).await);
    assert!(expected.len() > 10_000, "{} cellules", expected.len());
    let strip = |r: &StatRow| StatRow {
        version: 0,
        ..r.clone()
    };
    let mut differing = Vec::new();
    for (key, want) in &expected {
        match got.get(key) {
            None => differing.push(format!("{key:?} absente")),
            Some(have) if strip(have) != strip(want) => {
                differing.push(format!("{key:?} : {have:?} au lieu de {want:?}"))
            }
            Some(_) => {}
        }
    }
    assert!(
        differing.is_empty(),
        "{} cellules diffèrent, dont {:?}",
        differing.len(),
        &differing[..differing.len().min(5)]
    );
    // What the nightly lake holds beyond: days that left the JOUR window (the 90 days
    // ending at D1), kept as last published, and modalities whose last records went away
    // (an orientation no longer EN_ATTENTE), published again with nothing (0 or
    // undefined) where the full recompute has no row: the same figure.
    let first_day = expected
        .values()
        .filter(|r| r.pas == "JOUR")
        .map(|r| r.debut)
        .min()
        .unwrap();
    for (key, row) in &got {
        if !expected.contains_key(key) {
            let left_the_window = row.pas == "JOUR" && row.debut < first_day;
            let emptied = !row.dimension.is_empty()
                && !row.secret
                && row.valeur.is_none_or(|v| v == 0.0)
                && row.numerateur.is_none_or(|v| v == 0.0);
            assert!(
                left_the_window || emptied,
                "{key:?} publiée par les calculs successifs seulement : {row:?}"
            );
        }
    }
}

/// The current figure of every cell: the row of the highest version per cell.
fn current(rows: Vec<StatRow>) -> BTreeMap<[String; 7], StatRow> {
    let mut out: BTreeMap<[String; 7], StatRow> = BTreeMap::new();
    for row in rows {
        let key = [
            row.indicateur.clone(),
            row.territoire_niveau.clone(),
            row.territoire.clone(),
            row.pas.clone(),
            row.periode.clone(),
            row.dimension.clone(),
            row.modalite.clone(),
        ];
        match out.get(&key) {
            Some(kept) if kept.version >= row.version => {}
            _ => {
                out.insert(key, row);
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn incremental_ingests_and_computes_equal_a_full_recompute() {
    let tmp = temp_dir("incremental-vs-full");
    let url = sqlite_url(tmp.path());
    let day = |s: &str| chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap();
    let nightly = tmp.path().join("nightly");
    simulate_small(&url, &["23", "93"], "2025-01-01", "2025-02-20", 0.2).await;
    ingest_and_compute(&url, &nightly, 11).await;
    // The source lives on: new days, exits, late corrections; ingest and compute after each.
    for to in ["2025-02-21", "2025-03-10", "2025-04-05"] {
        observatoire::simulate_continue(&url, day(to), |_, _| {})
            .await
            .unwrap();
        let release = ingest_and_compute(&url, &nightly, 11).await;
        // Incremental: the periods the new days do not touch are not recomputed.
        let (recomputed, pairs) = release.recomputed;
        assert_eq!(release.full_reason, None, "{to}");
        assert!(
            recomputed > 0 && recomputed < pairs,
            "{to} : {recomputed} sur {pairs}"
        );
        assert!(release.rows < release.cells, "{to} : {release:?}");
        // The changed periods found from the groups the runs rewrote, not from every
        // record of the history.
        assert!(release.from_changes > 0, "{to} : {release:?}");
        // Some cells followed by difference, without listing their periods' records.
        assert!(release.by_difference > 0, "{to} : {release:?}");
    }
    // A lake built once, from scratch, from the same source.
    let once = tmp.path().join("once");
    let full = ingest_and_compute(&url, &once, 11).await;
    assert_eq!(full.version, 1);
    assert_same_current_figures(&once, &nightly).await;
    assert!(all_stats(&nightly).await.iter().any(|r| r.version == 4));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_compute_interrupted_before_its_release_is_recorded_leaves_no_trace() {
    let tmp = temp_dir("interrompu");
    let url = sqlite_url(tmp.path());
    let day = |s: &str| chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap();
    let nightly = tmp.path().join("nightly");
    simulate_small(&url, &["23"], "2025-01-01", "2025-03-01", 0.2).await;
    ingest_and_compute(&url, &nightly, 11).await;
    observatoire::simulate_continue(&url, day("2025-03-10"), |_, _| {})
        .await
        .unwrap();
    let interrupted = ingest_and_compute(&url, &nightly, 11).await;
    assert_eq!(interrupted.version, 2);
    assert!(interrupted.rows > 0);
    // The process died before release 2 was recorded: its rows and its state are on
    // disk, its record is not (the second commit of stats/releases never happened).
    let record = nightly.join("lake/stats/releases/_delta_log/00000000000000000001.json");
    std::fs::remove_file(&record).unwrap();
    assert_eq!(observatoire::releases(&nightly).await.unwrap().len(), 1);

    // The source goes on; the next compute takes number 2 again.
    observatoire::simulate_continue(&url, day("2025-03-20"), |_, _| {})
        .await
        .unwrap();
    let next = ingest_and_compute(&url, &nightly, 11).await;
    assert_eq!(next.version, 2);
    assert_eq!(next.full_reason, None, "l'état de la publication 1 sert");
    let rows = all_stats(&nightly).await;
    assert!(rows.iter().all(|r| r.version <= 2));
    // No row of the interrupted compute is left beside release 2's: the figures are a
    // fresh lake's.
    let once = tmp.path().join("once");
    ingest_and_compute(&url, &once, 11).await;
    let expected = current(all_stats(&once).await);
    let got = current(rows);
    let strip = |r: &StatRow| StatRow {
        version: 0,
        ..r.clone()
    };
    let differing: Vec<String> = expected
        .iter()
        .filter(|(k, want)| got.get(*k).map(strip) != Some(strip(want)))
        .map(|(k, _)| format!("{k:?}"))
        .take(5)
        .collect();
    assert!(differing.is_empty(), "{differing:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_state_whose_grid_is_gone_makes_a_full_compute_with_the_same_figures() {
    let tmp = temp_dir("grille-perdue");
    let url = sqlite_url(tmp.path());
    let day = |s: &str| chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap();
    let nightly = tmp.path().join("nightly");
    simulate_small(&url, &["23"], "2025-01-01", "2025-03-01", 0.2).await;
    ingest_and_compute(&url, &nightly, 1).await;
    // Release 1's fingerprints are there, its grid (read beside the changes) is not.
    let grille = nightly.join("lake/calcul/grille");
    assert!(grille.is_dir());
    std::fs::remove_dir_all(&grille).unwrap();
    observatoire::simulate_continue(&url, day("2025-03-10"), |_, _| {})
        .await
        .unwrap();
    let second = ingest_and_compute(&url, &nightly, 1).await;
    assert_eq!(second.version, 2);
    assert_eq!(
        second.full_reason.as_deref(),
        Some("pas d'état de calcul de la publication précédente")
    );
    let once = tmp.path().join("once");
    ingest_and_compute(&url, &once, 1).await;
    assert_same_current_figures(&once, &nightly).await;
    // Release 2 left a whole state: the next compute goes on from it.
    observatoire::simulate_continue(&url, day("2025-03-12"), |_, _| {})
        .await
        .unwrap();
    let third = ingest_and_compute(&url, &nightly, 1).await;
    assert_eq!(third.full_reason, None);
}
