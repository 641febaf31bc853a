//! The statistics of an add action (`numRecords`, `minValues`, `maxValues`, `nullCount`),
//! taken from the Parquet footer's column statistics the writer already computed, so engines
//! can skip a file by path, size, time or owner without a row of it read again.

use std::collections::BTreeMap;

use arrow_schema::{DataType, TimeUnit};
use parquet::file::statistics::Statistics;
use serde_json::{Map, Value, json};

use crate::error::{Error, Result};
use crate::store::Location;
use crate::store::writer::PartFile;

/// Strings longer than this many characters are cut in the statistics: the minimum to its
/// prefix, the maximum to its prefix and the highest code point (still above every value with
/// that prefix), as Delta writers do to keep the log small.
const STRING_PREFIX: usize = 128;

/// The bounds of one column over a file's row groups.
#[derive(Default)]
struct Bounds {
    min: Option<Scalar>,
    max: Option<Scalar>,
    nulls: Option<u64>,
    /// A row group with values but no minimum or maximum: the file's bounds are unknown.
    unbounded: bool,
}

#[derive(Clone, PartialEq, PartialOrd)]
enum Scalar {
    Int(i64),
    Bytes(Vec<u8>),
}

/// The add action's `stats` for `file`, read from its footer.
#[allow(deprecated)]
pub async fn of_file(location: &Location, file: &PartFile) -> Result<String> {
    use parquet::arrow::async_reader::{ParquetObjectReader, ParquetRecordBatchStreamBuilder};
    let parquet_error = |source| Error::Parquet {
        path: format!("{}/{}", location.url, file.path),
        source,
    };
    let reader = ParquetObjectReader::new(location.store.clone(), location.path(&file.path))
        .with_file_size(file.bytes);
    let builder = ParquetRecordBatchStreamBuilder::new(reader)
        .await
        .map_err(parquet_error)?;
    let (schema, metadata) = (builder.schema().clone(), builder.metadata().clone());
    let descr = metadata.file_metadata().schema_descr();
    let (mut min_values, mut max_values, mut null_count) = (Map::new(), Map::new(), Map::new());
    for field in schema.fields() {
        // Nested columns (lists) have no bounds a Delta reader compares.
        if matches!(field.data_type(), DataType::List(_) | DataType::Struct(_)) {
            continue;
        }
        let Some((leaf, _)) = parquet::arrow::parquet_column(descr, &schema, field.name()) else {
            continue;
        };
        let mut bounds = Bounds {
            nulls: Some(0),
            ..Bounds::default()
        };
        for group in metadata.row_groups() {
            let Some(stats) = group.column(leaf).statistics() else {
                bounds.unbounded = true;
                bounds.nulls = None;
                continue;
            };
            let nulls = stats.null_count_opt();
            bounds.nulls = bounds.nulls.zip(nulls).map(|(a, b)| a + b);
            let (min, max) = match stats {
                Statistics::Int32(s) => (
                    s.min_opt().map(|v| Scalar::Int(i64::from(*v))),
                    s.max_opt().map(|v| Scalar::Int(i64::from(*v))),
                ),
                Statistics::Int64(s) => (
                    s.min_opt().map(|v| Scalar::Int(*v)),
                    s.max_opt().map(|v| Scalar::Int(*v)),
                ),
                Statistics::ByteArray(s) => (
                    s.min_opt().map(|v| Scalar::Bytes(v.data().to_vec())),
                    s.max_opt().map(|v| Scalar::Bytes(v.data().to_vec())),
                ),
                _ => (None, None),
            };
            let values = group.num_rows() as u64 > nulls.unwrap_or(0);
            match (min, max) {
                (Some(min), Some(max)) => {
                    if bounds.min.as_ref().is_none_or(|m| min < *m) {
                        bounds.min = Some(min);
                    }
                    if bounds.max.as_ref().is_none_or(|m| max > *m) {
                        bounds.max = Some(max);
                    }
                }
                _ if values || nulls.is_none() => bounds.unbounded = true,
                _ => {}
            }
        }
        if let Some(nulls) = bounds.nulls {
            null_count.insert(field.name().clone(), json!(nulls));
        }
        if bounds.unbounded {
            continue;
        }
        if let (Some(min), Some(max)) = (&bounds.min, &bounds.max)
            && let (Some(min), Some(max)) = (
                value(field.data_type(), min, false),
                value(field.data_type(), max, true),
            )
        {
            min_values.insert(field.name().clone(), min);
            max_values.insert(field.name().clone(), max);
        }
    }
    let mut stats = BTreeMap::new();
    stats.insert("numRecords", json!(file.rows));
    stats.insert("minValues", Value::Object(min_values));
    stats.insert("maxValues", Value::Object(max_values));
    stats.insert("nullCount", Value::Object(null_count));
    Ok(serde_json::to_string(&stats).expect("serialisable"))
}

/// A bound as Delta's statistics write it for a column of `data_type` (`None`: a type whose
/// bounds scanjob does not write).
fn value(data_type: &DataType, scalar: &Scalar, upper: bool) -> Option<Value> {
    match (data_type, scalar) {
        (DataType::Int8 | DataType::Int16 | DataType::Int32 | DataType::Int64, Scalar::Int(v)) => {
            Some(json!(v))
        }
        // Delta's statistics hold milliseconds: a lower bound rounds down, an upper one up.
        (DataType::Timestamp(TimeUnit::Microsecond, _), Scalar::Int(micros)) => {
            let millis = if upper {
                micros.div_euclid(1000) + i64::from(micros.rem_euclid(1000) != 0)
            } else {
                micros.div_euclid(1000)
            };
            let time = chrono::DateTime::from_timestamp_millis(millis)?;
            Some(json!(
                time.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
            ))
        }
        (DataType::Date32, Scalar::Int(days)) => {
            let date =
                chrono::NaiveDate::from_num_days_from_ce_opt(i32::try_from(*days).ok()? + 719_163)?;
            Some(json!(date.format("%Y-%m-%d").to_string()))
        }
        (DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View, Scalar::Bytes(bytes)) => {
            string(bytes, upper)
        }
        (DataType::Dictionary(_, value_type), _) => value(value_type, scalar, upper),
        _ => None,
    }
}

fn string(bytes: &[u8], upper: bool) -> Option<Value> {
    let text = std::str::from_utf8(bytes).ok()?;
    let Some((cut, _)) = text.char_indices().nth(STRING_PREFIX) else {
        return Some(json!(text));
    };
    let prefix = &text[..cut];
    Some(json!(if upper {
        format!("{prefix}\u{10FFFF}")
    } else {
        prefix.to_string()
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_round_outwards_to_milliseconds() {
        let t = DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()));
        assert_eq!(
            value(&t, &Scalar::Int(1_500), false),
            Some(json!("1970-01-01T00:00:00.001Z"))
        );
        assert_eq!(
            value(&t, &Scalar::Int(1_500), true),
            Some(json!("1970-01-01T00:00:00.002Z"))
        );
        assert_eq!(
            value(&t, &Scalar::Int(2_000), true),
            Some(json!("1970-01-01T00:00:00.002Z"))
        );
    }

    #[test]
    fn long_strings_are_cut_to_bounds_that_still_hold() {
        let long = "a".repeat(STRING_PREFIX + 10);
        let min = string(long.as_bytes(), false).unwrap();
        let max = string(long.as_bytes(), true).unwrap();
        assert!(min.as_str().unwrap() <= long.as_str());
        assert!(max.as_str().unwrap() > long.as_str());
        assert_eq!(string(b"short", true), Some(json!("short")));
    }

    #[test]
    fn dates_are_days_since_the_epoch() {
        assert_eq!(
            value(&DataType::Date32, &Scalar::Int(1), false),
            Some(json!("1970-01-02"))
        );
    }
}
