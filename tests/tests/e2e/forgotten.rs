//! The right to be forgotten: a household purged in the source leaves the detail zone
//! at the next ingest, and after `vacuum` (window 0) no file of the lake holds its
//! pseudonym and the earlier Delta versions that held it can no longer be read.

use std::path::Path;

use observatoire_tests::{TEST_KEY_HEX, simulate_small, sqlite_url, temp_dir};

/// The analyst zone's k in this test.
const K: usize = 1;

/// The lake's files that hold `needle`: in a Parquet file's decoded values (data files
/// and checkpoints), or in the text of any other file (Delta commits, manifests).
fn files_holding(lake: &Path, needle: &str) -> Vec<String> {
    let all = observatoire_tests::files_below(lake);
    let mut out = Vec::new();
    for path in all {
        let name = path.to_string_lossy().into_owned();
        let bytes = std::fs::read(&path).unwrap();
        let found = if name.ends_with(".parquet") {
            observatoire_tests::parquet_batches(&path)
                .iter()
                .any(|batch| {
                    batch.columns().iter().any(|c| {
                        arrow::compute::cast(c, &arrow::datatypes::DataType::Utf8).is_ok_and(|c| {
                            use arrow::array::AsArray;
                            c.as_string::<i32>()
                                .iter()
                                .flatten()
                                .any(|v| v.contains(needle))
                        })
                    })
                })
                || bytes.windows(needle.len()).any(|w| w == needle.as_bytes())
        } else {
            bytes.windows(needle.len()).any(|w| w == needle.as_bytes())
        };
        if found {
            out.push(name);
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_purged_household_is_gone_from_every_file_after_vacuum() {
    let tmp = temp_dir("oubli");
    let url = sqlite_url(tmp.path());
    simulate_small(&url, &["23"], "2025-01-01", "2025-04-01", 0.05).await;
    // k = 1 for the analyst zone: this tiny source has fewer records than 11, so at
    // k = 11 the zone would hold none and could not show the household leaving it.
    observatoire_tests::install_test_key(tmp.path());
    observatoire::ingest(&url, tmp.path(), |_| {})
        .await
        .expect("ingest");
    observatoire::compute(tmp.path(), 11, K, |_| {})
        .await
        .expect("compute");

    // A household with requests and members: the one with the most requests.
    let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
    let menage: i64 = sqlx::query_scalar(
        "SELECT menage_id FROM demande GROUP BY menage_id ORDER BY COUNT(*) DESC, menage_id LIMIT 1",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    let key = anonymize::MasterKey::from_hex(TEST_KEY_HEX, "test").unwrap();
    let pseudonym = key.subkey("detail").pseudonym("menage", menage);
    let lake_count = |sql: String| {
        let data = tmp.path().to_owned();
        async move {
            let b = observatoire::sql(&data, &sql).await.unwrap();
            observatoire_tests::ints(b[0].column(0))[0].unwrap()
        }
    };
    let requests_before = lake_count("SELECT COUNT(*) FROM demande".into()).await;
    let requests_of_household = lake_count(format!(
        "SELECT COUNT(*) FROM demande WHERE menage_id = '{pseudonym}'"
    ))
    .await;
    assert!(requests_of_household > 0);
    // Its requests are in the analyst zone of release 1, under that release's pseudonym.
    let in_analyst_zone = |release: i64| {
        let analyst = key
            .subkey(&format!("analyst/{release}"))
            .pseudonym_of_text("menage", &pseudonym);
        lake_count(format!(
            "SELECT COUNT(*) FROM analyst.demandes WHERE menage = '{analyst}'"
        ))
    };
    assert!(in_analyst_zone(1).await > 0);
    let lake = tmp.path().join("lake");
    let before = files_holding(&lake, &pseudonym);
    assert!(
        !before.is_empty(),
        "the household's pseudonym is in the lake before the purge"
    );
    let run_before = warehouse::Lake::new(tmp.path())
        .latest_run()
        .unwrap()
        .unwrap();

    // The operational application's purge: the household and everything attached.
    let persons: Vec<i64> =
        sqlx::query_scalar("SELECT personne_id FROM menage_personne WHERE menage_id = ?")
            .bind(menage)
            .fetch_all(&pool)
            .await
            .unwrap();
    for sql in [
        "DELETE FROM demande_personne WHERE demande_id IN (SELECT id FROM demande WHERE menage_id = ?1)",
        "DELETE FROM orientation WHERE demande_id IN (SELECT id FROM demande WHERE menage_id = ?1)",
        "DELETE FROM liste_attente WHERE demande_id IN (SELECT id FROM demande WHERE menage_id = ?1)",
        "DELETE FROM prise_en_charge WHERE menage_id = ?1",
        "DELETE FROM demande WHERE menage_id = ?1",
        "DELETE FROM evaluation WHERE menage_id = ?1",
        "DELETE FROM note WHERE menage_id = ?1",
        "DELETE FROM menage_personne WHERE menage_id = ?1",
        "DELETE FROM menage WHERE id = ?1",
    ] {
        sqlx::query(sql).bind(menage).execute(&pool).await.unwrap();
    }
    for p in &persons {
        sqlx::query("DELETE FROM personne WHERE id = ?")
            .bind(p)
            .execute(&pool)
            .await
            .unwrap();
    }
    pool.close().await;

    // This tiny source loses a large share of its requests: the safety stop refuses the
    // run and writes nothing, until the deletion is confirmed.
    let err = observatoire::ingest(&url, tmp.path(), |_| {})
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("arrêt de sécurité") && err.contains("--allow-mass-delete"),
        "{err}"
    );
    assert_eq!(
        warehouse::Lake::new(tmp.path())
            .latest_run()
            .unwrap()
            .unwrap(),
        run_before
    );
    let confirmed = observatoire::IngestOptions {
        allow_mass_delete: true,
        ..Default::default()
    };
    let run = observatoire::ingest_with_options(&url, tmp.path(), &confirmed, |_| {})
        .await
        .unwrap();
    // The run's summary counts the deletions, by id.
    let demandes = run.changes["demande"];
    assert_eq!(
        (demandes.inserees, demandes.supprimees),
        (0, requests_of_household as u64)
    );
    assert_eq!(run.changes["menage"].supprimees, 1);
    let release = observatoire::compute(tmp.path(), 11, K, |_| {})
        .await
        .unwrap();
    // Same month of data, but a household purged: the analyst zone is rebuilt without it.
    assert!(
        release
            .analyst_reason
            .as_deref()
            .is_some_and(|r| r.contains("purgés")),
        "{:?}",
        release.analyst_reason
    );
    assert_eq!(release.analyst_release, release.version);
    assert_eq!(in_analyst_zone(release.version).await, 0);
    assert!(lake_count("SELECT COUNT(*) FROM analyst.demandes".into()).await > 0);
    let n = observatoire::sql(
        tmp.path(),
        &format!("SELECT COUNT(*) FROM demande WHERE menage_id = '{pseudonym}'"),
    )
    .await
    .unwrap();
    assert_eq!(
        observatoire_tests::ints(n[0].column(0))[0],
        Some(0),
        "gone from the detail zone at the next ingest"
    );
    // Still on disk, for time travel, until the vacuum.
    assert!(!files_holding(&lake, &pseudonym).is_empty());

    let report = observatoire::vacuum(tmp.path(), 0).await.expect("vacuum");
    assert!(
        report
            .iter()
            .any(|t| t.files_deleted > 0 && t.logs_deleted > 0)
    );
    let after = files_holding(&lake, &pseudonym);
    assert!(
        after.is_empty(),
        "pseudonyme encore présent dans : {after:?}"
    );

    // The version that held it can no longer be read; the current one can.
    let old = run_before.tables["demande"];
    let lake_handle = warehouse::Lake::new(tmp.path());
    let readable = match lake_handle.open("detail", "demande", Some(old)).await {
        Err(_) => false,
        Ok(None) => false,
        Ok(Some(table)) => {
            let ctx = warehouse::new_session();
            lake_handle.register(&ctx, "ancienne", &table).await.is_ok()
                && match ctx.sql("SELECT COUNT(*) FROM ancienne").await {
                    Ok(frame) => frame.collect().await.is_ok(),
                    Err(_) => false,
                }
        }
    };
    assert!(!readable, "la version {old} de demande est encore lisible");
    let current = observatoire::sql(tmp.path(), "SELECT COUNT(*) FROM demande")
        .await
        .unwrap();
    assert_eq!(
        observatoire_tests::ints(current[0].column(0))[0],
        Some(requests_before - requests_of_household),
        "the current version is whole"
    );
    // And the statistics were computed again without error over the current versions.
    observatoire::compute(tmp.path(), 11, K, |_| {})
        .await
        .expect("compute after vacuum");
    // The vacuum's own commits leave the lake at its run: the next ingest is incremental.
    let next = observatoire::ingest(&url, tmp.path(), |_| {})
        .await
        .unwrap();
    assert_eq!(next.lecture, warehouse::READ_INCREMENTAL);
}
