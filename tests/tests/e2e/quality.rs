//! The quality zone: quarantined rows are listed by pseudonymised key with their rule and
//! first/last seen; a row removed from the source leaves the quarantine at the next
//! ingest while the others keep their first-seen time; the report per SIAO and month
//! adds up to what the ingest read and quarantined.

use std::collections::{BTreeMap, BTreeSet};

use anonymize::MasterKey;
use ingest::quality::{Action, RULES};
use observatoire::quality::{LUES, QUARANTAINE};
use observatoire_tests::{TEST_KEY_HEX, install_test_key, sqlite_url, temp_dir};

type Row = (String, String, String, String, String);

async fn quarantine(
    data: &std::path::Path,
) -> BTreeMap<(String, String, String), (String, String)> {
    let lake = warehouse::Lake::new(data);
    let table = lake.quality_table("quarantine").await.unwrap().unwrap();
    let ctx = warehouse::new_session();
    lake.register(&ctx, "q", &table).await.unwrap();
    let batches = ctx
        .sql("SELECT table_source, cle, regle, CAST(premiere_vue AS VARCHAR), CAST(derniere_vue AS VARCHAR) FROM q")
        .await
        .unwrap()
        .collect()
        .await
        .unwrap();
    let mut out = BTreeMap::new();
    for b in &batches {
        let col = |i| observatoire_tests::strings(b.column(i));
        let rows: Vec<Row> = (0..b.num_rows())
            .map(|r| {
                let v = |i: usize| col(i)[r].clone().unwrap();
                (v(0), v(1), v(2), v(3), v(4))
            })
            .collect();
        for (t, c, r, f, l) in rows {
            out.insert((t, c, r), (f, l));
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quarantine_and_report_follow_the_source() {
    let tmp = temp_dir("qualite");
    let url = sqlite_url(tmp.path());
    let config = operational::simulator::SimulationConfig {
        departements: vec!["93".into(), "23".into()],
        from: chrono::NaiveDate::from_ymd_opt(2025, 1, 1).unwrap(),
        to: chrono::NaiveDate::from_ymd_opt(2025, 4, 1).unwrap(),
        scale: 0.03,
        defects: 0.01,
        ..Default::default()
    };
    let simulated = observatoire::simulate(&url, &config, false, |_, _| {})
        .await
        .unwrap();
    install_test_key(tmp.path());
    let first = observatoire::ingest(&url, tmp.path(), |_| {})
        .await
        .unwrap();
    let quarantined: u64 = first
        .regles
        .iter()
        .filter(|(rule, _)| {
            RULES
                .iter()
                .any(|(r, a)| r == rule && *a == Action::Quarantine)
        })
        .map(|(_, n)| n)
        .sum();
    assert!(quarantined > 10, "{:?}", first.regles);

    let q1 = quarantine(tmp.path()).await;
    assert_eq!(q1.len() as u64, quarantined);
    // Every injected defect whose rule quarantines is there, under its pseudonym.
    let key = MasterKey::from_hex(TEST_KEY_HEX, "test")
        .unwrap()
        .subkey("detail");
    let keys: BTreeSet<(String, String)> =
        q1.keys().map(|(t, c, _)| (t.clone(), c.clone())).collect();
    let mut expected = 0;
    for d in &simulated.defects {
        if RULES
            .iter()
            .any(|(r, a)| *r == d.rule && *a == Action::Quarantine)
        {
            expected += 1;
            assert!(
                keys.contains(&(d.table.to_owned(), key.pseudonym(d.table, d.id))),
                "{} {} {}",
                d.table,
                d.id,
                d.rule
            );
        }
    }
    assert!(expected > 0);
    for ((_, cle, _), (first_seen, last_seen)) in &q1 {
        assert_eq!(cle.len(), 32);
        assert_eq!(first_seen, last_seen);
    }

    // The report adds up to what was read and quarantined.
    let report = observatoire::quality_report(tmp.path(), None)
        .await
        .unwrap();
    let sum = |nature: &str| -> u64 {
        report
            .iter()
            .filter(|l| l.nature == nature)
            .map(|l| l.lignes)
            .sum()
    };
    assert_eq!(sum(QUARANTAINE), quarantined);
    assert!(sum(LUES) > first.rows.values().sum::<u64>());
    let sites: BTreeSet<&str> = report.iter().map(|l| l.siao.as_str()).collect();
    assert!(sites.contains("93") && sites.contains("23"), "{sites:?}");
    let months: BTreeSet<&str> = report
        .iter()
        .filter(|l| l.siao == "93" && l.table == "demande")
        .map(|l| l.mois.as_str())
        .collect();
    assert_eq!(
        months,
        BTreeSet::from(["2025-01", "2025-02", "2025-03"]),
        "{months:?}"
    );
    let only_93 = observatoire::quality_report(tmp.path(), Some("93"))
        .await
        .unwrap();
    assert!(!only_93.is_empty() && only_93.iter().all(|l| l.siao == "93"));

    // A quarantined row removed from the source leaves the quarantine; the others keep
    // their first-seen time and get a new last-seen time.
    let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
    let removed = simulated
        .defects
        .iter()
        .find(|d| {
            [
                "orientation",
                "prise_en_charge",
                "liste_attente",
                "demande_personne",
            ]
            .contains(&d.table)
                && RULES
                    .iter()
                    .any(|(r, a)| *r == d.rule && *a == Action::Quarantine)
        })
        .expect("a quarantined row without dependents of its own kind");
    for sql in [
        "UPDATE prise_en_charge SET orientation_id = NULL, updated_at = '2030-01-01T00:00:00+00:00' WHERE orientation_id = ?1",
        "UPDATE prise_en_charge SET renouvellement_de = NULL, updated_at = '2030-01-01T00:00:00+00:00' WHERE renouvellement_de = ?1",
    ] {
        sqlx::query(sql)
            .bind(removed.id)
            .execute(&pool)
            .await
            .unwrap();
    }
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "DELETE FROM {} WHERE id = ?1",
        removed.table
    )))
    .bind(removed.id)
    .execute(&pool)
    .await
    .unwrap();
    pool.close().await;
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    observatoire::ingest(&url, tmp.path(), |_| {})
        .await
        .unwrap();
    let q2 = quarantine(tmp.path()).await;
    let table = removed.table;
    let gone = key.pseudonym(table, removed.id);
    assert!(q2.keys().all(|(t, c, _)| !(t == table && *c == gone)));
    assert!(q1.keys().any(|(t, c, _)| t == table && *c == gone));
    let mut kept = 0;
    for (k, (first_seen, last_seen)) in &q2 {
        if let Some((was_first, was_last)) = q1.get(k) {
            kept += 1;
            assert_eq!(first_seen, was_first, "{k:?}");
            assert!(last_seen > was_last, "{k:?}");
        }
    }
    // What left besides it: only stays that followed it (PARENT_QUARANTAINE).
    for (t, c, r) in q1.keys().filter(|k| !q2.contains_key(*k)) {
        assert!(
            (t == table && *c == gone) || (t == "prise_en_charge" && r == "PARENT_QUARANTAINE"),
            "{t} {r}"
        );
    }
    assert!(kept > 0);
}
