//! Sign-in through the State's identity federation (ProConnect, or any standard OpenID
//! Connect provider): authorisation-code flow with PKCE.
//!
//! `GET /connexion/oidc` discovers the provider, remembers (state → nonce, PKCE verifier)
//! for ten minutes, binds the state to the browser with a cookie and sends the browser to
//! the provider. `GET /connexion/oidc/retour` checks the state against the cookie,
//! exchanges the code (with the verifier), verifies the ID token (signature from the
//! provider's keys, issuer, audience, expiry, nonce), reads the user-info claims, maps
//! them to a profile and a territory with the configured rules (first match; none:
//! refused), creates or updates the federated account and opens a session. Every outcome
//! is audited.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use openidconnect::core::{
    CoreAuthenticationFlow, CoreClient, CoreGenderClaim, CoreProviderMetadata,
};
use openidconnect::{
    AdditionalClaims, AuthorizationCode, ClientId, ClientSecret, CsrfToken, IssuerUrl, Nonce,
    OAuth2TokenResponse, PkceCodeChallenge, PkceCodeVerifier, RedirectUrl, Scope, TokenResponse,
    UserInfoClaims,
};
use serde::{Deserialize, Serialize};

use crate::authz::{Profile, Scope as Territory};
use crate::web::{audit_login, escape, set_cookie};
use crate::{ApiError, AppState};

const STATE_COOKIE: &str = "obs_oidc_etat";
const PENDING_FOR: Duration = Duration::from_secs(600);
const MAX_PENDING: usize = 10_000;

/// The federation's configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OidcConfig {
    /// The issuer (`https://auth.agentconnect.gouv.fr/api/v2`).
    pub issuer: String,
    pub client_id: String,
    /// The client secret (or `OBSERVATOIRE_OIDC_CLIENT_SECRET`).
    #[serde(default)]
    pub client_secret: Option<String>,
    /// This server's callback, as registered with the provider
    /// (`https://observatoire.example/connexion/oidc/retour`).
    pub redirect_url: String,
    /// Scopes beyond `openid` (default: `email`).
    #[serde(default = "default_scopes")]
    pub scopes: Vec<String>,
    /// The claim that gives the account's login (default: `email`).
    #[serde(default = "default_login_claim")]
    pub login_claim: String,
    /// The sign-in button's label.
    #[serde(default = "default_label")]
    pub libelle: String,
    /// Claims → profile and territory, first match wins; no match: refused.
    #[serde(default)]
    pub regles: Vec<OidcRule>,
}

fn default_scopes() -> Vec<String> {
    vec!["email".into()]
}
fn default_login_claim() -> String {
    "email".into()
}
fn default_label() -> String {
    "Se connecter avec ProConnect".into()
}

/// One mapping rule: when `claim` equals `egal` (or ends with `suffixe`), the agent gets
/// `profil` on `territoire`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OidcRule {
    pub claim: String,
    #[serde(default)]
    pub egal: Option<String>,
    #[serde(default)]
    pub suffixe: Option<String>,
    pub profil: String,
    pub territoire: String,
}

impl OidcConfig {
    /// Checks the rules' profiles and territories (at start-up, not at sign-in).
    pub fn check(&self) -> Result<(), String> {
        IssuerUrl::new(self.issuer.clone())
            .map_err(|e| format!("oidc.issuer invalide « {} » : {e}", self.issuer))?;
        RedirectUrl::new(self.redirect_url.clone())
            .map_err(|e| format!("oidc.redirect_url invalide « {} » : {e}", self.redirect_url))?;
        if self.regles.is_empty() {
            return Err("oidc : aucune règle (oidc.regles) ne donne de profil aux agents".into());
        }
        for (i, r) in self.regles.iter().enumerate() {
            let profile =
                Profile::parse(&r.profil).map_err(|e| format!("oidc.regles[{i}] : {e}"))?;
            let scope =
                Territory::parse(&r.territoire).map_err(|e| format!("oidc.regles[{i}] : {e}"))?;
            profile
                .check_scope(&scope)
                .map_err(|e| format!("oidc.regles[{i}] : {e}"))?;
            if r.egal.is_none() == r.suffixe.is_none() {
                return Err(format!(
                    "oidc.regles[{i}] : donnez soit « egal », soit « suffixe »"
                ));
            }
        }
        Ok(())
    }

    /// The profile and territory the claims give, if a rule matches.
    pub fn map(&self, claims: &serde_json::Value) -> Option<(Profile, Territory)> {
        self.regles.iter().find_map(|r| {
            let value = claims.get(&r.claim)?.as_str()?.to_ascii_lowercase();
            let hit = match (&r.egal, &r.suffixe) {
                (Some(e), _) => value == e.to_ascii_lowercase(),
                (None, Some(s)) => value.ends_with(&s.to_ascii_lowercase()),
                (None, None) => false,
            };
            if !hit {
                return None;
            }
            Some((
                Profile::parse(&r.profil).ok()?,
                Territory::parse(&r.territoire).ok()?,
            ))
        })
    }
}

/// Every claim the provider sends beyond the standard ones.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct OtherClaims {
    #[serde(flatten)]
    claims: HashMap<String, serde_json::Value>,
}

impl AdditionalClaims for OtherClaims {}

struct Pending {
    nonce: Nonce,
    verifier: PkceCodeVerifier,
    since: Instant,
}

/// The sign-ins in progress.
#[derive(Default)]
pub struct Federation {
    pending: Mutex<HashMap<String, Pending>>,
}

fn http_client() -> Result<openidconnect::reqwest::Client, String> {
    openidconnect::reqwest::ClientBuilder::new()
        // Following redirects would open the client to SSRF.
        .redirect(openidconnect::reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(10))
        .build()
        .map_err(|e| e.to_string())
}

type Client = CoreClient<
    openidconnect::EndpointSet,
    openidconnect::EndpointNotSet,
    openidconnect::EndpointNotSet,
    openidconnect::EndpointNotSet,
    openidconnect::EndpointMaybeSet,
    openidconnect::EndpointMaybeSet,
>;

async fn client(
    config: &OidcConfig,
    http: &openidconnect::reqwest::Client,
) -> Result<Client, String> {
    let issuer = IssuerUrl::new(config.issuer.clone()).map_err(|e| e.to_string())?;
    let metadata = CoreProviderMetadata::discover_async(issuer, http)
        .await
        .map_err(|e| format!("découverte du fournisseur impossible : {e}"))?;
    let secret = config
        .client_secret
        .clone()
        .or_else(|| std::env::var("OBSERVATOIRE_OIDC_CLIENT_SECRET").ok())
        .map(ClientSecret::new);
    Ok(CoreClient::from_provider_metadata(
        metadata,
        ClientId::new(config.client_id.clone()),
        secret,
    )
    .set_redirect_uri(RedirectUrl::new(config.redirect_url.clone()).map_err(|e| e.to_string())?))
}

fn error_page(status: StatusCode, message: &str) -> Response {
    (
        status,
        Html(format!(
            r#"<!doctype html><html lang="fr"><head><meta charset="utf-8"><title>Connexion impossible – Observatoire SI SIAO</title><link rel="stylesheet" href="/assets/vendor/dsfr/dsfr.min.css"></head><body><main class="fr-container fr-py-6w"><h1>Connexion impossible</h1><div class="fr-alert fr-alert--error fr-mb-3w" role="alert"><p>{}</p></div><p><a class="fr-link" href="/connexion">Revenir à la page de connexion</a></p></main></body></html>"#,
            escape(message)
        )),
    )
        .into_response()
}

/// `GET /connexion/oidc`: to the provider.
pub async fn start(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let Some(config) = state.config.oidc.as_ref() else {
        return Ok(error_page(
            StatusCode::NOT_FOUND,
            "La connexion par la fédération d'identité n'est pas configurée sur ce serveur.",
        ));
    };
    let http = http_client().map_err(ApiError::internal)?;
    let client = match client(config, &http).await {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(erreur = %e, "fédération d'identité injoignable");
            return Ok(error_page(
                StatusCode::BAD_GATEWAY,
                "Le fournisseur d'identité ne répond pas : réessayez plus tard ou connectez-vous avec un compte local.",
            ));
        }
    };
    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let mut request = client.authorize_url(
        CoreAuthenticationFlow::AuthorizationCode,
        CsrfToken::new_random,
        Nonce::new_random,
    );
    for s in &config.scopes {
        request = request.add_scope(Scope::new(s.clone()));
    }
    let (url, csrf, nonce) = request.set_pkce_challenge(challenge).url();
    {
        let mut pending = state.federation.pending.lock().expect("pending");
        pending.retain(|_, p| p.since.elapsed() < PENDING_FOR);
        if pending.len() >= MAX_PENDING {
            return Ok(error_page(
                StatusCode::SERVICE_UNAVAILABLE,
                "Trop de connexions en cours : réessayez dans quelques minutes.",
            ));
        }
        pending.insert(
            csrf.secret().clone(),
            Pending {
                nonce,
                verifier,
                since: Instant::now(),
            },
        );
    }
    let mut response = Redirect::to(url.as_str()).into_response();
    // Lax, not Strict: the cookie must come back on the provider's redirect.
    let cookie = set_cookie(
        &headers,
        STATE_COOKIE,
        csrf.secret(),
        "/connexion/oidc",
        600,
    )
    .to_str()
    .unwrap_or("")
    .replace("SameSite=Strict", "SameSite=Lax");
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        response.headers_mut().insert(header::SET_COOKIE, v);
    }
    Ok(response)
}

#[derive(Deserialize)]
pub struct Callback {
    code: Option<String>,
    state: Option<String>,
    error: Option<String>,
}

/// `GET /connexion/oidc/retour`: the provider's answer.
pub async fn callback(
    State(state): State<AppState>,
    headers: HeaderMap,
    crate::layer::Params(q): crate::layer::Params<Callback>,
) -> Result<Response, ApiError> {
    let started = Instant::now();
    let Some(config) = state.config.oidc.clone() else {
        return Ok(error_page(
            StatusCode::NOT_FOUND,
            "La connexion par la fédération d'identité n'est pas configurée sur ce serveur.",
        ));
    };
    let refuse = |motif: String, message: &'static str| {
        let state = state.clone();
        async move {
            audit_login(
                &state,
                "federation",
                None,
                "ECHEC_CONNEXION",
                StatusCode::FORBIDDEN,
                Some(motif),
                started,
            )
            .await?;
            Ok::<Response, ApiError>(error_page(StatusCode::FORBIDDEN, message))
        }
    };
    if let Some(e) = q.error {
        return refuse(
            format!(
                "le fournisseur a refusé : {}",
                e.chars().take(100).collect::<String>()
            ),
            "Le fournisseur d'identité n'a pas accepté la connexion.",
        )
        .await;
    }
    let (Some(code), Some(csrf)) = (q.code, q.state) else {
        return refuse(
            "réponse du fournisseur incomplète".into(),
            "Réponse du fournisseur d'identité incomplète.",
        )
        .await;
    };
    let bound = crate::layer::cookie(&headers, STATE_COOKIE)
        .is_some_and(|c| crate::accounts::same_secret(c, &csrf));
    let pending = state
        .federation
        .pending
        .lock()
        .expect("pending")
        .remove(&csrf);
    let pending = match (bound, pending) {
        (true, Some(p)) if p.since.elapsed() < PENDING_FOR => p,
        _ => {
            return refuse(
                "état de connexion inconnu, expiré ou d'un autre navigateur".into(),
                "La demande de connexion a expiré ou ne vient pas de ce navigateur : recommencez.",
            )
            .await;
        }
    };
    let outcome: Result<serde_json::Value, String> = async {
        let http = http_client()?;
        let client = client(&config, &http).await?;
        let tokens = client
            .exchange_code(AuthorizationCode::new(code))
            .map_err(|e| e.to_string())?
            .set_pkce_verifier(pending.verifier)
            .request_async(&http)
            .await
            .map_err(|e| format!("échange du code refusé : {e}"))?;
        let id_token = tokens
            .id_token()
            .ok_or("le fournisseur n'a pas donné de jeton d'identité")?;
        let verifier = client.id_token_verifier();
        let id_claims = id_token
            .claims(&verifier, &pending.nonce)
            .map_err(|e| format!("jeton d'identité invalide : {e}"))?;
        let subject = id_claims.subject().clone();
        let info: UserInfoClaims<OtherClaims, CoreGenderClaim> = client
            .user_info(tokens.access_token().clone(), Some(subject))
            .map_err(|e| e.to_string())?
            .request_async(&http)
            .await
            .map_err(|e| format!("informations de l'agent illisibles : {e}"))?;
        serde_json::to_value(&info).map_err(|e| e.to_string())
    }
    .await;
    let claims = match outcome {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(erreur = %e, "connexion fédérée refusée");
            return refuse(
                e,
                "La connexion n'a pas pu être vérifiée auprès du fournisseur d'identité.",
            )
            .await;
        }
    };
    let login = claims
        .get(&config.login_claim)
        .and_then(|v| v.as_str())
        .map(str::to_ascii_lowercase)
        .filter(|l| crate::accounts::check_login(l).is_ok());
    let Some(login) = login else {
        return refuse(
            format!(
                "revendication « {} » absente ou impropre à un identifiant",
                config.login_claim
            ),
            "Votre compte ne donne pas d'identifiant utilisable par l'Observatoire.",
        )
        .await;
    };
    let Some((profile, scope)) = config.map(&claims) else {
        return refuse(
            format!("aucune règle ne donne de profil à « {login} »"),
            "Votre compte n'a pas de profil dans l'Observatoire : demandez-en un à votre administrateur.",
        )
        .await;
    };
    if let Err(e) = state
        .accounts
        .upsert_federated(&login, profile, &scope)
        .await
    {
        return refuse(
            e.to_string(),
            "Ce compte ne peut pas se connecter par la fédération d'identité.",
        )
        .await;
    }
    let (value, _) = state
        .accounts
        .open_session(&login, chrono::Duration::hours(state.config.session_hours))
        .await
        .map_err(ApiError::internal)?;
    audit_login(
        &state,
        &login,
        Some(profile.code().to_owned()),
        "CONNEXION",
        StatusCode::OK,
        Some("fédération d'identité".into()),
        started,
    )
    .await?;
    // A page of ours sends on to the dashboard: the session cookie is SameSite=Strict and
    // would not go with a redirect that the provider's site started.
    let mut response = Html(
        r#"<!doctype html><html lang="fr"><head><meta charset="utf-8"><meta http-equiv="refresh" content="0;url=/"><title>Connexion – Observatoire SI SIAO</title></head><body><p><a href="/">Continuer vers le tableau de bord</a></p></body></html>"#,
    )
    .into_response();
    let headers_out = response.headers_mut();
    headers_out.append(
        header::SET_COOKIE,
        set_cookie(
            &headers,
            crate::layer::SESSION_COOKIE,
            &value,
            "/",
            state.config.session_hours * 3600,
        ),
    );
    headers_out.append(
        header::SET_COOKIE,
        set_cookie(&headers, STATE_COOKIE, "", "/connexion/oidc", 0),
    );
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> OidcConfig {
        OidcConfig {
            issuer: "https://idp.example".into(),
            client_id: "observatoire".into(),
            client_secret: None,
            redirect_url: "https://observatoire.example/connexion/oidc/retour".into(),
            scopes: default_scopes(),
            login_claim: "email".into(),
            libelle: default_label(),
            regles: vec![
                OidcRule {
                    claim: "email".into(),
                    egal: Some("directeur@siao93.fr".into()),
                    suffixe: None,
                    profil: "ADMINISTRATEUR_SIAO".into(),
                    territoire: "D93".into(),
                },
                OidcRule {
                    claim: "email".into(),
                    egal: None,
                    suffixe: Some("@seine-saint-denis.gouv.fr".into()),
                    profil: "ADMINISTRATEUR_DEPARTEMENTAL".into(),
                    territoire: "D93".into(),
                },
            ],
        }
    }

    #[test]
    fn claims_map_to_the_first_matching_rule_or_nothing() {
        let c = config();
        c.check().unwrap();
        let map = |email: &str| c.map(&serde_json::json!({ "email": email }));
        assert_eq!(
            map("Agent@Seine-Saint-Denis.gouv.fr").map(|(p, _)| p),
            Some(Profile::AdministrateurDepartemental)
        );
        assert_eq!(
            map("directeur@siao93.fr").map(|(p, _)| p),
            Some(Profile::AdministrateurSiao)
        );
        assert!(map("agent@paris.gouv.fr").is_none(), "deny by default");
        assert!(c.map(&serde_json::json!({ "sub": "x" })).is_none());
        let mut bad = config();
        bad.regles[0].territoire = "R11".into();
        assert!(
            bad.check().is_err(),
            "an SIAO administrator needs a département"
        );
    }
}
