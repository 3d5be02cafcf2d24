//! Dirty data on purpose: each rule of SOURCE_SCHEMA.md's last section broken at a
//! given rate, with a manifest of every breach.
//!
//! Whether a row is broken depends only on the seed, the rule and the row's id (a
//! keyed hash), never on the order of generation, so a continued database breaks the
//! same rows as a database simulated in one go. A row breaks one rule at most, and
//! requests already involved in a duplicate created by a merge are left alone, so
//! that the breaches of each rule can be counted on the source and compared with
//! the manifest.

use std::collections::{HashMap, HashSet};

use chrono::Duration;
use chrono_tz::Europe::Paris;

use super::{Dataset, SimulationConfig};
use crate::source::Value;

/// One injected breach: the row (table, id) and the rule it breaks.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Defect {
    pub table: &'static str,
    pub id: i64,
    pub rule: &'static str,
}

/// The rules, as named in SOURCE_SCHEMA.md.
pub const DEFECT_RULES: &[&str] = &[
    "CHAMP_OBLIGATOIRE",
    "CODE_INCONNU_OBLIGATOIRE",
    "CODE_INCONNU",
    "REFERENCE_ORPHELINE",
    "DATES_INCOHERENTES",
    "STATUT_SANS_DATE",
    "DOUBLON_115",
    "MOTIF_MANQUANT",
    "DEPARTEMENT_HORS_COG",
    "SEJOURS_CHEVAUCHANTS",
    "DEMANDE_SANS_PERSONNE",
];

/// Rows added by a defect (a duplicate request, an overlapping stay) take the id of
/// the row they copy plus this offset: still in the table's range, larger than every
/// id the simulation gives, and the same whatever the interval simulated.
const COPY_OFFSET: i64 = 4_000_000_000_000;
/// A reference to a household that does not exist.
const ORPHAN_OFFSET: i64 = 5_000_000_000_000;

fn unit(seed: u64, rule: usize, id: i64) -> f64 {
    let mut z = seed ^ (rule as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ id as u64;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    (z >> 11) as f64 / (1u64 << 53) as f64
}

fn rule_index(rule: &str) -> usize {
    DEFECT_RULES
        .iter()
        .position(|r| *r == rule)
        .expect("declared rule")
}

/// Breaks rows of one département's data in place; returns the manifest.
pub(super) fn inject(config: &SimulationConfig, dep: &str, data: &mut Dataset) -> Vec<Defect> {
    let rate = config.defects;
    if rate <= 0.0 {
        return Vec::new();
    }
    let seed = config.seed;
    let hit = |rule: &str, id: i64| unit(seed, rule_index(rule), id) < rate;
    let mut manifest = Vec::new();
    // Requests sharing a person on the same night already (merged duplicates).
    let mut untouchable: HashSet<i64> = merge_doublon_requests(data);
    let mut persons: HashMap<i64, Vec<usize>> = HashMap::new();
    for (i, r) in data.rows("demande_personne").iter().enumerate() {
        if let Some(d) = r[1].as_int() {
            persons.entry(d).or_default().push(i);
        }
    }

    let mut new_requests = Vec::new();
    let mut new_links = Vec::new();
    let mut drop_links: HashSet<usize> = HashSet::new();
    let links = data.rows("demande_personne").to_vec();
    let requests = data.tables.get_mut("demande").expect("demande");
    for row in requests.iter_mut() {
        let Some(id) = row[0].as_int() else { continue };
        if untouchable.contains(&id) {
            continue;
        }
        let statut = row[6].as_text().unwrap_or("").to_owned();
        let urgence = row[2].as_text() == Some("URGENCE");
        let decided = matches!(statut.as_str(), "POURVUE" | "NON_POURVUE");
        let has_persons = persons.contains_key(&id);
        let mut broke = |rule: &'static str| {
            manifest.push(Defect {
                table: "demande",
                id,
                rule,
            });
        };
        if hit("CHAMP_OBLIGATOIRE", id) {
            let column = [1, 2, 6, 3, 4][(id % 5) as usize];
            row[column] = Value::Null;
            broke("CHAMP_OBLIGATOIRE");
        } else if hit("CODE_INCONNU_OBLIGATOIRE", id) {
            row[6] = "A_QUALIFIER".into();
            broke("CODE_INCONNU_OBLIGATOIRE");
        } else if hit("CODE_INCONNU", id) {
            row[5] = "TELEPHONE".into();
            broke("CODE_INCONNU");
        } else if hit("REFERENCE_ORPHELINE", id) && row[1].as_int().is_some() {
            row[1] = Value::Int(row[1].as_int().unwrap_or(0) + ORPHAN_OFFSET);
            broke("REFERENCE_ORPHELINE");
        } else if hit("STATUT_SANS_DATE", id) && (decided || statut == "ANNULEE") {
            row[7] = Value::Null;
            broke("STATUT_SANS_DATE");
        } else if hit("DOUBLON_115", id) && urgence && decided && has_persons {
            // The same call entered twice: a second request for the same persons.
            let copy_id = id + COPY_OFFSET;
            let mut copy = row.clone();
            copy[0] = Value::Int(copy_id);
            copy[6] = "NON_POURVUE".into();
            copy[8] = "ABSENCE_PLACE".into();
            new_requests.push(copy);
            for &i in &persons[&id] {
                let mut link = links[i].clone();
                link[0] = Value::Int(link[0].as_int().unwrap_or(0) + COPY_OFFSET);
                link[1] = Value::Int(copy_id);
                new_links.push(link);
            }
            manifest.push(Defect {
                table: "demande",
                id: copy_id,
                rule: "DOUBLON_115",
            });
        } else if hit("MOTIF_MANQUANT", id) && statut == "NON_POURVUE" {
            row[8] = Value::Null;
            broke("MOTIF_MANQUANT");
        } else if hit("DEPARTEMENT_HORS_COG", id) {
            // "20": Corsica's code before 1976, still typed now and then.
            row[3] = "20".into();
            broke("DEPARTEMENT_HORS_COG");
        } else if hit("DEMANDE_SANS_PERSONNE", id) && has_persons {
            drop_links.extend(persons[&id].iter().copied());
            broke("DEMANDE_SANS_PERSONNE");
        } else {
            continue;
        }
        untouchable.insert(id);
    }
    requests.extend(new_requests);
    let links_table = data
        .tables
        .get_mut("demande_personne")
        .expect("demande_personne");
    if !drop_links.is_empty() {
        let mut i = 0;
        links_table.retain(|_| {
            let keep = !drop_links.contains(&i);
            i += 1;
            keep
        });
    }
    links_table.extend(new_links);

    let mut new_stays = Vec::new();
    let stays = data.tables.get_mut("prise_en_charge").expect("stays");
    for row in stays.iter_mut() {
        let Some(id) = row[0].as_int() else { continue };
        let (Some(entree), sortie) = (row[7].as_date(), row[8].as_date()) else {
            continue;
        };
        let Some(sortie) = sortie else { continue };
        if hit("DATES_INCOHERENTES", id) {
            row[8] = Value::Date(entree - Duration::days(1 + id % 20));
            manifest.push(Defect {
                table: "prise_en_charge",
                id,
                rule: "DATES_INCOHERENTES",
            });
        } else if hit("SEJOURS_CHEVAUCHANTS", id) && sortie - entree >= Duration::days(2) {
            // The same stay entered again a day later, by another worker.
            let mut copy = row.clone();
            copy[0] = Value::Int(id + COPY_OFFSET);
            copy[2] = Value::Null;
            copy[3] = Value::Null;
            copy[7] = Value::Date(entree + Duration::days(1));
            copy[10] = Value::Null;
            new_stays.push(copy);
            manifest.push(Defect {
                table: "prise_en_charge",
                id: id + COPY_OFFSET,
                rule: "SEJOURS_CHEVAUCHANTS",
            });
        }
    }
    stays.extend(new_stays);
    let _ = dep;
    manifest.sort();
    manifest
}

/// Requests on either side of a DOUBLON_115 pair created by merging persons.
fn merge_doublon_requests(data: &Dataset) -> HashSet<i64> {
    let mut nights: HashMap<i64, (chrono::NaiveDate, String)> = HashMap::new();
    for r in data.rows("demande") {
        if r[2].as_text() != Some("URGENCE") || r[6].as_text() == Some("ANNULEE") {
            continue;
        }
        let (Some(id), Value::Timestamp(at), Some(dep)) = (r[0].as_int(), &r[4], r[3].as_text())
        else {
            continue;
        };
        nights.insert(id, (at.with_timezone(&Paris).date_naive(), dep.to_owned()));
    }
    let mut by_key: HashMap<(i64, chrono::NaiveDate, String), Vec<i64>> = HashMap::new();
    for r in data.rows("demande_personne") {
        let (Some(d), Some(p)) = (r[1].as_int(), r[2].as_int()) else {
            continue;
        };
        if let Some((night, dep)) = nights.get(&d) {
            by_key.entry((p, *night, dep.clone())).or_default().push(d);
        }
    }
    let mut out = HashSet::new();
    for ids in by_key.values() {
        let mut distinct = ids.clone();
        distinct.sort_unstable();
        distinct.dedup();
        if distinct.len() > 1 {
            out.extend(distinct);
        }
    }
    out
}
