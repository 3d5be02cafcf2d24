//! The migrations create exactly the columns the Rust declaration lists, in order, on
//! both back ends (the simulator and the ingest rely on the declaration).

use observatoire_tests::{PgDatabase, sqlite_url, temp_dir};
use sqlx::Row;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_migration_matches_the_declared_schema() {
    let dir = temp_dir("schema");
    let url = sqlite_url(dir.path());
    let operational::Source::Sqlite(pool) = operational::Source::create(&url).await.unwrap() else {
        unreachable!()
    };
    for table in operational::TABLES {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "PRAGMA table_info({})",
            table.name
        )))
        .fetch_all(&pool)
        .await
        .unwrap();
        let names: Vec<String> = rows.iter().map(|r| r.get::<String, _>("name")).collect();
        let declared: Vec<_> = table.columns.iter().map(|c| c.name).collect();
        assert_eq!(names, declared, "{}", table.name);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_migration_matches_the_declared_schema() {
    let Some(pg) = PgDatabase::create("schema").await else {
        return;
    };
    let operational::Source::Postgres(pool) = operational::Source::create(&pg.url).await.unwrap()
    else {
        unreachable!()
    };
    for table in operational::TABLES {
        let rows = sqlx::query(
            "SELECT column_name::text, data_type::text FROM information_schema.columns
             WHERE table_schema = 'public' AND table_name = $1 ORDER BY ordinal_position",
        )
        .bind(table.name)
        .fetch_all(&pool)
        .await
        .unwrap();
        let found: Vec<(String, String)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
        let declared: Vec<(String, String)> = table
            .columns
            .iter()
            .map(|c| {
                let ty = match c.ty {
                    operational::ColumnType::Id => "bigint",
                    operational::ColumnType::Count => "integer",
                    operational::ColumnType::Text => "text",
                    operational::ColumnType::Bool => "boolean",
                    operational::ColumnType::Date => "date",
                    operational::ColumnType::Timestamp => "timestamp with time zone",
                };
                (c.name.to_owned(), ty.to_owned())
            })
            .collect();
        assert_eq!(found, declared, "{}", table.name);
    }
    pool.close().await;
    pg.drop_now().await;
}

#[test]
fn the_ingest_reads_exactly_what_the_field_policy_lets_through() {
    for table in operational::TABLES {
        if !ingest::TABLES_READ.contains(&table.name) {
            continue;
        }
        for column in table.columns {
            let policy = anonymize::treatment(table.name, column.name)
                .unwrap_or_else(|| panic!("{}.{} non classée", table.name, column.name));
            assert_eq!(
                ingest::is_selected(table.name, column.name),
                policy != anonymize::Treatment::Drop,
                "{}.{} : {}",
                table.name,
                column.name,
                policy.describe()
            );
        }
    }
}
