//! The engine: prepares periods and territories, runs each catalogue entry's SQL,
//! fills in the published grid (every published territory × period, zero counts
//! included), applies disclosure control, and publishes a release.
//!
//! Conventions of INDICATORS.md implemented here, once for every indicator:
//! - published periods are those intersecting [D0, D1], D0 and D1 being the smallest
//!   and largest of date(date_demande), date_entree, date_sortie, date_orientation;
//!   observed days are clipped to [D0, D1];
//! - published territories are the COG départements appearing in a request's
//!   siao_departement or a dispositif's departement, their régions and FR;
//! - a count with no record is 0; a ratio with a zero denominator and a median over no
//!   record are null and not secret;
//! - disclosure control: the sdc rule of each indicator, then secondary suppression;
//! - medians are lower medians (position ⌈n/2⌉ of each cell's sorted values), found by
//!   selection rather than a sort ([`crate::quantiles`]).

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, Date32Array, Int64Array, RecordBatch, StringArray,
};
use arrow::compute::{cast, concat_batches, filter_record_batch};
use arrow::datatypes::{DataType, Date32Type, Field, Schema};
use chrono::{Datelike, NaiveDate};
use datafusion::datasource::MemTable;
use datafusion::prelude::SessionContext;
use futures::StreamExt;
use warehouse::{Lake, stats_schema};

use crate::catalogue::{
    CATALOGUE, CATALOGUE_VERSION, Disclosure, Grain, Indicator, Measure, resolved_sql,
};
use crate::closing::{self, Month};

#[derive(Debug, thiserror::Error)]
pub enum ComputeError {
    #[error(transparent)]
    Warehouse(#[from] warehouse::WarehouseError),
    #[error("calcul de l'indicateur {indicator} impossible : {source}")]
    Indicator {
        indicator: &'static str,
        source: Box<datafusion::error::DataFusionError>,
    },
    #[error("requête de préparation impossible : {0}")]
    DataFusion(Box<datafusion::error::DataFusionError>),
    #[error("mise en forme des résultats impossible : {0}")]
    Arrow(#[from] arrow::error::ArrowError),
    #[error("le seuil de secret statistique doit être au moins 1 (reçu {0})")]
    BadThreshold(i64),
    #[error("le k de la zone analyste doit être au moins 1 (reçu {0})")]
    BadK(usize),
    #[error("mois invalide : « {0} » (attendu AAAA-MM, par exemple 2025-03)")]
    BadMonth(String),
    #[error(
        "le mois {0} n'est pas clôturé : seule une période clôturée se révise (observatoire period close {0})"
    )]
    NotClosed(String),
    #[error(
        "identifiant trop grand dans la table {table} pour le calcul ({id}, limite {limit}) : l'ordre des enregistrements ne serait plus exact",
        limit = ORDER_ID_LIMIT
    )]
    IdTooLarge { table: &'static str, id: i64 },
    #[error(
        "date hors de la plage du calcul dans la table {table} ({date}, au plus 2149-06-05) : l'ordre des enregistrements ne serait plus exact"
    )]
    DateTooLate {
        table: &'static str,
        date: NaiveDate,
    },
    #[error(
        "l'indicateur {indicator} a plus de 16 777 216 combinaisons de modalités : calcul impossible"
    )]
    TooManyModalities { indicator: &'static str },
    #[error("une révision doit donner son motif (--reason « … »)")]
    RevisionWithoutReason,
    #[error("aucune période publiée ne contient le mois {0} : rien à réviser")]
    NothingToRevise(String),
    #[error("calcul interrompu : {0}")]
    Interrupted(String),
}

impl From<datafusion::error::DataFusionError> for ComputeError {
    fn from(e: datafusion::error::DataFusionError) -> Self {
        ComputeError::DataFusion(Box::new(e))
    }
}

pub type Result<T, E = ComputeError> = std::result::Result<T, E>;

/// Why a compute is a full one when the last release left no state to go on from.
const NO_STATE: &str = "pas d'état de calcul de la publication précédente";

/// One published period.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Period {
    pub pas: &'static str,
    pub label: String,
    pub debut: NaiveDate,
    pub fin: NaiveDate,
}

fn first_of_month(y: i32, m: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(y, m, 1).expect("valid month")
}

fn next_month(d: NaiveDate) -> NaiveDate {
    if d.month() == 12 {
        first_of_month(d.year() + 1, 1)
    } else {
        first_of_month(d.year(), d.month() + 1)
    }
}

/// The number of JOUR periods published: the 90 days ending at D1.
pub const JOUR_DAYS: i64 = 90;

fn add_months(d: NaiveDate, n: u32) -> NaiveDate {
    d.checked_add_months(chrono::Months::new(n))
        .expect("date within range")
}

/// Every period of every pas intersecting [d0, d1] (JOUR: only the 90 days ending at
/// d1), in the order JOUR, SEMAINE, MOIS, TRIMESTRE, ANNEE, HIVER.
pub fn periods(d0: NaiveDate, d1: NaiveDate) -> Vec<Period> {
    let mut out = Vec::new();
    let one = chrono::Duration::days(1);
    // JOUR: the 90 days ending at d1, within [d0, d1].
    let mut day = (d1 - chrono::Duration::days(JOUR_DAYS - 1)).max(d0);
    while day <= d1 {
        out.push(Period {
            pas: "JOUR",
            label: day.format("%Y-%m-%d").to_string(),
            debut: day,
            fin: day + one,
        });
        day += one;
    }
    // SEMAINE: ISO weeks, Monday to Monday, labelled by ISO week-year.
    let mut monday = d0 - chrono::Duration::days(d0.weekday().num_days_from_monday() as i64);
    while monday <= d1 {
        let week = monday.iso_week();
        out.push(Period {
            pas: "SEMAINE",
            label: format!("{:04}-W{:02}", week.year(), week.week()),
            debut: monday,
            fin: monday + chrono::Duration::days(7),
        });
        monday += chrono::Duration::days(7);
    }
    // MOIS.
    let mut m = first_of_month(d0.year(), d0.month());
    while m <= d1 {
        let fin = next_month(m);
        out.push(Period {
            pas: "MOIS",
            label: format!("{:04}-{:02}", m.year(), m.month()),
            debut: m,
            fin,
        });
        m = fin;
    }
    // TRIMESTRE.
    let mut q = first_of_month(d0.year(), 3 * ((d0.month() - 1) / 3) + 1);
    while q <= d1 {
        let fin = add_months(q, 3);
        out.push(Period {
            pas: "TRIMESTRE",
            label: format!("{:04}-T{}", q.year(), (q.month() - 1) / 3 + 1),
            debut: q,
            fin,
        });
        q = fin;
    }
    // ANNEE.
    for y in d0.year()..=d1.year() {
        out.push(Period {
            pas: "ANNEE",
            label: format!("{y:04}"),
            debut: first_of_month(y, 1),
            fin: first_of_month(y + 1, 1),
        });
    }
    // HIVER: [Y-11-01, Y+1-04-01).
    for y in d0.year() - 1..=d1.year() {
        let (debut, fin) = (first_of_month(y, 11), first_of_month(y + 1, 4));
        if debut <= d1 && fin > d0 {
            out.push(Period {
                pas: "HIVER",
                label: format!("{y:04}-{:04}", y + 1),
                debut,
                fin,
            });
        }
    }
    out
}

/// What a compute published.
#[derive(Debug, Clone)]
pub struct Release {
    pub version: i64,
    pub run: u64,
    pub rows: usize,
    pub secret_rows: usize,
    pub d0: Option<NaiveDate>,
    pub d1: Option<NaiveDate>,
    /// What the anonymisation did to each table of the analyst zone, when this release
    /// rebuilt it (empty when it kept it).
    pub analyst: Vec<crate::analyst::AnonymisedTable>,
    /// The release whose pseudonyms the analyst zone holds after this one: this release
    /// when it rebuilt the zone, else the one that built it.
    pub analyst_release: i64,
    /// Why this release rebuilt the analyst zone ([`crate::analyst::rebuild_reason`]);
    /// `None`: kept.
    pub analyst_reason: Option<String>,
    /// Time spent deciding whether to rebuild the analyst zone, and rebuilding it.
    pub analyst_time: std::time::Duration,
    /// The cells of the grid (every published key of every indicator).
    pub cells: usize,
    /// (indicator × period) pairs recomputed, out of all.
    pub recomputed: (usize, usize),
    /// Indicators whose changed periods were found from what the ingest runs since the
    /// last release rewrote, without listing all their records.
    pub from_changes: usize,
    /// Of the pairs recomputed, those whose cells followed by difference (the last
    /// release's, moved by the changed households' aggregates), without listing records.
    pub by_difference: usize,
    /// Why everything was recomputed, if it was.
    pub full_reason: Option<String>,
}

/// Options of a compute.
#[derive(Debug, Clone)]
pub struct ComputeOptions {
    /// Statistical-secrecy threshold t (11 by default; 1 turns disclosure control off).
    pub secrecy_threshold: i64,
    /// The analyst zone's k-anonymity.
    pub analyst: crate::analyst::AnalystOptions,
    /// Months are closed automatically this many days after their end (`None`: only by
    /// `period close`).
    pub auto_close_days: Option<u32>,
    /// Indicators the préfet–SIAO conventions add, each for its own département.
    pub conventions: Vec<Indicator>,
    /// Recompute every open period, whatever changed.
    pub full: bool,
}

impl Default for ComputeOptions {
    fn default() -> Self {
        Self {
            secrecy_threshold: 11,
            analyst: crate::analyst::AnalystOptions::default(),
            auto_close_days: None,
            conventions: Vec::new(),
            full: false,
        }
    }
}

/// Batches with their `Utf8View` columns cast to `Utf8` (own, compact buffers).
pub(crate) fn compact_views(
    schema: arrow::datatypes::SchemaRef,
    batches: Vec<RecordBatch>,
) -> Result<(arrow::datatypes::SchemaRef, Vec<RecordBatch>)> {
    if !schema
        .fields()
        .iter()
        .any(|f| f.data_type() == &DataType::Utf8View)
    {
        return Ok((schema, batches));
    }
    let compact = Arc::new(Schema::new(
        schema
            .fields()
            .iter()
            .map(|f| {
                let t = if f.data_type() == &DataType::Utf8View {
                    DataType::Utf8
                } else {
                    f.data_type().clone()
                };
                Field::new(f.name(), t, f.is_nullable())
            })
            .collect::<Vec<_>>(),
    ));
    let batches = batches
        .iter()
        .map(|b| {
            let columns = b
                .columns()
                .iter()
                .zip(compact.fields())
                .map(|(c, f)| cast(c, f.data_type()))
                .collect::<Result<Vec<_>, _>>()?;
            RecordBatch::try_new(compact.clone(), columns)
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok((compact, batches))
}

/// The raw grid of a compute: the cells recomputed, before secondary suppression.
pub(crate) struct Grid {
    /// [`grid_schema`], `secret` holding primary suppression only, values not blanked.
    pub rows: RecordBatch,
    /// The (indicator id, pas, periode) recomputed.
    pub recomputed: HashSet<(String, String, String)>,
    /// Every indicator's records' fingerprints.
    pub prints: HashMap<String, crate::incremental::Prints>,
    /// Indicator × period pairs recomputed, out of all.
    pub pairs: (usize, usize),
    /// Indicators whose changed periods were found from the changes since the last
    /// release ([`crate::changes`]) rather than from all their records.
    pub from_changes: usize,
    /// Indicator × period pairs whose cells followed by difference.
    pub by_difference: usize,
}

/// What computing one indicator gives [`compute_grid`].
#[derive(Default)]
struct Outcome {
    prints: crate::incremental::Prints,
    /// Its cells recomputed ([`grid_schema`]).
    batches: Vec<RecordBatch>,
    /// Its (indicator id, pas, periode) recomputed.
    recomputed: Vec<(String, String, String)>,
    pairs: (usize, usize),
    from_changes: bool,
    by_difference: usize,
}

/// A session over the same tables as `ctx`, with the same configuration, where a table
/// registered or deregistered stays its own: indicators computed side by side each
/// register their records there under the same names.
async fn scoped(ctx: &SessionContext) -> Result<SessionContext> {
    use datafusion::catalog::{
        CatalogProvider, CatalogProviderList, MemoryCatalogProvider, MemoryCatalogProviderList,
        MemorySchemaProvider, SchemaProvider,
    };
    let state = ctx.state();
    let (catalog_name, schema_name) = {
        let names = &state.config().options().catalog;
        (names.default_catalog.clone(), names.default_schema.clone())
    };
    let tables = MemorySchemaProvider::new();
    if let Some(base) = state
        .catalog_list()
        .catalog(&catalog_name)
        .and_then(|c| c.schema(&schema_name))
    {
        for name in base.table_names() {
            if let Some(table) = base.table(&name).await? {
                tables.register_table(name, table)?;
            }
        }
    }
    let catalog = MemoryCatalogProvider::new();
    catalog.register_schema(&schema_name, Arc::new(tables))?;
    let catalogs = MemoryCatalogProviderList::new();
    catalogs.register_catalog(catalog_name, Arc::new(catalog));
    let state = datafusion::execution::SessionStateBuilder::new_from_existing(state)
        .with_catalog_list(Arc::new(catalogs))
        .build();
    Ok(SessionContext::new_with_state(state))
}

/// What the last release left that spares a compute some listing.
struct Known<'a> {
    /// Its fingerprints, when it read the same ingest run (same table versions, hence
    /// the same records): an indicator they cover whose periods need nothing is not even
    /// listed.
    unchanged: Option<&'a HashMap<String, crate::incremental::Prints>>,
    /// What the ingest runs since its run changed, with its fingerprints: an indicator
    /// they cover is listed over the changed households, then in the periods to recompute.
    changes: Option<(
        &'a crate::changes::Changes,
        &'a HashMap<String, crate::incremental::Prints>,
    )>,
    /// Its state (grid, observed days of its periods): with `changes`, the cells of an
    /// additive indicator follow by difference ([`cells_by_difference`]).
    last: Option<&'a crate::incremental::State>,
}

/// Computes the indicators' cells over the prepared session: for each indicator, its
/// records once (fingerprinted), then the grid of the periods `select` picks from them.
///
/// `known`: what the last release left ([`Known`]).
async fn compute_grid(
    ctx: &SessionContext,
    prepared: &Prepared,
    options: &ComputeOptions,
    version: i64,
    known: Known<'_>,
    select: impl Fn(&Indicator, &crate::incremental::Prints) -> Vec<bool>,
    mut progress: impl FnMut(&Indicator),
) -> Result<Grid> {
    let mut batches = Vec::new();
    let mut recomputed = HashSet::new();
    let mut prints = HashMap::new();
    let mut pairs = (0, 0);
    let mut from_changes_count = 0;
    let mut by_difference_count = 0;
    let current_periods: HashSet<String> = prepared
        .periods
        .iter()
        .map(|p| crate::incremental::period_key(p.pas, &p.label))
        .collect();
    let observed = prepared.observed();
    // The last grid's rows of each indicator, for the cells that follow by difference.
    let last_rows: HashMap<&str, Vec<u32>> = match (known.changes, known.last) {
        (Some(_), Some(last)) => {
            let grille = &last.grille;
            let column = text_column(grille, "indicateur")?;
            let mut rows: HashMap<&str, Vec<u32>> =
                CATALOGUE.iter().map(|c| (c.id, Vec::new())).collect();
            // An indicator's cells come in long runs (millions of cells nationally): one
            // lookup per run.
            let n = grille.num_rows();
            let mut start = 0;
            while start < n {
                let id = column.value(start);
                let mut end = start + 1;
                while end < n && column.value(end) == id {
                    end += 1;
                }
                if let Some(of) = rows.get_mut(id) {
                    of.extend(start as u32..end as u32);
                }
                start = end;
            }
            rows
        }
        _ => HashMap::new(),
    };
    let indicators: Vec<&Indicator> = CATALOGUE.iter().chain(&options.conventions).collect();
    // One indicator, in a session of its own over the same tables (its records and
    // selections are registered there under the same names as any other's).
    let one = async |indicator: &Indicator| -> Result<Outcome> {
        let ctx = &scoped(ctx).await?;
        let mut out = Outcome::default();
        if let Some(same) = known.unchanged.and_then(|u| u.get(indicator.id)) {
            let selected = select(indicator, same);
            if !selected.iter().any(|s| *s) {
                out.pairs.1 += selected.len();
                out.prints = same.clone();
                return Ok(out);
            }
        }
        let failed = |source: datafusion::error::DataFusionError| ComputeError::Indicator {
            indicator: indicator.code,
            source: Box::new(source),
        };
        let sql = resolved_sql(indicator);
        let from_changes = match known.changes {
            Some((changed, old)) if changed.covers(indicator, &sql) => {
                match old.get(indicator.id) {
                    Some(old) => Some((
                        crate::changes::list_sides(changed, indicator, changed.identical_for(&sql))
                            .await?,
                        old,
                    )),
                    None => None,
                }
            }
            _ => None,
        };
        // The records, their fingerprints and the periods to recompute; `restricted`:
        // the records were listed in the selected periods only.
        let mut restricted = false;
        // `listed`: the selected periods whose cells are computed from listed records
        // (the others followed by difference).
        let (schema, records, indicator_prints, selected, listed) = match from_changes {
            Some((sides, old)) => {
                let crate::changes::Sides {
                    schema: side_schema,
                    before,
                    after,
                    prints: [before_prints, after_prints],
                    took,
                } = sides;
                let mut indicator_prints =
                    crate::incremental::apply_difference(old, &before_prints, &after_prints);
                if indicator.grain == Grain::Periode {
                    // A period that left (a day out of the JOUR window) has no records
                    // any more, as a listing of all of them would find.
                    indicator_prints.retain(|k, _| current_periods.contains(k));
                }
                let selected = select(indicator, &indicator_prints);
                tracing::debug!(
                    indicateur = indicator.code,
                    avant = before.iter().map(|b| b.num_rows()).sum::<usize>(),
                    apres = after.iter().map(|b| b.num_rows()).sum::<usize>(),
                    changements_ms = took.as_millis() as u64,
                    "enregistrements des changements"
                );
                out.from_changes = true;
                let mut listed = selected.clone();
                let additive = by_difference(indicator, &sql, &side_schema);
                if let (Some(exists), Some(last), Some(rows)) =
                    (additive, known.last, last_rows.get(indicator.id))
                {
                    let (grille, bounds) = (&last.grille, &last.periods);
                    // Periods whose cells follow: observed over the same days as in the
                    // last release (with its cells), or, for records dated by the columns
                    // that bound the observed days, over more days from the same first
                    // one, or new. `old_end`: where its observed days ended then.
                    let extends = indicator.grain == Grain::Jour && dated_by_bounds(&sql);
                    let mut eligible = vec![false; selected.len()];
                    let mut old_end: Vec<Option<i32>> = vec![None; selected.len()];
                    for (i, o) in observed.iter().enumerate().filter(|(i, _)| selected[*i]) {
                        match bounds.get(&(o.pas.to_owned(), o.label.to_owned())) {
                            Some(&(d0, f0))
                                if d0 == o.debut_obs
                                    && (f0 == o.fin_obs || (extends && f0 < o.fin_obs)) =>
                            {
                                eligible[i] = true;
                                old_end[i] = Some(f0);
                            }
                            None => eligible[i] = extends,
                            _ => {}
                        }
                    }
                    let with_cells: HashMap<(&str, &str), usize> = observed
                        .iter()
                        .enumerate()
                        .filter(|(i, _)| eligible[*i] && old_end[*i].is_some())
                        .map(|(i, o)| ((o.pas, o.label), i))
                        .collect();
                    let (pas, periode) =
                        (text_column(grille, "pas")?, text_column(grille, "periode")?);
                    let mut found = vec![false; selected.len()];
                    let mut kept = Vec::new();
                    for &r in rows {
                        let at =
                            with_cells.get(&(pas.value(r as usize), periode.value(r as usize)));
                        if let Some(&i) = at {
                            found[i] = true;
                            kept.push(r);
                        }
                    }
                    let stable: Vec<bool> = (0..selected.len())
                        .map(|i| eligible[i] && (old_end[i].is_none() || found[i]))
                        .collect();
                    if stable.iter().any(|s| *s) {
                        let started = std::time::Instant::now();
                        let cells = take_rows(grille, kept)?;
                        let rows = cells_by_difference(
                            ctx,
                            prepared,
                            indicator,
                            exists,
                            (side_schema, before, after),
                            (&cells, &old_end, &stable),
                            (options.secrecy_threshold, version),
                        )
                        .await?;
                        tracing::debug!(
                            indicateur = indicator.code,
                            periodes = stable.iter().filter(|s| **s).count(),
                            cellules = rows.iter().map(|b| b.num_rows()).sum::<usize>(),
                            difference_ms = started.elapsed().as_millis() as u64,
                            "cellules suivies par différence"
                        );
                        out.batches.extend(rows);
                        out.by_difference += stable.iter().filter(|s| **s).count();
                        for (i, p) in prepared.periods.iter().enumerate() {
                            if stable[i] {
                                out.recomputed.push((
                                    indicator.id.to_owned(),
                                    p.pas.to_owned(),
                                    p.label.clone(),
                                ));
                                listed[i] = false;
                            }
                        }
                    }
                }
                if !listed.iter().any(|s| *s) {
                    (None, Vec::new(), indicator_prints, selected, listed)
                } else {
                    let started = std::time::Instant::now();
                    let all = listed.iter().all(|s| *s);
                    let (keys, within) = within_selection(indicator, prepared, &listed);
                    let (schema, records) =
                        list_sql(ctx, indicator, if all { &sql } else { &within }).await?;
                    let took = started.elapsed();
                    let exact = crate::incremental::fingerprints(indicator.grain, &records)?;
                    if all {
                        indicator_prints = exact;
                    } else {
                        crate::incremental::replace_listed(
                            &mut indicator_prints,
                            |k| keys.contains(k),
                            exact,
                        );
                        restricted = true;
                    }
                    log_listed(indicator, &records, took, started.elapsed());
                    (Some(schema), records, indicator_prints, selected, listed)
                }
            }
            None => {
                let started = std::time::Instant::now();
                let (schema, records) = list_records(ctx, indicator).await?;
                let took = started.elapsed();
                let indicator_prints = crate::incremental::fingerprints(indicator.grain, &records)?;
                log_listed(indicator, &records, took, started.elapsed());
                let selected = select(indicator, &indicator_prints);
                let listed = selected.clone();
                (Some(schema), records, indicator_prints, selected, listed)
            }
        };
        out.prints = indicator_prints;
        out.pairs.1 += selected.len();
        out.pairs.0 += selected.iter().filter(|s| **s).count();
        let Some(schema) = schema.filter(|_| listed.iter().any(|s| *s)) else {
            return Ok(out);
        };
        // The periods computed from records, then the records placed in them.
        register_selection(ctx, prepared, &listed)?;
        // Only the records the engine numbers, sorts and counts itself are filtered
        // first: for a sum or a ratio, the grid SQL's own filter costs less than copying
        // the records kept (measured: O03, 32 M records, 0.9 s to filter, 0.2 s saved).
        let records = if restricted || listed.iter().all(|s| *s) || !counts_entities(indicator) {
            records
        } else {
            let count: usize = records.iter().map(|b| b.num_rows()).sum();
            let started = std::time::Instant::now();
            let kept = in_selected_periods(indicator.grain, records, prepared, &listed)?;
            tracing::debug!(
                indicateur = indicator.code,
                enregistrements = count,
                retenus = kept.iter().map(|b| b.num_rows()).sum::<usize>(),
                filtre_ms = started.elapsed().as_millis() as u64,
                "enregistrements des périodes recalculées"
            );
            kept
        };
        register_records(
            ctx,
            indicator,
            schema,
            records,
            "sel_calendrier",
            "sel_periodes",
        )
        .await?;
        let sql = grid_sql_over(
            indicator,
            options.secrecy_threshold,
            version,
            &Sources::selected(indicator),
        );
        let started = std::time::Instant::now();
        let frame = ctx.sql(&sql).await.map_err(failed)?;
        for batch in frame.collect().await.map_err(failed)? {
            out.batches.push(conform_grid(&batch)?);
        }
        tracing::debug!(
            indicateur = indicator.code,
            periodes = listed.iter().filter(|s| **s).count(),
            hors_jours = prepared
                .periods
                .iter()
                .zip(&listed)
                .filter(|(p, s)| **s && p.pas != "JOUR")
                .map(|(p, _)| p.label.as_str())
                .collect::<Vec<_>>()
                .join(" "),
            agregation_ms = started.elapsed().as_millis() as u64,
            "périodes recalculées"
        );
        for (p, _) in prepared.periods.iter().zip(&listed).filter(|(_, s)| **s) {
            out.recomputed
                .push((indicator.id.to_owned(), p.pas.to_owned(), p.label.clone()));
        }
        Ok(out)
    };
    // Listed from the changes, an indicator's records are few: two indicators at a time
    // keep both cores busy through each one's stretches on one. Listed whole, one at a
    // time (nationally, O03 and O04 have tens of millions of records each).
    let at_once = if known.changes.is_some() { 2 } else { 1 };
    let mut outcomes = futures::stream::iter(&indicators)
        .map(|&indicator| async move { (indicator, one(indicator).await) })
        .buffered(at_once);
    while let Some((indicator, out)) = outcomes.next().await {
        let out = out?;
        prints.insert(indicator.id.to_owned(), out.prints);
        batches.extend(out.batches);
        recomputed.extend(out.recomputed);
        pairs.0 += out.pairs.0;
        pairs.1 += out.pairs.1;
        from_changes_count += usize::from(out.from_changes);
        by_difference_count += out.by_difference;
        progress(indicator);
    }
    let rows = concat_batches(&grid_schema(), &batches)?;
    Ok(Grid {
        rows,
        recomputed,
        prints,
        pairs,
        from_changes: from_changes_count,
        by_difference: by_difference_count,
    })
}

/// Registers the periods `selected` as `sel_periodes` and their days as `sel_calendrier`.
fn register_selection(ctx: &SessionContext, prepared: &Prepared, selected: &[bool]) -> Result<()> {
    let keep = BooleanArray::from(selected.to_vec());
    register_batch(
        ctx,
        "sel_periodes",
        filter_record_batch(&prepared.periodes, &keep)?,
    )?;
    let keep_days = BooleanArray::from(
        prepared
            .calendrier_period
            .iter()
            .map(|&p| selected[p])
            .collect::<Vec<_>>(),
    );
    register_batch(
        ctx,
        "sel_calendrier",
        filter_record_batch(&prepared.calendrier, &keep_days)?,
    )?;
    Ok(())
}

/// Whether an indicator's cells follow by difference ([`cells_by_difference`]), and
/// then the condition on a modality's sums `a`, `b` (and `c`) under which its row exists
/// (as it does when some record, or entity, falls in it).
///
/// They do when every term is a sum of integers over records or entities, and a row's
/// existence shows in its sums: a count of records (`1 AS w`), a ratio over records each
/// counted once in the denominator (`1 AS den`), a distinct count (a modality's row
/// counts at least its first entity), entities counted only when all their records are
/// ([`Measure::DistinctAll`]: a row can count none, but `b`, kept in the grid as
/// [`EFFECTIF`], counts every entity whose first is there), a distinct ratio (totals
/// only), any integer sum or ratio of an indicator without dimensions (its rows are
/// totals), and an integer sum or ratio averaged per observed day (its records counted
/// in `c`, [`counts_records`]; only periods observed over the same days as then follow).
/// Not: quantiles, a numerator-only split, a convention's SQL.
fn by_difference(
    indicator: &Indicator,
    sql: &str,
    schema: &arrow::datatypes::Schema,
) -> Option<&'static str> {
    if indicator.numerator_only_dimensions || indicator.territoire.is_some() {
        return None;
    }
    let integer = |c: &str| {
        schema
            .field_with_name(c)
            .is_ok_and(|f| f.data_type().is_integer())
    };
    if indicator.per_observed_day {
        // Its sums over the period's observed days (divided by their number only when
        // published), a row existing while it has records (`c`, [`counts_records`]).
        return match indicator.measure {
            Measure::Sum if integer("w") => Some("c >= 1"),
            Measure::Ratio if integer("num") && integer("den") => Some("c >= 1"),
            _ => None,
        };
    }
    // Without dimensions every row is a cell's total, which the grid always has: any
    // integer sum follows, whether or not it may add to 0.
    let totals_only = indicator.dimensions.is_empty();
    match indicator.measure {
        Measure::Sum if integer("w") && totals_only => Some("FALSE"),
        Measure::Sum if integer("w") && selects_one(sql, "w") => Some("a >= 1"),
        Measure::Ratio if integer("num") && integer("den") && totals_only => Some("FALSE"),
        Measure::Ratio if integer("num") && integer("den") && selects_one(sql, "den") => {
            Some("b >= 1")
        }
        Measure::Distinct => Some("a >= 1"),
        Measure::DistinctAll => Some("b >= 1"),
        Measure::DistinctRatio => Some("TRUE"),
        _ => None,
    }
}

/// Whether every record of `sql` has `column` = 1: one SELECT (no UNION) names the
/// column once, as the literal `1 AS <column>`.
fn selects_one(sql: &str, column: &str) -> bool {
    let flat = sql.split_whitespace().collect::<Vec<_>>().join(" ");
    if flat.to_ascii_uppercase().contains("UNION") {
        return false;
    }
    let word = |c: char| c.is_ascii_alphanumeric() || c == '_';
    let named = format!("AS {column}");
    let names = flat
        .match_indices(&named)
        .filter(|(i, _)| !flat[i + named.len()..].chars().next().is_some_and(word))
        .count();
    if names != 1 {
        return false;
    }
    let needle = format!("1 AS {column}");
    flat.match_indices(&needle).any(|(i, _)| {
        let before = flat[..i].trim_end();
        let after = flat[i + needle.len()..].chars().next();
        (before.ends_with(',') || before.to_ascii_uppercase().ends_with("SELECT"))
            && !after.is_some_and(word)
    })
}

/// Whether the records of `sql` are dated (`jour`) by one of the columns whose largest
/// value ends the observed days ([`observed_bounds`]), or their minimum, in every branch
/// of a UNION, and depend on no table of periods: a record made of rows that did not
/// change is then dated within the days observed when those rows were last read.
fn dated_by_bounds(sql: &str) -> bool {
    let flat = sql.split_whitespace().collect::<Vec<_>>().join(" ");
    let word = |c: char| c.is_ascii_alphanumeric() || c == '_';
    let names = |w: &str| {
        flat.match_indices(w).any(|(i, _)| {
            !flat[..i].chars().next_back().is_some_and(word)
                && !flat[i + w.len()..].chars().next().is_some_and(word)
        })
    };
    if [
        "periodes",
        "periodes_mois",
        "bornes",
        "calendrier",
        "fin_obs",
        "debut_obs",
    ]
    .iter()
    .any(|w| names(w))
    {
        return false;
    }
    // The top-level items of a SELECT list, and the rest of the branch.
    let items = |branch: &str| -> Option<Vec<String>> {
        let list = branch.strip_prefix("SELECT ")?;
        let (mut depth, mut start, mut out) = (0i32, 0usize, Vec::new());
        for (i, c) in list.char_indices() {
            match c {
                '(' => depth += 1,
                ')' => depth -= 1,
                ',' if depth == 0 => {
                    out.push(list[start..i].trim().to_owned());
                    start = i + 1;
                }
                _ => {}
            }
            if depth == 0 && list[i..].starts_with(" FROM ") {
                out.push(list[start..i].trim().to_owned());
                return Some(out);
            }
        }
        None
    };
    let bound = |item: &str| {
        let expr = item.strip_suffix(" AS jour").unwrap_or(item);
        let expr = expr
            .strip_prefix("MIN(")
            .and_then(|e| e.strip_suffix(')'))
            .unwrap_or(expr);
        let column = expr.rsplit('.').next().unwrap_or(expr);
        let plain = expr.chars().all(|c| word(c) || c == '.');
        plain
            && [
                "date_demande",
                "date_entree",
                "date_sortie",
                "date_orientation",
            ]
            .contains(&column)
    };
    let branches: Vec<&str> = flat.split(" UNION ALL ").collect();
    if flat.to_ascii_uppercase().matches("UNION").count() != branches.len() - 1 {
        return false;
    }
    let Some(first) = items(branches[0]) else {
        return false;
    };
    let Some(at) = first.iter().position(|i| i.ends_with(" AS jour")) else {
        return false;
    };
    branches.iter().all(|b| {
        b.matches('(').count() == b.matches(')').count()
            && items(b).is_some_and(|list| list.get(at).is_some_and(|i| bound(i)))
    })
}

/// The rows `rows` of `batch`.
fn take_rows(batch: &RecordBatch, rows: Vec<u32>) -> Result<RecordBatch> {
    let indices = arrow::array::UInt32Array::from(rows);
    let columns = batch
        .columns()
        .iter()
        .map(|c| arrow::compute::take(c.as_ref(), &indices, None))
        .collect::<std::result::Result<Vec<_>, _>>()?;
    Ok(RecordBatch::try_new(batch.schema(), columns)?)
}

/// The grid rows of an additive indicator ([`by_difference`]: `exists`) in the periods
/// `last.2`, from the last release's cells of those periods (`last.0`, rows of its grid;
/// `last.1`: where each period's observed days ended then, `None` for a new period)
/// moved by the aggregates of the records of the changed households: plus after (placed in
/// the periods as observed now), minus before (as observed then). `sides`: the records'
/// schema, the records before, after.
///
/// Exact: every term is an integer sum over records or over entities. A record outside
/// the restriction to the changed households is the same on both sides, and so adds
/// nothing to the difference. An entity is either whole in the restriction, or has there
/// only records that did not change ([`crate::changes`] closes the restriction over the
/// persons of the households reached): it adds the same on both sides. A period is
/// observed over the same days as then, or (records dated by the columns that bound the
/// observed days, [`dated_by_bounds`]) over more days from the same first one: a record
/// outside the restriction is made of rows that did not change, so its date was within
/// the days observed then, and it falls in the same periods then and now.
async fn cells_by_difference(
    ctx: &SessionContext,
    prepared: &Prepared,
    indicator: &Indicator,
    exists: &str,
    sides: (
        arrow::datatypes::SchemaRef,
        Vec<RecordBatch>,
        Vec<RecordBatch>,
    ),
    last: (&RecordBatch, &[Option<i32>], &[bool]),
    (t, version): (i64, i64),
) -> Result<Vec<RecordBatch>> {
    let failed = |source: datafusion::error::DataFusionError| ComputeError::Indicator {
        indicator: indicator.code,
        source: Box::new(source),
    };
    let (cells, old_end, periods) = last;
    register_selection(ctx, prepared, periods)?;
    // The selected periods' days as observed now, and then.
    let days = prepared.calendrier.column(0).as_primitive::<Date32Type>();
    let calendars = [
        ctx.table("sel_calendrier").await?.collect().await?,
        vec![filter_record_batch(
            &prepared.calendrier,
            &BooleanArray::from(
                prepared
                    .calendrier_period
                    .iter()
                    .enumerate()
                    .map(|(r, &p)| periods[p] && old_end[p].is_some_and(|f| days.value(r) < f))
                    .collect::<Vec<_>>(),
            ),
        )?],
    ];
    let (schema, before, after) = sides;
    let (value, entities) = match indicator.measure {
        Measure::Ratio | Measure::DistinctRatio => ("numerateur", "denominateur"),
        Measure::DistinctAll => ("valeur", EFFECTIF),
        _ => ("valeur", "denominateur"),
    };
    // An average per observed day: its cells hold its sums divided by the period's
    // observed days, the same then and now. Its records' number (`c`, kept as
    // `effectif`) tells whether a modality's row exists ([`counts_records`]).
    let scale = if indicator.per_observed_day {
        " * CAST(p.jours_obs AS DOUBLE)"
    } else {
        ""
    };
    let counted = counts_records(indicator);
    let c = |term: String| if counted { term } else { String::new() };
    register_batch(ctx, "cellules_avant", cells.clone())?;
    let mut terms = vec![format!(
        "SELECT g.tid, p.pid, CAST(o.dimension AS VARCHAR) AS dimension,
                CAST(o.modalite AS VARCHAR) AS modalite,
                CAST(ROUND(o.{value}{scale}) AS BIGINT) AS a,
                CAST(ROUND(o.{entities}{scale}) AS BIGINT) AS b{}
         FROM cellules_avant o
         JOIN publies g ON g.niveau = o.territoire_niveau AND g.territoire = o.territoire
         JOIN sel_periodes p ON p.pas = o.pas AND p.periode = o.periode",
        c(format!(", o.{EFFECTIF} AS c"))
    )];
    let aggregate = format!(
        "WITH {} SELECT tid, pid, CAST(dimension AS VARCHAR) AS dimension,
                        CAST(modalite AS VARCHAR) AS modalite,
                        CAST(a AS BIGINT) AS a, CAST(b AS BIGINT) AS b{} FROM agg",
        aggregate_sql(indicator, &Sources::selected(indicator)),
        c(", CAST(c AS BIGINT) AS c".to_owned())
    );
    let [now, then] = calendars;
    for (name, sign, records, calendar) in [
        ("delta_avant", "-", before, then),
        ("delta_apres", "", after, now),
    ] {
        if records.iter().all(|b| b.num_rows() == 0) {
            continue;
        }
        let calendar = concat_batches(&prepared.calendrier.schema(), &calendar)?;
        register_batch(ctx, "sel_calendrier", calendar)?;
        register_records(
            ctx,
            indicator,
            schema.clone(),
            records,
            "sel_calendrier",
            "sel_periodes",
        )
        .await?;
        let frame = ctx.sql(&aggregate).await.map_err(failed)?;
        let frame_schema = Arc::new(frame.schema().as_arrow().clone());
        let batches = frame.collect().await.map_err(failed)?;
        deregister_records(ctx)?;
        ctx.deregister_table(name)?;
        ctx.register_table(
            name,
            Arc::new(MemTable::try_new(frame_schema, vec![batches])?),
        )?;
        terms.push(format!(
            "SELECT tid, pid, dimension, modalite, {sign}a AS a, {sign}b AS b{} FROM {name}",
            c(format!(", {sign}c AS c"))
        ));
    }
    let summed = format!(
        "SELECT * FROM (SELECT tid, pid, dimension, modalite, SUM(a) AS a, SUM(b) AS b{}
                        FROM ({}) x GROUP BY tid, pid, dimension, modalite) s
         WHERE dimension = '' OR {exists}",
        c(", SUM(c) AS c".to_owned()),
        terms.join(" UNION ALL ")
    );
    let frame = ctx.sql(&summed).await.map_err(failed)?;
    let frame_schema = Arc::new(frame.schema().as_arrow().clone());
    let sums = frame.collect().await.map_err(failed)?;
    ctx.deregister_table("rec_diff")?;
    ctx.register_table(
        "rec_diff",
        Arc::new(MemTable::try_new(frame_schema, vec![sums])?),
    )?;
    let sources = Sources {
        records: String::new(),
        calendrier: "sel_calendrier",
        periodes: "sel_periodes",
        counted: false,
        aggregated: Some("rec_diff"),
    };
    let sql = grid_sql_over(indicator, t, version, &sources);
    let mut rows = Vec::new();
    for batch in ctx
        .sql(&sql)
        .await
        .map_err(failed)?
        .collect()
        .await
        .map_err(failed)?
    {
        rows.push(conform_grid(&batch)?);
    }
    for name in ["rec_diff", "cellules_avant", "delta_avant", "delta_apres"] {
        ctx.deregister_table(name)?;
    }
    Ok(rows)
}

/// Deregisters the tables [`register_records`] registers.
fn deregister_records(ctx: &SessionContext) -> Result<()> {
    for name in [
        "rec_mat",
        "rec_modalites",
        "rec_premiers",
        "rec_ratio",
        "rec_quantiles",
    ] {
        ctx.deregister_table(name)?;
    }
    Ok(())
}

/// The debug line of an indicator's listing: `listed` to list its records, `total` to
/// list and fingerprint them.
fn log_listed(
    indicator: &Indicator,
    records: &[RecordBatch],
    listed: std::time::Duration,
    total: std::time::Duration,
) {
    tracing::debug!(
        indicateur = indicator.code,
        enregistrements = records.iter().map(|b| b.num_rows()).sum::<usize>(),
        lecture_ms = listed.as_millis() as u64,
        empreintes_ms = (total - listed).as_millis() as u64,
        "enregistrements lus"
    );
}

/// The records that fall in a selected period — by their day ([`Grain::Jour`]: a day of
/// a selected period's calendar) or by their period ([`Grain::Periode`]) —, the others
/// dropped before they are numbered, sorted and counted.
///
/// The same filter as [`Sources::selected`]'s SQL, so the cells are unchanged; but done
/// before [`register_records`], it spares an incremental compute the numbering, sorting
/// and counting of the records of every period it keeps (on a lake of several years, all
/// but the last ones).
fn in_selected_periods(
    grain: Grain,
    records: Vec<RecordBatch>,
    prepared: &Prepared,
    selected: &[bool],
) -> Result<Vec<RecordBatch>> {
    let missing = |name: &str| {
        arrow::error::ArrowError::SchemaError(format!("colonne {name} absente des enregistrements"))
    };
    // JOUR grain: whether each day from `day0` is in a selected period's calendar.
    let days = prepared.calendrier.column(0).as_primitive::<Date32Type>();
    let day0 = days.values().iter().min().copied().unwrap_or(0);
    let span = days.values().iter().max().map_or(0, |d| d - day0 + 1);
    let mut in_selection = vec![false; span.max(0) as usize];
    for (i, &p) in prepared.calendrier_period.iter().enumerate() {
        if selected[p] {
            in_selection[(days.value(i) - day0) as usize] = true;
        }
    }
    // PERIODE grain: the selected periods' pas, by label (tens of millions of records
    // are looked up: one short hash each).
    let mut chosen: datafusion::common::HashMap<&str, Vec<&str>> = Default::default();
    for (p, _) in prepared.periods.iter().zip(selected).filter(|(_, s)| **s) {
        chosen.entry(p.label.as_str()).or_default().push(p.pas);
    }
    let keep_of = |batch: &RecordBatch| -> Result<RecordBatch> {
        let keep: BooleanArray = match grain {
            Grain::Jour => {
                let jour = batch
                    .column_by_name("jour")
                    .ok_or_else(|| missing("jour"))?;
                let jour = cast(jour, &DataType::Date32)?;
                let jour = jour.as_primitive::<Date32Type>();
                let keep: Vec<bool> = (0..jour.len())
                    .map(|i| {
                        let d = jour.value(i);
                        jour.is_valid(i)
                            && d >= day0
                            && in_selection.get((d - day0) as usize) == Some(&true)
                    })
                    .collect();
                BooleanArray::from(keep)
            }
            Grain::Periode => {
                let text = |name: &str| -> Result<StringArray> {
                    let c = batch.column_by_name(name).ok_or_else(|| missing(name))?;
                    Ok(cast(c, &DataType::Utf8)?.as_string::<i32>().clone())
                };
                let (pas, periode) = (text("pas")?, text("periode")?);
                // Records of one period often follow each other: the last answer is
                // reused while the label and the pas stay the same.
                let mut last: Option<(&str, &str, bool)> = None;
                let keep: Vec<bool> = (0..pas.len())
                    .map(|i| {
                        if pas.is_null(i) || periode.is_null(i) {
                            return false;
                        }
                        let (a, b) = (pas.value(i), periode.value(i));
                        match last {
                            Some((la, lb, k)) if la == a && lb == b => k,
                            _ => {
                                let k = chosen.get(b).is_some_and(|p| p.contains(&a));
                                last = Some((a, b, k));
                                k
                            }
                        }
                    })
                    .collect();
                BooleanArray::from(keep)
            }
        };
        Ok(filter_record_batch(batch, &keep)?)
    };
    let parts = on_every_core(&records, |chunk| {
        chunk.iter().map(&keep_of).collect::<Result<Vec<_>>>()
    });
    let mut kept = Vec::with_capacity(records.len());
    for part in parts {
        kept.extend(part?.into_iter().filter(|b| b.num_rows() > 0));
    }
    Ok(kept)
}

/// `work` over the batches, split in one run of batches per core (tens of millions of
/// records nationally): the runs' results, in the batches' order.
pub(crate) fn on_every_core<T: Send>(
    batches: &[RecordBatch],
    work: impl Fn(&[RecordBatch]) -> T + Sync,
) -> Vec<T> {
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(batches.len());
    if threads <= 1 {
        return vec![work(batches)];
    }
    let work = &work;
    std::thread::scope(|scope| {
        let handles: Vec<_> = batches
            .chunks(batches.len().div_ceil(threads))
            .map(|chunk| scope.spawn(move || work(chunk)))
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("a thread over the records"))
            .collect()
    })
}

/// An indicator's records, listed once by its catalogue SQL, as the compute keeps them in
/// memory: string views compacted, or every batch would be accounted with the whole
/// buffers its views share (sorts over them then exhaust the pool).
pub async fn list_records(
    ctx: &SessionContext,
    indicator: &Indicator,
) -> Result<(arrow::datatypes::SchemaRef, Vec<RecordBatch>)> {
    list_sql(ctx, indicator, &resolved_sql(indicator)).await
}

/// The schema of the records [`list_records`] gives, without listing them.
pub(crate) async fn records_schema(
    ctx: &SessionContext,
    indicator: &Indicator,
) -> Result<arrow::datatypes::SchemaRef> {
    let failed = |source: datafusion::error::DataFusionError| ComputeError::Indicator {
        indicator: indicator.code,
        source: Box::new(source),
    };
    let frame = ctx.sql(&resolved_sql(indicator)).await.map_err(failed)?;
    let schema = Arc::new(frame.schema().as_arrow().clone());
    Ok(compact_views(schema, Vec::new())?.0)
}

/// [`list_records`] by a given SQL (the indicator's, possibly restricted).
async fn list_sql(
    ctx: &SessionContext,
    indicator: &Indicator,
    sql: &str,
) -> Result<(arrow::datatypes::SchemaRef, Vec<RecordBatch>)> {
    let failed = |source: datafusion::error::DataFusionError| ComputeError::Indicator {
        indicator: indicator.code,
        source: Box::new(source),
    };
    let frame = ctx.sql(sql).await.map_err(failed)?;
    let schema = Arc::new(frame.schema().as_arrow().clone());
    let records = frame.collect().await.map_err(failed)?;
    compact_views(schema, records)
}

/// The selected periods' keys of an indicator's fingerprints (its days, or its periods),
/// and its SQL restricted to the records under them.
fn within_selection(
    indicator: &Indicator,
    prepared: &Prepared,
    selected: &[bool],
) -> (HashSet<String>, String) {
    let sql = resolved_sql(indicator);
    match indicator.grain {
        Grain::Jour => {
            let days = prepared.calendrier.column(0).as_primitive::<Date32Type>();
            let mut chosen: Vec<i32> = prepared
                .calendrier_period
                .iter()
                .enumerate()
                .filter(|(_, p)| selected[**p])
                .map(|(i, _)| days.value(i))
                .collect();
            chosen.sort_unstable();
            chosen.dedup();
            // Runs of consecutive days, one range each.
            let mut ranges: Vec<(i32, i32)> = Vec::new();
            for &d in &chosen {
                match ranges.last_mut() {
                    Some((_, end)) if *end == d => *end = d + 1,
                    _ => ranges.push((d, d + 1)),
                }
            }
            let date = |d: i32| crate::incremental::day_key(d);
            let condition = ranges
                .iter()
                .map(|(a, b)| {
                    format!(
                        "(r.jour >= DATE '{}' AND r.jour < DATE '{}')",
                        date(*a),
                        date(*b)
                    )
                })
                .collect::<Vec<_>>()
                .join(" OR ");
            let keys = chosen
                .into_iter()
                .map(crate::incremental::day_key)
                .collect();
            (
                keys,
                format!("SELECT * FROM ({sql}) AS r WHERE {condition}"),
            )
        }
        Grain::Periode => {
            let mut by_pas: std::collections::BTreeMap<&str, Vec<&str>> = Default::default();
            let mut keys = HashSet::new();
            for (p, _) in prepared.periods.iter().zip(selected).filter(|(_, s)| **s) {
                by_pas.entry(p.pas).or_default().push(p.label.as_str());
                keys.insert(crate::incremental::period_key(p.pas, &p.label));
            }
            let condition = by_pas
                .iter()
                .map(|(pas, labels)| {
                    let labels: Vec<String> = labels.iter().map(|l| format!("'{l}'")).collect();
                    format!("(r.pas = '{pas}' AND r.periode IN ({}))", labels.join(", "))
                })
                .collect::<Vec<_>>()
                .join(" OR ");
            (
                keys,
                format!("SELECT * FROM ({sql}) AS r WHERE {condition}"),
            )
        }
    }
}

/// Registers an indicator's listed records as `rec_mat`, spread over the session's
/// partitions (replacing the previous indicator's), their entities numbered
/// ([`number_entities`]); a distinct count's records also get their packed order and
/// modalities ([`pack_firsts`], table `rec_modalites`), and their firsts counted per
/// territory, period and modalities over the periods of `calendrier` and `periodes`
/// ([`crate::firsts::count_firsts`], table `rec_premiers`); a distinct ratio's
/// entities are counted per territory and period ([`crate::firsts::count_distinct_ratio`],
/// table `rec_ratio`), a quantile's values ranked per cell ([`crate::firsts::count_quantiles`],
/// table `rec_quantiles`).
pub async fn register_records(
    ctx: &SessionContext,
    indicator: &Indicator,
    schema: arrow::datatypes::SchemaRef,
    records: Vec<RecordBatch>,
    calendrier: &str,
    periodes: &str,
) -> Result<()> {
    let parts = ctx.state().config().target_partitions().max(1);
    let started = std::time::Instant::now();
    let (schema, records) = number_entities(schema, records)?;
    let numbered = started.elapsed();
    // Where the records fall, for the aggregations done record by record.
    let placement = if counts_entities(indicator) {
        Some(crate::firsts::Placement::read(ctx, calendrier, periodes).await?)
    } else {
        None
    };
    let placed = started.elapsed();
    let (schema, records) = if let (true, Some(placement)) = (packs_firsts(indicator), &placement) {
        let (schema, records, modalites) = pack_firsts(indicator, schema, records)?;
        register_batch(ctx, "rec_modalites", modalites)?;
        let all = indicator.measure == Measure::DistinctAll;
        let counts = crate::firsts::count_firsts(placement, &schema, &records, all, parts)?;
        register_batch(ctx, "rec_premiers", counts)?;
        (schema, records)
    } else if let (Measure::DistinctRatio, Some(placement)) = (indicator.measure, &placement) {
        let counts = crate::firsts::count_distinct_ratio(placement, &schema, &records, parts)?;
        register_batch(ctx, "rec_ratio", counts)?;
        (schema, records)
    } else if let (Measure::Quantile, Some(placement)) = (indicator.measure, &placement) {
        let dims: Vec<&str> = dimension_columns(indicator.dimensions).collect();
        let counts = crate::firsts::count_quantiles(placement, &schema, &records, &dims)?;
        register_batch(ctx, "rec_quantiles", counts)?;
        (schema, records)
    } else {
        (schema, records)
    };
    tracing::debug!(
        indicateur = indicator.code,
        numerotation_ms = numbered.as_millis() as u64,
        placement_ms = (placed - numbered).as_millis() as u64,
        comptage_ms = (started.elapsed() - placed).as_millis() as u64,
        "enregistrements préparés"
    );
    register_spread(ctx, "rec_mat", schema, records)
}

/// Registers batches as a table in memory, spread over the session's partitions so that
/// the plans reading it run on every core (replacing a table of that name).
pub(crate) fn register_spread(
    ctx: &SessionContext,
    name: &str,
    schema: arrow::datatypes::SchemaRef,
    batches: Vec<RecordBatch>,
) -> Result<()> {
    let parts = ctx.state().config().target_partitions().max(1);
    let mut partitions = vec![Vec::new(); parts];
    for (i, b) in batches.into_iter().enumerate() {
        partitions[i % parts].push(b);
    }
    ctx.deregister_table(name)?;
    ctx.register_table(name, Arc::new(MemTable::try_new(schema, partitions)?))?;
    Ok(())
}

/// The records with their `entite` (a pseudonym) replaced by a number, the same for the
/// same pseudonym, numbered in the order first met.
///
/// The grid only compares an indicator's entities with each other (grouped, joined on
/// `entite`), never reads them: numbers give the same counts, and the distinct counts'
/// aggregations and joins then hash and compare 8-byte integers instead of strings.
/// Records without an `entite` column, or with one that is not text, are returned as
/// they are. (Fingerprints are taken before, from the pseudonyms: they must not depend
/// on the order the records were listed in.)
fn number_entities(
    schema: arrow::datatypes::SchemaRef,
    records: Vec<RecordBatch>,
) -> Result<(arrow::datatypes::SchemaRef, Vec<RecordBatch>)> {
    let Ok(at) = schema.index_of("entite") else {
        return Ok((schema, records));
    };
    if schema.field(at).data_type() != &DataType::Utf8 {
        return Ok((schema, records));
    }
    let numbers: Vec<ArrayRef> = {
        let mut seen: datafusion::common::HashMap<&str, i64> =
            datafusion::common::HashMap::default();
        records
            .iter()
            .map(|batch| {
                let names = batch.column(at).as_string::<i32>();
                let numbered: Int64Array = names
                    .iter()
                    .map(|name| {
                        name.map(|name| {
                            let next = seen.len() as i64;
                            *seen.entry(name).or_insert(next)
                        })
                    })
                    .collect();
                Arc::new(numbered) as ArrayRef
            })
            .collect()
    };
    let mut fields: Vec<Field> = schema.fields().iter().map(|f| f.as_ref().clone()).collect();
    fields[at] = Field::new("entite", DataType::Int64, fields[at].is_nullable());
    let numbered_schema = Arc::new(Schema::new(fields));
    let batches = records
        .into_iter()
        .zip(numbers)
        .map(|(batch, numbers)| {
            let mut columns = batch.columns().to_vec();
            columns[at] = numbers;
            RecordBatch::try_new(numbered_schema.clone(), columns)
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok((numbered_schema, batches))
}

/// Whether [`register_records`] packs an indicator's records ([`pack_firsts`]).
fn packs_firsts(indicator: &Indicator) -> bool {
    matches!(indicator.measure, Measure::Distinct | Measure::DistinctAll)
}

/// Whether [`register_records`] aggregates an indicator's records itself
/// ([`crate::firsts`]: `rec_premiers`, `rec_ratio` or `rec_quantiles`).
fn counts_entities(indicator: &Indicator) -> bool {
    packs_firsts(indicator)
        || matches!(
            indicator.measure,
            Measure::DistinctRatio | Measure::Quantile
        )
}

/// The bits of a packed order ([`pack_firsts`]) that hold the modalities' number.
pub(crate) const MODALITIES_BITS: u32 = 24;

/// A distinct count's records with one more column, `ordre`: the record's rank in the
/// order (ordre_date, ordre_id) × 2²⁴ + the number of its modalities, and the table of
/// those numbers (`modalites`, then the dimension columns).
///
/// The count keeps each entity's first record in a territory and period, and reads its
/// modalities. With the records' own order key, that takes a join of every first found
/// back with the records; with this packing, `MIN(ordre)` is the first record *and*
/// names its modalities: the firsts are counted by (territory, period, modalities)
/// number, and only those counts are joined with the small modalities table.
///
/// The same rules as the catalogue's SQL: records of one entity with the same order
/// key share a rank, and their modalities are each dimension's smallest non-null value
/// among them (`MIN`); a record without an order key has no `ordre` (never first).
fn pack_firsts(
    indicator: &Indicator,
    schema: arrow::datatypes::SchemaRef,
    records: Vec<RecordBatch>,
) -> Result<(arrow::datatypes::SchemaRef, Vec<RecordBatch>, RecordBatch)> {
    use arrow::row::{RowConverter, SortField};
    let n: usize = records.iter().map(|b| b.num_rows()).sum();
    let column = |name: &str| -> Result<ArrayRef> {
        let at = schema.index_of(name)?;
        let parts: Vec<&dyn arrow::array::Array> =
            records.iter().map(|b| b.column(at).as_ref()).collect();
        if parts.is_empty() {
            return Ok(arrow::array::new_empty_array(schema.field(at).data_type()));
        }
        Ok(arrow::compute::concat(&parts)?)
    };
    let dates = cast(&column("ordre_date")?, &DataType::Date32)?;
    let dates = dates.as_primitive::<Date32Type>();
    let ids = cast(&column("ordre_id")?, &DataType::Int64)?;
    let ids = ids.as_primitive::<arrow::datatypes::Int64Type>();
    let entities = column("entite")?;
    let entities = cast(&entities, &DataType::Int64)?;
    let entities = entities.as_primitive::<arrow::datatypes::Int64Type>();
    // The records that can count (`entite IS NOT NULL`, an order key), as (order key, as
    // the catalogue's SQL packs it — checked exact by `prepare` —, entity, record)
    // triples, sorted side by side in memory: sorting record numbers through the columns
    // took 0.7-1.0 s for 4.3 M records, these 0.2-0.3 s.
    let mut sorted: Vec<(i64, i64, u32)> = (0..n)
        .filter(|&i| dates.is_valid(i) && ids.is_valid(i) && entities.is_valid(i))
        .map(|i| {
            (
                i64::from(dates.value(i)) * ORDER_ID_LIMIT + ids.value(i),
                entities.value(i),
                i as u32,
            )
        })
        .collect();
    sorted.sort_unstable();
    let order: Vec<u32> = sorted.iter().map(|t| t.2).collect();
    // Each dimension's values, comparable as bytes, and each record's value numbered
    // (0: null); a record's modalities are then one mixed-radix integer of its numbers.
    let dims: Vec<&str> = dimension_columns(indicator.dimensions).collect();
    let mut values = Vec::with_capacity(dims.len());
    for d in &dims {
        let array = column(d)?;
        let converter = RowConverter::new(vec![SortField::new(array.data_type().clone())])?;
        let rows = converter.convert_columns(std::slice::from_ref(&array))?;
        values.push((array, rows));
    }
    // One dimension per thread: each is numbered on its own.
    let number = |(array, rows): &(ArrayRef, arrow::row::Rows)| -> (u128, Vec<u32>) {
        let mut seen: datafusion::common::HashMap<&[u8], u32> =
            datafusion::common::HashMap::default();
        let numbered: Vec<u32> = (0..n)
            .map(|i| {
                if array.is_valid(i) {
                    let next = seen.len() as u32 + 1;
                    *seen.entry(rows.row(i).data()).or_insert(next)
                } else {
                    0
                }
            })
            .collect();
        (seen.len() as u128 + 1, numbered)
    };
    let (radices, codes): (Vec<u128>, Vec<Vec<u32>>) = std::thread::scope(|scope| {
        let handles: Vec<_> = values
            .iter()
            .map(|v| scope.spawn(move || number(v)))
            .collect();
        handles
            .into_iter()
            .map(|h| match h.join() {
                Ok(numbered) => numbered,
                Err(panic) => std::panic::resume_unwind(panic),
            })
            .unzip()
    });
    let signature = |picked: &[u32]| -> Option<u128> {
        picked.iter().enumerate().try_fold(0_u128, |acc, (d, &i)| {
            acc.checked_mul(radices[d])?
                .checked_add(u128::from(codes[d][i as usize]))
        })
    };
    let mut ordre: Vec<Option<i64>> = vec![None; n];
    let mut numbers: datafusion::common::HashMap<u128, i64> =
        datafusion::common::HashMap::default();
    // For each modalities' number, the record holding each dimension's value.
    let mut holders: Vec<Vec<u32>> = vec![Vec::new(); dims.len()];
    let mut picked: Vec<u32> = vec![0; dims.len()];
    let mut start = 0;
    while start < order.len() {
        let (key, entity, _) = sorted[start];
        let mut end = start + 1;
        while end < order.len() && sorted[end].0 == key && sorted[end].1 == entity {
            end += 1;
        }
        let run = &order[start..end];
        // Each dimension's smallest non-null value over the run (a null when none).
        for (p, (array, rows)) in picked.iter_mut().zip(&values) {
            *p = if run.len() == 1 {
                run[0]
            } else {
                run.iter()
                    .copied()
                    .filter(|&i| array.is_valid(i as usize))
                    .min_by(|&a, &b| rows.row(a as usize).cmp(&rows.row(b as usize)))
                    .unwrap_or(run[0])
            };
        }
        let too_many = || ComputeError::TooManyModalities {
            indicator: indicator.code,
        };
        let sig = signature(&picked).ok_or_else(too_many)?;
        let next = numbers.len() as i64;
        let number = *numbers.entry(sig).or_insert_with(|| {
            for (h, &i) in holders.iter_mut().zip(&picked) {
                h.push(i);
            }
            next
        });
        if number >= 1 << MODALITIES_BITS {
            return Err(too_many());
        }
        let rank = (start as i64) << MODALITIES_BITS;
        for &i in run {
            ordre[i as usize] = Some(rank + number);
        }
        start = end;
    }
    // The modalities table.
    let mut fields = vec![Field::new("modalites", DataType::Int64, false)];
    let mut columns: Vec<ArrayRef> = vec![Arc::new(Int64Array::from_iter_values(
        0..numbers.len() as i64,
    ))];
    for ((d, (array, _)), h) in dims.iter().zip(&values).zip(&holders) {
        fields.push(Field::new(*d, array.data_type().clone(), true));
        columns.push(arrow::compute::take(
            array.as_ref(),
            &arrow::array::UInt32Array::from(h.clone()),
            None,
        )?);
    }
    let modalites = RecordBatch::try_new(Arc::new(Schema::new(fields)), columns)?;
    // The records with `ordre`, batch by batch.
    let mut fields: Vec<Field> = schema.fields().iter().map(|f| f.as_ref().clone()).collect();
    fields.push(Field::new("ordre", DataType::Int64, true));
    let packed_schema = Arc::new(Schema::new(fields));
    let mut offset = 0;
    let mut batches = Vec::with_capacity(records.len());
    for batch in records {
        let rows = batch.num_rows();
        let mut columns = batch.columns().to_vec();
        columns.push(Arc::new(Int64Array::from(
            ordre[offset..offset + rows].to_vec(),
        )));
        batches.push(RecordBatch::try_new(packed_schema.clone(), columns)?);
        offset += rows;
    }
    Ok((packed_schema, batches, modalites))
}

/// The grid SQL of every period over the records registered by [`register_records`]:
/// what a full compute runs after [`list_records`].
pub fn registered_grid_sql(indicator: &Indicator, t: i64, version: i64) -> String {
    let sources = Sources {
        records: "SELECT r.* FROM rec_mat r".to_owned(),
        calendrier: "calendrier",
        periodes: "periodes",
        counted: counts_entities(indicator),
        aggregated: None,
    };
    grid_sql_over(indicator, t, version, &sources)
}

/// The same grid over records registered as they were listed (`rec_mat`, with no
/// packed order: the catalogue's SQL alone), as another engine runs it.
pub fn plain_grid_sql(indicator: &Indicator, t: i64, version: i64) -> String {
    let sources = Sources {
        records: "SELECT r.* FROM rec_mat r".to_owned(),
        calendrier: "calendrier",
        periodes: "periodes",
        counted: false,
        aggregated: None,
    };
    grid_sql_over(indicator, t, version, &sources)
}

/// What a release publishes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Publication {
    /// The regular release: open periods recomputed (`PROVISOIRE`), periods frozen since
    /// the last release published `DEFINITIF`, periods already published `DEFINITIF` left
    /// as they are.
    Regular,
    /// The revision of a closed month: the frozen periods holding it recomputed, published
    /// `DEFINITIF` with `revision` = the reason; nothing else.
    Revision { month: Month, reason: String },
}

/// Computes and publishes a regular release (see [`publish_as`]).
pub async fn publish(
    lake: &Lake,
    options: &ComputeOptions,
    key: &anonymize::MasterKey,
    progress: impl FnMut(&Indicator),
) -> Result<Release> {
    publish_as(lake, options, key, &Publication::Regular, progress).await
}

/// Computes and publishes a release: rows appended to `stats/indicateurs`, the state of
/// the computation kept for the next one ([`crate::incremental`]), the analyst zone
/// rebuilt with the release's own pseudonyms when [`crate::analyst::rebuild_reason`]
/// finds a reason (else kept), then the release recorded in
/// `stats/releases` (written last: readers only trust recorded releases). Months due for
/// automatic closing are closed first (`auto_close_days`).
///
/// A regular release recomputes only the periods whose records changed since the last
/// release (everything with `full`, or without a trusted state) and publishes only the
/// rows whose published value, terms, secret or status changed.
pub async fn publish_as(
    lake: &Lake,
    options: &ComputeOptions,
    key: &anonymize::MasterKey,
    publication: &Publication,
    progress: impl FnMut(&Indicator),
) -> Result<Release> {
    use crate::incremental as inc;
    if options.analyst.k < 1 {
        return Err(ComputeError::BadK(options.analyst.k));
    }
    if options.secrecy_threshold < 1 {
        return Err(ComputeError::BadThreshold(options.secrecy_threshold));
    }
    if let Publication::Revision { month, reason } = publication {
        if reason.trim().is_empty() {
            return Err(ComputeError::RevisionWithoutReason);
        }
        if !closing::closed_months(lake).await?.contains(month) {
            return Err(ComputeError::NotClosed(closing::month_label(*month)));
        }
    }
    let t = options.secrecy_threshold;
    let (ctx, manifest) = lake.detail_session().await?;
    let version = next_version(lake).await?;
    // Rows of a compute interrupted before its release was recorded carry a number this
    // release is about to take again: they go, so that no reader ever mixes them in.
    let orphans = lake
        .delete_where(
            "stats",
            "indicateurs",
            datafusion::prelude::col("version").gt_eq(datafusion::prelude::lit(version)),
        )
        .await?;
    if orphans > 0 {
        tracing::warn!(
            fichiers = orphans,
            "lignes d'un calcul interrompu avant sa publication retirées"
        );
    }
    let prepared = prepare_tables(&ctx).await?;
    let bounds = prepared.bounds;
    if let (Some(days), Some((d0, d1)), Publication::Regular) =
        (options.auto_close_days, bounds, publication)
    {
        let today = chrono::Utc::now().date_naive();
        closing::record(
            lake,
            &closing::due_for_closing(d0, d1, today, days),
            "AUTOMATIQUE",
        )
        .await?;
    }
    let closed = closing::closed_months(lake).await?;
    let finals = final_keys(lake).await?;
    let (mut state, grille_version) = inc::load(lake, version - 1).await?.unzip();
    let config = inc::config_print(t, &options.conventions);
    let publies = inc::territories_print(prepared.publies.clone());
    let mut full_reason = match (&state, publication) {
        (_, Publication::Revision { .. }) => Some("révision d'une période clôturée"),
        _ if options.full => Some("calcul complet demandé"),
        (None, _) => Some(NO_STATE),
        (Some(s), _) if s.config != config => {
            Some("catalogue, seuil du secret ou conventions modifiés")
        }
        (Some(s), _) if s.publies != publies => Some("territoires publiés modifiés"),
        _ => None,
    };
    let observed = prepared.observed();
    let frozen: Vec<bool> = prepared
        .periods
        .iter()
        .map(|p| closing::is_frozen(p.debut, p.fin, &closed))
        .collect();
    let is_final = |id: &str, i: usize| {
        let p = &prepared.periods[i];
        frozen[i] && finals.contains(&(id.to_owned(), p.pas.to_owned(), p.label.clone()))
    };
    let trusted = state.as_ref().filter(|_| full_reason.is_none());
    let same_run = trusted.is_some_and(|s| s.run == manifest.run as i64);
    // What the ingest runs since the last release changed, when they say it and the
    // observed interval starts on the same day (its start moves every period).
    let same_start = trusted.is_some_and(|s| {
        let old = s.periods.values().map(|(d, _)| *d).min();
        old.is_some() && old == observed.iter().map(|p| p.debut_obs).min()
    });
    let since = trusted
        .map(|s| s.run)
        .filter(|_| matches!(publication, Publication::Regular) && !same_run && same_start);
    let changes = async {
        let run = since?;
        let started = std::time::Instant::now();
        match crate::changes::since(lake, &ctx, &manifest, run).await {
            Ok(found) => {
                if let Some(c) = &found {
                    tracing::debug!(
                        menages = c.households,
                        tables_relues = %c.unusable.iter().cloned().collect::<Vec<_>>().join(" "),
                        changements_ms = started.elapsed().as_millis() as u64,
                        "changements depuis la publication précédente"
                    );
                }
                found
            }
            Err(e) => {
                tracing::warn!(
                    erreur = %e,
                    "changements depuis la publication précédente illisibles : enregistrements relus en entier"
                );
                None
            }
        }
    };
    // The last grid is read while the changes are found: both read files, and both
    // have stretches on one core.
    let grille = async {
        match grille_version {
            Some(gv) => inc::read_grid(lake, gv).await,
            None => None,
        }
    };
    let (mut changes, grille) = futures::join!(changes, grille);
    match (state.as_mut(), grille) {
        (Some(s), Some(grille)) => s.grille = grille,
        (Some(_), None) => {
            // A state without its grid is no state.
            state = None;
            changes = None;
            if full_reason.is_none() {
                full_reason = Some(NO_STATE);
            }
        }
        (None, _) => {}
    }
    let trusted = state.as_ref().filter(|_| full_reason.is_none());
    let has_grille = state.is_some();
    let grid = compute_grid(
        &ctx,
        &prepared,
        options,
        version,
        Known {
            unchanged: trusted.filter(|_| same_run).map(|s| &s.prints),
            changes: changes.as_ref().zip(trusted.map(|s| &s.prints)),
            last: trusted,
        },
        |indicator, prints| match publication {
            Publication::Revision { .. } => vec![true; observed.len()],
            Publication::Regular => {
                let mut dirty = inc::dirty_periods(indicator, &observed, trusted, prints);
                if has_grille {
                    // Published DEFINITIF: never recomputed, its cells kept as published.
                    for (i, d) in dirty.iter_mut().enumerate() {
                        if is_final(indicator.id, i) {
                            *d = false;
                        }
                    }
                }
                dirty
            }
        },
        progress,
    )
    .await?;

    let known: HashSet<&str> = CATALOGUE
        .iter()
        .chain(&options.conventions)
        .map(|i| i.id)
        .collect();
    let current_periods: HashSet<(&str, &str)> = prepared
        .periods
        .iter()
        .map(|p| (p.pas, p.label.as_str()))
        .collect();
    let (rows, new_grille, cells) = match publication {
        Publication::Revision { month, .. } => {
            let finished =
                crate::suppression::apply_with(&conform(&grid.rows)?, t, &options.conventions)?;
            let (marked, keep) = mark(&finished, &closed, &finals, publication)?;
            let mask = BooleanArray::from(keep);
            let rows = filter_record_batch(&marked, &mask)?;
            if rows.num_rows() == 0 {
                return Err(ComputeError::NothingToRevise(closing::month_label(*month)));
            }
            // The state goes on with the revised cells in place.
            let grille = match &state {
                Some(s) => {
                    let raw = filter_record_batch(&grid.rows, &mask)?;
                    let revised = set_published(&inc::with_published_columns(&raw)?, &rows)?;
                    let keys = row_keys(&revised)?;
                    let revised_keys: HashSet<&String> = keys.iter().collect();
                    let old_keys = row_keys(&s.grille)?;
                    let keep_old = BooleanArray::from(
                        old_keys
                            .iter()
                            .map(|k| !revised_keys.contains(k))
                            .collect::<Vec<_>>(),
                    );
                    let kept = filter_record_batch(&s.grille, &keep_old)?;
                    Some(concat_batches(&inc::grille_schema(), [&kept, &revised])?)
                }
                None => None,
            };
            let cells = state
                .as_ref()
                .map_or(grid.rows.num_rows(), |s| s.grille.num_rows());
            (rows, grille, cells)
        }
        Publication::Regular => {
            // Only the last grid's cells that are not carried over are looked up by key
            // (their published values, their retraction): an incremental compute makes
            // the keys of the recomputed periods only, not of the whole grid (5.4
            // million cells nationally). A key names its indicator, pas and period, so a
            // recomputed cell never shares one with a carried cell.
            let recomputed: HashSet<(&str, &str, &str)> = grid
                .recomputed
                .iter()
                .map(|(i, p, l)| (i.as_str(), p.as_str(), l.as_str()))
                .collect();
            // Cells kept from the last release, then the recomputed ones.
            let started = std::time::Instant::now();
            // The last grid leaves the state here: what is read from it below is read
            // before the new grid is assembled, and it is freed then — nationally each
            // copy of the grid is gigabytes of memory, which the system hands out
            // zeroed page by page the first time (BENCHMARKS.md).
            let last_grille = match &mut state {
                Some(s) => Some(std::mem::replace(
                    &mut s.grille,
                    RecordBatch::new_empty(inc::grille_schema()),
                )),
                None => None,
            };
            // The carried cells as runs (first row, rows) of the last grid: a period's
            // cells follow each other, so they are copied once, into the new grid.
            let (runs, not_carried) = match &last_grille {
                Some(g) => {
                    let text = |name: &str| text_column(g, name);
                    let (ind, pas, per) = (text("indicateur")?, text("pas")?, text("periode")?);
                    // A period's cells mostly follow each other: the last row's answer
                    // serves while its indicator, pas and period stay the same.
                    let mut last: Option<(&str, &str, &str, bool)> = None;
                    let keep: Vec<bool> = (0..g.num_rows())
                        .map(|i| {
                            let (a, b, c) = (ind.value(i), pas.value(i), per.value(i));
                            match last {
                                Some((la, lb, lc, k)) if la == a && lb == b && lc == c => k,
                                _ => {
                                    let k = known.contains(a)
                                        && current_periods.contains(&(b, c))
                                        && !recomputed.contains(&(a, b, c));
                                    last = Some((a, b, c, k));
                                    k
                                }
                            }
                        })
                        .collect();
                    // In the last grid's order, for the retractions' pass over them.
                    let not_carried: Vec<usize> = (0..g.num_rows()).filter(|i| !keep[*i]).collect();
                    (runs_of(&keep), Some(not_carried))
                }
                None => (Vec::new(), None),
            };
            let carried: usize = runs.iter().map(|(_, n)| n).sum();
            let fresh = inc::with_published_columns(&grid.rows)?;
            // From the last grid: what each recomputed cell showed (looked up by key;
            // none when it is new), and the cells it had in the recomputed periods
            // that are gone (published again with nothing).
            let (shown_before, gone) = match (&last_grille, &not_carried) {
                (Some(g), Some(not_carried)) => {
                    let found = match_keys(g, not_carried, &fresh)?;
                    let at: arrow::array::UInt32Array =
                        found.iter().map(|j| j.map(|j| j as u32)).collect();
                    // The last grid's rows a recomputed cell has the key of.
                    let mut present = vec![false; g.num_rows()];
                    for &j in found.iter().flatten() {
                        present[j] = true;
                    }
                    let shown = published_columns(g, inc::PUBLISHED)?
                        .iter()
                        .map(|o| arrow::compute::take(o.as_ref(), &at, None))
                        .collect::<std::result::Result<Vec<_>, _>>()?;
                    let gone = grille_retractions(
                        g,
                        not_carried,
                        &present,
                        &recomputed,
                        &known,
                        &current_periods,
                        version,
                        &options.conventions,
                    )?;
                    (Some(shown), Some(gone))
                }
                _ => (None, None),
            };
            let kept: Vec<RecordBatch> = match &last_grille {
                Some(g) => runs.iter().map(|&(at, n)| g.slice(at, n)).collect(),
                None => Vec::new(),
            };
            drop(last_grille);
            let all = concat_batches(&inc::grille_schema(), kept.iter().chain([&fresh]))?;
            drop((kept, fresh));
            let raw = inc::conform_to(&all, &stats_schema())?;
            tracing::debug!(
                reprises = carried,
                recalculees = all.num_rows() - carried,
                reprise_ms = started.elapsed().as_millis() as u64,
                "grille précédente reprise"
            );
            let started = std::time::Instant::now();
            let finished = crate::suppression::apply_with(&raw, t, &options.conventions)?;
            drop(raw);
            tracing::debug!(
                cellules = all.num_rows(),
                secret_ms = started.elapsed().as_millis() as u64,
                "secret secondaire"
            );
            let started = std::time::Instant::now();
            let (marked, keep) = mark(&finished, &closed, &finals, publication)?;
            drop(finished);
            // What each cell now shows, and whether that is news — column by column over
            // the whole grid (millions of cells nationally). What each cell showed:
            // a carried cell's published columns; a recomputed one's, looked up by key in
            // the last grid (above).
            let keep = BooleanArray::from(keep);
            let now = published_columns(&marked, SHOWN)?;
            let current = published_columns(&all, inc::PUBLISHED)?;
            let before: Vec<ArrayRef> = match &shown_before {
                Some(shown) => current
                    .iter()
                    .zip(shown)
                    .map(|(c, found)| {
                        arrow::compute::concat(&[c.slice(0, carried).as_ref(), found.as_ref()])
                    })
                    .collect::<std::result::Result<_, _>>()?,
                None => current.clone(),
            };
            drop(shown_before);
            // A cell is published when kept (not frozen and already published
            // DEFINITIF) and it shows something else, or nothing was shown (the shown
            // `statut` is never null); a frozen cell keeps what it showed.
            let mut changed = BooleanArray::from(vec![false; all.num_rows()]);
            for (b, n) in before.iter().zip(&now) {
                let differs = arrow::compute::kernels::cmp::distinct(b, n)?;
                changed = arrow::compute::or(&changed, &differs)?;
            }
            drop(before);
            let publish = arrow::compute::and(&keep, &changed)?;
            let schema = all.schema();
            let mut columns = all.columns().to_vec();
            for ((name, n), c) in inc::PUBLISHED.iter().zip(&now).zip(&current) {
                columns[schema.index_of(name)?] = arrow::compute::kernels::zip::zip(&keep, n, c)?;
            }
            drop((now, current, all));
            let new_grille = RecordBatch::try_new(schema, columns)?;
            tracing::debug!(
                cellules = new_grille.num_rows(),
                publiees = publish.true_count(),
                comparaison_ms = started.elapsed().as_millis() as u64,
                "valeurs montrées comparées"
            );
            let mut rows = filter_record_batch(&marked, &publish)?;
            drop(marked);
            // Cells kept from the last grid carry its version: published now, this one.
            let at = rows.schema().index_of("version")?;
            let mut columns = rows.columns().to_vec();
            columns[at] = Arc::new(Int64Array::from(vec![version; rows.num_rows()]));
            rows = RecordBatch::try_new(rows.schema(), columns)?;
            let gone = match gone {
                Some(gone) => gone,
                None => retractions(lake, &rows, version, &options.conventions).await?,
            };
            rows = concat_batches(&rows.schema(), [&rows, &gone])?;
            let cells = new_grille.num_rows();
            (rows, Some(new_grille), cells)
        }
    };
    let secret_rows = rows
        .column_by_name("secret")
        .and_then(|c| c.as_any().downcast_ref::<BooleanArray>())
        .map_or(0, |b| b.true_count());
    let n = rows.num_rows();
    let started = std::time::Instant::now();
    // The release's rows and the state are two tables that nothing orders (both are
    // trusted only once the release is recorded, below): each is encoded by its own
    // writer, side by side.
    let release_rows = async {
        if n > 0 {
            lake.append("stats", "indicateurs", rows).await?;
        }
        Ok::<(), ComputeError>(())
    };
    let state_written = async {
        let Some(grille) = new_grille else {
            return Ok(());
        };
        let (run, config, publies, periods) = match (publication, &state) {
            (Publication::Revision { .. }, Some(s)) => {
                (s.run, s.config, s.publies, s.periods.clone())
            }
            _ => (
                manifest.run as i64,
                config,
                publies,
                observed
                    .iter()
                    .map(|p| {
                        (
                            (p.pas.to_owned(), p.label.to_owned()),
                            (p.debut_obs, p.fin_obs),
                        )
                    })
                    .collect(),
            ),
        };
        let prints = match (publication, &state) {
            (Publication::Revision { .. }, Some(s)) => s.prints.clone(),
            _ => grid.prints.clone(),
        };
        inc::save(
            lake,
            inc::NewState {
                version,
                run,
                config,
                publies,
                periods: &periods,
                prints: &prints,
                grille,
            },
        )
        .await
    };
    futures::try_join!(release_rows, state_written)?;
    tracing::debug!(
        ecriture_ms = started.elapsed().as_millis() as u64,
        "publication et état écrits"
    );
    let started = std::time::Instant::now();
    let built = crate::analyst::built(lake).await?;
    let (households_deleted, key_changed) = match &built {
        Some(b) => crate::analyst::changes_since(lake, b.run, &manifest)?,
        None => (false, false),
    };
    let last_day = bounds.map(|b| b.1);
    let analyst_reason = crate::analyst::rebuild_reason(
        built.as_ref(),
        &crate::analyst::Now {
            k: options.analyst.k as i64,
            run: manifest.run as i64,
            last_day,
            forced: options.analyst.rebuild,
            households_deleted,
            key_changed,
        },
    );
    let (analyst, analyst_release) = match (&analyst_reason, &built) {
        (None, Some(b)) => (Vec::new(), b.release),
        _ => (
            crate::analyst::build(
                lake,
                &ctx,
                key,
                version,
                (manifest.run as i64, last_day),
                &options.analyst,
            )
            .await?,
            version,
        ),
    };
    let analyst_time = started.elapsed();
    tracing::debug!(
        analyste_ms = analyst_time.as_millis() as u64,
        reconstruite = analyst_reason.is_some(),
        "zone analyste"
    );
    let (nature, motif) = match publication {
        Publication::Regular => ("CALCUL", None),
        Publication::Revision { month, reason } => (
            "REVISION",
            Some(format!("{} : {reason}", closing::month_label(*month))),
        ),
    };
    let release = RecordBatch::try_new(
        warehouse::stats::releases_schema(),
        vec![
            Arc::new(Int64Array::from(vec![version])),
            Arc::new(Int64Array::from(vec![manifest.run as i64])),
            Arc::new(StringArray::from(vec![CATALOGUE_VERSION])),
            Arc::new(Int64Array::from(vec![options.secrecy_threshold])),
            Arc::new(StringArray::from(vec![chrono::Utc::now().to_rfc3339()])),
            Arc::new(Int64Array::from(vec![n as i64])),
            Arc::new(StringArray::from(vec![Some(nature)])),
            Arc::new(StringArray::from(vec![motif])),
        ],
    )?;
    lake.append("stats", "releases", release).await?;
    Ok(Release {
        version,
        run: manifest.run,
        rows: n,
        secret_rows,
        d0: bounds.map(|b| b.0),
        d1: bounds.map(|b| b.1),
        analyst,
        analyst_release,
        analyst_reason,
        analyst_time,
        cells,
        recomputed: grid.pairs,
        from_changes: grid.from_changes,
        by_difference: grid.by_difference,
        full_reason: full_reason.map(str::to_owned),
    })
}

/// The key of every row (indicateur, territoire_niveau, territoire, pas, periode,
/// dimension, modalite), joined.
fn row_keys(batch: &RecordBatch) -> Result<Vec<String>> {
    let keys = RowKeys::of(batch)?;
    Ok((0..batch.num_rows()).map(|i| keys.key(i)).collect())
}

/// The runs of `true` in `flags`: (first index, length), in order.
fn runs_of(flags: &[bool]) -> Vec<(usize, usize)> {
    let mut runs: Vec<(usize, usize)> = Vec::new();
    for (i, _) in flags.iter().enumerate().filter(|(_, f)| **f) {
        match runs.last_mut() {
            Some((at, n)) if *at + *n == i => *n += 1,
            _ => runs.push((i, 1)),
        }
    }
    runs
}

/// For each row of `new`, the row among the `candidates` rows of `old` with the same key
/// ([`KEY_COLUMNS`]), if any. The rows are matched by a hash of their key columns, then
/// compared column by column: no key is built (a recomputed period's cells are millions
/// nationally).
fn match_keys(
    old: &RecordBatch,
    candidates: &[usize],
    new: &RecordBatch,
) -> Result<Vec<Option<usize>>> {
    let (o, n) = (RowKeys::of(old)?, RowKeys::of(new)?);
    let mut hashed: Vec<(u64, usize)> = candidates.iter().map(|&j| (o.hash(j), j)).collect();
    hashed.sort_unstable();
    Ok((0..new.num_rows())
        .map(|i| {
            let h = n.hash(i);
            let from = hashed.partition_point(|(x, _)| *x < h);
            hashed[from..]
                .iter()
                .take_while(|(x, _)| *x == h)
                .map(|(_, j)| *j)
                .find(|&j| o.same(j, &n, i))
        })
        .collect())
}

/// The key columns of a batch, to make the key of any of its rows.
struct RowKeys(Vec<StringArray>);

impl RowKeys {
    fn of(batch: &RecordBatch) -> Result<Self> {
        Ok(Self(
            KEY_COLUMNS
                .iter()
                .map(|n| text_column(batch, n))
                .collect::<Result<_>>()?,
        ))
    }

    /// A hash of row `i`'s key columns (the same for the same key in any batch).
    fn hash(&self, i: usize) -> u64 {
        use std::hash::{BuildHasher, Hasher};
        let mut h = foldhash::quality::FixedState::with_seed(0x5eed).build_hasher();
        for c in &self.0 {
            h.write(c.value(i).as_bytes());
            h.write_u8(0x1f);
        }
        h.finish()
    }

    /// Whether row `i` has the key of row `j` of `other`.
    fn same(&self, i: usize, other: &RowKeys, j: usize) -> bool {
        self.0
            .iter()
            .zip(&other.0)
            .all(|(a, b)| a.value(i) == b.value(j))
    }

    /// Row `i`'s key columns joined by U+001F.
    fn key(&self, i: usize) -> String {
        let mut k = String::new();
        for (j, c) in self.0.iter().enumerate() {
            if j > 0 {
                k.push('\u{1f}');
            }
            k.push_str(c.value(i));
        }
        k
    }
}

use warehouse::stats::STATS_KEY as KEY_COLUMNS;

/// A column of a batch as text, or an error naming it.
fn text_column(batch: &RecordBatch, name: &str) -> Result<StringArray> {
    let c = batch
        .column_by_name(name)
        .ok_or_else(|| arrow::error::ArrowError::SchemaError(format!("colonne {name} absente")))?;
    Ok(cast(c, &DataType::Utf8)?.as_string::<i32>().clone())
}

/// The stats columns a cell shows, in the order of [`crate::incremental::PUBLISHED`].
const SHOWN: [&str; 5] = ["valeur", "secret", "numerateur", "denominateur", "statut"];

/// The columns `names` of a batch, or an error naming the one missing.
fn published_columns(batch: &RecordBatch, names: [&str; 5]) -> Result<Vec<ArrayRef>> {
    names
        .iter()
        .map(|n| {
            batch.column_by_name(n).cloned().ok_or_else(|| {
                arrow::error::ArrowError::SchemaError(format!("colonne {n} absente")).into()
            })
        })
        .collect()
}

/// What a cell shows: valeur, secret, numerateur, denominateur, statut.
#[derive(Debug, Clone, PartialEq)]
struct Seen {
    valeur: Option<f64>,
    secret: bool,
    numerateur: Option<f64>,
    denominateur: Option<f64>,
    statut: String,
}

/// The shown columns of a batch.
struct Shown {
    valeur: arrow::array::Float64Array,
    secret: BooleanArray,
    numerateur: arrow::array::Float64Array,
    denominateur: arrow::array::Float64Array,
    statut: StringArray,
}

impl Shown {
    fn from_columns(batch: &RecordBatch, names: [&str; 5]) -> Result<Self> {
        let c = |n: &str| -> Result<ArrayRef> {
            batch.column_by_name(n).cloned().ok_or_else(|| {
                arrow::error::ArrowError::SchemaError(format!("colonne {n} absente")).into()
            })
        };
        let f = |n: &str| -> Result<arrow::array::Float64Array> {
            Ok(cast(&c(n)?, &DataType::Float64)?
                .as_primitive::<arrow::datatypes::Float64Type>()
                .clone())
        };
        Ok(Shown {
            valeur: f(names[0])?,
            secret: cast(&c(names[1])?, &DataType::Boolean)?
                .as_boolean()
                .clone(),
            numerateur: f(names[2])?,
            denominateur: f(names[3])?,
            statut: cast(&c(names[4])?, &DataType::Utf8)?
                .as_string::<i32>()
                .clone(),
        })
    }

    fn of_stats(batch: &RecordBatch) -> Result<Self> {
        Self::from_columns(batch, SHOWN)
    }

    /// The row's shown values; `None` when nothing was published for it.
    fn get(&self, i: usize) -> Option<Seen> {
        use arrow::array::Array;
        if self.statut.is_null(i) {
            return None;
        }
        let f = |a: &arrow::array::Float64Array| a.is_valid(i).then(|| a.value(i));
        Some(Seen {
            valeur: f(&self.valeur),
            secret: self.secret.is_valid(i) && self.secret.value(i),
            numerateur: f(&self.numerateur),
            denominateur: f(&self.denominateur),
            statut: self.statut.value(i).to_owned(),
        })
    }
}

/// The published columns of a new grid, built row by row.
#[derive(Default)]
struct PublishedColumns {
    valeur: Vec<Option<f64>>,
    secret: Vec<Option<bool>>,
    numerateur: Vec<Option<f64>>,
    denominateur: Vec<Option<f64>>,
    statut: Vec<Option<String>>,
}

impl PublishedColumns {
    fn push(&mut self, seen: Option<Seen>) {
        match seen {
            Some(s) => {
                self.valeur.push(s.valeur);
                self.secret.push(Some(s.secret));
                self.numerateur.push(s.numerateur);
                self.denominateur.push(s.denominateur);
                self.statut.push(Some(s.statut));
            }
            None => {
                self.valeur.push(None);
                self.secret.push(None);
                self.numerateur.push(None);
                self.denominateur.push(None);
                self.statut.push(None);
            }
        }
    }

    fn replace_in(self, grille: &RecordBatch) -> Result<RecordBatch> {
        let schema = grille.schema();
        let mut columns = grille.columns().to_vec();
        let names = crate::incremental::PUBLISHED;
        columns[schema.index_of(names[0])?] =
            Arc::new(arrow::array::Float64Array::from(self.valeur));
        columns[schema.index_of(names[1])?] = Arc::new(BooleanArray::from(self.secret));
        columns[schema.index_of(names[2])?] =
            Arc::new(arrow::array::Float64Array::from(self.numerateur));
        columns[schema.index_of(names[3])?] =
            Arc::new(arrow::array::Float64Array::from(self.denominateur));
        columns[schema.index_of(names[4])?] = Arc::new(StringArray::from(self.statut));
        Ok(RecordBatch::try_new(schema, columns)?)
    }
}

/// A grid's published columns set from published rows aligned with it.
fn set_published(grille: &RecordBatch, rows: &RecordBatch) -> Result<RecordBatch> {
    let shown = Shown::of_stats(rows)?;
    let mut published = PublishedColumns::default();
    for i in 0..rows.num_rows() {
        published.push(shown.get(i));
    }
    published.replace_in(grille)
}

/// The cells of the last release's grid that a recomputed period no longer has (a
/// modality whose last records were purged, a territory left without any): published
/// again with what they now hold — no record: a count of 0, a ratio or a quantile
/// undefined. `not_carried`: the last grid's rows not carried over, the only ones a
/// retraction can be; `present`: for each row of the last grid, whether a recomputed cell
/// has its key.
#[allow(clippy::too_many_arguments)]
fn grille_retractions(
    grille: &RecordBatch,
    not_carried: &[usize],
    present: &[bool],
    recomputed: &HashSet<(&str, &str, &str)>,
    known: &HashSet<&str>,
    current_periods: &HashSet<(&str, &str)>,
    version: i64,
    conventions: &[Indicator],
) -> Result<RecordBatch> {
    let text = |name: &str| text_column(grille, name);
    let (ind, pas, per) = (text("indicateur")?, text("pas")?, text("periode")?);
    let mut take = vec![false; grille.num_rows()];
    for &i in not_carried {
        take[i] = !present[i]
            && known.contains(ind.value(i))
            && current_periods.contains(&(pas.value(i), per.value(i)))
            && recomputed.contains(&(ind.value(i), pas.value(i), per.value(i)));
    }
    let gone = filter_record_batch(grille, &BooleanArray::from(take))?;
    let gone = crate::incremental::conform_to(&gone, &stats_schema())?;
    emptied(&gone, version, conventions)
}

/// Rows published again with no record: a count 0, a ratio or a quantile undefined,
/// `PROVISOIRE`, in release `version`.
fn emptied(rows: &RecordBatch, version: i64, conventions: &[Indicator]) -> Result<RecordBatch> {
    let n = rows.num_rows();
    let ind = cast(
        rows.column_by_name("indicateur").expect("indicateur"),
        &DataType::Utf8,
    )?;
    let ind = ind.as_string::<i32>();
    let (mut valeur, mut num, mut den) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..n {
        let measure = CATALOGUE
            .iter()
            .chain(conventions)
            .find(|x| x.id == ind.value(i))
            .map(|x| x.measure);
        let (v, a, b) = match measure {
            Some(Measure::Sum | Measure::Distinct | Measure::DistinctAll) => {
                (Some(0.0), None, None)
            }
            Some(Measure::Ratio | Measure::DistinctRatio) => (None, Some(0.0), Some(0.0)),
            _ => (None, None, Some(0.0)),
        };
        valeur.push(v);
        num.push(a);
        den.push(b);
    }
    let schema = rows.schema();
    let mut columns = rows.columns().to_vec();
    columns[schema.index_of("valeur")?] = Arc::new(arrow::array::Float64Array::from(valeur));
    columns[schema.index_of("numerateur")?] = Arc::new(arrow::array::Float64Array::from(num));
    columns[schema.index_of("denominateur")?] = Arc::new(arrow::array::Float64Array::from(den));
    columns[schema.index_of("secret")?] = Arc::new(BooleanArray::from(vec![false; n]));
    columns[schema.index_of("statut")?] = Arc::new(StringArray::from(vec!["PROVISOIRE"; n]));
    columns[schema.index_of("version")?] = Arc::new(Int64Array::from(vec![version; n]));
    columns[schema.index_of("revision")?] = Arc::new(StringArray::from(vec![None::<&str>; n]));
    Ok(RecordBatch::try_new(schema, columns)?)
}

/// The (indicateur, pas, periode) already published `DEFINITIF`, in any recorded release.
async fn final_keys(lake: &Lake) -> Result<HashSet<(String, String, String)>> {
    let ctx = warehouse::new_session();
    if !lake.register_stats(&ctx).await? {
        return Ok(HashSet::new());
    }
    let batches = ctx
        .sql(
            "SELECT DISTINCT i.indicateur, i.pas, i.periode FROM indicateurs i
             WHERE i.statut = 'DEFINITIF' AND i.version IN (SELECT version FROM releases)",
        )
        .await?
        .collect()
        .await?;
    let mut out = HashSet::new();
    for b in &batches {
        let text = |i: usize| cast(b.column(i), &DataType::Utf8);
        let (a, p, q) = (text(0)?, text(1)?, text(2)?);
        let (a, p, q) = (
            a.as_string::<i32>(),
            p.as_string::<i32>(),
            q.as_string::<i32>(),
        );
        for i in 0..b.num_rows() {
            out.insert((
                a.value(i).to_owned(),
                p.value(i).to_owned(),
                q.value(i).to_owned(),
            ));
        }
    }
    Ok(out)
}

/// The currently published cells that a new release no longer has, in the periods it
/// publishes: a modality whose last records were purged, a territory left without any.
/// "Current" is the highest version per key, so without a row of the new release such a
/// cell would keep its old value; it is published again with what it now holds — no
/// record: a count of 0, a ratio or a quantile undefined.
async fn retractions(
    lake: &Lake,
    rows: &RecordBatch,
    version: i64,
    conventions: &[Indicator],
) -> Result<RecordBatch> {
    let schema = stats_schema();
    let ctx = warehouse::new_session();
    if !lake.register_stats(&ctx).await? || rows.num_rows() == 0 {
        return Ok(RecordBatch::new_empty(schema));
    }
    let new_keys = row_keys(rows)?;
    let published: HashSet<&String> = new_keys.iter().collect();
    let text = text_column;
    let (pas, per) = (text(rows, "pas")?, text(rows, "periode")?);
    let periods: HashSet<(&str, &str)> = (0..rows.num_rows())
        .map(|i| (pas.value(i), per.value(i)))
        .collect();
    let current = ctx
        .sql(
            "SELECT * FROM (
                 SELECT i.*, ROW_NUMBER() OVER (
                     PARTITION BY indicateur, territoire_niveau, territoire, pas, periode, dimension, modalite
                     ORDER BY version DESC) AS rang
                 FROM indicateurs i WHERE i.version IN (SELECT version FROM releases))
             WHERE rang = 1 AND statut = 'PROVISOIRE'",
        )
        .await?
        .collect()
        .await?;
    let mut out = Vec::new();
    for b in &current {
        let keys = row_keys(b)?;
        let (p, q) = (text(b, "pas")?, text(b, "periode")?);
        let take: Vec<bool> = (0..b.num_rows())
            .map(|i| !published.contains(&keys[i]) && periods.contains(&(p.value(i), q.value(i))))
            .collect();
        let gone = filter_record_batch(b, &BooleanArray::from(take))?;
        if gone.num_rows() > 0 {
            out.push(emptied(
                &crate::incremental::conform_to(&gone, &schema)?,
                version,
                conventions,
            )?);
        }
    }
    Ok(concat_batches(&schema, &out)?)
}

/// Sets the rows' `statut` and `revision`, and says which ones a publication publishes.
fn mark(
    rows: &RecordBatch,
    closed: &BTreeSet<Month>,
    finals: &HashSet<(String, String, String)>,
    publication: &Publication,
) -> Result<(RecordBatch, Vec<bool>)> {
    let column = |name: &str| {
        rows.column_by_name(name)
            .cloned()
            .ok_or_else(|| arrow::error::ArrowError::SchemaError(format!("colonne {name} absente")))
    };
    let (ind, pas, per) = (column("indicateur")?, column("pas")?, column("periode")?);
    let (ind, pas, per) = (
        ind.as_string::<i32>(),
        pas.as_string::<i32>(),
        per.as_string::<i32>(),
    );
    let (debut, fin) = (column("debut")?, column("fin")?);
    let (debut, fin) = (
        debut.as_primitive::<Date32Type>(),
        fin.as_primitive::<Date32Type>(),
    );
    let mut keep = Vec::with_capacity(rows.num_rows());
    let mut statut = Vec::with_capacity(rows.num_rows());
    let mut frozen_cache: HashMap<(i32, i32), bool> = HashMap::new();
    for i in 0..rows.num_rows() {
        let frozen = *frozen_cache
            .entry((debut.value(i), fin.value(i)))
            .or_insert_with(|| {
                let d = |v: i32| Date32Type::to_naive_date_opt(v).expect("date");
                closing::is_frozen(d(debut.value(i)), d(fin.value(i)), closed)
            });
        let k = match publication {
            Publication::Regular => {
                !(frozen
                    && finals.contains(&(
                        ind.value(i).to_owned(),
                        pas.value(i).to_owned(),
                        per.value(i).to_owned(),
                    )))
            }
            Publication::Revision { month, .. } => {
                let d = |v: i32| Date32Type::to_naive_date_opt(v).expect("date");
                frozen && closing::months_of(d(debut.value(i)), d(fin.value(i))).contains(month)
            }
        };
        keep.push(k);
        statut.push(if frozen { "DEFINITIF" } else { "PROVISOIRE" });
    }
    let schema = rows.schema();
    let mut columns = rows.columns().to_vec();
    columns[schema.index_of("statut")?] = Arc::new(StringArray::from(statut));
    if let Publication::Revision { reason, .. } = publication {
        columns[schema.index_of("revision")?] =
            Arc::new(StringArray::from(vec![
                Some(reason.as_str());
                rows.num_rows()
            ]));
    }
    Ok((RecordBatch::try_new(schema, columns)?, keep))
}

/// The number of the next release.
pub async fn next_version(lake: &Lake) -> Result<i64> {
    let ctx = warehouse::new_session();
    if !lake.register_stats(&ctx).await? {
        return Ok(1);
    }
    let batches = ctx
        .sql("SELECT MAX(version) AS v FROM releases")
        .await?
        .collect()
        .await?;
    let max = batches
        .first()
        .and_then(|b| b.column(0).as_any().downcast_ref::<Int64Array>().cloned())
        .and_then(|a| {
            if a.is_empty() || arrow::array::Array::is_null(&a, 0) {
                None
            } else {
                Some(a.value(0))
            }
        });
    Ok(max.unwrap_or(0) + 1)
}

/// Registers what every indicator's SQL reads besides the detail tables — `territoires`,
/// `publies`, `periodes`, `calendrier`, the aggregate [`crate::quantiles`] — and returns
/// the observed bounds [D0, D1].
pub async fn prepare(ctx: &SessionContext) -> Result<Option<(NaiveDate, NaiveDate)>> {
    Ok(prepare_tables(ctx).await?.bounds)
}

/// What [`prepare`] registered, kept to select periods for an incremental compute.
pub(crate) struct Prepared {
    pub bounds: Option<(NaiveDate, NaiveDate)>,
    pub periods: Vec<Period>,
    /// The `periodes` table, one row per element of `periods`.
    pub periodes: RecordBatch,
    /// The `calendrier` table and, for each of its rows, its period's index.
    pub calendrier: RecordBatch,
    pub calendrier_period: Vec<usize>,
    /// The published territories (niveau, territoire).
    pub publies: Vec<(String, String)>,
}

impl Prepared {
    /// The periods with their observed days.
    pub fn observed(&self) -> Vec<crate::incremental::Observed<'_>> {
        let (d0, d1) = self.bounds.unwrap_or_default();
        let one = chrono::Duration::days(1);
        self.periods
            .iter()
            .map(|p| crate::incremental::Observed {
                pas: p.pas,
                label: &p.label,
                debut_obs: Date32Type::from_naive_date(p.debut.max(d0)),
                fin_obs: Date32Type::from_naive_date(p.fin.min(d1 + one)),
            })
            .collect()
    }
}

pub(crate) async fn prepare_tables(ctx: &SessionContext) -> Result<Prepared> {
    ctx.register_udaf(crate::quantiles::udaf());
    check_order_ids(ctx).await?;
    let bounds = observed_bounds(ctx).await?;
    let publies = register_territories(ctx).await?;
    let (periods, periodes, calendrier, calendrier_period) = register_periods(ctx, bounds).await?;
    Ok(Prepared {
        bounds,
        periods,
        periodes,
        calendrier,
        calendrier_period,
        publies,
    })
}

/// The tables whose records the SQL orders by one packed integer key (date, then id:
/// [`ORDER_KEY`]), with that date column: a person's requests (distinct entities), a
/// household's first request (`__PREMIERES__`), a request's first stay (I03).
const ORDERED_TABLES: [(&str, &str); 2] = [
    ("demande", "date_demande"),
    ("prise_en_charge", "date_entree"),
];

/// Refuses ids and dates the packed order key cannot hold exactly rather than miscount.
async fn check_order_ids(ctx: &SessionContext) -> Result<()> {
    for (table, date) in ORDERED_TABLES {
        let batches = ctx
            .sql(&format!(
                "SELECT MAX(id) AS id, MAX({date}) AS jour FROM {table}"
            ))
            .await?
            .collect()
            .await?;
        let Some(batch) = batches.first().filter(|b| b.num_rows() == 1) else {
            continue;
        };
        let id = batch
            .column(0)
            .as_primitive_opt::<arrow::datatypes::Int64Type>();
        if let Some(id) = id.filter(|a| !arrow::array::Array::is_null(*a, 0))
            && id.value(0) >= ORDER_ID_LIMIT
        {
            return Err(ComputeError::IdTooLarge {
                table,
                id: id.value(0),
            });
        }
        let jour = batch.column(1).as_primitive_opt::<Date32Type>();
        if let Some(jour) = jour.filter(|a| !arrow::array::Array::is_null(*a, 0))
            && jour.value(0) >= ORDER_DAY_LIMIT
        {
            let date = Date32Type::to_naive_date_opt(jour.value(0)).unwrap_or(NaiveDate::MAX);
            return Err(ComputeError::DateTooLate { table, date });
        }
    }
    Ok(())
}

async fn observed_bounds(ctx: &SessionContext) -> Result<Option<(NaiveDate, NaiveDate)>> {
    let sql = "SELECT MIN(d) AS d0, MAX(d) AS d1 FROM (
                   SELECT date_demande AS d FROM demande
                   UNION ALL SELECT date_entree FROM prise_en_charge
                   UNION ALL SELECT date_sortie FROM prise_en_charge
                   UNION ALL SELECT date_orientation FROM orientation)";
    let batches = ctx.sql(sql).await?.collect().await?;
    let Some(batch) = batches.first() else {
        return Ok(None);
    };
    let d0 = batch.column(0).as_any().downcast_ref::<Date32Array>();
    let d1 = batch.column(1).as_any().downcast_ref::<Date32Array>();
    match (d0, d1) {
        (Some(a), Some(b)) if batch.num_rows() == 1 && !arrow::array::Array::is_null(a, 0) => {
            Ok(Some((
                Date32Type::to_naive_date_opt(a.value(0)).expect("date within range"),
                Date32Type::to_naive_date_opt(b.value(0)).expect("date within range"),
            )))
        }
        _ => Ok(None),
    }
}

async fn register_territories(ctx: &SessionContext) -> Result<Vec<(String, String)>> {
    let (mut dep, mut niveau, mut territoire, mut tid) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    // Each territory's number (`tid`): the aggregations group by it, not by its two names.
    let mut numbers: HashMap<(&str, &str), i64> = HashMap::new();
    for d in operational::territory::departements() {
        for (n, t) in [("DEPARTEMENT", d.code), ("REGION", d.region), ("FR", "FR")] {
            let next = numbers.len() as i64;
            tid.push(*numbers.entry((n, t)).or_insert(next));
            dep.push(d.code);
            niveau.push(n);
            territoire.push(t);
        }
    }
    let schema = Arc::new(Schema::new(vec![
        Field::new("departement", DataType::Utf8, false),
        Field::new("niveau", DataType::Utf8, false),
        Field::new("territoire", DataType::Utf8, false),
        Field::new("tid", DataType::Int64, false),
    ]));
    let batch = RecordBatch::try_new(
        schema,
        vec![
            Arc::new(StringArray::from(dep)),
            Arc::new(StringArray::from(niveau)),
            Arc::new(StringArray::from(territoire)),
            Arc::new(Int64Array::from(tid)),
        ],
    )?;
    register_batch(ctx, "territoires", batch)?;
    // Published territories: départements seen in requests or dispositifs, their régions, FR.
    ctx.deregister_table("publies")?;
    let publies = ctx
        .sql(
            "SELECT DISTINCT t.niveau, t.territoire FROM territoires t
             JOIN (SELECT siao_departement AS departement FROM demande
                   UNION SELECT departement FROM dispositif) s ON s.departement = t.departement",
        )
        .await?;
    let batches = publies.collect().await?;
    let mut out = Vec::new();
    for b in &batches {
        let (n, t) = (
            cast(b.column(0), &DataType::Utf8)?,
            cast(b.column(1), &DataType::Utf8)?,
        );
        let (n, t) = (n.as_string::<i32>(), t.as_string::<i32>());
        for i in 0..b.num_rows() {
            out.push((n.value(i).to_owned(), t.value(i).to_owned()));
        }
    }
    let schema = Arc::new(Schema::new(vec![
        Field::new("niveau", DataType::Utf8, false),
        Field::new("territoire", DataType::Utf8, false),
        Field::new("tid", DataType::Int64, false),
    ]));
    let batch = RecordBatch::try_new(
        schema,
        vec![
            Arc::new(StringArray::from(
                out.iter().map(|x| x.0.as_str()).collect::<Vec<_>>(),
            )),
            Arc::new(StringArray::from(
                out.iter().map(|x| x.1.as_str()).collect::<Vec<_>>(),
            )),
            Arc::new(Int64Array::from(
                out.iter()
                    .map(|(n, t)| numbers[&(n.as_str(), t.as_str())])
                    .collect::<Vec<_>>(),
            )),
        ],
    )?;
    register_batch(ctx, "publies", batch)?;
    Ok(out)
}

type RegisteredPeriods = (Vec<Period>, RecordBatch, RecordBatch, Vec<usize>);

async fn register_periods(
    ctx: &SessionContext,
    bounds: Option<(NaiveDate, NaiveDate)>,
) -> Result<RegisteredPeriods> {
    let list = match bounds {
        Some((d0, d1)) => periods(d0, d1),
        None => Vec::new(),
    };
    let (d0, d1) = bounds.unwrap_or_default();
    let schema = Arc::new(Schema::new(vec![
        Field::new("pas", DataType::Utf8, false),
        Field::new("periode", DataType::Utf8, false),
        Field::new("debut", DataType::Date32, false),
        Field::new("fin", DataType::Date32, false),
        Field::new("debut_obs", DataType::Date32, false),
        Field::new("fin_obs", DataType::Date32, false),
        Field::new("jours_obs", DataType::Int64, false),
        Field::new("mois_fin", DataType::Int64, false),
        Field::new("pid", DataType::Int64, false),
    ]));
    let one = chrono::Duration::days(1);
    let obs = |p: &Period| (p.debut.max(d0), p.fin.min(d1 + one));
    let batch = RecordBatch::try_new(
        schema,
        vec![
            Arc::new(StringArray::from(
                list.iter().map(|p| p.pas).collect::<Vec<_>>(),
            )),
            Arc::new(StringArray::from(
                list.iter().map(|p| p.label.clone()).collect::<Vec<_>>(),
            )),
            Arc::new(Date32Array::from(
                list.iter()
                    .map(|p| Date32Type::from_naive_date(p.debut))
                    .collect::<Vec<_>>(),
            )),
            Arc::new(Date32Array::from(
                list.iter()
                    .map(|p| Date32Type::from_naive_date(p.fin))
                    .collect::<Vec<_>>(),
            )),
            Arc::new(Date32Array::from(
                list.iter()
                    .map(|p| Date32Type::from_naive_date(obs(p).0))
                    .collect::<Vec<_>>(),
            )),
            Arc::new(Date32Array::from(
                list.iter()
                    .map(|p| Date32Type::from_naive_date(obs(p).1))
                    .collect::<Vec<_>>(),
            )),
            Arc::new(Int64Array::from(
                list.iter()
                    .map(|p| (obs(p).1 - obs(p).0).num_days())
                    .collect::<Vec<_>>(),
            )),
            Arc::new(Int64Array::from(
                list.iter()
                    .map(|p| month_index(obs(p).1 - one))
                    .collect::<Vec<_>>(),
            )),
            // The period's number: the aggregations group by it, not by its two names.
            Arc::new(Int64Array::from_iter_values(0..list.len() as i64)),
        ],
    )?;
    register_batch(ctx, "periodes", batch.clone())?;
    let periodes = batch.clone();
    // The periods once per month their observed days touch (first month: `mois_debut`).
    let (mut take, mut mois, mut mois_debut) = (Vec::new(), Vec::new(), Vec::new());
    for (i, p) in list.iter().enumerate() {
        let (first, last) = (month_index(obs(p).0), month_index(obs(p).1 - one));
        for m in first..=last {
            take.push(i as u32);
            mois.push(m);
            mois_debut.push(first);
        }
    }
    let repeated =
        arrow::compute::take_record_batch(&batch, &arrow::array::UInt32Array::from(take))?;
    let mut fields: Vec<Field> = repeated
        .schema()
        .fields()
        .iter()
        .map(|f| f.as_ref().clone())
        .collect();
    fields.push(Field::new("mois", DataType::Int64, false));
    fields.push(Field::new("mois_debut", DataType::Int64, false));
    let mut columns = repeated.columns().to_vec();
    columns.push(Arc::new(Int64Array::from(mois)));
    columns.push(Arc::new(Int64Array::from(mois_debut)));
    register_batch(
        ctx,
        "periodes_mois",
        RecordBatch::try_new(Arc::new(Schema::new(fields)), columns)?,
    )?;
    // The observed months and the day after the last observed day (no row: no data).
    let n = usize::from(bounds.is_some());
    register_batch(
        ctx,
        "bornes",
        RecordBatch::try_new(
            Arc::new(Schema::new(vec![
                Field::new("mois0", DataType::Int64, false),
                Field::new("mois1", DataType::Int64, false),
                Field::new("fin", DataType::Date32, false),
            ])),
            vec![
                Arc::new(Int64Array::from(vec![month_index(d0); n])),
                Arc::new(Int64Array::from(vec![month_index(d1); n])),
                Arc::new(Date32Array::from(vec![
                    Date32Type::from_naive_date(d1 + one);
                    n
                ])),
            ],
        )?,
    )?;
    // The calendar: each observed day with the period of every pas holding it, so that
    // a dated record finds its periods by an equality join.
    let (mut jours, mut pas, mut periode, mut pid) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut of_period = Vec::new();
    for (i, p) in list.iter().enumerate() {
        let (debut, fin) = obs(p);
        let mut day = debut;
        while day < fin {
            jours.push(Date32Type::from_naive_date(day));
            pas.push(p.pas);
            periode.push(p.label.as_str());
            pid.push(i as i64);
            of_period.push(i);
            day += chrono::Duration::days(1);
        }
    }
    let schema = Arc::new(Schema::new(vec![
        Field::new("jour", DataType::Date32, false),
        Field::new("pas", DataType::Utf8, false),
        Field::new("periode", DataType::Utf8, false),
        Field::new("pid", DataType::Int64, false),
    ]));
    let batch = RecordBatch::try_new(
        schema,
        vec![
            Arc::new(Date32Array::from(jours)),
            Arc::new(StringArray::from(pas)),
            Arc::new(StringArray::from(periode)),
            Arc::new(Int64Array::from(pid)),
        ],
    )?;
    register_batch(ctx, "calendrier", batch.clone())?;
    Ok((list, periodes, batch, of_period))
}

/// The tables [`prepare`] registers beside the detail zone, which the catalogue's SQL reads.
pub const PREPARED_TABLES: [&str; 6] = [
    "territoires",
    "publies",
    "periodes",
    "periodes_mois",
    "bornes",
    "calendrier",
];

/// Year × 12 + month: the month index the catalogue's SQL computes (`month_index!`).
fn month_index(d: NaiveDate) -> i64 {
    i64::from(d.year()) * 12 + i64::from(d.month())
}

fn register_batch(ctx: &SessionContext, name: &str, batch: RecordBatch) -> Result<()> {
    ctx.deregister_table(name)?;
    ctx.register_table(
        name,
        Arc::new(MemTable::try_new(batch.schema(), vec![vec![batch]])?),
    )?;
    Ok(())
}

/// An indicator's dimensions that are columns of its records: all but `quantile`, which
/// the engine derives.
fn dimension_columns<'a>(dimensions: &[&'a str]) -> impl Iterator<Item = &'a str> {
    dimensions.iter().copied().filter(|d| *d != "quantile")
}

/// The dimension columns of an indicator's records turned into `(dimension, modalite)`
/// rows: each record once for the total (`''`) and once per dimension, a null value
/// being `NON_RENSEIGNE`. `quantile` is not a column: the engine derives it.
fn unpivot(source: &str, dimensions: &[&str]) -> String {
    let dims: Vec<&str> = dimension_columns(dimensions).collect();
    if dims.is_empty() {
        return format!("SELECT s.*, '' AS dimension, '' AS modalite FROM {source} s");
    }
    // Repeated by unnesting a list, not by a cross join with a table of dimensions:
    // DataFusion's cross join emits one batch per row of its left side.
    let list = std::iter::once("''".to_owned())
        .chain(dims.iter().map(|d| format!("'{d}'")))
        .collect::<Vec<_>>()
        .join(", ");
    let cases: String = dims
        .iter()
        .map(|d| format!(" WHEN '{d}' THEN COALESCE(CAST(s.{d} AS VARCHAR), 'NON_RENSEIGNE')"))
        .collect();
    format!(
        "SELECT s.*, CASE s.dimension WHEN '' THEN ''{cases} END AS modalite
         FROM (SELECT x.*, unnest([{list}]) AS dimension FROM {source} x) s"
    )
}

/// `(tid, pid, dimension, modalite, <aggregates>)` over `source`:
/// the total (`dimension` and `modalite` empty) and each dimension's modalities (a null
/// value being `NON_RENSEIGNE`), by one aggregation with grouping sets rather than by
/// repeating each row once per dimension ([`unpivot`]). `quantile` is not a column.
fn grouped(source: &str, dimensions: &[&str], aggregates: &str) -> String {
    let dims: Vec<&str> = dimension_columns(dimensions).collect();
    if dims.is_empty() {
        return format!(
            "SELECT {KEY}, '' AS dimension, '' AS modalite, {aggregates} FROM {source} GROUP BY {KEY}"
        );
    }
    let dimension: String = dims
        .iter()
        .map(|d| format!(" WHEN GROUPING({d}) = 0 THEN '{d}'"))
        .collect();
    let modalite: String = dims
        .iter()
        .map(|d| {
            format!(" WHEN GROUPING({d}) = 0 THEN COALESCE(CAST({d} AS VARCHAR), 'NON_RENSEIGNE')")
        })
        .collect();
    let sets: String = std::iter::once(format!("({KEY})"))
        .chain(dims.iter().map(|d| format!("({KEY}, {d})")))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        "SELECT {KEY}, CASE{dimension} ELSE '' END AS dimension, CASE{modalite} ELSE '' END AS modalite,
                {aggregates}
         FROM {source} GROUP BY GROUPING SETS ({sets})"
    )
}

// Aggregations group by the numbers of territories (`tid`) and periods (`pid`) that
// `prepare` gives them, not by their names: two integers hash and compare faster than
// four strings. The grid reads the names back from `publies` and the periods.
const KEY: &str = "tid, pid";
const DEP_KEY: &str = "departement, pid";
const CELL: &str = "tid, pid, dimension, modalite";

/// A distinct-entity record's order (ordre_date, then ordre_id) as one integer: days
/// since 1970 × 2⁴⁷ + the id. Exact while ids stay below 2⁴⁷ ([`ORDER_ID_LIMIT`]) and
/// days below 2¹⁶ (dates before 2149, [`ORDER_DAY_LIMIT`]), both checked by [`prepare`].
const ORDER_KEY: &str = "arrow_cast(ordre_date, 'Int64') * 140737488355328 + ordre_id";

/// The ids a distinct-entity record's order key holds exactly (2⁴⁷).
pub const ORDER_ID_LIMIT: i64 = 1 << 47;

/// The days since 1970 it holds (2¹⁶: up to 2149-06-05).
pub const ORDER_DAY_LIMIT: i32 = 1 << 16;

/// Whether an indicator's aggregates also count its records (`c` beside `a` and `b`,
/// kept in the grid as [`EFFECTIF`]): the sums and ratios averaged per observed day. A
/// record may add 0 to them (a stay without nights in the observed days, a group of 0
/// places), so a modality row's existence shows only in its records' number, which
/// lets their cells follow by difference ([`by_difference`]).
fn counts_records(indicator: &Indicator) -> bool {
    indicator.per_observed_day
        && match indicator.measure {
            Measure::Sum => true,
            Measure::Ratio => !indicator.numerator_only_dimensions,
            _ => false,
        }
}

/// The CTEs that aggregate an indicator's records into
/// `agg(tid, pid, dimension, modalite, a, b)` (territory and period numbers): `a` the value (a
/// ratio's numerator), `b` a ratio's denominator, a quantile's number of records, or the
/// entities whose first is in the row of a [`Measure::DistinctAll`] (counted or not);
/// then `c`, the records' number, when [`counts_records`].
///
/// Work is done at the département before the records are repeated for its région and
/// FR: additive records are first summed per département, date (or period) and
/// modalities; distinct entities keep their first record per département and period,
/// and only those are compared again in the région and FR (the first record in a
/// territory is the first of its départements' firsts).
fn aggregate_sql(indicator: &Indicator, sources: &Sources) -> String {
    // The records counted beside their sums ([`counts_records`]): `n` per summed
    // row, `c` per aggregated one.
    let (c, n, sum_n) = if counts_records(indicator) {
        (", c", ", COUNT(*) AS n", ", SUM(n) AS c")
    } else {
        ("", "", "")
    };
    if let Some(table) = sources.aggregated {
        return format!("agg AS (SELECT tid, pid, dimension, modalite, a, b{c} FROM {table})");
    }
    let records = &sources.records;
    let calendrier = sources.calendrier;
    let dims = indicator.dimensions;
    let dim_columns: String = dimension_columns(dims).map(|d| format!(", {d}")).collect();
    let when = match indicator.grain {
        Grain::Jour => "jour",
        Grain::Periode => "pas, periode",
    };
    // Additive records summed before they are placed (not I07's numerator-only split,
    // whose modalities keep only records with a numerator).
    let summed = match indicator.measure {
        Measure::Sum => Some("SUM(w) AS w"),
        Measure::Ratio if !indicator.numerator_only_dimensions => {
            Some("SUM(num) AS num, SUM(den) AS den")
        }
        _ => None,
    };
    let source = match summed {
        Some(sums) => format!(
            "rec0 AS (SELECT departement, {when}{dim_columns}, {sums}{n} FROM rec
                      GROUP BY departement, {when}{dim_columns}),"
        ),
        None => String::new(),
    };
    let from = if summed.is_some() { "rec0" } else { "rec" };
    // Records with the number of their period of every pas (Grain::Jour) or of theirs.
    let dated = match indicator.grain {
        Grain::Jour => {
            format!("SELECT c.pid, r.* FROM {from} r JOIN {calendrier} c ON c.jour = r.jour")
        }
        Grain::Periode => format!(
            "SELECT p.pid, r.* FROM {from} r
             JOIN {periodes} p ON p.pas = r.pas AND p.periode = r.periode",
            periodes = sources.periodes
        ),
    };
    let placed = "SELECT t.tid, r.*
                  FROM dated r JOIN territoires t ON t.departement = r.departement";
    let dims = indicator.dimensions;
    let body = match indicator.measure {
        Measure::Sum => format!(
            "agg AS ({})",
            grouped(
                "placed",
                dims,
                &format!("SUM(w) AS a, CAST(NULL AS BIGINT) AS b{sum_n}")
            )
        ),
        Measure::Distinct | Measure::DistinctAll => {
            // An entity's first record in a territory and period is the one with the
            // smallest order key (ordre_date, then ordre_id), packed into one integer so
            // that plain MIN aggregates find it: per département first, then over the
            // départements' firsts for each territory; its modalities are then read from
            // the record holding that key (DataFusion's MIN over integers is a vectorised
            // hash aggregate, its ordered FIRST_VALUE and its windows are not).
            // DistinctAll: an entity counts when all its records in the territory and
            // period are `garde`, the minimum over its départements' minimums.
            // DistinctAll's `b`: every entity whose first is in the row, counted or not
            // (the row exists when b ≥ 1: it follows by difference, [`by_difference`]).
            let all = indicator.measure == Measure::DistinctAll;
            let (garde_dep, garde_ter, counted, entities) = if all {
                (
                    ", MIN(CASE WHEN garde THEN 1 ELSE 0 END) AS garde_dep",
                    ", MIN(r.garde_dep) AS garde_entite",
                    "SUM(CASE WHEN garde_entite = 1 THEN 1 ELSE 0 END)",
                    "COUNT(*)",
                )
            } else {
                ("", "", "COUNT(*)", "CAST(NULL AS BIGINT)")
            };
            let modalities: String = dimension_columns(dims)
                .map(|d| format!(", MIN({d}) AS {d}"))
                .collect();
            let read: String = dimension_columns(dims)
                .map(|d| format!(", r.{d}"))
                .collect();
            if sources.counted {
                // `ordre` ([`pack_firsts`]): the MIN is the first record and, in its low
                // bits, its modalities' number. The firsts, counted per territory,
                // period and modalities number ([`crate::firsts::count_firsts`]: the
                // `dep_k`, `ter_k` below, then counted by `k % 2^24`, entity by entity),
                // meet the modalities.
                let entities = if all {
                    "SUM(e)"
                } else {
                    "CAST(NULL AS BIGINT)"
                };
                return format!(
                    "ter_firsts AS (SELECT x.tid, x.pid, x.n, x.e{read} FROM rec_premiers x
                                    JOIN rec_modalites r ON r.modalites = x.modalites),
                     agg AS ({})",
                    grouped("ter_firsts", dims, &format!("SUM(n) AS a, {entities} AS b"))
                );
            }
            format!(
                "dep_k AS (SELECT {DEP_KEY}, entite, MIN({ORDER_KEY}) AS k{garde_dep}
                           FROM dated WHERE entite IS NOT NULL GROUP BY {DEP_KEY}, entite),
                 ter_k AS (SELECT t.tid, r.pid, r.entite, MIN(r.k) AS k{garde_ter}
                           FROM dep_k r JOIN territoires t ON t.departement = r.departement
                           GROUP BY t.tid, r.pid, r.entite),
                 rec_k AS (SELECT entite, {ORDER_KEY} AS k{modalities}
                           FROM rec WHERE entite IS NOT NULL GROUP BY 1, 2),
                 ter_firsts AS (SELECT x.*{read} FROM rec_k r
                                JOIN ter_k x ON r.entite = x.entite AND r.k = x.k),
                 agg AS ({})",
                grouped(
                    "ter_firsts",
                    dims,
                    &format!("{counted} AS a, {entities} AS b")
                )
            )
        }
        Measure::Ratio => {
            if indicator.numerator_only_dimensions {
                format!(
                    "unp AS ({}),
                     agg0 AS (SELECT {CELL}, SUM(num) AS a, SUM(den) AS b FROM unp
                              WHERE dimension = '' OR num > 0 GROUP BY {CELL}),
                     agg AS (SELECT x.tid, x.pid, x.dimension, x.modalite,
                                    x.a, CASE WHEN x.dimension = '' THEN x.b ELSE t.b END AS b
                             FROM agg0 x LEFT JOIN agg0 t
                               ON t.tid = x.tid AND t.pid = x.pid AND t.dimension = '')",
                    unpivot("placed", dims)
                )
            } else {
                format!(
                    "agg AS ({})",
                    grouped(
                        "placed",
                        dims,
                        &format!("SUM(num) AS a, SUM(den) AS b{sum_n}")
                    )
                )
            }
        }
        // Counted entity by entity ([`crate::firsts::count_distinct_ratio`]): `ent`
        // and `agg` below.
        Measure::DistinctRatio if sources.counted => "agg AS (SELECT tid, pid, '' AS dimension,
                                '' AS modalite, a, b FROM rec_ratio)"
            .to_owned(),
        Measure::DistinctRatio => format!(
            "dep_ent AS (SELECT {DEP_KEY}, entite,
                                MAX(CASE WHEN au_den THEN 1 ELSE 0 END) AS d,
                                MAX(CASE WHEN au_num THEN 1 ELSE 0 END) AS n
                         FROM dated WHERE entite IS NOT NULL GROUP BY {DEP_KEY}, entite),
             ent AS (SELECT t.tid, r.pid, r.entite, MAX(r.d) AS d, MAX(r.n) AS n
                     FROM dep_ent r JOIN territoires t ON t.departement = r.departement
                     GROUP BY t.tid, r.pid, r.entite),
             agg AS (SELECT {KEY}, '' AS dimension, '' AS modalite,
                            SUM(CASE WHEN d = 1 AND n = 1 THEN 1 ELSE 0 END) AS a, SUM(d) AS b
                     FROM ent GROUP BY {KEY})"
        ),
        Measure::Quantile => {
            let extra = if dims.contains(&"quantile") {
                format!(
                    " UNION ALL SELECT {KEY}, 'quantile', 'P75', q75, n FROM q WHERE dimension = ''
                      UNION ALL SELECT {KEY}, 'quantile', 'P90', q90, n FROM q WHERE dimension = ''"
                )
            } else {
                String::new()
            };
            if sources.counted {
                // Ranked cell by cell ([`crate::firsts::count_quantiles`]): `q` below.
                return format!(
                    "q AS (SELECT {CELL}, n, q50, q75, q90 FROM rec_quantiles),
                     agg AS (SELECT {CELL}, q50 AS a, n AS b FROM q{extra})"
                );
            }
            format!(
                "valued AS (SELECT * FROM placed WHERE v IS NOT NULL),
                 ranked AS ({}),
                 q AS (SELECT {CELL}, n, qs['q50'] AS q50, qs['q75'] AS q75, qs['q90'] AS q90
                       FROM ranked),
                 agg AS (SELECT {CELL}, q50 AS a, n AS b FROM q{extra})",
                grouped("valued", dims, "COUNT(*) AS n, quantiles_rang(v) AS qs")
            )
        }
    };
    format!("rec AS ({records}),\n {source}\n dated AS ({dated}),\n placed AS ({placed}),\n {body}")
}

/// The SQL that turns an indicator's records into its published rows: the total of
/// every published territory × period (zero counts included) and each modality with
/// records (one join of the grid with every aggregated row: a cell with records always
/// has its total among them), with `secret` set by the indicator's primary disclosure rule (values not yet
/// blanked: see [`crate::suppression`]).
pub fn grid_sql(indicator: &Indicator, t: i64, version: i64) -> String {
    grid_sql_over(indicator, t, version, &Sources::catalogue(indicator))
}

/// Where an indicator's grid SQL reads its records, calendar and periods.
pub(crate) struct Sources {
    /// The records' SQL.
    pub records: String,
    pub calendrier: &'static str,
    pub periodes: &'static str,
    /// [`register_records`] aggregated the records: `rec_modalites` and `rec_premiers`
    /// (distinct counts), `rec_ratio` (distinct ratios), `rec_quantiles` (quantiles)
    /// are registered.
    pub counted: bool,
    /// A table already holding the aggregates `(tid, pid, dimension, modalite, a, b)`
    /// ([`cells_by_difference`]): no record is read.
    pub aggregated: Option<&'static str>,
}

impl Sources {
    /// The catalogue's SQL over every published period.
    pub fn catalogue(indicator: &Indicator) -> Self {
        Sources {
            records: resolved_sql(indicator),
            calendrier: "calendrier",
            periodes: "periodes",
            counted: false,
            aggregated: None,
        }
    }

    /// Records already computed (`rec_mat`), restricted to the selected periods
    /// (`sel_periodes`, `sel_calendrier`).
    fn selected(indicator: &Indicator) -> Self {
        let records = match indicator.grain {
            Grain::Jour => {
                "SELECT r.* FROM rec_mat r WHERE r.jour IN (SELECT jour FROM sel_calendrier)"
            }
            Grain::Periode => {
                "SELECT r.* FROM rec_mat r
                 WHERE EXISTS (SELECT 1 FROM sel_periodes p
                               WHERE p.pas = r.pas AND p.periode = r.periode)"
            }
        };
        Sources {
            records: records.to_owned(),
            calendrier: "sel_calendrier",
            periodes: "sel_periodes",
            counted: counts_entities(indicator),
            aggregated: None,
        }
    }
}

fn grid_sql_over(indicator: &Indicator, t: i64, version: i64, sources: &Sources) -> String {
    let per_day = |x: &str| {
        if indicator.per_observed_day {
            format!("CAST({x} AS DOUBLE) / CAST(p.jours_obs AS DOUBLE)")
        } else {
            format!("CAST({x} AS DOUBLE)")
        }
    };
    let values = match indicator.measure {
        Measure::Sum | Measure::Distinct | Measure::DistinctAll => format!(
            "{} AS valeur, CAST(NULL AS DOUBLE) AS numerateur, CAST(NULL AS DOUBLE) AS denominateur",
            per_day("COALESCE(r.a, 0)")
        ),
        Measure::Ratio | Measure::DistinctRatio => format!(
            "CASE WHEN COALESCE(r.b, 0) = 0 THEN CAST(NULL AS DOUBLE)
                  ELSE CAST(r.a AS DOUBLE) / CAST(r.b AS DOUBLE) END AS valeur,
             {} AS numerateur, {} AS denominateur",
            per_day("COALESCE(r.a, 0)"),
            per_day("COALESCE(r.b, 0)")
        ),
        Measure::Quantile => "CAST(r.a AS DOUBLE) AS valeur, CAST(NULL AS DOUBLE) AS numerateur,
                              CAST(COALESCE(r.b, 0) AS DOUBLE) AS denominateur"
            .to_owned(),
    };
    let secret = match indicator.sdc {
        Disclosure::Compte => format!("(valeur >= 1 AND valeur <= {})", t - 1),
        Disclosure::Ratio => format!(
            "((numerateur >= 1 AND numerateur <= {m}) OR (denominateur > 0 AND denominateur < {t})
              OR (denominateur - numerateur >= 1 AND denominateur - numerateur <= {m}))",
            m = t - 1
        ),
        Disclosure::Quantile => format!("(denominateur >= 1 AND denominateur < {t})"),
        Disclosure::Aucune => "FALSE".to_owned(),
    };
    let territory = match indicator.territoire {
        Some(d) => format!("WHERE g.niveau = 'DEPARTEMENT' AND g.territoire = '{d}'"),
        None => String::new(),
    };
    let effectif = match indicator.measure {
        Measure::DistinctAll => "CAST(COALESCE(r.b, 0) AS BIGINT)",
        _ if counts_records(indicator) => "CAST(COALESCE(r.c, 0) AS BIGINT)",
        _ => "CAST(NULL AS BIGINT)",
    };
    format!(
        "WITH {agg},
         grille AS (
             SELECT g.niveau, g.territoire, p.pas, p.periode, p.debut, p.fin,
                    COALESCE(r.dimension, '') AS dimension, COALESCE(r.modalite, '') AS modalite, {values},
                    {effectif} AS {EFFECTIF}
             FROM publies g CROSS JOIN {periodes} p
             LEFT JOIN agg r ON r.tid = g.tid AND r.pid = p.pid
             {territory}),
         controle AS (SELECT *, COALESCE({secret}, FALSE) AS secret FROM grille)
         SELECT '{id}' AS indicateur, niveau AS territoire_niveau, territoire, pas, periode, debut, fin,
                dimension, modalite, valeur, secret, numerateur, denominateur,
                'PROVISOIRE' AS statut, CAST({version} AS BIGINT) AS version, CAST(NULL AS VARCHAR) AS revision,
                {EFFECTIF}
         FROM controle",
        agg = aggregate_sql(indicator, sources),
        periodes = sources.periodes,
        id = indicator.id,
    )
}

/// The grid's internal column beside the stats columns: the entities whose first is in
/// a [`Measure::DistinctAll`] row, counted or not (null for other measures). Never
/// published: the computation's state keeps it, so that such a row's existence shows in
/// its sums and its cells follow by difference.
pub(crate) const EFFECTIF: &str = "effectif";

/// The schema of the grid's rows: the stats table's, then [`EFFECTIF`].
pub(crate) fn grid_schema() -> arrow::datatypes::SchemaRef {
    let mut fields: Vec<Field> = stats_schema()
        .fields()
        .iter()
        .map(|f| f.as_ref().clone())
        .collect();
    fields.push(Field::new(EFFECTIF, DataType::Int64, true));
    Arc::new(Schema::new(fields))
}

/// Casts a result batch to the stats table's exact schema.
pub fn conform(batch: &RecordBatch) -> Result<RecordBatch> {
    conform_over(batch, stats_schema())
}

/// Casts a grid SQL's result batch to [`grid_schema`].
fn conform_grid(batch: &RecordBatch) -> Result<RecordBatch> {
    conform_over(batch, grid_schema())
}

fn conform_over(batch: &RecordBatch, schema: arrow::datatypes::SchemaRef) -> Result<RecordBatch> {
    let columns = schema
        .fields()
        .iter()
        .map(|f| {
            let column = batch.column_by_name(f.name()).ok_or_else(|| {
                arrow::error::ArrowError::SchemaError(format!(
                    "colonne {} absente du résultat",
                    f.name()
                ))
            })?;
            cast(column, f.data_type())
        })
        .collect::<Result<Vec<ArrayRef>, _>>()?;
    Ok(RecordBatch::try_new(schema, columns)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The values of `SELECT v FROM name` in `ctx`, sorted.
    async fn values(ctx: &SessionContext, name: &str) -> Vec<i64> {
        let batches = ctx
            .sql(&format!("SELECT v FROM {name}"))
            .await
            .unwrap()
            .collect()
            .await
            .unwrap();
        let mut v: Vec<i64> = batches
            .iter()
            .flat_map(|b| {
                b.column(0)
                    .as_primitive::<arrow::datatypes::Int64Type>()
                    .values()
                    .to_vec()
            })
            .collect();
        v.sort();
        v
    }

    fn table_of(v: &[i64]) -> RecordBatch {
        RecordBatch::try_from_iter([("v", Arc::new(Int64Array::from(v.to_vec())) as ArrayRef)])
            .unwrap()
    }

    #[tokio::test]
    async fn scoped_sessions_read_the_same_tables_and_keep_their_own() {
        let ctx = SessionContext::new();
        register_batch(&ctx, "base", table_of(&[1, 2])).unwrap();
        let (a, b) = (scoped(&ctx).await.unwrap(), scoped(&ctx).await.unwrap());
        // The same name registered in two scopes: each reads its own.
        register_batch(&a, "rec_mat", table_of(&[10])).unwrap();
        register_batch(&b, "rec_mat", table_of(&[20, 21])).unwrap();
        assert_eq!(values(&a, "rec_mat").await, vec![10]);
        assert_eq!(values(&b, "rec_mat").await, vec![20, 21]);
        assert!(!ctx.table_exist("rec_mat").unwrap());
        // Both read the base's tables; a scope replacing or dropping one leaves the base's.
        assert_eq!(values(&a, "base").await, vec![1, 2]);
        register_batch(&b, "base", table_of(&[3])).unwrap();
        a.deregister_table("base").unwrap();
        assert_eq!(values(&b, "base").await, vec![3]);
        assert!(!a.table_exist("base").unwrap());
        assert_eq!(values(&ctx, "base").await, vec![1, 2]);
    }

    #[test]
    fn the_carried_cells_are_taken_as_runs() {
        let (t, f) = (true, false);
        assert_eq!(runs_of(&[]), vec![]);
        assert_eq!(runs_of(&[f, f]), vec![]);
        assert_eq!(runs_of(&[t, t, t]), vec![(0, 3)]);
        assert_eq!(
            runs_of(&[f, t, t, f, t, f, f, t, t]),
            vec![(1, 2), (4, 1), (7, 2)]
        );
    }

    #[test]
    fn recomputed_cells_find_the_last_grid_cell_of_their_key_among_the_candidates() {
        // Cells as (indicateur, territoire, periode); the other key columns the same.
        let cells = |rows: &[(&str, &str, &str)]| {
            let n = rows.len();
            let column = |name: &str, values: Vec<&str>| {
                (
                    name.to_owned(),
                    Arc::new(StringArray::from(values)) as ArrayRef,
                )
            };
            RecordBatch::try_from_iter(vec![
                column("indicateur", rows.iter().map(|r| r.0).collect()),
                column("territoire_niveau", vec!["DEPARTEMENT"; n]),
                column("territoire", rows.iter().map(|r| r.1).collect()),
                column("pas", vec!["MOIS"; n]),
                column("periode", rows.iter().map(|r| r.2).collect()),
                column("dimension", vec![""; n]),
                column("modalite", vec![""; n]),
            ])
            .unwrap()
        };
        let old = cells(&[
            ("U01", "75", "2025-01"),
            ("U01", "93", "2025-01"),
            ("U01", "75", "2025-02"),
            ("U02", "75", "2025-01"),
            // Keys whose parts only join the same: never mistaken for one another.
            ("U0", "175", "2025-01"),
        ]);
        let new = cells(&[
            ("U01", "75", "2025-02"),
            ("U01", "93", "2025-01"),
            ("U01", "13", "2025-01"),
            ("U02", "75", "2025-01"),
            ("U01", "75", "2025-01"),
            ("U017", "5", "2025-01"),
        ]);
        // Row 0 of the old grid is carried (not a candidate): its key finds nothing.
        let found = match_keys(&old, &[1, 2, 3, 4], &new).unwrap();
        assert_eq!(found, vec![Some(2), Some(1), None, Some(3), None, None]);
        let found = match_keys(&old, &[0, 1, 2, 3, 4], &new).unwrap();
        assert_eq!(found, vec![Some(2), Some(1), None, Some(3), Some(0), None]);
        assert_eq!(match_keys(&old, &[], &new).unwrap(), vec![None; 6]);
    }

    #[test]
    fn only_integer_sums_with_visible_rows_follow_by_difference() {
        let schema = |columns: &[(&str, DataType)]| {
            Schema::new(
                columns
                    .iter()
                    .map(|(n, t)| Field::new(*n, t.clone(), true))
                    .collect::<Vec<_>>(),
            )
        };
        let ints = schema(&[
            ("w", DataType::Int64),
            ("num", DataType::Int64),
            ("den", DataType::Int64),
        ]);
        let code = |c: &str| CATALOGUE.iter().find(|i| i.code == c).unwrap();
        let rule = |c: &str, s: &Schema| by_difference(code(c), &resolved_sql(code(c)), s);
        // Counts of records, ratios counting each record once, distinct counts.
        assert_eq!(rule("U01", &ints), Some("a >= 1"));
        assert_eq!(rule("U04", &ints), Some("b >= 1"));
        assert_eq!(rule("U02", &ints), Some("a >= 1"));
        assert_eq!(rule("U10", &ints), Some("TRUE"));
        // Sums that may add to 0 without dimensions: every row is a total, which exists
        // in every cell (U09, persons of unmet requests; O09, hotel nights).
        assert_eq!(rule("U09", &ints), Some("FALSE"));
        assert_eq!(rule("O09", &ints), Some("FALSE"));
        // Persons counted only if all their requests are: a row exists while it holds
        // some person's first request (`b`, the grid's `effectif`), counted or not.
        assert_eq!(rule("U06", &ints), Some("b >= 1"));
        // Averages per observed day: a record may add 0 (a stay without nights in the
        // observed days), so a row exists while it counts records (`c`, the grid's
        // `effectif`).
        for c in ["O02", "O03", "O04"] {
            assert!(counts_records(code(c)), "{c}");
            assert_eq!(rule(c, &ints), Some("c >= 1"), "{c}");
        }
        assert!(!counts_records(code("U01")) && !counts_records(code("O01")));
        // A sum whose modality rows may add to 0 (O01, funded places by type), a
        // quantile, a numerator-only split.
        for c in ["O01", "I03", "I07"] {
            assert_eq!(rule(c, &ints), None, "{c}");
        }
        let floats_terms = schema(&[("num", DataType::Float64), ("den", DataType::Int64)]);
        assert_eq!(rule("O04", &floats_terms), None);
        // The same count with terms that are not integers.
        let floats = schema(&[("w", DataType::Float64)]);
        assert_eq!(rule("U01", &floats), None);

        assert!(selects_one("SELECT a, 1 AS w, b FROM t", "w"));
        assert!(selects_one("SELECT\n  1 AS den, x AS num FROM t", "den"));
        assert!(!selects_one("SELECT 21 AS w FROM t", "w"));
        assert!(!selects_one("SELECT a, 1 AS w2 FROM t", "w"));
        assert!(!selects_one(
            "SELECT SUM(w) AS w FROM (SELECT 1 AS w FROM t) x",
            "w"
        ));
        assert!(!selects_one(
            "SELECT 1 AS w FROM t UNION ALL SELECT 2 FROM u",
            "w"
        ));
        assert!(!selects_one("SELECT COALESCE(x, 1) AS w FROM t", "w"));
    }

    #[test]
    fn records_dated_by_the_bounding_columns_are_recognised() {
        let code = |c: &str| CATALOGUE.iter().find(|i| i.code == c).unwrap();
        for c in [
            "U01", "U02", "U10", "I03", "I06", "O06", "P02", "E01", "E02",
        ] {
            assert!(dated_by_bounds(&resolved_sql(code(c))), "{c}");
        }
        // Records that depend on the periods (stocks, averages); a day read from a
        // subquery's column (I04's `f.jour`) is not recognised.
        for c in ["O01", "O03", "I02", "I05", "I04"] {
            assert!(!dated_by_bounds(&resolved_sql(code(c))), "{c}");
        }
        assert!(dated_by_bounds(
            "SELECT a, MIN(o.date_orientation) AS jour FROM orientation o GROUP BY a"
        ));
        assert!(!dated_by_bounds(
            "SELECT d.departement, d.date_statut AS jour FROM demande d"
        ));
        assert!(!dated_by_bounds(
            "SELECT a, x.date_demande AS jour FROM t x \
             UNION ALL SELECT a, e.date_evaluation FROM evaluation e"
        ));
        assert!(!dated_by_bounds(
            "SELECT a, x.date_demande AS jour FROM t x UNION SELECT a, e.date_evaluation FROM e"
        ));
        assert!(!dated_by_bounds(
            "SELECT a, x.date_demande + 1 AS jour FROM t x"
        ));
    }

    fn d(y: i32, m: u32, day: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, day).unwrap()
    }

    /// Two observed days, 1 and 2 March 2025: their JOUR periods (0, 1) and the month
    /// (2), with the calendar the compute registers (one row per day of each period).
    fn two_days() -> Prepared {
        let period = |pas: &'static str, label: &str, debut, fin| Period {
            pas,
            label: label.to_owned(),
            debut,
            fin,
        };
        let days = [d(2025, 3, 1), d(2025, 3, 2), d(2025, 3, 1), d(2025, 3, 2)];
        let calendrier = RecordBatch::try_new(
            Arc::new(Schema::new(vec![Field::new(
                "jour",
                DataType::Date32,
                false,
            )])),
            vec![Arc::new(Date32Array::from_iter_values(
                days.iter().map(|&day| Date32Type::from_naive_date(day)),
            ))],
        )
        .unwrap();
        Prepared {
            bounds: Some((d(2025, 3, 1), d(2025, 3, 2))),
            periods: vec![
                period("JOUR", "2025-03-01", d(2025, 3, 1), d(2025, 3, 2)),
                period("JOUR", "2025-03-02", d(2025, 3, 2), d(2025, 3, 3)),
                period("MOIS", "2025-03", d(2025, 3, 1), d(2025, 4, 1)),
            ],
            periodes: RecordBatch::new_empty(Arc::new(Schema::empty())),
            calendrier,
            calendrier_period: vec![0, 1, 2, 2],
            publies: Vec::new(),
        }
    }

    /// Records by day: a record is kept when its day is in a selected period's calendar;
    /// a null day, a day before or after the calendar or in an unselected period is not.
    #[test]
    fn records_by_day_are_kept_in_the_selected_periods_only() {
        let prepared = two_days();
        let schema = Arc::new(Schema::new(vec![
            Field::new("jour", DataType::Date32, true),
            Field::new("w", DataType::Int64, false),
        ]));
        let day = |m: u32, dd: u32| Some(Date32Type::from_naive_date(d(2025, m, dd)));
        let records = vec![
            RecordBatch::try_new(
                schema.clone(),
                vec![
                    Arc::new(Date32Array::from(vec![
                        day(3, 1),
                        day(3, 2),
                        None,
                        day(2, 28),
                        day(3, 3),
                    ])),
                    Arc::new(Int64Array::from(vec![1, 2, 3, 4, 5])),
                ],
            )
            .unwrap(),
        ];
        let weights = |kept: Vec<RecordBatch>| -> Vec<i64> {
            kept.iter()
                .flat_map(|b| {
                    b.column(1)
                        .as_primitive::<arrow::datatypes::Int64Type>()
                        .values()
                        .to_vec()
                })
                .collect()
        };
        let only_2_march = [false, true, false];
        let kept = in_selected_periods(Grain::Jour, records.clone(), &prepared, &only_2_march);
        assert_eq!(weights(kept.unwrap()), vec![2]);
        let the_month = [false, false, true];
        let kept = in_selected_periods(Grain::Jour, records.clone(), &prepared, &the_month);
        assert_eq!(weights(kept.unwrap()), vec![1, 2]);
        let kept = in_selected_periods(Grain::Jour, records, &prepared, &[false; 3]);
        assert!(kept.unwrap().is_empty());
    }

    /// Records by period: kept when their (pas, periode) is a selected period, never when
    /// either is null.
    #[test]
    fn records_by_period_are_kept_in_the_selected_periods_only() {
        let prepared = two_days();
        let schema = Arc::new(Schema::new(vec![
            Field::new("pas", DataType::Utf8, true),
            Field::new("periode", DataType::Utf8, true),
        ]));
        let records = vec![
            RecordBatch::try_new(
                schema,
                vec![
                    Arc::new(StringArray::from(vec![
                        Some("MOIS"),
                        Some("JOUR"),
                        Some("JOUR"),
                        None,
                        Some("JOUR"),
                    ])),
                    Arc::new(StringArray::from(vec![
                        Some("2025-03"),
                        Some("2025-03-01"),
                        Some("2025-03-02"),
                        Some("2025-03-01"),
                        None,
                    ])),
                ],
            )
            .unwrap(),
        ];
        let kept =
            in_selected_periods(Grain::Periode, records, &prepared, &[true, false, true]).unwrap();
        let periods: Vec<String> = kept
            .iter()
            .flat_map(|b| {
                let pas = b.column(0).as_string::<i32>();
                let periode = b.column(1).as_string::<i32>();
                (0..b.num_rows())
                    .map(|i| format!("{} {}", pas.value(i), periode.value(i)))
                    .collect::<Vec<_>>()
            })
            .collect();
        assert_eq!(periods, vec!["MOIS 2025-03", "JOUR 2025-03-01"]);
    }

    /// `pack_firsts` on records worked by hand: the rank follows (ordre_date, ordre_id),
    /// records of one entity with the same key share it and take each dimension's
    /// smallest non-null value, another entity with the same key gets its own rank, and
    /// records without an entity or an order key get none.
    #[test]
    fn packed_order_ranks_records_and_numbers_their_modalities() {
        let indicator = crate::by_id("personnes_demandeuses").unwrap();
        let day = |m: u32, dd: u32| Some(Date32Type::from_naive_date(d(2025, m, dd)));
        let schema = Arc::new(Schema::new(vec![
            Field::new("departement", DataType::Utf8, true),
            Field::new("entite", DataType::Utf8, true),
            Field::new("ordre_date", DataType::Date32, true),
            Field::new("ordre_id", DataType::Int64, true),
            Field::new("tranche_age", DataType::Utf8, true),
            Field::new("sexe", DataType::Utf8, true),
        ]));
        // (entite, ordre_date, ordre_id, tranche_age, sexe)
        type Row<'a> = (
            Option<&'a str>,
            Option<i32>,
            i64,
            Option<&'a str>,
            Option<&'a str>,
        );
        let batch = |rows: &[Row]| {
            RecordBatch::try_new(
                schema.clone(),
                vec![
                    Arc::new(StringArray::from(vec![Some("75"); rows.len()])),
                    Arc::new(StringArray::from(
                        rows.iter().map(|r| r.0).collect::<Vec<_>>(),
                    )),
                    Arc::new(Date32Array::from(
                        rows.iter().map(|r| r.1).collect::<Vec<_>>(),
                    )),
                    Arc::new(Int64Array::from(
                        rows.iter().map(|r| r.2).collect::<Vec<_>>(),
                    )),
                    Arc::new(StringArray::from(
                        rows.iter().map(|r| r.3).collect::<Vec<_>>(),
                    )),
                    Arc::new(StringArray::from(
                        rows.iter().map(|r| r.4).collect::<Vec<_>>(),
                    )),
                ],
            )
            .unwrap()
        };
        // Two batches: ranks and modalities are taken over all the records.
        let records = vec![
            batch(&[
                (Some("A"), day(1, 2), 5, Some("25-34"), Some("F")),
                (Some("B"), day(1, 1), 9, None, Some("M")),
                (Some("A"), day(1, 1), 7, Some("18-24"), None),
            ]),
            batch(&[
                (Some("A"), day(1, 1), 7, Some("16-17"), Some("F")),
                (None, day(1, 1), 1, Some("18-24"), Some("F")),
                (Some("C"), None, 3, Some("18-24"), Some("F")),
                (Some("B"), day(1, 1), 7, Some("60+"), Some("M")),
            ]),
        ];
        let (schema, records) = number_entities(schema, records).unwrap();
        let (_, packed, modalites) = pack_firsts(indicator, schema, records).unwrap();
        let ordre: Vec<Option<i64>> = packed
            .iter()
            .flat_map(|b| {
                b.column_by_name("ordre")
                    .unwrap()
                    .as_primitive::<arrow::datatypes::Int64Type>()
                    .iter()
                    .collect::<Vec<_>>()
            })
            .collect();
        // Sorted by key then entity: A's two records of key (01-01, 7) at 0 and 1, B's
        // record of the same key at 2, B's (01-01, 9) at 3, A's (01-02, 5) at 4.
        let rank = |o: Option<i64>| o.map(|o| o >> MODALITIES_BITS);
        assert_eq!(
            ordre.iter().map(|o| rank(*o)).collect::<Vec<_>>(),
            [Some(4), Some(3), Some(0), Some(0), None, None, Some(2)]
        );
        // Each record's modalities, read back from the table.
        let text = |name: &str, i: usize| -> Option<String> {
            let c = modalites.column_by_name(name).unwrap().as_string::<i32>();
            c.is_valid(i).then(|| c.value(i).to_owned())
        };
        let modalities = |o: Option<i64>| {
            let m = (o.unwrap() & ((1 << MODALITIES_BITS) - 1)) as usize;
            (text("tranche_age", m), text("sexe", m))
        };
        let s = |x: &str| Some(x.to_owned());
        assert_eq!(modalities(ordre[0]), (s("25-34"), s("F")));
        assert_eq!(modalities(ordre[1]), (None, s("M")));
        // The tie: the smallest age band of the two, the only non-null sex.
        assert_eq!(modalities(ordre[2]), (s("16-17"), s("F")));
        assert_eq!(ordre[2], ordre[3]);
        assert_eq!(modalities(ordre[6]), (s("60+"), s("M")));
        assert_eq!(modalites.num_rows(), 4);
    }

    #[test]
    fn periods_cover_the_observed_interval() {
        let p = periods(d(2024, 12, 15), d(2025, 2, 1));
        let of = |pas: &str| -> Vec<&str> {
            p.iter()
                .filter(|x| x.pas == pas)
                .map(|x| x.label.as_str())
                .collect()
        };
        // JOUR: the 90 days ending at D1, but none before D0: 15 December to 1 February.
        let jours = of("JOUR");
        assert_eq!(jours.len(), 17 + 31 + 1);
        assert_eq!(
            (jours[0], *jours.last().unwrap()),
            ("2024-12-15", "2025-02-01")
        );
        // SEMAINE: ISO weeks; Monday 2024-12-30 opens 2025-W01.
        assert_eq!(
            of("SEMAINE"),
            [
                "2024-W50", "2024-W51", "2024-W52", "2025-W01", "2025-W02", "2025-W03", "2025-W04",
                "2025-W05"
            ]
        );
        let w01 = p.iter().find(|x| x.label == "2025-W01").unwrap();
        assert_eq!((w01.debut, w01.fin), (d(2024, 12, 30), d(2025, 1, 6)));
        assert_eq!(of("MOIS"), ["2024-12", "2025-01", "2025-02"]);
        assert_eq!(of("TRIMESTRE"), ["2024-T4", "2025-T1"]);
        assert_eq!(of("ANNEE"), ["2024", "2025"]);
        assert_eq!(of("HIVER"), ["2024-2025"]);
        let hiver = p.iter().find(|x| x.pas == "HIVER").unwrap();
        assert_eq!((hiver.debut, hiver.fin), (d(2024, 11, 1), d(2025, 4, 1)));
        let t1 = p.iter().find(|x| x.label == "2025-T1").unwrap();
        assert_eq!(t1.fin, d(2025, 4, 1));
        // A summer interval has no winter; a long one keeps only 90 days.
        let summer = periods(d(2025, 5, 1), d(2025, 9, 30));
        assert!(summer.iter().all(|x| x.pas != "HIVER"));
        assert_eq!(summer.iter().filter(|x| x.pas == "JOUR").count(), 90);
        assert_eq!(
            summer.iter().find(|x| x.pas == "JOUR").unwrap().debut,
            d(2025, 7, 3)
        );
    }
}
