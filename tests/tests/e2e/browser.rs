//! The web UI in headless Chromium (Debian's `chromium`, driven by Playwright's
//! `playwright-core`; scripts in `tests/browser/`):
//! - the départemental administrator's visit: home, the DNP rate (chart and table equal
//!   to the API), breakdowns, an XLSX export opened here with calamine, the map, the
//!   comparison, the data-quality page; axe-core finds no serious or critical violation
//!   on any of them;
//! - the SIAO director's visit: no other département's figure anywhere.
//!
//! Screenshots are saved in `tests/browser/screenshots/`.

use std::path::{Path, PathBuf};

use dashboards_api::authz::Profile;
use observatoire_tests::repo_root;

use crate::fixture::demo;

fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

/// The browser scripts' folder, once Chromium and the npm packages are there (in CI,
/// their absence is a failure; elsewhere the test is skipped with a message).
fn browser_dir() -> Option<(PathBuf, String)> {
    let dir = repo_root().join("tests").join("browser");
    let chromium =
        std::env::var("CHROMIUM_PATH").unwrap_or_else(|_| "/usr/bin/chromium".to_owned());
    let ready = Path::new(&chromium).exists()
        && dir.join("node_modules").join("playwright-core").exists()
        && dir.join("node_modules").join("@axe-core").exists();
    if !ready {
        assert!(
            !in_ci(),
            "Chromium ({chromium}) ou les paquets npm (tests/browser/node_modules) absents en CI"
        );
        eprintln!("navigateur absent : test ignoré hors CI (lancez bash .ci/run pour l'installer)");
        return None;
    }
    Some((dir, chromium))
}

/// Runs one script against the demo server as the demo account of `profile`.
fn run_script(
    dir: &Path,
    chromium: &str,
    script: &str,
    profile: Profile,
    env: &[(&str, &Path)],
) -> String {
    let account = demo()
        .api
        .accounts
        .iter()
        .find(|a| a.profile == profile)
        .unwrap();
    let screenshots = dir.join("screenshots");
    std::fs::create_dir_all(&screenshots).unwrap();
    let mut command = std::process::Command::new("node");
    command
        .arg(dir.join(script))
        .env("BASE_URL", format!("http://{}", demo().server))
        .env("CHROMIUM_PATH", chromium)
        .env("LOGIN", &account.login)
        .env("PASSWORD", &account.password)
        .env("SCREENSHOTS", &screenshots);
    for (k, v) in env {
        command.env(k, v);
    }
    let output = command.output().expect("node runs");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "browser script {script} failed:\n{stdout}\n{stderr}"
    );
    assert!(stdout.contains("OK"), "{stdout}");
    stdout
}

#[test]
fn departemental_administrator_opens_the_dnp_rate_maps_it_and_exports_it() {
    let Some((dir, chromium)) = browser_dir() else {
        return;
    };
    let download = tempfile::tempdir().unwrap();
    let xlsx = download.path().join("export.xlsx");
    run_script(
        &dir,
        &chromium,
        "dashboard.mjs",
        Profile::AdministrateurDepartemental,
        &[("XLSX_PATH", &xlsx)],
    );
    for name in [
        "accueil-d93",
        "indicateur-dnp-d93",
        "carte-dnp",
        "comparaison-d93",
        "qualite-93",
    ] {
        assert!(
            dir.join("screenshots").join(format!("{name}.png")).exists(),
            "screenshot {name}"
        );
    }

    // The file the browser downloaded opens as a workbook: the DNP rate of D93 by month,
    // with the columns picked on the page, and the notes sheet.
    use calamine::{Data, Reader, Xlsx};
    let mut book: Xlsx<_> = calamine::open_workbook(&xlsx).expect("the XLSX export opens");
    assert_eq!(book.sheet_names(), vec!["Données", "Notes"]);
    let data = book.worksheet_range("Données").unwrap();
    let header: Vec<String> = data
        .rows()
        .next()
        .unwrap()
        .iter()
        .map(|c| c.to_string())
        .collect();
    assert!(header.contains(&"debut".to_owned()), "{header:?}");
    assert!(!header.contains(&"statut".to_owned()), "{header:?}");
    assert!(header.contains(&"valeur".to_owned()), "{header:?}");
    let column = |name: &str| header.iter().position(|h| h == name).unwrap();
    let (territory, pas) = (column("code_territoire"), column("pas"));
    let body: Vec<&[Data]> = data.rows().skip(1).collect();
    assert!(body.len() >= 12, "{} months", body.len());
    assert!(body.iter().all(|r| r[territory] == "D93"));
    assert!(body.iter().all(|r| r[pas] == "MOIS"));
    let notes = book.worksheet_range("Notes").unwrap();
    let text: String = notes
        .rows()
        .flat_map(|r| r.iter().map(|c| c.to_string()))
        .collect::<Vec<_>>()
        .join(" ");
    assert!(text.contains("Taux de demandes non pourvues"), "{text}");
    assert!(text.contains("NON_POURVUE"), "{text}");
    assert!(text.contains("secret"), "{text}");
}

#[test]
fn siao_director_sees_no_other_departement_anywhere() {
    let Some((dir, chromium)) = browser_dir() else {
        return;
    };
    let out = run_script(
        &dir,
        &chromium,
        "siao.mjs",
        Profile::AdministrateurSiao,
        &[],
    );
    assert!(out.contains("aucune d'un autre département"), "{out}");
}

/// Time to render the indicator page of a département on a large lake, measured in the
/// browser (`tests/browser/mesure.mjs`), with its breakdown, and the map and comparison as
/// the national administrator sees them. Runs only where `OBSERVATOIRE_LAC_MESURE` names
/// a data folder holding such a lake (the development machine, not CI); prints the
/// figures that BENCHMARKS.md records.
#[test]
fn indicator_page_render_time_on_a_large_lake() {
    let Ok(data) = std::env::var("OBSERVATOIRE_LAC_MESURE") else {
        eprintln!("OBSERVATOIRE_LAC_MESURE absent : mesure du temps d'affichage non lancée");
        return;
    };
    let Some((dir, chromium)) = browser_dir() else {
        return;
    };
    let d = std::env::var("OBSERVATOIRE_MESURE_DEPARTEMENT").unwrap_or("93".into());
    let data = PathBuf::from(data);
    let server =
        observatoire_tests::TestServer::start(&data, &d, dashboards_api::ServerConfig::new(&data));
    let visits = [
        (
            Profile::AdministrateurDepartemental,
            format!(
                "/indicateurs/taux_dnp_115?territoire=D{d}&pas=MOIS /indicateurs/taux_dnp_115?territoire=D{d}&pas=MOIS&dimension=composition /indicateurs/delai_attente_admission?territoire=D{d}&pas=TRIMESTRE&dimension=quantile / /indicateurs"
            ),
        ),
        (
            Profile::AdministrateurNational,
            "/carte?indicateur=taux_dnp_115&pas=MOIS /comparaison?indicateur=taux_dnp_115&pas=MOIS"
                .to_owned(),
        ),
    ];
    for (profile, pages) in visits {
        let account = server
            .accounts
            .iter()
            .find(|a| a.profile == profile)
            .unwrap();
        let output = std::process::Command::new("node")
            .arg(dir.join("mesure.mjs"))
            .env("BASE_URL", format!("http://{}", server.addr))
            .env("CHROMIUM_PATH", &chromium)
            .env("LOGIN", &account.login)
            .env("PASSWORD", &account.password)
            .env("PAGES", pages)
            .output()
            .expect("node runs");
        let stdout = String::from_utf8_lossy(&output.stdout);
        println!("{stdout}");
        assert!(
            output.status.success(),
            "{stdout}\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
}
