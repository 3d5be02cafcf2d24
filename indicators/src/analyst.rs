//! The analyst zone: k-anonymous micro-data for SQL, rebuilt once per complete month of
//! data (and after purges; [`rebuild_reason`]).
//!
//! Three tables (`demandes`, `sejours`, `orientations`), one row per record, with the
//! waiting times and durations precomputed in days. Their pseudonyms are keyed per
//! release (subkey `analyst/<release>` over the detail zone's ids and pseudonyms): they
//! link the records of one release to each other, never to the detail zone nor to
//! another release. Sensitive flags (evaluations) never reach this zone.
//!
//! Household sizes are capped at 5 ("5 or more"): a large household is rare enough to
//! single it out.
//!
//! Quasi-identifiers: département, month, age band, sex, composition and nationality.
//! The composition is the household's at the record's own date, as INDICATORS.md
//! defines it (derived at ingest); the others are read at the request the record belongs
//! to (the request's persons and their age bands at its date; the reference person is
//! the principal applicant, else an adult).
//! They are generalised along [`anonymize::kanon::hierarchy`] until every combination
//! holds at least k records (k = 11 by default); the records of the classes that still
//! fall short are suppressed and counted in `analyst/anonymisation`.

use std::collections::BTreeMap;
use std::sync::Arc;

use anonymize::MasterKey;
use anonymize::kanon::{self, QuasiIdentifier, hierarchy};
use arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, Date32Array, Int64Array, RecordBatch, StringArray,
};
use arrow::compute::{cast, concat_batches};
use arrow::datatypes::{DataType, Field, Int64Type, Schema};
use chrono::{Datelike, NaiveDate};
use datafusion::prelude::SessionContext;
use warehouse::Lake;

use crate::compute::Result;

/// The zone's folder in the lake.
pub const ZONE: &str = "analyst";

/// The table that records, per release and analyst table, what the anonymisation did.
pub const LOG_TABLE: &str = "anonymisation";

/// Options of the analyst zone.
#[derive(Debug, Clone)]
pub struct AnalystOptions {
    /// Every combination of quasi-identifiers holds at least k records.
    pub k: usize,
    /// The share of records the anonymisation may suppress rather than generalise more.
    pub max_suppression: f64,
    /// Rebuild the zone with this release even if [`rebuild_reason`] finds no reason to.
    pub rebuild: bool,
}

impl Default for AnalystOptions {
    fn default() -> Self {
        Self {
            k: 11,
            max_suppression: 0.01,
            rebuild: false,
        }
    }
}

/// Bumped when the analyst tables change columns or meaning: the next release rebuilds
/// the zone. (Logs written before the zone had a cadence have no format: 1.)
pub const FORMAT: i64 = 2;

/// What the stored zone was built from, as its log (`analyst/anonymisation`) records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Built {
    /// The release whose key made its pseudonyms.
    pub release: i64,
    pub k: i64,
    pub format: i64,
    /// The ingest run it read (0: not recorded).
    pub run: i64,
    /// The last day of the data it holds.
    pub last_day: Option<NaiveDate>,
    /// Every table of the zone holds rows of that release only (false: a compute stopped
    /// while it rewrote the tables, or a table is missing).
    pub whole: bool,
}

/// What a release knows when it decides whether to rebuild the zone.
#[derive(Debug, Clone)]
pub struct Now {
    pub k: i64,
    /// The ingest run the release reads.
    pub run: i64,
    /// The last day of the data it reads.
    pub last_day: Option<NaiveDate>,
    /// `compute --analyst`.
    pub forced: bool,
    /// An ingest since the zone's run deleted households from the detail zone (purged in
    /// the source), or a run in between left no manifest to tell.
    pub households_deleted: bool,
    /// The pseudonymisation key changed since the zone's run (or that run's manifest is
    /// gone).
    pub key_changed: bool,
}

/// The last month whose every day lies in data ending on `last_day`.
pub fn last_complete_month(last_day: NaiveDate) -> (i32, u32) {
    if last_day.succ_opt().is_none_or(|d| d.day() == 1) {
        (last_day.year(), last_day.month())
    } else if last_day.month() == 1 {
        (last_day.year() - 1, 12)
    } else {
        (last_day.year(), last_day.month() - 1)
    }
}

/// Why a release rebuilds the analyst zone (in French, as `compute` prints it), or `None`
/// when it keeps the stored one.
///
/// The zone is a monthly micro-data release, not a daily one: two k-anonymous tables a
/// day apart differ by one day's records, a handful per class, and their difference
/// singles those out (a complementary-release attack) whatever the pseudonyms. So a
/// release rebuilds it only when the data holds one more complete month than the zone
/// does, and whenever the zone may hold what must leave it or may no longer be what the
/// configuration asks: households purged in the source since it was built, another key,
/// another k, another format. `compute --analyst` rebuilds it on demand.
pub fn rebuild_reason(built: Option<&Built>, now: &Now) -> Option<String> {
    let Some(built) = built else {
        return Some("pas encore de zone analyste".to_owned());
    };
    if now.forced {
        return Some("reconstruction demandée (--analyst)".to_owned());
    }
    if !built.whole {
        return Some(
            "zone analyste incomplète (calcul interrompu pendant sa reconstruction)".to_owned(),
        );
    }
    if built.format != FORMAT {
        return Some("format de la zone analyste modifié".to_owned());
    }
    if built.k != now.k {
        return Some(format!("k modifié ({} → {})", built.k, now.k));
    }
    if now.key_changed {
        return Some("clé de pseudonymisation changée".to_owned());
    }
    if now.households_deleted {
        return Some("ménages purgés à la source depuis sa construction".to_owned());
    }
    if now.run < built.run {
        return Some(format!(
            "ingestion n° {} plus ancienne que celle de la zone (n° {})",
            now.run, built.run
        ));
    }
    let complete = |d: Option<NaiveDate>| d.map(last_complete_month);
    if complete(built.last_day) != complete(now.last_day) {
        return Some(match complete(now.last_day) {
            Some((y, m)) => format!("données complètes jusqu'au mois {y:04}-{m:02}"),
            None => "plus aucune donnée observée".to_owned(),
        });
    }
    None
}

/// Between ingest run `from` (exclusive; the zone's) and `now` (inclusive): whether an
/// ingest deleted households from the detail zone, and whether the key changed. A run
/// whose manifest is missing counts as both.
pub fn changes_since(lake: &Lake, from: i64, now: &warehouse::RunManifest) -> Result<(bool, bool)> {
    let Some(then) = u64::try_from(from)
        .ok()
        .map(|n| lake.run_manifest(n))
        .transpose()?
        .flatten()
    else {
        return Ok((true, true));
    };
    let key_changed = then.key_fingerprint != now.key_fingerprint;
    let deletes =
        |m: &warehouse::RunManifest| m.changes.get("menage").is_some_and(|c| c.supprimees > 0);
    let mut deleted = now.run > then.run && deletes(now);
    for run in then.run + 1..now.run {
        match lake.run_manifest(run)? {
            Some(m) => deleted |= deletes(&m),
            None => return Ok((true, true)),
        }
    }
    Ok((deleted, key_changed))
}

/// What the stored zone was built from; `None` when there is no zone yet.
pub async fn built(lake: &Lake) -> Result<Option<Built>> {
    let Some(log) = lake.open(ZONE, LOG_TABLE, None).await? else {
        return Ok(None);
    };
    let ctx = warehouse::new_session();
    lake.register(&ctx, LOG_TABLE, &log).await?;
    let batches = ctx
        .sql(&format!("SELECT * FROM {LOG_TABLE} LIMIT 1"))
        .await?
        .collect()
        .await?;
    let Some(b) = batches.iter().find(|b| b.num_rows() > 0) else {
        return Ok(None);
    };
    let int = |name: &str| -> Result<Option<i64>> {
        let Some(c) = b.column_by_name(name) else {
            return Ok(None);
        };
        let c = cast(c, &DataType::Int64)?;
        let c = c.as_primitive::<Int64Type>();
        Ok(c.is_valid(0).then(|| c.value(0)))
    };
    let last_day = match b.column_by_name("dernier_jour") {
        Some(c) => {
            let c = cast(c, &DataType::Date32)?;
            let c = c.as_primitive::<arrow::datatypes::Date32Type>();
            if c.is_valid(0) {
                c.value_as_date(0)
            } else {
                None
            }
        }
        None => None,
    };
    let release = int("publication")?.unwrap_or(0);
    // The log is written after the tables: check they are all of its release.
    let mut whole = true;
    for spec in TABLES {
        let Some(table) = lake.open(ZONE, spec.name, None).await? else {
            whole = false;
            break;
        };
        lake.register(&ctx, spec.name, &table).await?;
        let found = ctx
            .sql(&format!(
                "SELECT MIN(publication) AS a, MAX(publication) AS b FROM {}",
                spec.name
            ))
            .await?
            .collect()
            .await?;
        let bounds = found.iter().find(|b| b.num_rows() > 0).map(|b| {
            let side = |i: usize| {
                cast(b.column(i), &DataType::Int64).ok().and_then(|c| {
                    let c = c.as_primitive::<Int64Type>();
                    c.is_valid(0).then(|| c.value(0))
                })
            };
            (side(0), side(1))
        });
        // An empty table (no records of its kind) is whole.
        if !matches!(bounds, None | Some((None, None)))
            && bounds != Some((Some(release), Some(release)))
        {
            whole = false;
            break;
        }
    }
    Ok(Some(Built {
        release,
        k: int("k_cible")?.unwrap_or(0),
        format: int("format")?.unwrap_or(1),
        run: int("ingestion")?.unwrap_or(0),
        last_day,
        whole,
    }))
}

/// The quasi-identifiers, in the order of every table, with their hierarchies.
pub const QUASI_IDENTIFIERS: &[QuasiIdentifierSpec] = &[
    qi("departement", hierarchy::departement, 3, 3.0),
    qi("mois", hierarchy::mois, 3, 3.0),
    qi("tranche_age", hierarchy::tranche_age, 3, 1.0),
    qi("sexe", hierarchy::masque, 2, 1.0),
    qi("composition", hierarchy::composition, 3, 1.5),
    qi("nationalite", hierarchy::nationalite, 3, 1.0),
];

/// One quasi-identifier of the analyst zone: its column, its hierarchy (number of
/// levels, the raw one included) and the weight of its generalisation in the loss.
pub struct QuasiIdentifierSpec {
    pub name: &'static str,
    pub generalise: fn(&str, usize) -> String,
    pub levels: usize,
    pub weight: f64,
}

const fn qi(
    name: &'static str,
    generalise: fn(&str, usize) -> String,
    levels: usize,
    weight: f64,
) -> QuasiIdentifierSpec {
    QuasiIdentifierSpec {
        name,
        generalise,
        levels,
        weight,
    }
}

/// What one analyst table holds: its SQL over the detail zone, and which of its columns
/// are pseudonymised with which entity.
struct TableSpec {
    name: &'static str,
    sql: &'static str,
    pseudonyms: &'static [(&'static str, &'static str)],
}

/// The table of the requests' profiles while the zone is built.
const PROFILE_TABLE: &str = "profil_demande";

/// The profile of each request at its date (see the module's documentation).
///
/// The reference person is the request's first person in the order (principal applicant
/// first, then adults, then by pseudonym). Each person's place in that order and what
/// the profile reads of them are packed into one text, and the smallest text per
/// request is that person's: `0`/`1` for each of the two criteria, then the pseudonym
/// (never null: CHAMP_OBLIGATOIRE; unique within its request), then the values, each
/// after the character U+0001. That separator sorts before any character of a
/// pseudonym, so the texts compare as the three keys do, whatever the pseudonyms'
/// lengths.
/// A `ROW_NUMBER()` window over the persons of every request gave the same profiles
/// and took 3.6 s of the 5.7 s this table took nationally (BENCHMARKS.md).
const PROFILE_SQL: &str = "
profil_membres AS (
    SELECT dp.demande_id, dp.personne_id,
           MIN(COALESCE(dp.tranche_age, 'NON_RENSEIGNE')) AS tranche_age,
           MIN(mp.role) AS role, MIN(p.sexe) AS sexe, MIN(p.nationalite) AS nationalite
    FROM demande_personne dp
    JOIN demande d ON d.id = dp.demande_id
    LEFT JOIN menage_personne mp ON mp.menage_id = d.menage_id
         AND mp.personne_id = dp.personne_id
         AND mp.date_debut <= d.date_demande
         AND (mp.date_fin IS NULL OR d.date_demande < mp.date_fin)
    LEFT JOIN personne p ON p.id = dp.personne_id
    GROUP BY dp.demande_id, dp.personne_id
),
profil_premier AS (
    SELECT demande_id,
           COUNT(*) AS membres,
           MIN(concat(CASE WHEN role = 'DEMANDEUR_PRINCIPAL' THEN '0' ELSE '1' END,
                      CASE WHEN tranche_age NOT IN ('0-2', '3-17', 'NON_RENSEIGNE') THEN '0' ELSE '1' END,
                      personne_id, chr(1), tranche_age, chr(1), COALESCE(sexe, 'NON_RENSEIGNE'),
                      chr(1), COALESCE(nationalite, 'NON_RENSEIGNE'))) AS premier
    FROM profil_membres
    GROUP BY demande_id
),
profil AS (
    SELECT demande_id, membres,
           split_part(premier, chr(1), 2) AS tranche_age,
           split_part(premier, chr(1), 3) AS sexe,
           split_part(premier, chr(1), 4) AS nationalite
    FROM profil_premier
),
profil_demande AS (
    SELECT d.id AS demande_id, d.date_demande,
           COALESCE(pr.membres, 0) AS personnes,
           COALESCE(pr.tranche_age, 'NON_RENSEIGNE') AS tranche_age,
           COALESCE(pr.sexe, 'NON_RENSEIGNE') AS sexe,
           COALESCE(pr.nationalite, 'NON_RENSEIGNE') AS nationalite
    FROM demande d
    LEFT JOIN profil pr ON pr.demande_id = d.id
)";

const TABLES: &[TableSpec] = &[
    TableSpec {
        name: "demandes",
        sql: "SELECT d.id AS demande, d.menage_id AS menage, d.type, d.canal, d.statut,
                     d.motif_non_pourvue, d.preconisation, LEAST(pd.personnes, 5) AS personnes,
                     CASE WHEN d.statut IN ('POURVUE', 'NON_POURVUE')
                          THEN arrow_cast(d.date_statut, 'Int64') - arrow_cast(d.date_demande, 'Int64')
                     END AS delai_decision_jours,
                     d.siao_departement AS departement, to_char(d.date_demande, '%Y-%m') AS mois,
                     pd.tranche_age, pd.sexe, COALESCE(d.composition, 'INCONNUE') AS composition,
                     pd.nationalite
              FROM demande d JOIN profil_demande pd ON pd.demande_id = d.id",
        pseudonyms: &[("demande", "demande"), ("menage", "menage")],
    },
    TableSpec {
        name: "sejours",
        sql: "SELECT s.id AS sejour, s.menage_id AS menage, s.demande_id AS demande,
                     disp.categorie, disp.type AS type_dispositif,
                     LEAST(s.nb_personnes, 5) AS nb_personnes, s.motif_sortie,
                     s.date_sortie IS NULL AS en_cours,
                     arrow_cast(s.date_sortie, 'Int64') - arrow_cast(s.date_entree, 'Int64') AS duree_nuits,
                     arrow_cast(s.date_entree, 'Int64') - arrow_cast(pd.date_demande, 'Int64') AS delai_admission_jours,
                     disp.departement, to_char(s.date_entree, '%Y-%m') AS mois,
                     COALESCE(pd.tranche_age, 'NON_RENSEIGNE') AS tranche_age,
                     COALESCE(pd.sexe, 'NON_RENSEIGNE') AS sexe,
                     COALESCE(s.composition, 'INCONNUE') AS composition,
                     COALESCE(pd.nationalite, 'NON_RENSEIGNE') AS nationalite
              FROM prise_en_charge s
              JOIN dispositif disp ON disp.id = s.dispositif_id
              LEFT JOIN profil_demande pd ON pd.demande_id = s.demande_id",
        pseudonyms: &[
            ("sejour", "prise_en_charge"),
            ("menage", "menage"),
            ("demande", "demande"),
        ],
    },
    TableSpec {
        name: "orientations",
        sql: "SELECT o.id AS orientation, o.demande_id AS demande, d.menage_id AS menage,
                     d.type AS type_demande, disp.categorie, o.statut, o.motif_refus,
                     arrow_cast(o.date_orientation, 'Int64') - arrow_cast(d.date_demande, 'Int64') AS delai_orientation_jours,
                     arrow_cast(o.date_reponse, 'Int64') - arrow_cast(o.date_orientation, 'Int64') AS delai_reponse_jours,
                     d.siao_departement AS departement, to_char(o.date_orientation, '%Y-%m') AS mois,
                     pd.tranche_age, pd.sexe, COALESCE(o.composition, 'INCONNUE') AS composition,
                     pd.nationalite
              FROM orientation o
              JOIN demande d ON d.id = o.demande_id
              JOIN dispositif disp ON disp.id = o.dispositif_id
              JOIN profil_demande pd ON pd.demande_id = o.demande_id",
        pseudonyms: &[
            ("orientation", "orientation"),
            ("demande", "demande"),
            ("menage", "menage"),
        ],
    },
];

/// What the anonymisation did to one analyst table.
#[derive(Debug, Clone, PartialEq)]
pub struct AnonymisedTable {
    pub table: String,
    /// Records read from the detail zone.
    pub records: usize,
    /// Records suppressed (classes that could not reach k).
    pub suppressed: usize,
    /// The smallest class of the published table (the k reached).
    pub k_reached: usize,
    pub classes: usize,
    /// The generalisation level of each quasi-identifier (0: as read).
    pub levels: Vec<(String, usize)>,
    /// Time spent keying the table's pseudonyms for the release and writing the table:
    /// work no earlier release can spare, since each release has its own key (DESIGN.md),
    /// so every pseudonym and every file is new.
    pub rekeyed_and_written: std::time::Duration,
}

impl AnonymisedTable {
    /// `departement=0,mois=1,…`, as recorded in `analyst/anonymisation`.
    pub fn levels_text(&self) -> String {
        self.levels
            .iter()
            .map(|(q, l)| format!("{q}={l}"))
            .collect::<Vec<_>>()
            .join(",")
    }
}

/// Builds the analyst zone of `release` from the detail session `ctx` (ingest run `run`,
/// data up to `last_day`) and replaces the previous one (the zone holds one release; when
/// a release rebuilds it: [`rebuild_reason`]).
pub async fn build(
    lake: &Lake,
    ctx: &SessionContext,
    key: &MasterKey,
    release: i64,
    (run, last_day): (i64, Option<NaiveDate>),
    options: &AnalystOptions,
) -> Result<Vec<AnonymisedTable>> {
    let pseudonyms = key.subkey(&format!("analyst/{release}"));
    // The requests' profiles, computed once for the three tables (each joins them).
    let started = std::time::Instant::now();
    let frame = ctx
        .sql(&format!("WITH {PROFILE_SQL} SELECT * FROM profil_demande"))
        .await?;
    let schema = Arc::new(frame.schema().as_arrow().clone());
    let (schema, profiles) = crate::compute::compact_views(schema, frame.collect().await?)?;
    crate::compute::register_spread(ctx, PROFILE_TABLE, schema, profiles)?;
    tracing::debug!(
        profils_ms = started.elapsed().as_millis() as u64,
        "profils des demandes"
    );
    let built = build_tables(lake, ctx, &pseudonyms, release, options).await;
    ctx.deregister_table(PROFILE_TABLE)?;
    let out = built?;
    let log = RecordBatch::try_new(
        Arc::new(Schema::new(vec![
            Field::new("publication", DataType::Int64, false),
            Field::new("table_analyse", DataType::Utf8, false),
            Field::new("enregistrements", DataType::Int64, false),
            Field::new("supprimes", DataType::Int64, false),
            Field::new("k_cible", DataType::Int64, false),
            Field::new("niveaux", DataType::Utf8, false),
            Field::new("ingestion", DataType::Int64, false),
            Field::new("dernier_jour", DataType::Date32, true),
            Field::new("format", DataType::Int64, false),
        ])),
        vec![
            Arc::new(Int64Array::from(vec![release; out.len()])),
            Arc::new(StringArray::from_iter_values(out.iter().map(|t| &t.table))),
            Arc::new(Int64Array::from_iter_values(
                out.iter().map(|t| t.records as i64),
            )),
            Arc::new(Int64Array::from_iter_values(
                out.iter().map(|t| t.suppressed as i64),
            )),
            Arc::new(Int64Array::from(vec![options.k as i64; out.len()])),
            Arc::new(StringArray::from_iter_values(
                out.iter().map(AnonymisedTable::levels_text),
            )),
            Arc::new(Int64Array::from(vec![run; out.len()])),
            Arc::new(Date32Array::from(vec![
                last_day.map(
                    arrow::datatypes::Date32Type::from_naive_date
                );
                out.len()
            ])),
            Arc::new(Int64Array::from(vec![FORMAT; out.len()])),
        ],
    )?;
    lake.overwrite(ZONE, LOG_TABLE, log).await?;
    Ok(out)
}

/// The three tables, reading the requests' profiles from [`PROFILE_TABLE`].
async fn build_tables(
    lake: &Lake,
    ctx: &SessionContext,
    pseudonyms: &anonymize::Pseudonymizer,
    release: i64,
    options: &AnalystOptions,
) -> Result<Vec<AnonymisedTable>> {
    let mut out: Vec<AnonymisedTable> = Vec::new();
    // A table's Delta write (its Parquet encoded on one task) runs while the next table
    // is read, generalised and keyed; one write at a time, so that at most two tables
    // are held in memory.
    let mut writing: Option<tokio::task::JoinHandle<Result<std::time::Duration>>> = None;
    for spec in TABLES {
        let started = std::time::Instant::now();
        let batches = ctx.sql(spec.sql).await?.collect().await?;
        let schema = match batches.first() {
            Some(b) => b.schema(),
            None => ctx.sql(spec.sql).await?.schema().inner().clone(),
        };
        // String views compacted first: a join's output batches share the whole buffers
        // of its build side, and concatenating them copied those buffers once per batch
        // (nationally, tens of GB for the stays).
        let (schema, batches) = crate::compute::compact_views(schema, batches)?;
        let raw = concat_batches(&schema, &batches)?;
        let records = raw.num_rows();
        // Quasi-identifiers as text (a missing value is NON_RENSEIGNE), read in place.
        let columns: Vec<StringArray> = QUASI_IDENTIFIERS
            .iter()
            .map(|q| text_column(&raw, q.name))
            .collect::<Result<_>>()?;
        let texts: Vec<Vec<&str>> = columns
            .iter()
            .map(|c| c.iter().map(|v| v.unwrap_or("NON_RENSEIGNE")).collect())
            .collect();
        let qis: Vec<QuasiIdentifier<'_>> = QUASI_IDENTIFIERS
            .iter()
            .zip(&texts)
            .map(|(q, values)| QuasiIdentifier {
                name: q.name,
                values,
                generalise: q.generalise,
                levels: q.levels,
                weight: q.weight,
            })
            .collect();
        let read = started.elapsed();
        let anonymised = kanon::k_anonymise(&qis, options.k, options.max_suppression);
        let generalised = started.elapsed();
        drop(qis);
        drop(texts);
        drop(columns);
        let kept = BooleanArray::from(anonymised.kept.clone());
        // Time spent keying this release's pseudonyms.
        let mut keyed = std::time::Duration::ZERO;
        let mut fields = vec![Field::new("publication", DataType::Int64, false)];
        let mut columns: Vec<ArrayRef> = vec![Arc::new(Int64Array::from(vec![
            release;
            anonymised
                .kept_records()
        ]))];
        for (field, column) in raw.schema().fields().iter().zip(raw.columns()) {
            let name = field.name().as_str();
            if let Some(i) = QUASI_IDENTIFIERS.iter().position(|q| q.name == name) {
                let values: StringArray = (0..records)
                    .filter(|r| anonymised.kept[*r])
                    .map(|r| Some(anonymised.value(i, r)))
                    .collect();
                fields.push(Field::new(name, DataType::Utf8, false));
                columns.push(Arc::new(values));
            } else if let Some((_, entity)) = spec.pseudonyms.iter().find(|(c, _)| *c == name) {
                let column = arrow::compute::filter(column, &kept)?;
                fields.push(Field::new(name, DataType::Utf8, true));
                let keying = std::time::Instant::now();
                columns.push(Arc::new(pseudonymise(&column, entity, pseudonyms)?));
                keyed += keying.elapsed();
            } else {
                // Text as plain Utf8, whatever view type the engine produced.
                let data_type = match field.data_type() {
                    DataType::Utf8View | DataType::LargeUtf8 => DataType::Utf8,
                    other => other.clone(),
                };
                let column = cast(&arrow::compute::filter(column, &kept)?, &data_type)?;
                fields.push(Field::new(name, data_type, true));
                columns.push(column);
            }
        }
        let batch = RecordBatch::try_new(Arc::new(Schema::new(fields)), columns)?;
        let built = started.elapsed();
        tracing::debug!(
            table = spec.name,
            enregistrements = records,
            lecture_ms = read.as_millis() as u64,
            k_anonymat_ms = (generalised - read).as_millis() as u64,
            pseudonymes_ms = (built - generalised).as_millis() as u64,
            "table de la zone analyste"
        );
        if let Some(previous) = writing.take() {
            finish_write(previous, out.last_mut()).await?;
        }
        let lake = lake.clone();
        writing = Some(tokio::spawn(async move {
            let started = std::time::Instant::now();
            lake.overwrite(ZONE, spec.name, batch).await?;
            let took = started.elapsed();
            tracing::debug!(
                table = spec.name,
                ecriture_ms = took.as_millis() as u64,
                "table de la zone analyste écrite"
            );
            Ok(took)
        }));
        out.push(AnonymisedTable {
            table: spec.name.to_owned(),
            records,
            suppressed: anonymised.suppressed,
            k_reached: anonymised.min_class,
            classes: anonymised.classes,
            levels: QUASI_IDENTIFIERS
                .iter()
                .zip(&anonymised.levels)
                .map(|(q, l)| (q.name.to_owned(), *l))
                .collect(),
            // The write's time is added once it is done.
            rekeyed_and_written: keyed,
        });
    }
    if let Some(last) = writing {
        finish_write(last, out.last_mut()).await?;
    }
    Ok(out)
}

/// Waits for a table's write and adds its time to the table's `rekeyed_and_written`.
async fn finish_write(
    write: tokio::task::JoinHandle<Result<std::time::Duration>>,
    table: Option<&mut AnonymisedTable>,
) -> Result<()> {
    let took = match write.await {
        Ok(took) => took?,
        Err(e) => std::panic::resume_unwind(e.into_panic()),
    };
    if let Some(table) = table {
        table.rekeyed_and_written += took;
    }
    Ok(())
}

fn text_column(batch: &RecordBatch, name: &str) -> Result<StringArray> {
    let column = batch
        .column_by_name(name)
        .unwrap_or_else(|| panic!("the analyst SQL selects {name}"));
    Ok(cast(column, &DataType::Utf8)?.as_string::<i32>().clone())
}

fn pseudonymise(
    column: &ArrayRef,
    entity: &str,
    pseudonyms: &anonymize::Pseudonymizer,
) -> Result<StringArray> {
    if let Some(ids) = column.as_primitive_opt::<Int64Type>() {
        return Ok(pseudonyms.pseudonymise(entity, ids)?);
    }
    let text = cast(column, &DataType::Utf8)?;
    Ok(pseudonyms.pseudonymise_texts(entity, text.as_string::<i32>())?)
}

/// The prosecutor risks of one analyst table, measured on the table as stored.
#[derive(Debug, Clone)]
pub struct TableRisk {
    pub table: String,
    pub publication: i64,
    pub k_target: usize,
    pub records_read: usize,
    pub suppressed: usize,
    pub levels: String,
    pub risk: kanon::ProsecutorRisk,
}

/// Reads the analyst zone back and measures, per table, the class sizes of its
/// quasi-identifiers as published, with ARX's prosecutor risks. `None` when no release
/// has built the zone yet.
pub async fn anonymity_report(lake: &Lake) -> Result<Option<Vec<TableRisk>>> {
    let ctx = warehouse::new_session();
    let Some(log) = lake.open(ZONE, LOG_TABLE, None).await? else {
        return Ok(None);
    };
    lake.register(&ctx, LOG_TABLE, &log).await?;
    let rows = ctx
        .sql("SELECT publication, table_analyse, enregistrements, supprimes, k_cible, niveaux FROM anonymisation ORDER BY table_analyse")
        .await?
        .collect()
        .await?;
    let mut logged = BTreeMap::new();
    for b in &rows {
        let int = |i: usize| -> Result<Int64Array> {
            Ok(cast(b.column(i), &DataType::Int64)?
                .as_primitive::<Int64Type>()
                .clone())
        };
        let text = |i: usize| -> Result<StringArray> {
            Ok(cast(b.column(i), &DataType::Utf8)?
                .as_string::<i32>()
                .clone())
        };
        let (publication, table, read, suppressed, k, levels) =
            (int(0)?, text(1)?, int(2)?, int(3)?, int(4)?, text(5)?);
        for r in 0..b.num_rows() {
            logged.insert(
                table.value(r).to_owned(),
                (
                    publication.value(r),
                    read.value(r) as usize,
                    suppressed.value(r) as usize,
                    k.value(r) as usize,
                    levels.value(r).to_owned(),
                ),
            );
        }
    }
    let qis = QUASI_IDENTIFIERS
        .iter()
        .map(|q| q.name)
        .collect::<Vec<_>>()
        .join(", ");
    let mut out = Vec::new();
    for spec in TABLES {
        let Some((publication, read, suppressed, k, levels)) = logged.get(spec.name).cloned()
        else {
            continue;
        };
        let Some(table) = lake.open(ZONE, spec.name, None).await? else {
            continue;
        };
        lake.register(&ctx, spec.name, &table).await?;
        let sizes = ctx
            .sql(&format!(
                "SELECT COUNT(*) AS n FROM {} GROUP BY {qis}",
                spec.name
            ))
            .await?
            .collect()
            .await?;
        let mut class_sizes: Vec<usize> = Vec::new();
        for b in &sizes {
            let n = cast(b.column(0), &DataType::Int64)?;
            class_sizes.extend(
                n.as_primitive::<Int64Type>()
                    .values()
                    .iter()
                    .map(|n| *n as usize),
            );
        }
        let sizes = class_sizes;
        out.push(TableRisk {
            table: spec.name.to_owned(),
            publication,
            k_target: k,
            records_read: read,
            suppressed,
            levels,
            risk: kanon::prosecutor_risk(&sizes, k),
        });
    }
    Ok(Some(out))
}

/// The names of the analyst tables.
pub fn table_names() -> impl Iterator<Item = &'static str> {
    TABLES.iter().map(|t| t.name)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(y: i32, m: u32, day: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, day).unwrap()
    }

    #[test]
    fn the_last_complete_month_ends_on_its_last_day() {
        assert_eq!(last_complete_month(d(2026, 1, 31)), (2026, 1));
        assert_eq!(last_complete_month(d(2026, 1, 30)), (2025, 12));
        assert_eq!(last_complete_month(d(2026, 1, 1)), (2025, 12));
        assert_eq!(last_complete_month(d(2025, 12, 31)), (2025, 12));
        assert_eq!(last_complete_month(d(2024, 2, 29)), (2024, 2));
        assert_eq!(last_complete_month(d(2025, 2, 28)), (2025, 2));
        assert_eq!(last_complete_month(d(2024, 2, 28)), (2024, 1));
    }

    #[test]
    fn the_zone_is_rebuilt_once_a_month_and_after_purges_only() {
        let built = Built {
            release: 4,
            k: 11,
            format: FORMAT,
            run: 7,
            last_day: Some(d(2025, 12, 31)),
            whole: true,
        };
        // The next day, one more run, nothing else: kept.
        let next_day = Now {
            k: 11,
            run: 8,
            last_day: Some(d(2026, 1, 1)),
            forced: false,
            households_deleted: false,
            key_changed: false,
        };
        assert_eq!(rebuild_reason(Some(&built), &next_day), None);
        // Same run, same data (a second compute): kept.
        let same = Now {
            run: 7,
            last_day: Some(d(2025, 12, 31)),
            ..next_day.clone()
        };
        assert_eq!(rebuild_reason(Some(&built), &same), None);
        // January complete: rebuilt, and the month is named.
        let month_end = Now {
            run: 38,
            last_day: Some(d(2026, 1, 31)),
            ..next_day.clone()
        };
        let reason = rebuild_reason(Some(&built), &month_end).unwrap();
        assert!(reason.contains("2026-01"), "{reason}");
        // A lake restored to fewer complete months: rebuilt too.
        let earlier = Now {
            last_day: Some(d(2025, 11, 30)),
            ..same.clone()
        };
        assert!(rebuild_reason(Some(&built), &earlier).is_some());
        // Each other reason, on the next day.
        for now in [
            Now {
                households_deleted: true,
                ..next_day.clone()
            },
            Now {
                key_changed: true,
                ..next_day.clone()
            },
            Now {
                k: 5,
                ..next_day.clone()
            },
            Now {
                forced: true,
                ..next_day.clone()
            },
            Now {
                run: 6,
                ..next_day.clone()
            },
            Now {
                last_day: None,
                ..next_day.clone()
            },
        ] {
            assert!(rebuild_reason(Some(&built), &now).is_some(), "{now:?}");
        }
        let old_format = Built {
            format: 1,
            ..built.clone()
        };
        assert!(rebuild_reason(Some(&old_format), &next_day).is_some());
        let interrupted = Built {
            whole: false,
            ..built.clone()
        };
        assert!(rebuild_reason(Some(&interrupted), &same).is_some());
        assert!(rebuild_reason(None, &next_day).is_some());
    }

    /// Runs the profile SQL over small tables made by hand.
    async fn profiles(tables: &[&str]) -> Vec<(i64, i64, String, String, String)> {
        let ctx = SessionContext::new();
        for sql in tables {
            ctx.sql(sql).await.unwrap().collect().await.unwrap();
        }
        let batches = ctx
            .sql(&format!(
                "WITH {PROFILE_SQL} SELECT demande_id, personnes, tranche_age, sexe, nationalite
                 FROM profil_demande ORDER BY demande_id"
            ))
            .await
            .unwrap()
            .collect()
            .await
            .unwrap();
        let mut out = Vec::new();
        for b in &batches {
            let int = |i: usize| cast(b.column(i), &DataType::Int64).unwrap();
            let text = |i: usize| cast(b.column(i), &DataType::Utf8).unwrap();
            let (ids, n) = (int(0), int(1));
            let (age, sex, nat) = (text(2), text(3), text(4));
            for r in 0..b.num_rows() {
                out.push((
                    ids.as_primitive::<Int64Type>().value(r),
                    n.as_primitive::<Int64Type>().value(r),
                    age.as_string::<i32>().value(r).to_owned(),
                    sex.as_string::<i32>().value(r).to_owned(),
                    nat.as_string::<i32>().value(r).to_owned(),
                ));
            }
        }
        out
    }

    #[tokio::test]
    async fn a_requests_profile_is_its_principal_applicant_else_its_first_adult() {
        let got = profiles(&[
            "CREATE TABLE demande (id BIGINT, menage_id VARCHAR, date_demande DATE) AS VALUES
                 (1, 'm1', DATE '2025-03-01'), (2, 'm2', DATE '2025-03-01'),
                 (3, 'm3', DATE '2025-03-01'), (4, 'm4', DATE '2025-03-01')",
            "CREATE TABLE demande_personne (demande_id BIGINT, personne_id VARCHAR,
                 tranche_age VARCHAR) AS VALUES
                 (1, 'b', '25-34'), (1, 'a', '3-17'), (1, 'zz', '35-44'),
                 (2, 'p10', '45-54'), (2, 'p1', '18-24'),
                 (3, 'c', NULL)",
            "CREATE TABLE menage_personne (menage_id VARCHAR, personne_id VARCHAR, role VARCHAR,
                 date_debut DATE, date_fin DATE) AS VALUES
                 ('m1', 'b', 'CONJOINT', DATE '2024-01-01', NULL),
                 ('m1', 'a', 'ENFANT', DATE '2024-01-01', NULL),
                 ('m1', 'zz', 'DEMANDEUR_PRINCIPAL', DATE '2024-01-01', NULL),
                 ('m2', 'p10', 'AUTRE_ADULTE', DATE '2024-01-01', NULL),
                 ('m2', 'p1', 'AUTRE_ADULTE', DATE '2024-01-01', NULL),
                 ('m3', 'c', 'DEMANDEUR_PRINCIPAL', DATE '2024-01-01', DATE '2025-01-01')",
            "CREATE TABLE personne (id VARCHAR, sexe VARCHAR, nationalite VARCHAR) AS VALUES
                 ('b', 'F', 'FRANCAISE'), ('a', 'M', 'FRANCAISE'), ('zz', 'M', 'UE'),
                 ('p10', 'F', 'HORS_UE'), ('p1', NULL, 'UE'), ('c', 'F', NULL)",
        ])
        .await;
        let row = |id: i64, n: i64, age: &str, sex: &str, nat: &str| {
            (id, n, age.to_owned(), sex.to_owned(), nat.to_owned())
        };
        assert_eq!(
            got,
            vec![
                // The principal applicant, though neither first by pseudonym nor alone.
                row(1, 3, "35-44", "M", "UE"),
                // No principal applicant: the adults by pseudonym, and `p1` sorts before
                // `p10` (a separator sorting after digits would pick `p10`). Its unknown sex
                // is NON_RENSEIGNE.
                row(2, 2, "18-24", "NON_RENSEIGNE", "UE"),
                // A child alone, whose membership ended before the request: no role, no
                // age band; still the request's person.
                row(3, 1, "NON_RENSEIGNE", "F", "NON_RENSEIGNE"),
                // No person.
                row(4, 0, "NON_RENSEIGNE", "NON_RENSEIGNE", "NON_RENSEIGNE"),
            ]
        );
    }
}
