//! The quality zone: the quarantine and the data-quality report of each run.
//!
//! - `quality/quarantine`: one row per quarantined source row — its table, its
//!   pseudonymised key (`HMAC(detail subkey, table ':' id)`: never the id), the rule that put
//!   it there, its SIAO and month, when it was first seen in quarantine and when last.
//!   Each ingest re-checks every row: a row fixed in the source leaves the quarantine; one
//!   still broken keeps its first-seen date.
//! - `quality/report`: per SIAO, month and source table, rows read, rows quarantined by
//!   rule, rows kept with a problem by rule, the completeness of the fields the indicators
//!   use, and the suspected duplicates (per SIAO, month `INCONNU`).
//!
//! Both are written by the run and pinned by its manifest, like the detail tables.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use anonymize::MasterKey;
use arrow::array::{
    Array, AsArray, Int64Array, RecordBatch, StringArray, TimestampMicrosecondArray,
};
use arrow::compute::cast;
use arrow::datatypes::{DataType, Field, Int64Type, Schema, TimeUnit, TimestampMicrosecondType};
use ingest::quality::{Action, QualityReport, RULES};
use warehouse::Lake;

use crate::{Error, Result};

fn arrow_error(e: arrow::error::ArrowError) -> Error {
    Error::Quality(e.to_string())
}

fn action(rule: &str) -> Action {
    RULES
        .iter()
        .find(|(r, _)| *r == rule)
        .map_or(Action::Keep, |(_, a)| *a)
}

/// Runs `sql` over one Delta table registered as `alias` in a fresh session.
pub(crate) async fn query(
    lake: &Lake,
    table: &warehouse::DeltaTable,
    alias: &str,
    sql: &str,
) -> Result<Vec<RecordBatch>> {
    let ctx = warehouse::new_session();
    lake.register(&ctx, alias, table).await?;
    let frame = ctx
        .sql(sql)
        .await
        .map_err(|e| Error::Quality(e.to_string()))?;
    frame
        .collect()
        .await
        .map_err(|e| Error::Quality(e.to_string()))
}

/// Column `i` of a batch as plain text, whatever string type the engine produced.
pub(crate) fn text_column(b: &RecordBatch, i: usize) -> Result<StringArray> {
    Ok(cast(b.column(i), &DataType::Utf8)
        .map_err(arrow_error)?
        .as_string::<i32>()
        .clone())
}

/// The quarantine of this run, carrying the first-seen time of rows already there.
pub(crate) async fn quarantine_batch(
    lake: &Lake,
    key: &MasterKey,
    report: &QualityReport,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<RecordBatch> {
    let pseudonyms = key.subkey("detail");
    let previous = previous_first_seen(lake).await?;
    let now = now.timestamp_micros();
    let (mut table, mut cle, mut regle, mut siao, mut mois, mut first) =
        (vec![], vec![], vec![], vec![], vec![], vec![]);
    for row in &report.quarantined_rows {
        let k = pseudonyms.pseudonym(row.table, row.id);
        first.push(
            previous
                .get(&(row.table.to_owned(), k.clone(), row.rule.to_owned()))
                .copied()
                .unwrap_or(now),
        );
        table.push(row.table);
        cle.push(k);
        regle.push(row.rule);
        siao.push(row.place.siao().to_string());
        mois.push(row.place.mois().to_string());
    }
    let n = table.len();
    let ts = DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()));
    RecordBatch::try_new(
        Arc::new(Schema::new(vec![
            Field::new("table_source", DataType::Utf8, false),
            Field::new("cle", DataType::Utf8, false),
            Field::new("regle", DataType::Utf8, false),
            Field::new("siao", DataType::Utf8, false),
            Field::new("mois", DataType::Utf8, false),
            Field::new("premiere_vue", ts.clone(), false),
            Field::new("derniere_vue", ts, false),
        ])),
        vec![
            Arc::new(StringArray::from(table)),
            Arc::new(StringArray::from(cle)),
            Arc::new(StringArray::from(regle)),
            Arc::new(StringArray::from(siao)),
            Arc::new(StringArray::from(mois)),
            Arc::new(TimestampMicrosecondArray::from(first).with_timezone("UTC")),
            Arc::new(TimestampMicrosecondArray::from(vec![now; n]).with_timezone("UTC")),
        ],
    )
    .map_err(arrow_error)
}

/// The quarantine after an incremental run: the previous entries, less those of the
/// rows the run re-checked (`rechecked`: table and pseudonymised key), plus the rows the
/// run quarantined. Every entry is seen now; a row still quarantined by the same rule
/// keeps its first-seen time.
pub(crate) async fn merge_quarantine<S: std::hash::BuildHasher>(
    lake: &Lake,
    key: &MasterKey,
    report: &QualityReport,
    rechecked: &std::collections::HashSet<(String, String), S>,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<RecordBatch> {
    let fresh = quarantine_batch(lake, key, report, now).await?;
    let Some(table) = lake.quality_table("quarantine").await? else {
        return Ok(fresh);
    };
    let kept = query(
        lake,
        &table,
        "quarantaine",
        "SELECT table_source, cle, regle, siao, mois, premiere_vue, derniere_vue FROM quarantaine",
    )
    .await?;
    let now = now.timestamp_micros();
    let mut batches = vec![fresh.clone()];
    for b in kept {
        let (t, c) = (text_column(&b, 0)?, text_column(&b, 1)?);
        let mask: arrow::array::BooleanArray = (0..b.num_rows())
            .map(|i| Some(!rechecked.contains(&(t.value(i).to_owned(), c.value(i).to_owned()))))
            .collect();
        let columns = (0..5)
            .map(|i| text_column(&b, i).map(|a| Arc::new(a) as arrow::array::ArrayRef))
            .chain([Ok(cast(
                b.column(5),
                &DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            )
            .map_err(arrow_error)?)])
            .chain([Ok(Arc::new(
                TimestampMicrosecondArray::from(vec![now; b.num_rows()]).with_timezone("UTC"),
            ) as arrow::array::ArrayRef)])
            .collect::<Result<Vec<_>>>()?;
        let b = RecordBatch::try_new(fresh.schema(), columns).map_err(arrow_error)?;
        batches.push(arrow::compute::filter_record_batch(&b, &mask).map_err(arrow_error)?);
    }
    arrow::compute::concat_batches(&fresh.schema(), &batches).map_err(arrow_error)
}

async fn previous_first_seen(lake: &Lake) -> Result<HashMap<(String, String, String), i64>> {
    let mut out = HashMap::new();
    let Some(table) = lake.quality_table("quarantine").await? else {
        return Ok(out);
    };
    let batches = query(
        lake,
        &table,
        "quarantaine",
        "SELECT table_source, cle, regle, premiere_vue FROM quarantaine",
    )
    .await?;
    for b in &batches {
        let (t, c, r) = (text_column(b, 0)?, text_column(b, 1)?, text_column(b, 2)?);
        let first = cast(
            b.column(3),
            &DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
        )
        .map_err(arrow_error)?;
        let first = first.as_primitive::<TimestampMicrosecondType>();
        for i in 0..b.num_rows() {
            out.insert(
                (
                    t.value(i).to_owned(),
                    c.value(i).to_owned(),
                    r.value(i).to_owned(),
                ),
                first.value(i),
            );
        }
    }
    Ok(out)
}

/// The nature of a line of the report.
pub const LUES: &str = "LUES";
pub const QUARANTAINE: &str = "QUARANTAINE";
pub const CONSERVEE: &str = "CONSERVEE_AVEC_DEFAUT";
pub const COMPLETUDE: &str = "COMPLETUDE";
pub const DOUBLONS: &str = "DOUBLONS_SUSPECTS";

/// One line of the data-quality report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QualityLine {
    pub siao: String,
    pub mois: String,
    pub table: String,
    /// `LUES`, `QUARANTAINE`, `CONSERVEE_AVEC_DEFAUT`, `COMPLETUDE` or `DOUBLONS_SUSPECTS`.
    pub nature: String,
    /// The rule or the measure (`NON_POURVUE_AVEC_MOTIF`, …); empty for `LUES`.
    pub mesure: String,
    pub lignes: u64,
}

/// The report of this run as a table.
pub(crate) fn report_batch(
    report: &QualityReport,
    doublons: &BTreeMap<String, u64>,
) -> Result<RecordBatch> {
    let mut lines: Vec<QualityLine> = Vec::new();
    for ((table, place), n) in &report.read {
        lines.push(QualityLine {
            siao: place.siao().to_string(),
            mois: place.mois().to_string(),
            table: (*table).to_owned(),
            nature: LUES.into(),
            mesure: String::new(),
            lignes: *n,
        });
    }
    for ((rule, table, place), n) in &report.counts {
        lines.push(QualityLine {
            siao: place.siao().to_string(),
            mois: place.mois().to_string(),
            table: (*table).to_owned(),
            nature: match action(rule) {
                Action::Quarantine => QUARANTAINE,
                Action::Keep => CONSERVEE,
            }
            .into(),
            mesure: (*rule).to_owned(),
            lignes: *n,
        });
    }
    for ((measure, table, place), n) in &report.completeness {
        lines.push(QualityLine {
            siao: place.siao().to_string(),
            mois: place.mois().to_string(),
            table: (*table).to_owned(),
            nature: COMPLETUDE.into(),
            mesure: (*measure).to_owned(),
            lignes: *n,
        });
    }
    for (siao, n) in doublons {
        lines.push(QualityLine {
            siao: siao.clone(),
            mois: "INCONNU".into(),
            table: "personne".into(),
            nature: DOUBLONS.into(),
            mesure: String::new(),
            lignes: *n,
        });
    }
    lines_batch(&lines)
}

/// Report lines as the `quality/report` table.
pub(crate) fn lines_batch(lines: &[QualityLine]) -> Result<RecordBatch> {
    let text = |f: fn(&QualityLine) -> &str| -> Arc<StringArray> {
        Arc::new(StringArray::from_iter_values(lines.iter().map(f)))
    };
    RecordBatch::try_new(
        Arc::new(Schema::new(vec![
            Field::new("siao", DataType::Utf8, false),
            Field::new("mois", DataType::Utf8, false),
            Field::new("table_source", DataType::Utf8, false),
            Field::new("nature", DataType::Utf8, false),
            Field::new("mesure", DataType::Utf8, false),
            Field::new("lignes", DataType::Int64, false),
        ])),
        vec![
            text(|l| &l.siao),
            text(|l| &l.mois),
            text(|l| &l.table),
            text(|l| &l.nature),
            text(|l| &l.mesure),
            Arc::new(Int64Array::from_iter_values(
                lines.iter().map(|l| l.lignes as i64),
            )),
        ],
    )
    .map_err(arrow_error)
}

/// The data-quality report of the latest complete run, optionally for one SIAO.
pub async fn read_report(lake: &Lake, siao: Option<&str>) -> Result<Vec<QualityLine>> {
    let Some(table) = lake.quality_table("report").await? else {
        return Err(warehouse::WarehouseError::NoRun(lake.root().to_owned()).into());
    };
    let batches = query(
        lake,
        &table,
        "rapport",
        "SELECT siao, mois, table_source, nature, mesure, lignes FROM rapport",
    )
    .await?;
    let mut out = Vec::new();
    for b in &batches {
        let text = |i: usize| text_column(b, i);
        let (s, m, t, n, me) = (text(0)?, text(1)?, text(2)?, text(3)?, text(4)?);
        let lignes = cast(b.column(5), &DataType::Int64).map_err(arrow_error)?;
        let lignes = lignes.as_primitive::<Int64Type>();
        for i in 0..b.num_rows() {
            if siao.is_some_and(|wanted| wanted != s.value(i)) {
                continue;
            }
            out.push(QualityLine {
                siao: s.value(i).to_owned(),
                mois: m.value(i).to_owned(),
                table: t.value(i).to_owned(),
                nature: n.value(i).to_owned(),
                mesure: me.value(i).to_owned(),
                lignes: if lignes.is_null(i) {
                    0
                } else {
                    lignes.value(i) as u64
                },
            });
        }
    }
    out.sort_by(|a, b| {
        (&a.siao, &a.mois, &a.table, &a.nature, &a.mesure)
            .cmp(&(&b.siao, &b.mois, &b.table, &b.nature, &b.mesure))
    });
    Ok(out)
}
