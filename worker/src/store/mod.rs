//! Output locations: any URL `object_store` understands, plus plain local paths.
//!
//! Credentials and endpoints come from the standard environment variables of each cloud
//! (`AWS_ACCESS_KEY_ID`, `AWS_ENDPOINT_URL`, `AWS_ALLOW_HTTP`, `GOOGLE_*`, `AZURE_*`), which is
//! also how a Kubernetes Secret reaches the pods through `envFrom`.
//!
//! [`layout`] names every object below a location; [`writer`] writes a table's Parquet files
//! into it; [`checks`] says what a plan, success marker, manifest or `latest.json` read back
//! must satisfy before a step acts on it; [`delta`] keeps each table's Delta log; [`previous`]
//! decides which snapshot a night compares with and reads it back; [`load_plan`] reads a run's
//! plan. Nothing here knows what a step means: the steps decide what to read and write.

pub mod checks;
pub mod delta;
pub mod layout;
pub mod previous;
pub mod writer;

use std::path::Path as FsPath;
use std::sync::Arc;
use std::time::Duration;

use object_store::aws::AmazonS3ConfigKey as S3Key;
use object_store::azure::AzureConfigKey as AzureKey;
use object_store::gcp::GoogleConfigKey as GcsKey;
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::{
    BackoffConfig, ClientConfigKey as ClientKey, ObjectStore, ObjectStoreExt, PutMode, PutOptions,
    PutPayload, RetryConfig, UpdateVersion,
};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::{Error, Result};
use crate::store::layout::{
    LATEST_PATH, LatestPointer, PLAN_FILE, ShardPlan, SnapshotManifest, manifest_path,
    split_run_url,
};
use crate::store::writer::PartFile;

/// How long one request to an object store may take before it is retried: a 5 MiB upload part
/// over a slow link fits many times over; a server that stopped answering is given up on.
const REQUEST_TIMEOUT: &str = "60s";
/// How long connecting may take; a server that is down refuses at once, one that is gone
/// from the network is retried after this.
const CONNECT_TIMEOUT: &str = "5s";

/// Retries of failed object-store requests (connection refused or reset, timeouts of requests
/// that may be repeated, 5xx, throttling): waits drawn from 100 ms up to twice the last one,
/// at most 15 s, for up to 3 minutes after the first attempt. The window bounds the retries,
/// not their count: a store that refuses connections fails each attempt at once, and 10
/// retries would be spent in about 15 s, while riding an outage out is far cheaper than a
/// retried shard that scans again. An outage of up to about 3 minutes is ridden out; a longer
/// one fails the step with a retryable exit, and the Job's retry starts it again
/// (docs/install.md, "When the object store fails").
fn retry() -> RetryConfig {
    RetryConfig {
        backoff: BackoffConfig {
            init_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(15),
            base: 2.0,
        },
        max_retries: 100,
        retry_timeout: Duration::from_secs(3 * 60),
    }
}

/// A store and the prefix inside it under which a ToC lives.
#[derive(Clone, Debug)]
pub struct Location {
    pub store: Arc<dyn ObjectStore>,
    pub prefix: Path,
    /// The URL as users should see and pass it again (local paths made absolute `file://`).
    pub url: String,
}

impl Location {
    /// Parses `url`: `s3://`, `gs://`, `az://`/`abfs://`, `file://`, or a local path (created if
    /// missing, like `mkdir -p`).
    pub fn parse(url: &str) -> Result<Self> {
        let bad = |reason: String| Error::BadOutputUrl {
            url: url.to_string(),
            reason,
        };
        if url.is_empty() {
            return Err(bad("empty".into()));
        }
        let parsed = match url::Url::parse(url) {
            Ok(u) if u.scheme().len() > 1 => Some(u),
            // No scheme (or a Windows-style drive letter): a local path.
            _ => None,
        };
        let Some(parsed) = parsed else {
            return Self::local(FsPath::new(url), url);
        };
        let prefix = Path::from_url_path(parsed.path()).map_err(|e| bad(e.to_string()))?;
        let store: Arc<dyn ObjectStore> = match parsed.scheme() {
            "file" => {
                let path = parsed
                    .to_file_path()
                    .map_err(|()| bad("not an absolute file path".into()))?;
                return Self::local(&path, url);
            }
            "s3" | "s3a" => Arc::new(
                object_store::aws::AmazonS3Builder::from_env()
                    .with_url(url)
                    .with_retry(retry())
                    .with_config(S3Key::Client(ClientKey::Timeout), REQUEST_TIMEOUT)
                    .with_config(S3Key::Client(ClientKey::ConnectTimeout), CONNECT_TIMEOUT)
                    .build()
                    .map_err(|e| bad(e.to_string()))?,
            ),
            "gs" => Arc::new(
                object_store::gcp::GoogleCloudStorageBuilder::from_env()
                    .with_url(url)
                    .with_retry(retry())
                    .with_config(GcsKey::Client(ClientKey::Timeout), REQUEST_TIMEOUT)
                    .with_config(GcsKey::Client(ClientKey::ConnectTimeout), CONNECT_TIMEOUT)
                    .build()
                    .map_err(|e| bad(e.to_string()))?,
            ),
            "az" | "abfs" | "abfss" | "adl" | "azure" => Arc::new(
                object_store::azure::MicrosoftAzureBuilder::from_env()
                    .with_url(url)
                    .with_retry(retry())
                    .with_config(AzureKey::Client(ClientKey::Timeout), REQUEST_TIMEOUT)
                    .with_config(AzureKey::Client(ClientKey::ConnectTimeout), CONNECT_TIMEOUT)
                    .build()
                    .map_err(|e| bad(e.to_string()))?,
            ),
            other => return Err(bad(format!("unsupported scheme {other:?}"))),
        };
        Ok(Self {
            store,
            prefix,
            url: url.trim_end_matches('/').to_string(),
        })
    }

    fn local(path: &FsPath, url: &str) -> Result<Self> {
        let bad = |reason: String| Error::BadOutputUrl {
            url: url.to_string(),
            reason,
        };
        if path.exists() && !path.is_dir() {
            return Err(bad("exists and is not a directory".into()));
        }
        std::fs::create_dir_all(path).map_err(|e| bad(e.to_string()))?;
        let abs = std::fs::canonicalize(path).map_err(|e| bad(e.to_string()))?;
        let store = LocalFileSystem::new_with_prefix(&abs).map_err(|e| bad(e.to_string()))?;
        Ok(Self {
            store: Arc::new(store),
            prefix: Path::default(),
            url: format!("file://{}", abs.display()),
        })
    }

    /// The object path of `relative` (slash-separated) under this location.
    pub fn path(&self, relative: &str) -> Path {
        relative
            .split('/')
            .filter(|part| !part.is_empty())
            .fold(self.prefix.clone(), |p, part| p.join(part))
    }

    /// An object's bytes; `Ok(None)` when it does not exist.
    pub async fn get_bytes(&self, relative: &str) -> Result<Option<bytes::Bytes>> {
        Ok(self.get_versioned(relative).await?.map(|(bytes, _)| bytes))
    }

    /// An object's bytes with the version to pass to a conditional update.
    async fn get_versioned(&self, relative: &str) -> Result<Option<(bytes::Bytes, UpdateVersion)>> {
        let got = match self.store.get(&self.path(relative)).await {
            Ok(got) => got,
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(source) => return Err(Error::store(&self.url, relative, source)),
        };
        let version = UpdateVersion {
            e_tag: got.meta.e_tag.clone(),
            version: got.meta.version.clone(),
        };
        let bytes = got
            .bytes()
            .await
            .map_err(|source| Error::store(&self.url, relative, source))?;
        Ok(Some((bytes, version)))
    }

    /// Reads and parses a JSON object; `Ok(None)` when it does not exist.
    pub async fn get_json<T: DeserializeOwned>(&self, relative: &str) -> Result<Option<T>> {
        Ok(self
            .get_json_versioned(relative)
            .await?
            .map(|(value, _)| value))
    }

    /// Like [`Self::get_json`], with the version to pass to a conditional update.
    pub async fn get_json_versioned<T: DeserializeOwned>(
        &self,
        relative: &str,
    ) -> Result<Option<(T, UpdateVersion)>> {
        let Some((bytes, version)) = self.get_versioned(relative).await? else {
            return Ok(None);
        };
        let value = serde_json::from_slice(&bytes).map_err(|source| Error::Corrupt {
            what: format!("{}/{relative}", self.url),
            reason: source.to_string(),
        })?;
        Ok(Some((value, version)))
    }

    /// `latest.json`, checked ([`LatestPointer::check`]); `Ok(None)` before the first publish.
    pub async fn latest(&self) -> Result<Option<LatestPointer>> {
        Ok(self.latest_versioned().await?.map(|(latest, _)| latest))
    }

    /// Like [`Self::latest`], with the version to pass to a conditional update.
    pub async fn latest_versioned(&self) -> Result<Option<(LatestPointer, UpdateVersion)>> {
        let latest = self
            .get_json_versioned::<LatestPointer>(LATEST_PATH)
            .await?;
        if let Some((pointer, _)) = &latest {
            pointer.check().map_err(|reason| Error::Corrupt {
                what: format!("{}/{LATEST_PATH}", self.url),
                reason,
            })?;
        }
        Ok(latest)
    }

    /// The manifest of snapshot `run`, checked ([`SnapshotManifest::check`]); `Ok(None)` when
    /// the snapshot was never published (or was removed).
    pub async fn manifest(&self, run: &str) -> Result<Option<SnapshotManifest>> {
        let path = manifest_path(run);
        let manifest = self.get_json::<SnapshotManifest>(&path).await?;
        if let Some(manifest) = &manifest {
            manifest.check(run).map_err(|reason| Error::Corrupt {
                what: format!("{}/{path}", self.url),
                reason,
            })?;
        }
        Ok(manifest)
    }

    /// Writes `value` as pretty JSON with the given put mode.
    pub async fn put_json<T: Serialize>(
        &self,
        relative: &str,
        value: &T,
        mode: PutMode,
    ) -> std::result::Result<(), object_store::Error> {
        let mut body = serde_json::to_vec_pretty(value).expect("serialisable");
        body.push(b'\n');
        self.store
            .put_opts(
                &self.path(relative),
                PutPayload::from(body),
                PutOptions::from(mode),
            )
            .await
            .map(|_| ())
    }

    /// Deletes every object below `relative` (a retried shard starts from an empty prefix;
    /// retention removes old snapshots). In a local directory the emptied folders go too, as
    /// they do not exist in an object store.
    pub async fn delete_prefix(&self, relative: &str) -> Result<usize> {
        use futures::TryStreamExt;
        let prefix = self.path(relative);
        let paths: Vec<Path> = self
            .store
            .list(Some(&prefix))
            .map_ok(|meta| meta.location)
            .try_collect()
            .await
            .map_err(|source| Error::store(&self.url, relative, source))?;
        for path in &paths {
            match self.store.delete(path).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                Err(source) => return Err(Error::store(&self.url, relative, source)),
            }
        }
        if let Some(root) = self.url.strip_prefix("file://") {
            remove_empty_dirs(&FsPath::new(root).join(relative));
        }
        Ok(paths.len())
    }
}

/// Removes `dir` and every directory below it that is (then) empty; anything holding a file
/// stays.
fn remove_empty_dirs(dir: &FsPath) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            remove_empty_dirs(&entry.path());
        }
    }
    let _ = std::fs::remove_dir(dir);
}

/// Loads and checks the plan at `plan_url`; returns it with its output location.
pub async fn load_plan(plan_url: &str) -> Result<(ShardPlan, Location)> {
    let bad = |reason: String| Error::BadPlan {
        url: plan_url.to_string(),
        reason,
    };
    let (base, run) = split_run_url(plan_url, Some(PLAN_FILE))
        .ok_or_else(|| bad("expected <output>/runs/<run>/plan.json".into()))?;
    let output = Location::parse(&base)?;
    let plan: ShardPlan = output
        .get_json(&layout::plan_path(&run))
        .await?
        .ok_or_else(|| bad("does not exist".into()))?;
    if plan.run != run {
        return Err(bad(format!(
            "belongs to run {}, not {run} (copied from another run?)",
            plan.run
        )));
    }
    plan.check().map_err(bad)?;
    Ok((plan, output))
}

/// The Arrow schema stored in a Parquet file's footer.
#[allow(deprecated)]
pub async fn parquet_schema(
    location: &Location,
    file: &PartFile,
) -> Result<arrow_schema::SchemaRef> {
    use parquet::arrow::async_reader::{ParquetObjectReader, ParquetRecordBatchStreamBuilder};
    let reader = ParquetObjectReader::new(location.store.clone(), location.path(&file.path))
        .with_file_size(file.bytes);
    let builder = ParquetRecordBatchStreamBuilder::new(reader)
        .await
        .map_err(|source| Error::Parquet {
            path: file.path.clone(),
            source,
        })?;
    Ok(builder.schema().clone())
}
