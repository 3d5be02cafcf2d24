//! A full run's logs carry no personal value of the source: the simulation's names,
//! phone numbers, e-mails, free texts, workers' names and birth dates are looked for in
//! everything written at debug level (every crate, dependencies included) while the
//! source is ingested, the indicators computed and the API served, and in the error of
//! an ingest that meets a malformed birth date.

use std::collections::HashSet;
use std::io::Write;
use std::sync::{Arc, Mutex};

use observatoire_tests::{ingest_and_compute, simulate_small, sqlite_url, temp_dir};
use sqlx::Row;

/// Everything the subscriber writes, kept in memory.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn debug_logs_hold_no_personal_value() {
    let captured = Captured::default();
    let writer = captured.clone();
    // Global: tasks run on every worker thread. The other tests of this binary log into
    // it too, which only widens what is checked.
    let installed = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new("debug"))
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .try_init()
        .is_ok();
    assert!(installed, "no other subscriber in this test binary");

    let tmp = temp_dir("journaux");
    let url = sqlite_url(tmp.path());
    simulate_small(&url, &["23"], "2025-01-01", "2025-03-01", 0.4).await;
    // The simulation's own writes are the operational application's, not ours: the
    // capture starts with the warehouse.
    captured.0.lock().unwrap().clear();

    ingest_and_compute(&url, tmp.path(), 11).await;
    let server = observatoire_tests::TestServer::start(
        tmp.path(),
        "23",
        dashboards_api::ServerConfig::new(tmp.path()),
    );
    for path in [
        "/health",
        "/api/v1/indicateurs",
        "/api/v1/territoires",
        "/api/v1/indicateurs/taux_dnp_115/valeurs?territoire=D23&pas=MOIS",
        "/api/v1/indicateurs/inconnu/valeurs",
        "/api/v1/audit",
    ] {
        for profile in dashboards_api::authz::Profile::ALL {
            server.get_as(profile, path).await;
        }
    }

    // The personal values of the source.
    let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
    let mut secrets: HashSet<String> = HashSet::new();
    let birth_dates = "SELECT date_naissance FROM personne WHERE date_naissance < '2016-01-01'";
    for sql in observatoire_tests::PERSONAL_TEXT_SQL
        .iter()
        .chain([&birth_dates])
    {
        for row in sqlx::query(*sql).fetch_all(&pool).await.unwrap() {
            let v: String = row.get(0);
            // Short names (« Ali ») would match ordinary words of a log line.
            if v.len() >= 5 {
                secrets.insert(v);
            }
        }
    }
    assert!(secrets.len() > 100, "{} valeurs recherchées", secrets.len());

    // An ingest that fails on a malformed birth date.
    sqlx::query("UPDATE personne SET date_naissance = '31/12/1980', updated_at = '2030-01-01T00:00:00+00:00' WHERE id = (SELECT MIN(id) FROM personne)")
        .execute(&pool)
        .await
        .unwrap();
    pool.close().await;
    let error = observatoire::ingest(&url, tmp.path(), |_| {})
        .await
        .expect_err("a malformed birth date stops the ingest")
        .to_string();

    let logs = String::from_utf8_lossy(&captured.0.lock().unwrap()).into_owned();
    assert!(
        logs.lines().count() > 50,
        "{} lignes de journal",
        logs.lines().count()
    );
    let mut leaks: Vec<&String> = secrets
        .iter()
        .filter(|s| logs.contains(s.as_str()) || error.contains(s.as_str()))
        .collect();
    leaks.sort();
    leaks.truncate(10);
    assert!(
        leaks.is_empty(),
        "valeurs personnelles dans les journaux : {leaks:?}"
    );
    assert!(!error.contains("31/12/1980"), "{error}");
}
