//! Retention: the right to be forgotten on disk.
//!
//! A household purged in the source leaves the detail zone at the next ingest (the
//! tables are rewritten without it), but Delta keeps the files of earlier versions for
//! time travel, and the JSON commits of those versions carry per-file statistics
//! (minimum and maximum of each column, pseudonyms included). `vacuum` removes both once
//! the time-travel window is past:
//! - the data files that no version inside the window references (Delta `VACUUM`, lite
//!   mode: files of `remove` actions older than the window);
//! - the commits older than the window, after writing a checkpoint of the version kept,
//!   so that the table stays readable and older versions can no longer be rebuilt.
//!
//! An incremental ingest deletes rows by deletion vectors: the rows stay in their files,
//! marked. So `vacuum` first rewrites the detail tables whose pinned files carry vectors
//! (the latest run's manifest then names the new versions, same content), and the files
//! holding the deleted rows become files of older versions like any other.
//!
//! Detail tables are vacuumed at the version pinned by the latest complete run (never at
//! a later version a half-finished ingest may have committed), the other zones at their
//! latest version. Published aggregates are untouched: they are anonymous, and the
//! statistical base is append-only. The computation's state (`calcul`: the grid and the
//! records' fingerprints, no pseudonym) keeps its latest version; a compute that finds
//! no state of the last release recomputes everything.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::record_batch::RecordBatch;

use deltalake::checkpoints::{cleanup_expired_logs_for, create_checkpoint};

use crate::{Lake, Result, WarehouseError, delta, io};

/// The zones whose Delta tables are vacuumed.
const ZONES: &[&str] = &[
    "detail",
    "changements",
    "analyst",
    "stats",
    "quality",
    "audit",
    "calcul",
];

/// What a vacuum removed, per table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VacuumedTable {
    /// `zone/table`.
    pub table: String,
    /// The version kept (and checkpointed).
    pub version: i64,
    /// Data files deleted.
    pub files_deleted: usize,
    /// Commit and checkpoint files of older versions deleted.
    pub logs_deleted: usize,
}

impl Lake {
    /// Removes the files and commits that only versions older than `window` need.
    /// A window of zero keeps only the current version of each table.
    pub async fn vacuum(&self, window: chrono::Duration) -> Result<Vec<VacuumedTable>> {
        if window < chrono::Duration::zero() {
            return Err(WarehouseError::Manifest {
                path: self.root.clone(),
                reason: "la fenêtre de conservation ne peut pas être négative".into(),
            });
        }
        self.rewrite_deleted_rows().await?;
        // The groups the last run rewrote name the pseudonyms it deleted: emptied here,
        // they leave the disk with the older versions, like the detail rows that held
        // them (the next compute then lists every record).
        if crate::has_commit(&self.table_path(crate::KEYS_ZONE, crate::KEYS_TABLE)) {
            self.overwrite(
                crate::KEYS_ZONE,
                crate::KEYS_TABLE,
                RecordBatch::new_empty(crate::keys_schema()),
            )
            .await?;
        }
        let latest = self.latest_run()?;
        // Whether the lake is at its latest run (not after a run killed half-way).
        let at_run = match &latest {
            Some(m) => self.is_at(m).await?,
            None => false,
        };
        let pinned = latest
            .as_ref()
            .map(|m| m.tables.clone())
            .unwrap_or_default();
        let pinned_quality = latest.map(|m| m.quality).unwrap_or_default();
        let mut out = Vec::new();
        for zone in ZONES {
            for name in delta_tables(&self.root.join(zone))? {
                let version = if *zone == "detail" {
                    match pinned.get(&name) {
                        Some(v) => Some(*v),
                        // A table no complete run references yet: a half-finished first
                        // ingest. Leave it to the run that will finish it.
                        None => continue,
                    }
                } else if *zone == "quality" {
                    // Like detail: the version the latest complete run wrote.
                    match pinned_quality.get(&name) {
                        Some(v) => Some(*v),
                        None => continue,
                    }
                } else {
                    None
                };
                let label = format!("{zone}/{name}");
                let Some(table) = self.open(zone, &name, version).await? else {
                    continue;
                };
                let version = table.version().map_or(0, |v| v as i64);
                let (table, metrics) = table
                    .vacuum()
                    .with_retention_period(window)
                    .with_enforce_retention_duration(false)
                    .await
                    .map_err(delta(&label))?;
                // The checkpoint holds the state of the kept version: commits before it
                // are no longer needed to read the table, and are deleted.
                let kept = self
                    .open(zone, &name, Some(version))
                    .await?
                    .unwrap_or(table);
                create_checkpoint(&kept, None)
                    .await
                    .map_err(delta(&label))?;
                let cutoff = (chrono::Utc::now() - window).timestamp_millis() + 1;
                let logs_deleted =
                    cleanup_expired_logs_for(version as _, kept.log_store().as_ref(), cutoff, None)
                        .await
                        .map_err(delta(&label))?;
                out.push(VacuumedTable {
                    table: label,
                    version,
                    files_deleted: metrics.files_deleted.len(),
                    logs_deleted,
                });
            }
        }
        if at_run && let Some(mut manifest) = self.latest_run()? {
            // Delta's vacuum commits its start and end to each table: the run names those
            // versions (same content), or the next ingest would find the tables ahead of
            // the run and read the source whole.
            for (zone, tables) in [
                ("detail", &mut manifest.tables),
                ("quality", &mut manifest.quality),
            ] {
                for (name, version) in tables.iter_mut() {
                    if let Some(table) = self.open(zone, name, None).await? {
                        *version = table.version().map_or(*version, |v| v as i64);
                    }
                }
            }
            self.record_run(&manifest)?;
        }
        Ok(out)
    }
}

/// The Delta tables directly under a zone's folder, by name.
impl Lake {
    /// Rewrites the detail tables whose files, at the latest run's versions, carry
    /// deletion vectors, and records the new versions in that run's manifest; returns
    /// their names. Nothing is done while a table is ahead of the manifest (a run killed
    /// half-way: the next ingest reads the source whole and rewrites what differs).
    pub async fn rewrite_deleted_rows(&self) -> Result<Vec<String>> {
        let Some(mut manifest) = self.latest_run()? else {
            return Ok(Vec::new());
        };
        if !self.is_at(&manifest).await? {
            tracing::warn!(
                "tables du lac en avance sur la dernière ingestion complète : lignes supprimées par vecteurs laissées en place jusqu'à la prochaine ingestion"
            );
            return Ok(Vec::new());
        }
        let mut rewritten = Vec::new();
        for (name, version) in manifest.tables.iter_mut() {
            let Some(table) = self.open("detail", name, Some(*version)).await? else {
                continue;
            };
            if !crate::vectors::has_deletions(&table) {
                continue;
            }
            let ctx = crate::new_session();
            self.register(&ctx, "courante", &table).await?;
            let frame = ctx.table("courante").await?;
            let schema = Arc::new(frame.schema().as_arrow().clone());
            let batches = frame.collect().await?;
            let content = crate::vectors::plain_strings(&schema, &batches, name)?;
            *version = self.overwrite("detail", name, content).await?;
            rewritten.push(name.clone());
        }
        if !rewritten.is_empty() {
            self.record_run(&manifest)?;
        }
        Ok(rewritten)
    }
}

pub(crate) fn delta_tables(zone: &Path) -> Result<Vec<String>> {
    if !zone.exists() {
        return Ok(Vec::new());
    }
    let mut names = Vec::new();
    for entry in std::fs::read_dir(zone).map_err(io(zone))? {
        let path: PathBuf = entry.map_err(io(zone))?.path();
        if crate::has_commit(&path)
            && let Some(name) = path.file_name().and_then(|n| n.to_str())
        {
            names.push(name.to_owned());
        }
    }
    names.sort();
    Ok(names)
}
