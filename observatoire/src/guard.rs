//! Guards of the writing commands: one writer at a time per lake, and no run that would
//! empty a table by mistake.

use std::collections::{BTreeMap, HashSet};
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use arrow::array::{AsArray, RecordBatch};
use arrow::compute::cast;
use arrow::datatypes::DataType;
use warehouse::Lake;

use crate::{Error, Result};

/// The lock of a lake's writers (ingest, compute, vacuum, key rotation), held while the
/// value lives. An OS file lock: a killed process releases it.
#[derive(Debug)]
pub struct WriterLock {
    _file: File,
}

/// Where the lock file lives.
pub fn lock_path(data_dir: &Path) -> PathBuf {
    data_dir.join("lake").join("_meta").join("ecriture.lock")
}

/// Takes the lake's writer lock, or says who holds it.
pub fn lock(data_dir: &Path, operation: &str) -> Result<WriterLock> {
    let path = lock_path(data_dir);
    let io = |source| Error::Io {
        path: path.clone(),
        source,
    };
    std::fs::create_dir_all(path.parent().expect("a folder")).map_err(io)?;
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(&path)
        .map_err(io)?;
    match file.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => {
            let holder = std::fs::read_to_string(&path).unwrap_or_default();
            return Err(Error::Locked {
                path: path.clone(),
                holder: holder.trim().to_owned(),
            });
        }
        Err(std::fs::TryLockError::Error(source)) => return Err(io(source)),
    }
    file.set_len(0).map_err(io)?;
    writeln!(file, "{operation} (processus {})", std::process::id()).map_err(io)?;
    Ok(WriterLock { _file: file })
}

/// What a run changes in one detail table, against the latest complete run (rows
/// compared by id where the table stores one, else by count).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TableChange {
    pub before: u64,
    pub after: u64,
    pub inserted: u64,
    pub deleted: u64,
}

/// What a run changes, table by table.
pub async fn changes(
    lake: &Lake,
    detail: &BTreeMap<String, RecordBatch>,
) -> Result<BTreeMap<String, TableChange>> {
    let manifest = lake.latest_run()?;
    let mut out = BTreeMap::new();
    for (name, batch) in detail {
        let after = batch.num_rows() as u64;
        let pinned = manifest.as_ref().and_then(|m| m.tables.get(name).copied());
        let before = manifest
            .as_ref()
            .and_then(|m| m.rows.get(name).copied())
            .unwrap_or(0);
        let old_table = match pinned {
            Some(version) => lake.open("detail", name, Some(version)).await?,
            None => None,
        };
        let change = match old_table {
            Some(table) if batch.schema().index_of("id").is_ok() => {
                let new_ids = ids(batch)?;
                let old =
                    crate::quality::query(lake, &table, "precedente", "SELECT id FROM precedente")
                        .await?;
                let mut deleted = 0u64;
                let mut kept = 0u64;
                for b in &old {
                    for id in ids(b)? {
                        if new_ids.contains(&id) {
                            kept += 1;
                        } else {
                            deleted += 1;
                        }
                    }
                }
                TableChange {
                    before,
                    after,
                    inserted: after.saturating_sub(kept),
                    deleted,
                }
            }
            _ => TableChange {
                before,
                after,
                inserted: after.saturating_sub(before),
                deleted: before.saturating_sub(after),
            },
        };
        out.insert(name.clone(), change);
    }
    Ok(out)
}

/// Refuses a run that would delete more than `max_share` of the rows of a detail table
/// of the latest complete run (a misconfigured or truncated source must not empty the
/// lake).
pub fn check_mass_delete(changes: &BTreeMap<String, TableChange>, max_share: f64) -> Result<()> {
    for (name, c) in changes {
        if c.before == 0 {
            continue;
        }
        let share = c.deleted as f64 / c.before as f64;
        if share > max_share {
            return Err(Error::MassDelete {
                table: name.clone(),
                deleted: c.deleted,
                before: c.before,
                share_percent: format!("{:.1}", share * 100.0).replace('.', ","),
                limit_percent: format!("{:.1}", max_share * 100.0).replace('.', ","),
            });
        }
    }
    Ok(())
}

fn ids(batch: &RecordBatch) -> Result<HashSet<String>> {
    let column = batch
        .column_by_name("id")
        .expect("checked: the table has an id");
    let text = cast(column, &DataType::Utf8).map_err(|e| Error::Quality(e.to_string()))?;
    Ok(text
        .as_string::<i32>()
        .iter()
        .flatten()
        .map(str::to_owned)
        .collect())
}
