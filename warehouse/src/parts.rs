//! Replacing a large table's content with files encoded side by side.
//!
//! delta-rs encodes an unpartitioned write with one writer, on one core: the compute's
//! state grid (8 million cells nationally, rewritten at every release) took 1.8 s while
//! the other core waited (BENCHMARKS.md). Here the batch is cut into one slice per core,
//! each slice is encoded to Parquet on a blocking thread and put in the table's folder,
//! and the files replace the table's in one Delta commit, as delta-rs's own overwrite
//! would. Only a table that exists, is not partitioned and has exactly the batch's schema
//! is written this way; any other goes through [`Lake::overwrite`].
//!
//! The files carry no column statistics (only their number of rows in the log): they are
//! meant for tables that are always read whole.

use std::sync::Arc;

use arrow::record_batch::RecordBatch;
use deltalake::kernel::transaction::CommitBuilder;
use deltalake::kernel::{Action, Add};
use deltalake::parquet::arrow::ArrowWriter;
use deltalake::parquet::basic::Compression;
use deltalake::parquet::file::properties::{EnabledStatistics, WriterProperties};
use deltalake::protocol::{DeltaOperation, SaveMode};
use object_store::ObjectStoreExt;
use object_store::path::Path;

use crate::{Lake, Result, WarehouseError, delta};

/// Below this many rows a part is not worth a core of its own.
const MIN_PART_ROWS: usize = 1 << 20;

fn error(table: &str, reason: impl std::fmt::Display) -> WarehouseError {
    WarehouseError::Write {
        table: table.to_owned(),
        reason: reason.to_string(),
    }
}

/// One slice encoded to Parquet (Snappy, as delta-rs's writes).
fn encode(slice: &RecordBatch) -> std::result::Result<Vec<u8>, String> {
    let properties = WriterProperties::builder()
        .set_compression(Compression::SNAPPY)
        .set_statistics_enabled(EnabledStatistics::None)
        .build();
    let mut bytes = Vec::new();
    let mut writer = ArrowWriter::try_new(&mut bytes, slice.schema(), Some(properties))
        .map_err(|e| e.to_string())?;
    writer.write(slice).map_err(|e| e.to_string())?;
    writer.close().map_err(|e| e.to_string())?;
    Ok(bytes)
}

impl Lake {
    /// Replaces a table's content with `batch` (one Delta commit), the files encoded side
    /// by side, one per core (see the module's documentation); returns the new version.
    pub async fn overwrite_in_parts(
        &self,
        zone: &str,
        name: &str,
        batch: RecordBatch,
    ) -> Result<i64> {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        self.overwrite_in_parts_of(zone, name, batch, cores, MIN_PART_ROWS)
            .await
    }

    pub(crate) async fn overwrite_in_parts_of(
        &self,
        zone: &str,
        name: &str,
        batch: RecordBatch,
        cores: usize,
        min_part_rows: usize,
    ) -> Result<i64> {
        let label = format!("{zone}/{name}");
        let Some(table) = self.open(zone, name, None).await? else {
            return self.overwrite(zone, name, batch).await;
        };
        let snapshot = table.snapshot().map_err(delta(&label))?;
        let same_schema = snapshot.snapshot().arrow_schema().fields() == batch.schema().fields();
        if !same_schema
            || !snapshot.metadata().partition_columns().is_empty()
            || batch.num_rows() == 0
        {
            return self.overwrite(zone, name, batch).await;
        }
        let rows = batch.num_rows();
        let parts = rows.div_ceil(min_part_rows.max(1)).clamp(1, cores.max(1));
        let per_part = rows.div_ceil(parts);
        let store = table.object_store();
        let written = (0..parts).map(|i| {
            let offset = i * per_part;
            let slice = batch.slice(offset, per_part.min(rows - offset));
            let (store, label) = (Arc::clone(&store), label.clone());
            async move {
                let n = slice.num_rows();
                let bytes = tokio::task::spawn_blocking(move || encode(&slice))
                    .await
                    .map_err(|e| error(&label, e))?
                    .map_err(|e| error(&label, e))?;
                let path = format!("part-{i:05}-{}-c000.snappy.parquet", uuid::Uuid::new_v4());
                let size = bytes.len() as i64;
                store
                    .put(&Path::from(path.as_str()), bytes.into())
                    .await
                    .map_err(|e| error(&label, e))?;
                Ok::<Add, WarehouseError>(Add {
                    path,
                    size,
                    modification_time: chrono::Utc::now().timestamp_millis(),
                    data_change: true,
                    stats: Some(format!("{{\"numRecords\":{n}}}")),
                    ..Default::default()
                })
            }
        });
        let added = futures::future::try_join_all(written).await?;
        let mut actions: Vec<Action> = snapshot
            .log_data()
            .iter()
            .map(|file| Action::Remove(file.remove_action(true)))
            .collect();
        actions.extend(added.into_iter().map(Action::Add));
        let commit = CommitBuilder::default()
            .with_actions(actions)
            .build(
                Some(snapshot),
                table.log_store(),
                DeltaOperation::Write {
                    mode: SaveMode::Overwrite,
                    partition_by: None,
                    predicate: None,
                },
            )
            .await
            .map_err(delta(&label))?;
        Ok(commit.version() as i64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Array, AsArray, Int64Array, StringArray};
    use arrow::datatypes::{DataType, Field, Int64Type, Schema};

    fn cells(from: i64, n: i64) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("texte", DataType::Utf8, true),
        ]));
        let ids: Vec<i64> = (from..from + n).collect();
        let texts: Vec<Option<String>> = ids
            .iter()
            .map(|i| (i % 3 != 0).then(|| format!("t{i}")))
            .collect();
        RecordBatch::try_new(
            schema,
            vec![
                Arc::new(Int64Array::from(ids)),
                Arc::new(StringArray::from(texts)),
            ],
        )
        .unwrap()
    }

    /// The table's rows at a version, ordered by id: (id, text).
    async fn rows_at(lake: &Lake, version: Option<i64>) -> Vec<(i64, Option<String>)> {
        let table = lake
            .open("calcul", "grille", version)
            .await
            .unwrap()
            .unwrap();
        let ctx = crate::new_session();
        lake.register(&ctx, "t", &table).await.unwrap();
        let batches = ctx
            .sql("SELECT id, texte FROM t ORDER BY id")
            .await
            .unwrap()
            .collect()
            .await
            .unwrap();
        let mut out = Vec::new();
        for b in &batches {
            let texts = arrow::compute::cast(b.column(1), &DataType::Utf8).unwrap();
            let (ids, texts) = (
                b.column(0).as_primitive::<Int64Type>(),
                texts.as_string::<i32>(),
            );
            for i in 0..b.num_rows() {
                out.push((
                    ids.value(i),
                    texts.is_valid(i).then(|| texts.value(i).to_owned()),
                ));
            }
        }
        out
    }

    fn expected(from: i64, n: i64) -> Vec<(i64, Option<String>)> {
        (from..from + n)
            .map(|i| (i, (i % 3 != 0).then(|| format!("t{i}"))))
            .collect()
    }

    #[tokio::test]
    async fn a_table_replaced_in_parts_reads_back_whole_and_keeps_its_history() {
        let dir = tempfile::tempdir().unwrap();
        let lake = Lake::new(dir.path());
        // No table yet: written by delta-rs (one file).
        let v0 = lake
            .overwrite_in_parts_of("calcul", "grille", cells(0, 10), 4, 3)
            .await
            .unwrap();
        // Then 10 rows in parts of at least 3 rows on 3 cores: 3 files of 4, 4 and 2 rows.
        let v1 = lake
            .overwrite_in_parts_of("calcul", "grille", cells(100, 10), 3, 3)
            .await
            .unwrap();
        assert_eq!(v1, v0 + 1);
        let table = lake.open("calcul", "grille", None).await.unwrap().unwrap();
        let files = table.snapshot().unwrap().log_data().iter().count();
        assert_eq!(files, 3);
        assert_eq!(rows_at(&lake, None).await, expected(100, 10));
        // The version before is still read as it was.
        assert_eq!(rows_at(&lake, Some(v0)).await, expected(0, 10));
        // Replaced again, in one part (7 rows, parts of at least 8).
        let v2 = lake
            .overwrite_in_parts_of("calcul", "grille", cells(200, 7), 3, 8)
            .await
            .unwrap();
        let table = lake
            .open("calcul", "grille", Some(v2))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(table.snapshot().unwrap().log_data().iter().count(), 1);
        assert_eq!(rows_at(&lake, None).await, expected(200, 7));
        assert_eq!(rows_at(&lake, Some(v1)).await, expected(100, 10));
    }

    #[tokio::test]
    async fn a_batch_of_another_schema_replaces_the_table_through_delta_rs() {
        let dir = tempfile::tempdir().unwrap();
        let lake = Lake::new(dir.path());
        lake.overwrite_in_parts_of("calcul", "grille", cells(0, 10), 2, 1)
            .await
            .unwrap();
        let other = RecordBatch::try_new(
            Arc::new(Schema::new(vec![Field::new(
                "autre",
                DataType::Int64,
                false,
            )])),
            vec![Arc::new(Int64Array::from(vec![1, 2, 3]))],
        )
        .unwrap();
        lake.overwrite_in_parts_of("calcul", "grille", other, 2, 1)
            .await
            .unwrap();
        let table = lake.open("calcul", "grille", None).await.unwrap().unwrap();
        let schema = table.snapshot().unwrap().snapshot().arrow_schema();
        assert_eq!(schema.fields().len(), 1);
        assert_eq!(schema.field(0).name(), "autre");
    }
}
