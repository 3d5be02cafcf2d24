//! Crash safety: an ingest killed (SIGKILL) at a random moment leaves the lake readable at
//! the previous complete run, and the next run completes the work. 20 kills: during a
//! first ingest, and during the ingests that follow `simulate --continue` (new days with
//! updates, merges and deletions). After each restart the detail zone equals, row for row
//! (pseudonyms included, same key), a clean ingest of the same source into a fresh lake.
//!
//! The killed ingest runs in a child process: this test binary itself, started again on
//! the test `crash::child_ingest` with the folders in environment variables. Half the
//! kills come after a random delay, half right after the n-th table commit of the run
//! (the parent watches the Delta logs), so that some surely land between two table
//! commits whatever the machine's speed.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use observatoire_tests::{detail_rows, install_test_key, simulate_small, sqlite_url, temp_dir};

const CHILD_SOURCE: &str = "OBSERVATOIRE_CRASH_SOURCE";
const CHILD_DATA: &str = "OBSERVATOIRE_CRASH_DATA";

/// The child's body: an ingest, when started by the crash test (otherwise nothing).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn child_ingest() {
    let (Ok(url), Ok(data)) = (std::env::var(CHILD_SOURCE), std::env::var(CHILD_DATA)) else {
        return;
    };
    let options = observatoire::IngestOptions {
        allow_mass_delete: true,
        ..Default::default()
    };
    observatoire::ingest_with_options(&url, Path::new(&data), &options, |_| {})
        .await
        .expect("child ingest");
}

/// The Delta commits written so far in the detail zone (all tables).
fn detail_commits(data: &Path) -> usize {
    let Ok(tables) = std::fs::read_dir(data.join("lake").join("detail")) else {
        return 0;
    };
    tables
        .flatten()
        .filter_map(|t| std::fs::read_dir(t.path().join("_delta_log")).ok())
        .map(|log| {
            log.flatten()
                .filter(|f| f.file_name().to_string_lossy().ends_with(".json"))
                .count()
        })
        .sum()
}

/// A clean ingest of the source into a fresh lake, with the same key.
async fn reference(url: &str) -> BTreeMap<String, Vec<String>> {
    let tmp = temp_dir("crash-ref");
    install_test_key(tmp.path());
    observatoire::ingest(url, tmp.path(), |_| {}).await.unwrap();
    detail_rows(tmp.path()).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ingest_killed_at_any_moment_leaves_the_lake_consistent() {
    let tmp = temp_dir("crash");
    let url = sqlite_url(tmp.path());
    simulate_small(&url, &["93", "23"], "2025-01-01", "2025-03-01", 0.03).await;
    let data = tmp.path().join("donnees");
    install_test_key(&data);

    // How long an uninterrupted ingest takes here, to spread the kills over it.
    let started = std::time::Instant::now();
    observatoire::ingest(&url, &tmp.path().join("mesure"), |_| {})
        .await
        .ok();
    let full = started.elapsed().max(Duration::from_millis(200));

    let exe = std::env::current_exe().unwrap();
    let mut rng = 0x2545_f491_4f6c_dd1d_u64;
    let mut continued_to = chrono::NaiveDate::from_ymd_opt(2025, 3, 1).unwrap();
    let (mut completed_runs, mut mid_write) = (0, 0);
    for kill in 0..20 {
        // From the 5th kill on, the source moves on by a few days before each round.
        if kill >= 4 && kill % 2 == 0 {
            continued_to += chrono::Duration::days(3);
            observatoire::simulate_continue(&url, continued_to, |_, _| {})
                .await
                .unwrap();
        }
        let before = warehouse::Lake::new(&data).latest_run().unwrap();
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        let delay = full.mul_f64((rng % 1000) as f64 / 1000.0 * 1.2);
        let step = (rng % 24) as usize;
        let commits_before = detail_commits(&data);
        let after_step = kill % 2 == 0;
        let (exe, url_c, data_c) = (exe.clone(), url.clone(), data.clone());
        tokio::task::spawn_blocking(move || {
            let mut child = Command::new(&exe)
                .args([
                    "--exact",
                    "crash::child_ingest",
                    "--nocapture",
                    "--test-threads=1",
                ])
                .env(CHILD_SOURCE, &url_c)
                .env(CHILD_DATA, &data_c)
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
                .unwrap();
            if after_step {
                // Right after the n-th new table commit of this run.
                let target = commits_before + 1 + step % 11;
                while detail_commits(&data_c) < target {
                    if child.try_wait().unwrap().is_some() {
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(1));
                }
            } else {
                std::thread::sleep(delay);
            }
            child.kill().ok(); // SIGKILL on Unix
            child.wait().unwrap();
        })
        .await
        .unwrap();

        // Readable at the previous complete run, or at the one the child finished.
        let after = warehouse::Lake::new(&data).latest_run().unwrap();
        if let Some(after) = &after {
            let rows = detail_rows(&data).await;
            assert_eq!(rows.len(), after.tables.len());
            if before.as_ref().is_some_and(|b| b.run == after.run) {
                assert_eq!(Some(after), before.as_ref(), "kill {kill}");
            } else {
                completed_runs += 1;
            }
            // Killed between two table commits: a table is ahead of the manifest.
            let lake = warehouse::Lake::new(&data);
            for (table, pinned) in &after.tables {
                let latest = lake.open("detail", table, None).await.unwrap().unwrap();
                if latest.version().unwrap_or(0) as i64 > *pinned {
                    mid_write += 1;
                    break;
                }
            }
        }
        // The next run completes the work: the detail zone equals a clean ingest.
        observatoire::ingest_with_options(
            &url,
            &data,
            &observatoire::IngestOptions {
                allow_mass_delete: true,
                ..Default::default()
            },
            |_| {},
        )
        .await
        .unwrap_or_else(|e| panic!("restart after kill {kill}: {e}"));
        assert!(
            detail_rows(&data).await == reference(&url).await,
            "kill {kill}: the detail zone differs from a clean ingest"
        );
    }
    eprintln!(
        "20 arrêts : {completed_runs} après la fin de l'ingestion, {mid_write} entre deux écritures de tables"
    );
    // Most kills landed inside the ingest, and some between two of its table commits.
    assert!(
        completed_runs < 15 && mid_write >= 5,
        "{completed_runs} runs completed before their kill, {mid_write} killed mid-write"
    );
}
