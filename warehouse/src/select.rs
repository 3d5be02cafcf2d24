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
use arrow::buffer::BooleanBuffer;
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
///
/// A set is filled once, then looked up for every row of the tables read (tens of
/// millions nationally): its integers are then also kept as a bitmap over their range
/// when that range is small enough ([`Dense`]), its texts behind a one-bit-per-slot
/// filter ([`TextFilter`]), both built at the first lookup after a change.
#[derive(Debug, Default, Clone)]
pub struct KeySet {
    ints: HashSet<i64>,
    texts: HashSet<String>,
    dense: std::sync::OnceLock<Option<Dense>>,
    filter: std::sync::OnceLock<TextFilter>,
}

/// A first test of a text key, by its first and last bytes: one bit per slot, set for
/// every key of the set. A text whose slot is unset is not in the set; the others are
/// looked up. The keys are pseudonyms (random hexadecimal) and nearly every row looked
/// up is not wanted, so most lookups end at one bit instead of hashing 32 bytes and
/// comparing them.
#[derive(Debug, Clone)]
struct TextFilter {
    shift: u32,
    bits: Vec<u64>,
}

impl TextFilter {
    fn of(texts: &HashSet<String>) -> Self {
        // About 32 slots per key (at most 2^24 bits, 2 MiB), so that a text not in
        // the set passes with a chance of 1/32 or less.
        let slots = (texts.len().max(1) * 32)
            .next_power_of_two()
            .clamp(64, 1 << 24);
        let mut filter = Self {
            shift: 64 - slots.trailing_zeros(),
            bits: vec![0u64; slots / 64],
        };
        for t in texts {
            let slot = filter.slot(t);
            filter.bits[slot >> 6] |= 1 << (slot & 63);
        }
        filter
    }

    /// A text's slot, from its first and last eight bytes and its length.
    fn slot(&self, text: &str) -> usize {
        let bytes = text.as_bytes();
        let word = |part: &[u8]| {
            let mut w = [0u8; 8];
            w[..part.len()].copy_from_slice(part);
            u64::from_le_bytes(w)
        };
        let n = bytes.len();
        let x = word(&bytes[..n.min(8)])
            ^ word(&bytes[n.saturating_sub(8)..]).rotate_left(29)
            ^ (n as u64).rotate_left(56);
        (x.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> self.shift) as usize
    }

    fn may_hold(&self, text: &str) -> bool {
        let slot = self.slot(text);
        self.bits[slot >> 6] >> (slot & 63) & 1 == 1
    }
}

/// The integers of a [`KeySet`] as one bit each from the smallest: ids are dense, so a
/// set of a few thousand ids spans a few million bits at most, and a lookup is a shift
/// and a mask instead of a hash.
#[derive(Debug, Clone)]
struct Dense {
    min: i64,
    bits: Vec<u64>,
}

impl Dense {
    /// The widest range kept as a bitmap: 2^27 bits (16 MiB).
    const MAX_BITS: u64 = 1 << 27;

    fn of(ints: &HashSet<i64>) -> Option<Self> {
        let (min, max) = (*ints.iter().min()?, *ints.iter().max()?);
        let width = (max as i128 - min as i128 + 1) as u128;
        if width > Self::MAX_BITS as u128 {
            return None;
        }
        let mut bits = vec![0u64; (width as usize).div_ceil(64)];
        for &v in ints {
            let o = (v - min) as usize;
            bits[o >> 6] |= 1 << (o & 63);
        }
        Some(Self { min, bits })
    }

    fn contains(&self, v: i64) -> bool {
        let o = v.wrapping_sub(self.min) as u64;
        (o >> 6) < self.bits.len() as u64 && self.bits[(o >> 6) as usize] >> (o & 63) & 1 == 1
    }
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
        self.filter = Default::default();
        self.texts.extend(texts.into_iter().map(str::to_owned));
    }

    pub fn extend_ints(&mut self, ints: impl IntoIterator<Item = i64>) {
        self.dense = Default::default();
        self.ints.extend(ints);
    }

    /// Adds the keys of `other`.
    pub fn extend(&mut self, other: &KeySet) {
        self.dense = Default::default();
        self.filter = Default::default();
        self.ints.extend(other.ints.iter().copied());
        self.texts.extend(other.texts.iter().cloned());
    }

    /// Adds the non-null values of `column`; `false` (and nothing added) when the column
    /// is not of a key type (64-bit integer or text).
    pub fn extend_from(&mut self, column: &dyn Array) -> bool {
        match column.data_type() {
            DataType::Int64 => {
                self.extend_ints(column.as_primitive::<Int64Type>().iter().flatten());
            }
            DataType::Utf8 => {
                self.extend_texts(column.as_string::<i32>().iter().flatten());
            }
            DataType::Utf8View => {
                self.extend_texts(column.as_string_view().iter().flatten());
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

    /// For each of `n` texts, whether it is in the set: through the filter first.
    fn text_hits<'a>(&self, n: usize, value: impl Fn(usize) -> &'a str) -> BooleanBuffer {
        if self.texts.is_empty() {
            return BooleanBuffer::new_unset(n);
        }
        let f = self.filter.get_or_init(|| TextFilter::of(&self.texts));
        BooleanBuffer::collect_bool(n, |i| {
            let v = value(i);
            f.may_hold(v) && self.texts.contains(v)
        })
    }

    /// For each row of `column`, whether its value is in the set (a null is not), with
    /// no nulls itself; `None` when the column is not of a key type.
    pub(crate) fn hits(&self, column: &dyn Array) -> Option<BooleanArray> {
        let n = column.len();
        let found = match column.data_type() {
            DataType::Int64 => {
                let values = column.as_primitive::<Int64Type>().values();
                if self.ints.is_empty() {
                    BooleanBuffer::new_unset(n)
                } else {
                    let dense = self.dense.get_or_init(|| Dense::of(&self.ints));
                    match dense {
                        Some(d) => BooleanBuffer::collect_bool(n, |i| d.contains(values[i])),
                        None => BooleanBuffer::collect_bool(n, |i| self.ints.contains(&values[i])),
                    }
                }
            }
            DataType::Utf8 => {
                let a = column.as_string::<i32>();
                self.text_hits(n, |i| a.value(i))
            }
            DataType::Utf8View => {
                let a = column.as_string_view();
                self.text_hits(n, |i| a.value(i))
            }
            _ => return None,
        };
        let found = match column.logical_nulls() {
            Some(valid) => &found & valid.inner(),
            None => found,
        };
        Some(BooleanArray::new(found, None))
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

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Int64Array, StringArray, StringViewArray};

    fn hits(set: &KeySet, column: &dyn Array) -> Vec<bool> {
        let found = set.hits(column).expect("a key type");
        assert_eq!(found.null_count(), 0);
        found.iter().map(|b| b.expect("no null")).collect()
    }

    #[test]
    fn integer_keys_are_found_whether_kept_as_a_bitmap_or_hashed() {
        let column = Int64Array::from(vec![
            Some(7),
            None,
            Some(8),
            Some(1_000),
            Some(-3),
            Some(i64::MIN),
            Some(i64::MAX),
            Some(6),
            Some(1 << 40),
        ]);
        // A narrow range: a bitmap (its ends and just outside them).
        let narrow = KeySet::of_ints([7, 1_000, -3]);
        assert!(Dense::of(&narrow.ints).is_some());
        assert_eq!(
            hits(&narrow, &column),
            [true, false, false, true, true, false, false, false, false]
        );
        // Wider than a bitmap may be: hashed, same answers.
        let wide = KeySet::of_ints([7, 1_000, -3, 1 << 40]);
        assert!(Dense::of(&wide.ints).is_none());
        assert_eq!(
            hits(&wide, &column),
            [true, false, false, true, true, false, false, false, true]
        );
        // A key added after a lookup is found (the bitmap is built again).
        let mut grown = KeySet::of_ints([7]);
        assert!(!hits(&grown, &column)[2]);
        grown.extend(&KeySet::of_ints([8]));
        assert!(hits(&grown, &column)[2]);
        grown.extend_ints([6]);
        assert!(hits(&grown, &column)[7]);
        // No integer key: nothing found.
        assert_eq!(hits(&KeySet::of_texts(["7"]), &column), [false; 9]);
    }

    #[test]
    fn text_keys_are_found_in_both_text_layouts_and_never_on_a_null() {
        let set = KeySet::of_texts(["a", "une clé plus longue que douze octets"]);
        let values = vec![
            Some("a"),
            None,
            Some("b"),
            Some("une clé plus longue que douze octets"),
            Some(""),
        ];
        let want = [true, false, false, true, false];
        assert_eq!(hits(&set, &StringArray::from(values.clone())), want);
        assert_eq!(hits(&set, &StringViewArray::from(values)), want);
        assert!(set.hits(&arrow::array::Int32Array::from(vec![1])).is_none());
        // A key added after a lookup is found (the filter is built again).
        let mut grown = KeySet::of_texts(["a"]);
        let column = StringArray::from(vec!["a", "b", "c"]);
        assert_eq!(hits(&grown, &column), [true, false, false]);
        grown.extend_texts(["b"]);
        assert_eq!(hits(&grown, &column), [true, true, false]);
        grown.extend(&KeySet::of_texts(["c"]));
        assert_eq!(hits(&grown, &column), [true, true, true]);
    }

    #[test]
    fn the_text_filter_passes_every_key_and_stops_most_others() {
        // Pseudonyms: 32 random hexadecimal digits (splitmix64 twice).
        let mix = |mut z: u64| {
            z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        };
        let hex = |i: u64| format!("{:016x}{:016x}", mix(2 * i), mix(2 * i + 1));
        let keys: HashSet<String> = (0..1_000).map(hex).collect();
        let filter = TextFilter::of(&keys);
        assert!(keys.iter().all(|k| filter.may_hold(k)));
        let passed = (1_000..101_000)
            .filter(|i| filter.may_hold(&hex(*i)))
            .count();
        assert!(passed < 100_000 / 16, "{passed} textes passés sur 100 000");
        // Texts alike but for their end are told apart too.
        let numbered: HashSet<String> = (0..1_000).map(|i| format!("menage-{i:010}")).collect();
        let filter = TextFilter::of(&numbered);
        assert!(numbered.iter().all(|k| filter.may_hold(k)));
        let passed = (1_000..101_000)
            .filter(|i| filter.may_hold(&format!("menage-{i:010}")))
            .count();
        assert!(passed < 100_000 / 4, "{passed} textes passés sur 100 000");
    }
}
