//! Reading the few rows of a detail table whose keys are listed, without decoding the others.
//!
//! The engine's scan of a Delta table that has deletion vectors decodes every column of
//! every row before it filters: delta-rs keeps filters out of the Parquet reader when the
//! vectors are on, so that row positions stay aligned with them. The compute's restriction
//! to the changed households wants a few hundred thousand rows out of tens of millions.
//! Here each file's key columns are decoded first; the file's deletion vector and the keys
//! decide which rows are wanted; only those rows' other columns are decoded (a row
//! selection). Row groups are read in parallel, one core each. The compute reads a table
//! as two versions (before and after the ingests since its last release), which share
//! nearly all their files: [`Lake::select_rows_at`] reads such a file once for both.

use std::sync::Arc;

use arrow::array::{Array, AsArray, BooleanArray, RecordBatch};
use arrow::datatypes::{DataType, Int64Type, SchemaRef};
use deltalake::parquet::arrow::ProjectionMask;
use deltalake::parquet::arrow::arrow_reader::{
    ArrowReaderMetadata, ArrowReaderOptions, ParquetRecordBatchReaderBuilder, RowSelection,
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

/// The conditions of a read: columns, each with the set of keys its rows must hold (any
/// one of them).
pub type Conditions = Vec<(String, Arc<KeySet>)>;

/// One row group to read: its file's bytes and metadata, its index, and for each side the
/// positions (within the row group) its file's deletion vector deletes there — `None`
/// when the file is not in that side's version.
struct Part {
    bytes: bytes::Bytes,
    metadata: ArrowReaderMetadata,
    row_group: usize,
    deleted: Vec<Option<Vec<usize>>>,
}

/// Why a row group could not be read directly (the caller then reads another way).
enum Skip {
    /// A condition's column is missing from the file, or not of a key type, or a target
    /// column is missing or cannot be cast.
    NotApplicable,
    Failed(String),
}

/// Whether a column of this type can be looked up in a [`KeySet`].
fn is_key_type(data_type: &DataType) -> bool {
    matches!(
        data_type,
        DataType::Int64 | DataType::Utf8 | DataType::Utf8View
    )
}

/// Reads one row group for every side: the rows not deleted there and with a value of one
/// of the side's condition columns in its set, every column of `target` (cast to its
/// type). The condition columns are decoded once for all the sides, then the other
/// columns of the rows some side wants, once.
fn read_part(
    part: Part,
    sides: &[Conditions],
    target: &SchemaRef,
) -> std::result::Result<Vec<Vec<RecordBatch>>, Skip> {
    let failed = |e: &dyn std::fmt::Display| Skip::Failed(e.to_string());
    let file_schema = part.metadata.schema().clone();
    let present = |s: usize| part.deleted[s].is_some() && !sides[s].is_empty();
    let mut roots: Vec<usize> = Vec::new();
    for (_, any) in sides.iter().enumerate().filter(|(s, _)| present(*s)) {
        for (column, _) in any {
            let i = file_schema
                .index_of(column)
                .map_err(|_| Skip::NotApplicable)?;
            if !is_key_type(file_schema.field(i).data_type()) {
                return Err(Skip::NotApplicable);
            }
            roots.push(i);
        }
    }
    roots.sort_unstable();
    roots.dedup();
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
    let empty = || vec![Vec::new(); sides.len()];
    if roots.is_empty() {
        return Ok(empty());
    }
    let rows = part
        .metadata
        .metadata()
        .row_group(part.row_group)
        .num_rows() as usize;
    // The condition columns, whole.
    let keys = {
        let builder = ParquetRecordBatchReaderBuilder::new_with_metadata(
            part.bytes.clone(),
            part.metadata.clone(),
        );
        let mask = ProjectionMask::roots(builder.parquet_schema(), roots);
        let reader = builder
            .with_row_groups(vec![part.row_group])
            .with_projection(mask)
            .with_batch_size(rows.max(1))
            .build()
            .map_err(|e| failed(&e))?;
        let batches = reader
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|e| failed(&e))?;
        let Some(first) = batches.first() else {
            return Ok(empty());
        };
        arrow::compute::concat_batches(&first.schema(), &batches).map_err(|e| failed(&e))?
    };
    // Each side's wanted rows, and the rows any side wants.
    let mut masks: Vec<Option<BooleanArray>> = Vec::with_capacity(sides.len());
    for (s, any) in sides.iter().enumerate() {
        let Some(deleted) = part.deleted[s].as_ref().filter(|_| present(s)) else {
            masks.push(None);
            continue;
        };
        let mut mask = BooleanArray::from(vec![false; keys.num_rows()]);
        for (column, set) in any {
            let values = keys.column_by_name(column).ok_or(Skip::NotApplicable)?;
            let hits = set.hits(values.as_ref()).ok_or(Skip::NotApplicable)?;
            mask = arrow::compute::or(&mask, &hits).map_err(|e| failed(&e))?;
        }
        if !deleted.is_empty() {
            let mut alive = vec![true; keys.num_rows()];
            for &p in deleted {
                if let Some(a) = alive.get_mut(p) {
                    *a = false;
                }
            }
            mask =
                arrow::compute::and(&mask, &BooleanArray::from(alive)).map_err(|e| failed(&e))?;
        }
        masks.push(Some(mask));
    }
    let mut union = BooleanArray::from(vec![false; keys.num_rows()]);
    for mask in masks.iter().flatten() {
        union = arrow::compute::or(&union, mask).map_err(|e| failed(&e))?;
    }
    if union.true_count() == 0 {
        return Ok(empty());
    }
    // The other columns of the rows wanted only.
    let builder = ParquetRecordBatchReaderBuilder::new_with_metadata(part.bytes, part.metadata);
    let output_mask = ProjectionMask::roots(builder.parquet_schema(), wanted.iter().copied());
    let reader = builder
        .with_row_groups(vec![part.row_group])
        .with_projection(output_mask)
        .with_row_selection(RowSelection::from_filters(std::slice::from_ref(&union)))
        .with_batch_size(64 * 1024)
        .build()
        .map_err(|e| failed(&e))?;
    let mut read = Vec::new();
    for batch in reader {
        let batch = batch.map_err(|e| failed(&e))?;
        let mut columns = Vec::with_capacity(target.fields().len());
        for f in target.fields() {
            let c = batch.column_by_name(f.name()).ok_or(Skip::NotApplicable)?;
            columns.push(if c.data_type() == f.data_type() {
                c.clone()
            } else {
                arrow::compute::cast(c, f.data_type()).map_err(|_| Skip::NotApplicable)?
            });
        }
        read.push(RecordBatch::try_new(target.clone(), columns).map_err(|e| failed(&e))?);
    }
    let read = arrow::compute::concat_batches(target, &read).map_err(|e| failed(&e))?;
    if read.num_rows() != union.true_count() {
        return Err(Skip::Failed(format!(
            "{} lignes lues pour {} demandées",
            read.num_rows(),
            union.true_count()
        )));
    }
    // Each side's rows among those read.
    let mut out = Vec::with_capacity(sides.len());
    for mask in &masks {
        match mask {
            Some(mask) => {
                let mine = arrow::compute::filter(mask, &union).map_err(|e| failed(&e))?;
                let batch = arrow::compute::filter_record_batch(&read, mine.as_boolean())
                    .map_err(|e| failed(&e))?;
                out.push(if batch.num_rows() > 0 {
                    vec![batch]
                } else {
                    Vec::new()
                });
            }
            None => out.push(Vec::new()),
        }
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
        Ok(self
            .select_rows_at(name, target, &[(version, any.to_vec())])
            .await?
            .and_then(|mut sides| sides.pop()))
    }

    /// [`Lake::select_rows`] at several versions of a table at once, each with its own
    /// conditions: one result per side, in order. A file several versions share is read
    /// once — its condition columns decoded once, the other columns of the rows any side
    /// wants once.
    pub async fn select_rows_at(
        &self,
        name: &str,
        target: SchemaRef,
        sides: &[(i64, Conditions)],
    ) -> Result<Option<Vec<Vec<RecordBatch>>>> {
        let label = format!("detail/{name}");
        let conditions: Vec<Conditions> = sides
            .iter()
            .map(|(_, any)| any.iter().filter(|(_, s)| !s.is_empty()).cloned().collect())
            .collect();
        if conditions.iter().all(Vec::is_empty) {
            return Ok(Some(vec![Vec::new(); sides.len()]));
        }
        // Each file of the sides that select something, with its deletion vector there.
        let mut files: std::collections::BTreeMap<String, Vec<Option<RoaringTreemap>>> =
            Default::default();
        let mut store = None;
        for (s, (version, _)) in sides.iter().enumerate() {
            if conditions[s].is_empty() {
                continue;
            }
            let Some(table) = self.open("detail", name, Some(*version)).await? else {
                return Err(WarehouseError::NoRun(self.root.clone()));
            };
            let snapshot = table.snapshot().map_err(delta(&label))?;
            if !snapshot.metadata().partition_columns().is_empty() {
                return Ok(None);
            }
            let adds: Vec<deltalake::kernel::Add> = snapshot
                .log_data()
                .iter()
                .map(|view| {
                    // The entry whole, its deletion vector included.
                    #[allow(deprecated)]
                    view.add_action()
                })
                .collect();
            let object_store = table.object_store();
            let root = table.table_url().clone();
            for add in &adds {
                let deleted = match &add.deletion_vector {
                    Some(dv) if dv.storage_type == deltalake::kernel::StorageType::Inline => {
                        return Ok(None);
                    }
                    Some(dv) => {
                        crate::vectors::read_vector(object_store.as_ref(), &root, dv, &label)
                            .await?
                    }
                    None => RoaringTreemap::new(),
                };
                files
                    .entry(add.path.clone())
                    .or_insert_with(|| vec![None; sides.len()])[s] = Some(deleted);
            }
            store.get_or_insert(object_store);
        }
        let Some(store) = store else {
            return Ok(Some(vec![Vec::new(); sides.len()]));
        };
        let mut parts = Vec::new();
        for (path, deleted) in files {
            let bytes = store
                .get(&Path::from(path.as_str()))
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
                let within = |d: &RoaringTreemap| -> Vec<usize> {
                    d.iter()
                        .skip_while(|p| *p < start)
                        .take_while(|p| *p < end)
                        .map(|p| (p - start) as usize)
                        .collect()
                };
                parts.push(Part {
                    bytes: bytes.clone(),
                    metadata: metadata.clone(),
                    row_group,
                    deleted: deleted.iter().map(|d| d.as_ref().map(within)).collect(),
                });
                start = end;
            }
        }
        let conditions = Arc::new(conditions);
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        let results: Vec<std::result::Result<Vec<Vec<RecordBatch>>, Skip>> =
            futures::stream::iter(parts.into_iter().map(|part| {
                let (conditions, target) = (conditions.clone(), target.clone());
                tokio::task::spawn_blocking(move || read_part(part, &conditions, &target))
            }))
            .buffer_unordered(cores)
            .map_err(|e| self.select_error(name, e))
            .try_collect()
            .await?;
        let mut out = vec![Vec::new(); sides.len()];
        for result in results {
            match result {
                Ok(per_side) => {
                    for (o, batches) in out.iter_mut().zip(per_side) {
                        o.extend(batches);
                    }
                }
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
