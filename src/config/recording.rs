//! `[recording]`: a stereo WAV of each call, off unless asked for.
//!
//! ```toml
//! [recording]
//! enabled = true                      # default false
//! dir = "voxpipe-data/recordings"     # the spool directory (the default)
//! ```
//!
//! A relative `dir` is relative to the working directory of the process.
//! Callers must be told they are recorded: that is the operator's duty.

use std::path::PathBuf;

use serde::Deserialize;

/// `[recording]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RecordingSection {
    /// Whether each call is recorded.
    pub enabled: bool,
    /// Where recordings are written: `{dir}/{call_id}.wav.part` while the
    /// call goes on, renamed to `{dir}/{call_id}.wav` once complete.
    pub dir: RecordingDir,
}

impl Default for RecordingSection {
    fn default() -> Self {
        RecordingSection {
            enabled: false,
            dir: RecordingDir(PathBuf::from(RecordingDir::DEFAULT)),
        }
    }
}

/// A recording directory: a non-empty path.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "PathBuf")]
pub struct RecordingDir(PathBuf);

impl RecordingDir {
    /// The default spool directory.
    pub const DEFAULT: &'static str = "voxpipe-data/recordings";

    /// The path.
    pub fn path(&self) -> &std::path::Path {
        &self.0
    }
}

impl TryFrom<PathBuf> for RecordingDir {
    type Error = String;

    fn try_from(path: PathBuf) -> Result<Self, Self::Error> {
        if path.as_os_str().is_empty() {
            return Err("expected a directory, not an empty path".to_owned());
        }
        Ok(RecordingDir(path))
    }
}

impl From<RecordingDir> for PathBuf {
    fn from(dir: RecordingDir) -> Self {
        dir.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn off_by_default_in_the_spool_directory() {
        let section: RecordingSection = toml::from_str("").unwrap();
        assert!(!section.enabled);
        assert_eq!(
            section.dir.path(),
            std::path::Path::new("voxpipe-data/recordings")
        );
        let on: RecordingSection = toml::from_str("enabled = true\ndir = \"/tmp/r\"").unwrap();
        assert!(on.enabled);
        assert!(toml::from_str::<RecordingSection>("dir = \"\"").is_err());
        assert!(toml::from_str::<RecordingSection>("enable = true").is_err());
    }
}
