//! What the ingest runs since the last release changed, as the compute sees it.
//!
//! Each run records the groups it rewrote in every detail table
//! ([`warehouse::Lake::run_keys`]). From them, the compute finds the households they reach
//! and builds two small sessions: the detail zone before (as the last release's run left
//! it) and after (the current run), each restricted to those households and to every row
//! that hangs on them. An indicator's records over the two differ exactly as its records
//! over the whole zone do, so its fingerprints follow by difference
//! ([`crate::incremental::apply_difference`]) — without listing the records of every
//! household that did not change.
//!
//! Why the restriction keeps every record that changed: a record is made of one row and the
//! rows the catalogue's SQL joins to it — a request's persons, orientations and stays, a
//! stay's request and orientation, a household's requests and evaluations, a person's
//! links. The households reached are those of every rewritten row, before and after,
//! following those same joins backwards (a stay → its request's household and its
//! orientation's request's household; a person → the households of the requests they are
//! on). The restriction then keeps, on each side, the rows of those households, the rows
//! hanging on their requests and orientations, and every rewritten row. A row that did
//! not change is kept on both sides or on neither.
//!
//! The households reached are then closed over persons: every household of a request of a
//! person on a reached household's request is added (whole, on both sides, which keeps the
//! argument above). A person — the entity of the distinct counts — is then either whole in
//! the restriction, or there only on requests of households that did not change, with the
//! same records on both sides: so a distinct count over the restriction also differs, after
//! minus before, exactly as over the whole zone, and additive cells follow by difference
//! ([`crate::compute`]'s `cells_by_difference`). The offer (entités, dispositifs, place
//! groups) is read whole on both sides; an indicator reading an offer table that changed,
//! a table rewritten whole, or a table without a rule here is listed in full. The
//! conventions' indicators (any SQL) always are.
//!
//! Every step reads the detail files directly ([`Lake::select_rows_at`]): the key columns
//! first, the rows wanted then, both sides together — the two versions of a table share
//! nearly all their files, each read once for both. Nationally, one simulated day reaches 37 032 households
//! (BENCHMARKS.md), whose rows are a few percent of the detail zone's 32 million; the
//! engine's scan would decode every column of every row of the household tables, twice.
//! When a table cannot be read that way (partitioned, a key column of another type), the
//! changes are not known and the compute lists every record.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::Schema;
use datafusion::datasource::MemTable;
use datafusion::prelude::SessionContext;
use warehouse::{Conditions, KeySet, Lake, RunKeys, RunManifest};

use crate::catalogue::Indicator;
use crate::compute::Result;

/// Tables whose rows belong to households: a rewritten row of one of them reaches the
/// households [`reach`] says.
const RULED: &[&str] = &[
    "menage",
    "evaluation",
    "menage_personne",
    "demande",
    "demande_personne",
    "personne",
    "orientation",
    "liste_attente",
    "prise_en_charge",
];

/// The value of a direct read, or `Ok(None)` from the enclosing function when that read
/// does not apply ([`Lake::select_rows`]).
macro_rules! direct {
    ($read:expr) => {
        match $read.await? {
            Some(value) => value,
            None => return Ok(None),
        }
    };
}

/// One side's detail zone, as read directly ([`Lake::select_rows_at`]): the lake, the
/// session over the whole zone (for the tables' schemas) and each table's Delta version.
type Read<'a> = (&'a Lake, &'a SessionContext, &'a BTreeMap<String, i64>);

/// A pair of anything, one per side (before, after).
pub(crate) type Both<T> = [T; 2];

/// A read's conditions as [`reach`] builds them: a column with no keys to look for
/// (`None`) is left out.
type Optional<'a> = Vec<(&'a str, Option<Arc<KeySet>>)>;

/// Adds to `households` those the rewritten rows reach on either side: a household's own
/// rows and evaluations, a membership's household, a request's household, and the
/// households of the requests a request link, a person (by their links and memberships),
/// an orientation, a waiting-list entry or a stay (by its request and by its orientation's
/// request) hang on; a stay's own household too. `chg`: each ruled table's rewritten keys
/// (of its `id`; of the household for `menage` and `evaluation`); `has`: whether a detail
/// table exists (a path through a missing table reaches nothing). Both sides are read
/// together (a file they share, once). `None` when a direct read does not apply.
async fn reach(
    sides: Both<Read<'_>>,
    chg: &BTreeMap<&str, Arc<KeySet>>,
    has: impl Fn(&str) -> bool,
    households: &mut KeySet,
) -> Result<Option<()>> {
    let k = |table: &str| chg.get(table).cloned();
    // The rows of `table` (if present) whose column holds a key of its set, on each side,
    // as the sets of the values of `out`.
    let select = async |table: &str, out: &[&str], any: Both<Optional<'_>>| {
        let any: Both<Vec<(&str, Arc<KeySet>)>> = any.map(|any| {
            any.into_iter()
                .filter_map(|(c, s)| s.map(|s| (c, s)))
                .collect()
        });
        if !has(table) || any.iter().all(Vec::is_empty) {
            return Ok(Some([
                vec![KeySet::new(); out.len()],
                vec![KeySet::new(); out.len()],
            ]));
        }
        select_columns(sides, table, out, any).await
    };
    let same = |any: Vec<(&'static str, Option<Arc<KeySet>>)>| [any.clone(), any];
    let some = |set: &KeySet| (!set.is_empty()).then(|| Arc::new(set.clone()));
    // The stays, then their orientations; beside them, the tables whose keys depend on
    // no other (each read decodes on every core, but fetches its files on one).
    let stays_and_orientations = async {
        let Some(stays) = select(
            "prise_en_charge",
            &["menage_id", "demande_id", "orientation_id"],
            same(vec![("id", k("prise_en_charge"))]),
        )
        .await?
        else {
            return Ok(None);
        };
        if stays.iter().any(|side| side.len() != 3) {
            return Ok(None);
        }
        let orientations = select(
            "orientation",
            &["demande_id"],
            stays
                .each_ref()
                .map(|s| vec![("id", k("orientation")), ("id", some(&s[2]))]),
        )
        .await?;
        Ok::<_, crate::compute::ComputeError>(orientations.map(|o| (stays, o)))
    };
    let (stays_and_orientations, links, waits, memberships) = futures::try_join!(
        stays_and_orientations,
        select(
            "demande_personne",
            &["demande_id"],
            same(vec![
                ("id", k("demande_personne")),
                ("personne_id", k("personne")),
            ]),
        ),
        select(
            "liste_attente",
            &["demande_id"],
            same(vec![("id", k("liste_attente"))]),
        ),
        select(
            "menage_personne",
            &["menage_id"],
            same(vec![
                ("id", k("menage_personne")),
                ("personne_id", k("personne")),
            ]),
        ),
    )?;
    let (Some((stays, orientations)), Some(links), Some(waits), Some(memberships)) =
        (stays_and_orientations, links, waits, memberships)
    else {
        return Ok(None);
    };
    let requests: Both<Optional<'_>> = [0, 1].map(|s| {
        let mut requests = vec![("id", k("demande")), ("id", some(&stays[s][1]))];
        for found in [&orientations[s], &links[s], &waits[s]] {
            requests.extend(found.iter().map(|set| ("id", some(set))));
        }
        requests
    });
    let requests = direct!(select("demande", &["menage_id"], requests));
    for s in 0..2 {
        for set in requests[s]
            .iter()
            .chain(&memberships[s])
            .chain([&stays[s][0]])
        {
            households.extend(set);
        }
    }
    for own in ["menage", "evaluation"] {
        if let Some(set) = chg.get(own) {
            households.extend(set);
        }
    }
    Ok(Some(()))
}

/// Where a restriction's keys come from.
enum Set {
    /// The households reached.
    Households,
    /// A column of a table restricted before (the condition applies only when that table
    /// exists).
    Restricted(&'static str, &'static str),
}

/// A household table and the sets its rows are restricted to: (column, keys).
type Restriction = (&'static str, &'static [(&'static str, Set)]);

/// The restriction of each household table, in the order they are built: the rows whose
/// column holds a key of any of its sets. Each table also keeps its own rewritten rows.
const RESTRICT: &[Restriction] = &[
    ("menage", &[("id", Set::Households)]),
    ("demande", &[("menage_id", Set::Households)]),
    ("evaluation", &[("menage_id", Set::Households)]),
    ("menage_personne", &[("menage_id", Set::Households)]),
    (
        "demande_personne",
        &[("demande_id", Set::Restricted("demande", "id"))],
    ),
    (
        "orientation",
        &[("demande_id", Set::Restricted("demande", "id"))],
    ),
    (
        "liste_attente",
        &[("demande_id", Set::Restricted("demande", "id"))],
    ),
    (
        "prise_en_charge",
        &[
            ("menage_id", Set::Households),
            ("demande_id", Set::Restricted("demande", "id")),
            ("orientation_id", Set::Restricted("orientation", "id")),
        ],
    ),
    (
        "personne",
        &[
            ("id", Set::Restricted("demande_personne", "personne_id")),
            ("id", Set::Restricted("menage_personne", "personne_id")),
        ],
    ),
];

/// [`RESTRICT`] in waves: a table comes in the wave after the last of the tables its
/// keys come from, so that the tables of one wave can be restricted side by side.
fn waves() -> Vec<Vec<Restriction>> {
    let mut wave_of: BTreeMap<&str, usize> = BTreeMap::new();
    let mut waves: Vec<Vec<_>> = Vec::new();
    for &(table, conditions) in RESTRICT {
        let wave = conditions
            .iter()
            .filter_map(|(_, set)| match set {
                Set::Households => None,
                Set::Restricted(from, _) => Some(wave_of[from] + 1),
            })
            .max()
            .unwrap_or(0);
        wave_of.insert(table, wave);
        if waves.len() <= wave {
            waves.resize_with(wave + 1, Vec::new);
        }
        waves[wave].push((table, conditions));
    }
    waves
}

/// The offer: read whole on both sides.
const OFFER: &[&str] = &["entite", "dispositif", "groupe_places"];

/// The detail zone before and after the runs since the last release, restricted to what
/// they changed.
pub(crate) struct Changes {
    pub before: SessionContext,
    pub after: SessionContext,
    /// Detail tables an indicator must not read to be listed from the changes.
    pub unusable: BTreeSet<String>,
    /// Detail tables the same on both sides: read whole (not restricted) and rewritten by
    /// no run since the last release.
    pub identical: BTreeSet<String>,
    /// Every detail table.
    pub tables: BTreeSet<String>,
    /// Households reached.
    pub households: usize,
}

impl Changes {
    /// Whether `indicator` can be listed from the changes: a catalogue indicator whose
    /// SQL reads no unusable table.
    pub fn covers(&self, indicator: &Indicator, sql: &str) -> bool {
        if indicator.territoire.is_some() {
            return false;
        }
        let read = tables_read(sql, &self.tables);
        !read.is_empty() && read.iter().all(|t| !self.unusable.contains(*t))
    }

    /// Whether every table `sql` reads is the same on both sides ([`Changes::identical`]):
    /// its records are then too (the prepared tables — periods, calendar, territories —
    /// are the current session's on both sides), and they move nothing.
    pub fn identical_for(&self, sql: &str) -> bool {
        let read = tables_read(sql, &self.tables);
        !read.is_empty() && read.iter().all(|t| self.identical.contains(*t))
    }
}

/// The tables among `tables` that `sql` names (as whole words: `dispositif`, not
/// `dispositif_id`).
fn tables_read<'a>(sql: &str, tables: &'a BTreeSet<String>) -> Vec<&'a str> {
    let word = |c: char| c.is_ascii_alphanumeric() || c == '_';
    tables
        .iter()
        .filter(|t| {
            sql.match_indices(t.as_str()).any(|(i, _)| {
                let before = sql[..i].chars().next_back();
                let after = sql[i + t.len()..].chars().next();
                !before.is_some_and(word) && !after.is_some_and(word)
            })
        })
        .map(String::as_str)
        .collect()
}

/// The changes since run `since` (the last release's), or `None` when they cannot be
/// known: a run in between did not record its groups, the older versions were vacuumed,
/// the tables differ.
pub(crate) async fn since(
    lake: &Lake,
    current: &SessionContext,
    manifest: &RunManifest,
    since: i64,
) -> Result<Option<Changes>> {
    if since < 1 || since as u64 >= manifest.run {
        return Ok(None);
    }
    let Some(old) = lake.run_manifest(since as u64)? else {
        return Ok(None);
    };
    let mut keys = RunKeys::default();
    for run in since as u64 + 1..=manifest.run {
        let Some(m) = lake.run_manifest(run)? else {
            return Ok(None);
        };
        let Some(run_keys) = lake.run_keys(&m).await? else {
            return Ok(None);
        };
        keys.whole.extend(run_keys.whole);
        for (table, (column, ints, texts)) in run_keys.keys {
            let e = keys
                .keys
                .entry(table)
                .or_insert_with(|| (column, Vec::new(), Vec::new()));
            e.1.extend(ints);
            e.2.extend(texts);
        }
    }
    let tables: BTreeSet<String> = manifest.tables.keys().cloned().collect();
    if tables != old.tables.keys().cloned().collect() {
        return Ok(None);
    }
    let before_full = lake.detail_session_of(&old).await?;
    build(
        lake,
        [(&before_full, &old.tables), (current, &manifest.tables)],
        &tables,
        keys,
    )
    .await
}

/// A side of the changes: the session over the whole detail zone, and the Delta version
/// of each table it reads.
type Side<'a> = (&'a SessionContext, &'a BTreeMap<String, i64>);

/// The changes between the two sides (before, after); `None` when a table cannot be
/// restricted by a direct read ([`Lake::select_rows_at`]).
async fn build(
    lake: &Lake,
    [(before_full, before_versions), (after_full, after_versions)]: [Side<'_>; 2],
    tables: &BTreeSet<String>,
    keys: RunKeys,
) -> Result<Option<Changes>> {
    let ruled: BTreeSet<&str> = RULED.iter().copied().collect();
    let mut unusable: BTreeSet<String> = keys.whole.clone();
    for table in keys.keys.keys() {
        if OFFER.contains(&table.as_str()) || !ruled.contains(table.as_str()) {
            unusable.insert(table.clone());
        }
    }
    // Each ruled table's rewritten keys, and the column they are of.
    let mut own: BTreeMap<&str, (String, Arc<KeySet>)> = BTreeMap::new();
    for (table, (column, ints, texts)) in &keys.keys {
        if !tables.contains(table) {
            continue;
        }
        if let Some(t) = RULED.iter().find(|t| **t == table.as_str()) {
            let mut set = KeySet::of_ints(ints.iter().copied());
            set.extend_texts(texts.iter().map(String::as_str));
            own.insert(t, (column.clone(), Arc::new(set)));
        }
    }
    let chg: BTreeMap<&str, Arc<KeySet>> = own.iter().map(|(t, (_, s))| (*t, s.clone())).collect();
    // The households reached, from both sides.
    let started = std::time::Instant::now();
    let both: Both<Read<'_>> = [
        (lake, before_full, before_versions),
        (lake, after_full, after_versions),
    ];
    let mut households = KeySet::new();
    if reach(both, &chg, |t| tables.contains(t), &mut households)
        .await?
        .is_none()
    {
        return Ok(None);
    }
    tracing::debug!(
        menages = households.len(),
        portee_ms = started.elapsed().as_millis() as u64,
        "ménages atteints par les changements"
    );
    // Closed over persons: the households of every request of the persons on the reached
    // households' requests, on either side. A person a distinct indicator counts is then
    // whole in the restriction, or there only on requests of households no run changed.
    if !households.is_empty() && tables.contains("demande") && tables.contains("demande_personne") {
        let started = std::time::Instant::now();
        let first = Arc::new(households.clone());
        let requests = direct!(select_keys(
            both,
            "demande",
            "id",
            [("menage_id", first.clone()), ("menage_id", first)]
        ));
        let persons = direct!(select_keys(
            both,
            "demande_personne",
            "personne_id",
            requests.map(|r| ("demande_id", r)),
        ));
        let requests = direct!(select_keys(
            both,
            "demande_personne",
            "demande_id",
            persons.map(|p| ("personne_id", p)),
        ));
        let reached = direct!(select_keys(
            both,
            "demande",
            "menage_id",
            requests.map(|r| ("id", r))
        ));
        for set in &reached {
            households.extend(set);
        }
        tracing::debug!(
            menages = households.len(),
            fermeture_ms = started.elapsed().as_millis() as u64,
            "ménages des personnes atteintes"
        );
    }
    let count = households.len();
    let households = Arc::new(households);
    // Both sides restricted together, wave by wave (below).
    let fulls = [before_full, after_full];
    let versions = [before_versions, after_versions];
    let mut restricted: Both<BTreeMap<&str, Vec<RecordBatch>>> = Default::default();
    let mut restricted_schemas: Both<BTreeMap<&str, arrow::datatypes::SchemaRef>> =
        Default::default();
    // A table is restricted once the tables its keys come from are: those of one wave
    // are read side by side (each read decodes on every core, but fetches its files and
    // builds its schemas and key sets on one).
    for wave in waves() {
        let reads = wave
            .into_iter()
            .filter(|(table, _)| tables.contains(*table))
            .map(|(table, conditions)| {
                let (households, restricted, own) = (&households, &restricted, &own);
                async move {
                    let mut any: Both<Conditions> = Default::default();
                    for s in 0..2 {
                        for (column, set) in conditions {
                            match set {
                                Set::Households => {
                                    any[s].push(((*column).to_owned(), households.clone()))
                                }
                                Set::Restricted(from, key) => {
                                    let Some(batches) = restricted[s].get(from) else {
                                        continue;
                                    };
                                    let mut keys = KeySet::new();
                                    for b in batches {
                                        let Some(c) = b.column_by_name(key) else {
                                            return Ok(None);
                                        };
                                        if !keys.extend_from(c.as_ref()) {
                                            return Ok(None);
                                        }
                                    }
                                    any[s].push(((*column).to_owned(), Arc::new(keys)));
                                }
                            }
                        }
                        if let Some((column, set)) = own.get(table) {
                            any[s].push((column.clone(), set.clone()));
                        }
                    }
                    let started = std::time::Instant::now();
                    let mut schemas = Vec::with_capacity(2);
                    for full in fulls {
                        let provider = full.table_provider(table).await?;
                        schemas
                            .push(crate::compute::compact_views(provider.schema(), Vec::new())?.0);
                    }
                    let [before_schema, after_schema] =
                        <[_; 2]>::try_from(schemas).expect("two sides");
                    let read = read_both(
                        lake,
                        table,
                        [before_schema.clone(), after_schema.clone()],
                        [versions[0][table], versions[1][table]],
                        any,
                    )
                    .await?;
                    let Some([before, after]) = read else {
                        tracing::debug!(table, "lecture directe impossible : tout est relu");
                        return Ok(None);
                    };
                    tracing::debug!(
                        table,
                        avant = before.iter().map(|b| b.num_rows()).sum::<usize>(),
                        apres = after.iter().map(|b| b.num_rows()).sum::<usize>(),
                        restriction_ms = started.elapsed().as_millis() as u64,
                        "table restreinte aux changements"
                    );
                    Ok::<_, crate::compute::ComputeError>(Some((
                        table,
                        [before, after],
                        [before_schema, after_schema],
                    )))
                }
            });
        for read in futures::future::try_join_all(reads).await? {
            let Some((table, [before, after], [before_schema, after_schema])) = read else {
                return Ok(None);
            };
            restricted[0].insert(table, before);
            restricted[1].insert(table, after);
            restricted_schemas[0].insert(table, before_schema);
            restricted_schemas[1].insert(table, after_schema);
        }
    }
    // Each side's session: the restricted tables, and everything else as the full
    // session has it — the offer, and the prepared tables (periods, calendar,
    // territories) of the current session on both sides.
    let mut sides = Vec::with_capacity(2);
    for (s, full) in fulls.into_iter().enumerate() {
        let side = SessionContext::new_with_config_rt(full.copied_config(), full.runtime_env());
        side.register_udaf(crate::quantiles::udaf());
        for table in tables {
            match (
                restricted[s].remove(table.as_str()),
                restricted_schemas[s].get(table.as_str()),
            ) {
                (Some(batches), Some(schema)) => {
                    side.register_table(
                        table.as_str(),
                        Arc::new(MemTable::try_new(schema.clone(), vec![batches])?),
                    )?;
                }
                _ => {
                    side.register_table(
                        table.as_str(),
                        full.table_provider(table.as_str()).await?,
                    )?;
                }
            }
        }
        for name in crate::compute::PREPARED_TABLES {
            if after_full.table_exist(name)? && !side.table_exist(name)? {
                side.register_table(name, after_full.table_provider(name).await?)?;
            }
        }
        sides.push(side);
    }
    let after = sides.pop().expect("two sides");
    let before = sides.pop().expect("two sides");
    let identical = tables
        .iter()
        .filter(|t| {
            !RESTRICT.iter().any(|(r, _)| r == t)
                && !keys.whole.contains(*t)
                && !keys.keys.contains_key(*t)
        })
        .cloned()
        .collect();
    Ok(Some(Changes {
        before,
        after,
        unusable,
        identical,
        tables: tables.clone(),
        households: count,
    }))
}

/// The values of each column of `out` (a set per column) in the rows of `table` whose
/// column holds a key of its set, on each side (its own conditions), both read together;
/// `None` when the direct read does not apply.
async fn select_columns(
    sides: Both<Read<'_>>,
    table: &str,
    out: &[&str],
    any: Both<Vec<(&str, Arc<KeySet>)>>,
) -> Result<Option<Both<Vec<KeySet>>>> {
    let mut targets = Vec::with_capacity(2);
    for (_, full, _) in sides {
        let schema = full.table_provider(table).await?.schema();
        let mut fields = Vec::with_capacity(out.len());
        for column in out {
            fields.push(schema.field_with_name(column)?.clone());
        }
        targets.push(crate::compute::compact_views(Arc::new(Schema::new(fields)), Vec::new())?.0);
    }
    let lake = sides[0].0;
    let any = any.map(|any| {
        any.iter()
            .map(|(c, s)| ((*c).to_owned(), s.clone()))
            .collect::<Vec<_>>()
    });
    let [before_target, after_target] = <[_; 2]>::try_from(targets).expect("two sides");
    let versions = [sides[0].2[table], sides[1].2[table]];
    let Some(read) = read_both(lake, table, [before_target, after_target], versions, any).await?
    else {
        return Ok(None);
    };
    let mut result: Both<Vec<KeySet>> = [
        vec![KeySet::new(); out.len()],
        vec![KeySet::new(); out.len()],
    ];
    for (sets, batches) in result.iter_mut().zip(&read) {
        for b in batches {
            for (set, column) in sets.iter_mut().zip(b.columns()) {
                if !set.extend_from(column.as_ref()) {
                    return Ok(None);
                }
            }
        }
    }
    Ok(Some(result))
}

/// The rows of `table` at its version on each side (before, after) with a value of one of
/// the side's condition columns in its set, with the side's `targets` columns: one read of
/// both versions when their columns agree ([`Lake::select_rows_at`]), else one each.
async fn read_both(
    lake: &Lake,
    table: &str,
    [before_target, after_target]: Both<arrow::datatypes::SchemaRef>,
    [before_version, after_version]: Both<i64>,
    [before_any, after_any]: Both<Conditions>,
) -> Result<Option<Both<Vec<RecordBatch>>>> {
    if before_target == after_target {
        let read = lake
            .select_rows_at(
                table,
                after_target,
                &[(before_version, before_any), (after_version, after_any)],
            )
            .await?;
        return Ok(read.and_then(|sides| <[_; 2]>::try_from(sides).ok()));
    }
    let before = lake
        .select_rows(table, before_version, before_target, &before_any)
        .await?;
    let after = lake
        .select_rows(table, after_version, after_target, &after_any)
        .await?;
    Ok(before.zip(after).map(|(b, a)| [b, a]))
}

/// The one set per side of [`select_columns`] with one output column and one condition.
async fn select_keys(
    sides: Both<Read<'_>>,
    table: &str,
    out: &str,
    conditions: Both<(&str, Arc<KeySet>)>,
) -> Result<Option<Both<Arc<KeySet>>>> {
    let Some([mut before, mut after]) =
        select_columns(sides, table, &[out], conditions.map(|c| vec![c])).await?
    else {
        return Ok(None);
    };
    match (before.pop(), after.pop()) {
        (Some(b), Some(a)) => Ok(Some([Arc::new(b), Arc::new(a)])),
        _ => Ok(None),
    }
}

/// An indicator's records over the two sides of the changes, with their fingerprints.
pub(crate) struct Sides {
    pub schema: arrow::datatypes::SchemaRef,
    pub before: Vec<RecordBatch>,
    pub after: Vec<RecordBatch>,
    pub prints: Both<crate::incremental::Prints>,
    /// The time the listing and fingerprinting took.
    pub took: std::time::Duration,
}

/// Lists `indicator`'s records on both sides of `changes` and fingerprints them.
/// `identical`: every table it reads is the same on both sides ([`Changes::identical_for`]),
/// so are its records, which move nothing: only their schema is needed.
pub(crate) async fn list_sides(
    changes: &Changes,
    indicator: &Indicator,
    identical: bool,
) -> Result<Sides> {
    let started = std::time::Instant::now();
    if identical {
        return Ok(Sides {
            schema: crate::compute::records_schema(&changes.after, indicator).await?,
            before: Vec::new(),
            after: Vec::new(),
            prints: Default::default(),
            took: started.elapsed(),
        });
    }
    let ((schema, before), (_, after)) = futures::try_join!(
        crate::compute::list_records(&changes.before, indicator),
        crate::compute::list_records(&changes.after, indicator),
    )?;
    let grain = indicator.grain;
    // Hashing the records is work for the cores, not for the runtime's threads.
    let (before, after, prints) = joined(
        tokio::task::spawn_blocking(move || {
            let prints = [
                crate::incremental::fingerprints(grain, &before)?,
                crate::incremental::fingerprints(grain, &after)?,
            ];
            Ok::<_, crate::compute::ComputeError>((before, after, prints))
        })
        .await,
    )??;
    Ok(Sides {
        schema,
        before,
        after,
        prints,
        took: started.elapsed(),
    })
}

/// A task's outcome: its panic goes on in the caller.
fn joined<T>(outcome: std::result::Result<T, tokio::task::JoinError>) -> Result<T> {
    outcome.map_err(|e| match e.try_into_panic() {
        Ok(panic) => std::panic::resume_unwind(panic),
        Err(e) => crate::compute::ComputeError::Interrupted(e.to_string()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Int64Array, StringArray};

    #[tokio::test]
    async fn the_households_are_reached_through_the_tables_present_only() {
        use arrow::array::ArrayRef;
        let dir = tempfile::tempdir().unwrap();
        let lake = Lake::new(dir.path());
        let int = |v: &[Option<i64>]| -> ArrayRef { Arc::new(Int64Array::from(v.to_vec())) };
        let text = |v: &[&str]| -> ArrayRef { Arc::new(StringArray::from(v.to_vec())) };
        let tables: Vec<(&str, RecordBatch)> = vec![
            (
                "demande",
                RecordBatch::try_from_iter([
                    ("id", int(&[Some(1), Some(2), Some(3), Some(4)])),
                    ("menage_id", text(&["m1", "m2", "m3", "m4"])),
                ])
                .unwrap(),
            ),
            (
                "demande_personne",
                RecordBatch::try_from_iter([
                    ("id", int(&[Some(10), Some(11), Some(12)])),
                    ("demande_id", int(&[Some(1), Some(2), Some(3)])),
                    ("personne_id", text(&["p1", "p2", "p3"])),
                ])
                .unwrap(),
            ),
            (
                "orientation",
                RecordBatch::try_from_iter([
                    ("id", int(&[Some(20), Some(21)])),
                    ("demande_id", int(&[Some(3), Some(4)])),
                ])
                .unwrap(),
            ),
            (
                "prise_en_charge",
                RecordBatch::try_from_iter([
                    ("id", int(&[Some(30), Some(31)])),
                    ("menage_id", text(&["m5", "m8"])),
                    ("demande_id", int(&[None, Some(2)])),
                    ("orientation_id", int(&[Some(21), None])),
                ])
                .unwrap(),
            ),
            (
                "menage_personne",
                RecordBatch::try_from_iter([
                    ("id", int(&[Some(40), Some(41)])),
                    ("menage_id", text(&["m6", "m7"])),
                    ("personne_id", text(&["p1", "p9"])),
                ])
                .unwrap(),
            ),
        ];
        let ctx = warehouse::new_session();
        let mut versions = BTreeMap::new();
        for (name, batch) in tables {
            let version = lake.overwrite("detail", name, batch).await.unwrap();
            let table = lake.open("detail", name, None).await.unwrap().unwrap();
            lake.register(&ctx, name, &table).await.unwrap();
            versions.insert(name.to_owned(), version);
        }
        // Person p1 changed, and stay 30.
        let chg: BTreeMap<&str, Arc<KeySet>> = [
            ("personne", Arc::new(KeySet::of_texts(["p1"]))),
            ("prise_en_charge", Arc::new(KeySet::of_ints([30]))),
        ]
        .into_iter()
        .collect();
        let reached = async |has: &dyn Fn(&str) -> bool, chg: &BTreeMap<&str, Arc<KeySet>>| {
            let mut households = KeySet::new();
            let side = (&lake, &ctx, &versions);
            reach([side, side], chg, has, &mut households)
                .await
                .unwrap()
                .expect("a direct read applies");
            let mut h: Vec<String> = households.texts().map(str::to_owned).collect();
            h.sort_unstable();
            h
        };
        // p1: their request 1 (m1) and their membership (m6); stay 30: its own household
        // (m5) and its orientation's request's (4, m4). Stay 31 and person p9 did not change.
        assert_eq!(reached(&|_| true, &chg).await, ["m1", "m4", "m5", "m6"]);
        // Through the tables present only.
        let some = |t: &str| t != "menage_personne" && t != "orientation";
        assert_eq!(reached(&some, &chg).await, ["m1", "m5"]);
        assert!(reached(&|_| true, &BTreeMap::new()).await.is_empty());
    }

    #[test]
    fn tables_are_found_as_whole_words() {
        let tables: BTreeSet<String> = ["dispositif", "demande", "demande_personne", "personne"]
            .iter()
            .map(|t| (*t).to_owned())
            .collect();
        let read = tables_read(
            "SELECT x.type_dispositif FROM demande d JOIN demande_personne dp \
             ON dp.demande_id = d.id WHERE d.dispositif_id IS NULL",
            &tables,
        );
        assert_eq!(read, ["demande", "demande_personne"]);
        let read = tables_read("SELECT 1 FROM dispositif", &tables);
        assert_eq!(read, ["dispositif"]);
    }

    #[test]
    fn each_restriction_wave_comes_after_the_tables_its_keys_come_from() {
        let waves = waves();
        let names: Vec<Vec<&str>> = waves
            .iter()
            .map(|w| w.iter().map(|(t, _)| *t).collect())
            .collect();
        assert_eq!(
            names,
            [
                vec!["menage", "demande", "evaluation", "menage_personne"],
                vec!["demande_personne", "orientation", "liste_attente"],
                vec!["prise_en_charge", "personne"],
            ]
        );
        let wave_of = |table: &str| names.iter().position(|w| w.contains(&table)).unwrap();
        for (i, wave) in waves.iter().enumerate() {
            for (_, conditions) in wave {
                for (_, set) in conditions.iter() {
                    if let Set::Restricted(from, _) = set {
                        assert!(wave_of(from) < i, "{from} after a table that reads it");
                    }
                }
            }
        }
        assert_eq!(names.concat().len(), RESTRICT.len());
    }
}
