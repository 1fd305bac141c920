//! What can go wrong with object storage, sorted by what the caller does
//! about it.

use std::path::PathBuf;

/// An object storage operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ObjectsError {
    /// A variable a `*_env` key names is not set.
    #[error("environment variable {var} (named by `storage.{key}`) is not set")]
    MissingEnv {
        /// The key, e.g. `access_key_id_env`.
        key: &'static str,
        /// The variable.
        var: String,
    },
    /// The store could not be set up from `[storage]`.
    #[error("cannot open {url}: {source}")]
    Open {
        /// The storage URL.
        url: String,
        /// Why.
        source: object_store::Error,
    },
    /// `path_style = false` with an `endpoint` whose host cannot take the
    /// bucket in front of it (an IP address, a bare `localhost`).
    #[error(
        "`storage.endpoint` {endpoint} cannot take virtual-hosted-style requests ({reason}); set `storage.path_style = true`"
    )]
    VirtualHostedEndpoint {
        /// The endpoint.
        endpoint: String,
        /// Why.
        reason: &'static str,
    },
    /// The local folder could not be created.
    #[error("cannot create the storage folder {path}: {source}")]
    Folder {
        /// The folder.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The key cannot name an object.
    #[error("`{key}` cannot be an object key: {reason}")]
    InvalidKey {
        /// The key.
        key: String,
        /// Why.
        reason: String,
    },
    /// The storage refused the credentials (401 or 403): nothing will be
    /// stored until they are fixed.
    #[error("storage refuses the credentials ({key}): {source}")]
    Refused {
        /// The key being read or written.
        key: String,
        /// The storage's answer.
        source: object_store::Error,
    },
    /// The readiness probe was refused (403) for a reason other than the
    /// credentials (`AccessDenied`): on AWS a principal without
    /// `s3:ListBucket` gets that for any missing key, so whether uploads
    /// work is not proven either way.
    #[error(
        "storage answers 403 AccessDenied for the missing key {key}: the credentials are not proven \
         (a principal without s3:ListBucket gets 403 for any missing key; grant it for /health to tell)"
    )]
    NotProven {
        /// The probe's key.
        key: String,
    },
    /// No such object.
    #[error("no object {key}")]
    NotFound {
        /// The key.
        key: String,
    },
    /// The storage failed or could not be reached: try again later.
    #[error("storage unavailable ({key}): {source}")]
    Unavailable {
        /// The key being read or written.
        key: String,
        /// Why.
        source: object_store::Error,
    },
    /// The upload was given up before it finished (the process is
    /// stopping): no object appeared, a multipart upload was aborted.
    #[error("upload of {key} cancelled")]
    Cancelled {
        /// The key being written.
        key: String,
    },
    /// A local file to upload could not be read.
    #[error("cannot read {path}: {source}")]
    File {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

impl ObjectsError {
    /// True when the storage refused the credentials.
    pub fn is_refused(&self) -> bool {
        matches!(self, ObjectsError::Refused { .. })
    }

    /// `err` from an operation on `key`, sorted.
    pub(crate) fn from_store(key: &str, err: object_store::Error) -> ObjectsError {
        let key = key.to_owned();
        match err {
            object_store::Error::NotFound { .. } => ObjectsError::NotFound { key },
            object_store::Error::PermissionDenied { .. }
            | object_store::Error::Unauthenticated { .. } => {
                ObjectsError::Refused { key, source: err }
            }
            _ => ObjectsError::Unavailable { key, source: err },
        }
    }
}
