//! Exports of the tables the API serves: CSV for French Excel, XLSX, Parquet (and JSON,
//! the API's own format), with the columns the user picks.
//!
//! The rows exported are the rows the route served — already checked against the
//! caller's scope, disclosure control already applied — so an export shows exactly
//! what the screen shows. An XLSX workbook holds the data (at most 1,048,575 rows per
//! sheet: beyond, the rows continue on further sheets, and the notes sheet says so) and
//! a notes sheet: the definition, the release, the filters, the secrecy note.

use std::sync::Arc;

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::{DataType, Date32Type, Float64Type, Int64Type, Schema, SchemaRef};
use rust_xlsxwriter::{Format as XlsxFormat, Workbook};
use serde::Serialize;

use crate::ApiError;

/// Data rows per worksheet (Excel's 1,048,576 rows, less the header).
pub const XLSX_MAX_ROWS: usize = 1_048_575;

/// An export format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExportFormat {
    Json,
    Csv,
    Xlsx,
    Parquet,
}

impl ExportFormat {
    pub fn parse(text: Option<&str>) -> Result<ExportFormat, ApiError> {
        match text.map(str::to_ascii_lowercase).as_deref() {
            None | Some("") | Some("json") => Ok(ExportFormat::Json),
            Some("csv") => Ok(ExportFormat::Csv),
            Some("xlsx") => Ok(ExportFormat::Xlsx),
            Some("parquet") => Ok(ExportFormat::Parquet),
            Some(other) => Err(ApiError::bad_request(format!(
                "format d'export inconnu « {other} » (attendu json, csv, xlsx ou parquet)"
            ))
            .with_code("FORMAT_INCONNU")),
        }
    }

    fn content_type(self) -> &'static str {
        match self {
            ExportFormat::Json => "application/json",
            ExportFormat::Csv => "text/csv; charset=utf-8",
            ExportFormat::Xlsx => {
                "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
            }
            ExportFormat::Parquet => "application/vnd.apache.parquet",
        }
    }

    fn extension(self) -> &'static str {
        match self {
            ExportFormat::Json => "json",
            ExportFormat::Csv => "csv",
            ExportFormat::Xlsx => "xlsx",
            ExportFormat::Parquet => "parquet",
        }
    }
}

/// What the notes sheet of a workbook says.
#[derive(Debug, Clone, Default)]
pub struct Notes {
    pub titre: String,
    pub definition: Option<String>,
    pub unite: Option<String>,
    pub publication: Option<i64>,
    pub filtres: Vec<(String, String)>,
    pub secret: Option<String>,
}

/// Rows of a serialisable type as a batch of the given schema (values are decoded by
/// name: dates from `AAAA-MM-JJ` text, numbers, booleans).
pub fn batch_of<T: Serialize>(rows: &[T], schema: SchemaRef) -> Result<RecordBatch, ApiError> {
    let mut decoder = arrow::json::ReaderBuilder::new(schema.clone())
        .build_decoder()
        .map_err(ApiError::internal)?;
    decoder.serialize(rows).map_err(ApiError::internal)?;
    Ok(decoder
        .flush()
        .map_err(ApiError::internal)?
        .unwrap_or_else(|| RecordBatch::new_empty(schema)))
}

/// Keeps the chosen columns (`colonnes=periode,valeur`), in the order given.
pub fn select_columns(batch: RecordBatch, columns: Option<&str>) -> Result<RecordBatch, ApiError> {
    let Some(list) = columns.filter(|c| !c.trim().is_empty()) else {
        return Ok(batch);
    };
    let schema = batch.schema();
    let mut indices = Vec::new();
    for name in list.split(',').map(str::trim).filter(|n| !n.is_empty()) {
        let i = schema.index_of(name).map_err(|_| {
            let known: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
            ApiError::bad_request(format!(
                "colonne inconnue « {name} » (colonnes possibles : {})",
                known.join(", ")
            ))
            .with_code("COLONNE_INCONNUE")
        })?;
        if !indices.contains(&i) {
            indices.push(i);
        }
    }
    batch.project(&indices).map_err(ApiError::internal)
}

/// The body and headers of an export.
pub fn respond(
    format: ExportFormat,
    batch: &RecordBatch,
    file_stem: &str,
    notes: &Notes,
) -> Result<axum::response::Response, ApiError> {
    use axum::http::{HeaderValue, header};
    use axum::response::IntoResponse;
    let bytes = match format {
        ExportFormat::Json => {
            let mut writer = arrow::json::ArrayWriter::new(Vec::new());
            writer.write(batch).map_err(ApiError::internal)?;
            writer.finish().map_err(ApiError::internal)?;
            let out = writer.into_inner();
            if out.is_empty() { b"[]".to_vec() } else { out }
        }
        ExportFormat::Csv => crate::formats::csv(std::slice::from_ref(batch), &batch.schema())?,
        ExportFormat::Parquet => parquet_bytes(batch)?,
        ExportFormat::Xlsx => xlsx_bytes(batch, notes)?,
    };
    let mut response = bytes.into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(format.content_type()),
    );
    if format != ExportFormat::Json {
        let name: String = file_stem
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        if let Ok(v) = HeaderValue::from_str(&format!(
            "attachment; filename=\"{name}.{}\"",
            format.extension()
        )) {
            headers.insert(header::CONTENT_DISPOSITION, v);
        }
    }
    Ok(response)
}

fn parquet_bytes(batch: &RecordBatch) -> Result<Vec<u8>, ApiError> {
    let props = parquet::file::properties::WriterProperties::builder()
        .set_compression(parquet::basic::Compression::SNAPPY)
        .build();
    let mut out = Vec::new();
    let mut writer = parquet::arrow::ArrowWriter::try_new(&mut out, batch.schema(), Some(props))
        .map_err(ApiError::internal)?;
    writer.write(batch).map_err(ApiError::internal)?;
    writer.close().map_err(ApiError::internal)?;
    Ok(out)
}

fn xlsx_err(e: rust_xlsxwriter::XlsxError) -> ApiError {
    ApiError::internal(format!("classeur XLSX : {e}"))
}

fn xlsx_bytes(batch: &RecordBatch, notes: &Notes) -> Result<Vec<u8>, ApiError> {
    let mut workbook = Workbook::new();
    let bold = XlsxFormat::new().set_bold();
    let date = XlsxFormat::new().set_num_format("dd/mm/yyyy");
    let rows = batch.num_rows();
    let sheets = rows.div_ceil(XLSX_MAX_ROWS).max(1);
    let schema = batch.schema();
    for sheet in 0..sheets {
        let ws = workbook.add_worksheet();
        let name = if sheet == 0 {
            "Données".to_owned()
        } else {
            format!("Données ({})", sheet + 1)
        };
        ws.set_name(&name).map_err(xlsx_err)?;
        for (c, field) in schema.fields().iter().enumerate() {
            ws.write_string_with_format(0, c as u16, field.name(), &bold)
                .map_err(xlsx_err)?;
        }
        let start = sheet * XLSX_MAX_ROWS;
        let end = (start + XLSX_MAX_ROWS).min(rows);
        for (c, column) in batch.columns().iter().enumerate() {
            let c = c as u16;
            for i in start..end {
                let r = (i - start + 1) as u32;
                if column.is_null(i) {
                    continue;
                }
                match column.data_type() {
                    DataType::Float64 => {
                        ws.write_number(r, c, column.as_primitive::<Float64Type>().value(i))
                    }
                    DataType::Int64 => {
                        ws.write_number(r, c, column.as_primitive::<Int64Type>().value(i) as f64)
                    }
                    DataType::Boolean => ws.write_string(
                        r,
                        c,
                        if column.as_boolean().value(i) {
                            "oui"
                        } else {
                            "non"
                        },
                    ),
                    DataType::Date32 => {
                        // Excel's serial date: days since 1899-12-30.
                        let days = column.as_primitive::<Date32Type>().value(i);
                        ws.write_number_with_format(r, c, f64::from(days) + 25_569.0, &date)
                    }
                    _ => {
                        let text = arrow::util::display::array_value_to_string(column, i)
                            .map_err(ApiError::internal)?;
                        ws.write_string(r, c, text)
                    }
                }
                .map_err(xlsx_err)?;
            }
        }
        ws.set_freeze_panes(1, 0).map_err(xlsx_err)?;
    }
    let ws = workbook.add_worksheet();
    ws.set_name("Notes").map_err(xlsx_err)?;
    let mut lines: Vec<(String, String)> = vec![("Titre".into(), notes.titre.clone())];
    if let Some(d) = &notes.definition {
        lines.push(("Définition".into(), d.clone()));
    }
    if let Some(u) = &notes.unite {
        lines.push(("Unité".into(), u.clone()));
    }
    if let Some(p) = notes.publication {
        lines.push(("Publication".into(), format!("n° {p}")));
    }
    for (k, v) in &notes.filtres {
        lines.push((k.clone(), v.clone()));
    }
    lines.push(("Lignes".into(), rows.to_string()));
    if sheets > 1 {
        lines.push((
            "Découpage".into(),
            format!(
                "{rows} lignes dépassent la limite d'Excel de {XLSX_MAX_ROWS} lignes par feuille : elles sont réparties sur {sheets} feuilles « Données » dans l'ordre"
            ),
        ));
    }
    if let Some(s) = &notes.secret {
        lines.push(("Secret statistique".into(), s.clone()));
    }
    lines.push((
        "Export".into(),
        format!(
            "Observatoire SI SIAO, le {}",
            chrono::Utc::now().format("%d/%m/%Y à %H:%M UTC")
        ),
    ));
    ws.set_column_width(0, 22).map_err(xlsx_err)?;
    ws.set_column_width(1, 110).map_err(xlsx_err)?;
    let wrap = XlsxFormat::new().set_text_wrap();
    for (r, (k, v)) in lines.iter().enumerate() {
        ws.write_string_with_format(r as u32, 0, k, &bold)
            .map_err(xlsx_err)?;
        ws.write_string_with_format(r as u32, 1, v, &wrap)
            .map_err(xlsx_err)?;
    }
    workbook.save_to_buffer().map_err(xlsx_err)
}

/// The schema of an exported value row ([`crate::StatRow`]).
pub fn stat_row_schema() -> SchemaRef {
    use arrow::datatypes::Field;
    let t = |n: &str, null: bool| Field::new(n, DataType::Utf8, null);
    let f = |n: &str| Field::new(n, DataType::Float64, true);
    let d = |n: &str| Field::new(n, DataType::Date32, false);
    Arc::new(Schema::new(vec![
        t("indicateur", false),
        t("territoire_niveau", false),
        t("territoire", false),
        t("code_territoire", false),
        t("pas", false),
        t("periode", false),
        d("debut"),
        d("fin"),
        t("dimension", false),
        t("modalite", false),
        f("valeur"),
        Field::new("secret", DataType::Boolean, false),
        f("numerateur"),
        f("denominateur"),
        t("statut", false),
        Field::new("version", DataType::Int64, false),
        t("revision", true),
    ]))
}
