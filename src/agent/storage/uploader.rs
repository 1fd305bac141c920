//! [`RecordingUploader`]: moves finished recordings from the local spool to
//! object storage.
//!
//! The recorder writes `{spool}/{call_id}.wav.part` while a call runs and
//! renames it to `{call_id}.wav` when the call ends; only the finished name
//! is ever uploaded. The spool is the durable queue: a file stays until it
//! is stored *and* its key is recorded in the call, so storage that is down
//! or refuses the credentials means the recording waits, and a process
//! restarted later finds it at its first scan. The order per file:
//!
//! 1. upload the whole file to `calls/audio/{date}/{call_id}/recording.wav`
//!    (one PUT, or a multipart upload that shows no object until complete;
//!    an interrupted upload is aborted and retried whole at a later scan);
//! 2. record the key in the call (`CallChange::ObjectsStored`);
//! 3. rewrite the audit record if the call's other objects are stored;
//! 4. delete the local file.
//!
//! A crash or failure between any two steps repeats at most the upload, at
//! the same key (the object is replaced, never duplicated); a file whose
//! call already records its recording skips to step 3 (idempotent), so an
//! audit rewrite that failed is done by the next scan.
//!
//! A `.wav.part` nobody is writing and a `.wav` whose call never appears
//! are moved aside after a deadline, and a `.wav` whose call cannot make a
//! key (its id or start time) at once (see `abandoned.rs`).
//!
//! Scans happen at start, when [`notifier`](RecordingUploader::notifier)
//! is notified (the recorder finishing a file), and every `scan_secs`;
//! after a failure the next scan comes sooner, doubling up to that period.
//! When [`run`](RecordingUploader::run) is told to stop it scans once more,
//! within the time it is given.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use futures_util::FutureExt as _;
use futures_util::future::Shared;
use tokio::sync::Notify;

use super::abandoned::{is_abandoned, move_aside};
use crate::metrics::prometheus::Registry;

use super::audit::{call_keys, sync_audit};
use super::error::CallObjectsError;
use crate::objects::{ObjectKind, ObjectStorage};
use crate::store::time::{parse_rfc3339, unix_ms};
use crate::store::{CallChange, CallRecord, PhoneHasher, Store, StoreSettings, StoredObjects};

/// The suffix of a finished recording in the spool.
const FINISHED: &str = ".wav";
/// The suffix of a recording being written.
const PART: &str = ".wav.part";

/// What one scan did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ScanReport {
    /// Recordings uploaded (or found already stored) and removed.
    pub stored: usize,
    /// Recordings left in the spool for a later scan.
    pub waiting: usize,
    /// Files past their deadline moved aside (see `abandoned.rs`).
    pub abandoned: usize,
}

/// What became of one recording a scan reached.
enum Uploaded {
    /// Stored, its key recorded, the file removed.
    Stored,
    /// Its call is not in the store: it waits.
    NoCall,
    /// The scan was cancelled first: it waits.
    Cancelled,
}

/// `step`'s output, or `None` when `cancel` resolves first.
async fn until<T, C>(cancel: Shared<C>, step: impl Future<Output = T>) -> Option<T>
where
    C: Future<Output = ()>,
{
    tokio::select! {
        biased;
        done = step => Some(done),
        () = cancel => None,
    }
}

/// A step of [`RecordingUploader::upload`] that failed, and why.
struct Failed {
    step: Step,
    error: CallObjectsError,
}

/// The steps of one recording's upload, for the logs.
#[derive(Debug, Clone, Copy)]
enum Step {
    ReadCall,
    Upload,
    RecordKey,
    Audit,
}

impl std::fmt::Display for Step {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Step::ReadCall => "reading the call",
            Step::Upload => "uploading the file",
            Step::RecordKey => "recording its key in the call (uploaded again at the same key)",
            Step::Audit => "rewriting the audit record (the recording is stored)",
        })
    }
}

/// Uploads the finished recordings of one spool folder.
pub struct RecordingUploader {
    store: Arc<dyn Store>,
    storage: ObjectStorage,
    hasher: Option<PhoneHasher>,
    spool: PathBuf,
    period: Duration,
    wake: Arc<Notify>,
    metrics: Registry,
    /// The store's call TTL: a waiting recording's call is written again
    /// before it runs out.
    call_ttl: Duration,
}

impl RecordingUploader {
    /// An uploader of the recordings in `spool`, scanning at least every
    /// `period`.
    pub fn new(
        store: Arc<dyn Store>,
        storage: ObjectStorage,
        spool: impl Into<PathBuf>,
        period: Duration,
    ) -> Self {
        RecordingUploader {
            store,
            storage,
            hasher: None,
            spool: spool.into(),
            period: period.max(Duration::from_millis(100)),
            wake: Arc::new(Notify::new()),
            metrics: super::abandoned::registry(),
            call_ttl: StoreSettings::default().call_ttl,
        }
    }

    /// Phone numbers in the audit record are hashed with `hasher`.
    #[must_use]
    pub fn with_phone_hasher(mut self, hasher: Option<PhoneHasher>) -> Self {
        self.hasher = hasher;
        self
    }

    /// The store keeps a call `ttl` after its last write (`[context]
    /// call_ttl_secs`; 48 h by default).
    #[must_use]
    pub fn with_call_ttl(mut self, ttl: Duration) -> Self {
        self.call_ttl = ttl;
        self
    }

    /// Notify this when a recording is finished: the uploader scans at
    /// once.
    pub fn notifier(&self) -> Arc<Notify> {
        Arc::clone(&self.wake)
    }

    /// Scans until `stop` resolves, then once more: the recordings of the
    /// calls that ended meanwhile go up before the process exits. `cancel`
    /// bounds all of it (a process being stopped has a deadline): an
    /// upload still going then is given up (a multipart upload aborted),
    /// and its file, with any not yet scanned, stays for the next start.
    ///
    /// A server stops its uploader once its calls have drained, not at the
    /// signal: their recordings are finished during the drain.
    pub async fn run(&self, stop: impl Future<Output = ()>, cancel: impl Future<Output = ()>) {
        tokio::pin!(stop);
        let cancel = cancel.shared();
        let mut retry = Duration::from_secs(1);
        let mut failing = false;
        tracing::info!(spool = %self.spool.display(), storage = %self.storage.url(), "recording uploader started");
        loop {
            // Not raced against `stop`: an upload under way is finished
            // (or cancelled, and aborted), never dropped midway.
            let report = self.scan_until(SystemTime::now(), cancel.clone()).await;
            let wait = if report.waiting == 0 {
                if std::mem::take(&mut failing) {
                    tracing::info!("every waiting recording is stored");
                }
                retry = Duration::from_secs(1);
                self.period
            } else {
                failing = true;
                let wait = retry.min(self.period);
                retry = (retry * 2).min(self.period);
                wait
            };
            tokio::select! {
                biased;
                () = &mut stop => break,
                () = cancel.clone() => break,
                () = self.wake.notified() => {}
                () = tokio::time::sleep(wait) => {}
            }
        }
        let last = self.scan_until(SystemTime::now(), cancel).await;
        if last.waiting > 0 {
            tracing::warn!(
                waiting = last.waiting,
                spool = %self.spool.display(),
                "recordings still in the spool at exit: uploaded when a process starts on this spool again"
            );
        }
        tracing::info!("recording uploader stopped");
    }

    /// The uploader's metrics in the Prometheus text format.
    pub fn render_metrics(&self) -> String {
        self.metrics.render()
    }

    /// Uploads every finished recording in the spool once.
    pub async fn scan(&self) -> ScanReport {
        self.scan_at(SystemTime::now()).await
    }

    /// [`Self::scan`] as of `now`, which decides what is past its deadline.
    pub async fn scan_at(&self, now: SystemTime) -> ScanReport {
        self.scan_until(now, std::future::pending::<()>().shared())
            .await
    }

    /// [`Self::scan_at`] until `cancel` resolves: the upload then under way
    /// is given up, and it and the files not reached count as waiting.
    async fn scan_until<C>(&self, now: SystemTime, cancel: Shared<C>) -> ScanReport
    where
        C: Future<Output = ()>,
    {
        let mut report = ScanReport::default();
        for part in self.spooled(PART) {
            if is_abandoned(&part.1, now) {
                move_aside(&self.spool, &part.1, "part", &self.metrics);
                report.abandoned += 1;
            }
        }
        let finished = self.spooled(FINISHED);
        let count = finished.len();
        for (done, (call_id, file)) in finished.into_iter().enumerate() {
            if cancel.clone().now_or_never().is_some() {
                report.waiting += count - done;
                break;
            }
            match self.upload(&call_id, &file, cancel.clone()).await {
                Ok(Uploaded::Stored) => report.stored += 1,
                Ok(Uploaded::NoCall) if is_abandoned(&file, now) => {
                    move_aside(&self.spool, &file, "orphan", &self.metrics);
                    report.abandoned += 1;
                }
                Ok(Uploaded::NoCall) => report.waiting += 1,
                Ok(Uploaded::Cancelled) => {
                    report.waiting += count - done;
                    break;
                }
                Err(Failed {
                    error: CallObjectsError::Key(err),
                    ..
                }) => {
                    // The call's id or start cannot make a key: no later
                    // scan could upload it either.
                    tracing::error!(call_id, error = %err, "the recording's key cannot be made; moved aside");
                    move_aside(&self.spool, &file, "unkeyed", &self.metrics);
                    report.abandoned += 1;
                }
                Err(Failed { step, error }) => {
                    report.waiting += 1;
                    if matches!(&error, CallObjectsError::Objects(e) if e.is_refused()) {
                        tracing::error!(call_id, %step, %error, "object storage refuses the credentials; the recording waits in the spool");
                    } else {
                        tracing::warn!(call_id, %step, %error, "a recording's upload did not finish; it waits in the spool for the next scan");
                    }
                }
            }
        }
        report
    }

    /// Uploads one recording, unless `cancel` resolves first: every step
    /// but the upload itself (which aborts what it sent) is then dropped
    /// where it is, and the file stays for a later scan (each step is
    /// repeated safely).
    async fn upload<C>(
        &self,
        call_id: &str,
        file: &Path,
        cancel: Shared<C>,
    ) -> Result<Uploaded, Failed>
    where
        C: Future<Output = ()>,
    {
        let at = |step| move |error| Failed { step, error };
        let Some(call) = until(cancel.clone(), self.store.call(call_id)).await else {
            return Ok(Uploaded::Cancelled);
        };
        let call = call
            .map_err(CallObjectsError::from)
            .map_err(at(Step::ReadCall))?;
        let Some(call) = call else {
            tracing::warn!(
                call_id,
                "recording of a call the store does not hold; it waits in the spool"
            );
            return Ok(Uploaded::NoCall);
        };
        if call.objects.recording.is_none() {
            if until(cancel.clone(), self.keep_call(&call)).await.is_none() {
                return Ok(Uploaded::Cancelled);
            }
            let key = call_keys(&call)
                .map_err(at(Step::Upload))?
                .key(ObjectKind::Recording);
            let bytes = self
                .storage
                .upload_file_until(&key, file, cancel.clone())
                .await
                .map_err(CallObjectsError::from)
                .map_err(at(Step::Upload))?;
            let recorded = StoredObjects {
                recording: Some(key.clone()),
                ..StoredObjects::default()
            };
            let change = CallChange::ObjectsStored(recorded);
            let Some(written) =
                until(cancel.clone(), self.store.update_call(call_id, &change)).await
            else {
                return Ok(Uploaded::Cancelled);
            };
            written
                .map_err(CallObjectsError::from)
                .map_err(at(Step::RecordKey))?;
            tracing::info!(call_id, key, bytes, "recording stored");
        }
        // Also when an earlier scan recorded the key: its audit rewrite
        // may have failed, and this file is what brings the uploader back
        // to it. Idempotent (the same record at the same key).
        let audit = sync_audit(&*self.store, &self.storage, self.hasher.as_ref(), call_id);
        let Some(audited) = until(cancel, audit).await else {
            return Ok(Uploaded::Cancelled);
        };
        audited.map_err(at(Step::Audit))?;
        if let Err(err) = std::fs::remove_file(file) {
            tracing::warn!(call_id, file = %file.display(), error = %err, "cannot remove an uploaded recording");
        }
        Ok(Uploaded::Stored)
    }

    /// Keeps the call of a recording still to upload in the store: the key
    /// is made from it and recorded in it, so were it to expire (a storage
    /// outage longer than the call TTL) the recording could never go up.
    /// Written again (`CallChange::Touched`, which refreshes the TTL) once a
    /// quarter of the TTL has passed since its last write; a failure is
    /// only logged, the next scan tries again.
    async fn keep_call(&self, call: &CallRecord) {
        let written = parse_rfc3339(&call.updated_at).unwrap_or(0);
        let age = Duration::from_millis(unix_ms().saturating_sub(written));
        if age < self.call_ttl / 4 {
            return;
        }
        match self
            .store
            .update_call(&call.call_id, &CallChange::Touched)
            .await
        {
            Ok(_) => {
                tracing::debug!(call_id = %call.call_id, "the call of a waiting recording is kept")
            }
            Err(err) => {
                tracing::warn!(call_id = %call.call_id, error = %err, "cannot keep the call of a waiting recording in the store")
            }
        }
    }

    /// The files of the spool ending in `suffix`: `(call_id, path)`.
    fn spooled(&self, suffix: &str) -> Vec<(String, PathBuf)> {
        let entries = match std::fs::read_dir(&self.spool) {
            Ok(entries) => entries,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Vec::new(),
            Err(err) => {
                tracing::warn!(spool = %self.spool.display(), error = %err, "cannot read the recording spool");
                return Vec::new();
            }
        };
        let mut found: Vec<(String, PathBuf)> = entries
            .flatten()
            .filter_map(|entry| {
                let name = entry.file_name().into_string().ok()?;
                let call_id = name.strip_suffix(suffix)?;
                let is_file = entry.file_type().is_ok_and(|t| t.is_file());
                (is_file && !call_id.is_empty()).then(|| (call_id.to_owned(), entry.path()))
            })
            .collect();
        found.sort();
        found
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agent::storage::{ABANDONED_AFTER, ABANDONED_DIR};
    use crate::objects::{StorageSection, StorageUrl};
    use crate::store::MemoryStore;
    use crate::store::time::rfc3339;

    /// A local-folder storage and an uploader of `spool` into it.
    fn uploader(spool: &Path, objects: &Path) -> (Arc<dyn Store>, RecordingUploader) {
        let section = StorageSection {
            url: StorageUrl::Folder(objects.to_owned()),
            ..StorageSection::default()
        };
        let storage = ObjectStorage::open(&section, &|_| None).unwrap();
        let store: Arc<dyn Store> = Arc::new(MemoryStore::new(Default::default()));
        let uploader =
            RecordingUploader::new(Arc::clone(&store), storage, spool, Duration::from_secs(10));
        (store, uploader)
    }

    /// A started call in `store`, its transcript stored at `transcript`.
    async fn stored_call(store: &dyn Store, id: &str, transcript: Option<&str>) {
        let call = CallRecord::pending(id, "twilio", Default::default(), Default::default(), 0);
        assert!(store.create_call(&call).await.unwrap());
        let started = CallChange::Started {
            at_ms: 1_767_225_600_000,
        };
        store.update_call(id, &started).await.unwrap();
        let stored = StoredObjects {
            transcript: transcript.map(str::to_owned),
            ..StoredObjects::default()
        };
        store
            .update_call(id, &CallChange::ObjectsStored(stored))
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn an_audit_rewrite_that_failed_is_done_by_the_next_scan_before_the_file_goes() {
        let spool = tempfile::tempdir().unwrap();
        let objects = tempfile::tempdir().unwrap();
        let (store, uploader) = uploader(spool.path(), objects.path());
        stored_call(&*store, "c1", Some("calls/transcripts/t.json")).await;
        let file = spool.path().join("c1.wav");
        std::fs::write(&file, b"RIFF").unwrap();
        // A file where the audit folder goes: the audit record cannot be
        // written, the recording can.
        std::fs::write(objects.path().join("audit"), b"").unwrap();

        let report = uploader.scan().await;
        assert_eq!((report.stored, report.waiting), (0, 1));
        assert!(file.exists(), "kept until its audit record is written");
        let call = store.call("c1").await.unwrap().unwrap();
        let recording = call.objects.recording.clone().unwrap();
        assert!(objects.path().join(&recording).is_file());
        assert!(call.objects.audit.is_none());

        std::fs::remove_file(objects.path().join("audit")).unwrap();
        let report = uploader.scan().await;
        assert_eq!((report.stored, report.waiting), (1, 0));
        assert!(!file.exists());
        let call = store.call("c1").await.unwrap().unwrap();
        let audit = call.objects.audit.unwrap();
        let written: serde_json::Value =
            serde_json::from_slice(&std::fs::read(objects.path().join(audit)).unwrap()).unwrap();
        assert_eq!(written["objects"]["recording"], recording.as_str());
    }

    #[tokio::test]
    async fn the_call_of_a_recording_waiting_on_storage_is_kept_past_its_ttl() {
        let spool = tempfile::tempdir().unwrap();
        let objects = tempfile::tempdir().unwrap();
        let (store, uploader) = uploader(spool.path(), objects.path());
        let uploader = uploader.with_call_ttl(Duration::from_secs(3600));
        // Storage down: a file where the recordings' folder goes.
        std::fs::write(objects.path().join("calls"), b"").unwrap();
        let long_ago = "2026-01-01T00:00:00.000Z".to_owned();
        // Written a minute ago: well within its TTL.
        let recently = rfc3339(unix_ms() - 60_000);
        for (id, written) in [("old", &long_ago), ("fresh", &recently)] {
            let mut call =
                CallRecord::pending(id, "twilio", Default::default(), Default::default(), 0);
            call.started_at = Some(long_ago.clone());
            call.updated_at = written.clone();
            assert!(store.create_call(&call).await.unwrap());
            std::fs::write(spool.path().join(format!("{id}.wav")), b"RIFF").unwrap();
        }

        let report = uploader.scan().await;
        assert_eq!((report.stored, report.waiting), (0, 2));
        let old = store.call("old").await.unwrap().unwrap();
        let since = unix_ms() - parse_rfc3339(&old.updated_at).unwrap();
        assert!(since < 60_000, "written again: {}", old.updated_at);
        let fresh = store.call("fresh").await.unwrap().unwrap();
        assert_eq!(fresh.updated_at, recently, "not written on every scan");
    }

    #[tokio::test]
    async fn a_recording_whose_call_cannot_make_a_key_is_moved_aside_at_once() {
        let spool = tempfile::tempdir().unwrap();
        let objects = tempfile::tempdir().unwrap();
        let (store, uploader) = uploader(spool.path(), objects.path());
        stored_call(&*store, "a b", None).await;
        std::fs::write(spool.path().join("a b.wav"), b"RIFF").unwrap();

        let report = uploader.scan().await;
        assert_eq!((report.waiting, report.abandoned), (0, 1));
        assert!(spool.path().join(ABANDONED_DIR).join("a b.wav").exists());
        assert!(
            uploader
                .render_metrics()
                .contains("voxpipe_recordings_abandoned_total{kind=\"unkeyed\"} 1")
        );
        assert_eq!(uploader.scan().await, ScanReport::default());
    }

    #[tokio::test]
    async fn unfinished_and_orphaned_recordings_are_moved_aside_after_their_deadline() {
        let spool = tempfile::tempdir().unwrap();
        let objects = tempfile::tempdir().unwrap();
        let section = StorageSection {
            url: StorageUrl::Folder(objects.path().to_owned()),
            ..StorageSection::default()
        };
        let storage = ObjectStorage::open(&section, &|_| None).unwrap();
        let store = Arc::new(MemoryStore::new(Default::default()));
        let uploader =
            RecordingUploader::new(store, storage, spool.path(), Duration::from_secs(10));
        // A crashed process's unfinished file, and a finished one whose
        // call the store does not hold.
        std::fs::write(spool.path().join("crashed.wav.part"), b"RIFF").unwrap();
        std::fs::write(spool.path().join("orphan.wav"), b"RIFF").unwrap();

        let now = SystemTime::now();
        let report = uploader.scan_at(now).await;
        assert_eq!(
            (report.waiting, report.abandoned),
            (1, 0),
            "within the deadline: kept"
        );
        assert!(spool.path().join("crashed.wav.part").exists());

        let later = now + ABANDONED_AFTER + Duration::from_secs(1);
        let report = uploader.scan_at(later).await;
        assert_eq!((report.waiting, report.abandoned), (0, 2));
        let aside = spool.path().join(ABANDONED_DIR);
        assert!(aside.join("crashed.wav.part").exists());
        assert!(aside.join("orphan.wav").exists());
        assert!(!spool.path().join("orphan.wav").exists());
        assert_eq!(uploader.scan_at(later).await, ScanReport::default(), "once");
        let metrics = uploader.render_metrics();
        for line in [
            "voxpipe_recordings_abandoned_total{kind=\"part\"} 1",
            "voxpipe_recordings_abandoned_total{kind=\"orphan\"} 1",
        ] {
            assert!(metrics.contains(line), "{line} in {metrics}");
        }
    }
}
