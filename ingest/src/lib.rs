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

enum ColumnBuilder {
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

    fn len(&self) -> usize {
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

fn malformed(
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

struct TableReader {
    table: &'static Table,
    columns: Vec<&'static operational::Column>,
    schema: SchemaRef,
    builders: Vec<ColumnBuilder>,
    batches: Vec<RecordBatch>,
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
        }
    }

    fn flush(&mut self) -> Result<(), IngestError> {
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

    fn push_postgres(&mut self, row: &sqlx::postgres::PgRow) -> Result<(), IngestError> {
        let read = |e| IngestError::Read {
            table: self.table.name,
            source: e,
        };
        let id: Option<i64> = row.try_get(0).map_err(read)?;
        for (i, column) in self.columns.iter().enumerate() {
            let table = self.table.name;
            let err = |expected| malformed(table, column.name, id, expected);
            match &mut self.builders[i] {
                ColumnBuilder::Int(b) => b.append_option(
                    row.try_get::<Option<i64>, _>(i)
                        .map_err(|_| err("valeur entière"))?,
                ),
                ColumnBuilder::Text(b) => b.append_option(
                    row.try_get::<Option<String>, _>(i)
                        .map_err(|_| err("chaîne"))?,
                ),
                ColumnBuilder::Bool(b) => b.append_option(
                    row.try_get::<Option<bool>, _>(i)
                        .map_err(|_| err("booléen"))?,
                ),
                ColumnBuilder::Date(b) => b.append_option(
                    row.try_get::<Option<NaiveDate>, _>(i)
                        .map_err(|_| err("date"))?
                        .map(Date32Type::from_naive_date),
                ),
                ColumnBuilder::Timestamp(b) => b.append_option(
                    row.try_get::<Option<DateTime<Utc>>, _>(i)
                        .map_err(|_| err("date-heure"))?
                        .map(|t| t.timestamp_micros()),
                ),
            }
        }
        Ok(())
    }

    fn select(&self, postgres: bool) -> String {
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
        format!("SELECT {list} FROM {} ORDER BY id", self.table.name)
    }
}

/// Reads one whole table.
pub async fn read_table(source: &Source, name: &str) -> Result<TableExtract, IngestError> {
    let table =
        operational::table(name).ok_or_else(|| IngestError::UnknownTable(name.to_owned()))?;
    let mut reader = TableReader::new(table);
    let read = |source| IngestError::Read {
        table: table.name,
        source,
    };
    match source {
        Source::Sqlite(pool) => {
            let sql = reader.select(false);
            let mut rows = sqlx::query(AssertSqlSafe(sql)).fetch(pool);
            while let Some(row) = rows.try_next().await.map_err(read)? {
                reader.push_sqlite(&row)?;
                if reader.builders[0].len() >= BATCH_ROWS {
                    reader.flush()?;
                }
            }
        }
        Source::Postgres(pool) => {
            let sql = reader.select(true);
            let mut rows = sqlx::query(AssertSqlSafe(sql)).fetch(pool);
            while let Some(row) = rows.try_next().await.map_err(read)? {
                reader.push_postgres(&row)?;
                if reader.builders[0].len() >= BATCH_ROWS {
                    reader.flush()?;
                }
            }
        }
    }
    reader.flush()?;
    Ok(TableExtract {
        name: table.name,
        schema: reader.schema,
        batches: reader.batches,
    })
}

/// Reads every table of [`TABLES_READ`], calling `progress(table, rows)` after each.
pub async fn read_full(
    source: &Source,
    mut progress: impl FnMut(&str, usize),
) -> Result<Extract, IngestError> {
    let mut extract = Extract::default();
    for name in TABLES_READ {
        let table = read_table(source, name).await?;
        progress(name, table.num_rows());
        extract.tables.insert(table.name, table);
    }
    Ok(extract)
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
