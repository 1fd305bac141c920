//! Spool files nobody will finish or upload: a `.wav.part` left by a
//! process killed mid-call (its writer is gone: nothing renames it), and a
//! finished `.wav` whose call the store never held or no longer holds.
//!
//! Each is given [`ABANDONED_AFTER`] since it was last written (past the
//! 48 h call TTL: a call record can no longer appear or come back after
//! it), then moved aside to `{spool}/abandoned/`, with one warning and
//! `voxpipe_recordings_abandoned_total{kind}`; scans never look there. It
//! is moved, not deleted, so that a misconfigured store (every call
//! "missing") costs no audio; the operator empties the folder (it holds
//! people's voices: keep it no longer than the calls themselves).
//!
//! A `.wav` whose call is held but cannot make an object key (an id or a
//! start time no key can be made of: permanent) is moved aside at once,
//! counted as `unkeyed`.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use crate::metrics::prometheus::Registry;

/// How long a spool file that cannot be uploaded waits, since it was last
/// written, before it is moved aside: past the 48 h call TTL.
pub const ABANDONED_AFTER: Duration = Duration::from_secs(72 * 3600);

/// The folder, inside the spool, abandoned files are moved to.
pub const ABANDONED_DIR: &str = "abandoned";

const ABANDONED_TOTAL: (&str, &str) = (
    "voxpipe_recordings_abandoned_total",
    "Spool recordings moved aside unuploaded, by kind (part: never finished; orphan: no call; unkeyed: no object key).",
);

/// Whether `file`, last written at its modification time, is past its
/// deadline at `now`.
pub(super) fn is_abandoned(file: &Path, now: SystemTime) -> bool {
    let written = std::fs::metadata(file).and_then(|m| m.modified());
    written.is_ok_and(|at| {
        now.duration_since(at)
            .is_ok_and(|age| age >= ABANDONED_AFTER)
    })
}

/// Moves `file` to `{spool}/abandoned/`, warning once and counting it as
/// `kind` (`part`, `orphan` or `unkeyed`).
pub(super) fn move_aside(spool: &Path, file: &Path, kind: &str, metrics: &Registry) {
    let Some(name) = file.file_name() else {
        return;
    };
    let dir = spool.join(ABANDONED_DIR);
    let to: PathBuf = dir.join(name);
    // Its owner's only, as the spool's files are.
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    let moved = builder
        .create(&dir)
        .and_then(|()| std::fs::rename(file, &to));
    match moved {
        Ok(()) => {
            tracing::warn!(file = %file.display(), to = %to.display(), kind, "a recording that cannot be uploaded is moved aside");
            let (name, help) = ABANDONED_TOTAL;
            metrics.counter(name, help, &[("kind", kind)]).inc();
        }
        Err(err) => {
            tracing::warn!(file = %file.display(), error = %err, "cannot move an abandoned recording aside");
        }
    }
}

/// A registry with the family declared, so a scrape lists it at once.
pub(super) fn registry() -> Registry {
    let registry = Registry::new();
    registry.declare_counter(ABANDONED_TOTAL.0, ABANDONED_TOTAL.1);
    registry
}
