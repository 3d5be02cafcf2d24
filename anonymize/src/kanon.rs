//! k-anonymity of the analyst zone: full-domain generalisation over hierarchies of the
//! quasi-identifiers, then suppression of the records left in classes smaller than k
//! (the model of ARX's "global transformation with record suppression").
//!
//! Every quasi-identifier has a hierarchy of levels (level 0: the value as read; the
//! last level: one value for all). A *node* picks one level per quasi-identifier. Every
//! node of the lattice is evaluated: its equivalence classes are counted and the records
//! of classes smaller than k are what it would suppress. Among the nodes that suppress
//! at most the allowed share of records, the one losing least information is kept
//! (loss = Σ weight × level / top level; ties: fewer suppressed records). The records are
//! first grouped by their combination of raw values, so that a node costs one pass over
//! the distinct combinations, not over the records.

use crate::FastMap;

/// One quasi-identifier: its name, its values (one per record) and its hierarchy.
pub struct QuasiIdentifier<'a> {
    pub name: &'static str,
    pub values: &'a [&'a str],
    /// `generalise(value, level)`; level 0 must return the value itself.
    pub generalise: fn(&str, usize) -> String,
    /// Number of levels, the raw one included (≥ 1).
    pub levels: usize,
    /// How much the analysts lose when this one is generalised (territory and month
    /// weigh more than the other attributes).
    pub weight: f64,
}

/// The outcome of the anonymisation of one table.
#[derive(Debug, Clone, PartialEq)]
pub struct Anonymised {
    /// The level chosen for each quasi-identifier, in the order given.
    pub levels: Vec<usize>,
    /// Per quasi-identifier, per record: the code of its raw value (see [`Self::value`]).
    codes: Vec<Vec<u32>>,
    /// Per quasi-identifier, per raw-value code: the generalised value at the chosen level.
    texts: Vec<Vec<String>>,
    /// Per record: kept (true) or suppressed.
    pub kept: Vec<bool>,
    pub suppressed: usize,
    /// Size of the smallest equivalence class among kept records (0 when none kept).
    pub min_class: usize,
    /// Number of equivalence classes among kept records.
    pub classes: usize,
}

impl Anonymised {
    /// The generalised value of quasi-identifier `qi` for record `record`.
    pub fn value(&self, qi: usize, record: usize) -> &str {
        &self.texts[qi][self.codes[qi][record] as usize]
    }

    /// The records kept.
    pub fn kept_records(&self) -> usize {
        self.kept.iter().filter(|k| **k).count()
    }
}

/// Node statistics: records suppressed, smallest kept class, number of kept classes.
#[derive(Debug, Clone, Copy)]
struct NodeStats {
    suppressed: usize,
    min_class: usize,
    classes: usize,
}

/// Makes every combination of quasi-identifiers hold at least `k` records, suppressing
/// at most `max_suppression` (a share, e.g. 0.01) of them when some node allows it, and
/// otherwise as few as the coarsest generalisation needs.
pub fn k_anonymise(qis: &[QuasiIdentifier<'_>], k: usize, max_suppression: f64) -> Anonymised {
    let n = qis.first().map_or(0, |q| q.values.len());
    assert!(
        qis.iter().all(|q| q.values.len() == n && q.levels >= 1),
        "quasi-identifiers of one table have one value per record"
    );
    // Dictionary-encode each quasi-identifier and precompute its generalisations.
    let mut codes: Vec<Vec<u32>> = Vec::with_capacity(qis.len());
    let mut generalised_codes: Vec<Vec<Vec<u32>>> = Vec::with_capacity(qis.len());
    let mut generalised_text: Vec<Vec<Vec<String>>> = Vec::with_capacity(qis.len());
    for q in qis {
        let mut dict: FastMap<&str, u32> = FastMap::default();
        let mut distinct: Vec<&str> = Vec::new();
        let column: Vec<u32> = q
            .values
            .iter()
            .map(|v| {
                *dict.entry(v).or_insert_with(|| {
                    distinct.push(v);
                    (distinct.len() - 1) as u32
                })
            })
            .collect();
        codes.push(column);
        let mut per_level_codes = Vec::with_capacity(q.levels);
        let mut per_level_text = Vec::with_capacity(q.levels);
        for level in 0..q.levels {
            let texts: Vec<String> = distinct.iter().map(|v| (q.generalise)(v, level)).collect();
            let mut gdict: FastMap<&str, u32> = FastMap::default();
            let gcodes: Vec<u32> = texts
                .iter()
                .map(|t| {
                    let next = gdict.len() as u32;
                    *gdict.entry(t.as_str()).or_insert(next)
                })
                .collect();
            per_level_codes.push(gcodes);
            per_level_text.push(texts);
        }
        generalised_codes.push(per_level_codes);
        generalised_text.push(per_level_text);
    }
    // Combinations are packed in mixed radix: every raw (or generalised) code is below
    // the number of distinct raw values of its quasi-identifier.
    let radices: Vec<u64> = generalised_codes
        .iter()
        .map(|levels| levels[0].len().max(1) as u64)
        .collect();
    let radix_product: f64 = radices.iter().map(|r| *r as f64).product();
    assert!(
        radix_product < u64::MAX as f64,
        "too many distinct quasi-identifier values to pack a class key"
    );
    // Group the records by their raw combination.
    let mut combos: FastMap<u64, usize> = FastMap::default();
    let mut record_combo: Vec<usize> = Vec::with_capacity(n);
    let mut combo_keys: Vec<Vec<u32>> = Vec::new();
    let mut combo_counts: Vec<usize> = Vec::new();
    for r in 0..n {
        let packed = codes
            .iter()
            .zip(&radices)
            .fold(0u64, |packed, (c, radix)| packed * radix + c[r] as u64);
        let next = combo_keys.len();
        let id = *combos.entry(packed).or_insert(next);
        if id == next {
            combo_keys.push(codes.iter().map(|c| c[r]).collect());
            combo_counts.push(0);
        }
        combo_counts[id] += 1;
        record_combo.push(id);
    }
    drop(combos);

    let classes_of = |node: &[usize]| -> Vec<u64> {
        combo_keys
            .iter()
            .map(|key| {
                key.iter().enumerate().fold(0u64, |packed, (i, code)| {
                    packed * radices[i] + generalised_codes[i][node[i]][*code as usize] as u64
                })
            })
            .collect()
    };
    let stats_of = |node: &[usize]| -> NodeStats {
        let class = classes_of(node);
        let mut sizes: FastMap<u64, usize> = FastMap::default();
        for (c, count) in class.iter().zip(&combo_counts) {
            *sizes.entry(*c).or_insert(0) += count;
        }
        let mut stats = NodeStats {
            suppressed: 0,
            min_class: 0,
            classes: 0,
        };
        for size in sizes.values() {
            if *size < k {
                stats.suppressed += size;
            } else {
                stats.classes += 1;
                if stats.min_class == 0 || *size < stats.min_class {
                    stats.min_class = *size;
                }
            }
        }
        stats
    };
    let loss = |node: &[usize]| -> f64 {
        node.iter()
            .zip(qis)
            .map(|(l, q)| {
                if q.levels <= 1 {
                    0.0
                } else {
                    q.weight * *l as f64 / (q.levels - 1) as f64
                }
            })
            .sum()
    };

    let allowed = (max_suppression * n as f64).floor() as usize;
    let mut best: Option<(Vec<usize>, NodeStats, f64)> = None;
    let mut fallback: Option<(Vec<usize>, NodeStats, f64)> = None;
    for node in lattice(qis) {
        let stats = stats_of(&node);
        let l = loss(&node);
        let better = |current: &Option<(Vec<usize>, NodeStats, f64)>, by_loss: bool| match current {
            None => true,
            Some((_, s, cl)) if by_loss => {
                l < *cl - 1e-12 || ((l - *cl).abs() <= 1e-12 && stats.suppressed < s.suppressed)
            }
            Some((_, s, cl)) => {
                stats.suppressed < s.suppressed
                    || (stats.suppressed == s.suppressed && l < *cl - 1e-12)
            }
        };
        if stats.suppressed <= allowed {
            if better(&best, true) {
                best = Some((node.clone(), stats, l));
            }
        } else if better(&fallback, false) {
            fallback = Some((node, stats, l));
        }
    }
    let (node, stats, _) = best
        .or(fallback)
        .unwrap_or_else(|| (vec![0; qis.len()], stats_of(&vec![0; qis.len()]), 0.0));

    // Apply the node: generalised values, and suppression of small classes.
    let class = classes_of(&node);
    let mut sizes: FastMap<u64, usize> = FastMap::default();
    for (c, count) in class.iter().zip(&combo_counts) {
        *sizes.entry(*c).or_insert(0) += count;
    }
    let kept: Vec<bool> = record_combo
        .iter()
        .map(|combo| sizes[&class[*combo]] >= k)
        .collect();
    let texts: Vec<Vec<String>> = generalised_text
        .into_iter()
        .zip(&node)
        .map(|(mut per_level, level)| per_level.swap_remove(*level))
        .collect();
    Anonymised {
        levels: node,
        codes,
        texts,
        kept,
        suppressed: stats.suppressed,
        min_class: stats.min_class,
        classes: stats.classes,
    }
}

/// Every node of the lattice (one level per quasi-identifier).
fn lattice(qis: &[QuasiIdentifier<'_>]) -> Vec<Vec<usize>> {
    let mut nodes = vec![Vec::new()];
    for q in qis {
        nodes = nodes
            .into_iter()
            .flat_map(|prefix| {
                (0..q.levels).map(move |l| {
                    let mut node = prefix.clone();
                    node.push(l);
                    node
                })
            })
            .collect();
    }
    nodes
}

/// ARX's prosecutor-risk measures of a released table, from the sizes of its
/// equivalence classes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ProsecutorRisk {
    pub records: usize,
    pub classes: usize,
    /// The smallest class: the k the table reaches.
    pub k: usize,
    /// 1 / smallest class.
    pub highest: f64,
    /// Records whose risk 1/class size exceeds 1/k_target.
    pub records_at_risk: usize,
    /// Classes / records.
    pub average: f64,
}

/// The prosecutor risks of a table whose equivalence classes have these sizes.
pub fn prosecutor_risk(class_sizes: &[usize], k_target: usize) -> ProsecutorRisk {
    let records: usize = class_sizes.iter().sum();
    let classes = class_sizes.iter().filter(|s| **s > 0).count();
    let k = class_sizes
        .iter()
        .copied()
        .filter(|s| *s > 0)
        .min()
        .unwrap_or(0);
    ProsecutorRisk {
        records,
        classes,
        k,
        highest: if k == 0 { 0.0 } else { 1.0 / k as f64 },
        records_at_risk: class_sizes.iter().filter(|s| **s < k_target).sum(),
        average: if records == 0 {
            0.0
        } else {
            classes as f64 / records as f64
        },
    }
}

/// The hierarchies of the analyst zone's quasi-identifiers (level 0: as read).
pub mod hierarchy {
    /// Département → its région → FR.
    pub fn departement(v: &str, level: usize) -> String {
        match level {
            0 => v.to_owned(),
            1 => operational::departement(v)
                .map_or_else(|| "NON_RENSEIGNE".to_owned(), |d| format!("R{}", d.region)),
            _ => "FR".to_owned(),
        }
    }

    /// Month `AAAA-MM` → quarter `AAAA-T1` → year `AAAA`.
    pub fn mois(v: &str, level: usize) -> String {
        let quarter = |m: &str| m.parse::<u32>().map_or(0, |m| m.div_ceil(3));
        match (level, v.split_once('-')) {
            (0, _) => v.to_owned(),
            (1, Some((y, m))) => format!("{y}-T{}", quarter(m)),
            (_, Some((y, _))) => y.to_owned(),
            _ => v.to_owned(),
        }
    }

    /// The age bands of INDICATORS.md → minors / 18-34 / 35-54 / 55+ → all.
    pub fn tranche_age(v: &str, level: usize) -> String {
        match level {
            0 => v.to_owned(),
            1 => match v {
                "0-2" | "3-17" => "0-17",
                "18-24" | "25-34" => "18-34",
                "35-44" | "45-54" => "35-54",
                "55-64" | "65+" => "55+",
                _ => "NON_RENSEIGNE",
            }
            .to_owned(),
            _ => "*".to_owned(),
        }
    }

    /// A value kept or hidden (sex).
    pub fn masque(v: &str, level: usize) -> String {
        if level == 0 {
            v.to_owned()
        } else {
            "*".to_owned()
        }
    }

    /// Composition → alone / single parent / couple / group (minors and unknown kept) → all.
    pub fn composition(v: &str, level: usize) -> String {
        match level {
            0 => v.to_owned(),
            1 => match v {
                "HOMME_SEUL" | "FEMME_SEULE" => "PERSONNE_SEULE",
                "HOMME_SEUL_AVEC_ENFANTS" | "FEMME_SEULE_AVEC_ENFANTS" => "PARENT_SEUL",
                "COUPLE_SANS_ENFANT" | "COUPLE_AVEC_ENFANTS" => "COUPLE",
                "GROUPE_SANS_ENFANT" | "GROUPE_AVEC_ENFANTS" => "GROUPE",
                other => other,
            }
            .to_owned(),
            _ => "*".to_owned(),
        }
    }

    /// Nationality → French / foreign / unknown → all.
    pub fn nationalite(v: &str, level: usize) -> String {
        match level {
            0 => v.to_owned(),
            1 => match v {
                "FRANCAISE" => "FRANCAISE",
                "UE" | "HORS_UE" | "APATRIDE" => "ETRANGERE",
                _ => "NON_RENSEIGNE",
            }
            .to_owned(),
            _ => "*".to_owned(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn region(v: &str, level: usize) -> String {
        match level {
            0 => v.to_owned(),
            1 => match v {
                "75" | "93" => "11".into(),
                _ => "75R".into(),
            },
            _ => "*".into(),
        }
    }

    fn star(v: &str, level: usize) -> String {
        if level == 0 { v.to_owned() } else { "*".into() }
    }

    #[test]
    fn no_generalisation_when_every_class_is_large_enough() {
        let dep: Vec<&str> = (0..40).map(|i| if i < 20 { "75" } else { "93" }).collect();
        let sex: Vec<&str> = (0..40)
            .map(|i| if i % 2 == 0 { "F" } else { "M" })
            .collect();
        let qis = [
            QuasiIdentifier {
                name: "departement",
                values: &dep,
                generalise: region,
                levels: 3,
                weight: 3.0,
            },
            QuasiIdentifier {
                name: "sexe",
                values: &sex,
                generalise: star,
                levels: 2,
                weight: 1.0,
            },
        ];
        // Classes (75,F) (75,M) (93,F) (93,M) hold 10 records each.
        let out = k_anonymise(&qis, 10, 0.0);
        assert_eq!(out.levels, vec![0, 0]);
        assert_eq!((out.suppressed, out.min_class, out.classes), (0, 10, 4));
        // At k = 11 one of the two must go: the sex weighs less.
        let out = k_anonymise(&qis, 11, 0.0);
        assert_eq!(out.levels, vec![0, 1]);
        assert_eq!((out.suppressed, out.min_class, out.classes), (0, 20, 2));
        assert!((0..40).all(|r| out.value(1, r) == "*"));
        assert_eq!(out.value(0, 0), "75");
        assert_eq!(out.value(0, 39), "93");
    }

    #[test]
    fn a_rare_record_is_suppressed_rather_than_coarsening_everyone() {
        // 99 records in 75, one in 23: at k = 5, suppressing the lone 23 (1 %) keeps the
        // département; without any suppression allowed, the département must become FR.
        let mut dep = vec!["75"; 99];
        dep.push("23");
        let qis = [QuasiIdentifier {
            name: "departement",
            values: &dep,
            generalise: region,
            levels: 3,
            weight: 2.0,
        }];
        let out = k_anonymise(&qis, 5, 0.01);
        assert_eq!(out.levels, vec![0]);
        assert_eq!(out.suppressed, 1);
        assert!(!out.kept[99] && out.kept[..99].iter().all(|k| *k));
        assert_eq!(out.kept_records(), 99);
        let out = k_anonymise(&qis, 5, 0.0);
        assert_eq!(out.levels, vec![2]);
        assert_eq!((out.suppressed, out.min_class), (0, 100));
    }

    #[test]
    fn too_few_records_are_all_suppressed() {
        let dep = vec!["75"; 4];
        let qis = [QuasiIdentifier {
            name: "departement",
            values: &dep,
            generalise: region,
            levels: 3,
            weight: 2.0,
        }];
        let out = k_anonymise(&qis, 11, 0.01);
        assert_eq!(out.suppressed, 4);
        assert_eq!(out.kept_records(), 0);
        assert_eq!((out.min_class, out.classes), (0, 0));
    }

    #[test]
    fn hierarchies_climb_to_one_value() {
        use hierarchy::*;
        assert_eq!(departement("93", 0), "93");
        assert_eq!(departement("93", 1), "R11");
        assert_eq!(departement("93", 2), "FR");
        assert_eq!(mois("2025-03", 1), "2025-T1");
        assert_eq!(mois("2025-10", 1), "2025-T4");
        assert_eq!(mois("2025-10", 2), "2025");
        assert_eq!(tranche_age("3-17", 1), "0-17");
        assert_eq!(tranche_age("65+", 1), "55+");
        assert_eq!(composition("FEMME_SEULE_AVEC_ENFANTS", 1), "PARENT_SEUL");
        assert_eq!(composition("MINEUR_ISOLE", 1), "MINEUR_ISOLE");
        assert_eq!(nationalite("APATRIDE", 1), "ETRANGERE");
        for f in [
            departement,
            mois,
            tranche_age,
            masque,
            composition,
            nationalite,
        ] {
            assert_eq!(f("X-1", 0), "X-1");
        }
    }

    #[test]
    fn prosecutor_risks_follow_arx() {
        let r = prosecutor_risk(&[11, 20, 5, 64], 11);
        assert_eq!(r.records, 100);
        assert_eq!(r.classes, 4);
        assert_eq!(r.k, 5);
        assert!((r.highest - 0.2).abs() < 1e-12);
        assert_eq!(r.records_at_risk, 5);
        assert!((r.average - 0.04).abs() < 1e-12);
    }
}
