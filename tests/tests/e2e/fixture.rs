//! The demo's lake, built once per test run (the default simulation: 75, 93, 13 and
//! 23, year 2025, seed 42), and a server over it.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::OnceLock;

use observatoire_tests::{ingest_and_compute, sqlite_url};
use operational::simulator::SimulationConfig;

pub struct DemoLake {
    pub data: PathBuf,
    pub source_url: String,
    pub server: SocketAddr,
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
        let (tx, rx) = std::sync::mpsc::channel();
        let data_for_thread = data.clone();
        let url_for_thread = url.clone();
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Runtime::new().expect("runtime");
            runtime.block_on(async move {
                observatoire::simulate(
                    &url_for_thread,
                    &SimulationConfig::default(),
                    false,
                    |_, _| {},
                )
                .await
                .expect("simulation");
                ingest_and_compute(&url_for_thread, &data_for_thread, 11).await;
                let lake = warehouse::Lake::new(&data_for_thread);
                dashboards_api::serve(lake, "127.0.0.1:0".parse().unwrap(), |addr| {
                    tx.send(addr).unwrap()
                })
                .await
                .expect("server");
            });
        });
        let server = rx.recv().expect("server started");
        DemoLake {
            data,
            source_url: url,
            server,
        }
    })
}
