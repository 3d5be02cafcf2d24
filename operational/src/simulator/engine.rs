//! The day-by-day simulation of one département.
//!
//! - Offer: entités; dispositifs of every type with funded places; place groups whose
//!   installed capacity differs a little from the funded one; winter groups
//!   (`temporaire`) open from 1 November to 1 April; hotels. Insertion places are
//!   92 % occupied when the simulation starts (direct admissions written on day one).
//! - Households: arrive every day (more in winter) with a composition drawn in
//!   realistic shares; persons have ages and sexes consistent with their roles. Births
//!   and separations change compositions through `menage_personne`.
//! - The 115: a household in need calls on some nights, never twice the same night,
//!   and is sheltered only if an URGENCE group accepting its composition (derived as
//!   INDICATORS.md says) has room that night; otherwise NON_POURVUE with the motif that
//!   holds (no place at all, or none for this composition). Stays last while the place
//!   stays free, some are renewed (`renouvellement_de`); a few calls are cancelled.
//! - Insertion: prescribers file requests with a preconisation; the household is put
//!   on a waiting list; when a suitable place will be free for the stay, an
//!   orientation is made, accepted or refused (structure or household, with motifs);
//!   an accepted orientation leads to an admission and a long stay ending with a motif.
//!   Requests nobody can meet are cancelled after a while.
//! - Evaluations: flash soon after a household is first identified (most within 72 h),
//!   approfondie later (most within two months); notes; their texts are generated.
//! - The application's own life: duplicate persons registered by mistake and merged
//!   weeks later (the duplicate deleted, its links moved); late corrections of a
//!   status; purges of households 24 months after their last activity.

use chrono::{Datelike, Duration, Months, NaiveDate};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::profile::{self, Profile};
use super::text::{self, NOMS, PRENOMS_F, PRENOMS_M};
use super::*;
use crate::source::Value;

/// A département's simulation: its change log and what the summary needs.
pub(crate) struct Log {
    pub raw: RawLog,
    /// (household id, day, composition) of each household's first URGENCE request.
    pub first_urgence: Vec<(i64, NaiveDate, &'static str)>,
}

const COMPOSITIONS: &[(&str, f64)] = &[
    ("HOMME_SEUL", 0.50),
    ("FEMME_SEULE", 0.11),
    ("FEMME_SEULE_AVEC_ENFANTS", 0.15),
    ("HOMME_SEUL_AVEC_ENFANTS", 0.02),
    ("COUPLE_SANS_ENFANT", 0.05),
    ("COUPLE_AVEC_ENFANTS", 0.12),
    ("GROUPE_SANS_ENFANT", 0.015),
    ("GROUPE_AVEC_ENFANTS", 0.015),
    ("MINEUR_ISOLE", 0.01),
];

const ADULTS: &[&str] = &[
    "HOMME_SEUL",
    "FEMME_SEULE",
    "COUPLE_SANS_ENFANT",
    "GROUPE_SANS_ENFANT",
];
const MEN: &[&str] = &["HOMME_SEUL"];
const FAMILIES: &[&str] = &[
    "FEMME_SEULE",
    "FEMME_SEULE_AVEC_ENFANTS",
    "HOMME_SEUL_AVEC_ENFANTS",
    "COUPLE_AVEC_ENFANTS",
    "COUPLE_SANS_ENFANT",
    "GROUPE_AVEC_ENFANTS",
];
const EVERYONE: &[&str] = &[
    "HOMME_SEUL",
    "FEMME_SEULE",
    "HOMME_SEUL_AVEC_ENFANTS",
    "FEMME_SEULE_AVEC_ENFANTS",
    "COUPLE_SANS_ENFANT",
    "COUPLE_AVEC_ENFANTS",
    "GROUPE_SANS_ENFANT",
    "GROUPE_AVEC_ENFANTS",
];
const EVERYONE_AND_MINORS: &[&str] = &[
    "HOMME_SEUL",
    "FEMME_SEULE",
    "HOMME_SEUL_AVEC_ENFANTS",
    "FEMME_SEULE_AVEC_ENFANTS",
    "COUPLE_SANS_ENFANT",
    "COUPLE_AVEC_ENFANTS",
    "GROUPE_SANS_ENFANT",
    "GROUPE_AVEC_ENFANTS",
    "MINEUR_ISOLE",
];

/// A kind of dispositif with places: categorie, type, volet, accepted compositions,
/// share of its volet's places (%), places per dispositif, winter places (% extra).
struct Kind {
    categorie: &'static str,
    ty: &'static str,
    volet: &'static str,
    accepts: &'static [&'static str],
    share: i64,
    unit: i64,
    winter: i64,
}

const fn kind(
    categorie: &'static str,
    ty: &'static str,
    volet: &'static str,
    accepts: &'static [&'static str],
    share: i64,
    unit: i64,
    winter: i64,
) -> Kind {
    Kind {
        categorie,
        ty,
        volet,
        accepts,
        share,
        unit,
        winter,
    }
}

const OFFER: &[Kind] = &[
    kind("HEBERGEMENT", "HORS_CHRS", "URGENCE", ADULTS, 33, 40, 20),
    kind("HEBERGEMENT", "HORS_CHRS", "URGENCE", EVERYONE, 15, 50, 15),
    kind("HEBERGEMENT", "HOTEL", "URGENCE", FAMILIES, 30, 80, 0),
    kind("VEILLE_SOCIALE", "HALTE_NUIT", "URGENCE", ADULTS, 5, 20, 0),
    kind(
        "HEBERGEMENT",
        "AUTRE_HEBERGEMENT",
        "URGENCE",
        EVERYONE_AND_MINORS,
        6,
        30,
        0,
    ),
    kind("HEBERGEMENT", "RHVS", "URGENCE", ADULTS, 5, 30, 0),
    kind("HEBERGEMENT", "CHRS", "URGENCE", EVERYONE, 6, 30, 0),
    kind("HEBERGEMENT", "CHRS", "INSERTION", EVERYONE, 35, 40, 0),
    kind(
        "LOGEMENT_ADAPTE",
        "PENSION_FAMILLE",
        "INSERTION",
        ADULTS,
        10,
        25,
        0,
    ),
    kind(
        "LOGEMENT_ADAPTE",
        "RESIDENCE_ACCUEIL",
        "INSERTION",
        ADULTS,
        5,
        25,
        0,
    ),
    kind("LOGEMENT_ADAPTE", "FJT", "INSERTION", ADULTS, 5, 50, 0),
    kind("LOGEMENT_ADAPTE", "FTM", "INSERTION", MEN, 5, 80, 0),
    kind(
        "LOGEMENT_ADAPTE",
        "RS_CLASSIQUE",
        "INSERTION",
        ADULTS,
        5,
        40,
        0,
    ),
    kind("IML", "IML_LOCATION", "INSERTION", EVERYONE, 15, 30, 0),
    kind("IML", "IML_MANDAT", "INSERTION", EVERYONE, 10, 30, 0),
    kind(
        "LOGEMENT_ADAPTE",
        "UN_CHEZ_SOI",
        "INSERTION",
        ADULTS,
        5,
        20,
        0,
    ),
    kind(
        "HEBERGEMENT",
        "AUTRE_HEBERGEMENT",
        "INSERTION",
        EVERYONE,
        5,
        30,
        0,
    ),
];

/// Services without places.
const SERVICES: &[(&str, &str)] = &[
    ("VEILLE_SOCIALE", "MARAUDE"),
    ("VEILLE_SOCIALE", "ACCUEIL_JOUR"),
    ("PREMIER_ACCUEIL", "SAO"),
    ("ACCOMPAGNEMENT", "AVDL"),
    ("ACCOMPAGNEMENT", "PASH"),
    ("ACCOMPAGNEMENT", "AUTRE"),
];

const ENTITES: &[&str] = &[
    "Association Aurore",
    "Emmaüs Solidarité",
    "CCAS",
    "Fondation de l'Armée du Salut",
    "Croix-Rouge française",
    "Groupe SOS Solidarités",
    "Habitat et Humanisme",
    "Coallia",
    "Adoma",
    "Association Le Relais",
];

const PRECONISATIONS: &[(&str, f64)] = &[
    ("CHRS", 0.40),
    ("IML_LOCATION", 0.15),
    ("IML_MANDAT", 0.10),
    ("PENSION_FAMILLE", 0.10),
    ("RESIDENCE_ACCUEIL", 0.05),
    ("FJT", 0.05),
    ("FTM", 0.04),
    ("RS_CLASSIQUE", 0.04),
    ("UN_CHEZ_SOI", 0.04),
    ("AUTRE_HEBERGEMENT", 0.03),
];

struct PlaceGroup {
    id: i64,
    dispositif_id: i64,
    ty: &'static str,
    accepts: &'static [&'static str],
    places: i64,
    debut: NaiveDate,
    fin: Option<NaiveDate>,
    urgence: bool,
    hotel: bool,
    /// Places taken per night, from the simulation's first day, grown on demand.
    occupied: Vec<i32>,
}

impl PlaceGroup {
    fn open_on(&self, d: NaiveDate) -> bool {
        self.debut <= d && self.fin.is_none_or(|f| d < f)
    }

    fn accepts(&self, composition: &str) -> bool {
        self.accepts.contains(&composition)
    }

    fn free_on(&self, origin: NaiveDate, d: NaiveDate) -> i64 {
        if !self.open_on(d) {
            return 0;
        }
        let i = (d - origin).num_days() as usize;
        self.places - i64::from(self.occupied.get(i).copied().unwrap_or(0))
    }

    fn free_over(&self, origin: NaiveDate, start: NaiveDate, nights: i64) -> i64 {
        (0..nights.max(1))
            .map(|k| self.free_on(origin, start + Duration::days(k)))
            .min()
            .unwrap_or(0)
    }

    /// Consecutive nights from `start` (at most `max`) with `size` places free.
    fn free_nights(&self, origin: NaiveDate, start: NaiveDate, max: i64, size: i64) -> i64 {
        (0..max)
            .take_while(|&k| self.free_on(origin, start + Duration::days(k)) >= size)
            .count() as i64
    }

    fn occupy(&mut self, origin: NaiveDate, start: NaiveDate, end: NaiveDate, n: i64) {
        let a = (start - origin).num_days().max(0) as usize;
        let b = (end - origin).num_days().max(0) as usize;
        if self.occupied.len() < b {
            self.occupied.resize(b, 0);
        }
        for slot in &mut self.occupied[a..b] {
            *slot += n as i32;
        }
    }
}

struct Member {
    person: i64,
    sex: &'static str,
    birth: Option<NaiveDate>,
    role: &'static str,
    nom: &'static str,
    prenom: &'static str,
    /// Its `menage_personne` row, and the day the membership ends (separation).
    membership: u32,
    left: Option<NaiveDate>,
    /// For a duplicate person: the day it is merged into `original`, and the rows
    /// (table, row) that point to it.
    merge: Option<(NaiveDate, i64)>,
    links: Vec<(usize, u32)>,
}

struct Insertion {
    demande: i64,
    row: u32,
    ready: NaiveDate,
    preconisation: &'static str,
    give_up: NaiveDate,
    refusals: u32,
    waiting: u32,
}

struct Household {
    id: i64,
    members: Vec<Member>,
    need_end: NaiveDate,
    propensity: f64,
    calls_115: bool,
    sheltered_until: Option<NaiveDate>,
    insertion: Option<Insertion>,
    asked_insertion: bool,
    done: bool,
    last_activity: NaiveDate,
    /// Rows of this household, deleted together when it is purged.
    owned: Vec<(usize, u32)>,
    /// Households purged together (a duplicate with its original, a separated partner
    /// with the household it left): index of the group's first household.
    purge_group: usize,
    first_urgence: bool,
}

impl Household {
    fn present(&self, d: NaiveDate) -> impl Iterator<Item = &Member> {
        self.members
            .iter()
            .filter(move |m| m.left.is_none_or(|l| d < l))
    }

    fn size(&self, d: NaiveDate) -> i64 {
        self.present(d).count() as i64
    }

    /// The composition on day `d`, by INDICATORS.md's rule.
    fn composition(&self, d: NaiveDate) -> &'static str {
        let mut adults = Vec::new();
        let mut children = 0;
        for m in self.present(d) {
            let adult = match m.birth {
                Some(b) => age_on(b, d) >= 18,
                None => matches!(m.role, "DEMANDEUR_PRINCIPAL" | "CONJOINT" | "AUTRE_ADULTE"),
            };
            if adult {
                adults.push(m);
            } else {
                children += 1;
            }
        }
        let with = children > 0;
        match adults.as_slice() {
            [] if children == 0 => "INCONNUE",
            [] => "MINEUR_ISOLE",
            [a] => match (a.sex, with) {
                ("M", false) => "HOMME_SEUL",
                ("M", true) => "HOMME_SEUL_AVEC_ENFANTS",
                ("F", false) => "FEMME_SEULE",
                ("F", true) => "FEMME_SEULE_AVEC_ENFANTS",
                _ => "INCONNUE",
            },
            [_, _] if adults.iter().any(|m| m.role == "CONJOINT") => {
                if with {
                    "COUPLE_AVEC_ENFANTS"
                } else {
                    "COUPLE_SANS_ENFANT"
                }
            }
            _ => {
                if with {
                    "GROUPE_AVEC_ENFANTS"
                } else {
                    "GROUPE_SANS_ENFANT"
                }
            }
        }
    }
}

fn age_on(birth: NaiveDate, d: NaiveDate) -> i32 {
    let mut age = d.year() - birth.year();
    if (d.month(), d.day()) < (birth.month(), birth.day()) {
        age -= 1;
    }
    age
}

/// A stay to write: `persons` places from `entree` (included) to `sortie` (excluded).
struct Stay {
    demande: Option<i64>,
    orientation: Option<i64>,
    persons: i64,
    entree: NaiveDate,
    sortie: NaiveDate,
    motif: &'static str,
    renews: Option<i64>,
}

struct Engine {
    dep: &'static str,
    slot: i64,
    origin: NaiveDate,
    rng: ChaCha8Rng,
    counters: [i64; 13],
    raw: RawLog,
    profile: Profile,
    entites: Vec<i64>,
    groups: Vec<PlaceGroup>,
    households: Vec<Household>,
    active: Vec<usize>,
    first_urgence: Vec<(i64, NaiveDate, &'static str)>,
    /// Duplicate persons waiting to be merged: (day, household, member).
    merges: Vec<(NaiveDate, usize, usize)>,
    /// Dispositifs with winter places: (kind, dispositif id, places).
    winter: Vec<(&'static Kind, i64, i64)>,
}

/// Runs the simulation of one département over the configured interval.
pub(crate) fn run(config: &SimulationConfig, dep: &'static str) -> Log {
    let slot = crate::territory::departements()
        .position(|d| d.code == dep)
        .expect("a COG département") as i64
        + 1;
    let mut seed = config.seed ^ 0x9E37_79B9_7F4A_7C15;
    for b in dep.bytes() {
        seed = (seed ^ u64::from(b)).wrapping_mul(0x0100_0000_01B3);
    }
    let mut e = Engine {
        dep,
        slot,
        origin: config.from,
        rng: ChaCha8Rng::seed_from_u64(seed),
        counters: [0; 13],
        raw: RawLog::new(),
        profile: profile::profile(dep, config.scale),
        entites: Vec::new(),
        groups: Vec::new(),
        households: Vec::new(),
        active: Vec::new(),
        first_urgence: Vec::new(),
        winter: Vec::new(),
        merges: Vec::new(),
    };
    e.build_offer();
    e.initial_stock();
    let days = (config.to - config.from).num_days();
    for day in 0..days {
        let d = config.from + Duration::days(day);
        e.day(d);
    }
    e.schedule_purges();
    Log {
        raw: e.raw,
        first_urgence: e.first_urgence,
    }
}

fn poisson(rng: &mut ChaCha8Rng, lambda: f64) -> u64 {
    if lambda <= 0.0 {
        return 0;
    }
    if lambda > 40.0 {
        // Normal approximation.
        let u1: f64 = rng.random::<f64>().max(1e-12);
        let u2: f64 = rng.random();
        let z = (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos();
        return (lambda + z * lambda.sqrt()).round().max(0.0) as u64;
    }
    let l = (-lambda).exp();
    let mut k = 0;
    let mut p = 1.0;
    loop {
        p *= rng.random::<f64>();
        if p <= l {
            return k;
        }
        k += 1;
    }
}

/// More households fall into need in winter.
fn season(d: NaiveDate) -> f64 {
    if matches!(d.month(), 11 | 12 | 1 | 2 | 3) {
        1.25
    } else {
        0.82
    }
}

impl Engine {
    fn id(&mut self, table: usize) -> i64 {
        self.counters[table] += 1;
        (table as i64 + 1) * 10_000_000_000_000 + self.slot * 10_000_000_000 + self.counters[table]
    }

    fn push(&mut self, table: usize, visible: NaiveDate, row: Vec<Value>) -> u32 {
        self.raw.push(table, visible, row)
    }

    fn own(&mut self, h: usize, table: usize, row: u32) {
        self.households[h].owned.push((table, row));
    }

    fn touch(&mut self, h: usize, d: NaiveDate) {
        let hh = &mut self.households[h];
        hh.last_activity = hh.last_activity.max(d);
    }

    fn random_instant(&mut self, d: NaiveDate) -> chrono::DateTime<chrono::FixedOffset> {
        // The 115 answers around the clock, most calls in the day; a few after midnight.
        let hour = if self.rng.random_bool(0.06) {
            self.rng.random_range(0..2)
        } else {
            self.rng.random_range(8..23)
        };
        let second = self.rng.random_range(0..3600);
        paris_instant(d, hour * 3600 + second)
    }

    // -- The offer ---------------------------------------------------------------

    fn build_offer(&mut self) {
        let dep = self.dep;
        let opened = self.origin - Duration::days(self.rng.random_range(400..3000));
        let n_entites = (2 + (self.profile.insertion_places / 150) as usize).min(ENTITES.len());
        for name in &ENTITES[..n_entites] {
            let id = self.id(T_ENTITE);
            let siren = format!("{:09}", 775_000_000 + (id % 100_000_000) * 7 % 100_000_000);
            self.push(
                T_ENTITE,
                self.origin,
                vec![
                    id.into(),
                    format!("{name} ({dep})").into(),
                    siren.into(),
                    stamp_at(opened, 20),
                ],
            );
            self.entites.push(id);
        }
        for k in OFFER {
            let total = if k.volet == "URGENCE" {
                self.profile.urgence_places
            } else {
                self.profile.insertion_places
            };
            let places = total * k.share / 100;
            let main = matches!(k.ty, "HORS_CHRS" | "HOTEL" | "CHRS");
            if places < 3 && !main {
                continue;
            }
            let places = places.max(3);
            let count = ((places + k.unit / 2) / k.unit).max(1);
            for i in 0..count {
                let n = places / count + i64::from(i < places % count);
                let winter = n * k.winter / 100;
                self.add_dispositif(k, n, winter, opened);
            }
        }
        // The winter under way when the simulation starts.
        let year = self.origin.year();
        if self.origin < NaiveDate::from_ymd_opt(year, 4, 1).expect("date") {
            self.open_winter(year - 1);
        }
        if self.origin >= NaiveDate::from_ymd_opt(year, 10, 12).expect("date") {
            self.open_winter(year);
        }
        for (categorie, ty) in SERVICES {
            let id = self.id(T_DISPOSITIF);
            let entite = self.entites[0];
            self.push(
                T_DISPOSITIF,
                self.origin,
                vec![
                    id.into(),
                    entite.into(),
                    dep.into(),
                    format!("{ty} {dep}-{}", id % 10_000).into(),
                    Value::Null,
                    Value::Null,
                    (*categorie).into(),
                    (*ty).into(),
                    Value::Null,
                    Value::Int(0),
                    Value::Int(0),
                    Value::Null,
                    opened.into(),
                    Value::Null,
                    stamp_at(opened, 20),
                ],
            );
        }
    }

    fn add_dispositif(&mut self, k: &'static Kind, places: i64, winter: i64, opened: NaiveDate) {
        let dep = self.dep;
        let id = self.id(T_DISPOSITIF);
        let entite = *pick(&mut self.rng, &self.entites);
        let hotel = k.ty == "HOTEL";
        // Hotels are paid outside programme 177's funded places, partly.
        let (p177, hors) = if hotel {
            (places / 2, places - places / 2)
        } else {
            (places, 0)
        };
        // A few dispositifs open during the first year.
        let ouverture = if self.rng.random_bool(0.06) {
            self.origin + Duration::days(self.rng.random_range(30..330))
        } else {
            opened
        };
        let visible = ouverture.max(self.origin);
        self.push(
            T_DISPOSITIF,
            visible,
            vec![
                id.into(),
                entite.into(),
                dep.into(),
                format!("{} {dep}-{}", k.ty, id % 10_000).into(),
                format!("{:014}", 77_500_000_000_000 + id % 10_000_000_000).into(),
                format!("{dep}0{:06}", id % 1_000_000).into(),
                k.categorie.into(),
                k.ty.into(),
                k.volet.into(),
                Value::Int(p177),
                Value::Int(hors),
                k.accepts.join(",").into(),
                ouverture.into(),
                Value::Null,
                stamp_at(visible, 20),
            ],
        );
        // Installed capacity may differ a little from the funded one.
        let installed = (places + self.rng.random_range(-2..=2)).max(1);
        self.add_group(k, id, installed, false, ouverture, None);
        if winter > 0 {
            self.winter.push((k, id, winter));
        }
    }

    /// Winter places of the winter starting in `year`: 1 November to 1 April
    /// (excluded), entered in the application on 12 October.
    fn open_winter(&mut self, year: i32) {
        let debut = NaiveDate::from_ymd_opt(year, 11, 1).expect("date");
        let fin = NaiveDate::from_ymd_opt(year + 1, 4, 1).expect("date");
        for (k, dispositif, places) in self.winter.clone() {
            self.add_group(k, dispositif, places, true, debut, Some(fin));
        }
    }

    fn add_group(
        &mut self,
        k: &Kind,
        dispositif_id: i64,
        places: i64,
        temporaire: bool,
        debut: NaiveDate,
        fin: Option<NaiveDate>,
    ) {
        let id = self.id(T_GROUPE);
        // A winter group is entered in the application in October.
        let visible = if temporaire {
            (debut - Duration::days(20)).max(self.origin).min(debut)
        } else {
            debut.max(self.origin)
        };
        self.push(
            T_GROUPE,
            visible,
            vec![
                id.into(),
                dispositif_id.into(),
                Value::Int(places),
                temporaire.into(),
                debut.into(),
                Value::from(fin),
                stamp_at(visible, 20),
            ],
        );
        self.groups.push(PlaceGroup {
            id,
            dispositif_id,
            ty: k.ty,
            accepts: k.accepts,
            places,
            debut,
            fin,
            urgence: k.volet == "URGENCE",
            hotel: k.ty == "HOTEL",
            occupied: Vec::new(),
        });
    }

    // -- Households ---------------------------------------------------------------

    /// Writes a new household with its persons and memberships, visible from
    /// `visible`, created on `created`; returns its index.
    fn new_household(
        &mut self,
        composition: &'static str,
        created: NaiveDate,
        visible: NaiveDate,
    ) -> usize {
        let index = self.new_household_empty(created, visible);
        let children = if self.rng.random_bool(0.5) {
            1
        } else {
            self.rng.random_range(2..=4)
        };
        let r = &mut self.rng;
        let minor_sex = if r.random_bool(0.8) { "M" } else { "F" };
        let mut plan: Vec<(&'static str, &'static str, i64, i64)> = Vec::new();
        match composition {
            "HOMME_SEUL" => plan.push(("DEMANDEUR_PRINCIPAL", "M", 18, 75)),
            "FEMME_SEULE" => plan.push(("DEMANDEUR_PRINCIPAL", "F", 18, 75)),
            "MINEUR_ISOLE" => plan.push(("DEMANDEUR_PRINCIPAL", minor_sex, 15, 17)),
            "HOMME_SEUL_AVEC_ENFANTS" | "FEMME_SEULE_AVEC_ENFANTS" => {
                let sex = if composition.starts_with("HOMME") {
                    "M"
                } else {
                    "F"
                };
                plan.push(("DEMANDEUR_PRINCIPAL", sex, 20, 50));
                for _ in 0..children {
                    plan.push(("ENFANT", "?", 0, 17));
                }
            }
            "COUPLE_SANS_ENFANT" | "COUPLE_AVEC_ENFANTS" => {
                plan.push(("DEMANDEUR_PRINCIPAL", "M", 20, 65));
                plan.push(("CONJOINT", "F", 20, 65));
                if composition == "COUPLE_AVEC_ENFANTS" {
                    for _ in 0..children {
                        plan.push(("ENFANT", "?", 0, 17));
                    }
                }
            }
            _ => {
                plan.push(("DEMANDEUR_PRINCIPAL", "M", 20, 60));
                plan.push(("AUTRE_ADULTE", "?", 18, 60));
                plan.push(("AUTRE_ADULTE", "M", 18, 60));
                if composition == "GROUPE_AVEC_ENFANTS" {
                    plan.push(("AUTRE_MINEUR", "?", 3, 17));
                }
            }
        }
        for (role, sex, min, max) in plan {
            let sex = if sex == "?" {
                if self.rng.random_bool(0.5) { "F" } else { "M" }
            } else {
                sex
            };
            let days = self.rng.random_range(min * 365 + 1..(max + 1) * 365 - 1);
            let birth = created - Duration::days(days);
            self.add_member(index, role, sex, Some(birth), created, visible, None);
        }
        index
    }

    /// Writes a person and its membership of household `h` from `debut`.
    #[allow(clippy::too_many_arguments)]
    fn add_member(
        &mut self,
        h: usize,
        role: &'static str,
        sex: &'static str,
        birth: Option<NaiveDate>,
        debut: NaiveDate,
        visible: NaiveDate,
        copy_of: Option<(i64, &'static str, &'static str)>,
    ) -> i64 {
        let pid = self.id(T_PERSONNE);
        let (nom, prenom) = match copy_of {
            Some((_, nom, prenom)) => (nom, prenom),
            None => {
                let prenom = if sex == "F" {
                    *pick(&mut self.rng, PRENOMS_F)
                } else {
                    *pick(&mut self.rng, PRENOMS_M)
                };
                (*pick(&mut self.rng, NOMS), prenom)
            }
        };
        let nationalite = pick_weighted(
            &mut self.rng,
            &[
                ("FRANCAISE", 0.45),
                ("UE", 0.10),
                ("HORS_UE", 0.40),
                ("APATRIDE", 0.01),
                ("INCONNU", 0.04),
            ],
        );
        let adult = birth.is_none_or(|b| age_on(b, debut) >= 18);
        let telephone = if adult && self.rng.random_bool(0.8) {
            Value::Text(format!("06{:08}", self.rng.random_range(0..100_000_000u64)))
        } else {
            Value::Null
        };
        let email = if adult && self.rng.random_bool(0.4) {
            Value::Text(format!(
                "{}.{}{}@exemple.fr",
                prenom.to_lowercase(),
                nom.to_lowercase().replace(' ', ""),
                pid % 1000
            ))
        } else {
            Value::Null
        };
        // A few birth dates and sexes are unknown, as in the real application.
        let birth = if copy_of.is_none() && self.rng.random_bool(0.02) {
            None
        } else {
            birth
        };
        let sex_value = if copy_of.is_none() && self.rng.random_bool(0.01) {
            "INCONNU"
        } else {
            sex
        };
        let prow = self.push(
            T_PERSONNE,
            visible,
            vec![
                pid.into(),
                nom.into(),
                prenom.into(),
                Value::from(birth),
                sex_value.into(),
                nationalite.into(),
                telephone,
                email,
                stamp_at(visible, 20),
            ],
        );
        let mid = self.id(T_MENAGE_PERSONNE);
        let hid = self.households[h].id;
        let mrow = self.push(
            T_MENAGE_PERSONNE,
            visible,
            vec![
                mid.into(),
                hid.into(),
                pid.into(),
                role.into(),
                debut.into(),
                Value::Null,
                stamp_at(visible, 20),
            ],
        );
        self.own(h, T_PERSONNE, prow);
        self.own(h, T_MENAGE_PERSONNE, mrow);
        let merge = copy_of.map(|(original, _, _)| {
            let after = self.rng.random_range(15..180);
            (debut + Duration::days(after), original)
        });
        if let Some((on, _)) = merge {
            let member = self.households[h].members.len();
            self.merges.push((on, h, member));
        }
        let links = if merge.is_some() {
            vec![(T_PERSONNE, prow), (T_MENAGE_PERSONNE, mrow)]
        } else {
            Vec::new()
        };
        self.households[h].members.push(Member {
            person: pid,
            sex: sex_value,
            birth,
            role,
            nom,
            prenom,
            membership: mrow,
            left: None,
            merge,
            links,
        });
        pid
    }

    /// Evaluations and notes, scheduled when a household is first identified.
    fn follow_up(&mut self, h: usize, created: NaiveDate) {
        let menage = self.households[h].id;
        let prenom = self.households[h].members[0].prenom;
        if self.rng.random_bool(0.85) {
            let delay = if self.rng.random_bool(0.8) {
                self.rng.random_range(0..=2)
            } else {
                self.rng.random_range(3..12)
            };
            self.evaluation(h, menage, prenom, "FLASH", created + Duration::days(delay));
        }
        if self.rng.random_bool(0.55) {
            let delay = if self.rng.random_bool(0.8) {
                self.rng.random_range(10..=60)
            } else {
                self.rng.random_range(61..150)
            };
            self.evaluation(
                h,
                menage,
                prenom,
                "APPROFONDIE",
                created + Duration::days(delay),
            );
        }
        for _ in 0..self.rng.random_range(0..3) {
            let when = (created + Duration::days(self.rng.random_range(0..60))).max(self.origin);
            let id = self.id(T_NOTE);
            let texte = text::texte(&mut self.rng, prenom);
            let auteur = text::auteur(&mut self.rng);
            let at = self.random_instant(when);
            let row = self.push(
                T_NOTE,
                when,
                vec![
                    id.into(),
                    menage.into(),
                    texte.into(),
                    auteur.into(),
                    at.into(),
                    at.into(),
                ],
            );
            self.own(h, T_NOTE, row);
            self.touch(h, when);
        }
    }

    fn evaluation(&mut self, h: usize, menage: i64, prenom: &str, ty: &str, when: NaiveDate) {
        let id = self.id(T_EVALUATION);
        let ethos = format!("ETHOS_{}", self.rng.random_range(1..=13));
        let violences = self.rng.random_bool(0.15);
        let sante = self.rng.random_bool(0.25);
        let sortie = self.rng.random_bool(0.10);
        let texte = text::texte(&mut self.rng, prenom);
        let auteur = text::auteur(&mut self.rng);
        let visible = when.max(self.origin);
        let row = self.push(
            T_EVALUATION,
            visible,
            vec![
                id.into(),
                menage.into(),
                ty.into(),
                when.into(),
                ethos.into(),
                violences.into(),
                sante.into(),
                sortie.into(),
                texte.into(),
                auteur.into(),
                stamp_at(visible, 20),
            ],
        );
        self.own(h, T_EVALUATION, row);
        self.touch(h, when);
    }

    /// A household falling into need on day `d` (a 115 caller), or a household with
    /// only an insertion request.
    fn arrival(&mut self, d: NaiveDate, calls_115: bool) {
        // Now and then the 115 registers again someone already known, under a new
        // household: a duplicate person, merged weeks later.
        if calls_115 && !self.active.is_empty() && self.rng.random_bool(0.02) {
            let source = self.active[self.rng.random_range(0..self.active.len())];
            let m = &self.households[source].members[0];
            if m.merge.is_none() && m.left.is_none() {
                let (original, nom, prenom, birth) = (m.person, m.nom, m.prenom, m.birth);
                let sex = if m.sex == "F" { "F" } else { "M" };
                let group = self.households[source].purge_group;
                let h = self.new_household_empty(d, d);
                self.households[h].purge_group = group;
                let copy = Some((original, nom, prenom));
                self.add_member(h, "DEMANDEUR_PRINCIPAL", sex, birth, d, d, copy);
                self.start_need(h, d);
                return;
            }
        }
        let composition = pick_weighted(&mut self.rng, COMPOSITIONS);
        let h = self.new_household(composition, d, d);
        if calls_115 {
            self.start_need(h, d);
        } else {
            self.households[h].need_end = d;
            self.active.push(h);
            self.follow_up(h, d);
            self.file_insertion(h, d, "PRESCRIPTEUR");
        }
    }

    /// Writes a new household without members yet; returns its index.
    fn new_household_empty(&mut self, created: NaiveDate, visible: NaiveDate) -> usize {
        let dep = self.dep;
        let id = self.id(T_MENAGE);
        let row = self.push(
            T_MENAGE,
            visible,
            vec![id.into(), dep.into(), created.into(), stamp_at(visible, 20)],
        );
        let index = self.households.len();
        self.households.push(Household {
            id,
            members: Vec::new(),
            need_end: created,
            propensity: 0.0,
            calls_115: false,
            sheltered_until: None,
            insertion: None,
            asked_insertion: false,
            done: false,
            last_activity: created,
            owned: vec![(T_MENAGE, row)],
            purge_group: index,
            first_urgence: false,
        });
        index
    }

    /// Starts a need episode: how long, and how often the household calls.
    fn start_need(&mut self, h: usize, d: NaiveDate) {
        let r = &mut self.rng;
        let episode = match r.random_range(0..100) {
            0..45 => r.random_range(1..=7),
            45..80 => r.random_range(8..=45),
            _ => r.random_range(46..=240),
        };
        let propensity = r.random_range(0.08..0.45);
        let hh = &mut self.households[h];
        hh.need_end = d + Duration::days(episode);
        hh.propensity = propensity;
        hh.calls_115 = true;
        hh.last_activity = hh.last_activity.max(hh.need_end);
        self.active.push(h);
        self.follow_up(h, d);
    }

    /// The households already in need, and the insertion places already occupied,
    /// when the simulation starts.
    fn initial_stock(&mut self) {
        let origin = self.origin;
        let n = poisson(
            &mut self.rng,
            self.profile.arrivals_per_day * profile::MEAN_EPISODE_DAYS / 2.0,
        );
        for _ in 0..n {
            let created = origin - Duration::days(self.rng.random_range(1..60));
            let composition = pick_weighted(&mut self.rng, COMPOSITIONS);
            let h = self.new_household(composition, created, origin);
            self.start_need(h, origin);
        }
        for gi in 0..self.groups.len() {
            if self.groups[gi].urgence || !self.groups[gi].open_on(origin) {
                continue;
            }
            let target = self.groups[gi].places * 92 / 100;
            let mut filled = 0;
            while filled < target {
                let created = origin - Duration::days(self.rng.random_range(200..900));
                let composition = loop {
                    let c = pick_weighted(&mut self.rng, COMPOSITIONS);
                    if self.groups[gi].accepts(c) {
                        break c;
                    }
                };
                let h = self.new_household(composition, created, origin);
                self.households[h].done = true;
                let size = self.households[h]
                    .size(origin)
                    .min(self.groups[gi].places - filled);
                let sortie = origin + Duration::days(self.rng.random_range(1..700));
                let motif = exit_motif(&mut self.rng);
                self.admit(
                    h,
                    gi,
                    Stay {
                        demande: None,
                        orientation: None,
                        persons: size,
                        entree: origin,
                        sortie,
                        motif,
                        renews: None,
                    },
                );
                filled += size;
            }
        }
    }

    /// Writes a stay in group `gi` and takes its places until its exit, which is
    /// recorded as a change on the exit day.
    fn admit(&mut self, h: usize, gi: usize, stay: Stay) -> i64 {
        let origin = self.origin;
        self.groups[gi].occupy(origin, stay.entree, stay.sortie, stay.persons);
        let id = self.id(T_PEC);
        let (menage, dispositif, groupe) = (
            self.households[h].id,
            self.groups[gi].dispositif_id,
            self.groups[gi].id,
        );
        let row = self.push(
            T_PEC,
            stay.entree,
            vec![
                id.into(),
                menage.into(),
                Value::from(stay.demande),
                Value::from(stay.orientation),
                dispositif.into(),
                groupe.into(),
                Value::Int(stay.persons),
                stay.entree.into(),
                Value::Null,
                Value::Null,
                Value::from(stay.renews),
                stamp_at(stay.entree, 20),
            ],
        );
        self.raw.update(
            T_PEC,
            row,
            stay.sortie,
            Cause::Course,
            vec![(8, stay.sortie.into()), (9, stay.motif.into())],
        );
        self.own(h, T_PEC, row);
        self.touch(h, stay.sortie);
        id
    }

    // -- A day --------------------------------------------------------------------

    fn day(&mut self, d: NaiveDate) {
        if d.month() == 10 && d.day() == 12 && d > self.origin {
            self.open_winter(d.year());
        }
        let p = self.profile;
        let arrivals = poisson(&mut self.rng, p.arrivals_per_day * season(d));
        for _ in 0..arrivals {
            self.arrival(d, true);
        }
        let insertion_only = poisson(&mut self.rng, p.insertion_arrivals_per_day);
        for _ in 0..insertion_only {
            self.arrival(d, false);
        }
        // The data team merges duplicates whatever the household is doing.
        if self.merges.iter().any(|(on, _, _)| *on <= d) {
            let due: Vec<(NaiveDate, usize, usize)> = self
                .merges
                .iter()
                .copied()
                .filter(|(on, _, _)| *on <= d)
                .collect();
            self.merges.retain(|(on, _, _)| *on > d);
            for (_, h, _) in due {
                self.merge_duplicates(h, d);
            }
        }
        let active = std::mem::take(&mut self.active);
        let mut still = Vec::with_capacity(active.len());
        for h in active {
            self.household_day(h, d);
            let hh = &self.households[h];
            let waiting = hh.insertion.is_some();
            if !hh.done && (waiting || d + Duration::days(1) < hh.need_end) {
                still.push(h);
            }
        }
        // Arrivals of the day were pushed to `self.active` meanwhile.
        still.append(&mut self.active);
        self.active = still;
    }

    fn household_day(&mut self, h: usize, d: NaiveDate) {
        self.family_changes(h, d);
        if let Some(until) = self.households[h].sheltered_until {
            if d < until {
                return;
            }
            self.households[h].sheltered_until = None;
        }
        // A prescriber files an insertion request for some households after a while.
        let hh = &self.households[h];
        if hh.calls_115 && !hh.asked_insertion && d < hh.need_end && self.rng.random_bool(0.004) {
            self.file_insertion(h, d, "PRESCRIPTEUR");
        }
        if self.households[h].insertion.is_some() && self.insertion_day(h, d) {
            return;
        }
        let hh = &self.households[h];
        if hh.calls_115 && d < hh.need_end && self.rng.random_bool(hh.propensity) {
            self.call_115(h, d);
        }
    }

    /// A duplicate person is merged into the original: deleted, its links moved.
    fn merge_duplicates(&mut self, h: usize, d: NaiveDate) {
        for mi in 0..self.households[h].members.len() {
            let Some((on, original)) = self.households[h].members[mi].merge else {
                continue;
            };
            if d < on {
                continue;
            }
            let links = std::mem::take(&mut self.households[h].members[mi].links);
            for (table, row) in links {
                match table {
                    T_PERSONNE => self.raw.delete(T_PERSONNE, row, on, Cause::Merge),
                    _ => self
                        .raw
                        .update(table, row, on, Cause::Merge, vec![(2, original.into())]),
                }
            }
            let m = &mut self.households[h].members[mi];
            m.person = original;
            m.merge = None;
            self.touch(h, d);
        }
    }

    /// Births and separations.
    fn family_changes(&mut self, h: usize, d: NaiveDate) {
        let hh = &self.households[h];
        if hh.done || d >= hh.need_end {
            return;
        }
        let mother = hh.present(d).any(|m| {
            m.sex == "F"
                && matches!(m.role, "DEMANDEUR_PRINCIPAL" | "CONJOINT")
                && m.birth.is_some_and(|b| (18..45).contains(&age_on(b, d)))
        });
        if mother && self.rng.random_bool(1.0 / 1200.0) {
            let sex = if self.rng.random_bool(0.5) { "F" } else { "M" };
            self.add_member(h, "ENFANT", sex, Some(d), d, d, None);
            self.touch(h, d);
            return;
        }
        let partner = self.households[h]
            .members
            .iter()
            .position(|m| m.role == "CONJOINT" && m.left.is_none() && m.merge.is_none());
        if let Some(mi) = partner
            && self.rng.random_bool(1.0 / 2500.0)
        {
            // The partner leaves: membership closed, a household of their own.
            let membership = self.households[h].members[mi].membership;
            self.raw.update(
                T_MENAGE_PERSONNE,
                membership,
                d,
                Cause::Course,
                vec![(5, d.into())],
            );
            self.households[h].members[mi].left = Some(d);
            let (person, sex, birth, nom, prenom) = {
                let m = &self.households[h].members[mi];
                (m.person, m.sex, m.birth, m.nom, m.prenom)
            };
            let nh = self.new_household_empty(d, d);
            let mid = self.id(T_MENAGE_PERSONNE);
            let hid = self.households[nh].id;
            let mrow = self.push(
                T_MENAGE_PERSONNE,
                d,
                vec![
                    mid.into(),
                    hid.into(),
                    person.into(),
                    "DEMANDEUR_PRINCIPAL".into(),
                    d.into(),
                    Value::Null,
                    stamp_at(d, 20),
                ],
            );
            self.own(nh, T_MENAGE_PERSONNE, mrow);
            self.households[nh].members.push(Member {
                person,
                sex,
                birth,
                role: "DEMANDEUR_PRINCIPAL",
                nom,
                prenom,
                membership: mrow,
                left: None,
                merge: None,
                links: Vec::new(),
            });
            let group = self.households[h].purge_group;
            self.households[nh].purge_group = group;
            self.touch(h, d);
            self.start_need(nh, d);
        }
    }

    fn request_persons(&mut self, h: usize, demande: i64, d: NaiveDate) {
        let persons: Vec<(usize, i64)> = self.households[h]
            .members
            .iter()
            .enumerate()
            .filter(|(_, m)| m.left.is_none_or(|l| d < l))
            .map(|(i, m)| (i, m.person))
            .collect();
        for (mi, person) in persons {
            let id = self.id(T_DEMANDE_PERSONNE);
            let row = self.push(
                T_DEMANDE_PERSONNE,
                d,
                vec![id.into(), demande.into(), person.into(), stamp_at(d, 20)],
            );
            self.own(h, T_DEMANDE_PERSONNE, row);
            let m = &mut self.households[h].members[mi];
            if m.merge.is_some() {
                m.links.push((T_DEMANDE_PERSONNE, row));
            }
        }
    }

    fn call_115(&mut self, h: usize, d: NaiveDate) {
        let origin = self.origin;
        let dep = self.dep;
        let did = self.id(T_DEMANDE);
        let at = self.random_instant(d);
        let size = self.households[h].size(d);
        let composition = self.households[h].composition(d);
        if !self.households[h].first_urgence {
            self.households[h].first_urgence = true;
            let hid = self.households[h].id;
            self.first_urgence.push((hid, d, composition));
        }
        self.touch(h, d);
        let canal = pick_weighted(
            &mut self.rng,
            &[
                ("APPEL_115", 0.88),
                ("MARAUDE", 0.08),
                ("ACCUEIL_JOUR", 0.04),
            ],
        );
        let cancelled = self.rng.random_bool(0.03);
        let refused = !cancelled && self.rng.random_bool(0.02);
        let mut stay = None;
        let (statut, motif) = if cancelled {
            ("ANNULEE", None)
        } else if refused {
            ("NON_POURVUE", Some("REFUS_USAGER"))
        } else {
            let suitable = (0..self.groups.len()).find(|&i| {
                let g = &self.groups[i];
                g.urgence && g.accepts(composition) && g.free_on(origin, d) >= size
            });
            match suitable {
                Some(gi) => {
                    stay = Some(gi);
                    ("POURVUE", None)
                }
                None => {
                    let any_free = self
                        .groups
                        .iter()
                        .any(|g| g.urgence && g.free_on(origin, d) >= size);
                    let motif = if any_free {
                        "PLACE_INADAPTEE_COMPOSITION"
                    } else if self.rng.random_bool(0.03) {
                        "PLACE_INADAPTEE_SANTE"
                    } else if self.rng.random_bool(0.02) {
                        "AUTRE"
                    } else {
                        "ABSENCE_PLACE"
                    };
                    ("NON_POURVUE", Some(motif))
                }
            }
        };
        // Answered within minutes to an hour and a half, the same night.
        let end_of_day = paris_instant(d, 86_399);
        let answered = (at + Duration::minutes(self.rng.random_range(2..90))).min(end_of_day);
        let hid = self.households[h].id;
        let row = self.push(
            T_DEMANDE,
            d,
            vec![
                did.into(),
                hid.into(),
                "URGENCE".into(),
                dep.into(),
                at.into(),
                canal.into(),
                statut.into(),
                answered.into(),
                Value::from(motif),
                Value::Null,
                Value::Null,
                answered.into(),
            ],
        );
        self.own(h, T_DEMANDE, row);
        self.request_persons(h, did, d);
        // Late corrections: a few refusals were in fact entered by mistake.
        if statut == "NON_POURVUE" && self.rng.random_bool(0.01) {
            let on = d + Duration::days(self.rng.random_range(2..15));
            self.raw.update(
                T_DEMANDE,
                row,
                on,
                Cause::Correction,
                vec![(6, "ANNULEE".into()), (8, Value::Null)],
            );
        }
        if let Some(gi) = stay {
            self.shelter(h, gi, did, d, size);
        }
    }

    /// A stay from the 115, renewed night after night on the same place sometimes.
    fn shelter(&mut self, h: usize, gi: usize, demande: i64, night: NaiveDate, size: i64) {
        let origin = self.origin;
        let hotel = self.groups[gi].hotel;
        let nights = if hotel {
            self.rng.random_range(3..30)
        } else if self.rng.random_bool(0.5) {
            1
        } else {
            self.rng.random_range(2..15)
        };
        let mut entree = night;
        let mut previous: Option<i64> = None;
        loop {
            // The stay lasts as long as the place stays free, one night at least (the
            // request was met because tonight is free).
            let free = self.groups[gi].free_nights(origin, entree, nights, size);
            if free == 0 && previous.is_some() {
                break;
            }
            let sortie = entree + Duration::days(free.max(1));
            let motif = pick_weighted(
                &mut self.rng,
                &[
                    ("FIN_NUITEE_115", 0.88),
                    ("AUTRE_HEBERGEMENT", 0.04),
                    ("DEPART_VOLONTAIRE", 0.05),
                    ("EXCLUSION", 0.01),
                    ("INCONNU", 0.02),
                ],
            );
            let sid = self.admit(
                h,
                gi,
                Stay {
                    demande: previous.is_none().then_some(demande),
                    orientation: None,
                    persons: size,
                    entree,
                    sortie,
                    motif,
                    renews: previous,
                },
            );
            self.households[h].sheltered_until = Some(sortie);
            let renew = if hotel { 0.6 } else { 0.35 };
            if motif != "FIN_NUITEE_115" || !self.rng.random_bool(renew) {
                break;
            }
            previous = Some(sid);
            entree = sortie;
        }
    }

    // -- Insertion ----------------------------------------------------------------

    fn file_insertion(&mut self, h: usize, d: NaiveDate, canal: &'static str) {
        let dep = self.dep;
        let composition = self.households[h].composition(d);
        let preconisation = loop {
            let p = pick_weighted(&mut self.rng, PRECONISATIONS);
            let fits = OFFER
                .iter()
                .any(|k| k.volet == "INSERTION" && k.ty == p && k.accepts.contains(&composition));
            if fits || composition == "MINEUR_ISOLE" || composition == "INCONNUE" {
                break p;
            }
        };
        let did = self.id(T_DEMANDE);
        let at = self.random_instant(d);
        let prescripteur = *pick(&mut self.rng, &self.entites);
        let hid = self.households[h].id;
        let row = self.push(
            T_DEMANDE,
            d,
            vec![
                did.into(),
                hid.into(),
                "INSERTION".into(),
                dep.into(),
                at.into(),
                canal.into(),
                "EN_COURS".into(),
                Value::Null,
                Value::Null,
                preconisation.into(),
                prescripteur.into(),
                stamp_at(d, 20),
            ],
        );
        self.own(h, T_DEMANDE, row);
        self.request_persons(h, did, d);
        // The waiting list of a dispositif of the preconised type.
        let inscription = d + Duration::days(self.rng.random_range(0..10));
        let target = self
            .groups
            .iter()
            .find(|g| !g.urgence && g.ty == preconisation)
            .or_else(|| self.groups.iter().find(|g| !g.urgence))
            .map(|g| g.dispositif_id);
        let lid = self.id(T_LISTE);
        let waiting = self.push(
            T_LISTE,
            inscription,
            vec![
                lid.into(),
                did.into(),
                Value::from(target),
                inscription.into(),
                Value::Null,
                Value::Null,
                stamp_at(inscription, 20),
            ],
        );
        self.own(h, T_LISTE, waiting);
        let wait = self.rng.random_range(20..200);
        let give_up = d + Duration::days(self.rng.random_range(120..720));
        let hh = &mut self.households[h];
        hh.asked_insertion = true;
        hh.last_activity = hh.last_activity.max(give_up);
        hh.insertion = Some(Insertion {
            demande: did,
            row,
            ready: inscription.max(d + Duration::days(wait)),
            preconisation,
            give_up,
            refusals: 0,
            waiting,
        });
    }

    /// The insertion request's day; true when the household was admitted today.
    fn insertion_day(&mut self, h: usize, d: NaiveDate) -> bool {
        let origin = self.origin;
        let Some(ins) = self.households[h].insertion.as_ref() else {
            return false;
        };
        let (did, row, ready, give_up, waiting, preconisation) = (
            ins.demande,
            ins.row,
            ins.ready,
            ins.give_up,
            ins.waiting,
            ins.preconisation,
        );
        if d >= give_up {
            // Nobody could meet the request: cancelled, off the waiting list.
            self.close_request(row, d, "ANNULEE", None);
            self.raw.update(
                T_LISTE,
                waiting,
                d.max(self.raw_inscription(waiting)),
                Cause::Course,
                vec![(4, d.into()), (5, "ANNULATION_DEMANDE".into())],
            );
            let hh = &mut self.households[h];
            hh.insertion = None;
            if d >= hh.need_end {
                hh.done = true;
            }
            return false;
        }
        if d < ready {
            return false;
        }
        let size = self.households[h].size(d);
        let composition = self.households[h].composition(d);
        let answer = self.rng.random_range(3..20);
        let reponse = d + Duration::days(answer);
        let stay_nights = self.rng.random_range(90..900);
        let mut candidates: Vec<usize> = (0..self.groups.len())
            .filter(|&i| !self.groups[i].urgence && self.groups[i].accepts(composition))
            .collect();
        candidates.sort_by_key(|&i| self.groups[i].ty != preconisation);
        let chosen = candidates
            .into_iter()
            .find(|&i| self.groups[i].free_over(origin, reponse, stay_nights.min(120)) >= size);
        let Some(gi) = chosen else {
            let again = self.rng.random_range(7..30);
            if let Some(ins) = self.households[h].insertion.as_mut() {
                ins.ready = d + Duration::days(again);
            }
            return false;
        };
        let oid = self.id(T_ORIENTATION);
        let (dispositif, groupe) = (self.groups[gi].dispositif_id, self.groups[gi].id);
        let orow = self.push(
            T_ORIENTATION,
            d,
            vec![
                oid.into(),
                did.into(),
                dispositif.into(),
                groupe.into(),
                d.into(),
                "EN_ATTENTE".into(),
                Value::Null,
                Value::Null,
                stamp_at(d, 20),
            ],
        );
        self.own(h, T_ORIENTATION, orow);
        self.touch(h, reponse);
        let accepted = self.rng.random_bool(0.75);
        if accepted {
            self.raw.update(
                T_ORIENTATION,
                orow,
                reponse,
                Cause::Course,
                vec![(5, "ACCEPTEE".into()), (6, reponse.into())],
            );
            self.raw.update(
                T_LISTE,
                waiting,
                reponse.max(self.raw_inscription(waiting)),
                Cause::Course,
                vec![(4, reponse.into()), (5, "ORIENTATION_ACTEE".into())],
            );
            self.close_request(row, reponse, "POURVUE", None);
            let sortie = reponse + Duration::days(stay_nights);
            let motif = exit_motif(&mut self.rng);
            self.admit(
                h,
                gi,
                Stay {
                    demande: Some(did),
                    orientation: Some(oid),
                    persons: size,
                    entree: reponse,
                    sortie,
                    motif,
                    renews: None,
                },
            );
            let hh = &mut self.households[h];
            hh.insertion = None;
            hh.done = true;
            return true;
        }
        let by_structure = self.rng.random_bool(0.55);
        let (statut, motif) = if by_structure {
            (
                "REFUSEE_STRUCTURE",
                *pick(&mut self.rng, &["PUBLIC_INADAPTE", "CAPACITE", "AUTRE"]),
            )
        } else {
            (
                "REFUSEE_USAGER",
                *pick(
                    &mut self.rng,
                    &["CONDITIONS_REFUSEES", "LOCALISATION", "AUTRE"],
                ),
            )
        };
        self.raw.update(
            T_ORIENTATION,
            orow,
            reponse,
            Cause::Course,
            vec![(5, statut.into()), (6, reponse.into()), (7, motif.into())],
        );
        // A late correction of the refusal's motif, now and then.
        if self.rng.random_bool(0.05) {
            let on = reponse + Duration::days(self.rng.random_range(2..20));
            self.raw.update(
                T_ORIENTATION,
                orow,
                on,
                Cause::Correction,
                vec![(7, "AUTRE".into())],
            );
        }
        let again = self.rng.random_range(20..90);
        let refusals = {
            let ins = self.households[h].insertion.as_mut().expect("waiting");
            if !by_structure {
                ins.refusals += 1;
            }
            ins.ready = reponse + Duration::days(again);
            ins.refusals
        };
        if refusals >= 2 {
            // The household turned down two places: the request ends unmet.
            self.close_request(row, reponse, "NON_POURVUE", Some("REFUS_USAGER"));
            self.raw.update(
                T_LISTE,
                waiting,
                reponse.max(self.raw_inscription(waiting)),
                Cause::Course,
                vec![(4, reponse.into()), (5, "REFUS".into())],
            );
            let hh = &mut self.households[h];
            hh.insertion = None;
            if d >= hh.need_end {
                hh.done = true;
            }
        }
        false
    }

    fn raw_inscription(&self, waiting: u32) -> NaiveDate {
        self.raw
            .value(T_LISTE, waiting, 3)
            .as_date()
            .expect("inscription date")
    }

    fn close_request(&mut self, row: u32, on: NaiveDate, statut: &str, motif: Option<&str>) {
        let at = paris_instant(on, 11 * 3600 + self.rng.random_range(0..3600));
        self.raw.update(
            T_DEMANDE,
            row,
            on,
            Cause::Course,
            vec![(6, statut.into()), (7, at.into()), (8, Value::from(motif))],
        );
    }

    // -- Purges -------------------------------------------------------------------

    /// Every household is purged on the first day of the month after its group's
    /// last activity plus 24 months (the change applies only if that day is simulated).
    fn schedule_purges(&mut self) {
        let mut last: std::collections::HashMap<usize, NaiveDate> = Default::default();
        for h in &self.households {
            let e = last.entry(h.purge_group).or_insert(h.last_activity);
            *e = (*e).max(h.last_activity);
        }
        for hi in 0..self.households.len() {
            let l = last[&self.households[hi].purge_group];
            let limit = l
                .checked_add_months(Months::new(24))
                .expect("date in range");
            let purge = NaiveDate::from_ymd_opt(limit.year(), limit.month(), 1)
                .expect("date")
                .checked_add_months(Months::new(1))
                .expect("date in range");
            let owned = std::mem::take(&mut self.households[hi].owned);
            for (table, row) in owned {
                self.raw.delete(table, row, purge, Cause::Purge);
            }
        }
    }
}

/// How a long stay ends.
fn exit_motif(rng: &mut ChaCha8Rng) -> &'static str {
    pick_weighted(
        rng,
        &[
            ("ACCES_LOGEMENT", 0.38),
            ("LOGEMENT_ADAPTE", 0.15),
            ("AUTRE_HEBERGEMENT", 0.15),
            ("DEPART_VOLONTAIRE", 0.15),
            ("EXCLUSION", 0.05),
            ("DECES", 0.01),
            ("INCONNU", 0.11),
        ],
    )
}
