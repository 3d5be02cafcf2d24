//! The HTTP server: the access layer, the JSON API over the statistical base, the audit
//! log and the web page.
//!
//! Routes (every `/api/v1` route authenticated, checked by [`authz`], audited):
//! - `GET /health`: liveness and the latest release (public); `GET /metrics` (Prometheus);
//! - `GET /api/v1/indicateurs`: the catalogue (French labels and definitions; a
//!   convention's indicator only for callers who see its département);
//! - `GET /api/v1/territoires`: the published territories within the caller's scope;
//! - `GET /api/v1/publications`: the releases;
//! - `GET /api/v1/indicateurs/{id}/valeurs?territoire=D93&pas=MOIS&du=…&au=…[&dimension=…][&version=N]`:
//!   the current figures (highest recorded release per key), in the stats table's shape;
//! - `GET /api/v1/indicateurs/{id}/comparaison?territoires=D93,R11,FR…`: territories side by side;
//! - `GET /api/v1/indicateurs/{id}/carte?pas=MOIS&periode=2025-03`: one period, every
//!   département of the caller's scope (the map);
//! - `GET /api/v1/audit?utilisateur=…&du=…&au=…&chemin=…`: the audit log (national
//!   administrator only);
//! - `GET /connexion`, `POST /connexion`, `POST /deconnexion`: web sign-in (session
//!   cookie, CSRF-protected form);
//! - `GET /`, `/indicateurs`, `/indicateurs/{id}`, `/carte`, `/comparaison`, `/qualite`:
//!   the web UI's pages (signed-in users; [`web`]); `GET /assets/…`: the pages' script
//!   and style, the départements' shapes, vendored DSFR and Chart.js, embedded in the
//!   binary so that no request leaves the machine.
//!
//! Every figure served comes from the stats zone, where disclosure control has already
//! been applied; the detail zone is never read here.

pub mod accounts;
mod assets;
pub mod audit;
pub mod authz;
pub mod demo;
pub mod export;
pub mod formats;
pub mod layer;
pub mod metrics;
pub mod oidc;
pub mod openapi;
pub mod sql;
pub mod values;
mod web;

use std::net::SocketAddr;
use std::path::{Path as FsPath, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::{Deserialize, Serialize};
use warehouse::Lake;

use crate::layer::{AuditInfo, Caller, Params, audited};

pub use values::{StatRow, ValuesQuery};

/// Shared state of the server.
#[derive(Clone)]
pub struct AppState {
    pub lake: Arc<Lake>,
    /// The indicators of the préfet–SIAO conventions, after the national catalogue.
    pub conventions: Arc<Vec<indicators::Indicator>>,
    pub accounts: Arc<accounts::Accounts>,
    pub audit: Arc<audit::AuditLog>,
    pub metrics: Arc<metrics::Metrics>,
    pub config: Arc<ServerConfig>,
    /// The latest release and recent answers of the values route.
    pub cache: Arc<values::Cache>,
    /// Federated sign-ins in progress.
    pub federation: Arc<oidc::Federation>,
    /// Analyst queries running at once.
    pub sql_slots: Arc<tokio::sync::Semaphore>,
}

/// How the server is set up.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// The data folder: the lake, `comptes.db`, `journal-audit/`.
    pub data_dir: PathBuf,
    /// The indicators of the préfet–SIAO conventions.
    pub conventions: Vec<indicators::Indicator>,
    /// The audit journal's folder (default `<data>/journal-audit`; one server per folder).
    pub audit_dir: Option<PathBuf>,
    /// Replaces the audit journal's current file (tests: a device that cannot be written).
    pub audit_journal_file: Option<PathBuf>,
    /// How often the audit journal is compacted into the lake.
    pub audit_compaction: Duration,
    /// Lifetime of a web session.
    pub session_hours: i64,
    /// Limits of analyst SQL.
    pub sql: sql::SqlLimits,
    /// Sign-in through the identity federation (none: local accounts only).
    pub oidc: Option<oidc::OidcConfig>,
}

impl ServerConfig {
    pub fn new(data_dir: &FsPath) -> Self {
        Self {
            data_dir: data_dir.to_owned(),
            conventions: Vec::new(),
            audit_dir: None,
            audit_journal_file: None,
            audit_compaction: Duration::from_secs(60),
            session_hours: 8,
            sql: sql::SqlLimits::default(),
            oidc: None,
        }
    }

    pub fn with_conventions(mut self, conventions: Vec<indicators::Indicator>) -> Self {
        self.conventions = conventions;
        self
    }

    /// The account store's file.
    pub fn accounts_path(&self) -> PathBuf {
        accounts_path(&self.data_dir)
    }
}

/// The account store of a data folder.
pub fn accounts_path(data_dir: &FsPath) -> PathBuf {
    data_dir.join("comptes.db")
}

/// A server start-up error (French message).
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error(transparent)]
    Accounts(#[from] accounts::AccountError),
    #[error(transparent)]
    Audit(#[from] audit::AuditError),
    #[error("serveur : {0}")]
    Io(#[from] std::io::Error),
    #[error("configuration de la fédération d'identité : {0}")]
    Oidc(String),
}

/// An API error: a status, a stable code and a French message, served as JSON.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
}

impl ApiError {
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            code: "REQUETE_INVALIDE",
            message: message.into(),
        }
    }
    pub fn not_found(message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::NOT_FOUND,
            code: "INTROUVABLE",
            message: message.into(),
        }
    }
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::SERVICE_UNAVAILABLE,
            code: "INDISPONIBLE",
            message: message.into(),
        }
    }
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::UNAUTHORIZED,
            code: "AUTHENTIFICATION_REQUISE",
            message: message.into(),
        }
    }
    /// An authorisation refusal (403): the reason is the caller's and the audit log's.
    pub fn forbidden(denied: authz::Denied) -> Self {
        Self::forbidden_code("ACCES_REFUSE", denied.reason)
    }
    pub fn forbidden_code(code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::FORBIDDEN,
            code,
            message: message.into(),
        }
    }
    pub fn internal(message: impl std::fmt::Display) -> Self {
        tracing::error!(erreur = %message, "erreur interne");
        Self {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            code: "ERREUR_INTERNE",
            message: "erreur interne du serveur".into(),
        }
    }
    /// The same error with another stable code.
    pub fn with_code(mut self, code: &'static str) -> Self {
        self.code = code;
        self
    }
}

impl From<authz::Denied> for ApiError {
    fn from(denied: authz::Denied) -> Self {
        ApiError::forbidden(denied)
    }
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    code: &'a str,
    erreur: &'a str,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (
            self.status,
            axum::Json(ErrorBody {
                code: self.code,
                erreur: &self.message,
            }),
        )
            .into_response();
        response.extensions_mut().insert(AuditInfo {
            motif: Some(self.message),
            ..Default::default()
        });
        response
    }
}

/// The application: its routes over shared state (accounts and audit journal opened).
pub async fn app(config: ServerConfig) -> Result<(Router, AppState), ServerError> {
    if let Some(o) = &config.oidc {
        o.check().map_err(ServerError::Oidc)?;
    }
    let lake = Arc::new(Lake::new(&config.data_dir));
    let accounts = Arc::new(accounts::Accounts::open(&config.accounts_path()).await?);
    let audit = Arc::new(
        audit::AuditLog::open(
            lake.clone(),
            &config
                .audit_dir
                .clone()
                .unwrap_or_else(|| config.data_dir.join("journal-audit")),
            config.audit_journal_file.clone(),
        )
        .await?,
    );
    let state = AppState {
        lake,
        conventions: Arc::new(config.conventions.clone()),
        accounts,
        audit,
        metrics: Arc::new(metrics::Metrics::default()),
        cache: Arc::new(values::Cache::default()),
        federation: Arc::new(oidc::Federation::default()),
        sql_slots: Arc::new(tokio::sync::Semaphore::new(config.sql.concurrent.max(1))),
        config: Arc::new(config),
    };
    let api = Router::new()
        .route("/api/v1/indicateurs", get(catalogue))
        .route("/api/v1/territoires", get(territoires))
        .route("/api/v1/publications", get(publications))
        .route("/api/v1/indicateurs/{id}/valeurs", get(valeurs))
        .route("/api/v1/indicateurs/{id}/comparaison", get(comparaison))
        .route("/api/v1/indicateurs/{id}/carte", get(carte))
        .route("/api/v1/periodes", get(periodes))
        .route("/api/v1/qualite", get(qualite))
        .route("/api/v1/audit", get(audit_log))
        .route("/api/v1/sql", post(sql_query))
        .route("/api/v1/{*reste}", get(api_not_found).post(api_not_found))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            layer::access,
        ));
    let router = Router::new()
        .route("/", get(web::home))
        .route("/indicateurs", get(web::catalogue))
        .route("/indicateurs/{id}", get(web::indicator))
        .route("/carte", get(web::map))
        .route("/comparaison", get(web::comparison))
        .route("/qualite", get(web::quality))
        .route("/connexion", get(web::login_form).post(web::login))
        .route("/deconnexion", post(web::logout))
        .route("/connexion/oidc", get(oidc::start))
        .route("/connexion/oidc/retour", get(oidc::callback))
        .route("/health", get(health))
        .route("/metrics", get(metrics_route))
        .route("/api/v1/openapi.json", get(openapi::document))
        .route("/assets/{*path}", get(assets::serve))
        .merge(api)
        .fallback(not_found)
        .layer(axum::middleware::map_response(security_headers))
        .with_state(state.clone());
    Ok((router, state))
}

async fn security_headers(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; connect-src 'self'; frame-ancestors 'none'; form-action 'self'",
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
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    response
}

async fn not_found() -> ApiError {
    ApiError::not_found("ressource introuvable")
}

async fn api_not_found() -> ApiError {
    ApiError::not_found("route inconnue de l'API (voir /api/v1/indicateurs)")
}

/// Binds the server and serves until Ctrl+C or SIGTERM (graceful: requests in flight
/// finish, the audit journal is compacted). Returns the bound address through
/// `on_bound` before serving (useful with port 0).
pub async fn serve(
    config: ServerConfig,
    addr: SocketAddr,
    on_bound: impl FnOnce(SocketAddr),
) -> Result<(), ServerError> {
    let every = config.audit_compaction;
    let (router, state) = app(config).await?;
    let listener = tokio::net::TcpListener::bind(addr).await?;
    on_bound(listener.local_addr()?);
    let audit = state.audit.clone();
    let compactor = tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.tick().await;
        loop {
            tick.tick().await;
            if let Err(e) = audit.compact().await {
                tracing::error!(erreur = %e, "compactage du journal d'audit impossible");
            }
        }
    });
    let served = axum::serve(listener, router)
        .with_graceful_shutdown(shutdown_signal())
        .await;
    compactor.abort();
    if let Err(e) = state.audit.compact().await {
        tracing::error!(erreur = %e, "compactage du journal d'audit à l'arrêt impossible");
    }
    served.map_err(ServerError::Io)
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}

#[derive(Serialize, utoipa::ToSchema)]
struct Health {
    statut: &'static str,
    version: Option<i64>,
}

/// Liveness and the latest release.
#[utoipa::path(get, path = "/health", tag = "exploitation", summary = "État du service", description = "Le service répond ; numéro de la dernière publication.",
    responses((status = 200, description = "Le service répond", body = Health)))]
async fn health(State(state): State<AppState>) -> Result<axum::Json<Health>, ApiError> {
    let version = values::latest_release(&state.lake)
        .await
        .map_err(ApiError::internal)?;
    Ok(axum::Json(Health {
        statut: "ok",
        version,
    }))
}

async fn metrics_route(State(state): State<AppState>) -> Response {
    if let Ok(Some(v)) = values::latest_release(&state.lake).await {
        state
            .metrics
            .release
            .store(v, std::sync::atomic::Ordering::Relaxed);
    }
    let text = state.metrics.render(
        state
            .audit
            .written
            .load(std::sync::atomic::Ordering::Relaxed),
    );
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
        )],
        text,
    )
        .into_response()
}

/// The releases of the statistical base, latest first.
#[utoipa::path(get, path = "/api/v1/publications", tag = "publications", summary = "Publications", description = "Les publications de la base statistique, la plus récente d'abord.",
    params(ExportParams),
    responses(
        (status = 200, description = "Les publications (JSON) ou le fichier exporté", content(
            (Vec<values::Publication> = "application/json"),
            (String = "text/csv"),
            (Vec<u8> = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"),
            (Vec<u8> = "application/vnd.apache.parquet"))),
        (status = 400, description = "Paramètre invalide", body = openapi::Erreur),
        (status = 401, description = "Authentification requise", body = openapi::Erreur),
        (status = 503, description = "Aucune publication, ou journal d'audit indisponible", body = openapi::Erreur)),
    security(("jeton" = []), ("session" = [])))]
async fn publications(
    State(state): State<AppState>,
    Caller(_): Caller,
    Params(params): Params<ExportParams>,
) -> Result<Response, ApiError> {
    let result = async {
        let list = values::publications(&state.lake).await?;
        use arrow::datatypes::DataType::Int64;
        let schema = list_schema(
            &["catalogue", "calculee_le", "nature", "motif"],
            &[
                ("version", Int64, false),
                ("ingestion", Int64, false),
                ("seuil_secret", Int64, false),
                ("lignes", Int64, false),
            ],
        );
        let response = list_response(
            &list,
            schema,
            params.format.as_deref(),
            params.colonnes.as_deref(),
            "publications",
            "Publications de la base statistique",
        )?;
        Ok((response, list.len()))
    }
    .await;
    Ok(finish(AuditInfo::default(), result))
}

/// The national catalogue, then the conventions' indicators the caller may see (each
/// with its `territoire`).
/// The catalogue: the national indicators, then the conventions' indicators the caller
/// may see.
#[utoipa::path(get, path = "/api/v1/indicateurs", tag = "catalogue", summary = "Catalogue des indicateurs", description = "Les indicateurs nationaux puis ceux des conventions que l'appelant peut voir : libellé, définition, unité, dimensions, règle de secret.",
    responses(
        (status = 200, description = "Les indicateurs", body = Vec<openapi::Indicateur>),
        (status = 401, description = "Authentification requise", body = openapi::Erreur),
        (status = 503, description = "Journal d'audit indisponible", body = openapi::Erreur)),
    security(("jeton" = []), ("session" = [])))]
async fn catalogue(State(state): State<AppState>, Caller(caller): Caller) -> Response {
    let access = authz::stats_access(&caller);
    let all: Vec<indicators::Indicator> = indicators::CATALOGUE
        .iter()
        .chain(state.conventions.iter())
        .filter(|i| access.shows_indicator(i.territoire))
        .cloned()
        .collect();
    let info = AuditInfo {
        lignes: Some(all.len() as i64),
        ..Default::default()
    };
    audited(info, axum::Json(all))
}

#[derive(Serialize, utoipa::ToSchema)]
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

/// The published territories within the caller's scope.
#[utoipa::path(get, path = "/api/v1/territoires", tag = "catalogue", summary = "Territoires", description = "Les territoires publiés dans le périmètre de l'appelant.",
    params(ExportParams),
    responses(
        (status = 200, description = "Les territoires (JSON) ou le fichier exporté", content(
            (Vec<Territoire> = "application/json"),
            (String = "text/csv"),
            (Vec<u8> = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"),
            (Vec<u8> = "application/vnd.apache.parquet"))),
        (status = 400, description = "Paramètre invalide", body = openapi::Erreur),
        (status = 401, description = "Authentification requise", body = openapi::Erreur),
        (status = 503, description = "Aucune publication, ou journal d'audit indisponible", body = openapi::Erreur)),
    security(("jeton" = []), ("session" = [])))]
async fn territoires(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Params(params): Params<ExportParams>,
) -> Result<Response, ApiError> {
    let access = authz::stats_access(&caller);
    let result = async {
        let latest = state
            .cache
            .latest_release(&state.lake)
            .await
            .map_err(ApiError::internal)?;
        let pairs = state
            .cache
            .territories(&state.lake, &access, latest)
            .await?;
        let list: Vec<Territoire> = pairs
            .iter()
            .map(|(niveau, territoire)| Territoire {
                code: territory_code(niveau, territoire),
                libelle: territory_label(niveau, territoire),
                niveau: niveau.clone(),
                territoire: territoire.clone(),
            })
            .collect();
        let response = list_response(
            &list,
            list_schema(&["code", "niveau", "territoire", "libelle"], &[]),
            params.format.as_deref(),
            params.colonnes.as_deref(),
            "territoires",
            "Territoires publiés dans le périmètre",
        )?;
        Ok((response, list.len()))
    }
    .await;
    Ok(finish(AuditInfo::default(), result))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct ValeursParams {
    /// Territoire : FR, R suivi d'un code de région (R11), D suivi d'un code de département (D93). FR par défaut.
    territoire: Option<String>,
    /// Pas de temps : JOUR, SEMAINE, MOIS, TRIMESTRE, ANNEE ou HIVER (tous par défaut).
    pas: Option<String>,
    /// Premier jour des périodes (AAAA-MM-JJ), inclus.
    du: Option<String>,
    /// Dernier jour des périodes (AAAA-MM-JJ), inclus.
    au: Option<String>,
    /// Dimension de ventilation (composition, tranche_age, …) ; vide : le total.
    dimension: Option<String>,
    /// Numéro d'une publication passée (la dernière par défaut).
    version: Option<String>,
    /// Format : json (par défaut), csv (Excel français), xlsx ou parquet.
    format: Option<String>,
    /// Colonnes à exporter, séparées par des virgules (toutes par défaut).
    colonnes: Option<String>,
    /// Page (à partir de 1), avec par_page ; sans eux, toutes les lignes (total dans X-Total-Count).
    page: Option<String>,
    /// Lignes par page (1 à 10 000 ; 1 000 par défaut quand page est donné).
    par_page: Option<String>,
}

/// The secrecy note of exports.
const SECRET_NOTE: &str = "Une cellule « secret = oui » a sa valeur masquée (vide) : elle repose sur moins de 11 personnes, ménages, demandes, orientations, séjours ou nuitées (secret statistique primaire), ou permettrait de recalculer une cellule masquée (secret secondaire). Ses termes sont masqués de même.";

/// The current figures of an indicator (or those of release `version`), as JSON or as
/// an export (`format=csv|xlsx|parquet`, `colonnes=…`).
#[utoipa::path(get, path = "/api/v1/indicateurs/{id}/valeurs", tag = "valeurs", summary = "Valeurs d'un indicateur", description = "Les valeurs courantes (ou celles de la publication `version`) d'un indicateur sur un territoire du périmètre, en JSON ou exportées (CSV pour Excel, XLSX, Parquet), avec les colonnes choisies.",
    params(("id" = String, Path, description = "Identifiant de l'indicateur (taux_dnp_115)"), ValeursParams),
    responses(
        (status = 200, description = "Les valeurs (JSON) ou le fichier exporté", content(
            (Vec<StatRow> = "application/json"),
            (String = "text/csv"),
            (Vec<u8> = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"),
            (Vec<u8> = "application/vnd.apache.parquet"))),
        (status = 304, description = "Inchangé depuis l'ETag donné"),
        (status = 400, description = "Paramètre invalide", body = openapi::Erreur),
        (status = 401, description = "Authentification requise", body = openapi::Erreur),
        (status = 403, description = "Territoire hors du périmètre", body = openapi::Erreur),
        (status = 404, description = "Indicateur ou publication inconnu", body = openapi::Erreur),
        (status = 503, description = "Aucune publication, ou journal d'audit indisponible", body = openapi::Erreur)),
    security(("jeton" = []), ("session" = [])))]
async fn valeurs(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(id): Path<String>,
    Params(params): Params<ValeursParams>,
    headers: HeaderMap,
    uri: axum::http::Uri,
) -> Result<Response, ApiError> {
    let access = authz::stats_access(&caller);
    let mut info = AuditInfo {
        indicateur: Some(id.clone()),
        territoire: params.territoire.clone(),
        periode: match (&params.du, &params.au) {
            (None, None) => None,
            (du, au) => Some(format!(
                "{}/{}",
                du.as_deref().unwrap_or(""),
                au.as_deref().unwrap_or("")
            )),
        },
        ..Default::default()
    };
    let result: Result<(Response, Option<String>, usize), ApiError> = async {
        let export = export::ExportFormat::parse(params.format.as_deref())?;
        let indicator = visible_indicator(&state, &access, &id)?;
        let query = ValuesQuery::from_params(
            indicator.id,
            params.territoire.as_deref(),
            params.pas.as_deref(),
            params.du.as_deref(),
            params.au.as_deref(),
            params.dimension.as_deref(),
            params.version.as_deref(),
        )?;
        access.territory(query.niveau, &query.territoire)?;
        // The figures of a release never change: one ETag per (release, request, scope).
        let latest = state
            .cache
            .latest_release(&state.lake)
            .await
            .map_err(ApiError::internal)?;
        let etag = latest.map(|v| {
            use std::hash::{Hash, Hasher};
            let mut h = std::hash::DefaultHasher::new();
            (uri.to_string(), access.scope().to_string()).hash(&mut h);
            format!("\"r{v}-{:016x}\"", h.finish())
        });
        if let Some(tag) = &etag
            && headers
                .get(header::IF_NONE_MATCH)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.split(',').any(|t| t.trim() == tag))
        {
            state
                .metrics
                .cache_hits
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            return Ok((StatusCode::NOT_MODIFIED.into_response(), etag, 0));
        }
        let rows = state
            .cache
            .values(&state.lake, &access, &query, latest)
            .await?;
        let n = rows.len();
        let response = if export == export::ExportFormat::Json && params.colonnes.is_none() {
            paginate(
                rows.as_slice(),
                params.page.as_deref(),
                params.par_page.as_deref(),
            )?
        } else {
            let batch = export::batch_of(rows.as_slice(), export::stat_row_schema())?;
            let batch = export::select_columns(batch, params.colonnes.as_deref())?;
            let mut filtres = vec![(
                "Territoire".to_owned(),
                territory_label(query.niveau, &query.territoire),
            )];
            for (k, v) in [
                ("Pas", &params.pas),
                ("Du", &params.du),
                ("Au (exclu)", &params.au),
                ("Dimension", &params.dimension),
            ] {
                if let Some(v) = v.as_ref().filter(|v| !v.is_empty()) {
                    filtres.push((k.to_owned(), v.clone()));
                }
            }
            let notes = export::Notes {
                titre: format!("{} ({})", indicator.libelle, indicator.code),
                definition: Some(indicator.definition.to_owned()),
                unite: Some(indicator.unite.to_owned()),
                publication: query.version.or(latest),
                filtres,
                secret: Some(SECRET_NOTE.to_owned()),
            };
            let stem = format!(
                "{}_{}",
                indicator.id,
                territory_code(query.niveau, &query.territoire)
            );
            export::respond(export, &batch, &stem, &notes)?
        };
        Ok((response, etag, n))
    }
    .await;
    match result {
        Ok((mut response, etag, n)) => {
            info.lignes = Some(n as i64);
            if let Some(tag) = etag.and_then(|t| HeaderValue::from_str(&t).ok()) {
                response.headers_mut().insert(header::ETAG, tag);
                response.headers_mut().insert(
                    header::CACHE_CONTROL,
                    HeaderValue::from_static("private, no-cache"),
                );
            }
            Ok(audited(info, response))
        }
        Err(e) => {
            info.motif = Some(e.message.clone());
            let response = e.into_response();
            Ok(audited(info, response))
        }
    }
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct AuditParams {
    /// Identifiant du compte.
    utilisateur: Option<String>,
    /// Début du chemin (/api/v1/sql).
    chemin: Option<String>,
    /// Premier jour (AAAA-MM-JJ), inclus.
    du: Option<String>,
    /// Jour de fin (AAAA-MM-JJ), exclu.
    au: Option<String>,
    /// Nombre maximal de lignes (1 à 10 000 ; 1 000 par défaut).
    limite: Option<String>,
    /// Format : json (par défaut), csv, xlsx ou parquet.
    format: Option<String>,
    /// Colonnes à exporter, séparées par des virgules.
    colonnes: Option<String>,
}

/// The audit log (national administrator only), latest first.
#[utoipa::path(get, path = "/api/v1/audit", tag = "audit", summary = "Journal d'audit", description = "Les lectures journalisées, la plus récente d'abord (administrateur national).",
    params(AuditParams),
    responses(
        (status = 200, description = "Les lectures journalisées (JSON) ou le fichier exporté", content(
            (Vec<audit::AuditRecord> = "application/json"),
            (String = "text/csv"),
            (Vec<u8> = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"),
            (Vec<u8> = "application/vnd.apache.parquet"))),
        (status = 400, description = "Paramètre invalide", body = openapi::Erreur),
        (status = 401, description = "Authentification requise", body = openapi::Erreur),
        (status = 403, description = "Réservé à l'administrateur national", body = openapi::Erreur),
        (status = 503, description = "Journal d'audit indisponible", body = openapi::Erreur)),
    security(("jeton" = []), ("session" = [])))]
async fn audit_log(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Params(params): Params<AuditParams>,
) -> Result<Response, ApiError> {
    let access = authz::audit_access(&caller)?;
    let filter = values::AuditFilter::from_params(
        params.utilisateur.as_deref(),
        params.chemin.as_deref(),
        params.du.as_deref(),
        params.au.as_deref(),
        params.limite.as_deref(),
    )?;
    state.audit.compact().await.map_err(ApiError::internal)?;
    let rows = values::audit_rows(&state.lake, &access, &filter).await?;
    let info = AuditInfo {
        periode: (filter.du.is_some() || filter.au.is_some()).then(|| {
            format!(
                "{}/{}",
                filter.du.map(|d| d.to_string()).unwrap_or_default(),
                filter.au.map(|d| d.to_string()).unwrap_or_default()
            )
        }),
        ..Default::default()
    };
    use arrow::datatypes::DataType::{Float64, Int32, Int64};
    let schema = list_schema(
        &[
            "horodatage",
            "utilisateur",
            "profil",
            "methode",
            "chemin",
            "indicateur",
            "requete_sql",
            "territoire",
            "periode",
            "resultat",
            "motif",
        ],
        &[
            ("seq", Int64, false),
            ("lignes", Int64, true),
            ("statut_http", Int32, false),
            ("duree_ms", Float64, false),
        ],
    );
    let result = list_response(
        &rows,
        schema,
        params.format.as_deref(),
        params.colonnes.as_deref(),
        "journal_audit",
        "Journal d'audit des lectures",
    )
    .map(|r| (r, rows.len()));
    Ok(finish(info, result))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
struct SqlBody {
    /// La requête (une lecture : SELECT, WITH, EXPLAIN, SHOW).
    requete: String,
    /// json (par défaut), csv ou arrow.
    format: Option<String>,
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct SqlParams {
    /// json, csv ou arrow.
    format: Option<String>,
}

/// `POST /api/v1/sql`: a JSON body `{"requete": "SELECT …", "format": "json"}`, or the SQL
/// text itself (`text/plain`, `application/sql`) with `?format=`; or `Accept` chooses.
#[utoipa::path(post, path = "/api/v1/sql", tag = "sql", summary = "Requête SQL d'analyste", description = "Une lecture SQL (DataFusion) sur les vues du profil : indicateurs, releases, analyst.*, detail.* (statisticien national), audit.reads (administrateur national), limitées au territoire.",
    params(SqlParams),
    request_body(content(
        (SqlBody = "application/json"),
        (String = "text/plain"))),
    responses(
        (status = 200, description = "Le résultat", content(
            (openapi::ResultatSql = "application/json"),
            (String = "text/csv"),
            (Vec<u8> = "application/vnd.apache.arrow.stream"))),
        (status = 400, description = "Requête invalide ou table inconnue", body = openapi::Erreur),
        (status = 401, description = "Authentification requise", body = openapi::Erreur),
        (status = 403, description = "Profil sans accès SQL, ou requête autre qu'une lecture", body = openapi::Erreur),
        (status = 408, description = "Délai dépassé", body = openapi::Erreur),
        (status = 413, description = "Résultat trop grand", body = openapi::Erreur),
        (status = 422, description = "Mémoire dépassée", body = openapi::Erreur),
        (status = 429, description = "Trop de requêtes en cours", body = openapi::Erreur),
        (status = 503, description = "Journal d'audit indisponible", body = openapi::Erreur)),
    security(("jeton" = []), ("session" = [])))]
async fn sql_query(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Params(params): Params<SqlParams>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let zones = authz::zones(&caller)?;
    let access = authz::stats_access(&caller);
    let is_json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    let (query, format_param) = if is_json {
        let parsed: SqlBody = serde_json::from_slice(&body).map_err(|e| {
            ApiError::bad_request(format!(
                "corps JSON invalide : {e} (attendu {{\"requete\": \"SELECT …\", \"format\": \"json\"}})"
            ))
        })?;
        (parsed.requete, parsed.format.or(params.format))
    } else {
        let text = String::from_utf8(body.to_vec())
            .map_err(|_| ApiError::bad_request("la requête SQL n'est pas du texte UTF-8"))?;
        (text, params.format)
    };
    let mut info = AuditInfo {
        requete_sql: Some(query.clone()),
        ..Default::default()
    };
    if query.trim().is_empty() {
        return Ok(audited(info, ApiError::bad_request("requête SQL vide")));
    }
    let format = match formats::Format::choose(
        format_param.as_deref(),
        headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()),
    ) {
        Ok(f) => f,
        Err(e) => return Ok(audited(info, e)),
    };
    let Ok(_slot) = state.sql_slots.clone().try_acquire_owned() else {
        let e = ApiError {
            status: StatusCode::TOO_MANY_REQUESTS,
            code: "TROP_DE_REQUETES",
            message: "trop de requêtes SQL en cours : réessayez dans quelques secondes".into(),
        };
        return Ok(audited(info, e));
    };
    if zones.audit && query.to_ascii_lowercase().contains("audit") {
        state.audit.compact().await.map_err(ApiError::internal)?;
    }
    let result = sql::run(
        state.lake.clone(),
        zones,
        access,
        state.config.sql.clone(),
        query,
    )
    .await;
    match result {
        Ok((schema, batches)) => {
            info.lignes = Some(batches.iter().map(|b| b.num_rows() as i64).sum());
            let bytes = formats::encode(format, &batches, &schema)?;
            let response = (
                [(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static(format.content_type()),
                )],
                bytes,
            );
            Ok(audited(info, response))
        }
        Err(e) => {
            info.motif = Some(e.message.clone());
            let response = e.into_response();
            Ok(audited(info, response))
        }
    }
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct ExportParams {
    /// Format : json (par défaut), csv (Excel français), xlsx ou parquet.
    format: Option<String>,
    /// Colonnes à exporter, séparées par des virgules (toutes par défaut).
    colonnes: Option<String>,
}

/// A list route's answer: its rows as JSON, or exported (`format`, `colonnes`) with a
/// notes sheet titled `titre`.
fn list_response<T: Serialize>(
    rows: &[T],
    schema: arrow::datatypes::SchemaRef,
    format: Option<&str>,
    colonnes: Option<&str>,
    stem: &str,
    titre: &str,
) -> Result<Response, ApiError> {
    let export = export::ExportFormat::parse(format)?;
    if export == export::ExportFormat::Json && colonnes.is_none() {
        return Ok(axum::Json(rows).into_response());
    }
    let batch = export::batch_of(rows, schema)?;
    let batch = export::select_columns(batch, colonnes)?;
    let notes = export::Notes {
        titre: titre.to_owned(),
        ..Default::default()
    };
    export::respond(export, &batch, stem, &notes)
}

/// An Arrow schema of text columns, then (name, type, nullable) columns.
fn list_schema(
    text: &[&str],
    others: &[(&str, arrow::datatypes::DataType, bool)],
) -> arrow::datatypes::SchemaRef {
    use arrow::datatypes::{DataType, Field, Schema};
    let mut fields: Vec<Field> = text
        .iter()
        .map(|n| Field::new(*n, DataType::Utf8, true))
        .collect();
    fields.extend(
        others
            .iter()
            .map(|(n, t, null)| Field::new(*n, t.clone(), *null)),
    );
    std::sync::Arc::new(Schema::new(fields))
}

/// An indicator of the catalogue the caller may see (a convention's only where it applies).
fn visible_indicator<'a>(
    state: &'a AppState,
    access: &authz::StatsAccess,
    id: &str,
) -> Result<&'a indicators::Indicator, ApiError> {
    indicators::CATALOGUE
        .iter()
        .chain(state.conventions.iter())
        .filter(|i| access.shows_indicator(i.territoire))
        .find(|i| i.id == id)
        .ok_or_else(|| {
            ApiError::not_found(format!(
                "indicateur inconnu : « {id} » (voir /api/v1/indicateurs)"
            ))
            .with_code("INDICATEUR_INCONNU")
        })
}

/// A read's response with its audit details: the rows it returned, or the reason it failed.
fn finish(mut info: AuditInfo, result: Result<(Response, usize), ApiError>) -> Response {
    match result {
        Ok((response, n)) => {
            info.lignes = Some(n as i64);
            audited(info, response)
        }
        Err(e) => {
            info.motif = Some(e.message.clone());
            audited(info, e.into_response())
        }
    }
}

/// Pagination of a JSON list: `page` (from 1) and `par_page` (at most 10,000); without
/// them, every row. The total goes in `X-Total-Count`.
fn paginate<T: Serialize>(
    rows: &[T],
    page: Option<&str>,
    per_page: Option<&str>,
) -> Result<Response, ApiError> {
    let parse = |name: &str, v: Option<&str>, max: usize| -> Result<Option<usize>, ApiError> {
        match v.filter(|v| !v.is_empty()) {
            None => Ok(None),
            Some(t) => match t.parse::<usize>() {
                Ok(n) if (1..=max).contains(&n) => Ok(Some(n)),
                _ => Err(ApiError::bad_request(format!(
                    "paramètre « {name} » invalide : « {t} » (de 1 à {max})"
                ))),
            },
        }
    };
    let page = parse("page", page, usize::MAX)?;
    let per_page = parse("par_page", per_page, 10_000)?;
    let total = rows.len();
    let slice = match (page, per_page) {
        (None, None) => rows,
        (p, n) => {
            let n = n.unwrap_or(1000);
            let start = (p.unwrap_or(1) - 1).saturating_mul(n).min(total);
            &rows[start..(start + n).min(total)]
        }
    };
    let mut response = axum::Json(slice).into_response();
    if let Ok(v) = HeaderValue::from_str(&total.to_string()) {
        response.headers_mut().insert("x-total-count", v);
    }
    Ok(response)
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct ComparaisonParams {
    /// Territoires comparés, séparés par des virgules (D93,R11,FR), tous dans le périmètre.
    territoires: Option<String>,
    /// Pas de temps : JOUR, SEMAINE, MOIS, TRIMESTRE, ANNEE ou HIVER.
    pas: Option<String>,
    /// Premier jour des périodes (AAAA-MM-JJ), inclus.
    du: Option<String>,
    /// Dernier jour des périodes (AAAA-MM-JJ), inclus.
    au: Option<String>,
    /// Dimension de ventilation ; vide : le total.
    dimension: Option<String>,
    /// Numéro d'une publication passée.
    version: Option<String>,
    /// Format : json (par défaut), csv, xlsx ou parquet.
    format: Option<String>,
    /// Colonnes à exporter, séparées par des virgules.
    colonnes: Option<String>,
}

/// Several territories side by side (my département, its région, France).
#[utoipa::path(get, path = "/api/v1/indicateurs/{id}/comparaison", tag = "valeurs", summary = "Comparaison de territoires", description = "Les valeurs d'un indicateur pour plusieurs territoires du périmètre (au plus 20), l'un après l'autre, en JSON ou exportées.",
    params(("id" = String, Path, description = "Identifiant de l'indicateur"), ComparaisonParams),
    responses(
        (status = 200, description = "Les valeurs (JSON) ou le fichier exporté", content(
            (Vec<StatRow> = "application/json"),
            (String = "text/csv"),
            (Vec<u8> = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"),
            (Vec<u8> = "application/vnd.apache.parquet"))),
        (status = 400, description = "Paramètre invalide", body = openapi::Erreur),
        (status = 401, description = "Authentification requise", body = openapi::Erreur),
        (status = 403, description = "Un territoire hors du périmètre", body = openapi::Erreur),
        (status = 404, description = "Indicateur ou publication inconnu", body = openapi::Erreur),
        (status = 503, description = "Aucune publication, ou journal d'audit indisponible", body = openapi::Erreur)),
    security(("jeton" = []), ("session" = [])))]
async fn comparaison(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(id): Path<String>,
    Params(params): Params<ComparaisonParams>,
) -> Result<Response, ApiError> {
    let access = authz::stats_access(&caller);
    let info = AuditInfo {
        indicateur: Some(id.clone()),
        territoire: params.territoires.clone(),
        ..Default::default()
    };
    let result = async {
        let export = export::ExportFormat::parse(params.format.as_deref())?;
        let indicator = visible_indicator(&state, &access, &id)?;
        let codes: Vec<&str> = params
            .territoires
            .as_deref()
            .unwrap_or("")
            .split(',')
            .map(str::trim)
            .filter(|c| !c.is_empty())
            .collect();
        if codes.is_empty() || codes.len() > 20 {
            return Err(ApiError::bad_request(
                "paramètre « territoires » : de 1 à 20 codes séparés par des virgules (par exemple D93,R11,FR)",
            ));
        }
        let latest = state
            .cache
            .latest_release(&state.lake)
            .await
            .map_err(ApiError::internal)?;
        // Every territory is checked before any is read.
        let mut queries = Vec::new();
        for code in &codes {
            let q = ValuesQuery::from_params(
                indicator.id,
                Some(code),
                params.pas.as_deref(),
                params.du.as_deref(),
                params.au.as_deref(),
                params.dimension.as_deref(),
                params.version.as_deref(),
            )?;
            access.territory(q.niveau, &q.territoire)?;
            queries.push(q);
        }
        let mut rows = Vec::new();
        for q in &queries {
            rows.extend(state.cache.values(&state.lake, &access, q, latest).await?.iter().cloned());
        }
        let n = rows.len();
        let response = if export == export::ExportFormat::Json && params.colonnes.is_none() {
            axum::Json(rows).into_response()
        } else {
            let batch = export::batch_of(&rows, export::stat_row_schema())?;
            let batch = export::select_columns(batch, params.colonnes.as_deref())?;
            let notes = export::Notes {
                titre: format!("{} ({}) : comparaison", indicator.libelle, indicator.code),
                definition: Some(indicator.definition.to_owned()),
                unite: Some(indicator.unite.to_owned()),
                publication: queries[0].version.or(latest),
                filtres: vec![("Territoires".into(), codes.join(", "))],
                secret: Some(SECRET_NOTE.to_owned()),
            };
            export::respond(export, &batch, &format!("{}_comparaison", indicator.id), &notes)?
        };
        Ok((response, n))
    }
    .await;
    Ok(finish(info, result))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct CarteParams {
    /// Pas de temps : JOUR, SEMAINE, MOIS, TRIMESTRE, ANNEE ou HIVER.
    pas: Option<String>,
    /// La période du pas (2025-03, 2025-T1, 2025, 2025-2026, 2025-W11, 2025-03-14).
    periode: Option<String>,
    /// Dimension de ventilation ; vide : le total.
    dimension: Option<String>,
    /// Modalité de la dimension (avec dimension).
    modalite: Option<String>,
    /// Numéro d'une publication passée.
    version: Option<String>,
    /// Format : json (par défaut), csv, xlsx ou parquet.
    format: Option<String>,
    /// Colonnes à exporter, séparées par des virgules.
    colonnes: Option<String>,
}

/// One period's figures of every département of the caller's scope (the map).
#[utoipa::path(get, path = "/api/v1/indicateurs/{id}/carte", tag = "valeurs", summary = "Carte des départements", description = "Les valeurs d'un indicateur pour une période, département par département, limitées aux départements du périmètre de l'appelant, en JSON ou exportées.",
    params(("id" = String, Path, description = "Identifiant de l'indicateur"), CarteParams),
    responses(
        (status = 200, description = "Les valeurs (JSON) ou le fichier exporté", content(
            (Vec<StatRow> = "application/json"),
            (String = "text/csv"),
            (Vec<u8> = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"),
            (Vec<u8> = "application/vnd.apache.parquet"))),
        (status = 400, description = "Paramètre invalide", body = openapi::Erreur),
        (status = 401, description = "Authentification requise", body = openapi::Erreur),
        (status = 404, description = "Indicateur ou publication inconnu", body = openapi::Erreur),
        (status = 503, description = "Aucune publication, ou journal d'audit indisponible", body = openapi::Erreur)),
    security(("jeton" = []), ("session" = [])))]
async fn carte(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(id): Path<String>,
    Params(params): Params<CarteParams>,
) -> Result<Response, ApiError> {
    let access = authz::stats_access(&caller);
    let info = AuditInfo {
        indicateur: Some(id.clone()),
        territoire: Some(access.scope().to_string()),
        periode: params.periode.clone(),
        ..Default::default()
    };
    let result = async {
        let export = export::ExportFormat::parse(params.format.as_deref())?;
        let indicator = visible_indicator(&state, &access, &id)?;
        let query = values::MapQuery::from_params(
            indicator.id,
            params.pas.as_deref(),
            params.periode.as_deref(),
            params.dimension.as_deref(),
            params.modalite.as_deref(),
            params.version.as_deref(),
        )?;
        let latest = state
            .cache
            .latest_release(&state.lake)
            .await
            .map_err(ApiError::internal)?;
        let rows = state
            .cache
            .map_values(&state.lake, &access, &query, latest)
            .await?;
        let n = rows.len();
        let response = if export == export::ExportFormat::Json && params.colonnes.is_none() {
            axum::Json(rows.as_slice()).into_response()
        } else {
            let batch = export::batch_of(rows.as_slice(), export::stat_row_schema())?;
            let batch = export::select_columns(batch, params.colonnes.as_deref())?;
            let mut filtres = vec![
                (
                    "Territoires".to_owned(),
                    format!("départements de {}", access.scope()),
                ),
                ("Pas".to_owned(), query.pas.clone()),
                ("Période".to_owned(), query.periode.clone()),
            ];
            if !query.dimension.is_empty() {
                filtres.push((
                    "Dimension".to_owned(),
                    format!("{} = {}", query.dimension, query.modalite),
                ));
            }
            let notes = export::Notes {
                titre: format!(
                    "{} ({}) : carte des départements",
                    indicator.libelle, indicator.code
                ),
                definition: Some(indicator.definition.to_owned()),
                unite: Some(indicator.unite.to_owned()),
                publication: query.version.or(latest),
                filtres,
                secret: Some(SECRET_NOTE.to_owned()),
            };
            export::respond(
                export,
                &batch,
                &format!("{}_carte_{}", indicator.id, query.periode),
                &notes,
            )?
        };
        Ok((response, n))
    }
    .await;
    Ok(finish(info, result))
}

/// A closed month.
#[derive(Serialize, utoipa::ToSchema)]
struct Periode {
    /// Mois clôturé (AAAA-MM).
    mois: String,
    /// MANUELLE ou AUTOMATIQUE.
    origine: String,
    cloture_le: String,
}

/// The closed months (their periods are DEFINITIF, never recomputed).
#[utoipa::path(get, path = "/api/v1/periodes", tag = "publications", summary = "Mois clôturés", description = "Les mois clôturés : leurs périodes sont définitives et ne sont plus recalculées (sauf révision explicite).",
    params(ExportParams),
    responses(
        (status = 200, description = "Les mois clôturés (JSON) ou le fichier exporté", content(
            (Vec<Periode> = "application/json"),
            (String = "text/csv"),
            (Vec<u8> = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"),
            (Vec<u8> = "application/vnd.apache.parquet"))),
        (status = 400, description = "Paramètre invalide", body = openapi::Erreur),
        (status = 401, description = "Authentification requise", body = openapi::Erreur),
        (status = 503, description = "Journal d'audit indisponible", body = openapi::Erreur)),
    security(("jeton" = []), ("session" = [])))]
async fn periodes(
    State(state): State<AppState>,
    Caller(_): Caller,
    Params(params): Params<ExportParams>,
) -> Result<Response, ApiError> {
    let result = async {
        let list: Vec<Periode> = indicators::closing::closures(&state.lake)
            .await
            .map_err(ApiError::internal)?
            .into_iter()
            .map(|c| Periode {
                mois: c.mois,
                origine: c.origine,
                cloture_le: c.cloture_le,
            })
            .collect();
        let response = list_response(
            &list,
            list_schema(&["mois", "origine", "cloture_le"], &[]),
            params.format.as_deref(),
            params.colonnes.as_deref(),
            "mois_clotures",
            "Mois clôturés",
        )?;
        Ok((response, list.len()))
    }
    .await;
    Ok(finish(AuditInfo::default(), result))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct QualiteParams {
    /// Département du SIAO (93) ; tous ceux du périmètre par défaut.
    siao: Option<String>,
    /// Format : json (par défaut), csv, xlsx ou parquet.
    format: Option<String>,
    /// Colonnes à exporter, séparées par des virgules.
    colonnes: Option<String>,
    /// Page (à partir de 1), avec par_page.
    page: Option<String>,
    /// Lignes par page (1 à 10 000 ; 1 000 par défaut quand page est donné).
    par_page: Option<String>,
}

/// The data-quality report of the latest complete ingest, per SIAO and month.
#[utoipa::path(get, path = "/api/v1/qualite", tag = "qualite", summary = "Rapport de qualité des données", description = "Par SIAO et par mois : lignes lues, mises en quarantaine et gardées avec un défaut par règle, complétude des champs, doublons suspects ; limité aux SIAO du périmètre.",
    params(QualiteParams),
    responses(
        (status = 200, description = "Les lignes du rapport (JSON) ou le fichier exporté", content(
            (Vec<values::QualityRow> = "application/json"),
            (String = "text/csv"),
            (Vec<u8> = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"),
            (Vec<u8> = "application/vnd.apache.parquet"))),
        (status = 400, description = "Paramètre invalide", body = openapi::Erreur),
        (status = 401, description = "Authentification requise", body = openapi::Erreur),
        (status = 403, description = "SIAO hors du périmètre", body = openapi::Erreur),
        (status = 503, description = "Journal d'audit indisponible", body = openapi::Erreur)),
    security(("jeton" = []), ("session" = [])))]
async fn qualite(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Params(params): Params<QualiteParams>,
) -> Result<Response, ApiError> {
    let access = authz::stats_access(&caller);
    let info = AuditInfo {
        territoire: params.siao.as_ref().map(|s| format!("D{s}")),
        ..Default::default()
    };
    let result = async {
        let export = export::ExportFormat::parse(params.format.as_deref())?;
        if let Some(siao) = params.siao.as_deref().filter(|s| !s.is_empty()) {
            if operational::departement(siao).is_none() {
                return Err(ApiError::bad_request(format!(
                    "paramètre « siao » invalide : « {siao} » (attendu le code du département du SIAO, par exemple 93)"
                )));
            }
            access.territory("DEPARTEMENT", siao)?;
        }
        let rows = values::quality_rows(&state.lake, &access, params.siao.as_deref()).await?;
        let n = rows.len();
        let response = if export == export::ExportFormat::Json && params.colonnes.is_none() {
            paginate(&rows, params.page.as_deref(), params.par_page.as_deref())?
        } else {
            let batch = export::batch_of(&rows, values::quality_schema())?;
            let batch = export::select_columns(batch, params.colonnes.as_deref())?;
            let notes = export::Notes {
                titre: "Rapport de qualité des données".into(),
                filtres: vec![(
                    "SIAO".into(),
                    params.siao.clone().unwrap_or_else(|| access.scope().to_string()),
                )],
                ..Default::default()
            };
            export::respond(export, &batch, "qualite", &notes)?
        };
        Ok((response, n))
    }
    .await;
    Ok(finish(info, result))
}
