//! Deleting rows without rewriting their files: Delta deletion vectors.
//!
//! An incremental run replaces a few thousand groups spread over every file of a table
//! of millions of rows. Rewriting those files costs as much as the full ingest's own
//! writes; marking the replaced rows as deleted costs a read of the key column and a
//! few kilobytes. Each file that holds a replaced row gets a deletion vector (the row
//! positions, a Roaring bitmap in a `deletion_vector_<uuid>.bin` file of the table, as
//! the Delta protocol defines it) unioned with the one it had; delta-rs's readers skip
//! those rows.
//!
//! The deleted rows stay in the files until the table is rewritten, so a table is
//! rewritten whole instead (the caller's fallback) when its files carry deletions older
//! than [`DELETIONS_KEPT`] — a household purged in the source leaves the lake's current
//! files within that delay, then its old files go at the vacuum like any other —, when
//! more than [`COMPACT_SHARE`] of its rows are deleted, or when it has more than
//! [`MAX_FILES`] files (each run appends one).

use std::collections::HashMap;
use std::sync::Arc;

use arrow::array::{Array, BooleanArray};
use arrow::datatypes::DataType;
use deltalake::DeltaTable;
use deltalake::kernel::transaction::CommitBuilder;
use deltalake::kernel::{Action, DeletionVectorDescriptor, StorageType};
use deltalake::parquet::arrow::ProjectionMask;
use deltalake::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use deltalake::protocol::DeltaOperation;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};
use roaring::RoaringTreemap;

use crate::merge::Key;
use crate::{KeySet, Lake, Result, WarehouseError, delta};

/// How long deleted rows may stay in a table's current files.
pub const DELETIONS_KEPT: chrono::Duration = chrono::Duration::days(7);
/// Share of a table's rows deleted above which the table is rewritten.
pub const COMPACT_SHARE: f64 = 0.2;
/// Number of files above which the table is rewritten.
pub const MAX_FILES: usize = 64;
/// The tag of a file's entry in the log giving when its oldest deletion was made
/// (milliseconds since 1970).
const DELETED_SINCE: &str = "observatoire.supprime_depuis";
/// The table property delta-rs's readers look at before pushing filters into Parquet
/// (row positions must be kept for the vectors to apply).
const ENABLE: &str = "delta.enableDeletionVectors";

fn error(table: &str, reason: impl std::fmt::Display) -> WarehouseError {
    WarehouseError::Merge {
        table: table.to_owned(),
        reason: reason.to_string(),
    }
}

/// The keys to delete, for lookups: the values (a [`KeySet`]) and whether the null key is
/// among them.
pub(crate) struct Wanted {
    keys: KeySet,
    nulls: bool,
}

impl Wanted {
    pub(crate) fn new(delete: &[Key]) -> Self {
        let mut keys = KeySet::new();
        let mut nulls = false;
        for k in delete {
            match k {
                Key::Int(v) => keys.extend_ints([*v]),
                Key::Text(v) => keys.extend_texts([v.as_str()]),
                Key::Null => nulls = true,
            }
        }
        Self { keys, nulls }
    }

    /// For each row of `column`, whether its key is wanted; `None` when the column is
    /// not of a key type.
    pub(crate) fn hits(&self, column: &dyn Array) -> Option<BooleanArray> {
        let hits = self.keys.hits(column)?;
        if !self.nulls || column.null_count() == 0 {
            return Some(hits);
        }
        Some(
            (0..column.len())
                .map(|i| Some(hits.value(i) || column.is_null(i)))
                .collect(),
        )
    }
}

/// One data file of the table as the log lists it.
struct File {
    add: deltalake::kernel::Add,
    remove: deltalake::kernel::Remove,
    records: u64,
    deleted_since: Option<i64>,
}

/// Positions of the rows of one data file whose key is wanted; `None` when the key
/// column is missing or of a type keys are not.
async fn positions_in(
    store: Arc<dyn ObjectStore>,
    path: Path,
    key: String,
    wanted: Arc<Wanted>,
) -> std::result::Result<Option<RoaringTreemap>, String> {
    let bytes = store
        .get(&path)
        .await
        .map_err(|e| e.to_string())?
        .bytes()
        .await
        .map_err(|e| e.to_string())?;
    // Decoding the key column is work for a core, not for the runtime's threads.
    tokio::task::spawn_blocking(move || {
        let builder = ParquetRecordBatchReaderBuilder::try_new(bytes).map_err(|e| e.to_string())?;
        let Some(index) = builder
            .schema()
            .fields()
            .iter()
            .position(|f| f.name() == &key)
        else {
            return Ok(None);
        };
        let mask = ProjectionMask::roots(builder.parquet_schema(), [index]);
        let reader = builder
            .with_projection(mask)
            .with_batch_size(64 * 1024)
            .build()
            .map_err(|e| e.to_string())?;
        let mut out = RoaringTreemap::new();
        let mut row = 0u64;
        for batch in reader {
            let batch = batch.map_err(|e| e.to_string())?;
            let Some(hits) = wanted.hits(batch.column(0).as_ref()) else {
                return Ok(None);
            };
            out.extend(
                hits.iter()
                    .enumerate()
                    .filter(|(_, hit)| *hit == Some(true))
                    .map(|(i, _)| row + i as u64),
            );
            row += batch.num_rows() as u64;
        }
        Ok(Some(out))
    })
    .await
    .map_err(|e| e.to_string())?
}

/// The rows a file's deletion vector deletes.
pub(crate) async fn read_vector(
    store: &dyn ObjectStore,
    root: &url::Url,
    dv: &DeletionVectorDescriptor,
    table: &str,
) -> Result<RoaringTreemap> {
    let kernel =
        delta_kernel::actions::deletion_vector::DeletionVectorDescriptor::try_from(dv.clone())
            .map_err(|e| error(table, e))?;
    let Some(url) = kernel.absolute_path(root).map_err(|e| error(table, e))? else {
        return Err(error(
            table,
            "vecteur de suppression en ligne : non pris en charge",
        ));
    };
    let relative = root.make_relative(&url).ok_or_else(|| {
        error(
            table,
            format!("vecteur de suppression hors de la table : {url}"),
        )
    })?;
    let bytes = store
        .get(&Path::from(relative.as_str()))
        .await
        .map_err(|e| error(table, e))?
        .bytes()
        .await
        .map_err(|e| error(table, e))?;
    // At `offset`: the size (big-endian, magic included), the magic, the bitmap.
    let offset = dv.offset.unwrap_or(1) as usize;
    let size = dv.size_in_bytes as usize;
    let data = bytes
        .get(offset + 8..offset + 4 + size)
        .ok_or_else(|| error(table, "vecteur de suppression tronqué"))?;
    RoaringTreemap::deserialize_from(data).map_err(|e| error(table, e))
}

impl Lake {
    /// Marks the rows of `table` whose `key` is listed as deleted, by deletion vectors,
    /// in one commit; returns the table's version after it, or `None` when the table is
    /// due to be rewritten instead (module documentation) or its files do not hold
    /// `key` as an integer or text column.
    pub(crate) async fn delete_by_vectors(
        &self,
        mut table: DeltaTable,
        (zone, name): (&str, &str),
        key: &str,
        delete: &[Key],
    ) -> Result<Option<i64>> {
        let label = format!("{zone}/{name}");
        let files: Vec<File> = table
            .snapshot()
            .map_err(delta(&label))?
            .log_data()
            .iter()
            .map(|view| {
                // The entry whole, tags included (the views give no other way to them).
                #[allow(deprecated)]
                let add = view.add_action();
                let deleted_since = add
                    .tags
                    .as_ref()
                    .and_then(|t| t.get(DELETED_SINCE).cloned().flatten())
                    .and_then(|v| v.parse().ok());
                File {
                    records: view.num_records().unwrap_or(0) as u64,
                    remove: view.remove_action(true),
                    add,
                    deleted_since,
                }
            })
            .collect();
        if files.len() > MAX_FILES || files.iter().any(|f| f.records == 0) {
            return Ok(None);
        }
        let now = chrono::Utc::now();
        let too_old = (now - DELETIONS_KEPT).timestamp_millis();
        if files
            .iter()
            .any(|f| f.deleted_since.is_some_and(|t| t < too_old))
        {
            return Ok(None);
        }

        let store = table.object_store();
        let wanted = Arc::new(Wanted::new(delete));
        let tasks: Vec<_> = files
            .iter()
            .map(|f| {
                tokio::spawn(positions_in(
                    store.clone(),
                    Path::from(f.add.path.as_str()),
                    key.to_owned(),
                    wanted.clone(),
                ))
            })
            .collect();
        let mut hits = Vec::with_capacity(tasks.len());
        for task in tasks {
            match task.await.map_err(|e| error(&label, e))? {
                Ok(Some(h)) => hits.push(h),
                Ok(None) => return Ok(None),
                Err(e) => return Err(error(&label, e)),
            }
        }

        // Each file's vector after this run: the old one with the new positions.
        let root = table.table_url().clone();
        let mut records = 0u64;
        let mut deleted = 0u64;
        let mut changed: Vec<(&File, RoaringTreemap)> = Vec::new();
        for (file, new) in files.iter().zip(hits) {
            records += file.records;
            let old = match &file.add.deletion_vector {
                Some(dv) => read_vector(store.as_ref(), &root, dv, &label).await?,
                None => RoaringTreemap::new(),
            };
            let union = &old | &new;
            deleted += union.len();
            if union.len() != old.len() {
                changed.push((file, union));
            }
        }
        if deleted as f64 > COMPACT_SHARE * records as f64 {
            return Ok(None);
        }
        let version = table.version().map_or(0, |v| v as i64);
        if changed.is_empty() {
            return Ok(Some(version));
        }

        // The vectors, in one file of the table.
        let uuid = uuid::Uuid::new_v4();
        let mut bytes = Vec::new();
        let mut written = Vec::with_capacity(changed.len());
        {
            use delta_kernel::actions::deletion_vector_writer::{
                KernelDeletionVector, StreamingDeletionVectorWriter,
            };
            let mut writer = StreamingDeletionVectorWriter::new(&mut bytes);
            for (_, positions) in &changed {
                let mut dv = KernelDeletionVector::new();
                dv.add_deleted_row_indexes(positions.iter());
                written.push(
                    writer
                        .write_deletion_vector(dv)
                        .map_err(|e| error(&label, e))?,
                );
            }
            writer.finalize().map_err(|e| error(&label, e))?;
        }
        let file_name = format!("deletion_vector_{uuid}.bin");
        store
            .put(&Path::from(file_name.as_str()), bytes.into())
            .await
            .map_err(|e| error(&label, e))?;

        let mut actions = Vec::with_capacity(2 * changed.len());
        let since = now.timestamp_millis();
        for ((file, positions), result) in changed.iter().zip(written) {
            actions.push(Action::Remove(file.remove.clone()));
            if positions.len() >= file.records {
                continue;
            }
            let mut add = file.add.clone();
            add.data_change = true;
            add.deletion_vector = Some(DeletionVectorDescriptor {
                storage_type: StorageType::UuidRelativePath,
                path_or_inline_dv: z85::encode(uuid.as_bytes()),
                offset: Some(result.offset),
                size_in_bytes: result.size_in_bytes,
                cardinality: result.cardinality,
            });
            let first = file.deleted_since.unwrap_or(since);
            add.tags
                .get_or_insert_with(HashMap::new)
                .insert(DELETED_SINCE.to_owned(), Some(first.to_string()));
            actions.push(Action::Add(add));
        }
        if !has_vectors_enabled(&table) {
            // The protocol's feature and the property readers look at (once per table;
            // a commit of its own, harmless if the run stops after it).
            table = table
                .set_tbl_properties()
                .with_properties(HashMap::from([(ENABLE.to_owned(), "true".to_owned())]))
                .await
                .map_err(delta(&label))?;
        }
        tracing::debug!(
            table = %label,
            fichiers = changed.len(),
            lignes = changed.iter().map(|(_, p)| p.len()).sum::<u64>(),
            "lignes supprimées par vecteurs de suppression"
        );
        let snapshot = table.snapshot().map_err(delta(&label))?;
        let commit = CommitBuilder::default()
            .with_actions(actions)
            .build(
                Some(snapshot),
                table.log_store(),
                DeltaOperation::Delete {
                    predicate: Some(format!("{key} IN (…{} clés)", delete.len())),
                },
            )
            .await
            .map_err(delta(&label))?;
        Ok(Some(commit.version() as i64))
    }
}

/// Whether the table's protocol and properties already allow deletion vectors.
fn has_vectors_enabled(table: &DeltaTable) -> bool {
    let Ok(snapshot) = table.snapshot() else {
        return false;
    };
    let supported = snapshot
        .protocol()
        .reader_features()
        .is_some_and(|f| f.contains(&delta_kernel::table_features::TableFeature::DeletionVectors));
    let enabled = snapshot
        .metadata()
        .configuration()
        .get(ENABLE)
        .is_some_and(|v| v == "true");
    supported && enabled
}

/// Whether some file of the table carries a deletion vector.
pub(crate) fn has_deletions(table: &DeltaTable) -> bool {
    table.snapshot().is_ok_and(|s| {
        s.log_data()
            .iter()
            .any(|f| f.deletion_vector_descriptor().is_some())
    })
}

/// Batches read back from the lake as one batch, strings as plain strings again (the
/// engine reads them as views), to be written as a table's content.
pub(crate) fn plain_strings(
    read: &arrow::datatypes::SchemaRef,
    batches: &[arrow::record_batch::RecordBatch],
    table: &str,
) -> Result<arrow::record_batch::RecordBatch> {
    use arrow::datatypes::{Field, Schema};
    let plain = |t: &DataType| match t {
        DataType::Utf8View => DataType::Utf8,
        DataType::BinaryView => DataType::Binary,
        other => other.clone(),
    };
    let schema = Arc::new(Schema::new(
        read.fields()
            .iter()
            .map(|f| Field::new(f.name(), plain(f.data_type()), f.is_nullable()))
            .collect::<Vec<_>>(),
    ));
    let mut parts = Vec::with_capacity(batches.len());
    for batch in batches {
        let columns = batch
            .columns()
            .iter()
            .zip(schema.fields())
            .map(|(c, f)| arrow::compute::cast(c, f.data_type()))
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|e| error(table, e))?;
        parts.push(
            arrow::record_batch::RecordBatch::try_new(schema.clone(), columns)
                .map_err(|e| error(table, e))?,
        );
    }
    arrow::compute::concat_batches(&schema, &parts).map_err(|e| error(table, e))
}
