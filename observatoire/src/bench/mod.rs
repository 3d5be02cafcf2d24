//! The ingest benchmark (`observatoire bench ingest`): in the same run, on the same
//! PostgreSQL database, the full ingest, its peer (connectorx + pyarrow writing Parquet
//! of the same columns, a Python script run with `python3`) and the limit (the same
//! binary COPY statements on the same connections, their bytes thrown away).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use operational::Source;

use crate::{Error, IngestOptions, Result};

const PEER_SCRIPT: &str = include_str!("peer_connectorx.py");

/// The best time of each contender over the rounds.
#[derive(Debug, Clone)]
pub struct IngestBench {
    pub rows: u64,
    pub copy_bytes: u64,
    pub ours: Duration,
    pub peer: Duration,
    pub limit: Duration,
    pub workers: usize,
    pub rounds: usize,
    /// Steps of the last round's ingest and when each ended, from its start.
    pub steps: Vec<(String, Duration)>,
}

impl IngestBench {
    /// Rows per second of a time.
    pub fn rate(&self, d: Duration) -> f64 {
        self.rows as f64 / d.as_secs_f64()
    }
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |source| Error::Io {
        path: path.to_owned(),
        source,
    }
}

/// Runs the three contenders `rounds` times each, alternating, in `work_dir` (emptied
/// first). Needs `python3` with `connectorx` and `pyarrow` for the peer.
pub async fn bench_ingest(
    url: &str,
    work_dir: &Path,
    python: &str,
    options: &IngestOptions,
    rounds: usize,
    mut step: impl FnMut(&str),
) -> Result<IngestBench> {
    let source = Source::open(url).await?;
    let Source::Postgres(pool) = &source else {
        return Err(Error::Config(
            "le banc d'essai de l'ingestion compare des lectures PostgreSQL : donnez une source postgres://".into(),
        ));
    };
    if work_dir.exists() {
        std::fs::remove_dir_all(work_dir).map_err(io(work_dir))?;
    }
    std::fs::create_dir_all(work_dir).map_err(io(work_dir))?;
    let script = work_dir.join("peer_connectorx.py");
    std::fs::write(&script, PEER_SCRIPT).map_err(io(&script))?;
    let queries: Vec<(String, String)> = ingest::TABLES_READ
        .iter()
        .map(|name| {
            let table = operational::table(name).expect("a source table");
            let select = ingest::select_statement(table, true);
            let select = select.trim_end_matches(" ORDER BY id").to_owned();
            (name.to_string(), select)
        })
        .collect();
    let queries = serde_json::to_string(&queries).expect("serialisable");
    let workers = options.read.workers;
    let mut best = IngestBench {
        rows: 0,
        copy_bytes: 0,
        ours: Duration::MAX,
        peer: Duration::MAX,
        limit: Duration::MAX,
        workers,
        rounds,
        steps: Vec::new(),
    };
    for round in 1..=rounds.max(1) {
        step(&format!("manche {round} : COPY binaire vers /dev/null"));
        let started = Instant::now();
        best.copy_bytes = ingest::copy_full_to_sink(pool, &options.read).await?;
        best.limit = best.limit.min(started.elapsed());

        step(&format!("manche {round} : ingestion complète"));
        let data = work_dir.join(format!("lac-{round}"));
        let rows = Arc::new(AtomicU64::new(0));
        let counted = rows.clone();
        let mut ours = options.clone();
        let rows_before = options.rows.clone();
        ours.rows = Arc::new(move |table, n| {
            counted.fetch_add(n as u64, Ordering::Relaxed);
            rows_before(table, n);
        });
        ours.allow_mass_delete = true;
        let started = Instant::now();
        let mut steps = Vec::new();
        crate::ingest_with_options(url, &data, &ours, |s| {
            steps.push((s.to_owned(), started.elapsed()))
        })
        .await?;
        best.ours = best.ours.min(started.elapsed());
        best.steps = steps;
        best.rows = rows.load(Ordering::Relaxed);
        std::fs::remove_dir_all(&data).map_err(io(&data))?;

        step(&format!("manche {round} : connectorx + pyarrow"));
        let peer = run_peer(
            python,
            &script,
            url,
            &work_dir.join("pair"),
            workers,
            &queries,
        )?;
        if peer.1 != best.rows {
            return Err(Error::Config(format!(
                "le pair a lu {} lignes, l'ingestion {} : les deux ne lisent pas la même chose",
                peer.1, best.rows
            )));
        }
        best.peer = best.peer.min(peer.0);
    }
    source.close().await;
    Ok(best)
}

fn run_peer(
    python: &str,
    script: &Path,
    url: &str,
    out: &PathBuf,
    workers: usize,
    queries: &str,
) -> Result<(Duration, u64)> {
    use std::io::Write;
    // connectorx names the scheme postgresql://.
    let url = url
        .strip_prefix("postgres://")
        .map_or_else(|| url.to_owned(), |rest| format!("postgresql://{rest}"));
    let failed = |detail: String| {
        Error::Config(format!(
            "le pair connectorx + pyarrow n'a pas pu tourner ({detail}) : installez-les avec « {python} -m pip install connectorx pyarrow »"
        ))
    };
    let mut child = std::process::Command::new(python)
        .arg(script)
        .arg(&url)
        .arg(out)
        .arg(workers.to_string())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| failed(e.to_string()))?;
    child
        .stdin
        .take()
        .expect("piped stdin")
        .write_all(queries.as_bytes())
        .map_err(|e| failed(e.to_string()))?;
    let output = child
        .wait_with_output()
        .map_err(|e| failed(e.to_string()))?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        // Never echo a password the URL may hold.
        let last = stderr
            .lines()
            .last()
            .unwrap_or("")
            .replace(&url, &operational::source::redact_url(&url));
        return Err(failed(last));
    }
    let line = String::from_utf8_lossy(&output.stdout);
    let value: serde_json::Value =
        serde_json::from_str(line.trim()).map_err(|e| failed(format!("sortie illisible : {e}")))?;
    let seconds = value["seconds"].as_f64().unwrap_or(f64::NAN);
    let rows = value["rows"].as_u64().unwrap_or(0);
    if out.exists() {
        std::fs::remove_dir_all(out).map_err(io(out))?;
    }
    Ok((Duration::from_secs_f64(seconds), rows))
}

/// What the incremental benchmark measured.
#[derive(Debug, Clone)]
pub struct IncrementalBench {
    pub full: Duration,
    pub incremental: Duration,
    pub days: i64,
    pub rows: u64,
    pub manifest: warehouse::RunManifest,
    /// Steps of the incremental run and when each ended, from its start.
    pub steps: Vec<(String, Duration)>,
}

/// A full ingest into a fresh lake (timed), `simulate --continue` by `days` days (not
/// timed), then an incremental ingest (timed, deletion check included).
pub async fn bench_incremental(
    url: &str,
    work_dir: &Path,
    options: &IngestOptions,
    days: i64,
    mut step: impl FnMut(&str),
) -> Result<IncrementalBench> {
    let source = Source::open(url).await?;
    let Some(config) = source.simulation().await? else {
        return Err(Error::NothingToContinue(operational::source::redact_url(
            url,
        )));
    };
    source.close().await;
    if work_dir.exists() {
        std::fs::remove_dir_all(work_dir).map_err(io(work_dir))?;
    }
    let data = work_dir.join("lac");
    let mut options = options.clone();
    options.allow_mass_delete = true;
    step("ingestion complète");
    let started = Instant::now();
    let first = crate::ingest_with_options(url, &data, &options, |_| {}).await?;
    let full = started.elapsed();
    step(&format!("simulation de {days} jour(s) de plus"));
    crate::simulate_continue(url, config.to + chrono::Duration::days(days), |_, _| {}).await?;
    step("ingestion incrémentale");
    let started = Instant::now();
    let mut steps = Vec::new();
    let manifest = crate::ingest_with_options(url, &data, &options, |s| {
        steps.push((s.to_owned(), started.elapsed()))
    })
    .await?;
    let incremental = started.elapsed();
    if manifest.lecture != warehouse::READ_INCREMENTAL {
        return Err(Error::Config(
            "la seconde ingestion n'a pas été incrémentale : mesure sans objet".into(),
        ));
    }
    Ok(IncrementalBench {
        full,
        incremental,
        days,
        rows: first.rows.values().sum(),
        manifest,
        steps,
    })
}
