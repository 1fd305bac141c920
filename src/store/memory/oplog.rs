//! The embedded store's optional file: an append-only log of [`Op`]s, one
//! JSON object per line.
//!
//! Every process that opens the file replays it, and before each operation
//! reads what other processes appended since (so `voxpipe tactics add` run
//! beside a server is seen by the server's next session). Writers hold an
//! exclusive lock on the file while they catch up, decide and append, so a
//! conditional write (append a turn only at its index) is decided on the
//! latest state; readers hold a shared lock while they catch up, so a
//! batch is never read half-written. Appends go to the page cache without `fsync`: the log
//! survives a crash of the process, not of the machine. It is never
//! compacted; expired keys are dropped when replayed.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use super::keyspace::Op;
use crate::store::StoreError;

/// An open log.
#[derive(Debug)]
pub(super) struct OpLog {
    path: PathBuf,
    file: File,
    /// Bytes read and applied so far (always at a line boundary).
    offset: u64,
    /// Lines read so far, for messages.
    lines: u64,
}

impl OpLog {
    /// Opens (creating) the log at `path`, positioned at its start.
    pub(super) fn open(path: &Path) -> Result<OpLog, StoreError> {
        let file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(path)
            .map_err(|source| file_error(path, source))?;
        Ok(OpLog {
            path: path.to_owned(),
            file,
            offset: 0,
            lines: 0,
        })
    }

    /// Runs `f` holding the log's exclusive lock (other processes wait).
    pub(super) fn locked<R>(
        &mut self,
        f: impl FnOnce(&mut Self) -> Result<R, StoreError>,
    ) -> Result<R, StoreError> {
        self.file
            .lock()
            .map_err(|source| file_error(&self.path, source))?;
        let result = f(self);
        if let Err(err) = self.file.unlock() {
            tracing::warn!(file = %self.path.display(), error = %err, "cannot unlock the embedded store");
        }
        result
    }

    /// [`OpLog::catch_up`] holding the log's shared lock, for a reader:
    /// a writer's batch is never seen half-written, so one that fails and
    /// is taken back (see [`OpLog::append`]) was never applied here.
    pub(super) fn catch_up_shared(&mut self, apply: impl FnMut(Op)) -> Result<(), StoreError> {
        self.file
            .lock_shared()
            .map_err(|source| file_error(&self.path, source))?;
        let result = self.catch_up(apply);
        if let Err(err) = self.file.unlock() {
            tracing::warn!(file = %self.path.display(), error = %err, "cannot unlock the embedded store");
        }
        result
    }

    /// Applies every complete line appended since the last call. A line that
    /// is not a valid op is skipped with a warning naming it.
    pub(super) fn catch_up(&mut self, mut apply: impl FnMut(Op)) -> Result<(), StoreError> {
        let len = self
            .file
            .metadata()
            .map_err(|source| file_error(&self.path, source))?
            .len();
        if len <= self.offset {
            return Ok(());
        }
        let mut tail = Vec::with_capacity(usize::try_from(len - self.offset).unwrap_or(0));
        self.file
            .seek(SeekFrom::Start(self.offset))
            .and_then(|_| (&self.file).take(len - self.offset).read_to_end(&mut tail))
            .map_err(|source| file_error(&self.path, source))?;
        // A line still being written by another process ends without a
        // newline: leave it for next time.
        let Some(end) = tail.iter().rposition(|&b| b == b'\n') else {
            return Ok(());
        };
        for line in tail[..end].split(|&b| b == b'\n') {
            self.lines += 1;
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            match serde_json::from_slice::<Op>(line) {
                Ok(op) => apply(op),
                Err(err) => tracing::warn!(
                    file = %self.path.display(),
                    line = self.lines,
                    error = %err,
                    "skipping an unreadable line of the embedded store"
                ),
            }
        }
        self.offset += end as u64 + 1;
        Ok(())
    }

    /// Appends `ops` (call with the lock held, after [`OpLog::catch_up`], so
    /// that nothing was appended in between).
    pub(super) fn append(&mut self, ops: &[Op]) -> Result<(), StoreError> {
        let mut text = Vec::new();
        for op in ops {
            serde_json::to_writer(&mut text, op).map_err(|source| StoreError::Encode {
                key: self.path.display().to_string(),
                source,
            })?;
            text.push(b'\n');
        }
        // Under the lock nobody else writes, so bytes past the last whole
        // line are a write that failed or a writer that died mid-line,
        // never acknowledged: cut them, or this line would be glued to
        // them and both be unreadable when the log is replayed.
        self.cut_to_offset()?;
        if let Err(source) = self.file.write_all(&text) {
            // What part of these ops reached the file goes too.
            if let Err(err) = self.cut_to_offset() {
                tracing::warn!(file = %self.path.display(), error = %err, "cannot take back a failed append to the embedded store");
            }
            return Err(file_error(&self.path, source));
        }
        self.offset += text.len() as u64;
        self.lines += ops.len() as u64;
        Ok(())
    }
}

impl OpLog {
    /// Truncates the file to the bytes read and applied.
    fn cut_to_offset(&mut self) -> Result<(), StoreError> {
        let len = self
            .file
            .metadata()
            .map_err(|source| file_error(&self.path, source))?
            .len();
        if len > self.offset {
            self.file
                .set_len(self.offset)
                .map_err(|source| file_error(&self.path, source))?;
        }
        Ok(())
    }
}

fn file_error(path: &Path, source: std::io::Error) -> StoreError {
    StoreError::File {
        path: path.to_owned(),
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(n: u64) -> Op {
        Op::Del {
            key: format!("k{n}"),
        }
    }

    fn replayed(path: &Path) -> Vec<Op> {
        let mut log = OpLog::open(path).unwrap();
        let mut ops = Vec::new();
        log.catch_up(|op| ops.push(op)).unwrap();
        ops
    }

    #[test]
    fn a_fragment_left_by_a_failed_write_does_not_take_the_next_op_with_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("store.log");
        let mut log = OpLog::open(&path).unwrap();
        log.locked(|log| {
            log.catch_up(|_| {})?;
            log.append(&[op(1)])
        })
        .unwrap();
        // A writer that died mid-line (or a write the disk cut short).
        std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap()
            .write_all(br#"{"Del":{"key":"k"#)
            .unwrap();
        log.locked(|log| {
            log.catch_up(|_| {})?;
            log.append(&[op(2)])
        })
        .unwrap();
        assert_eq!(replayed(&path), [op(1), op(2)]);
    }
}
