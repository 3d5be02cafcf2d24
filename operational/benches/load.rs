//! Loading simulated rows into PostgreSQL: binary COPY (what `simulate` uses, primary
//! keys rebuilt after the load) against the peer, multi-row INSERT through sqlx (30 000
//! bound parameters per statement, one transaction per table, keys maintained), on the
//! same rows in the same run.
//!
//! `cargo bench -p operational --bench load -- [DEPARTEMENT] [SCALE]` (default 93 at
//! 0.5 for 2025). PostgreSQL from OBSERVATOIRE_TEST_PG_URL (default
//! postgres://postgres@127.0.0.1:5432/test); two scratch databases are created and
//! dropped.

use std::time::Instant;

use chrono::NaiveDate;
use operational::load::Batch;
use operational::simulator::{SimulationConfig, simulate_departement};
use operational::{Source, TABLES};
use sqlx::Connection;

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let dep = args.first().cloned().unwrap_or_else(|| "93".into());
    let scale: f64 = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(0.5);
    let admin = std::env::var("OBSERVATOIRE_TEST_PG_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
    let base = admin.rsplit_once('/').map(|(b, _)| b.to_owned()).unwrap();
    let config = SimulationConfig {
        departements: vec![dep.clone()],
        from: NaiveDate::from_ymd_opt(2025, 1, 1).unwrap(),
        to: NaiveDate::from_ymd_opt(2026, 1, 1).unwrap(),
        seed: 42,
        scale,
        defects: 0.0,
    };
    let started = Instant::now();
    let out = simulate_departement(&config, &dep).expect("simulation");
    let rows = out.data.total_rows();
    println!(
        "simulation {dep} 2025, échelle {scale} : {rows} lignes en {:.2} s",
        started.elapsed().as_secs_f64()
    );
    let mut conn = sqlx::PgConnection::connect(&admin)
        .await
        .expect("PostgreSQL");
    let names = [
        format!("bench_copy_{}", std::process::id()),
        format!("bench_insert_{}", std::process::id()),
    ];
    for n in &names {
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {n}")))
            .execute(&mut conn)
            .await
            .unwrap();
    }

    let copy = Source::create(&format!("{base}/{}", names[0]))
        .await
        .unwrap();
    let t = Instant::now();
    copy.begin_bulk_load().await.unwrap();
    copy.write_batch(&Batch {
        deletions: Vec::new(),
        insertions: out.data.clone(),
    })
    .await
    .unwrap();
    copy.end_bulk_load().await.unwrap();
    let copy_s = t.elapsed().as_secs_f64();
    copy.close().await;

    let insert = Source::create(&format!("{base}/{}", names[1]))
        .await
        .unwrap();
    let t = Instant::now();
    for table in TABLES {
        let rows = out.data.rows(table.name);
        for chunk in rows.chunks(50_000) {
            insert.insert(table, chunk).await.unwrap();
        }
    }
    let insert_s = t.elapsed().as_secs_f64();
    insert.close().await;

    for n in &names {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "DROP DATABASE {n} WITH (FORCE)"
        )))
        .execute(&mut conn)
        .await
        .unwrap();
    }
    println!(
        "COPY binaire          : {copy_s:>7.2} s ({:>9.0} lignes/s)",
        rows as f64 / copy_s
    );
    println!(
        "INSERT multi-lignes   : {insert_s:>7.2} s ({:>9.0} lignes/s)  [pair de référence]",
        rows as f64 / insert_s
    );
    println!("rapport INSERT / COPY : {:.2}", insert_s / copy_s);
}
