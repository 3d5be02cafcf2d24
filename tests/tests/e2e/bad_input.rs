//! Bad input gets a clear error naming the problem, and nothing stored is lost:
//! a missing source, a malformed row, another key, a compute before any ingest, SQL
//! that tries to write, an anonymity report before any compute, a key rotation before
//! any ingest or with a source that cannot be opened, two writers at once.

use observatoire_tests::{
    TEST_KEY_HEX, install_test_key, load_scenario, repo_root, sqlite_url, temp_dir, write_rows,
};

async fn skeleton_source(dir: &std::path::Path) -> String {
    let scenario = load_scenario(&repo_root().join("tests/scenarios/01_squelette.toml")).unwrap();
    let url = sqlite_url(dir);
    let source = operational::Source::create(&url).await.unwrap();
    write_rows(&source, &scenario.tables).await;
    url
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_sqlite_source_is_named() {
    let dir = temp_dir("missing");
    let url = format!("sqlite://{}", dir.path().join("absente.db").display());
    let err = observatoire::ingest(&url, dir.path(), |_| {})
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("absente.db") && err.contains("n'existe pas"),
        "{err}"
    );
    assert!(
        !dir.path().join("absente.db").exists(),
        "ingest never creates a source"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_date_is_reported_and_the_previous_run_stays_in_force() {
    let dir = temp_dir("malformed");
    let url = skeleton_source(dir.path()).await;
    install_test_key(dir.path());
    let first = observatoire::ingest(&url, dir.path(), |_| {})
        .await
        .unwrap();
    let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
    sqlx::query("UPDATE prise_en_charge SET date_entree = '10/02/2025', updated_at = '2030-01-01T00:00:00+00:00' WHERE id = 8")
        .execute(&pool)
        .await
        .unwrap();
    let err = observatoire::ingest(&url, dir.path(), |_| {})
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("prise_en_charge")
            && err.contains("identifiant 8 ")
            && err.contains("date_entree"),
        "{err}"
    );
    assert!(
        !err.contains("10/02/2025"),
        "the value itself is not echoed: {err}"
    );
    let lake = warehouse::Lake::new(dir.path());
    assert_eq!(
        lake.latest_run().unwrap().unwrap(),
        first,
        "the previous run stays in force"
    );
    let release = observatoire::compute(dir.path(), 1, 11, |_| {})
        .await
        .unwrap();
    assert_eq!(release.run, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_key_is_refused_and_the_lake_is_untouched() {
    let dir = temp_dir("key");
    let url = skeleton_source(dir.path()).await;
    install_test_key(dir.path());
    let first = observatoire::ingest(&url, dir.path(), |_| {})
        .await
        .unwrap();
    let key_file = observatoire::key_path(dir.path());
    std::fs::write(&key_file, "ff".repeat(32)).unwrap();
    let err = observatoire::ingest(&url, dir.path(), |_| {})
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("n'est pas celle du lac"), "{err}");
    assert!(
        !err.contains(&"ff".repeat(32)),
        "the key never appears in a message"
    );
    let lake = warehouse::Lake::new(dir.path());
    assert_eq!(lake.latest_run().unwrap().unwrap(), first);
    // With the original key back, ingest works again.
    std::fs::write(&key_file, TEST_KEY_HEX).unwrap();
    assert_eq!(
        observatoire::ingest(&url, dir.path(), |_| {})
            .await
            .unwrap()
            .run,
        2
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compute_before_any_ingest_says_what_to_do() {
    let dir = temp_dir("noingest");
    let err = observatoire::compute(dir.path(), 11, 11, |_| {})
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("observatoire ingest"), "{err}");
    let err = observatoire::compute(dir.path(), 0, 11, |_| {})
        .await
        .unwrap_err()
        .to_string();
    assert!(!err.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sql_is_read_only() {
    let dir = temp_dir("sql");
    let url = skeleton_source(dir.path()).await;
    observatoire_tests::ingest_and_compute(&url, dir.path(), 1).await;
    for statement in [
        "CREATE TABLE x AS SELECT 1",
        "INSERT INTO demande SELECT * FROM demande",
        "DROP TABLE demande",
        "SET datafusion.execution.batch_size = 1",
    ] {
        let err = observatoire::sql(dir.path(), statement)
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("refusée ou invalide"), "{statement}: {err}");
    }
    let err = observatoire::sql(dir.path(), "SELECT * FROM table_absente")
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("table_absente"), "{err}");
    let ok = observatoire::sql(dir.path(), "SELECT COUNT(*) FROM demande")
        .await
        .unwrap();
    assert_eq!(observatoire_tests::ints(ok[0].column(0))[0], Some(13));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anonymity_report_and_rotation_before_their_time_say_what_to_do() {
    let dir = temp_dir("tot");
    let err = observatoire::anonymity_report(dir.path())
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("observatoire compute"), "{err}");
    let url = skeleton_source(dir.path()).await;
    let err = observatoire::rotate_key(&url, dir.path(), false, |_| {})
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("observatoire ingest"), "{err}");
    // A rotation whose source cannot be opened changes nothing: same key, same lake.
    observatoire_tests::ingest_and_compute(&url, dir.path(), 1).await;
    let key_before = std::fs::read_to_string(observatoire::key_path(dir.path())).unwrap();
    let missing = format!("sqlite://{}", dir.path().join("absente.db").display());
    let err = observatoire::rotate_key(&missing, dir.path(), false, |_| {})
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("absente.db"), "{err}");
    assert_eq!(
        std::fs::read_to_string(observatoire::key_path(dir.path())).unwrap(),
        key_before
    );
    warehouse::Lake::new(dir.path())
        .check_key(
            &anonymize::MasterKey::from_hex(TEST_KEY_HEX, "t")
                .unwrap()
                .fingerprint(),
        )
        .unwrap();
    assert!(!dir.path().join("secrets/retired").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_writers_cannot_run_at_once() {
    let dir = temp_dir("verrou");
    let url = skeleton_source(dir.path()).await;
    install_test_key(dir.path());
    let held = observatoire::guard::lock(dir.path(), "une autre commande").unwrap();
    let err = observatoire::ingest(&url, dir.path(), |_| {})
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("déjà en cours d'écriture") && err.contains("une autre commande"),
        "{err}"
    );
    assert!(
        warehouse::Lake::new(dir.path())
            .latest_run()
            .unwrap()
            .is_none()
    );
    drop(held);
    observatoire::ingest(&url, dir.path(), |_| {})
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn source_errors_name_the_problem_and_store_nothing() {
    let Some(db) = observatoire_tests::PgDatabase::create("erreurs").await else {
        return;
    };
    let dir = temp_dir("erreurs-source");
    install_test_key(dir.path());
    let error = |url: String| {
        let data = dir.path().to_owned();
        async move {
            observatoire::ingest(&url, &data, |_| {})
                .await
                .unwrap_err()
                .to_string()
        }
    };
    let (base, name) = db.url.rsplit_once('/').unwrap();
    // An unknown user (the server trusts local users, so a wrong password cannot fail).
    let host = base.split_once('@').unwrap().1;
    let e = error(format!("postgres://personne_inconnue:secret@{host}/{name}")).await;
    assert!(e.contains("refuse l'authentification"), "{e}");
    assert!(!e.contains("secret"), "{e}");
    let e = error(format!("{base}/base_absente_{}", std::process::id())).await;
    assert!(e.contains("n'existe pas"), "{e}");
    let e = error("postgres://postgres@127.0.0.1:1/test".to_owned()).await;
    assert!(e.contains("injoignable"), "{e}");
    // A source without the operational schema, then with a column missing.
    let e = error(db.url.clone()).await;
    assert!(e.contains("la table entite est absente"), "{e}");
    operational::Source::create(&db.url)
        .await
        .unwrap()
        .close()
        .await;
    let pool = sqlx::PgPool::connect(&db.url).await.unwrap();
    sqlx::query("ALTER TABLE demande DROP COLUMN canal")
        .execute(&pool)
        .await
        .unwrap();
    pool.close().await;
    let e = error(db.url.clone()).await;
    assert!(
        e.contains("colonne canal est absente de la table demande"),
        "{e}"
    );
    // Nothing was stored.
    assert!(
        warehouse::Lake::new(dir.path())
            .latest_run()
            .unwrap()
            .is_none()
    );
    db.drop_now().await;
}
