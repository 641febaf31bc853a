//! The night's error rows (entries that could not be listed or stat'ed) as the Delta table
//! `<output>/errors`, beside the ToC and versioned with the same nights: the scan shards'
//! `errors-*.parquet` files, copied into the table as they are (their types are Delta's
//! already), or one empty file on a night without errors, so the table has a version every
//! night.

use std::sync::Arc;

use object_store::{ObjectStoreExt, PutPayload};

use crate::error::{Error, Result};
use crate::schema::ERROR_SCHEMA;
use crate::store::Location;
use crate::store::layout::derived_dir;
use crate::store::writer::{PartFile, writer_properties};

/// The errors table's directory under the output location.
pub const ERRORS_TABLE: &str = "errors";

/// Copies the shards' error files of `run` into `errors/<run>/` (a server-side copy on an
/// object store) and returns the copies; an empty file when there are none.
pub async fn copy_night(
    location: &Location,
    run: &str,
    shard_files: &[PartFile],
) -> Result<Vec<PartFile>> {
    let dir = derived_dir(ERRORS_TABLE, run);
    let mut copies = Vec::with_capacity(shard_files.len().max(1));
    for (n, file) in shard_files.iter().enumerate() {
        let to = format!("{dir}/part-{n:05}.parquet");
        location
            .store
            .copy(&location.path(&file.path), &location.path(&to))
            .await
            .map_err(|source| Error::store(&location.url, &file.path, source))?;
        copies.push(PartFile {
            path: to,
            rows: file.rows,
            bytes: file.bytes,
        });
    }
    if copies.is_empty() {
        let to = format!("{dir}/part-00000.parquet");
        let mut body = Vec::new();
        let writer = parquet::arrow::ArrowWriter::try_new(
            &mut body,
            Arc::clone(&ERROR_SCHEMA),
            Some(writer_properties()),
        )
        .and_then(|writer| writer.close().map(drop));
        writer.map_err(|source| Error::Parquet {
            path: format!("{}/{to}", location.url),
            source,
        })?;
        let bytes = body.len() as u64;
        location
            .store
            .put(&location.path(&to), PutPayload::from(body))
            .await
            .map_err(|source| Error::store(&location.url, &to, source))?;
        copies.push(PartFile {
            path: to,
            rows: 0,
            bytes,
        });
    }
    Ok(copies)
}
