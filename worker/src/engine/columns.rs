//! Reading the columns of a query's result back into plain values, whatever Arrow type the
//! engine chose for them.

use arrow_array::cast::AsArray;
use arrow_array::types::{Int64Type, UInt64Type};
use arrow_array::{Array, ArrayRef, RecordBatch};
use arrow_schema::{DataType, TimeUnit};

/// Values of column `name` as u64 (nulls as 0), whatever integer type the query produced.
pub fn u64s(batches: &[RecordBatch], name: &str) -> Vec<u64> {
    cast_column(batches, name, &DataType::UInt64)
        .iter()
        .flat_map(|a| {
            a.as_primitive::<UInt64Type>()
                .iter()
                .map(|v| v.unwrap_or(0))
        })
        .collect()
}

/// Values of column `name` as i64, nulls kept (timestamps come back as ns since the epoch).
pub fn i64s(batches: &[RecordBatch], name: &str) -> Vec<Option<i64>> {
    cast_column(batches, name, &DataType::Int64)
        .iter()
        .flat_map(|a| a.as_primitive::<Int64Type>().iter().collect::<Vec<_>>())
        .collect()
}

/// Values of column `name` as strings, nulls kept.
pub fn strings(batches: &[RecordBatch], name: &str) -> Vec<Option<String>> {
    cast_column(batches, name, &DataType::Utf8)
        .iter()
        .flat_map(|a| {
            a.as_string::<i32>()
                .iter()
                .map(|v| v.map(str::to_string))
                .collect::<Vec<_>>()
        })
        .collect()
}

/// Values of a list-of-strings column (`array_agg` of strings), nulls as empty lists.
pub fn string_lists(batches: &[RecordBatch], name: &str) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    for batch in batches {
        let Ok(index) = batch.schema().index_of(name) else {
            continue;
        };
        let column = batch.column(index);
        let lists = column.as_list::<i32>();
        for i in 0..lists.len() {
            if lists.is_null(i) {
                out.push(Vec::new());
                continue;
            }
            let values = datafusion::arrow::compute::cast(&lists.value(i), &DataType::Utf8)
                .map(|a| {
                    a.as_string::<i32>()
                        .iter()
                        .flatten()
                        .map(str::to_string)
                        .collect()
                })
                .unwrap_or_default();
            out.push(values);
        }
    }
    out
}

/// Values of a binary column, nulls as empty.
pub fn binaries(batches: &[RecordBatch], name: &str) -> Vec<Vec<u8>> {
    cast_column(batches, name, &DataType::Binary)
        .iter()
        .flat_map(|a| {
            a.as_binary::<i32>()
                .iter()
                .map(|v| v.unwrap_or_default().to_vec())
                .collect::<Vec<_>>()
        })
        .collect()
}

fn cast_column(batches: &[RecordBatch], name: &str, to: &DataType) -> Vec<ArrayRef> {
    batches
        .iter()
        .map(|b| {
            let column = b
                .column_by_name(name)
                .unwrap_or_else(|| panic!("query result has no column {name}"));
            let column = match column.data_type() {
                // The ToC's microseconds, as the nanoseconds the rollups count in.
                DataType::Timestamp(_, zone) if to == &DataType::Int64 => {
                    datafusion::arrow::compute::cast(
                        column,
                        &DataType::Timestamp(TimeUnit::Nanosecond, zone.clone()),
                    )
                    .and_then(|ns| datafusion::arrow::compute::cast(&ns, &DataType::Int64))
                }
                _ => datafusion::arrow::compute::cast(column, to),
            };
            column.unwrap_or_else(|e| panic!("column {name} casts to {to}: {e}"))
        })
        .collect()
}
