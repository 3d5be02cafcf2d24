//! Disclosure control of a release: primary suppression (done by the grid SQL, which
//! flags the cells breaking their indicator's sdc rule) followed by secondary
//! suppression ([`anonymize::disclosure`]) over the relations that really hold between
//! published cells.
//!
//! Which relations hold is declared in the catalogue ([`Indicator::additive_terms`]):
//! an additive term (a count of requests, orientations, stays or nights; a ratio's
//! numerator or denominator made of such counts; the number of records of a quantile)
//! adds up from départements to their région and to FR, and from months to their year.
//! Two terms that measure the same quantity (U03's value and U04's numerator) are the
//! same cell. Distinct counts of persons or households are not additive across
//! territories or periods and create no relation.
//!
//! One problem per (quantity, year): its inner cells are département × month; every
//! month-aligned period of that year and every territory level are combinations of
//! them. Hiding a ratio's cell hides its numerator and denominator together, which may
//! call for more suppression in the other term's family: the problems are solved again
//! until nothing changes.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use anonymize::disclosure::{Cell, Problem, Relation, protect};
use arrow::array::{Array, ArrayRef, AsArray, BooleanArray, Float64Array, RecordBatch};
use arrow::datatypes::{Date32Type, Float64Type};
use chrono::{Datelike, NaiveDate};

use crate::catalogue::{CATALOGUE, Disclosure};

/// One published row, as disclosure control sees it.
struct Row {
    niveau: String,
    territoire: String,
    debut: NaiveDate,
    fin: NaiveDate,
    terms: [f64; 4],
}

/// The published terms of a row, then `complement` (denominateur − numerateur: for
/// U04, the POURVUE requests), which an attacker derives from the two published terms.
const TERMS: [&str; 4] = ["valeur", "numerateur", "denominateur", "complement"];

/// (quantity, niveau, territoire, debut, fin): one cell of a family.
type CellKey = (&'static str, String, String, NaiveDate, NaiveDate);

/// Applies secondary suppression to rows whose `secret` column holds the primary
/// suppression, then blanks every hidden cell's `valeur`, `numerateur` and
/// `denominateur`. `t` is the secrecy threshold (1: nothing is hidden).
pub fn apply(batch: &RecordBatch, t: i64) -> Result<RecordBatch, arrow::error::ArrowError> {
    let column = |name: &str| {
        batch
            .column_by_name(name)
            .ok_or_else(|| arrow::error::ArrowError::SchemaError(format!("colonne {name} absente")))
    };
    let indicateur = column("indicateur")?.as_string::<i32>();
    let niveau = column("territoire_niveau")?.as_string::<i32>();
    let territoire = column("territoire")?.as_string::<i32>();
    let dimension = column("dimension")?.as_string::<i32>();
    let debut = column("debut")?.as_primitive::<Date32Type>();
    let fin = column("fin")?.as_primitive::<Date32Type>();
    let terms: Vec<&Float64Array> = TERMS[..3]
        .iter()
        .map(|n| column(n).map(|c| c.as_primitive::<Float64Type>()))
        .collect::<Result<_, _>>()?;
    let secret = column("secret")?.as_boolean();
    let mut hidden: Vec<bool> = (0..batch.num_rows())
        .map(|i| secret.is_valid(i) && secret.value(i))
        .collect();

    if t > 1 {
        // Cells of every family, with the rows that publish them.
        let mut cells: BTreeMap<CellKey, (f64, Vec<usize>)> = BTreeMap::new();
        for i in 0..batch.num_rows() {
            let Some(indicator) = CATALOGUE.iter().find(|x| x.id == indicateur.value(i)) else {
                continue;
            };
            if indicator.sdc == Disclosure::Aucune || !dimension.value(i).is_empty() {
                continue;
            }
            let row = Row {
                niveau: niveau.value(i).to_owned(),
                territoire: territoire.value(i).to_owned(),
                debut: Date32Type::to_naive_date_opt(debut.value(i)).expect("date"),
                fin: Date32Type::to_naive_date_opt(fin.value(i)).expect("date"),
                terms: {
                    let v = |k: usize| {
                        if terms[k].is_null(i) {
                            0.0
                        } else {
                            terms[k].value(i)
                        }
                    };
                    [v(0), v(1), v(2), v(2) - v(1)]
                },
            };
            for (term, quantity) in indicator.additive_terms {
                let k = TERMS.iter().position(|n| n == term).expect("known term");
                let entry = cells
                    .entry((
                        quantity,
                        row.niveau.clone(),
                        row.territoire.clone(),
                        row.debut,
                        row.fin,
                    ))
                    .or_insert((row.terms[k], Vec::new()));
                entry.1.push(i);
            }
        }
        let families = families(&cells);
        loop {
            let mut changed = false;
            for family in &families {
                let problem = family.problem(&cells, &hidden);
                let solved = protect(&problem, t as f64);
                for (c, key) in family.keys.iter().enumerate() {
                    if solved.hidden[c] {
                        for &r in &cells[key].1 {
                            if !hidden[r] {
                                hidden[r] = true;
                                changed = true;
                            }
                        }
                    }
                }
            }
            if !changed {
                break;
            }
        }
    }

    if t > 1 {
        hide_complements_of_modalities(batch, &mut hidden)?;
    }

    // Blank the hidden cells.
    let mut columns: Vec<ArrayRef> = batch.columns().to_vec();
    let schema = batch.schema();
    for name in &TERMS[..3] {
        let idx = schema.index_of(name)?;
        let values = columns[idx].as_primitive::<Float64Type>();
        let blanked: Float64Array = (0..values.len())
            .map(|i| (!hidden[i] && values.is_valid(i)).then(|| values.value(i)))
            .collect();
        columns[idx] = Arc::new(blanked);
    }
    let idx = schema.index_of("secret")?;
    columns[idx] = Arc::new(BooleanArray::from(hidden));
    RecordBatch::try_new(schema, columns)
}

/// The modalities of a dimension add up to the total (counts, distinct counts, ratios'
/// terms): when exactly one modality of a (indicator, territory, period, dimension) is
/// hidden, it could be recovered as the total minus the others, so the smallest other
/// published modality is hidden too. Quantiles and capacities are not additive.
fn hide_complements_of_modalities(
    batch: &RecordBatch,
    hidden: &mut [bool],
) -> Result<(), arrow::error::ArrowError> {
    let column = |name: &str| {
        batch
            .column_by_name(name)
            .ok_or_else(|| arrow::error::ArrowError::SchemaError(format!("colonne {name} absente")))
    };
    let indicateur = column("indicateur")?.as_string::<i32>();
    let niveau = column("territoire_niveau")?.as_string::<i32>();
    let territoire = column("territoire")?.as_string::<i32>();
    let periode = column("periode")?.as_string::<i32>();
    let pas = column("pas")?.as_string::<i32>();
    let dimension = column("dimension")?.as_string::<i32>();
    let valeur = column("valeur")?.as_primitive::<Float64Type>();
    let denominateur = column("denominateur")?.as_primitive::<Float64Type>();
    let mut groups: HashMap<(&str, &str, &str, &str, &str, &str), Vec<usize>> = HashMap::new();
    for i in 0..batch.num_rows() {
        let Some(indicator) = CATALOGUE.iter().find(|x| x.id == indicateur.value(i)) else {
            continue;
        };
        if matches!(indicator.sdc, Disclosure::Aucune | Disclosure::Quantile)
            || dimension.value(i).is_empty()
        {
            continue;
        }
        groups
            .entry((
                indicateur.value(i),
                niveau.value(i),
                territoire.value(i),
                pas.value(i),
                periode.value(i),
                dimension.value(i),
            ))
            .or_default()
            .push(i);
    }
    let size = |i: usize| {
        if denominateur.is_valid(i) {
            denominateur.value(i)
        } else if valeur.is_valid(i) {
            valeur.value(i)
        } else {
            0.0
        }
    };
    for rows in groups.values() {
        if rows.iter().filter(|&&r| hidden[r]).count() == 1
            && let Some(&next) = rows
                .iter()
                .filter(|&&r| !hidden[r] && size(r) > 0.0)
                .min_by(|&&a, &&b| size(a).total_cmp(&size(b)))
        {
            hidden[next] = true;
        }
    }
    Ok(())
}

/// The cells of one (quantity, year), in a fixed order.
struct Family {
    keys: Vec<CellKey>,
    relations: Vec<Relation>,
    inner: Vec<Vec<u32>>,
}

impl Family {
    fn problem(&self, cells: &BTreeMap<CellKey, (f64, Vec<usize>)>, hidden: &[bool]) -> Problem {
        Problem {
            cells: self
                .keys
                .iter()
                .zip(&self.inner)
                .map(|(key, inner)| {
                    let (value, rows) = &cells[key];
                    Cell {
                        value: *value,
                        primary: rows.iter().any(|&r| hidden[r]),
                        inner: inner.clone(),
                    }
                })
                .collect(),
            relations: self.relations.clone(),
        }
    }
}

fn is_month_aligned(debut: NaiveDate, fin: NaiveDate) -> bool {
    debut.day() == 1
        && fin.day() == 1
        && (fin.year() == debut.year() || (fin.year() == debut.year() + 1 && fin.month() == 1))
}

fn months(debut: NaiveDate, fin: NaiveDate) -> Vec<u32> {
    let (first, last) = (
        debut.month0(),
        if fin.year() > debut.year() {
            12
        } else {
            fin.month0()
        },
    );
    (first..last).collect()
}

/// Builds the families, their inner cells (département × month) and their relations.
fn families(cells: &BTreeMap<CellKey, (f64, Vec<usize>)>) -> Vec<Family> {
    let mut grouped: BTreeMap<(&'static str, i32), Vec<CellKey>> = BTreeMap::new();
    for key in cells.keys() {
        if is_month_aligned(key.3, key.4) {
            grouped
                .entry((key.0, key.3.year()))
                .or_default()
                .push(key.clone());
        }
    }
    let mut out = Vec::new();
    for keys in grouped.into_values() {
        // The départements and months published in this family.
        let departements: BTreeSet<&str> = keys
            .iter()
            .filter(|k| k.1 == "DEPARTEMENT")
            .map(|k| k.2.as_str())
            .collect();
        let month_set: BTreeSet<u32> = keys
            .iter()
            .filter(|k| months(k.3, k.4).len() == 1)
            .map(|k| k.3.month0())
            .collect();
        let dep_index: HashMap<&str, u32> = departements
            .iter()
            .enumerate()
            .map(|(i, d)| (*d, i as u32))
            .collect();
        let inner_of = |key: &CellKey| -> Vec<u32> {
            let deps: Vec<u32> = match key.1.as_str() {
                "DEPARTEMENT" => dep_index.get(key.2.as_str()).copied().into_iter().collect(),
                "REGION" => departements
                    .iter()
                    .filter(|d| operational::territory::region_of(d) == Some(key.2.as_str()))
                    .map(|d| dep_index[d])
                    .collect(),
                _ => dep_index.values().copied().collect(),
            };
            let mut inner = Vec::new();
            for m in months(key.3, key.4) {
                if month_set.contains(&m) {
                    for &d in &deps {
                        inner.push(d * 12 + m);
                    }
                }
            }
            inner.sort_unstable();
            inner
        };
        let inner: Vec<Vec<u32>> = keys.iter().map(inner_of).collect();
        let index: HashMap<&CellKey, usize> =
            keys.iter().enumerate().map(|(i, k)| (k, i)).collect();
        let mut relations = Vec::new();
        for (i, key) in keys.iter().enumerate() {
            // A territory's longer period = Σ its months.
            if months(key.3, key.4).len() > 1 {
                let parts: Vec<usize> = keys
                    .iter()
                    .enumerate()
                    .filter(|(_, k)| {
                        k.1 == key.1
                            && k.2 == key.2
                            && months(k.3, k.4).len() == 1
                            && k.3 >= key.3
                            && k.4 <= key.4
                    })
                    .map(|(j, _)| j)
                    .collect();
                if !parts.is_empty() {
                    relations.push(Relation { total: i, parts });
                }
            }
            // A région = Σ its départements; FR = Σ régions, in the same period.
            let children: Vec<usize> = match key.1.as_str() {
                "REGION" => departements
                    .iter()
                    .filter(|d| operational::territory::region_of(d) == Some(key.2.as_str()))
                    .filter_map(|d| {
                        index
                            .get(&(
                                key.0,
                                "DEPARTEMENT".to_owned(),
                                (*d).to_owned(),
                                key.3,
                                key.4,
                            ))
                            .copied()
                    })
                    .collect(),
                "FR" => keys
                    .iter()
                    .enumerate()
                    .filter(|(_, k)| k.1 == "REGION" && k.3 == key.3 && k.4 == key.4)
                    .map(|(j, _)| j)
                    .collect(),
                _ => Vec::new(),
            };
            if !children.is_empty() {
                relations.push(Relation {
                    total: i,
                    parts: children,
                });
            }
        }
        out.push(Family {
            keys,
            relations,
            inner,
        });
    }
    out
}
