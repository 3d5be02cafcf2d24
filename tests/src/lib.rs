//! Helpers of the end-to-end tests: scenario files, fresh databases, pipeline runs.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use chrono::{DateTime, NaiveDate};
use dashboards_api::StatRow;
use operational::{ColumnType, Source, Value};

/// A golden scenario: source rows per table and the expected published values.
#[derive(Debug)]
pub struct Scenario {
    pub description: String,
    pub tables: BTreeMap<&'static str, Vec<Vec<Value>>>,
    pub expected: Vec<Expected>,
    /// Rows the run must find breaking each listed rule of SOURCE_SCHEMA.md.
    pub rules: BTreeMap<String, u64>,
    /// SQL over the lake and the text its first value must read.
    pub queries: Vec<(String, String)>,
}

/// One expected published value.
#[derive(Debug, Clone)]
pub struct Expected {
    pub indicateur: String,
    pub territoire: String,
    pub periode: String,
    /// `""` for the total, else a dimension of INDICATORS.md with its `modalite`.
    pub dimension: String,
    pub modalite: String,
    /// `None`: the value must be null.
    pub valeur: Option<f64>,
    pub numerateur: Option<f64>,
    pub denominateur: Option<f64>,
}

fn number(v: &toml::Value) -> Option<f64> {
    match v {
        toml::Value::Integer(i) => Some(*i as f64),
        toml::Value::Float(f) => Some(*f),
        _ => None,
    }
}

/// Reads a scenario file (see `tests/scenarios/`).
pub fn load_scenario(path: &Path) -> Result<Scenario, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let doc: toml::Table = text
        .parse()
        .map_err(|e| format!("{}: {e}", path.display()))?;
    let mut tables = BTreeMap::new();
    let mut expected = Vec::new();
    let mut description = String::new();
    let mut rules = BTreeMap::new();
    let mut queries = Vec::new();
    for (key, value) in &doc {
        if key == "description" {
            description = value.as_str().unwrap_or_default().to_owned();
            continue;
        }
        if key == "requete" {
            for item in value.as_array().ok_or("requete : liste attendue")? {
                let t = item.as_table().ok_or("requete : table attendue")?;
                let s = |k: &str| {
                    t.get(k)
                        .and_then(|v| v.as_str())
                        .map(str::to_owned)
                        .ok_or(format!("requete : {k} manquant"))
                };
                queries.push((s("sql")?, s("attendu")?));
            }
            continue;
        }
        if key == "regles" {
            let t = value.as_table().ok_or("[regles] : table attendue")?;
            for (rule, n) in t {
                let n = n
                    .as_integer()
                    .ok_or_else(|| format!("regles.{rule} : entier attendu"))?;
                rules.insert(rule.clone(), n as u64);
            }
            continue;
        }
        let items = value
            .as_array()
            .ok_or_else(|| format!("[[{key}]] attendu"))?;
        if key == "attendu" {
            for item in items {
                let t = item.as_table().ok_or("attendu : table attendue")?;
                for k in t.keys() {
                    if ![
                        "indicateur",
                        "territoire",
                        "periode",
                        "dimension",
                        "modalite",
                        "valeur",
                        "numerateur",
                        "denominateur",
                    ]
                    .contains(&k.as_str())
                    {
                        return Err(format!("attendu : clé inconnue {k}"));
                    }
                }
                let s = |k: &str| {
                    t.get(k)
                        .and_then(|v| v.as_str())
                        .map(str::to_owned)
                        .ok_or(format!("attendu : {k} manquant"))
                };
                let valeur = match t.get("valeur") {
                    Some(toml::Value::String(s)) if s == "null" => None,
                    Some(v) => Some(number(v).ok_or("attendu : valeur numérique ou \"null\"")?),
                    None => return Err("attendu : valeur manquante".into()),
                };
                expected.push(Expected {
                    indicateur: s("indicateur")?,
                    territoire: s("territoire")?,
                    periode: s("periode")?,
                    dimension: s("dimension").unwrap_or_default(),
                    modalite: s("modalite").unwrap_or_default(),
                    valeur,
                    numerateur: t.get("numerateur").and_then(number),
                    denominateur: t.get("denominateur").and_then(number),
                });
            }
            continue;
        }
        let table =
            operational::table(key).ok_or_else(|| format!("table source inconnue : {key}"))?;
        let mut rows = Vec::new();
        for item in items {
            let t = item
                .as_table()
                .ok_or_else(|| format!("{key} : table attendue"))?;
            for k in t.keys() {
                if table.column(k).is_none() {
                    return Err(format!("{key} : colonne inconnue {k}"));
                }
            }
            let mut row = Vec::new();
            for column in table.columns {
                let value = match t.get(column.name) {
                    None => Value::Null,
                    Some(v) => match (column.ty, v) {
                        (ColumnType::Id | ColumnType::Count, toml::Value::Integer(i)) => {
                            Value::Int(*i)
                        }
                        (ColumnType::Text, toml::Value::String(s)) => Value::Text(s.clone()),
                        (ColumnType::Bool, toml::Value::Boolean(b)) => Value::Bool(*b),
                        (ColumnType::Date, toml::Value::String(s)) => Value::Date(
                            NaiveDate::parse_from_str(s, "%Y-%m-%d")
                                .map_err(|_| format!("{key}.{} : date {s}", column.name))?,
                        ),
                        (ColumnType::Timestamp, toml::Value::String(s)) => Value::Timestamp(
                            DateTime::parse_from_rfc3339(s)
                                .map_err(|_| format!("{key}.{} : horodatage {s}", column.name))?,
                        ),
                        _ => return Err(format!("{key}.{} : type inattendu", column.name)),
                    },
                };
                row.push(value);
            }
            rows.push(row);
        }
        tables.insert(table.name, rows);
    }
    Ok(Scenario {
        description,
        tables,
        expected,
        rules,
        queries,
    })
}

/// Writes rows into a source (tables in schema order).
pub async fn write_rows(source: &Source, tables: &BTreeMap<&'static str, Vec<Vec<Value>>>) {
    for table in operational::TABLES {
        if let Some(rows) = tables.get(table.name) {
            source.insert(table, rows).await.expect("rows written");
        }
    }
}

/// A fresh temporary folder under the system's temporary directory.
pub fn temp_dir(label: &str) -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix(&format!("observatoire-{label}-"))
        .tempdir()
        .expect("temporary folder")
}

/// The SQLite source URL of a data folder.
pub fn sqlite_url(dir: &Path) -> String {
    format!("sqlite://{}", dir.join("source.db").display())
}

/// A fixed key, so that tests never create key files in the environment.
pub const TEST_KEY_HEX: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";

/// Writes the test key into a data folder's key file.
pub fn install_test_key(data: &Path) {
    let path = observatoire::key_path(data);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    if !path.exists() {
        std::fs::write(&path, TEST_KEY_HEX).unwrap();
    }
}

/// Ingests and computes: the whole pipeline after the source.
pub async fn ingest_and_compute(url: &str, data: &Path, threshold: i64) -> indicators::Release {
    install_test_key(data);
    observatoire::ingest(url, data, |_| {})
        .await
        .expect("ingest");
    observatoire::compute(data, threshold, 11, |_| {})
        .await
        .expect("compute")
}

/// Every row of the statistical base.
pub async fn all_stats(data: &Path) -> Vec<StatRow> {
    let lake = warehouse::Lake::new(data);
    let ctx = warehouse::new_session();
    assert!(
        lake.register_stats(&ctx).await.unwrap(),
        "stats tables present"
    );
    let batches = ctx
        .sql("SELECT * FROM indicateurs")
        .await
        .unwrap()
        .collect()
        .await
        .unwrap();
    batches
        .iter()
        .flat_map(dashboards_api::values::rows_of)
        .collect()
}

/// The PostgreSQL server of the tests.
pub fn pg_url() -> String {
    std::env::var("OBSERVATOIRE_TEST_PG_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned())
}

/// A fresh PostgreSQL database for one test, dropped with the guard.
pub struct PgDatabase {
    pub url: String,
    admin: String,
    name: String,
}

impl PgDatabase {
    /// Creates it; `None` when PostgreSQL is unreachable outside CI (in CI: panics).
    pub async fn create(label: &str) -> Option<Self> {
        use sqlx::Connection;
        let admin = pg_url();
        let mut conn = match sqlx::PgConnection::connect(&admin).await {
            Ok(c) => c,
            Err(e) => {
                if std::env::var("CI").is_ok_and(|v| v == "true") {
                    panic!("PostgreSQL injoignable en CI ({admin}) : {e}");
                }
                eprintln!("PostgreSQL injoignable ({e}) : test ignoré hors CI");
                return None;
            }
        };
        let name = format!(
            "observatoire_{label}_{}_{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
                % 1_000_000_000
        );
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut conn)
            .await
            .expect("create database");
        let base = admin
            .rsplit_once('/')
            .map(|(b, _)| b.to_owned())
            .unwrap_or(admin.clone());
        let base = base.split('?').next().unwrap().to_owned();
        Some(Self {
            url: format!("{base}/{name}"),
            admin,
            name,
        })
    }

    pub async fn drop_now(self) {
        use sqlx::Connection;
        if let Ok(mut conn) = sqlx::PgConnection::connect(&self.admin).await {
            let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.name
            )))
            .execute(&mut conn)
            .await;
        }
    }
}

/// The queries that read the source's personal text values (SQLite): names, contact
/// details, free texts and workers' names — what no lake file, log line or error may hold.
pub const PERSONAL_TEXT_SQL: &[&str] = &[
    "SELECT nom FROM personne",
    "SELECT prenom FROM personne",
    "SELECT nom || ' ' || prenom FROM personne",
    "SELECT telephone FROM personne WHERE telephone IS NOT NULL",
    "SELECT email FROM personne WHERE email IS NOT NULL",
    "SELECT texte FROM evaluation",
    "SELECT auteur FROM evaluation",
    "SELECT texte FROM note",
    "SELECT auteur FROM note",
];

/// Simulates `departements` from `from` to `to` (excluded, `AAAA-MM-JJ`) at `scale` into
/// an empty source, with the default seed and no defects.
pub async fn simulate_small(url: &str, departements: &[&str], from: &str, to: &str, scale: f64) {
    let day = |s: &str| NaiveDate::parse_from_str(s, "%Y-%m-%d").expect("AAAA-MM-JJ");
    let config = operational::simulator::SimulationConfig {
        departements: departements.iter().map(|d| (*d).to_owned()).collect(),
        from: day(from),
        to: day(to),
        scale,
        ..Default::default()
    };
    observatoire::simulate(url, &config, false, |_, _| {})
        .await
        .expect("simulation");
}

/// Every file below a folder, recursively (a lake's data files, commits, manifests).
pub fn files_below(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).expect("readable folder") {
            let path = entry.expect("readable entry").path();
            if path.is_dir() {
                stack.push(path);
            } else {
                out.push(path);
            }
        }
    }
    out.sort();
    out
}

/// The repository's root folder.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_owned()
}

/// A column's values as strings (Utf8, Utf8View or any castable type).
pub fn strings(column: &arrow::array::ArrayRef) -> Vec<Option<String>> {
    use arrow::array::AsArray;
    let c =
        arrow::compute::cast(column, &arrow::datatypes::DataType::Utf8).expect("castable to text");
    c.as_string::<i32>()
        .iter()
        .map(|v| v.map(str::to_owned))
        .collect()
}

/// A column's values as 64-bit integers.
pub fn ints(column: &arrow::array::ArrayRef) -> Vec<Option<i64>> {
    use arrow::array::AsArray;
    let c = arrow::compute::cast(column, &arrow::datatypes::DataType::Int64)
        .expect("castable to integer");
    c.as_primitive::<arrow::datatypes::Int64Type>()
        .iter()
        .collect()
}

/// The first column of a read-only SQL query over a data folder's lake, as text.
pub async fn sql_strings(data: &Path, query: &str) -> Vec<String> {
    let batches = observatoire::sql(data, query)
        .await
        .unwrap_or_else(|e| panic!("{query} : {e}"));
    batches
        .iter()
        .flat_map(|b| strings(b.column(0)))
        .flatten()
        .collect()
}

/// Every record batch of one Parquet file (a lake's data file or checkpoint).
pub fn parquet_batches(path: &Path) -> Vec<arrow::record_batch::RecordBatch> {
    let file = std::fs::File::open(path).expect("readable Parquet file");
    parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
        .expect("Parquet file")
        .build()
        .expect("Parquet reader")
        .map(|batch| batch.expect("Parquet batch"))
        .collect()
}

/// Every text value of every Parquet file below a folder (data files and checkpoints).
pub fn parquet_strings(dir: &Path) -> Vec<String> {
    use arrow::array::AsArray;
    let mut out = Vec::new();
    for path in files_below(dir) {
        if !path.to_string_lossy().ends_with(".parquet") {
            continue;
        }
        for batch in parquet_batches(&path) {
            for column in batch.columns() {
                if let Ok(c) = arrow::compute::cast(column, &arrow::datatypes::DataType::Utf8) {
                    out.extend(c.as_string::<i32>().iter().flatten().map(str::to_owned));
                }
            }
        }
    }
    out
}

/// Every detail table of the latest complete run, as sorted text rows (pseudonyms
/// included), checked against the manifest's row counts.
pub async fn detail_rows(data: &Path) -> BTreeMap<String, Vec<String>> {
    let lake = warehouse::Lake::new(data);
    let (ctx, manifest) = lake.detail_session().await.expect("readable lake");
    let mut out = BTreeMap::new();
    for table in manifest.tables.keys() {
        let batches = ctx
            .sql(&format!("SELECT * FROM {table}"))
            .await
            .unwrap()
            .collect()
            .await
            .unwrap();
        let mut rows = Vec::new();
        for b in &batches {
            let columns: Vec<Vec<Option<String>>> = b.columns().iter().map(strings).collect();
            for r in 0..b.num_rows() {
                rows.push(format!(
                    "{:?}",
                    columns.iter().map(|c| c[r].clone()).collect::<Vec<_>>()
                ));
            }
        }
        rows.sort();
        assert_eq!(rows.len() as u64, manifest.rows[table], "{table}");
        out.insert(table.clone(), rows);
    }
    out
}

/// The quarantine of the latest complete run: (table, pseudonymised key, rule).
pub async fn quarantine_keys(data: &Path) -> std::collections::BTreeSet<(String, String, String)> {
    let lake = warehouse::Lake::new(data);
    let Some(table) = lake.quality_table("quarantine").await.unwrap() else {
        return Default::default();
    };
    let ctx = warehouse::new_session();
    lake.register(&ctx, "q", &table).await.unwrap();
    let batches = ctx
        .sql("SELECT table_source, cle, regle FROM q")
        .await
        .unwrap()
        .collect()
        .await
        .unwrap();
    let mut out = std::collections::BTreeSet::new();
    for b in &batches {
        let (t, c, r) = (
            strings(b.column(0)),
            strings(b.column(1)),
            strings(b.column(2)),
        );
        for i in 0..b.num_rows() {
            out.insert((
                t[i].clone().unwrap(),
                c[i].clone().unwrap(),
                r[i].clone().unwrap(),
            ));
        }
    }
    out
}

/// A server over a data folder, with the demo's accounts (one per profile).
pub struct TestServer {
    pub addr: std::net::SocketAddr,
    pub accounts: Vec<dashboards_api::demo::DemoAccount>,
}

impl TestServer {
    /// Starts a server on a thread of its own (its own runtime, so that it outlives the
    /// test's), with the demo's accounts scoped to `departement`.
    pub fn start(data: &Path, departement: &str, config: dashboards_api::ServerConfig) -> Self {
        Self::start_on(data, departement, config, "127.0.0.1:0".parse().unwrap())
    }

    /// The same, on a given address.
    pub fn start_on(
        data: &Path,
        departement: &str,
        config: dashboards_api::ServerConfig,
        addr: std::net::SocketAddr,
    ) -> Self {
        let (data, departement) = (data.to_owned(), departement.to_owned());
        Self::launch(config, addr, move || {
            let runtime = tokio::runtime::Runtime::new().expect("runtime");
            runtime
                .block_on(dashboards_api::demo::create_demo_accounts(
                    &data,
                    &departement,
                ))
                .expect("demo accounts")
        })
    }

    /// Another server over the same data folder and accounts (their tokens stay valid);
    /// give it an audit folder of its own.
    pub fn alongside(&self, config: dashboards_api::ServerConfig) -> Self {
        self.alongside_on(config, "127.0.0.1:0".parse().unwrap())
    }

    /// The same, on a given address.
    pub fn alongside_on(
        &self,
        config: dashboards_api::ServerConfig,
        addr: std::net::SocketAddr,
    ) -> Self {
        let accounts = self.accounts.clone();
        Self::launch(config, addr, move || accounts)
    }

    fn launch(
        config: dashboards_api::ServerConfig,
        addr: std::net::SocketAddr,
        accounts: impl FnOnce() -> Vec<dashboards_api::demo::DemoAccount> + Send + 'static,
    ) -> Self {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let accounts = accounts();
            let runtime = tokio::runtime::Runtime::new().expect("runtime");
            runtime.block_on(async move {
                let result = dashboards_api::serve(config, addr, {
                    let tx = tx.clone();
                    let accounts = accounts.clone();
                    move |addr| tx.send(Ok((addr, accounts))).unwrap()
                })
                .await;
                if let Err(e) = result {
                    let _ = tx.send(Err(e.to_string()));
                }
            });
        });
        let (addr, accounts) = rx.recv().expect("server thread").expect("server started");
        Self { addr, accounts }
    }

    /// The token of the demo account of a profile.
    pub fn token(&self, profile: dashboards_api::authz::Profile) -> &str {
        &self
            .accounts
            .iter()
            .find(|a| a.profile == profile)
            .expect("one demo account per profile")
            .token
    }

    /// GET with a profile's token: (status, body as JSON or as text in a JSON string).
    pub async fn get_as(
        &self,
        profile: dashboards_api::authz::Profile,
        path: &str,
    ) -> (u16, serde_json::Value) {
        let response = reqwest::Client::new()
            .get(format!("http://{}{path}", self.addr))
            .bearer_auth(self.token(profile))
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        let text = response.text().await.unwrap();
        let body = serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text));
        (status, body)
    }
}
