//! U04 recomputed with plain SQL on the SQLite source equals the published values.

use chrono::{DateTime, NaiveDate};
use chrono_tz::Europe::Paris;
use dashboards_api::StatRow;
use sqlx::Row;

use crate::fixture::demo;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dnp_rate_matches_plain_sql_on_the_source() {
    let demo = demo();
    let pool = sqlx::SqlitePool::connect(&demo.source_url).await.unwrap();
    // The plain SQL below takes the month from the stored text: check first that every
    // timestamp is written with the Paris offset of its instant, so that its text is the
    // Paris local time.
    for row in sqlx::query("SELECT date_demande FROM demande")
        .fetch_all(&pool)
        .await
        .unwrap()
    {
        let text: String = row.get(0);
        let t = DateTime::parse_from_rfc3339(&text).unwrap();
        assert_eq!(
            NaiveDate::parse_from_str(&text[..10], "%Y-%m-%d").unwrap(),
            t.with_timezone(&Paris).date_naive(),
            "{text}"
        );
    }
    // The demo has no injected defect: the only rows the ingest quarantines are the
    // DOUBLON_115 requests created by merged duplicate persons (the larger id of two
    // URGENCE requests, not ANNULEE, sharing a person on the same Paris date and SIAO).
    let sql = "WITH u AS (
                   SELECT d.id, p.personne_id, d.siao_departement AS dep,
                          substr(d.date_demande, 1, 10) AS jour
                   FROM demande d JOIN demande_personne p ON p.demande_id = d.id
                   WHERE d.type = 'URGENCE' AND d.statut <> 'ANNULEE'),
               premiers AS (
                   SELECT personne_id, dep, jour, MIN(id) AS premier FROM u
                   GROUP BY personne_id, dep, jour),
               doublons AS (
                   SELECT DISTINCT u.id FROM u JOIN premiers f
                     ON f.personne_id = u.personne_id AND f.dep = u.dep AND f.jour = u.jour
                   WHERE u.id > f.premier)
               SELECT siao_departement AS dep, substr(date_demande, 1, 7) AS mois,
                      SUM(statut = 'NON_POURVUE') AS dnp,
                      SUM(statut IN ('POURVUE', 'NON_POURVUE')) AS decidees
               FROM demande
               WHERE type = 'URGENCE' AND id NOT IN (SELECT id FROM doublons)
               GROUP BY dep, mois ORDER BY dep, mois";
    let expected: Vec<(String, String, i64, i64)> = sqlx::query(sql)
        .fetch_all(&pool)
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
        .collect();
    let rows: Vec<StatRow> = observatoire_tests::all_stats(&demo.data).await;
    let mut compared = 0;
    for dep in ["75", "93", "13", "23"] {
        for m in 1..=12 {
            let month = format!("2025-{m:02}");
            let (_, _, dnp, decided) = expected
                .iter()
                .find(|e| e.0 == dep && e.1 == month)
                .cloned()
                .unwrap_or((dep.into(), month.clone(), 0, 0));
            let row = rows
                .iter()
                .find(|r| {
                    r.indicateur == "taux_dnp_115"
                        && r.code_territoire == format!("D{dep}")
                        && r.periode == month
                        && r.dimension.is_empty()
                })
                .unwrap_or_else(|| panic!("D{dep} {month} absent"));
            if row.secret {
                continue;
            }
            let published = row.valeur.expect("a decided request exists every month");
            assert!(
                (published - dnp as f64 / decided as f64).abs() < 1e-9,
                "D{dep} {month}: {published} vs {dnp}/{decided}"
            );
            compared += 1;
        }
    }
    // Paris and Seine-Saint-Denis are seldom hidden (only by secondary suppression);
    // Bouches-du-Rhône and Creuse, with few refusals at the demo's scale, often are.
    assert!(compared >= 18, "{compared} months compared");
}
