//! The API load benchmark: `wrk` (Debian's package) against the values route and against
//! a static route of the same server, in the same run: requests per second, p50 and p99
//! latency, errors, and the ratio of the two rates.

use std::path::Path;
use std::time::Duration;

use crate::{Error, Result};

/// One wrk run.
#[derive(Debug, Clone)]
pub struct LoadRun {
    pub url: String,
    pub requests: u64,
    pub per_second: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    /// Socket errors plus non-2xx/3xx responses.
    pub errors: u64,
}

/// The benchmark's outcome.
#[derive(Debug, Clone)]
pub struct ApiBench {
    pub values: LoadRun,
    pub statique: LoadRun,
    pub connections: usize,
    pub duration: Duration,
}

fn parse_ms(text: &str) -> Option<f64> {
    let text = text.trim();
    let (number, factor) = if let Some(n) = text.strip_suffix("us") {
        (n, 0.001)
    } else if let Some(n) = text.strip_suffix("ms") {
        (n, 1.0)
    } else if let Some(n) = text.strip_suffix('s') {
        (n, 1000.0)
    } else {
        (text, 1.0)
    };
    number.parse::<f64>().ok().map(|v| v * factor)
}

/// Reads wrk's `--latency` report.
fn parse_wrk(url: &str, out: &str) -> Result<LoadRun> {
    let bad = || Error::Server(format!("sortie de wrk illisible :\n{out}"));
    let mut p50 = None;
    let mut p99 = None;
    let mut requests = None;
    let mut per_second = None;
    let mut errors = 0u64;
    for line in out.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["50%", v] => p50 = parse_ms(v),
            ["99%", v] => p99 = parse_ms(v),
            [n, "requests", "in", ..] => requests = n.parse::<u64>().ok(),
            ["Requests/sec:", v] => per_second = v.parse::<f64>().ok(),
            ["Non-2xx", "or", "3xx", "responses:", n] => errors += n.parse::<u64>().unwrap_or(0),
            ["Socket", "errors:", rest @ ..] => {
                for w in rest {
                    errors += w.trim_end_matches(',').parse::<u64>().unwrap_or(0);
                }
            }
            _ => {}
        }
    }
    Ok(LoadRun {
        url: url.to_owned(),
        requests: requests.ok_or_else(bad)?,
        per_second: per_second.ok_or_else(bad)?,
        p50_ms: p50.ok_or_else(bad)?,
        p99_ms: p99.ok_or_else(bad)?,
        errors,
    })
}

fn wrk(url: &str, token: Option<&str>, connections: usize, duration: Duration) -> Result<LoadRun> {
    let mut command = std::process::Command::new("wrk");
    command
        .arg("-t2")
        .arg(format!("-c{connections}"))
        .arg(format!("-d{}s", duration.as_secs().max(1)))
        .arg("--latency");
    if let Some(t) = token {
        command.arg("-H").arg(format!("Authorization: Bearer {t}"));
    }
    let output = command.arg(url).output().map_err(|e| {
        Error::Server(format!(
            "wrk introuvable ({e}) : installez le paquet Debian wrk (apt-get install wrk)"
        ))
    })?;
    if !output.status.success() {
        return Err(Error::Server(format!(
            "wrk a échoué : {}",
            String::from_utf8_lossy(&output.stderr)
        )));
    }
    parse_wrk(url, &String::from_utf8_lossy(&output.stdout))
}

/// Serves the lake of `data` and loads it: the values route of `path` (an API path,
/// read with a token of a départemental account of `departement`), then a static file.
pub async fn bench_api(
    data: &Path,
    path: &str,
    departement: &str,
    connections: usize,
    duration: Duration,
) -> Result<ApiBench> {
    let accounts = dashboards_api::demo::create_demo_accounts(data, departement)
        .await
        .map_err(|e| Error::Server(e.to_string()))?;
    let token = accounts
        .iter()
        .find(|a| a.profile == dashboards_api::authz::Profile::AdministrateurDepartemental)
        .map(|a| a.token.clone())
        .ok_or_else(|| Error::Server("compte départemental absent".into()))?;
    let config = dashboards_api::ServerConfig {
        audit_dir: Some(data.join("journal-audit-banc")),
        ..dashboards_api::ServerConfig::new(data)
    };
    let (tx, rx) = tokio::sync::oneshot::channel();
    let server = tokio::spawn(async move {
        dashboards_api::serve(config, "127.0.0.1:0".parse().expect("address"), |addr| {
            let _ = tx.send(addr);
        })
        .await
    });
    let addr = rx
        .await
        .map_err(|_| Error::Server("le serveur n'a pas démarré".into()))?;
    let values_url = format!("http://{addr}{path}");
    // One request first: the answer must be a 200 for the run to mean anything.
    let check = std::process::Command::new("curl")
        .args(["-s", "-o", "/dev/null", "-w", "%{http_code}", "-H"])
        .arg(format!("Authorization: Bearer {token}"))
        .arg(&values_url)
        .output();
    if let Ok(out) = check {
        let code = String::from_utf8_lossy(&out.stdout).to_string();
        if code != "200" {
            server.abort();
            return Err(Error::Server(format!(
                "la route mesurée répond {code} et non 200 : {values_url}"
            )));
        }
    }
    let values = {
        let (url, token) = (values_url.clone(), token.clone());
        tokio::task::spawn_blocking(move || wrk(&url, Some(&token), connections, duration))
            .await
            .map_err(|e| Error::Server(e.to_string()))??
    };
    let statique = {
        let url = format!("http://{addr}/assets/app/app.js");
        tokio::task::spawn_blocking(move || wrk(&url, None, connections, duration))
            .await
            .map_err(|e| Error::Server(e.to_string()))??
    };
    server.abort();
    Ok(ApiBench {
        values,
        statique,
        connections,
        duration,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrk_reports_are_read() {
        let out = "Running 1s test @ http://127.0.0.1:1/x\n  2 threads and 64 connections\n  Thread Stats   Avg      Stdev     Max   +/- Stdev\n    Latency   1.20ms  300.00us   9.00ms   90.00%\n  Latency Distribution\n     50%  1.10ms\n     75%    1.30ms\n     90%    1.60ms\n     99%  850.00us\n  1234 requests in 1.00s, 1.00MB read\n  Socket errors: connect 0, read 2, write 0, timeout 1\n  Non-2xx or 3xx responses: 4\nRequests/sec:   1234.50\nTransfer/sec:      1.00MB\n";
        let run = parse_wrk("u", out).unwrap();
        assert_eq!(run.requests, 1234);
        assert!((run.p50_ms - 1.1).abs() < 1e-9);
        assert!((run.p99_ms - 0.85).abs() < 1e-9);
        assert_eq!(run.errors, 7);
        assert!((run.per_second - 1234.5).abs() < 1e-9);
    }
}
