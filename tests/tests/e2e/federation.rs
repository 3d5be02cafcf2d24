//! Sign-in through an identity federation, against a real, standard OpenID Connect
//! provider started by the test: the certified `oidc-provider` package from npm
//! (`tests/browser/oidc-provider.mjs`), driven through its own login and consent pages.
//! Authorisation-code flow with PKCE; the agent's e-mail maps to a profile by the
//! configured rules, an agent no rule maps is refused.

use std::collections::HashMap;
use std::io::BufRead;

use dashboards_api::oidc::{OidcConfig, OidcRule};
use observatoire_tests::repo_root;

use crate::fixture::demo;

struct Provider(std::process::Child);

impl Drop for Provider {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A browser's cookies, by name (every host here is 127.0.0.1).
#[derive(Default)]
struct Jar(HashMap<String, String>);

impl Jar {
    fn take(&mut self, response: &reqwest::Response) {
        for v in response.headers().get_all("set-cookie") {
            let text = v.to_str().unwrap();
            let pair = text.split(';').next().unwrap();
            if let Some((k, v)) = pair.split_once('=') {
                if v.is_empty()
                    || text.contains("Max-Age=0")
                    || text.contains("expires=Thu, 01 Jan 1970")
                {
                    self.0.remove(k);
                } else {
                    self.0.insert(k.to_owned(), v.to_owned());
                }
            }
        }
    }
    fn header(&self) -> String {
        self.0
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }
}

/// Follows redirects by hand, keeping cookies; returns the last response.
async fn follow(
    client: &reqwest::Client,
    jar: &mut Jar,
    mut url: String,
) -> (String, reqwest::Response) {
    for _ in 0..20 {
        let response = client
            .get(&url)
            .header("cookie", jar.header())
            .send()
            .await
            .unwrap();
        jar.take(&response);
        if !response.status().is_redirection() {
            return (url, response);
        }
        let location = response.headers()["location"].to_str().unwrap().to_owned();
        url = absolute(&url, &location);
    }
    panic!("too many redirects");
}

fn absolute(base: &str, location: &str) -> String {
    if location.starts_with("http") {
        location.to_owned()
    } else {
        let origin: String = base.splitn(4, '/').take(3).collect::<Vec<_>>().join("/");
        format!("{origin}{location}")
    }
}

fn form_action(html: &str) -> String {
    let start = html.find("action=\"").expect("a form") + "action=\"".len();
    let end = html[start..].find('"').unwrap() + start;
    html[start..end]
        .replace("&#x2F;", "/")
        .replace("&amp;", "&")
}

/// Signs in as `login` at the provider, from the Observatoire's button; returns the last
/// response (the Observatoire's answer to the callback) and the cookies.
async fn sign_in(base: &str, login: &str) -> (reqwest::Response, Jar) {
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let mut jar = Jar::default();
    // The button, then the provider's login page.
    let (page_url, page) = follow(&client, &mut jar, format!("{base}/connexion/oidc")).await;
    assert_eq!(page.status(), 200, "{page_url}");
    let html = page.text().await.unwrap();
    assert!(
        html.contains("name=\"login\""),
        "login form expected at {page_url}: {html}"
    );
    let action = absolute(&page_url, &form_action(&html));
    let submitted = client
        .post(&action)
        .header("cookie", jar.header())
        .form(&[
            ("prompt", "login"),
            ("login", login),
            ("password", "n'importe"),
        ])
        .send()
        .await
        .unwrap();
    jar.take(&submitted);
    let next = absolute(&action, submitted.headers()["location"].to_str().unwrap());
    // The consent page.
    let (consent_url, consent) = follow(&client, &mut jar, next).await;
    let html = consent.text().await.unwrap();
    assert!(
        html.contains("value=\"consent\""),
        "consent form expected: {html}"
    );
    let action = absolute(&consent_url, &form_action(&html));
    let confirmed = client
        .post(&action)
        .header("cookie", jar.header())
        .form(&[("prompt", "consent")])
        .send()
        .await
        .unwrap();
    jar.take(&confirmed);
    let next = absolute(&action, confirmed.headers()["location"].to_str().unwrap());
    let (last_url, last) = follow(&client, &mut jar, next).await;
    assert!(
        last_url.starts_with(&format!("{base}/connexion/oidc/retour?")),
        "back at the Observatoire's callback: {last_url}"
    );
    (last, jar)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agents_sign_in_through_a_standard_openid_provider() {
    let dir = repo_root().join("tests").join("browser");
    if !dir.join("node_modules").join("oidc-provider").exists() {
        assert!(
            !std::env::var("CI").is_ok_and(|v| v == "true"),
            "oidc-provider (tests/browser/node_modules) absent en CI"
        );
        eprintln!(
            "oidc-provider absent : test ignoré hors CI (lancez bash .ci/run pour l'installer)"
        );
        return;
    }
    let data = &demo().data;
    // Our port first: the provider must know the callback before it starts.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let redirect = format!("http://127.0.0.1:{port}/connexion/oidc/retour");
    let mut child = std::process::Command::new("node")
        .arg(dir.join("oidc-provider.mjs"))
        .env("CLIENT_ID", "observatoire")
        .env("CLIENT_SECRET", "secret-du-client-de-test")
        .env("REDIRECT_URI", &redirect)
        .env("EMAIL_DOMAIN", "exemple.gouv.fr")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("node runs");
    let mut line = String::new();
    let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
    out.read_line(&mut line).unwrap();
    // Keep reading: a closed pipe would kill the provider at its next line.
    std::thread::spawn(move || std::io::copy(&mut out, &mut std::io::sink()));
    let _provider = Provider(child);
    let issuer = serde_json::from_str::<serde_json::Value>(&line).unwrap()["issuer"]
        .as_str()
        .unwrap()
        .to_owned();
    let config = dashboards_api::ServerConfig {
        audit_dir: Some(data.join("journal-audit-federation")),
        oidc: Some(OidcConfig {
            issuer,
            client_id: "observatoire".into(),
            client_secret: Some("secret-du-client-de-test".into()),
            redirect_url: redirect,
            scopes: vec!["email".into()],
            login_claim: "email".into(),
            libelle: "Se connecter avec ProConnect".into(),
            regles: vec![OidcRule {
                claim: "email".into(),
                egal: Some("agent.dupont@exemple.gouv.fr".into()),
                suffixe: None,
                profil: "ADMINISTRATEUR_DEPARTEMENTAL".into(),
                territoire: "D93".into(),
            }],
        }),
        ..dashboards_api::ServerConfig::new(data)
    };
    let server = demo()
        .api
        .alongside_on(config, format!("127.0.0.1:{port}").parse().unwrap());
    let base = format!("http://{}", server.addr);

    // The sign-in page offers the federation.
    let page = reqwest::get(format!("{base}/connexion"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains("Se connecter avec ProConnect"));

    // A mapped agent gets a session with the rule's profile and territory.
    let (answer, jar) = sign_in(&base, "agent.dupont").await;
    assert_eq!(answer.status(), 200);
    let session = jar.0.get("obs_session").expect("a session cookie").clone();
    let territories: serde_json::Value = reqwest::Client::new()
        .get(format!("{base}/api/v1/territoires"))
        .header("cookie", format!("obs_session={session}"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let codes: std::collections::BTreeSet<&str> = territories
        .as_array()
        .unwrap_or_else(|| panic!("{territories}"))
        .iter()
        .map(|t| t["code"].as_str().unwrap())
        .collect();
    assert_eq!(
        codes,
        std::collections::BTreeSet::from(["FR", "R11", "D93"])
    );

    // An agent no rule maps is refused, with no session.
    let (answer, jar) = sign_in(&base, "intrus").await;
    assert_eq!(answer.status(), 403);
    assert!(answer.text().await.unwrap().contains("pas de profil"));
    assert!(!jar.0.contains_key("obs_session"));

    // A callback without the browser's state cookie is refused.
    let forged = reqwest::get(format!("{base}/connexion/oidc/retour?code=abc&state=def"))
        .await
        .unwrap();
    assert_eq!(forged.status(), 403);

    // All three are in the audit log.
    let (_, audit) = server
        .get_as(
            dashboards_api::authz::Profile::AdministrateurNational,
            "/api/v1/audit?chemin=/connexion&limite=10000",
        )
        .await;
    let rows = audit.as_array().unwrap();
    assert!(rows.iter().any(
        |r| r["utilisateur"] == "agent.dupont@exemple.gouv.fr" && r["resultat"] == "CONNEXION"
    ));
    assert!(rows.iter().any(|r| {
        r["resultat"] == "ECHEC_CONNEXION"
            && r["motif"]
                .as_str()
                .is_some_and(|m| m.contains("intrus@exemple.gouv.fr"))
    }));
}
