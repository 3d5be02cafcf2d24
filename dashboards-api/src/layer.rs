//! The access layer every `/api/v1` request goes through: authentication (bearer token
//! or session cookie, CSRF on session writes), then the handler, then the audit record.
//!
//! A handler reaches the caller only through [`Caller`], which this layer alone puts in
//! the request; what it read (indicator, territory, period, rows, SQL) it returns as an
//! [`AuditInfo`] response extension. The record is written to the journal before the
//! response leaves: if the journal cannot take it, the caller gets a 503 instead of the
//! data (fail closed).

use std::time::Instant;

use axum::extract::{FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::audit::AuditRecord;
use crate::authz::Principal;
use crate::{ApiError, AppState};

/// The session cookie's name.
pub const SESSION_COOKIE: &str = "obs_session";
/// The header carrying a session's CSRF token on writes.
pub const CSRF_HEADER: &str = "x-csrf-token";

/// The authenticated caller of a request (only this layer inserts it).
#[derive(Debug, Clone)]
pub struct Caller(pub Principal);

impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<Caller>()
            .cloned()
            .ok_or_else(|| ApiError::internal("route servie hors de la couche d'accès"))
    }
}

/// What a request read, for its audit record (a response extension).
#[derive(Debug, Clone, Default)]
pub struct AuditInfo {
    pub indicateur: Option<String>,
    pub requete_sql: Option<String>,
    pub territoire: Option<String>,
    pub periode: Option<String>,
    pub lignes: Option<i64>,
    pub motif: Option<String>,
}

/// The value of a cookie in a request's headers.
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
        .map(str::trim)
}

/// Who the request comes from, or why it is refused.
async fn authenticate(
    state: &AppState,
    method: &Method,
    headers: &HeaderMap,
) -> Result<Principal, ApiError> {
    if let Some(token) = bearer(headers) {
        return state
            .accounts
            .authenticate_token(token)
            .await
            .map_err(ApiError::internal)?
            .ok_or_else(|| ApiError::unauthorized("jeton d'accès invalide, expiré ou révoqué"));
    }
    if let Some(value) = cookie(headers, SESSION_COOKIE) {
        let (principal, csrf) = state
            .accounts
            .session(value)
            .await
            .map_err(ApiError::internal)?
            .ok_or_else(|| ApiError::unauthorized("session expirée : reconnectez-vous"))?;
        let safe = matches!(*method, Method::GET | Method::HEAD);
        if !safe {
            let given = headers
                .get(CSRF_HEADER)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("");
            if !crate::accounts::same_secret(given, &csrf) {
                return Err(ApiError::forbidden_code(
                    "CSRF_INVALIDE",
                    "jeton anti-falsification (en-tête X-CSRF-Token) absent ou invalide",
                ));
            }
        }
        return Ok(principal);
    }
    Err(ApiError::unauthorized(
        "authentification requise : jeton d'accès (en-tête Authorization: Bearer …) ou session",
    ))
}

fn outcome(status: StatusCode) -> &'static str {
    if status.is_success() || status.is_redirection() || status == StatusCode::NOT_MODIFIED {
        "OK"
    } else if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
        "REFUSE"
    } else {
        "ERREUR"
    }
}

/// The middleware of `/api/v1`.
pub async fn access(State(state): State<AppState>, mut request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = request.method().to_string();
    let path = request.uri().path_and_query().map_or_else(
        || request.uri().path().to_owned(),
        |p| p.as_str().to_owned(),
    );
    let principal = authenticate(&state, request.method(), request.headers()).await;
    let (response, principal) = match principal {
        Ok(p) => {
            request.extensions_mut().insert(Caller(p.clone()));
            (next.run(request).await, Some(p))
        }
        Err(e) => (e.into_response(), None),
    };
    let status = response.status();
    state.metrics.observe(&path, status, started.elapsed());
    let info = response
        .extensions()
        .get::<AuditInfo>()
        .cloned()
        .unwrap_or_default();
    let record = AuditRecord {
        seq: 0,
        horodatage: chrono::Utc::now(),
        utilisateur: principal
            .as_ref()
            .map_or_else(|| "anonyme".to_owned(), |p| p.login.clone()),
        profil: principal.as_ref().map(|p| p.profile.code().to_owned()),
        methode: method,
        chemin: truncate(&path, 2000),
        indicateur: info.indicateur,
        requete_sql: info.requete_sql.map(|s| truncate(&s, 20_000)),
        territoire: info.territoire,
        periode: info.periode,
        lignes: info.lignes,
        resultat: outcome(status).to_owned(),
        statut_http: i32::from(status.as_u16()),
        motif: info.motif,
        duree_ms: started.elapsed().as_secs_f64() * 1000.0,
    };
    match state.audit.record(record).await {
        Ok(_) => response,
        Err(e) => {
            tracing::error!(erreur = %e, "lecture refusée : journal d'audit indisponible");
            ApiError {
                status: StatusCode::SERVICE_UNAVAILABLE,
                code: "AUDIT_INDISPONIBLE",
                message: "le journal d'audit ne peut pas être écrit : la lecture est refusée"
                    .into(),
            }
            .into_response()
        }
    }
}

fn truncate(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_owned();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

/// A response with its audit details.
pub fn audited(info: AuditInfo, response: impl IntoResponse) -> Response {
    let mut response = response.into_response();
    response.extensions_mut().insert(info);
    response
}

/// The query string of a request, deserialised; a malformed one (a repeated or
/// ill-typed parameter) is a 400 with a French message, like every other error.
#[derive(Debug, Clone)]
pub struct Params<T>(pub T);

impl<S: Send + Sync, T: serde::de::DeserializeOwned + Send> FromRequestParts<S> for Params<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(v)) => Ok(Params(v)),
            Err(e) => {
                let detail = e.body_text();
                let detail = detail
                    .strip_prefix("Failed to deserialize query string: ")
                    .unwrap_or(&detail)
                    .replace("duplicate field", "paramètre répété")
                    .replace("unknown field", "paramètre inconnu");
                Err(ApiError::bad_request(format!(
                    "paramètres de la requête invalides : {detail}"
                )))
            }
        }
    }
}
