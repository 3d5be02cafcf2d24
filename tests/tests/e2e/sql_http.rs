//! Analyst SQL over HTTP on the demo's lake: per-profile zones and territories, the
//! hardening (no DDL, DML, COPY, SET, file tables; limits), the formats, the audit.

use std::collections::BTreeSet;

use dashboards_api::authz::{Profile, Scope};
use observatoire_tests::TestServer;
use serde_json::Value;

use crate::fixture::demo;

async fn post_sql(server: &TestServer, token: &str, sql: &str) -> (u16, Value) {
    let response = reqwest::Client::new()
        .post(format!("http://{}/api/v1/sql", server.addr))
        .bearer_auth(token)
        .json(&serde_json::json!({ "requete": sql }))
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

/// A token for an extra account of the demo's lake.
async fn token_for(login: &str, profile: Profile, scope: &str) -> String {
    let accounts =
        dashboards_api::accounts::Accounts::open(&dashboards_api::accounts_path(&demo().data))
            .await
            .unwrap();
    let _ = accounts
        .add_user(login, profile, &Scope::parse(scope).unwrap(), None)
        .await;
    accounts
        .issue_token(login, "essai", chrono::Duration::days(1))
        .await
        .unwrap()
        .token
}

fn column(body: &Value, name: &str) -> Vec<String> {
    body["lignes"]
        .as_array()
        .unwrap_or_else(|| panic!("{body}"))
        .iter()
        .map(|r| match &r[name] {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_profile_reads_its_zones_and_a_forbidden_table_looks_unknown() {
    let server = &demo().api;
    let analyst = server.token(Profile::Analyste);
    let statistician = server.token(Profile::StatisticienNational);
    let admin = server.token(Profile::AdministrateurNational);

    let (status, body) = post_sql(server, analyst, "SELECT COUNT(*) AS n FROM indicateurs").await;
    assert_eq!(status, 200, "{body}");
    assert!(column(&body, "n")[0].parse::<i64>().unwrap() > 1000);
    let (status, body) = post_sql(server, analyst, "SELECT * FROM analyst.demandes LIMIT 3").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["nombre"], 3);

    // The detail zone: the statistician only. For the analyst, detail.personne answers
    // exactly as a table that does not exist.
    let (status, body) = post_sql(
        server,
        statistician,
        "SELECT COUNT(*) AS n FROM detail.personne",
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let (s1, forbidden) = post_sql(server, analyst, "SELECT * FROM detail.personne").await;
    let (s2, unknown) = post_sql(server, analyst, "SELECT * FROM detail.inexistante").await;
    assert_eq!((s1, s2), (400, 400));
    assert_eq!(forbidden["code"], "TABLE_INCONNUE");
    assert_eq!(
        forbidden["erreur"]
            .as_str()
            .unwrap()
            .replace("detail.personne", "X"),
        unknown["erreur"]
            .as_str()
            .unwrap()
            .replace("detail.inexistante", "X"),
    );
    // The audit table: the national administrator only.
    let (status, body) = post_sql(server, admin, "SELECT COUNT(*) AS n FROM audit.reads").await;
    assert_eq!(status, 200, "{body}");
    for (token, who) in [(analyst, "analyste"), (statistician, "statisticien")] {
        let (s, e) = post_sql(server, token, "SELECT * FROM audit.reads").await;
        assert_eq!(
            (s, e["code"].as_str()),
            (400, Some("TABLE_INCONNUE")),
            "{who}: {e}"
        );
    }
    // In a join or a subquery, the same.
    let (s, e) = post_sql(
        server,
        analyst,
        "SELECT i.valeur FROM indicateurs i WHERE i.territoire IN (SELECT departement FROM detail.personne)",
    )
    .await;
    assert_eq!(
        (s, e["code"].as_str()),
        (400, Some("TABLE_INCONNUE")),
        "{e}"
    );
    // information_schema lists only what may be read.
    let (_, tables) = post_sql(
        server,
        analyst,
        "SELECT table_schema || '.' || table_name AS t FROM information_schema.tables WHERE table_schema <> 'information_schema'",
    )
    .await;
    let listed = column(&tables, "t");
    assert!(
        listed
            .iter()
            .all(|t| !t.starts_with("detail.") && !t.starts_with("audit.")),
        "{listed:?}"
    );
    assert!(listed.iter().any(|t| t == "analyst.demandes"), "{listed:?}");

    // Profiles without SQL are refused.
    for profile in [
        Profile::AdministrateurSiao,
        Profile::AdministrateurDepartemental,
        Profile::AdministrateurRegional,
    ] {
        let (s, e) = post_sql(server, server.token(profile), "SELECT 1").await;
        assert_eq!(s, 403, "{profile}: {e}");
        assert_eq!(e["code"], "ACCES_REFUSE");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_territorial_analyst_gets_only_its_rows_through_any_query() {
    let server = &demo().api;
    let token = token_for("analyste-sql-paca", Profile::Analyste, "R93").await;
    for sql in [
        "SELECT DISTINCT territoire_niveau || ':' || territoire AS t FROM indicateurs",
        "SELECT DISTINCT b.territoire_niveau || ':' || b.territoire AS t FROM indicateurs a JOIN indicateurs b ON a.indicateur = b.indicateur AND a.periode = b.periode",
        "SELECT DISTINCT t FROM (SELECT territoire_niveau || ':' || territoire AS t FROM indicateurs UNION ALL SELECT 'DEPARTEMENT:' || departement FROM analyst.demandes) x",
        "SELECT DISTINCT territoire_niveau || ':' || territoire AS t FROM indicateurs WHERE territoire = '93' OR territoire = '75' OR 1 = 1",
    ] {
        let (status, body) = post_sql(server, &token, sql).await;
        assert_eq!(status, 200, "{sql}: {body}");
        let seen: BTreeSet<String> = column(&body, "t").into_iter().collect();
        let allowed: BTreeSet<String> = ["FR:FR", "REGION:93", "DEPARTEMENT:13", "DEPARTEMENT:R93"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert!(seen.is_subset(&allowed), "{sql}: {seen:?}");
        assert!(seen.contains("DEPARTEMENT:13"), "{sql}: {seen:?}");
    }
    let (_, body) = post_sql(
        server,
        &token,
        "SELECT DISTINCT departement AS d FROM analyst.sejours",
    )
    .await;
    let seen: BTreeSet<String> = column(&body, "d").into_iter().collect();
    assert!(seen.iter().all(|d| d == "13" || d == "R93"), "{seen:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_files_and_settings_are_refused_and_nothing_changes() {
    let server = &demo().api;
    let admin = server.token(Profile::AdministrateurNational);
    let statistician = server.token(Profile::StatisticienNational);
    let target = std::env::temp_dir().join("observatoire-copy-attempt.csv");
    let _ = std::fs::remove_file(&target);
    let (_, before) = post_sql(server, admin, "SELECT COUNT(*) AS n FROM indicateurs").await;
    for sql in [
        "CREATE EXTERNAL TABLE mots_de_passe STORED AS CSV LOCATION '/etc/passwd'".to_owned(),
        format!("COPY (SELECT * FROM indicateurs) TO '{}'", target.display()),
        "DROP TABLE indicateurs".to_owned(),
        "INSERT INTO indicateurs SELECT * FROM indicateurs".to_owned(),
        "DELETE FROM indicateurs".to_owned(),
        "CREATE TABLE t AS SELECT 1".to_owned(),
        "CREATE VIEW v AS SELECT 1".to_owned(),
        "SET datafusion.execution.batch_size = 1".to_owned(),
        "SET datafusion.catalog.information_schema = false".to_owned(),
    ] {
        for token in [admin, statistician] {
            let (status, body) = post_sql(server, token, &sql).await;
            assert_eq!(status, 403, "{sql}: {body}");
            assert_eq!(body["code"], "REQUETE_REFUSEE", "{sql}: {body}");
            assert!(body["erreur"].as_str().unwrap().contains("lectures"));
        }
    }
    assert!(!target.exists(), "COPY wrote a file");
    // Files and URLs are not tables.
    for sql in [
        "SELECT * FROM '/etc/passwd'",
        "SELECT * FROM 'file:///etc/passwd'",
        "SELECT * FROM '../lake/detail/personne'",
    ] {
        let (status, body) = post_sql(server, statistician, sql).await;
        assert_eq!(status, 400, "{sql}: {body}");
        assert_eq!(body["code"], "TABLE_INCONNUE", "{sql}: {body}");
    }
    // Two statements, bad SQL.
    let (status, body) = post_sql(server, admin, "SELECT 1; DROP TABLE indicateurs").await;
    assert!(status == 400 || status == 403, "{body}");
    let (status, body) = post_sql(server, admin, "SELEC 1").await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["erreur"]
            .as_str()
            .unwrap()
            .starts_with("requête SQL invalide")
    );
    let (_, after) = post_sql(server, admin, "SELECT COUNT(*) AS n FROM indicateurs").await;
    assert_eq!(before["lignes"], after["lignes"]);
    // Every one of them is in the audit log with its text.
    let (_, audit) = server
        .get_as(
            Profile::AdministrateurNational,
            "/api/v1/audit?utilisateur=statisticien.demo&chemin=/api/v1/sql&limite=10000",
        )
        .await;
    let texts: Vec<&str> = audit
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|r| r["requete_sql"].as_str())
        .collect();
    assert!(
        texts.iter().any(|t| t.starts_with("CREATE EXTERNAL TABLE")),
        "{texts:?}"
    );
    assert!(texts.iter().any(|t| t.starts_with("COPY")), "{texts:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_runaway_query_is_stopped_and_others_are_served_meanwhile() {
    let data = &demo().data;
    let mut config = dashboards_api::ServerConfig {
        audit_dir: Some(data.join("journal-audit-sql")),
        ..dashboards_api::ServerConfig::new(data)
    };
    config.sql.timeout = std::time::Duration::from_secs(3);
    config.sql.memory_bytes = 64 << 20;
    let server = demo().api.alongside(config);
    let token = server.token(Profile::StatisticienNational).to_owned();
    let addr = server.addr;
    // A query that would run for hours: the time limit stops it.
    let slow = tokio::spawn({
        let token = token.clone();
        async move {
            let response = reqwest::Client::new()
                .post(format!("http://{addr}/api/v1/sql"))
                .bearer_auth(&token)
                .json(&serde_json::json!({
                    "requete": "SELECT COUNT(*) FROM generate_series(1, 1000000000000) t WHERE value % 7 = 3"
                }))
                .send()
                .await
                .unwrap();
            let status = response.status().as_u16();
            (status, response.json::<Value>().await.unwrap())
        }
    });
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let (status, _) = server
        .get_as(
            Profile::AdministrateurSiao,
            "/api/v1/indicateurs/taux_dnp_115/valeurs?territoire=D93&pas=MOIS",
        )
        .await;
    assert_eq!(status, 200);
    assert!(
        !slow.is_finished(),
        "the runaway query still runs while others are served"
    );
    let (status, body) = slow.await.unwrap();
    assert_eq!(status, 408, "stopped by the time limit: {body}");
    assert_eq!(body["code"], "DELAI_DEPASSE");
    // A cross join of the largest tables, sorted: beyond the memory limit.
    let (status, body) = post_sql(
        &server,
        &token,
        "SELECT * FROM detail.demande_personne a CROSS JOIN detail.demande b ORDER BY a.demande_id, b.id",
    )
    .await;
    assert!([408, 422].contains(&status), "{status} {body}");
    // The server still answers SQL afterwards.
    let (status, _) = post_sql(&server, &token, "SELECT 1 AS un").await;
    assert_eq!(status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn results_come_as_json_french_csv_or_arrow() {
    let server = &demo().api;
    let token = server.token(Profile::Analyste);
    let sql = "SELECT territoire, valeur FROM indicateurs WHERE indicateur = 'taux_dnp_115' AND pas = 'ANNEE' AND dimension = '' AND valeur IS NOT NULL ORDER BY territoire LIMIT 3";
    let client = reqwest::Client::new();
    let csv = client
        .post(format!("http://{}/api/v1/sql?format=csv", server.addr))
        .bearer_auth(token)
        .header("content-type", "text/plain")
        .body(sql)
        .send()
        .await
        .unwrap();
    assert_eq!(csv.status(), 200);
    assert!(
        csv.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/csv")
    );
    let bytes = csv.bytes().await.unwrap();
    assert_eq!(&bytes[..3], b"\xEF\xBB\xBF", "UTF-8 BOM");
    let text = String::from_utf8(bytes[3..].to_vec()).unwrap();
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some("territoire;valeur"));
    let first = lines.next().unwrap();
    assert!(
        first.contains(';') && first.contains(','),
        "decimal comma: {first}"
    );
    assert!(!first.split(';').nth(1).unwrap().contains('.'));

    let arrow = client
        .post(format!("http://{}/api/v1/sql", server.addr))
        .bearer_auth(token)
        .header("accept", "application/vnd.apache.arrow.stream")
        .json(&serde_json::json!({ "requete": sql }))
        .send()
        .await
        .unwrap();
    assert_eq!(arrow.status(), 200);
    let bytes = arrow.bytes().await.unwrap();
    let reader =
        arrow::ipc::reader::StreamReader::try_new(std::io::Cursor::new(bytes), None).unwrap();
    let rows: usize = reader.map(|b| b.unwrap().num_rows()).sum();
    assert_eq!(rows, 3);

    let (_, json) = post_sql(server, token, sql).await;
    assert_eq!(json["nombre"], 3);
    assert_eq!(json["colonnes"][0]["nom"], "territoire");
}
