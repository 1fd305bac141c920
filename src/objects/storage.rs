//! [`ObjectStorage`]: the configured store, with the operations voxpipe
//! needs (idempotent puts, whole-file uploads, reads, a credentials probe).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use object_store::aws::AmazonS3Builder;
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::{
    BackoffConfig, ClientOptions, MultipartUpload, ObjectStore, ObjectStoreExt as _, PutPayload,
    RetryConfig,
};
use tokio::io::AsyncReadExt as _;

use super::config::{StorageSection, StorageUrl};
use super::error::ObjectsError;

/// Files up to this size go up in one PUT; larger ones in parts of this
/// size (S3 wants at least 5 MiB per part but the last).
pub const PART_BYTES: usize = 8 * 1024 * 1024;

/// Parts of one upload in flight at once: memory per upload stays under
/// `(PARTS_IN_FLIGHT + 1) * PART_BYTES`.
const PARTS_IN_FLIGHT: usize = 2;

/// The key `/health` asks about: its absence proves the credentials work.
const PROBE_KEY: &str = ".voxpipe-probe";

/// A configured object store. Cheap to clone. Its `Debug` shows the URL
/// only, never the credentials.
#[derive(Clone)]
pub struct ObjectStorage {
    store: Arc<dyn ObjectStore>,
    prefix: String,
    url: StorageUrl,
}

impl std::fmt::Debug for ObjectStorage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ObjectStorage")
            .field("url", &self.url.to_string())
            .finish_non_exhaustive()
    }
}

impl ObjectStorage {
    /// The store `section` describes, with credentials read through `env`.
    /// A local folder is created if missing. Nothing is contacted yet.
    pub fn open(
        section: &StorageSection,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<ObjectStorage, ObjectsError> {
        let url = section.url.clone();
        let store: Arc<dyn ObjectStore> = match &url {
            StorageUrl::Folder(folder) => {
                // Owner-only where this creates it (objects are people's
                // voices and transcripts; the files inside take the umask,
                // the folder keeps others out). One that exists keeps its
                // mode.
                let mut folders = std::fs::DirBuilder::new();
                folders.recursive(true);
                #[cfg(unix)]
                std::os::unix::fs::DirBuilderExt::mode(&mut folders, 0o700);
                folders
                    .create(folder)
                    .map_err(|source| ObjectsError::Folder {
                        path: folder.clone(),
                        source,
                    })?;
                // fsync: an object is durable before the uploader deletes
                // the spool's copy (object_store's default is not to).
                let local = LocalFileSystem::new_with_prefix(folder)
                    .map_err(|source| ObjectsError::Open {
                        url: url.to_string(),
                        source,
                    })?
                    .with_fsync(true);
                Arc::new(local)
            }
            StorageUrl::S3 { bucket, .. } => {
                // reqwest is built without a default TLS crypto provider;
                // ring is the one voxpipe uses (already installed is fine).
                let _already = rustls::crypto::ring::default_provider().install_default();
                let var = |key: &'static str, name: &str| {
                    env(name)
                        .filter(|v| !v.is_empty())
                        .ok_or_else(|| ObjectsError::MissingEnv {
                            key,
                            var: name.to_owned(),
                        })
                };
                let mut builder = AmazonS3Builder::new()
                    .with_bucket_name(bucket)
                    .with_region(&section.region)
                    .with_access_key_id(var("access_key_id_env", &section.access_key_id_env)?)
                    .with_secret_access_key(var(
                        "secret_access_key_env",
                        &section.secret_access_key_env,
                    )?)
                    .with_virtual_hosted_style_request(!section.path_style)
                    .with_retry(retry())
                    .with_client_options(
                        ClientOptions::new()
                            .with_connect_timeout(Duration::from_secs(5))
                            .with_timeout(Duration::from_secs(120))
                            .with_allow_http(
                                section
                                    .endpoint
                                    .as_deref()
                                    .is_some_and(|e| e.starts_with("http://")),
                            ),
                    );
                if let Some(name) = &section.session_token_env {
                    builder = builder.with_token(var("session_token_env", name)?);
                }
                if let Some(endpoint) = &section.endpoint {
                    // object_store takes a virtual-hosted-style endpoint
                    // as the bucket's own: without the bucket in its host,
                    // requests would go to the bare server.
                    builder = if section.path_style {
                        builder.with_endpoint(endpoint)
                    } else {
                        builder.with_endpoint(virtual_hosted_endpoint(endpoint, bucket)?)
                    };
                }
                let s3 = builder.build().map_err(|source| ObjectsError::Open {
                    url: url.to_string(),
                    source,
                })?;
                Arc::new(s3)
            }
        };
        let prefix = match &url {
            StorageUrl::S3 { prefix, .. } => prefix.clone(),
            StorageUrl::Folder(_) => String::new(),
        };
        Ok(ObjectStorage { store, prefix, url })
    }

    /// Where the objects go, for people and audit records (no secrets).
    pub fn url(&self) -> &StorageUrl {
        &self.url
    }

    /// Stores `bytes` at `key`, replacing what is there. One PUT: the
    /// object appears whole or not at all.
    pub async fn put(&self, key: &str, bytes: Bytes) -> Result<(), ObjectsError> {
        let path = self.path(key)?;
        self.store
            .put(&path, PutPayload::from_bytes(bytes))
            .await
            .map(|_| ())
            .map_err(|err| ObjectsError::from_store(key, err))
    }

    /// Uploads the file at `file` to `key`, replacing what is there; returns
    /// its size. Up to [`PART_BYTES`] in one PUT, larger in a multipart
    /// upload (see the module doc of [`objects`](super)): either way the
    /// object appears whole or not at all.
    pub async fn upload_file(
        &self,
        key: &str,
        file: &std::path::Path,
    ) -> Result<u64, ObjectsError> {
        self.upload_file_until(key, file, std::future::pending())
            .await
    }

    /// [`Self::upload_file`], given up when `cancel` resolves first
    /// ([`ObjectsError::Cancelled`]): a multipart upload is then aborted
    /// (its parts removed) before this returns, rather than left behind
    /// invisible until a lifecycle rule removes it.
    pub async fn upload_file_until(
        &self,
        key: &str,
        file: &std::path::Path,
        cancel: impl Future<Output = ()>,
    ) -> Result<u64, ObjectsError> {
        tokio::pin!(cancel);
        let path = self.path(key)?;
        let file_err = |source| ObjectsError::File {
            path: file.to_owned(),
            source,
        };
        let store_err = |err| ObjectsError::from_store(key, err);
        let cancelled = || ObjectsError::Cancelled {
            key: key.to_owned(),
        };
        let mut source = tokio::fs::File::open(file).await.map_err(file_err)?;
        let size = source.metadata().await.map_err(file_err)?.len();
        if size <= PART_BYTES as u64 {
            let mut bytes = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
            source.read_to_end(&mut bytes).await.map_err(file_err)?;
            // One PUT: dropped midway, no object appears.
            tokio::select! {
                put = self.store.put(&path, PutPayload::from(bytes)) => put.map_err(store_err)?,
                () = &mut cancel => return Err(cancelled()),
            };
            return Ok(size);
        }
        let mut upload = tokio::select! {
            upload = self.store.put_multipart(&path) => upload.map_err(store_err)?,
            () = &mut cancel => return Err(cancelled()),
        };
        let sent = {
            let parts = send_parts(&mut *upload, &mut source);
            tokio::pin!(parts);
            tokio::select! {
                sent = &mut parts => Some(sent),
                () = &mut cancel => None,
            }
            // The parts in flight are dropped (their tasks aborted) here,
            // before the abort below; one already on the wire may still
            // land after it, invisible (no object appears at the key) until
            // the bucket's lifecycle rule for incomplete uploads removes it.
        };
        match sent {
            Some(Ok(())) => Ok(size),
            Some(Err(failed)) => {
                abort(&mut *upload, key).await;
                Err(match failed {
                    PartsFailed::File(err) => file_err(err),
                    PartsFailed::Store(err) => store_err(err),
                })
            }
            None => {
                abort(&mut *upload, key).await;
                Err(cancelled())
            }
        }
    }

    /// The object at `key`.
    pub async fn get(&self, key: &str) -> Result<Bytes, ObjectsError> {
        let path = self.path(key)?;
        let got = self
            .store
            .get(&path)
            .await
            .map_err(|err| ObjectsError::from_store(key, err))?;
        got.bytes()
            .await
            .map_err(|err| ObjectsError::from_store(key, err))
    }

    /// The size of the object at `key`, `None` when there is none.
    pub async fn size(&self, key: &str) -> Result<Option<u64>, ObjectsError> {
        let path = self.path(key)?;
        match self.store.head(&path).await {
            Ok(meta) => Ok(Some(meta.size)),
            Err(err) => match ObjectsError::from_store(key, err) {
                ObjectsError::NotFound { .. } => Ok(None),
                other => Err(other),
            },
        }
    }

    /// Succeeds when the storage answers and takes the credentials: asks
    /// for an object that does not exist and expects "not found".
    ///
    /// A 403 there does not prove the credentials wrong: AWS answers 403
    /// rather than 404 for a missing key to a principal without
    /// `s3:ListBucket`. A HEAD's 403 has no body to tell the two apart, so
    /// the key is asked for again with a GET, whose answer names its
    /// reason: a bad signature, key id or token is
    /// [`ObjectsError::Refused`]; anything else (`AccessDenied`) is
    /// [`ObjectsError::NotProven`].
    pub async fn probe(&self) -> Result<(), ObjectsError> {
        let path = self.path(PROBE_KEY)?;
        match self.store.head(&path).await {
            Ok(_) => Ok(()),
            Err(err) => match ObjectsError::from_store(PROBE_KEY, err) {
                ObjectsError::NotFound { .. } => Ok(()),
                ObjectsError::Refused { .. } => self.probe_refusal(&path).await,
                other => Err(other),
            },
        }
    }

    /// Why the probe's HEAD was refused, read from a GET's answer.
    async fn probe_refusal(&self, path: &Path) -> Result<(), ObjectsError> {
        let err = match self.store.get(path).await {
            Ok(_) => return Ok(()),
            Err(err) => err,
        };
        match ObjectsError::from_store(PROBE_KEY, err) {
            ObjectsError::NotFound { .. } => Ok(()),
            ObjectsError::Refused { key, source } => {
                if names_bad_credentials(&error_chain(&source)) {
                    Err(ObjectsError::Refused { key, source })
                } else {
                    Err(ObjectsError::NotProven { key })
                }
            }
            other => Err(other),
        }
    }

    /// `key` under the URL's prefix, checked.
    fn path(&self, key: &str) -> Result<Path, ObjectsError> {
        let full = if self.prefix.is_empty() {
            key.to_owned()
        } else {
            format!("{}/{key}", self.prefix)
        };
        Path::parse(&full).map_err(|err| ObjectsError::InvalidKey {
            key: key.to_owned(),
            reason: err.to_string(),
        })
    }
}

/// Whether a 403's answer (S3's error codes) says the credentials
/// themselves are wrong, rather than that they may not do this.
fn names_bad_credentials(answer: &str) -> bool {
    [
        "SignatureDoesNotMatch",
        "InvalidAccessKeyId",
        "InvalidToken",
        "ExpiredToken",
        "TokenRefreshRequired",
    ]
    .iter()
    .any(|code| answer.contains(code))
}

/// `err` and its sources' messages (the server's answer is in a source).
fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(err) = source {
        text.push_str(": ");
        text.push_str(&err.to_string());
        source = err.source();
    }
    text
}

/// Retries inside one request stay short: a store that is down fails the
/// upload quickly, and the caller's own schedule (the job, the uploader's
/// scan) tries again later.
fn retry() -> RetryConfig {
    RetryConfig {
        backoff: BackoffConfig {
            init_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(2),
            base: 2.0,
        },
        max_retries: 3,
        retry_timeout: Duration::from_secs(15),
    }
}

/// What opening `section` would refuse in its `endpoint`, found without
/// the environment (no keys needed), so that `voxpipe check` refuses it
/// too: not an http(s) URL, or a host a virtual-hosted-style request
/// cannot go to.
pub fn endpoint_problem(section: &StorageSection) -> Option<String> {
    let endpoint = section.endpoint.as_deref()?;
    let StorageUrl::S3 { bucket, .. } = &section.url else {
        return None;
    };
    if !(endpoint.starts_with("http://") || endpoint.starts_with("https://"))
        || reqwest::Url::parse(endpoint).is_err()
    {
        return Some(format!(
            "`storage.endpoint` {endpoint} is not an http:// or https:// URL"
        ));
    }
    if section.path_style {
        return None;
    }
    virtual_hosted_endpoint(endpoint, bucket)
        .err()
        .map(|err| err.to_string())
}

/// `endpoint` with `bucket.` in front of its host: what a
/// virtual-hosted-style request goes to.
///
/// Always prefixed: `endpoint` is the service's, never the bucket's own
/// host. A host that starts with `{bucket}.` cannot tell the two apart (the
/// bucket `nyc3` on `nyc3.digitaloceanspaces.com`, the bucket `s3` on
/// `s3.us-east-1.amazonaws.com`), so it is not guessed at, only warned of.
fn virtual_hosted_endpoint(endpoint: &str, bucket: &str) -> Result<String, ObjectsError> {
    let refuse = |reason| ObjectsError::VirtualHostedEndpoint {
        endpoint: endpoint.to_owned(),
        reason,
    };
    let mut url = reqwest::Url::parse(endpoint).map_err(|_| refuse("not a URL"))?;
    let host = url.host_str().ok_or_else(|| refuse("no host"))?.to_owned();
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    if bare.parse::<std::net::IpAddr>().is_ok() {
        return Err(refuse("an IP address"));
    }
    if !host.contains('.') {
        return Err(refuse("a host name without a domain"));
    }
    if host.starts_with(&format!("{bucket}.")) {
        tracing::warn!(
            endpoint,
            bucket,
            "storage.endpoint starts with the bucket's name: requests go to {bucket}.{host}; \
             give the service's endpoint, not the bucket's own host"
        );
    }
    url.set_host(Some(&format!("{bucket}.{host}")))
        .map_err(|_| refuse("the bucket is not a valid host name part"))?;
    Ok(url.as_str().trim_end_matches('/').to_owned())
}

/// Why a multipart upload's parts did not all go up.
enum PartsFailed {
    File(std::io::Error),
    Store(object_store::Error),
}

/// Sends `source` as the parts of `upload`, [`PART_BYTES`] each (the last
/// shorter), [`PARTS_IN_FLIGHT`] at once, then completes it.
async fn send_parts(
    upload: &mut dyn MultipartUpload,
    source: &mut tokio::fs::File,
) -> Result<(), PartsFailed> {
    let mut in_flight = tokio::task::JoinSet::new();
    loop {
        let mut part = Vec::with_capacity(PART_BYTES);
        // `take` reads up to a part, however the reads split the file.
        let read = (&mut *source)
            .take(PART_BYTES as u64)
            .read_to_end(&mut part)
            .await
            .map_err(PartsFailed::File)?;
        if read == 0 {
            break;
        }
        while in_flight.len() >= PARTS_IN_FLIGHT {
            part_done(in_flight.join_next().await)?;
        }
        in_flight.spawn(upload.put_part(PutPayload::from(part)));
        if read < PART_BYTES {
            break;
        }
    }
    while let Some(done) = in_flight.join_next().await {
        part_done(Some(done))?;
    }
    upload.complete().await.map_err(PartsFailed::Store)?;
    Ok(())
}

type PartJoined = Result<object_store::Result<()>, tokio::task::JoinError>;

fn part_done(joined: Option<PartJoined>) -> Result<(), PartsFailed> {
    match joined {
        None | Some(Ok(Ok(()))) => Ok(()),
        Some(Ok(Err(err))) => Err(PartsFailed::Store(err)),
        Some(Err(source)) => Err(PartsFailed::Store(object_store::Error::JoinError {
            source,
        })),
    }
}

/// Aborts an interrupted multipart upload, removing the parts sent.
async fn abort(upload: &mut dyn MultipartUpload, key: &str) {
    // Bounded: an abort that hangs on stalled storage would otherwise
    // hold a shutdown past its deadline (a request may take 120 s).
    match tokio::time::timeout(ABORT_LIMIT, upload.abort()).await {
        Ok(Ok(())) => {}
        // The parts stay on the server, invisible, until a lifecycle rule
        // removes incomplete uploads; no object appears at the key.
        Ok(Err(err)) => {
            tracing::warn!(key, error = %err, "cannot abort an interrupted multipart upload");
        }
        Err(_) => tracing::warn!(
            key,
            "an interrupted multipart upload's abort did not answer in time"
        ),
    }
}

/// The longest wait for a multipart upload's abort.
const ABORT_LIMIT: Duration = Duration::from_secs(5);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_virtual_hosted_endpoint_gets_the_bucket_in_its_host() {
        let endpoint = |e: &str| virtual_hosted_endpoint(e, "calls").map_err(|e| e.to_string());
        assert_eq!(
            endpoint("https://s3.example.com").unwrap(),
            "https://calls.s3.example.com"
        );
        assert_eq!(
            endpoint("https://nyc3.digitaloceanspaces.com:8443/").unwrap(),
            "https://calls.nyc3.digitaloceanspaces.com:8443"
        );
        // The endpoint is the service's: a host that starts with the
        // bucket's name is not taken for the bucket's own.
        assert_eq!(
            endpoint("https://calls.s3.example.com").unwrap(),
            "https://calls.calls.s3.example.com"
        );
        let nyc3 = virtual_hosted_endpoint("https://nyc3.digitaloceanspaces.com", "nyc3");
        assert_eq!(
            nyc3.map_err(|e| e.to_string()).unwrap(),
            "https://nyc3.nyc3.digitaloceanspaces.com"
        );
        for refused in [
            "http://127.0.0.1:9000",
            "http://localhost:9000",
            "s3.example.com",
        ] {
            let err = endpoint(refused).unwrap_err();
            assert!(err.contains("path_style = true"), "{refused}: {err}");
        }
    }

    #[test]
    fn only_a_403_naming_the_credentials_counts_as_refusing_them() {
        let answer = |code: &str| {
            format!(
                "Server returned non-2xx status code: 403 Forbidden: <Error><Code>{code}</Code></Error>"
            )
        };
        for refused in [
            "SignatureDoesNotMatch",
            "InvalidAccessKeyId",
            "ExpiredToken",
        ] {
            assert!(names_bad_credentials(&answer(refused)), "{refused}");
        }
        // A principal without s3:ListBucket asking for a missing key.
        assert!(!names_bad_credentials(&answer("AccessDenied")));
        assert!(!names_bad_credentials(""));
    }

    #[test]
    fn credentials_come_from_the_environment_and_never_show() {
        let section = StorageSection {
            url: StorageUrl::S3 {
                bucket: "calls".into(),
                prefix: "p".into(),
            },
            endpoint: Some("http://127.0.0.1:9".into()),
            ..StorageSection::default()
        };
        let missing = ObjectStorage::open(&section, &|_| None).unwrap_err();
        assert_eq!(
            missing.to_string(),
            "environment variable AWS_ACCESS_KEY_ID (named by `storage.access_key_id_env`) is not set"
        );
        let env = |var: &str| Some(format!("{var}-s3cr3t"));
        let storage = ObjectStorage::open(&section, &env).unwrap();
        let shown = format!("{storage:?}");
        assert!(!shown.contains("s3cr3t"), "{shown}");
        assert!(shown.contains("s3://calls/p"), "{shown}");
    }
}
