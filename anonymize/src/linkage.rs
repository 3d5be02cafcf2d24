//! Suspected duplicates: persons of the source who are probably the same person.
//!
//! The operational application's merge module leaves many duplicates, and every
//! distinct count of persons is inflated by them. The ingest reads last and first names
//! in memory only for this: a linkage key `HMAC-SHA256(HKDF(key, "linkage"),
//! normalised last name | normalised first name | birth date | sex)` is computed per
//! person, and persons sharing a key with another are counted per SIAO. The names are
//! never stored; the keys reach neither the lake nor a log: only the counts reach the
//! run manifest (and the data-quality report). An incremental run, which re-reads only
//! the persons that changed, needs the others' keys: they are kept in the run state
//! under `secrets/etat`, beside the master key and outside the lake. A person without a last name, a first name or a birth date
//! gets no key (too weak to link).
//!
//! Normalisation: Unicode NFD, diacritics removed, upper case, every run of characters
//! that are not letters (spaces, hyphens, apostrophes) removed: « Lefèvre-Dupont » and
//! « LEFEVRE DUPONT » give the same key.

use std::collections::BTreeMap;

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::{Date32Type, Int64Type};
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use unicode_normalization::UnicodeNormalization;

use crate::{AnonymizeError, MasterKey};

use crate::FastMap;

/// Every person's link, by source id.
pub type Links = FastMap<i64, PersonLink>;

/// A name as compared by the linkage key.
///
/// ```
/// assert_eq!(anonymize::linkage::normalise("Lefèvre-Dupont"), "LEFEVREDUPONT");
/// assert_eq!(anonymize::linkage::normalise(" lefevre dupont "), "LEFEVREDUPONT");
/// assert_eq!(anonymize::linkage::normalise("N'Diaye"), "NDIAYE");
/// ```
pub fn normalise(name: &str) -> String {
    let mut out = String::new();
    normalise_into(name, &mut out);
    out
}

/// [`normalise`] into a buffer the caller reuses (cleared first).
fn normalise_into(name: &str, out: &mut String) {
    out.clear();
    // Most names are ASCII: decomposition leaves them as they are, and the letters and
    // their capitals are ASCII's own.
    if name.is_ascii() {
        out.extend(
            name.bytes()
                .filter(u8::is_ascii_alphabetic)
                .map(|b| char::from(b.to_ascii_uppercase())),
        );
        return;
    }
    out.extend(
        name.nfd()
            .filter(|c| c.is_alphabetic())
            .flat_map(char::to_uppercase),
    );
}

/// A person's linkage key (none when too weak to link) and SIAO (the département of the
/// household of its latest membership; `INCONNU` without one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PersonLink {
    pub key: Option<[u8; 32]>,
    pub siao: String,
}

/// Persons sharing a linkage key with another person, per SIAO (the département of the
/// household of their latest membership; `INCONNU` without one).
pub fn suspected_duplicates(
    key: &MasterKey,
    tables: &BTreeMap<String, RecordBatch>,
) -> Result<BTreeMap<String, u64>, AnonymizeError> {
    let links = person_links(key, tables)?;
    Ok(count_duplicates(
        links
            .values()
            .filter_map(|l| Some((l.key?, l.siao.as_str()))),
    ))
}

/// Counts, per SIAO, the persons whose key another person shares.
///
/// The keys are sorted and each run of equal keys longer than one counted: no map of a
/// national population's keys to lists of SIAO (1.5 million small allocations, and a
/// table grown by doubling, each growth fresh memory the kernel must zero).
pub fn count_duplicates<'a>(
    links: impl Iterator<Item = ([u8; 32], &'a str)>,
) -> BTreeMap<String, u64> {
    let mut keys: Vec<([u8; 32], &str)> = Vec::with_capacity(links.size_hint().1.unwrap_or(0));
    keys.extend(links);
    keys.sort_unstable_by_key(|(key, _)| *key);
    let mut counts: FastMap<&str, u64> = FastMap::default();
    for run in keys.chunk_by(|a, b| a.0 == b.0) {
        if run.len() > 1 {
            for (_, siao) in run {
                *counts.entry(siao).or_insert(0) += 1;
            }
        }
    }
    counts
        .into_iter()
        .map(|(siao, n)| (siao.to_owned(), n))
        .collect()
}

/// The linkage key and SIAO of every person of `tables`.
pub fn person_links(
    key: &MasterKey,
    tables: &BTreeMap<String, RecordBatch>,
) -> Result<Links, AnonymizeError> {
    let Some(personne) = tables.get("personne") else {
        return Ok(Links::default());
    };
    let missing = |table: &str, column: &str| AnonymizeError::UnexpectedType {
        table: table.to_owned(),
        column: column.to_owned(),
    };
    let subkey = key.linkage_subkey();
    let ids = personne
        .column_by_name("id")
        .and_then(|c| c.as_primitive_opt::<Int64Type>())
        .ok_or_else(|| missing("personne", "id"))?;
    let text = |name: &str| {
        personne
            .column_by_name(name)
            .and_then(|c| c.as_string_opt::<i32>())
            .ok_or_else(|| missing("personne", name))
    };
    let (nom, prenom, sexe) = (text("nom")?, text("prenom")?, text("sexe")?);
    let naissance = personne
        .column_by_name("date_naissance")
        .and_then(|c| c.as_primitive_opt::<Date32Type>())
        .ok_or_else(|| missing("personne", "date_naissance"))?;
    let siao = person_siao(tables);
    // The keyed state (the key's two blocks hashed) is made once and copied per person.
    let keyed = Hmac::<Sha256>::new_from_slice(&subkey).expect("HMAC accepts any key length");
    // The persons' rows in one part per core; each part's links are kept in row order.
    let links_of = |rows: std::ops::Range<usize>| -> Vec<(i64, PersonLink)> {
        let (mut n, mut p) = (String::new(), String::new());
        let mut day = itoa::Buffer::new();
        rows.filter(|&i| ids.is_valid(i))
            .map(|i| {
                let id = ids.value(i);
                let mut link = PersonLink {
                    key: None,
                    siao: siao.get(&id).copied().unwrap_or("INCONNU").to_owned(),
                };
                if !nom.is_null(i) && !prenom.is_null(i) && !naissance.is_null(i) {
                    normalise_into(nom.value(i), &mut n);
                    normalise_into(prenom.value(i), &mut p);
                    if !n.is_empty() && !p.is_empty() {
                        let mut mac = keyed.clone();
                        for part in [
                            n.as_str(),
                            p.as_str(),
                            day.format(naissance.value(i)),
                            if sexe.is_null(i) { "" } else { sexe.value(i) },
                        ] {
                            mac.update(part.as_bytes());
                            mac.update(b"|");
                        }
                        link.key = Some(mac.finalize().into_bytes().into());
                    }
                }
                (id, link)
            })
            .collect()
    };
    let rows = personne.num_rows();
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get());
    let per = rows.div_ceil(workers.max(1)).max(1);
    let parts: Vec<Vec<(i64, PersonLink)>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..rows)
            .step_by(per)
            .map(|start| {
                let links_of = &links_of;
                scope.spawn(move || links_of(start..(start + per).min(rows)))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("a linkage thread"))
            .collect()
    });
    let mut out = Links::with_capacity_and_hasher(rows, Default::default());
    for part in parts {
        out.extend(part);
    }
    Ok(out)
}

/// Each person's SIAO: the household of its latest membership (greatest date_debut),
/// borrowed from the `menage` batch.
fn person_siao(tables: &BTreeMap<String, RecordBatch>) -> FastMap<i64, &str> {
    let mut menages: FastMap<i64, &str> = FastMap::default();
    if let Some(m) = tables.get("menage")
        && let (Some(id), Some(dep)) = (
            m.column_by_name("id")
                .and_then(|c| c.as_primitive_opt::<Int64Type>()),
            m.column_by_name("siao_departement")
                .and_then(|c| c.as_string_opt::<i32>()),
        )
    {
        for i in 0..m.num_rows() {
            if id.is_valid(i) && dep.is_valid(i) {
                menages.insert(id.value(i), dep.value(i));
            }
        }
    }
    let mut latest: FastMap<i64, (i32, &str)> = FastMap::default();
    if let Some(mp) = tables.get("menage_personne")
        && let (Some(menage), Some(personne), Some(debut)) = (
            mp.column_by_name("menage_id")
                .and_then(|c| c.as_primitive_opt::<Int64Type>()),
            mp.column_by_name("personne_id")
                .and_then(|c| c.as_primitive_opt::<Int64Type>()),
            mp.column_by_name("date_debut")
                .and_then(|c| c.as_primitive_opt::<Date32Type>()),
        )
    {
        for i in 0..mp.num_rows() {
            if menage.is_null(i) || personne.is_null(i) {
                continue;
            }
            let Some(dep) = menages.get(&menage.value(i)) else {
                continue;
            };
            let day = if debut.is_null(i) {
                i32::MIN
            } else {
                debut.value(i)
            };
            let entry = latest.entry(personne.value(i)).or_insert((i32::MIN, dep));
            if day >= entry.0 {
                *entry = (day, dep);
            }
        }
    }
    latest.into_iter().map(|(p, (_, d))| (p, d)).collect()
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{Date32Array, Int64Array, StringArray};
    use arrow::datatypes::{DataType, Field, Schema};

    use super::*;

    fn personne(rows: &[(i64, &str, &str, Option<i32>, &str)]) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("nom", DataType::Utf8, true),
            Field::new("prenom", DataType::Utf8, true),
            Field::new("date_naissance", DataType::Date32, true),
            Field::new("sexe", DataType::Utf8, true),
        ]));
        RecordBatch::try_new(
            schema,
            vec![
                Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.0))),
                Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.1))),
                Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.2))),
                Arc::new(Date32Array::from_iter(rows.iter().map(|r| r.3))),
                Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.4))),
            ],
        )
        .unwrap()
    }

    #[test]
    fn ascii_names_normalise_as_the_general_rule_says() {
        use unicode_normalization::UnicodeNormalization;
        let general = |s: &str| -> String {
            s.nfd()
                .filter(|c| c.is_alphabetic())
                .flat_map(char::to_uppercase)
                .collect()
        };
        let every_ascii: String = (0u8..128).map(char::from).collect();
        for name in [
            every_ascii.as_str(),
            "de la Tour-d'Auvergne",
            " o'Neil 2 ",
            "",
        ] {
            assert_eq!(super::normalise(name), general(name), "{name:?}");
        }
        assert_eq!(
            super::normalise(&every_ascii),
            "ABCDEFGHIJKLMNOPQRSTUVWXYZABCDEFGHIJKLMNOPQRSTUVWXYZ"
        );
    }

    #[test]
    fn each_person_sharing_a_key_counts_once_in_its_own_siao() {
        let (a, b, c) = ([1u8; 32], [2u8; 32], [3u8; 32]);
        // Key a: three persons in two SIAO; key b: one person; key c: two in one SIAO.
        let links = [
            (a, "SIAO 75"),
            (b, "SIAO 75"),
            (c, "SIAO 93"),
            (a, "SIAO 93"),
            (a, "SIAO 75"),
            (c, "SIAO 93"),
        ];
        let counts = super::count_duplicates(links.into_iter());
        let expected: BTreeMap<String, u64> =
            [("SIAO 75".to_owned(), 2), ("SIAO 93".to_owned(), 3)].into();
        assert_eq!(counts, expected);
        assert!(super::count_duplicates(std::iter::empty()).is_empty());
    }

    #[test]
    fn accents_case_and_hyphens_do_not_hide_a_duplicate() {
        let key = MasterKey::from_hex(&"07".repeat(32), "test").unwrap();
        let mut tables = BTreeMap::new();
        tables.insert(
            "personne".to_owned(),
            personne(&[
                (1, "Lefèvre-Dupont", "Amélie", Some(10_000), "F"),
                (2, "LEFEVRE DUPONT", "amelie", Some(10_000), "F"),
                // Same names, another birth date: another person.
                (3, "Lefèvre-Dupont", "Amélie", Some(10_001), "F"),
                // No birth date: no key.
                (4, "Lefèvre-Dupont", "Amélie", None, "F"),
            ]),
        );
        let counts = suspected_duplicates(&key, &tables).unwrap();
        assert_eq!(counts.get("INCONNU"), Some(&2), "{counts:?}");
        assert_eq!(counts.values().sum::<u64>(), 2);
    }
}
