//! The observed interval [D0, D1] is the same at every run. DataFusion 55's dynamic
//! filters pushed from a MIN/MAX aggregate into the scans of a UNION ALL used to prune
//! one branch with another's bound (D0 = 2 March instead of 31 January here, about one
//! run in ten); the lake's sessions turn them off (`warehouse::new_session`).

use observatoire_tests::{
    ingest_and_compute, load_scenario, repo_root, sqlite_url, temp_dir, write_rows,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn observed_bounds_over_a_union_are_stable() {
    let scenario =
        load_scenario(&repo_root().join("tests/scenarios/04_mediane_basse.toml")).unwrap();
    let tmp = temp_dir("bornes");
    let url = sqlite_url(tmp.path());
    let source = operational::Source::create(&url).await.unwrap();
    write_rows(&source, &scenario.tables).await;
    ingest_and_compute(&url, tmp.path(), 1).await;
    let lake = warehouse::Lake::new(tmp.path());
    let sql = "SELECT CAST(MIN(d) AS VARCHAR), CAST(MAX(d) AS VARCHAR) FROM (
                   SELECT date_demande AS d FROM demande
                   UNION ALL SELECT date_entree FROM prise_en_charge
                   UNION ALL SELECT date_sortie FROM prise_en_charge
                   UNION ALL SELECT date_orientation FROM orientation)";
    let mut wrong = Vec::new();
    for _ in 0..60 {
        let (ctx, _) = lake.detail_session().await.unwrap();
        let b = ctx.sql(sql).await.unwrap().collect().await.unwrap();
        let found = (
            observatoire_tests::strings(b[0].column(0))[0].clone(),
            observatoire_tests::strings(b[0].column(1))[0].clone(),
        );
        if found != (Some("2025-01-31".into()), Some("2025-03-12".into())) {
            wrong.push(found);
        }
    }
    assert!(wrong.is_empty(), "bornes fausses : {wrong:?}");
}
