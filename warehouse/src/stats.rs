//! The shape of the statistical base (`stats/indicateurs`), as INDICATORS.md defines it.
//!
//! Long format, all releases appended; the current figures are, per key (indicateur,
//! territoire_niveau, territoire, pas, periode, dimension, modalite), the row of the
//! highest `version`.

use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Schema, SchemaRef};

/// The columns of `stats/indicateurs`, in order.
pub const STATS_COLUMNS: &[&str] = &[
    "indicateur",
    "territoire_niveau",
    "territoire",
    "pas",
    "periode",
    "debut",
    "fin",
    "dimension",
    "modalite",
    "valeur",
    "secret",
    "numerateur",
    "denominateur",
    "statut",
    "version",
    "revision",
];

/// The columns that identify a cell of `stats/indicateurs`: its current figure is the row
/// of the highest version with this key.
pub const STATS_KEY: [&str; 7] = [
    "indicateur",
    "territoire_niveau",
    "territoire",
    "pas",
    "periode",
    "dimension",
    "modalite",
];

/// The Arrow schema of `stats/indicateurs`.
///
/// ```
/// let schema = warehouse::stats_schema();
/// let names: Vec<_> = schema.fields().iter().map(|f| f.name().as_str()).collect();
/// assert_eq!(names, warehouse::STATS_COLUMNS);
/// // A hidden cell has no value: `valeur` is nullable, `secret` is not.
/// assert!(schema.field_with_name("valeur").unwrap().is_nullable());
/// assert!(!schema.field_with_name("secret").unwrap().is_nullable());
/// ```
pub fn stats_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("indicateur", DataType::Utf8, false),
        Field::new("territoire_niveau", DataType::Utf8, false),
        Field::new("territoire", DataType::Utf8, false),
        Field::new("pas", DataType::Utf8, false),
        Field::new("periode", DataType::Utf8, false),
        Field::new("debut", DataType::Date32, false),
        Field::new("fin", DataType::Date32, false),
        Field::new("dimension", DataType::Utf8, false),
        Field::new("modalite", DataType::Utf8, false),
        Field::new("valeur", DataType::Float64, true),
        Field::new("secret", DataType::Boolean, false),
        Field::new("numerateur", DataType::Float64, true),
        Field::new("denominateur", DataType::Float64, true),
        Field::new("statut", DataType::Utf8, false),
        Field::new("version", DataType::Int64, false),
        Field::new("revision", DataType::Utf8, true),
    ]))
}

/// The schema of `stats/releases`: one row per release.
pub fn releases_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("version", DataType::Int64, false),
        Field::new("run", DataType::Int64, false),
        Field::new("catalogue", DataType::Utf8, false),
        Field::new("seuil_secret", DataType::Int64, false),
        Field::new("calculee_le", DataType::Utf8, false),
        Field::new("lignes", DataType::Int64, false),
        // CALCUL or REVISION (null in releases written before revisions existed).
        Field::new("nature", DataType::Utf8, true),
        // A revision's month and reason.
        Field::new("motif", DataType::Utf8, true),
    ]))
}
