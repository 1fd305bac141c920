//! The keys of a call's objects in object storage (`call:{id}` `objects`).

use serde::{Deserialize, Serialize};

/// Where a call's objects are, relative to the storage URL: `None` until
/// stored (or never, e.g. no profile for an unextracted call).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredObjects {
    /// `calls/audio/{date}/{call_id}/recording.wav`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recording: Option<String>,
    /// `calls/transcripts/{date}/{call_id}/transcript.json`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transcript: Option<String>,
    /// `calls/profiles/{date}/{call_id}/profile.json`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile: Option<String>,
    /// `audit/{date}/audit_{timestamp}_{call_id}.json`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audit: Option<String>,
}

impl StoredObjects {
    /// True when nothing is stored yet.
    pub fn is_empty(&self) -> bool {
        self == &StoredObjects::default()
    }

    /// Takes the keys `other` has.
    pub fn merge(&mut self, other: &StoredObjects) {
        let take = |mine: &mut Option<String>, theirs: &Option<String>| {
            if theirs.is_some() {
                mine.clone_from(theirs);
            }
        };
        take(&mut self.recording, &other.recording);
        take(&mut self.transcript, &other.transcript);
        take(&mut self.profile, &other.profile);
        take(&mut self.audit, &other.audit);
    }
}
