//! Incremental computation: what a release can keep from the one before it.
//!
//! Every release leaves the state of its computation in the internal zone `calcul`
//! (never served, never registered in a reader's session):
//! - `calcul/empreintes`: for every indicator, a fingerprint of its records per day
//!   ([`Grain::Jour`]) or per period ([`Grain::Periode`]) — the wrapping sum of a hash
//!   of each record, and their number —, the observed days of every published period,
//!   a fingerprint of the published territories and one of the configuration
//!   (catalogue version, secrecy threshold, conventions);
//! - `calcul/grille`: every cell of the grid before secondary suppression (primary
//!   secret only, values not blanked, with the entities of a row counted only when all
//!   their records are: [`crate::compute::EFFECTIF`]), with what was published for it.
//!
//! A cell is a function of its indicator's records in its period, of the period's
//! observed days, of the published territories and of the configuration: nothing else
//! enters the grid SQL. So a period of an indicator whose records, observed days,
//! territories and configuration are unchanged keeps its cells, and only the others are
//! recomputed. Secondary suppression then runs over every cell (its problems link the
//! periods of a year, and years through winters), and only the rows whose published
//! value, terms, secret or status changed are published: the current figures (highest
//! version per key) are exactly a full recompute's.
//!
//! The state is tagged with its release. A compute trusts only the state of the last
//! recorded release (a crash between writing the state and recording the release leaves
//! an untrusted newer state, and older Delta versions of the table are searched);
//! without it, everything is recomputed.

use std::collections::HashMap;
use std::hash::Hasher;
use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, Float64Array, Int64Array, RecordBatch, StringArray,
};
use arrow::compute::cast;
use arrow::datatypes::{DataType, Date32Type, Field, Int64Type, Schema, SchemaRef};
use warehouse::Lake;

use crate::catalogue::{CATALOGUE_VERSION, Grain, Indicator};
use crate::compute::Result;

/// The zone of the computation's state.
const ZONE: &str = "calcul";
/// Bumped when the fingerprints or the grid change meaning: the next compute is full.
const STATE_FORMAT: &str = "5";
/// How many older versions of the state table are searched for the last release's.
const STATE_HISTORY: i64 = 50;

/// Records' fingerprints of one indicator: key (`2025-03-14`, or `MOIS|2025-03`) →
/// (wrapping sum of the records' hashes, number of records).
pub(crate) type Prints = HashMap<String, (i64, i64)>;

/// The state a release left.
pub(crate) struct State {
    /// The ingest run whose records the fingerprints describe.
    pub run: i64,
    pub config: i64,
    pub publies: i64,
    /// (pas, periode) → (debut_obs, fin_obs), as Date32 days.
    pub periods: HashMap<(String, String), (i32, i32)>,
    /// Indicator id → its records' fingerprints.
    pub prints: HashMap<String, Prints>,
    /// The grid: stats columns (raw) + the published columns.
    pub grille: RecordBatch,
}

/// The published columns the grid keeps beside the raw ones.
pub(crate) const PUBLISHED: [&str; 5] = [
    "valeur_publiee",
    "secret_publie",
    "numerateur_publie",
    "denominateur_publie",
    "statut_publie",
];

/// The grid's schema: its rows' ([`crate::compute::grid_schema`]: the stats table's and
/// the entities of a row), then [`PUBLISHED`].
pub(crate) fn grille_schema() -> SchemaRef {
    let mut fields: Vec<Field> = crate::compute::grid_schema()
        .fields()
        .iter()
        .map(|f| f.as_ref().clone())
        .collect();
    fields.push(Field::new(PUBLISHED[0], DataType::Float64, true));
    fields.push(Field::new(PUBLISHED[1], DataType::Boolean, true));
    fields.push(Field::new(PUBLISHED[2], DataType::Float64, true));
    fields.push(Field::new(PUBLISHED[3], DataType::Float64, true));
    fields.push(Field::new(PUBLISHED[4], DataType::Utf8, true));
    Arc::new(Schema::new(fields))
}

fn prints_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("version", DataType::Int64, false),
        Field::new("indicateur", DataType::Utf8, false),
        Field::new("cle", DataType::Utf8, false),
        Field::new("empreinte", DataType::Int64, false),
        Field::new("lignes", DataType::Int64, false),
    ]))
}

/// Special rows of `calcul/empreintes`.
const CONFIG: &str = "__configuration__";
const PUBLIES: &str = "__territoires__";
const PERIODE: &str = "__periode__";
const GRILLE: &str = "__grille__";
const RUN: &str = "__ingestion__";
/// Present for every indicator computed, records or not.
const COMPUTED: &str = "*";

fn hash_bytes(bytes: &[u8]) -> u64 {
    let mut h = std::hash::DefaultHasher::new();
    h.write(bytes);
    h.finish()
}

/// The configuration's fingerprint: anything that changes every cell.
pub(crate) fn config_print(threshold: i64, conventions: &[Indicator]) -> i64 {
    let mut text = format!("{STATE_FORMAT}|{CATALOGUE_VERSION}|{threshold}");
    for c in conventions {
        text.push_str(&format!(
            "|{}|{}|{:?}|{:?}|{:?}|{:?}|{}|{}|{:?}|{}",
            c.id,
            c.territoire.unwrap_or(""),
            c.measure,
            c.grain,
            c.sdc,
            c.dimensions,
            c.per_observed_day,
            c.numerator_only_dimensions,
            c.additive_terms,
            c.sql
        ));
    }
    hash_bytes(text.as_bytes()) as i64
}

/// The published territories' fingerprint.
pub(crate) fn territories_print(mut territories: Vec<(String, String)>) -> i64 {
    territories.sort();
    let text: Vec<String> = territories
        .into_iter()
        .map(|(n, t)| format!("{n}:{t}"))
        .collect();
    hash_bytes(text.join(",").as_bytes()) as i64
}

/// The fingerprints of an indicator's records, per day or per period: the batches shared
/// between the cores (tens of millions of records nationally), the sums of each added.
pub(crate) fn fingerprints(grain: Grain, batches: &[RecordBatch]) -> Result<Prints> {
    let parts = crate::compute::on_every_core(batches, |chunk| fingerprints_of(grain, chunk));
    let mut out: Prints = HashMap::new();
    for part in parts {
        for (key, (sum, n)) in part? {
            let e = out.entry(key).or_insert((0, 0));
            e.0 = (e.0 as u64).wrapping_add(sum as u64) as i64;
            e.1 += n;
        }
    }
    Ok(out)
}

/// The seed of the records' hashes. Part of the state's format: the fingerprints a
/// release keeps are compared with the next compute's.
const RECORD_HASH_SEED: u64 = 0x6f62_7365_7276_6174;

/// SplitMix64's finaliser: every bit of the input moves about half of the output's.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// [`fingerprints`] of some batches, on one thread.
///
/// A record's hash folds, column after column, DataFusion's hash of each value (foldhash,
/// fixed seed: the same values give the same hash from one run to the next), computed a
/// column at a time over the whole batch — no row encoding, no hasher per record.
fn fingerprints_of(grain: Grain, batches: &[RecordBatch]) -> Result<Prints> {
    let random_state = datafusion::common::hash_utils::RandomState::with_seed(RECORD_HASH_SEED);
    let mut out: Prints = HashMap::new();
    let mut hashes: Vec<u64> = Vec::new();
    let mut column_hashes: Vec<u64> = Vec::new();
    for batch in batches {
        if batch.num_rows() == 0 {
            continue;
        }
        // Each column hashed on its own, then folded into the record's hash by a
        // non-linear mix: DataFusion's own multi-column combination is linear in the
        // columns' hashes, so values trading places between two columns (or between the
        // records of one day) would leave a day's sum unchanged.
        hashes.clear();
        hashes.resize(batch.num_rows(), RECORD_HASH_SEED);
        for column in batch.columns() {
            column_hashes.clear();
            column_hashes.resize(batch.num_rows(), 0);
            datafusion::common::hash_utils::create_hashes(
                [column],
                &random_state,
                &mut column_hashes,
            )?;
            for (h, c) in hashes.iter_mut().zip(&column_hashes) {
                *h = mix(*h ^ c);
            }
        }
        let column = |name: &str| -> Result<ArrayRef> {
            let c = batch.column_by_name(name).ok_or_else(|| {
                arrow::error::ArrowError::SchemaError(format!(
                    "colonne {name} absente des enregistrements"
                ))
            })?;
            Ok(c.clone())
        };
        // Keys of the batch, once each, then one accumulator per key.
        let mut slots: Vec<usize> = Vec::with_capacity(batch.num_rows());
        let mut keys: Vec<String> = Vec::new();
        match grain {
            Grain::Jour => {
                let jour = cast(&column("jour")?, &DataType::Date32)?;
                let jour = jour.as_primitive::<Date32Type>();
                let mut index: HashMap<i32, usize> = HashMap::new();
                // Records of one day often follow each other: the last slot is reused.
                let mut last: Option<(i32, usize)> = None;
                for i in 0..batch.num_rows() {
                    let day = if jour.is_null(i) {
                        i32::MIN
                    } else {
                        jour.value(i)
                    };
                    let slot = match last {
                        Some((d, slot)) if d == day => slot,
                        _ => {
                            let slot = *index.entry(day).or_insert_with(|| {
                                keys.push(day_key(day));
                                keys.len() - 1
                            });
                            last = Some((day, slot));
                            slot
                        }
                    };
                    slots.push(slot);
                }
            }
            Grain::Periode => {
                let pas = cast(&column("pas")?, &DataType::Utf8)?;
                let periode = cast(&column("periode")?, &DataType::Utf8)?;
                let (pas, periode) = (pas.as_string::<i32>(), periode.as_string::<i32>());
                let mut index: HashMap<(&str, &str), usize> = HashMap::new();
                let mut last: Option<(&str, &str, usize)> = None;
                for i in 0..batch.num_rows() {
                    let k = (pas.value(i), periode.value(i));
                    let slot = match last {
                        Some((a, b, slot)) if a == k.0 && b == k.1 => slot,
                        _ => {
                            let slot = *index.entry(k).or_insert_with(|| {
                                keys.push(period_key(k.0, k.1));
                                keys.len() - 1
                            });
                            last = Some((k.0, k.1, slot));
                            slot
                        }
                    };
                    slots.push(slot);
                }
            }
        }
        let mut sums = vec![(0u64, 0i64); keys.len()];
        for (&slot, &hash) in slots.iter().zip(&hashes) {
            let s = &mut sums[slot];
            s.0 = s.0.wrapping_add(hash);
            s.1 += 1;
        }
        for (key, (sum, n)) in keys.into_iter().zip(sums) {
            let e = out.entry(key).or_insert((0, 0));
            e.0 = (e.0 as u64).wrapping_add(sum) as i64;
            e.1 += n;
        }
    }
    Ok(out)
}

/// An indicator's fingerprints after a change, from the last release's (`old`) and the
/// fingerprints of the records the change touches, before and after it: the records that
/// left are taken out of each sum, those that came added (the sums wrap, so this is
/// exact). A key left with no record is dropped, as a fresh listing would not have it.
pub(crate) fn apply_difference(old: &Prints, before: &Prints, after: &Prints) -> Prints {
    let mut out = old.clone();
    for (key, (sum, n)) in before {
        let e = out.entry(key.clone()).or_insert((0, 0));
        e.0 = (e.0 as u64).wrapping_sub(*sum as u64) as i64;
        e.1 -= n;
    }
    for (key, (sum, n)) in after {
        let e = out.entry(key.clone()).or_insert((0, 0));
        e.0 = (e.0 as u64).wrapping_add(*sum as u64) as i64;
        e.1 += n;
    }
    out.retain(|_, (sum, n)| *n != 0 || *sum != 0);
    out
}

/// `prints` with the keys `listed` covers replaced by `exact`, the fingerprints of every
/// record under them: the keys of the days (or periods) a listing restricted to them read.
pub(crate) fn replace_listed(prints: &mut Prints, listed: impl Fn(&str) -> bool, exact: Prints) {
    prints.retain(|key, _| !listed(key));
    prints.extend(exact);
}

pub(crate) fn day_key(day: i32) -> String {
    match Date32Type::to_naive_date_opt(day) {
        Some(d) if day != i32::MIN => d.format("%Y-%m-%d").to_string(),
        _ => "sans-date".to_owned(),
    }
}

pub(crate) fn period_key(pas: &str, periode: &str) -> String {
    format!("{pas}|{periode}")
}

/// One published period with its observed days (Date32).
pub(crate) struct Observed<'a> {
    pub pas: &'a str,
    pub label: &'a str,
    pub debut_obs: i32,
    pub fin_obs: i32,
}

/// Which periods of an indicator must be recomputed, given the previous state (`None`:
/// all of them).
pub(crate) fn dirty_periods(
    indicator: &Indicator,
    periods: &[Observed],
    state: Option<&State>,
    prints: &Prints,
) -> Vec<bool> {
    let Some(state) = state else {
        return vec![true; periods.len()];
    };
    let Some(old) = state.prints.get(indicator.id) else {
        return vec![true; periods.len()];
    };
    let changed: Vec<&String> = old
        .iter()
        .filter(|(k, v)| prints.get(*k) != Some(v))
        .map(|(k, _)| k)
        .chain(prints.keys().filter(|k| !old.contains_key(*k)))
        .filter(|k| k.as_str() != COMPUTED)
        .collect();
    let mut changed_days: Vec<i32> = Vec::new();
    let mut changed_periods: std::collections::HashSet<&str> = std::collections::HashSet::new();
    for k in &changed {
        match indicator.grain {
            Grain::Jour => {
                if let Ok(d) = chrono::NaiveDate::parse_from_str(k, "%Y-%m-%d") {
                    changed_days.push(Date32Type::from_naive_date(d));
                }
            }
            Grain::Periode => {
                changed_periods.insert(k.as_str());
            }
        }
    }
    changed_days.sort_unstable();
    periods
        .iter()
        .map(|p| {
            let bounds = state
                .periods
                .get(&(p.pas.to_owned(), p.label.to_owned()))
                .copied();
            if bounds != Some((p.debut_obs, p.fin_obs)) {
                return true;
            }
            match indicator.grain {
                Grain::Jour => {
                    let first = changed_days.partition_point(|d| *d < p.debut_obs);
                    first < changed_days.len() && changed_days[first] < p.fin_obs
                }
                Grain::Periode => changed_periods.contains(period_key(p.pas, p.label).as_str()),
            }
        })
        .collect()
}

/// Reads the state the release `expected` left, if any, except its grid: with the version of
/// the grid table to read it from ([`read_grid`], which can then run beside other reads).
/// A state that cannot be read (vacuumed versions, a format from another version of the
/// program) is no state: the compute is then a full one, never a failure.
pub(crate) async fn load(lake: &Lake, expected: i64) -> Result<Option<(State, i64)>> {
    match read_state(lake, expected).await {
        Ok(state) => Ok(state),
        Err(e) => {
            tracing::warn!(
                erreur = %e,
                "état du calcul de la publication précédente illisible : calcul complet"
            );
            Ok(None)
        }
    }
}

/// The state tagged `expected`, its grid left empty, with the version of the grid table
/// that holds its grid ([`read_grid`]).
async fn read_state(lake: &Lake, expected: i64) -> Result<Option<(State, i64)>> {
    if expected < 1 {
        return Ok(None);
    }
    let Some(latest) = lake.open(ZONE, "empreintes", None).await? else {
        return Ok(None);
    };
    let last = latest.version().unwrap_or(0);
    for v in (0..=last).rev().take(STATE_HISTORY as usize) {
        let Some(table) = lake.open(ZONE, "empreintes", Some(v as i64)).await? else {
            return Ok(None);
        };
        let ctx = warehouse::new_session();
        lake.register(&ctx, "empreintes", &table).await?;
        let batches = ctx
            .sql("SELECT version, indicateur, cle, empreinte, lignes FROM empreintes")
            .await?
            .collect()
            .await?;
        let tag = batches
            .iter()
            .find(|b| b.num_rows() > 0)
            .map(|b| b.column(0).as_primitive::<Int64Type>().value(0));
        if tag != Some(expected) {
            continue;
        }
        let mut state = State {
            run: -1,
            config: 0,
            publies: 0,
            periods: HashMap::new(),
            prints: HashMap::new(),
            grille: RecordBatch::new_empty(grille_schema()),
        };
        let mut grille_version = None;
        for b in &batches {
            let text = |i: usize| cast(b.column(i), &DataType::Utf8);
            let (ind, cle) = (text(1)?, text(2)?);
            let (ind, cle) = (ind.as_string::<i32>(), cle.as_string::<i32>());
            let fp = b.column(3).as_primitive::<Int64Type>();
            let n = b.column(4).as_primitive::<Int64Type>();
            for i in 0..b.num_rows() {
                match ind.value(i) {
                    CONFIG => state.config = fp.value(i),
                    RUN => state.run = fp.value(i),
                    PUBLIES => state.publies = fp.value(i),
                    GRILLE => grille_version = Some(fp.value(i)),
                    PERIODE => {
                        if let Some((pas, periode)) = cle.value(i).split_once('|') {
                            state.periods.insert(
                                (pas.to_owned(), periode.to_owned()),
                                (fp.value(i) as i32, n.value(i) as i32),
                            );
                        }
                    }
                    id => {
                        state
                            .prints
                            .entry(id.to_owned())
                            .or_default()
                            .insert(cle.value(i).to_owned(), (fp.value(i), n.value(i)));
                    }
                }
            }
        }
        return Ok(grille_version.map(|gv| (state, gv)));
    }
    Ok(None)
}

/// The last state's grid, from version `version` of its table ([`load`]). A grid that
/// cannot be read (vacuumed, another format) is none: the compute is then a full one.
pub(crate) async fn read_grid(lake: &Lake, version: i64) -> Option<RecordBatch> {
    let read = async {
        let Some(grille) = lake.open(ZONE, "grille", Some(version)).await? else {
            return Ok(None);
        };
        let started = std::time::Instant::now();
        let ctx = warehouse::new_session();
        lake.register(&ctx, "grille", &grille).await?;
        let batches = ctx.sql("SELECT * FROM grille").await?.collect().await?;
        let read = started.elapsed();
        let schema = grille_schema();
        let conformed = batches
            .iter()
            .map(|b| conform_to(b, &schema))
            .collect::<Result<Vec<_>>>()?;
        let grille = arrow::compute::concat_batches(&schema, &conformed)?;
        tracing::debug!(
            cellules = grille.num_rows(),
            lots = batches.len(),
            lecture_ms = read.as_millis() as u64,
            assemblage_ms = (started.elapsed() - read).as_millis() as u64,
            "grille de la publication précédente lue"
        );
        Ok::<_, crate::compute::ComputeError>(Some(grille))
    };
    match read.await {
        Ok(grille) => grille,
        Err(e) => {
            tracing::warn!(
                erreur = %e,
                "grille de la publication précédente illisible : calcul complet"
            );
            None
        }
    }
}

/// Casts a batch to `schema` by column name.
pub(crate) fn conform_to(batch: &RecordBatch, schema: &SchemaRef) -> Result<RecordBatch> {
    let columns = schema
        .fields()
        .iter()
        .map(|f| {
            let c = batch.column_by_name(f.name()).ok_or_else(|| {
                arrow::error::ArrowError::SchemaError(format!("colonne {} absente", f.name()))
            })?;
            cast(c, f.data_type())
        })
        .collect::<Result<Vec<ArrayRef>, _>>()?;
    Ok(RecordBatch::try_new(schema.clone(), columns)?)
}

/// What a release's state is made of.
pub(crate) struct NewState<'a> {
    pub version: i64,
    pub run: i64,
    pub config: i64,
    pub publies: i64,
    /// (pas, periode) → (debut_obs, fin_obs).
    pub periods: &'a HashMap<(String, String), (i32, i32)>,
    pub prints: &'a HashMap<String, Prints>,
    pub grille: RecordBatch,
}

/// Writes a release's state: the grid first, then the fingerprints naming its version.
pub(crate) async fn save(lake: &Lake, state: NewState<'_>) -> Result<()> {
    // Millions of cells nationally, always read whole: encoded on every core.
    let grille_version = lake
        .overwrite_in_parts(ZONE, "grille", state.grille)
        .await?;
    let (mut ind, mut cle, mut fp, mut n) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut push = |i: &str, c: String, f: i64, l: i64| {
        ind.push(i.to_owned());
        cle.push(c);
        fp.push(f);
        n.push(l);
    };
    push(CONFIG, String::new(), state.config, 0);
    push(RUN, String::new(), state.run, 0);
    push(PUBLIES, String::new(), state.publies, 0);
    push(GRILLE, String::new(), grille_version, 0);
    for ((pas, periode), (debut_obs, fin_obs)) in state.periods {
        push(
            PERIODE,
            period_key(pas, periode),
            i64::from(*debut_obs),
            i64::from(*fin_obs),
        );
    }
    let mut ids: Vec<&String> = state.prints.keys().collect();
    ids.sort();
    for id in ids {
        push(id, COMPUTED.to_owned(), 0, 0);
        for (k, (f, l)) in &state.prints[id] {
            push(id, k.clone(), *f, *l);
        }
    }
    let rows = ind.len();
    let batch = RecordBatch::try_new(
        prints_schema(),
        vec![
            Arc::new(Int64Array::from(vec![state.version; rows])),
            Arc::new(StringArray::from(ind)),
            Arc::new(StringArray::from(cle)),
            Arc::new(Int64Array::from(fp)),
            Arc::new(Int64Array::from(n)),
        ],
    )?;
    lake.overwrite(ZONE, "empreintes", batch).await?;
    Ok(())
}

/// A grid batch ([`crate::compute::grid_schema`], primary secret) extended with empty
/// published columns.
pub(crate) fn with_published_columns(raw: &RecordBatch) -> Result<RecordBatch> {
    let n = raw.num_rows();
    let mut columns = raw.columns().to_vec();
    columns.push(Arc::new(Float64Array::from(vec![None; n])));
    columns.push(Arc::new(BooleanArray::from(vec![None; n])));
    columns.push(Arc::new(Float64Array::from(vec![None; n])));
    columns.push(Arc::new(Float64Array::from(vec![None; n])));
    columns.push(Arc::new(StringArray::from(vec![None::<&str>; n])));
    Ok(RecordBatch::try_new(grille_schema(), columns)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::Date32Array;

    fn records(days: &[i32], values: &[i64]) -> RecordBatch {
        RecordBatch::try_new(
            Arc::new(Schema::new(vec![
                Field::new("jour", DataType::Date32, false),
                Field::new("w", DataType::Int64, false),
            ])),
            vec![
                Arc::new(Date32Array::from(days.to_vec())),
                Arc::new(Int64Array::from(values.to_vec())),
            ],
        )
        .unwrap()
    }

    #[test]
    fn fingerprints_shared_between_threads_equal_one_threads() {
        // Five batches, days shared between them: whatever thread takes a batch, the sums
        // and counts of each day are those of one pass over all of them.
        let batches: Vec<RecordBatch> = (0..5)
            .map(|b| records(&[10, 11 + b, 12], &[b as i64, 7, b as i64 * 3]))
            .collect();
        let shared = fingerprints(Grain::Jour, &batches).unwrap();
        assert_eq!(shared, fingerprints_of(Grain::Jour, &batches).unwrap());
        assert_eq!(shared[&day_key(10)].1, 5);
        assert_eq!(shared[&day_key(12)].1, 6);
    }

    #[test]
    fn fingerprints_ignore_order_and_see_any_change() {
        let a = fingerprints(Grain::Jour, &[records(&[10, 10, 11], &[1, 2, 3])]).unwrap();
        // Same records, other order and batching: same prints.
        let b = fingerprints(
            Grain::Jour,
            &[records(&[11], &[3]), records(&[10, 10], &[2, 1])],
        )
        .unwrap();
        assert_eq!(a, b);
        assert_eq!(a[&day_key(10)].1, 2);
        // One value changed on day 10: day 10's print changes, day 11's does not.
        let c = fingerprints(Grain::Jour, &[records(&[10, 10, 11], &[1, 5, 3])]).unwrap();
        assert_ne!(a[&day_key(10)], c[&day_key(10)]);
        assert_eq!(a[&day_key(11)], c[&day_key(11)]);
        // A duplicated record is seen (a sum, not a xor).
        let d = fingerprints(Grain::Jour, &[records(&[10, 10, 10, 11], &[1, 2, 2, 3])]).unwrap();
        assert_ne!(a[&day_key(10)], d[&day_key(10)]);
    }

    #[test]
    fn period_fingerprints_see_nulls_and_values_moved_between_columns() {
        let batch = |pas: &[&str], periode: &[&str], a: &[Option<&str>], b: &[Option<&str>]| {
            RecordBatch::try_new(
                Arc::new(Schema::new(vec![
                    Field::new("pas", DataType::Utf8, false),
                    Field::new("periode", DataType::Utf8, false),
                    Field::new("a", DataType::Utf8, true),
                    Field::new("b", DataType::Utf8, true),
                ])),
                vec![
                    Arc::new(StringArray::from(pas.to_vec())),
                    Arc::new(StringArray::from(periode.to_vec())),
                    Arc::new(StringArray::from(a.to_vec())),
                    Arc::new(StringArray::from(b.to_vec())),
                ],
            )
            .unwrap()
        };
        let pas = ["MOIS", "MOIS", "ANNEE"];
        let periode = ["2025-03", "2025-03", "2025"];
        let prints = |a: &[Option<&str>], b: &[Option<&str>]| {
            fingerprints(Grain::Periode, &[batch(&pas, &periode, a, b)]).unwrap()
        };
        let base = prints(
            &[Some("x"), Some("y"), Some("x")],
            &[Some("y"), None, Some("z")],
        );
        assert_eq!(base.len(), 2);
        assert_eq!(base[&period_key("MOIS", "2025-03")].1, 2);
        assert_eq!(base[&period_key("ANNEE", "2025")].1, 1);
        // Recomputed from the same values: the same prints (the seed is fixed).
        assert_eq!(
            base,
            prints(
                &[Some("x"), Some("y"), Some("x")],
                &[Some("y"), None, Some("z")]
            )
        );
        // The first record's two values swapped: the month changes, the year does not.
        let swapped = prints(
            &[Some("y"), Some("y"), Some("x")],
            &[Some("x"), None, Some("z")],
        );
        assert_ne!(
            base[&period_key("MOIS", "2025-03")],
            swapped[&period_key("MOIS", "2025-03")]
        );
        assert_eq!(
            base[&period_key("ANNEE", "2025")],
            swapped[&period_key("ANNEE", "2025")]
        );
        // The month's two records trading their b values: each column holds the same
        // values as before, the records do not.
        let traded = prints(
            &[Some("x"), Some("y"), Some("x")],
            &[None, Some("y"), Some("z")],
        );
        assert_ne!(
            base[&period_key("MOIS", "2025-03")],
            traded[&period_key("MOIS", "2025-03")]
        );
        // A null becoming an empty text is a change.
        let empty = prints(
            &[Some("x"), Some("y"), Some("x")],
            &[Some("y"), Some(""), Some("z")],
        );
        assert_ne!(
            base[&period_key("MOIS", "2025-03")],
            empty[&period_key("MOIS", "2025-03")]
        );
    }

    #[test]
    fn fingerprints_moved_by_the_changed_records_equal_a_new_listing() {
        // Days 10, 11, 12. The change: the record (11, 2) becomes (12, 5), (12, 7) leaves,
        // (13, 1) arrives; (10, 1) and (11, 3) are untouched and listed on neither side.
        let old_all =
            fingerprints(Grain::Jour, &[records(&[10, 11, 11, 12], &[1, 2, 3, 7])]).unwrap();
        let new_all =
            fingerprints(Grain::Jour, &[records(&[10, 11, 12, 13], &[1, 3, 5, 1])]).unwrap();
        let before = fingerprints(Grain::Jour, &[records(&[11, 12], &[2, 7])]).unwrap();
        let after = fingerprints(Grain::Jour, &[records(&[12, 13], &[5, 1])]).unwrap();
        let moved = apply_difference(&old_all, &before, &after);
        assert_eq!(moved, new_all);
        assert_eq!(moved[&day_key(11)].1, 1);
        assert_eq!(moved[&day_key(13)].1, 1);
        // A day whose every record left has no key, as a listing would give.
        let gone = apply_difference(
            &old_all,
            &fingerprints(Grain::Jour, &[records(&[10], &[1])]).unwrap(),
            &Prints::new(),
        );
        assert!(!gone.contains_key(&day_key(10)));
        assert_eq!(gone[&day_key(11)], old_all[&day_key(11)]);
        // Keys a restricted listing covered are replaced by its prints, the others kept.
        let mut prints = old_all.clone();
        let listed = [day_key(11), day_key(12)];
        replace_listed(
            &mut prints,
            |k| listed.iter().any(|l| l == k),
            fingerprints(Grain::Jour, &[records(&[11], &[3])]).unwrap(),
        );
        assert_eq!(prints.len(), 2);
        assert_eq!(prints[&day_key(10)], old_all[&day_key(10)]);
        assert_eq!(prints[&day_key(11)], new_all[&day_key(11)]);
    }

    #[test]
    fn only_the_periods_holding_a_changed_day_are_dirty() {
        let indicator = crate::catalogue::by_code_or_id("U01").unwrap();
        assert_eq!(indicator.grain, Grain::Jour);
        let old = fingerprints(Grain::Jour, &[records(&[10, 40], &[1, 1])]).unwrap();
        let new = fingerprints(Grain::Jour, &[records(&[10, 40, 41], &[1, 1, 1])]).unwrap();
        let periods = [
            Observed {
                pas: "MOIS",
                label: "a",
                debut_obs: 0,
                fin_obs: 31,
            },
            Observed {
                pas: "MOIS",
                label: "b",
                debut_obs: 31,
                fin_obs: 59,
            },
            Observed {
                pas: "ANNEE",
                label: "c",
                debut_obs: 0,
                fin_obs: 59,
            },
        ];
        let mut state = State {
            run: -1,
            config: 0,
            publies: 0,
            periods: periods
                .iter()
                .map(|p| {
                    (
                        (p.pas.to_owned(), p.label.to_owned()),
                        (p.debut_obs, p.fin_obs),
                    )
                })
                .collect(),
            prints: HashMap::from([(indicator.id.to_owned(), old)]),
            grille: RecordBatch::new_empty(grille_schema()),
        };
        assert_eq!(
            dirty_periods(indicator, &periods, Some(&state), &new),
            [false, true, true]
        );
        // Nothing changed: nothing to recompute.
        let same = state.prints[indicator.id].clone();
        assert_eq!(
            dirty_periods(indicator, &periods, Some(&state), &same),
            [false, false, false]
        );
        // A period whose observed days moved is recomputed whatever its records.
        state.periods.insert(("MOIS".into(), "a".into()), (0, 30));
        assert_eq!(
            dirty_periods(indicator, &periods, Some(&state), &same),
            [true, false, false]
        );
        // No state, or no prints of the indicator: everything.
        assert_eq!(
            dirty_periods(indicator, &periods, None, &same),
            [true, true, true]
        );
        state.prints.clear();
        assert_eq!(
            dirty_periods(indicator, &periods, Some(&state), &same),
            [true, true, true]
        );
    }
}
