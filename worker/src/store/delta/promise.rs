//! The promise every Delta commit rests on: the store's conditional create (put-if-absent)
//! refuses to replace an object that exists. A store that silently overwrites would let two
//! writers both "commit" one version, and a night would vanish without an error. The merge
//! checks it once per store, before its first commit, and refuses a store that breaks it.

use std::collections::BTreeSet;
use std::sync::{Mutex, OnceLock};

use object_store::{ObjectStoreExt, PutMode, PutOptions, PutPayload};

use crate::error::{Error, Result};
use crate::store::Location;

/// The probe object's name under the output, for the moment of the check (a uuid follows).
const PROBE: &str = "_put_if_absent_probe-";

/// The stores checked by this process, by URL.
fn checked() -> &'static Mutex<BTreeSet<String>> {
    static CHECKED: OnceLock<Mutex<BTreeSet<String>>> = OnceLock::new();
    CHECKED.get_or_init(Mutex::default)
}

/// Checks that a second conditional create of one object is refused; once per store and
/// process.
pub async fn check_conditional_create(location: &Location) -> Result<()> {
    if checked()
        .lock()
        .expect("not poisoned")
        .contains(&location.url)
    {
        return Ok(());
    }
    let relative = format!("{PROBE}{}", uuid::Uuid::new_v4());
    let path = location.path(&relative);
    let create = |body: &'static [u8]| {
        location.store.put_opts(
            &path,
            PutPayload::from_static(body),
            PutOptions::from(PutMode::Create),
        )
    };
    let first = create(b"1").await;
    let second = match first {
        Ok(_) => create(b"2").await,
        Err(object_store::Error::NotImplemented { .. }) => {
            return Err(no_conditional_creates(location));
        }
        Err(source) => return Err(Error::store(&location.url, &relative, source)),
    };
    let verdict = match second {
        Err(
            object_store::Error::AlreadyExists { .. } | object_store::Error::Precondition { .. },
        ) => Ok(()),
        Ok(_) => Err(refusal(
            location,
            "replaced an object that existed on a conditional create (put-if-absent)",
        )),
        Err(object_store::Error::NotImplemented { .. }) => Err(no_conditional_creates(location)),
        Err(source) => Err(Error::store(&location.url, &relative, source)),
    };
    match location.store.delete(&path).await {
        Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
        Err(source) => return Err(Error::store(&location.url, &relative, source)),
    }
    verdict?;
    checked()
        .lock()
        .expect("not poisoned")
        .insert(location.url.clone());
    Ok(())
}

/// The refusal of a store that offers no conditional create (on S3, `AWS_CONDITIONAL_PUT`
/// set to `disabled`), wherever scanjob first needs one.
pub fn no_conditional_creates(location: &Location) -> Error {
    refusal(location, "does not offer conditional creates")
}

fn refusal(location: &Location, what: &str) -> Error {
    Error::Unsupported {
        what: location.url.clone(),
        reason: format!(
            "the object store {what}, so two merges could both commit one version of a Delta \
             table and a night would be lost without an error. scanjob needs conditional \
             creates: on S3, a server that honours `If-None-Match: *` on PUT (AWS S3, MinIO, \
             SeaweedFS, Ceph RGW, Cloudflare R2) and AWS_CONDITIONAL_PUT unset or `etag`; \
             Google Cloud Storage, Azure Blob Storage and a local or NFS directory honour them \
             as they are (docs/install.md)"
        ),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use futures::stream::BoxStream;
    use object_store::memory::InMemory;
    use object_store::path::Path;
    use object_store::{
        CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
        PutMultipartOptions, PutResult,
    };

    use super::*;

    /// An in-memory store that treats every put as an overwrite, as an S3-compatible server
    /// that ignores `If-None-Match` does.
    #[derive(Debug)]
    struct Overwrites(InMemory);

    impl std::fmt::Display for Overwrites {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "Overwrites({})", self.0)
        }
    }

    #[async_trait::async_trait]
    impl ObjectStore for Overwrites {
        async fn put_opts(
            &self,
            location: &Path,
            payload: PutPayload,
            _opts: PutOptions,
        ) -> object_store::Result<PutResult> {
            self.0
                .put_opts(location, payload, PutOptions::from(PutMode::Overwrite))
                .await
        }

        async fn put_multipart_opts(
            &self,
            location: &Path,
            opts: PutMultipartOptions,
        ) -> object_store::Result<Box<dyn MultipartUpload>> {
            self.0.put_multipart_opts(location, opts).await
        }

        async fn get_opts(
            &self,
            location: &Path,
            options: GetOptions,
        ) -> object_store::Result<GetResult> {
            self.0.get_opts(location, options).await
        }

        fn delete_stream(
            &self,
            locations: BoxStream<'static, object_store::Result<Path>>,
        ) -> BoxStream<'static, object_store::Result<Path>> {
            self.0.delete_stream(locations)
        }

        fn list(
            &self,
            prefix: Option<&Path>,
        ) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
            self.0.list(prefix)
        }

        async fn list_with_delimiter(
            &self,
            prefix: Option<&Path>,
        ) -> object_store::Result<ListResult> {
            self.0.list_with_delimiter(prefix).await
        }

        async fn copy_opts(
            &self,
            from: &Path,
            to: &Path,
            options: CopyOptions,
        ) -> object_store::Result<()> {
            self.0.copy_opts(from, to, options).await
        }
    }

    fn location(store: Arc<dyn ObjectStore>, url: &str) -> Location {
        Location {
            store,
            prefix: Path::default(),
            url: url.into(),
        }
    }

    #[tokio::test]
    async fn a_store_that_overwrites_on_a_conditional_create_is_refused_with_what_to_configure() {
        let store = location(Arc::new(Overwrites(InMemory::new())), "memory://overwrites");
        let err = check_conditional_create(&store).await.unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("replaced an object that existed")
                && text.contains("AWS_CONDITIONAL_PUT"),
            "{text}"
        );
        assert_eq!(err.exit_code(), crate::error::EXIT_PERMANENT);
        let left: Vec<_> = futures::TryStreamExt::try_collect::<Vec<_>>(store.store.list(None))
            .await
            .unwrap();
        assert!(left.is_empty(), "the probe is removed: {left:?}");
    }

    #[tokio::test]
    async fn a_store_that_honours_conditional_creates_passes_and_keeps_nothing() {
        let store = location(Arc::new(InMemory::new()), "memory://honours");
        check_conditional_create(&store).await.unwrap();
        let left: Vec<_> = futures::TryStreamExt::try_collect::<Vec<_>>(store.store.list(None))
            .await
            .unwrap();
        assert!(left.is_empty(), "{left:?}");
        let dir = tempfile::tempdir().unwrap();
        let local = Location::parse(dir.path().to_str().unwrap()).unwrap();
        check_conditional_create(&local).await.unwrap();
    }
}
