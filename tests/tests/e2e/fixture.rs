//! The demo's lake, built once per test run (the default simulation: 75, 93, 13 and
//! 23, year 2025, seed 42), and a server over it.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::OnceLock;

use observatoire_tests::{TestServer, ingest_and_compute, sqlite_url};
use operational::simulator::SimulationConfig;

pub struct DemoLake {
    pub data: PathBuf,
    pub source_url: String,
    pub server: SocketAddr,
    pub api: TestServer,
}

static DEMO: OnceLock<DemoLake> = OnceLock::new();

/// The demo lake and a server over it, built on first use.
pub fn demo() -> &'static DemoLake {
    DEMO.get_or_init(|| {
        // One folder reused by every run (replaced at the start), so that runs do not
        // pile demo lakes up in the temporary directory.
        let data = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("demo-lake");
        let _ = std::fs::remove_dir_all(&data);
        std::fs::create_dir_all(&data).expect("demo folder");
        let url = sqlite_url(&data);
        // On a thread of its own: the caller may be inside a runtime already.
        std::thread::scope(|scope| {
            scope.spawn(|| {
                let runtime = tokio::runtime::Runtime::new().expect("runtime");
                runtime.block_on(async {
                    observatoire::simulate(&url, &SimulationConfig::default(), false, |_, _| {})
                        .await
                        .expect("simulation");
                    ingest_and_compute(&url, &data, 11).await;
                });
            });
        });
        let server = TestServer::start(&data, "93", dashboards_api::ServerConfig::new(&data));
        DemoLake {
            data,
            source_url: url,
            server: server.addr,
            api: server,
        }
    })
}

/// GET as the national administrator: (status, JSON body).
pub async fn get(path: &str) -> (u16, serde_json::Value) {
    demo()
        .api
        .get_as(dashboards_api::authz::Profile::AdministrateurNational, path)
        .await
}
