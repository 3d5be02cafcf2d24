//! Golden scenarios: every `tests/scenarios/*.toml` is written into a fresh SQLite
//! source and a fresh PostgreSQL database, ingested and computed with the secrecy
//! threshold at 1, and each expected value (worked out by hand in the file) is compared
//! with the published one, on both back ends.

use observatoire_tests::{
    PgDatabase, all_stats, ingest_and_compute, load_scenario, repo_root, sqlite_url, temp_dir,
    write_rows,
};

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn golden_scenarios_match_hand_computed_values() {
    let dir = repo_root().join("tests").join("scenarios");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.retain(|p| p.extension().is_some_and(|e| e == "toml"));
    files.sort();
    assert!(!files.is_empty(), "no scenario in {}", dir.display());
    assert!(files.len() >= 12, "{} scénarios seulement", files.len());
    let mut failures = Vec::new();
    let mut checked = 0;
    for (file, backend) in files
        .iter()
        .flat_map(|f| [(f.clone(), "sqlite"), (f.clone(), "postgres")])
    {
        let scenario = load_scenario(&file).unwrap();
        let tmp = temp_dir("golden");
        let pg = if backend == "postgres" {
            match PgDatabase::create("golden").await {
                Some(pg) => Some(pg),
                None => continue,
            }
        } else {
            None
        };
        let url = match &pg {
            Some(pg) => pg.url.clone(),
            None => sqlite_url(tmp.path()),
        };
        let source = operational::Source::create(&url).await.unwrap();
        write_rows(&source, &scenario.tables).await;
        ingest_and_compute(&url, tmp.path(), 1).await;
        let rows = all_stats(tmp.path()).await;
        let run = warehouse::Lake::new(tmp.path())
            .latest_run()
            .unwrap()
            .expect("a run");
        for (sql, expected) in &scenario.queries {
            checked += 1;
            let batches = observatoire::sql(tmp.path(), sql).await.unwrap();
            let found = batches
                .first()
                .filter(|b| b.num_rows() > 0)
                .and_then(|b| arrow::util::display::array_value_to_string(b.column(0), 0).ok());
            if found.as_deref() != Some(expected.as_str()) {
                failures.push(format!(
                    "{} ({backend}) : « {sql} » : attendu {expected}, trouvé {found:?}",
                    file.file_name().unwrap().to_string_lossy()
                ));
            }
        }
        for (rule, n) in &scenario.rules {
            checked += 1;
            let found = run.regles.get(rule).copied().unwrap_or(0);
            if found != *n {
                failures.push(format!(
                    "{} ({backend}) : règle {rule} : {n} ligne(s) attendue(s), {found} trouvée(s)",
                    file.file_name().unwrap().to_string_lossy()
                ));
            }
        }
        if let Some(pg) = pg {
            source.close().await;
            pg.drop_now().await;
        }
        for e in &scenario.expected {
            // An indicator is named by its code (U01) or its id (demandes_115).
            let id = indicators::CATALOGUE
                .iter()
                .find(|i| i.code == e.indicateur)
                .map_or(e.indicateur.as_str(), |i| i.id);
            let found: Vec<_> = rows
                .iter()
                .filter(|r| {
                    r.indicateur == id
                        && r.code_territoire == e.territoire
                        && r.periode == e.periode
                        && r.dimension == e.dimension
                        && r.modalite == e.modalite
                })
                .collect();
            let label = format!(
                "{} ({backend}) : {} {} {} {}",
                file.file_name().unwrap().to_string_lossy(),
                e.indicateur,
                e.territoire,
                e.periode,
                if e.dimension.is_empty() {
                    String::new()
                } else {
                    format!("{}={}", e.dimension, e.modalite)
                }
            );
            checked += 1;
            let [row] = found.as_slice() else {
                failures.push(format!(
                    "{label} : {} lignes publiées au lieu d'une",
                    found.len()
                ));
                continue;
            };
            if row.secret {
                failures.push(format!("{label} : secret alors que le seuil vaut 1"));
            }
            match (e.valeur, row.valeur) {
                (None, None) => {}
                (Some(a), Some(b)) if close(a, b) => {}
                (a, b) => failures.push(format!("{label} : valeur attendue {a:?}, publiée {b:?}")),
            }
            if let Some(n) = e.numerateur
                && !row.numerateur.is_some_and(|v| close(v, n))
            {
                failures.push(format!(
                    "{label} : numérateur attendu {n}, publié {:?}",
                    row.numerateur
                ));
            }
            if let Some(d) = e.denominateur
                && !row.denominateur.is_some_and(|v| close(v, d))
            {
                failures.push(format!(
                    "{label} : dénominateur attendu {d}, publié {:?}",
                    row.denominateur
                ));
            }
        }
        // Every published territory and period of the scenario is there, for every indicator.
        let grid: std::collections::BTreeSet<_> = rows
            .iter()
            .map(|r| {
                (
                    r.indicateur.clone(),
                    r.code_territoire.clone(),
                    r.periode.clone(),
                    r.dimension.clone(),
                    r.modalite.clone(),
                )
            })
            .collect();
        assert_eq!(
            grid.len(),
            rows.len(),
            "{}: one row per indicator, territory, period and modality",
            scenario.description
        );
    }
    assert!(
        failures.is_empty(),
        "{} écart(s) sur {checked} valeurs :\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn skeleton_scenario_publishes_the_expected_grid() {
    // D0 = 2024-12-02, D1 = 2025-02-20: 3 months and 2 years, for FR, R11, R75, D23, D93.
    let scenario = load_scenario(&repo_root().join("tests/scenarios/01_squelette.toml")).unwrap();
    let tmp = temp_dir("grid");
    let url = sqlite_url(tmp.path());
    let source = operational::Source::create(&url).await.unwrap();
    write_rows(&source, &scenario.tables).await;
    ingest_and_compute(&url, tmp.path(), 1).await;
    let rows = all_stats(tmp.path()).await;
    let mut territories: Vec<_> = rows.iter().map(|r| r.code_territoire.clone()).collect();
    territories.sort();
    territories.dedup();
    assert_eq!(territories, ["D23", "D93", "FR", "R11", "R75"]);
    // Periods per pas: JOUR the 81 days from D0 (the 90 days ending at D1 start before
    // D0); SEMAINE Monday 2024-12-02 to the week of Thursday 2025-02-20: 12 weeks; MOIS 3;
    // TRIMESTRE 2024-T4 and 2025-T1; ANNEE 2024 and 2025; HIVER 2024-2025.
    let mut per_pas: std::collections::BTreeMap<String, std::collections::BTreeSet<String>> =
        Default::default();
    for r in &rows {
        per_pas
            .entry(r.pas.clone())
            .or_default()
            .insert(r.periode.clone());
    }
    let counts: Vec<(&str, usize)> = per_pas.iter().map(|(k, v)| (k.as_str(), v.len())).collect();
    assert_eq!(
        counts,
        [
            ("ANNEE", 2),
            ("HIVER", 1),
            ("JOUR", 81),
            ("MOIS", 3),
            ("SEMAINE", 12),
            ("TRIMESTRE", 2)
        ]
    );
    assert!(per_pas["SEMAINE"].contains("2025-W01") && per_pas["SEMAINE"].contains("2024-W49"));
    assert!(per_pas["HIVER"].contains("2024-2025"));
    let totals = rows.iter().filter(|r| r.dimension.is_empty()).count();
    assert_eq!(totals, 5 * 101 * indicators::CATALOGUE.len());
    assert!(
        rows.iter()
            .all(|r| r.statut == "PROVISOIRE" && r.version == 1)
    );
}
