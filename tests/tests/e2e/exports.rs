//! Exports of the values route: CSV for French Excel, XLSX opened with a spreadsheet
//! reader, Parquet read back; the same rows as the JSON route, the user's columns, the
//! caller's scope.

use dashboards_api::StatRow;
use dashboards_api::authz::Profile;

use crate::fixture::demo;

const BASE: &str =
    "/api/v1/indicateurs/taux_dnp_115/valeurs?territoire=D93&pas=MOIS&du=2025-01-01&au=2026-01-01";

async fn fetch(profile: Profile, path: &str) -> (u16, String, Vec<u8>) {
    let server = &demo().api;
    let response = reqwest::Client::new()
        .get(format!("http://{}{path}", server.addr))
        .bearer_auth(server.token(profile))
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let kind = response
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    (status, kind, response.bytes().await.unwrap().to_vec())
}

async fn json_rows() -> Vec<StatRow> {
    let (status, _, body) = fetch(Profile::AdministrateurDepartemental, BASE).await;
    assert_eq!(status, 200);
    serde_json::from_slice(&body).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn csv_export_is_for_french_excel_with_the_chosen_columns() {
    let rows = json_rows().await;
    let (status, kind, body) = fetch(
        Profile::AdministrateurDepartemental,
        &format!("{BASE}&format=csv&colonnes=periode,valeur,secret"),
    )
    .await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    assert!(kind.starts_with("text/csv"));
    assert_eq!(&body[..3], b"\xEF\xBB\xBF");
    let text = String::from_utf8(body[3..].to_vec()).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], "periode;valeur;secret");
    assert_eq!(lines.len(), rows.len() + 1);
    for (line, row) in lines[1..].iter().zip(&rows) {
        let fields: Vec<&str> = line.split(';').collect();
        assert_eq!(fields[0], row.periode);
        match row.valeur {
            Some(v) => {
                assert!(!fields[1].contains('.'), "{line}");
                let parsed: f64 = fields[1].replace(',', ".").parse().unwrap();
                assert!((parsed - v).abs() < 1e-12, "{line}");
            }
            None => assert_eq!(fields[1], "", "a secret cell has no value: {line}"),
        }
        assert_eq!(fields[2], if row.secret { "oui" } else { "non" });
    }
    let (status, _, body) = fetch(
        Profile::AdministrateurDepartemental,
        &format!("{BASE}&format=csv&colonnes=periode,mot_de_passe"),
    )
    .await;
    assert_eq!(status, 400);
    let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(body["code"], "COLONNE_INCONNUE");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn xlsx_export_opens_with_its_notes_sheet() {
    use calamine::{Data, Reader, Xlsx};
    let rows = json_rows().await;
    let (status, kind, body) = fetch(
        Profile::AdministrateurDepartemental,
        &format!("{BASE}&format=xlsx"),
    )
    .await;
    assert_eq!(status, 200);
    assert!(kind.contains("spreadsheetml"));
    let mut book = Xlsx::new(std::io::Cursor::new(body)).unwrap();
    assert_eq!(book.sheet_names(), vec!["Données", "Notes"]);
    let data = book.worksheet_range("Données").unwrap();
    assert_eq!(data.height(), rows.len() + 1);
    let header: Vec<String> = data
        .rows()
        .next()
        .unwrap()
        .iter()
        .map(|c| c.to_string())
        .collect();
    let valeur = header.iter().position(|h| h == "valeur").unwrap();
    let periode = header.iter().position(|h| h == "periode").unwrap();
    for (cells, row) in data.rows().skip(1).zip(&rows) {
        assert_eq!(cells[periode].to_string(), row.periode);
        match (row.valeur, &cells[valeur]) {
            (Some(v), Data::Float(x)) => assert!((v - x).abs() < 1e-12),
            (None, Data::Empty) => {}
            (v, c) => panic!("{}: {v:?} vs {c:?}", row.periode),
        }
    }
    let notes = book.worksheet_range("Notes").unwrap();
    let text: String = notes
        .rows()
        .map(|r| {
            r.iter()
                .map(|c| c.to_string())
                .collect::<Vec<_>>()
                .join(" : ")
        })
        .collect::<Vec<_>>()
        .join("\n");
    assert!(text.contains("Définition : "), "{text}");
    assert!(text.contains("NON_POURVUE"), "{text}");
    assert!(text.contains("Publication : n° "), "{text}");
    assert!(text.contains("Secret statistique : "), "{text}");
    assert!(text.contains("Seine-Saint-Denis"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parquet_export_reads_back_the_same_rows() {
    use arrow::array::{Array, AsArray, RecordBatch};
    use arrow::datatypes::Float64Type;
    let rows = json_rows().await;
    let (status, _, body) = fetch(
        Profile::AdministrateurDepartemental,
        &format!("{BASE}&format=parquet&colonnes=periode,valeur"),
    )
    .await;
    assert_eq!(status, 200);
    let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(
        bytes::Bytes::from(body),
    )
    .unwrap()
    .build()
    .unwrap();
    let batches: Vec<RecordBatch> = reader.map(|b| b.unwrap()).collect();
    let batch = arrow::compute::concat_batches(&batches[0].schema(), &batches).unwrap();
    assert_eq!(batch.num_columns(), 2);
    assert_eq!(batch.num_rows(), rows.len());
    let values = batch.column(1).as_primitive::<Float64Type>();
    for (i, row) in rows.iter().enumerate() {
        assert_eq!(values.is_null(i), row.valeur.is_none());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exports_follow_the_scope() {
    for format in ["csv", "xlsx", "parquet"] {
        let (status, _, body) = fetch(
            Profile::AdministrateurSiao,
            &format!(
                "/api/v1/indicateurs/taux_dnp_115/valeurs?territoire=D75&pas=MOIS&format={format}"
            ),
        )
        .await;
        assert_eq!(status, 403, "{format}");
        let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(body["code"], "ACCES_REFUSE");
    }
    let (status, _, _) = fetch(Profile::AdministrateurSiao, &format!("{BASE}&format=ods")).await;
    assert_eq!(status, 400);
}

/// The other tables the API serves export too: territories, releases, closed months and
/// the audit log, each as CSV for French Excel and as a workbook, with the same rows as
/// their JSON and the columns asked for.
#[tokio::test]
async fn every_list_route_exports_its_rows() {
    use calamine::{Reader, Xlsx};
    for (profile, route, column) in [
        (
            Profile::AdministrateurDepartemental,
            "/api/v1/territoires",
            "code",
        ),
        (
            Profile::AdministrateurDepartemental,
            "/api/v1/publications",
            "version",
        ),
        (
            Profile::AdministrateurDepartemental,
            "/api/v1/periodes",
            "mois",
        ),
        (
            Profile::AdministrateurNational,
            "/api/v1/audit?limite=20",
            "utilisateur",
        ),
    ] {
        let sep = if route.contains('?') { '&' } else { '?' };
        let (status, _, json) = fetch(profile, route).await;
        assert_eq!(status, 200, "{route}");
        let rows: Vec<serde_json::Value> = serde_json::from_slice(&json).unwrap();
        let (status, kind, csv) = fetch(profile, &format!("{route}{sep}format=csv")).await;
        assert_eq!(status, 200, "{route} csv");
        assert!(kind.starts_with("text/csv"), "{route}: {kind}");
        let text = String::from_utf8(csv).unwrap();
        let text = text.trim_start_matches('\u{feff}');
        let lines: Vec<&str> = text.lines().collect();
        assert!(
            lines[0].split(';').any(|h| h == column),
            "{route}: {}",
            lines[0]
        );
        // The audit log grows with these very requests: at least the rows seen before.
        if route.contains("audit") {
            assert!(lines.len() > rows.len().min(20), "{route}");
        } else {
            assert_eq!(lines.len(), rows.len() + 1, "{route}");
        }
        let (status, kind, xlsx) = fetch(
            profile,
            &format!("{route}{sep}format=xlsx&colonnes={column}"),
        )
        .await;
        assert_eq!(status, 200, "{route} xlsx");
        assert!(kind.contains("spreadsheetml"), "{route}: {kind}");
        let mut book = Xlsx::new(std::io::Cursor::new(xlsx)).unwrap();
        let data = book.worksheet_range("Données").unwrap();
        let header: Vec<String> = data
            .rows()
            .next()
            .unwrap()
            .iter()
            .map(|c| c.to_string())
            .collect();
        assert_eq!(header, vec![column.to_owned()], "{route}");
    }
    // A format the routes do not know is a 400 with a French message.
    let (status, _, body) = fetch(
        Profile::AdministrateurDepartemental,
        "/api/v1/territoires?format=pdf",
    )
    .await;
    assert_eq!(status, 400);
    assert!(String::from_utf8_lossy(&body).contains("format"));
}
