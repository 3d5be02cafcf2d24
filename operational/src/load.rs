//! Bulk writing of simulated rows: PostgreSQL through `COPY … FROM STDIN (FORMAT
//! binary)`, SQLite through large multi-row INSERTs, one transaction per batch (a
//! département), so that a failed batch leaves the database as it was before it.
//!
//! Also: the record of what was simulated into a database (for `simulate --continue`)
//! and the free-space check made before writing.

use std::path::{Path, PathBuf};

use chrono::{DateTime, FixedOffset, NaiveDate, SecondsFormat};
use sqlx::{AssertSqlSafe, QueryBuilder};

use crate::schema::{ColumnType, Table};
use crate::simulator::{Dataset, SimulationConfig};
use crate::source::{Source, SourceError, Value};

/// The table where the simulator records what it wrote (not part of SI SIAO's schema:
/// the warehouse never reads it).
pub const SIMULATION_TABLE: &str = "simulation_observatoire";

/// Rows to insert and ids to delete, applied in one transaction.
#[derive(Debug, Default)]
pub struct Batch {
    pub deletions: Vec<(&'static Table, Vec<i64>)>,
    pub insertions: Dataset,
}

impl Batch {
    pub fn rows(&self) -> usize {
        self.insertions.total_rows()
            + self
                .deletions
                .iter()
                .map(|(_, ids)| ids.len())
                .sum::<usize>()
    }
}

/// PostgreSQL's binary format counts from 2000-01-01.
const PG_EPOCH_DAYS: i64 = 10_957; // 2000-01-01 in days since 1970-01-01

fn pg_epoch() -> NaiveDate {
    NaiveDate::from_ymd_opt(2000, 1, 1).expect("valid date")
}

/// Every row has one value per column of its table.
pub(crate) fn check_shape(table: &'static Table, rows: &[Vec<Value>]) -> Result<(), SourceError> {
    match rows.iter().find(|r| r.len() != table.columns.len()) {
        Some(row) => Err(SourceError::RowShape {
            table: table.name,
            found: row.len(),
            expected: table.columns.len(),
        }),
        None => Ok(()),
    }
}

fn pg_binary(
    table: &'static Table,
    rows: &[Vec<Value>],
    out: &mut Vec<u8>,
) -> Result<(), SourceError> {
    check_shape(table, rows)?;
    for row in rows {
        out.extend_from_slice(&(row.len() as i16).to_be_bytes());
        for (value, column) in row.iter().zip(table.columns) {
            let field = |out: &mut Vec<u8>, bytes: &[u8]| {
                out.extend_from_slice(&(bytes.len() as i32).to_be_bytes());
                out.extend_from_slice(bytes);
            };
            match (value, column.ty) {
                (Value::Null, _) => out.extend_from_slice(&(-1i32).to_be_bytes()),
                (Value::Int(v), ColumnType::Count) => field(out, &(*v as i32).to_be_bytes()),
                (Value::Int(v), ColumnType::Id) => field(out, &v.to_be_bytes()),
                (Value::Text(v), ColumnType::Text) => field(out, v.as_bytes()),
                (Value::Bool(v), ColumnType::Bool) => field(out, &[u8::from(*v)]),
                (Value::Date(v), ColumnType::Date) => {
                    let days = (*v - pg_epoch()).num_days();
                    field(out, &(days as i32).to_be_bytes())
                }
                (Value::Timestamp(v), ColumnType::Timestamp) => {
                    let micros = v.timestamp_micros() - PG_EPOCH_DAYS * 86_400_000_000;
                    field(out, &micros.to_be_bytes())
                }
                _ => {
                    return Err(SourceError::ValueType {
                        table: table.name,
                        column: column.name,
                    });
                }
            }
        }
    }
    Ok(())
}

impl Source {
    /// Applies a batch in one transaction: deletions first, then insertions.
    pub async fn write_batch(&self, batch: &Batch) -> Result<(), SourceError> {
        match self {
            Source::Postgres(pool) => {
                let mut tx = pool.begin().await?;
                for (table, ids) in &batch.deletions {
                    for chunk in ids.chunks(10_000) {
                        sqlx::query(AssertSqlSafe(format!(
                            "DELETE FROM {} WHERE id = ANY($1)",
                            table.name
                        )))
                        .bind(chunk)
                        .execute(&mut *tx)
                        .await
                        .map_err(|source| SourceError::Write {
                            table: table.name,
                            source,
                        })?;
                    }
                }
                for (table, rows) in batch.insertions.in_schema_order() {
                    if rows.is_empty() {
                        continue;
                    }
                    let write_err = |source| SourceError::Write {
                        table: table.name,
                        source,
                    };
                    let columns: Vec<&str> = table.columns.iter().map(|c| c.name).collect();
                    let statement = format!(
                        "COPY {} ({}) FROM STDIN (FORMAT binary)",
                        table.name,
                        columns.join(", ")
                    );
                    let mut copy = tx.copy_in_raw(&statement).await.map_err(write_err)?;
                    let mut buf = Vec::with_capacity(1 << 23);
                    buf.extend_from_slice(b"PGCOPY\n\xff\r\n\0");
                    buf.extend_from_slice(&0i32.to_be_bytes());
                    buf.extend_from_slice(&0i32.to_be_bytes());
                    for chunk in rows.chunks(20_000) {
                        pg_binary(table, chunk, &mut buf)?;
                        copy.send(std::mem::take(&mut buf))
                            .await
                            .map_err(write_err)?;
                    }
                    buf.extend_from_slice(&(-1i16).to_be_bytes());
                    copy.send(buf).await.map_err(write_err)?;
                    copy.finish().await.map_err(write_err)?;
                }
                tx.commit().await?;
            }
            Source::Sqlite(pool) => {
                let mut tx = pool.begin().await?;
                for (table, ids) in &batch.deletions {
                    for chunk in ids.chunks(500) {
                        let mut qb = QueryBuilder::<sqlx::Sqlite>::new(format!(
                            "DELETE FROM {} WHERE id IN (",
                            table.name
                        ));
                        let mut sep = qb.separated(", ");
                        for id in chunk {
                            sep.push_bind(*id);
                        }
                        qb.push(")");
                        qb.build().execute(&mut *tx).await.map_err(|source| {
                            SourceError::Write {
                                table: table.name,
                                source,
                            }
                        })?;
                    }
                }
                for (table, rows) in batch.insertions.in_schema_order() {
                    sqlite_insert(&mut tx, table, rows).await?;
                }
                tx.commit().await?;
            }
        }
        Ok(())
    }

    /// Before a bulk load into an empty PostgreSQL database: drops the primary-key
    /// indexes, rebuilt by [`Source::end_bulk_load`] (faster than maintaining them row
    /// by row). Nothing to do on SQLite.
    pub async fn begin_bulk_load(&self) -> Result<(), SourceError> {
        if let Source::Postgres(pool) = self {
            for table in crate::TABLES {
                sqlx::query(AssertSqlSafe(format!(
                    "ALTER TABLE {0} DROP CONSTRAINT IF EXISTS {0}_pkey",
                    table.name
                )))
                .execute(pool)
                .await?;
            }
        }
        Ok(())
    }

    /// Rebuilds the primary keys dropped by [`Source::begin_bulk_load`] and refreshes
    /// the planner's statistics.
    pub async fn end_bulk_load(&self) -> Result<(), SourceError> {
        if let Source::Postgres(pool) = self {
            for table in crate::TABLES {
                let exists: bool = sqlx::query_scalar(
                    "SELECT EXISTS (SELECT 1 FROM pg_constraint WHERE conname = $1)",
                )
                .bind(format!("{}_pkey", table.name))
                .fetch_one(pool)
                .await?;
                if !exists {
                    sqlx::query(AssertSqlSafe(format!(
                        "ALTER TABLE {} ADD PRIMARY KEY (id)",
                        table.name
                    )))
                    .execute(pool)
                    .await?;
                }
                sqlx::query(AssertSqlSafe(format!("ANALYZE {}", table.name)))
                    .execute(pool)
                    .await?;
            }
        }
        Ok(())
    }

    async fn ensure_simulation_table(&self) -> Result<(), SourceError> {
        let sql = format!(
            "CREATE TABLE IF NOT EXISTS {SIMULATION_TABLE} (id INTEGER PRIMARY KEY, \
             graine TEXT, departements TEXT, date_debut TEXT, date_fin TEXT, echelle TEXT, \
             defauts TEXT)"
        );
        self.execute(&sql).await
    }

    async fn execute(&self, sql: &str) -> Result<(), SourceError> {
        match self {
            Source::Postgres(pool) => {
                sqlx::query(AssertSqlSafe(sql.to_owned()))
                    .execute(pool)
                    .await?;
            }
            Source::Sqlite(pool) => {
                sqlx::query(AssertSqlSafe(sql.to_owned()))
                    .execute(pool)
                    .await?;
            }
        }
        Ok(())
    }

    /// Records what was simulated into this database.
    pub async fn save_simulation(&self, config: &SimulationConfig) -> Result<(), SourceError> {
        self.ensure_simulation_table().await?;
        self.execute(&format!("DELETE FROM {SIMULATION_TABLE}"))
            .await?;
        let values = [
            config.seed.to_string(),
            config.departements.join(","),
            config.from.to_string(),
            config.to.to_string(),
            config.scale.to_string(),
            config.defects.to_string(),
        ];
        let sql = format!(
            "INSERT INTO {SIMULATION_TABLE} (id, graine, departements, date_debut, date_fin, echelle, defauts) VALUES (1, {})",
            values
                .iter()
                .map(|v| format!("'{}'", v.replace('\'', "''")))
                .collect::<Vec<_>>()
                .join(", ")
        );
        self.execute(&sql).await
    }

    /// What was simulated into this database, if the simulator wrote it.
    pub async fn simulation(&self) -> Result<Option<SimulationConfig>, SourceError> {
        self.ensure_simulation_table().await?;
        let sql = format!(
            "SELECT graine, departements, date_debut, date_fin, echelle, defauts FROM {SIMULATION_TABLE} WHERE id = 1"
        );
        type Row = (String, String, String, String, String, String);
        let row: Option<Row> = match self {
            Source::Postgres(pool) => {
                sqlx::query_as(AssertSqlSafe(sql))
                    .fetch_optional(pool)
                    .await?
            }
            Source::Sqlite(pool) => {
                sqlx::query_as(AssertSqlSafe(sql))
                    .fetch_optional(pool)
                    .await?
            }
        };
        let Some((seed, deps, from, to, scale, defects)) = row else {
            return Ok(None);
        };
        let bad = || SourceError::SimulationRecord;
        Ok(Some(SimulationConfig {
            seed: seed.parse().map_err(|_| bad())?,
            departements: deps.split(',').map(str::to_owned).collect(),
            from: from.parse().map_err(|_| bad())?,
            to: to.parse().map_err(|_| bad())?,
            scale: scale.parse().map_err(|_| bad())?,
            defects: defects.parse().map_err(|_| bad())?,
        }))
    }

    /// Forgets what was simulated (the database is about to be emptied).
    pub async fn clear_simulation(&self) -> Result<(), SourceError> {
        self.ensure_simulation_table().await?;
        self.execute(&format!("DELETE FROM {SIMULATION_TABLE}"))
            .await
    }

    /// The folder holding the database's files, when it is on this machine: the SQLite
    /// file's folder, or PostgreSQL's data directory if the server is local and lets
    /// us read where it is.
    pub async fn storage_folder(&self, url: &str) -> Option<PathBuf> {
        match self {
            Source::Sqlite(_) => {
                let path = url
                    .trim_start_matches("sqlite://")
                    .trim_start_matches("sqlite:");
                let path = path.split('?').next().unwrap_or(path);
                let parent = Path::new(path).parent()?;
                Some(if parent.as_os_str().is_empty() {
                    PathBuf::from(".")
                } else {
                    parent.to_path_buf()
                })
            }
            Source::Postgres(pool) => {
                let dir: Option<String> = sqlx::query_scalar(
                    "SELECT setting FROM pg_settings WHERE name = 'data_directory'",
                )
                .fetch_optional(pool)
                .await
                .ok()
                .flatten();
                let dir = PathBuf::from(dir?);
                dir.exists().then_some(dir)
            }
        }
    }
}

/// Bytes free for an unprivileged writer on the file system holding `path`.
pub fn available_space(path: &Path) -> Option<u64> {
    let stat = rustix::fs::statvfs(path).ok()?;
    Some(stat.f_bavail.saturating_mul(stat.f_frsize))
}

/// `INSERT INTO table (columns) ` and the rows per statement that keep under the
/// 32 766 bound parameters both back ends accept.
pub(crate) fn insert_head(table: &Table) -> (String, usize) {
    let columns: Vec<&str> = table.columns.iter().map(|c| c.name).collect();
    (
        format!("INSERT INTO {} ({}) ", table.name, columns.join(", ")),
        (30_000 / table.columns.len()).max(1),
    )
}

/// Multi-row INSERTs into SQLite inside a transaction.
pub(crate) async fn sqlite_insert(
    tx: &mut sqlx::Transaction<'_, sqlx::Sqlite>,
    table: &'static Table,
    rows: &[Vec<Value>],
) -> Result<(), SourceError> {
    check_shape(table, rows)?;
    let write_err = |source| SourceError::Write {
        table: table.name,
        source,
    };
    let (head, per_statement) = insert_head(table);
    for chunk in rows.chunks(per_statement) {
        let mut qb = QueryBuilder::<sqlx::Sqlite>::new(head.clone());
        qb.push_values(chunk, |mut b, row| {
            for value in row {
                match value {
                    Value::Null => b.push_bind(Option::<String>::None),
                    Value::Int(v) => b.push_bind(*v),
                    Value::Text(v) => b.push_bind(v.clone()),
                    Value::Bool(v) => b.push_bind(i64::from(*v)),
                    Value::Date(v) => b.push_bind(v.format("%Y-%m-%d").to_string()),
                    Value::Timestamp(v) => b.push_bind(sqlite_timestamp(v)),
                };
            }
        });
        qb.build().execute(&mut **tx).await.map_err(write_err)?;
    }
    Ok(())
}

/// RFC 3339 with its offset, as SOURCE_SCHEMA.md says SQLite stores timestamps.
pub fn sqlite_timestamp(v: &DateTime<FixedOffset>) -> String {
    v.to_rfc3339_opts(SecondsFormat::Secs, false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binary_copy_encodes_dates_and_timestamps_from_2000() {
        let table = crate::table("menage").unwrap();
        let d = NaiveDate::from_ymd_opt(2000, 1, 2).unwrap();
        let ts = DateTime::parse_from_rfc3339("2000-01-01T01:00:00+01:00").unwrap();
        let mut out = Vec::new();
        pg_binary(
            table,
            &[vec![
                Value::Int(7),
                Value::Text("93".into()),
                Value::Date(d),
                Value::Timestamp(ts),
            ]],
            &mut out,
        )
        .unwrap();
        // 4 fields; id 8 bytes; "93"; date = day 1; timestamp = 0 µs (midnight UTC).
        let mut expected = vec![0, 4];
        expected.extend_from_slice(&8i32.to_be_bytes());
        expected.extend_from_slice(&7i64.to_be_bytes());
        expected.extend_from_slice(&2i32.to_be_bytes());
        expected.extend_from_slice(b"93");
        expected.extend_from_slice(&4i32.to_be_bytes());
        expected.extend_from_slice(&1i32.to_be_bytes());
        expected.extend_from_slice(&8i32.to_be_bytes());
        expected.extend_from_slice(&0i64.to_be_bytes());
        assert_eq!(out, expected);
    }
}
