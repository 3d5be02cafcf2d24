//! The ingest benchmark (`observatoire bench ingest`): in the same run, on the same
//! PostgreSQL database, the full ingest, its peer (connectorx + pyarrow writing Parquet
//! of the same columns, a Python script run with `python3`) and the limit (the same
//! binary COPY statements on the same connections, their bytes thrown away).

pub mod api;

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
    /// Processor time of each contender's best round (Linux only).
    pub cpu: Option<IngestCpu>,
}

/// Processor time a contender used while it was timed, in seconds of one core.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct CpuUse {
    /// The whole machine's busy time (PostgreSQL's backends included).
    pub machine: f64,
    /// The reading process's own: this one for the ingest and the limit, Python for
    /// the peer.
    pub reader: f64,
}

impl CpuUse {
    /// What the machine spent besides the reader: mostly PostgreSQL producing the rows.
    pub fn rest(&self) -> f64 {
        (self.machine - self.reader).max(0.0)
    }
}

/// The three contenders' processor time.
#[derive(Debug, Clone, Copy, Default)]
pub struct IngestCpu {
    pub ours: CpuUse,
    pub peer: CpuUse,
    pub limit: CpuUse,
    /// The machine's cores.
    pub cores: usize,
}

/// Processor clocks read from Linux's `/proc`, in seconds of one core: the machine's
/// busy time (user, nice, system, irq, softirq; not idle, iowait or steal) and this
/// process's (user and system).
#[derive(Debug, Clone, Copy, PartialEq)]
struct CpuClock {
    machine: f64,
    process: f64,
}

impl CpuClock {
    /// `/proc` counts in USER_HZ ticks, 100 a second on Linux whatever the kernel's
    /// own tick rate.
    const TICKS: f64 = 100.0;

    fn now() -> Option<Self> {
        let stat = std::fs::read_to_string("/proc/stat").ok()?;
        let own = std::fs::read_to_string("/proc/self/stat").ok()?;
        Self::parse(&stat, &own)
    }

    fn parse(stat: &str, own: &str) -> Option<Self> {
        let ticks: Vec<u64> = stat
            .lines()
            .next()?
            .strip_prefix("cpu ")?
            .split_whitespace()
            .take(7)
            .map(|v| v.parse().ok())
            .collect::<Option<_>>()?;
        let busy = ticks.get(..7).map(|t| t[0] + t[1] + t[2] + t[5] + t[6])?;
        // After the command's name in parentheses (which may hold spaces), the third
        // field of the line; user and system time are its 14th and 15th.
        let fields: Vec<&str> = own.rsplit_once(')')?.1.split_whitespace().collect();
        let field = |n: usize| fields.get(n - 3)?.parse::<u64>().ok();
        Some(Self {
            machine: busy as f64 / Self::TICKS,
            process: (field(14)? + field(15)?) as f64 / Self::TICKS,
        })
    }

    /// This process's and the machine's time since `earlier`.
    fn since(earlier: Option<Self>) -> Option<CpuUse> {
        let (now, earlier) = (Self::now()?, earlier?);
        Some(CpuUse {
            machine: now.machine - earlier.machine,
            reader: now.process - earlier.process,
        })
    }
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
        cpu: None,
    };
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let (mut cpu_ours, mut cpu_peer, mut cpu_limit) = (None, None, None);
    for round in 1..=rounds.max(1) {
        step(&format!("manche {round} : COPY binaire vers /dev/null"));
        let clock = CpuClock::now();
        let started = Instant::now();
        best.copy_bytes = ingest::copy_full_to_sink(pool, &options.read).await?;
        let took = started.elapsed();
        if took < best.limit {
            best.limit = took;
            cpu_limit = CpuClock::since(clock);
        }

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
        let clock = CpuClock::now();
        let started = Instant::now();
        let mut steps = Vec::new();
        crate::ingest_with_options(url, &data, &ours, |s| {
            steps.push((s.to_owned(), started.elapsed()))
        })
        .await?;
        let took = started.elapsed();
        // The steps printed are those of the round whose time is printed.
        if took < best.ours {
            best.ours = took;
            best.steps = steps;
            cpu_ours = CpuClock::since(clock);
        }
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
        if peer.rows != best.rows {
            return Err(Error::Config(format!(
                "le pair a lu {} lignes, l'ingestion {} : les deux ne lisent pas la même chose",
                peer.rows, best.rows
            )));
        }
        if peer.seconds < best.peer {
            best.peer = peer.seconds;
            cpu_peer = peer.cpu;
        }
    }
    source.close().await;
    if let (Some(ours), Some(peer), Some(limit)) = (cpu_ours, cpu_peer, cpu_limit) {
        best.cpu = Some(IngestCpu {
            ours,
            peer,
            limit,
            cores,
        });
    }
    Ok(best)
}

/// What the peer's script reports of its timed part.
struct PeerRun {
    seconds: Duration,
    rows: u64,
    cpu: Option<CpuUse>,
}

fn run_peer(
    python: &str,
    script: &Path,
    url: &str,
    out: &PathBuf,
    workers: usize,
    queries: &str,
) -> Result<PeerRun> {
    // connectorx names the scheme postgresql://.
    let url = url
        .strip_prefix("postgres://")
        .map_or_else(|| url.to_owned(), |rest| format!("postgresql://{rest}"));
    let value = run_python(
        python,
        script,
        &[url.as_str(), &out.to_string_lossy(), &workers.to_string()],
        queries,
        "connectorx + pyarrow",
        "connectorx pyarrow",
    )
    // Never echo a password the URL may hold.
    .map_err(|e| match e {
        Error::Config(text) => {
            Error::Config(text.replace(&url, &operational::source::redact_url(&url)))
        }
        other => other,
    })?;
    let seconds = reported_seconds(&value, "connectorx + pyarrow")?;
    let rows = value["rows"].as_u64().unwrap_or(0);
    let cpu = match (value["machine"].as_f64(), value["cpu"].as_f64()) {
        (Some(machine), Some(reader)) => Some(CpuUse { machine, reader }),
        _ => None,
    };
    if out.exists() {
        std::fs::remove_dir_all(out).map_err(io(out))?;
    }
    Ok(PeerRun { seconds, rows, cpu })
}

/// The duration a peer's script reports (`seconds`); an error naming the peer when it
/// is missing or not a duration.
fn reported_seconds(value: &serde_json::Value, who: &str) -> Result<Duration> {
    value["seconds"]
        .as_f64()
        .and_then(|s| Duration::try_from_secs_f64(s).ok())
        .ok_or_else(|| Error::Config(format!("le pair {who} n'a pas donné de durée lisible")))
}

/// Runs a peer's Python script with `args`, `input` on its standard input, and returns
/// the JSON line it prints. A failure names the peer (`who`) and how to install what it
/// needs (`packages`), with the last line of its error output.
fn run_python(
    python: &str,
    script: &Path,
    args: &[&str],
    input: &str,
    who: &str,
    packages: &str,
) -> Result<serde_json::Value> {
    use std::io::Write;
    let failed = |detail: String| {
        Error::Config(format!(
            "le pair {who} n'a pas pu tourner ({detail}) ; pour l'installer : « {python} -m pip install {packages} »"
        ))
    };
    let mut child = std::process::Command::new(python)
        .arg(script)
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| failed(e.to_string()))?;
    child
        .stdin
        .take()
        .expect("piped stdin")
        .write_all(input.as_bytes())
        .map_err(|e| failed(e.to_string()))?;
    let output = child
        .wait_with_output()
        .map_err(|e| failed(e.to_string()))?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        return Err(failed(stderr.lines().last().unwrap_or("").to_owned()));
    }
    let line = String::from_utf8_lossy(&output.stdout);
    serde_json::from_str(line.trim()).map_err(|e| failed(format!("sortie illisible : {e}")))
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

/// The simulation a source holds (to continue it), and a lake folder `work_dir/lac`,
/// `work_dir` emptied first.
async fn simulated_source_and_fresh_lake(
    url: &str,
    work_dir: &Path,
) -> Result<(operational::simulator::SimulationConfig, PathBuf)> {
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
    Ok((config, work_dir.join("lac")))
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
    let (config, data) = simulated_source_and_fresh_lake(url, work_dir).await?;
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

const DUCKDB_SCRIPT: &str = include_str!("peer_duckdb.py");

/// What the compute benchmark measured (best of the rounds for both).
#[derive(Debug, Clone)]
pub struct ComputeBench {
    pub ours: Duration,
    pub peer: Duration,
    pub rows: usize,
    pub detail_rows: u64,
    pub indicators: usize,
    pub rounds: usize,
    /// Rows present on one side only or whose value, terms or primary flag differ.
    pub differences: u64,
    /// A few of them, to read.
    pub examples: Vec<String>,
    /// Each indicator's best times: (code, ours, peer).
    pub each: Vec<(&'static str, Duration, Duration)>,
}

/// The compute benchmark: the catalogue's SQL of every indicator run as a full compute
/// runs it — the records listed once and kept in memory, then their aggregation and
/// published grid with the primary disclosure flags (threshold `threshold`) — by the
/// project's engine (DataFusion over the Delta tables of the latest run) and by DuckDB
/// (Python package, the records in a temporary table) over the same Parquet files,
/// `rounds` times each, alternating; then both results compared cell by cell. Secondary
/// suppression, fingerprints and the release's writes are outside both timings.
pub async fn bench_compute(
    data_dir: &Path,
    work_dir: &Path,
    python: &str,
    threshold: i64,
    rounds: usize,
    mut step: impl FnMut(&str),
) -> Result<ComputeBench> {
    use datafusion::dataframe::DataFrameWriteOptions;
    use datafusion::datasource::MemTable;

    let lake = warehouse::Lake::new(data_dir);
    if work_dir.exists() {
        std::fs::remove_dir_all(work_dir).map_err(io(work_dir))?;
    }
    std::fs::create_dir_all(work_dir).map_err(io(work_dir))?;
    step("préparation");
    let (ctx, _) = lake.detail_session().await?;
    indicators::compute::prepare(&ctx).await?;
    let mut tables = lake.detail_files().await?;
    let mut detail_rows = 0;
    for name in tables.keys() {
        detail_rows += ctx
            .table(name.as_str())
            .await
            .map_err(df)?
            .count()
            .await
            .map_err(df)? as u64;
    }
    for name in indicators::compute::PREPARED_TABLES {
        let path = work_dir.join(format!("{name}.parquet"));
        ctx.table(name)
            .await
            .map_err(df)?
            .write_parquet(
                &path.to_string_lossy(),
                DataFrameWriteOptions::new().with_single_file_output(true),
                None,
            )
            .await
            .map_err(df)?;
        tables.insert(name.to_owned(), vec![path.to_string_lossy().into_owned()]);
    }
    // Each indicator as the compute runs it: its records listed once, then its grid over
    // them (the peer does the same with a temporary table, and runs the grid's plain SQL).
    let queries: Vec<(&str, String, String)> = indicators::CATALOGUE
        .iter()
        .map(|i| {
            (
                i.id,
                indicators::catalogue::resolved_sql(i),
                indicators::compute::plain_grid_sql(i, threshold, 0),
            )
        })
        .collect();
    let out = work_dir.join("pair");
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    let job = serde_json::json!({
        "tables": tables,
        "queries": queries,
        "out": out,
        "threads": threads,
    })
    .to_string();
    // The job stays beside the script while the bench runs (and after a failure of
    // the peer, to rerun it by hand: python3 peer_duckdb.py < job.json).
    let job_file = work_dir.join("job.json");
    std::fs::write(&job_file, &job).map_err(io(&job_file))?;
    let script = work_dir.join("peer_duckdb.py");
    std::fs::write(&script, DUCKDB_SCRIPT).map_err(io(&script))?;

    let mut best = (Duration::MAX, Duration::MAX);
    let mut each: Vec<(&'static str, Duration, Duration)> = queries
        .iter()
        .map(|(id, _, _)| {
            let code = indicators::by_id(id).map_or("?", |i| i.code);
            (code, Duration::MAX, Duration::MAX)
        })
        .collect();
    let mut ours = Vec::new();
    for round in 1..=rounds.max(1) {
        step(&format!("tour {round} : Observatoire (DataFusion)"));
        let started = Instant::now();
        let mut batches = Vec::new();
        // `queries` was built from the catalogue, in its order.
        for (n, (indicator, (id, _, _))) in indicators::CATALOGUE.iter().zip(&queries).enumerate() {
            // The compute's own grid (the peer's is the same SQL over the records as
            // listed, without the order and modalities `register_records` packs).
            let sql = indicators::compute::registered_grid_sql(indicator, threshold, 0);
            step(&format!(
                "tour {round} : Observatoire (DataFusion), {}",
                each[n].0
            ));
            let one = Instant::now();
            let (schema, records) = indicators::compute::list_records(&ctx, indicator).await?;
            indicators::compute::register_records(
                &ctx,
                indicator,
                schema,
                records,
                "calendrier",
                "periodes",
            )
            .await?;
            let rows = ctx
                .sql(&sql)
                .await
                .map_err(df)?
                .collect()
                .await
                .map_err(|source| indicators::ComputeError::Indicator {
                    indicator: indicators::by_id(id).map_or("?", |i| i.code),
                    source: Box::new(source),
                })?;
            for batch in &rows {
                batches.push(indicators::compute::conform(batch)?);
            }
            each[n].1 = each[n].1.min(one.elapsed());
        }
        best.0 = best.0.min(started.elapsed());
        ours = batches;
        step(&format!("tour {round} : DuckDB"));
        if out.exists() {
            std::fs::remove_dir_all(&out).map_err(io(&out))?;
        }
        let (peer, times) = run_duckdb(python, &script, &job)?;
        best.1 = best.1.min(peer);
        for (n, (id, _, _)) in queries.iter().enumerate() {
            if let Some(t) = times.get(*id) {
                each[n].2 = each[n].2.min(*t);
            }
        }
    }

    step("comparaison des valeurs");
    let rows = ours.iter().map(|b| b.num_rows()).sum();
    let check = warehouse::new_session();
    if rows == 0 {
        return Err(Error::Config(
            "aucune ligne calculée : le lac est-il vide ?".into(),
        ));
    }
    let schema = warehouse::stats_schema();
    check
        .register_table(
            "ours",
            Arc::new(MemTable::try_new(schema, vec![ours]).map_err(df)?),
        )
        .map_err(df)?;
    check
        .register_parquet(
            "peer",
            out.to_string_lossy().as_ref(),
            datafusion::prelude::ParquetReadOptions::default(),
        )
        .await
        .map_err(df)?;
    let same = |c: &str| {
        format!(
            "((o.{c} IS NULL AND p.{c} IS NULL) OR ABS(o.{c} - p.{c}) <= 1e-9 * GREATEST(1.0, ABS(o.{c})))"
        )
    };
    let sql = format!(
        "SELECT COALESCE(o.indicateur, p.indicateur) AS i, COALESCE(o.territoire, p.territoire) AS t,
                COALESCE(o.pas, p.pas) AS s, COALESCE(o.periode, p.periode) AS q,
                COALESCE(o.dimension, p.dimension) AS d, COALESCE(o.modalite, p.modalite) AS m,
                o.valeur AS ov, p.valeur AS pv
         FROM ours o FULL OUTER JOIN peer p
           ON o.indicateur = p.indicateur AND o.territoire_niveau = p.territoire_niveau
          AND o.territoire = p.territoire AND o.pas = p.pas AND o.periode = p.periode
          AND o.dimension = p.dimension AND o.modalite = p.modalite
         WHERE o.indicateur IS NULL OR p.indicateur IS NULL OR NOT ({} AND {} AND {})
            OR o.secret <> p.secret OR o.debut <> p.debut OR o.fin <> p.fin
         ORDER BY i, t, s, q, d, m",
        same("valeur"),
        same("numerateur"),
        same("denominateur")
    );
    let differing = check
        .sql(&sql)
        .await
        .map_err(df)?
        .collect()
        .await
        .map_err(df)?;
    let differences = differing.iter().map(|b| b.num_rows() as u64).sum();
    let examples = differing
        .first()
        .map(|b| {
            let text = arrow::util::display::ArrayFormatter::try_new;
            let options = arrow::util::display::FormatOptions::default();
            (0..b.num_rows().min(5))
                .map(|r| {
                    (0..b.num_columns())
                        .map(|c| {
                            text(b.column(c).as_ref(), &options)
                                .map(|f| f.value(r).to_string())
                                .unwrap_or_default()
                        })
                        .collect::<Vec<_>>()
                        .join(" | ")
                })
                .collect()
        })
        .unwrap_or_default();
    std::fs::remove_dir_all(work_dir).map_err(io(work_dir))?;
    Ok(ComputeBench {
        ours: best.0,
        peer: best.1,
        rows,
        detail_rows,
        indicators: queries.len(),
        rounds: rounds.max(1),
        differences,
        examples,
        each,
    })
}

fn df(e: datafusion::error::DataFusionError) -> Error {
    Error::Compute(indicators::ComputeError::from(e))
}

/// Runs the DuckDB peer: its total time and each indicator's.
fn run_duckdb(
    python: &str,
    script: &Path,
    job: &str,
) -> Result<(Duration, std::collections::HashMap<String, Duration>)> {
    let value = run_python(python, script, &[], job, "DuckDB", "duckdb pyarrow")?;
    let each = value["each"]
        .as_object()
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| Some((k.clone(), Duration::from_secs_f64(v.as_f64()?))))
                .collect()
        })
        .unwrap_or_default();
    Ok((reported_seconds(&value, "DuckDB")?, each))
}

/// What the incremental compute benchmark measured.
#[derive(Debug, Clone)]
pub struct ComputeIncrementalBench {
    pub detail_rows: u64,
    pub days: i64,
    /// The incremental compute after the new day(s), and the full one on the same lake.
    pub incremental: indicators::Release,
    pub incremental_time: Duration,
    pub full: indicators::Release,
    pub full_time: Duration,
    /// Cells whose current row differs between the two releases (all columns but
    /// `version`), or present in one only.
    pub differences: usize,
    pub examples: Vec<String>,
}

/// The incremental compute benchmark, on a simulated source: in `work_dir` (emptied
/// first), a full ingest and a first release (not timed), `simulate --continue` by
/// `days` days and an incremental ingest (not timed), then the incremental compute
/// (timed) and a full compute of the same lake (timed, `full`), whose current figures
/// are compared cell by cell. The source is continued for good.
pub async fn bench_compute_incremental(
    url: &str,
    work_dir: &Path,
    options: &indicators::ComputeOptions,
    days: i64,
    mut step: impl FnMut(&str),
) -> Result<ComputeIncrementalBench> {
    let (config, data) = simulated_source_and_fresh_lake(url, work_dir).await?;
    let ingest = IngestOptions {
        allow_mass_delete: true,
        ..Default::default()
    };
    step("ingestion complète");
    let first = crate::ingest_with_options(url, &data, &ingest, |_| {}).await?;
    let regular = indicators::Publication::Regular;
    step("première publication");
    crate::publish(&data, options, &regular, |_| {}).await?;
    step(&format!("simulation de {days} jour(s) de plus"));
    crate::simulate_continue(url, config.to + chrono::Duration::days(days), |_, _| {}).await?;
    step("ingestion incrémentale");
    crate::ingest_with_options(url, &data, &ingest, |_| {}).await?;
    step("calcul incrémental");
    let started = Instant::now();
    let incremental = crate::publish(&data, options, &regular, |_| {}).await?;
    let incremental_time = started.elapsed();
    step("calcul complet");
    let mut full_options = options.clone();
    full_options.full = true;
    let started = Instant::now();
    let full = crate::publish(&data, &full_options, &regular, |_| {}).await?;
    let full_time = started.elapsed();
    step("comparaison");
    let lake = warehouse::Lake::new(&data);
    let a = current_cells(&lake, incremental.version).await?;
    let b = current_cells(&lake, full.version).await?;
    let mut examples = Vec::new();
    let mut differences = 0;
    for (key, value) in &b {
        if a.get(key) != Some(value) {
            differences += 1;
            if examples.len() < 5 {
                examples.push(format!(
                    "{key} : {} au lieu de {value}",
                    a.get(key).map_or("absente", String::as_str)
                ));
            }
        }
    }
    differences += a.keys().filter(|k| !b.contains_key(*k)).count();
    Ok(ComputeIncrementalBench {
        detail_rows: first.rows.values().sum(),
        days,
        incremental,
        incremental_time,
        full,
        full_time,
        differences,
        examples,
    })
}

/// The current figures of release `version` (highest version ≤ it per cell): key →
/// every other column but `version`, as text.
async fn current_cells(
    lake: &warehouse::Lake,
    version: i64,
) -> Result<std::collections::HashMap<String, String>> {
    let ctx = warehouse::new_session();
    lake.register_stats(&ctx).await?;
    let sql = format!(
        "SELECT concat_ws('|', indicateur, territoire_niveau, territoire, pas, periode, dimension, modalite) AS cle,
                concat_ws('|', CAST(debut AS VARCHAR), CAST(fin AS VARCHAR),
                          COALESCE(CAST(valeur AS VARCHAR), '-'), CAST(secret AS VARCHAR),
                          COALESCE(CAST(numerateur AS VARCHAR), '-'),
                          COALESCE(CAST(denominateur AS VARCHAR), '-'), statut,
                          COALESCE(revision, '-')) AS valeur
         FROM (SELECT i.*, ROW_NUMBER() OVER (
                   PARTITION BY indicateur, territoire_niveau, territoire, pas, periode, dimension, modalite
                   ORDER BY version DESC) AS rang
               FROM indicateurs i WHERE i.version <= {version})
         WHERE rang = 1"
    );
    let batches = ctx
        .sql(&sql)
        .await
        .map_err(df)?
        .collect()
        .await
        .map_err(df)?;
    let mut out = std::collections::HashMap::new();
    for b in &batches {
        let text = |i: usize| {
            arrow::compute::cast(b.column(i), &arrow::datatypes::DataType::Utf8)
                .map_err(|e| Error::Compute(indicators::ComputeError::Arrow(e)))
        };
        let (k, v) = (text(0)?, text(1)?);
        use arrow::array::AsArray;
        let (k, v) = (k.as_string::<i32>(), v.as_string::<i32>());
        for i in 0..b.num_rows() {
            out.insert(k.value(i).to_owned(), v.value(i).to_owned());
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn processor_clocks_are_read_from_proc_in_seconds_of_one_core() {
        // user nice system idle iowait irq softirq steal guest guest_nice
        let stat =
            "cpu  1000 20 300 9000 400 5 70 800 0 0\ncpu0 500 10 150 4500 200 2 35 400 0 0\n";
        // A command name with a space and a parenthesis, then state, ppid, …; utime 250
        // and stime 40 are the 14th and 15th fields.
        let own = "4242 (bench (x) y) R 1 2 3 4 5 6 7 8 9 10 250 40 7 3 20 0 1 0";
        let clock = CpuClock::parse(stat, own).unwrap();
        // Busy: user + nice + system + irq + softirq, not idle, iowait or steal.
        assert_eq!(clock.machine, (1000 + 20 + 300 + 5 + 70) as f64 / 100.0);
        // Own: user + system, not the waited children's (7 and 3).
        assert_eq!(clock.process, 2.9);
        assert_eq!(CpuClock::parse("intr 1 2 3\n", own), None);
        assert_eq!(CpuClock::parse(stat, "4242 (short) R 1 2"), None);
    }

    #[test]
    fn the_rest_of_the_machine_is_what_the_reader_did_not_use() {
        let reading = CpuUse {
            machine: 8.0,
            reader: 2.75,
        };
        assert_eq!(reading.rest(), 5.25);
        // Clocks read at slightly different instants never give a negative rest.
        let skewed = CpuUse {
            machine: 1.0,
            reader: 1.01,
        };
        assert_eq!(skewed.rest(), 0.0);
    }
}
