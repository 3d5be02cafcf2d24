//! The lake: Delta tables in a local folder, its zones, the run manifest, and the
//! DataFusion session that every reader uses.
//!
//! Layout (see `shared/DESIGN.md`): `<data>/lake/detail/<table>` (pseudonymised
//! micro-data), `<data>/lake/stats/indicateurs` and `stats/releases` (the statistical
//! base), `<data>/lake/_meta/runs/NNNNNN.json` (one manifest per complete ingest run:
//! the version of every detail table it wrote) and `_meta/key.json` (the fingerprint
//! of the pseudonymisation key, never the key).
//!
//! Delta commits are per table; a run writes many. Readers therefore never take "the
//! latest version" of a detail table: they pin the versions of the latest complete
//! manifest, which is written last, atomically (temporary file then rename). A run
//! killed half-way leaves the previous manifest in force.

pub mod merge;
mod parts;
pub mod retention;
mod select;
pub mod stats;
mod vectors;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::record_batch::RecordBatch;
use datafusion::prelude::SessionContext;
use deltalake::DeltaTableError;
use deltalake::protocol::SaveMode;
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use url::Url;

pub use deltalake::DeltaTable;
pub use retention::VacuumedTable;
pub use select::{Conditions, KeySet};
pub use stats::{STATS_COLUMNS, stats_schema};

#[derive(Debug, thiserror::Error)]
pub enum WarehouseError {
    #[error("opération sur la table Delta {table} impossible : {source}")]
    Delta {
        table: String,
        source: Box<DeltaTableError>,
    },
    #[error("accès au dossier du lac {path} impossible : {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("manifeste du lac {path} illisible : {reason}")]
    Manifest { path: PathBuf, reason: String },
    #[error(
        "la clé de pseudonymisation (empreinte {given}) n'est pas celle du lac (empreinte {recorded}) : le lac refuse de mélanger des pseudonymes faits avec deux clés. Utilisez la clé d'origine (fichier secrets/pseudonymisation.key ou OBSERVATOIRE_PSEUDO_KEY)"
    )]
    KeyMismatch { given: String, recorded: String },
    #[error(
        "la clé de pseudonymisation d'empreinte {0} a été retirée par une rotation (observatoire key rotate) : utilisez la clé courante"
    )]
    KeyRetired(String),
    #[error(
        "le lac de {0} ne contient encore aucune ingestion complète : lancez d'abord « observatoire ingest »"
    )]
    NoRun(PathBuf),
    #[error(
        "le lac ne contient pas encore de base statistique : lancez d'abord « observatoire compute »"
    )]
    NoStats,
    #[error("écriture des changements de la table {table} impossible : {reason}")]
    Merge { table: String, reason: String },
    #[error("écriture de la table {table} impossible : {reason}")]
    Write { table: String, reason: String },
    #[error("requête DataFusion impossible : {0}")]
    DataFusion(Box<datafusion::error::DataFusionError>),
}

pub type Result<T, E = WarehouseError> = std::result::Result<T, E>;

/// One complete ingest run: the versions of the detail tables it wrote.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunManifest {
    pub run: u64,
    pub started_at: String,
    pub finished_at: String,
    /// Kind of source read (`sqlite` or `postgres`), never its URL.
    pub source: String,
    pub key_fingerprint: String,
    /// Detail table name → Delta version written by this run.
    pub tables: BTreeMap<String, i64>,
    pub rows: BTreeMap<String, u64>,
    /// Rows found breaking each rule of SOURCE_SCHEMA.md (quarantined or kept).
    #[serde(default)]
    pub regles: BTreeMap<String, u64>,
    /// Persons sharing a linkage key with another person, per SIAO (suspected
    /// duplicates; the keys themselves are never stored).
    #[serde(default)]
    pub doublons_suspects: BTreeMap<String, u64>,
    /// Quality table name (`quarantine`, `report`) → Delta version written by this run.
    #[serde(default)]
    pub quality: BTreeMap<String, i64>,
    /// Detail table name → rows this run inserted and deleted, against the previous run.
    #[serde(default)]
    pub changes: BTreeMap<String, TableChanges>,
    /// Source table name → the latest `updated_at` read by this run (RFC 3339).
    #[serde(default)]
    pub filigranes: BTreeMap<String, String>,
    /// How the run read the source: `complete` or `incrementale`.
    #[serde(default)]
    pub lecture: String,
    /// Version of the internal table of the groups this run rewrote ([`Lake::run_keys`]).
    #[serde(default)]
    pub cles: Option<i64>,
    /// Source table name → rows in quarantine after this run.
    #[serde(default)]
    pub quarantaine: BTreeMap<String, u64>,
}

/// What a run records besides the versions it writes.
#[derive(Debug, Clone, Default)]
pub struct RunRecord {
    /// Kind of source read (`sqlite` or `postgres`), never its URL.
    pub source: String,
    pub key_fingerprint: String,
    pub regles: BTreeMap<String, u64>,
    pub doublons_suspects: BTreeMap<String, u64>,
    pub filigranes: BTreeMap<String, String>,
    /// [`READ_FULL`] or [`READ_INCREMENTAL`].
    pub lecture: String,
    pub quarantaine: BTreeMap<String, u64>,
}

/// The table versions a run wrote, waiting for its manifest ([`Lake::commit_run`]).
#[derive(Debug, Clone)]
pub struct WrittenTables {
    started_at: String,
    versions: BTreeMap<String, i64>,
    rows: BTreeMap<String, u64>,
    changes: BTreeMap<String, TableChanges>,
    quality_versions: BTreeMap<String, i64>,
    keys_version: i64,
}

/// The internal table of the groups the last run rewrote in each detail table
/// ([`Lake::run_keys`]): never served, overwritten by every run, its older versions
/// vacuumed like the detail zone's (they hold the same pseudonyms).
const KEYS_ZONE: &str = "changements";
const KEYS_TABLE: &str = "cles";

fn keys_schema() -> arrow::datatypes::SchemaRef {
    use arrow::datatypes::{DataType, Field, Schema};
    Arc::new(Schema::new(vec![
        Field::new("table_detail", DataType::Utf8, false),
        Field::new("colonne", DataType::Utf8, true),
        Field::new("cle_nombre", DataType::Int64, true),
        Field::new("cle_chaine", DataType::Utf8, true),
        Field::new("table_entiere", DataType::Boolean, false),
    ]))
}

/// One row per group key each plan rewrites; one row `table_entiere` for a table rewritten
/// whole.
fn rewritten_keys(plans: &[merge::MergePlan]) -> Result<RecordBatch> {
    use arrow::array::{BooleanBuilder, Int64Builder, StringBuilder};
    let (mut table, mut column) = (StringBuilder::new(), StringBuilder::new());
    let (mut int, mut text) = (Int64Builder::new(), StringBuilder::new());
    let mut whole = BooleanBuilder::new();
    for plan in plans {
        match plan.rewritten()? {
            merge::Rewritten::None => {}
            merge::Rewritten::Whole => {
                table.append_value(&plan.table);
                column.append_null();
                int.append_null();
                text.append_null();
                whole.append_value(true);
            }
            merge::Rewritten::Keys(name, keys) => {
                for key in keys {
                    table.append_value(&plan.table);
                    column.append_value(&name);
                    match key {
                        merge::Key::Int(i) => {
                            int.append_value(i);
                            text.append_null();
                        }
                        merge::Key::Text(t) => {
                            int.append_null();
                            text.append_value(t);
                        }
                        merge::Key::Null => unreachable!("a null key rewrites the whole table"),
                    }
                    whole.append_value(false);
                }
            }
        }
    }
    Ok(RecordBatch::try_new(
        keys_schema(),
        vec![
            Arc::new(table.finish()),
            Arc::new(column.finish()),
            Arc::new(int.finish()),
            Arc::new(text.finish()),
            Arc::new(whole.finish()),
        ],
    )?)
}

/// The groups one run rewrote, per detail table.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RunKeys {
    /// Table → (key column, integer keys, text keys).
    pub keys: BTreeMap<String, (String, Vec<i64>, Vec<String>)>,
    /// Tables rewritten whole.
    pub whole: std::collections::BTreeSet<String>,
}

/// A run that read the whole source.
pub const READ_FULL: &str = "complete";
/// A run that read what changed since the previous run.
pub const READ_INCREMENTAL: &str = "incrementale";

/// Rows a run inserted into, updated in and deleted from one table.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableChanges {
    pub inserees: u64,
    #[serde(default)]
    pub mises_a_jour: u64,
    pub supprimees: u64,
}

#[derive(Debug, Serialize, Deserialize)]
struct KeyRecord {
    empreinte: String,
    /// Fingerprints of keys retired by a rotation, oldest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    retirees: Vec<String>,
}

/// A run's manifest, read from its file.
fn read_manifest(path: PathBuf) -> Result<RunManifest> {
    let text = std::fs::read_to_string(&path).map_err(io(&path))?;
    serde_json::from_str(&text).map_err(|e| WarehouseError::Manifest {
        path,
        reason: e.to_string(),
    })
}

/// The lake of one data folder.
#[derive(Debug, Clone)]
pub struct Lake {
    root: PathBuf,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> WarehouseError + '_ {
    move |source| WarehouseError::Io {
        path: path.to_owned(),
        source,
    }
}

fn delta(table: &str) -> impl FnOnce(DeltaTableError) -> WarehouseError + '_ {
    move |source| WarehouseError::Delta {
        table: table.to_owned(),
        source: Box::new(source),
    }
}

impl From<datafusion::error::DataFusionError> for WarehouseError {
    fn from(e: datafusion::error::DataFusionError) -> Self {
        WarehouseError::DataFusion(Box::new(e))
    }
}

impl From<arrow::error::ArrowError> for WarehouseError {
    fn from(e: arrow::error::ArrowError) -> Self {
        WarehouseError::DataFusion(Box::new(e.into()))
    }
}

impl Lake {
    /// The lake under `<data>/lake`.
    pub fn new(data_dir: &Path) -> Self {
        Self {
            root: data_dir.join("lake"),
        }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn meta_dir(&self) -> PathBuf {
        self.root.join("_meta")
    }

    fn runs_dir(&self) -> PathBuf {
        self.meta_dir().join("runs")
    }

    /// The folder of a table of a zone (`detail`, `stats`, …).
    pub fn table_path(&self, zone: &str, name: &str) -> PathBuf {
        self.root.join(zone).join(name)
    }

    fn table_url(&self, zone: &str, name: &str) -> Result<Url> {
        let path = self.table_path(zone, name);
        std::fs::create_dir_all(&path).map_err(io(&path))?;
        let path = path.canonicalize().map_err(io(&path))?;
        Url::from_directory_path(&path).map_err(|_| WarehouseError::Io {
            path: path.clone(),
            source: std::io::Error::other("chemin non absolu"),
        })
    }

    fn key_record(&self) -> Result<Option<KeyRecord>> {
        let path = self.meta_dir().join("key.json");
        if !path.exists() {
            return Ok(None);
        }
        let text = std::fs::read_to_string(&path).map_err(io(&path))?;
        serde_json::from_str(&text)
            .map(Some)
            .map_err(|e| WarehouseError::Manifest {
                path: path.clone(),
                reason: e.to_string(),
            })
    }

    /// The fingerprint of the lake's key, once recorded.
    pub fn key_fingerprint(&self) -> Result<Option<String>> {
        Ok(self.key_record()?.map(|r| r.empreinte))
    }

    /// Records that the key `new` replaces `old` (a rotation): from now on the lake
    /// refuses `old`. Resuming an interrupted rotation (the lake already on `new`, `old`
    /// retired) is accepted.
    pub fn rotate_key(&self, old: &str, new: &str) -> Result<()> {
        let path = self.meta_dir().join("key.json");
        let mut record = match self.key_record()? {
            Some(r) if r.empreinte == new && r.retirees.iter().any(|f| f == old) => return Ok(()),
            Some(r) if r.empreinte == old => r,
            Some(r) => {
                return Err(WarehouseError::KeyMismatch {
                    given: old.to_owned(),
                    recorded: r.empreinte,
                });
            }
            None => KeyRecord {
                empreinte: old.to_owned(),
                retirees: Vec::new(),
            },
        };
        record
            .retirees
            .push(std::mem::replace(&mut record.empreinte, new.to_owned()));
        write_atomically(
            &path,
            &serde_json::to_vec_pretty(&record).expect("serialisable"),
        )
    }

    /// Records the key's fingerprint on first use; refuses another key afterwards.
    pub fn check_key(&self, fingerprint: &str) -> Result<()> {
        let path = self.meta_dir().join("key.json");
        if let Some(record) = self.key_record()? {
            if record.retirees.iter().any(|f| f == fingerprint) {
                return Err(WarehouseError::KeyRetired(fingerprint.to_owned()));
            }
            if record.empreinte != fingerprint {
                return Err(WarehouseError::KeyMismatch {
                    given: fingerprint.to_owned(),
                    recorded: record.empreinte,
                });
            }
            return Ok(());
        }
        let record = KeyRecord {
            empreinte: fingerprint.to_owned(),
            retirees: Vec::new(),
        };
        write_atomically(
            &path,
            &serde_json::to_vec_pretty(&record).expect("serialisable"),
        )
    }

    /// The latest complete run, if any.
    pub fn latest_run(&self) -> Result<Option<RunManifest>> {
        let dir = self.runs_dir();
        if !dir.exists() {
            return Ok(None);
        }
        let mut latest: Option<(u64, PathBuf)> = None;
        for entry in std::fs::read_dir(&dir).map_err(io(&dir))? {
            let path = entry.map_err(io(&dir))?.path();
            let Some(n) = path
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.strip_suffix(".json"))
                .and_then(|n| n.parse::<u64>().ok())
            else {
                continue;
            };
            if latest.as_ref().is_none_or(|(m, _)| n > *m) {
                latest = Some((n, path));
            }
        }
        let Some((_, path)) = latest else {
            return Ok(None);
        };
        read_manifest(path).map(Some)
    }

    /// The manifest of run `n`, if it was recorded.
    pub fn run_manifest(&self, n: u64) -> Result<Option<RunManifest>> {
        let path = self.runs_dir().join(format!("{n:06}.json"));
        if !path.exists() {
            return Ok(None);
        }
        read_manifest(path).map(Some)
    }

    /// Carries out a run's plans on the detail zone (only the groups that changed are
    /// written) and replaces the run's quality tables. `progress(table)` is called after
    /// each detail table. Nothing is visible to readers until [`Lake::commit_run`] writes
    /// the run's manifest.
    pub async fn write_tables(
        &self,
        plans: Vec<merge::MergePlan>,
        quality: &BTreeMap<String, RecordBatch>,
        key_fingerprint: &str,
        mut progress: impl FnMut(&str),
    ) -> Result<WrittenTables> {
        self.check_key(key_fingerprint)?;
        let started_at = chrono::Utc::now().to_rfc3339();
        let mut versions = BTreeMap::new();
        let mut rows = BTreeMap::new();
        let mut changes = BTreeMap::new();
        // Tables are written side by side, one per core: a Delta write encodes its
        // Parquet on one task. Largest first, so that the last one written is small and
        // no core waits long for it. Each commit stands alone; the manifest, written
        // last, is what makes the run visible.
        // The groups each table rewrites, for the next compute ([`Lake::run_keys`]).
        let keys_batch = rewritten_keys(&plans)?;
        let mut plans = plans;
        plans.sort_by_key(|p| std::cmp::Reverse(p.bytes()));
        let writers = std::thread::available_parallelism().map_or(2, |n| n.get());
        let mut pending = futures::stream::iter(plans.into_iter().map(|plan| async move {
            let name = plan.table.clone();
            let after = plan.rows_before + plan.changes.inserees - plan.changes.supprimees;
            let table_changes = plan.changes;
            let version = self.apply_merge(plan).await?;
            Ok::<_, WarehouseError>((name, after, table_changes, version))
        }))
        .buffer_unordered(writers);
        while let Some(written) = pending.next().await {
            let (name, after, table_changes, version) = written?;
            changes.insert(name.clone(), table_changes);
            versions.insert(name.clone(), version);
            rows.insert(name.clone(), after);
            progress(&name);
        }
        drop(pending);
        let mut quality_versions = BTreeMap::new();
        for (name, batch) in quality {
            let version = self.overwrite("quality", name, batch.clone()).await?;
            quality_versions.insert(name.clone(), version);
        }
        let keys_version = self.overwrite(KEYS_ZONE, KEYS_TABLE, keys_batch).await?;
        Ok(WrittenTables {
            started_at,
            versions,
            rows,
            changes,
            quality_versions,
            keys_version,
        })
    }

    /// Writes the manifest of a run whose tables are written (last: readers pin the
    /// versions it names, and a run without its manifest never happened for them).
    pub fn commit_run(&self, written: WrittenTables, record: RunRecord) -> Result<RunManifest> {
        self.check_key(&record.key_fingerprint)?;
        let run = self.latest_run()?.map_or(1, |m| m.run + 1);
        let manifest = RunManifest {
            run,
            started_at: written.started_at,
            finished_at: chrono::Utc::now().to_rfc3339(),
            source: record.source,
            key_fingerprint: record.key_fingerprint,
            tables: written.versions,
            rows: written.rows,
            regles: record.regles,
            doublons_suspects: record.doublons_suspects,
            quality: written.quality_versions,
            changes: written.changes,
            filigranes: record.filigranes,
            lecture: record.lecture,
            quarantaine: record.quarantaine,
            cles: Some(written.keys_version),
        };
        self.record_run(&manifest)?;
        Ok(manifest)
    }

    /// Writes a run's manifest, atomically (`commit_run`; `vacuum` writes it again with
    /// the versions of the tables it rewrote or vacuumed, same content).
    pub(crate) fn record_run(&self, manifest: &RunManifest) -> Result<()> {
        let path = self.runs_dir().join(format!("{:06}.json", manifest.run));
        write_atomically(
            &path,
            &serde_json::to_vec_pretty(manifest).expect("serialisable"),
        )
    }

    /// Whether every table of the lake is at the version a run's manifest names (a
    /// run killed after some of its table commits leaves tables ahead of it).
    pub async fn is_at(&self, manifest: &RunManifest) -> Result<bool> {
        for (zone, tables) in [("detail", &manifest.tables), ("quality", &manifest.quality)] {
            for (name, version) in tables {
                let latest = self.open(zone, name, None).await?;
                if latest.and_then(|t| t.version()).map(|v| v as i64) != Some(*version) {
                    return Ok(false);
                }
            }
        }
        Ok(true)
    }

    /// Replaces a table's content with `batch` (one Delta commit); returns the new version.
    pub async fn overwrite(&self, zone: &str, name: &str, batch: RecordBatch) -> Result<i64> {
        self.commit(zone, name, batch, SaveMode::Overwrite).await
    }

    /// Appends `batch` to a table (created if missing); returns the new version.
    pub async fn append(&self, zone: &str, name: &str, batch: RecordBatch) -> Result<i64> {
        self.commit(zone, name, batch, SaveMode::Append).await
    }

    async fn commit(
        &self,
        zone: &str,
        name: &str,
        batch: RecordBatch,
        mode: SaveMode,
    ) -> Result<i64> {
        let label = format!("{zone}/{name}");
        let url = self.table_url(zone, name)?;
        let table = if has_commit(&self.table_path(zone, name)) {
            deltalake::open_table(url).await
        } else {
            // A new table: no log to load yet.
            deltalake::DeltaTableBuilder::from_url(url).and_then(|b| b.build())
        }
        .map_err(delta(&label))?;
        let mut write = table
            .write(vec![batch])
            .with_save_mode(mode)
            .with_table_name(name);
        if mode == SaveMode::Overwrite {
            write = write.with_schema_mode(deltalake::operations::write::SchemaMode::Overwrite);
        } else {
            // Columns added later (nullable) join the table's schema.
            write = write.with_schema_mode(deltalake::operations::write::SchemaMode::Merge);
        }
        let table = write.await.map_err(delta(&label))?;
        Ok(table.version().map(|v| v as i64).unwrap_or(0))
    }

    /// Deletes the rows of a table matching `predicate` (one Delta commit, none when the
    /// table does not exist); returns how many data files it rewrote or removed (0:
    /// nothing matched).
    pub async fn delete_where(
        &self,
        zone: &str,
        name: &str,
        predicate: datafusion::prelude::Expr,
    ) -> Result<u64> {
        let Some(table) = self.open(zone, name, None).await? else {
            return Ok(0);
        };
        let label = format!("{zone}/{name}");
        let (_, metrics) = table
            .delete()
            .with_predicate(predicate)
            .await
            .map_err(delta(&label))?;
        Ok(metrics.num_removed_files as u64)
    }

    /// Opens a table at a version (the latest when `None`), if it exists.
    pub async fn open(
        &self,
        zone: &str,
        name: &str,
        version: Option<i64>,
    ) -> Result<Option<DeltaTable>> {
        let path = self.table_path(zone, name);
        if !has_commit(&path) {
            return Ok(None);
        }
        let label = format!("{zone}/{name}");
        let url = self.table_url(zone, name)?;
        let table = match version {
            Some(v) => deltalake::open_table_with_version(url, v as _).await,
            None => deltalake::open_table(url).await,
        }
        .map_err(delta(&label))?;
        Ok(Some(table))
    }

    /// Registers a table into a session under `alias`.
    pub async fn register(
        &self,
        ctx: &SessionContext,
        alias: &str,
        table: &DeltaTable,
    ) -> Result<()> {
        table
            .update_datafusion_session(&ctx.state())
            .map_err(delta(alias))?;
        // The scan takes the session's Parquet settings (text as `Utf8`).
        let provider = table
            .table_provider()
            .with_session(Arc::new(ctx.state()))
            .await?;
        ctx.register_table(alias, provider)?;
        Ok(())
    }

    /// A session over the detail zone, pinned to the latest complete run.
    pub async fn detail_session(&self) -> Result<(SessionContext, RunManifest)> {
        let manifest = self
            .latest_run()?
            .ok_or_else(|| WarehouseError::NoRun(self.root.clone()))?;
        let ctx = self.detail_session_of(&manifest).await?;
        Ok((ctx, manifest))
    }

    /// A session over the detail zone as a run left it (an error once `vacuum` removed
    /// the files of those versions).
    pub async fn detail_session_of(&self, manifest: &RunManifest) -> Result<SessionContext> {
        let ctx = new_session();
        for (name, version) in &manifest.tables {
            let table = self
                .open("detail", name, Some(*version))
                .await?
                .ok_or_else(|| WarehouseError::NoRun(self.root.clone()))?;
            self.register(&ctx, name, &table).await?;
        }
        Ok(ctx)
    }

    /// The groups a run rewrote in each detail table, if it recorded them (runs of
    /// earlier versions of the program did not).
    pub async fn run_keys(&self, manifest: &RunManifest) -> Result<Option<RunKeys>> {
        use arrow::array::{Array, AsArray};
        use arrow::datatypes::Int64Type;
        let Some(version) = manifest.cles else {
            return Ok(None);
        };
        let Some(table) = self.open(KEYS_ZONE, KEYS_TABLE, Some(version)).await? else {
            return Ok(None);
        };
        let ctx = new_session();
        self.register(&ctx, KEYS_TABLE, &table).await?;
        let batches = ctx
            .sql("SELECT table_detail, colonne, cle_nombre, cle_chaine, table_entiere FROM cles")
            .await?
            .collect()
            .await?;
        let mut out = RunKeys::default();
        for b in &batches {
            let text =
                |i: usize| arrow::compute::cast(b.column(i), &arrow::datatypes::DataType::Utf8);
            let (table, column, texte) = (text(0)?, text(1)?, text(3)?);
            let (table, column, texte) = (
                table.as_string::<i32>(),
                column.as_string::<i32>(),
                texte.as_string::<i32>(),
            );
            let entier = b.column(2).as_primitive::<Int64Type>();
            let entiere = b.column(4).as_boolean();
            for i in 0..b.num_rows() {
                let name = table.value(i).to_owned();
                if entiere.value(i) {
                    out.whole.insert(name);
                    continue;
                }
                let e = out
                    .keys
                    .entry(name)
                    .or_insert_with(|| (column.value(i).to_owned(), Vec::new(), Vec::new()));
                if entier.is_valid(i) {
                    e.1.push(entier.value(i));
                } else if texte.is_valid(i) {
                    e.2.push(texte.value(i).to_owned());
                }
            }
        }
        Ok(Some(out))
    }

    /// The Parquet files of every detail table as of the latest complete run (local
    /// paths), for engines that read the files directly (the compute benchmark's peer).
    pub async fn detail_files(&self) -> Result<BTreeMap<String, Vec<String>>> {
        let manifest = self
            .latest_run()?
            .ok_or_else(|| WarehouseError::NoRun(self.root.clone()))?;
        let mut out = BTreeMap::new();
        for (name, version) in &manifest.tables {
            let table = self
                .open("detail", name, Some(*version))
                .await?
                .ok_or_else(|| WarehouseError::NoRun(self.root.clone()))?;
            if vectors::has_deletions(&table) {
                // Its files hold rows the table no longer has: an engine reading the
                // files alone would count them.
                return Err(WarehouseError::Merge {
                    table: name.clone(),
                    reason: "des lignes y sont supprimées par vecteurs de suppression, que la lecture directe des fichiers Parquet ignorerait : relancez une ingestion complète (observatoire ingest --full) avant cette mesure".into(),
                });
            }
            let files = table
                .get_file_uris()
                .map_err(delta(name))?
                .map(|u| u.strip_prefix("file://").map_or(u.clone(), str::to_owned))
                .collect();
            out.insert(name.clone(), files);
        }
        Ok(out)
    }

    /// A session over the whole lake as of the latest complete run: the detail tables
    /// (by their names), the statistical base (`indicateurs`, `releases`) and the analyst
    /// zone (`analyst.<table>`) when present.
    pub async fn session(&self) -> Result<SessionContext> {
        let (ctx, _) = self.detail_session().await?;
        self.register_stats(&ctx).await?;
        self.register_analyst(&ctx).await?;
        Ok(ctx)
    }

    /// Registers the analyst zone's tables as `analyst.<table>`; returns how many.
    pub async fn register_analyst(&self, ctx: &SessionContext) -> Result<usize> {
        let names = retention::delta_tables(&self.root.join("analyst"))?;
        if names.is_empty() {
            return Ok(0);
        }
        if let Some(catalog) = ctx.catalog("datafusion") {
            catalog.register_schema(
                "analyst",
                Arc::new(datafusion::catalog::MemorySchemaProvider::new()),
            )?;
        }
        for name in &names {
            if let Some(table) = self.open("analyst", name, None).await? {
                self.register(ctx, &format!("analyst.{name}"), &table)
                    .await?;
            }
        }
        Ok(names.len())
    }

    /// A quality table (`quarantine`, `report`) at the version the latest complete run
    /// wrote, if any.
    pub async fn quality_table(&self, name: &str) -> Result<Option<DeltaTable>> {
        let Some(manifest) = self.latest_run()? else {
            return Ok(None);
        };
        match manifest.quality.get(name) {
            Some(version) => self.open("quality", name, Some(*version)).await,
            None => Ok(None),
        }
    }

    /// The Delta tables of a zone (`analyst`, `stats`, …), by name.
    pub fn zone_tables(&self, zone: &str) -> Result<Vec<String>> {
        let mut names = retention::delta_tables(&self.root.join(zone))?;
        names.sort();
        Ok(names)
    }

    /// Registers `indicateurs` and `releases` into a session, when they exist.
    pub async fn register_stats(&self, ctx: &SessionContext) -> Result<bool> {
        let mut found = false;
        for name in ["indicateurs", "releases"] {
            if let Some(table) = self.open("stats", name, None).await? {
                self.register(ctx, name, &table).await?;
                found = true;
            }
        }
        Ok(found)
    }
}

/// A DataFusion session with the settings every reader of the lake uses.
///
/// DataFusion 55's dynamic filters pushed from a MIN/MAX aggregate into the scans below
/// a UNION ALL sometimes prune rows of one branch with the bound found in another (the
/// observed interval [D0, D1] then lost its first weeks, about one run in ten): they
/// are turned off (test `dynamic_filters`).
///
/// Text is read from Parquet as `Utf8`, not as DataFusion's default `Utf8View`: a view
/// points into the buffers of the page it was read from, and a join's output takes views
/// from its whole build side, so every output batch carried every buffer of it. A
/// second join building on such batches then handled millions of buffer references per
/// batch: on a national year, the persons of the 115 requests (U02) took 7 s to list
/// with views, 2 s without (BENCHMARKS.md).
pub fn new_session() -> SessionContext {
    let mut config = datafusion::prelude::SessionConfig::new()
        .with_target_partitions(std::thread::available_parallelism().map_or(2, |n| n.get()))
        .with_information_schema(true);
    config
        .options_mut()
        .optimizer
        .enable_aggregate_dynamic_filter_pushdown = false;
    config
        .options_mut()
        .execution
        .parquet
        .schema_force_view_types = false;
    // Sorts, windows and aggregates spill to disk rather than exhaust the machine's
    // memory (the per-night records of a multi-year lake, joined to their periods, do not
    // fit in memory): a pool of `OBSERVATOIRE_MEMORY_MB`, by default half the memory.
    let runtime = datafusion::execution::runtime_env::RuntimeEnvBuilder::new()
        .with_memory_pool(Arc::new(
            datafusion::execution::memory_pool::FairSpillPool::new(memory_budget()),
        ))
        .build_arc();
    match runtime {
        Ok(runtime) => SessionContext::new_with_config_rt(config, runtime),
        Err(_) => SessionContext::new_with_config(config),
    }
}

/// A session for untrusted SQL: the same settings as [`new_session`], but a hard memory
/// limit of `memory_bytes` (a query that needs more fails with "resources exhausted"),
/// no spilling to disk, no URL tables, at most `partitions` threads of work.
pub fn sandbox_session(memory_bytes: usize, partitions: usize) -> SessionContext {
    use datafusion::execution::disk_manager::{DiskManagerBuilder, DiskManagerMode};
    let mut config = datafusion::prelude::SessionConfig::new()
        .with_target_partitions(partitions.max(1))
        .with_information_schema(true);
    config
        .options_mut()
        .optimizer
        .enable_aggregate_dynamic_filter_pushdown = false;
    config
        .options_mut()
        .execution
        .parquet
        .schema_force_view_types = false;
    let runtime = datafusion::execution::runtime_env::RuntimeEnvBuilder::new()
        .with_memory_pool(Arc::new(
            datafusion::execution::memory_pool::GreedyMemoryPool::new(memory_bytes),
        ))
        .with_disk_manager_builder(
            DiskManagerBuilder::default().with_mode(DiskManagerMode::Disabled),
        )
        .build_arc();
    match runtime {
        Ok(runtime) => SessionContext::new_with_config_rt(config, runtime),
        Err(_) => SessionContext::new_with_config(config),
    }
}

/// The memory DataFusion may use before spilling, in bytes.
fn memory_budget() -> usize {
    const MB: usize = 1 << 20;
    if let Some(mb) = std::env::var("OBSERVATOIRE_MEMORY_MB")
        .ok()
        .and_then(|v| v.trim().parse::<usize>().ok())
        .filter(|&mb| mb > 0)
    {
        return mb * MB;
    }
    let total_kb = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| {
                    l.split_whitespace()
                        .nth(1)
                        .and_then(|v| v.parse::<usize>().ok())
                })
        })
        .unwrap_or(8 << 20);
    total_kb * 1024 / 2
}

fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path.parent().expect("a file in a folder");
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let tmp = path.with_extension("tmp");
    {
        use std::io::Write;
        let mut file = std::fs::File::create(&tmp).map_err(io(&tmp))?;
        file.write_all(bytes).map_err(io(&tmp))?;
        file.sync_all().map_err(io(&tmp))?;
    }
    std::fs::rename(&tmp, path).map_err(io(path))?;
    Ok(())
}

/// Shared handle type for readers that hold a lake.
pub type SharedLake = Arc<Lake>;

/// Whether a folder holds a Delta table with at least one commit. A process killed while
/// creating a table can leave a `_delta_log` folder without its first commit (and data
/// files that nothing references): that table does not exist yet, and the next write
/// creates it.
pub(crate) fn has_commit(table: &Path) -> bool {
    std::fs::read_dir(table.join("_delta_log")).is_ok_and(|entries| {
        entries.flatten().any(|e| {
            let name = e.file_name();
            let name = name.to_string_lossy();
            name == "_last_checkpoint"
                || name.ends_with(".checkpoint.parquet")
                || name
                    .strip_suffix(".json")
                    .is_some_and(|version| version.parse::<u64>().is_ok())
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::Int64Array;

    #[tokio::test]
    async fn a_table_killed_before_its_first_commit_does_not_exist_and_is_created_again() {
        let dir = tempfile::tempdir().unwrap();
        let lake = Lake::new(dir.path());
        let path = lake.table_path("detail", "t");
        // What a kill leaves: the log folder, a temporary commit, an orphan data file.
        std::fs::create_dir_all(path.join("_delta_log")).unwrap();
        std::fs::write(path.join("_delta_log").join(".tmp-00000.json"), b"{").unwrap();
        std::fs::write(path.join("part-orphan.parquet"), b"PAR1").unwrap();
        assert!(!has_commit(&path));
        assert!(lake.open("detail", "t", None).await.unwrap().is_none());
        assert!(
            retention::delta_tables(&dir.path().join("lake").join("detail"))
                .unwrap()
                .is_empty()
        );
        let batch = RecordBatch::try_from_iter([(
            "id",
            Arc::new(Int64Array::from(vec![1, 2])) as arrow::array::ArrayRef,
        )])
        .unwrap();
        assert_eq!(lake.overwrite("detail", "t", batch).await.unwrap(), 0);
        assert!(has_commit(&path));
        let table = lake.open("detail", "t", None).await.unwrap().unwrap();
        assert_eq!(table.version(), Some(0));
    }
}
