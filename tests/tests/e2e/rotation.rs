//! `observatoire key rotate`: a new key, a new detail zone, the old key refused; after a
//! vacuum no file of the lake holds a pseudonym of the old generation.

use std::collections::BTreeSet;

use anonymize::MasterKey;
use observatoire_tests::{TEST_KEY_HEX, ingest_and_compute, simulate_small, sqlite_url, temp_dir};
use sqlx::Row;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_rebuilds_the_detail_zone_with_an_unlinkable_key() {
    let tmp = temp_dir("rotation");
    let url = sqlite_url(tmp.path());
    simulate_small(&url, &["23"], "2025-01-01", "2025-04-01", 0.05).await;
    ingest_and_compute(&url, tmp.path(), 11).await;
    let persons = |data: std::path::PathBuf| async move {
        observatoire_tests::sql_strings(&data, "SELECT id FROM personne")
            .await
            .into_iter()
            .collect::<BTreeSet<String>>()
    };
    let before = persons(tmp.path().to_owned()).await;

    // A known person: with the key, its pseudonym is recomputed.
    let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
    let known: i64 = sqlx::query("SELECT MIN(id) FROM personne")
        .fetch_one(&pool)
        .await
        .unwrap()
        .get(0);
    let old = MasterKey::from_hex(TEST_KEY_HEX, "test").unwrap();
    assert!(before.contains(&old.subkey("detail").pseudonym("personne", known)));

    let rotation = observatoire::rotate_key(&url, tmp.path(), false, |_| {})
        .await
        .unwrap();
    assert_eq!(rotation.old_fingerprint, old.fingerprint());
    assert_ne!(rotation.new_fingerprint, old.fingerprint());
    assert_eq!(rotation.manifest.run, 2);
    let retired = rotation.retired_key.clone().unwrap();
    assert_eq!(
        MasterKey::read(&retired).unwrap().fingerprint(),
        old.fingerprint()
    );
    let new = MasterKey::load(&observatoire::key_path(tmp.path())).unwrap();
    assert_eq!(new.fingerprint(), rotation.new_fingerprint);

    let after = persons(tmp.path().to_owned()).await;
    assert_eq!(before.len(), after.len());
    assert!(
        before.is_disjoint(&after),
        "no pseudonym survives the rotation"
    );
    assert!(after.contains(&new.subkey("detail").pseudonym("personne", known)));

    // The lake refuses the old key from now on, with a clear message.
    let lake = warehouse::Lake::new(tmp.path());
    let err = lake.check_key(&old.fingerprint()).unwrap_err().to_string();
    assert!(err.contains("retirée"), "{err}");
    lake.check_key(&new.fingerprint()).unwrap();

    // Statistics do not depend on the key: the distinct counts' records carry new
    // pseudonyms and are recomputed, and no figure changes.
    let second = observatoire::compute(tmp.path(), 11, 11, |_| {})
        .await
        .unwrap();
    assert!(second.recomputed.0 > 0);
    assert_eq!(second.rows, 0, "aucune valeur ne change");
    let stats = observatoire_tests::all_stats(tmp.path()).await;
    let by_version = |v: i64| {
        let mut rows: Vec<String> = stats
            .iter()
            .filter(|r| r.version == v)
            .map(|r| {
                format!(
                    "{} {} {} {:?} {:?} {:?} {}",
                    r.indicateur,
                    r.code_territoire,
                    r.periode,
                    r.valeur,
                    r.numerateur,
                    r.denominateur,
                    r.secret
                )
            })
            .collect();
        rows.sort();
        rows
    };
    assert!(!by_version(1).is_empty());
    assert!(by_version(2).is_empty());

    // After a vacuum with no time travel, no file holds an old pseudonym.
    observatoire::vacuum(tmp.path(), 0).await.unwrap();
    let sample: Vec<&String> = before.iter().take(5).collect();
    for file in observatoire_tests::files_below(&tmp.path().join("lake")) {
        let bytes = std::fs::read(&file).unwrap();
        let text = String::from_utf8_lossy(&bytes);
        for p in &sample {
            assert!(!text.contains(p.as_str()), "{} : {p}", file.display());
        }
    }
    let strings_left = observatoire_tests::parquet_strings(&tmp.path().join("lake"));
    assert!(strings_left.iter().all(|s| !before.contains(s)));
    assert!(strings_left.len() > 100);
}
