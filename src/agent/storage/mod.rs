//! What a call leaves in object storage, and when it gets there.
//!
//! The [objects](crate::objects) layer knows keys and uploads; this one
//! knows calls. Two writers, each on the durable path of what it stores:
//!
//! - [`StoreCallObjects`], a post-call step of the evaluation job
//!   (`eval:jobs`, at least once, reclaimed from a crashed worker): the
//!   transcript, the profile (when the call was extracted) and the audit
//!   record. Storage down or refusing credentials fails the step
//!   (`PostCallError::Unavailable`) and the job runs again later; a re-run
//!   writes the same bytes at the same keys.
//! - [`RecordingUploader`], in the process that holds the recording spool:
//!   the recording (see its module doc).
//!
//! Each records its keys in the call (`objects` in `call:{id}`), which is
//! also what makes both idempotent, and the audit record is kept one per
//! call and complete by whichever comes last (`audit.rs`). The documents
//! are built from the stored call alone (`documents.rs`); phone numbers in
//! them are hashed.

mod abandoned;
mod audit;
mod documents;
mod error;
mod step;
mod uploader;

pub use abandoned::{ABANDONED_AFTER, ABANDONED_DIR};
pub use error::CallObjectsError;
pub use step::StoreCallObjects;
pub use uploader::{RecordingUploader, ScanReport};
