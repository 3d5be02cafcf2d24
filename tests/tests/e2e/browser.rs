//! The dashboard page in headless Chromium (Debian's `chromium`, driven by Playwright's
//! `playwright-core`): the page for D93 shows the DSFR header, a chart whose monthly
//! points are the API's values for 2025, and no request leaves 127.0.0.1. A screenshot
//! is saved in `tests/browser/screenshots/`.

use observatoire_tests::repo_root;

use crate::fixture::demo;

fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

#[test]
fn dashboard_page_shows_the_api_values_for_seine_saint_denis() {
    let dir = repo_root().join("tests").join("browser");
    let chromium =
        std::env::var("CHROMIUM_PATH").unwrap_or_else(|_| "/usr/bin/chromium".to_owned());
    let ready = std::path::Path::new(&chromium).exists()
        && dir.join("node_modules").join("playwright-core").exists();
    if !ready {
        assert!(
            !in_ci(),
            "Chromium ({chromium}) ou playwright-core (tests/browser/node_modules) absent en CI"
        );
        eprintln!("navigateur absent : test ignoré hors CI (lancez bash .ci/run pour l'installer)");
        return;
    }
    let account = demo()
        .api
        .accounts
        .iter()
        .find(|a| a.profile == dashboards_api::authz::Profile::AdministrateurDepartemental)
        .unwrap();
    let server = demo().server;
    let screenshots = dir.join("screenshots");
    std::fs::create_dir_all(&screenshots).unwrap();
    let output = std::process::Command::new("node")
        .arg(dir.join("dashboard.mjs"))
        .env("BASE_URL", format!("http://{server}"))
        .env("CHROMIUM_PATH", &chromium)
        .env("LOGIN", &account.login)
        .env("PASSWORD", &account.password)
        .env("SCREENSHOT", screenshots.join("tableau-de-bord-d93.png"))
        .output()
        .expect("node runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "browser test failed:\n{stdout}\n{stderr}"
    );
    assert!(stdout.contains("OK"), "{stdout}");
    assert!(screenshots.join("tableau-de-bord-d93.png").exists());
}
