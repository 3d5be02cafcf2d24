//! Web sign-in and the pages of the web UI.
//!
//! Every page is one static shell (DSFR header with the main navigation, footer) around a
//! static body; the page's script (`assets/app/app.js`) reads every figure from the audited
//! API with the session's cookie. So a page never holds a figure itself: what it shows went
//! through the authorisation module and the audit log like any other read, and the pages
//! need no code of their own on the server beyond the session check.
//!
//! The sign-in form carries a CSRF token that must equal the value of a short-lived
//! cookie set with the form (double submit; the cookie is HttpOnly and SameSite=Strict).
//! A successful sign-in opens a session: cookie `obs_session` (HttpOnly, SameSite=Strict,
//! Secure unless the page was reached on the loopback interface without TLS), whose
//! CSRF token the page carries for its own writes (sign-out). Every sign-in, failure and
//! sign-out is written to the audit log.

use std::time::Instant;

use axum::Form;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use serde::Deserialize;

use crate::accounts::LoginFailure;
use crate::audit::AuditRecord;
use crate::layer::{SESSION_COOKIE, cookie};
use crate::{ApiError, AppState, assets};

const LOGIN_CSRF_COOKIE: &str = "obs_csrf_connexion";

pub(crate) fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

/// Whether cookies get the `Secure` attribute: always, except on the loopback interface
/// without TLS in front (the demo, the tests), where browsers would drop them.
fn secure(headers: &HeaderMap) -> bool {
    let forwarded_https = headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("https"));
    if forwarded_https {
        return true;
    }
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let name = host.rsplit_once(':').map_or(host, |(h, _)| h);
    !matches!(name, "127.0.0.1" | "localhost" | "[::1]")
}

pub(crate) fn set_cookie(
    headers: &HeaderMap,
    name: &str,
    value: &str,
    path: &str,
    max_age: i64,
) -> HeaderValue {
    let secure = if secure(headers) { "; Secure" } else { "" };
    HeaderValue::from_str(&format!(
        "{name}={value}; Path={path}; Max-Age={max_age}; HttpOnly; SameSite=Strict{secure}"
    ))
    .expect("cookie text is ASCII")
}

fn login_page(csrf: &str, message: Option<&str>, federation: Option<&str>) -> String {
    let federation = federation
        .map(|label| {
            format!(
                r#"<div class="fr-mb-4w"><a class="fr-btn fr-btn--secondary" id="federation" href="/connexion/oidc">{}</a></div><p class="fr-hr-or">ou</p>"#,
                escape(label)
            )
        })
        .unwrap_or_default();
    let alert = message
        .map(|m| {
            format!(
                r#"<div class="fr-alert fr-alert--error fr-mb-3w" role="alert"><p>{}</p></div>"#,
                escape(m)
            )
        })
        .unwrap_or_default();
    format!(
        r#"<!doctype html>
<html lang="fr" data-fr-scheme="light">
<head>
  <meta charset="utf-8">
  <meta name="viewport" content="width=device-width, initial-scale=1">
  <title>Connexion – Observatoire SI SIAO</title>
  <link rel="stylesheet" href="/assets/vendor/dsfr/dsfr.min.css">
  <link rel="icon" href="/assets/vendor/dsfr/favicon/favicon.svg" type="image/svg+xml">
</head>
<body>
  <header role="banner" class="fr-header">
    <div class="fr-header__body"><div class="fr-container"><div class="fr-header__body-row">
      <div class="fr-header__brand fr-enlarge-link">
        <div class="fr-header__brand-top"><div class="fr-header__logo"><p class="fr-logo">République<br>Française</p></div></div>
        <div class="fr-header__service">
          <a href="/" title="Accueil – Observatoire SI SIAO"><p class="fr-header__service-title">Observatoire SI SIAO</p></a>
          <p class="fr-header__service-tagline">Indicateurs nationaux de l'hébergement d'urgence et de l'insertion</p>
        </div>
      </div>
    </div></div></div>
  </header>
  <main id="contenu" class="fr-container fr-py-6w" tabindex="-1">
    <div class="fr-grid-row fr-grid-row--center"><div class="fr-col-12 fr-col-md-6">
      <h1>Connexion</h1>
      {alert}
      {federation}
      <form method="post" action="/connexion" id="connexion">
        <input type="hidden" name="csrf" value="{csrf}">
        <fieldset class="fr-fieldset">
          <legend class="fr-fieldset__legend">Votre compte Observatoire</legend>
          <div class="fr-fieldset__element"><div class="fr-input-group">
            <label class="fr-label" for="identifiant">Identifiant</label>
            <input class="fr-input" id="identifiant" name="identifiant" autocomplete="username" required>
          </div></div>
          <div class="fr-fieldset__element"><div class="fr-input-group">
            <label class="fr-label" for="mot_de_passe">Mot de passe</label>
            <input class="fr-input" id="mot_de_passe" name="mot_de_passe" type="password" autocomplete="current-password" required>
          </div></div>
          <div class="fr-fieldset__element"><button class="fr-btn" type="submit">Se connecter</button></div>
        </fieldset>
      </form>
    </div></div>
  </main>
</body>
</html>"#,
        csrf = escape(csrf)
    )
}

/// `GET /connexion`: the form, with a fresh CSRF token in a cookie and a hidden field.
pub async fn login_form(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let csrf = crate::accounts::new_secret();
    let label = state.config.oidc.as_ref().map(|o| o.libelle.as_str());
    let mut response = Html(login_page(&csrf, None, label)).into_response();
    response.headers_mut().insert(
        header::SET_COOKIE,
        set_cookie(&headers, LOGIN_CSRF_COOKIE, &csrf, "/connexion", 1800),
    );
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

#[derive(Deserialize)]
pub struct LoginForm {
    identifiant: String,
    mot_de_passe: String,
    csrf: String,
}

pub(crate) async fn audit_login(
    state: &AppState,
    login: &str,
    profil: Option<String>,
    resultat: &str,
    status: StatusCode,
    motif: Option<String>,
    started: Instant,
) -> Result<(), ApiError> {
    state
        .audit
        .record(AuditRecord {
            seq: 0,
            horodatage: chrono::Utc::now(),
            utilisateur: login.to_owned(),
            profil,
            methode: "POST".into(),
            chemin: "/connexion".into(),
            indicateur: None,
            requete_sql: None,
            territoire: None,
            periode: None,
            lignes: None,
            resultat: resultat.into(),
            statut_http: i32::from(status.as_u16()),
            motif,
            duree_ms: started.elapsed().as_secs_f64() * 1000.0,
        })
        .await
        .map(|_| ())
        .map_err(|e| {
            tracing::error!(erreur = %e, "connexion refusée : journal d'audit indisponible");
            ApiError::unavailable("le journal d'audit ne peut pas être écrit : connexion refusée")
        })
}

/// `POST /connexion`: checks the CSRF token, the password (throttled), opens a session.
pub async fn login(
    State(state): State<AppState>,
    headers: HeaderMap,
    form: Result<Form<LoginForm>, axum::extract::rejection::FormRejection>,
) -> Result<Response, ApiError> {
    let started = Instant::now();
    let Ok(Form(form)) = form else {
        return Err(ApiError::bad_request(
            "formulaire de connexion incomplet : identifiant, mot de passe et jeton attendus",
        ));
    };
    let expected = cookie(&headers, LOGIN_CSRF_COOKIE).unwrap_or("");
    // A login that is not an account's form is not written to the log as given.
    let login = if crate::accounts::check_login(&form.identifiant).is_ok() {
        form.identifiant.clone()
    } else {
        "identifiant-invalide".to_owned()
    };
    let retry = |message: &str| {
        let csrf = crate::accounts::new_secret();
        let mut response = (
            StatusCode::UNAUTHORIZED,
            Html(login_page(
                &csrf,
                Some(message),
                state.config.oidc.as_ref().map(|o| o.libelle.as_str()),
            )),
        )
            .into_response();
        response.headers_mut().insert(
            header::SET_COOKIE,
            set_cookie(&headers, LOGIN_CSRF_COOKIE, &csrf, "/connexion", 1800),
        );
        response
    };
    if expected.is_empty() || !crate::accounts::same_secret(expected, &form.csrf) {
        audit_login(
            &state,
            &login,
            None,
            "ECHEC_CONNEXION",
            StatusCode::FORBIDDEN,
            Some("jeton anti-falsification du formulaire invalide".into()),
            started,
        )
        .await?;
        let mut response = retry("Le formulaire a expiré : veuillez réessayer.");
        *response.status_mut() = StatusCode::FORBIDDEN;
        return Ok(response);
    }
    let outcome = state
        .accounts
        .check_password(&login, &form.mot_de_passe)
        .await
        .map_err(ApiError::internal)?;
    match outcome {
        Ok(principal) => {
            let (value, csrf) = state
                .accounts
                .open_session(
                    &principal.login,
                    chrono::Duration::hours(state.config.session_hours),
                )
                .await
                .map_err(ApiError::internal)?;
            let _ = csrf;
            audit_login(
                &state,
                &principal.login,
                Some(principal.profile.code().to_owned()),
                "CONNEXION",
                StatusCode::SEE_OTHER,
                None,
                started,
            )
            .await?;
            let mut response = Redirect::to("/").into_response();
            let headers_out = response.headers_mut();
            headers_out.append(
                header::SET_COOKIE,
                set_cookie(
                    &headers,
                    SESSION_COOKIE,
                    &value,
                    "/",
                    state.config.session_hours * 3600,
                ),
            );
            headers_out.append(
                header::SET_COOKIE,
                set_cookie(&headers, LOGIN_CSRF_COOKIE, "", "/connexion", 0),
            );
            Ok(response)
        }
        Err(failure) => {
            let (motif, message) = match failure {
                LoginFailure::Refused => (
                    "identifiant ou mot de passe incorrect".to_owned(),
                    "Identifiant ou mot de passe incorrect.".to_owned(),
                ),
                LoginFailure::Throttled(wait) => (
                    format!("trop d'échecs : connexion suspendue {} s", wait.as_secs()),
                    format!(
                        "Trop de tentatives échouées : réessayez dans {} minute(s).",
                        wait.as_secs().div_ceil(60)
                    ),
                ),
            };
            audit_login(
                &state,
                &login,
                None,
                "ECHEC_CONNEXION",
                StatusCode::UNAUTHORIZED,
                Some(motif),
                started,
            )
            .await?;
            Ok(retry(&message))
        }
    }
}

#[derive(Deserialize)]
pub struct LogoutForm {
    csrf: String,
}

/// `POST /deconnexion`: ends the session (the form carries the session's CSRF token).
pub async fn logout(
    State(state): State<AppState>,
    headers: HeaderMap,
    form: Result<Form<LogoutForm>, axum::extract::rejection::FormRejection>,
) -> Result<Response, ApiError> {
    let Ok(Form(form)) = form else {
        return Err(ApiError::bad_request(
            "formulaire de déconnexion incomplet : jeton anti-falsification attendu",
        ));
    };
    let started = Instant::now();
    if let Some(value) = cookie(&headers, SESSION_COOKIE)
        && let Some((principal, csrf)) = state
            .accounts
            .session(value)
            .await
            .map_err(ApiError::internal)?
    {
        if !crate::accounts::same_secret(&csrf, &form.csrf) {
            return Err(ApiError::forbidden_code(
                "CSRF_INVALIDE",
                "jeton anti-falsification du formulaire invalide",
            ));
        }
        state
            .accounts
            .close_session(value)
            .await
            .map_err(ApiError::internal)?;
        audit_login(
            &state,
            &principal.login,
            Some(principal.profile.code().to_owned()),
            "DECONNEXION",
            StatusCode::SEE_OTHER,
            None,
            started,
        )
        .await?;
    }
    let mut response = Redirect::to("/connexion").into_response();
    response.headers_mut().insert(
        header::SET_COOKIE,
        set_cookie(&headers, SESSION_COOKIE, "", "/", 0),
    );
    Ok(response)
}

/// A page of the web UI. Every page is one shell (skip links, header with the main
/// navigation, footer) around a static body of its own (`assets/app/pages/<id>.html`);
/// the page's script reads every figure from the audited API with the session's cookie,
/// so a page holds nothing the caller's profile and territory do not allow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Page {
    Accueil,
    Indicateurs,
    Indicateur,
    Carte,
    Comparaison,
    Qualite,
}

/// The main navigation: (page, address, label).
const NAVIGATION: &[(Page, &str, &str)] = &[
    (Page::Accueil, "/", "Accueil"),
    (Page::Indicateurs, "/indicateurs", "Indicateurs"),
    (Page::Carte, "/carte", "Carte"),
    (Page::Comparaison, "/comparaison", "Comparaison"),
    (Page::Qualite, "/qualite", "Qualité des données"),
];

impl Page {
    /// The page's id: its body's file name and `data-page` of `<body>`.
    fn id(self) -> &'static str {
        match self {
            Page::Accueil => "accueil",
            Page::Indicateurs => "indicateurs",
            Page::Indicateur => "indicateur",
            Page::Carte => "carte",
            Page::Comparaison => "comparaison",
            Page::Qualite => "qualite",
        }
    }

    /// The `<title>` until the script names what is shown.
    fn title(self) -> &'static str {
        match self {
            Page::Accueil => "Accueil",
            Page::Indicateurs => "Catalogue des indicateurs",
            Page::Indicateur => "Indicateur",
            Page::Carte => "Carte des départements",
            Page::Comparaison => "Comparaison de territoires",
            Page::Qualite => "Qualité des données",
        }
    }

    /// The entry of the main navigation the page belongs to.
    fn section(self) -> Page {
        match self {
            Page::Indicateur => Page::Indicateurs,
            other => other,
        }
    }
}

fn navigation(current: Page) -> String {
    let items: String = NAVIGATION
        .iter()
        .map(|(page, href, label)| {
            let current = if *page == current.section() {
                r#" aria-current="page""#
            } else {
                ""
            };
            format!(
                r#"<li class="fr-nav__item"><a class="fr-nav__link" href="{href}"{current}>{label}</a></li>"#
            )
        })
        .collect();
    format!(
        r#"<nav class="fr-nav" id="navigation-principale" role="navigation" aria-label="Menu principal"><ul class="fr-nav__list">{items}</ul></nav>"#
    )
}

/// The whole HTML of a page for a signed-in principal.
fn page_html(page: Page, principal: &crate::authz::Principal, csrf: &str) -> String {
    let tools = format!(
        r#"<div class="fr-header__tools"><div class="fr-header__tools-links">
          <p class="fr-mb-0 fr-mr-2w" id="utilisateur">{login} – {profil} ({scope})</p>
          <form method="post" action="/deconnexion" class="fr-mb-0">
            <input type="hidden" name="csrf" value="{csrf}">
            <button class="fr-btn fr-btn--tertiary fr-btn--sm" type="submit">Se déconnecter</button>
          </form>
        </div></div>"#,
        login = escape(&principal.login),
        profil = escape(principal.profile.label()),
        scope = escape(&principal.scope.to_string()),
        csrf = escape(csrf),
    );
    let menu = format!(
        r#"<div class="fr-header__menu fr-modal" id="menu-entete" aria-labelledby="bouton-menu">
      <div class="fr-container">
        <button class="fr-btn--close fr-btn" aria-controls="menu-entete" title="Fermer le menu">Fermer</button>
        <div class="fr-header__menu-links"></div>
        {nav}
      </div>
    </div>"#,
        nav = navigation(page)
    );
    let meta = format!(
        r#"<meta name="csrf-token" content="{csrf}">
  <meta name="observatoire-perimetre" content="{scope}">
  <meta name="observatoire-profil" content="{profil}">"#,
        csrf = escape(csrf),
        scope = escape(&principal.scope.to_string()),
        profil = principal.profile.code(),
    );
    assets::shell_html()
        .replace("<!--META-->", &meta)
        .replace("<!--TITRE-->", page.title())
        .replace("<!--PAGE-->", page.id())
        .replace("<!--OUTILS-->", &tools)
        .replace("<!--MENU-->", &menu)
        .replace("<!--CONTENU-->", &assets::page_body(page.id()))
}

/// Serves a page to a signed-in user; otherwise sends to the sign-in form.
async fn show(state: &AppState, headers: &HeaderMap, page: Page) -> Result<Response, ApiError> {
    let session = match cookie(headers, SESSION_COOKIE) {
        Some(value) => state
            .accounts
            .session(value)
            .await
            .map_err(ApiError::internal)?,
        None => None,
    };
    let Some((principal, csrf)) = session else {
        return Ok(Redirect::to("/connexion").into_response());
    };
    let mut response = Html(page_html(page, &principal, &csrf)).into_response();
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}

/// `GET /`: the home page, the key figures of the user's territory.
pub async fn home(State(state): State<AppState>, headers: HeaderMap) -> Result<Response, ApiError> {
    show(&state, &headers, Page::Accueil).await
}

/// `GET /indicateurs`: the catalogue, by domain.
pub async fn catalogue(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    show(&state, &headers, Page::Indicateurs).await
}

/// `GET /indicateurs/{id}`: one indicator (series, breakdowns, table, exports).
pub async fn indicator(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    show(&state, &headers, Page::Indicateur).await
}

/// `GET /carte`: départements coloured by an indicator.
pub async fn map(State(state): State<AppState>, headers: HeaderMap) -> Result<Response, ApiError> {
    show(&state, &headers, Page::Carte).await
}

/// `GET /comparaison`: territories side by side.
pub async fn comparison(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    show(&state, &headers, Page::Comparaison).await
}

/// `GET /qualite`: the data-quality report per SIAO.
pub async fn quality(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    show(&state, &headers, Page::Qualite).await
}
