//! The HTTP server: the JSON API over the statistical base and the web page.
//!
//! Routes:
//! - `GET /health`: liveness and the latest release;
//! - `GET /api/v1/indicateurs`: the catalogue (French labels and definitions);
//! - `GET /api/v1/territoires`: the published territories with their names;
//! - `GET /api/v1/publications`: the releases (number, ingest run, catalogue version,
//!   secrecy threshold, time);
//! - `GET /api/v1/indicateurs/{id}/valeurs?territoire=D93&pas=MOIS&du=…&au=…[&dimension=…]`:
//!   the current figures (highest recorded release per key), in the stats table's shape;
//! - `GET /`: the dashboard page; `GET /assets/…`: vendored DSFR and Chart.js, embedded in
//!   the binary so that no request leaves the machine.
//!
//! Every figure served comes from the stats zone, where disclosure control has already
//! been applied; the detail zone is never read here.

mod assets;
pub mod values;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use serde::{Deserialize, Serialize};
use warehouse::Lake;

pub use values::{StatRow, ValuesQuery};

/// Shared state of the server.
#[derive(Clone)]
pub struct AppState {
    pub lake: Arc<Lake>,
    /// The indicators of the préfet–SIAO conventions, after the national catalogue.
    pub conventions: Arc<Vec<indicators::Indicator>>,
}

/// An API error: a status and a French message, served as JSON.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
}

impl ApiError {
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            message: message.into(),
        }
    }
    pub fn not_found(message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::NOT_FOUND,
            message: message.into(),
        }
    }
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::SERVICE_UNAVAILABLE,
            message: message.into(),
        }
    }
    pub fn internal(message: impl std::fmt::Display) -> Self {
        tracing::error!(erreur = %message, "erreur interne");
        Self {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            message: "erreur interne du serveur".into(),
        }
    }
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    erreur: &'a str,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (
            self.status,
            axum::Json(ErrorBody {
                erreur: &self.message,
            }),
        )
            .into_response()
    }
}

/// The application's routes.
pub fn router(lake: Lake) -> Router {
    router_with(lake, Vec::new())
}

/// The application's routes, with the conventions' own indicators.
pub fn router_with(lake: Lake, conventions: Vec<indicators::Indicator>) -> Router {
    let state = AppState {
        lake: Arc::new(lake),
        conventions: Arc::new(conventions),
    };
    Router::new()
        .route("/", get(page))
        .route("/health", get(health))
        .route("/api/v1/indicateurs", get(catalogue))
        .route("/api/v1/territoires", get(territoires))
        .route("/api/v1/publications", get(publications))
        .route("/api/v1/indicateurs/{id}/valeurs", get(valeurs))
        .route("/assets/{*path}", get(assets::serve))
        .fallback(not_found)
        .layer(axum::middleware::map_response(security_headers))
        .with_state(state)
}

async fn security_headers(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; connect-src 'self'; frame-ancestors 'none'",
        ),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    response
}

async fn not_found() -> ApiError {
    ApiError::not_found("ressource introuvable")
}

/// Binds the server and serves until the process stops. Returns the bound address
/// through `on_bound` before serving (useful with port 0).
pub async fn serve(
    lake: Lake,
    addr: SocketAddr,
    on_bound: impl FnOnce(SocketAddr),
) -> std::io::Result<()> {
    serve_with(lake, Vec::new(), addr, on_bound).await
}

/// Serves the API and the dashboard, with the conventions' own indicators.
pub async fn serve_with(
    lake: Lake,
    conventions: Vec<indicators::Indicator>,
    addr: SocketAddr,
    on_bound: impl FnOnce(SocketAddr),
) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    on_bound(listener.local_addr()?);
    axum::serve(listener, router_with(lake, conventions)).await
}

#[derive(Serialize)]
struct Health {
    statut: &'static str,
    version: Option<i64>,
}

async fn health(State(state): State<AppState>) -> Result<axum::Json<Health>, ApiError> {
    let version = values::latest_release(&state.lake)
        .await
        .map_err(ApiError::internal)?;
    Ok(axum::Json(Health {
        statut: "ok",
        version,
    }))
}

async fn publications(
    State(state): State<AppState>,
) -> Result<axum::Json<Vec<values::Publication>>, ApiError> {
    Ok(axum::Json(values::publications(&state.lake).await?))
}

/// The national catalogue, then the conventions' indicators (each with its `territoire`).
async fn catalogue(State(state): State<AppState>) -> impl IntoResponse {
    let all: Vec<indicators::Indicator> = indicators::CATALOGUE
        .iter()
        .chain(state.conventions.iter())
        .cloned()
        .collect();
    axum::Json(all)
}

#[derive(Serialize)]
struct Territoire {
    code: String,
    niveau: String,
    territoire: String,
    libelle: String,
}

/// The API code of a territory (`FR`, `R11`, `D93`).
pub fn territory_code(niveau: &str, territoire: &str) -> String {
    match niveau {
        "REGION" => format!("R{territoire}"),
        "DEPARTEMENT" => format!("D{territoire}"),
        _ => "FR".to_owned(),
    }
}

/// Parses an API territory code into (territoire_niveau, territoire).
pub fn parse_territory(code: &str) -> Option<(&'static str, String)> {
    if code == "FR" {
        return Some(("FR", "FR".to_owned()));
    }
    if let Some(r) = code.strip_prefix('R')
        && operational::region_name(r).is_some()
    {
        return Some(("REGION", r.to_owned()));
    }
    if let Some(d) = code.strip_prefix('D')
        && operational::departement(d).is_some()
    {
        return Some(("DEPARTEMENT", d.to_owned()));
    }
    None
}

fn territory_label(niveau: &str, territoire: &str) -> String {
    match niveau {
        "REGION" => format!(
            "Région {}",
            operational::region_name(territoire).unwrap_or(territoire)
        ),
        "DEPARTEMENT" => {
            format!(
                "{} – {}",
                territoire,
                operational::departement_name(territoire).unwrap_or(territoire)
            )
        }
        _ => "France entière".to_owned(),
    }
}

async fn territoires(
    State(state): State<AppState>,
) -> Result<axum::Json<Vec<Territoire>>, ApiError> {
    let pairs = values::published_territories(&state.lake).await?;
    Ok(axum::Json(
        pairs
            .into_iter()
            .map(|(niveau, territoire)| Territoire {
                code: territory_code(&niveau, &territoire),
                libelle: territory_label(&niveau, &territoire),
                niveau,
                territoire,
            })
            .collect(),
    ))
}

#[derive(Debug, Deserialize)]
struct ValeursParams {
    territoire: Option<String>,
    pas: Option<String>,
    du: Option<String>,
    au: Option<String>,
    dimension: Option<String>,
    version: Option<String>,
}

async fn valeurs(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Query(params): Query<ValeursParams>,
) -> Result<axum::Json<Vec<StatRow>>, ApiError> {
    let indicator = indicators::CATALOGUE
        .iter()
        .chain(state.conventions.iter())
        .find(|i| i.id == id)
        .ok_or_else(|| {
            ApiError::not_found(format!(
                "indicateur inconnu : « {id} » (voir /api/v1/indicateurs)"
            ))
        })?;
    let query = ValuesQuery::from_params(
        indicator.id,
        params.territoire.as_deref(),
        params.pas.as_deref(),
        params.du.as_deref(),
        params.au.as_deref(),
        params.dimension.as_deref(),
        params.version.as_deref(),
    )?;
    let rows = values::current_values(&state.lake, &query).await?;
    Ok(axum::Json(rows))
}

async fn page() -> impl IntoResponse {
    Html(assets::page_html())
}
