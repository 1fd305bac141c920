//! Object storage: where a call's recording, transcript, profile and audit
//! record are kept for good, in a local folder or an S3-compatible bucket
//! (`[storage]`, [`StorageSection`]), through the `object_store` crate
//! (its S3 client signs with SigV4 over `reqwest`, with `ring`, the crypto
//! the rest of voxpipe already uses).
//!
//! This module knows objects and keys, not calls: the agent layer decides
//! what to store and when (`agent::storage`).
//!
//! # Keys
//!
//! [`CallKeys`] gives seed 002's layout, computed from the stored call
//! (its id and start time) so that every writer of a call, and every
//! re-run, names the same objects.
//!
//! # Never a partial object
//!
//! Every write replaces a whole object or leaves the key as it was:
//!
//! - Up to [`PART_BYTES`], one PUT. S3 makes an object visible only once
//!   its PUT has been received completely (with a matching length and
//!   checksum); the local folder writes a temporary file and renames it
//!   into place.
//! - Larger files go as a multipart upload. S3 shows nothing at the key
//!   until `CompleteMultipartUpload`; parts uploaded before an interruption
//!   are never an object. A failed part or completion aborts the upload
//!   (`WriteMultipart::finish` does; so does [`ObjectStorage::upload_file`]
//!   when reading the file fails). If the abort itself cannot reach the
//!   storage, the orphan parts stay invisible until the bucket's lifecycle
//!   rule for incomplete uploads removes them. The local folder stages the
//!   parts in a temporary file renamed on completion.
//!
//! An interrupted upload is therefore retried whole, by the caller's own
//! schedule: `object_store`'s retries inside one request are kept short
//! (a few attempts, 15 s) so that a storage outage fails fast and the
//! durable layer above (the evaluation job, the recording spool) tries
//! again later instead of holding a worker.
//!
//! # Errors
//!
//! [`ObjectsError`] sorts failures by what to do: refused credentials
//! (`Refused`: nothing works until an operator fixes them; `/health` says
//! so), unavailable (try later), not found, and set-up mistakes.

mod config;
mod error;
mod keys;
mod storage;

pub use config::{DEFAULT_FOLDER, StorageSection, StorageUrl};
pub use error::ObjectsError;
pub use keys::{CallKeys, KeyError, ObjectKind};
pub use storage::{ObjectStorage, PART_BYTES, endpoint_problem};
