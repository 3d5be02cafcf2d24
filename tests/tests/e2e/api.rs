//! The JSON API over the demo's lake.

use dashboards_api::StatRow;

use crate::fixture::{demo, get};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dnp_rate_of_seine_saint_denis_has_one_value_per_month_of_2025() {
    let (status, body) = get("/api/v1/indicateurs/taux_dnp_115/valeurs?territoire=D93&pas=MOIS&du=2025-01-01&au=2026-01-01").await;
    assert_eq!(status, 200, "{body}");
    let rows: Vec<StatRow> = serde_json::from_value(body).unwrap();
    let periods: Vec<_> = rows.iter().map(|r| r.periode.as_str()).collect();
    let expected: Vec<String> = (1..=12).map(|m| format!("2025-{m:02}")).collect();
    assert_eq!(periods, expected);
    for r in &rows {
        assert_eq!(
            (
                r.indicateur.as_str(),
                r.territoire_niveau.as_str(),
                r.territoire.as_str()
            ),
            ("taux_dnp_115", "DEPARTEMENT", "93")
        );
        assert_eq!(r.dimension, "");
        match (r.secret, r.valeur) {
            (true, v) => assert!(v.is_none()),
            (false, Some(v)) => assert!((0.0..=1.0).contains(&v), "{v}"),
            (false, None) => panic!("{} : valeur absente sans secret", r.periode),
        }
    }
    // Seine-Saint-Denis is saturated: no month breaks the sdc rule; a few may be hidden
    // by secondary suppression (to protect Creuse's and Bouches-du-Rhône's small cells
    // through Île-de-France and FR); the rate is high.
    let hidden: Vec<&str> = rows
        .iter()
        .filter(|r| r.secret)
        .map(|r| r.periode.as_str())
        .collect();
    assert!(
        hidden.len() <= 4,
        "mois cachés en Seine-Saint-Denis : {hidden:?}"
    );
    let shown: Vec<f64> = rows.iter().filter_map(|r| r.valeur).collect();
    let mean = shown.iter().sum::<f64>() / shown.len() as f64;
    assert!(mean > 0.4, "DNP rate of 93: {mean}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn catalogue_lists_the_32_indicators_in_french_from_the_catalogue() {
    let (status, body) = get("/api/v1/indicateurs").await;
    assert_eq!(status, 200);
    let list = body.as_array().unwrap();
    let codes: Vec<_> = list
        .iter()
        .map(|i| i["code"].as_str().unwrap().to_owned())
        .collect();
    let mut expected = Vec::new();
    for (prefix, n) in [("U", 10), ("I", 9), ("O", 9), ("P", 2), ("E", 2)] {
        for k in 1..=n {
            expected.push(format!("{prefix}{k:02}"));
        }
    }
    assert_eq!(codes, expected);
    // Every entry as the catalogue declares it: label, definition, unit, sdc, dimensions.
    for (json, declared) in list.iter().zip(indicators::CATALOGUE) {
        assert_eq!(json["id"], declared.id);
        assert_eq!(json["libelle"], declared.libelle);
        assert_eq!(json["definition"], declared.definition);
        assert_eq!(json["unite"], declared.unite);
        let dims: Vec<_> = json["dimensions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d["nom"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(dims, declared.dimensions, "{}", declared.code);
        assert!(json.get("sql").is_none(), "la requête n'est pas exposée");
    }
    let u04 = &list[3];
    assert_eq!(u04["code"], "U04");
    assert_eq!(u04["libelle"], "Taux de demandes non pourvues");
    assert_eq!(u04["sdc"], "RATIO");
    assert!(u04["definition"].as_str().unwrap().contains("NON_POURVUE"));
    assert_eq!(u04["dimensions"][0]["libelle"], "Composition du ménage");
    assert!(
        u04["dimensions"][0]["modalites"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m == "MINEUR_ISOLE")
    );
    let o02 = list.iter().find(|i| i["code"] == "O02").unwrap();
    assert_eq!(o02["sdc"], "AUCUNE");
    assert_eq!(o02["dimensions"].as_array().unwrap().len(), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn territories_are_the_simulated_departements_their_regions_and_france() {
    let (status, body) = get("/api/v1/territoires").await;
    assert_eq!(status, 200);
    let codes: Vec<_> = body
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["code"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        codes,
        ["FR", "R11", "R75", "R93", "D13", "D23", "D75", "D93"]
    );
    assert_eq!(body[7]["libelle"], "93 – Seine-Saint-Denis");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn creuse_hides_small_counts() {
    // Creuse has few requests: some monthly DNP counts fall between 1 and 10 and are hidden.
    let (_, body) = get("/api/v1/indicateurs/dnp_115/valeurs?territoire=D23&pas=MOIS").await;
    let rows: Vec<StatRow> = serde_json::from_value(body).unwrap();
    assert_eq!(rows.len(), 12);
    for r in &rows {
        if r.secret {
            assert!(r.valeur.is_none() && r.numerateur.is_none());
        } else {
            let v = r.valeur.unwrap();
            assert!(
                v == 0.0 || v >= 11.0,
                "{} : {v} publié sous le seuil",
                r.periode
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_a_french_message() {
    let (status, body) = get("/api/v1/indicateurs/taux_dnp_115/valeurs?territoire=X93").await;
    assert_eq!(status, 400);
    assert!(
        body["erreur"].as_str().unwrap().contains("territoire"),
        "{body}"
    );
    let (status, body) = get("/api/v1/indicateurs/inconnu/valeurs").await;
    assert_eq!(status, 404);
    assert!(
        body["erreur"]
            .as_str()
            .unwrap()
            .contains("indicateur inconnu"),
        "{body}"
    );
    let (status, body) = get("/api/v1/indicateurs/taux_dnp_115/valeurs?du=2025-13-01").await;
    assert_eq!(status, 400);
    assert!(
        body["erreur"].as_str().unwrap().contains("AAAA-MM-JJ"),
        "{body}"
    );
    let (status, body) = get("/api/v1/indicateurs/taux_dnp_115/valeurs?pas=DECENNIE").await;
    assert_eq!(status, 400, "{body}");
    let (status, _) = get("/api/v1/indicateurs/taux_dnp_115/valeurs?version=99").await;
    assert_eq!(status, 404);
    let (status, body) = get("/health").await;
    assert_eq!(status, 200);
    assert_eq!(body["statut"], "ok");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publications_record_the_release_and_its_threshold() {
    let (status, body) = get("/api/v1/publications").await;
    assert_eq!(status, 200);
    let list = body.as_array().unwrap();
    assert_eq!(list.len(), 1, "{body}");
    assert_eq!(list[0]["version"], 1);
    assert_eq!(list[0]["ingestion"], 1);
    assert_eq!(list[0]["seuil_secret"], 11);
    assert_eq!(list[0]["catalogue"], indicators::CATALOGUE_VERSION);
    // The rows of release 1, as stored.
    let stored = observatoire_tests::all_stats(&demo().data)
        .await
        .iter()
        .filter(|r| r.version == 1)
        .count();
    assert_eq!(list[0]["lignes"], stored as i64);
    assert_eq!(list[0]["nature"], "CALCUL");
    // Totals: 4 départements, 3 régions and FR; for 2025: 90 days, 53 ISO weeks
    // (2025-W01 from 2024-12-30 to 2026-W01 from 2025-12-29), 12 months, 4 quarters, 1 year,
    // 2 winters.
    let totals = observatoire_tests::all_stats(&demo().data)
        .await
        .iter()
        .filter(|r| r.version == 1 && r.dimension.is_empty())
        .count();
    assert_eq!(
        totals,
        8 * (90 + 53 + 12 + 4 + 1 + 2) * indicators::CATALOGUE.len()
    );
}
