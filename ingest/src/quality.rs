//! The rules of SOURCE_SCHEMA.md's last section, applied to what was read before
//! anything is anonymised or stored.
//!
//! Quarantined rows leave the tables (they enter neither the detail zone nor any
//! count); rows that reference a quarantined request, household, orientation or
//! dispositif follow it (PARENT_QUARANTAINE). Kept breaches are repaired where the
//! rule says so (unknown optional codes → `INCONNU`, missing motif → `NON_RENSEIGNE`)
//! and counted. Counts are per rule, table and SIAO (the row's département when it has
//! one, else `INCONNU`), never with an identifier or a value.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, BooleanArray, Date32Array, Int64Array, StringArray, StringBuilder,
    TimestampMicrosecondArray,
};
use arrow::compute::filter_record_batch;
use arrow::error::ArrowError;
use arrow::record_batch::RecordBatch;
use chrono::{DateTime, NaiveDate};
use chrono_tz::Europe::Paris;

/// Hash maps keyed by ids: a fast hasher (ids are not attacker-chosen keys here, and
/// the rules look up tens of millions of them on a national read).
type FastMap<K, V> = HashMap<K, V, foldhash::fast::RandomState>;
type FastSet<K> = HashSet<K, foldhash::fast::RandomState>;

/// A set of ids, looked up tens of millions of times on a national read. Source ids
/// come from sequences (per département: `90010000000001`…), so they are held as
/// bitmaps of 65 536 ids found by the ids' high bits: one small map lookup and one bit
/// test, where a hash set of millions of ids misses the cache at nearly every lookup.
/// Ids too scattered for that (more bitmap words than ids) go to a hash set.
enum IdSet {
    Chunked(FastMap<i64, Box<[u64; IdSet::WORDS]>>),
    Sparse(FastSet<i64>),
}

impl IdSet {
    const BITS: u32 = 16;
    const WORDS: usize = (1 << Self::BITS) / 64;

    fn new(ids: impl Iterator<Item = i64> + Clone) -> Self {
        let mut chunks: FastMap<i64, Box<[u64; Self::WORDS]>> = FastMap::default();
        let mut n = 0usize;
        for id in ids.clone() {
            n += 1;
            let low = (id & ((1 << Self::BITS) - 1)) as usize;
            chunks
                .entry(id >> Self::BITS)
                .or_insert_with(|| Box::new([0; Self::WORDS]))[low / 64] |= 1 << (low % 64);
            if chunks.len() * Self::WORDS > 2 * n + 4 * Self::WORDS {
                return IdSet::Sparse(ids.collect());
            }
        }
        IdSet::Chunked(chunks)
    }

    fn contains(&self, id: i64) -> bool {
        match self {
            IdSet::Chunked(chunks) => chunks.get(&(id >> Self::BITS)).is_some_and(|bits| {
                let low = (id & ((1 << Self::BITS) - 1)) as usize;
                bits[low / 64] & (1 << (low % 64)) != 0
            }),
            IdSet::Sparse(set) => set.contains(&id),
        }
    }
}

/// Every rule, as named in SOURCE_SCHEMA.md, with what the ingest does.
pub const RULES: &[(&str, Action)] = &[
    ("CHAMP_OBLIGATOIRE", Action::Quarantine),
    ("CODE_INCONNU_OBLIGATOIRE", Action::Quarantine),
    ("CODE_INCONNU", Action::Keep),
    ("REFERENCE_ORPHELINE", Action::Quarantine),
    ("DATES_INCOHERENTES", Action::Quarantine),
    ("STATUT_SANS_DATE", Action::Quarantine),
    ("DOUBLON_115", Action::Quarantine),
    ("MOTIF_MANQUANT", Action::Keep),
    ("DEPARTEMENT_HORS_COG", Action::Keep),
    ("SEJOURS_CHEVAUCHANTS", Action::Keep),
    ("DEMANDE_SANS_PERSONNE", Action::Keep),
    ("PARENT_QUARANTAINE", Action::Quarantine),
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Quarantine,
    Keep,
}

/// Where a row belongs in the data-quality report: its SIAO (the row's département, or
/// that of the request, household or dispositif it references; `INCONNU` otherwise) and
/// its month (`AAAA-MM` of the row's event date, or of its request's; `INCONNU` for rows
/// without a date).
///
/// One shared value per distinct (SIAO, month): a national read has millions of rows
/// and a few thousand distinct places, so each row holds one pointer (8 bytes, one
/// reference count), not two strings.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Place(Arc<PlaceText>);

#[derive(Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
struct PlaceText {
    siao: Box<str>,
    mois: Box<str>,
}

impl Place {
    pub fn new(siao: &str, mois: &str) -> Self {
        Place(Arc::new(PlaceText {
            siao: siao.into(),
            mois: mois.into(),
        }))
    }

    pub fn siao(&self) -> &str {
        &self.0.siao
    }

    pub fn mois(&self) -> &str {
        &self.0.mois
    }
}

/// One shared [`Place`] per distinct (SIAO, month) text, found by borrowed texts (by
/// SIAO, then month) without allocating.
#[derive(Default)]
pub struct Places(FastMap<Box<str>, FastMap<Box<str>, Place>>);

impl Places {
    pub fn get(&mut self, siao: &str, mois: &str) -> Place {
        if let Some(place) = self.0.get(siao).and_then(|months| months.get(mois)) {
            return place.clone();
        }
        self.0
            .entry(siao.into())
            .or_default()
            .entry(mois.into())
            .or_insert_with(|| Place::new(siao, mois))
            .clone()
    }
}

/// One shared copy of each distinct text.
#[derive(Default)]
pub struct Interner(FastMap<Box<str>, Arc<str>>);

impl Interner {
    pub fn get(&mut self, text: &str) -> Arc<str> {
        if let Some(shared) = self.0.get(text) {
            return shared.clone();
        }
        let shared: Arc<str> = Arc::from(text);
        self.0.insert(text.into(), shared.clone());
        shared
    }
}

const INCONNU: &str = "INCONNU";

/// One quarantined row: its table, its source id (in memory only: the lake stores its
/// pseudonym), the rule that put it there and its place.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuarantinedRow {
    pub table: &'static str,
    pub id: i64,
    pub rule: &'static str,
    pub place: Place,
}

/// Breaches found in one run.
#[derive(Debug, Default, Clone)]
pub struct QualityReport {
    /// (rule, table, place) → rows.
    pub counts: BTreeMap<(&'static str, &'static str, Place), u64>,
    /// (table, place) → rows read from the source (before quarantine).
    pub read: BTreeMap<(&'static str, Place), u64>,
    /// Completeness of the fields the indicators use: (measure, table, place) → rows.
    pub completeness: BTreeMap<(&'static str, &'static str, Place), u64>,
    /// Every quarantined row.
    pub quarantined_rows: Vec<QuarantinedRow>,
    /// Per table, row by row in the order of the batches given: the row's place and
    /// what was counted on it. The counts above are their sums; an incremental run
    /// keeps them to take a row's old contribution out of the report.
    pub rows: HashMap<&'static str, RowFacts>,
}

/// The place of each row of a table and the facts counted on it ([`Fact`] codes).
#[derive(Debug, Default, Clone)]
pub struct RowFacts {
    pub places: Vec<Place>,
    pub facts: Vec<Vec<u8>>,
}

/// The completeness measures of the report.
pub const MEASURES: &[&str] = &[
    "AVEC_DATE_NAISSANCE",
    "NON_POURVUE",
    "NON_POURVUE_AVEC_MOTIF",
];

/// What a fact code means: a rule (of [`RULES`]) or a completeness measure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fact {
    Rule(&'static str),
    Measure(&'static str),
}

/// The code of a rule or measure, as stored per row.
pub fn fact_code(fact: Fact) -> u8 {
    match fact {
        Fact::Rule(r) => RULES.iter().position(|(x, _)| *x == r).expect("a rule") as u8,
        Fact::Measure(m) => 100 + MEASURES.iter().position(|x| *x == m).expect("a measure") as u8,
    }
}

/// The rule or measure a code stands for.
pub fn fact_of(code: u8) -> Option<Fact> {
    if code >= 100 {
        MEASURES
            .get((code - 100) as usize)
            .map(|m| Fact::Measure(m))
    } else {
        RULES.get(code as usize).map(|(r, _)| Fact::Rule(r))
    }
}

impl QualityReport {
    fn note(&mut self, table: &'static str, row: usize, code: u8) {
        if let Some(rows) = self.rows.get_mut(table)
            && let Some(facts) = rows.facts.get_mut(row)
        {
            facts.push(code);
        }
    }

    fn add(&mut self, rule: &'static str, table: &'static str, row: usize, place: &Place) {
        *self.counts.entry((rule, table, place.clone())).or_default() += 1;
        self.note(table, row, fact_code(Fact::Rule(rule)));
    }

    fn measure(&mut self, measure: &'static str, table: &'static str, row: usize, place: &Place) {
        *self
            .completeness
            .entry((measure, table, place.clone()))
            .or_default() += 1;
        self.note(table, row, fact_code(Fact::Measure(measure)));
    }

    /// Rows per rule, all tables and SIAO together.
    pub fn by_rule(&self) -> BTreeMap<&'static str, u64> {
        let mut out = BTreeMap::new();
        for ((rule, _, _), n) in &self.counts {
            *out.entry(*rule).or_default() += n;
        }
        out
    }

    /// Rows that left the tables.
    pub fn quarantined(&self) -> u64 {
        self.counts
            .iter()
            .filter(|((rule, _, _), _)| {
                RULES
                    .iter()
                    .any(|(r, a)| r == rule && *a == Action::Quarantine)
            })
            .map(|(_, n)| n)
            .sum()
    }
}

const TYPES_DISPOSITIF: &[&str] = &[
    "CHRS",
    "HORS_CHRS",
    "HOTEL",
    "RHVS",
    "AUTRE_HEBERGEMENT",
    "PENSION_FAMILLE",
    "RESIDENCE_ACCUEIL",
    "FJT",
    "FTM",
    "RS_CLASSIQUE",
    "IML_LOCATION",
    "IML_MANDAT",
    "UN_CHEZ_SOI",
    "MARAUDE",
    "ACCUEIL_JOUR",
    "HALTE_NUIT",
    "SAO",
    "AVDL",
    "PASH",
    "AUTRE",
];

/// Mandatory coded fields: an unknown code quarantines the row.
const MANDATORY_CODES: &[(&str, &str, &[&str])] = &[
    ("demande", "type", &["URGENCE", "INSERTION"]),
    (
        "demande",
        "statut",
        &["EN_COURS", "POURVUE", "NON_POURVUE", "ANNULEE"],
    ),
    (
        "orientation",
        "statut",
        &[
            "EN_ATTENTE",
            "ACCEPTEE",
            "REFUSEE_STRUCTURE",
            "REFUSEE_USAGER",
            "ANNULEE",
        ],
    ),
    (
        "dispositif",
        "categorie",
        &[
            "HEBERGEMENT",
            "LOGEMENT_ADAPTE",
            "IML",
            "VEILLE_SOCIALE",
            "ACCOMPAGNEMENT",
            "PREMIER_ACCUEIL",
        ],
    ),
];

const ETHOS: &[&str] = &[
    "ETHOS_1", "ETHOS_2", "ETHOS_3", "ETHOS_4", "ETHOS_5", "ETHOS_6", "ETHOS_7", "ETHOS_8",
    "ETHOS_9", "ETHOS_10", "ETHOS_11", "ETHOS_12", "ETHOS_13",
];

/// Other coded fields: an unknown code is replaced by INCONNU and the row kept.
const OPTIONAL_CODES: &[(&str, &str, &[&str])] = &[
    ("dispositif", "type", TYPES_DISPOSITIF),
    ("dispositif", "volet", &["URGENCE", "INSERTION"]),
    ("personne", "sexe", &["F", "M", "INCONNU"]),
    (
        "personne",
        "nationalite",
        &["FRANCAISE", "UE", "HORS_UE", "APATRIDE", "INCONNU"],
    ),
    (
        "menage_personne",
        "role",
        &[
            "DEMANDEUR_PRINCIPAL",
            "CONJOINT",
            "ENFANT",
            "AUTRE_ADULTE",
            "AUTRE_MINEUR",
        ],
    ),
    ("evaluation", "type", &["FLASH", "APPROFONDIE"]),
    ("evaluation", "situation_ethos", ETHOS),
    (
        "demande",
        "canal",
        &[
            "APPEL_115",
            "MARAUDE",
            "ACCUEIL_JOUR",
            "PRESCRIPTEUR",
            "AUTRE",
        ],
    ),
    (
        "demande",
        "motif_non_pourvue",
        &[
            "ABSENCE_PLACE",
            "PLACE_INADAPTEE_COMPOSITION",
            "PLACE_INADAPTEE_SANTE",
            "REFUS_USAGER",
            "AUTRE",
        ],
    ),
    ("demande", "preconisation", TYPES_DISPOSITIF),
    (
        "orientation",
        "motif_refus",
        &[
            "PUBLIC_INADAPTE",
            "CAPACITE",
            "CONDITIONS_REFUSEES",
            "LOCALISATION",
            "AUTRE",
        ],
    ),
    (
        "liste_attente",
        "motif_desinscription",
        &["ORIENTATION_ACTEE", "ANNULATION_DEMANDE", "REFUS", "AUTRE"],
    ),
    (
        "prise_en_charge",
        "motif_sortie",
        &[
            "ACCES_LOGEMENT",
            "LOGEMENT_ADAPTE",
            "AUTRE_HEBERGEMENT",
            "FIN_NUITEE_115",
            "EXCLUSION",
            "DEPART_VOLONTAIRE",
            "DECES",
            "INCONNU",
        ],
    ),
];

const MANDATORY_FIELDS: &[(&str, &[&str])] = &[
    (
        "demande",
        &[
            "menage_id",
            "type",
            "statut",
            "siao_departement",
            "date_demande",
        ],
    ),
    (
        "prise_en_charge",
        &["menage_id", "dispositif_id", "date_entree", "nb_personnes"],
    ),
    ("dispositif", &["departement", "categorie", "type"]),
    (
        "groupe_places",
        &["dispositif_id", "nb_places", "date_debut"],
    ),
    ("orientation", &["demande_id", "date_orientation", "statut"]),
    ("demande_personne", &["demande_id", "personne_id"]),
    (
        "menage_personne",
        &["menage_id", "personne_id", "date_debut"],
    ),
];

/// References that must exist: (table, column, referenced table).
const REFERENCES: &[(&str, &str, &str)] = &[
    ("demande", "menage_id", "menage"),
    ("demande_personne", "demande_id", "demande"),
    ("demande_personne", "personne_id", "personne"),
    ("orientation", "demande_id", "demande"),
    ("prise_en_charge", "dispositif_id", "dispositif"),
    ("prise_en_charge", "demande_id", "demande"),
    ("prise_en_charge", "menage_id", "menage"),
    ("groupe_places", "dispositif_id", "dispositif"),
    ("menage_personne", "menage_id", "menage"),
    ("menage_personne", "personne_id", "personne"),
];

/// A quarantined parent takes its children: (child table, column, parent table), in
/// an order where parents come first.
const PARENTS: &[(&str, &str, &str)] = &[
    ("groupe_places", "dispositif_id", "dispositif"),
    ("demande", "menage_id", "menage"),
    ("demande_personne", "demande_id", "demande"),
    ("orientation", "demande_id", "demande"),
    ("orientation", "dispositif_id", "dispositif"),
    ("liste_attente", "demande_id", "demande"),
    ("liste_attente", "dispositif_id", "dispositif"),
    ("prise_en_charge", "demande_id", "demande"),
    ("prise_en_charge", "menage_id", "menage"),
    ("prise_en_charge", "orientation_id", "orientation"),
    ("prise_en_charge", "dispositif_id", "dispositif"),
    ("menage_personne", "menage_id", "menage"),
    ("evaluation", "menage_id", "menage"),
];

/// The schema's own name for a table (static, for the counts).
fn static_name(name: &str) -> &'static str {
    operational::table(name).map_or("autre", |t| t.name)
}

fn column<'a>(batch: &'a RecordBatch, name: &str) -> Option<&'a ArrayRef> {
    batch.schema().index_of(name).ok().map(|i| batch.column(i))
}

fn ints(batch: &RecordBatch, name: &str) -> Option<Int64Array> {
    column(batch, name).and_then(|c| c.as_any().downcast_ref::<Int64Array>().cloned())
}

fn texts(batch: &RecordBatch, name: &str) -> Option<StringArray> {
    column(batch, name).and_then(|c| c.as_any().downcast_ref::<StringArray>().cloned())
}

fn dates(batch: &RecordBatch, name: &str) -> Option<Date32Array> {
    column(batch, name).and_then(|c| c.as_any().downcast_ref::<Date32Array>().cloned())
}

/// Per table: whether each row is quarantined, and the first rule that put it there
/// (one byte per row: 0 for a row kept, else 1 + the rule's index in [`RULES`]).
struct Verdicts {
    quarantined: FastMap<&'static str, Vec<u8>>,
}

impl Verdicts {
    fn new(tables: &BTreeMap<String, RecordBatch>) -> Self {
        Verdicts {
            quarantined: tables
                .iter()
                .map(|(name, b)| (static_name(name), vec![0; b.num_rows()]))
                .collect(),
        }
    }

    fn mark(&mut self, table: &'static str, row: usize, rule: &'static str) -> bool {
        let rows = self.quarantined.get_mut(table).expect("table");
        if rows[row] == 0 {
            rows[row] = 1 + fact_code(Fact::Rule(rule));
            true
        } else {
            false
        }
    }

    fn is(&self, table: &str, row: usize) -> bool {
        self.quarantined
            .get(table)
            .is_some_and(|rows| rows[row] != 0)
    }

    /// The rule that quarantined a row, if one did.
    fn rule(code: u8) -> Option<&'static str> {
        code.checked_sub(1)
            .and_then(|k| RULES.get(k as usize))
            .map(|(r, _)| *r)
    }
}

/// The value of each key in `map`, `INCONNU` for a null or unknown key.
fn look_up(keys: &Int64Array, map: &FastMap<i64, Arc<str>>, unknown: &Arc<str>) -> Vec<Arc<str>> {
    (0..keys.len())
        .map(|i| {
            (!keys.is_null(i))
                .then(|| map.get(&keys.value(i)))
                .flatten()
                .unwrap_or(unknown)
                .clone()
        })
        .collect()
}

/// What the places of several tables share: the text interner and, per parent table,
/// the map from its ids to their SIAO or month (built once, used by every child).
#[derive(Default)]
struct PlaceCache {
    interner: Interner,
    /// Places by the addresses of their interned texts.
    places: FastMap<(usize, usize), Place>,
    siao: FastMap<&'static str, FastMap<i64, Arc<str>>>,
    months: FastMap<&'static str, FastMap<i64, Arc<str>>>,
}

/// The map from a table's ids to the text of one of its columns.
fn id_map(
    batch: &RecordBatch,
    column_name: &str,
    interner: &mut Interner,
) -> Option<FastMap<i64, Arc<str>>> {
    let (ids, values) = (ints(batch, "id")?, texts(batch, column_name)?);
    Some(
        (0..ids.len())
            .filter(|&i| !ids.is_null(i) && !values.is_null(i))
            .map(|i| (ids.value(i), interner.get(values.value(i))))
            .collect(),
    )
}

/// The SIAO of each row of a table, for the counts.
fn siao_of(
    tables: &BTreeMap<String, RecordBatch>,
    table: &str,
    cache: &mut PlaceCache,
) -> Vec<Arc<str>> {
    let Some(batch) = tables.get(table) else {
        return Vec::new();
    };
    let n = batch.num_rows();
    let unknown = cache.interner.get(INCONNU);
    let own = ["siao_departement", "departement"]
        .iter()
        .find_map(|c| texts(batch, c));
    if let Some(own) = own {
        return (0..n)
            .map(|i| {
                if own.is_null(i) {
                    unknown.clone()
                } else {
                    cache.interner.get(own.value(i))
                }
            })
            .collect();
    }
    let mut parent_map = |parent: &'static str, column_name: &str| -> bool {
        if cache.siao.contains_key(parent) {
            return true;
        }
        match tables
            .get(parent)
            .and_then(|p| id_map(p, column_name, &mut cache.interner))
        {
            Some(map) => {
                cache.siao.insert(parent, map);
                true
            }
            None => false,
        }
    };
    // A person: through a household it belongs to (its first membership).
    if table == "personne"
        && let (Some(ids), Some(mp)) = (ints(batch, "id"), tables.get("menage_personne"))
        && let (Some(mp_p), Some(mp_m)) = (ints(mp, "personne_id"), ints(mp, "menage_id"))
        && parent_map("menage", "siao_departement")
    {
        let households = &cache.siao["menage"];
        let mut of_person: FastMap<i64, Arc<str>> = FastMap::default();
        for i in 0..mp.num_rows() {
            if mp_p.is_null(i) || mp_m.is_null(i) {
                continue;
            }
            if let Some(dep) = households.get(&mp_m.value(i)) {
                of_person
                    .entry(mp_p.value(i))
                    .or_insert_with(|| dep.clone());
            }
        }
        return look_up(&ids, &of_person, &unknown);
    }
    // Through the request, the household or the dispositif referenced.
    for (column_name, parent, parent_col) in [
        ("demande_id", "demande", "siao_departement"),
        ("dispositif_id", "dispositif", "departement"),
        ("menage_id", "menage", "siao_departement"),
    ] {
        let Some(refs) = ints(batch, column_name) else {
            continue;
        };
        if !parent_map(parent, parent_col) {
            continue;
        }
        return look_up(&refs, &cache.siao[parent], &unknown);
    }
    vec![unknown; n]
}

/// The column of each table's own event date, when it has one.
const EVENT_DATES: &[(&str, &str)] = &[
    ("demande", "date_demande"),
    ("prise_en_charge", "date_entree"),
    ("orientation", "date_orientation"),
    ("liste_attente", "date_inscription"),
    ("evaluation", "date_evaluation"),
    ("menage", "date_creation"),
    ("menage_personne", "date_debut"),
];

/// The shared `AAAA-MM` text of each month met.
#[derive(Default)]
struct Months(FastMap<(i32, u32), Arc<str>>);

impl Months {
    fn of(&mut self, date: NaiveDate, interner: &mut Interner) -> Arc<str> {
        use chrono::Datelike;
        self.0
            .entry((date.year(), date.month()))
            .or_insert_with(|| interner.get(&format!("{:04}-{:02}", date.year(), date.month())))
            .clone()
    }
}

/// The month (`AAAA-MM`, Europe/Paris for timestamps) of a table's own event date.
fn own_months(batch: &RecordBatch, table: &str, interner: &mut Interner) -> Option<Vec<Arc<str>>> {
    let (_, field) = EVENT_DATES.iter().find(|(t, _)| *t == table)?;
    let col = column(batch, field)?;
    let unknown = interner.get(INCONNU);
    let mut months = Months::default();
    if let Some(d) = col.as_any().downcast_ref::<Date32Array>() {
        return Some(
            (0..d.len())
                .map(|i| {
                    d.value_as_date(i)
                        .filter(|_| !d.is_null(i))
                        .map_or_else(|| unknown.clone(), |d| months.of(d, interner))
                })
                .collect(),
        );
    }
    let t = col.as_any().downcast_ref::<TimestampMicrosecondArray>()?;
    let mut days = ParisDays::default();
    Some(
        (0..t.len())
            .map(|i| {
                (!t.is_null(i))
                    .then(|| days.of(t.value(i)))
                    .flatten()
                    .map_or_else(|| unknown.clone(), |d| months.of(d, interner))
            })
            .collect(),
    )
}

/// The month of each row of a table: its own event date, else its request's.
fn month_of(
    tables: &BTreeMap<String, RecordBatch>,
    table: &str,
    cache: &mut PlaceCache,
) -> Vec<Arc<str>> {
    let Some(batch) = tables.get(table) else {
        return Vec::new();
    };
    if let Some(own) = own_months(batch, table, &mut cache.interner) {
        return own;
    }
    let unknown = cache.interner.get(INCONNU);
    if let (Some(refs), Some(d)) = (ints(batch, "demande_id"), tables.get("demande")) {
        if !cache.months.contains_key("demande")
            && let (Some(ids), Some(months)) =
                (ints(d, "id"), own_months(d, "demande", &mut cache.interner))
        {
            let map: FastMap<i64, Arc<str>> = (0..d.num_rows())
                .filter(|&i| !ids.is_null(i))
                .map(|i| (ids.value(i), months[i].clone()))
                .collect();
            cache.months.insert("demande", map);
        }
        if let Some(map) = cache.months.get("demande") {
            return look_up(&refs, map, &unknown);
        }
    }
    vec![unknown; batch.num_rows()]
}

/// The place of each row of a table.
fn places_of(
    tables: &BTreeMap<String, RecordBatch>,
    table: &str,
    cache: &mut PlaceCache,
) -> Vec<Place> {
    let siao = siao_of(tables, table, cache);
    let mois = month_of(tables, table, cache);
    // Both texts are interned: a place is found by their two addresses.
    let address = |text: &Arc<str>| Arc::as_ptr(text).cast::<u8>() as usize;
    siao.iter()
        .zip(&mois)
        .map(|(s, m)| {
            cache
                .places
                .entry((address(s), address(m)))
                .or_insert_with(|| Place::new(s, m))
                .clone()
        })
        .collect()
}

/// Applies the rules in place; returns what was found.
pub fn apply(
    tables: &mut BTreeMap<String, RecordBatch>,
    cog: &dyn Fn(&str) -> bool,
) -> Result<QualityReport, ArrowError> {
    let mut report = QualityReport::default();
    let mut verdicts = Verdicts::new(tables);
    let mut cache = PlaceCache::default();
    let siao: HashMap<&'static str, Vec<Place>> = tables
        .keys()
        .map(|t| (static_name(t), places_of(tables, t, &mut cache)))
        .collect();
    drop(cache);
    for (table, places) in &siao {
        let mut read: FastMap<&Place, u64> = FastMap::default();
        for place in places {
            *read.entry(place).or_default() += 1;
        }
        for (place, n) in read {
            *report.read.entry((table, place.clone())).or_default() += n;
        }
        // The places join the facts once the rules are done with them.
        report.rows.insert(
            table,
            RowFacts {
                places: Vec::new(),
                facts: vec![Vec::new(); places.len()],
            },
        );
    }
    // Completeness of the fields the indicators use, on the rows read.
    if let Some(p) = tables.get("personne")
        && let Some(birth) = dates(p, "date_naissance")
    {
        for (i, place) in siao["personne"].iter().enumerate() {
            if !birth.is_null(i) {
                report.measure("AVEC_DATE_NAISSANCE", "personne", i, place);
            }
        }
    }
    if let Some(d) = tables.get("demande")
        && let (Some(statut), Some(motif)) = (texts(d, "statut"), texts(d, "motif_non_pourvue"))
    {
        for (i, place) in siao["demande"].iter().enumerate() {
            if !statut.is_null(i) && statut.value(i) == "NON_POURVUE" {
                report.measure("NON_POURVUE", "demande", i, place);
                if !motif.is_null(i) {
                    report.measure("NON_POURVUE_AVEC_MOTIF", "demande", i, place);
                }
            }
        }
    }

    // CHAMP_OBLIGATOIRE.
    for (table, fields) in MANDATORY_FIELDS {
        let Some(batch) = tables.get(*table) else {
            continue;
        };
        for field in *fields {
            let Some(col) = column(batch, field) else {
                continue;
            };
            for i in 0..batch.num_rows() {
                if col.is_null(i) {
                    verdicts.mark(table, i, "CHAMP_OBLIGATOIRE");
                }
            }
        }
    }
    // CODE_INCONNU_OBLIGATOIRE.
    for (table, field, codes) in MANDATORY_CODES {
        let Some(values) = tables.get(*table).and_then(|b| texts(b, field)) else {
            continue;
        };
        for i in 0..values.len() {
            if !values.is_null(i) && !codes.contains(&values.value(i)) {
                verdicts.mark(table, i, "CODE_INCONNU_OBLIGATOIRE");
            }
        }
    }
    // REFERENCE_ORPHELINE: the referenced row does not exist in the source at all.
    let existing: HashMap<&str, IdSet> = ["menage", "demande", "personne", "dispositif"]
        .iter()
        .map(|t| {
            let ids = tables.get(*t).and_then(|b| ints(b, "id"));
            let set = match &ids {
                Some(a) => IdSet::new(a.iter().flatten()),
                None => IdSet::new(std::iter::empty()),
            };
            (*t, set)
        })
        .collect();
    for (table, field, target) in REFERENCES {
        let Some(refs) = tables.get(*table).and_then(|b| ints(b, field)) else {
            continue;
        };
        for i in 0..refs.len() {
            if !refs.is_null(i) && !existing[target].contains(refs.value(i)) {
                verdicts.mark(table, i, "REFERENCE_ORPHELINE");
            }
        }
    }
    // DATES_INCOHERENTES.
    for (table, start, end) in [
        ("prise_en_charge", "date_entree", "date_sortie"),
        ("groupe_places", "date_debut", "date_fin"),
        ("menage_personne", "date_debut", "date_fin"),
    ] {
        let Some(batch) = tables.get(table) else {
            continue;
        };
        let (Some(a), Some(b)) = (dates(batch, start), dates(batch, end)) else {
            continue;
        };
        for i in 0..batch.num_rows() {
            if !a.is_null(i) && !b.is_null(i) && b.value(i) < a.value(i) {
                verdicts.mark(table, i, "DATES_INCOHERENTES");
            }
        }
    }
    // STATUT_SANS_DATE.
    if let Some(batch) = tables.get("demande")
        && let (Some(statut), Some(at)) = (texts(batch, "statut"), column(batch, "date_statut"))
    {
        for i in 0..batch.num_rows() {
            if !statut.is_null(i)
                && matches!(statut.value(i), "POURVUE" | "NON_POURVUE" | "ANNULEE")
                && at.is_null(i)
            {
                verdicts.mark("demande", i, "STATUT_SANS_DATE");
            }
        }
    }
    propagate(tables, &mut verdicts);
    doublons_115(tables, &mut verdicts);
    propagate(tables, &mut verdicts);

    // Count the quarantined rows, and list them.
    for (table, rows) in &verdicts.quarantined {
        let ids = tables.get(*table).and_then(|b| ints(b, "id"));
        for (i, code) in rows.iter().enumerate() {
            if let Some(rule) = Verdicts::rule(*code) {
                report.add(rule, table, i, &siao[table][i]);
                if let Some(ids) = &ids
                    && !ids.is_null(i)
                {
                    report.quarantined_rows.push(QuarantinedRow {
                        table,
                        id: ids.value(i),
                        rule,
                        place: siao[table][i].clone(),
                    });
                }
            }
        }
    }

    // Kept breaches, counted on the rows that stay.
    count_kept(tables, &verdicts, &siao, cog, &mut report);

    // Repairs, then the quarantined rows leave.
    for (name, batch) in tables.iter_mut() {
        let table = static_name(name);
        let mut repaired = batch.clone();
        for (t, field, codes) in OPTIONAL_CODES {
            if *t == table {
                repaired = replace_codes(&repaired, field, |v| {
                    (!codes.contains(&v)).then_some("INCONNU")
                })?;
            }
        }
        if table == "demande" {
            let statut = texts(&repaired, "statut");
            let motif = texts(&repaired, "motif_non_pourvue");
            if let (Some(statut), Some(motif)) = (statut, motif) {
                let mut b = StringBuilder::new();
                for i in 0..repaired.num_rows() {
                    if motif.is_null(i) && !statut.is_null(i) && statut.value(i) == "NON_POURVUE" {
                        b.append_value("NON_RENSEIGNE");
                    } else if motif.is_null(i) {
                        b.append_null();
                    } else {
                        b.append_value(motif.value(i));
                    }
                }
                repaired = with_column(&repaired, "motif_non_pourvue", Arc::new(b.finish()))?;
            }
        }
        let verdict = &verdicts.quarantined[table];
        // A table without a quarantined row is kept as it is, not copied.
        *batch = if verdict.iter().all(|v| *v == 0) {
            repaired
        } else {
            let keep: BooleanArray = verdict.iter().map(|v| Some(*v == 0)).collect();
            filter_record_batch(&repaired, &keep)?
        };
    }
    for (table, places) in siao {
        if let Some(rows) = report.rows.get_mut(table) {
            rows.places = places;
        }
    }
    Ok(report)
}

/// PARENT_QUARANTAINE until nothing changes.
fn propagate(tables: &BTreeMap<String, RecordBatch>, verdicts: &mut Verdicts) {
    loop {
        let mut changed = false;
        for (child, field, parent) in PARENTS {
            let (Some(c), Some(p)) = (tables.get(*child), tables.get(*parent)) else {
                continue;
            };
            let (Some(refs), Some(pid)) = (ints(c, field), ints(p, "id")) else {
                continue;
            };
            let gone: FastSet<i64> = (0..p.num_rows())
                .filter(|&i| verdicts.is(parent, i) && !pid.is_null(i))
                .map(|i| pid.value(i))
                .collect();
            if gone.is_empty() {
                continue;
            }
            for i in 0..refs.len() {
                if !refs.is_null(i) && gone.contains(&refs.value(i)) {
                    changed |= verdicts.mark(child, i, "PARENT_QUARANTAINE");
                }
            }
        }
        if !changed {
            break;
        }
    }
}

/// The Paris date of timestamps, remembered per UTC hour: since 1950 every change of
/// Paris's offset falls on a whole UTC hour, so one hour has one Paris date.
#[derive(Default)]
struct ParisDays(FastMap<i64, Option<NaiveDate>>);

impl ParisDays {
    /// 1950-01-01T00:00:00Z in microseconds.
    const SINCE: i64 = -631_152_000_000_000;
    const HOUR: i64 = 3_600_000_000;

    fn of(&mut self, micros: i64) -> Option<NaiveDate> {
        if micros < Self::SINCE {
            return paris_date(micros);
        }
        *self
            .0
            .entry(micros.div_euclid(Self::HOUR))
            .or_insert_with(|| paris_date(micros))
    }
}

fn paris_date(micros: i64) -> Option<NaiveDate> {
    DateTime::from_timestamp_micros(micros).map(|t| t.with_timezone(&Paris).date_naive())
}

/// DOUBLON_115: an URGENCE request (not ANNULEE) sharing a person with an URGENCE
/// request (not ANNULEE, not quarantined) of the same Paris date and SIAO that has a
/// smaller id: the larger id is quarantined.
fn doublons_115(tables: &BTreeMap<String, RecordBatch>, verdicts: &mut Verdicts) {
    let (Some(d), Some(links)) = (tables.get("demande"), tables.get("demande_personne")) else {
        return;
    };
    let (Some(id), Some(ty), Some(statut), Some(dep)) = (
        ints(d, "id"),
        texts(d, "type"),
        texts(d, "statut"),
        texts(d, "siao_departement"),
    ) else {
        return;
    };
    let Some(at) = column(d, "date_demande").and_then(|c| {
        c.as_any()
            .downcast_ref::<TimestampMicrosecondArray>()
            .cloned()
    }) else {
        return;
    };
    // The candidate requests: row and Paris date, by id.
    // Sized for every request up front: grown by doubling, the map and the pairs below
    // would touch about twice their final memory (fresh pages are costly on a VM).
    let mut candidates: FastMap<i64, (usize, NaiveDate)> =
        FastMap::with_capacity_and_hasher(d.num_rows(), Default::default());
    for i in 0..d.num_rows() {
        if verdicts.is("demande", i)
            || ty.is_null(i)
            || ty.value(i) != "URGENCE"
            || statut.is_null(i)
            || statut.value(i) == "ANNULEE"
            || at.is_null(i)
            || dep.is_null(i)
        {
            continue;
        }
        if let Some(night) = paris_date(at.value(i)) {
            candidates.insert(id.value(i), (i, night));
        }
    }
    let (Some(ld), Some(lp)) = (ints(links, "demande_id"), ints(links, "personne_id")) else {
        return;
    };
    // (person, night, SIAO, request) for every person of a candidate; sorted, each run
    // of one (person, night, SIAO) starts with its smallest request: the others are
    // duplicates of it.
    // Capacity for every link: only the pages written are ever touched.
    let mut pairs: Vec<(i64, NaiveDate, &str, i64, usize)> = Vec::with_capacity(links.num_rows());
    pairs.extend(
        (0..links.num_rows())
            .filter(|&i| !verdicts.is("demande_personne", i) && !ld.is_null(i) && !lp.is_null(i))
            .filter_map(|i| {
                let (row, night) = candidates.get(&ld.value(i))?;
                Some((lp.value(i), *night, dep.value(*row), ld.value(i), *row))
            }),
    );
    pairs.sort_unstable();
    let mut doubles = Vec::new();
    for (k, pair) in pairs.iter().enumerate() {
        if k > 0 {
            let before = &pairs[k - 1];
            if (before.0, before.1, before.2) == (pair.0, pair.1, pair.2) && before.3 < pair.3 {
                doubles.push(pair.4);
            }
        }
    }
    for row in doubles {
        verdicts.mark("demande", row, "DOUBLON_115");
    }
}

// Rows are addressed by index across several Arrow arrays and the SIAO list at once.
#[allow(clippy::needless_range_loop)]
fn count_kept(
    tables: &BTreeMap<String, RecordBatch>,
    verdicts: &Verdicts,
    siao: &HashMap<&'static str, Vec<Place>>,
    cog: &dyn Fn(&str) -> bool,
    report: &mut QualityReport,
) {
    for (table, field, codes) in OPTIONAL_CODES {
        let Some(values) = tables.get(*table).and_then(|b| texts(b, field)) else {
            continue;
        };
        for i in 0..values.len() {
            if !verdicts.is(table, i) && !values.is_null(i) && !codes.contains(&values.value(i)) {
                report.add("CODE_INCONNU", table, i, &siao[table][i]);
            }
        }
    }
    if let Some(d) = tables.get("demande") {
        let statut = texts(d, "statut");
        let motif = texts(d, "motif_non_pourvue");
        let dep = texts(d, "siao_departement");
        let id = ints(d, "id");
        let with_persons = tables
            .get("demande_personne")
            .and_then(|l| ints(l, "demande_id"))
            .map(|a| {
                IdSet::new(
                    (0..a.len())
                        .filter(|&i| !verdicts.is("demande_personne", i) && !a.is_null(i))
                        .map(|i| a.value(i)),
                )
            })
            .unwrap_or_else(|| IdSet::new(std::iter::empty()));
        for i in 0..d.num_rows() {
            if verdicts.is("demande", i) {
                continue;
            }
            let s = &siao["demande"][i];
            if let (Some(statut), Some(motif)) = (&statut, &motif)
                && !statut.is_null(i)
                && statut.value(i) == "NON_POURVUE"
                && motif.is_null(i)
            {
                report.add("MOTIF_MANQUANT", "demande", i, s);
            }
            if let Some(dep) = &dep
                && !dep.is_null(i)
                && !cog(dep.value(i))
            {
                report.add("DEPARTEMENT_HORS_COG", "demande", i, s);
            }
            if let Some(id) = &id
                && !with_persons.contains(id.value(i))
            {
                report.add("DEMANDE_SANS_PERSONNE", "demande", i, s);
            }
        }
    }
    if let Some(x) = tables.get("dispositif")
        && let Some(dep) = texts(x, "departement")
    {
        for i in 0..x.num_rows() {
            if !verdicts.is("dispositif", i) && !dep.is_null(i) && !cog(dep.value(i)) {
                report.add(
                    "DEPARTEMENT_HORS_COG",
                    "dispositif",
                    i,
                    &siao["dispositif"][i],
                );
            }
        }
    }
    // SEJOURS_CHEVAUCHANTS: a stay overlapping an earlier one (smaller id) of its household.
    if let Some(s) = tables.get("prise_en_charge")
        && let (Some(id), Some(menage), Some(entree), Some(sortie)) = (
            ints(s, "id"),
            ints(s, "menage_id"),
            dates(s, "date_entree"),
            dates(s, "date_sortie"),
        )
    {
        let mut by_household: FastMap<i64, Vec<(i64, i32, i32, usize)>> = FastMap::default();
        for i in 0..s.num_rows() {
            if verdicts.is("prise_en_charge", i) || menage.is_null(i) || entree.is_null(i) {
                continue;
            }
            let end = if sortie.is_null(i) {
                i32::MAX
            } else {
                sortie.value(i)
            };
            by_household.entry(menage.value(i)).or_default().push((
                id.value(i),
                entree.value(i),
                end,
                i,
            ));
        }
        for stays in by_household.values_mut() {
            if stays.len() < 2 {
                continue;
            }
            stays.sort_unstable();
            for (k, b) in stays.iter().enumerate() {
                if stays[..k].iter().any(|a| a.1 < b.2 && b.1 < a.2) {
                    report.add(
                        "SEJOURS_CHEVAUCHANTS",
                        "prise_en_charge",
                        b.3,
                        &siao["prise_en_charge"][b.3],
                    );
                }
            }
        }
    }
}

fn replace_codes(
    batch: &RecordBatch,
    field: &str,
    replace: impl Fn(&str) -> Option<&'static str>,
) -> Result<RecordBatch, ArrowError> {
    let Some(values) = texts(batch, field) else {
        return Ok(batch.clone());
    };
    if (0..values.len()).all(|i| values.is_null(i) || replace(values.value(i)).is_none()) {
        return Ok(batch.clone());
    }
    let mut b = StringBuilder::new();
    for i in 0..values.len() {
        if values.is_null(i) {
            b.append_null();
        } else {
            let v = values.value(i);
            b.append_value(replace(v).unwrap_or(v));
        }
    }
    with_column(batch, field, Arc::new(b.finish()))
}

fn with_column(
    batch: &RecordBatch,
    field: &str,
    array: ArrayRef,
) -> Result<RecordBatch, ArrowError> {
    let i = batch.schema().index_of(field)?;
    let mut columns = batch.columns().to_vec();
    columns[i] = array;
    RecordBatch::try_new(batch.schema(), columns)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn id_sets_hold_exactly_their_ids() {
        // Sequences per département (dense in chunks), negative ids, chunk edges, and ids
        // so scattered that the set falls back to hashing: each answers exactly.
        let dense: Vec<i64> = (0..3)
            .flat_map(|d| (1..20_000).map(move |k| 90_010_000_000_000 + d * 10_000_000_000 + 3 * k))
            .chain([-1, -65_536, 65_535, 65_536, i64::MAX, i64::MIN])
            .collect();
        let scattered: Vec<i64> = (0..5_000i64)
            .map(|k| k.wrapping_mul(0x1E37_79B9_7F4A_7C15))
            .collect();
        for ids in [dense, scattered] {
            let set = IdSet::new(ids.iter().copied());
            let all: FastSet<i64> = ids.iter().copied().collect();
            for id in ids
                .iter()
                .flat_map(|id| [id.wrapping_sub(1), *id, id.wrapping_add(1)])
            {
                assert_eq!(set.contains(id), all.contains(&id), "id {id}");
            }
        }
        assert!(matches!(
            IdSet::new((0..5_000i64).map(|k| k.wrapping_mul(0x1E37_79B9_7F4A_7C15))),
            IdSet::Sparse(_)
        ));
        assert!(matches!(IdSet::new(1..100_000), IdSet::Chunked(_)));
        assert!(!IdSet::new(std::iter::empty()).contains(0));
    }

    #[test]
    fn paris_days_per_hour_agree_with_the_time_zone() {
        // Every 7 minutes across both 2025 changes of offset and two midnights each.
        let mut days = ParisDays::default();
        for (start, end) in [
            ("2025-03-29T20:00:00Z", "2025-03-31T02:00:00Z"),
            ("2025-10-25T20:00:00Z", "2025-10-27T02:00:00Z"),
            ("1949-12-31T20:00:00Z", "1950-01-01T04:00:00Z"),
        ] {
            let from = DateTime::parse_from_rfc3339(start)
                .unwrap()
                .timestamp_micros();
            let to = DateTime::parse_from_rfc3339(end)
                .unwrap()
                .timestamp_micros();
            let mut t = from;
            while t < to {
                assert_eq!(days.of(t), paris_date(t), "{t}");
                t += 7 * 60_000_000;
            }
        }
        // 23:30 UTC in summer is already the next day in Paris.
        let late = DateTime::parse_from_rfc3339("2025-06-02T23:30:00Z")
            .unwrap()
            .timestamp_micros();
        assert_eq!(days.of(late), NaiveDate::from_ymd_opt(2025, 6, 3));
    }

    #[test]
    fn a_later_request_of_the_same_person_night_and_siao_is_the_duplicate() {
        use arrow::array::{StringArray, TimestampMicrosecondArray};
        let night = DateTime::parse_from_rfc3339("2025-06-02T21:00:00+02:00")
            .unwrap()
            .timestamp_micros();
        let next_day = night + 24 * 3_600_000_000;
        let demande = RecordBatch::try_from_iter([
            (
                "id",
                Arc::new(Int64Array::from(vec![1, 2, 3, 4, 5])) as ArrayRef,
            ),
            (
                "type",
                Arc::new(StringArray::from(vec!["URGENCE"; 5])) as ArrayRef,
            ),
            (
                "statut",
                Arc::new(StringArray::from(vec![
                    "POURVUE",
                    "NON_POURVUE",
                    "NON_POURVUE",
                    "ANNULEE",
                    "POURVUE",
                ])) as ArrayRef,
            ),
            (
                "siao_departement",
                Arc::new(StringArray::from(vec!["93", "93", "75", "93", "93"])) as ArrayRef,
            ),
            (
                "date_demande",
                Arc::new(
                    TimestampMicrosecondArray::from(vec![night, night, night, night, next_day])
                        .with_timezone("UTC"),
                ) as ArrayRef,
            ),
        ])
        .unwrap();
        // Person 10 asked in requests 1, 2 (same night, same SIAO: 2 is the duplicate),
        // 3 (other SIAO), 4 (cancelled) and 5 (next night); listed twice in request 2.
        let links = RecordBatch::try_from_iter([
            (
                "demande_id",
                Arc::new(Int64Array::from(vec![2, 1, 3, 4, 5, 2])) as ArrayRef,
            ),
            (
                "personne_id",
                Arc::new(Int64Array::from(vec![10; 6])) as ArrayRef,
            ),
        ])
        .unwrap();
        let tables: BTreeMap<String, RecordBatch> = [
            ("demande".to_owned(), demande),
            ("demande_personne".to_owned(), links),
        ]
        .into_iter()
        .collect();
        let mut verdicts = Verdicts::new(&tables);
        doublons_115(&tables, &mut verdicts);
        let rules: Vec<Option<&str>> = verdicts.quarantined["demande"]
            .iter()
            .map(|c| Verdicts::rule(*c))
            .collect();
        assert_eq!(rules, vec![None, Some("DOUBLON_115"), None, None, None]);
    }
}
