//! A seeded, day-by-day simulation of SIAO activity written into the source schema.
//!
//! Behaviour, not random rows: households in need call the 115 on many nights; a
//! request is met only when a place group that accepts the household's composition has
//! enough places free that night, otherwise it is NON_POURVUE with the matching motif.
//! Stays occupy places until they end (and are sometimes renewed); insertion requests
//! wait for a free insertion place, receive orientations that are accepted or refused,
//! and end in long stays. The offer has funded places and installed place groups, with
//! winter places open from November to March. Everything is drawn from one ChaCha
//! generator seeded by `seed`, iterating in a fixed order, so a seed gives the same
//! rows on every machine and every back end.
//!
//! The data is the state of the operational database at the end of the simulated
//! interval: anything that would happen on or after `to` is not yet known (stays still
//! open, requests still EN_COURS, orientations EN_ATTENTE).

use std::collections::BTreeMap;

use chrono::{DateTime, Datelike, Duration, FixedOffset, NaiveDate, TimeZone};
use chrono_tz::Europe::Paris;
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::schema::{Table, table};
use crate::source::Value;
use crate::territory;

/// What to simulate.
#[derive(Debug, Clone)]
pub struct SimulationConfig {
    /// COG codes of the départements to simulate.
    pub departements: Vec<String>,
    /// First simulated day.
    pub from: NaiveDate,
    /// First day not simulated (exclusive).
    pub to: NaiveDate,
    pub seed: u64,
}

impl Default for SimulationConfig {
    /// The demo's scope: Paris, Seine-Saint-Denis, Bouches-du-Rhône and Creuse, 2025, seed 42.
    fn default() -> Self {
        Self {
            departements: ["75", "93", "13", "23"].map(String::from).to_vec(),
            from: NaiveDate::from_ymd_opt(2025, 1, 1).expect("valid date"),
            to: NaiveDate::from_ymd_opt(2026, 1, 1).expect("valid date"),
            seed: 42,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SimulationError {
    #[error("département inconnu du code officiel géographique : « {0} »")]
    UnknownDepartement(String),
    #[error("intervalle vide : la date de fin ({to}) doit suivre la date de début ({from})")]
    EmptyInterval { from: NaiveDate, to: NaiveDate },
    #[error("aucun département à simuler")]
    NoDepartement,
}

/// The simulated rows, per source table, in the tables' column order.
#[derive(Debug, Default)]
pub struct Dataset {
    pub tables: BTreeMap<&'static str, Vec<Vec<Value>>>,
}

impl Dataset {
    pub fn rows(&self, table: &str) -> &[Vec<Value>] {
        self.tables.get(table).map(Vec::as_slice).unwrap_or(&[])
    }

    pub fn total_rows(&self) -> usize {
        self.tables.values().map(Vec::len).sum()
    }

    /// Tables in the schema's order, with their rows.
    pub fn in_schema_order(&self) -> impl Iterator<Item = (&'static Table, &[Vec<Value>])> {
        crate::TABLES.iter().map(|t| (t, self.rows(t.name)))
    }

    fn push(&mut self, table: &'static str, row: Vec<Value>) {
        self.tables.entry(table).or_default().push(row);
    }
}

/// Id ranges per table, disjoint so that a person or household id can never be
/// mistaken for another table's id (the privacy tests rely on it).
fn id_base(table: &str) -> i64 {
    match table {
        "entite" => 1_000,
        "dispositif" => 10_000,
        "groupe_places" => 100_000,
        "menage" => 1_000_000_000,
        "personne" => 2_000_000_000,
        "menage_personne" => 3_000_000_000,
        "demande" => 4_000_000_000,
        "demande_personne" => 5_000_000_000,
        "orientation" => 6_000_000_000,
        "liste_attente" => 7_000_000_000,
        "prise_en_charge" => 8_000_000_000,
        "evaluation" => 9_000_000_000,
        "note" => 10_000_000_000,
        _ => 0,
    }
}

#[derive(Default)]
struct Ids(BTreeMap<&'static str, i64>);

impl Ids {
    fn next(&mut self, table: &'static str) -> i64 {
        let n = self.0.entry(table).or_insert(0);
        *n += 1;
        id_base(table) + *n
    }
}

/// How strained a département is: households in need and places, per profile.
struct Profile {
    households_in_need: usize,
    urgence_places: i64,
    insertion_places: i64,
    call_probability: f64,
}

fn profile(code: &str) -> Profile {
    match code {
        // Saturated: far more households than places.
        "75" => Profile {
            households_in_need: 1400,
            urgence_places: 260,
            insertion_places: 600,
            call_probability: 0.30,
        },
        "93" => Profile {
            households_in_need: 1100,
            urgence_places: 150,
            insertion_places: 480,
            call_probability: 0.30,
        },
        // Strained.
        "13" | "69" | "59" | "94" | "92" | "95" | "91" | "77" | "78" | "33" | "31" | "06"
        | "67" | "34" | "44" => Profile {
            households_in_need: 700,
            urgence_places: 260,
            insertion_places: 420,
            call_probability: 0.22,
        },
        // Rural: few households, places usually free.
        "23" | "48" | "15" | "05" | "04" | "09" | "46" | "52" | "55" | "36" | "58" | "90"
        | "2A" | "2B" => Profile {
            households_in_need: 70,
            urgence_places: 45,
            insertion_places: 30,
            call_probability: 0.25,
        },
        _ => Profile {
            households_in_need: 250,
            urgence_places: 110,
            insertion_places: 120,
            call_probability: 0.22,
        },
    }
}

const COMPOSITIONS: &[(&str, f64)] = &[
    ("HOMME_SEUL", 0.46),
    ("FEMME_SEULE", 0.12),
    ("FEMME_SEULE_AVEC_ENFANTS", 0.14),
    ("HOMME_SEUL_AVEC_ENFANTS", 0.02),
    ("COUPLE_SANS_ENFANT", 0.06),
    ("COUPLE_AVEC_ENFANTS", 0.14),
    ("GROUPE_SANS_ENFANT", 0.02),
    ("GROUPE_AVEC_ENFANTS", 0.02),
    ("MINEUR_ISOLE", 0.02),
];

const ADULT_COMPOSITIONS: &str = "HOMME_SEUL,FEMME_SEULE,COUPLE_SANS_ENFANT,GROUPE_SANS_ENFANT";
const FAMILY_COMPOSITIONS: &str = "FEMME_SEULE_AVEC_ENFANTS,HOMME_SEUL_AVEC_ENFANTS,COUPLE_AVEC_ENFANTS,GROUPE_AVEC_ENFANTS,FEMME_SEULE";
const ALL_COMPOSITIONS: &str = "HOMME_SEUL,FEMME_SEULE,HOMME_SEUL_AVEC_ENFANTS,FEMME_SEULE_AVEC_ENFANTS,COUPLE_SANS_ENFANT,COUPLE_AVEC_ENFANTS,GROUPE_SANS_ENFANT,GROUPE_AVEC_ENFANTS";

const NOMS: &[&str] = &[
    "MARTIN",
    "BERNARD",
    "THOMAS",
    "PETIT",
    "ROBERT",
    "RICHARD",
    "DURAND",
    "DUBOIS",
    "MOREAU",
    "LAURENT",
    "SIMON",
    "MICHEL",
    "LEFEBVRE",
    "LEROY",
    "ROUX",
    "DAVID",
    "BERTRAND",
    "MOREL",
    "FOURNIER",
    "GIRARD",
    "DIALLO",
    "TRAORE",
    "KONATE",
    "BENALI",
    "HADDAD",
    "NGUYEN",
    "POPESCU",
    "KOWALSKI",
    "OUEDRAOGO",
    "MENSAH",
];
const PRENOMS_F: &[&str] = &[
    "MARIE",
    "NATHALIE",
    "ISABELLE",
    "SYLVIE",
    "AMINATA",
    "FATOUMATA",
    "YASMINE",
    "SARAH",
    "LEA",
    "CHLOE",
    "INES",
    "AICHA",
    "ELENA",
    "MARIAM",
    "NADIA",
];
const PRENOMS_M: &[&str] = &[
    "JEAN", "PHILIPPE", "MICHEL", "ALAIN", "MAMADOU", "MOUSSA", "KARIM", "MOHAMED", "LUCAS",
    "HUGO", "YANIS", "ADAM", "IVAN", "OMAR", "SAMUEL",
];
const TEXTES: &[&str] = &[
    "Appel reçu au 115, la personne dort dans sa voiture depuis plusieurs nuits.",
    "Famille hébergée chez un tiers jusqu'à hier, demande une mise à l'abri.",
    "Situation de rupture familiale, pas de ressources déclarées.",
    "Sortie d'hospitalisation prévue, besoin d'un hébergement adapté.",
    "Personne orientée par la maraude du secteur, fatigue importante.",
    "Demande de renouvellement de la prise en charge hôtelière.",
    "Entretien réalisé à l'accueil de jour, dossier de logement social en cours.",
];
const AUTEURS: &[&str] = &[
    "Claire Fontaine (écoutante 115)",
    "Rachid Belkacem (travailleur social)",
    "Sophie Marchand (coordinatrice SIAO)",
    "Julien Perrin (maraude)",
];

struct Person {
    id: i64,
}

struct Household {
    id: i64,
    composition: &'static str,
    persons: Vec<Person>,
    need_start: NaiveDate,
    need_end: NaiveDate,
    /// The stay the household is in tonight, if any.
    sheltered_until: Option<NaiveDate>,
    /// An open insertion request: (demande id, date asked, day it may be oriented, preconisation).
    insertion: Option<(i64, NaiveDate, NaiveDate, &'static str)>,
    first_request: Option<NaiveDate>,
    housed: bool,
}

/// A stay to write: `persons` places from `entree` (included) to `sortie` (excluded).
struct Stay {
    menage: i64,
    demande: Option<i64>,
    orientation: Option<i64>,
    persons: i64,
    entree: NaiveDate,
    sortie: NaiveDate,
    motif: &'static str,
    renews: Option<i64>,
}

struct PlaceGroup {
    id: i64,
    dispositif_id: i64,
    accepts: &'static str,
    places: i64,
    debut: NaiveDate,
    fin: Option<NaiveDate>,
    volet_urgence: bool,
    hotel: bool,
    /// Places taken per night, from the simulation's first day.
    occupied: Vec<i64>,
}

impl PlaceGroup {
    fn open_on(&self, d: NaiveDate) -> bool {
        self.debut <= d && self.fin.is_none_or(|f| d < f)
    }

    fn free_over(&self, from: NaiveDate, start: NaiveDate, nights: i64) -> i64 {
        (0..nights)
            .map(|k| {
                let d = start + Duration::days(k);
                if !self.open_on(d) {
                    return 0;
                }
                let i = (d - from).num_days() as usize;
                self.places - self.occupied.get(i).copied().unwrap_or(0)
            })
            .min()
            .unwrap_or(0)
    }

    /// Consecutive nights from `start` (at most `max`) with `size` places free.
    fn free_nights(&self, from: NaiveDate, start: NaiveDate, max: i64, size: i64) -> i64 {
        (0..max)
            .take_while(|&k| self.free_over(from, start + Duration::days(k), 1) >= size)
            .count() as i64
    }

    /// Writes a stay in this group and takes its places. A stay ending on or after the
    /// end of the interval is still open: its exit date and motif are not known yet.
    fn admit(
        &mut self,
        data: &mut Dataset,
        ids: &mut Ids,
        (from, to): (NaiveDate, NaiveDate),
        stay: Stay,
    ) -> i64 {
        self.occupy(from, stay.entree, stay.sortie.min(to), stay.persons);
        let id = ids.next("prise_en_charge");
        let known_sortie = (stay.sortie < to).then_some(stay.sortie);
        data.push(
            "prise_en_charge",
            vec![
                id.into(),
                stay.menage.into(),
                Value::from(stay.demande),
                Value::from(stay.orientation),
                self.dispositif_id.into(),
                self.id.into(),
                Value::Int(stay.persons),
                stay.entree.into(),
                Value::from(known_sortie),
                Value::from(known_sortie.map(|_| stay.motif)),
                Value::from(stay.renews),
                stamp(stay.entree),
            ],
        );
        id
    }

    fn occupy(&mut self, from: NaiveDate, start: NaiveDate, end: NaiveDate, n: i64) {
        let (a, b) = (
            (start - from).num_days().max(0) as usize,
            (end - from).num_days().max(0) as usize,
        );
        for slot in self.occupied.iter_mut().take(b).skip(a) {
            *slot += n;
        }
    }
}

fn paris_instant(d: NaiveDate, seconds: i64) -> DateTime<FixedOffset> {
    let midnight = Paris
        .from_local_datetime(&d.and_hms_opt(0, 0, 0).expect("midnight"))
        .earliest()
        .expect("midnight exists in Paris");
    (midnight + Duration::seconds(seconds)).fixed_offset()
}

fn random_instant(rng: &mut ChaCha8Rng, d: NaiveDate) -> DateTime<FixedOffset> {
    // The 115 answers around the clock, most calls in the day; a few just after midnight.
    let hour = if rng.random_bool(0.06) {
        rng.random_range(0..2)
    } else {
        rng.random_range(8..23)
    };
    paris_instant(d, hour * 3600 + rng.random_range(0..3600))
}

fn pick<'a, T>(rng: &mut ChaCha8Rng, items: &'a [T]) -> &'a T {
    &items[rng.random_range(0..items.len())]
}

fn pick_weighted(rng: &mut ChaCha8Rng, items: &[(&'static str, f64)]) -> &'static str {
    let total: f64 = items.iter().map(|(_, w)| w).sum();
    let mut x = rng.random::<f64>() * total;
    for (item, w) in items {
        if x < *w {
            return item;
        }
        x -= w;
    }
    items[items.len() - 1].0
}

fn birth_for_age(rng: &mut ChaCha8Rng, on: NaiveDate, min: i64, max: i64) -> NaiveDate {
    let age_days = rng.random_range(min * 365 + 1..(max + 1) * 365 - 1);
    on - Duration::days(age_days)
}

fn stamp(d: NaiveDate) -> Value {
    Value::Timestamp(paris_instant(d, 20 * 3600))
}

/// Runs the simulation.
pub fn simulate(config: &SimulationConfig) -> Result<Dataset, SimulationError> {
    if config.departements.is_empty() {
        return Err(SimulationError::NoDepartement);
    }
    if config.to <= config.from {
        return Err(SimulationError::EmptyInterval {
            from: config.from,
            to: config.to,
        });
    }
    for code in &config.departements {
        if territory::departement(code).is_none() {
            return Err(SimulationError::UnknownDepartement(code.clone()));
        }
    }
    let mut rng = ChaCha8Rng::seed_from_u64(config.seed);
    let mut ids = Ids::default();
    let mut data = Dataset::default();
    for code in &config.departements {
        simulate_departement(config, code, &mut rng, &mut ids, &mut data);
    }
    Ok(data)
}

fn simulate_departement(
    config: &SimulationConfig,
    dep: &str,
    rng: &mut ChaCha8Rng,
    ids: &mut Ids,
    data: &mut Dataset,
) {
    let from = config.from;
    let to = config.to;
    let days = (to - from).num_days();
    let profile = profile(dep);
    // The offer was set up before the simulated interval.
    let opened = from - Duration::days(rng.random_range(400..3000));

    // Entités.
    let mut entites = Vec::new();
    for k in 0..4 {
        let id = ids.next("entite");
        let name = [
            "Association Aurore",
            "Emmaüs Solidarité",
            "CCAS",
            "Fondation de l'Armée du Salut",
        ][k];
        data.push(
            "entite",
            vec![
                id.into(),
                format!("{name} ({dep})").into(),
                format!("{:09}", 775_000_000 + id).into(),
                stamp(opened),
            ],
        );
        entites.push(id);
    }

    // Dispositifs and their place groups.
    let mut groups: Vec<PlaceGroup> = Vec::new();
    let add_dispositif = |rng: &mut ChaCha8Rng,
                          ids: &mut Ids,
                          data: &mut Dataset,
                          groups: &mut Vec<PlaceGroup>,
                          categorie: &str,
                          ty: &str,
                          volet: &str,
                          accepts: &'static str,
                          places: i64,
                          winter: i64| {
        let id = ids.next("dispositif");
        let entite = *pick(rng, &entites);
        let p177 = if ty == "HOTEL" { 0 } else { places };
        let hors = if ty == "HOTEL" { places } else { 0 };
        // A few dispositifs open or close within the year.
        let (ouverture, fermeture) = if rng.random_bool(0.08) {
            (
                from + Duration::days(rng.random_range(30..days.max(31))),
                None,
            )
        } else {
            (opened, None)
        };
        data.push(
            "dispositif",
            vec![
                id.into(),
                entite.into(),
                dep.into(),
                format!("{ty} {dep}-{id}").into(),
                format!("{:014}", 77_500_000_000_000 + id).into(),
                format!("{dep}0{:06}", id % 1_000_000).into(),
                categorie.into(),
                ty.into(),
                volet.into(),
                Value::Int(p177),
                Value::Int(hors),
                accepts.into(),
                ouverture.into(),
                Value::from(fermeture),
                stamp(opened),
            ],
        );
        // Installed capacity may differ a little from the funded one.
        let installed = (places + rng.random_range(-2..=2)).max(1);
        let mut push_group =
            |n: i64, temporaire: bool, debut: NaiveDate, fin: Option<NaiveDate>| {
                let gid = ids.next("groupe_places");
                data.push(
                    "groupe_places",
                    vec![
                        gid.into(),
                        id.into(),
                        Value::Int(n),
                        temporaire.into(),
                        debut.into(),
                        Value::from(fin),
                        stamp(debut),
                    ],
                );
                groups.push(PlaceGroup {
                    id: gid,
                    dispositif_id: id,
                    accepts,
                    places: n,
                    debut,
                    fin,
                    volet_urgence: volet == "URGENCE",
                    hotel: ty == "HOTEL",
                    occupied: vec![0; days as usize + 1],
                });
            };
        push_group(installed, false, ouverture, fermeture);
        if winter > 0 {
            // Winter places: 1 November to 31 March of each winter touching the interval.
            for year in from.year() - 1..=to.year() {
                let debut = NaiveDate::from_ymd_opt(year, 11, 1).expect("date");
                let fin = NaiveDate::from_ymd_opt(year + 1, 4, 1).expect("date");
                if fin > from && debut < to {
                    push_group(winter, true, debut, Some(fin));
                }
            }
        }
    };

    // The offer with places, per département: (categorie, type, volet, accepted
    // compositions, share of the volet's places in %, winter places as a share in %).
    // The halte de nuit has a fixed 10 places.
    const OFFER: &[(&str, &str, &str, &str, i64, i64)] = &[
        (
            "HEBERGEMENT",
            "HORS_CHRS",
            "URGENCE",
            ADULT_COMPOSITIONS,
            45,
            16,
        ),
        (
            "HEBERGEMENT",
            "HORS_CHRS",
            "URGENCE",
            ALL_COMPOSITIONS,
            20,
            10,
        ),
        (
            "HEBERGEMENT",
            "HOTEL",
            "URGENCE",
            FAMILY_COMPOSITIONS,
            35,
            0,
        ),
        (
            "VEILLE_SOCIALE",
            "HALTE_NUIT",
            "URGENCE",
            ADULT_COMPOSITIONS,
            0,
            0,
        ),
        ("HEBERGEMENT", "CHRS", "INSERTION", ALL_COMPOSITIONS, 50, 0),
        (
            "LOGEMENT_ADAPTE",
            "PENSION_FAMILLE",
            "INSERTION",
            ADULT_COMPOSITIONS,
            20,
            0,
        ),
        ("IML", "IML_LOCATION", "INSERTION", ALL_COMPOSITIONS, 30, 0),
    ];
    for &(categorie, ty, volet, accepts, share, winter) in OFFER {
        let total = if volet == "URGENCE" {
            profile.urgence_places
        } else {
            profile.insertion_places
        };
        let places = if ty == "HALTE_NUIT" {
            10
        } else {
            total * share / 100
        };
        let winter = total * winter / 100;
        add_dispositif(
            rng,
            ids,
            data,
            &mut groups,
            categorie,
            ty,
            volet,
            accepts,
            places,
            winter,
        );
    }
    // Services with no places.
    for (categorie, ty) in [
        ("VEILLE_SOCIALE", "MARAUDE"),
        ("PREMIER_ACCUEIL", "SAO"),
        ("VEILLE_SOCIALE", "ACCUEIL_JOUR"),
    ] {
        let id = ids.next("dispositif");
        data.push(
            "dispositif",
            vec![
                id.into(),
                entites[0].into(),
                dep.into(),
                format!("{ty} {dep}-{id}").into(),
                Value::Null,
                Value::Null,
                categorie.into(),
                ty.into(),
                Value::Null,
                Value::Int(0),
                Value::Int(0),
                Value::Null,
                opened.into(),
                Value::Null,
                stamp(opened),
            ],
        );
    }

    // Households in need: some already in need when the interval starts, the others
    // arriving uniformly; each stays in need for a few weeks to a year.
    let mut households: Vec<Household> = Vec::new();
    let n = profile.households_in_need;
    for k in 0..n {
        let need_start = if k < n / 3 {
            from - Duration::days(rng.random_range(0..200))
        } else {
            from + Duration::days(rng.random_range(0..days))
        };
        let need_end = need_start + Duration::days(rng.random_range(20..360));
        households.push(create_household(
            rng,
            ids,
            data,
            dep,
            need_start,
            (need_start, need_end),
        ));
    }

    // The places are not empty when the interval starts: insertion places are about
    // 92 % occupied by households admitted earlier. Their stays are written as direct
    // admissions on the first day (no row is dated before the interval) and end over the
    // following months.
    for g in groups.iter_mut() {
        if g.volet_urgence || !g.open_on(from) {
            continue;
        }
        let target = g.places * 92 / 100;
        let mut filled = 0;
        while filled < target {
            let created = from - Duration::days(rng.random_range(200..900));
            let h = create_household(rng, ids, data, dep, created, (created, created));
            let size = (h.persons.len() as i64).min(g.places - filled);
            let sortie = from + Duration::days(rng.random_range(1..600));
            let motif = exit_motif(rng);
            g.admit(
                data,
                ids,
                (from, to),
                Stay {
                    menage: h.id,
                    demande: None,
                    orientation: None,
                    persons: size,
                    entree: from,
                    sortie,
                    motif,
                    renews: None,
                },
            );
            filled += size;
        }
    }

    let accepts =
        |g: &PlaceGroup, composition: &str| g.accepts.split(',').any(|c| c == composition);

    // Day by day.
    for day in 0..days {
        let d = from + Duration::days(day);
        for h in households.iter_mut() {
            if h.housed || d < h.need_start || d >= h.need_end {
                continue;
            }
            if let Some(until) = h.sheltered_until {
                if d < until {
                    continue;
                }
                h.sheltered_until = None;
            }
            let size = h.persons.len() as i64;

            // Insertion: a prescriber files a request for some households after a while.
            if h.insertion.is_none()
                && d >= h.need_start + Duration::days(10)
                && rng.random_bool(0.006)
            {
                let preconisation = if h.composition.contains("ENFANTS") {
                    *pick(rng, &["CHRS", "IML_LOCATION"])
                } else {
                    *pick(rng, &["CHRS", "PENSION_FAMILLE", "IML_LOCATION"])
                };
                let did = ids.next("demande");
                let wait = rng.random_range(15..240);
                data.push(
                    "demande",
                    vec![
                        did.into(),
                        h.id.into(),
                        "INSERTION".into(),
                        dep.into(),
                        random_instant(rng, d).into(),
                        "PRESCRIPTEUR".into(),
                        "EN_COURS".into(),
                        Value::Null,
                        Value::Null,
                        preconisation.into(),
                        (*pick(rng, &entites)).into(),
                        stamp(d),
                    ],
                );
                push_request_persons(data, ids, did, &h.persons, d);
                h.first_request.get_or_insert(d);
                h.insertion = Some((did, d, d + Duration::days(wait), preconisation));
            }

            // An insertion place comes up: orientation, answer, admission.
            if let Some((did, asked, ready, preconisation)) = h.insertion
                && d >= ready
            {
                let candidates: Vec<usize> = groups
                    .iter()
                    .enumerate()
                    .filter(|(_, g)| !g.volet_urgence && accepts(g, h.composition))
                    .map(|(i, _)| i)
                    .collect();
                let stay_nights = rng.random_range(90..700);
                let answer = rng.random_range(3..20);
                let chosen = candidates.iter().copied().find(|&i| {
                    groups[i].free_over(
                        from,
                        d + Duration::days(answer),
                        (to - d).num_days().min(stay_nights).max(1),
                    ) >= size
                });
                if let Some(gi) = chosen {
                    let oid = ids.next("orientation");
                    let reponse = d + Duration::days(answer);
                    let accepted = rng.random_bool(0.78);
                    let (statut, date_reponse, motif) = if reponse >= to {
                        ("EN_ATTENTE", Value::Null, Value::Null)
                    } else if accepted {
                        ("ACCEPTEE", Value::Date(reponse), Value::Null)
                    } else if rng.random_bool(0.6) {
                        (
                            "REFUSEE_STRUCTURE",
                            Value::Date(reponse),
                            Value::from(*pick(rng, &["PUBLIC_INADAPTE", "CAPACITE", "AUTRE"])),
                        )
                    } else {
                        (
                            "REFUSEE_USAGER",
                            Value::Date(reponse),
                            Value::from(*pick(
                                rng,
                                &["CONDITIONS_REFUSEES", "LOCALISATION", "AUTRE"],
                            )),
                        )
                    };
                    let g = &mut groups[gi];
                    data.push(
                        "orientation",
                        vec![
                            oid.into(),
                            did.into(),
                            g.dispositif_id.into(),
                            g.id.into(),
                            d.into(),
                            statut.into(),
                            date_reponse,
                            motif,
                            stamp(d),
                        ],
                    );
                    let lid = ids.next("liste_attente");
                    let inscription = asked + Duration::days(rng.random_range(0..10));
                    let desinscription = if statut == "ACCEPTEE" {
                        Value::Date(reponse)
                    } else {
                        Value::Null
                    };
                    let motif_desinscription = if statut == "ACCEPTEE" {
                        Value::from("ORIENTATION_ACTEE")
                    } else {
                        Value::Null
                    };
                    data.push(
                        "liste_attente",
                        vec![
                            lid.into(),
                            did.into(),
                            g.dispositif_id.into(),
                            inscription.min(d).into(),
                            desinscription,
                            motif_desinscription,
                            stamp(d),
                        ],
                    );
                    if statut == "ACCEPTEE" {
                        let sortie = reponse + Duration::days(stay_nights);
                        let motif = exit_motif(rng);
                        g.admit(
                            data,
                            ids,
                            (from, to),
                            Stay {
                                menage: h.id,
                                demande: Some(did),
                                orientation: Some(oid),
                                persons: size,
                                entree: reponse,
                                sortie,
                                motif,
                                renews: None,
                            },
                        );
                        // The request is met at admission; the household leaves the 115.
                        set_request_outcome(
                            data,
                            did,
                            "POURVUE",
                            paris_instant(reponse, 11 * 3600),
                            None,
                        );
                        h.housed = true;
                        h.insertion = None;
                        continue;
                    } else if statut == "EN_ATTENTE" {
                        h.insertion = Some((did, asked, to, preconisation));
                    } else {
                        h.insertion = Some((
                            did,
                            asked,
                            d + Duration::days(rng.random_range(20..90)),
                            preconisation,
                        ));
                    }
                } else {
                    h.insertion = Some((
                        did,
                        asked,
                        d + Duration::days(rng.random_range(7..30)),
                        preconisation,
                    ));
                }
            }

            // The 115: calls on some nights, never twice the same night.
            if !rng.random_bool(profile.call_probability) {
                continue;
            }
            let did = ids.next("demande");
            let at = random_instant(rng, d);
            // The request's night is its Paris date.
            let night = at.with_timezone(&Paris).date_naive();
            h.first_request.get_or_insert(night);
            let cancelled = rng.random_bool(0.03);
            let refused = !cancelled && rng.random_bool(0.02);
            let answered = at + Duration::minutes(rng.random_range(2..90));
            let (statut, motif, stay) = if cancelled {
                ("ANNULEE", None, None)
            } else if refused {
                ("NON_POURVUE", Some("REFUS_USAGER"), None)
            } else {
                let nights = if rng.random_bool(0.5) {
                    1
                } else {
                    rng.random_range(2..15)
                };
                let suitable = groups
                    .iter()
                    .enumerate()
                    .filter(|(_, g)| g.volet_urgence && accepts(g, h.composition))
                    .map(|(i, _)| i)
                    .find(|&i| groups[i].free_over(from, night, 1) >= size);
                match suitable {
                    Some(gi) => ("POURVUE", None, Some((gi, nights))),
                    None => {
                        let any_free = groups
                            .iter()
                            .any(|g| g.volet_urgence && g.free_over(from, night, 1) >= size);
                        let motif = if any_free {
                            "PLACE_INADAPTEE_COMPOSITION"
                        } else {
                            "ABSENCE_PLACE"
                        };
                        ("NON_POURVUE", Some(motif), None)
                    }
                }
            };
            data.push(
                "demande",
                vec![
                    did.into(),
                    h.id.into(),
                    "URGENCE".into(),
                    dep.into(),
                    at.into(),
                    "APPEL_115".into(),
                    statut.into(),
                    answered.into(),
                    Value::from(motif),
                    Value::Null,
                    Value::Null,
                    stamp(night),
                ],
            );
            push_request_persons(data, ids, did, &h.persons, night);
            if let Some((gi, nights)) = stay {
                // A stay, sometimes renewed night after night on the same place.
                let mut entree = night;
                let mut previous: Option<i64> = None;
                let mut first = true;
                loop {
                    let g = &mut groups[gi];
                    // The stay lasts as long as the place stays free, one night at least
                    // (the request was met because tonight is free).
                    let free =
                        g.free_nights(from, entree, nights.min((to - entree).num_days()), size);
                    if free == 0 && (!first || entree >= to) {
                        break;
                    }
                    let sortie = entree + Duration::days(free.max(1));
                    let demande = if first { Some(did) } else { None };
                    let sid = g.admit(
                        data,
                        ids,
                        (from, to),
                        Stay {
                            menage: h.id,
                            demande,
                            orientation: None,
                            persons: size,
                            entree,
                            sortie,
                            motif: "FIN_NUITEE_115",
                            renews: previous,
                        },
                    );
                    h.sheltered_until = Some(sortie);
                    if sortie >= to
                        || !g.hotel && !rng.random_bool(0.35)
                        || g.hotel && !rng.random_bool(0.6)
                    {
                        break;
                    }
                    previous = Some(sid);
                    entree = sortie;
                    first = false;
                }
            }
        }
    }

    // Evaluations and notes for households that asked.
    for h in &households {
        let Some(d0) = h.first_request else { continue };
        if rng.random_bool(0.8) {
            let when = d0 + Duration::days(rng.random_range(0..6));
            push_evaluation(data, ids, rng, h.id, "FLASH", when, to);
        }
        if rng.random_bool(0.6) {
            let when = d0 + Duration::days(rng.random_range(5..90));
            push_evaluation(data, ids, rng, h.id, "APPROFONDIE", when, to);
        }
        for _ in 0..rng.random_range(0..3) {
            let when = d0 + Duration::days(rng.random_range(0..60));
            if when < to {
                let nid = ids.next("note");
                data.push(
                    "note",
                    vec![
                        nid.into(),
                        h.id.into(),
                        (*pick(rng, TEXTES)).into(),
                        (*pick(rng, AUTEURS)).into(),
                        random_instant(rng, when).into(),
                        stamp(when),
                    ],
                );
            }
        }
    }
}

/// Writes a new household, its persons and their memberships; returns it.
fn create_household(
    rng: &mut ChaCha8Rng,
    ids: &mut Ids,
    data: &mut Dataset,
    dep: &str,
    created: NaiveDate,
    need: (NaiveDate, NaiveDate),
) -> Household {
    let composition = pick_weighted(rng, COMPOSITIONS);
    let hid = ids.next("menage");
    data.push(
        "menage",
        vec![hid.into(), dep.into(), created.into(), stamp(created)],
    );
    let mut persons = Vec::new();
    let mut add_person = |rng: &mut ChaCha8Rng,
                          ids: &mut Ids,
                          data: &mut Dataset,
                          role: &str,
                          sexe: &str,
                          min: i64,
                          max: i64| {
        let pid = ids.next("personne");
        let birth = birth_for_age(rng, created, min, max);
        let prenom = if sexe == "F" {
            *pick(rng, PRENOMS_F)
        } else {
            *pick(rng, PRENOMS_M)
        };
        let nom = *pick(rng, NOMS);
        let nationalite = pick_weighted(
            rng,
            &[
                ("FRANCAISE", 0.45),
                ("UE", 0.10),
                ("HORS_UE", 0.40),
                ("APATRIDE", 0.01),
                ("INCONNU", 0.04),
            ],
        );
        let adult = min >= 18;
        let telephone = if adult && rng.random_bool(0.8) {
            Value::Text(format!("06{:08}", rng.random_range(0..100_000_000u64)))
        } else {
            Value::Null
        };
        let email = if adult && rng.random_bool(0.4) {
            Value::Text(format!(
                "{}.{}{}@exemple.fr",
                prenom.to_lowercase(),
                nom.to_lowercase(),
                pid % 1000
            ))
        } else {
            Value::Null
        };
        // A few birth dates are unknown, as in the real application.
        let birth_value = if rng.random_bool(0.02) {
            Value::Null
        } else {
            Value::Date(birth)
        };
        let sexe_value = if rng.random_bool(0.01) {
            Value::Text("INCONNU".into())
        } else {
            Value::Text(sexe.into())
        };
        data.push(
            "personne",
            vec![
                pid.into(),
                nom.into(),
                prenom.into(),
                birth_value,
                sexe_value,
                nationalite.into(),
                telephone,
                email,
                stamp(created),
            ],
        );
        let mid = ids.next("menage_personne");
        data.push(
            "menage_personne",
            vec![
                mid.into(),
                hid.into(),
                pid.into(),
                role.into(),
                created.into(),
                Value::Null,
                stamp(created),
            ],
        );
        persons.push(Person { id: pid });
    };
    let children = rng.random_range(1..=3);
    match composition {
        "HOMME_SEUL" => add_person(rng, ids, data, "DEMANDEUR_PRINCIPAL", "M", 18, 70),
        "FEMME_SEULE" => add_person(rng, ids, data, "DEMANDEUR_PRINCIPAL", "F", 18, 70),
        "MINEUR_ISOLE" => {
            let sexe = if rng.random_bool(0.8) { "M" } else { "F" };
            add_person(rng, ids, data, "DEMANDEUR_PRINCIPAL", sexe, 15, 17)
        }
        "HOMME_SEUL_AVEC_ENFANTS" | "FEMME_SEULE_AVEC_ENFANTS" => {
            let sexe = if composition.starts_with("HOMME") {
                "M"
            } else {
                "F"
            };
            add_person(rng, ids, data, "DEMANDEUR_PRINCIPAL", sexe, 20, 50);
            for _ in 0..children {
                let s = if rng.random_bool(0.5) { "F" } else { "M" };
                add_person(rng, ids, data, "ENFANT", s, 0, 17);
            }
        }
        "COUPLE_SANS_ENFANT" | "COUPLE_AVEC_ENFANTS" => {
            add_person(rng, ids, data, "DEMANDEUR_PRINCIPAL", "M", 20, 65);
            add_person(rng, ids, data, "CONJOINT", "F", 20, 65);
            if composition == "COUPLE_AVEC_ENFANTS" {
                for _ in 0..children {
                    let s = if rng.random_bool(0.5) { "F" } else { "M" };
                    add_person(rng, ids, data, "ENFANT", s, 0, 17);
                }
            }
        }
        _ => {
            add_person(rng, ids, data, "DEMANDEUR_PRINCIPAL", "M", 20, 60);
            let sexe = if rng.random_bool(0.5) { "F" } else { "M" };
            add_person(rng, ids, data, "AUTRE_ADULTE", sexe, 18, 60);
            add_person(rng, ids, data, "AUTRE_ADULTE", "M", 18, 60);
            if composition == "GROUPE_AVEC_ENFANTS" {
                add_person(rng, ids, data, "AUTRE_MINEUR", "F", 3, 17);
            }
        }
    }
    Household {
        id: hid,
        composition,
        persons,
        need_start: need.0,
        need_end: need.1,
        sheltered_until: None,
        insertion: None,
        first_request: None,
        housed: false,
    }
}

/// How an insertion stay ends.
fn exit_motif(rng: &mut ChaCha8Rng) -> &'static str {
    pick_weighted(
        rng,
        &[
            ("ACCES_LOGEMENT", 0.40),
            ("LOGEMENT_ADAPTE", 0.15),
            ("AUTRE_HEBERGEMENT", 0.15),
            ("DEPART_VOLONTAIRE", 0.15),
            ("EXCLUSION", 0.05),
            ("INCONNU", 0.10),
        ],
    )
}

fn push_evaluation(
    data: &mut Dataset,
    ids: &mut Ids,
    rng: &mut ChaCha8Rng,
    menage: i64,
    ty: &str,
    when: NaiveDate,
    to: NaiveDate,
) {
    if when >= to {
        return;
    }
    let eid = ids.next("evaluation");
    let ethos = format!("ETHOS_{}", rng.random_range(1..=13));
    data.push(
        "evaluation",
        vec![
            eid.into(),
            menage.into(),
            ty.into(),
            when.into(),
            ethos.into(),
            rng.random_bool(0.15).into(),
            rng.random_bool(0.25).into(),
            rng.random_bool(0.10).into(),
            (*pick(rng, TEXTES)).into(),
            (*pick(rng, AUTEURS)).into(),
            stamp(when),
        ],
    );
}

fn push_request_persons(
    data: &mut Dataset,
    ids: &mut Ids,
    demande: i64,
    persons: &[Person],
    d: NaiveDate,
) {
    for p in persons {
        let id = ids.next("demande_personne");
        data.push(
            "demande_personne",
            vec![id.into(), demande.into(), p.id.into(), stamp(d)],
        );
    }
}

/// Sets the outcome of an insertion request already written.
fn set_request_outcome(
    data: &mut Dataset,
    demande: i64,
    statut: &str,
    at: DateTime<FixedOffset>,
    motif: Option<&str>,
) {
    let columns = table("demande").expect("demande is declared").columns;
    let col = |name: &str| {
        columns
            .iter()
            .position(|c| c.name == name)
            .expect("declared column")
    };
    if let Some(rows) = data.tables.get_mut("demande")
        && let Some(row) = rows.iter_mut().rev().find(|r| r[0] == Value::Int(demande))
    {
        row[col("statut")] = statut.into();
        row[col("date_statut")] = at.into();
        row[col("motif_non_pourvue")] = Value::from(motif);
        row[col("updated_at")] = at.into();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn small() -> SimulationConfig {
        SimulationConfig {
            departements: vec!["23".into()],
            from: NaiveDate::from_ymd_opt(2025, 1, 1).unwrap(),
            to: NaiveDate::from_ymd_opt(2025, 3, 1).unwrap(),
            seed: 7,
        }
    }

    #[test]
    fn same_seed_gives_same_rows() {
        let a = simulate(&small()).unwrap();
        let b = simulate(&small()).unwrap();
        assert_eq!(a.tables, b.tables);
        let mut other = small();
        other.seed = 8;
        assert_ne!(simulate(&other).unwrap().tables, a.tables);
    }

    #[test]
    fn rows_match_the_declared_columns() {
        let data = simulate(&small()).unwrap();
        for (table, rows) in data.in_schema_order() {
            for row in rows {
                assert_eq!(row.len(), table.columns.len(), "{}", table.name);
            }
        }
        assert!(!data.rows("demande").is_empty());
        assert!(!data.rows("prise_en_charge").is_empty());
    }

    #[test]
    fn unknown_departement_is_refused() {
        let mut c = small();
        c.departements = vec!["20".into()];
        assert!(matches!(
            simulate(&c),
            Err(SimulationError::UnknownDepartement(_))
        ));
    }
}
