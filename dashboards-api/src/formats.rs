//! Result formats shared by the SQL endpoint and the exports: JSON (objects per row),
//! CSV for French Excel (`;`, decimal comma, UTF-8 with BOM), Arrow IPC stream.

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::{DataType, Float32Type, Float64Type};
use arrow::util::display::{ArrayFormatter, FormatOptions};

use crate::ApiError;

/// A format a client can ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Json,
    Csv,
    Arrow,
}

impl Format {
    /// From a `format` parameter (`json`, `csv`, `arrow`), else from `Accept`.
    pub fn choose(param: Option<&str>, accept: Option<&str>) -> Result<Format, ApiError> {
        match param.map(str::to_ascii_lowercase).as_deref() {
            Some("json") => return Ok(Format::Json),
            Some("csv") => return Ok(Format::Csv),
            Some("arrow") => return Ok(Format::Arrow),
            Some("") | None => {}
            Some(other) => {
                return Err(ApiError::bad_request(format!(
                    "format inconnu « {other} » (attendu json, csv ou arrow)"
                )));
            }
        }
        let accept = accept.unwrap_or("");
        Ok(if accept.contains("text/csv") {
            Format::Csv
        } else if accept.contains("application/vnd.apache.arrow.stream") {
            Format::Arrow
        } else {
            Format::Json
        })
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Format::Json => "application/json",
            Format::Csv => "text/csv; charset=utf-8",
            Format::Arrow => "application/vnd.apache.arrow.stream",
        }
    }
}

/// A float written the French way: decimal comma, no exponent for ordinary values.
fn french_float(x: f64) -> String {
    if x.is_finite() {
        let text = format!("{x}");
        text.replace('.', ",")
    } else {
        String::new()
    }
}

fn csv_field(text: &str) -> String {
    if text.contains([';', '"', '\n', '\r']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text.to_owned()
    }
}

/// CSV for French Excel: BOM, `;` separator, decimal comma, CRLF line ends, empty
/// fields for nulls.
pub fn csv(
    batches: &[RecordBatch],
    schema: &arrow::datatypes::Schema,
) -> Result<Vec<u8>, ApiError> {
    let mut out = String::from("\u{feff}");
    let header: Vec<String> = schema
        .fields()
        .iter()
        .map(|f| csv_field(f.name()))
        .collect();
    out.push_str(&header.join(";"));
    out.push_str("\r\n");
    let options = FormatOptions::default().with_null("");
    for b in batches {
        let formatters: Vec<Box<dyn Fn(usize) -> String + '_>> = b
            .columns()
            .iter()
            .map(|c| -> Result<Box<dyn Fn(usize) -> String + '_>, ApiError> {
                Ok(match c.data_type() {
                    DataType::Float64 => {
                        let a = c.as_primitive::<Float64Type>();
                        Box::new(move |i| {
                            if a.is_null(i) {
                                String::new()
                            } else {
                                french_float(a.value(i))
                            }
                        })
                    }
                    DataType::Float32 => {
                        let a = c.as_primitive::<Float32Type>();
                        Box::new(move |i| {
                            if a.is_null(i) {
                                String::new()
                            } else {
                                french_float(f64::from(a.value(i)))
                            }
                        })
                    }
                    DataType::Boolean => {
                        let a = c.as_boolean();
                        Box::new(move |i| {
                            if a.is_null(i) {
                                String::new()
                            } else if a.value(i) {
                                "oui".to_owned()
                            } else {
                                "non".to_owned()
                            }
                        })
                    }
                    _ => {
                        let f = ArrayFormatter::try_new(c.as_ref(), &options)
                            .map_err(ApiError::internal)?;
                        Box::new(move |i| csv_field(&f.value(i).to_string()))
                    }
                })
            })
            .collect::<Result<_, _>>()?;
        for i in 0..b.num_rows() {
            let row: Vec<String> = formatters.iter().map(|f| f(i)).collect();
            out.push_str(&row.join(";"));
            out.push_str("\r\n");
        }
    }
    Ok(out.into_bytes())
}

/// JSON: `{"colonnes": [{"nom", "type"}], "lignes": [{col: valeur}], "nombre": n}`.
pub fn json(
    batches: &[RecordBatch],
    schema: &arrow::datatypes::Schema,
) -> Result<Vec<u8>, ApiError> {
    let mut writer = arrow::json::ArrayWriter::new(Vec::new());
    for b in batches {
        writer.write(b).map_err(ApiError::internal)?;
    }
    writer.finish().map_err(ApiError::internal)?;
    let rows = writer.into_inner();
    let rows = if rows.is_empty() {
        b"[]".to_vec()
    } else {
        rows
    };
    let columns: Vec<serde_json::Value> = schema
        .fields()
        .iter()
        .map(|f| serde_json::json!({"nom": f.name(), "type": f.data_type().to_string()}))
        .collect();
    let n: usize = batches.iter().map(|b| b.num_rows()).sum();
    let mut out = Vec::with_capacity(rows.len() + 256);
    out.extend_from_slice(b"{\"colonnes\":");
    out.extend_from_slice(&serde_json::to_vec(&columns).map_err(ApiError::internal)?);
    out.extend_from_slice(b",\"nombre\":");
    out.extend_from_slice(n.to_string().as_bytes());
    out.extend_from_slice(b",\"lignes\":");
    out.extend_from_slice(&rows);
    out.push(b'}');
    Ok(out)
}

/// An Arrow IPC stream.
pub fn arrow_ipc(
    batches: &[RecordBatch],
    schema: &arrow::datatypes::Schema,
) -> Result<Vec<u8>, ApiError> {
    let mut out = Vec::new();
    {
        let mut writer = arrow::ipc::writer::StreamWriter::try_new(&mut out, schema)
            .map_err(ApiError::internal)?;
        for b in batches {
            writer.write(b).map_err(ApiError::internal)?;
        }
        writer.finish().map_err(ApiError::internal)?;
    }
    Ok(out)
}

/// Encodes batches in a format.
pub fn encode(
    format: Format,
    batches: &[RecordBatch],
    schema: &arrow::datatypes::Schema,
) -> Result<Vec<u8>, ApiError> {
    match format {
        Format::Json => json(batches, schema),
        Format::Csv => csv(batches, schema),
        Format::Arrow => arrow_ipc(batches, schema),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{Float64Array, StringArray};
    use arrow::datatypes::{Field, Schema};

    use super::*;

    #[test]
    fn csv_is_for_french_excel() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("territoire", DataType::Utf8, true),
            Field::new("valeur", DataType::Float64, true),
        ]));
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(StringArray::from(vec![
                    Some("Seine-Saint-Denis"),
                    Some("a;b"),
                    None,
                ])),
                Arc::new(Float64Array::from(vec![Some(0.25), None, Some(12.0)])),
            ],
        )
        .unwrap();
        let text = String::from_utf8(csv(&[batch], &schema).unwrap()).unwrap();
        assert_eq!(
            text,
            "\u{feff}territoire;valeur\r\nSeine-Saint-Denis;0,25\r\n\"a;b\";\r\n;12\r\n"
        );
    }
}
