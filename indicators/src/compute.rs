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
//! - medians are lower medians (position ⌈n/2⌉), computed with window row numbers.

use std::sync::Arc;

use arrow::array::{ArrayRef, BooleanArray, Date32Array, Int64Array, RecordBatch, StringArray};
use arrow::compute::{cast, concat_batches};
use arrow::datatypes::{DataType, Date32Type, Field, Schema};
use chrono::{Datelike, NaiveDate};
use datafusion::datasource::MemTable;
use datafusion::prelude::SessionContext;
use warehouse::{Lake, stats_schema};

use crate::catalogue::{CATALOGUE, CATALOGUE_VERSION, Disclosure, Indicator, Shape, resolved_sql};

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
}

impl From<datafusion::error::DataFusionError> for ComputeError {
    fn from(e: datafusion::error::DataFusionError) -> Self {
        ComputeError::DataFusion(Box::new(e))
    }
}

pub type Result<T, E = ComputeError> = std::result::Result<T, E>;

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

/// The MOIS and ANNEE periods intersecting [d0, d1].
pub fn periods(d0: NaiveDate, d1: NaiveDate) -> Vec<Period> {
    let mut out = Vec::new();
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
    for y in d0.year()..=d1.year() {
        out.push(Period {
            pas: "ANNEE",
            label: format!("{y:04}"),
            debut: first_of_month(y, 1),
            fin: first_of_month(y + 1, 1),
        });
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
    /// What the anonymisation did to each table of the analyst zone.
    pub analyst: Vec<crate::analyst::AnonymisedTable>,
}

/// Options of a compute.
#[derive(Debug, Clone)]
pub struct ComputeOptions {
    /// Statistical-secrecy threshold t (11 by default; 1 turns disclosure control off).
    pub secrecy_threshold: i64,
    /// The analyst zone's k-anonymity.
    pub analyst: crate::analyst::AnalystOptions,
}

impl Default for ComputeOptions {
    fn default() -> Self {
        Self {
            secrecy_threshold: 11,
            analyst: crate::analyst::AnalystOptions::default(),
        }
    }
}

/// Computes every indicator of the catalogue over the lake's latest complete run and
/// returns the rows (stats table schema, `version` set to `version`).
pub async fn compute_rows(
    ctx: &SessionContext,
    options: &ComputeOptions,
    version: i64,
    mut progress: impl FnMut(&Indicator),
) -> Result<(RecordBatch, Option<(NaiveDate, NaiveDate)>)> {
    if options.secrecy_threshold < 1 {
        return Err(ComputeError::BadThreshold(options.secrecy_threshold));
    }
    let bounds = observed_bounds(ctx).await?;
    register_territories(ctx).await?;
    register_periods(ctx, bounds).await?;
    let mut batches = Vec::new();
    for indicator in CATALOGUE {
        let sql = grid_sql(indicator, options.secrecy_threshold, version);
        let frame = ctx
            .sql(&sql)
            .await
            .map_err(|source| ComputeError::Indicator {
                indicator: indicator.code,
                source: Box::new(source),
            })?;
        for batch in frame
            .collect()
            .await
            .map_err(|source| ComputeError::Indicator {
                indicator: indicator.code,
                source: Box::new(source),
            })?
        {
            batches.push(conform(&batch)?);
        }
        progress(indicator);
    }
    let schema = stats_schema();
    let rows = concat_batches(&schema, &batches)?;
    // `secret` holds primary suppression: add the secondary one, then blank.
    let rows = crate::suppression::apply(&rows, options.secrecy_threshold)?;
    Ok((rows, bounds))
}

/// Computes and publishes a release: rows appended to `stats/indicateurs`, the analyst
/// zone rebuilt with the release's own pseudonyms, then the release recorded in
/// `stats/releases` (written last: readers only trust recorded releases).
pub async fn publish(
    lake: &Lake,
    options: &ComputeOptions,
    key: &anonymize::MasterKey,
    progress: impl FnMut(&Indicator),
) -> Result<Release> {
    if options.analyst.k < 1 {
        return Err(ComputeError::BadK(options.analyst.k));
    }
    let (ctx, manifest) = lake.detail_session().await?;
    let version = next_version(lake).await?;
    let (rows, bounds) = compute_rows(&ctx, options, version, progress).await?;
    let secret_rows = rows
        .column_by_name("secret")
        .and_then(|c| c.as_any().downcast_ref::<BooleanArray>())
        .map_or(0, |b| b.true_count());
    let n = rows.num_rows();
    lake.append("stats", "indicateurs", rows).await?;
    let analyst = crate::analyst::build(lake, &ctx, key, version, &options.analyst).await?;
    let release = RecordBatch::try_new(
        warehouse::stats::releases_schema(),
        vec![
            Arc::new(Int64Array::from(vec![version])),
            Arc::new(Int64Array::from(vec![manifest.run as i64])),
            Arc::new(StringArray::from(vec![CATALOGUE_VERSION])),
            Arc::new(Int64Array::from(vec![options.secrecy_threshold])),
            Arc::new(StringArray::from(vec![chrono::Utc::now().to_rfc3339()])),
            Arc::new(Int64Array::from(vec![n as i64])),
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
    })
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

async fn register_territories(ctx: &SessionContext) -> Result<()> {
    let (mut dep, mut niveau, mut territoire) = (Vec::new(), Vec::new(), Vec::new());
    for d in operational::territory::departements() {
        for (n, t) in [("DEPARTEMENT", d.code), ("REGION", d.region), ("FR", "FR")] {
            dep.push(d.code);
            niveau.push(n);
            territoire.push(t);
        }
    }
    let schema = Arc::new(Schema::new(vec![
        Field::new("departement", DataType::Utf8, false),
        Field::new("niveau", DataType::Utf8, false),
        Field::new("territoire", DataType::Utf8, false),
    ]));
    let batch = RecordBatch::try_new(
        schema.clone(),
        vec![
            Arc::new(StringArray::from(dep)),
            Arc::new(StringArray::from(niveau)),
            Arc::new(StringArray::from(territoire)),
        ],
    )?;
    ctx.deregister_table("territoires")?;
    ctx.register_table(
        "territoires",
        Arc::new(MemTable::try_new(schema, vec![vec![batch]])?),
    )?;
    // Published territories: départements seen in requests or dispositifs, their régions, FR.
    ctx.deregister_table("publies")?;
    let publies = ctx
        .sql(
            "SELECT DISTINCT t.niveau, t.territoire FROM territoires t
             JOIN (SELECT siao_departement AS departement FROM demande
                   UNION SELECT departement FROM dispositif) s ON s.departement = t.departement",
        )
        .await?;
    ctx.register_table("publies", publies.into_view())?;
    Ok(())
}

async fn register_periods(
    ctx: &SessionContext,
    bounds: Option<(NaiveDate, NaiveDate)>,
) -> Result<()> {
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
    ]));
    let obs = |p: &Period| (p.debut.max(d0), p.fin.min(d1 + chrono::Duration::days(1)));
    let batch = RecordBatch::try_new(
        schema.clone(),
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
        ],
    )?;
    ctx.deregister_table("periodes")?;
    ctx.register_table(
        "periodes",
        Arc::new(MemTable::try_new(schema, vec![vec![batch]])?),
    )?;
    Ok(())
}

/// The SQL that turns an indicator's result into its grid of rows, with `secret` set by
/// the indicator's primary disclosure rule (values not yet blanked: see
/// [`crate::suppression`]).
fn grid_sql(indicator: &Indicator, t: i64, version: i64) -> String {
    let inner = resolved_sql(indicator);
    let (values, result) = match indicator.shape {
        Shape::Count => (
            "CAST(COALESCE(r.valeur, 0) AS DOUBLE) AS valeur, CAST(NULL AS DOUBLE) AS numerateur, CAST(NULL AS DOUBLE) AS denominateur"
                .to_owned(),
            format!("({inner})"),
        ),
        Shape::Ratio => (
            "CASE WHEN COALESCE(r.denominateur, 0) = 0 THEN CAST(NULL AS DOUBLE)
                  ELSE CAST(r.numerateur AS DOUBLE) / CAST(r.denominateur AS DOUBLE) END AS valeur,
             CAST(COALESCE(r.numerateur, 0) AS DOUBLE) AS numerateur,
             CAST(COALESCE(r.denominateur, 0) AS DOUBLE) AS denominateur"
                .to_owned(),
            format!("({inner})"),
        ),
        Shape::Median => (
            "CAST(r.mediane AS DOUBLE) AS valeur, CAST(NULL AS DOUBLE) AS numerateur,
             CAST(COALESCE(r.n, 0) AS DOUBLE) AS denominateur"
                .to_owned(),
            format!(
                "(SELECT niveau, territoire, pas, periode, MAX(n) AS n,
                         MAX(CASE WHEN rang = CAST(CEIL(CAST(n AS DOUBLE) / 2.0) AS BIGINT) THEN v END) AS mediane
                  FROM (SELECT niveau, territoire, pas, periode, v,
                               ROW_NUMBER() OVER (PARTITION BY niveau, territoire, pas, periode ORDER BY v) AS rang,
                               COUNT(*) OVER (PARTITION BY niveau, territoire, pas, periode) AS n
                        FROM ({inner}) WHERE v IS NOT NULL)
                  GROUP BY niveau, territoire, pas, periode)"
            ),
        ),
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
    format!(
        "WITH grille AS (
             SELECT '{id}' AS indicateur, g.niveau AS territoire_niveau, g.territoire, p.pas, p.periode,
                    p.debut, p.fin, {values}
             FROM publies g CROSS JOIN periodes p
             LEFT JOIN {result} r
               ON r.niveau = g.niveau AND r.territoire = g.territoire AND r.pas = p.pas AND r.periode = p.periode),
         controle AS (SELECT *, COALESCE({secret}, FALSE) AS secret FROM grille)
         SELECT indicateur, territoire_niveau, territoire, pas, periode, debut, fin,
                '' AS dimension, '' AS modalite,
                valeur, secret, numerateur, denominateur,
                'PROVISOIRE' AS statut, CAST({version} AS BIGINT) AS version, CAST(NULL AS VARCHAR) AS revision
         FROM controle",
        id = indicator.id,
    )
}

/// Casts a result batch to the stats table's exact schema.
fn conform(batch: &RecordBatch) -> Result<RecordBatch> {
    let schema = stats_schema();
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

    fn d(y: i32, m: u32, day: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, day).unwrap()
    }

    #[test]
    fn periods_cover_the_observed_interval() {
        let p = periods(d(2024, 12, 15), d(2025, 2, 1));
        let labels: Vec<_> = p.iter().map(|p| (p.pas, p.label.as_str())).collect();
        assert_eq!(
            labels,
            [
                ("MOIS", "2024-12"),
                ("MOIS", "2025-01"),
                ("MOIS", "2025-02"),
                ("ANNEE", "2024"),
                ("ANNEE", "2025")
            ]
        );
        assert_eq!(p[0].fin, d(2025, 1, 1));
        assert_eq!(p[4].fin, d(2026, 1, 1));
    }
}
