//! Reading the statistical base for the API: validated queries, current figures.
//!
//! Queries are built with DataFusion's DataFrame API from validated values, never by
//! pasting request text into SQL. "Current" means, per key, the row of the highest
//! version among the releases recorded in `stats/releases` (a release whose rows were
//! appended but whose record was not yet written is not served).

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::{Date32Type, Float64Type, Int64Type};
use chrono::NaiveDate;
use datafusion::functions_aggregate::expr_fn::max;
use datafusion::functions_window::expr_fn::row_number;
use datafusion::logical_expr::{ExprFunctionExt, col, lit};
use datafusion::prelude::SessionContext;
use serde::Serialize;
use warehouse::Lake;

use crate::authz::{AuditAccess, StatsAccess};
use crate::{ApiError, parse_territory, territory_code};

const PAS: &[&str] = &["JOUR", "SEMAINE", "MOIS", "TRIMESTRE", "ANNEE", "HIVER"];

/// A validated request for values.
#[derive(Debug, Clone)]
pub struct ValuesQuery {
    pub indicateur: &'static str,
    pub niveau: &'static str,
    pub territoire: String,
    pub pas: Option<String>,
    pub du: Option<NaiveDate>,
    pub au: Option<NaiveDate>,
    pub dimension: String,
    pub version: Option<i64>,
}

fn parse_date(name: &str, text: Option<&str>) -> Result<Option<NaiveDate>, ApiError> {
    text.filter(|t| !t.is_empty())
        .map(|t| {
            NaiveDate::parse_from_str(t, "%Y-%m-%d").map_err(|_| {
                ApiError::bad_request(format!(
                    "paramètre « {name} » invalide : date attendue au format AAAA-MM-JJ"
                ))
            })
        })
        .transpose()
}

impl ValuesQuery {
    pub fn from_params(
        indicateur: &'static str,
        territoire: Option<&str>,
        pas: Option<&str>,
        du: Option<&str>,
        au: Option<&str>,
        dimension: Option<&str>,
        version: Option<&str>,
    ) -> Result<Self, ApiError> {
        let code = territoire.unwrap_or("FR");
        let (niveau, territoire) = parse_territory(code).ok_or_else(|| {
            ApiError::bad_request(format!(
                "paramètre « territoire » invalide : « {code} » (attendu FR, R suivi d'un code de région ou D suivi d'un code de département, par exemple D93)"
            ))
        })?;
        let pas = match pas.filter(|p| !p.is_empty()) {
            Some(p) if PAS.contains(&p) => Some(p.to_owned()),
            Some(p) => {
                return Err(ApiError::bad_request(format!(
                    "paramètre « pas » invalide : « {p} » (attendu l'un de {})",
                    PAS.join(", ")
                )));
            }
            None => None,
        };
        let du = parse_date("du", du)?;
        let au = parse_date("au", au)?;
        if let (Some(a), Some(b)) = (du, au)
            && b <= a
        {
            return Err(ApiError::bad_request(
                "la date « au » doit suivre la date « du »",
            ));
        }
        let dimension = dimension.unwrap_or("").to_owned();
        if !dimension
            .chars()
            .all(|c| c.is_ascii_lowercase() || c == '_')
        {
            return Err(ApiError::bad_request(format!(
                "paramètre « dimension » invalide : « {dimension} »"
            )));
        }
        let version = version
            .filter(|v| !v.is_empty())
            .map(|v| {
                v.parse::<i64>().map_err(|_| {
                    ApiError::bad_request(format!("paramètre « version » invalide : « {v} »"))
                })
            })
            .transpose()?;
        Ok(Self {
            indicateur,
            niveau,
            territoire,
            pas,
            du,
            au,
            dimension,
            version,
        })
    }
}

/// One published figure, in the stats table's shape.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct StatRow {
    pub indicateur: String,
    pub territoire_niveau: String,
    pub territoire: String,
    /// The API's code of the territory (`D93`).
    pub code_territoire: String,
    pub pas: String,
    pub periode: String,
    pub debut: NaiveDate,
    pub fin: NaiveDate,
    pub dimension: String,
    pub modalite: String,
    pub valeur: Option<f64>,
    pub secret: bool,
    pub numerateur: Option<f64>,
    pub denominateur: Option<f64>,
    pub statut: String,
    pub version: i64,
    pub revision: Option<String>,
}

async fn stats_session(lake: &Lake) -> Result<SessionContext, ApiError> {
    let ctx = warehouse::new_session();
    let found = lake
        .register_stats(&ctx)
        .await
        .map_err(ApiError::internal)?;
    if !found || !ctx.table_exist("releases").map_err(ApiError::internal)? {
        return Err(ApiError::unavailable(
            "aucune publication n'est encore disponible : lancez « observatoire compute »",
        ));
    }
    Ok(ctx)
}

/// The latest recorded release, if any.
pub async fn latest_release(lake: &Lake) -> Result<Option<i64>, String> {
    let ctx = warehouse::new_session();
    if !lake.register_stats(&ctx).await.map_err(|e| e.to_string())?
        || !ctx.table_exist("releases").unwrap_or(false)
    {
        return Ok(None);
    }
    let batches = ctx
        .table("releases")
        .await
        .and_then(|t| t.aggregate(vec![], vec![max(col("version")).alias("v")]))
        .map_err(|e| e.to_string())?
        .collect()
        .await
        .map_err(|e| e.to_string())?;
    Ok(batches.first().and_then(|b| {
        let a = b.column(0).as_primitive::<Int64Type>();
        (!a.is_empty() && !a.is_null(0)).then(|| a.value(0))
    }))
}

/// One release of the statistical base.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct Publication {
    pub version: i64,
    pub ingestion: i64,
    pub catalogue: String,
    pub seuil_secret: i64,
    pub calculee_le: String,
    pub lignes: i64,
    /// `CALCUL` (a regular release) or `REVISION` (a closed month recomputed).
    pub nature: String,
    /// A revision's month and reason.
    pub motif: Option<String>,
}

/// Every recorded release, latest first.
pub async fn publications(lake: &Lake) -> Result<Vec<Publication>, ApiError> {
    let ctx = stats_session(lake).await?;
    let batches = ctx
        .table("releases")
        .await
        .and_then(|t| t.sort(vec![col("version").sort(false, false)]))
        .map_err(ApiError::internal)?
        .collect()
        .await
        .map_err(ApiError::internal)?;
    let mut out = Vec::new();
    for b in &batches {
        let int = |name: &str| int_column(b, name);
        let text = |name: &str| text_column(b, name);
        let (version, run, seuil, lignes) = (
            int("version"),
            int("run"),
            int("seuil_secret"),
            int("lignes"),
        );
        let (catalogue, quand) = (text("catalogue"), text("calculee_le"));
        // Columns added with revisions: absent from older lakes.
        let optional = |name: &str| match b.column_by_name(name) {
            Some(_) => text_column(b, name),
            None => arrow::array::StringArray::new_null(b.num_rows()),
        };
        let (nature, motif) = (optional("nature"), optional("motif"));
        for i in 0..b.num_rows() {
            out.push(Publication {
                version: version.value(i),
                ingestion: run.value(i),
                catalogue: catalogue.value(i).to_owned(),
                seuil_secret: seuil.value(i),
                calculee_le: quand.value(i).to_owned(),
                lignes: lignes.value(i),
                nature: if nature.is_valid(i) {
                    nature.value(i).to_owned()
                } else {
                    "CALCUL".to_owned()
                },
                motif: motif.is_valid(i).then(|| motif.value(i).to_owned()),
            });
        }
    }
    Ok(out)
}

/// The published territories of the latest release within the caller's scope, FR first,
/// then régions, then départements.
pub async fn published_territories(
    lake: &Lake,
    access: &StatsAccess,
) -> Result<Vec<(String, String)>, ApiError> {
    let ctx = stats_session(lake).await?;
    let Some(version) = latest_release(lake).await.map_err(ApiError::internal)? else {
        return Ok(Vec::new());
    };
    let batches = ctx
        .table("indicateurs")
        .await
        .and_then(|t| t.filter(col("version").lt_eq(lit(version)).and(access.filter())))
        .and_then(|t| t.select(vec![col("territoire_niveau"), col("territoire")]))
        .and_then(|t| t.distinct())
        .map_err(ApiError::internal)?
        .collect()
        .await
        .map_err(ApiError::internal)?;
    let mut out = Vec::new();
    for b in &batches {
        let n = arrow::compute::cast(b.column(0), &arrow::datatypes::DataType::Utf8)
            .map_err(ApiError::internal)?;
        let t = arrow::compute::cast(b.column(1), &arrow::datatypes::DataType::Utf8)
            .map_err(ApiError::internal)?;
        let (n, t) = (n.as_string::<i32>(), t.as_string::<i32>());
        for i in 0..b.num_rows() {
            if access.allows(n.value(i), t.value(i)) {
                out.push((n.value(i).to_owned(), t.value(i).to_owned()));
            }
        }
    }
    let rank = |n: &str| match n {
        "FR" => 0,
        "REGION" => 1,
        _ => 2,
    };
    out.sort_by(|a, b| (rank(&a.0), &a.1).cmp(&(rank(&b.0), &b.1)));
    Ok(out)
}

/// The current figures matching a query, ordered by period start. A territory outside
/// the caller's scope is refused; the scope's filter is applied to the rows as well.
pub async fn current_values(
    lake: &Lake,
    access: &StatsAccess,
    q: &ValuesQuery,
) -> Result<Vec<StatRow>, ApiError> {
    access.territory(q.niveau, &q.territoire)?;
    let mut filter = col("indicateur")
        .eq(lit(q.indicateur))
        .and(col("territoire_niveau").eq(lit(q.niveau)))
        .and(col("territoire").eq(lit(q.territoire.clone())))
        .and(col("dimension").eq(lit(q.dimension.clone())));
    if let Some(pas) = &q.pas {
        filter = filter.and(col("pas").eq(lit(pas.clone())));
    }
    if let Some(du) = q.du {
        filter = filter.and(
            col("debut").gt_eq(lit(datafusion::scalar::ScalarValue::Date32(Some(
                Date32Type::from_naive_date(du),
            )))),
        );
    }
    if let Some(au) = q.au {
        filter = filter.and(
            col("fin").lt_eq(lit(datafusion::scalar::ScalarValue::Date32(Some(
                Date32Type::from_naive_date(au),
            )))),
        );
    }
    current_rows(lake, access, filter, q.version).await
}

/// A validated request for one period's figures of every département of the caller's
/// scope (the map).
#[derive(Debug, Clone)]
pub struct MapQuery {
    pub indicateur: &'static str,
    pub pas: String,
    pub periode: String,
    pub dimension: String,
    pub modalite: String,
    pub version: Option<i64>,
}

impl MapQuery {
    pub fn from_params(
        indicateur: &'static str,
        pas: Option<&str>,
        periode: Option<&str>,
        dimension: Option<&str>,
        modalite: Option<&str>,
        version: Option<&str>,
    ) -> Result<Self, ApiError> {
        // The same checks as a values query's, on a territory that is always valid.
        let base = ValuesQuery::from_params(indicateur, None, pas, None, None, dimension, version)?;
        let Some(pas) = base.pas else {
            return Err(ApiError::bad_request(format!(
                "paramètre « pas » obligatoire (l'un de {})",
                PAS.join(", ")
            )));
        };
        let periode = periode.unwrap_or("").trim();
        if periode.is_empty()
            || periode.len() > 10
            || !periode
                .chars()
                .all(|c| c.is_ascii_digit() || c.is_ascii_uppercase() || c == '-')
        {
            return Err(ApiError::bad_request(format!(
                "paramètre « periode » invalide : « {periode} » (attendu une période du pas choisi, par exemple 2025-03, 2025-T1, 2025 ou 2025-2026)"
            )));
        }
        let modalite = modalite.unwrap_or("").trim();
        if modalite.len() > 40
            || !modalite
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '+'))
        {
            return Err(ApiError::bad_request(format!(
                "paramètre « modalite » invalide : « {modalite} »"
            )));
        }
        if base.dimension.is_empty() != modalite.is_empty() {
            return Err(ApiError::bad_request(
                "paramètres « dimension » et « modalite » : les deux ou aucun",
            ));
        }
        Ok(Self {
            indicateur,
            pas,
            periode: periode.to_owned(),
            dimension: base.dimension,
            modalite: modalite.to_owned(),
            version: base.version,
        })
    }
}

/// One period's current figures of every département of the caller's scope, by code.
pub async fn map_values(
    lake: &Lake,
    access: &StatsAccess,
    q: &MapQuery,
) -> Result<Vec<StatRow>, ApiError> {
    let filter = col("indicateur")
        .eq(lit(q.indicateur))
        .and(col("territoire_niveau").eq(lit("DEPARTEMENT")))
        .and(col("pas").eq(lit(q.pas.clone())))
        .and(col("periode").eq(lit(q.periode.clone())))
        .and(col("dimension").eq(lit(q.dimension.clone())))
        .and(col("modalite").eq(lit(q.modalite.clone())));
    current_rows(lake, access, filter, q.version).await
}

/// The current rows (highest recorded release ≤ `version` per key) matching `filter`
/// within the caller's scope, ordered by pas, period start, modality and territory.
async fn current_rows(
    lake: &Lake,
    access: &StatsAccess,
    filter: datafusion::logical_expr::Expr,
    version: Option<i64>,
) -> Result<Vec<StatRow>, ApiError> {
    let ctx = stats_session(lake).await?;
    let latest = latest_release(lake)
        .await
        .map_err(ApiError::internal)?
        .unwrap_or(0);
    let ceiling = match version {
        Some(v) if v < 1 || v > latest => {
            return Err(ApiError::not_found(format!(
                "publication {v} inconnue (dernière publication : {latest})"
            )));
        }
        Some(v) => v,
        None => latest,
    };
    let filter = filter
        .and(col("version").lt_eq(lit(ceiling)))
        .and(access.filter());
    let keys = warehouse::stats::STATS_KEY;
    let rank = row_number()
        .partition_by(keys.iter().map(|k| col(*k)).collect())
        .order_by(vec![col("version").sort(false, false)])
        .build()
        .map_err(ApiError::internal)?
        .alias("rang");
    let frame = ctx
        .table("indicateurs")
        .await
        .and_then(|t| t.filter(filter))
        .and_then(|t| t.window(vec![rank]))
        .and_then(|t| t.filter(col("rang").eq(lit(1u64))))
        .and_then(|t| {
            t.sort(vec![
                col("pas").sort(true, false),
                col("debut").sort(true, false),
                col("modalite").sort(true, false),
                col("territoire").sort(true, false),
            ])
        })
        .map_err(ApiError::internal)?;
    let batches = frame.collect().await.map_err(ApiError::internal)?;
    let mut rows = Vec::new();
    for b in &batches {
        rows.extend(
            rows_of(b)
                .into_iter()
                .filter(|r| access.allows(&r.territoire_niveau, &r.territoire)),
        );
    }
    Ok(rows)
}

/// A validated filter of the audit log.
#[derive(Debug, Clone)]
pub struct AuditFilter {
    pub utilisateur: Option<String>,
    /// A prefix of the path (`/api/v1/sql`).
    pub chemin: Option<String>,
    pub du: Option<NaiveDate>,
    /// Exclusive.
    pub au: Option<NaiveDate>,
    pub limite: usize,
}

/// At most this many audit rows per response.
pub const AUDIT_MAX_ROWS: usize = 10_000;

impl AuditFilter {
    pub fn from_params(
        utilisateur: Option<&str>,
        chemin: Option<&str>,
        du: Option<&str>,
        au: Option<&str>,
        limite: Option<&str>,
    ) -> Result<Self, ApiError> {
        let limite = match limite.filter(|l| !l.is_empty()) {
            None => 1000,
            Some(l) => match l.parse::<usize>() {
                Ok(n) if (1..=AUDIT_MAX_ROWS).contains(&n) => n,
                _ => {
                    return Err(ApiError::bad_request(format!(
                        "paramètre « limite » invalide : « {l} » (de 1 à {AUDIT_MAX_ROWS})"
                    )));
                }
            },
        };
        let text = |t: Option<&str>| t.filter(|t| !t.is_empty()).map(str::to_owned);
        Ok(Self {
            utilisateur: text(utilisateur),
            chemin: text(chemin),
            du: parse_date("du", du)?,
            au: parse_date("au", au)?,
            limite,
        })
    }
}

/// The audit log's records matching a filter, latest first.
pub async fn audit_rows(
    lake: &Lake,
    _access: &AuditAccess,
    f: &AuditFilter,
) -> Result<Vec<crate::audit::AuditRecord>, ApiError> {
    use datafusion::functions::expr_fn::starts_with;
    let Some(table) = lake
        .open("audit", "reads", None)
        .await
        .map_err(ApiError::internal)?
    else {
        return Ok(Vec::new());
    };
    let ctx = warehouse::new_session();
    lake.register(&ctx, "audit", &table)
        .await
        .map_err(ApiError::internal)?;
    let mut filter = lit(true);
    if let Some(u) = &f.utilisateur {
        filter = filter.and(col("utilisateur").eq(lit(u.clone())));
    }
    if let Some(c) = &f.chemin {
        filter = filter.and(starts_with(col("chemin"), lit(c.clone())));
    }
    let ts = |d: NaiveDate| {
        lit(datafusion::scalar::ScalarValue::TimestampMicrosecond(
            Some(
                d.and_hms_opt(0, 0, 0)
                    .unwrap_or_default()
                    .and_utc()
                    .timestamp_micros(),
            ),
            Some("UTC".into()),
        ))
    };
    if let Some(du) = f.du {
        filter = filter.and(col("horodatage").gt_eq(ts(du)));
    }
    if let Some(au) = f.au {
        filter = filter.and(col("horodatage").lt(ts(au)));
    }
    let batches = ctx
        .table("audit")
        .await
        .and_then(|t| t.filter(filter))
        .and_then(|t| t.sort(vec![col("seq").sort(false, false)]))
        .and_then(|t| t.limit(0, Some(f.limite)))
        .map_err(ApiError::internal)?
        .collect()
        .await
        .map_err(ApiError::internal)?;
    let mut out = Vec::new();
    for b in &batches {
        let s = |name: &str| text_column(b, name);
        let (user, profil, methode, chemin, ind, sql, ter, per, res, motif) = (
            s("utilisateur"),
            s("profil"),
            s("methode"),
            s("chemin"),
            s("indicateur"),
            s("requete_sql"),
            s("territoire"),
            s("periode"),
            s("resultat"),
            s("motif"),
        );
        let seq = int_column(b, "seq");
        let lignes = int_column(b, "lignes");
        let statut = int_column(b, "statut_http");
        let duree = b
            .column_by_name("duree_ms")
            .expect("audit column")
            .as_primitive::<Float64Type>()
            .clone();
        let when = arrow::compute::cast(
            b.column_by_name("horodatage").expect("audit column"),
            &arrow::datatypes::DataType::Timestamp(arrow::datatypes::TimeUnit::Microsecond, None),
        )
        .map_err(ApiError::internal)?;
        let when = when.as_primitive::<arrow::datatypes::TimestampMicrosecondType>();
        let opt =
            |a: &arrow::array::StringArray, i: usize| a.is_valid(i).then(|| a.value(i).to_owned());
        for i in 0..b.num_rows() {
            out.push(crate::audit::AuditRecord {
                seq: seq.value(i),
                horodatage: chrono::DateTime::from_timestamp_micros(when.value(i))
                    .unwrap_or_default(),
                utilisateur: user.value(i).to_owned(),
                profil: opt(&profil, i),
                methode: methode.value(i).to_owned(),
                chemin: chemin.value(i).to_owned(),
                indicateur: opt(&ind, i),
                requete_sql: opt(&sql, i),
                territoire: opt(&ter, i),
                periode: opt(&per, i),
                lignes: lignes.is_valid(i).then(|| lignes.value(i)),
                resultat: res.value(i).to_owned(),
                statut_http: statut.value(i) as i32,
                motif: opt(&motif, i),
                duree_ms: duree.value(i),
            });
        }
    }
    Ok(out)
}

/// A text column as Utf8 (strings may come back from Parquet as Utf8View).
fn text_column(b: &RecordBatch, name: &str) -> arrow::array::StringArray {
    let column = b.column_by_name(name).expect("declared column");
    arrow::compute::cast(column, &arrow::datatypes::DataType::Utf8)
        .expect("text column")
        .as_string::<i32>()
        .clone()
}

/// An integer column as Int64.
fn int_column(b: &RecordBatch, name: &str) -> arrow::array::Int64Array {
    let column = b.column_by_name(name).expect("declared column");
    arrow::compute::cast(column, &arrow::datatypes::DataType::Int64)
        .expect("integer column")
        .as_primitive::<Int64Type>()
        .clone()
}

/// Converts a batch of the stats table's shape into rows.
pub fn rows_of(b: &RecordBatch) -> Vec<StatRow> {
    let s = |name: &str| text_column(b, name);
    let f = |name: &str| {
        b.column_by_name(name)
            .expect("stats column")
            .as_primitive::<Float64Type>()
            .clone()
    };
    let d = |name: &str| {
        b.column_by_name(name)
            .expect("stats column")
            .as_primitive::<Date32Type>()
            .clone()
    };
    let (ind, niv, ter, pas, per, dim, moda, statut) = (
        s("indicateur"),
        s("territoire_niveau"),
        s("territoire"),
        s("pas"),
        s("periode"),
        s("dimension"),
        s("modalite"),
        s("statut"),
    );
    let revision = s("revision");
    let (valeur, num, den) = (f("valeur"), f("numerateur"), f("denominateur"));
    let (debut, fin) = (d("debut"), d("fin"));
    let secret = b
        .column_by_name("secret")
        .expect("stats column")
        .as_boolean()
        .clone();
    let version = b
        .column_by_name("version")
        .expect("stats column")
        .as_primitive::<Int64Type>()
        .clone();
    let opt = |a: &arrow::array::Float64Array, i: usize| (!a.is_null(i)).then(|| a.value(i));
    (0..b.num_rows())
        .map(|i| StatRow {
            indicateur: ind.value(i).to_owned(),
            territoire_niveau: niv.value(i).to_owned(),
            territoire: ter.value(i).to_owned(),
            code_territoire: territory_code(niv.value(i), ter.value(i)),
            pas: pas.value(i).to_owned(),
            periode: per.value(i).to_owned(),
            debut: Date32Type::to_naive_date_opt(debut.value(i)).unwrap_or_default(),
            fin: Date32Type::to_naive_date_opt(fin.value(i)).unwrap_or_default(),
            dimension: dim.value(i).to_owned(),
            modalite: moda.value(i).to_owned(),
            valeur: opt(&valeur, i),
            secret: secret.value(i),
            numerateur: opt(&num, i),
            denominateur: opt(&den, i),
            statut: statut.value(i).to_owned(),
            version: version.value(i),
            revision: (!revision.is_null(i)).then(|| revision.value(i).to_owned()),
        })
        .collect()
}

/// What the server keeps between requests: the latest release number (re-read only when
/// the releases table gets a new commit) and the rows of recent value queries of that
/// release. A release's figures never change, so a cached answer is the answer; a new
/// release empties the cache.
#[derive(Default)]
pub struct Cache {
    latest: std::sync::Mutex<Option<(Option<u64>, Option<i64>)>>,
    values: std::sync::Mutex<(Option<i64>, CachedAnswers)>,
    territories: std::sync::Mutex<(Option<i64>, CachedTerritories)>,
}

/// The published territories of one release, by scope.
type CachedTerritories = std::collections::HashMap<String, std::sync::Arc<Vec<(String, String)>>>;

/// The answers kept for one release, by query and scope.
type CachedAnswers = std::collections::HashMap<String, std::sync::Arc<Vec<StatRow>>>;

/// Entries kept per release (beyond, the cache starts again empty).
const CACHE_ENTRIES: usize = 4096;

/// The highest commit number of a Delta table's log (`None`: no log).
fn log_version(lake: &Lake, zone: &str, name: &str) -> Option<u64> {
    let dir = lake.table_path(zone, name).join("_delta_log");
    std::fs::read_dir(dir)
        .ok()?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name();
            let name = name.to_str()?;
            name.strip_suffix(".json")?.parse::<u64>().ok()
        })
        .max()
}

impl Cache {
    /// The latest recorded release, read again only after a new commit of `releases`.
    pub async fn latest_release(&self, lake: &Lake) -> Result<Option<i64>, String> {
        let commit = log_version(lake, "stats", "releases");
        if let Some((seen, latest)) = *self.latest.lock().expect("cache")
            && seen == commit
            && commit.is_some()
        {
            return Ok(latest);
        }
        let latest = latest_release(lake).await?;
        *self.latest.lock().expect("cache") = Some((commit, latest));
        Ok(latest)
    }

    /// The rows of a query, from the cache or the lake.
    pub async fn values(
        &self,
        lake: &Lake,
        access: &StatsAccess,
        q: &ValuesQuery,
        latest: Option<i64>,
    ) -> Result<std::sync::Arc<Vec<StatRow>>, ApiError> {
        access.territory(q.niveau, &q.territoire)?;
        let key = format!("{q:?}|{}", access.scope());
        self.cached(key, latest, current_values(lake, access, q))
            .await
    }

    /// The rows of a map query, from the cache or the lake.
    pub async fn map_values(
        &self,
        lake: &Lake,
        access: &StatsAccess,
        q: &MapQuery,
        latest: Option<i64>,
    ) -> Result<std::sync::Arc<Vec<StatRow>>, ApiError> {
        let key = format!("{q:?}|{}", access.scope());
        self.cached(key, latest, map_values(lake, access, q)).await
    }

    /// The published territories within a scope (every page asks for them; on a
    /// national lake, listing them reads the whole statistical table).
    pub async fn territories(
        &self,
        lake: &Lake,
        access: &StatsAccess,
        latest: Option<i64>,
    ) -> Result<std::sync::Arc<Vec<(String, String)>>, ApiError> {
        let key = access.scope().to_string();
        {
            let cache = self.territories.lock().expect("cache");
            if cache.0 == latest
                && let Some(list) = cache.1.get(&key)
            {
                return Ok(list.clone());
            }
        }
        let list = std::sync::Arc::new(published_territories(lake, access).await?);
        let mut cache = self.territories.lock().expect("cache");
        if cache.0 != latest {
            *cache = (latest, Default::default());
        }
        cache.1.insert(key, list.clone());
        Ok(list)
    }

    async fn cached(
        &self,
        key: String,
        latest: Option<i64>,
        load: impl std::future::Future<Output = Result<Vec<StatRow>, ApiError>>,
    ) -> Result<std::sync::Arc<Vec<StatRow>>, ApiError> {
        {
            let cache = self.values.lock().expect("cache");
            if cache.0 == latest
                && let Some(rows) = cache.1.get(&key)
            {
                return Ok(rows.clone());
            }
        }
        let rows = std::sync::Arc::new(load.await?);
        let mut cache = self.values.lock().expect("cache");
        if cache.0 != latest || cache.1.len() >= CACHE_ENTRIES {
            *cache = (latest, Default::default());
        }
        cache.1.insert(key, rows.clone());
        Ok(rows)
    }
}

/// One line of the data-quality report.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct QualityRow {
    /// Département du SIAO.
    pub siao: String,
    /// Mois (AAAA-MM), INCONNU pour les doublons suspects.
    pub mois: String,
    pub table_source: String,
    /// LUES, QUARANTAINE, CONSERVEE_AVEC_DEFAUT, COMPLETUDE ou DOUBLONS_SUSPECTS.
    pub nature: String,
    /// La règle ou la mesure ; vide pour LUES.
    pub mesure: String,
    pub lignes: i64,
}

/// The schema of an exported quality line.
pub fn quality_schema() -> arrow::datatypes::SchemaRef {
    use arrow::datatypes::{DataType, Field, Schema};
    let t = |n: &str| Field::new(n, DataType::Utf8, false);
    std::sync::Arc::new(Schema::new(vec![
        t("siao"),
        t("mois"),
        t("table_source"),
        t("nature"),
        t("mesure"),
        Field::new("lignes", DataType::Int64, false),
    ]))
}

/// The data-quality report of the latest complete ingest, for the SIAO of the caller's
/// scope (one SIAO when given).
pub async fn quality_rows(
    lake: &Lake,
    access: &StatsAccess,
    siao: Option<&str>,
) -> Result<Vec<QualityRow>, ApiError> {
    let Some(table) = lake
        .quality_table("report")
        .await
        .map_err(ApiError::internal)?
    else {
        return Ok(Vec::new());
    };
    let ctx = warehouse::new_session();
    lake.register(&ctx, "rapport", &table)
        .await
        .map_err(ApiError::internal)?;
    let mut frame = ctx.table("rapport").await.map_err(ApiError::internal)?;
    if let Some(s) = siao.filter(|s| !s.is_empty()) {
        frame = frame
            .filter(col("siao").eq(lit(s.to_owned())))
            .map_err(ApiError::internal)?;
    }
    let batches = frame
        .sort(vec![
            col("siao").sort(true, false),
            col("mois").sort(true, false),
            col("table_source").sort(true, false),
            col("nature").sort(true, false),
            col("mesure").sort(true, false),
        ])
        .map_err(ApiError::internal)?
        .collect()
        .await
        .map_err(ApiError::internal)?;
    let mut out = Vec::new();
    for b in &batches {
        let s = |name: &str| text_column(b, name);
        let (siao, mois, table, nature, mesure) = (
            s("siao"),
            s("mois"),
            s("table_source"),
            s("nature"),
            s("mesure"),
        );
        let lignes = int_column(b, "lignes");
        for i in 0..b.num_rows() {
            // A SIAO is départemental: its lines follow the département's scope.
            if !access.allows("DEPARTEMENT", siao.value(i)) {
                continue;
            }
            out.push(QualityRow {
                siao: siao.value(i).to_owned(),
                mois: mois.value(i).to_owned(),
                table_source: table.value(i).to_owned(),
                nature: nature.value(i).to_owned(),
                mesure: mesure.value(i).to_owned(),
                lignes: lignes.value(i),
            });
        }
    }
    Ok(out)
}
