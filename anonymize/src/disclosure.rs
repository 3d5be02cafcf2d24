//! Secondary suppression of published tables.
//!
//! Primary suppression (INDICATORS.md's "sdc" rules) hides the cells resting on too few
//! records. That is not enough: where published cells are linked by relations that
//! really hold — a région's count of requests is the sum of its départements', a year's
//! is the sum of its months', the modalities of a dimension add up to the total — a
//! hidden cell can often be recomputed from published ones. This module chooses the
//! extra (secondary) cells to hide.
//!
//! The method follows Statistics Norway's GaussSuppression (Langsrud, 2024): every cell
//! is a vector over the table's *inner cells* (the finest cells, e.g. département ×
//! month × modality), and a hidden cell is exactly recomputable from published ones
//! when its vector lies in the span of theirs. Candidates are examined in order of
//! preference for publication (zeros and totals first, then larger values); a candidate
//! is published unless publishing it would put a hidden cell in the span of the
//! published cells, in which case it is hidden too. The span is kept in echelon form,
//! and hidden cells are kept reduced by it, so each test is one reduction and a
//! comparison. Then, so that the attacker's interval is not narrow either, every
//! relation whose hidden parts add up to less than the threshold hides its smallest
//! published part (and, when none is left, its total).
//!
//! The module knows nothing of indicators: the engine builds one [`Problem`] per family
//! of linked cells (one additive quantity, one year) and applies the answer.

use std::collections::BTreeMap;

/// One cell of a suppression problem.
#[derive(Debug, Clone)]
pub struct Cell {
    /// The true value (never published when hidden).
    pub value: f64,
    /// Hidden by primary suppression (or already hidden by a linked problem).
    pub primary: bool,
    /// The inner cells this cell adds up (indices; each appears once).
    pub inner: Vec<u32>,
}

/// A relation that holds between published cells: `total` = Σ `parts`.
#[derive(Debug, Clone)]
pub struct Relation {
    pub total: usize,
    pub parts: Vec<usize>,
}

/// A family of linked cells.
#[derive(Debug, Clone, Default)]
pub struct Problem {
    pub cells: Vec<Cell>,
    pub relations: Vec<Relation>,
}

/// What secondary suppression decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Suppression {
    /// Per cell: hidden (primary or secondary).
    pub hidden: Vec<bool>,
    /// Cells hidden by secondary suppression only.
    pub secondary: usize,
}

type Sparse = BTreeMap<u32, f64>;

const EPS: f64 = 1e-9;

fn vector(inner: &[u32]) -> Sparse {
    inner.iter().map(|&i| (i, 1.0)).collect()
}

/// `v − f·b`, dropping entries that cancel.
fn axpy(v: &mut Sparse, f: f64, b: &Sparse) {
    for (&i, &x) in b {
        let e = v.entry(i).or_insert(0.0);
        *e -= f * x;
        if e.abs() < EPS {
            v.remove(&i);
        }
    }
}

/// The published span, in echelon form: each vector has a pivot where the later ones
/// are zero, so reducing by them in order gives a canonical representative.
#[derive(Default)]
struct Echelon {
    basis: Vec<(u32, Sparse)>,
}

impl Echelon {
    fn reduce(&self, mut v: Sparse) -> Sparse {
        for (p, b) in &self.basis {
            if let Some(&x) = v.get(p) {
                axpy(&mut v, x / b[p], b);
            }
        }
        v
    }

    /// Adds a reduced, non-zero vector; returns its pivot.
    fn push(&mut self, v: Sparse) -> u32 {
        let (&p, _) = v
            .iter()
            .max_by(|a, b| a.1.abs().total_cmp(&b.1.abs()))
            .expect("non-zero vector");
        self.basis.push((p, v));
        p
    }
}

/// Whether two reduced vectors are multiples of each other.
fn parallel(a: &Sparse, b: &Sparse) -> bool {
    if a.len() != b.len() || a.is_empty() {
        return false;
    }
    let (i, &x) = a.iter().next().expect("non-empty");
    let Some(&y) = b.get(i) else {
        return false;
    };
    let f = x / y;
    a.iter().all(|(j, &u)| {
        b.get(j)
            .is_some_and(|&w| (u - f * w).abs() < EPS * (1.0 + u.abs()))
    })
}

/// Chooses the secondary suppressions of a problem with secrecy threshold `t`.
pub fn protect(problem: &Problem, t: f64) -> Suppression {
    let n = problem.cells.len();
    let mut hidden: Vec<bool> = problem.cells.iter().map(|c| c.primary).collect();
    loop {
        gauss(problem, &mut hidden);
        if !widen_intervals(problem, t, &mut hidden) {
            break;
        }
    }
    let secondary = (0..n)
        .filter(|&i| hidden[i] && !problem.cells[i].primary)
        .count();
    Suppression { hidden, secondary }
}

/// One Gaussian pass: publishes, in order of preference, every cell whose publication
/// leaves each hidden cell outside the published span; hides the others.
fn gauss(problem: &Problem, hidden: &mut [bool]) {
    let cells = &problem.cells;
    if !hidden.iter().any(|&h| h) {
        return;
    }
    // Preference for publication: zeros (hiding a zero protects nothing), then cells
    // covering more inner cells (totals), then larger values; ties by index.
    let mut order: Vec<usize> = (0..cells.len()).filter(|&i| !hidden[i]).collect();
    order.sort_by(|&a, &b| {
        let (ca, cb) = (&cells[a], &cells[b]);
        (cb.value == 0.0)
            .cmp(&(ca.value == 0.0))
            .then(cb.inner.len().cmp(&ca.inner.len()))
            .then(cb.value.total_cmp(&ca.value))
            .then(a.cmp(&b))
    });
    let mut span = Echelon::default();
    // Hidden cells, kept reduced by the published span: a candidate whose reduced
    // vector is parallel to one of them would reveal it.
    let mut secret: Vec<Sparse> = (0..cells.len())
        .filter(|&i| hidden[i])
        .map(|i| vector(&cells[i].inner))
        .collect();
    for i in order {
        let r = span.reduce(vector(&cells[i].inner));
        if r.is_empty() {
            // Already a combination of published cells: publishing it reveals nothing.
            continue;
        }
        if secret.iter().any(|s| parallel(s, &r)) {
            hidden[i] = true;
            secret.push(r);
            continue;
        }
        let p = span.push(r);
        let b = &span.basis.last().expect("just pushed").1;
        for s in &mut secret {
            if let Some(&x) = s.get(&p) {
                axpy(s, x / b[&p], b);
            }
        }
    }
}

/// Hides more parts of every relation whose hidden parts add up to less than `t`.
/// Returns whether anything changed.
fn widen_intervals(problem: &Problem, t: f64, hidden: &mut [bool]) -> bool {
    let cells = &problem.cells;
    let mut changed = false;
    for r in &problem.relations {
        let hidden_sum: f64 = r
            .parts
            .iter()
            .filter(|&&p| hidden[p])
            .map(|&p| cells[p].value)
            .sum();
        let any_hidden = hidden[r.total] || r.parts.iter().any(|&p| hidden[p]);
        // No hidden part with records (only the total, or zeros): the relation gives the
        // attacker no bound on a non-zero hidden part.
        if !any_hidden || hidden_sum == 0.0 || hidden_sum >= t {
            continue;
        }
        let smallest = r
            .parts
            .iter()
            .copied()
            .filter(|&p| !hidden[p] && cells[p].value > 0.0)
            .min_by(|&a, &b| cells[a].value.total_cmp(&cells[b].value).then(a.cmp(&b)));
        match smallest {
            Some(p) => {
                hidden[p] = true;
                changed = true;
            }
            None if !hidden[r.total] => {
                hidden[r.total] = true;
                changed = true;
            }
            None => {}
        }
    }
    changed
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A région of three départements over one period: cells 0..3 the départements
    /// (inner cells 0..3), cell 3 the région.
    fn region(values: [f64; 3], t: f64) -> Problem {
        let mut cells: Vec<Cell> = values
            .iter()
            .enumerate()
            .map(|(i, &v)| Cell {
                value: v,
                primary: v >= 1.0 && v < t,
                inner: vec![i as u32],
            })
            .collect();
        let total: f64 = values.iter().sum();
        cells.push(Cell {
            value: total,
            primary: total >= 1.0 && total < t,
            inner: vec![0, 1, 2],
        });
        Problem {
            cells,
            relations: vec![Relation {
                total: 3,
                parts: vec![0, 1, 2],
            }],
        }
    }

    #[test]
    fn a_lone_hidden_department_takes_a_second_one_with_it() {
        // 93: 4 (hidden), 92: 50, 75: 120, région 174. Publishing the région and both
        // others would give 93 = 174 − 50 − 120: the smaller of the others is hidden.
        let s = protect(&region([4.0, 50.0, 120.0], 11.0), 11.0);
        assert_eq!(s.hidden, [true, true, false, false]);
        assert_eq!(s.secondary, 1);
    }

    #[test]
    fn two_small_hidden_cells_are_not_enough() {
        // 3 and 2 hidden: the région gives their sum, 5, so each lies in [0, 5]; the
        // third département is hidden too so that the hidden parts add up to ≥ 11.
        let s = protect(&region([3.0, 2.0, 40.0], 11.0), 11.0);
        assert_eq!(s.hidden, [true, true, true, false]);
    }

    #[test]
    fn nothing_hidden_nothing_added() {
        let s = protect(&region([30.0, 0.0, 40.0], 11.0), 11.0);
        assert_eq!(s.hidden, [false, false, false, false]);
        assert_eq!(s.secondary, 0);
    }

    #[test]
    fn identical_cells_share_their_fate() {
        // A région of one département: the région's cell is the département's.
        let problem = Problem {
            cells: vec![
                Cell {
                    value: 5.0,
                    primary: true,
                    inner: vec![0],
                },
                Cell {
                    value: 5.0,
                    primary: false,
                    inner: vec![0],
                },
            ],
            relations: vec![Relation {
                total: 1,
                parts: vec![0],
            }],
        };
        assert_eq!(protect(&problem, 11.0).hidden, [true, true]);
    }
}

#[cfg(test)]
mod national {
    use super::*;

    /// A national-sized family: 101 départements in 18 régions, 12 months and the year;
    /// every fifth département-month is small (hidden by primary suppression).
    pub(super) fn national_problem() -> Problem {
        let (deps, regions, months) = (101u32, 18u32, 12u32);
        let region_of = |d: u32| d % regions;
        let mut cells = Vec::new();
        let mut relations = Vec::new();
        let value = |d: u32, m: u32| {
            if (d * 7 + m * 3).is_multiple_of(5) {
                1.0 + ((d + m) % 9) as f64
            } else {
                20.0 + ((d * 13 + m * 17) % 300) as f64
            }
        };
        // Territories × periods (months 0..12, then the year as period 12).
        let mut index = std::collections::HashMap::new();
        for p in 0..=months {
            let ms: Vec<u32> = if p == months {
                (0..months).collect()
            } else {
                vec![p]
            };
            let mut add = |key: (u32, u32), ds: Vec<u32>| {
                let inner: Vec<u32> = ds
                    .iter()
                    .flat_map(|&d| ms.iter().map(move |&m| d * months + m))
                    .collect();
                let v: f64 = ds
                    .iter()
                    .flat_map(|&d| ms.iter().map(move |&m| value(d, m)))
                    .sum();
                index.insert(key, cells.len());
                cells.push(Cell {
                    value: v,
                    primary: (1.0..11.0).contains(&v),
                    inner,
                });
            };
            for d in 0..deps {
                add((d, p), vec![d]);
            }
            for r in 0..regions {
                add(
                    (1000 + r, p),
                    (0..deps).filter(|&d| region_of(d) == r).collect(),
                );
            }
            add((2000, p), (0..deps).collect());
        }
        for p in 0..=months {
            for r in 0..regions {
                relations.push(Relation {
                    total: index[&(1000 + r, p)],
                    parts: (0..deps)
                        .filter(|&d| region_of(d) == r)
                        .map(|d| index[&(d, p)])
                        .collect(),
                });
            }
            relations.push(Relation {
                total: index[&(2000, p)],
                parts: (0..regions).map(|r| index[&(1000 + r, p)]).collect(),
            });
        }
        for t in (0..deps)
            .chain((0..regions).map(|r| 1000 + r))
            .chain([2000])
        {
            relations.push(Relation {
                total: index[&(t, months)],
                parts: (0..months).map(|m| index[&(t, m)]).collect(),
            });
        }
        Problem { cells, relations }
    }

    #[test]
    fn a_national_family_is_protected() {
        let problem = national_problem();
        let primary = problem.cells.iter().filter(|c| c.primary).count();
        let s = protect(&problem, 11.0);
        assert!(primary > 100, "{primary}");
        // Every relation whose total is published: hidden parts 0 or ≥ 11.
        for r in &problem.relations {
            if s.hidden[r.total] {
                continue;
            }
            let sum: f64 = r
                .parts
                .iter()
                .filter(|&&p| s.hidden[p])
                .map(|&p| problem.cells[p].value)
                .sum();
            assert!(sum == 0.0 || sum >= 11.0, "{sum}");
            // Never exactly one hidden part under a published total.
            assert_ne!(r.parts.iter().filter(|&&p| s.hidden[p]).count(), 1);
        }
        assert!(
            s.secondary > 0 && s.secondary < problem.cells.len() / 2,
            "{}",
            s.secondary
        );
    }
}
