//! PostgreSQL read with binary COPY, decoded straight into Arrow builders, in parallel
//! on one exported snapshot.
//!
//! `COPY (SELECT …) TO STDOUT (FORMAT binary)` sends each row as a 16-bit field count
//! followed, per field, by a 32-bit length (−1 for NULL) and the value in network order.
//! Every integer is cast to `bigint` in the SELECT, so the decoder knows five encodings:
//! int8, text (UTF-8 bytes), bool (one byte), date (days since 2000-01-01) and timestamptz
//! (microseconds since 2000-01-01 UTC).
//!
//! A read is a list of tasks (a table, or an id range of a large table). A coordinator
//! transaction exports its snapshot (`pg_export_snapshot()`); each worker opens its own
//! REPEATABLE READ transaction on that snapshot, so every task sees the same instant of
//! the database, as one transaction would.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use arrow::record_batch::RecordBatch;
use futures::future::BoxFuture;
use futures::{FutureExt, StreamExt};
use operational::{ColumnType, Table};
use sqlx::AssertSqlSafe;
use sqlx::postgres::{PgConnection, PgPool};

use crate::{ColumnBuilder, IngestError, TableReader};

/// Days from 1970-01-01 (Arrow's epoch) to 2000-01-01 (PostgreSQL's).
const PG_EPOCH_DAYS: i32 = 10_957;
/// Microseconds from 1970-01-01 to 2000-01-01.
const PG_EPOCH_MICROS: i64 = 946_684_800_000_000;
const SIGNATURE: &[u8; 11] = b"PGCOPY\n\xff\r\n\0";

/// Incremental decoder of one COPY stream into a [`TableReader`].
pub(crate) struct CopyDecoder {
    buf: Vec<u8>,
    pos: usize,
    header_done: bool,
    finished: bool,
}

fn be_i16(b: &[u8]) -> i16 {
    i16::from_be_bytes([b[0], b[1]])
}
fn be_i32(b: &[u8]) -> i32 {
    i32::from_be_bytes([b[0], b[1], b[2], b[3]])
}
fn be_i64(b: &[u8]) -> i64 {
    i64::from_be_bytes(b[..8].try_into().expect("eight bytes"))
}

impl CopyDecoder {
    pub(crate) fn new() -> Self {
        Self {
            buf: Vec::with_capacity(1 << 20),
            pos: 0,
            header_done: false,
            finished: false,
        }
    }

    /// Feeds one chunk of the stream; decodes every complete row it ends.
    pub(crate) fn feed(
        &mut self,
        chunk: &[u8],
        reader: &mut TableReader,
        batch_rows: usize,
    ) -> Result<(), IngestError> {
        if self.pos > 0 {
            self.buf.drain(..self.pos);
            self.pos = 0;
        }
        self.buf.extend_from_slice(chunk);
        let table = reader.table.name;
        let protocol = |what: &str| IngestError::Protocol {
            table,
            detail: what.to_owned(),
        };
        if !self.header_done {
            if self.buf.len() < 19 {
                return Ok(());
            }
            if &self.buf[..11] != SIGNATURE {
                return Err(protocol("signature COPY binaire absente"));
            }
            let extension = be_i32(&self.buf[15..19]);
            let start = 19 + usize::try_from(extension).map_err(|_| protocol("en-tête"))?;
            if self.buf.len() < start {
                return Ok(());
            }
            self.pos = start;
            self.header_done = true;
        }
        let ncols = reader.columns.len();
        while !self.finished {
            let rest = &self.buf[self.pos..];
            if rest.len() < 2 {
                break;
            }
            let count = be_i16(rest);
            if count == -1 {
                self.finished = true;
                self.pos += 2;
                break;
            }
            if count as usize != ncols {
                return Err(protocol(&format!(
                    "{count} champs reçus pour {ncols} colonnes"
                )));
            }
            // Check that the whole row is there before touching the builders.
            let mut p = 2;
            let mut complete = true;
            for _ in 0..ncols {
                if rest.len() < p + 4 {
                    complete = false;
                    break;
                }
                let len = be_i32(&rest[p..]);
                p += 4;
                if len > 0 {
                    p += len as usize;
                    if rest.len() < p {
                        complete = false;
                        break;
                    }
                }
            }
            if !complete {
                break;
            }
            let mut p = 2;
            for i in 0..ncols {
                let len = be_i32(&rest[p..]);
                p += 4;
                let value = (len >= 0).then(|| &rest[p..p + len as usize]);
                if len > 0 {
                    p += len as usize;
                }
                append(reader, i, value)?;
            }
            self.pos += p;
            if reader.builders[0].len() >= batch_rows {
                reader.flush()?;
            }
        }
        Ok(())
    }

    pub(crate) fn is_finished(&self) -> bool {
        self.finished
    }
}

fn append(reader: &mut TableReader, i: usize, value: Option<&[u8]>) -> Result<(), IngestError> {
    let column = reader.columns[i];
    let table = reader.table.name;
    let wrong = |expected| IngestError::Protocol {
        table,
        detail: format!("valeur de {} illisible (attendu : {expected})", column.name),
    };
    match (&mut reader.builders[i], value) {
        (ColumnBuilder::Int(b), None) => b.append_null(),
        (ColumnBuilder::Int(b), Some(v)) if v.len() == 8 => b.append_value(be_i64(v)),
        (ColumnBuilder::Text(b), None) => b.append_null(),
        (ColumnBuilder::Text(b), Some(v)) => {
            b.append_value(std::str::from_utf8(v).map_err(|_| wrong("UTF-8"))?)
        }
        (ColumnBuilder::Bool(b), None) => b.append_null(),
        (ColumnBuilder::Bool(b), Some(v)) if v.len() == 1 => b.append_value(v[0] != 0),
        (ColumnBuilder::Date(b), None) => b.append_null(),
        (ColumnBuilder::Date(b), Some(v)) if v.len() == 4 => {
            let days = be_i32(v);
            if days == i32::MAX || days == i32::MIN {
                return Err(crate::malformed(table, column.name, None, "date finie"));
            }
            b.append_value(days + PG_EPOCH_DAYS)
        }
        (ColumnBuilder::Timestamp(b), None) => b.append_null(),
        (ColumnBuilder::Timestamp(b), Some(v)) if v.len() == 8 => {
            let micros = be_i64(v);
            if micros == i64::MAX || micros == i64::MIN {
                return Err(crate::malformed(
                    table,
                    column.name,
                    None,
                    "date-heure finie",
                ));
            }
            b.append_value(micros + PG_EPOCH_MICROS)
        }
        (_, Some(_)) => {
            return Err(wrong(match column.ty {
                ColumnType::Id | ColumnType::Count => "int8",
                ColumnType::Text => "texte",
                ColumnType::Bool => "booléen",
                ColumnType::Date => "date",
                ColumnType::Timestamp => "timestamptz",
            }));
        }
    }
    Ok(())
}

/// The COPY statement of a task.
pub(crate) fn copy_statement(reader: &TableReader, condition: Option<&str>) -> String {
    let select = reader.select(true, condition);
    format!("COPY ({select}) TO STDOUT (FORMAT binary)")
}

/// One unit of work: a table, restricted by a condition built by this crate.
#[derive(Debug, Clone)]
pub struct Task {
    pub table: &'static Table,
    /// SQL condition (generated from integers and timestamps only, never from input).
    pub condition: Option<String>,
    /// Position of the task in the plan: batches are reassembled in this order.
    pub seq: usize,
}

/// Maps a PostgreSQL error to the clear error of a missing table or column.
pub(crate) fn read_error(table: &'static str, e: sqlx::Error) -> IngestError {
    if let Some(db) = e.as_database_error() {
        match db.code().as_deref() {
            Some("42P01") => return IngestError::MissingTable(table),
            Some("42703") => {
                let column = db
                    .message()
                    .split('"')
                    .nth(1)
                    .unwrap_or("?")
                    .rsplit('.')
                    .next()
                    .unwrap_or("?")
                    .to_owned();
                return IngestError::MissingColumn { table, column };
            }
            _ => {}
        }
    }
    IngestError::Read { table, source: e }
}

pub(crate) async fn begin_on_snapshot(
    conn: &mut PgConnection,
    snapshot: &str,
) -> Result<(), sqlx::Error> {
    sqlx::raw_sql("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        .execute(&mut *conn)
        .await?;
    // The snapshot name comes from pg_export_snapshot() (hex digits and dashes).
    let name: String = snapshot
        .chars()
        .filter(|c| c.is_ascii_hexdigit() || *c == '-')
        .collect();
    sqlx::raw_sql(AssertSqlSafe(format!("SET TRANSACTION SNAPSHOT '{name}'")))
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// What the workers do with the bytes: decode them, or only count them (the raw COPY
/// measured by the ingest benchmark, the fastest any reader could be).
#[derive(Clone)]
pub(crate) enum Mode {
    Decode,
    Discard(Arc<std::sync::atomic::AtomicU64>),
}

/// Runs one task on a connection, returning its batches.
pub(crate) async fn run_task(
    conn: &mut PgConnection,
    task: &Task,
    batch_rows: usize,
    mode: &Mode,
    progress: &(dyn Fn(&'static str, usize) + Send + Sync),
) -> Result<Vec<RecordBatch>, IngestError> {
    let mut reader = TableReader::new(task.table);
    let statement = copy_statement(&reader, task.condition.as_deref());
    let name = task.table.name;
    let mut stream = conn
        .copy_out_raw(&statement)
        .await
        .map_err(|e| read_error(name, e))?;
    if let Mode::Discard(bytes) = mode {
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| read_error(name, e))?;
            bytes.fetch_add(chunk.len() as u64, std::sync::atomic::Ordering::Relaxed);
        }
        return Ok(Vec::new());
    }
    let mut decoder = CopyDecoder::new();
    let mut reported = 0;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| read_error(name, e))?;
        decoder.feed(&chunk, &mut reader, batch_rows)?;
        let rows = reader.rows();
        if rows - reported >= 16_384 {
            progress(name, rows - reported);
            reported = rows;
        }
    }
    drop(stream);
    if !decoder.is_finished() {
        return Err(IngestError::Protocol {
            table: name,
            detail: "flux COPY interrompu avant sa fin".to_owned(),
        });
    }
    let rows = reader.rows();
    progress(name, rows - reported);
    reader.flush()?;
    Ok(reader.batches)
}

/// Results of a parallel read, in task order.
pub(crate) type TaskResults = Vec<(usize, &'static str, Vec<RecordBatch>)>;

/// Runs the tasks on `workers` connections sharing an exported snapshot (the exporting
/// transaction must stay open until they are done).
pub(crate) async fn run_parallel(
    pool: &PgPool,
    snapshot: &str,
    tasks: Vec<Task>,
    workers: usize,
    batch_rows: usize,
    mode: Mode,
    progress: Arc<dyn Fn(&'static str, usize) + Send + Sync>,
) -> Result<TaskResults, IngestError> {
    let mut results = on_snapshot(pool, snapshot, tasks, workers, move |conn, task: Task| {
        let (mode, progress) = (mode.clone(), progress.clone());
        async move {
            let batches = run_task(conn, &task, batch_rows, &mode, progress.as_ref()).await?;
            Ok((task.seq, task.table.name, batches))
        }
        .boxed()
    })
    .await?;
    results.sort_by_key(|(seq, _, _)| *seq);
    Ok(results)
}

/// Runs `work` on each task, on `workers` connections whose transactions share an
/// exported snapshot (the exporting transaction must stay open until they are done);
/// results in the order the tasks were done. The first error stops the other workers
/// from starting new tasks.
pub(crate) async fn on_snapshot<T, R, F>(
    pool: &PgPool,
    snapshot: &str,
    tasks: Vec<T>,
    workers: usize,
    work: F,
) -> Result<Vec<R>, IngestError>
where
    T: Send + 'static,
    R: Send + 'static,
    F: for<'c> Fn(&'c mut PgConnection, T) -> BoxFuture<'c, Result<R, IngestError>>
        + Send
        + Sync
        + 'static,
{
    let queue = Arc::new(Mutex::new(tasks.into_iter().collect::<VecDeque<_>>()));
    let work = Arc::new(work);
    let mut handles = Vec::new();
    for _ in 0..workers.max(1) {
        let pool = pool.clone();
        let queue = queue.clone();
        let snapshot = snapshot.to_owned();
        let work = work.clone();
        handles.push(tokio::spawn(async move {
            let mut done = Vec::new();
            let mut conn = pool.acquire().await.map_err(IngestError::Snapshot)?;
            let mut started = false;
            loop {
                let Some(task) = queue.lock().expect("queue lock").pop_front() else {
                    break;
                };
                if !started {
                    begin_on_snapshot(&mut conn, &snapshot)
                        .await
                        .map_err(IngestError::Snapshot)?;
                    started = true;
                }
                match work(&mut conn, task).await {
                    Ok(r) => done.push(r),
                    Err(e) => {
                        // A COPY cut short leaves the connection unusable: close it.
                        let _ = conn.close().await;
                        return Err(e);
                    }
                }
            }
            if started {
                sqlx::raw_sql("COMMIT")
                    .execute(&mut *conn)
                    .await
                    .map_err(IngestError::Snapshot)?;
            }
            Ok::<_, IngestError>(done)
        }));
    }
    let mut results = Vec::new();
    let mut first_error = None;
    for handle in handles {
        match handle.await {
            Ok(Ok(done)) => results.extend(done),
            Ok(Err(e)) => {
                first_error.get_or_insert(e);
                // No other worker should start new work.
                queue.lock().expect("queue lock").clear();
            }
            Err(join) => {
                first_error.get_or_insert(IngestError::Worker(join.to_string()));
            }
        }
    }
    match first_error {
        Some(e) => Err(e),
        None => Ok(results),
    }
}

/// Splits a table into id ranges of about `chunk_rows` rows, from its id bounds and
/// PostgreSQL's row estimate, both read in the coordinator's transaction.
pub(crate) async fn plan_table(
    coordinator: &mut PgConnection,
    table: &'static Table,
    condition: Option<&str>,
    chunk_rows: usize,
    seq: &mut usize,
) -> Result<Vec<Task>, IngestError> {
    let mut next = |condition: Option<String>| {
        *seq += 1;
        Task {
            table,
            condition,
            seq: *seq,
        }
    };
    if condition.is_some() {
        return Ok(vec![next(condition.map(str::to_owned))]);
    }
    let sql = format!(
        "SELECT min(id)::bigint, max(id)::bigint, \
         (SELECT greatest(reltuples, 0)::bigint FROM pg_class WHERE oid = '{0}'::regclass) FROM {0}",
        table.name
    );
    let (lo, hi, estimate): (Option<i64>, Option<i64>, Option<i64>) =
        sqlx::query_as(AssertSqlSafe(sql))
            .fetch_one(&mut *coordinator)
            .await
            .map_err(|e| read_error(table.name, e))?;
    let (Some(lo), Some(hi)) = (lo, hi) else {
        return Ok(vec![next(None)]);
    };
    let estimate = estimate.unwrap_or(0).max(0) as usize;
    let parts = estimate.div_ceil(chunk_rows.max(1)).clamp(1, 256);
    if parts == 1 {
        return Ok(vec![next(None)]);
    }
    let span = (hi - lo) as i128 + 1;
    let mut tasks = Vec::with_capacity(parts);
    for k in 0..parts {
        let a = lo as i128 + span * k as i128 / parts as i128;
        let b = lo as i128 + span * (k + 1) as i128 / parts as i128;
        let condition = if k + 1 == parts {
            format!("id >= {a}")
        } else if k == 0 {
            format!("id < {b}")
        } else {
            format!("id >= {a} AND id < {b}")
        };
        tasks.push(next(Some(condition)));
    }
    Ok(tasks)
}

/// Begins the coordinator transaction.
pub(crate) async fn begin_coordinator(conn: &mut PgConnection) -> Result<(), IngestError> {
    sqlx::raw_sql("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        .execute(&mut *conn)
        .await
        .map_err(IngestError::Snapshot)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Array, AsArray, Int64Array};
    use arrow::datatypes::{Date32Type, TimestampMicrosecondType};

    fn field(out: &mut Vec<u8>, value: Option<&[u8]>) {
        match value {
            None => out.extend_from_slice(&(-1i32).to_be_bytes()),
            Some(v) => {
                out.extend_from_slice(&(v.len() as i32).to_be_bytes());
                out.extend_from_slice(v);
            }
        }
    }

    /// A binary COPY stream of `groupe_places` rows, written by hand from the format.
    fn stream(rows: &[(i64, Option<i64>, bool, i32)]) -> Vec<u8> {
        let mut out = SIGNATURE.to_vec();
        out.extend_from_slice(&0i32.to_be_bytes());
        out.extend_from_slice(&0i32.to_be_bytes());
        for (id, places, temporary, day) in rows {
            out.extend_from_slice(&7i16.to_be_bytes());
            field(&mut out, Some(&id.to_be_bytes()));
            field(&mut out, Some(&10i64.to_be_bytes()));
            field(
                &mut out,
                places.map(|p| p.to_be_bytes()).as_ref().map(|b| &b[..]),
            );
            field(&mut out, Some(&[*temporary as u8]));
            field(&mut out, Some(&day.to_be_bytes()));
            field(&mut out, None);
            // 2000-01-01T00:00:01Z
            field(&mut out, Some(&1_000_000i64.to_be_bytes()));
        }
        out.extend_from_slice(&(-1i16).to_be_bytes());
        out
    }

    #[test]
    fn rows_split_across_chunks_decode_whole() {
        let table = operational::table("groupe_places").unwrap();
        let bytes = stream(&[(1, Some(12), true, 0), (2, None, false, 9_132)]);
        // Every split point, including inside the header and inside a value.
        for cut in 1..bytes.len() {
            let mut reader = TableReader::new(table);
            let mut decoder = CopyDecoder::new();
            decoder.feed(&bytes[..cut], &mut reader, 1000).unwrap();
            decoder.feed(&bytes[cut..], &mut reader, 1000).unwrap();
            assert!(decoder.is_finished(), "cut {cut}");
            reader.flush().unwrap();
            let batch = &reader.batches[0];
            assert_eq!(batch.num_rows(), 2, "cut {cut}");
            let ids: &Int64Array = batch.column(0).as_primitive();
            assert_eq!(ids.values(), &[1, 2]);
            let places: &Int64Array = batch.column(2).as_primitive();
            assert_eq!(places.value(0), 12);
            assert!(places.is_null(1));
            assert!(batch.column(3).as_boolean().value(0));
            let debut = batch.column(4).as_primitive::<Date32Type>();
            // Day 0 of PostgreSQL is 2000-01-01; day 9 132 (25 × 365 + 7 leap days) is 2025-01-01.
            assert_eq!(
                Date32Type::to_naive_date_opt(debut.value(0))
                    .unwrap()
                    .to_string(),
                "2000-01-01"
            );
            assert_eq!(
                Date32Type::to_naive_date_opt(debut.value(1))
                    .unwrap()
                    .to_string(),
                "2025-01-01"
            );
            assert!(batch.column(5).is_null(0));
            let ts = batch.column(6).as_primitive::<TimestampMicrosecondType>();
            assert_eq!(ts.value(0), 946_684_801_000_000);
        }
    }

    #[test]
    fn a_row_of_the_wrong_width_is_refused_with_its_table() {
        let table = operational::table("entite").unwrap();
        let bytes = stream(&[(1, Some(12), true, 0)]);
        let mut reader = TableReader::new(table);
        let e = CopyDecoder::new()
            .feed(&bytes, &mut reader, 1000)
            .unwrap_err();
        assert!(e.to_string().contains("entite"), "{e}");
        assert!(e.to_string().contains("7 champs"), "{e}");
    }
}
