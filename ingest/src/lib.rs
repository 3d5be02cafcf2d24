//! Reading the operational source into Arrow batches.
//!
//! A full read of every table the indicators need, from PostgreSQL or SQLite. The
//! SELECT lists are built from the schema declaration minus the columns that must
//! never leave the source: contact details (telephone, email), free text (texte) and
//! workers' names (auteur). Those columns are not read at all, so they cannot reach
//! memory, a log line or the lake. `note` holds nothing but free text and is not read.
//! Birth dates are read: anonymize turns them into age bands at each event and drops
//! them. Last and first names are read into memory only, to derive the keyed linkage
//! key of suspected duplicates (anonymize::linkage), then dropped: they never reach the
//! lake, a log line or an error message.
//!
//! Both back ends produce the same Arrow types: ids and counts Int64, codes Utf8,
//! booleans Boolean, dates Date32, timestamps Timestamp(µs, UTC).

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow::array::{
    ArrayBuilder, ArrayRef, BooleanBuilder, Date32Builder, Int64Builder, StringBuilder,
    TimestampMicrosecondBuilder,
};
use arrow::datatypes::{DataType, Date32Type, Field, Schema, SchemaRef, TimeUnit};
use arrow::record_batch::RecordBatch;
use chrono::{DateTime, NaiveDate, Utc};
use futures::TryStreamExt;
use operational::{ColumnType, Source, Table};
use sqlx::{AssertSqlSafe, Row};

pub mod conditions;
pub mod pgcopy;
pub mod quality;

/// Source columns that are never selected, whatever the table.
pub const NEVER_SELECTED: &[&str] = &["telephone", "email", "texte", "auteur"];

/// Columns read from one table only: a person's names, for the linkage key. Elsewhere
/// (`dispositif.nom`) a column of that name is not read.
const ONLY_FROM: &[(&str, &str)] = &[("nom", "personne"), ("prenom", "personne")];

/// Whether the ingest reads a column of a table.
pub fn is_selected(table: &str, column: &str) -> bool {
    !NEVER_SELECTED.contains(&column) && ONLY_FROM.iter().all(|(c, t)| *c != column || *t == table)
}

/// Tables read by the ingest, in dependency order (offer, households, requests, outcomes).
pub const TABLES_READ: &[&str] = &[
    "entite",
    "dispositif",
    "groupe_places",
    "menage",
    "personne",
    "menage_personne",
    "evaluation",
    "demande",
    "demande_personne",
    "orientation",
    "liste_attente",
    "prise_en_charge",
];

const BATCH_ROWS: usize = 65_536;

#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error(transparent)]
    Source(#[from] operational::SourceError),
    #[error("lecture de la table {table} impossible : {source}")]
    Read {
        table: &'static str,
        source: sqlx::Error,
    },
    #[error(
        "table {table}, ligne d'identifiant {id} : la colonne {column} n'est pas une {expected} valide"
    )]
    Malformed {
        table: &'static str,
        column: &'static str,
        id: String,
        expected: &'static str,
    },
    #[error("construction des lots Arrow de {table} impossible : {source}")]
    Arrow {
        table: &'static str,
        source: arrow::error::ArrowError,
    },
    #[error("table inconnue du schéma source : {0}")]
    UnknownTable(String),
    #[error(
        "la table {0} est absente de la base source : vérifiez que l'URL désigne bien la base opérationnelle de SI SIAO et que son schéma est à jour"
    )]
    MissingTable(&'static str),
    #[error(
        "la colonne {column} est absente de la table {table} de la base source : le schéma de la source ne correspond pas à celui qu'attend l'ingestion"
    )]
    MissingColumn { table: &'static str, column: String },
    #[error("flux COPY binaire de la table {table} illisible : {detail}")]
    Protocol { table: &'static str, detail: String },
    #[error("ouverture de l'instantané de lecture PostgreSQL impossible : {0}")]
    Snapshot(sqlx::Error),
    #[error("un lecteur parallèle s'est arrêté : {0}")]
    Worker(String),
}

/// The columns of a table that the ingest reads.
pub fn selected_columns(table: &Table) -> Vec<&'static operational::Column> {
    table
        .columns
        .iter()
        .filter(|c| is_selected(table.name, c.name))
        .collect()
}

fn arrow_type(ty: ColumnType) -> DataType {
    match ty {
        ColumnType::Id | ColumnType::Count => DataType::Int64,
        ColumnType::Text => DataType::Utf8,
        ColumnType::Bool => DataType::Boolean,
        ColumnType::Date => DataType::Date32,
        ColumnType::Timestamp => DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
    }
}

/// The Arrow schema of a table as read.
pub fn read_schema(table: &Table) -> SchemaRef {
    Arc::new(Schema::new(
        selected_columns(table)
            .iter()
            .map(|c| Field::new(c.name, arrow_type(c.ty), c.name != "id"))
            .collect::<Vec<_>>(),
    ))
}

/// One table read from the source.
#[derive(Debug, Clone)]
pub struct TableExtract {
    pub name: &'static str,
    pub schema: SchemaRef,
    pub batches: Vec<RecordBatch>,
}

impl TableExtract {
    pub fn num_rows(&self) -> usize {
        self.batches.iter().map(RecordBatch::num_rows).sum()
    }
}

/// Every table read in one run.
#[derive(Debug, Clone, Default)]
pub struct Extract {
    pub tables: BTreeMap<&'static str, TableExtract>,
}

impl Extract {
    pub fn table(&self, name: &str) -> Option<&TableExtract> {
        self.tables.get(name)
    }
}

pub(crate) enum ColumnBuilder {
    Int(Int64Builder),
    Text(StringBuilder),
    Bool(BooleanBuilder),
    Date(Date32Builder),
    Timestamp(TimestampMicrosecondBuilder),
}

impl ColumnBuilder {
    fn new(ty: ColumnType) -> Self {
        match ty {
            ColumnType::Id | ColumnType::Count => ColumnBuilder::Int(Int64Builder::new()),
            ColumnType::Text => ColumnBuilder::Text(StringBuilder::new()),
            ColumnType::Bool => ColumnBuilder::Bool(BooleanBuilder::new()),
            ColumnType::Date => ColumnBuilder::Date(Date32Builder::new()),
            ColumnType::Timestamp => {
                ColumnBuilder::Timestamp(TimestampMicrosecondBuilder::new().with_timezone("UTC"))
            }
        }
    }

    fn finish(&mut self) -> ArrayRef {
        match self {
            ColumnBuilder::Int(b) => Arc::new(b.finish()),
            ColumnBuilder::Text(b) => Arc::new(b.finish()),
            ColumnBuilder::Bool(b) => Arc::new(b.finish()),
            ColumnBuilder::Date(b) => Arc::new(b.finish()),
            ColumnBuilder::Timestamp(b) => Arc::new(b.finish()),
        }
    }

    pub(crate) fn len(&self) -> usize {
        match self {
            ColumnBuilder::Int(b) => b.len(),
            ColumnBuilder::Text(b) => b.len(),
            ColumnBuilder::Bool(b) => b.len(),
            ColumnBuilder::Date(b) => b.len(),
            ColumnBuilder::Timestamp(b) => b.len(),
        }
    }
}

/// Parses a SQLite timestamp: RFC 3339 with its offset (`2025-01-10T10:00:00+01:00`);
/// the space-separated form SQLite itself writes is accepted too.
fn parse_timestamp(text: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(text)
        .or_else(|_| DateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S%.f%:z"))
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

/// Tables whose ids identify a person or a household: an error never shows them (the
/// lake only knows their pseudonyms).
const PERSON_TABLES: &[&str] = &[
    "personne",
    "menage",
    "menage_personne",
    "evaluation",
    "demande_personne",
    "note",
];

pub(crate) fn malformed(
    table: &'static str,
    column: &'static str,
    id: Option<i64>,
    expected: &'static str,
) -> IngestError {
    let id = match id {
        _ if PERSON_TABLES.contains(&table) => {
            "masqué (table de personnes ou de ménages)".to_owned()
        }
        Some(v) => v.to_string(),
        None => "?".to_owned(),
    };
    IngestError::Malformed {
        table,
        column,
        id,
        expected,
    }
}

pub(crate) struct TableReader {
    pub(crate) table: &'static Table,
    pub(crate) columns: Vec<&'static operational::Column>,
    schema: SchemaRef,
    pub(crate) builders: Vec<ColumnBuilder>,
    pub(crate) batches: Vec<RecordBatch>,
    flushed_rows: usize,
}

impl TableReader {
    fn new(table: &'static Table) -> Self {
        let columns = selected_columns(table);
        let builders = columns.iter().map(|c| ColumnBuilder::new(c.ty)).collect();
        Self {
            table,
            schema: read_schema(table),
            columns,
            builders,
            batches: Vec::new(),
            flushed_rows: 0,
        }
    }

    /// Rows decoded so far.
    pub(crate) fn rows(&self) -> usize {
        self.flushed_rows + self.builders.first().map_or(0, ColumnBuilder::len)
    }

    pub(crate) fn flush(&mut self) -> Result<(), IngestError> {
        if self.builders.first().is_none_or(|b| b.len() == 0) {
            return Ok(());
        }
        let arrays = self
            .builders
            .iter_mut()
            .map(ColumnBuilder::finish)
            .collect();
        let batch = RecordBatch::try_new(self.schema.clone(), arrays).map_err(|source| {
            IngestError::Arrow {
                table: self.table.name,
                source,
            }
        })?;
        self.flushed_rows += batch.num_rows();
        self.batches.push(batch);
        Ok(())
    }

    fn push_sqlite(&mut self, row: &sqlx::sqlite::SqliteRow) -> Result<(), IngestError> {
        let read = |e| IngestError::Read {
            table: self.table.name,
            source: e,
        };
        let id: Option<i64> = row.try_get(0).map_err(read)?;
        for (i, column) in self.columns.iter().enumerate() {
            let table = self.table.name;
            let err = |expected| malformed(table, column.name, id, expected);
            match (&mut self.builders[i], column.ty) {
                (ColumnBuilder::Int(b), _) => b.append_option(
                    row.try_get::<Option<i64>, _>(i)
                        .map_err(|_| err("valeur entière"))?,
                ),
                (ColumnBuilder::Text(b), _) => b.append_option(
                    row.try_get::<Option<String>, _>(i)
                        .map_err(|_| err("chaîne"))?,
                ),
                (ColumnBuilder::Bool(b), _) => b.append_option(
                    row.try_get::<Option<i64>, _>(i)
                        .map_err(|_| err("valeur booléenne 0/1"))?
                        .map(|v| v != 0),
                ),
                (ColumnBuilder::Date(b), _) => {
                    let text: Option<String> =
                        row.try_get(i).map_err(|_| err("date AAAA-MM-JJ"))?;
                    let days = match text.as_deref() {
                        None => None,
                        Some(t) => Some(Date32Type::from_naive_date(
                            NaiveDate::parse_from_str(t, "%Y-%m-%d")
                                .map_err(|_| err("date AAAA-MM-JJ"))?,
                        )),
                    };
                    b.append_option(days);
                }
                (ColumnBuilder::Timestamp(b), _) => {
                    let text: Option<String> =
                        row.try_get(i).map_err(|_| err("date-heure RFC 3339"))?;
                    let micros = match text.as_deref() {
                        None => None,
                        Some(t) => Some(
                            parse_timestamp(t)
                                .ok_or_else(|| err("date-heure RFC 3339"))?
                                .timestamp_micros(),
                        ),
                    };
                    b.append_option(micros);
                }
            }
        }
        Ok(())
    }

    pub(crate) fn select(&self, postgres: bool, condition: Option<&str>) -> String {
        let list = self
            .columns
            .iter()
            .map(|c| match (postgres, c.ty) {
                // INTEGER counts are read as BIGINT so that both back ends decode alike.
                (true, ColumnType::Id | ColumnType::Count) => format!("{0}::bigint AS {0}", c.name),
                _ => c.name.to_owned(),
            })
            .collect::<Vec<_>>()
            .join(", ");
        let filter = condition.map(|c| format!(" WHERE {c}")).unwrap_or_default();
        format!("SELECT {list} FROM {}{filter} ORDER BY id", self.table.name)
    }
}

/// How a read runs: parallel readers (PostgreSQL) and the size of an id range.
#[derive(Debug, Clone, Copy)]
pub struct ReadOptions {
    /// Connections reading at once, on one snapshot (PostgreSQL only).
    pub workers: usize,
    /// A table with more rows than this is read in id ranges of about this size.
    pub chunk_rows: usize,
}

impl Default for ReadOptions {
    fn default() -> Self {
        Self {
            workers: std::thread::available_parallelism().map_or(2, |n| n.get().clamp(2, 6)),
            chunk_rows: 400_000,
        }
    }
}

/// Progress of a read: `(table, rows just read)`, called from the readers.
pub type Progress = Arc<dyn Fn(&'static str, usize) + Send + Sync>;

/// One table to read, whole or restricted by a condition.
#[derive(Debug, Clone)]
pub struct Request {
    pub table: &'static Table,
    /// A SQL condition built by this crate (from integers and timestamps only).
    pub condition: Option<String>,
}

impl Request {
    pub fn whole(name: &str) -> Result<Self, IngestError> {
        Ok(Self {
            table: operational::table(name)
                .ok_or_else(|| IngestError::UnknownTable(name.to_owned()))?,
            condition: None,
        })
    }
}

/// SQLite's errors for a missing table or column, made clear.
fn sqlite_read_error(table: &'static str, e: sqlx::Error) -> IngestError {
    if let Some(db) = e.as_database_error() {
        let message = db.message();
        if message.starts_with("no such table") {
            return IngestError::MissingTable(table);
        }
        if let Some(column) = message.strip_prefix("no such column: ") {
            return IngestError::MissingColumn {
                table,
                column: column.rsplit('.').next().unwrap_or(column).to_owned(),
            };
        }
    }
    IngestError::Read { table, source: e }
}

/// One instant of the source, held open for every read of a run: a read-only
/// transaction on SQLite; on PostgreSQL a REPEATABLE READ transaction whose snapshot is
/// exported, so that the parallel readers' transactions see exactly the same rows.
pub enum Snapshot {
    Sqlite(sqlx::Transaction<'static, sqlx::Sqlite>),
    Postgres {
        pool: sqlx::PgPool,
        coordinator: sqlx::pool::PoolConnection<sqlx::Postgres>,
        name: String,
    },
}

impl Snapshot {
    /// Opens the run's instant of the source.
    pub async fn open(source: &Source) -> Result<Self, IngestError> {
        match source {
            Source::Sqlite(pool) => Ok(Snapshot::Sqlite(
                pool.begin()
                    .await
                    .map_err(|e| sqlite_read_error("entite", e))?,
            )),
            Source::Postgres(pool) => {
                let mut coordinator = pool.acquire().await.map_err(IngestError::Snapshot)?;
                pgcopy::begin_coordinator(&mut coordinator).await?;
                let name: String = sqlx::query_scalar("SELECT pg_export_snapshot()")
                    .fetch_one(&mut *coordinator)
                    .await
                    .map_err(IngestError::Snapshot)?;
                Ok(Snapshot::Postgres {
                    pool: pool.clone(),
                    coordinator,
                    name,
                })
            }
        }
    }

    /// Whether the source is PostgreSQL (conditions are written per back end).
    pub fn is_postgres(&self) -> bool {
        matches!(self, Snapshot::Postgres { .. })
    }

    /// Reads the requested tables. On PostgreSQL every request (and every id range of
    /// a large table read whole) is a binary COPY, run by `options.workers` connections
    /// on the exported snapshot.
    pub async fn read(
        &mut self,
        requests: &[Request],
        options: &ReadOptions,
        progress: Progress,
    ) -> Result<Extract, IngestError> {
        let mut extract = Extract::default();
        match self {
            Snapshot::Sqlite(tx) => {
                for request in requests {
                    let table = read_sqlite_table_tx(tx, request, &progress).await?;
                    merge_into(&mut extract, table);
                }
            }
            Snapshot::Postgres {
                pool,
                coordinator,
                name,
            } => {
                let mut tasks = Vec::new();
                let mut seq = 0;
                for request in requests {
                    tasks.extend(
                        pgcopy::plan_table(
                            coordinator,
                            request.table,
                            request.condition.as_deref(),
                            options.chunk_rows,
                            &mut seq,
                        )
                        .await?,
                    );
                }
                let results = pgcopy::run_parallel(
                    pool,
                    name,
                    tasks,
                    options.workers,
                    BATCH_ROWS,
                    pgcopy::Mode::Decode,
                    progress,
                )
                .await?;
                for (_, table_name, batches) in results {
                    let table = operational::table(table_name).expect("a planned table");
                    merge_into(
                        &mut extract,
                        TableExtract {
                            name: table.name,
                            schema: read_schema(table),
                            batches,
                        },
                    );
                }
            }
        }
        // A table requested but empty still appears, with its schema.
        for request in requests {
            extract
                .tables
                .entry(request.table.name)
                .or_insert_with(|| TableExtract {
                    name: request.table.name,
                    schema: read_schema(request.table),
                    batches: Vec::new(),
                });
        }
        Ok(extract)
    }

    /// Runs a query built by this crate whose columns are all integers (BIGINT), in
    /// the snapshot; returns its rows.
    pub async fn integers(
        &mut self,
        table: &'static str,
        sql: &str,
    ) -> Result<Vec<Vec<Option<i64>>>, IngestError> {
        use sqlx::Row;
        let rows: Vec<Vec<Option<i64>>> = match self {
            Snapshot::Sqlite(tx) => sqlx::query(AssertSqlSafe(sql.to_owned()))
                .fetch_all(&mut **tx)
                .await
                .map_err(|e| sqlite_read_error(table, e))?
                .iter()
                .map(|r| (0..r.len()).map(|i| r.try_get(i).ok().flatten()).collect())
                .collect(),
            Snapshot::Postgres { coordinator, .. } => sqlx::query(AssertSqlSafe(sql.to_owned()))
                .fetch_all(&mut **coordinator)
                .await
                .map_err(|e| pgcopy::read_error(table, e))?
                .iter()
                .map(|r| (0..r.len()).map(|i| r.try_get(i).ok().flatten()).collect())
                .collect(),
        };
        Ok(rows)
    }

    /// Runs queries built by this crate whose columns are all integers, each on its
    /// table, in the snapshot; on PostgreSQL on `workers` connections side by side (each
    /// is a scan of a whole table: the deletion check's id-range summaries). Results in
    /// the order of `queries`.
    pub async fn integers_each(
        &mut self,
        queries: Vec<(&'static str, String)>,
        workers: usize,
    ) -> Result<Vec<Vec<Vec<Option<i64>>>>, IngestError> {
        let Snapshot::Postgres { pool, name, .. } = self else {
            let mut out = Vec::with_capacity(queries.len());
            for (table, sql) in &queries {
                out.push(self.integers(table, sql).await?);
            }
            return Ok(out);
        };
        let tasks: Vec<(usize, &'static str, String)> = queries
            .into_iter()
            .enumerate()
            .map(|(k, (t, q))| (k, t, q))
            .collect();
        let mut results =
            pgcopy::on_snapshot(pool, name, tasks, workers, |conn, (k, table, sql)| {
                use futures::FutureExt;
                async move {
                    let rows: Vec<Vec<Option<i64>>> = sqlx::query(AssertSqlSafe(sql))
                        .fetch_all(&mut *conn)
                        .await
                        .map_err(|e| pgcopy::read_error(table, e))?
                        .iter()
                        .map(|r| (0..r.len()).map(|i| r.try_get(i).ok().flatten()).collect())
                        .collect();
                    Ok((k, rows))
                }
                .boxed()
            })
            .await?;
        results.sort_by_key(|(k, _)| *k);
        Ok(results.into_iter().map(|(_, rows)| rows).collect())
    }

    /// Ends the read transaction.
    pub async fn close(self) -> Result<(), IngestError> {
        match self {
            Snapshot::Sqlite(tx) => tx
                .commit()
                .await
                .map_err(|e| sqlite_read_error("entite", e)),
            Snapshot::Postgres {
                mut coordinator, ..
            } => sqlx::raw_sql("COMMIT")
                .execute(&mut *coordinator)
                .await
                .map(|_| ())
                .map_err(IngestError::Snapshot),
        }
    }
}

/// Reads the requested tables in one snapshot of the source.
pub async fn read(
    source: &Source,
    requests: &[Request],
    options: &ReadOptions,
    progress: Progress,
) -> Result<Extract, IngestError> {
    let mut snapshot = Snapshot::open(source).await?;
    let extract = snapshot.read(requests, options, progress).await?;
    snapshot.close().await?;
    Ok(extract)
}

async fn read_sqlite_table_tx(
    tx: &mut sqlx::Transaction<'_, sqlx::Sqlite>,
    request: &Request,
    progress: &Progress,
) -> Result<TableExtract, IngestError> {
    let table = request.table;
    let mut reader = TableReader::new(table);
    let sql = reader.select(false, request.condition.as_deref());
    let mut rows = sqlx::query(AssertSqlSafe(sql)).fetch(&mut **tx);
    while let Some(row) = rows
        .try_next()
        .await
        .map_err(|e| sqlite_read_error(table.name, e))?
    {
        reader.push_sqlite(&row)?;
        if reader.builders[0].len() >= BATCH_ROWS {
            progress(table.name, reader.builders[0].len());
            reader.flush()?;
        }
    }
    progress(table.name, reader.builders[0].len());
    reader.flush()?;
    Ok(TableExtract {
        name: table.name,
        schema: reader.schema,
        batches: reader.batches,
    })
}

fn merge_into(extract: &mut Extract, table: TableExtract) {
    match extract.tables.get_mut(table.name) {
        Some(existing) => existing.batches.extend(table.batches),
        None => {
            extract.tables.insert(table.name, table);
        }
    }
}

/// Reads one whole table.
pub async fn read_table(source: &Source, name: &str) -> Result<TableExtract, IngestError> {
    let request = Request::whole(name)?;
    let table = request.table.name;
    let noop: Progress = Arc::new(|_, _| {});
    let mut extract = read(source, &[request], &ReadOptions::default(), noop).await?;
    Ok(extract.tables.remove(table).expect("requested"))
}

/// The limit any PostgreSQL reader can reach: the same binary COPY statements as
/// [`read_full`], run the same way in parallel on one snapshot, their bytes counted and
/// thrown away. Returns the bytes received.
pub async fn copy_full_to_sink(
    pool: &sqlx::PgPool,
    options: &ReadOptions,
) -> Result<u64, IngestError> {
    let mut coordinator = pool.acquire().await.map_err(IngestError::Snapshot)?;
    pgcopy::begin_coordinator(&mut coordinator).await?;
    let snapshot: String = sqlx::query_scalar("SELECT pg_export_snapshot()")
        .fetch_one(&mut *coordinator)
        .await
        .map_err(IngestError::Snapshot)?;
    let mut tasks = Vec::new();
    let mut seq = 0;
    for name in TABLES_READ {
        let table = operational::table(name).expect("a source table");
        tasks.extend(
            pgcopy::plan_table(&mut coordinator, table, None, options.chunk_rows, &mut seq).await?,
        );
    }
    let bytes = Arc::new(std::sync::atomic::AtomicU64::new(0));
    pgcopy::run_parallel(
        pool,
        &snapshot,
        tasks,
        options.workers,
        BATCH_ROWS,
        pgcopy::Mode::Discard(bytes.clone()),
        Arc::new(|_, _| {}),
    )
    .await?;
    sqlx::raw_sql("COMMIT")
        .execute(&mut *coordinator)
        .await
        .map_err(IngestError::Snapshot)?;
    Ok(bytes.load(std::sync::atomic::Ordering::Relaxed))
}

/// The SELECT of a table as the ingest reads it (for the benchmark's peer, which must
/// read exactly the same columns).
pub fn select_statement(table: &'static Table, postgres: bool) -> String {
    TableReader::new(table).select(postgres, None)
}

/// Reads every table of [`TABLES_READ`] whole.
pub async fn read_full(
    source: &Source,
    options: &ReadOptions,
    progress: Progress,
) -> Result<Extract, IngestError> {
    let requests = TABLES_READ
        .iter()
        .map(|name| Request::whole(name))
        .collect::<Result<Vec<_>, _>>()?;
    read(source, &requests, options, progress).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_and_free_text_are_never_selected() {
        for table in operational::TABLES {
            for column in selected_columns(table) {
                assert!(
                    !NEVER_SELECTED.contains(&column.name),
                    "{}.{}",
                    table.name,
                    column.name
                );
            }
        }
        let personne = operational::table("personne").unwrap();
        let names: Vec<_> = selected_columns(personne).iter().map(|c| c.name).collect();
        assert_eq!(
            names,
            [
                "id",
                "nom",
                "prenom",
                "date_naissance",
                "sexe",
                "nationalite",
                "updated_at"
            ]
        );
    }

    #[test]
    fn errors_never_show_a_person_or_household_id() {
        let e = malformed("personne", "date_naissance", Some(4242), "date AAAA-MM-JJ");
        assert!(!e.to_string().contains("4242"), "{e}");
        let e = malformed("demande", "date_demande", Some(4242), "date-heure RFC 3339");
        assert!(e.to_string().contains("4242"), "{e}");
    }

    #[test]
    fn timestamps_keep_their_instant() {
        let t = parse_timestamp("2025-01-31T23:30:00+00:00").unwrap();
        assert_eq!(t, parse_timestamp("2025-02-01T00:30:00+01:00").unwrap());
        assert!(parse_timestamp("31/01/2025").is_none());
    }
}
