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

/// A column of a batch, or an error naming it.
fn column<'a>(
    batch: &'a RecordBatch,
    name: &str,
) -> Result<&'a ArrayRef, arrow::error::ArrowError> {
    batch
        .column_by_name(name)
        .ok_or_else(|| arrow::error::ArrowError::SchemaError(format!("colonne {name} absente")))
}

/// One breakdown of a total: (indicateur, niveau, territoire, pas, periode, dimension).
type Breakdown<'a> = (&'a str, &'a str, &'a str, &'a str, &'a str, &'a str);

/// Applies secondary suppression to rows whose `secret` column holds the primary
/// suppression, then blanks every hidden cell's `valeur`, `numerateur` and
/// `denominateur`. `t` is the secrecy threshold (1: nothing is hidden).
pub fn apply(batch: &RecordBatch, t: i64) -> Result<RecordBatch, arrow::error::ArrowError> {
    apply_with(batch, t, &[])
}

/// [`apply`], for a release that also publishes the conventions' indicators.
pub fn apply_with(
    batch: &RecordBatch,
    t: i64,
    conventions: &[crate::Indicator],
) -> Result<RecordBatch, arrow::error::ArrowError> {
    let column = |name: &str| column(batch, name);
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
            let Some(indicator) = CATALOGUE
                .iter()
                .chain(conventions)
                .find(|x| x.id == indicateur.value(i))
            else {
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
        hide_complements_of_modalities(batch, &mut hidden, conventions)?;
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
    conventions: &[crate::Indicator],
) -> Result<(), arrow::error::ArrowError> {
    let column = |name: &str| column(batch, name);
    let indicateur = column("indicateur")?.as_string::<i32>();
    let niveau = column("territoire_niveau")?.as_string::<i32>();
    let territoire = column("territoire")?.as_string::<i32>();
    let periode = column("periode")?.as_string::<i32>();
    let pas = column("pas")?.as_string::<i32>();
    let dimension = column("dimension")?.as_string::<i32>();
    let modalite = column("modalite")?.as_string::<i32>();
    let valeur = column("valeur")?.as_primitive::<Float64Type>();
    let denominateur = column("denominateur")?.as_primitive::<Float64Type>();
    let mut groups: HashMap<Breakdown, Vec<usize>> = HashMap::new();
    for i in 0..batch.num_rows() {
        let Some(indicator) = CATALOGUE
            .iter()
            .chain(conventions)
            .find(|x| x.id == indicateur.value(i))
        else {
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
                .min_by(|&&a, &&b| {
                    size(a)
                        .total_cmp(&size(b))
                        .then_with(|| modalite.value(a).cmp(modalite.value(b)))
                })
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

/// The kinds of period, from their bounds (INDICATORS.md's pas).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Kind {
    Jour,
    Semaine,
    Mois,
    Trimestre,
    Hiver,
    Annee,
    Other,
}

fn month_index(d: NaiveDate) -> i32 {
    d.year() * 12 + d.month0() as i32
}

fn kind(debut: NaiveDate, fin: NaiveDate) -> Kind {
    let days = (fin - debut).num_days();
    if days == 1 {
        return Kind::Jour;
    }
    if days == 7 && debut.weekday() == chrono::Weekday::Mon {
        return Kind::Semaine;
    }
    if debut.day() == 1 && fin.day() == 1 {
        return match month_index(fin) - month_index(debut) {
            1 => Kind::Mois,
            3 => Kind::Trimestre,
            5 => Kind::Hiver,
            12 => Kind::Annee,
            _ => Kind::Other,
        };
    }
    Kind::Other
}

/// The finer pas whose periods tile a period of this kind.
fn tiles(k: Kind) -> Option<Kind> {
    match k {
        Kind::Semaine | Kind::Mois => Some(Kind::Jour),
        Kind::Trimestre | Kind::Hiver | Kind::Annee => Some(Kind::Mois),
        _ => None,
    }
}

/// Builds the families, their inner cells and their relations.
///
/// One family per (quantity, year Y): the cells of every pas that lie within
/// [Y-01-01, (Y+1)-04-01) — the year's days, weeks (including the one that starts in
/// late December), months, quarters, the year itself and the winter that starts in
/// November, with the next year's January to March, which the winter adds up. Its inner
/// cells are département × time atom, the atoms being the coarsest partition of time
/// that every period of the family is a union of (days where JOUR is published,
/// week-and-month pieces elsewhere), so that every linear relation between published
/// periods and territories is seen by the elimination. Cells of January to March belong
/// to two families; the problems are solved again until nothing changes.
fn families(cells: &BTreeMap<CellKey, (f64, Vec<usize>)>) -> Vec<Family> {
    let mut by_quantity: BTreeMap<&'static str, Vec<&CellKey>> = BTreeMap::new();
    for key in cells.keys() {
        if kind(key.3, key.4) != Kind::Other {
            by_quantity.entry(key.0).or_default().push(key);
        }
    }
    let mut out = Vec::new();
    for keys in by_quantity.into_values() {
        let years: BTreeSet<i32> = keys.iter().map(|k| k.3.year()).collect();
        for y in years {
            let (lo, hi) = (
                NaiveDate::from_ymd_opt(y, 1, 1).expect("date"),
                NaiveDate::from_ymd_opt(y + 1, 4, 1).expect("date"),
            );
            let family: Vec<CellKey> = keys
                .iter()
                .filter(|k| k.3 >= lo && k.4 <= hi)
                .map(|k| (*k).clone())
                .collect();
            if !family.iter().any(|k| k.3.year() == y) {
                continue;
            }
            out.push(family_of(family));
        }
    }
    out
}

fn family_of(keys: Vec<CellKey>) -> Family {
    // Time atoms: between consecutive bounds of the family's periods.
    let bounds: Vec<NaiveDate> = keys
        .iter()
        .flat_map(|k| [k.3, k.4])
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let atom_of: HashMap<NaiveDate, u32> = bounds
        .iter()
        .enumerate()
        .map(|(i, d)| (*d, i as u32))
        .collect();
    let atoms = bounds.len().saturating_sub(1) as u32;
    let departements: BTreeSet<&str> = keys
        .iter()
        .filter(|k| k.1 == "DEPARTEMENT")
        .map(|k| k.2.as_str())
        .collect();
    let dep_index: HashMap<&str, u32> = departements
        .iter()
        .enumerate()
        .map(|(i, d)| (*d, i as u32))
        .collect();
    let deps_of = |key: &CellKey| -> Vec<u32> {
        match key.1.as_str() {
            "DEPARTEMENT" => dep_index.get(key.2.as_str()).copied().into_iter().collect(),
            "REGION" => departements
                .iter()
                .filter(|d| operational::territory::region_of(d) == Some(key.2.as_str()))
                .map(|d| dep_index[d])
                .collect(),
            _ => dep_index.values().copied().collect(),
        }
    };
    let inner: Vec<Vec<u32>> = keys
        .iter()
        .map(|key| {
            let (a, b) = (atom_of[&key.3], atom_of[&key.4]);
            let mut v: Vec<u32> = deps_of(key)
                .into_iter()
                .flat_map(|d| (a..b).map(move |t| d * atoms + t))
                .collect();
            v.sort_unstable();
            v
        })
        .collect();
    let index: HashMap<&CellKey, usize> = keys.iter().enumerate().map(|(i, k)| (k, i)).collect();
    let mut by_place: HashMap<(&str, &str, Kind), Vec<usize>> = HashMap::new();
    for (i, k) in keys.iter().enumerate() {
        by_place
            .entry((k.1.as_str(), k.2.as_str(), kind(k.3, k.4)))
            .or_default()
            .push(i);
    }
    let mut relations = Vec::new();
    for (i, key) in keys.iter().enumerate() {
        // A territory's period = Σ its finer periods, when they tile it.
        if let Some(finer) = tiles(kind(key.3, key.4))
            && let Some(candidates) = by_place.get(&(key.1.as_str(), key.2.as_str(), finer))
        {
            let parts: Vec<usize> = candidates
                .iter()
                .copied()
                .filter(|&j| keys[j].3 >= key.3 && keys[j].4 <= key.4)
                .collect();
            let covered: i64 = parts
                .iter()
                .map(|&j| (keys[j].4 - keys[j].3).num_days())
                .sum();
            if parts.len() > 1 && covered == (key.4 - key.3).num_days() {
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
    Family {
        keys,
        relations,
        inner,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(y: i32, m: u32, day: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, day).unwrap()
    }

    #[test]
    fn periods_are_recognised_and_tiled_by_their_finer_pas() {
        assert_eq!(kind(d(2025, 3, 14), d(2025, 3, 15)), Kind::Jour);
        assert_eq!(kind(d(2024, 12, 30), d(2025, 1, 6)), Kind::Semaine);
        assert_eq!(kind(d(2025, 2, 1), d(2025, 3, 1)), Kind::Mois);
        assert_eq!(kind(d(2025, 1, 1), d(2025, 4, 1)), Kind::Trimestre);
        assert_eq!(kind(d(2024, 11, 1), d(2025, 4, 1)), Kind::Hiver);
        assert_eq!(kind(d(2025, 1, 1), d(2026, 1, 1)), Kind::Annee);
        // A winter is made of five months across two years: one family holds them all,
        // with the relation winter = Σ months.
        let mut cells: BTreeMap<CellKey, (f64, Vec<usize>)> = BTreeMap::new();
        let key =
            |a: NaiveDate, b: NaiveDate| ("q", "DEPARTEMENT".to_owned(), "23".to_owned(), a, b);
        cells.insert(key(d(2024, 11, 1), d(2025, 4, 1)), (10.0, vec![0]));
        for (y, m) in [(2024, 11), (2024, 12), (2025, 1), (2025, 2), (2025, 3)] {
            let next = if m == 12 {
                d(y + 1, 1, 1)
            } else {
                d(y, m + 1, 1)
            };
            cells.insert(key(d(y, m, 1), next), (2.0, vec![0]));
        }
        let fams = families(&cells);
        let winter = fams
            .iter()
            .find(|f| f.keys.iter().any(|k| kind(k.3, k.4) == Kind::Hiver))
            .unwrap();
        assert_eq!(winter.keys.len(), 6);
        assert!(winter.relations.iter().any(|r| r.parts.len() == 5));
        // Five atoms, one per month: the winter covers them all.
        let w = winter
            .keys
            .iter()
            .position(|k| kind(k.3, k.4) == Kind::Hiver)
            .unwrap();
        assert_eq!(winter.inner[w], [0, 1, 2, 3, 4]);
    }

    #[test]
    fn a_conventions_count_is_protected_across_months_like_a_national_one() {
        let declaration = crate::catalogue::ConventionDeclaration {
            code: "C93-01".into(),
            id: "demandes_convention_test".into(),
            territoire: "93".into(),
            libelle: "Demandes (convention)".into(),
            definition: "Demandes de la période.".into(),
            unite: "demandes".into(),
            sdc: "COMPTE".into(),
            mesure: "SUM".into(),
            sql: "SELECT siao_departement AS departement, CAST(date_demande AS DATE) AS jour, 1 AS w FROM demande".into(),
            ..Default::default()
        };
        let convention = crate::catalogue::convention(&declaration, &[]).unwrap();
        assert_eq!(
            convention.additive_terms,
            [("valeur", "demandes_convention_test")]
        );
        // January (3) breaks the rule; the quarter (53) minus February and March would
        // give it back.
        let rows = [
            ("MOIS", "2025-01", d(2025, 1, 1), d(2025, 2, 1), 3.0, true),
            ("MOIS", "2025-02", d(2025, 2, 1), d(2025, 3, 1), 20.0, false),
            ("MOIS", "2025-03", d(2025, 3, 1), d(2025, 4, 1), 30.0, false),
            (
                "TRIMESTRE",
                "2025-T1",
                d(2025, 1, 1),
                d(2025, 4, 1),
                53.0,
                false,
            ),
        ];
        let n = rows.len();
        let text = |f: &dyn Fn(usize) -> String| -> ArrayRef {
            Arc::new(arrow::array::StringArray::from(
                (0..n).map(f).collect::<Vec<_>>(),
            ))
        };
        let dates = |f: &dyn Fn(usize) -> NaiveDate| -> ArrayRef {
            Arc::new(arrow::array::Date32Array::from(
                (0..n)
                    .map(|i| Date32Type::from_naive_date(f(i)))
                    .collect::<Vec<_>>(),
            ))
        };
        let batch = RecordBatch::try_new(
            warehouse::stats_schema(),
            vec![
                text(&|_| convention.id.to_owned()),
                text(&|_| "DEPARTEMENT".into()),
                text(&|_| "93".into()),
                text(&|i| rows[i].0.into()),
                text(&|i| rows[i].1.into()),
                dates(&|i| rows[i].2),
                dates(&|i| rows[i].3),
                text(&|_| String::new()),
                text(&|_| String::new()),
                Arc::new(Float64Array::from(
                    rows.iter().map(|r| Some(r.4)).collect::<Vec<_>>(),
                )),
                Arc::new(BooleanArray::from(
                    rows.iter().map(|r| r.5).collect::<Vec<_>>(),
                )),
                Arc::new(Float64Array::from(vec![None; n])),
                Arc::new(Float64Array::from(vec![None; n])),
                text(&|_| "PROVISOIRE".into()),
                Arc::new(arrow::array::Int64Array::from(vec![1; n])),
                Arc::new(arrow::array::StringArray::from(vec![None::<&str>; n])),
            ],
        )
        .unwrap();
        let hidden = |b: &RecordBatch| -> Vec<bool> {
            let s = b.column_by_name("secret").unwrap().as_boolean();
            (0..b.num_rows()).map(|i| s.value(i)).collect()
        };
        // Unknown to suppression, January alone is hidden: recoverable.
        assert_eq!(
            hidden(&apply(&batch, 11).unwrap()),
            [true, false, false, false]
        );
        // Declared, a second month is hidden with it.
        let protected = hidden(&apply_with(&batch, 11, &[convention]).unwrap());
        assert!(protected[0]);
        assert!(
            protected.iter().filter(|h| **h).count() >= 2,
            "{protected:?}"
        );
    }
}
