//! End-to-end tests across the crates: golden scenarios, the demo's lake, privacy of
//! the lake, PostgreSQL and SQLite giving the same statistics, the API and the page.

mod access;
mod analyst;
mod api;
mod backends;
mod bad_input;
mod browser;
mod crash;
mod disclosure;
mod dynamic_filters;
mod exports;
mod federation;
mod fixture;
mod forgotten;
mod golden;
mod incremental;
mod logs;
mod privacy;
mod quality;
mod releases;
mod rotation;
mod schema;
mod schemathesis;
mod simulation;
mod sql_http;
mod u04_plain_sql;
