//! The analyst zone: k-anonymous micro-data with pseudonyms of their own release.
//!
//! A two-département, one-year simulation is published three times: the first release
//! builds the zone, the second (same data) keeps it, the third rebuilds it on demand
//! (`compute --analyst`); then:
//! - every combination of quasi-identifiers of every table, as stored, holds at least
//!   k = 11 records, and at most 1 % of the records read were suppressed;
//! - no evaluation flag and no integer id reaches the zone, pseudonyms are 128-bit hex;
//! - the households' pseudonyms of the detail zone, of release 1 and of release 3 are
//!   pairwise disjoint, and with the key one of them is recomputed from the detail zone;
//! - release 2 left the zone as release 1 wrote it.

use std::collections::BTreeSet;

use anonymize::MasterKey;
use arrow::datatypes::DataType;
use observatoire_tests::{TEST_KEY_HEX, ingest_and_compute, simulate_small, sqlite_url, temp_dir};

const QUASI_IDENTIFIERS: [&str; 6] = [
    "departement",
    "mois",
    "tranche_age",
    "sexe",
    "composition",
    "nationalite",
];

async fn column_values(data: &std::path::Path, sql: &str) -> Vec<String> {
    observatoire_tests::sql_strings(data, sql).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn analyst_zone_is_k_anonymous_and_unlinkable_across_releases() {
    let tmp = temp_dir("analyste");
    let url = sqlite_url(tmp.path());
    simulate_small(&url, &["93", "23"], "2025-01-01", "2026-01-01", 0.02).await;
    let first = ingest_and_compute(&url, tmp.path(), 11).await;
    assert_eq!(first.analyst.len(), 3, "{:?}", first.analyst);
    for t in &first.analyst {
        assert!(t.records >= 11, "{t:?}");
        assert!(t.suppressed * 100 <= t.records, "{t:?}");
        assert!(t.k_reached >= 11, "{t:?}");
    }

    // Measured again on the tables as stored.
    let report = observatoire::anonymity_report(tmp.path()).await.unwrap();
    assert_eq!(report.len(), 3);
    for t in &report {
        assert_eq!(t.publication, 1);
        assert!(t.risk.k >= 11, "{t:?}");
        assert_eq!(t.risk.records_at_risk, 0, "{t:?}");
        assert!(t.risk.highest <= 1.0 / 11.0, "{t:?}");
        assert_eq!(t.risk.records + t.suppressed, t.records_read, "{t:?}");
    }

    // What the zone's files hold.
    let lake = warehouse::Lake::new(tmp.path());
    for table in indicators::analyst::table_names() {
        let delta = lake.open("analyst", table, None).await.unwrap().unwrap();
        let ctx = warehouse::new_session();
        lake.register(&ctx, table, &delta).await.unwrap();
        let schema = ctx.table(table).await.unwrap().schema().inner().clone();
        for field in schema.fields() {
            let name = field.name().as_str();
            assert!(
                ![
                    "violences",
                    "sante",
                    "sortie_institution",
                    "situation_ethos"
                ]
                .contains(&name),
                "{table}.{name}"
            );
            if ["menage", "demande", "sejour", "orientation"].contains(&name) {
                assert!(
                    matches!(field.data_type(), DataType::Utf8 | DataType::Utf8View),
                    "{table}.{name} : {}",
                    field.data_type()
                );
            }
        }
        for q in QUASI_IDENTIFIERS {
            assert!(schema.field_with_name(q).is_ok(), "{table}.{q}");
        }
    }
    let lengths = column_values(
        tmp.path(),
        "SELECT DISTINCT CAST(LENGTH(menage) AS VARCHAR) FROM analyst.demandes",
    )
    .await;
    assert_eq!(lengths, vec!["32".to_owned()]);

    let detail: BTreeSet<String> = column_values(tmp.path(), "SELECT id FROM menage")
        .await
        .into_iter()
        .collect();
    let release_1: BTreeSet<String> =
        column_values(tmp.path(), "SELECT DISTINCT menage FROM analyst.demandes")
            .await
            .into_iter()
            .collect();
    // With the key, a household's pseudonym of release 1 follows from its detail one.
    let key = MasterKey::from_hex(TEST_KEY_HEX, "test").unwrap();
    let analyst_1 = key.subkey("analyst/1");
    let linked = detail
        .iter()
        .filter(|d| release_1.contains(&analyst_1.pseudonym_of_text("menage", d)))
        .count();
    assert_eq!(
        linked,
        release_1.len(),
        "every household of release 1 has its detail pseudonym"
    );

    // Release 2 over the same run: not one more complete month, no purge: kept.
    let households = || async {
        column_values(tmp.path(), "SELECT DISTINCT menage FROM analyst.demandes")
            .await
            .into_iter()
            .collect::<BTreeSet<String>>()
    };
    let publications = || async {
        column_values(
            tmp.path(),
            "SELECT DISTINCT CAST(publication AS VARCHAR) FROM analyst.sejours",
        )
        .await
    };
    let second = observatoire::compute(tmp.path(), 11, 11, |_| {})
        .await
        .unwrap();
    assert_eq!(second.version, 2);
    assert_eq!(second.analyst_reason, None);
    assert!(second.analyst.is_empty());
    assert_eq!(second.analyst_release, 1);
    assert_eq!(households().await, release_1);
    assert_eq!(publications().await, vec!["1".to_owned()]);

    // Release 3, rebuilt on demand: pseudonyms of its own.
    let mut options = indicators::ComputeOptions {
        secrecy_threshold: 11,
        ..Default::default()
    };
    options.analyst.rebuild = true;
    let third = observatoire::publish(
        tmp.path(),
        &options,
        &indicators::Publication::Regular,
        |_| {},
    )
    .await
    .unwrap();
    assert_eq!(third.version, 3);
    assert!(third.analyst_reason.is_some());
    assert_eq!(third.analyst.len(), 3);
    let release_3 = households().await;
    assert_eq!(release_1.len(), release_3.len());
    assert!(release_1.len() > 100, "{}", release_1.len());
    assert!(detail.is_disjoint(&release_1));
    assert!(detail.is_disjoint(&release_3));
    assert!(release_1.is_disjoint(&release_3));
    assert_eq!(publications().await, vec!["3".to_owned()]);
}
