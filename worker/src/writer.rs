//! The rolling Parquet writer of one shard (after delta-rs' `writer.rs`): batches go into
//! `part-00000.parquet`, `part-00001.parquet`, … each closed once it reaches a target size, and
//! `close()` returns what the shard's `_SUCCESS.json` lists. On failure the open multipart upload
//! is aborted rather than left behind.

use std::sync::Arc;

use arrow_array::RecordBatch;
use arrow_schema::SchemaRef;
use object_store::buffered::BufWriter;
use parquet::arrow::AsyncArrowWriter;
use parquet::basic::{Compression, Encoding, ZstdLevel};
use parquet::file::metadata::KeyValue;
use parquet::file::properties::WriterProperties;
use parquet::schema::types::ColumnPath;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::schema::{DICTIONARY_COLUMNS, PREFIX_CODED_COLUMNS, SCHEMA_VERSION, SCHEMA_VERSION_KEY};
use crate::store::Location;

/// Rows per row group: large enough for good compression and pruning statistics, small enough
/// that the writer's encoded-but-unflushed buffers stay a few MiB.
const ROW_GROUP_ROWS: usize = 64 * 1024;
/// The object-store upload buffer; also S3's minimum multipart part size.
const UPLOAD_BUFFER_BYTES: usize = 5 * 1024 * 1024;

/// One Parquet file written by a shard.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct PartFile {
    /// Relative to the output location.
    pub path: String,
    pub rows: u64,
    pub bytes: u64,
}

/// The writer properties of every scanjob Parquet file.
///
/// Integers and timestamps stay PLAIN under ZSTD: on the reference tree that beat
/// DELTA_BINARY_PACKED on every such column (ctime 1.4 vs 2.9 bytes/row), and unlike
/// BYTE_STREAM_SPLIT it is readable by every Parquet engine in use.
pub fn writer_properties() -> WriterProperties {
    let mut builder = WriterProperties::builder()
        .set_compression(Compression::ZSTD(
            ZstdLevel::try_new(1).expect("valid level"),
        ))
        .set_dictionary_enabled(false)
        .set_max_row_group_row_count(Some(ROW_GROUP_ROWS))
        .set_created_by(format!("scanjob {}", env!("CARGO_PKG_VERSION")))
        .set_key_value_metadata(Some(vec![KeyValue::new(
            SCHEMA_VERSION_KEY.to_string(),
            SCHEMA_VERSION.to_string(),
        )]));
    for column in DICTIONARY_COLUMNS {
        builder = builder.set_column_dictionary_enabled(ColumnPath::from(*column), true);
    }
    for column in PREFIX_CODED_COLUMNS {
        builder =
            builder.set_column_encoding(ColumnPath::from(*column), Encoding::DELTA_BYTE_ARRAY);
    }
    builder.build()
}

struct OpenPart {
    writer: AsyncArrowWriter<BufWriter>,
    path: String,
    rows: u64,
}

/// Writes batches of one schema into size-bounded parts under `dir`.
pub struct RollingWriter {
    location: Location,
    dir: String,
    stem: &'static str,
    schema: SchemaRef,
    properties: WriterProperties,
    target_bytes: usize,
    open: Option<OpenPart>,
    done: Vec<PartFile>,
}

impl RollingWriter {
    /// Parts are named `<dir>/<stem>-00000.parquet`, … in the order they are written.
    pub fn new(
        location: Location,
        dir: String,
        stem: &'static str,
        schema: SchemaRef,
        target_bytes: usize,
    ) -> Self {
        Self {
            location,
            dir,
            stem,
            schema,
            properties: writer_properties(),
            target_bytes,
            open: None,
            done: Vec::new(),
        }
    }

    fn parquet_error(path: &str, source: parquet::errors::ParquetError) -> Error {
        Error::Parquet {
            path: path.to_string(),
            source,
        }
    }

    fn open_part(&mut self) -> Result<&mut OpenPart> {
        if self.open.is_none() {
            let path = format!("{}/{}-{:05}.parquet", self.dir, self.stem, self.done.len());
            let buffered = BufWriter::with_capacity(
                Arc::clone(&self.location.store),
                self.location.path(&path),
                UPLOAD_BUFFER_BYTES,
            );
            let writer = AsyncArrowWriter::try_new(
                buffered,
                Arc::clone(&self.schema),
                Some(self.properties.clone()),
            )
            .map_err(|e| Self::parquet_error(&path, e))?;
            self.open = Some(OpenPart {
                writer,
                path,
                rows: 0,
            });
        }
        Ok(self.open.as_mut().expect("just opened"))
    }

    pub async fn write(&mut self, batch: &RecordBatch) -> Result<()> {
        let target = self.target_bytes;
        let part = self.open_part()?;
        if let Err(e) = part.writer.write(batch).await {
            let path = part.path.clone();
            self.abort().await;
            return Err(Self::parquet_error(&path, e));
        }
        part.rows += batch.num_rows() as u64;
        if part.writer.bytes_written() + part.writer.in_progress_size() >= target {
            self.close_part().await?;
        }
        Ok(())
    }

    async fn close_part(&mut self) -> Result<()> {
        let Some(mut part) = self.open.take() else {
            return Ok(());
        };
        if let Err(e) = part.writer.finish().await {
            let _ = part.writer.into_inner().abort().await;
            return Err(Self::parquet_error(&part.path, e));
        }
        self.done.push(PartFile {
            bytes: part.writer.bytes_written() as u64,
            path: part.path,
            rows: part.rows,
        });
        Ok(())
    }

    /// Closes the open part and returns every part written, in order.
    pub async fn close(mut self) -> Result<Vec<PartFile>> {
        self.close_part().await?;
        Ok(self.done)
    }

    /// Abandons the open part: its multipart upload is aborted so no partial object remains.
    pub async fn abort(&mut self) {
        if let Some(part) = self.open.take() {
            let _ = part.writer.into_inner().abort().await;
        }
    }
}
