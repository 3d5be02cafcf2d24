//! `simulate`: départements simulated in parallel (one generator each), written one
//! département per transaction as they come, so memory holds a few départements at
//! most; `--continue` extends a database from the day it stopped.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use chrono::NaiveDate;
use operational::load::{Batch, available_space};
use operational::simulator::{self, Defect, DepartementOutput, SimulationConfig, Summary};
use operational::{Source, Value};

use crate::{Error, Result};

/// What a simulation wrote.
#[derive(Debug)]
pub struct SimulationReport {
    pub config: SimulationConfig,
    /// The day the database stopped before a continuation.
    pub continued_from: Option<NaiveDate>,
    pub summary: Summary,
    pub defects: Vec<Defect>,
    /// Rows inserted, and rows deleted (continuation: purges, merges, changed rows).
    pub inserted: u64,
    pub deleted: u64,
}

/// Rows written per thousand inhabitants and year at scale 1.0, and bytes per row on
/// disk with its primary-key index, both measured on a national year into PostgreSQL
/// (BENCHMARKS.md: 16.2 M rows, 2.0 GB); a margin of half as much again for the
/// write-ahead log and the index builds.
const ROWS_PER_THOUSAND_PER_YEAR: f64 = 240.0;
const BYTES_PER_ROW: f64 = 125.0;
const MARGIN: f64 = 1.5;

/// Bytes a simulation is expected to need.
pub fn estimated_bytes(config: &SimulationConfig) -> u64 {
    let years = (config.to - config.from).num_days() as f64 / 365.0;
    let inhabitants: f64 = config
        .departements
        .iter()
        .map(|d| f64::from(simulator::profile::population(d)))
        .sum();
    (inhabitants * config.scale * years * ROWS_PER_THOUSAND_PER_YEAR * BYTES_PER_ROW * MARGIN)
        as u64
}

async fn check_space(source: &Source, url: &str, config: &SimulationConfig) -> Result<()> {
    let needed = estimated_bytes(config);
    if let Some(folder) = source.storage_folder(url).await
        && let Some(free) = available_space(&folder)
        && free < needed
    {
        return Err(Error::DiskSpace {
            folder: folder.display().to_string(),
            needed_mb: needed / 1_000_000,
            free_mb: free / 1_000_000,
        });
    }
    Ok(())
}

/// Simulates into the source at `url` (created and migrated if needed). Refuses a
/// non-empty database unless `replace` is set. `progress(done, total)` counts
/// départements written.
pub async fn simulate(
    url: &str,
    config: &SimulationConfig,
    replace: bool,
    mut progress: impl FnMut(usize, usize),
) -> Result<SimulationReport> {
    config.validate()?;
    let source = Source::create(url).await?;
    if crate::source_has_rows(&source).await? {
        if !replace {
            return Err(Error::SourceNotEmpty(operational::source::redact_url(url)));
        }
        source.truncate_all().await?;
    }
    source.clear_simulation().await?;
    check_space(&source, url, config).await?;
    source.begin_bulk_load().await?;
    let mut report = SimulationReport {
        config: config.clone(),
        continued_from: None,
        summary: Summary::default(),
        defects: Vec::new(),
        inserted: 0,
        deleted: 0,
    };
    let written = run_parallel(
        config,
        |config, dep| {
            let out = simulator::simulate_departement(config, dep)?;
            let batch = Batch {
                deletions: Vec::new(),
                insertions: out.data,
            };
            Ok((batch, out.summary, out.defects))
        },
        &source,
        &mut report,
        &mut progress,
    )
    .await;
    // The keys are rebuilt even if a département failed, so that what was written
    // stays usable.
    let rebuilt = source.end_bulk_load().await;
    written?;
    rebuilt?;
    source.save_simulation(config).await?;
    report.defects.sort();
    Ok(report)
}

/// Extends a database written by `simulate` to `to`: what happened from the day it
/// stopped (new rows, rows changed: exits, answers, corrections; rows deleted: purges
/// and merges). Same seed, same départements, same scale, same defect rate.
pub async fn simulate_continue(
    url: &str,
    to: NaiveDate,
    mut progress: impl FnMut(usize, usize),
) -> Result<SimulationReport> {
    let source = Source::open(url).await?;
    let Some(previous) = source.simulation().await? else {
        return Err(Error::NothingToContinue(operational::source::redact_url(
            url,
        )));
    };
    if to <= previous.to {
        return Err(Error::Config(format!(
            "--to : la base est déjà simulée jusqu'au {} (exclu) ; choisissez une date postérieure",
            previous.to
        )));
    }
    let mut config = previous.clone();
    config.to = to;
    config.validate()?;
    let mut extension = config.clone();
    extension.from = previous.to;
    check_space(&source, url, &extension).await?;
    let mut report = SimulationReport {
        config: config.clone(),
        continued_from: Some(previous.to),
        summary: Summary::default(),
        defects: Vec::new(),
        inserted: 0,
        deleted: 0,
    };
    let earlier = previous.to;
    run_parallel(
        &config,
        move |config, dep| {
            let (before, after) = simulator::simulate_departement_between(config, dep, earlier)?;
            let batch = difference(&before, &after);
            Ok((batch, after.summary, after.defects))
        },
        &source,
        &mut report,
        &mut progress,
    )
    .await?;
    source.save_simulation(&config).await?;
    report.defects.sort();
    Ok(report)
}

/// The changes that turn one state of a département into the next: rows that
/// disappeared are deleted, rows that changed are deleted and written again, new
/// rows are written.
fn difference(before: &DepartementOutput, after: &DepartementOutput) -> Batch {
    let mut batch = Batch::default();
    for (table, rows) in after.data.in_schema_order() {
        let old: HashMap<i64, &Vec<Value>> = before
            .data
            .rows(table.name)
            .iter()
            .filter_map(|r| Some((r[0].as_int()?, r)))
            .collect();
        let mut seen = std::collections::HashSet::new();
        let mut deleted = Vec::new();
        let mut inserted = Vec::new();
        for row in rows {
            let Some(id) = row[0].as_int() else { continue };
            seen.insert(id);
            match old.get(&id) {
                Some(previous) if *previous == row => {}
                Some(_) => {
                    deleted.push(id);
                    inserted.push(row.clone());
                }
                None => inserted.push(row.clone()),
            }
        }
        deleted.extend(old.keys().filter(|id| !seen.contains(id)));
        deleted.sort_unstable();
        if !deleted.is_empty() {
            batch.deletions.push((table, deleted));
        }
        if !inserted.is_empty() {
            batch.insertions.tables.insert(table.name, inserted);
        }
    }
    batch
}

type Work = (Batch, Summary, Vec<Defect>);

/// Simulates the départements on worker threads (as many as there are cores, at
/// most 4) and writes each one's batch as it arrives, in one transaction.
async fn run_parallel<F>(
    config: &SimulationConfig,
    work: F,
    source: &Source,
    report: &mut SimulationReport,
    progress: &mut impl FnMut(usize, usize),
) -> Result<()>
where
    F: Fn(&SimulationConfig, &str) -> Result<Work, simulator::SimulationError>
        + Send
        + Sync
        + 'static,
{
    let total = config.departements.len();
    let workers = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2)
        .clamp(1, 4)
        .min(total);
    // At most two départements wait to be written: memory stays bounded.
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Result<Work, Error>>(2);
    let next = Arc::new(AtomicUsize::new(0));
    let config = Arc::new(config.clone());
    let work = Arc::new(work);
    let mut handles = Vec::new();
    for _ in 0..workers {
        let (tx, next, config, work) = (tx.clone(), next.clone(), config.clone(), work.clone());
        handles.push(std::thread::spawn(move || {
            loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                let Some(dep) = config.departements.get(i) else {
                    break;
                };
                let out = work(&config, dep).map_err(Error::from);
                let failed = out.is_err();
                // A closed channel means the writer stopped: stop simulating.
                if tx.blocking_send(out).is_err() || failed {
                    break;
                }
            }
        }));
    }
    drop(tx);
    let mut done = 0;
    let mut outcome = Ok(());
    while let Some(out) = rx.recv().await {
        let written = match out {
            Ok((batch, summary, defects)) => source.write_batch(&batch).await.map(|()| {
                report.inserted += batch.insertions.total_rows() as u64;
                report.deleted += batch
                    .deletions
                    .iter()
                    .map(|(_, ids)| ids.len() as u64)
                    .sum::<u64>();
                report.summary.add(&summary);
                report.defects.extend(defects);
            }),
            Err(e) => {
                outcome = Err(e);
                break;
            }
        };
        if let Err(e) = written {
            outcome = Err(Error::from(e));
            break;
        }
        done += 1;
        progress(done, total);
    }
    if outcome.is_err() {
        next.store(usize::MAX / 2, Ordering::SeqCst);
    }
    rx.close();
    // Drain what workers already produced so none stays blocked on a full channel.
    while rx.recv().await.is_some() {}
    for h in handles {
        let _ = h.join();
    }
    outcome
}

/// Writes the defect manifest: CSV `table,id,rule`, one line per injected breach.
pub fn write_manifest(path: &Path, defects: &[Defect]) -> Result<()> {
    let mut text = String::from("table,id,rule\n");
    for d in defects {
        text.push_str(&format!("{},{},{}\n", d.table, d.id, d.rule));
    }
    std::fs::write(path, text).map_err(|source| Error::Io {
        path: path.to_path_buf(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_national_year_is_estimated_at_a_few_gigabytes() {
        let mut config = SimulationConfig {
            departements: operational::territory::departements()
                .map(|d| d.code.to_owned())
                .collect(),
            to: NaiveDate::from_ymd_opt(2026, 1, 1).unwrap(),
            scale: 1.0,
            ..SimulationConfig::default()
        };
        let year = estimated_bytes(&config);
        assert!((2_000_000_000..5_000_000_000).contains(&year), "{year}");
        config.scale = 0.05;
        assert!(estimated_bytes(&config) < year / 10);
        assert!(available_space(Path::new("/")).is_some_and(|b| b > 0));
    }
}
