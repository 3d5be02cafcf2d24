//! The same seed simulated into PostgreSQL and into SQLite gives identical statistics.

use observatoire_tests::{PgDatabase, all_stats, ingest_and_compute, sqlite_url, temp_dir};
use operational::simulator::SimulationConfig;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_and_sqlite_sources_give_identical_stats() {
    let Some(pg) = PgDatabase::create("backends").await else {
        return;
    };
    let config = SimulationConfig {
        departements: vec!["93".into(), "23".into()],
        from: chrono::NaiveDate::from_ymd_opt(2025, 1, 1).unwrap(),
        to: chrono::NaiveDate::from_ymd_opt(2025, 4, 1).unwrap(),
        seed: 42,
        scale: 0.05,
        defects: 0.0,
    };
    let sqlite_dir = temp_dir("sqlite");
    let pg_dir = temp_dir("pg");
    let sqlite = sqlite_url(sqlite_dir.path());
    observatoire::simulate(&sqlite, &config, false, |_, _| {})
        .await
        .unwrap();
    observatoire::simulate(&pg.url, &config, false, |_, _| {})
        .await
        .unwrap();
    ingest_and_compute(&sqlite, sqlite_dir.path(), 11).await;
    ingest_and_compute(&pg.url, pg_dir.path(), 11).await;
    let key = |r: &dashboards_api::StatRow| {
        (
            r.indicateur.clone(),
            r.code_territoire.clone(),
            r.pas.clone(),
            r.periode.clone(),
            r.dimension.clone(),
            r.modalite.clone(),
        )
    };
    let strip = |mut rows: Vec<dashboards_api::StatRow>| {
        for r in &mut rows {
            r.version = 0;
        }
        rows.sort_by_key(key);
        rows
    };
    let a = strip(all_stats(sqlite_dir.path()).await);
    let b = strip(all_stats(pg_dir.path()).await);
    pg.drop_now().await;
    // Every indicator's total for D93 D23 R11 R75 FR and every period; modalities besides.
    let periods: std::collections::BTreeSet<_> = a
        .iter()
        .map(|r| (r.pas.clone(), r.periode.clone()))
        .collect();
    assert!(periods.len() > 100, "{} périodes", periods.len());
    let totals = a.iter().filter(|r| r.dimension.is_empty()).count();
    assert_eq!(totals, 5 * periods.len() * indicators::CATALOGUE.len());
    assert!(a.len() > totals);
    assert!(a.iter().any(|r| r.valeur.is_some_and(|v| v > 0.0)));
    assert_eq!(a.len(), b.len());
    for (x, y) in a.iter().zip(&b) {
        assert_eq!(x, y);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simulate_refuses_a_database_that_already_holds_data() {
    let Some(pg) = PgDatabase::create("refuse").await else {
        return;
    };
    let config = SimulationConfig {
        departements: vec!["23".into()],
        from: chrono::NaiveDate::from_ymd_opt(2025, 1, 1).unwrap(),
        to: chrono::NaiveDate::from_ymd_opt(2025, 2, 1).unwrap(),
        seed: 1,
        scale: 0.05,
        defects: 0.0,
    };
    observatoire::simulate(&pg.url, &config, false, |_, _| {})
        .await
        .unwrap();
    let err = observatoire::simulate(&pg.url, &config, false, |_, _| {})
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("contient déjà des données"),
        "{err}"
    );
    pg.drop_now().await;
}
