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
///
/// On PostgreSQL each chunk also carries the range its values span
/// (`column >= min AND column <= max`): with it the planner walks the primary key's
/// index over that range, probing the chunk's values, instead of scanning the whole
/// table (with three processes) once per chunk: 50 000 of demande_personne's ids read in
/// 166 ms instead of 478, an incremental run's scope (about a million ids in sorted
/// chunks) in 2.5 s instead of 4.1–4.5 (BENCHMARKS.md).
pub fn among(postgres: bool, column: &str, values: &[i64]) -> Vec<String> {
    chunked(postgres, values)
        .map(|(list, lo, hi)| {
            if postgres {
                format!("{column} >= {lo} AND {column} <= {hi} AND {column} = ANY('{{{list}}}'::bigint[])")
            } else {
                format!("{column} IN ({list})")
            }
        })
        .collect()
}

/// Values in chunks small enough for one statement: each chunk's comma-separated list,
/// its smallest and its largest value.
fn chunked(postgres: bool, values: &[i64]) -> impl Iterator<Item = (String, i64, i64)> + '_ {
    let chunk = if postgres { 50_000 } else { 5_000 };
    values.chunks(chunk).map(|part| {
        let list = part
            .iter()
            .map(i64::to_string)
            .collect::<Vec<_>>()
            .join(",");
        let (lo, hi) = part
            .iter()
            .fold((i64::MAX, i64::MIN), |(lo, hi), v| (lo.min(*v), hi.max(*v)));
        (list, lo, hi)
    })
}

/// Bits of an id range: ids `b << BUCKET_BITS ..= (b + 1) << BUCKET_BITS - 1` form range `b`.
pub const BUCKET_BITS: u32 = 14;

/// The modulus of [`id_totals`]' sums (the largest `bigint`).
pub const TOTALS_MODULUS: i128 = i64::MAX as i128;

/// A table's count of ids and checksum of them: the deletion check's first look, a plain
/// scan where the summary by id range is a grouping (half the time or less on
/// PostgreSQL); only a table whose totals differ is summarised by range.
///
/// On PostgreSQL, two aggregates: the count and the sum of the ids modulo
/// [`TOTALS_MODULUS`] (`sum(bigint)` is a `numeric`, which never overflows; truncated as
/// PostgreSQL's `%` is; a fifth cheaper than three). SQLite's `sum` fails on overflow:
/// there the sum of the ids' high parts (`id >> BUCKET_BITS`, modulo) and of their low
/// parts.
pub fn id_totals(postgres: bool, table: &str) -> String {
    let low = (1_i64 << BUCKET_BITS) - 1;
    if postgres {
        format!(
            "SELECT count(*)::bigint, coalesce(sum(id) % {TOTALS_MODULUS}, 0)::bigint, \
             0::bigint FROM {table}"
        )
    } else {
        format!(
            "SELECT count(*), coalesce(sum(id >> {BUCKET_BITS}) % {TOTALS_MODULUS}, 0), \
             coalesce(sum(id & {low}), 0) FROM {table}"
        )
    }
}

/// [`id_totals`] of ids at hand.
pub fn totals_of(postgres: bool, ids: impl Iterator<Item = i64>) -> [i64; 3] {
    let (mut n, mut high, mut low) = (0_i64, 0_i128, 0_i64);
    for id in ids {
        n += 1;
        if postgres {
            high += i128::from(id);
        } else {
            high += i128::from(id >> BUCKET_BITS);
            low = low.wrapping_add(id & ((1 << BUCKET_BITS) - 1));
        }
    }
    [n, (high % TOTALS_MODULUS) as i64, low]
}

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

/// The ids of some id ranges of a table, in chunks of ranges. On PostgreSQL each chunk
/// is bounded by the ids its ranges span, so that the primary key's index limits the scan.
pub fn ids_in_buckets(postgres: bool, table: &str, buckets: &[i64]) -> Vec<String> {
    chunked(postgres, buckets)
        .map(|(list, lo, hi)| {
            if postgres {
                // Range `b` holds ids `b << BUCKET_BITS ..= ((b + 1) << BUCKET_BITS) - 1`.
                let (first, last) = (
                    lo.saturating_mul(1 << BUCKET_BITS),
                    hi.saturating_add(1)
                        .saturating_mul(1 << BUCKET_BITS)
                        .saturating_sub(1),
                );
                format!(
                    "SELECT id::bigint FROM {table} WHERE id >= {first} AND id <= {last} \
                     AND (id >> {BUCKET_BITS}) = ANY('{{{list}}}'::bigint[])"
                )
            } else {
                format!("SELECT id FROM {table} WHERE (id >> {BUCKET_BITS}) IN ({list})")
            }
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
        assert_eq!(
            among(true, "id", &[5, 3]),
            ["id >= 3 AND id <= 5 AND id = ANY('{5,3}'::bigint[])"]
        );
        assert_eq!(among(false, "menage_id", &[7]), ["menage_id IN (7)"]);
        assert_eq!(
            among(false, "id", &(0..12_000).collect::<Vec<_>>()).len(),
            3
        );
    }

    #[test]
    fn totals_split_each_id_into_its_range_and_its_place_in_it() {
        // SQLite: the ranges' sum and the places' sum.
        assert_eq!(
            totals_of(false, [3, 16_385, -1].into_iter()),
            [3, 0, 3 + 1 + 16_383]
        );
        assert_eq!(totals_of(false, std::iter::empty()), [0, 0, 0]);
        let big = i64::MAX - 5;
        let [n, high, _] = totals_of(false, std::iter::repeat_n(big, 20_000));
        assert_eq!(n, 20_000);
        assert_eq!(
            i128::from(high),
            (i128::from(big >> 14) * 20_000) % TOTALS_MODULUS
        );
        // PostgreSQL: the ids' own sum, modulo the largest bigint M: four times M - 5,
        // plus 3, less 1, is 4M - 18, that is 3M + (M - 18).
        assert_eq!(totals_of(true, [3, 16_385, -1].into_iter()), [3, 16_387, 0]);
        assert_eq!(
            totals_of(true, std::iter::repeat_n(big, 4).chain([3, -1])),
            [6, TOTALS_MODULUS as i64 - 18, 0]
        );
        assert_eq!(totals_of(true, std::iter::empty()), [0, 0, 0]);
        assert!(id_totals(true, "menage").contains("sum(id) % 9223372036854775807, 0)::bigint"));
        assert!(id_totals(false, "menage").contains("sum(id >> 14) % 9223372036854775807"));
    }

    #[test]
    fn a_chunk_of_id_ranges_is_bounded_by_the_ids_they_span() {
        // Ranges 0 and 2: ids 0 ..= 16 383 and 32 768 ..= 49 151.
        assert_eq!(
            ids_in_buckets(true, "menage", &[2, 0]),
            [
                "SELECT id::bigint FROM menage WHERE id >= 0 AND id <= 49151 \
              AND (id >> 14) = ANY('{2,0}'::bigint[])"
            ]
        );
        // A negative range (ids below zero) keeps its own bounds.
        assert!(ids_in_buckets(true, "menage", &[-1])[0].contains("id >= -16384 AND id <= -1 "));
        assert_eq!(
            ids_in_buckets(false, "menage", &[1]),
            ["SELECT id FROM menage WHERE (id >> 14) IN (1)"]
        );
        assert_eq!(
            ids_in_buckets(true, "menage", &(0..120_000).collect::<Vec<_>>()).len(),
            3
        );
    }
}
