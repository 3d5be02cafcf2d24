//! Frozen periods (INDICATORS.md, "Closing").
//!
//! Closing month M freezes every period of every pas whose days all lie in closed months:
//! the JOUR and SEMAINE rows inside them, the MOIS, the TRIMESTRE once its three months
//! are closed, the ANNEE once its twelve, the HIVER once November to March are. The
//! closures are recorded in `stats/clotures` (one row per month, manual or automatic).
//! The first release after a period freezes publishes it `DEFINITIF`; later releases
//! never publish it again, so that later purges or corrections in the source cannot
//! change a published figure — until an explicit revision (`period revise`), which
//! recomputes it as a new, labelled release, the former one staying readable.

use std::collections::BTreeSet;
use std::sync::Arc;

use arrow::array::{Array, AsArray, RecordBatch, StringArray};
use chrono::{Datelike, NaiveDate};
use warehouse::Lake;

use crate::compute::{ComputeError, Result};

/// A calendar month (year, month 1–12).
pub type Month = (i32, u32);

/// Parses `AAAA-MM`.
pub fn parse_month(text: &str) -> Result<Month> {
    let bad = || ComputeError::BadMonth(text.to_owned());
    let b = text.as_bytes();
    if b.len() != 7
        || b[4] != b'-'
        || !b
            .iter()
            .enumerate()
            .all(|(i, c)| i == 4 || c.is_ascii_digit())
    {
        return Err(bad());
    }
    let y: i32 = text[..4].parse().map_err(|_| bad())?;
    let m: u32 = text[5..].parse().map_err(|_| bad())?;
    if !(1..=12).contains(&m) {
        return Err(bad());
    }
    Ok((y, m))
}

/// `AAAA-MM`.
pub fn month_label((y, m): Month) -> String {
    format!("{y:04}-{m:02}")
}

/// The months a half-open interval of days [debut, fin) touches.
pub fn months_of(debut: NaiveDate, fin: NaiveDate) -> Vec<Month> {
    let mut out = Vec::new();
    let mut m = (debut.year(), debut.month());
    let last = fin.pred_opt().unwrap_or(fin);
    while m <= (last.year(), last.month()) {
        out.push(m);
        m = if m.1 == 12 {
            (m.0 + 1, 1)
        } else {
            (m.0, m.1 + 1)
        };
    }
    out
}

/// Whether every day of [debut, fin) lies in a closed month.
pub fn is_frozen(debut: NaiveDate, fin: NaiveDate, closed: &BTreeSet<Month>) -> bool {
    !closed.is_empty() && months_of(debut, fin).iter().all(|m| closed.contains(m))
}

/// The day after a month's last day.
fn month_end(m: Month) -> NaiveDate {
    let (y, mo) = if m.1 == 12 {
        (m.0 + 1, 1)
    } else {
        (m.0, m.1 + 1)
    };
    NaiveDate::from_ymd_opt(y, mo, 1).expect("valid month")
}

/// The months from `d0`'s to `d1`'s that end at least `days` days before `today`.
pub fn due_for_closing(d0: NaiveDate, d1: NaiveDate, today: NaiveDate, days: u32) -> Vec<Month> {
    months_of(d0, d1.succ_opt().unwrap_or(d1))
        .into_iter()
        .filter(|m| month_end(*m) + chrono::Duration::days(i64::from(days)) <= today)
        .collect()
}

/// The schema of `stats/clotures`.
pub fn closures_schema() -> arrow::datatypes::SchemaRef {
    use arrow::datatypes::{DataType, Field, Schema};
    Arc::new(Schema::new(vec![
        Field::new("mois", DataType::Utf8, false),
        Field::new("origine", DataType::Utf8, false),
        Field::new("cloture_le", DataType::Utf8, false),
    ]))
}

/// One recorded closure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Closure {
    pub mois: String,
    pub origine: String,
    pub cloture_le: String,
}

/// The closures recorded, oldest first.
pub async fn closures(lake: &Lake) -> Result<Vec<Closure>> {
    let Some(table) = lake.open("stats", "clotures", None).await? else {
        return Ok(Vec::new());
    };
    let ctx = warehouse::new_session();
    lake.register(&ctx, "clotures", &table).await?;
    let batches = ctx
        .sql("SELECT mois, origine, cloture_le FROM clotures ORDER BY cloture_le, mois")
        .await?
        .collect()
        .await?;
    let mut out = Vec::new();
    for b in &batches {
        let col = |i: usize| arrow::compute::cast(b.column(i), &arrow::datatypes::DataType::Utf8);
        let (a, o, c) = (col(0)?, col(1)?, col(2)?);
        let (a, o, c) = (
            a.as_string::<i32>(),
            o.as_string::<i32>(),
            c.as_string::<i32>(),
        );
        for i in 0..b.num_rows() {
            if a.is_valid(i) {
                out.push(Closure {
                    mois: a.value(i).to_owned(),
                    origine: o.value(i).to_owned(),
                    cloture_le: c.value(i).to_owned(),
                });
            }
        }
    }
    Ok(out)
}

/// The closed months.
pub async fn closed_months(lake: &Lake) -> Result<BTreeSet<Month>> {
    closures(lake)
        .await?
        .iter()
        .map(|c| parse_month(&c.mois))
        .collect()
}

/// Records closures (the months not closed yet); returns the months newly closed.
pub async fn record(lake: &Lake, months: &[Month], origine: &str) -> Result<Vec<Month>> {
    let already = closed_months(lake).await?;
    let new: Vec<Month> = months
        .iter()
        .copied()
        .filter(|m| !already.contains(m))
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    if new.is_empty() {
        return Ok(new);
    }
    let now = chrono::Utc::now().to_rfc3339();
    let batch = RecordBatch::try_new(
        closures_schema(),
        vec![
            Arc::new(StringArray::from(
                new.iter().map(|m| month_label(*m)).collect::<Vec<_>>(),
            )),
            Arc::new(StringArray::from(vec![origine; new.len()])),
            Arc::new(StringArray::from(vec![now.as_str(); new.len()])),
        ],
    )?;
    lake.append("stats", "clotures", batch).await?;
    Ok(new)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(y: i32, m: u32, day: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, day).unwrap()
    }

    #[test]
    fn a_period_is_frozen_when_all_its_days_lie_in_closed_months() {
        let closed: BTreeSet<Month> = [(2025, 1), (2025, 2), (2025, 3)].into_iter().collect();
        // MOIS, JOUR inside, TRIMESTRE once its three months are closed.
        assert!(is_frozen(d(2025, 3, 1), d(2025, 4, 1), &closed));
        assert!(is_frozen(d(2025, 3, 31), d(2025, 4, 1), &closed));
        assert!(is_frozen(d(2025, 1, 1), d(2025, 4, 1), &closed));
        // A week across March and April, the year, the winter: not yet.
        assert!(!is_frozen(d(2025, 3, 31), d(2025, 4, 7), &closed));
        assert!(!is_frozen(d(2025, 1, 1), d(2026, 1, 1), &closed));
        assert!(!is_frozen(d(2024, 11, 1), d(2025, 4, 1), &closed));
        let mut winter = closed.clone();
        winter.extend([(2024, 11), (2024, 12)]);
        assert!(is_frozen(d(2024, 11, 1), d(2025, 4, 1), &winter));
        assert!(!is_frozen(d(2025, 4, 1), d(2025, 5, 1), &BTreeSet::new()));
    }

    #[test]
    fn months_parse_strictly_and_fall_due_after_their_delay() {
        assert_eq!(parse_month("2025-03").unwrap(), (2025, 3));
        for bad in [
            "2025-3",
            "2025-13",
            "25-03",
            "2025/03",
            "mars",
            "2025-03-01",
        ] {
            assert!(parse_month(bad).is_err(), "{bad}");
        }
        assert_eq!(
            months_of(d(2024, 12, 15), d(2025, 2, 1)),
            [(2024, 12), (2025, 1)]
        );
        // March ends on 1 April; 30 days later is 1 May.
        let due = due_for_closing(d(2025, 1, 10), d(2025, 6, 3), d(2025, 5, 1), 30);
        assert_eq!(due, [(2025, 1), (2025, 2), (2025, 3)]);
        let due = due_for_closing(d(2025, 1, 10), d(2025, 6, 3), d(2025, 4, 30), 30);
        assert_eq!(due, [(2025, 1), (2025, 2)]);
    }
}
