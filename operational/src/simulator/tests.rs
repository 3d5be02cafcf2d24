use super::*;

fn small() -> SimulationConfig {
    SimulationConfig {
        departements: vec!["23".into()],
        from: NaiveDate::from_ymd_opt(2025, 1, 1).unwrap(),
        to: NaiveDate::from_ymd_opt(2025, 3, 1).unwrap(),
        seed: 7,
        scale: 1.0,
        defects: 0.0,
    }
}

#[test]
fn same_seed_gives_same_rows() {
    let a = simulate(&small()).unwrap();
    let b = simulate(&small()).unwrap();
    assert_eq!(a.data, b.data);
    let mut other = small();
    other.seed = 8;
    assert_ne!(simulate(&other).unwrap().data, a.data);
}

#[test]
fn a_departement_does_not_depend_on_the_others() {
    let alone = simulate(&small()).unwrap();
    let mut both = small();
    both.departements = vec!["48".into(), "23".into()];
    let both = simulate(&both).unwrap();
    let creuse: Vec<_> = both
        .data
        .rows("demande")
        .iter()
        .filter(|r| r[3] == Value::from("23"))
        .cloned()
        .collect();
    assert_eq!(creuse, alone.data.rows("demande"));
}

#[test]
fn rows_match_the_declared_columns_and_ids_are_unique() {
    let data = simulate(&small()).unwrap().data;
    let mut ids = std::collections::HashSet::new();
    for (table, rows) in data.in_schema_order() {
        for row in rows {
            assert_eq!(row.len(), table.columns.len(), "{}", table.name);
            assert!(ids.insert(row[0].as_int().unwrap()), "{}", table.name);
        }
    }
    assert!(!data.rows("demande").is_empty());
    assert!(!data.rows("prise_en_charge").is_empty());
    assert!(!data.rows("evaluation").is_empty());
}

#[test]
fn a_longer_run_shows_the_shorter_one_on_its_last_day() {
    // Simulating to 1 March shows, as of 1 February, what simulating to 1 February
    // wrote: what `simulate --continue` relies on.
    let mut short = small();
    short.to = NaiveDate::from_ymd_opt(2025, 2, 1).unwrap();
    short.defects = 0.05;
    let mut long = short.clone();
    long.to = NaiveDate::from_ymd_opt(2025, 3, 1).unwrap();
    let direct = simulate_departement(&short, "23").unwrap();
    let (before, after) = simulate_departement_between(&long, "23", short.to).unwrap();
    assert_eq!(before.data, direct.data);
    assert_eq!(before.defects, direct.defects);
    assert!(after.data.total_rows() > before.data.total_rows());
}

#[test]
fn unknown_departement_and_bad_settings_are_refused() {
    let mut c = small();
    c.departements = vec!["20".into()];
    assert!(matches!(
        simulate(&c),
        Err(SimulationError::UnknownDepartement(_))
    ));
    let mut c = small();
    c.scale = 0.0;
    assert!(matches!(simulate(&c), Err(SimulationError::Scale(_))));
    let mut c = small();
    c.defects = 0.9;
    assert!(matches!(simulate(&c), Err(SimulationError::DefectRate(_))));
}

#[test]
fn no_defect_means_an_empty_manifest() {
    let out = simulate(&small()).unwrap();
    assert!(out.defects.is_empty());
    let mut c = small();
    c.defects = 0.02;
    let out = simulate(&c).unwrap();
    assert!(!out.defects.is_empty());
}
