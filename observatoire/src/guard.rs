//! Guards of the writing commands: one writer at a time per lake, and no run that would
//! empty a table by mistake.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use warehouse::merge::MergePlan;

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

/// Stops a run that would delete more than `max_share` of a table's rows (each plan
/// compares the table's new content with its latest version).
pub fn check_mass_delete(plans: &[MergePlan], max_share: f64) -> Result<()> {
    for plan in plans {
        if plan.rows_before == 0 {
            continue;
        }
        let deleted = plan.changes.supprimees;
        let share = deleted as f64 / plan.rows_before as f64;
        if share > max_share {
            return Err(Error::MassDelete {
                table: plan.table.clone(),
                deleted,
                before: plan.rows_before,
                share_percent: format!("{:.1}", share * 100.0).replace('.', ","),
                limit_percent: format!("{:.1}", max_share * 100.0).replace('.', ","),
            });
        }
    }
    Ok(())
}
