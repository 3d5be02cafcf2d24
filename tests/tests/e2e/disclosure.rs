//! Disclosure control, audited the way an attacker would attack it.
//!
//! A two-département, one-year simulation (93 saturated, 23 rural: many small cells) is
//! published with the threshold at 11. Then:
//! - no cell published with `secret` false breaks its indicator's sdc rule;
//! - no hidden term is determined by the equalities an attacker knows (départements add
//!   up to their région and FR, months to their year, for every additive term; U03 is
//!   U04's numerator, and numerator + POURVUE requests = denominator): its unit vector is
//!   not in the row space of that system, checked here by a separate elimination;
//! - the attacker's linear programme, solved for every hidden term (minimise and
//!   maximise it under the published values, those equalities, non-negativity and the
//!   known inequality "decided requests ≤ non-cancelled requests"), never pins it down:
//!   its minimum is below its maximum;
//! - in every relation whose total is published and which holds hidden cells, those
//!   cells add up to at least the threshold (their true values come from a second
//!   release computed with the threshold at 1).
//!
//! The relations are written here from INDICATORS.md, independently of the engine.

use std::collections::{BTreeMap, BTreeSet};

use dashboards_api::StatRow;
use good_lp::SolverModel;
use observatoire_tests::{all_stats, ingest_and_compute, simulate_small, sqlite_url, temp_dir};

const T: f64 = 11.0;

/// (quantity, territory code, period): one attacked value.
type Key = (&'static str, String, String);

/// The additive terms of the catalogue, by the quantity they measure.
fn quantities(r: &StatRow) -> Vec<(&'static str, Option<f64>)> {
    let diff = match (r.numerateur, r.denominateur) {
        (Some(n), Some(d)) => Some(d - n),
        _ => None,
    };
    match r.indicateur.as_str() {
        "demandes_115" => vec![("u01", r.valeur)],
        "dnp_115" => vec![("u03", r.valeur)],
        "taux_dnp_115" => vec![
            ("u03", r.numerateur),
            ("u04_den", r.denominateur),
            ("u04_pourvues", diff),
        ],
        "delai_attente_admission" => vec![("i03_n", r.denominateur)],
        _ => vec![],
    }
}

fn sdc_broken(r: &StatRow) -> bool {
    let small = |v: f64| (1.0..T).contains(&v);
    match r.indicateur.as_str() {
        "demandes_115" | "dnp_115" => r.valeur.is_some_and(small),
        "taux_dnp_115" => match (r.numerateur, r.denominateur) {
            (Some(n), Some(d)) => small(n) || (d > 0.0 && d < T) || small(d - n),
            _ => true,
        },
        "delai_attente_admission" => r.denominateur.is_some_and(|n| (1.0..T).contains(&n)),
        _ => false,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_hidden_cell_can_be_recomputed_from_published_ones() {
    let tmp = temp_dir("sdc");
    let url = sqlite_url(tmp.path());
    simulate_small(&url, &["93", "23"], "2025-01-01", "2026-01-01", 0.02).await;
    ingest_and_compute(&url, tmp.path(), 11).await;
    observatoire::compute(tmp.path(), 1, 11, |_| {})
        .await
        .expect("compute at threshold 1");
    // The attack below is written for the totals by month and year; the other pas and the
    // modalities are protected by the same machinery (unit tests of the suppression).
    let rows: Vec<StatRow> = all_stats(tmp.path())
        .await
        .into_iter()
        .filter(|r| r.dimension.is_empty() && (r.pas == "MOIS" || r.pas == "ANNEE"))
        .collect();
    let published: Vec<&StatRow> = rows.iter().filter(|r| r.version == 1).collect();
    // The truth: release 2's current figures (it publishes only the cells that changed,
    // the others' current figure being release 1's, unchanged without secret).
    let mut by_version: Vec<&StatRow> = rows.iter().collect();
    by_version.sort_by_key(|r| r.version);
    let truth: BTreeMap<(String, String, String), &StatRow> = by_version
        .into_iter()
        .map(|r| {
            (
                (
                    r.indicateur.clone(),
                    r.code_territoire.clone(),
                    r.periode.clone(),
                ),
                r,
            )
        })
        .collect();
    assert!(truth.values().any(|r| r.version == 2));
    assert!(truth.values().all(|r| !r.secret));

    // 1. The sdc rule holds on every cell shown.
    let broken: Vec<_> = published
        .iter()
        .filter(|r| !r.secret && sdc_broken(r))
        .map(|r| format!("{} {} {}", r.indicateur, r.code_territoire, r.periode))
        .collect();
    assert!(broken.is_empty(), "règle sdc enfreinte : {broken:?}");
    let hidden_rows = published.iter().filter(|r| r.secret).count();
    assert!(hidden_rows > 20, "{hidden_rows} cellules cachées seulement");

    // The attacker's unknowns: every additive term of a hidden cell; the rest is known.
    let mut known: BTreeMap<Key, f64> = BTreeMap::new();
    let mut unknown: BTreeSet<Key> = BTreeSet::new();
    let mut true_value: BTreeMap<Key, f64> = BTreeMap::new();
    for r in &published {
        let t = truth[&(
            r.indicateur.clone(),
            r.code_territoire.clone(),
            r.periode.clone(),
        )];
        for ((q, v), (_, tv)) in quantities(r).into_iter().zip(quantities(t)) {
            let key = (q, r.code_territoire.clone(), r.periode.clone());
            true_value.insert(key.clone(), tv.unwrap_or(0.0));
            match v {
                Some(v) if !r.secret => {
                    known.insert(key, v);
                }
                _ => {
                    unknown.insert(key);
                }
            }
        }
    }
    // A term shown by one indicator is known even where another hides it (U03 = U04's
    // numerator): the attacker uses it.
    unknown.retain(|k| !known.contains_key(k));

    // The attacker's equalities over the unknowns: each relation whose terms are all
    // published or unknown, written as Σ coefficients · unknowns = constant.
    let index: BTreeMap<&Key, usize> = unknown.iter().enumerate().map(|(i, k)| (k, i)).collect();
    let months: Vec<String> = (1..=12).map(|m| format!("2025-{m:02}")).collect();
    let mut periods: Vec<String> = months.clone();
    periods.push("2025".into());
    let mut equalities: Vec<(Key, Vec<Key>)> = Vec::new();
    for q in ["u01", "u03", "u04_den", "u04_pourvues", "i03_n"] {
        for p in &periods {
            let k = |t: &str| (q, t.to_owned(), p.clone());
            equalities.push((k("R11"), vec![k("D93")]));
            equalities.push((k("R75"), vec![k("D23")]));
            equalities.push((k("FR"), vec![k("R11"), k("R75")]));
        }
        for t in ["D93", "D23", "R11", "R75", "FR"] {
            equalities.push((
                (q, t.into(), "2025".into()),
                months
                    .iter()
                    .map(|m| (q, t.to_owned(), m.clone()))
                    .collect(),
            ));
        }
    }
    // U04's numerator + its POURVUE requests = its denominator.
    let mut identities: Vec<Vec<(Key, f64)>> = Vec::new();
    for t in ["D93", "D23", "R11", "R75", "FR"] {
        for p in &periods {
            let k = |q: &'static str| (q, t.to_owned(), p.clone());
            identities.push(vec![
                (k("u03"), 1.0),
                (k("u04_pourvues"), 1.0),
                (k("u04_den"), -1.0),
            ]);
        }
    }
    for (total, parts) in &equalities {
        let mut row: Vec<(Key, f64)> = parts.iter().map(|p| (p.clone(), 1.0)).collect();
        row.push((total.clone(), -1.0));
        identities.push(row);
    }
    let mut rows_a: Vec<Vec<f64>> = Vec::new();
    for identity in &identities {
        if identity
            .iter()
            .any(|(k, _)| !index.contains_key(k) && !known.contains_key(k))
        {
            continue;
        }
        let mut row = vec![0.0; unknown.len()];
        for (k, c) in identity {
            if let Some(&i) = index.get(k) {
                row[i] += c;
            }
        }
        if row.iter().any(|v| *v != 0.0) {
            rows_a.push(row);
        }
    }

    // 2. No hidden term is determined by the equalities: its unit vector is not in the
    //    row space of the system (reduced row echelon form, by hand).
    let basis = row_echelon(rows_a);
    let mut recomputable = Vec::new();
    for (k, &i) in &index {
        let mut e = vec![0.0; unknown.len()];
        e[i] = 1.0;
        if reduces_to_zero(&basis, e) {
            recomputable.push(format!("{k:?}"));
        }
    }
    assert!(
        recomputable.is_empty(),
        "{} cellule(s) cachée(s) recalculable(s) : {recomputable:?}",
        recomputable.len()
    );

    // 3. The attacker's linear programme: every hidden term keeps a range.
    let constant = |identity: &[(Key, f64)]| -> f64 {
        -identity
            .iter()
            .filter_map(|(k, c)| known.get(k).map(|v| c * v))
            .sum::<f64>()
    };
    let usable: Vec<&Vec<(Key, f64)>> = identities
        .iter()
        .filter(|identity| {
            identity
                .iter()
                .all(|(k, _)| index.contains_key(k) || known.contains_key(k))
                && identity.iter().any(|(k, _)| index.contains_key(k))
        })
        .collect();
    // Decided requests (U04's denominator) ≤ non-cancelled requests (U01).
    let mut inequalities: Vec<Vec<(Key, f64)>> = Vec::new();
    for t in ["D93", "D23", "R11", "R75", "FR"] {
        for p in &periods {
            inequalities.push(vec![
                (("u04_den", t.to_owned(), p.clone()), 1.0),
                (("u01", t.to_owned(), p.clone()), -1.0),
            ]);
        }
    }
    let inequalities: Vec<&Vec<(Key, f64)>> = inequalities
        .iter()
        .filter(|row| {
            row.iter()
                .all(|(k, _)| index.contains_key(k) || known.contains_key(k))
                && row.iter().any(|(k, _)| index.contains_key(k))
        })
        .collect();
    let mut pinned = Vec::new();
    for (target, &i) in &index {
        let bounds: Vec<f64> = [false, true]
            .into_iter()
            .map(|maximise| {
                let mut vars = good_lp::ProblemVariables::new();
                let x: Vec<good_lp::Variable> = (0..index.len())
                    .map(|_| vars.add(good_lp::variable().min(0.0)))
                    .collect();
                let objective = good_lp::Expression::from(x[i]);
                let problem = if maximise {
                    vars.maximise(objective)
                } else {
                    vars.minimise(objective)
                };
                let mut model = problem.using(good_lp::microlp);
                let expression = |row: &[(Key, f64)]| {
                    let mut e = good_lp::Expression::from(0.0);
                    for (k, c) in row {
                        if let Some(&j) = index.get(k) {
                            e.add_mul(*c, x[j]);
                        }
                    }
                    e
                };
                for identity in &usable {
                    model = model.with(expression(identity).eq(constant(identity)));
                }
                for row in &inequalities {
                    model = model.with(expression(row).leq(constant(row)));
                }
                match model.solve() {
                    Ok(solution) => good_lp::Solution::value(&solution, x[i]),
                    // Unbounded above: the attacker learns nothing of the maximum.
                    Err(good_lp::ResolutionError::Unbounded) if maximise => f64::INFINITY,
                    Err(e) => panic!("programme linéaire de {target:?} : {e}"),
                }
            })
            .collect();
        let truth = true_value[*target];
        assert!(
            bounds[0] - 1e-6 <= truth && truth <= bounds[1] + 1e-6,
            "{target:?} = {truth} hors de [{}, {}]",
            bounds[0],
            bounds[1]
        );
        if bounds[1] - bounds[0] < 0.5 {
            pinned.push(format!("{target:?} = {}", bounds[0]));
        }
    }
    assert!(
        pinned.is_empty(),
        "{} cellule(s) cachée(s) déterminée(s) par le programme linéaire : {pinned:?}",
        pinned.len()
    );

    // 4. Every relation holding hidden cells under a published total: the hidden cells
    //    add up to at least t (a relation whose total is hidden too bounds nothing by
    //    itself; the total's own range comes from the relations above it, tested in 3).
    let mut narrow = Vec::new();
    for (total, parts) in &equalities {
        if index.contains_key(total) || !known.contains_key(total) {
            continue;
        }
        let hidden: Vec<&Key> = parts.iter().filter(|p| index.contains_key(*p)).collect();
        let sum: f64 = hidden.iter().map(|p| true_value[*p]).sum();
        if !hidden.is_empty() && sum < T {
            narrow.push(format!("{total:?} : parties cachées {hidden:?} = {sum}"));
        }
    }
    assert!(narrow.is_empty(), "intervalles trop étroits : {narrow:?}");
}

/// Rows in echelon form, each with its pivot column.
fn row_echelon(rows: Vec<Vec<f64>>) -> Vec<(usize, Vec<f64>)> {
    let mut basis: Vec<(usize, Vec<f64>)> = Vec::new();
    for row in rows {
        let mut r = row;
        for (p, b) in &basis {
            let f = r[*p] / b[*p];
            if f != 0.0 {
                for (x, y) in r.iter_mut().zip(b) {
                    *x -= f * y;
                }
            }
        }
        if let Some(p) = (0..r.len()).max_by(|&a, &b| r[a].abs().total_cmp(&r[b].abs()))
            && r[p].abs() > 1e-9
        {
            basis.push((p, r));
        }
    }
    basis
}

fn reduces_to_zero(basis: &[(usize, Vec<f64>)], mut v: Vec<f64>) -> bool {
    for (p, b) in basis {
        let f = v[*p] / b[*p];
        if f != 0.0 {
            for (x, y) in v.iter_mut().zip(b) {
                *x -= f * y;
            }
        }
    }
    v.iter().all(|x| x.abs() < 1e-9)
}
