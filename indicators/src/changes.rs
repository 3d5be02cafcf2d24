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

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::Arc;

use arrow::array::{Array, AsArray, Int64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use datafusion::datasource::MemTable;
use datafusion::prelude::SessionContext;
use warehouse::{Lake, RunKeys, RunManifest};

use crate::catalogue::Indicator;
use crate::compute::Result;

/// Tables whose rows belong to households: a rewritten row of one of them reaches the
/// households [`reach_sql`] says.
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

/// The households the rewritten rows reach (column `h`), in one query that reads each
/// table once: a household's own rows and evaluations, a membership's household, a
/// request's household, and the households of the requests a request link, a person (by
/// their links and memberships), an orientation, a waiting-list entry or a stay (by its
/// request and by its orientation's request) hang on; a stay's own household too.
/// `chg`: the tables of rewritten keys (`chg_<table>`, column `k`); `has`: whether a
/// detail table exists (a path through a missing table reaches nothing).
fn reach_sql(chg: &BTreeMap<&str, String>, has: impl Fn(&str) -> bool) -> Option<String> {
    let k = |table: &str| chg.get(table).map(|name| format!("(SELECT k FROM {name})"));
    let any = |conditions: Vec<Option<String>>| -> Option<String> {
        let c: Vec<String> = conditions.into_iter().flatten().collect();
        (!c.is_empty()).then(|| c.join(" OR "))
    };
    let through = |table: &str, condition: Option<String>| condition.filter(|_| has(table));
    let links = through(
        "demande_personne",
        any(vec![
            k("demande_personne").map(|s| format!("id IN {s}")),
            k("personne").map(|s| format!("personne_id IN {s}")),
        ]),
    );
    let stays = through(
        "prise_en_charge",
        k("prise_en_charge").map(|s| format!("id IN {s}")),
    );
    let orientations = through(
        "orientation",
        any(vec![
            k("orientation").map(|s| format!("id IN {s}")),
            stays
                .as_ref()
                .map(|c| format!("id IN (SELECT orientation_id FROM prise_en_charge WHERE {c})")),
        ]),
    );
    let requests = through(
        "demande",
        any(vec![
            k("demande").map(|s| format!("id IN {s}")),
            links.map(|c| format!("id IN (SELECT demande_id FROM demande_personne WHERE {c})")),
            orientations.map(|c| format!("id IN (SELECT demande_id FROM orientation WHERE {c})")),
            through(
                "liste_attente",
                k("liste_attente").map(|s| {
                    format!("id IN (SELECT demande_id FROM liste_attente WHERE id IN {s})")
                }),
            ),
            stays
                .as_ref()
                .map(|c| format!("id IN (SELECT demande_id FROM prise_en_charge WHERE {c})")),
        ]),
    );
    let memberships = through(
        "menage_personne",
        any(vec![
            k("menage_personne").map(|s| format!("id IN {s}")),
            k("personne").map(|s| format!("personne_id IN {s}")),
        ]),
    );
    let own = |table: &str| {
        chg.get(table)
            .map(|name| format!("SELECT k AS h FROM {name}"))
    };
    let parts: Vec<String> = [
        requests.map(|c| format!("SELECT menage_id AS h FROM demande WHERE {c}")),
        stays.map(|c| format!("SELECT menage_id AS h FROM prise_en_charge WHERE {c}")),
        memberships.map(|c| format!("SELECT menage_id AS h FROM menage_personne WHERE {c}")),
        own("menage"),
        own("evaluation"),
    ]
    .into_iter()
    .flatten()
    .collect();
    (!parts.is_empty()).then(|| parts.join("\nUNION ALL\n"))
}

/// The restriction of each household table, in the order they are built: the rows
/// meeting any of its conditions, each naming the detail table it needs (a condition
/// through a missing table is left out; `chg_h` holds the households reached, `r_<name>`
/// a table restricted before). Each table also keeps its own rewritten rows.
const RESTRICT: &[(&str, &[(&str, &str)])] = &[
    ("menage", &[("menage", "id IN (SELECT h FROM chg_h)")]),
    (
        "demande",
        &[("demande", "menage_id IN (SELECT h FROM chg_h)")],
    ),
    (
        "evaluation",
        &[("evaluation", "menage_id IN (SELECT h FROM chg_h)")],
    ),
    (
        "menage_personne",
        &[("menage_personne", "menage_id IN (SELECT h FROM chg_h)")],
    ),
    (
        "demande_personne",
        &[("demande", "demande_id IN (SELECT id FROM r_demande)")],
    ),
    (
        "orientation",
        &[("demande", "demande_id IN (SELECT id FROM r_demande)")],
    ),
    (
        "liste_attente",
        &[("demande", "demande_id IN (SELECT id FROM r_demande)")],
    ),
    (
        "prise_en_charge",
        &[
            ("prise_en_charge", "menage_id IN (SELECT h FROM chg_h)"),
            ("demande", "demande_id IN (SELECT id FROM r_demande)"),
            (
                "orientation",
                "orientation_id IN (SELECT id FROM r_orientation)",
            ),
        ],
    ),
    (
        "personne",
        &[
            (
                "demande_personne",
                "id IN (SELECT personne_id FROM r_demande_personne)",
            ),
            (
                "menage_personne",
                "id IN (SELECT personne_id FROM r_menage_personne)",
            ),
        ],
    ),
];

/// The households of every request of the persons on the requests of the households in
/// `chg_h`.
const PERSONS_CLOSURE: &str = "SELECT menage_id AS h FROM demande
     WHERE menage_id IS NOT NULL AND id IN (
         SELECT demande_id FROM demande_personne WHERE personne_id IN (
             SELECT personne_id FROM demande_personne WHERE demande_id IN (
                 SELECT id FROM demande WHERE menage_id IN (SELECT h FROM chg_h))))";

/// The offer: read whole on both sides.
const OFFER: &[&str] = &["entite", "dispositif", "groupe_places"];

/// The detail zone before and after the runs since the last release, restricted to what
/// they changed.
pub(crate) struct Changes {
    pub before: SessionContext,
    pub after: SessionContext,
    /// Detail tables an indicator must not read to be listed from the changes.
    pub unusable: BTreeSet<String>,
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
    build(current, &before_full, &tables, keys).await.map(Some)
}

async fn build(
    after_full: &SessionContext,
    before_full: &SessionContext,
    tables: &BTreeSet<String>,
    keys: RunKeys,
) -> Result<Changes> {
    let ruled: BTreeSet<&str> = RULED.iter().copied().collect();
    let mut unusable: BTreeSet<String> = keys.whole.clone();
    for table in keys.keys.keys() {
        if OFFER.contains(&table.as_str()) || !ruled.contains(table.as_str()) {
            unusable.insert(table.clone());
        }
    }
    // The rewritten keys, as a table `chg_<name>` (column `k`) in both sessions.
    let mut chg: BTreeMap<&str, String> = BTreeMap::new();
    for (table, (_, ints, texts)) in &keys.keys {
        if !ruled.contains(table.as_str()) || !tables.contains(table) {
            continue;
        }
        let batch = if texts.is_empty() {
            let mut ints = ints.clone();
            ints.sort_unstable();
            ints.dedup();
            one_column(Arc::new(Int64Array::from(ints)), DataType::Int64)?
        } else {
            let mut texts = texts.clone();
            texts.sort_unstable();
            texts.dedup();
            one_column(Arc::new(StringArray::from(texts)), DataType::Utf8)?
        };
        let name = format!("chg_{table}");
        for ctx in [after_full, before_full] {
            replace(ctx, &name, "k", vec![batch.clone()])?;
        }
        let table = *RULED.iter().find(|t| **t == table.as_str()).expect("ruled");
        chg.insert(table, name);
    }
    // The households reached, from both sides.
    let started = std::time::Instant::now();
    let mut households: HashSet<String> = HashSet::new();
    for ctx in [before_full, after_full] {
        let Some(sql) = reach_sql(&chg, |t| tables.contains(t)) else {
            break;
        };
        add_households(ctx, &sql, &mut households).await?;
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
        let mut first: Vec<String> = households.iter().cloned().collect();
        first.sort_unstable();
        let h = one_column(Arc::new(StringArray::from(first)), DataType::Utf8)?;
        for ctx in [before_full, after_full] {
            replace(ctx, "chg_h", "h", vec![h.clone()])?;
            add_households(ctx, PERSONS_CLOSURE, &mut households).await?;
        }
        tracing::debug!(
            menages = households.len(),
            fermeture_ms = started.elapsed().as_millis() as u64,
            "ménages des personnes atteintes"
        );
    }
    let mut reached: Vec<String> = households.into_iter().collect();
    reached.sort_unstable();
    let count = reached.len();
    let h = one_column(Arc::new(StringArray::from(reached)), DataType::Utf8)?;
    // Each side restricted, table by table.
    let mut sides = Vec::new();
    for full in [before_full, after_full] {
        replace(full, "chg_h", "h", vec![h.clone()])?;
        let side = SessionContext::new_with_config_rt(full.copied_config(), full.runtime_env());
        side.register_udaf(crate::quantiles::udaf());
        let mut restricted: Vec<String> = Vec::new();
        for (table, conditions) in RESTRICT {
            if !tables.contains(*table) {
                continue;
            }
            let mut condition: Vec<String> = conditions
                .iter()
                .filter(|(needed, _)| tables.contains(*needed))
                .map(|(_, c)| (*c).to_owned())
                .collect();
            if let Some(own) = chg.get(table) {
                let key = keys.keys[*table].0.as_str();
                condition.push(format!("{key} IN (SELECT k FROM {own})"));
            }
            if condition.is_empty() {
                condition.push("FALSE".to_owned());
            }
            let condition = condition.join(" OR ");
            let started = std::time::Instant::now();
            let frame = full
                .sql(&format!("SELECT * FROM {table} WHERE {condition}"))
                .await?;
            let schema = Arc::new(frame.schema().as_arrow().clone());
            let batches = frame.collect().await?;
            tracing::debug!(
                table,
                lignes = batches.iter().map(|b| b.num_rows()).sum::<usize>(),
                restriction_ms = started.elapsed().as_millis() as u64,
                "table restreinte aux changements"
            );
            let (schema, batches) = crate::compute::compact_views(schema, batches)?;
            let provider = Arc::new(MemTable::try_new(schema, vec![batches])?);
            let name = format!("r_{table}");
            full.deregister_table(&name)?;
            full.register_table(&name, provider.clone())?;
            side.register_table(*table, provider)?;
            restricted.push((*table).to_owned());
        }
        // Everything else as the full session has it: the offer, and the prepared
        // tables (periods, calendar, territories) of the current session on both sides.
        for table in tables {
            if !restricted.contains(table) {
                side.register_table(table.as_str(), full.table_provider(table.as_str()).await?)?;
            }
        }
        for name in crate::compute::PREPARED_TABLES {
            if after_full.table_exist(name)? && !side.table_exist(name)? {
                side.register_table(name, after_full.table_provider(name).await?)?;
            }
        }
        for name in restricted.iter().map(|t| format!("r_{t}")).chain(
            chg.values()
                .cloned()
                .chain(std::iter::once("chg_h".to_owned())),
        ) {
            full.deregister_table(name.as_str())?;
        }
        sides.push(side);
    }
    let after = sides.pop().expect("two sides");
    let before = sides.pop().expect("two sides");
    Ok(Changes {
        before,
        after,
        unusable,
        tables: tables.clone(),
        households: count,
    })
}

/// Adds the households (first column, as text) that `sql` finds in `ctx`.
async fn add_households(
    ctx: &SessionContext,
    sql: &str,
    households: &mut HashSet<String>,
) -> Result<()> {
    for batch in ctx.sql(sql).await?.collect().await? {
        let h = arrow::compute::cast(batch.column(0), &DataType::Utf8)?;
        households.extend(h.as_string::<i32>().iter().flatten().map(str::to_owned));
    }
    Ok(())
}

fn one_column(array: Arc<dyn Array>, ty: DataType) -> Result<RecordBatch> {
    Ok(RecordBatch::try_new(
        Arc::new(Schema::new(vec![Field::new("k", ty, true)])),
        vec![array],
    )?)
}

/// Registers `batches` (one column, renamed `column`) as table `name`, replacing it.
fn replace(
    ctx: &SessionContext,
    name: &str,
    column: &str,
    batches: Vec<RecordBatch>,
) -> Result<()> {
    let renamed: Vec<RecordBatch> = batches
        .iter()
        .map(|b| {
            let field = Field::new(column, b.schema().field(0).data_type().clone(), true);
            RecordBatch::try_new(
                Arc::new(Schema::new(vec![field])),
                vec![b.column(0).clone()],
            )
        })
        .collect::<std::result::Result<_, _>>()?;
    let schema = renamed[0].schema();
    ctx.deregister_table(name)?;
    ctx.register_table(name, Arc::new(MemTable::try_new(schema, vec![renamed])?))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_households_are_reached_through_the_tables_present_only() {
        let chg: BTreeMap<&str, String> = [
            ("personne", "chg_personne".to_owned()),
            ("prise_en_charge", "chg_prise_en_charge".to_owned()),
        ]
        .into_iter()
        .collect();
        let all = reach_sql(&chg, |_| true).unwrap();
        // A person: the requests they are on, their memberships; a stay: its household,
        // its request's and its orientation's request's.
        for part in [
            "personne_id IN (SELECT k FROM chg_personne)",
            "SELECT menage_id AS h FROM menage_personne",
            "SELECT menage_id AS h FROM prise_en_charge WHERE id IN",
            "SELECT orientation_id FROM prise_en_charge",
            "SELECT demande_id FROM prise_en_charge",
        ] {
            assert!(all.contains(part), "{part} : {all}");
        }
        assert_eq!(all.matches("FROM demande WHERE").count(), 1, "{all}");
        let without = reach_sql(&chg, |t| t != "menage_personne" && t != "orientation").unwrap();
        assert!(!without.contains("menage_personne"), "{without}");
        assert!(!without.contains("orientation"), "{without}");
        assert!(without.contains("SELECT demande_id FROM prise_en_charge"));
        assert_eq!(reach_sql(&BTreeMap::new(), |_| true), None);
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
}
