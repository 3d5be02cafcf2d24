//! The operational side of SI SIAO as the warehouse sees it: the source schema
//! (migrations for PostgreSQL and SQLite), the territories of the official
//! geographic code, and a seeded simulator that writes coherent activity into it.
//!
//! This is the only crate of the workspace that writes names, phone numbers and
//! free text; every other stage only ever reads what the field policy lets through.

pub mod load;
pub mod schema;
pub mod simulator;
pub mod source;
pub mod territory;

pub use schema::{Column, ColumnType, TABLES, Table, table};
pub use source::{Source, SourceError, SourceKind, Value};
pub use territory::{Departement, departement, departement_name, region_name, region_of};
