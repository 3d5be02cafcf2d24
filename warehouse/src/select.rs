//! Reading the few rows of a detail table whose keys are listed, without decoding the others.
//!
//! The engine's scan of a Delta table that has deletion vectors decodes every column of
//! every row before it filters: delta-rs keeps filters out of the Parquet reader when the
//! vectors are on, so that row positions stay aligned with them. The compute's restriction
//! to the changed households wants a few hundred thousand rows out of tens of millions.
//! Here each file's key columns are decoded first; the file's deletion vector and the keys
//! decide which rows are wanted; only those rows' other columns are decoded (the Parquet
//! reader's row filter). Row groups are read in parallel, one core each.

use std::sync::Arc;

use arrow::array::{Array, AsArray, BooleanArray, RecordBatch};
use arrow::datatypes::{DataType, Int64Type, SchemaRef};
use deltalake::parquet::arrow::ProjectionMask;
use deltalake::parquet::arrow::arrow_reader::{
    ArrowPredicateFn, ArrowReaderMetadata, ArrowReaderOptions, ParquetRecordBatchReaderBuilder,
    RowFilter, RowSelection, RowSelector,
};
use futures::{StreamExt, TryStreamExt};
use object_store::ObjectStoreExt;
use object_store::path::Path;
use roaring::RoaringTreemap;

use crate::{Lake, Result, WarehouseError, delta};

/// Sets of keys: foldhash (every row of a table is looked up; SipHash's resistance to
/// chosen keys buys nothing on our own ids and pseudonyms).
type HashSet<T> = std::collections::HashSet<T, foldhash::fast::RandomState>;

/// A set of key values, integers and texts (ids and pseudonyms). A null is never in it.
#[derive(Debug, Default, Clone)]
pub struct KeySet {
    ints: HashSet<i64>,
    texts: HashSet<String>,
}

impl KeySet {
    pub fn new() -> Self {
        Self::default()
    }

    /// The set of the texts given.
    pub fn of_texts<'a>(texts: impl IntoIterator<Item = &'a str>) -> Self {
        let mut out = Self::new();
        out.extend_texts(texts);
        out
    }

    /// The set of the integers given.
    pub fn of_ints(ints: impl IntoIterator<Item = i64>) -> Self {
        let mut out = Self::new();
        out.extend_ints(ints);
        out
    }

    pub fn extend_texts<'a>(&mut self, texts: impl IntoIterator<Item = &'a str>) {
        self.texts.extend(texts.into_iter().map(str::to_owned));
    }

    pub fn extend_ints(&mut self, ints: impl IntoIterator<Item = i64>) {
        self.ints.extend(ints);
    }

    /// Adds the keys of `other`.
    pub fn extend(&mut self, other: &KeySet) {
        self.ints.extend(other.ints.iter().copied());
        self.texts.extend(other.texts.iter().cloned());
    }

    /// Adds the non-null values of `column`; `false` (and nothing added) when the column
    /// is not of a key type (64-bit integer or text).
    pub fn extend_from(&mut self, column: &dyn Array) -> bool {
        match column.data_type() {
            DataType::Int64 => {
                self.ints
                    .extend(column.as_primitive::<Int64Type>().iter().flatten());
            }
            DataType::Utf8 => {
                self.texts.extend(
                    column
                        .as_string::<i32>()
                        .iter()
                        .flatten()
                        .map(str::to_owned),
                );
            }
            DataType::Utf8View => {
                self.texts
                    .extend(column.as_string_view().iter().flatten().map(str::to_owned));
            }
            _ => return false,
        }
        true
    }

    /// The text keys, in no order.
    pub fn texts(&self) -> impl Iterator<Item = &str> {
        self.texts.iter().map(String::as_str)
    }

    pub fn len(&self) -> usize {
        self.ints.len() + self.texts.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// For each row of `column`, whether its value is in the set (a null is not); `None`
    /// when the column is not of a key type.
    pub(crate) fn hits(&self, column: &dyn Array) -> Option<BooleanArray> {
        let valid = |i: usize| column.is_valid(i);
        Some(match column.data_type() {
            DataType::Int64 => {
                let a = column.as_primitive::<Int64Type>();
                (0..a.len())
                    .map(|i| Some(valid(i) && self.ints.contains(&a.value(i))))
                    .collect()
            }
            DataType::Utf8 => {
                let a = column.as_string::<i32>();
                (0..a.len())
                    .map(|i| Some(valid(i) && self.texts.contains(a.value(i))))
                    .collect()
            }
            DataType::Utf8View => {
                let a = column.as_string_view();
                (0..a.len())
                    .map(|i| Some(valid(i) && self.texts.contains(a.value(i))))
                    .collect()
            }
            _ => return None,
        })
    }
}

/// One row group to read: its file's bytes and metadata, its index, and the positions
/// (within the row group) its file's deletion vector deletes.
struct Part {
    bytes: bytes::Bytes,
    metadata: ArrowReaderMetadata,
    row_group: usize,
    deleted: Vec<usize>,
}

/// Why a row group could not be read directly (the caller then reads another way).
enum Skip {
    /// A condition's column is missing from the file, or not of a key type, or a target
    /// column is missing or cannot be cast.
    NotApplicable,
    Failed(String),
}

/// Reads one row group: the rows not deleted and with a value of a condition column in its
/// set, every column of `target` (cast to its type).
fn read_part(
    part: Part,
    any: &[(String, Arc<KeySet>)],
    target: &SchemaRef,
) -> std::result::Result<Vec<RecordBatch>, Skip> {
    let failed = |e: &dyn std::fmt::Display| Skip::Failed(e.to_string());
    let file_schema = part.metadata.schema().clone();
    let roots: Vec<usize> = {
        let mut roots = Vec::with_capacity(any.len());
        for (column, _) in any {
            let i = file_schema
                .index_of(column)
                .map_err(|_| Skip::NotApplicable)?;
            roots.push(i);
        }
        roots.sort_unstable();
        roots.dedup();
        roots
    };
    let wanted: Vec<usize> = {
        let mut wanted = Vec::with_capacity(target.fields().len());
        for f in target.fields() {
            wanted.push(
                file_schema
                    .index_of(f.name())
                    .map_err(|_| Skip::NotApplicable)?,
            );
        }
        wanted
    };
    let builder = ParquetRecordBatchReaderBuilder::new_with_metadata(part.bytes, part.metadata);
    let rows = builder.metadata().row_group(part.row_group).num_rows() as usize;
    let condition_mask = ProjectionMask::roots(builder.parquet_schema(), roots);
    let output_mask = ProjectionMask::roots(builder.parquet_schema(), wanted.iter().copied());
    let conditions: Vec<(String, Arc<KeySet>)> = any.to_vec();
    let unsupported = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = unsupported.clone();
    let predicate = ArrowPredicateFn::new(condition_mask, move |batch: RecordBatch| {
        let mut out = BooleanArray::from(vec![false; batch.num_rows()]);
        for (column, set) in &conditions {
            let values = batch.column_by_name(column).ok_or_else(|| {
                arrow::error::ArrowError::SchemaError(format!("colonne {column} absente"))
            })?;
            let Some(hits) = set.hits(values.as_ref()) else {
                flag.store(true, std::sync::atomic::Ordering::Relaxed);
                return Ok(BooleanArray::from(vec![false; batch.num_rows()]));
            };
            out = arrow::compute::or(&out, &hits)?;
        }
        Ok(out)
    });
    let mut builder = builder
        .with_row_groups(vec![part.row_group])
        .with_projection(output_mask)
        .with_row_filter(RowFilter::new(vec![Box::new(predicate)]))
        .with_batch_size(64 * 1024);
    if !part.deleted.is_empty() {
        let mut selectors = Vec::with_capacity(2 * part.deleted.len() + 1);
        let mut at = 0usize;
        for &p in &part.deleted {
            if p > at {
                selectors.push(RowSelector::select(p - at));
            }
            selectors.push(RowSelector::skip(1));
            at = p + 1;
        }
        if at < rows {
            selectors.push(RowSelector::select(rows - at));
        }
        builder = builder.with_row_selection(RowSelection::from(selectors));
    }
    let reader = builder.build().map_err(|e| failed(&e))?;
    let mut out = Vec::new();
    for batch in reader {
        let batch = batch.map_err(|e| failed(&e))?;
        if unsupported.load(std::sync::atomic::Ordering::Relaxed) {
            return Err(Skip::NotApplicable);
        }
        if batch.num_rows() == 0 {
            continue;
        }
        let mut columns = Vec::with_capacity(target.fields().len());
        for f in target.fields() {
            let c = batch.column_by_name(f.name()).ok_or(Skip::NotApplicable)?;
            columns.push(if c.data_type() == f.data_type() {
                c.clone()
            } else {
                arrow::compute::cast(c, f.data_type()).map_err(|_| Skip::NotApplicable)?
            });
        }
        out.push(RecordBatch::try_new(target.clone(), columns).map_err(|e| failed(&e))?);
    }
    if unsupported.load(std::sync::atomic::Ordering::Relaxed) {
        return Err(Skip::NotApplicable);
    }
    Ok(out)
}

impl Lake {
    /// The rows of detail table `name` at `version` with a value of one of the `any`
    /// columns in that column's set, with the columns of `target` (cast to its types).
    ///
    /// `None` when this direct read does not apply: the table is partitioned, a file
    /// lacks a condition or target column or holds a condition column that is neither a
    /// 64-bit integer nor text, or a deletion vector is stored inline. The caller then
    /// reads through the engine.
    pub async fn select_rows(
        &self,
        name: &str,
        version: i64,
        target: SchemaRef,
        any: &[(String, Arc<KeySet>)],
    ) -> Result<Option<Vec<RecordBatch>>> {
        let label = format!("detail/{name}");
        let any: Vec<(String, Arc<KeySet>)> =
            any.iter().filter(|(_, s)| !s.is_empty()).cloned().collect();
        if any.is_empty() {
            return Ok(Some(Vec::new()));
        }
        let Some(table) = self.open("detail", name, Some(version)).await? else {
            return Err(WarehouseError::NoRun(self.root.clone()));
        };
        let snapshot = table.snapshot().map_err(delta(&label))?;
        if !snapshot.metadata().partition_columns().is_empty() {
            return Ok(None);
        }
        let files: Vec<deltalake::kernel::Add> = snapshot
            .log_data()
            .iter()
            .map(|view| {
                // The entry whole, its deletion vector included.
                #[allow(deprecated)]
                view.add_action()
            })
            .collect();
        let store = table.object_store();
        let root = table.table_url().clone();
        let mut parts = Vec::new();
        for add in &files {
            let deleted = match &add.deletion_vector {
                Some(dv) if dv.storage_type == deltalake::kernel::StorageType::Inline => {
                    return Ok(None);
                }
                Some(dv) => crate::vectors::read_vector(store.as_ref(), &root, dv, &label).await?,
                None => RoaringTreemap::new(),
            };
            let bytes = store
                .get(&Path::from(add.path.as_str()))
                .await
                .map_err(|e| self.select_error(name, e))?
                .bytes()
                .await
                .map_err(|e| self.select_error(name, e))?;
            let metadata = ArrowReaderMetadata::load(&bytes, ArrowReaderOptions::new())
                .map_err(|e| self.select_error(name, e))?;
            let mut start = 0u64;
            for (row_group, rg) in metadata.metadata().row_groups().iter().enumerate() {
                let end = start + rg.num_rows() as u64;
                let deleted: Vec<usize> = deleted
                    .iter()
                    .skip_while(|p| *p < start)
                    .take_while(|p| *p < end)
                    .map(|p| (p - start) as usize)
                    .collect();
                parts.push(Part {
                    bytes: bytes.clone(),
                    metadata: metadata.clone(),
                    row_group,
                    deleted,
                });
                start = end;
            }
        }
        let any = Arc::new(any);
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        let results: Vec<std::result::Result<Vec<RecordBatch>, Skip>> =
            futures::stream::iter(parts.into_iter().map(|part| {
                let (any, target) = (any.clone(), target.clone());
                tokio::task::spawn_blocking(move || read_part(part, &any, &target))
            }))
            .buffer_unordered(cores)
            .map_err(|e| self.select_error(name, e))
            .try_collect()
            .await?;
        let mut out = Vec::new();
        for result in results {
            match result {
                Ok(batches) => out.extend(batches),
                Err(Skip::NotApplicable) => return Ok(None),
                Err(Skip::Failed(e)) => return Err(self.select_error(name, e)),
            }
        }
        Ok(Some(out))
    }

    fn select_error(&self, name: &str, e: impl std::fmt::Display) -> WarehouseError {
        WarehouseError::Merge {
            table: format!("detail/{name}"),
            reason: format!("lecture des lignes restreintes : {e}"),
        }
    }
}
