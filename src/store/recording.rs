//! [`CallRecording`]: what became of a call's recording, kept in its
//! record (`call:{id}`, field `recording`).

use serde::{Deserialize, Serialize};

/// Whether a call's recording exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RecordingStatus {
    /// The WAV is complete, at `file`.
    Recorded,
    /// No recording: the disk was full, the directory unwritable...; the
    /// partial file was removed.
    Failed,
}

/// A call's recording, as its record keeps it.
///
/// ```json
/// {"status": "recorded", "file": "voxpipe-data/recordings/c1.wav",
///  "duration_ms": 61240, "sample_rate": 16000}
/// {"status": "failed", "reason": "...: No space left on device (os error 28)",
///  "duration_ms": 0, "sample_rate": 16000}
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CallRecording {
    /// Recorded or failed.
    pub status: RecordingStatus,
    /// Why it failed, or why it is degraded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The finished file (recorded only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    /// Its length; for a failed recording, how much was written before the
    /// failure.
    pub duration_ms: u64,
    /// Its rate: the pipeline's.
    pub sample_rate: u32,
    /// Some audio is missing because the writer fell behind (the call went
    /// on; the gaps are silence).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub degraded: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcomes_read_as_documented() {
        let failed = CallRecording {
            status: RecordingStatus::Failed,
            reason: Some("disk full".into()),
            file: None,
            duration_ms: 1200,
            sample_rate: 8000,
            degraded: false,
        };
        let json = serde_json::to_value(&failed).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"status": "failed", "reason": "disk full",
                "duration_ms": 1200, "sample_rate": 8000})
        );
        let back: CallRecording = serde_json::from_value(json).unwrap();
        assert_eq!(back, failed);
        let degraded = CallRecording {
            status: RecordingStatus::Recorded,
            degraded: true,
            file: Some("r/c1.wav".into()),
            ..failed
        };
        let json = serde_json::to_value(&degraded).unwrap();
        assert_eq!(json["status"], "recorded");
        assert_eq!(json["degraded"], true);
    }
}
