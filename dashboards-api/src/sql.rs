//! Analyst SQL over HTTP (`POST /api/v1/sql`).
//!
//! Each query gets a session of its own holding only what the caller's profile may read
//! ([`authz::zones`]), already restricted to its territory:
//! - `indicateurs` (the statistical base, the caller's cells only, recorded releases
//!   only) and `releases`;
//! - `analyst.<table>` (Analyste, Statisticien national, Administrateur national): rows of
//!   the caller's départements only when it is scoped to a territory;
//! - `detail.<table>` (Statisticien national), pinned to the latest complete run;
//! - `audit.reads` (Administrateur national).
//!
//! The schemas `analyst`, `detail` and `audit` exist in every session, empty when not
//! allowed, so that a table the caller may not read answers exactly like a table that
//! does not exist. Only reads are planned (no DDL, DML, COPY, SET; no URL tables); a
//! query runs on a runtime of its own with a hard memory limit, no spilling and a time
//! limit, and a bounded number run at once — the rest of the server keeps serving.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use arrow::array::RecordBatch;
use datafusion::catalog::MemorySchemaProvider;
use datafusion::error::DataFusionError;
use datafusion::execution::context::SQLOptions;
use datafusion::logical_expr::{Expr, col, lit};
use datafusion::prelude::SessionContext;
use futures::StreamExt;
use warehouse::Lake;

use crate::ApiError;
use crate::authz::{Scope, StatsAccess, Zones};

/// The limits of one query.
#[derive(Debug, Clone)]
pub struct SqlLimits {
    pub timeout: Duration,
    pub memory_bytes: usize,
    /// Rows of a result (beyond: refused, with the advice to aggregate or LIMIT).
    pub max_rows: usize,
    /// Queries running at once (beyond: 429).
    pub concurrent: usize,
}

impl Default for SqlLimits {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(30),
            memory_bytes: 512 << 20,
            max_rows: 100_000,
            concurrent: 2,
        }
    }
}

/// The runtime SQL queries run on: two threads of their own, so that the API's runtime
/// stays responsive whatever a query does. Never dropped.
fn sql_runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("sql-analyste")
            .enable_all()
            .build()
            .expect("SQL runtime")
    })
}

/// The analyst zone's rows a scope may read (micro-data: only its own départements'
/// rows, or, for a région, those generalised to the région).
fn analyst_filter(scope: &Scope) -> Expr {
    match scope {
        Scope::France => lit(true),
        Scope::Region(r) => {
            let mut values: Vec<Expr> = operational::territory::departements()
                .filter(|d| d.region == r)
                .map(|d| lit(d.code))
                .collect();
            values.push(lit(format!("R{r}")));
            col("departement").in_list(values, false)
        }
        Scope::Departements(ds) => {
            col("departement").in_list(ds.iter().map(|d| lit(d.clone())).collect(), false)
        }
    }
}

fn internal(e: impl std::fmt::Display) -> ApiError {
    ApiError::internal(e)
}

/// Builds the caller's session.
async fn session(
    lake: &Lake,
    zones: Zones,
    access: &StatsAccess,
    limits: &SqlLimits,
) -> Result<SessionContext, ApiError> {
    let ctx = warehouse::sandbox_session(limits.memory_bytes, 2);
    let catalog = ctx
        .catalog("datafusion")
        .ok_or_else(|| internal("catalogue par défaut absent"))?;
    for schema in ["analyst", "detail", "audit"] {
        catalog
            .register_schema(schema, Arc::new(MemorySchemaProvider::new()))
            .map_err(internal)?;
    }
    if zones.stats {
        let latest = crate::values::latest_release(lake)
            .await
            .map_err(internal)?;
        if let (Some(stats), Some(releases), Some(latest)) = (
            lake.open("stats", "indicateurs", None)
                .await
                .map_err(internal)?,
            lake.open("stats", "releases", None)
                .await
                .map_err(internal)?,
            latest,
        ) {
            let raw = warehouse::new_session();
            lake.register(&raw, "indicateurs", &stats)
                .await
                .map_err(internal)?;
            let view = raw
                .table("indicateurs")
                .await
                .and_then(|t| t.filter(col("version").lt_eq(lit(latest)).and(access.filter())))
                .map_err(internal)?;
            ctx.register_table("indicateurs", view.into_view())
                .map_err(internal)?;
            releases
                .update_datafusion_session(&ctx.state())
                .map_err(internal)?;
            stats
                .update_datafusion_session(&ctx.state())
                .map_err(internal)?;
            lake.register(&ctx, "releases", &releases)
                .await
                .map_err(internal)?;
        }
    }
    if zones.analyst {
        let raw = warehouse::new_session();
        for name in lake.zone_tables("analyst").map_err(internal)? {
            let Some(table) = lake.open("analyst", &name, None).await.map_err(internal)? else {
                continue;
            };
            lake.register(&raw, &name, &table).await.map_err(internal)?;
            table
                .update_datafusion_session(&ctx.state())
                .map_err(internal)?;
            let frame = raw.table(name.as_str()).await.map_err(internal)?;
            let has_territory = frame
                .schema()
                .has_column_with_unqualified_name("departement");
            let frame = match (access.scope(), has_territory) {
                (Scope::France, _) => frame,
                (scope, true) => frame.filter(analyst_filter(scope)).map_err(internal)?,
                // A table without territory (the anonymisation's record) is metadata.
                (_, false) => frame,
            };
            ctx.register_table(format!("analyst.{name}").as_str(), frame.into_view())
                .map_err(internal)?;
        }
    }
    if zones.detail
        && let Some(manifest) = lake.latest_run().map_err(internal)?
    {
        for (name, version) in &manifest.tables {
            if let Some(table) = lake
                .open("detail", name, Some(*version))
                .await
                .map_err(internal)?
            {
                lake.register(&ctx, &format!("detail.{name}"), &table)
                    .await
                    .map_err(internal)?;
            }
        }
    }
    if zones.audit
        && let Some(table) = lake.open("audit", "reads", None).await.map_err(internal)?
    {
        lake.register(&ctx, "audit.reads", &table)
            .await
            .map_err(internal)?;
    }
    Ok(ctx)
}

/// The French error of a DataFusion failure.
fn sql_error(e: &DataFusionError, limits: &SqlLimits) -> ApiError {
    let text = e.to_string();
    let inner = match e {
        DataFusionError::Context(_, inner) => inner.as_ref(),
        other => other,
    };
    if matches!(inner, DataFusionError::ResourcesExhausted(_))
        || text.contains("Resources exhausted")
    {
        return ApiError {
            status: axum::http::StatusCode::UNPROCESSABLE_ENTITY,
            code: "MEMOIRE_DEPASSEE",
            message: format!(
                "la requête dépasse la mémoire permise ({} Mo) : filtrez ou agrégez davantage",
                limits.memory_bytes >> 20
            ),
        };
    }
    for kind in [
        "DDL not supported",
        "DML not supported",
        "Statement not supported",
    ] {
        if text.contains(kind) {
            return ApiError::forbidden_code(
                "REQUETE_REFUSEE",
                "requête refusée : seules les lectures sont permises (SELECT, WITH, EXPLAIN, SHOW) — ni création, ni modification, ni COPY, ni SET",
            );
        }
    }
    if let Some(name) = unknown_table(&text) {
        return ApiError::bad_request(format!(
            "table inconnue : « {name} » (les tables permises sont listées par SELECT * FROM information_schema.tables)"
        ))
        .with_code("TABLE_INCONNUE");
    }
    // DataFusion's own words, after a French prefix: they name the SQL problem.
    let detail = text
        .trim_start_matches("Error during planning: ")
        .trim_start_matches("SQL error: ");
    ApiError::bad_request(format!("requête SQL invalide : {detail}")).with_code("SQL_INVALIDE")
}

/// The table name of DataFusion's "table '…' not found", without the default catalog
/// and schema.
fn unknown_table(text: &str) -> Option<String> {
    let start = text.find("table '")? + "table '".len();
    let rest = &text[start..];
    let end = rest.find("' not found")?;
    let name = &rest[..end];
    let name = name.strip_prefix("datafusion.").unwrap_or(name);
    let name = name.strip_prefix("public.").unwrap_or(name);
    Some(name.to_owned())
}

/// Runs a caller's query within its limits; returns the result's batches.
pub async fn run(
    lake: Arc<Lake>,
    zones: Zones,
    access: StatsAccess,
    limits: SqlLimits,
    query: String,
) -> Result<(arrow::datatypes::SchemaRef, Vec<RecordBatch>), ApiError> {
    let task_limits = limits.clone();
    let handle = sql_runtime().spawn(async move {
        let limits = task_limits;
        let ctx = session(&lake, zones, &access, &limits).await?;
        let options = SQLOptions::new()
            .with_allow_ddl(false)
            .with_allow_dml(false)
            .with_allow_statements(false);
        let frame = ctx
            .sql_with_options(&query, options)
            .await
            .map_err(|e| sql_error(&e, &limits))?;
        let mut stream = frame
            .execute_stream()
            .await
            .map_err(|e| sql_error(&e, &limits))?;
        let schema = stream.schema();
        let mut batches = Vec::new();
        let mut rows = 0usize;
        while let Some(batch) = stream.next().await {
            let batch = batch.map_err(|e| sql_error(&e, &limits))?;
            rows += batch.num_rows();
            if rows > limits.max_rows {
                return Err(ApiError {
                    status: axum::http::StatusCode::PAYLOAD_TOO_LARGE,
                    code: "RESULTAT_TROP_GRAND",
                    message: format!(
                        "le résultat dépasse {} lignes : agrégez ou ajoutez LIMIT",
                        limits.max_rows
                    ),
                });
            }
            batches.push(batch);
        }
        Ok((schema, batches))
    });
    let abort = handle.abort_handle();
    match tokio::time::timeout(limits.timeout, handle).await {
        Ok(Ok(result)) => result,
        Ok(Err(e)) => Err(internal(format!("requête SQL interrompue : {e}"))),
        Err(_) => {
            abort.abort();
            Err(ApiError {
                status: axum::http::StatusCode::REQUEST_TIMEOUT,
                code: "DELAI_DEPASSE",
                message: format!(
                    "la requête a dépassé le délai permis ({} s) et a été arrêtée",
                    limits.timeout.as_secs()
                ),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_tables_are_named_as_written() {
        assert_eq!(
            unknown_table("Error during planning: table 'datafusion.detail.personne' not found"),
            Some("detail.personne".into())
        );
        assert_eq!(
            unknown_table("Error during planning: table 'datafusion.public.secret' not found"),
            Some("secret".into())
        );
        assert_eq!(unknown_table("autre erreur"), None);
    }
}
