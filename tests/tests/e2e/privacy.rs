//! The lake holds no personal data: every Parquet file and every Delta log file of the
//! demo's lake is read, and none of the source's names, phone numbers, e-mails, birth
//! dates, free texts or workers' names appears, nor any person or household id.

use std::collections::HashSet;

use arrow::array::AsArray;
use arrow::datatypes::{DataType, Date32Type, Int64Type};
use chrono::NaiveDate;
use sqlx::Row;

use crate::fixture::demo;

struct Secrets {
    strings: HashSet<String>,
    birth_days: HashSet<i32>,
    birth_texts: HashSet<String>,
    ids: HashSet<i64>,
}

async fn secrets_of_source(url: &str) -> Secrets {
    let pool = sqlx::SqlitePool::connect(url).await.unwrap();
    let mut strings = HashSet::new();
    for sql in observatoire_tests::PERSONAL_TEXT_SQL {
        for row in sqlx::query(*sql).fetch_all(&pool).await.unwrap() {
            let v: String = row.get(0);
            strings.insert(v);
        }
    }
    // Birth dates before 2016 cannot coincide with any date the lake legitimately holds
    // (the oldest is a dispositif's opening, after October 2016).
    let epoch = NaiveDate::from_ymd_opt(1970, 1, 1).unwrap();
    let limit = NaiveDate::from_ymd_opt(2016, 1, 1).unwrap();
    let mut birth_days = HashSet::new();
    let mut birth_texts = HashSet::new();
    for row in sqlx::query("SELECT date_naissance FROM personne WHERE date_naissance IS NOT NULL")
        .fetch_all(&pool)
        .await
        .unwrap()
    {
        let text: String = row.get(0);
        let d = NaiveDate::parse_from_str(&text, "%Y-%m-%d").unwrap();
        if d < limit {
            birth_days.insert((d - epoch).num_days() as i32);
            birth_texts.insert(text);
        }
    }
    let mut ids = HashSet::new();
    for sql in ["SELECT id FROM personne", "SELECT id FROM menage"] {
        for row in sqlx::query(sql).fetch_all(&pool).await.unwrap() {
            ids.insert(row.get::<i64, _>(0));
        }
    }
    assert!(
        strings.len() > 100 && birth_days.len() > 100 && ids.len() > 100,
        "the source has personal data to look for"
    );
    Secrets {
        strings,
        birth_days,
        birth_texts,
        ids,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lake_files_hold_no_personal_data() {
    let demo = demo();
    let secrets = secrets_of_source(&demo.source_url).await;
    let all = observatoire_tests::files_below(&demo.data.join("lake"));
    let (mut parquet_files, mut log_files, mut values_checked) = (0, 0, 0usize);
    let mut leaks = Vec::new();
    for path in &all {
        let name = path.to_string_lossy();
        if name.ends_with(".parquet") {
            parquet_files += 1;
            for batch in observatoire_tests::parquet_batches(path) {
                for (field, column) in batch.schema().fields().iter().zip(batch.columns()) {
                    for forbidden in [
                        "nom",
                        "prenom",
                        "telephone",
                        "email",
                        "texte",
                        "auteur",
                        "date_naissance",
                    ] {
                        assert_ne!(field.name(), forbidden, "{name}");
                    }
                    match field.data_type() {
                        DataType::Utf8 | DataType::Utf8View | DataType::LargeUtf8 => {
                            for v in observatoire_tests::strings(column).iter().flatten() {
                                values_checked += 1;
                                if secrets.strings.contains(v) || secrets.birth_texts.contains(v) {
                                    leaks.push(format!("{name} {} : {v}", field.name()));
                                }
                            }
                        }
                        DataType::Date32 => {
                            for v in column.as_primitive::<Date32Type>().iter().flatten() {
                                values_checked += 1;
                                if secrets.birth_days.contains(&v) {
                                    leaks.push(format!(
                                        "{name} {} : date de naissance",
                                        field.name()
                                    ));
                                }
                            }
                        }
                        DataType::Int64 => {
                            for v in column.as_primitive::<Int64Type>().iter().flatten() {
                                values_checked += 1;
                                if secrets.ids.contains(&v) {
                                    leaks.push(format!(
                                        "{name} {} : identifiant de personne ou de ménage {v}",
                                        field.name()
                                    ));
                                }
                            }
                        }
                        _ => {}
                    }
                    if leaks.len() > 20 {
                        break;
                    }
                }
            }
        } else if name.contains("_delta_log") && name.ends_with(".json") {
            log_files += 1;
            let text = std::fs::read_to_string(path).unwrap();
            for s in secrets.strings.iter().chain(&secrets.birth_texts) {
                if text.contains(s.as_str()) {
                    leaks.push(format!("{name} : {s}"));
                }
            }
            for id in &secrets.ids {
                if text.contains(&id.to_string()) {
                    leaks.push(format!("{name} : identifiant {id}"));
                }
            }
        }
    }
    assert!(
        parquet_files >= 12 && log_files >= 12,
        "{parquet_files} Parquet, {log_files} journaux"
    );
    assert!(values_checked > 100_000, "{values_checked} values read");
    assert!(
        leaks.is_empty(),
        "données personnelles dans le lac :\n{}",
        leaks.join("\n")
    );
    // The key is outside the lake.
    assert!(
        all.iter()
            .all(|p| !p.to_string_lossy().contains("pseudonymisation.key"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn detail_zone_links_persons_only_through_pseudonyms() {
    let demo = demo();
    let batches = observatoire::sql(
        &demo.data,
        "SELECT COUNT(*) AS n, COUNT(DISTINCT dp.personne_id) AS p, MIN(LENGTH(dp.personne_id)) AS lmin, MAX(LENGTH(dp.personne_id)) AS lmax
         FROM demande_personne dp JOIN personne p ON p.id = dp.personne_id",
    )
    .await
    .unwrap();
    let b = &batches[0];
    let value = |i: usize| observatoire_tests::ints(b.column(i))[0].unwrap();
    let (n, p) = (value(0), value(1));
    assert!(
        n > 10_000 && p > 1_000,
        "joins on pseudonyms work: {n} rows, {p} persons"
    );
    assert_eq!((value(2), value(3)), (32, 32), "pseudonyms are 128-bit hex");
    // Requests' persons: every row carries an age band, never a birth date.
    let bands = observatoire::sql(
        &demo.data,
        "SELECT DISTINCT tranche_age FROM demande_personne ORDER BY 1",
    )
    .await
    .unwrap();
    let list: Vec<String> = bands
        .iter()
        .flat_map(|b| observatoire_tests::strings(b.column(0)))
        .flatten()
        .collect();
    for band in &list {
        assert!(anonymize::AGE_BANDS.contains(&band.as_str()), "{band}");
    }
    assert!(list.len() >= 6, "{list:?}");
}

/// Which columns of a lake table carry pseudonyms: the detail zone's columns the policy
/// pseudonymises, and the analyst zone's record and household columns.
fn pseudonym_columns(zone: &str, table: &str) -> Vec<String> {
    match zone {
        "detail" => anonymize::POLICY
            .iter()
            .filter(|(t, _, tr)| *t == table && matches!(tr, anonymize::Treatment::Pseudonymise(_)))
            .map(|(_, c, _)| (*c).to_owned())
            .collect(),
        "analyst" => ["menage", "demande", "sejour", "orientation"]
            .map(str::to_owned)
            .to_vec(),
        _ => Vec::new(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pseudonyms_are_text_and_neither_ids_nor_their_plain_hashes() {
    use sha2::{Digest, Sha256};
    let demo = demo();
    let pool = sqlx::SqlitePool::connect(&demo.source_url).await.unwrap();
    // Every id of every source table, as decimal text and as plain SHA-256 (of the
    // decimal text and of `entity:id`, whole and truncated to 128 bits).
    let mut decimals = HashSet::new();
    let mut hashes = HashSet::new();
    for table in operational::TABLES {
        if !table.columns.iter().any(|c| c.name == "id") {
            continue;
        }
        let sql = format!("SELECT id FROM {}", table.name);
        for row in sqlx::query(sqlx::AssertSqlSafe(sql))
            .fetch_all(&pool)
            .await
            .unwrap()
        {
            let id = row.get::<i64, _>(0).to_string();
            for text in [id.clone(), format!("{}:{id}", table.name)] {
                let h = hex::encode(Sha256::digest(text.as_bytes()));
                hashes.insert(h[..32].to_owned());
                hashes.insert(h);
            }
            decimals.insert(id);
        }
    }
    assert!(decimals.len() > 10_000, "{}", decimals.len());

    let lake = demo.data.join("lake");
    let (mut pseudonyms_checked, mut strings_checked, mut problems) = (0usize, 0usize, Vec::new());
    for zone in ["detail", "analyst", "stats", "quality", "audit"] {
        let dir = lake.join(zone);
        if !dir.exists() {
            continue;
        }
        for path in observatoire_tests::files_below(&dir) {
            let name = path.to_string_lossy().into_owned();
            if !name.ends_with(".parquet") || name.contains("_delta_log") {
                continue;
            }
            let table = path
                .strip_prefix(&dir)
                .unwrap()
                .components()
                .next()
                .unwrap()
                .as_os_str()
                .to_string_lossy()
                .into_owned();
            let columns = pseudonym_columns(zone, &table);
            for batch in observatoire_tests::parquet_batches(&path) {
                for (field, column) in batch.schema().fields().iter().zip(batch.columns()) {
                    let is_pseudonym = columns.iter().any(|c| c == field.name());
                    if is_pseudonym
                        && !matches!(field.data_type(), DataType::Utf8 | DataType::Utf8View)
                    {
                        problems.push(format!(
                            "{zone}/{table}.{} est de type {} (un pseudonyme est un texte)",
                            field.name(),
                            field.data_type()
                        ));
                        continue;
                    }
                    if !matches!(field.data_type(), DataType::Utf8 | DataType::Utf8View) {
                        continue;
                    }
                    for v in observatoire_tests::strings(column).iter().flatten() {
                        strings_checked += 1;
                        if hashes.contains(v) {
                            problems.push(format!(
                                "{zone}/{table}.{} : SHA-256 simple d'un identifiant",
                                field.name()
                            ));
                        }
                        if is_pseudonym {
                            pseudonyms_checked += 1;
                            if decimals.contains(v) {
                                problems.push(format!(
                                    "{zone}/{table}.{} : identifiant en clair",
                                    field.name()
                                ));
                            }
                            if v.len() != 32
                                || !v
                                    .chars()
                                    .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
                            {
                                problems.push(format!(
                                    "{zone}/{table}.{} : pseudonyme mal formé",
                                    field.name()
                                ));
                            }
                        }
                    }
                    if problems.len() > 20 {
                        break;
                    }
                }
            }
        }
    }
    assert!(
        pseudonyms_checked > 100_000,
        "{pseudonyms_checked} pseudonymes lus"
    );
    assert!(strings_checked > pseudonyms_checked);
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_known_person_has_the_pseudonym_the_key_gives() {
    let demo = demo();
    let pool = sqlx::SqlitePool::connect(&demo.source_url).await.unwrap();
    let row = sqlx::query("SELECT id, sexe FROM personne ORDER BY id LIMIT 1 OFFSET 100")
        .fetch_one(&pool)
        .await
        .unwrap();
    let (id, sexe): (i64, String) = (row.get(0), row.get(1));
    let key = anonymize::MasterKey::from_hex(observatoire_tests::TEST_KEY_HEX, "test").unwrap();
    let pseudonym = key.subkey("detail").pseudonym("personne", id);
    let found = observatoire_tests::sql_strings(
        &demo.data,
        &format!("SELECT sexe FROM personne WHERE id = '{pseudonym}'"),
    )
    .await;
    assert_eq!(found, vec![sexe]);
    // Another key gives another pseudonym, found nowhere.
    let other = anonymize::MasterKey::from_hex(&"ab".repeat(32), "test").unwrap();
    let absent = other.subkey("detail").pseudonym("personne", id);
    let found = observatoire_tests::sql_strings(
        &demo.data,
        &format!("SELECT sexe FROM personne WHERE id = '{absent}'"),
    )
    .await;
    assert!(found.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_evaluation_keeps_its_type_date_household_category_and_flags_only() {
    let demo = demo();
    let batches = observatoire::sql(&demo.data, "SELECT * FROM evaluation LIMIT 1")
        .await
        .unwrap();
    let mut columns: Vec<String> = batches[0]
        .schema()
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect();
    columns.sort();
    assert_eq!(
        columns,
        [
            "date_evaluation",
            "menage_id",
            "sante",
            "situation_ethos",
            "sortie_institution",
            "type",
            "violences"
        ]
    );
}
