//! A seeded, day-by-day simulation of SIAO activity written into the source schema.
//!
//! Behaviour, not random rows: households fall into need, call the 115 on many nights
//! and are sheltered only when a place group that accepts their composition has places
//! free that night; insertion requests wait for places, receive orientations that are
//! accepted or refused and end in long stays; households change (births, separations);
//! the operational app lives its own life (purges after 24 months without activity,
//! merges of duplicate persons, late corrections). See [`engine`] for the rules.
//!
//! Each département is simulated on its own, from its own generator (seeded by the seed
//! and the département's code) and in its own id ranges, so the same seed gives the
//! same rows whatever other départements are simulated with it, on every back end, and
//! départements can be simulated in parallel and written one at a time (memory is
//! bounded by the largest département, not by the country).
//!
//! Nothing drawn depends on the end of the interval: the simulation records every
//! change with the day it happens (a stay's exit, a status reached, a purge), and the
//! database is the state on the first day not simulated. Simulating to T2 therefore
//! shows, as of T1, exactly what simulating to T1 wrote, which is how
//! `simulate --continue` extends a database.

mod defects;
mod engine;
pub mod profile;
mod text;

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Duration, FixedOffset, NaiveDate, TimeZone};
use chrono_tz::Europe::Paris;
use rand::RngExt;
use rand_chacha::ChaCha8Rng;

use crate::schema::Table;
use crate::source::Value;
use crate::territory;

pub use defects::{DEFECT_RULES, Defect};

/// What to simulate.
#[derive(Debug, Clone, PartialEq)]
pub struct SimulationConfig {
    /// COG codes of the départements to simulate.
    pub departements: Vec<String>,
    /// First simulated day.
    pub from: NaiveDate,
    /// First day not simulated (exclusive).
    pub to: NaiveDate,
    pub seed: u64,
    /// 1.0: the order of magnitude of the real national system.
    pub scale: f64,
    /// Rate at which each rule of SOURCE_SCHEMA.md's last section is broken on purpose.
    pub defects: f64,
}

/// The demo's scale: Paris, Seine-Saint-Denis, Bouches-du-Rhône and Creuse at 5 %.
pub const DEMO_SCALE: f64 = 0.05;

impl Default for SimulationConfig {
    /// The demo's scope: 75, 93, 13 and 23, 2025, seed 42, scale 0.05, no defect.
    fn default() -> Self {
        Self {
            departements: ["75", "93", "13", "23"].map(String::from).to_vec(),
            from: NaiveDate::from_ymd_opt(2025, 1, 1).expect("valid date"),
            to: NaiveDate::from_ymd_opt(2026, 1, 1).expect("valid date"),
            seed: 42,
            scale: DEMO_SCALE,
            defects: 0.0,
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
    #[error("échelle invalide ({0}) : attendu un nombre strictement positif, au plus 10")]
    Scale(f64),
    #[error("taux de défauts invalide ({0}) : attendu un nombre entre 0 et 0,5")]
    DefectRate(f64),
}

impl SimulationConfig {
    pub fn validate(&self) -> Result<(), SimulationError> {
        if self.departements.is_empty() {
            return Err(SimulationError::NoDepartement);
        }
        if self.to <= self.from {
            return Err(SimulationError::EmptyInterval {
                from: self.from,
                to: self.to,
            });
        }
        if !(self.scale > 0.0 && self.scale <= 10.0) {
            return Err(SimulationError::Scale(self.scale));
        }
        if !(0.0..=0.5).contains(&self.defects) {
            return Err(SimulationError::DefectRate(self.defects));
        }
        for code in &self.departements {
            if territory::departement(code).is_none() {
                return Err(SimulationError::UnknownDepartement(code.clone()));
            }
        }
        Ok(())
    }
}

/// Rows per source table, in the tables' column order.
#[derive(Debug, Default, Clone, PartialEq)]
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

    /// Moves another département's rows in.
    pub fn append(&mut self, other: Dataset) {
        for (table, rows) in other.tables {
            self.tables.entry(table).or_default().extend(rows);
        }
    }
}

/// One département's simulated state on the first day not simulated.
#[derive(Debug)]
pub struct DepartementOutput {
    pub departement: String,
    pub data: Dataset,
    pub summary: Summary,
    pub defects: Vec<Defect>,
}

/// Simulates one département over the configured interval.
pub fn simulate_departement(
    config: &SimulationConfig,
    dep: &str,
) -> Result<DepartementOutput, SimulationError> {
    let code = territory::departement(dep)
        .ok_or_else(|| SimulationError::UnknownDepartement(dep.to_owned()))?
        .code;
    let log = engine::run(config, code);
    Ok(output_at(config, code, &log, config.to))
}

/// One département's state at the end of an earlier run (`earlier_to`) and at the end
/// of this one, from a single simulation: what `simulate --continue` compares.
pub fn simulate_departement_between(
    config: &SimulationConfig,
    dep: &str,
    earlier_to: NaiveDate,
) -> Result<(DepartementOutput, DepartementOutput), SimulationError> {
    let code = territory::departement(dep)
        .ok_or_else(|| SimulationError::UnknownDepartement(dep.to_owned()))?
        .code;
    let log = engine::run(config, code);
    let before = output_at(config, code, &log, earlier_to);
    let after = output_at(config, code, &log, config.to);
    Ok((before, after))
}

fn output_at(
    config: &SimulationConfig,
    dep: &'static str,
    log: &engine::Log,
    to: NaiveDate,
) -> DepartementOutput {
    let (mut data, events) = log.raw.as_of(to);
    let summary = Summary::of(dep, &data, &events, log, to);
    let defects = defects::inject(config, dep, &mut data);
    DepartementOutput {
        departement: dep.to_owned(),
        data,
        summary,
        defects,
    }
}

/// Simulates every configured département, one after the other, into memory.
/// (The command line writes département by département instead; this is for tests.)
pub fn simulate(config: &SimulationConfig) -> Result<Simulated, SimulationError> {
    config.validate()?;
    let mut all = Simulated::default();
    for dep in &config.departements {
        let out = simulate_departement(config, dep)?;
        all.summary.add(&out.summary);
        all.defects.extend(out.defects);
        all.data.append(out.data);
    }
    Ok(all)
}

#[derive(Debug, Default)]
pub struct Simulated {
    pub data: Dataset,
    pub summary: Summary,
    pub defects: Vec<Defect>,
}

// ---------------------------------------------------------------------------------
// The change log: rows with the day they appear, later updates and deletions.

pub(crate) const T_ENTITE: usize = 0;
pub(crate) const T_DISPOSITIF: usize = 1;
pub(crate) const T_GROUPE: usize = 2;
pub(crate) const T_MENAGE: usize = 3;
pub(crate) const T_PERSONNE: usize = 4;
pub(crate) const T_MENAGE_PERSONNE: usize = 5;
pub(crate) const T_EVALUATION: usize = 6;
pub(crate) const T_NOTE: usize = 7;
pub(crate) const T_DEMANDE: usize = 8;
pub(crate) const T_DEMANDE_PERSONNE: usize = 9;
pub(crate) const T_ORIENTATION: usize = 10;
pub(crate) const T_LISTE: usize = 11;
pub(crate) const T_PEC: usize = 12;

/// Why a row changed, for the summary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Cause {
    /// The normal course of events (an exit, an answer, a status reached).
    Course,
    /// A worker corrected a record days later.
    Correction,
    /// Two persons were found to be one.
    Merge,
    /// The household had no activity for 24 months.
    Purge,
}

struct Update {
    row: u32,
    on: NaiveDate,
    cause: Cause,
    changes: Vec<(usize, Value)>,
}

#[derive(Default)]
pub(crate) struct TableLog {
    rows: Vec<Vec<Value>>,
    visible: Vec<NaiveDate>,
    updates: Vec<Update>,
    deletions: Vec<(u32, NaiveDate, Cause)>,
}

pub(crate) struct RawLog {
    tables: Vec<TableLog>,
}

/// What the change log applied up to a date.
#[derive(Debug, Default, Clone)]
pub(crate) struct Events {
    pub purged_households: u64,
    pub merged_persons: u64,
    pub corrections: u64,
}

impl RawLog {
    pub(crate) fn new() -> Self {
        Self {
            tables: (0..crate::TABLES.len())
                .map(|_| TableLog::default())
                .collect(),
        }
    }

    /// Adds a row that exists from `visible` on; returns its index.
    pub(crate) fn push(&mut self, table: usize, visible: NaiveDate, row: Vec<Value>) -> u32 {
        debug_assert_eq!(row.len(), crate::TABLES[table].columns.len());
        let t = &mut self.tables[table];
        t.rows.push(row);
        t.visible.push(visible);
        (t.rows.len() - 1) as u32
    }

    pub(crate) fn update(
        &mut self,
        table: usize,
        row: u32,
        on: NaiveDate,
        cause: Cause,
        changes: Vec<(usize, Value)>,
    ) {
        self.tables[table].updates.push(Update {
            row,
            on,
            cause,
            changes,
        });
    }

    pub(crate) fn delete(&mut self, table: usize, row: u32, on: NaiveDate, cause: Cause) {
        self.tables[table].deletions.push((row, on, cause));
    }

    pub(crate) fn value(&self, table: usize, row: u32, column: usize) -> &Value {
        &self.tables[table].rows[row as usize][column]
    }

    /// The database as it stands on day `to` (everything before `to` has happened).
    pub(crate) fn as_of(&self, to: NaiveDate) -> (Dataset, Events) {
        let mut data = Dataset::default();
        let mut events = Events::default();
        for (i, (spec, log)) in crate::TABLES.iter().zip(&self.tables).enumerate() {
            let updated_at = spec.columns.len() - 1;
            let mut rows: Vec<Option<Vec<Value>>> = log
                .rows
                .iter()
                .zip(&log.visible)
                .map(|(r, v)| (*v < to).then(|| r.clone()))
                .collect();
            let mut order: Vec<&Update> = log.updates.iter().filter(|u| u.on < to).collect();
            order.sort_by_key(|u| u.on);
            for u in order {
                if let Some(row) = rows[u.row as usize].as_mut() {
                    for (column, value) in &u.changes {
                        row[*column] = value.clone();
                    }
                    row[updated_at] = stamp_at(u.on, 21);
                    if u.cause == Cause::Correction {
                        events.corrections += 1;
                    }
                }
            }
            for &(row, on, cause) in &log.deletions {
                if on < to && rows[row as usize].take().is_some() {
                    match (cause, i) {
                        (Cause::Purge, T_MENAGE) => events.purged_households += 1,
                        (Cause::Merge, T_PERSONNE) => events.merged_persons += 1,
                        _ => {}
                    }
                }
            }
            data.tables
                .insert(spec.name, rows.into_iter().flatten().collect());
        }
        (data, events)
    }
}

// ---------------------------------------------------------------------------------
// The summary printed after a simulation.

/// Counts of a simulated database, per département and in all.
#[derive(Debug, Default, Clone)]
pub struct Summary {
    pub rows: BTreeMap<&'static str, u64>,
    /// (type, statut) → requests.
    pub requests: BTreeMap<(String, String), u64>,
    /// Per département: (NON_POURVUE, decided) URGENCE requests.
    pub dnp: BTreeMap<String, (u64, u64)>,
    /// Households with an URGENCE request, by their composition on their first one.
    pub compositions: BTreeMap<String, u64>,
    /// Installed places (permanent and winter groups open on the last simulated day).
    pub places_installed: u64,
    pub places_funded: u64,
    pub purged_households: u64,
    pub merged_persons: u64,
    pub corrections: u64,
    /// URGENCE requests that break DOUBLON_115 because their persons were merged.
    pub merge_doublons: u64,
}

impl Summary {
    fn of(dep: &str, data: &Dataset, events: &Events, log: &engine::Log, to: NaiveDate) -> Summary {
        let mut s = Summary::default();
        for (table, rows) in data.in_schema_order() {
            s.rows.insert(table.name, rows.len() as u64);
        }
        let (mut dnp, mut decided) = (0, 0);
        for r in data.rows("demande") {
            let (Value::Text(ty), Value::Text(statut)) = (&r[2], &r[6]) else {
                continue;
            };
            *s.requests.entry((ty.clone(), statut.clone())).or_default() += 1;
            if ty == "URGENCE" && (statut == "POURVUE" || statut == "NON_POURVUE") {
                decided += 1;
                if statut == "NON_POURVUE" {
                    dnp += 1;
                }
            }
        }
        s.dnp.insert(dep.to_owned(), (dnp, decided));
        let alive: std::collections::HashSet<i64> = data
            .rows("menage")
            .iter()
            .filter_map(|r| r[0].as_int())
            .collect();
        for (menage, day, composition) in &log.first_urgence {
            if *day < to && alive.contains(menage) {
                *s.compositions.entry((*composition).to_owned()).or_default() += 1;
            }
        }
        let last = to - Duration::days(1);
        for r in data.rows("groupe_places") {
            let open = r[4].as_date().is_some_and(|d| d <= last)
                && r[5].as_date().is_none_or(|f| last < f);
            if open {
                s.places_installed += r[2].as_int().unwrap_or(0) as u64;
            }
        }
        for r in data.rows("dispositif") {
            let open = r[12].as_date().is_some_and(|d| d <= last)
                && r[13].as_date().is_none_or(|f| last < f);
            if open {
                s.places_funded +=
                    (r[9].as_int().unwrap_or(0) + r[10].as_int().unwrap_or(0)) as u64;
            }
        }
        s.purged_households = events.purged_households;
        s.merged_persons = events.merged_persons;
        s.corrections = events.corrections;
        s.merge_doublons = doublons_115(data);
        s
    }

    pub fn add(&mut self, other: &Summary) {
        for (k, v) in &other.rows {
            *self.rows.entry(k).or_default() += v;
        }
        for (k, v) in &other.requests {
            *self.requests.entry(k.clone()).or_default() += v;
        }
        for (k, (a, b)) in &other.dnp {
            let e = self.dnp.entry(k.clone()).or_default();
            e.0 += a;
            e.1 += b;
        }
        for (k, v) in &other.compositions {
            *self.compositions.entry(k.clone()).or_default() += v;
        }
        self.places_installed += other.places_installed;
        self.places_funded += other.places_funded;
        self.purged_households += other.purged_households;
        self.merged_persons += other.merged_persons;
        self.corrections += other.corrections;
        self.merge_doublons += other.merge_doublons;
    }

    pub fn total_rows(&self) -> u64 {
        self.rows.values().sum()
    }

    /// The DNP rate of a département, if it had decided requests.
    pub fn dnp_rate(&self, dep: &str) -> Option<f64> {
        self.dnp
            .get(dep)
            .filter(|(_, d)| *d > 0)
            .map(|(n, d)| *n as f64 / *d as f64)
    }

    /// Share of 115 requesting households of a composition.
    pub fn composition_share(&self, composition: &str) -> f64 {
        let total: u64 = self.compositions.values().sum();
        if total == 0 {
            return 0.0;
        }
        *self.compositions.get(composition).unwrap_or(&0) as f64 / total as f64
    }
}

/// URGENCE requests (not ANNULEE) sharing a person with an URGENCE request (not
/// ANNULEE) of the same Paris date and SIAO that has a smaller id: rule DOUBLON_115.
pub fn doublons_115(data: &Dataset) -> u64 {
    let mut requests: HashMap<i64, (NaiveDate, &str)> = HashMap::new();
    for r in data.rows("demande") {
        let (Some(id), Value::Text(ty), Value::Text(statut), Value::Text(dep)) =
            (r[0].as_int(), &r[2], &r[6], &r[3])
        else {
            continue;
        };
        let Value::Timestamp(at) = &r[4] else {
            continue;
        };
        if ty == "URGENCE" && statut != "ANNULEE" {
            requests.insert(id, (at.with_timezone(&Paris).date_naive(), dep.as_str()));
        }
    }
    let mut seen: HashMap<(i64, NaiveDate, &str), i64> = HashMap::new();
    let mut links: Vec<(i64, i64)> = data
        .rows("demande_personne")
        .iter()
        .filter_map(|r| Some((r[1].as_int()?, r[2].as_int()?)))
        .filter(|(d, _)| requests.contains_key(d))
        .collect();
    links.sort_unstable();
    links.dedup();
    let mut doubles = std::collections::HashSet::new();
    for (demande, personne) in links {
        let (date, dep) = requests[&demande];
        match seen.get(&(personne, date, dep)) {
            Some(first) if *first < demande => {
                doubles.insert(demande);
            }
            _ => {
                seen.insert((personne, date, dep), demande);
            }
        }
    }
    doubles.len() as u64
}

// ---------------------------------------------------------------------------------
// Small helpers shared by the engine and the defects.

pub(crate) fn paris_instant(d: NaiveDate, seconds: i64) -> DateTime<FixedOffset> {
    let midnight = Paris
        .from_local_datetime(&d.and_hms_opt(0, 0, 0).expect("midnight"))
        .earliest()
        .expect("midnight exists in Paris");
    (midnight + Duration::seconds(seconds)).fixed_offset()
}

/// `updated_at` of a row written or changed on day `d`, at `hour` (Paris).
pub(crate) fn stamp_at(d: NaiveDate, hour: i64) -> Value {
    Value::Timestamp(paris_instant(d, hour * 3600))
}

pub(crate) fn pick<'a, T>(rng: &mut ChaCha8Rng, items: &'a [T]) -> &'a T {
    &items[rng.random_range(0..items.len())]
}

pub(crate) fn pick_weighted(rng: &mut ChaCha8Rng, items: &[(&'static str, f64)]) -> &'static str {
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

impl Value {
    pub fn as_int(&self) -> Option<i64> {
        match self {
            Value::Int(v) => Some(*v),
            _ => None,
        }
    }

    pub fn as_date(&self) -> Option<NaiveDate> {
        match self {
            Value::Date(v) => Some(*v),
            _ => None,
        }
    }

    pub fn as_text(&self) -> Option<&str> {
        match self {
            Value::Text(v) => Some(v),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests;
