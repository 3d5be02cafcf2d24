//! The incremental run: read what changed since the previous run's watermarks, find
//! what it affects, re-read just that, and replace it in the lake.
//!
//! 1. Changed rows: `updated_at` at or after each table's watermark minus a safety
//!    overlap (transactions that commit late), in one snapshot of the source. The offer
//!    tables (entités, dispositifs, place groups: small) are read whole.
//! 2. Deleted rows: per table, the count and sums of its ids in the source, against the
//!    previous state plus the rows just read; a table whose totals differ is summarised
//!    by id range (16 384 ids: count and sum), and only ranges that differ are listed id
//!    by id.
//! 3. Scope: every row belongs to an owner — its household for memberships and
//!    evaluations (they make the composition of all the household's requests and
//!    stays), its request for a request's links, orientations and waiting-list entries,
//!    itself for a request or a stay, a person, the offer. The owners of every changed or
//!    deleted row, before and after, are rewritten, closed under what the rules compare
//!    across rows: the requests sharing a person on the same night (DOUBLON_115), a stay
//!    and the requests it is on (PARENT_QUARANTAINE), the stays of one household that
//!    overlap (SEJOURS_CHEVAUCHANTS) — the run state keeps the nights and the stays' days
//!    for it. Persons are rewritten when they changed or one of their memberships did.
//! 4. The scope's rows are read again by id (same snapshot), with what the rules and the
//!    derivations look at (the persons referenced, all memberships of the persons
//!    rewritten and their households, the households of the requests and stays
//!    rewritten with their memberships), and go through the same rules, linkage and
//!    field policy as a full read.
//! 5. In the lake, the rows the scope's owners had are deleted and their new rows
//!    appended; the quarantine and the report take the scope's old contributions out and
//!    put the new ones in. The state and then the manifest are written last.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use anonymize::{DetailBuilder, MasterKey};
use arrow::array::{Array, AsArray, BooleanArray, RecordBatch};
use arrow::compute::{filter_record_batch, sort_to_indices, take_record_batch};
use arrow::datatypes::{Int64Type, TimestampMicrosecondType};
use chrono::{DateTime, Utc};
use ingest::quality::{Action, Fact, IdSet, RULES};
use ingest::{Request, Snapshot, conditions};
use warehouse::Lake;
use warehouse::merge::{Key, MergePlan};

use crate::quality::{self as q, QualityLine};
use crate::state::{State, TableState, refs_of};
use crate::{Error, IngestOptions, Result};

/// Hash sets and maps keyed by source ids: foldhash (the scope tests millions of rows
/// against them; SipHash's resistance to chosen keys buys nothing on our own ids).
type HashSet<T> = std::collections::HashSet<T, foldhash::fast::RandomState>;
type HashMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;

/// Tables read whole at every run.
const OFFER: &[&str] = &["entite", "dispositif", "groupe_places"];

/// Whom a row belongs to, for rewriting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) enum Owner {
    Offer,
    Household(i64),
    Person(i64),
    /// A request, with its links to persons, orientations and waiting-list entries.
    Request(i64),
    Stay(i64),
    /// A row that reaches none of the above: itself (table index, id).
    Loose(usize, i64),
}

fn table_index(name: &str) -> usize {
    ingest::TABLES_READ
        .iter()
        .position(|t| *t == name)
        .expect("a table read")
}

fn static_name(name: &str) -> &'static str {
    ingest::TABLES_READ[table_index(name)]
}

/// `f` on the old and the new state side by side (the scope's scans read every row of
/// both, and are independent of each other).
fn on_both<T: Send>(states: [&State; 2], f: impl Fn(&State) -> T + Sync) -> [T; 2] {
    std::thread::scope(|scope| {
        let new = scope.spawn(|| f(states[1]));
        let old = f(states[0]);
        [old, new.join().expect("a scope thread")]
    })
}

/// The owner of row `row` of `table` in a state: the smallest unit whose rows the rules
/// and derivations judge together. A household owns its memberships and evaluations
/// (they make the composition of all its requests and stays); a request its own rows.
fn owner(state: &State, table: &str, row: usize) -> Owner {
    let t = &state.tables[table];
    let id = t.ids[row];
    let loose = Owner::Loose(table_index(table), id);
    match table {
        "entite" | "dispositif" | "groupe_places" => Owner::Offer,
        "menage" => Owner::Household(id),
        "personne" => Owner::Person(id),
        "demande" => Owner::Request(id),
        "prise_en_charge" => Owner::Stay(id),
        "evaluation" | "menage_personne" => t
            .reference(table, "menage_id", row)
            .map_or(loose, Owner::Household),
        "demande_personne" | "orientation" | "liste_attente" => t
            .reference(table, "demande_id", row)
            .map_or(loose, Owner::Request),
        _ => loose,
    }
}

/// What one incremental run rewrites: whole households, requests and stays one by one,
/// persons, and loose rows.
#[derive(Debug, Default)]
struct Scope {
    households: HashSet<i64>,
    persons: HashSet<i64>,
    requests: HashSet<i64>,
    stays: HashSet<i64>,
    loose: HashSet<(usize, i64)>,
}

impl Scope {
    fn add(&mut self, owner: Owner) -> bool {
        match owner {
            Owner::Offer => false,
            Owner::Household(h) => self.households.insert(h),
            Owner::Person(p) => self.persons.insert(p),
            Owner::Request(d) => self.requests.insert(d),
            Owner::Stay(s) => self.stays.insert(s),
            Owner::Loose(t, id) => self.loose.insert((t, id)),
        }
    }

    /// Whether the scope owns row `row` of `table` in `state`, row by row (what
    /// [`owned_ids`] computes column by column).
    #[cfg(test)]
    fn owns(&self, state: &State, table: &str, row: usize) -> bool {
        let t = &state.tables[table];
        let household = |column: &str| {
            t.reference(table, column, row)
                .is_some_and(|h| self.households.contains(&h))
        };
        let request_owned = |d: i64| {
            let requests = &state.tables["demande"];
            self.requests.contains(&d)
                || requests.find(d).is_some_and(|r| {
                    requests
                        .reference("demande", "menage_id", r)
                        .is_some_and(|h| self.households.contains(&h))
                })
        };
        match owner(state, table, row) {
            Owner::Request(d) if table == "demande" => {
                self.requests.contains(&d) || household("menage_id")
            }
            Owner::Request(d) => request_owned(d),
            Owner::Stay(s) => self.stays.contains(&s) || household("menage_id"),
            Owner::Offer => true,
            Owner::Household(h) => self.households.contains(&h),
            Owner::Person(p) => self.persons.contains(&p),
            Owner::Loose(t, id) => self.loose.contains(&(t, id)),
        }
    }
}

/// Rows of a state table whose reference `column` is in `values`.
fn rows_referencing(
    t: &TableState,
    table: &str,
    column: &str,
    values: &HashSet<i64>,
) -> Vec<usize> {
    if values.is_empty() {
        return Vec::new();
    }
    let values = IdSet::new(values.iter().copied());
    t.column(table, column)
        .iter()
        .enumerate()
        .filter(|(_, v)| v.is_some_and(|v| values.contains(v)))
        .map(|(i, _)| i)
        .collect()
}

/// [`rows_referencing`] for two (column, values) pairs of one table in one pass over its
/// rows: the rows matching the first pair, then those matching the second.
fn rows_referencing_two(
    t: &TableState,
    table: &str,
    first: (&str, &HashSet<i64>),
    second: (&str, &HashSet<i64>),
) -> (Vec<usize>, Vec<usize>) {
    match (first.1.is_empty(), second.1.is_empty()) {
        (true, true) => return (Vec::new(), Vec::new()),
        (false, true) => return (rows_referencing(t, table, first.0, first.1), Vec::new()),
        (true, false) => return (Vec::new(), rows_referencing(t, table, second.0, second.1)),
        (false, false) => {}
    }
    let (a, b) = (t.column(table, first.0), t.column(table, second.0));
    let (in_a, in_b) = (
        IdSet::new(first.1.iter().copied()),
        IdSet::new(second.1.iter().copied()),
    );
    let (mut rows_a, mut rows_b) = (Vec::new(), Vec::new());
    for (i, (x, y)) in a.iter().zip(b.iter()).enumerate() {
        if x.is_some_and(|v| in_a.contains(v)) {
            rows_a.push(i);
        }
        if y.is_some_and(|v| in_b.contains(v)) {
            rows_b.push(i);
        }
    }
    (rows_a, rows_b)
}

/// Closes the scope under what the rules look at across rows, in both states:
/// - DOUBLON_115: the requests sharing one of a request's persons on its Paris night;
/// - PARENT_QUARANTAINE and the report's places: the stays on a request (directly or by
///   one of its orientations), and the requests a stay is on;
/// - SEJOURS_CHEVAUCHANTS: the stays of a stay's household that overlap it.
///
/// Each round follows the links of what the round before added only (the households are
/// whole from the start); it ends when a round adds nothing.
fn close(states: [&State; 2], scope: &mut Scope) {
    let mut households = scope.households.clone();
    let mut requests = scope.requests.clone();
    let mut stays = scope.stays.clone();
    while !households.is_empty() || !requests.is_empty() || !stays.is_empty() {
        let (seen_requests, seen_stays) = (scope.requests.clone(), scope.stays.clone());
        // Both states side by side: a round reads what the round before added only.
        for (found_requests, found_stays) in on_both(states, |state| {
            close_round(state, &households, &requests, &stays)
        }) {
            scope.requests.extend(found_requests);
            scope.stays.extend(found_stays);
        }
        households.clear();
        requests = scope.requests.difference(&seen_requests).copied().collect();
        stays = scope.stays.difference(&seen_stays).copied().collect();
    }
}

/// One round of [`close`] in one state: the requests and stays that what the round
/// before added (`households`, `requests`, `stays`) reaches.
fn close_round(
    state: &State,
    households: &HashSet<i64>,
    requests: &HashSet<i64>,
    stays: &HashSet<i64>,
) -> (Vec<i64>, Vec<i64>) {
    let (mut found_requests, mut found_stays): (Vec<i64>, Vec<i64>) = (Vec::new(), Vec::new());
    let d = &state.tables["demande"];
    let links = &state.tables["demande_personne"];
    let orientations = &state.tables["orientation"];
    let st = &state.tables["prise_en_charge"];
    // The round's requests: those added, and those of the households added.
    let mut round = requests.clone();
    round.extend(
        rows_referencing(d, "demande", "menage_id", households)
            .into_iter()
            .map(|i| d.ids[i]),
    );
    // DOUBLON_115: (person, night) of each, then every request on those.
    let night = |request: i64| {
        d.find(request)
            .and_then(|row| d.reference("demande", "jour_demande", row))
    };
    let mut nights: HashSet<(i64, i64)> = HashSet::default();
    for i in rows_referencing(links, "demande_personne", "demande_id", &round) {
        if let (Some(r), Some(p)) = (
            links.reference("demande_personne", "demande_id", i),
            links.reference("demande_personne", "personne_id", i),
        ) && let Some(n) = night(r)
        {
            nights.insert((p, n));
        }
    }
    let persons: HashSet<i64> = nights.iter().map(|(p, _)| *p).collect();
    for i in rows_referencing(links, "demande_personne", "personne_id", &persons) {
        if let (Some(r), Some(p)) = (
            links.reference("demande_personne", "demande_id", i),
            links.reference("demande_personne", "personne_id", i),
        ) && night(r).is_some_and(|n| nights.contains(&(p, n)))
        {
            found_requests.push(r);
        }
    }
    // The stays on the round's requests, directly or by an orientation (both columns
    // in one pass over the stays).
    let of_round: HashSet<i64> =
        rows_referencing(orientations, "orientation", "demande_id", &round)
            .into_iter()
            .map(|i| orientations.ids[i])
            .collect();
    let (on_requests, on_orientations) = rows_referencing_two(
        st,
        "prise_en_charge",
        ("demande_id", &round),
        ("orientation_id", &of_round),
    );
    for i in on_requests.into_iter().chain(on_orientations) {
        found_stays.push(st.ids[i]);
    }
    // The round's stays (added, and those of the households added): the requests
    // they are on. SEJOURS_CHEVAUCHANTS (below) needs the households of the stays
    // added: both households' stays are found in one pass over the stays.
    let listed: Vec<usize> = stays.iter().filter_map(|s| st.find(*s)).collect();
    let interval = |i: usize| {
        let entry = st.reference("prise_en_charge", "jour_entree", i)?;
        let exit = st
            .reference("prise_en_charge", "jour_sortie", i)
            .unwrap_or(i64::MAX);
        Some((entry, exit))
    };
    let mut by_household: HashMap<i64, Vec<(i64, i64)>> = HashMap::default();
    for &i in &listed {
        if let Some(h) = st.reference("prise_en_charge", "menage_id", i)
            && let Some(span) = interval(i)
        {
            by_household.entry(h).or_default().push(span);
        }
    }
    let of_listed: HashSet<i64> = by_household.keys().copied().collect();
    let (of_households, of_listed_households) = rows_referencing_two(
        st,
        "prise_en_charge",
        ("menage_id", households),
        ("menage_id", &of_listed),
    );
    for &i in listed.iter().chain(&of_households) {
        if let Some(r) = st.reference("prise_en_charge", "demande_id", i) {
            found_requests.push(r);
        }
        if let Some(o) = st.reference("prise_en_charge", "orientation_id", i)
            && let Some(row) = orientations.find(o)
            && let Some(r) = orientations.reference("orientation", "demande_id", row)
        {
            found_requests.push(r);
        }
    }
    // SEJOURS_CHEVAUCHANTS: the stays of the same household overlapping an added
    // one (a stay without an entry date overlaps none; without an exit, it runs on).
    for i in of_listed_households {
        let h = st
            .reference("prise_en_charge", "menage_id", i)
            .expect("listed");
        if let Some((entry, exit)) = interval(i)
            && by_household[&h]
                .iter()
                .any(|(a, b)| *a < exit && entry < *b)
        {
            found_stays.push(st.ids[i]);
        }
    }
    (found_requests, found_stays)
}

/// The ids of the rows of `state` whose owner is in the scope, per table.
///
/// The same as asking [`Scope::owns`] row by row, column by column: one set lookup per
/// row (a national state is 15 million rows, and this runs on both states).
fn owned_ids(state: &State, scope: &Scope) -> BTreeMap<&'static str, Vec<i64>> {
    let loose_of = |table: &str| -> HashSet<i64> {
        let ti = table_index(table);
        scope
            .loose
            .iter()
            .filter(|(t, _)| *t == ti)
            .map(|(_, id)| *id)
            .collect()
    };
    let households = IdSet::new(scope.households.iter().copied());
    let persons = IdSet::new(scope.persons.iter().copied());
    let requests = IdSet::new(scope.requests.iter().copied());
    let stays = IdSet::new(scope.stays.iter().copied());
    // The requests the scope owns: those it lists, and those of its households.
    let demande = &state.tables["demande"];
    let owned_requests: Vec<i64> = demande
        .ids
        .iter()
        .zip(demande.column("demande", "menage_id").iter())
        .filter(|(id, h)| requests.contains(**id) || h.is_some_and(|h| households.contains(h)))
        .map(|(id, _)| *id)
        .collect();
    // Listed requests the state does not hold keep their rows' (orphans') too.
    let owned_request_filter = IdSet::new(owned_requests.iter().copied());
    let request_owned = |d: i64| owned_request_filter.contains(d) || requests.contains(d);
    let mut out = BTreeMap::new();
    for (name, t) in &state.tables {
        let loose_set = loose_of(name);
        let loose = IdSet::new(loose_set.iter().copied());
        let by_reference = |column: &str, owned: &dyn Fn(i64) -> bool| -> Vec<i64> {
            t.ids
                .iter()
                .zip(t.column(name, column).iter())
                .filter(|(id, r)| match r {
                    Some(r) => owned(*r),
                    None => loose.contains(**id),
                })
                .map(|(id, _)| *id)
                .collect()
        };
        let ids: Vec<i64> = match *name {
            "entite" | "dispositif" | "groupe_places" => t.ids.to_vec(),
            "menage" => t
                .ids
                .iter()
                .copied()
                .filter(|id| households.contains(*id))
                .collect(),
            "personne" => t
                .ids
                .iter()
                .copied()
                .filter(|id| persons.contains(*id))
                .collect(),
            "demande" => owned_requests.clone(),
            "prise_en_charge" => t
                .ids
                .iter()
                .zip(t.column(name, "menage_id").iter())
                .filter(|(id, h)| stays.contains(**id) || h.is_some_and(|h| households.contains(h)))
                .map(|(id, _)| *id)
                .collect(),
            "evaluation" | "menage_personne" => {
                by_reference("menage_id", &|h| households.contains(h))
            }
            "demande_personne" | "orientation" | "liste_attente" => {
                by_reference("demande_id", &request_owned)
            }
            _ => t
                .ids
                .iter()
                .copied()
                .filter(|id| loose.contains(*id))
                .collect(),
        };
        out.insert(*name, ids);
    }
    out
}

/// The count and wrapping sum of the ids of each id range, for sorted ids (one pass:
/// a range's ids are consecutive).
fn bucket_sums(sorted_ids: &[i64]) -> BTreeMap<i64, (i64, i64)> {
    let mut out = BTreeMap::new();
    let mut current: Option<(i64, i64, i64)> = None;
    for id in sorted_ids.iter().copied() {
        let b = id >> conditions::BUCKET_BITS;
        match &mut current {
            Some((cb, n, sum)) if *cb == b => {
                *n += 1;
                *sum = sum.wrapping_add(id);
            }
            _ => {
                if let Some((cb, n, sum)) = current {
                    out.insert(cb, (n, sum));
                }
                current = Some((b, 1, id));
            }
        }
    }
    if let Some((cb, n, sum)) = current {
        out.insert(cb, (n, sum));
    }
    out
}

/// Sorts a batch by its `id` column (reads by id lists come back in chunks).
fn sort_by_id(batch: RecordBatch) -> Result<RecordBatch> {
    let Some(ids) = batch.column_by_name("id") else {
        return Ok(batch);
    };
    let order = sort_to_indices(ids, None, None).map_err(|e| Error::State(e.to_string()))?;
    take_record_batch(&batch, &order).map_err(|e| Error::State(e.to_string()))
}

fn int_column<'a>(batch: &'a RecordBatch, name: &str) -> Option<&'a arrow::array::Int64Array> {
    batch.column_by_name(name)?.as_primitive_opt::<Int64Type>()
}

/// Watermarks of the rows read: the latest `updated_at` per table.
pub(crate) fn latest_updates(
    tables: &BTreeMap<String, RecordBatch>,
) -> BTreeMap<String, DateTime<Utc>> {
    let mut out = BTreeMap::new();
    for (name, batch) in tables {
        if let Some(ts) = batch
            .column_by_name("updated_at")
            .and_then(|c| c.as_primitive_opt::<TimestampMicrosecondType>())
            && let Some(max) = arrow::compute::max(ts)
            && let Some(t) = DateTime::from_timestamp_micros(max)
        {
            out.insert(name.clone(), t);
        }
    }
    out
}

/// What an incremental run produced, for the common end of a run.
pub(crate) struct Outcome {
    pub plans: Vec<MergePlan>,
    pub quarantine: RecordBatch,
    pub report: RecordBatch,
    pub regles: BTreeMap<String, u64>,
    pub doublons: BTreeMap<String, u64>,
    pub watermarks: BTreeMap<String, String>,
    pub state: State,
}

/// Reads the concatenation of an extract's tables.
fn concat_extract(extract: ingest::Extract) -> Result<BTreeMap<String, RecordBatch>> {
    let mut out = BTreeMap::new();
    for (name, table) in extract.tables {
        let batch = anonymize::concat(&table.schema, &table.batches)?;
        out.insert(name.to_owned(), sort_by_id(batch)?);
    }
    Ok(out)
}

/// Runs steps 1 to 4 and prepares step 5 (nothing is written here).
#[allow(clippy::too_many_arguments)]
pub(crate) async fn run(
    source: &operational::Source,
    key: &MasterKey,
    lake: &Lake,
    options: &IngestOptions,
    previous: &warehouse::RunManifest,
    old: State,
    run: u64,
    progress: &mut dyn FnMut(&str),
) -> Result<Outcome> {
    let mut snapshot = Snapshot::open(source).await?;
    let postgres = snapshot.is_postgres();

    // 1. Changed rows; the offer whole.
    let mut requests = Vec::new();
    for name in ingest::TABLES_READ {
        let mut request = Request::whole(name)?;
        if !OFFER.contains(name)
            && let Some(w) = previous.filigranes.get(*name)
            && let Ok(w) = DateTime::parse_from_rfc3339(w)
        {
            let since = w.with_timezone(&Utc) - options.overlap;
            request.condition = Some(conditions::changed_since(postgres, since));
        }
        requests.push(request);
    }
    let changed = concat_extract(
        snapshot
            .read(&requests, &options.read, options.rows.clone())
            .await?,
    )?;
    progress("lecture des changements");

    // 2. Deleted rows, by id range.
    let mut deleted: BTreeMap<&'static str, Vec<i64>> = BTreeMap::new();
    // Each table's summary is a scan of the whole table in the source: side by side.
    let checked: Vec<&'static str> = ingest::TABLES_READ
        .iter()
        .copied()
        .filter(|name| !OFFER.contains(name))
        .collect();
    // The ids each table should hold if nothing was deleted: the previous state's, plus
    // the new ones just read.
    let added: BTreeMap<&'static str, Vec<i64>> = checked
        .iter()
        .map(|name| {
            let t = &old.tables[name];
            let mut ids: Vec<i64> = changed
                .get(*name)
                .and_then(|b| int_column(b, "id"))
                .map(|a| {
                    a.values()
                        .iter()
                        .copied()
                        .filter(|id| t.find(*id).is_none())
                        .collect()
                })
                .unwrap_or_default();
            ids.sort_unstable();
            ids.dedup();
            (*name, ids)
        })
        .collect();
    // First the totals of each table; only tables whose totals differ are summarised by
    // id range (a grouping, twice the time of the totals' plain scan).
    let totals = snapshot
        .integers_each(
            checked
                .iter()
                .map(|name| (*name, conditions::id_totals(postgres, name)))
                .collect(),
            options.read.workers,
        )
        .await?;
    let differing_tables: Vec<&'static str> = checked
        .iter()
        .zip(totals)
        .filter(|(name, rows)| {
            let ids = old.tables[**name].ids.iter().chain(&added[**name]).copied();
            let expected = conditions::totals_of(postgres, ids).map(Some).to_vec();
            rows.first() != Some(&expected)
        })
        .map(|(name, _)| *name)
        .collect();
    let summaries = snapshot
        .integers_each(
            differing_tables
                .iter()
                .map(|name| (*name, conditions::bucket_summary(postgres, name)))
                .collect(),
            options.read.workers,
        )
        .await?;
    for (name, summary) in differing_tables.iter().zip(summaries) {
        let t = &old.tables[name];
        let mut expected = bucket_sums(&t.ids);
        for id in &added[name] {
            let e = expected.entry(id >> conditions::BUCKET_BITS).or_default();
            e.0 += 1;
            e.1 = e.1.wrapping_add(*id);
        }
        let mut actual: BTreeMap<i64, (i64, i64)> = BTreeMap::new();
        for row in summary {
            if let [Some(b), Some(n), Some(sum)] = row[..] {
                actual.insert(b, (n, sum));
            }
        }
        let differing: Vec<i64> = expected
            .iter()
            .filter(|(b, e)| actual.get(b) != Some(e))
            .map(|(b, _)| *b)
            .collect();
        if differing.is_empty() {
            continue;
        }
        let mut present = HashSet::default();
        for sql in conditions::ids_in_buckets(postgres, name, &differing) {
            for row in snapshot.integers(name, &sql).await? {
                if let Some(Some(id)) = row.first() {
                    present.insert(*id);
                }
            }
        }
        // The state's ids are sorted: each differing range is one slice of them.
        let mut gone: Vec<i64> = Vec::new();
        for b in differing {
            let start = t
                .ids
                .partition_point(|id| (id >> conditions::BUCKET_BITS) < b);
            let end = t
                .ids
                .partition_point(|id| (id >> conditions::BUCKET_BITS) <= b);
            gone.extend(
                t.ids[start..end]
                    .iter()
                    .copied()
                    .filter(|id| !present.contains(id)),
            );
        }
        if !gone.is_empty() {
            deleted.insert(name, gone);
        }
    }
    progress("détection des suppressions");
    for (name, b) in &changed {
        tracing::debug!(table = %name, lignes = b.num_rows(), "lignes changées lues");
    }
    for (name, ids) in &deleted {
        tracing::debug!(table = %name, lignes = ids.len(), "lignes supprimées de la source");
    }

    // The new state's ids and references: the old one, less the deleted rows, with the
    // changed rows' new references.
    // Table by table, on every core.
    let merged = crate::on_each(
        ingest::TABLES_READ,
        |name| old.tables[name].len(),
        |name| -> Result<TableState> {
            let gone: HashSet<i64> = deleted
                .get(name)
                .map(|v| v.iter().copied().collect())
                .unwrap_or_default();
            let fresh = match changed.get(*name) {
                Some(b) => crate::state::ids_and_refs(name, b)?,
                None => TableState::default(),
            };
            // The offer is read whole: its new state is what was read.
            let whole = OFFER.contains(name);
            Ok(merge_state(name, &old.tables[name], &fresh, &gone, whole))
        },
    );
    let mut new = State {
        run,
        tables: BTreeMap::new(),
    };
    for (name, t) in ingest::TABLES_READ.iter().zip(merged) {
        new.tables.insert(name, t?);
    }

    // 3. The scope.
    let mut scope = Scope::default();
    let mut touched_persons: HashSet<i64> = HashSet::default();
    for name in ingest::TABLES_READ {
        let touched: Vec<i64> = changed
            .get(*name)
            .and_then(|b| int_column(b, "id"))
            .map(|a| a.values().to_vec())
            .unwrap_or_default()
            .into_iter()
            .chain(deleted.get(name).cloned().unwrap_or_default())
            .collect();
        if OFFER.contains(name) {
            // The offer is re-checked whole every run; rows of households that use a
            // dispositif or place group that changed are rewritten with it.
            continue;
        }
        let ti = table_index(name);
        for id in touched {
            scope.loose.insert((ti, id));
            // A changed row is in the new state, a deleted one in the old.
            for state in [&old, &new] {
                if let Some(row) = state.tables[name].find(id) {
                    scope.add(owner(state, name, row));
                }
            }
            if *name == "personne" {
                scope.persons.insert(id);
                touched_persons.insert(id);
            }
        }
    }
    // The households of the persons touched (one scan of the links per state).
    for owners in on_both([&old, &new], |state| {
        ["menage_personne", "demande_personne"]
            .into_iter()
            .flat_map(|table| {
                let t = &state.tables[table];
                rows_referencing(t, table, "personne_id", &touched_persons)
                    .into_iter()
                    .map(move |i| owner(state, table, i))
            })
            .collect::<Vec<Owner>>()
    }) {
        for o in owners {
            scope.add(o);
        }
    }
    offer_dependents(&old, &new, &changed, &mut scope)?;
    close([&old, &new], &mut scope);
    // Persons: those who changed, and those with a membership in a household rewritten.
    for persons in on_both([&old, &new], |state| {
        let mp = &state.tables["menage_personne"];
        rows_referencing(mp, "menage_personne", "menage_id", &scope.households)
            .into_iter()
            .filter_map(|i| mp.reference("menage_personne", "personne_id", i))
            .collect::<Vec<i64>>()
    }) {
        scope.persons.extend(persons);
    }
    let loose_mp = table_index("menage_personne");
    for state in [&old, &new] {
        let mp = &state.tables["menage_personne"];
        for (t, id) in &scope.loose {
            if *t == loose_mp
                && let Some(row) = mp.find(*id)
                && let Some(p) = mp.reference("menage_personne", "personne_id", row)
            {
                scope.persons.insert(p);
            }
        }
    }
    progress("périmètre");
    tracing::debug!(
        menages = scope.households.len(),
        demandes = scope.requests.len(),
        prises_en_charge = scope.stays.len(),
        personnes = scope.persons.len(),
        isolees = scope.loose.len(),
        "périmètre de l'ingestion incrémentale"
    );

    // 4. The scope's rows, with what the rules look at, read again in the snapshot.
    // The rows the scope owns, in the old state (to take out) and the new (to read).
    let [owned_old, owned_new] = on_both([&old, &new], |state| owned_ids(state, &scope));
    let mut wanted: BTreeMap<&'static str, BTreeSet<i64>> = owned_new
        .iter()
        .map(|(t, ids)| (*t, ids.iter().copied().collect()))
        .collect();
    // All memberships of the persons rewritten, and their households.
    let mp = &new.tables["menage_personne"];
    for i in rows_referencing(mp, "menage_personne", "personne_id", &scope.persons) {
        wanted.get_mut("menage_personne").unwrap().insert(mp.ids[i]);
        if let Some(h) = mp.reference("menage_personne", "menage_id", i) {
            wanted.get_mut("menage").unwrap().insert(h);
        }
    }
    // The households of the scope's requests and stays, whole but for reading: their
    // memberships make those rows' composition, and REFERENCE_ORPHELINE looks them up.
    let mut households_read: HashSet<i64> = HashSet::default();
    for (table, ids) in [
        ("demande", &owned_new["demande"]),
        ("prise_en_charge", &owned_new["prise_en_charge"]),
    ] {
        let t = &new.tables[table];
        for id in ids {
            if let Some(row) = t.find(*id)
                && let Some(h) = t.reference(table, "menage_id", row)
            {
                households_read.insert(h);
            }
        }
    }
    for i in rows_referencing(mp, "menage_personne", "menage_id", &households_read) {
        wanted.get_mut("menage_personne").unwrap().insert(mp.ids[i]);
    }
    wanted.get_mut("menage").unwrap().extend(households_read);
    // The persons the links of the scope reference, and the requests its stays do.
    for (table, column) in [
        ("demande_personne", "personne_id"),
        ("menage_personne", "personne_id"),
    ] {
        let t = &new.tables[table];
        let rows: Vec<i64> = wanted[table].iter().copied().collect();
        for id in rows {
            if let Some(row) = t.find(id)
                && let Some(p) = t.reference(table, column, row)
            {
                wanted.get_mut("personne").unwrap().insert(p);
            }
        }
    }
    for p in &scope.persons {
        wanted.get_mut("personne").unwrap().insert(*p);
    }
    let mut requests = Vec::new();
    for name in ingest::TABLES_READ {
        if OFFER.contains(name) {
            continue;
        }
        let ids: Vec<i64> = wanted[name]
            .iter()
            .copied()
            .filter(|id| new.tables[name].find(*id).is_some())
            .collect();
        let table = Request::whole(name)?.table;
        if ids.is_empty() {
            requests.push(Request {
                table,
                condition: Some("1 = 0".into()),
            });
        }
        for condition in conditions::among(postgres, "id", &ids) {
            requests.push(Request {
                table,
                condition: Some(condition),
            });
        }
    }
    let mut context = concat_extract(
        snapshot
            .read(&requests, &options.read, Arc::new(|_, _| {}))
            .await?,
    )?;
    snapshot.close().await?;
    for name in OFFER {
        context.insert((*name).to_owned(), changed[*name].clone());
    }
    progress("lecture du périmètre");

    // The same rules, linkage and field policy as a full read.
    let before: BTreeMap<&'static str, TableState> = context
        .iter()
        .map(|(name, b)| Ok((static_name(name), crate::state::ids_and_refs(name, b)?)))
        .collect::<Result<_>>()?;
    let report = ingest::quality::apply(&mut context, &|d| operational::departement(d).is_some())
        .map_err(|e| Error::Quality(e.to_string()))?;
    let links = anonymize::linkage::person_links(key, &context)?;
    progress("règles");
    let detail = DetailBuilder::new(key).build(&context)?;
    progress("pseudonymisation");

    // The context's rows the scope owns (the others were read only to be looked at).
    let owned_set: HashMap<&'static str, HashSet<i64>> = owned_new
        .iter()
        .map(|(t, ids)| (*t, ids.iter().copied().collect()))
        .collect();
    let owned_row = |table: &str, id: i64| -> bool {
        owned_set.get(table).is_some_and(|ids| ids.contains(&id))
    };
    let quarantined: HashMap<&str, HashSet<i64>> = {
        let mut m: HashMap<&str, HashSet<i64>> = HashMap::default();
        for r in &report.quarantined_rows {
            m.entry(r.table).or_default().insert(r.id);
        }
        m
    };

    // Detail: the scope's kept rows replace the scope's old rows.
    let pseudonyms = key.subkey("detail");
    let mut plans = Vec::new();
    for (name, batch) in detail {
        let table = static_name(&name);
        if OFFER.contains(&table) {
            plans.push(
                lake.plan_merge("detail", &name, crate::detail_key(&name), batch, false)
                    .await?,
            );
            continue;
        }
        let ids = &before[table].ids;
        let kept: Vec<i64> = ids
            .iter()
            .copied()
            .filter(|id| !quarantined.get(table).is_some_and(|q| q.contains(id)))
            .collect();
        debug_assert_eq!(kept.len(), batch.num_rows());
        let mask: BooleanArray = kept.iter().map(|id| Some(owned_row(table, *id))).collect();
        let append = filter_record_batch(&batch, &mask).map_err(|e| Error::State(e.to_string()))?;
        // Rows of the scope in the detail zone before (not quarantined then) and now.
        let was_kept = |id: &i64| {
            let t = &old.tables[table];
            t.find(*id)
                .is_some_and(|row| !t.facts.get(row).iter().any(|c| quarantine_fact(*c)))
        };
        let before_kept: HashSet<i64> = owned_old[table].iter().copied().filter(was_kept).collect();
        let now_kept: HashSet<i64> = kept
            .iter()
            .copied()
            .filter(|id| owned_row(table, *id))
            .collect();
        // Collected, then sorted and deduplicated once (a national day: ~1 million keys).
        let mut keys: Vec<Key> = Vec::new();
        let written_pseudonyms = append
            .column_by_name("id")
            .and_then(|c| c.as_string_opt::<i32>());
        match table {
            "evaluation" => {
                // Evaluations keep no id: they are replaced household by household.
                for h in &scope.households {
                    keys.push(Key::Text(pseudonyms.pseudonym("menage", *h)));
                }
            }
            "menage" | "personne" | "menage_personne" | "demande_personne" => {
                // The rows written carry their pseudonyms already; only the scope's
                // other rows (gone, or quarantined now) need theirs computed.
                if let Some(written) = written_pseudonyms {
                    keys.extend(written.iter().flatten().map(|p| Key::Text(p.to_owned())));
                }
                for id in owned_old[table].iter().chain(&owned_new[table]) {
                    if written_pseudonyms.is_none() || !now_kept.contains(id) {
                        keys.push(Key::Text(pseudonyms.pseudonym(table, *id)));
                    }
                }
            }
            _ => keys.extend(
                owned_old[table]
                    .iter()
                    .chain(&owned_new[table])
                    .map(|id| Key::Int(*id)),
            ),
        }
        keys.sort_unstable();
        keys.dedup();
        let changes = warehouse::TableChanges {
            inserees: now_kept.difference(&before_kept).count() as u64,
            mises_a_jour: now_kept.intersection(&before_kept).count() as u64,
            supprimees: before_kept.difference(&now_kept).count() as u64,
        };
        let rows_before = previous.rows.get(&name).copied().unwrap_or(0);
        plans.push(MergePlan::replace(
            "detail",
            &name,
            crate::detail_key(&name),
            keys,
            append,
            rows_before,
            changes,
        ));
    }

    // The quarantine: the scope's old entries out, its new ones in.
    // The quarantine entries re-checked: the scope's rows that were quarantined (the
    // previous run's quarantine holds no other row of the scope) or are now, and the
    // offer, read whole.
    let scope_keys: HashSet<(String, String)> = ingest::TABLES_READ
        .iter()
        .flat_map(|table| {
            let t = &old.tables[*table];
            let was_quarantined = |id: &i64| {
                t.find(*id)
                    .is_some_and(|row| t.facts.get(row).iter().any(|c| quarantine_fact(*c)))
            };
            let is_quarantined = |id: &i64| quarantined.get(table).is_some_and(|q| q.contains(id));
            let old_ids = owned_old.get(table).map(Vec::as_slice).unwrap_or_default();
            let new_ids = owned_new.get(table).map(Vec::as_slice).unwrap_or_default();
            let offer_ids: &[i64] = if OFFER.contains(table) { &t.ids } else { &[] };
            old_ids
                .iter()
                .filter(|id| was_quarantined(id))
                .chain(new_ids.iter().filter(|id| is_quarantined(id)))
                .chain(offer_ids)
                .map(|id| ((*table).to_owned(), pseudonyms.pseudonym(table, *id)))
                .collect::<Vec<_>>()
        })
        .collect();
    let mut owned_report = report.clone();
    owned_report
        .quarantined_rows
        .retain(|r| OFFER.contains(&r.table) || owned_row(r.table, r.id));
    progress("comparaison au lac");
    let quarantine = q::merge_quarantine(lake, key, &owned_report, &scope_keys, Utc::now()).await?;
    progress("quarantaine");

    // The new state of the scope's rows: places, facts, links.
    let mut state = new;
    for (table, t) in &before {
        let facts = report.rows.get(table);
        let st = state.tables.get_mut(table).expect("every table");
        for (i, id) in t.ids.iter().enumerate() {
            if !owned_row(table, *id) {
                continue;
            }
            let Some(row) = st.find(*id) else { continue };
            if let Some(f) = facts {
                st.places[row] = f.places[i].clone();
                st.facts.set(row, f.facts.get(i));
            }
            if *table == "personne"
                && let Some(l) = links.get(id)
            {
                st.link_key[row] = l.key;
                st.link_siao[row] = l.siao.clone();
            }
        }
    }

    // The report: the scope's old contributions out, the new ones in.
    let previous_lines = q::read_report(lake, None).await?;
    // The suspected duplicates recounted over every person beside the report adjusted.
    let (doublons, lines) = std::thread::scope(|scope| {
        let doublons = scope.spawn(|| duplicates(&state));
        let mut lines = adjust_report(previous_lines, [&old, &state], [&owned_old, &owned_new]);
        let doublons = doublons.join().expect("the duplicates' thread");
        add_duplicates(&mut lines, &doublons);
        (doublons, lines)
    });
    let regles = rule_totals(&lines);
    let report_batch = q::lines_batch(&lines)?;
    progress("rapport");
    let mut watermarks = previous.filigranes.clone();
    for (name, t) in latest_updates(&changed) {
        let text = t.to_rfc3339();
        let entry = watermarks.entry(name).or_insert_with(|| text.clone());
        if *entry < text {
            *entry = text;
        }
    }
    Ok(Outcome {
        plans,
        quarantine,
        report: report_batch,
        regles,
        doublons,
        watermarks,
        state,
    })
}

/// Whether a fact code is a rule that quarantines.
fn quarantine_fact(code: u8) -> bool {
    matches!(
        ingest::quality::fact_of(code),
        Some(Fact::Rule(r)) if RULES.iter().any(|(x, a)| *x == r && *a == Action::Quarantine)
    )
}

/// A table's new state: the old rows less the deleted and replaced ones (every old row
/// when `whole`, the table having been read whole), plus the rows just read (their places
/// and facts are filled once the rules have run).
///
/// Both states are sorted by id: one merge of the two, the row just read winning.
fn merge_state(
    table: &str,
    old: &TableState,
    fresh: &TableState,
    gone: &HashSet<i64>,
    whole: bool,
) -> TableState {
    let person = table == "personne";
    // The rows just read, by id (they come sorted; a duplicate id keeps its first row).
    let mut order: Vec<usize> = (0..fresh.len()).collect();
    order.sort_by_key(|&i| fresh.ids[i]);
    order.dedup_by_key(|i| fresh.ids[*i]);
    let capacity = if whole { 0 } else { old.len() } + order.len();
    let mut out = TableState {
        places: Vec::with_capacity(capacity),
        facts: ingest::quality::Facts::with_capacity(capacity),
        ..Default::default()
    };
    // Rows taken, as runs of consecutive rows of one side, copied run by run (the old
    // state's rows come in long runs between the few rows replaced or deleted).
    let mut runs: Vec<(bool, usize, usize)> = Vec::new();
    let mut take = |from_old: bool, i: usize| match runs.last_mut() {
        Some((side, start, len)) if *side == from_old && *start + *len == i => *len += 1,
        _ => runs.push((from_old, i, 1)),
    };
    let old_len = if whole { 0 } else { old.len() };
    let gone = IdSet::new(gone.iter().copied());
    let (mut i, mut j) = (0, 0);
    while i < old_len || j < order.len() {
        let take_old = match (i < old_len, j < order.len()) {
            (true, true) => old.ids[i] < fresh.ids[order[j]],
            (true, false) => true,
            _ => false,
        };
        if take_old {
            if !gone.contains(old.ids[i]) {
                take(true, i);
            }
            i += 1;
        } else {
            let id = fresh.ids[order[j]];
            take(false, order[j]);
            j += 1;
            // The old row of a replaced id is dropped.
            while i < old_len && old.ids[i] == id {
                i += 1;
            }
        }
    }
    let side = |from_old: bool| if from_old { old } else { fresh };
    let mut ids: Vec<i64> = Vec::with_capacity(capacity);
    for &(from_old, start, len) in &runs {
        let t = side(from_old);
        ids.extend_from_slice(&t.ids[start..start + len]);
        out.places.extend_from_slice(&t.places[start..start + len]);
        out.facts.extend_from(&t.facts, start, len);
        if person {
            for i in start..start + len {
                out.link_key.push(t.link_key.get(i).copied().flatten());
                out.link_siao
                    .push(t.link_siao.get(i).cloned().unwrap_or_default());
            }
        }
    }
    out.ids = ids.into();
    out.refs = (0..refs_of(table).len())
        .map(|k| {
            let mut values: Vec<i64> = Vec::with_capacity(out.places.len());
            let mut nulls = arrow::array::NullBufferBuilder::new(out.places.len());
            for &(from_old, start, len) in &runs {
                let column = &side(from_old).refs[k];
                values.extend_from_slice(&column.values()[start..start + len]);
                match column.nulls() {
                    Some(n) => nulls.append_buffer(&n.slice(start, len)),
                    None => nulls.append_n_non_nulls(len),
                }
            }
            arrow::array::Int64Array::new(values.into(), nulls.finish())
        })
        .collect();
    out
}

/// Households whose rows depend on a dispositif or place group whose verdict changed
/// (quarantined or not, present or not), or a dispositif whose département changed (the
/// SIAO of a direct admission's stay is its dispositif's): their rows' verdicts and places
/// follow it. The offer's new verdicts come from the rules run on the offer alone.
fn offer_dependents(
    old: &State,
    new: &State,
    read: &BTreeMap<String, RecordBatch>,
    scope: &mut Scope,
) -> Result<()> {
    let mut offer: BTreeMap<String, RecordBatch> = OFFER
        .iter()
        .filter_map(|t| Some(((*t).to_owned(), read.get(*t)?.clone())))
        .collect();
    let report = ingest::quality::apply(&mut offer, &|d| operational::departement(d).is_some())
        .map_err(|e| Error::Quality(e.to_string()))?;
    let mut touched: HashMap<&str, HashSet<i64>> = HashMap::default();
    for table in ["dispositif", "groupe_places"] {
        let set = touched.entry(table).or_default();
        let quarantined_now: HashSet<i64> = report
            .quarantined_rows
            .iter()
            .filter(|r| r.table == table)
            .map(|r| r.id)
            .collect();
        let (o, n) = (&old.tables[table], &new.tables[table]);
        for (i, id) in o.ids.iter().enumerate() {
            let was = o.facts.get(i).iter().any(|c| quarantine_fact(*c));
            if n.find(*id).is_none() || was != quarantined_now.contains(id) {
                set.insert(*id);
            }
        }
        set.extend(n.ids.iter().filter(|id| o.find(**id).is_none()));
    }
    // A changed département.
    if let Some(d) = read.get("dispositif")
        && let (Some(ids), Some(dep)) = (
            int_column(d, "id"),
            d.column_by_name("departement")
                .and_then(|c| c.as_string_opt::<i32>()),
        )
    {
        let o = &old.tables["dispositif"];
        for i in 0..d.num_rows() {
            let now = if dep.is_null(i) {
                "INCONNU"
            } else {
                dep.value(i)
            };
            if let Some(row) = o.find(ids.value(i))
                && o.places[row].siao() != now
            {
                touched.get_mut("dispositif").unwrap().insert(ids.value(i));
            }
        }
    }
    // A place group follows its dispositif.
    if let Some(groups) = read.get("groupe_places")
        && let (Some(ids), Some(d)) = (
            int_column(groups, "id"),
            int_column(groups, "dispositif_id"),
        )
    {
        let dispositifs = touched["dispositif"].clone();
        for i in 0..groups.num_rows() {
            if d.is_valid(i) && dispositifs.contains(&d.value(i)) {
                touched
                    .get_mut("groupe_places")
                    .unwrap()
                    .insert(ids.value(i));
            }
        }
    }
    for state in [old, new] {
        for (table, column, offer) in [
            ("prise_en_charge", "dispositif_id", "dispositif"),
            ("prise_en_charge", "groupe_places_id", "groupe_places"),
            ("orientation", "dispositif_id", "dispositif"),
            ("orientation", "groupe_places_id", "groupe_places"),
            ("liste_attente", "dispositif_id", "dispositif"),
        ] {
            let t = &state.tables[table];
            for i in rows_referencing(t, table, column, &touched[offer]) {
                scope.add(owner(state, table, i));
            }
        }
    }
    Ok(())
}

/// Suspected duplicates per SIAO, over every person of the state.
fn duplicates(state: &State) -> BTreeMap<String, u64> {
    let persons = &state.tables["personne"];
    anonymize::linkage::count_duplicates(
        persons
            .link_key
            .iter()
            .zip(&persons.link_siao)
            .filter_map(|(k, s)| Some(((*k)?, s.as_str()))),
    )
}

type LineKey = (String, String, String, String, String);

fn fact_line(code: u8) -> Option<(&'static str, &'static str)> {
    Some(match ingest::quality::fact_of(code)? {
        Fact::Rule(r) => (
            if RULES
                .iter()
                .any(|(x, a)| *x == r && *a == Action::Quarantine)
            {
                q::QUARANTAINE
            } else {
                q::CONSERVEE
            },
            r,
        ),
        Fact::Measure(m) => (q::COMPLETUDE, m),
    })
}

/// The report after this run: the previous one (`previous`), less what the scope's rows
/// counted before, plus what they count now; without the suspected duplicates
/// ([`add_duplicates`]).
fn adjust_report(
    previous: Vec<QualityLine>,
    states: [&State; 2],
    owned: [&BTreeMap<&'static str, Vec<i64>>; 2],
) -> Vec<QualityLine> {
    let mut lines: BTreeMap<LineKey, i64> = BTreeMap::new();
    for l in previous {
        if l.nature == q::DOUBLONS {
            continue;
        }
        lines.insert(
            (l.siao, l.mois, l.table, l.nature, l.mesure),
            l.lignes as i64,
        );
    }
    // Counted first by borrowed place and fact code (millions of rows on a national
    // scope), then turned into the report's lines once per distinct key.
    type Count<'a> = (&'a str, &'a str, &'static str, Option<u8>);
    let mut counts: HashMap<Count<'_>, i64> = HashMap::default();
    for (state, owned, sign) in [(states[0], owned[0], -1i64), (states[1], owned[1], 1)] {
        for (table, ids) in owned {
            let t = &state.tables[table];
            for id in ids {
                let Some(row) = t.find(*id) else { continue };
                let (siao, mois) = (t.places[row].siao(), t.places[row].mois());
                *counts.entry((siao, mois, table, None)).or_default() += sign;
                for code in t.facts.get(row) {
                    *counts.entry((siao, mois, table, Some(*code))).or_default() += sign;
                }
            }
        }
    }
    for ((siao, mois, table, code), n) in counts {
        let (nature, mesure) = match code {
            None => (q::LUES, ""),
            Some(code) => match fact_line(code) {
                Some(line) => line,
                None => continue,
            },
        };
        *lines
            .entry((
                siao.to_owned(),
                mois.to_owned(),
                table.to_owned(),
                nature.to_owned(),
                mesure.to_owned(),
            ))
            .or_default() += n;
    }
    lines
        .into_iter()
        .filter(|(_, n)| *n > 0)
        .map(|((siao, mois, table, nature, mesure), n)| QualityLine {
            siao,
            mois,
            table,
            nature,
            mesure,
            lignes: n as u64,
        })
        .collect()
}

/// The report's lines of suspected duplicates, per SIAO.
fn add_duplicates(lines: &mut Vec<QualityLine>, doublons: &BTreeMap<String, u64>) {
    for (siao, n) in doublons {
        lines.push(QualityLine {
            siao: siao.clone(),
            mois: "INCONNU".into(),
            table: "personne".into(),
            nature: q::DOUBLONS.into(),
            mesure: String::new(),
            lignes: *n,
        });
    }
}

/// Rows per rule, from the report (what the manifest records).
pub(crate) fn rule_totals(lines: &[QualityLine]) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    for l in lines {
        if l.nature == q::QUARANTAINE || l.nature == q::CONSERVEE {
            *out.entry(l.mesure.clone()).or_default() += l.lignes;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::Int64Array;

    /// A state table from ids and their references (in [`refs_of`]'s order).
    fn table(name: &str, rows: &[(i64, &[Option<i64>])]) -> TableState {
        let columns = (0..refs_of(name).len())
            .map(|k| rows.iter().map(|(_, refs)| refs[k]).collect::<Int64Array>())
            .collect();
        TableState {
            ids: rows.iter().map(|(id, _)| *id).collect(),
            refs: columns,
            ..Default::default()
        }
    }

    #[test]
    fn a_merged_state_keeps_old_rows_replaces_changed_ones_and_drops_deleted_ones() {
        use ingest::quality::{Facts, Place};
        let with_rows = |rows: &[(i64, &[Option<i64>])], mois: &str| {
            let mut t = table("demande_personne", rows);
            t.places = rows.iter().map(|_| Place::new("SIAO 75", mois)).collect();
            t.facts = Facts::with_rows(rows.len());
            for (i, (id, _)) in rows.iter().enumerate() {
                t.facts.set(i, &[*id as u8]);
            }
            t
        };
        let old = with_rows(
            &[
                (1, &[Some(10), None]),
                (2, &[Some(20), Some(200)]),
                (3, &[Some(30), Some(300)]),
                (5, &[None, Some(500)]),
                (6, &[Some(60), Some(600)]),
                (9, &[Some(90), None]),
            ],
            "2025-01",
        );
        // Read again: 3 (changed), 7 (new), 2 (unchanged, read twice); 5 is gone.
        let fresh = with_rows(
            &[
                (7, &[Some(70), None]),
                (2, &[Some(20), Some(200)]),
                (3, &[None, Some(333)]),
                (2, &[Some(21), Some(201)]),
            ],
            "2025-02",
        );
        let gone: HashSet<i64> = [5].into_iter().collect();
        let merged = merge_state("demande_personne", &old, &fresh, &gone, false);
        assert_eq!(merged.ids.to_vec(), vec![1, 2, 3, 6, 7, 9]);
        let column = |k: usize| merged.refs[k].iter().collect::<Vec<_>>();
        assert_eq!(
            column(0),
            vec![Some(10), Some(20), None, Some(60), Some(70), Some(90)]
        );
        assert_eq!(
            column(1),
            vec![None, Some(200), Some(333), Some(600), None, None]
        );
        let months: Vec<&str> = merged.places.iter().map(|p| p.mois()).collect();
        assert_eq!(
            months,
            vec![
                "2025-01", "2025-02", "2025-02", "2025-01", "2025-02", "2025-01"
            ]
        );
        let facts: Vec<u8> = (0..6).map(|i| merged.facts.get(i)[0]).collect();
        assert_eq!(facts, vec![1, 2, 3, 6, 7, 9]);
        // Read whole (the offer): the old rows are all replaced by what was read.
        let whole = merge_state("demande_personne", &old, &fresh, &HashSet::default(), true);
        assert_eq!(whole.ids.to_vec(), vec![2, 3, 7]);
        assert_eq!(
            whole.refs[1].iter().collect::<Vec<_>>(),
            vec![Some(200), Some(333), None]
        );
    }

    #[test]
    fn two_columns_scanned_at_once_find_what_each_scan_finds_alone() {
        // Stays: (id, household, request, orientation), the rest empty.
        let stay =
            |h: Option<i64>, d: Option<i64>, o: Option<i64>| vec![h, d, o, None, None, None, None];
        let rows = [
            (1, stay(Some(10), Some(100), None)),
            (2, stay(Some(11), None, Some(500))),
            (3, stay(None, Some(101), Some(501))),
            (4, stay(Some(10), Some(101), Some(500))),
        ];
        let rows: Vec<(i64, &[Option<i64>])> = rows.iter().map(|(i, r)| (*i, &r[..])).collect();
        let st = table("prise_en_charge", &rows);
        let set = |v: &[i64]| v.iter().copied().collect::<HashSet<i64>>();
        let (requests, orientations) = (set(&[101]), set(&[500, 999]));
        let alone = |column: &str, values: &HashSet<i64>| {
            rows_referencing(&st, "prise_en_charge", column, values)
        };
        assert_eq!(
            rows_referencing_two(
                &st,
                "prise_en_charge",
                ("demande_id", &requests),
                ("orientation_id", &orientations)
            ),
            (vec![2, 3], vec![1, 3])
        );
        assert_eq!(alone("demande_id", &requests), vec![2, 3]);
        assert_eq!(alone("orientation_id", &orientations), vec![1, 3]);
        // One column twice, one side empty, both empty.
        let (households, none) = (set(&[10]), HashSet::default());
        assert_eq!(
            rows_referencing_two(
                &st,
                "prise_en_charge",
                ("menage_id", &households),
                ("menage_id", &set(&[11]))
            ),
            (vec![0, 3], vec![1])
        );
        assert_eq!(
            rows_referencing_two(
                &st,
                "prise_en_charge",
                ("menage_id", &none),
                ("menage_id", &households)
            ),
            (vec![], vec![0, 3])
        );
        assert_eq!(
            rows_referencing_two(
                &st,
                "prise_en_charge",
                ("menage_id", &households),
                ("demande_id", &none)
            ),
            (vec![0, 3], vec![])
        );
        assert_eq!(
            rows_referencing_two(
                &st,
                "prise_en_charge",
                ("menage_id", &none),
                ("demande_id", &none)
            ),
            (vec![], vec![])
        );
    }

    #[test]
    fn the_rows_a_scope_owns_are_those_whose_owner_it_holds() {
        let (m1, m2, m3) = (Some(1), Some(2), Some(3));
        let day = Some(20_000);
        let stay = |h: Option<i64>, d: Option<i64>| vec![h, d, None, Some(2), None, day, None];
        let mut state = State::default();
        for (name, rows) in [
            ("entite", vec![(1, vec![])]),
            ("dispositif", vec![(2, vec![])]),
            ("groupe_places", vec![(3, vec![])]),
            ("menage", vec![(1, vec![]), (2, vec![]), (3, vec![])]),
            ("personne", vec![(10, vec![]), (11, vec![]), (12, vec![])]),
            (
                "menage_personne",
                vec![
                    (100, vec![m1, Some(10)]),
                    (101, vec![m2, Some(11)]),
                    (102, vec![None, Some(12)]),
                ],
            ),
            ("evaluation", vec![(200, vec![m1]), (201, vec![m3])]),
            (
                "demande",
                vec![
                    (300, vec![m1, day]),
                    (301, vec![m2, day]),
                    (302, vec![None, day]),
                    (303, vec![m3, None]),
                ],
            ),
            (
                "demande_personne",
                vec![
                    (400, vec![Some(300), Some(10)]),
                    (401, vec![Some(301), Some(11)]),
                    (402, vec![Some(302), Some(12)]),
                    (403, vec![Some(999), Some(10)]),
                    (404, vec![None, Some(10)]),
                    (405, vec![Some(303), Some(12)]),
                ],
            ),
            (
                "orientation",
                vec![
                    (500, vec![Some(300), None, None]),
                    (501, vec![Some(302), Some(2), None]),
                    (502, vec![Some(999), None, None]),
                    (503, vec![Some(303), None, None]),
                ],
            ),
            ("liste_attente", vec![(600, vec![Some(301), Some(2)])]),
            (
                "prise_en_charge",
                vec![
                    (700, stay(m1, Some(300))),
                    (701, stay(None, None)),
                    (702, stay(m2, Some(301))),
                    (703, stay(m3, None)),
                ],
            ),
        ] {
            let rows: Vec<(i64, &[Option<i64>])> =
                rows.iter().map(|(id, r)| (*id, r.as_slice())).collect();
            state.tables.insert(static_name(name), table(name, &rows));
        }
        let mut scope = Scope::default();
        scope.households.insert(1);
        scope.persons.insert(11);
        scope.requests.extend([302, 999, 303]);
        scope.stays.extend([701, 703]);
        for (t, id) in [("menage_personne", 102), ("demande_personne", 404)] {
            scope.loose.insert((table_index(t), id));
        }
        let owned = owned_ids(&state, &scope);
        // Worked out by hand from the owners' rules: household 1 whole, requests 302
        // and 303 (999 is not in the state: its rows are owned all the same), stays 701
        // and 703, person 11, the two loose rows, the offer.
        let expected: &[(&str, &[i64])] = &[
            ("entite", &[1]),
            ("menage", &[1]),
            ("personne", &[11]),
            ("menage_personne", &[100, 102]),
            ("evaluation", &[200]),
            ("demande", &[300, 302, 303]),
            ("demande_personne", &[400, 402, 403, 404, 405]),
            ("orientation", &[500, 501, 502, 503]),
            ("liste_attente", &[]),
            ("prise_en_charge", &[700, 701, 703]),
        ];
        for (name, ids) in expected {
            assert_eq!(owned[name], *ids, "{name}");
        }
        // And the same as asking row by row.
        for (name, t) in &state.tables {
            let by_row: Vec<i64> = (0..t.len())
                .filter(|&i| scope.owns(&state, name, i))
                .map(|i| t.ids[i])
                .collect();
            assert_eq!(owned[name], by_row, "{name}");
        }
    }

    #[test]
    fn the_scope_follows_a_persons_night_a_stays_requests_and_overlapping_stays() {
        let state = |night_of_5: i64| {
            let mut state = State::default();
            let stay = |h: i64, d: Option<i64>, o: Option<i64>, entry: i64, exit: Option<i64>| {
                vec![Some(h), d, o, None, None, Some(entry), exit]
            };
            for (name, rows) in [
                (
                    "demande",
                    vec![
                        (1, vec![Some(10), Some(100)]),
                        (2, vec![Some(20), Some(100)]),
                        (3, vec![Some(20), Some(101)]),
                        (4, vec![Some(30), Some(100)]),
                        (5, vec![Some(10), Some(night_of_5)]),
                    ],
                ),
                (
                    "demande_personne",
                    vec![
                        (11, vec![Some(1), Some(7)]),
                        (12, vec![Some(2), Some(7)]),
                        (13, vec![Some(3), Some(7)]),
                        (14, vec![Some(4), Some(8)]),
                        (15, vec![Some(5), Some(7)]),
                    ],
                ),
                ("orientation", vec![(50, vec![Some(2), None, None])]),
                (
                    "prise_en_charge",
                    vec![
                        (60, stay(20, None, Some(50), 100, Some(105))),
                        (61, stay(20, Some(3), None, 104, None)),
                        (62, stay(20, None, None, 90, Some(95))),
                    ],
                ),
            ] {
                let rows: Vec<(i64, &[Option<i64>])> =
                    rows.iter().map(|(id, r)| (*id, r.as_slice())).collect();
                state.tables.insert(static_name(name), table(name, &rows));
            }
            state
        };
        // Request 5 was on night 100 before a correction moved it to 102.
        let (old, new) = (state(100), state(102));
        let mut scope = Scope::default();
        scope.requests.insert(1);
        close([&old, &new], &mut scope);
        // By hand: 1 shares person 7 on night 100 with 2 (and with 5 before); 2's
        // orientation 50 has stay 60, which overlaps 61 in household 20, which is on
        // request 3. Not 4 (another person), not 62 (over before 60 began).
        let mut requests: Vec<i64> = scope.requests.iter().copied().collect();
        requests.sort_unstable();
        let mut stays: Vec<i64> = scope.stays.iter().copied().collect();
        stays.sort_unstable();
        assert_eq!(requests, vec![1, 2, 3, 5]);
        assert_eq!(stays, vec![60, 61]);
        assert!(scope.households.is_empty());
    }
}
