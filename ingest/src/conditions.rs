//! The conditions of incremental reads, written per back end from integers and
//! timestamps only (never from text that came from outside).

use chrono::{DateTime, Utc};

/// Rows changed at or after `since` (and rows without `updated_at`, which no watermark
/// can follow).
pub fn changed_since(postgres: bool, since: DateTime<Utc>) -> String {
    let at = since.format("%Y-%m-%dT%H:%M:%S%.6f+00:00");
    if postgres {
        format!("(updated_at >= '{at}'::timestamptz OR updated_at IS NULL)")
    } else {
        // SQLite stores RFC 3339 text with its offset: compare instants, not text.
        format!("(julianday(updated_at) >= julianday('{at}') OR updated_at IS NULL)")
    }
}

/// Rows whose `column` is one of `values`, in chunks small enough for one statement.
pub fn among(postgres: bool, column: &str, values: &[i64]) -> Vec<String> {
    let chunk = if postgres { 50_000 } else { 5_000 };
    values
        .chunks(chunk)
        .map(|part| {
            let list = part
                .iter()
                .map(i64::to_string)
                .collect::<Vec<_>>()
                .join(",");
            if postgres {
                format!("{column} = ANY('{{{list}}}'::bigint[])")
            } else {
                format!("{column} IN ({list})")
            }
        })
        .collect()
}

/// Bits of an id range: ids `b << BUCKET_BITS ..= (b + 1) << BUCKET_BITS - 1` form range `b`.
pub const BUCKET_BITS: u32 = 14;

/// Count and sum of the ids of each id range of a table.
pub fn bucket_summary(postgres: bool, table: &str) -> String {
    if postgres {
        format!(
            "SELECT (id >> {BUCKET_BITS})::bigint, count(*)::bigint, sum(id)::bigint FROM {table} GROUP BY 1"
        )
    } else {
        format!("SELECT id >> {BUCKET_BITS}, count(*), sum(id) FROM {table} GROUP BY 1")
    }
}

/// The ids of some id ranges of a table.
pub fn ids_in_buckets(postgres: bool, table: &str, buckets: &[i64]) -> Vec<String> {
    let column = format!("(id >> {BUCKET_BITS})");
    among(postgres, &column, buckets)
        .into_iter()
        .map(|condition| {
            let id = if postgres { "id::bigint" } else { "id" };
            format!("SELECT {id} FROM {table} WHERE {condition}")
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conditions_hold_only_integers_and_instants() {
        let since = DateTime::parse_from_rfc3339("2025-03-01T21:00:00+01:00")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(
            changed_since(true, since),
            "(updated_at >= '2025-03-01T20:00:00.000000+00:00'::timestamptz OR updated_at IS NULL)"
        );
        assert!(
            changed_since(false, since).contains("julianday('2025-03-01T20:00:00.000000+00:00')")
        );
        assert_eq!(among(true, "id", &[3, 5]), ["id = ANY('{3,5}'::bigint[])"]);
        assert_eq!(among(false, "menage_id", &[7]), ["menage_id IN (7)"]);
        assert_eq!(
            among(false, "id", &(0..12_000).collect::<Vec<_>>()).len(),
            3
        );
    }
}
