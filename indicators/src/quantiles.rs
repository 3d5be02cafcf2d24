//! `quantiles_rang(v)`: the quantiles of durations as INDICATORS.md defines them, in one
//! aggregate.
//!
//! For a cell's `n` values in increasing order, the quantile q is the value at position
//! ⌈q·n⌉ (from 1): `P50` at ⌈n/2⌉, `P75` at ⌈3n/4⌉, `P90` at ⌈9n/10⌉ — a value that
//! exists, never an interpolation (DataFusion's `median` averages the two middle values).
//! The aggregate returns the three as a struct `{q50, q75, q90}` (null for a cell without
//! values). DuckDB's `quantile_disc` follows the same rule; the compute benchmark's peer
//! uses it.
//!
//! It replaces `array_sort(array_agg(v))` followed by indexing: DataFusion built and sorted
//! one list array per cell with its generic sort kernel, where this keeps each cell's
//! values in a `Vec<i64>` and selects the three positions without sorting them.

use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, Int64Array, Int64Builder, ListArray, StructArray,
};
use arrow::buffer::{OffsetBuffer, ScalarBuffer};
use arrow::datatypes::{DataType, Field, FieldRef, Fields, Int64Type};
use datafusion::common::{Result, ScalarValue};
use datafusion::logical_expr::function::{AccumulatorArgs, StateFieldsArgs};
use datafusion::logical_expr::utils::format_state_name;
use datafusion::logical_expr::{
    Accumulator, AggregateUDF, AggregateUDFImpl, EmitTo, GroupsAccumulator, Signature, Volatility,
};

/// The function's name in SQL.
pub const NAME: &str = "quantiles_rang";

/// The aggregate, to register in a session.
pub fn udaf() -> AggregateUDF {
    AggregateUDF::from(QuantilesRang {
        signature: Signature::exact(vec![DataType::Int64], Volatility::Immutable),
    })
}

/// The positions (from 1) of P50, P75 and P90 among `n` sorted values: ⌈q·n⌉.
pub fn ranks(n: usize) -> [usize; 3] {
    [n.div_ceil(2), (3 * n).div_ceil(4), (9 * n).div_ceil(10)]
}

/// The values at the three positions of [`ranks`] among `values` (not empty), found by
/// selection rather than a full sort: each selection leaves the smaller values before the
/// position and the larger after it, so the next (higher) position is selected among the
/// values after it only.
fn ranked(values: &mut [i64]) -> [i64; 3] {
    let mut out = [0; 3];
    let mut from = 0;
    for (o, rank) in out.iter_mut().zip(ranks(values.len())) {
        let i = rank - 1;
        if i >= from {
            values[from..].select_nth_unstable(i - from);
            from = i + 1;
        }
        *o = values[i];
    }
    out
}

fn fields() -> Fields {
    Fields::from(vec![
        Field::new("q50", DataType::Int64, true),
        Field::new("q75", DataType::Int64, true),
        Field::new("q90", DataType::Int64, true),
    ])
}

/// The struct of each group's quantiles (null where a group has no value).
fn quantiles_array(groups: Vec<Vec<i64>>) -> ArrayRef {
    let mut q = [
        Int64Builder::with_capacity(groups.len()),
        Int64Builder::with_capacity(groups.len()),
        Int64Builder::with_capacity(groups.len()),
    ];
    let mut valid = Vec::with_capacity(groups.len());
    for mut values in groups {
        if values.is_empty() {
            q.iter_mut().for_each(|b| b.append_null());
            valid.push(false);
            continue;
        }
        for (builder, value) in q.iter_mut().zip(ranked(&mut values)) {
            builder.append_value(value);
        }
        valid.push(true);
    }
    let columns: Vec<ArrayRef> = q
        .iter_mut()
        .map(|b| Arc::new(b.finish()) as ArrayRef)
        .collect();
    Arc::new(StructArray::new(fields(), columns, Some(valid.into())))
}

/// The groups' values as a list array (the partial aggregate's state).
fn list_of(groups: Vec<Vec<i64>>) -> ArrayRef {
    let offsets = OffsetBuffer::from_lengths(groups.iter().map(Vec::len));
    let values: Vec<i64> = groups.into_iter().flatten().collect();
    Arc::new(ListArray::new(
        Arc::new(Field::new_list_field(DataType::Int64, true)),
        offsets,
        Arc::new(Int64Array::new(ScalarBuffer::from(values), None)),
        None,
    ))
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct QuantilesRang {
    signature: Signature,
}

impl AggregateUDFImpl for QuantilesRang {
    fn name(&self) -> &str {
        NAME
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::Struct(fields()))
    }

    fn state_fields(&self, args: StateFieldsArgs) -> Result<Vec<FieldRef>> {
        Ok(vec![Arc::new(Field::new(
            format_state_name(args.name, "valeurs"),
            DataType::List(Arc::new(Field::new_list_field(DataType::Int64, true))),
            true,
        ))])
    }

    fn accumulator(&self, _args: AccumulatorArgs) -> Result<Box<dyn Accumulator>> {
        Ok(Box::new(One::default()))
    }

    fn groups_accumulator_supported(&self, _args: AccumulatorArgs) -> bool {
        true
    }

    fn create_groups_accumulator(
        &self,
        _args: AccumulatorArgs,
    ) -> Result<Box<dyn GroupsAccumulator>> {
        Ok(Box::new(Groups::default()))
    }
}

/// Whether row `i` is taken: not null and, with a filter, selected by it.
fn taken(values: &Int64Array, filter: Option<&BooleanArray>, i: usize) -> bool {
    values.is_valid(i) && filter.is_none_or(|f| f.is_valid(i) && f.value(i))
}

/// One group's values (the accumulator DataFusion uses without grouping).
#[derive(Debug, Default)]
struct One {
    values: Vec<i64>,
}

impl Accumulator for One {
    fn update_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        let v = values[0].as_primitive::<Int64Type>();
        self.values
            .extend((0..v.len()).filter(|&i| v.is_valid(i)).map(|i| v.value(i)));
        Ok(())
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> Result<()> {
        for list in states[0].as_list::<i32>().iter().flatten() {
            let v = list.as_primitive::<Int64Type>();
            self.values
                .extend((0..v.len()).filter(|&i| v.is_valid(i)).map(|i| v.value(i)));
        }
        Ok(())
    }

    fn state(&mut self) -> Result<Vec<ScalarValue>> {
        let list = list_of(vec![std::mem::take(&mut self.values)]);
        Ok(vec![ScalarValue::try_from_array(&list, 0)?])
    }

    fn evaluate(&mut self) -> Result<ScalarValue> {
        let array = quantiles_array(vec![self.values.clone()]);
        ScalarValue::try_from_array(&array, 0)
    }

    fn size(&self) -> usize {
        std::mem::size_of_val(self) + self.values.capacity() * 8
    }
}

/// Every group's values, by group index.
#[derive(Debug, Default)]
struct Groups {
    values: Vec<Vec<i64>>,
}

impl GroupsAccumulator for Groups {
    fn update_batch(
        &mut self,
        values: &[ArrayRef],
        group_indices: &[usize],
        opt_filter: Option<&BooleanArray>,
        total_num_groups: usize,
    ) -> Result<()> {
        let v = values[0].as_primitive::<Int64Type>();
        self.values.resize_with(total_num_groups, Vec::new);
        if v.null_count() == 0 && opt_filter.is_none() {
            for (&g, &x) in group_indices.iter().zip(v.values().iter()) {
                self.values[g].push(x);
            }
        } else {
            for (i, &g) in group_indices.iter().enumerate() {
                if taken(v, opt_filter, i) {
                    self.values[g].push(v.value(i));
                }
            }
        }
        Ok(())
    }

    fn merge_batch(
        &mut self,
        values: &[ArrayRef],
        group_indices: &[usize],
        total_num_groups: usize,
    ) -> Result<()> {
        self.values.resize_with(total_num_groups, Vec::new);
        let lists = values[0].as_list::<i32>();
        let inner = lists.values().as_primitive::<Int64Type>();
        let offsets = lists.value_offsets();
        for (i, &g) in group_indices.iter().enumerate() {
            if lists.is_null(i) {
                continue;
            }
            let (start, end) = (offsets[i] as usize, offsets[i + 1] as usize);
            let group = &mut self.values[g];
            group.extend(
                (start..end)
                    .filter(|&j| inner.is_valid(j))
                    .map(|j| inner.value(j)),
            );
        }
        Ok(())
    }

    fn evaluate(&mut self, emit_to: EmitTo) -> Result<ArrayRef> {
        Ok(quantiles_array(emit_to.take_needed(&mut self.values)))
    }

    fn state(&mut self, emit_to: EmitTo) -> Result<Vec<ArrayRef>> {
        Ok(vec![list_of(emit_to.take_needed(&mut self.values))])
    }

    /// Each row as its own group: a list of its value, null where the row is not taken.
    fn convert_to_state(
        &self,
        values: &[ArrayRef],
        opt_filter: Option<&BooleanArray>,
    ) -> Result<Vec<ArrayRef>> {
        let v = values[0].as_primitive::<Int64Type>();
        let valid: Vec<bool> = (0..v.len()).map(|i| taken(v, opt_filter, i)).collect();
        Ok(vec![Arc::new(ListArray::new(
            Arc::new(Field::new_list_field(DataType::Int64, true)),
            OffsetBuffer::from_lengths(std::iter::repeat_n(1, v.len())),
            Arc::new(Int64Array::new(v.values().clone(), None)),
            Some(valid.into()),
        ))])
    }

    fn size(&self) -> usize {
        self.values.capacity() * std::mem::size_of::<Vec<i64>>()
            + self.values.iter().map(|v| v.capacity() * 8).sum::<usize>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::RecordBatch;
    use arrow::datatypes::Schema;
    use datafusion::datasource::MemTable;
    use datafusion::prelude::SessionContext;

    #[test]
    fn ranks_are_those_of_the_definition() {
        // n = 1: the only value for every quantile.
        assert_eq!(ranks(1), [1, 1, 1]);
        // n = 4: ranks 2, 3 and 4 (the lower median, not an interpolation).
        assert_eq!(ranks(4), [2, 3, 4]);
        // n = 10: ranks 5, 8 and 9.
        assert_eq!(ranks(10), [5, 8, 9]);
    }

    /// Selection gives what indexing the sorted values gives, for every size up to 300
    /// and values with many repeats (a fixed pseudo-random sequence).
    #[test]
    fn selection_agrees_with_the_sorted_values() {
        let mut state: u64 = 0x2545_f491_4f6c_dd1d;
        for n in 1..=300usize {
            let mut values: Vec<i64> = (0..n)
                .map(|_| {
                    state = state
                        .wrapping_mul(6_364_136_223_846_793_005)
                        .wrapping_add(1_442_695_040_888_963_407);
                    ((state >> 33) % 50) as i64 - 10
                })
                .collect();
            let mut sorted = values.clone();
            sorted.sort_unstable();
            let expected = ranks(n).map(|r| sorted[r - 1]);
            assert_eq!(ranked(&mut values), expected, "n = {n}");
        }
    }

    /// Two groups spread over two partitions of two batches each, so that DataFusion
    /// aggregates partially and merges the states; one null value, left out.
    #[tokio::test]
    async fn groups_merged_across_partitions_give_the_ranked_values() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("g", DataType::Utf8, false),
            Field::new("v", DataType::Int64, true),
        ]));
        let batch = |g: Vec<&str>, v: Vec<Option<i64>>| {
            RecordBatch::try_new(
                schema.clone(),
                vec![
                    Arc::new(arrow::array::StringArray::from(g)) as ArrayRef,
                    Arc::new(Int64Array::from(v)) as ArrayRef,
                ],
            )
            .unwrap()
        };
        // Group a: 10, 9, …, 1 (n = 10: P50 = 5th = 5, P75 = 8th = 8, P90 = 9th = 9).
        // Group b: 40, 10, 30, 20 and a null (n = 4: 20, 30, 40).
        let partitions = vec![
            vec![
                batch(vec!["a", "a", "b"], vec![Some(10), Some(9), Some(40)]),
                batch(vec!["a", "b", "a"], vec![Some(8), None, Some(7)]),
            ],
            vec![
                batch(vec!["a", "a", "b"], vec![Some(6), Some(5), Some(10)]),
                batch(
                    vec!["a", "a", "a", "b", "b"],
                    vec![Some(4), Some(3), Some(2), Some(30), Some(20)],
                ),
                batch(vec!["a"], vec![Some(1)]),
            ],
        ];
        let ctx = SessionContext::new();
        ctx.register_udaf(udaf());
        ctx.register_table(
            "t",
            Arc::new(MemTable::try_new(schema.clone(), partitions).unwrap()),
        )
        .unwrap();
        let batches = ctx
            .sql(
                "SELECT g, q['q50'] AS q50, q['q75'] AS q75, q['q90'] AS q90
                 FROM (SELECT g, quantiles_rang(v) AS q FROM t GROUP BY g) ORDER BY g",
            )
            .await
            .unwrap()
            .collect()
            .await
            .unwrap();
        let rows = arrow::util::pretty::pretty_format_batches(&batches)
            .unwrap()
            .to_string();
        let expected = "\
+---+-----+-----+-----+
| g | q50 | q75 | q90 |
+---+-----+-----+-----+
| a | 5   | 8   | 9   |
| b | 20  | 30  | 40  |
+---+-----+-----+-----+";
        assert_eq!(rows, expected);
    }
}
