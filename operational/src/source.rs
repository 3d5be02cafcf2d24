//! Connections to the operational database, PostgreSQL or SQLite, chosen by URL.
//!
//! Both back ends hold the same tables (the migrations of `migrations/`), and the same
//! rows written through [`Source::insert`] read back identically: dates as `DATE` /
//! `YYYY-MM-DD` text, timestamps as `TIMESTAMPTZ` / RFC 3339 text with their offset.

use std::borrow::Cow;
use std::str::FromStr;

use chrono::{DateTime, FixedOffset, NaiveDate};
use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::postgres::{PgPool, PgPoolOptions};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{AssertSqlSafe, QueryBuilder, SqlSafeStr};

use crate::schema::{ColumnType, Table};

#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("URL de source non reconnue « {0} » : attendu sqlite://CHEMIN ou postgres://…")]
    UnsupportedUrl(String),
    #[error("la base SQLite « {0} » n'existe pas")]
    MissingSqliteFile(String),
    #[error("connexion à la base opérationnelle impossible ({url}) : {source}")]
    Connect { url: String, source: sqlx::Error },
    #[error(
        "la base opérationnelle ({url}) refuse l'authentification : vérifiez l'utilisateur et le mot de passe de l'URL"
    )]
    Authentication { url: String },
    #[error("la base {url} n'existe pas sur ce serveur PostgreSQL")]
    MissingDatabase { url: String },
    #[error(
        "serveur PostgreSQL injoignable ({url}) : vérifiez l'hôte, le port et que le serveur tourne ({reason})"
    )]
    Unreachable { url: String, reason: String },
    #[error("migration du schéma opérationnel impossible : {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("écriture dans la table {table} impossible : {source}")]
    Write {
        table: &'static str,
        source: sqlx::Error,
    },
    #[error("ligne de {table} mal formée : {found} valeurs pour {expected} colonnes")]
    RowShape {
        table: &'static str,
        found: usize,
        expected: usize,
    },
    #[error("valeur de type inattendu pour la colonne {table}.{column}")]
    ValueType {
        table: &'static str,
        column: &'static str,
    },
    #[error(
        "la table {} de cette base est illisible : relancez « simulate --replace »",
        crate::load::SIMULATION_TABLE
    )]
    SimulationRecord,
    #[error("requête sur la base opérationnelle impossible : {0}")]
    Query(#[from] sqlx::Error),
}

/// One value of a source row, typed by its column's [`ColumnType`].
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Int(i64),
    Text(String),
    Bool(bool),
    Date(NaiveDate),
    Timestamp(DateTime<FixedOffset>),
}

impl From<i64> for Value {
    fn from(v: i64) -> Self {
        Value::Int(v)
    }
}
impl From<&str> for Value {
    fn from(v: &str) -> Self {
        Value::Text(v.to_owned())
    }
}
impl From<String> for Value {
    fn from(v: String) -> Self {
        Value::Text(v)
    }
}
impl From<bool> for Value {
    fn from(v: bool) -> Self {
        Value::Bool(v)
    }
}
impl From<NaiveDate> for Value {
    fn from(v: NaiveDate) -> Self {
        Value::Date(v)
    }
}
impl From<DateTime<FixedOffset>> for Value {
    fn from(v: DateTime<FixedOffset>) -> Self {
        Value::Timestamp(v)
    }
}
impl<T: Into<Value>> From<Option<T>> for Value {
    fn from(v: Option<T>) -> Self {
        v.map_or(Value::Null, Into::into)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceKind {
    Sqlite,
    Postgres,
}

/// A pool on the operational database.
#[derive(Debug, Clone)]
pub enum Source {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

fn migrator(kind: SourceKind) -> Migrator {
    let schema = match kind {
        SourceKind::Sqlite => include_str!("../migrations/sqlite/0001_schema.sql"),
        SourceKind::Postgres => include_str!("../migrations/postgres/0001_schema.sql"),
    };
    // The same statements on both back ends.
    let index = include_str!("../migrations/common/0002_index.sql");
    let migration = |version, name, sql: &'static str| {
        Migration::new(
            version,
            Cow::Borrowed(name),
            MigrationType::Simple,
            sql.into_sql_str(),
            false,
        )
    };
    Migrator::with_migrations(vec![
        migration(1, "schema", schema),
        migration(2, "index", index),
    ])
}

/// The kind of database a URL names.
pub fn kind_of(url: &str) -> Result<SourceKind, SourceError> {
    if url.starts_with("sqlite:") {
        Ok(SourceKind::Sqlite)
    } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Ok(SourceKind::Postgres)
    } else {
        Err(SourceError::UnsupportedUrl(url.to_owned()))
    }
}

/// The URL with any password hidden, for messages.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let userinfo = &url[scheme + 3..at];
            match userinfo.find(':') {
                Some(colon) => format!(
                    "{}{}:***{}",
                    &url[..scheme + 3],
                    &userinfo[..colon],
                    &url[at..]
                ),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

impl Source {
    /// Opens an existing operational database (the SQLite file must exist).
    pub async fn open(url: &str) -> Result<Self, SourceError> {
        Self::connect(url, false).await
    }

    /// Opens the database, creating the SQLite file if needed, and applies the migrations.
    pub async fn create(url: &str) -> Result<Self, SourceError> {
        let source = Self::connect(url, true).await?;
        source.migrate().await?;
        Ok(source)
    }

    async fn connect(url: &str, create: bool) -> Result<Self, SourceError> {
        let connect_err = |source: sqlx::Error| {
            let url = redact_url(url);
            if let Some(db) = source.as_database_error() {
                match db.code().as_deref() {
                    Some("28P01" | "28000") => return SourceError::Authentication { url },
                    Some("3D000") => return SourceError::MissingDatabase { url },
                    _ => {}
                }
            }
            if let sqlx::Error::Io(e) = &source {
                return SourceError::Unreachable {
                    url,
                    reason: e.kind().to_string(),
                };
            }
            SourceError::Connect { url, source }
        };
        match kind_of(url)? {
            SourceKind::Sqlite => {
                let options = SqliteConnectOptions::from_str(url)
                    .map_err(connect_err)?
                    .create_if_missing(create)
                    .journal_mode(SqliteJournalMode::Wal)
                    .synchronous(SqliteSynchronous::Normal);
                if !create && !options.get_filename().exists() {
                    return Err(SourceError::MissingSqliteFile(
                        options.get_filename().display().to_string(),
                    ));
                }
                let pool = SqlitePoolOptions::new()
                    .max_connections(4)
                    .connect_with(options)
                    .await
                    .map_err(connect_err)?;
                Ok(Source::Sqlite(pool))
            }
            SourceKind::Postgres => {
                // One connection first: the pool would retry an unreachable server until
                // its timeout and then say only that it timed out.
                {
                    use sqlx::Connection;
                    let conn = sqlx::PgConnection::connect(url)
                        .await
                        .map_err(connect_err)?;
                    let _ = conn.close().await;
                }
                let pool = PgPoolOptions::new()
                    .max_connections(8)
                    .connect(url)
                    .await
                    .map_err(connect_err)?;
                Ok(Source::Postgres(pool))
            }
        }
    }

    /// Closes the pool's connections (so that a test database can be dropped).
    pub async fn close(&self) {
        match self {
            Source::Sqlite(pool) => pool.close().await,
            Source::Postgres(pool) => pool.close().await,
        }
    }

    pub fn kind(&self) -> SourceKind {
        match self {
            Source::Sqlite(_) => SourceKind::Sqlite,
            Source::Postgres(_) => SourceKind::Postgres,
        }
    }

    /// Applies the schema migrations (idempotent).
    pub async fn migrate(&self) -> Result<(), SourceError> {
        match self {
            Source::Sqlite(pool) => migrator(SourceKind::Sqlite).run(pool).await?,
            Source::Postgres(pool) => migrator(SourceKind::Postgres).run(pool).await?,
        }
        Ok(())
    }

    /// Empties every table of the schema (used before a fresh simulation).
    pub async fn truncate_all(&self) -> Result<(), SourceError> {
        for table in crate::TABLES {
            let sql = AssertSqlSafe(format!("DELETE FROM {}", table.name));
            match self {
                Source::Sqlite(pool) => {
                    sqlx::query(sql).execute(pool).await?;
                }
                Source::Postgres(pool) => {
                    sqlx::query(sql).execute(pool).await?;
                }
            }
        }
        Ok(())
    }

    /// Inserts rows (values in the table's column order) in one transaction.
    pub async fn insert(
        &self,
        table: &'static Table,
        rows: &[Vec<Value>],
    ) -> Result<(), SourceError> {
        crate::load::check_shape(table, rows)?;
        let write_err = |source| SourceError::Write {
            table: table.name,
            source,
        };
        let (head, per_statement) = crate::load::insert_head(table);
        match self {
            Source::Sqlite(pool) => {
                let mut tx = pool.begin().await.map_err(write_err)?;
                crate::load::sqlite_insert(&mut tx, table, rows).await?;
                tx.commit().await.map_err(write_err)?;
            }
            Source::Postgres(pool) => {
                let mut tx = pool.begin().await.map_err(write_err)?;
                for chunk in rows.chunks(per_statement) {
                    let mut qb = QueryBuilder::<sqlx::Postgres>::new(head.clone());
                    qb.push_values(chunk, |mut b, row| {
                        for (value, column) in row.iter().zip(table.columns) {
                            match (value, column.ty) {
                                (Value::Null, ColumnType::Id) => b.push_bind(Option::<i64>::None),
                                (Value::Null, ColumnType::Count) => {
                                    b.push_bind(Option::<i32>::None)
                                }
                                (Value::Null, ColumnType::Text) => {
                                    b.push_bind(Option::<String>::None)
                                }
                                (Value::Null, ColumnType::Bool) => {
                                    b.push_bind(Option::<bool>::None)
                                }
                                (Value::Null, ColumnType::Date) => {
                                    b.push_bind(Option::<NaiveDate>::None)
                                }
                                (Value::Null, ColumnType::Timestamp) => {
                                    b.push_bind(Option::<DateTime<FixedOffset>>::None)
                                }
                                (Value::Int(v), ColumnType::Count) => b.push_bind(*v as i32),
                                (Value::Int(v), _) => b.push_bind(*v),
                                (Value::Text(v), _) => b.push_bind(v.clone()),
                                (Value::Bool(v), _) => b.push_bind(*v),
                                (Value::Date(v), _) => b.push_bind(*v),
                                (Value::Timestamp(v), _) => b.push_bind(*v),
                            };
                        }
                    });
                    qb.build().execute(&mut *tx).await.map_err(write_err)?;
                }
                tx.commit().await.map_err(write_err)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_passwords_in_urls() {
        assert_eq!(
            redact_url("postgres://u:secret@h:5432/db"),
            "postgres://u:***@h:5432/db"
        );
        assert_eq!(
            redact_url("postgres://postgres@127.0.0.1/test"),
            "postgres://postgres@127.0.0.1/test"
        );
        assert_eq!(redact_url("sqlite://x.db"), "sqlite://x.db");
    }
}
