//! [`SpoolFile`]: one recording on disk, `{dir}/{call_id}.wav.part` while
//! it is written, renamed to `{dir}/{call_id}.wav` once complete.
//!
//! The WAV is streamed through hound: its writer takes samples as they
//! come and patches the header's sizes at the end (`finalize`), so nothing
//! but the current block is held in memory. The finished file is synced
//! before the rename, and the rename is the only way a `.wav` appears: an
//! uploader that picks `{call_id}.wav` files from the directory only ever
//! sees complete ones; the directory is synced after the rename. On
//! failure, or when the session gave up waiting before the rename, the
//! partial file is removed. The directory (when made here) and the files
//! are readable by their owner only.

use std::fs::{DirBuilder, File, OpenOptions};
use std::io::BufWriter;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

/// A WAV data chunk holds at most this many bytes (its size is 32 bits;
/// the header and the RIFF size field take the rest).
const WAV_DATA_LIMIT: u64 = u32::MAX as u64 - 64;

/// Why the recording could not be written, for the call record and logs.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SpoolError {
    /// The call id cannot be a file name.
    #[error("call id {0:?} cannot name a file (letters, digits, `-`, `_`, `.` only)")]
    CallId(String),
    /// The file system refused.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// hound refused (not an I/O error).
    #[error("{path}: {source}")]
    Wav {
        /// The file.
        path: PathBuf,
        /// Why.
        source: hound::Error,
    },
}

/// A recording being written.
pub(crate) struct SpoolFile {
    part: PathBuf,
    done: PathBuf,
    wav: hound::WavWriter<BufWriter<File>>,
    data_bytes: u64,
}

impl SpoolFile {
    /// Creates `{dir}/{call_id}.wav.part` (and `dir`), a 16-bit stereo WAV
    /// at `rate` Hz.
    pub(crate) fn create(dir: &Path, call_id: &str, rate: u32) -> Result<Self, SpoolError> {
        let usable = !call_id.is_empty()
            && !call_id.starts_with('.')
            && call_id.len() <= 128
            && call_id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
        if !usable {
            return Err(SpoolError::CallId(call_id.to_owned()));
        }
        private_dir_all(dir).map_err(|source| SpoolError::Io {
            path: dir.to_owned(),
            source,
        })?;
        let part = dir.join(format!("{call_id}.wav.part"));
        let done = dir.join(format!("{call_id}.wav"));
        let file = private_file(&part).map_err(|source| SpoolError::Io {
            path: part.clone(),
            source,
        })?;
        let spec = hound::WavSpec {
            channels: 2,
            sample_rate: rate,
            bits_per_sample: 16,
            sample_format: hound::SampleFormat::Int,
        };
        let writer = BufWriter::with_capacity(64 * 1024, file);
        match hound::WavWriter::new(writer, spec) {
            Ok(wav) => Ok(SpoolFile {
                part,
                done,
                wav,
                data_bytes: 0,
            }),
            Err(err) => {
                let err = wrap(&part, err);
                remove(&part);
                Err(err)
            }
        }
    }

    /// Appends interleaved stereo samples. `Ok(false)`: the file is full
    /// (the WAV format's 4 GiB), nothing was written.
    pub(crate) fn write(&mut self, interleaved: &[i16]) -> Result<bool, SpoolError> {
        let bytes = interleaved.len() as u64 * 2;
        if self.data_bytes + bytes > WAV_DATA_LIMIT {
            return Ok(false);
        }
        let mut block = self.wav.get_i16_writer(interleaved.len() as u32);
        for &sample in interleaved {
            block.write_sample(sample);
        }
        block.flush().map_err(|e| wrap(&self.part, e))?;
        self.data_bytes += bytes;
        Ok(true)
    }

    /// Fixes the header, syncs the file and renames it to its final name,
    /// which it returns, then syncs the directory (the rename durable
    /// before the uploader may delete the copy it stored). `Ok(None)` when
    /// `abandoned` is set by then: the file is removed instead, so one
    /// given up on never appears under its final name. On failure the
    /// partial file is removed.
    pub(crate) fn finish(self, abandoned: &AtomicBool) -> Result<Option<PathBuf>, SpoolError> {
        let SpoolFile {
            part, done, wav, ..
        } = self;
        let io = |source| SpoolError::Io {
            path: part.clone(),
            source,
        };
        let synced = wav
            .finalize()
            .map_err(|e| wrap(&part, e))
            // Durable before it is visible under its final name.
            .and_then(|()| File::open(&part).and_then(|f| f.sync_all()).map_err(io));
        // Checked after the sync, the slow part on a stalled disk: the
        // session may have stopped waiting meanwhile.
        let finished = synced.and_then(|()| {
            if abandoned.load(Ordering::SeqCst) {
                return Ok(false);
            }
            std::fs::rename(&part, &done).map_err(io)?;
            sync_dir(&done);
            Ok(true)
        });
        match finished {
            Ok(true) => Ok(Some(done)),
            Ok(false) => {
                remove(&part);
                Ok(None)
            }
            Err(err) => {
                remove(&part);
                Err(err)
            }
        }
    }

    /// Gives up: the partial file is removed.
    pub(crate) fn discard(self) {
        let SpoolFile { part, wav, .. } = self;
        drop(wav);
        remove(&part);
    }
}

/// Makes `path` and its parents as needed, those made readable by their
/// owner only (recordings are people's voices).
fn private_dir_all(path: &Path) -> std::io::Result<()> {
    let mut builder = DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(path)
}

/// Creates (or truncates) `path` for writing, readable by its owner only.
fn private_file(path: &Path) -> std::io::Result<File> {
    let mut options = OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path)
}

fn remove(part: &Path) {
    if let Err(err) = std::fs::remove_file(part)
        && err.kind() != std::io::ErrorKind::NotFound
    {
        tracing::warn!(file = %part.display(), error = %err, "cannot remove a partial recording");
    }
}

/// Keeps I/O errors as I/O errors (their message is what people need).
fn wrap(path: &Path, err: hound::Error) -> SpoolError {
    match err {
        hound::Error::IoError(source) => SpoolError::Io {
            path: path.to_owned(),
            source,
        },
        source => SpoolError::Wav {
            path: path.to_owned(),
            source,
        },
    }
}

/// Makes the rename to `done` durable (the directory's entry), where the
/// platform can: a crash after it then never leaves only the `.part`. The
/// file is under its final name whatever this says, so a failure is only
/// logged: the recording is there to upload.
fn sync_dir(done: &Path) {
    #[cfg(unix)]
    if let Some(dir) = done.parent()
        && let Err(err) = File::open(dir).and_then(|d| d.sync_all())
    {
        tracing::warn!(dir = %dir.display(), error = %err, "cannot sync the recording spool's directory");
    }
    #[cfg(not(unix))]
    let _ = done;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_finished_file_is_a_stereo_wav_under_its_final_name_only() {
        let dir = tempfile::tempdir().unwrap();
        let mut file = SpoolFile::create(dir.path(), "call-1", 8_000).unwrap();
        assert!(dir.path().join("call-1.wav.part").exists());
        assert!(file.write(&[1, 2, 3, 4]).unwrap());
        let done = file.finish(&AtomicBool::new(false)).unwrap().unwrap();
        assert_eq!(done, dir.path().join("call-1.wav"));
        assert!(!dir.path().join("call-1.wav.part").exists());
        let wav = crate::audio::wav::read_wav(&done).unwrap();
        assert_eq!((wav.channels, wav.sample_rate), (2, 8_000));
        assert_eq!(wav.samples, [1, 2, 3, 4]);
    }

    #[test]
    fn a_file_given_up_on_before_its_rename_never_takes_its_final_name() {
        let dir = tempfile::tempdir().unwrap();
        let mut file = SpoolFile::create(dir.path(), "call-3", 8_000).unwrap();
        assert!(file.write(&[1, 2]).unwrap());
        assert_eq!(file.finish(&AtomicBool::new(true)).unwrap(), None);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[cfg(unix)]
    #[test]
    fn the_spool_and_its_files_are_their_owners_only() {
        use std::os::unix::fs::PermissionsExt as _;
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("recordings");
        let file = SpoolFile::create(&dir, "call-4", 8_000).unwrap();
        let mode = |path: &Path| std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(&dir.join("call-4.wav.part")), 0o600);
        let done = file.finish(&AtomicBool::new(false)).unwrap().unwrap();
        assert_eq!(mode(&done), 0o600);
    }

    #[test]
    fn a_discarded_file_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let mut file = SpoolFile::create(dir.path(), "call-2", 8_000).unwrap();
        assert!(file.write(&[0; 64]).unwrap());
        file.discard();
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn call_ids_that_are_not_plain_file_names_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        for bad in ["", "../x", "a/b", ".hidden", "a b"] {
            assert!(
                matches!(
                    SpoolFile::create(dir.path(), bad, 8_000),
                    Err(SpoolError::CallId(_))
                ),
                "{bad:?}"
            );
        }
    }
}
