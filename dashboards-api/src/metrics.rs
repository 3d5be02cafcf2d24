//! `/metrics` in the Prometheus text format: requests by route and status, latency
//! histogram by route, ETag cache hits, the release in service, audit records written.
//! Routes are labelled by their template (`/api/v1/indicateurs/{id}/valeurs`), never by
//! the raw path, so that the series stay few and hold no request text.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

use axum::http::StatusCode;

/// Upper bounds of the latency buckets, in seconds.
const BUCKETS: [f64; 12] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
];

#[derive(Default)]
struct Histogram {
    counts: [u64; BUCKETS.len()],
    sum: f64,
    count: u64,
}

/// The server's counters.
#[derive(Default)]
pub struct Metrics {
    requests: Mutex<BTreeMap<(String, u16), u64>>,
    latency: Mutex<BTreeMap<String, Histogram>>,
    pub cache_hits: AtomicU64,
    pub release: AtomicI64,
}

/// The route template of an API path (its shape, without the values).
pub fn route_of(path: &str) -> String {
    let path = path.split('?').next().unwrap_or("");
    let parts: Vec<&str> = path.split('/').collect();
    match parts.as_slice() {
        ["", "api", "v1", "indicateurs", _, rest @ ..] if !rest.is_empty() => {
            format!("/api/v1/indicateurs/{{id}}/{}", rest.join("/"))
        }
        ["", "api", "v1", "exports", _] => "/api/v1/exports/{table}".to_owned(),
        ["", "api", "v1", name] => format!("/api/v1/{name}"),
        _ => "autre".to_owned(),
    }
}

impl Metrics {
    pub fn observe(&self, path: &str, status: StatusCode, elapsed: Duration) {
        let route = route_of(path);
        *self
            .requests
            .lock()
            .expect("metrics")
            .entry((route.clone(), status.as_u16()))
            .or_default() += 1;
        let secs = elapsed.as_secs_f64();
        let mut latency = self.latency.lock().expect("metrics");
        let h = latency.entry(route).or_default();
        for (i, bound) in BUCKETS.iter().enumerate() {
            if secs <= *bound {
                h.counts[i] += 1;
            }
        }
        h.sum += secs;
        h.count += 1;
    }

    /// The exposition text.
    pub fn render(&self, audit_written: i64) -> String {
        let mut out = String::new();
        out.push_str("# HELP observatoire_requetes_total Requêtes de l'API par route et statut HTTP.\n# TYPE observatoire_requetes_total counter\n");
        for ((route, status), n) in self.requests.lock().expect("metrics").iter() {
            let _ = writeln!(
                out,
                "observatoire_requetes_total{{route=\"{route}\",statut=\"{status}\"}} {n}"
            );
        }
        out.push_str("# HELP observatoire_duree_requete_secondes Durée des requêtes de l'API.\n# TYPE observatoire_duree_requete_secondes histogram\n");
        for (route, h) in self.latency.lock().expect("metrics").iter() {
            for (i, bound) in BUCKETS.iter().enumerate() {
                let _ = writeln!(
                    out,
                    "observatoire_duree_requete_secondes_bucket{{route=\"{route}\",le=\"{bound}\"}} {}",
                    h.counts[i]
                );
            }
            let _ = writeln!(
                out,
                "observatoire_duree_requete_secondes_bucket{{route=\"{route}\",le=\"+Inf\"}} {}",
                h.count
            );
            let _ = writeln!(
                out,
                "observatoire_duree_requete_secondes_sum{{route=\"{route}\"}} {}",
                h.sum
            );
            let _ = writeln!(
                out,
                "observatoire_duree_requete_secondes_count{{route=\"{route}\"}} {}",
                h.count
            );
        }
        let _ = writeln!(
            out,
            "# HELP observatoire_cache_hits_total Réponses 304 (ETag inchangé).\n# TYPE observatoire_cache_hits_total counter\nobservatoire_cache_hits_total {}",
            self.cache_hits.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            out,
            "# HELP observatoire_publication_servie Numéro de la publication servie.\n# TYPE observatoire_publication_servie gauge\nobservatoire_publication_servie {}",
            self.release.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            out,
            "# HELP observatoire_audit_enregistrements_total Enregistrements écrits au journal d'audit depuis le démarrage.\n# TYPE observatoire_audit_enregistrements_total counter\nobservatoire_audit_enregistrements_total {audit_written}"
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_are_templates() {
        assert_eq!(
            route_of("/api/v1/indicateurs/taux_dnp_115/valeurs?territoire=D93"),
            "/api/v1/indicateurs/{id}/valeurs"
        );
        assert_eq!(route_of("/api/v1/territoires"), "/api/v1/territoires");
        assert_eq!(route_of("/api/v1/a/b/c/d/e"), "autre");
    }
}
