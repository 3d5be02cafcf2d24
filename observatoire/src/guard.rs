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

/// Refuses a run that would delete more than `max_share` of the rows of a detail table
/// of the latest complete run (a misconfigured or truncated source must not empty the
/// lake). Rows are compared by id where the table stores one, else by count.
pub async fn check_mass_delete(
    lake: &Lake,
    detail: &BTreeMap<String, RecordBatch>,
    max_share: f64,
) -> Result<()> {
    let Some(manifest) = lake.latest_run()? else {
        return Ok(());
    };
    for (name, batch) in detail {
        let Some(version) = manifest.tables.get(name) else {
            continue;
        };
        let before = manifest.rows.get(name).copied().unwrap_or(0);
        if before == 0 {
            continue;
        }
        let deleted = if batch.schema().index_of("id").is_ok() {
            let new_ids = ids(batch)?;
            let Some(table) = lake.open("detail", name, Some(*version)).await? else {
                continue;
            };
            let ctx = warehouse::new_session();
            lake.register(&ctx, "precedente", &table).await?;
            let old = ctx
                .sql("SELECT id FROM precedente")
                .await
                .map_err(|e| Error::Quality(e.to_string()))?
                .collect()
                .await
                .map_err(|e| Error::Quality(e.to_string()))?;
            let mut missing = 0u64;
            for b in &old {
                for id in ids(b)? {
                    if !new_ids.contains(&id) {
                        missing += 1;
                    }
                }
            }
            missing
        } else {
            before.saturating_sub(batch.num_rows() as u64)
        };
        let share = deleted as f64 / before as f64;
        if share > max_share {
            return Err(Error::MassDelete {
                table: name.clone(),
                deleted,
                before,
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
