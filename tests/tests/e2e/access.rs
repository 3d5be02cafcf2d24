//! The access layer over the demo's lake (75, 93, 13, 23): every profile tries every
//! route with every territory code (its own, others', FR, régions, crafted ones); no
//! cell of a territory outside its scope ever comes back, refusals are 403 with a French
//! message and a stable code, and each request leaves exactly one audit row (counted on a
//! server of the test's own, whose accounts no other test uses).
//!
//! The expected scopes are written out by hand below from DESIGN.md's rule (a
//! territory, every level below it, the aggregates above it), not taken from the
//! authorisation module.

use std::collections::BTreeSet;

use dashboards_api::StatRow;
use dashboards_api::authz::Profile;
use observatoire_tests::TestServer;
use serde_json::Value;

use crate::fixture::demo;

/// The demo's published territories.
const PUBLISHED: [&str; 8] = ["FR", "R11", "R93", "R75", "D75", "D93", "D13", "D23"];

/// What each demo account (scoped to the 93) may see among the demo's published
/// territories.
fn visible(profile: Profile) -> BTreeSet<&'static str> {
    PUBLISHED
        .iter()
        .copied()
        .filter(|c| may(profile, c))
        .collect()
}

/// Whether a demo account may ask for a territory code (a national scope: any code).
fn may(profile: Profile, code: &str) -> bool {
    match profile {
        Profile::AdministrateurNational | Profile::Analyste | Profile::StatisticienNational => true,
        // R11 = Île-de-France: 75, 77, 78, 91, 92, 93, 94, 95.
        Profile::AdministrateurRegional => [
            "FR", "R11", "D75", "D77", "D78", "D91", "D92", "D93", "D94", "D95",
        ]
        .contains(&code),
        Profile::AdministrateurDepartemental | Profile::AdministrateurSiao => {
            ["FR", "R11", "D93"].contains(&code)
        }
    }
}

const CODES: &[&str] = &[
    "FR", "R11", "R93", "R75", "R84", "D75", "D93", "D13", "D23", "D92", "D974",
];

async fn as_token(server: &TestServer, token: Option<&str>, path: &str) -> (u16, Value) {
    let mut request = reqwest::Client::new().get(format!("http://{}{path}", server.addr));
    if let Some(t) = token {
        request = request.bearer_auth(t);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

fn assert_french_refusal(body: &Value, what: &str) {
    assert_eq!(body["code"], "ACCES_REFUSE", "{what}: {body}");
    let message = body["erreur"].as_str().unwrap_or("");
    assert!(
        message.contains("périmètre") || message.contains("réservé"),
        "{what}: message « {message} »"
    );
}

/// Copies the demo's lake and source (not its accounts, audit journal or audit table)
/// into a folder of its own, so that a server over it has accounts no other test uses.
fn private_copy_of_the_demo() -> tempfile::TempDir {
    fn copy(from: &std::path::Path, to: &std::path::Path, skip: &[&str]) {
        std::fs::create_dir_all(to).unwrap();
        for entry in std::fs::read_dir(from).unwrap() {
            let entry = entry.unwrap();
            let name = entry.file_name();
            if skip.iter().any(|s| name == *s) {
                continue;
            }
            if entry.file_type().unwrap().is_dir() {
                copy(&entry.path(), &to.join(&name), &[]);
            } else {
                std::fs::copy(entry.path(), to.join(&name)).unwrap();
            }
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let from = &demo().data;
    copy(
        from,
        dir.path(),
        &[
            "comptes.db",
            "comptes.db-wal",
            "comptes.db-shm",
            "journal-audit",
            "lake",
        ],
    );
    copy(&from.join("lake"), &dir.path().join("lake"), &["audit"]);
    dir
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_profile_sees_its_scope_and_nothing_else_on_every_route() {
    // A server of its own, whose accounts only this test uses: its audit log can be
    // counted exactly.
    let data = private_copy_of_the_demo();
    let server = &TestServer::start(
        data.path(),
        "93",
        dashboards_api::ServerConfig::new(data.path()),
    );
    let mut requests_by_login = std::collections::BTreeMap::<String, usize>::new();
    let mut refusals_by_login = std::collections::BTreeMap::<String, usize>::new();
    for profile in Profile::ALL {
        let login = server
            .accounts
            .iter()
            .find(|a| a.profile == profile)
            .unwrap()
            .login
            .clone();
        let allowed = visible(profile);
        let mut count = 0;
        let mut refusals = 0;

        // The territories route lists exactly the visible published territories.
        let (status, body) = server.get_as(profile, "/api/v1/territoires").await;
        count += 1;
        assert_eq!(status, 200, "{profile}: {body}");
        let listed: BTreeSet<String> = body
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["code"].as_str().unwrap().to_owned())
            .collect();
        let expected: BTreeSet<String> = allowed.iter().map(|s| s.to_string()).collect();
        assert_eq!(listed, expected, "{profile}: territoires listés");

        // The values route, for every code, every step and with a dimension.
        for code in CODES {
            for extra in ["&pas=MOIS", "&pas=ANNEE&dimension=composition", ""] {
                let path =
                    format!("/api/v1/indicateurs/demandes_115/valeurs?territoire={code}{extra}");
                let (status, body) = server.get_as(profile, &path).await;
                count += 1;
                if may(profile, code) {
                    assert_eq!(status, 200, "{profile} {path}: {body}");
                    let rows: Vec<StatRow> = serde_json::from_value(body).unwrap();
                    assert!(
                        rows.iter().all(|r| r.code_territoire == *code),
                        "{profile} {path}: another territory's cells"
                    );
                    if extra.contains("MOIS") && PUBLISHED.contains(code) {
                        assert!(!rows.is_empty(), "{profile} {path}: no row");
                    }
                } else {
                    assert_eq!(status, 403, "{profile} {path}: {body}");
                    assert_french_refusal(&body, &format!("{profile} {path}"));
                    refusals += 1;
                }
            }
        }

        // Crafted query strings never return a cell: refused or rejected.
        for crafted in [
            "territoire=D75,D93",
            "territoire=D93&territoire=D75",
            "territoire=d75",
            "territoire=D75%00",
            "territoire=D%37%35",
            "territoire=D93%27%20OR%20%271%27=%271",
            "territoire=FR&dimension=x%27%20OR%201=1",
            "territoire=DEPARTEMENT",
            "territoire=R11&version=0",
        ] {
            let path = format!("/api/v1/indicateurs/demandes_115/valeurs?{crafted}");
            let (status, body) = server.get_as(profile, &path).await;
            count += 1;
            if status == 200 {
                let rows: Vec<StatRow> = serde_json::from_value(body.clone()).unwrap();
                assert!(
                    rows.iter().all(|r| may(profile, &r.code_territoire)),
                    "{profile} {path}: {body}"
                );
                // %37%35 decodes to D75: visible only where D75 is.
                if crafted.contains("%37%35") {
                    assert!(may(profile, "D75"), "{profile} {path}");
                }
            } else {
                assert!(
                    [400, 403, 404].contains(&status),
                    "{profile} {path}: {status} {body}"
                );
                assert!(body["erreur"].is_string(), "{profile} {path}: {body}");
                if status == 403 {
                    refusals += 1;
                }
            }
        }

        // The audit log: the national administrator only.
        let (status, body) = server.get_as(profile, "/api/v1/audit?limite=5").await;
        count += 1;
        if profile == Profile::AdministrateurNational {
            assert_eq!(status, 200, "{body}");
        } else {
            assert_eq!(status, 403, "{profile}: {body}");
            assert_french_refusal(&body, &format!("{profile} audit"));
            refusals += 1;
        }
        *refusals_by_login.entry(login.clone()).or_default() += refusals;
        *requests_by_login.entry(login).or_default() += count;
    }

    // Exactly one audit row per request, refusals with their reason. The reads of the
    // audit log below are the national administrator's own requests: each one counts in
    // the rows of those after it.
    let national = server
        .accounts
        .iter()
        .find(|a| a.profile == Profile::AdministrateurNational)
        .unwrap()
        .login
        .clone();
    for (checks, (login, n)) in requests_by_login.iter().enumerate() {
        let (status, body) = server
            .get_as(
                Profile::AdministrateurNational,
                &format!("/api/v1/audit?utilisateur={login}&limite=10000"),
            )
            .await;
        assert_eq!(status, 200, "{body}");
        let rows = body.as_array().unwrap();
        let expected = n + if *login == national { checks } else { 0 };
        assert_eq!(
            rows.len(),
            expected,
            "{login}: {} lignes d'audit pour {expected} requêtes",
            rows.len()
        );
        let refused: Vec<&Value> = rows.iter().filter(|r| r["resultat"] == "REFUSE").collect();
        assert_eq!(
            refused.len(),
            refusals_by_login[login],
            "{login}: refus audités"
        );
        for r in &refused {
            assert!(r["motif"].is_string(), "{login}: refus sans motif {r}");
            assert_eq!(r["utilisateur"], login.as_str());
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_without_a_valid_token_are_refused_and_audited() {
    let server = &demo().api;
    let path = "/api/v1/indicateurs/demandes_115/valeurs?territoire=FR&pas=MOIS";
    for token in [
        None,
        Some("obs_0000000000000000_00"),
        Some("n'importe quoi"),
        Some(&server.token(Profile::AdministrateurSiao)[..40]),
    ] {
        let (status, body) = as_token(server, token, path).await;
        assert_eq!(status, 401, "{token:?}: {body}");
        assert_eq!(body["code"], "AUTHENTIFICATION_REQUISE");
        assert!(body["erreur"].as_str().unwrap().contains("jeton") || token.is_none());
    }
    // Unknown API routes also need a token.
    let (status, _) = as_token(server, None, "/api/v1/inconnu").await;
    assert_eq!(status, 401);
    // A revoked token stops at once.
    let accounts =
        dashboards_api::accounts::Accounts::open(&dashboards_api::accounts_path(&demo().data))
            .await
            .unwrap();
    let issued = accounts
        .issue_token("siao-d93.demo", "essai", chrono::Duration::days(1))
        .await
        .unwrap();
    let (status, _) = as_token(server, Some(&issued.token), path).await;
    assert_eq!(status, 200);
    accounts.revoke_token(&issued.id).await.unwrap();
    let (status, _) = as_token(server, Some(&issued.token), path).await;
    assert_eq!(status, 401);
    let (_, audit) = server
        .get_as(
            Profile::AdministrateurNational,
            "/api/v1/audit?utilisateur=anonyme&limite=10000",
        )
        .await;
    assert!(
        audit.as_array().unwrap().len() >= 5,
        "refusals without authentication are audited: {audit}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_analyst_of_a_region_sees_that_region_only() {
    let data = &demo().data;
    let accounts = dashboards_api::accounts::Accounts::open(&dashboards_api::accounts_path(data))
        .await
        .unwrap();
    let scope = dashboards_api::authz::Scope::parse("R93").unwrap();
    let _ = accounts
        .add_user("analyste-paca", Profile::Analyste, &scope, None)
        .await;
    let token = accounts
        .issue_token("analyste-paca", "essai", chrono::Duration::days(1))
        .await
        .unwrap()
        .token;
    let server = &demo().api;
    let (_, list) = as_token(server, Some(&token), "/api/v1/territoires").await;
    let codes: BTreeSet<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["code"].as_str().unwrap())
        .collect();
    assert_eq!(codes, BTreeSet::from(["FR", "R93", "D13"]));
    for (code, status) in [
        ("D13", 200),
        ("R93", 200),
        ("FR", 200),
        ("D93", 403),
        ("R11", 403),
    ] {
        let (s, body) = as_token(
            server,
            Some(&token),
            &format!("/api/v1/indicateurs/demandes_115/valeurs?territoire={code}&pas=MOIS"),
        )
        .await;
        assert_eq!(s, status, "{code}: {body}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unchanged_release_answers_304_to_its_etag() {
    let server = &demo().api;
    let url = format!(
        "http://{}/api/v1/indicateurs/taux_dnp_115/valeurs?territoire=D93&pas=MOIS",
        server.addr
    );
    let client = reqwest::Client::new();
    let token = server.token(Profile::AdministrateurSiao);
    let first = client.get(&url).bearer_auth(token).send().await.unwrap();
    assert_eq!(first.status(), 200);
    let etag = first.headers()["etag"].to_str().unwrap().to_owned();
    let second = client
        .get(&url)
        .bearer_auth(token)
        .header("if-none-match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(second.status(), 304);
    // Another scope asking the same URL gets another tag.
    let other = client
        .get(&url)
        .bearer_auth(server.token(Profile::AdministrateurNational))
        .header("if-none-match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(other.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_fail_closed_when_the_audit_journal_cannot_be_written() {
    let data = &demo().data;
    let server = demo().api.alongside(dashboards_api::ServerConfig {
        audit_dir: Some(data.join("journal-audit-plein")),
        audit_journal_file: Some("/dev/full".into()),
        ..dashboards_api::ServerConfig::new(data)
    });
    let (status, body) = server
        .get_as(
            Profile::AdministrateurNational,
            "/api/v1/indicateurs/taux_dnp_115/valeurs?territoire=D93&pas=MOIS",
        )
        .await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["code"], "AUDIT_INDISPONIBLE");
    assert!(body.to_string().contains("journal d'audit"));
    assert!(
        !body.to_string().contains("valeur"),
        "no figure leaves: {body}"
    );
}

/// The value of a `Set-Cookie` header for `name`.
fn set_cookie(response: &reqwest::Response, name: &str) -> Option<String> {
    response
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with(&format!("{name}=")))
        .map(str::to_owned)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn web_sign_in_needs_the_form_token_and_opens_a_protected_session() {
    let server = &demo().api;
    let base = format!("http://{}", server.addr);
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let account = server
        .accounts
        .iter()
        .find(|a| a.profile == Profile::AdministrateurRegional)
        .unwrap();
    // Signed out, the page sends to the form.
    let page = client.get(format!("{base}/")).send().await.unwrap();
    assert_eq!(page.status(), 303);
    assert_eq!(page.headers()["location"], "/connexion");
    // The form's token and its cookie.
    let form = client
        .get(format!("{base}/connexion"))
        .send()
        .await
        .unwrap();
    let cookie = set_cookie(&form, "obs_csrf_connexion").unwrap();
    assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"));
    let csrf_value = cookie
        .split(';')
        .next()
        .unwrap()
        .split_once('=')
        .unwrap()
        .1
        .to_owned();
    let html = form.text().await.unwrap();
    assert!(html.contains(&format!("value=\"{csrf_value}\"")));
    let fields = |csrf: &str, password: &str| {
        vec![
            ("identifiant", account.login.clone()),
            ("mot_de_passe", password.to_owned()),
            ("csrf", csrf.to_owned()),
        ]
    };
    // Without the cookie (a cross-site post): refused, even with the right password.
    let forged = client
        .post(format!("{base}/connexion"))
        .form(&fields(&csrf_value, &account.password))
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 403);
    assert!(set_cookie(&forged, "obs_session").is_none());
    // With it: a session cookie.
    let ok = client
        .post(format!("{base}/connexion"))
        .header("cookie", format!("obs_csrf_connexion={csrf_value}"))
        .form(&fields(&csrf_value, &account.password))
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 303);
    let session = set_cookie(&ok, "obs_session").unwrap();
    assert!(
        session.contains("HttpOnly") && session.contains("SameSite=Strict"),
        "{session}"
    );
    let session_value = session.split(';').next().unwrap().to_owned();
    // The session reads the API within its scope.
    let (status, body) = {
        let r = client
            .get(format!("{base}/api/v1/territoires"))
            .header("cookie", &session_value)
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.json::<Value>().await.unwrap())
    };
    assert_eq!(status, 200);
    assert_eq!(
        body.as_array().unwrap().len(),
        visible(Profile::AdministrateurRegional).len()
    );
    // A write with the session cookie but without its CSRF header is refused.
    let post = client
        .post(format!("{base}/api/v1/sql"))
        .header("cookie", &session_value)
        .body("SELECT 1")
        .send()
        .await
        .unwrap();
    assert_eq!(post.status(), 403);
    assert_eq!(post.json::<Value>().await.unwrap()["code"], "CSRF_INVALIDE");
    // The page carries the session's CSRF token, and the sign-out form ends the session.
    let page = client
        .get(format!("{base}/"))
        .header("cookie", &session_value)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let marker = "name=\"csrf-token\" content=\"";
    let start = page.find(marker).expect("csrf meta") + marker.len();
    let csrf = &page[start..start + 64];
    let out = client
        .post(format!("{base}/deconnexion"))
        .header("cookie", &session_value)
        .form(&[("csrf", csrf)])
        .send()
        .await
        .unwrap();
    assert_eq!(out.status(), 303);
    let after = client
        .get(format!("{base}/api/v1/territoires"))
        .header("cookie", &session_value)
        .send()
        .await
        .unwrap();
    assert_eq!(after.status(), 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeated_failed_sign_ins_are_throttled_and_audited() {
    let data = &demo().data;
    let accounts = dashboards_api::accounts::Accounts::open(&dashboards_api::accounts_path(data))
        .await
        .unwrap();
    let _ = accounts
        .add_user(
            "victime",
            Profile::AdministrateurSiao,
            &dashboards_api::authz::Scope::parse("D23").unwrap(),
            Some("le bon mot de passe"),
        )
        .await;
    let server = &demo().api;
    let base = format!("http://{}", server.addr);
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let attempt = |password: &'static str| {
        let client = client.clone();
        let base = base.clone();
        async move {
            let csrf = "a".repeat(64);
            client
                .post(format!("{base}/connexion"))
                .header("cookie", format!("obs_csrf_connexion={csrf}"))
                .form(&[
                    ("identifiant", "victime"),
                    ("mot_de_passe", password),
                    ("csrf", csrf.as_str()),
                ])
                .send()
                .await
                .unwrap()
        }
    };
    for _ in 0..5 {
        assert_eq!(attempt("mauvais").await.status(), 401);
    }
    let blocked = attempt("le bon mot de passe").await;
    assert_eq!(blocked.status(), 401);
    assert!(blocked.text().await.unwrap().contains("Trop de tentatives"));
    let (_, audit) = server
        .get_as(
            Profile::AdministrateurNational,
            "/api/v1/audit?utilisateur=victime&chemin=/connexion",
        )
        .await;
    let failures = audit
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["resultat"] == "ECHEC_CONNEXION")
        .count();
    assert_eq!(failures, 6, "{audit}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn comparison_quality_and_pagination_follow_the_scope() {
    let server = &demo().api;
    for profile in Profile::ALL {
        // Comparison: every code checked before any is read.
        for set in [
            vec!["D93", "R11", "FR"],
            vec!["D93", "D75"],
            vec!["D13", "R93"],
            vec!["FR", "D23"],
        ] {
            let path = format!(
                "/api/v1/indicateurs/demandes_115/comparaison?territoires={}&pas=MOIS",
                set.join(",")
            );
            let (status, body) = server.get_as(profile, &path).await;
            if set.iter().all(|c| may(profile, c)) {
                assert_eq!(status, 200, "{profile} {path}: {body}");
                let rows: Vec<StatRow> = serde_json::from_value(body).unwrap();
                let seen: BTreeSet<&str> =
                    rows.iter().map(|r| r.code_territoire.as_str()).collect();
                assert_eq!(seen, set.iter().copied().collect(), "{profile} {path}");
            } else {
                assert_eq!(status, 403, "{profile} {path}: {body}");
                assert_french_refusal(&body, &path);
            }
        }
        // The quality report: the SIAO of the scope only.
        let (status, body) = server.get_as(profile, "/api/v1/qualite").await;
        assert_eq!(status, 200, "{profile}: {body}");
        let siaos: BTreeSet<String> = body
            .as_array()
            .unwrap()
            .iter()
            .map(|r| format!("D{}", r["siao"].as_str().unwrap()))
            .collect();
        assert!(!siaos.is_empty(), "{profile}: empty quality report");
        assert!(
            siaos.iter().all(|s| may(profile, s)),
            "{profile}: {siaos:?}"
        );
        for siao in ["75", "93", "23"] {
            let (status, body) = server
                .get_as(profile, &format!("/api/v1/qualite?siao={siao}&format=csv"))
                .await;
            if may(profile, &format!("D{siao}")) {
                assert_eq!(status, 200, "{profile} {siao}: {body}");
            } else {
                assert_eq!(status, 403, "{profile} {siao}: {body}");
            }
        }
    }
    // Pagination: pages of the same rows, the total in X-Total-Count.
    let url = format!(
        "http://{}/api/v1/indicateurs/demandes_115/valeurs?territoire=FR&pas=JOUR",
        server.addr
    );
    let client = reqwest::Client::new();
    let token = server.token(Profile::AdministrateurNational);
    let all: Vec<StatRow> = client
        .get(&url)
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let page2 = client
        .get(format!("{url}&page=2&par_page=30"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(
        page2.headers()["x-total-count"],
        all.len().to_string().as_str()
    );
    let page2: Vec<StatRow> = page2.json().await.unwrap();
    assert!(all.len() > 60, "{} rows", all.len());
    assert_eq!(page2, all[30..60].to_vec());
}
