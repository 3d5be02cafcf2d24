//! Distinct counts' firsts and distinct ratios' entities, found entity by entity
//! instead of by two hash aggregations.
//!
//! A distinct count (U02, U05, U06, U07, P01, P02) keeps, for every territory, period
//! and entity, the entity's first record there, and counts these firsts by modalities.
//! The grid SQL over packed records ([`crate::compute`], `dep_k` → `ter_k` → `ter_n`)
//! does it with two hash aggregations whose groups are every (département, period,
//! entity) and then every (territory, period, entity): nationally, tens of millions of
//! groups, each record repeated for its ~6 periods and 3 territory levels.
//!
//! [`count_firsts`] gives the same `ter_n` table — (tid, pid, modalites, n) — from the
//! records sorted by entity: one entity's records are few, so its (territory, period)
//! pairs are deduplicated in a small buffer and only the counts per (territory, period,
//! modalities) go into a hash table (as many entries as the grid has cells). Same rules
//! as the SQL, which stays the definition (the benchmark's peer runs it, and checks every
//! cell):
//! - a record without an entity, a known département or an observed period is ignored
//!   (`WHERE entite IS NOT NULL`, inner joins with `territoires` and the calendar);
//! - an entity's first in a territory and period is its smallest `ordre` there
//!   (`MIN` ignores nulls); without any, it is not counted;
//! - DistinctAll: the entity counts 1 when all its records there are `garde` (a null
//!   `garde` is not), 0 otherwise — a (territory, period, modalities) whose firsts all
//!   count 0 still has its row, with n = 0, as `SUM(CASE …)` gives it;
//! - beside `n`, `e` counts every entity whose first is there (the SQL's `COUNT(*)`):
//!   the row exists when e ≥ 1, which lets DistinctAll follow by difference
//!   ([`crate::compute`]'s `effectif`).
//!
//! A distinct ratio (U10) is the same walk: [`count_distinct_ratio`] gives the SQL's
//! `agg` — per (tid, pid), the entities with a record `au_den` and one `au_num` there,
//! and those with one `au_den` — from each entity's flags OR-ed per territory and
//! period (`MAX` over 0/1, a null flag being 0).

use std::collections::HashMap;
use std::sync::Arc;

use arrow::array::{Array, AsArray, Int64Array, RecordBatch};
use arrow::compute::cast;
use arrow::datatypes::{DataType, Date32Type, Field, Int64Type, Schema, SchemaRef};
use datafusion::prelude::SessionContext;

use crate::compute::{ComputeError, Result};

/// The counts' hash table: many increments, few entries (one per cell and modalities).
type FastMap<K, V> = datafusion::common::HashMap<K, V>;

/// Where records fall: each observed day's periods, each period's number, each
/// département's territories (from the session's calendar, periods and `territoires`).
pub struct Placement {
    /// The first day of `days`, as Date32.
    day0: i32,
    /// For each day from `day0`, its slot in `slots` (`u32::MAX`: not observed).
    days: Vec<u32>,
    /// (pas, periode) → slot of that one period.
    periods: HashMap<(String, String), u32>,
    /// Département → slot of its territories.
    departements: HashMap<String, u32>,
    /// Slots: ranges of `numbers` (period or territory numbers).
    slots: Vec<(u32, u32)>,
    numbers: Vec<u32>,
    /// One more than the largest territory number, and than the largest period number.
    tids: u32,
    pids: u32,
}

const NONE: u32 = u32::MAX;

fn column_i64(batch: &RecordBatch, name: &str) -> Result<Int64Array> {
    let c = batch.column(batch.schema().index_of(name)?);
    Ok(cast(c, &DataType::Int64)?
        .as_primitive::<Int64Type>()
        .clone())
}

fn column_text(batch: &RecordBatch, name: &str) -> Result<arrow::array::StringArray> {
    let c = batch.column(batch.schema().index_of(name)?);
    Ok(cast(c, &DataType::Utf8)?.as_string::<i32>().clone())
}

async fn read(ctx: &SessionContext, sql: &str) -> Result<Vec<RecordBatch>> {
    let frame = ctx.sql(sql).await.map_err(ComputeError::from)?;
    frame.collect().await.map_err(ComputeError::from)
}

impl Placement {
    /// Reads the calendar (`jour`, `pid`), the periods (`pas`, `periode`, `pid`) and
    /// `territoires` (`departement`, `tid`) registered in the session.
    pub async fn read(ctx: &SessionContext, calendrier: &str, periodes: &str) -> Result<Self> {
        let mut slots = Vec::new();
        let mut numbers = Vec::new();
        let mut push_slot = |group: &[u32]| -> u32 {
            let start = numbers.len() as u32;
            numbers.extend_from_slice(group);
            slots.push((start, numbers.len() as u32));
            (slots.len() - 1) as u32
        };
        // Days: their periods.
        let (mut by_dep_max, mut periods_max) = (0_u32, 0_u32);
        let mut by_day: std::collections::BTreeMap<i32, Vec<u32>> = Default::default();
        for b in read(ctx, &format!("SELECT jour, pid FROM {calendrier}")).await? {
            let jour = cast(b.column(0), &DataType::Date32)?;
            let jour = jour.as_primitive::<Date32Type>();
            let pid = column_i64(&b, "pid")?;
            for i in 0..b.num_rows() {
                periods_max = periods_max.max(pid.value(i) as u32);
                by_day
                    .entry(jour.value(i))
                    .or_default()
                    .push(pid.value(i) as u32);
            }
        }
        let day0 = by_day.keys().next().copied().unwrap_or(0);
        let span = by_day
            .keys()
            .next_back()
            .map_or(0, |&d| (d - day0 + 1) as usize);
        let mut days = vec![NONE; span];
        for (d, pids) in &by_day {
            days[(d - day0) as usize] = push_slot(pids);
        }
        let mut periods = HashMap::new();
        for b in read(ctx, &format!("SELECT pas, periode, pid FROM {periodes}")).await? {
            let (pas, periode) = (column_text(&b, "pas")?, column_text(&b, "periode")?);
            let pid = column_i64(&b, "pid")?;
            for i in 0..b.num_rows() {
                periods_max = periods_max.max(pid.value(i) as u32);
                let slot = push_slot(&[pid.value(i) as u32]);
                periods.insert((pas.value(i).to_owned(), periode.value(i).to_owned()), slot);
            }
        }
        let mut by_dep: HashMap<String, Vec<u32>> = HashMap::new();
        for b in read(ctx, "SELECT departement, tid FROM territoires").await? {
            let dep = column_text(&b, "departement")?;
            let tid = column_i64(&b, "tid")?;
            for i in 0..b.num_rows() {
                by_dep_max = by_dep_max.max(tid.value(i) as u32);
                by_dep
                    .entry(dep.value(i).to_owned())
                    .or_default()
                    .push(tid.value(i) as u32);
            }
        }
        let departements = by_dep
            .into_iter()
            .map(|(d, tids)| {
                let slot = push_slot(&tids);
                (d, slot)
            })
            .collect();
        let tids = by_dep_max + 1;
        let pids = periods_max + 1;
        Ok(Placement {
            day0,
            days,
            periods,
            departements,
            slots,
            numbers,
            tids,
            pids,
        })
    }

    /// One more than the largest territory and period numbers.
    fn extent(&self) -> (u32, u32) {
        (self.tids, self.pids)
    }

    fn slot(&self, slot: u32) -> &[u32] {
        let (a, b) = self.slots[slot as usize];
        &self.numbers[a as usize..b as usize]
    }
}

/// An indicator's records placed: each one's territories and periods (slots of the
/// placement), and the records that can count sorted by entity, cut into one part per
/// thread at entity boundaries.
struct Placed {
    entities: arrow::array::Int64Array,
    dep_slot: Vec<u32>,
    when_slot: Vec<u32>,
    order: Vec<u32>,
    cuts: Vec<usize>,
}

/// One column of the records, their batches concatenated.
fn concat_column(
    schema: &SchemaRef,
    records: &[RecordBatch],
    name: &str,
    to: &DataType,
) -> Result<arrow::array::ArrayRef> {
    let at = schema.index_of(name)?;
    let parts: Vec<&dyn Array> = records.iter().map(|b| b.column(at).as_ref()).collect();
    let whole = if parts.is_empty() {
        arrow::array::new_empty_array(schema.field(at).data_type())
    } else {
        arrow::compute::concat(&parts)?
    };
    Ok(cast(&whole, to)?)
}

/// Each record's slot of territories (by `departement`) and of periods (by `jour`, or
/// by `pas` and `periode`) in the placement; `NONE` where it has none.
fn record_slots(
    placement: &Placement,
    schema: &SchemaRef,
    records: &[RecordBatch],
    n: usize,
) -> Result<(Vec<u32>, Vec<u32>)> {
    let column = |name: &str, to: &DataType| concat_column(schema, records, name, to);
    let departements = column("departement", &DataType::Utf8)?;
    let departements = departements.as_string::<i32>();
    let mut dep_slot = vec![NONE; n];
    let mut known: HashMap<&str, u32> = HashMap::new();
    for (i, slot) in dep_slot.iter_mut().enumerate() {
        if departements.is_valid(i) {
            let d = departements.value(i);
            *slot = match known.get(d) {
                Some(&s) => s,
                None => {
                    let s = placement.departements.get(d).copied().unwrap_or(NONE);
                    known.insert(d, s);
                    s
                }
            };
        }
    }
    let mut when_slot = vec![NONE; n];
    if schema.index_of("jour").is_ok() {
        let jours = column("jour", &DataType::Date32)?;
        let jours = jours.as_primitive::<Date32Type>();
        for (i, slot) in when_slot.iter_mut().enumerate() {
            if jours.is_valid(i) {
                let d = i64::from(jours.value(i)) - i64::from(placement.day0);
                if d >= 0 && (d as usize) < placement.days.len() {
                    *slot = placement.days[d as usize];
                }
            }
        }
    } else {
        let (pas, periode) = (
            column("pas", &DataType::Utf8)?,
            column("periode", &DataType::Utf8)?,
        );
        let (pas, periode) = (pas.as_string::<i32>(), periode.as_string::<i32>());
        // Periods are few and records of one period often follow each other.
        let mut known: HashMap<(&str, &str), u32> = HashMap::new();
        let mut last: Option<((&str, &str), u32)> = None;
        for (i, slot) in when_slot.iter_mut().enumerate() {
            if pas.is_valid(i) && periode.is_valid(i) {
                let key = (pas.value(i), periode.value(i));
                *slot = match last {
                    Some((k, s)) if k == key => s,
                    _ => {
                        let s = *known.entry(key).or_insert_with(|| {
                            let owned = (key.0.to_owned(), key.1.to_owned());
                            placement.periods.get(&owned).copied().unwrap_or(NONE)
                        });
                        last = Some((key, s));
                        s
                    }
                };
            }
        }
    }
    Ok((dep_slot, when_slot))
}

impl Placed {
    fn new(
        placement: &Placement,
        schema: &SchemaRef,
        records: &[RecordBatch],
        threads: usize,
    ) -> Result<Self> {
        let entities = concat_column(schema, records, "entite", &DataType::Int64)?
            .as_primitive::<Int64Type>()
            .clone();
        let n = entities.len();
        let (dep_slot, when_slot) = record_slots(placement, schema, records, n)?;
        // Sorted as (entity, record) pairs side by side in memory, not as record numbers
        // compared through the entity column.
        let mut keyed: Vec<(i64, u32)> = (0..n)
            .filter(|&i| entities.is_valid(i) && dep_slot[i] != NONE && when_slot[i] != NONE)
            .map(|i| (entities.value(i), i as u32))
            .collect();
        keyed.sort_unstable();
        let order: Vec<u32> = keyed.into_iter().map(|(_, i)| i).collect();
        let parts = threads.max(1);
        let mut cuts = vec![0];
        for p in 1..parts {
            let mut at = (order.len() * p / parts).max(*cuts.last().unwrap_or(&0));
            while at > 0
                && at < order.len()
                && entities.value(order[at] as usize) == entities.value(order[at - 1] as usize)
            {
                at += 1;
            }
            cuts.push(at);
        }
        cuts.push(order.len());
        Ok(Placed {
            entities,
            dep_slot,
            when_slot,
            order,
            cuts,
        })
    }

    /// For each entity and each (territory, period) its records fall in, `merge` of
    /// their `state`s, given to `emit` with the key `tid << 32 | pid`; one accumulator
    /// per thread.
    fn fold<S, A>(
        &self,
        placement: &Placement,
        state: impl Fn(usize) -> S + Sync,
        merge: impl Fn(S, S) -> S + Sync,
        emit: impl Fn(&mut A, u64, S) + Sync,
    ) -> Vec<A>
    where
        S: Copy + Send,
        A: Default + Send,
    {
        let entities = &self.entities;
        let run_part = |part: &[u32]| -> A {
            let mut acc = A::default();
            let mut pairs: Vec<(u64, S)> = Vec::new();
            let mut start = 0;
            while start < part.len() {
                let entity = entities.value(part[start] as usize);
                let mut end = start + 1;
                while end < part.len() && entities.value(part[end] as usize) == entity {
                    end += 1;
                }
                pairs.clear();
                for &r in &part[start..end] {
                    let r = r as usize;
                    let s = state(r);
                    for &pid in placement.slot(self.when_slot[r]) {
                        for &tid in placement.slot(self.dep_slot[r]) {
                            pairs.push((u64::from(tid) << 32 | u64::from(pid), s));
                        }
                    }
                }
                // One record's (territory, period) pairs are all different.
                if end - start > 1 {
                    pairs.sort_unstable_by_key(|p| p.0);
                }
                let mut i = 0;
                while i < pairs.len() {
                    let (key, mut merged) = pairs[i];
                    let mut j = i + 1;
                    while j < pairs.len() && pairs[j].0 == key {
                        merged = merge(merged, pairs[j].1);
                        j += 1;
                    }
                    emit(&mut acc, key, merged);
                    i = j;
                }
                start = end;
            }
            acc
        };
        std::thread::scope(|s| {
            let handles: Vec<_> = self
                .cuts
                .windows(2)
                .map(|w| {
                    let part = &self.order[w[0]..w[1]];
                    let run_part = &run_part;
                    s.spawn(move || run_part(part))
                })
                .collect();
            handles
                .into_iter()
                .map(|h| match h.join() {
                    Ok(acc) => acc,
                    Err(panic) => std::panic::resume_unwind(panic),
                })
                .collect()
        })
    }
}

fn int_columns(names: &[&str], columns: Vec<Vec<i64>>) -> Result<RecordBatch> {
    let fields: Vec<Field> = names
        .iter()
        .map(|n| Field::new(*n, DataType::Int64, false))
        .collect();
    let arrays = columns
        .into_iter()
        .map(|c| Arc::new(Int64Array::from(c)) as arrow::array::ArrayRef)
        .collect();
    Ok(RecordBatch::try_new(Arc::new(Schema::new(fields)), arrays)?)
}

/// Packed-order records (`entite` numbered, `ordre`, `departement`, then `jour` or
/// `pas`/`periode`, and `garde` when `all`) → the firsts counted per (tid, pid,
/// modalities number), as the packed grid SQL's `ter_n` (see the module's doc): `n` the
/// entities counted, `e` all the entities whose first is there (`n` = `e` unless `all`).
pub fn count_firsts(
    placement: &Placement,
    schema: &SchemaRef,
    records: &[RecordBatch],
    all: bool,
    threads: usize,
) -> Result<RecordBatch> {
    let placed = Placed::new(placement, schema, records, threads)?;
    let ordre = concat_column(schema, records, "ordre", &DataType::Int64)?;
    let ordre = ordre.as_primitive::<Int64Type>();
    let garde = if all {
        Some(concat_column(schema, records, "garde", &DataType::Boolean)?)
    } else {
        None
    };
    let garde = garde.as_ref().map(|g| g.as_boolean());
    let low = (1_i64 << crate::compute::MODALITIES_BITS) - 1;
    // Per record: (its ordre, i64::MAX without one; whether it is `garde`).
    let parts = placed.fold(
        placement,
        |r| {
            let o = if ordre.is_valid(r) {
                ordre.value(r)
            } else {
                i64::MAX
            };
            (o, garde.is_none_or(|g| g.is_valid(r) && g.value(r)))
        },
        |a, b| (a.0.min(b.0), a.1 && b.1),
        |counts: &mut FastMap<(u64, i64), (i64, i64)>, key, (first, kept)| {
            if first != i64::MAX {
                let c = counts.entry((key, first & low)).or_insert((0, 0));
                c.0 += i64::from(kept);
                c.1 += 1;
            }
        },
    );
    let mut parts = parts.into_iter();
    let mut total = parts.next().unwrap_or_default();
    for part in parts {
        for (k, (n, e)) in part {
            let c = total.entry(k).or_insert((0, 0));
            c.0 += n;
            c.1 += e;
        }
    }
    let mut columns: Vec<Vec<i64>> = (0..5).map(|_| Vec::with_capacity(total.len())).collect();
    for ((key, m), (n, e)) in total {
        columns[0].push((key >> 32) as i64);
        columns[1].push((key & 0xffff_ffff) as i64);
        columns[2].push(m);
        columns[3].push(n);
        columns[4].push(e);
    }
    int_columns(&["tid", "pid", "modalites", "n", "e"], columns)
}

/// A distinct ratio's records (`entite` numbered, `au_den`, `au_num`, `departement`,
/// then `jour` or `pas`/`periode`) → per (tid, pid), `a` the entities with both a
/// record `au_den` and one `au_num` there, `b` those with one `au_den` (a null flag is
/// not set), for every (tid, pid) with an entity: the grid SQL's `ent` then `agg`.
pub fn count_distinct_ratio(
    placement: &Placement,
    schema: &SchemaRef,
    records: &[RecordBatch],
    threads: usize,
) -> Result<RecordBatch> {
    let placed = Placed::new(placement, schema, records, threads)?;
    let flag = |name: &str| -> Result<arrow::array::BooleanArray> {
        Ok(concat_column(schema, records, name, &DataType::Boolean)?
            .as_boolean()
            .clone())
    };
    let (den, num) = (flag("au_den")?, flag("au_num")?);
    let set = |f: &arrow::array::BooleanArray, r: usize| f.is_valid(r) && f.value(r);
    let parts = placed.fold(
        placement,
        |r| (set(&den, r), set(&num, r)),
        |a, b| (a.0 || b.0, a.1 || b.1),
        |counts: &mut FastMap<u64, (i64, i64)>, key, (d, n)| {
            let c = counts.entry(key).or_insert((0, 0));
            c.0 += i64::from(d && n);
            c.1 += i64::from(d);
        },
    );
    let mut parts = parts.into_iter();
    let mut total = parts.next().unwrap_or_default();
    for part in parts {
        for (k, (a, b)) in part {
            let c = total.entry(k).or_insert((0, 0));
            c.0 += a;
            c.1 += b;
        }
    }
    let mut columns: Vec<Vec<i64>> = (0..4).map(|_| Vec::with_capacity(total.len())).collect();
    for (key, (a, b)) in total {
        columns[0].push((key >> 32) as i64);
        columns[1].push((key & 0xffff_ffff) as i64);
        columns[2].push(a);
        columns[3].push(b);
    }
    int_columns(&["tid", "pid", "a", "b"], columns)
}

/// The record indices with a value, in increasing order of value: by counting when the
/// values span a small range (durations in days), by a sort otherwise.
fn by_value(values: &arrow::array::Int64Array, keep: impl Fn(usize) -> bool) -> Vec<u32> {
    let kept: Vec<u32> = (0..values.len() as u32)
        .filter(|&i| values.is_valid(i as usize) && keep(i as usize))
        .collect();
    let (lo, hi) = kept.iter().fold((i64::MAX, i64::MIN), |(lo, hi), &i| {
        let v = values.value(i as usize);
        (lo.min(v), hi.max(v))
    });
    if kept.is_empty() {
        return kept;
    }
    let span = hi.abs_diff(lo);
    if span >= 4 * kept.len() as u64 + 1024 {
        let mut kept = kept;
        kept.sort_unstable_by_key(|&i| values.value(i as usize));
        return kept;
    }
    let bucket = |i: u32| (values.value(i as usize) - lo) as usize;
    let mut start = vec![0_usize; span as usize + 2];
    for &i in &kept {
        start[bucket(i) + 1] += 1;
    }
    for b in 1..start.len() {
        start[b] += start[b - 1];
    }
    let mut out = vec![0_u32; kept.len()];
    for &i in &kept {
        let b = bucket(i);
        out[start[b]] = i;
        start[b] += 1;
    }
    out
}

/// A quantile indicator's records (`v`, `departement`, then `jour` or `pas`/`periode`,
/// and the dimension columns of `dimensions`) → per (tid, pid), for the total
/// (`dimension` and `modalite` empty) and each dimension's modalities (a null value
/// being `NON_RENSEIGNE`): `n` the values and `q50`, `q75`, `q90` the values at
/// positions ⌈q·n⌉ of their increasing order ([`crate::quantiles::ranks`]) — the grid
/// SQL's `q` (`quantiles_rang` per grouping set over the records with a value).
///
/// Two passes and no list of values per cell: the first counts each cell's values, the
/// second walks the records once in increasing order of value, and the k-th record a
/// cell meets is its k-th smallest value.
pub fn count_quantiles(
    placement: &Placement,
    schema: &SchemaRef,
    records: &[RecordBatch],
    dimensions: &[&str],
) -> Result<RecordBatch> {
    count_quantiles_with(placement, schema, records, dimensions, 1 << 22)
}

/// [`count_quantiles`], the groups' counters in arrays indexed by (territory, period,
/// grouping set) when there are at most `dense_limit` of them, numbered as met otherwise.
fn count_quantiles_with(
    placement: &Placement,
    schema: &SchemaRef,
    records: &[RecordBatch],
    dimensions: &[&str],
    dense_limit: u64,
) -> Result<RecordBatch> {
    let values = concat_column(schema, records, "v", &DataType::Int64)?;
    let values = values.as_primitive::<Int64Type>();
    let n = values.len();
    let (dep_slot, when_slot) = record_slots(placement, schema, records, n)?;
    // Grouping sets: 0 is the total, then each dimension's modalities (code 0: null).
    let mut labels: Vec<(&str, String)> = vec![("", String::new())];
    let mut codes: Vec<(usize, Vec<u32>)> = Vec::with_capacity(dimensions.len());
    for d in dimensions {
        let text = concat_column(schema, records, d, &DataType::Utf8)?;
        let text = text.as_string::<i32>();
        let mut seen: HashMap<&str, u32> = HashMap::new();
        let mut names = vec!["NON_RENSEIGNE".to_owned()];
        let numbered: Vec<u32> = (0..n)
            .map(|i| {
                if text.is_null(i) {
                    return 0;
                }
                let next = seen.len() as u32 + 1;
                *seen.entry(text.value(i)).or_insert_with(|| {
                    names.push(text.value(i).to_owned());
                    next
                })
            })
            .collect();
        codes.push((labels.len(), numbered));
        labels.extend(names.into_iter().map(|m| (*d, m)));
    }
    let sets = labels.len() as u64;
    let (tids, pids) = placement.extent();
    let cells = u64::from(tids) * u64::from(pids) * sets;
    // A group's index: dense when the groups are few enough, else numbered as met.
    let dense = cells <= dense_limit;
    let mut sparse: FastMap<u64, u32> = FastMap::default();
    let for_groups = |r: usize, f: &mut dyn FnMut(u64)| {
        for &pid in placement.slot(when_slot[r]) {
            for &tid in placement.slot(dep_slot[r]) {
                let base = (u64::from(tid) * u64::from(pids) + u64::from(pid)) * sets;
                f(base);
                for (offset, numbered) in &codes {
                    f(base + *offset as u64 + u64::from(numbered[r]));
                }
            }
        }
    };
    let order = by_value(values, |r| dep_slot[r] != NONE && when_slot[r] != NONE);
    // Pass 1: each group's number of values.
    let mut count: Vec<u32> = if dense {
        vec![0; cells as usize]
    } else {
        Vec::new()
    };
    let mut keys: Vec<u64> = Vec::new();
    for &r in &order {
        for_groups(r as usize, &mut |g| {
            let at = if dense {
                g as usize
            } else {
                let next = sparse.len() as u32;
                let at = *sparse.entry(g).or_insert_with(|| {
                    keys.push(g);
                    count.push(0);
                    next
                });
                at as usize
            };
            count[at] += 1;
        });
    }
    // Pass 2: in increasing order of value, the k-th value a group meets.
    let mut met = vec![0_u32; count.len()];
    let mut quantiles = vec![[0_i64; 3]; count.len()];
    for &r in &order {
        let v = values.value(r as usize);
        for_groups(r as usize, &mut |g| {
            let at = if dense {
                g as usize
            } else {
                sparse[&g] as usize
            };
            met[at] += 1;
            let k = met[at] as usize;
            for (q, rank) in quantiles[at]
                .iter_mut()
                .zip(crate::quantiles::ranks(count[at] as usize))
            {
                if k == rank {
                    *q = v;
                }
            }
        });
    }
    let groups: Vec<(u64, usize)> = if dense {
        (0..count.len())
            .filter(|&g| count[g] > 0)
            .map(|g| (g as u64, g))
            .collect()
    } else {
        keys.iter().enumerate().map(|(at, &g)| (g, at)).collect()
    };
    let (mut tid, mut pid, mut dimension, mut modalite) = (
        Vec::with_capacity(groups.len()),
        Vec::with_capacity(groups.len()),
        Vec::with_capacity(groups.len()),
        Vec::with_capacity(groups.len()),
    );
    let mut numbers: Vec<Vec<i64>> = (0..4).map(|_| Vec::with_capacity(groups.len())).collect();
    for (g, at) in groups {
        let (cell, set) = (g / sets, (g % sets) as usize);
        tid.push((cell / u64::from(pids)) as i64);
        pid.push((cell % u64::from(pids)) as i64);
        dimension.push(labels[set].0);
        modalite.push(labels[set].1.as_str());
        numbers[0].push(i64::from(count[at]));
        for (q, column) in quantiles[at].iter().zip(&mut numbers[1..]) {
            column.push(*q);
        }
    }
    let mut fields = vec![
        Field::new("tid", DataType::Int64, false),
        Field::new("pid", DataType::Int64, false),
        Field::new("dimension", DataType::Utf8, false),
        Field::new("modalite", DataType::Utf8, false),
    ];
    let mut columns: Vec<arrow::array::ArrayRef> = vec![
        Arc::new(Int64Array::from(tid)),
        Arc::new(Int64Array::from(pid)),
        Arc::new(arrow::array::StringArray::from(dimension)),
        Arc::new(arrow::array::StringArray::from(modalite)),
    ];
    for (name, column) in ["n", "q50", "q75", "q90"].into_iter().zip(numbers) {
        fields.push(Field::new(name, DataType::Int64, false));
        columns.push(Arc::new(Int64Array::from(column)));
    }
    Ok(RecordBatch::try_new(
        Arc::new(Schema::new(fields)),
        columns,
    )?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{BooleanArray, Date32Array, StringArray};

    fn table(ctx: &SessionContext, name: &str, columns: Vec<(&str, arrow::array::ArrayRef)>) {
        let batch = RecordBatch::try_from_iter(columns).unwrap();
        let mem =
            datafusion::datasource::MemTable::try_new(batch.schema(), vec![vec![batch]]).unwrap();
        ctx.register_table(name, Arc::new(mem)).unwrap();
    }

    /// The counts worked by hand. Days 1 and 2 are observed: day 1 in periods 0 (its
    /// day) and 2 (the month), day 2 in 1 and 2; day 3 is not. Département 75 is in
    /// territories 0 and 2 (FR), 93 in 1 and 2; 99 is unknown. `ordre` = rank × 2²⁴ +
    /// modalities number.
    /// - entity 1: day 1 in 75 (rank 0, modalities 5, garde), day 2 in 93 (rank 1,
    ///   modalities 6, not garde). Its first is the day-1 record wherever both meet
    ///   (FR × month); alone elsewhere.
    /// - entity 2: day 2 in 75 (rank 2, modalities 5, garde), day 1 in 75 without
    ///   `ordre` (garde): on day 1 it has no first, so it is not counted there.
    /// - a record without entity, entity 3's records in 99 and on day 3: ignored.
    ///
    /// Distinct, per (tid, pid, modalities): entity 1 gives (0,0,5) (2,0,5) (0,2,5)
    /// (2,2,5) (1,1,6) (2,1,6) (1,2,6); entity 2 gives (0,1,5) (2,1,5) (0,2,5) (2,2,5).
    /// DistinctAll: entity 1 counts 0 wherever its day-2 record is (2,2), (1,1), (2,1),
    /// (1,2) — those rows stay, with 0 —, entity 2 counts 1 everywhere it has a first.
    /// The entities whose first is in a row are the distinct count's, either way.
    const D1: i32 = 20_000;
    const D2: i32 = 20_001;

    /// Days D1 (periods 0 and 2) and D2 (1 and 2); département 75 in territories 0
    /// and 2, 93 in 1 and 2.
    async fn placement() -> Placement {
        let ctx = SessionContext::new();
        let (d1, d2) = (D1, D2);
        table(
            &ctx,
            "cal",
            vec![
                ("jour", Arc::new(Date32Array::from(vec![d1, d1, d2, d2]))),
                ("pid", Arc::new(Int64Array::from(vec![0, 2, 1, 2]))),
            ],
        );
        table(
            &ctx,
            "per",
            vec![
                (
                    "pas",
                    Arc::new(StringArray::from(vec!["JOUR", "JOUR", "MOIS"])),
                ),
                (
                    "periode",
                    Arc::new(StringArray::from(vec!["d1", "d2", "m"])),
                ),
                ("pid", Arc::new(Int64Array::from(vec![0, 1, 2]))),
            ],
        );
        table(
            &ctx,
            "territoires",
            vec![
                (
                    "departement",
                    Arc::new(StringArray::from(vec!["75", "75", "93", "93"])),
                ),
                ("tid", Arc::new(Int64Array::from(vec![0, 2, 1, 2]))),
            ],
        );
        Placement::read(&ctx, "cal", "per").await.unwrap()
    }

    #[tokio::test]
    async fn firsts_are_counted_per_territory_period_and_modalities() {
        let placement = placement().await;
        let (d1, d2) = (D1, D2);
        let o = |rank: i64, m: i64| Some((rank << 24) + m);
        let records = RecordBatch::try_from_iter(vec![
            (
                "entite",
                Arc::new(Int64Array::from(vec![
                    Some(1),
                    Some(1),
                    Some(2),
                    Some(2),
                    None,
                    Some(3),
                    Some(3),
                ])) as arrow::array::ArrayRef,
            ),
            (
                "ordre",
                Arc::new(Int64Array::from(vec![
                    o(0, 5),
                    o(1, 6),
                    o(2, 5),
                    None,
                    o(3, 5),
                    o(4, 7),
                    o(5, 7),
                ])),
            ),
            (
                "departement",
                Arc::new(StringArray::from(vec![
                    "75", "93", "75", "75", "75", "99", "75",
                ])),
            ),
            (
                "jour",
                Arc::new(Date32Array::from(vec![d1, d2, d2, d1, d1, d1, d1 + 2])),
            ),
            (
                "garde",
                Arc::new(BooleanArray::from(vec![
                    Some(true),
                    Some(false),
                    Some(true),
                    Some(true),
                    Some(true),
                    Some(true),
                    Some(true),
                ])),
            ),
        ])
        .unwrap();
        let counted = |all: bool, threads: usize| {
            // The records split over two batches, as listed.
            let parts = [records.slice(0, 3), records.slice(3, 4)];
            let batch = count_firsts(&placement, &records.schema(), &parts, all, threads).unwrap();
            let column = |i: usize| batch.column(i).as_primitive::<Int64Type>().clone();
            let (t, p, m, n, e) = (column(0), column(1), column(2), column(3), column(4));
            let mut rows: Vec<(i64, i64, i64, i64, i64)> = (0..batch.num_rows())
                .map(|i| (t.value(i), p.value(i), m.value(i), n.value(i), e.value(i)))
                .collect();
            rows.sort_unstable();
            rows
        };
        // (tid, pid, modalities, counted, entities whose first is there).
        let distinct = vec![
            (0, 0, 5, 1, 1),
            (0, 1, 5, 1, 1),
            (0, 2, 5, 2, 2),
            (1, 1, 6, 1, 1),
            (1, 2, 6, 1, 1),
            (2, 0, 5, 1, 1),
            (2, 1, 5, 1, 1),
            (2, 1, 6, 1, 1),
            (2, 2, 5, 2, 2),
        ];
        let all = vec![
            (0, 0, 5, 1, 1),
            (0, 1, 5, 1, 1),
            (0, 2, 5, 2, 2),
            (1, 1, 6, 0, 1),
            (1, 2, 6, 0, 1),
            (2, 0, 5, 1, 1),
            (2, 1, 5, 1, 1),
            (2, 1, 6, 0, 1),
            (2, 2, 5, 1, 2),
        ];
        for threads in [1, 2, 3] {
            assert_eq!(counted(false, threads), distinct, "{threads} fils");
            assert_eq!(counted(true, threads), all, "{threads} fils");
        }
    }

    /// U10's counts worked by hand, same placement. Entity 1: day 1 in 75 `au_den`
    /// only, day 2 in 93 `au_num` only — both only where the two meet (FR × month);
    /// entity 2: day 1 in 75, both flags; entity 3: day 2 in 75 `au_num` only; entity
    /// 4: day 1 in 75, `au_den` null (not set) and `au_num`. Every (tid, pid) with an
    /// entity has its row, (a, b) = (0, 0) included.
    #[tokio::test]
    async fn distinct_ratio_counts_entities_with_both_flags() {
        let placement = placement().await;
        let records = RecordBatch::try_from_iter(vec![
            (
                "entite",
                Arc::new(Int64Array::from(vec![1, 1, 2, 3, 4])) as arrow::array::ArrayRef,
            ),
            (
                "departement",
                Arc::new(StringArray::from(vec!["75", "93", "75", "75", "75"])),
            ),
            (
                "jour",
                Arc::new(Date32Array::from(vec![D1, D2, D1, D2, D1])),
            ),
            (
                "au_den",
                Arc::new(BooleanArray::from(vec![
                    Some(true),
                    Some(false),
                    Some(true),
                    Some(false),
                    None,
                ])),
            ),
            (
                "au_num",
                Arc::new(BooleanArray::from(vec![false, true, true, true, true])),
            ),
        ])
        .unwrap();
        for threads in [1, 2] {
            let batch = count_distinct_ratio(
                &placement,
                &records.schema(),
                std::slice::from_ref(&records),
                threads,
            )
            .unwrap();
            let column = |i: usize| batch.column(i).as_primitive::<Int64Type>().clone();
            let (t, p, a, b) = (column(0), column(1), column(2), column(3));
            let mut rows: Vec<(i64, i64, i64, i64)> = (0..batch.num_rows())
                .map(|i| (t.value(i), p.value(i), a.value(i), b.value(i)))
                .collect();
            rows.sort_unstable();
            assert_eq!(
                rows,
                vec![
                    (0, 0, 1, 2),
                    (0, 1, 0, 0),
                    (0, 2, 1, 2),
                    (1, 1, 0, 0),
                    (1, 2, 0, 0),
                    (2, 0, 1, 2),
                    (2, 1, 0, 0),
                    (2, 2, 2, 2),
                ],
                "{threads} fils"
            );
        }
    }

    /// Quantiles worked by hand, same placement, dimension `type`. Values 5 (A) and 1
    /// (B) on day 1 in 75, 3 (A) on day 2 in 93, 2 (no type) on day 2 in 75; a record
    /// without value, one in 99 and one on day 3 are ignored. P50, P75, P90 are the
    /// values at positions ⌈n/2⌉, ⌈3n/4⌉, ⌈9n/10⌉: for FR × month (2, 2), the values
    /// 1, 2, 3, 5 give positions 2, 3, 4 → 2, 3, 5; type A there, 3 and 5 → 3, 5, 5.
    #[tokio::test]
    async fn quantiles_are_ranked_per_cell_and_modality() {
        let placement = placement().await;
        let records = RecordBatch::try_from_iter(vec![
            (
                "v",
                Arc::new(Int64Array::from(vec![
                    Some(5),
                    Some(1),
                    Some(3),
                    None,
                    Some(7),
                    Some(2),
                    Some(9),
                ])) as arrow::array::ArrayRef,
            ),
            (
                "departement",
                Arc::new(StringArray::from(vec![
                    "75", "75", "93", "75", "99", "75", "75",
                ])),
            ),
            (
                "jour",
                Arc::new(Date32Array::from(vec![D1, D1, D2, D1, D1, D2, D1 + 2])),
            ),
            (
                "type",
                Arc::new(StringArray::from(vec![
                    Some("A"),
                    Some("B"),
                    Some("A"),
                    Some("A"),
                    Some("A"),
                    None,
                    Some("A"),
                ])),
            ),
        ])
        .unwrap();
        let nr = "NON_RENSEIGNE";
        let mut expected: Vec<(i64, i64, &str, &str, [i64; 4])> = Vec::new();
        for tid in [0, 2] {
            expected.push((tid, 0, "", "", [2, 1, 5, 5]));
            expected.push((tid, 0, "type", "A", [1, 5, 5, 5]));
            expected.push((tid, 0, "type", "B", [1, 1, 1, 1]));
        }
        expected.extend([
            (0, 2, "", "", [3, 2, 5, 5]),
            (0, 2, "type", "A", [1, 5, 5, 5]),
            (0, 2, "type", "B", [1, 1, 1, 1]),
            (0, 2, "type", nr, [1, 2, 2, 2]),
            (2, 2, "", "", [4, 2, 3, 5]),
            (2, 2, "type", "A", [2, 3, 5, 5]),
            (2, 2, "type", "B", [1, 1, 1, 1]),
            (2, 2, "type", nr, [1, 2, 2, 2]),
            (1, 1, "", "", [1, 3, 3, 3]),
            (1, 1, "type", "A", [1, 3, 3, 3]),
            (2, 1, "", "", [2, 2, 3, 3]),
            (2, 1, "type", "A", [1, 3, 3, 3]),
            (2, 1, "type", nr, [1, 2, 2, 2]),
            (1, 2, "", "", [1, 3, 3, 3]),
            (1, 2, "type", "A", [1, 3, 3, 3]),
            (0, 1, "", "", [1, 2, 2, 2]),
            (0, 1, "type", nr, [1, 2, 2, 2]),
        ]);
        expected.sort_unstable();
        // Dense counters, and counters numbered as met.
        for limit in [1 << 22, 0] {
            let parts = [records.slice(0, 4), records.slice(4, 3)];
            let batch =
                count_quantiles_with(&placement, &records.schema(), &parts, &["type"], limit)
                    .unwrap();
            let int = |i: usize| batch.column(i).as_primitive::<Int64Type>().clone();
            let text = |i: usize| batch.column(i).as_string::<i32>().clone();
            let (t, p, d, m) = (int(0), int(1), text(2), text(3));
            let numbers: Vec<Int64Array> = (4..8).map(int).collect();
            let mut rows: Vec<(i64, i64, &str, &str, [i64; 4])> = (0..batch.num_rows())
                .map(|i| {
                    (
                        t.value(i),
                        p.value(i),
                        d.value(i),
                        m.value(i),
                        [0, 1, 2, 3].map(|c| numbers[c].value(i)),
                    )
                })
                .collect();
            rows.sort_unstable();
            assert_eq!(rows, expected, "limite {limit}");
        }
    }
}
