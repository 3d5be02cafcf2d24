//! Writing only what changed: a table's new content is compared with its latest Delta
//! version group by group (a group: the rows sharing a key value), and only the groups
//! that differ are deleted and written again.
//!
//! A plan's groups are deleted by deletion vectors where possible (`vectors`: the files
//! stay, a bitmap of each one's deleted rows is added), otherwise by rewriting the table.
//!
//! A group is compared by the multiset of its rows: each row is encoded by Arrow's row
//! format and hashed; a group's fingerprint is its row count and the wrapping sum of its
//! rows' hashes, so the order of rows does not matter and two evaluations of a household
//! with identical content count twice.

use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasher, Hasher};

use arrow::array::{Array, AsArray, BooleanArray};
use arrow::compute::filter_record_batch;
use arrow::datatypes::{DataType, Int64Type};
use arrow::record_batch::RecordBatch;
use arrow::row::{RowConverter, SortField};
use datafusion::prelude::col;

use crate::{Lake, Result, TableChanges, WarehouseError, delta};

/// A key value of a group (ids are kept as integers, pseudonyms as text).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Key {
    Int(i64),
    Text(String),
    Null,
}

/// The groups a table's write rewrites ([`MergePlan::rewritten`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rewritten {
    /// Nothing written.
    None,
    /// The groups of these keys of this column, deleted and written again.
    Keys(String, Vec<Key>),
    /// The whole table.
    Whole,
}

/// What one table's write will do, decided before anything is written (so that the
/// mass-delete stop can look at every table first).
#[derive(Debug)]
pub struct MergePlan {
    pub zone: String,
    pub table: String,
    pub changes: TableChanges,
    /// Rows of the latest version before the write.
    pub rows_before: u64,
    action: Action,
}

#[derive(Debug)]
enum Action {
    /// Nothing differs: no commit.
    Nothing(i64),
    /// Nothing to do, version unknown yet: no commit.
    Unchanged,
    /// The table is new, its schema changed, or most of it changed: one overwrite.
    Overwrite(RecordBatch),
    /// Delete the groups whose key is listed, then append `append`.
    Merge {
        key: String,
        delete: Vec<Key>,
        append: RecordBatch,
    },
}

impl MergePlan {
    /// The bytes of rows this plan writes (0 when it writes none): the writes are
    /// scheduled largest first.
    pub fn bytes(&self) -> usize {
        match &self.action {
            Action::Nothing(_) | Action::Unchanged => 0,
            Action::Overwrite(batch) | Action::Merge { append: batch, .. } => {
                batch.get_array_memory_size()
            }
        }
    }

    /// The groups this plan rewrites: the keys it deletes and the keys of the rows it
    /// appends ([`Rewritten::Whole`] when it replaces the whole table, or rewrites a group
    /// without a key).
    pub fn rewritten(&self) -> Result<Rewritten> {
        match &self.action {
            Action::Nothing(_) | Action::Unchanged => Ok(Rewritten::None),
            Action::Overwrite(_) => Ok(Rewritten::Whole),
            Action::Merge {
                key,
                delete,
                append,
            } => {
                let mut all = delete.clone();
                if append.num_rows() > 0 {
                    all.extend(keys(append, key, &self.table)?);
                }
                if all.contains(&Key::Null) {
                    return Ok(Rewritten::Whole);
                }
                all.sort_unstable();
                all.dedup();
                Ok(Rewritten::Keys(key.clone(), all))
            }
        }
    }

    /// A plan decided elsewhere (an incremental run knows which groups it rewrites):
    /// delete the groups whose key is listed, then append `append`.
    pub fn replace(
        zone: &str,
        table: &str,
        key: &str,
        delete: Vec<Key>,
        append: RecordBatch,
        rows_before: u64,
        changes: TableChanges,
    ) -> Self {
        let action = if delete.is_empty() && append.num_rows() == 0 {
            Action::Unchanged
        } else {
            Action::Merge {
                key: key.to_owned(),
                delete,
                append,
            }
        };
        Self {
            zone: zone.to_owned(),
            table: table.to_owned(),
            changes,
            rows_before,
            action,
        }
    }
}

fn merge_error(table: &str, reason: String) -> WarehouseError {
    WarehouseError::Merge {
        table: table.to_owned(),
        reason,
    }
}

fn keys(batch: &RecordBatch, key: &str, table: &str) -> Result<Vec<Key>> {
    let column = batch
        .column_by_name(key)
        .ok_or_else(|| merge_error(table, format!("colonne clé {key} absente")))?;
    Ok(match column.data_type() {
        DataType::Int64 => {
            let a = column.as_primitive::<Int64Type>();
            (0..a.len())
                .map(|i| {
                    if a.is_null(i) {
                        Key::Null
                    } else {
                        Key::Int(a.value(i))
                    }
                })
                .collect()
        }
        DataType::Utf8 => {
            let a = column.as_string::<i32>();
            (0..a.len())
                .map(|i| {
                    if a.is_null(i) {
                        Key::Null
                    } else {
                        Key::Text(a.value(i).to_owned())
                    }
                })
                .collect()
        }
        other => {
            return Err(merge_error(
                table,
                format!("type de clé {other} non pris en charge"),
            ));
        }
    })
}

/// Row count and order-independent hash of each group.
fn fingerprints(
    batch: &RecordBatch,
    keys: &[Key],
    table: &str,
) -> Result<HashMap<Key, (u64, u64)>> {
    let fields = batch
        .schema()
        .fields()
        .iter()
        .map(|f| SortField::new(f.data_type().clone()))
        .collect();
    let converter = RowConverter::new(fields).map_err(|e| merge_error(table, e.to_string()))?;
    let rows = converter
        .convert_columns(batch.columns())
        .map_err(|e| merge_error(table, e.to_string()))?;
    // A fixed-seed hasher: both sides of the comparison must hash alike.
    let state =
        std::hash::BuildHasherDefault::<std::collections::hash_map::DefaultHasher>::default();
    let mut out: HashMap<Key, (u64, u64)> = HashMap::with_capacity(keys.len());
    for (i, key) in keys.iter().enumerate() {
        let mut h = state.build_hasher();
        h.write(rows.row(i).as_ref());
        let entry = out.entry(key.clone()).or_default();
        entry.0 += 1;
        entry.1 = entry.1.wrapping_add(h.finish());
    }
    Ok(out)
}

fn concat(batches: &[RecordBatch], table: &str) -> Result<Option<RecordBatch>> {
    let Some(first) = batches.first() else {
        return Ok(None);
    };
    arrow::compute::concat_batches(&first.schema(), batches)
        .map(Some)
        .map_err(|e| merge_error(table, e.to_string()))
}

/// The old content in the new content's types (the engine reads strings back as
/// views), or `None` when the columns differ (the table is then rewritten whole).
fn in_types_of(old: &RecordBatch, new: &RecordBatch) -> Option<RecordBatch> {
    let (a, b) = (old.schema(), new.schema());
    if a.fields().len() != b.fields().len()
        || a.fields()
            .iter()
            .zip(b.fields())
            .any(|(x, y)| x.name() != y.name())
    {
        return None;
    }
    let columns = old
        .columns()
        .iter()
        .zip(b.fields())
        .map(|(c, f)| arrow::compute::cast(c, f.data_type()).ok())
        .collect::<Option<Vec<_>>>()?;
    RecordBatch::try_new(b.clone(), columns).ok()
}

/// The integer and the text keys of a list (null keys are neither).
fn split_keys(keys: &[Key]) -> (Vec<i64>, Vec<&str>) {
    let (mut ints, mut texts) = (Vec::new(), Vec::new());
    for k in keys {
        match k {
            Key::Int(v) => ints.push(*v),
            Key::Text(v) => texts.push(v.as_str()),
            Key::Null => {}
        }
    }
    (ints, texts)
}

/// Share of a table above which rewriting it whole is cheaper than a merge.
const OVERWRITE_SHARE: f64 = 0.5;

impl Lake {
    /// Plans the write of `new` as the content of `zone/table`, grouped by `key`.
    /// `full` forces an overwrite.
    pub async fn plan_merge(
        &self,
        zone: &str,
        table: &str,
        key: &str,
        new: RecordBatch,
        full: bool,
    ) -> Result<MergePlan> {
        let after = new.num_rows() as u64;
        let plan = |changes, rows_before, action| MergePlan {
            zone: zone.to_owned(),
            table: table.to_owned(),
            changes,
            rows_before,
            action,
        };
        let Some(current) = self.open(zone, table, None).await? else {
            let changes = TableChanges {
                inserees: after,
                ..Default::default()
            };
            return Ok(plan(changes, 0, Action::Overwrite(new)));
        };
        let version = current.version().map_or(0, |v| v as i64);
        let ctx = crate::new_session();
        self.register(&ctx, "courante", &current).await?;
        let old = ctx.sql("SELECT * FROM courante").await?.collect().await?;
        let old = concat(&old, table)?;
        let rows_before = old.as_ref().map_or(0, |b| b.num_rows() as u64);
        let old = match old.as_ref().and_then(|old| in_types_of(old, &new)) {
            Some(old) => old,
            None => {
                let changes = TableChanges {
                    inserees: after,
                    supprimees: rows_before,
                    ..Default::default()
                };
                return Ok(plan(changes, rows_before, Action::Overwrite(new)));
            }
        };
        let old_keys = keys(&old, key, table)?;
        let new_keys = keys(&new, key, table)?;
        let old_groups = fingerprints(&old, &old_keys, table)?;
        let new_groups = fingerprints(&new, &new_keys, table)?;
        let mut changes = TableChanges::default();
        let mut delete = Vec::new();
        let mut write: HashSet<&Key> = HashSet::new();
        for (k, (n_new, h_new)) in &new_groups {
            match old_groups.get(k) {
                None => {
                    changes.inserees += n_new;
                    write.insert(k);
                }
                Some((n_old, h_old)) if (n_old, h_old) != (n_new, h_new) => {
                    // A group's rows changed: the new ones replace the old ones.
                    changes.mises_a_jour += (*n_new).min(*n_old);
                    changes.inserees += n_new.saturating_sub(*n_old);
                    changes.supprimees += n_old.saturating_sub(*n_new);
                    delete.push(k.clone());
                    write.insert(k);
                }
                Some(_) => {}
            }
        }
        for (k, (n_old, _)) in &old_groups {
            if !new_groups.contains_key(k) {
                changes.supprimees += n_old;
                delete.push(k.clone());
            }
        }
        if delete.is_empty() && write.is_empty() && !full {
            return Ok(plan(changes, rows_before, Action::Nothing(version)));
        }
        let touched = changes.inserees + changes.mises_a_jour + changes.supprimees;
        if full || touched as f64 > OVERWRITE_SHARE * rows_before.max(after) as f64 {
            return Ok(plan(changes, rows_before, Action::Overwrite(new)));
        }
        let mask: BooleanArray = new_keys.iter().map(|k| Some(write.contains(k))).collect();
        let append =
            filter_record_batch(&new, &mask).map_err(|e| merge_error(table, e.to_string()))?;
        Ok(plan(
            changes,
            rows_before,
            Action::Merge {
                key: key.to_owned(),
                delete,
                append,
            },
        ))
    }

    /// Carries out a plan; returns the table's version afterwards.
    pub async fn apply_merge(&self, plan: MergePlan) -> Result<i64> {
        let (zone, name) = (plan.zone, plan.table);
        match plan.action {
            Action::Nothing(version) => Ok(version),
            Action::Unchanged => Ok(self
                .open(&zone, &name, None)
                .await?
                .and_then(|t| t.version())
                .map_or(0, |v| v as i64)),
            Action::Overwrite(batch) => self.overwrite(&zone, &name, batch).await,
            Action::Merge {
                key,
                delete,
                append,
            } => {
                if delete.is_empty() {
                    return self.append(&zone, &name, append).await;
                }
                let table = self
                    .open(&zone, &name, None)
                    .await?
                    .ok_or_else(|| merge_error(&name, "table disparue".into()))?;
                let same_columns = table.snapshot().is_ok_and(|s| {
                    let names = s
                        .schema()
                        .fields()
                        .map(|f| f.name().clone())
                        .collect::<Vec<_>>();
                    names
                        .iter()
                        .eq(append.schema().fields().iter().map(|f| f.name()))
                });
                if same_columns
                    && let Some(version) = self
                        .delete_by_vectors(table.clone(), (&zone, &name), &key, &delete)
                        .await?
                {
                    // The groups replaced are marked deleted where they lie; the new
                    // rows are appended.
                    if append.num_rows() == 0 {
                        return Ok(version);
                    }
                    return self.append(&zone, &name, append).await;
                }
                match self
                    .rewritten(&table, &name, &key, &delete, &append)
                    .await?
                {
                    // The table's rows less the groups replaced, plus the new rows, in
                    // one commit.
                    Some(content) => self.overwrite(&zone, &name, content).await,
                    None => {
                        self.merge_join(table, (&zone, &name), &key, &delete, append)
                            .await
                    }
                }
            }
        }
    }

    /// The content of `table` less the groups whose key is in `delete`, plus `append`,
    /// in `append`'s types; `None` when the table's columns are not `append`'s (the
    /// caller then falls back to a Delta MERGE).
    ///
    /// A table of the lake is one or a few files, and an incremental run replaces groups
    /// spread over all of them: a Delta MERGE rewrites every file anyway, after a join of
    /// the whole table with the keys; reading the table and filtering it by a hash set
    /// of the keys does the same work in less than half the time, and in one commit.
    async fn rewritten(
        &self,
        table: &deltalake::DeltaTable,
        name: &str,
        key: &str,
        delete: &[Key],
        append: &RecordBatch,
    ) -> Result<Option<RecordBatch>> {
        let ctx = crate::new_session();
        self.register(&ctx, "courante", table).await?;
        let old = ctx.sql("SELECT * FROM courante").await?.collect().await?;
        let wanted = crate::vectors::Wanted::new(delete);
        let mut parts = Vec::with_capacity(old.len() + 1);
        for batch in &old {
            let Some(batch) = in_types_of(batch, append) else {
                return Ok(None);
            };
            let column = batch
                .column_by_name(key)
                .ok_or_else(|| merge_error(name, format!("colonne clé {key} absente")))?;
            // Kept unless its key is listed (a null key: when nulls are).
            let Some(hits) = wanted.hits(column.as_ref()) else {
                return Ok(None);
            };
            let kept = arrow::compute::not(&hits).map_err(|e| merge_error(name, e.to_string()))?;
            parts.push(
                filter_record_batch(&batch, &kept).map_err(|e| merge_error(name, e.to_string()))?,
            );
        }
        parts.push(append.clone());
        Ok(Some(
            arrow::compute::concat_batches(&append.schema(), &parts)
                .map_err(|e| merge_error(name, e.to_string()))?,
        ))
    }

    /// The groups whose key is listed deleted by a Delta MERGE, then `append` appended
    /// (two commits).
    async fn merge_join(
        &self,
        table: deltalake::DeltaTable,
        (zone, name): (&str, &str),
        key: &str,
        delete: &[Key],
        append: RecordBatch,
    ) -> Result<i64> {
        let label = format!("{zone}/{name}");
        // A Delta MERGE against the keys (a join): a predicate listing them would be
        // expanded into a chain of ORs as deep as the list.
        let (ints, texts) = split_keys(delete);
        let column: arrow::array::ArrayRef = if texts.is_empty() {
            std::sync::Arc::new(arrow::array::Int64Array::from(ints))
        } else {
            std::sync::Arc::new(arrow::array::StringArray::from(texts))
        };
        let keys = RecordBatch::try_from_iter([("cle_a_remplacer", column)])
            .map_err(|e| merge_error(name, e.to_string()))?;
        let ctx = crate::new_session();
        table
            .update_datafusion_session(&ctx.state())
            .map_err(delta(&label))?;
        let source = ctx.read_batch(keys)?;
        let (mut table, _) = table
            .merge(
                source,
                col(format!("cible.{key}")).eq(col("source.cle_a_remplacer")),
            )
            .with_source_alias("source")
            .with_target_alias("cible")
            .with_session_state(std::sync::Arc::new(ctx.state())
                as std::sync::Arc<dyn datafusion::catalog::Session>)
            .when_matched_delete(|d| d)
            .map_err(delta(&label))?
            .await
            .map_err(delta(&label))?;
        if delete.contains(&Key::Null) {
            let (t, _) = table
                .delete()
                .with_predicate(col(key).is_null())
                .await
                .map_err(delta(&label))?;
            table = t;
        }
        let mut version = table.version().map_or(0, |v| v as i64);
        if append.num_rows() > 0 {
            version = self.append(zone, name, append).await?;
        }
        Ok(version)
    }
}

/// The columns of a batch, for tests.
#[cfg(test)]
fn column_of(batch: &RecordBatch, name: &str) -> arrow::array::ArrayRef {
    batch.column_by_name(name).unwrap().clone()
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{ArrayRef, Int64Array, StringArray};
    use std::sync::Arc;

    /// Rows of the test, plus ten groups that never change.
    fn batch(rows: &[(&str, i64)]) -> RecordBatch {
        let steady: Vec<(String, i64)> = (0..10).map(|i| (format!("z{i}"), i)).collect();
        let rows: Vec<(&str, i64)> = rows
            .iter()
            .copied()
            .chain(steady.iter().map(|(k, n)| (k.as_str(), *n)))
            .collect();
        key_and_n(
            "menage_id",
            Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.0))),
            rows.iter().map(|r| r.1),
        )
    }

    /// A batch of a nullable key column and a nullable count column `n`.
    fn key_and_n(key: &str, keys: ArrayRef, n: impl Iterator<Item = i64>) -> RecordBatch {
        let n: ArrayRef = Arc::new(Int64Array::from_iter_values(n));
        RecordBatch::try_from_iter_with_nullable([(key, keys, true), ("n", n, true)]).unwrap()
    }

    async fn content(lake: &Lake) -> Vec<(String, i64)> {
        let table = lake.open("detail", "t", None).await.unwrap().unwrap();
        let ctx = crate::new_session();
        lake.register(&ctx, "t", &table).await.unwrap();
        let out = ctx
            .sql("SELECT menage_id, n FROM t WHERE menage_id NOT LIKE 'z%' ORDER BY menage_id, n")
            .await
            .unwrap()
            .collect()
            .await
            .unwrap();
        let mut rows = Vec::new();
        for b in out {
            let m = arrow::compute::cast(&column_of(&b, "menage_id"), &DataType::Utf8).unwrap();
            let n = column_of(&b, "n");
            for i in 0..b.num_rows() {
                rows.push((
                    m.as_string::<i32>().value(i).to_owned(),
                    n.as_primitive::<Int64Type>().value(i),
                ));
            }
        }
        rows
    }

    #[tokio::test]
    async fn only_groups_that_differ_are_rewritten() {
        let dir = tempfile::tempdir().unwrap();
        let lake = Lake::new(dir.path());
        let first = batch(&[
            ("a", 1),
            ("a", 1),
            ("b", 2),
            ("c", 3),
            ("d", 4),
            ("e", 5),
            ("f", 6),
            ("g", 7),
        ]);
        let plan = lake
            .plan_merge("detail", "t", "menage_id", first, false)
            .await
            .unwrap();
        assert_eq!(plan.changes.inserees, 18);
        let v1 = lake.apply_merge(plan).await.unwrap();
        // Same rows in another order: nothing to write.
        let same = batch(&[
            ("g", 7),
            ("b", 2),
            ("a", 1),
            ("c", 3),
            ("d", 4),
            ("a", 1),
            ("e", 5),
            ("f", 6),
        ]);
        let plan = lake
            .plan_merge("detail", "t", "menage_id", same, false)
            .await
            .unwrap();
        assert_eq!(plan.changes, TableChanges::default());
        assert_eq!(lake.apply_merge(plan).await.unwrap(), v1);
        // One of a's two identical rows goes, b changes, c is deleted, h is new.
        let next = batch(&[
            ("a", 1),
            ("b", 20),
            ("d", 4),
            ("e", 5),
            ("f", 6),
            ("g", 7),
            ("h", 8),
        ]);
        let plan = lake
            .plan_merge("detail", "t", "menage_id", next, false)
            .await
            .unwrap();
        assert_eq!(
            plan.changes,
            TableChanges {
                inserees: 1,
                mises_a_jour: 2,
                supprimees: 2,
            }
        );
        assert!(matches!(plan.action, Action::Merge { .. }));
        lake.apply_merge(plan).await.unwrap();
        assert_eq!(
            content(&lake).await,
            [
                ("a".to_owned(), 1),
                ("b".to_owned(), 20),
                ("d".to_owned(), 4),
                ("e".to_owned(), 5),
                ("f".to_owned(), 6),
                ("g".to_owned(), 7),
                ("h".to_owned(), 8),
            ]
        );
    }

    fn ids(rows: &[(Option<i64>, i64)]) -> RecordBatch {
        key_and_n(
            "id",
            Arc::new(Int64Array::from_iter(rows.iter().map(|r| r.0))),
            rows.iter().map(|r| r.1),
        )
    }

    async fn id_rows(lake: &Lake, version: Option<i64>) -> Vec<(Option<i64>, i64)> {
        let table = lake.open("detail", "i", version).await.unwrap().unwrap();
        let ctx = crate::new_session();
        lake.register(&ctx, "i", &table).await.unwrap();
        let out = ctx
            .sql("SELECT id, n FROM i ORDER BY id NULLS FIRST, n")
            .await
            .unwrap()
            .collect()
            .await
            .unwrap();
        let mut rows = Vec::new();
        for b in out {
            let (id, n) = (column_of(&b, "id"), column_of(&b, "n"));
            let (id, n) = (
                id.as_primitive::<Int64Type>(),
                n.as_primitive::<Int64Type>(),
            );
            for i in 0..b.num_rows() {
                rows.push((id.is_valid(i).then(|| id.value(i)), n.value(i)));
            }
        }
        rows
    }

    #[tokio::test]
    async fn a_replacement_rewrites_the_listed_groups_in_one_commit() {
        let dir = tempfile::tempdir().unwrap();
        let lake = Lake::new(dir.path());
        let first = ids(&[
            (None, 0),
            (Some(1), 1),
            (Some(2), 2),
            (Some(2), 22),
            (Some(3), 3),
            (Some(4), 4),
        ]);
        let v1 = lake.overwrite("detail", "i", first).await.unwrap();
        // Group 2 replaced by one row, 4 and the null key deleted, 6 new.
        let plan = MergePlan::replace(
            "detail",
            "i",
            "id",
            vec![Key::Int(2), Key::Int(4), Key::Null],
            ids(&[(Some(2), 20), (Some(6), 6)]),
            6,
            TableChanges::default(),
        );
        let v2 = lake.apply_merge(plan).await.unwrap();
        assert_eq!(v2, v1 + 1, "one commit");
        assert_eq!(
            id_rows(&lake, None).await,
            [(Some(1), 1), (Some(2), 20), (Some(3), 3), (Some(6), 6)]
        );
        // The version before is still read as it was.
        assert_eq!(id_rows(&lake, Some(v1)).await.len(), 6);
    }

    /// The data files of the latest version and whether each carries a deletion vector.
    async fn files(lake: &Lake) -> Vec<(String, bool)> {
        let table = lake.open("detail", "i", None).await.unwrap().unwrap();
        let mut out: Vec<(String, bool)> = table
            .snapshot()
            .unwrap()
            .log_data()
            .iter()
            .map(|f| {
                let dv = f.deletion_vector_descriptor().is_some();
                // A file with a vector says since when it has deleted rows.
                #[allow(deprecated)]
                let tags = f.add_action().tags.unwrap_or_default();
                assert_eq!(dv, tags.contains_key("observatoire.supprime_depuis"));
                (f.path().to_string(), dv)
            })
            .collect();
        out.sort();
        out
    }

    #[tokio::test]
    async fn a_few_groups_of_a_large_table_are_deleted_in_place_by_deletion_vectors() {
        let dir = tempfile::tempdir().unwrap();
        let lake = Lake::new(dir.path());
        // Two files of 50 rows: ids 0..50 (id 7 twice, once null) and 50..100.
        let mut first: Vec<(Option<i64>, i64)> = (0..50).map(|i| (Some(i), i)).collect();
        first[3] = (None, 3);
        first[8] = (Some(7), 8);
        lake.overwrite("detail", "i", ids(&first)).await.unwrap();
        let second: Vec<(Option<i64>, i64)> = (50..100).map(|i| (Some(i), i)).collect();
        let v1 = lake.append("detail", "i", ids(&second)).await.unwrap();
        let before = files(&lake).await;
        assert_eq!(before.len(), 2);

        // Group 7 (two rows) replaced, 60 and the null key deleted, 100 new.
        let plan = MergePlan::replace(
            "detail",
            "i",
            "id",
            vec![Key::Int(7), Key::Int(60), Key::Null],
            ids(&[(Some(7), 70), (Some(100), 100)]),
            100,
            TableChanges::default(),
        );
        let v2 = lake.apply_merge(plan).await.unwrap();
        let mut expected: Vec<(Option<i64>, i64)> = (0..101)
            .filter(|i| ![3, 7, 8, 60].contains(i))
            .map(|i| (Some(i), i))
            .collect();
        expected.push((Some(7), 70));
        expected.sort();
        assert_eq!(id_rows(&lake, None).await, expected);
        // Both old files kept, each with a vector; one new file of two rows.
        let after = files(&lake).await;
        assert_eq!(after.len(), 3);
        for (path, _) in &before {
            assert!(after.contains(&(path.clone(), true)), "{path} : {after:?}");
        }
        // Earlier versions still read as they were.
        assert_eq!(id_rows(&lake, Some(v1)).await.len(), 100);

        // A second replacement in a file that has a vector already: both deletions hold.
        let plan = MergePlan::replace(
            "detail",
            "i",
            "id",
            vec![Key::Int(10), Key::Int(7)],
            ids(&[(Some(10), 1000)]),
            98,
            TableChanges::default(),
        );
        lake.apply_merge(plan).await.unwrap();
        let rows = id_rows(&lake, None).await;
        assert_eq!(rows.len(), expected.len() - 1);
        assert!(rows.contains(&(Some(10), 1000)) && !rows.contains(&(Some(10), 10)));
        assert!(
            !rows
                .iter()
                .any(|r| r.0 == Some(7) || r.0.is_none() || r.0 == Some(60))
        );
        assert_eq!(id_rows(&lake, Some(v2)).await, expected);

        // Past a fifth of the rows deleted, the table is rewritten: no vector left.
        let many: Vec<Key> = (20..45).map(Key::Int).collect();
        let plan = MergePlan::replace(
            "detail",
            "i",
            "id",
            many,
            ids(&[]),
            97,
            TableChanges::default(),
        );
        lake.apply_merge(plan).await.unwrap();
        assert_eq!(id_rows(&lake, None).await.len(), rows.len() - 25);
        assert!(files(&lake).await.iter().all(|(_, dv)| !dv));
    }

    #[tokio::test]
    async fn a_direct_read_keeps_the_listed_rows_that_no_vector_deletes() {
        use crate::KeySet;
        let dir = tempfile::tempdir().unwrap();
        let lake = Lake::new(dir.path());
        let first: Vec<(Option<i64>, i64)> = (0..50).map(|i| (Some(i), i)).collect();
        lake.overwrite("detail", "i", ids(&first)).await.unwrap();
        let second: Vec<(Option<i64>, i64)> = (50..100).map(|i| (Some(i), i)).collect();
        let v1 = lake.append("detail", "i", ids(&second)).await.unwrap();
        // Group 7 replaced, 60 deleted, 100 new: two vectors and a new file.
        let plan = MergePlan::replace(
            "detail",
            "i",
            "id",
            vec![Key::Int(7), Key::Int(60)],
            ids(&[(Some(7), 70), (Some(100), 100)]),
            100,
            TableChanges::default(),
        );
        let v2 = lake.apply_merge(plan).await.unwrap();
        assert!(files(&lake).await.iter().any(|(_, dv)| *dv));

        let target = ids(&[]).schema();
        let any = [
            (
                "id".to_owned(),
                Arc::new(KeySet::of_ints([7, 55, 60, 100, 1000])),
            ),
            ("n".to_owned(), Arc::new(KeySet::of_ints([12]))),
        ];
        // The (id, n) of the rows read, sorted.
        let rows_of = |batches: &[RecordBatch]| {
            let mut rows: Vec<(i64, i64)> = Vec::new();
            for b in batches {
                let (id, n) = (column_of(b, "id"), column_of(b, "n"));
                let (id, n) = (
                    id.as_primitive::<Int64Type>(),
                    n.as_primitive::<Int64Type>(),
                );
                rows.extend((0..b.num_rows()).map(|i| (id.value(i), n.value(i))));
            }
            rows.sort_unstable();
            rows
        };
        let read = |version: i64| {
            let (lake, target, any) = (&lake, target.clone(), &any);
            async move {
                let batches = lake
                    .select_rows("i", version, target, any)
                    .await
                    .unwrap()
                    .expect("a direct read applies");
                rows_of(&batches)
            }
        };
        // After: the replaced 7 and the deleted 60 are gone, the new rows are read.
        assert_eq!(read(v2).await, [(7, 70), (12, 12), (55, 55), (100, 100)]);
        // Before: as that version had them.
        assert_eq!(read(v1).await, [(7, 7), (12, 12), (55, 55), (60, 60)]);
        // Both versions at once, each with its own keys: the files they share read once,
        // each side keeping its own rows (its vector, its files, its keys).
        // A side without keys selects nothing.
        let sides = [
            (
                v1,
                vec![("id".to_owned(), Arc::new(KeySet::of_ints([7, 60, 99])))],
            ),
            (
                v2,
                vec![("id".to_owned(), Arc::new(KeySet::of_ints([7, 60, 100])))],
            ),
            (v2, Vec::new()),
        ];
        let both = lake
            .select_rows_at("i", target.clone(), &sides)
            .await
            .unwrap()
            .expect("a direct read applies");
        assert_eq!(both.len(), 3);
        assert!(both[2].is_empty());
        assert_eq!(rows_of(&both[0]), [(7, 7), (60, 60), (99, 99)]);
        assert_eq!(rows_of(&both[1]), [(7, 70), (100, 100)]);
        // A condition on a column the files lack: the direct read does not apply.
        let missing = [("x".to_owned(), Arc::new(KeySet::of_ints([1])))];
        assert!(
            lake.select_rows("i", v2, ids(&[]).schema(), &missing)
                .await
                .unwrap()
                .is_none()
        );
    }

    /// Whether a Parquet file of the table's folder holds a row whose `n` is `n`.
    fn on_disk(lake: &Lake, n: i64) -> bool {
        let dir = lake.table_path("detail", "i");
        std::fs::read_dir(&dir).unwrap().any(|entry| {
            let path = entry.unwrap().path();
            path.extension().is_some_and(|e| e == "parquet")
                && deltalake::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(
                    std::fs::File::open(&path).unwrap(),
                )
                .unwrap()
                .build()
                .unwrap()
                .any(|b| {
                    let b = b.unwrap();
                    let c = column_of(&b, "n");
                    c.as_primitive::<Int64Type>().iter().any(|v| v == Some(n))
                })
        })
    }

    #[tokio::test]
    async fn the_vacuum_rewrites_tables_whose_rows_are_deleted_by_vectors() {
        let dir = tempfile::tempdir().unwrap();
        let lake = Lake::new(dir.path());
        let rows: Vec<(Option<i64>, i64)> = (0..100).map(|i| (Some(i), i)).collect();
        lake.overwrite("detail", "i", ids(&rows)).await.unwrap();
        // A run replaces row 60: deleted by a vector, its value still in the file.
        let plan = MergePlan::replace(
            "detail",
            "i",
            "id",
            vec![Key::Int(60)],
            ids(&[(Some(60), 600)]),
            100,
            TableChanges::default(),
        );
        let written = lake
            .write_tables(vec![plan], &Default::default(), "cle", |_| {})
            .await
            .unwrap();
        let record = crate::RunRecord {
            key_fingerprint: "cle".into(),
            ..Default::default()
        };
        let run = lake.commit_run(written, record).unwrap();
        assert!(files(&lake).await.iter().any(|(_, dv)| *dv));
        assert!(on_disk(&lake, 60));
        let content = id_rows(&lake, None).await;
        assert!(!content.contains(&(Some(60), 60)) && content.contains(&(Some(60), 600)));

        lake.vacuum(chrono::Duration::zero()).await.unwrap();
        // Same content, no vector, the old row in no file; the run names the new version.
        let after = lake.latest_run().unwrap().unwrap();
        assert_eq!(after.run, run.run);
        assert!(after.tables["i"] > run.tables["i"]);
        assert!(lake.is_at(&after).await.unwrap());
        assert_eq!(id_rows(&lake, None).await, content);
        assert!(files(&lake).await.iter().all(|(_, dv)| !dv));
        assert!(!on_disk(&lake, 60), "the deleted row left the disk");
        assert!(on_disk(&lake, 600));
    }

    #[tokio::test]
    async fn a_run_records_the_groups_it_rewrote_until_the_vacuum() {
        let dir = tempfile::tempdir().unwrap();
        let lake = Lake::new(dir.path());
        let rows: Vec<(Option<i64>, i64)> = (0..100).map(|i| (Some(i), i)).collect();
        let record = || crate::RunRecord {
            key_fingerprint: "cle".into(),
            ..Default::default()
        };
        // First run: the table is new, written whole.
        let first = lake
            .plan_merge("detail", "i", "id", ids(&rows), false)
            .await
            .unwrap();
        assert_eq!(first.rewritten().unwrap(), Rewritten::Whole);
        let written = lake
            .write_tables(vec![first], &Default::default(), "cle", |_| {})
            .await
            .unwrap();
        let run1 = lake.commit_run(written, record()).unwrap();
        let keys = lake.run_keys(&run1).await.unwrap().unwrap();
        assert!(keys.keys.is_empty());
        assert_eq!(keys.whole.iter().collect::<Vec<_>>(), ["i"]);
        // Second run: row 3 changed, row 7 gone, row 120 new; the others untouched.
        let mut next: Vec<(Option<i64>, i64)> = rows
            .iter()
            .copied()
            .filter(|(id, _)| *id != Some(7))
            .map(|(id, n)| if id == Some(3) { (id, 33) } else { (id, n) })
            .collect();
        next.push((Some(120), 120));
        let plan = lake
            .plan_merge("detail", "i", "id", ids(&next), false)
            .await
            .unwrap();
        assert_eq!(
            plan.rewritten().unwrap(),
            Rewritten::Keys("id".into(), vec![Key::Int(3), Key::Int(7), Key::Int(120)])
        );
        let written = lake
            .write_tables(vec![plan], &Default::default(), "cle", |_| {})
            .await
            .unwrap();
        let run2 = lake.commit_run(written, record()).unwrap();
        let keys = lake.run_keys(&run2).await.unwrap().unwrap();
        assert!(keys.whole.is_empty());
        assert_eq!(keys.keys["i"], ("id".to_owned(), vec![3, 7, 120], vec![]));
        // The first run's groups are still readable at the version its manifest names.
        assert_eq!(lake.run_keys(&run1).await.unwrap().unwrap().whole.len(), 1);
        // The vacuum empties the table: the groups (pseudonyms, in the detail zone)
        // leave the disk with the versions that held them.
        lake.vacuum(chrono::Duration::zero()).await.unwrap();
        let latest = lake.latest_run().unwrap().unwrap();
        assert!(lake.run_keys(&latest).await.is_err());
    }
}
