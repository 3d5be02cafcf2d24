//! Runs that follow the source for years: a multi-year simulation on PostgreSQL with
//! purges, merges, late corrections and 1 % of injected defects, ingested again after
//! each of several `simulate --continue` steps (a day, a week, months). The lake kept up
//! that way equals, row for row and pseudonym for pseudonym, a full ingest of the final
//! source into a fresh lake with the same key; its quarantine holds exactly the injected
//! defects whose rule quarantines, the rows that depend on them and the DOUBLON_115
//! requests the simulator's merges created; and the runs wrote only what changed.

use std::collections::BTreeSet;

use anonymize::MasterKey;
use chrono::{Duration, NaiveDate};
use ingest::quality::{Action, RULES};
use observatoire_tests::{
    PgDatabase, TEST_KEY_HEX, detail_rows, install_test_key, quarantine_keys, temp_dir,
};

fn quarantines(rule: &str) -> bool {
    RULES
        .iter()
        .any(|(r, a)| *r == rule && *a == Action::Quarantine)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_that_follow_the_source_end_where_a_full_ingest_does() {
    let Some(db) = PgDatabase::create("incremental").await else {
        return;
    };
    let start = NaiveDate::from_ymd_opt(2022, 1, 1).unwrap();
    let mut to = NaiveDate::from_ymd_opt(2023, 12, 1).unwrap();
    let config = operational::simulator::SimulationConfig {
        departements: vec!["93".into()],
        from: start,
        to,
        scale: 0.02,
        defects: 0.01,
        ..Default::default()
    };
    observatoire::simulate(&db.url, &config, false, |_, _| {})
        .await
        .unwrap();
    let tmp = temp_dir("incremental");
    let data = tmp.path().join("suivi");
    install_test_key(&data);
    let first = observatoire::ingest(&db.url, &data, |_| {}).await.unwrap();
    assert!(first.filigranes.contains_key("demande"), "{first:?}");

    let follow = observatoire::IngestOptions {
        allow_mass_delete: true,
        ..Default::default()
    };
    let (mut purged, mut merged, mut corrected) = (0, 0, 0);
    let (mut updated, mut deleted, mut inserted) = (0, 0, 0);
    let mut last = None;
    let mut previous = first.clone();
    for days in [1, 7, 45, 120] {
        to += Duration::days(days);
        let report = observatoire::simulate_continue(&db.url, to, |_, _| {})
            .await
            .unwrap();
        purged += report.summary.purged_households;
        merged += report.summary.merged_persons;
        corrected += report.summary.corrections;
        // Purges delete more than 5 % of so small a source: the stop has its own test.
        let run = observatoire::ingest_with_options(&db.url, &data, &follow, |_| {})
            .await
            .unwrap();
        assert_eq!(run.lecture, warehouse::READ_INCREMENTAL);
        assert_eq!(run.run, previous.run + 1);
        for c in run.changes.values() {
            updated += c.mises_a_jour;
            deleted += c.supprimees;
            inserted += c.inserees;
        }
        // Watermarks only move forward.
        for (table, w) in &previous.filigranes {
            assert!(run.filigranes[table] >= *w, "{table}");
        }
        // A table nothing touched keeps its version: nothing was rewritten.
        for (table, c) in &run.changes {
            if c.inserees + c.mises_a_jour + c.supprimees == 0 {
                assert_eq!(run.tables[table], previous.tables[table], "{table}");
            }
        }
        previous = run;
        last = Some(report);
    }
    let last = last.unwrap();
    assert!(
        purged > 0 && merged > 0 && corrected > 0,
        "{purged} {merged} {corrected}"
    );
    assert!(
        updated > 0 && deleted > 0 && inserted > 0,
        "{updated} {deleted} {inserted}"
    );
    // Writes were proportionate: no run rewrote the big tables whole.
    let demandes = previous.rows["demande"];
    assert!(
        previous.changes["demande"].inserees < demandes / 2,
        "{:?}",
        previous.changes
    );

    // The same source ingested in one go, into a fresh lake, with the same key.
    let reference = tmp.path().join("reference");
    install_test_key(&reference);
    let options = observatoire::IngestOptions {
        full: true,
        ..Default::default()
    };
    let full = observatoire::ingest_with_options(&db.url, &reference, &options, |_| {})
        .await
        .unwrap();
    let (followed, fresh) = (detail_rows(&data).await, detail_rows(&reference).await);
    assert_eq!(
        followed.keys().collect::<Vec<_>>(),
        fresh.keys().collect::<Vec<_>>()
    );
    for (table, rows) in &fresh {
        assert!(
            followed[table] == *rows,
            "{table}: {} rows followed, {} in a full ingest",
            followed[table].len(),
            rows.len()
        );
    }
    assert_eq!(previous.regles, full.regles);
    assert_eq!(previous.doublons_suspects, full.doublons_suspects);

    // The quarantine: the same in both lakes, and exactly what the simulator injected.
    let quarantine = quarantine_keys(&data).await;
    assert_eq!(quarantine, quarantine_keys(&reference).await);
    let key = MasterKey::from_hex(TEST_KEY_HEX, "test")
        .unwrap()
        .subkey("detail");
    let injected: BTreeSet<(String, String)> = last
        .defects
        .iter()
        .filter(|d| quarantines(d.rule))
        .map(|d| (d.table.to_owned(), key.pseudonym(d.table, d.id)))
        .collect();
    assert!(injected.len() > 10, "{}", injected.len());
    let held: BTreeSet<(String, String)> = quarantine
        .iter()
        .map(|(t, c, _)| (t.clone(), c.clone()))
        .collect();
    for row in &injected {
        assert!(held.contains(row), "{row:?} injected but not quarantined");
    }
    let mut merge_doublons = 0;
    for (table, cle, rule) in &quarantine {
        if injected.contains(&(table.clone(), cle.clone())) {
            continue;
        }
        match rule.as_str() {
            "PARENT_QUARANTAINE" => {}
            "DOUBLON_115" => merge_doublons += 1,
            other => panic!("{table} {cle}: quarantined by {other} without a defect"),
        }
    }
    assert_eq!(merge_doublons, last.summary.merge_doublons);
    db.drop_now().await;
}
