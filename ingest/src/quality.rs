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
use arrow::datatypes::Date32Type;
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
/// Ids too scattered for that (more bitmap words than ids) go to a hash set, behind a
/// filter of 16 bits per id that answers most absent ids with one bit test: the
/// incremental run tests every row of its states (millions) against such sets of a few
/// thousand ids, nearly all of them absent.
pub enum IdSet {
    Chunked(FastMap<i64, Box<[u64; IdSet::WORDS]>>),
    Sparse(Sparse),
}

/// A hash set of ids and its filter: bit `hash(id)` set for every id of the set.
pub struct Sparse {
    ids: FastSet<i64>,
    filter: Vec<u64>,
    /// 64 minus the filter's bits as a power of two.
    shift: u32,
}

impl Sparse {
    fn new(ids: FastSet<i64>) -> Self {
        let bits = (ids.len().max(64) * 16).next_power_of_two().min(1 << 26);
        let shift = 64 - bits.trailing_zeros();
        let mut filter = vec![0u64; bits / 64];
        for id in &ids {
            let h = Self::hash(*id, shift);
            filter[h / 64] |= 1 << (h % 64);
        }
        Sparse { ids, filter, shift }
    }

    fn hash(id: i64, shift: u32) -> usize {
        ((id as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> shift) as usize
    }

    fn contains(&self, id: i64) -> bool {
        let h = Self::hash(id, self.shift);
        self.filter[h / 64] & (1 << (h % 64)) != 0 && self.ids.contains(&id)
    }
}

impl IdSet {
    const BITS: u32 = 16;
    const WORDS: usize = (1 << Self::BITS) / 64;

    pub fn new(ids: impl Iterator<Item = i64> + Clone) -> Self {
        let mut chunks: FastMap<i64, Box<[u64; Self::WORDS]>> = FastMap::default();
        let mut n = 0usize;
        for id in ids.clone() {
            n += 1;
            let low = (id & ((1 << Self::BITS) - 1)) as usize;
            chunks
                .entry(id >> Self::BITS)
                .or_insert_with(|| Box::new([0; Self::WORDS]))[low / 64] |= 1 << (low % 64);
            if chunks.len() * Self::WORDS > 2 * n + 4 * Self::WORDS {
                return IdSet::Sparse(Sparse::new(ids.collect()));
            }
        }
        IdSet::Chunked(chunks)
    }

    pub fn contains(&self, id: i64) -> bool {
        match self {
            IdSet::Chunked(chunks) => chunks.get(&(id >> Self::BITS)).is_some_and(|bits| {
                let low = (id & ((1 << Self::BITS) - 1)) as usize;
                bits[low / 64] & (1 << (low % 64)) != 0
            }),
            IdSet::Sparse(set) => set.contains(id),
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

    /// Equal for two clones of one shared value (the address of the shared text): a
    /// cheap key for numbering the distinct places of millions of rows. Two places of
    /// the same texts made apart have different keys.
    pub fn shared_key(&self) -> usize {
        Arc::as_ptr(&self.0) as usize
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
    pub facts: Facts,
}

/// The facts counted on each row ([`Fact`] codes, in the order counted), eight bytes a
/// row: a count and up to seven codes; a longer list is kept aside. A row without a fact
/// is all zeros, so a fresh list of millions of rows touches no memory (fresh pages are
/// costly) until a row gets a fact, where a vector per row would write 24 bytes each.
#[derive(Debug, Clone, Default)]
pub struct Facts {
    rows: Vec<[u8; 8]>,
    aside: Vec<Vec<u8>>,
}

impl Facts {
    /// The count of a row whose codes are kept aside (its bytes 1–4: their index).
    const ASIDE: u8 = u8::MAX;
    const INLINE: usize = 7;

    /// `n` rows without a fact.
    pub fn with_rows(n: usize) -> Self {
        Facts {
            rows: vec![[0; 8]; n],
            aside: Vec::new(),
        }
    }

    pub fn with_capacity(n: usize) -> Self {
        Facts {
            rows: Vec::with_capacity(n),
            aside: Vec::new(),
        }
    }

    pub fn len(&self) -> usize {
        self.rows.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// The codes of a row.
    pub fn get(&self, row: usize) -> &[u8] {
        let r = &self.rows[row];
        if r[0] == Self::ASIDE {
            &self.aside[u32::from_le_bytes([r[1], r[2], r[3], r[4]]) as usize]
        } else {
            &r[1..1 + r[0] as usize]
        }
    }

    /// Every row's codes, in order.
    pub fn iter(&self) -> impl Iterator<Item = &[u8]> {
        (0..self.len()).map(|row| self.get(row))
    }

    fn encode(&mut self, reuse: Option<usize>, codes: &[u8]) -> [u8; 8] {
        let mut r = [0; 8];
        if codes.len() <= Self::INLINE {
            r[0] = codes.len() as u8;
            r[1..1 + codes.len()].copy_from_slice(codes);
            return r;
        }
        let k = match reuse {
            Some(k) => {
                self.aside[k] = codes.to_vec();
                k
            }
            None => {
                self.aside.push(codes.to_vec());
                self.aside.len() - 1
            }
        };
        r[0] = Self::ASIDE;
        r[1..5].copy_from_slice(&(k as u32).to_le_bytes());
        r
    }

    fn aside_of(&self, row: usize) -> Option<usize> {
        let r = &self.rows[row];
        (r[0] == Self::ASIDE).then(|| u32::from_le_bytes([r[1], r[2], r[3], r[4]]) as usize)
    }

    /// Replaces a row's codes.
    pub fn set(&mut self, row: usize, codes: &[u8]) {
        let reuse = self.aside_of(row);
        self.rows[row] = self.encode(reuse, codes);
    }

    /// Adds a row at the end.
    pub fn push(&mut self, codes: &[u8]) {
        let r = self.encode(None, codes);
        self.rows.push(r);
    }

    /// Appends rows `start..start + len` of `other`: copied as they are, their lists kept
    /// aside (rare) copied and numbered anew.
    pub fn extend_from(&mut self, other: &Facts, start: usize, len: usize) {
        let rows = &other.rows[start..start + len];
        let base = self.rows.len();
        self.rows.extend_from_slice(rows);
        if other.aside.is_empty() {
            return;
        }
        for i in 0..len {
            if let Some(k) = other.aside_of(start + i) {
                self.aside.push(other.aside[k].clone());
                let k = (self.aside.len() - 1) as u32;
                self.rows[base + i][1..5].copy_from_slice(&k.to_le_bytes());
            }
        }
    }

    /// Adds one code to a row's.
    pub fn add(&mut self, row: usize, code: u8) {
        let r = &mut self.rows[row];
        if (r[0] as usize) < Self::INLINE {
            r[1 + r[0] as usize] = code;
            r[0] += 1;
        } else {
            let mut codes = self.get(row).to_vec();
            codes.push(code);
            self.set(row, &codes);
        }
    }
}

/// Equal when every row has the same codes (however they are held).
impl PartialEq for Facts {
    fn eq(&self, other: &Self) -> bool {
        self.len() == other.len() && self.iter().eq(other.iter())
    }
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
            && row < rows.facts.len()
        {
            rows.facts.add(row, code);
        }
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

/// Numbers for ids, held like [`IdSet`]: per 65 536 ids of one sequence, one array of
/// numbers, found by the ids' high bits; ids too scattered for that go to a hash map.
enum IdNumbers {
    Chunked(FastMap<i64, Box<[u32]>>),
    Sparse(FastMap<i64, u32>),
}

impl IdNumbers {
    const NONE: u32 = u32::MAX;
    const LOW: i64 = (1 << IdSet::BITS) - 1;

    /// From (id, number) pairs; an id met twice keeps its first number.
    fn new(pairs: impl Iterator<Item = (i64, u32)> + Clone) -> Self {
        let mut high: FastSet<i64> = FastSet::default();
        let mut n = 0usize;
        for (id, _) in pairs.clone() {
            n += 1;
            high.insert(id >> IdSet::BITS);
        }
        // An array is 4 bytes per id of its range, a hash map entry about 32: arrays
        // when they are at least a quarter full.
        if high.len() << IdSet::BITS > 4 * n + (4 << IdSet::BITS) {
            let mut map = FastMap::with_capacity_and_hasher(n, Default::default());
            for (id, number) in pairs {
                map.entry(id).or_insert(number);
            }
            return IdNumbers::Sparse(map);
        }
        let mut chunks: FastMap<i64, Box<[u32]>> = FastMap::default();
        for (id, number) in pairs {
            let slot = &mut chunks
                .entry(id >> IdSet::BITS)
                .or_insert_with(|| vec![Self::NONE; 1 << IdSet::BITS].into_boxed_slice())
                [(id & Self::LOW) as usize];
            if *slot == Self::NONE {
                *slot = number;
            }
        }
        IdNumbers::Chunked(chunks)
    }

    fn get(&self, id: i64) -> Option<u32> {
        match self {
            IdNumbers::Chunked(chunks) => chunks
                .get(&(id >> IdSet::BITS))
                .map(|numbers| numbers[(id & Self::LOW) as usize])
                .filter(|n| *n != Self::NONE),
            IdNumbers::Sparse(map) => map.get(&id).copied(),
        }
    }
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

/// The SIAO texts met, numbered: 0 is `INCONNU` (no SIAO found, or that very text), 1 a
/// null SIAO column (also shown `INCONNU`; kept apart only so that a person's SIAO is
/// taken from a household that has one).
struct SiaoNumbers {
    of_text: FastMap<Box<str>, u32>,
    texts: Vec<Box<str>>,
}

impl SiaoNumbers {
    const UNKNOWN: u32 = 0;
    const NULL: u32 = 1;

    fn new() -> Self {
        let mut of_text = FastMap::default();
        of_text.insert(INCONNU.into(), Self::UNKNOWN);
        SiaoNumbers {
            of_text,
            texts: vec![INCONNU.into(), INCONNU.into()],
        }
    }

    fn of(&mut self, text: &str) -> u32 {
        if let Some(n) = self.of_text.get(text) {
            return *n;
        }
        let n = self.texts.len() as u32;
        self.texts.push(text.into());
        self.of_text.insert(text.into(), n);
        n
    }

    /// The number of each row's own SIAO column (null: [`Self::NULL`]); the rows of a
    /// read come by id range, one département after another, so the text of the row
    /// before is tried first.
    fn of_column(&mut self, values: &StringArray) -> Vec<u32> {
        let mut last: Option<(&str, u32)> = None;
        (0..values.len())
            .map(|i| {
                if values.is_null(i) {
                    return Self::NULL;
                }
                let text = values.value(i);
                match last {
                    Some((t, n)) if t == text => n,
                    _ => {
                        let n = self.of(text);
                        last = Some((text, n));
                        n
                    }
                }
            })
            .collect()
    }
}

/// The months met (`AAAA-MM`), numbered: 0 is `INCONNU`.
struct MonthNumbers {
    of_month: FastMap<(i32, u32), u32>,
    texts: Vec<Box<str>>,
    /// Paris month by UTC hour (since 1950 every change of Paris's offset falls on a
    /// whole UTC hour, so one hour has one Paris date), and by day for dates.
    hours: FastMap<i64, u32>,
    days: FastMap<i32, u32>,
}

impl MonthNumbers {
    const UNKNOWN: u32 = 0;
    /// 1950-01-01T00:00:00Z in microseconds.
    const SINCE: i64 = -631_152_000_000_000;
    const HOUR: i64 = 3_600_000_000;

    fn new() -> Self {
        MonthNumbers {
            of_month: FastMap::default(),
            texts: vec![INCONNU.into()],
            hours: FastMap::default(),
            days: FastMap::default(),
        }
    }

    fn of_date(&mut self, date: Option<NaiveDate>) -> u32 {
        use chrono::Datelike;
        let Some(date) = date else {
            return Self::UNKNOWN;
        };
        let texts = &mut self.texts;
        *self
            .of_month
            .entry((date.year(), date.month()))
            .or_insert_with(|| {
                texts.push(format!("{:04}-{:02}", date.year(), date.month()).into());
                (texts.len() - 1) as u32
            })
    }

    fn of_day(&mut self, days: i32) -> u32 {
        if let Some(n) = self.days.get(&days) {
            return *n;
        }
        let n =
            self.of_date(arrow::temporal_conversions::date32_to_datetime(days).map(|t| t.date()));
        self.days.insert(days, n);
        n
    }

    fn of_micros(&mut self, micros: i64) -> u32 {
        if micros < Self::SINCE {
            return self.of_date(paris_date(micros));
        }
        let hour = micros.div_euclid(Self::HOUR);
        if let Some(n) = self.hours.get(&hour) {
            return *n;
        }
        let n = self.of_date(paris_date(micros));
        self.hours.insert(hour, n);
        n
    }

    /// The month of each row's own event date, when the table has one.
    fn of_own_dates(&mut self, batch: &RecordBatch, table: &str) -> Option<Vec<u32>> {
        let (_, field) = EVENT_DATES.iter().find(|(t, _)| *t == table)?;
        let col = column(batch, field)?;
        if let Some(d) = col.as_any().downcast_ref::<Date32Array>() {
            return Some(
                d.iter()
                    .map(|v| v.map_or(Self::UNKNOWN, |v| self.of_day(v)))
                    .collect(),
            );
        }
        let t = col.as_any().downcast_ref::<TimestampMicrosecondArray>()?;
        Some(
            t.iter()
                .map(|v| v.map_or(Self::UNKNOWN, |v| self.of_micros(v)))
                .collect(),
        )
    }
}

/// A table's own SIAO column.
fn own_siao(batch: &RecordBatch) -> Option<StringArray> {
    ["siao_departement", "departement"]
        .iter()
        .find_map(|c| texts(batch, c))
}

/// The place numbers of the requests, dispositifs and households, by id, and which of
/// them have a SIAO column of their own to give their children.
#[derive(Default)]
struct Parents {
    ids: FastMap<&'static str, IdNumbers>,
    with_siao: FastSet<&'static str>,
}

impl Parents {
    fn siao_of(&self, parent: &str) -> Option<&IdNumbers> {
        self.ids
            .get(parent)
            .filter(|_| self.with_siao.contains(parent))
    }
}

/// Where each row of every table belongs in the report, as numbers: each distinct
/// (SIAO, month) pair met is one place, and each row holds the number of its place
/// (4 bytes a row, no text, no reference count).
struct PlaceNumbers {
    siao: SiaoNumbers,
    months: MonthNumbers,
    of_pair: FastMap<(u32, u32), u32>,
    pairs: Vec<(u32, u32)>,
    /// Per table, per row.
    rows: FastMap<&'static str, Vec<u32>>,
}

impl PlaceNumbers {
    fn of(tables: &BTreeMap<String, RecordBatch>) -> Self {
        let mut numbers = PlaceNumbers {
            siao: SiaoNumbers::new(),
            months: MonthNumbers::new(),
            of_pair: FastMap::default(),
            pairs: Vec::new(),
            rows: FastMap::default(),
        };
        // The parents first: their places come from their own columns only, and their
        // children's from them (by id, through the parents' own pairs: a null SIAO
        // column there stays apart from `INCONNU`).
        let mut parents = Parents::default();
        for parent in ["demande", "dispositif", "menage"] {
            let Some(batch) = tables.get(parent) else {
                continue;
            };
            if own_siao(batch).is_some() {
                parents.with_siao.insert(parent);
            }
            let (siao, months) = numbers.own_columns(batch, parent);
            let raw: Vec<u32> = numbers.pair_all(&siao, &months);
            if let Some(ids) = ints(batch, "id") {
                parents.ids.insert(
                    parent,
                    IdNumbers::new(
                        (0..ids.len())
                            .filter(|&i| !ids.is_null(i))
                            .map(|i| (ids.value(i), raw[i])),
                    ),
                );
            }
            let own: Vec<u32> = siao.iter().map(|s| Self::shown(*s)).collect();
            let rows = numbers.pair_all(&own, &months);
            numbers.rows.insert(parent, rows);
        }
        for (name, batch) in tables {
            let table = static_name(name);
            if numbers.rows.contains_key(table) {
                continue;
            }
            let siao = numbers.siao_of(tables, table, batch, &parents);
            let months = numbers.months_of(table, batch, &parents);
            let rows = numbers.pair_all(&siao, &months);
            numbers.rows.insert(table, rows);
        }
        numbers
    }

    /// A SIAO number as a row's own place shows it.
    fn shown(siao: u32) -> u32 {
        if siao == SiaoNumbers::NULL {
            SiaoNumbers::UNKNOWN
        } else {
            siao
        }
    }

    /// The SIAO and month numbers of a table's own columns (the SIAO's null kept apart).
    fn own_columns(&mut self, batch: &RecordBatch, table: &str) -> (Vec<u32>, Vec<u32>) {
        let n = batch.num_rows();
        let siao = own_siao(batch).map_or_else(
            || vec![SiaoNumbers::UNKNOWN; n],
            |own| self.siao.of_column(&own),
        );
        let months = self
            .months
            .of_own_dates(batch, table)
            .unwrap_or_else(|| vec![MonthNumbers::UNKNOWN; n]);
        (siao, months)
    }

    fn pair_all(&mut self, siao: &[u32], months: &[u32]) -> Vec<u32> {
        let mut last = ((u32::MAX, u32::MAX), 0);
        siao.iter()
            .zip(months)
            .map(|(s, m)| {
                let pair = (*s, *m);
                if last.0 != pair {
                    let pairs = &mut self.pairs;
                    let n = *self.of_pair.entry(pair).or_insert_with(|| {
                        pairs.push(pair);
                        (pairs.len() - 1) as u32
                    });
                    last = (pair, n);
                }
                last.1
            })
            .collect()
    }

    /// The SIAO of a parent's row found by id (`INCONNU` for a null or unknown id, or a
    /// parent without one).
    fn parent_siao(&self, parent: &IdNumbers, id: Option<i64>) -> u32 {
        id.and_then(|id| parent.get(id))
            .map_or(SiaoNumbers::UNKNOWN, |p| {
                Self::shown(self.pairs[p as usize].0)
            })
    }

    /// The SIAO number of each row of a table that is not a parent: its own column, a
    /// person's first household that has one, else the request, dispositif or household
    /// it references.
    fn siao_of(
        &mut self,
        tables: &BTreeMap<String, RecordBatch>,
        table: &str,
        batch: &RecordBatch,
        parents: &Parents,
    ) -> Vec<u32> {
        let n = batch.num_rows();
        if let Some(own) = own_siao(batch) {
            return self
                .siao
                .of_column(&own)
                .into_iter()
                .map(Self::shown)
                .collect();
        }
        if table == "personne"
            && let (Some(ids), Some(mp)) = (ints(batch, "id"), tables.get("menage_personne"))
            && let (Some(mp_p), Some(mp_m)) = (ints(mp, "personne_id"), ints(mp, "menage_id"))
            && let Some(households) = parents.siao_of("menage")
        {
            let of_household = |i: usize| -> Option<(i64, u32)> {
                if mp_p.is_null(i) || mp_m.is_null(i) {
                    return None;
                }
                let pair = households.get(mp_m.value(i))?;
                let siao = self.pairs[pair as usize].0;
                (siao != SiaoNumbers::NULL).then(|| (mp_p.value(i), siao))
            };
            let of_person = IdNumbers::new((0..mp.num_rows()).filter_map(of_household));
            return (0..n)
                .map(|i| {
                    (!ids.is_null(i))
                        .then(|| of_person.get(ids.value(i)))
                        .flatten()
                        .unwrap_or(SiaoNumbers::UNKNOWN)
                })
                .collect();
        }
        for (column_name, parent) in [
            ("demande_id", "demande"),
            ("dispositif_id", "dispositif"),
            ("menage_id", "menage"),
        ] {
            let (Some(refs), Some(parent)) = (ints(batch, column_name), parents.siao_of(parent))
            else {
                continue;
            };
            return (0..n)
                .map(|i| self.parent_siao(parent, (!refs.is_null(i)).then(|| refs.value(i))))
                .collect();
        }
        vec![SiaoNumbers::UNKNOWN; n]
    }

    /// The month number of each row of a table that is not a parent: its own event
    /// date, else its request's.
    fn months_of(&mut self, table: &str, batch: &RecordBatch, parents: &Parents) -> Vec<u32> {
        if let Some(own) = self.months.of_own_dates(batch, table) {
            return own;
        }
        let n = batch.num_rows();
        if let (Some(refs), Some(requests)) =
            (ints(batch, "demande_id"), parents.ids.get("demande"))
        {
            return (0..n)
                .map(|i| {
                    (!refs.is_null(i))
                        .then(|| requests.get(refs.value(i)))
                        .flatten()
                        .map_or(MonthNumbers::UNKNOWN, |p| self.pairs[p as usize].1)
                })
                .collect();
        }
        vec![MonthNumbers::UNKNOWN; n]
    }

    /// The place of each number.
    fn places(&self) -> Vec<Place> {
        self.pairs
            .iter()
            .map(|(s, m)| {
                Place::new(
                    &self.siao.texts[*s as usize],
                    &self.months.texts[*m as usize],
                )
            })
            .collect()
    }
}
/// The report's counts while the rules run: by fact code, table and place number (no
/// text hashed or compared per row), folded into the report's maps once they are done.
struct Tally<'a> {
    report: &'a mut QualityReport,
    rows: &'a FastMap<&'static str, Vec<u32>>,
    counts: FastMap<(u8, &'static str), Vec<u64>>,
    places: usize,
}

impl Tally<'_> {
    fn add(&mut self, rule: &'static str, table: &'static str, row: usize) {
        self.count(fact_code(Fact::Rule(rule)), table, row);
    }

    fn count(&mut self, code: u8, table: &'static str, row: usize) {
        let place = self.rows[table][row] as usize;
        let places = self.places;
        self.counts
            .entry((code, table))
            .or_insert_with(|| vec![0; places])[place] += 1;
        self.report.note(table, row, code);
    }

    fn fold(self, places: &[Place]) {
        for ((code, table), counts) in self.counts {
            for (place, n) in counts.into_iter().enumerate().filter(|(_, n)| *n > 0) {
                let place = places[place].clone();
                match fact_of(code) {
                    Some(Fact::Rule(rule)) => {
                        *self.report.counts.entry((rule, table, place)).or_default() += n
                    }
                    Some(Fact::Measure(measure)) => {
                        *self
                            .report
                            .completeness
                            .entry((measure, table, place))
                            .or_default() += n
                    }
                    None => {}
                }
            }
        }
    }
}

/// Applies the rules in place; returns what was found.
pub fn apply(
    tables: &mut BTreeMap<String, RecordBatch>,
    cog: &dyn Fn(&str) -> bool,
) -> Result<QualityReport, ArrowError> {
    let read: &BTreeMap<String, RecordBatch> = tables;
    // The rows' places and the rules' verdicts need nothing of each other: side by side.
    let ((numbers, places, report), verdicts) = std::thread::scope(|scope| {
        let places = scope.spawn(|| {
            let numbers = PlaceNumbers::of(read);
            let places = numbers.places();
            let report = QualityReport::with_rows(&numbers, &places);
            (numbers, places, report)
        });
        let verdicts = verdicts_of(read);
        (places.join().expect("the places' thread"), verdicts)
    });
    // Then the repairs (new batches) beside the counts.
    let (repaired, report) = std::thread::scope(|scope| {
        let repaired = scope.spawn(|| repair(read, &verdicts));
        let report = count(read, &numbers, &places, &verdicts, cog, report);
        (repaired.join().expect("the repairs' thread"), report)
    });
    for (batch, repaired) in tables.values_mut().zip(repaired?) {
        *batch = repaired;
    }
    Ok(report)
}

impl QualityReport {
    /// An empty report with every table's rows read (by place) and a place for each
    /// row's facts.
    fn with_rows(numbers: &PlaceNumbers, places: &[Place]) -> Self {
        let mut report = QualityReport::default();
        for (table, rows) in &numbers.rows {
            let mut read = vec![0u64; places.len()];
            for place in rows {
                read[*place as usize] += 1;
            }
            for (place, n) in read.into_iter().enumerate().filter(|(_, n)| *n > 0) {
                *report
                    .read
                    .entry((*table, places[place].clone()))
                    .or_default() += n;
            }
            // The places join the facts once the rules are done with them.
            report.rows.insert(
                table,
                RowFacts {
                    places: Vec::new(),
                    facts: Facts::with_rows(rows.len()),
                },
            );
        }
        report
    }
}

/// Which rows each quarantine rule takes out (PARENT_QUARANTAINE included).
fn verdicts_of(tables: &BTreeMap<String, RecordBatch>) -> Verdicts {
    let mut verdicts = Verdicts::new(tables);
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
        let existing = &existing[target];
        for i in 0..refs.len() {
            if !refs.is_null(i) && !existing.contains(refs.value(i)) {
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
    verdicts
}

/// The measures, the quarantined rows and the kept breaches, counted by place.
fn count(
    tables: &BTreeMap<String, RecordBatch>,
    numbers: &PlaceNumbers,
    places: &[Place],
    verdicts: &Verdicts,
    cog: &dyn Fn(&str) -> bool,
    mut report: QualityReport,
) -> QualityReport {
    let mut tally = Tally {
        report: &mut report,
        rows: &numbers.rows,
        counts: FastMap::default(),
        places: places.len(),
    };
    // Completeness of the fields the indicators use, on the rows read.
    if let Some(p) = tables.get("personne")
        && let Some(birth) = dates(p, "date_naissance")
    {
        let code = fact_code(Fact::Measure("AVEC_DATE_NAISSANCE"));
        for i in 0..p.num_rows() {
            if !birth.is_null(i) {
                tally.count(code, "personne", i);
            }
        }
    }
    if let Some(d) = tables.get("demande")
        && let (Some(statut), Some(motif)) = (texts(d, "statut"), texts(d, "motif_non_pourvue"))
    {
        let unmet = fact_code(Fact::Measure("NON_POURVUE"));
        let with_motif = fact_code(Fact::Measure("NON_POURVUE_AVEC_MOTIF"));
        for i in 0..d.num_rows() {
            if !statut.is_null(i) && statut.value(i) == "NON_POURVUE" {
                tally.count(unmet, "demande", i);
                if !motif.is_null(i) {
                    tally.count(with_motif, "demande", i);
                }
            }
        }
    }

    // Count the quarantined rows, and list them.
    for (table, rows) in &verdicts.quarantined {
        let ids = tables.get(*table).and_then(|b| ints(b, "id"));
        for (i, code) in rows.iter().enumerate() {
            if let Some(rule) = Verdicts::rule(*code) {
                tally.add(rule, table, i);
                if let Some(ids) = &ids
                    && !ids.is_null(i)
                {
                    tally.report.quarantined_rows.push(QuarantinedRow {
                        table,
                        id: ids.value(i),
                        rule,
                        place: places[numbers.rows[table][i] as usize].clone(),
                    });
                }
            }
        }
    }

    // Kept breaches, counted on the rows that stay.
    count_kept(tables, verdicts, cog, &mut tally);
    tally.fold(places);

    for (table, rows) in &numbers.rows {
        if let Some(facts) = report.rows.get_mut(table) {
            facts.places = rows.iter().map(|p| places[*p as usize].clone()).collect();
        }
    }
    report
}

/// Each table repaired (unknown optional codes, missing motifs) and without its
/// quarantined rows, in the order of `tables`.
fn repair(
    tables: &BTreeMap<String, RecordBatch>,
    verdicts: &Verdicts,
) -> Result<Vec<RecordBatch>, ArrowError> {
    // Repairs, then the quarantined rows leave.
    let mut out = Vec::with_capacity(tables.len());
    for (name, batch) in tables {
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
        out.push(if verdict.iter().all(|v| *v == 0) {
            repaired
        } else {
            let keep: BooleanArray = verdict.iter().map(|v| Some(*v == 0)).collect();
            filter_record_batch(&repaired, &keep)?
        });
    }
    Ok(out)
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

fn paris_date(micros: i64) -> Option<NaiveDate> {
    DateTime::from_timestamp_micros(micros).map(|t| t.with_timezone(&Paris).date_naive())
}

/// The Paris date of instants, as days since 1970-01-01 (what DOUBLON_115 calls a
/// request's night): one time-zone conversion per UTC hour since 1950 (see
/// [`MonthNumbers`]), millions of requests sharing a few thousand nights.
#[derive(Default)]
pub struct ParisNights {
    by_hour: FastMap<i64, Option<i32>>,
}

impl ParisNights {
    /// The night of an instant (microseconds since 1970, UTC); none out of chrono's range.
    pub fn of(&mut self, micros: i64) -> Option<i32> {
        if micros < MonthNumbers::SINCE {
            return paris_date(micros).map(Date32Type::from_naive_date);
        }
        *self
            .by_hour
            .entry(micros.div_euclid(MonthNumbers::HOUR))
            .or_insert_with(|| paris_date(micros).map(Date32Type::from_naive_date))
    }
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
    // The candidate requests' rows by id, and each candidate row's Paris night (days
    // since 1970; `i32::MIN` for a row that is not a candidate) and SIAO (numbered).
    let rows_by_id = IdNumbers::new(
        (0..d.num_rows())
            .filter(|&i| !id.is_null(i))
            .map(|i| (id.value(i), i as u32)),
    );
    let mut nights = vec![i32::MIN; d.num_rows()];
    let mut siao = vec![0u32; d.num_rows()];
    let mut siao_numbers = SiaoNumbers::new();
    let mut paris = ParisNights::default();
    let quarantined = &verdicts.quarantined["demande"];
    for i in 0..d.num_rows() {
        if quarantined[i] != 0
            || ty.is_null(i)
            || ty.value(i) != "URGENCE"
            || statut.is_null(i)
            || statut.value(i) == "ANNULEE"
            || at.is_null(i)
            || dep.is_null(i)
        {
            continue;
        }
        if let Some(night) = paris.of(at.value(i)) {
            nights[i] = night;
            siao[i] = siao_numbers.of(dep.value(i));
        }
    }
    let (Some(ld), Some(lp)) = (ints(links, "demande_id"), ints(links, "personne_id")) else {
        return;
    };
    // (person, night and SIAO, request) for every person of a candidate; sorted, each
    // run of one (person, night, SIAO) starts with its smallest request: the others are
    // duplicates of it. Capacity for every link: only the pages written are touched.
    let quarantined_links = &verdicts.quarantined["demande_personne"];
    let mut pairs: Vec<(i64, u64, i64)> = Vec::with_capacity(links.num_rows());
    pairs.extend(
        (0..links.num_rows())
            .filter(|&i| quarantined_links[i] == 0 && !ld.is_null(i) && !lp.is_null(i))
            .filter_map(|i| {
                let row = rows_by_id.get(ld.value(i))? as usize;
                let night = nights[row];
                (night != i32::MIN).then(|| {
                    let key = (u64::from(night as u32 ^ 0x8000_0000) << 32) | u64::from(siao[row]);
                    (lp.value(i), key, ld.value(i))
                })
            }),
    );
    pairs.sort_unstable();
    let doubles: Vec<usize> = pairs
        .windows(2)
        .filter(|w| (w[0].0, w[0].1) == (w[1].0, w[1].1) && w[0].2 < w[1].2)
        .filter_map(|w| rows_by_id.get(w[1].2).map(|row| row as usize))
        .collect();
    for row in doubles {
        verdicts.mark("demande", row, "DOUBLON_115");
    }
}

// Rows are addressed by index across several Arrow arrays and the SIAO list at once.
#[allow(clippy::needless_range_loop)]
fn count_kept(
    tables: &BTreeMap<String, RecordBatch>,
    verdicts: &Verdicts,
    cog: &dyn Fn(&str) -> bool,
    tally: &mut Tally,
) {
    for (table, field, codes) in OPTIONAL_CODES {
        let Some(values) = tables.get(*table).and_then(|b| texts(b, field)) else {
            continue;
        };
        for i in 0..values.len() {
            if !verdicts.is(table, i) && !values.is_null(i) && !codes.contains(&values.value(i)) {
                tally.add("CODE_INCONNU", table, i);
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
            if let (Some(statut), Some(motif)) = (&statut, &motif)
                && !statut.is_null(i)
                && statut.value(i) == "NON_POURVUE"
                && motif.is_null(i)
            {
                tally.add("MOTIF_MANQUANT", "demande", i);
            }
            if let Some(dep) = &dep
                && !dep.is_null(i)
                && !cog(dep.value(i))
            {
                tally.add("DEPARTEMENT_HORS_COG", "demande", i);
            }
            if let Some(id) = &id
                && !with_persons.contains(id.value(i))
            {
                tally.add("DEMANDE_SANS_PERSONNE", "demande", i);
            }
        }
    }
    if let Some(x) = tables.get("dispositif")
        && let Some(dep) = texts(x, "departement")
    {
        for i in 0..x.num_rows() {
            if !verdicts.is("dispositif", i) && !dep.is_null(i) && !cog(dep.value(i)) {
                tally.add("DEPARTEMENT_HORS_COG", "dispositif", i);
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
                    tally.add("SEJOURS_CHEVAUCHANTS", "prise_en_charge", b.3);
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
    fn facts_appended_from_another_list_keep_their_codes_short_or_long() {
        let long: Vec<u8> = (0..9).collect();
        let mut a = Facts::with_rows(0);
        a.push(&[1]);
        a.push(&long);
        let mut b = Facts::with_rows(0);
        for codes in [&[][..], &[4, 5], &long[..3], &long[..], &[6]] {
            b.push(codes);
        }
        a.extend_from(&b, 1, 4);
        let rows: Vec<Vec<u8>> = a.iter().map(<[u8]>::to_vec).collect();
        assert_eq!(
            rows,
            vec![
                vec![1],
                long.clone(),
                vec![4, 5],
                vec![0, 1, 2],
                long.clone(),
                vec![6]
            ]
        );
        // The copy is a list of its own: changing it leaves the other as it was.
        a.set(4, &[7]);
        assert_eq!(b.get(3), &long[..]);
    }

    #[test]
    fn facts_keep_each_rows_codes_in_order_short_or_long() {
        let mut facts = Facts::with_rows(3);
        assert_eq!(facts.get(0), &[] as &[u8]);
        for code in 0..7 {
            facts.add(1, code);
        }
        assert_eq!(facts.get(1), &[0, 1, 2, 3, 4, 5, 6]);
        // The eighth code moves the row's list aside, order kept.
        facts.add(1, 100);
        facts.add(1, 101);
        assert_eq!(facts.get(1), &[0, 1, 2, 3, 4, 5, 6, 100, 101]);
        assert_eq!(facts.get(0), &[] as &[u8]);
        assert_eq!(facts.get(2), &[] as &[u8]);
        // Replaced: short again, then long again.
        facts.set(1, &[9]);
        assert_eq!(facts.get(1), &[9]);
        facts.set(2, &[1; 12]);
        facts.push(&[3, 3]);
        assert_eq!(
            facts.iter().collect::<Vec<_>>(),
            vec![&[][..], &[9][..], &[1; 12][..], &[3, 3][..]]
        );
        // Equality by codes, not by how they are held.
        let mut same = Facts::with_capacity(4);
        for row in facts.iter() {
            same.push(row);
        }
        assert_eq!(same, facts);
        same.set(3, &[3]);
        assert_ne!(same, facts);
    }

    #[test]
    fn paris_months_per_hour_agree_with_the_time_zone() {
        use chrono::Datelike;
        // Every 7 minutes across both 2025 changes of offset, two ends of month in Paris
        // (summer and winter offsets) and the first hour cached.
        let mut months = MonthNumbers::new();
        for (start, end) in [
            ("2025-03-29T20:00:00Z", "2025-03-31T02:00:00Z"),
            ("2025-10-25T20:00:00Z", "2025-10-27T02:00:00Z"),
            ("2025-05-31T20:00:00Z", "2025-06-01T02:00:00Z"),
            ("2024-12-31T20:00:00Z", "2025-01-01T04:00:00Z"),
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
                let day = paris_date(t).unwrap();
                let n = months.of_micros(t);
                assert_eq!(
                    &*months.texts[n as usize],
                    format!("{:04}-{:02}", day.year(), day.month()),
                    "{t}"
                );
                t += 7 * 60_000_000;
            }
        }
        // 22:30 UTC on 30 June, in summer, is already July in Paris.
        let late = DateTime::parse_from_rfc3339("2025-06-30T22:30:00Z")
            .unwrap()
            .timestamp_micros();
        let n = months.of_micros(late) as usize;
        assert_eq!(&*months.texts[n], "2025-07");
        // 21:30 UTC the same day is still June.
        let early = DateTime::parse_from_rfc3339("2025-06-30T21:30:00Z")
            .unwrap()
            .timestamp_micros();
        let n = months.of_micros(early) as usize;
        assert_eq!(&*months.texts[n], "2025-06");
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
