//! Seed 002's key layout: where each of a call's objects goes.
//!
//! ```text
//! calls/audio/{date}/{call_id}/recording.wav
//! calls/transcripts/{date}/{call_id}/transcript.json
//! calls/profiles/{date}/{call_id}/profile.json
//! audit/{date}/audit_{timestamp}_{call_id}.json
//! ```
//!
//! `{date}` is the call's start date (UTC, `YYYY-MM-DD`) and `{timestamp}`
//! its start instant (`YYYYMMDDTHHMMSSZ`): both come from the stored call,
//! never from the clock at upload time, so every writer of a call (a job
//! run twice, the recording uploader) computes the same keys, and a
//! repeated upload replaces an object instead of adding one. Keys are
//! relative to the storage URL (its prefix, if any, comes first).

use std::fmt;

/// One of the objects a call may leave.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ObjectKind {
    /// The stereo WAV.
    Recording,
    /// The turns and the call's metadata.
    Transcript,
    /// The structured extraction.
    Profile,
    /// Who called whom, when, consent, what was stored where.
    Audit,
}

impl ObjectKind {
    /// Every kind, in the order they are shown.
    pub const ALL: [ObjectKind; 4] = [
        ObjectKind::Recording,
        ObjectKind::Transcript,
        ObjectKind::Profile,
        ObjectKind::Audit,
    ];

    /// `recording`, `transcript`, `profile` or `audit`.
    pub fn as_str(self) -> &'static str {
        match self {
            ObjectKind::Recording => "recording",
            ObjectKind::Transcript => "transcript",
            ObjectKind::Profile => "profile",
            ObjectKind::Audit => "audit",
        }
    }

    /// The kind named `name` (see [`as_str`](Self::as_str)).
    pub fn parse(name: &str) -> Option<ObjectKind> {
        ObjectKind::ALL.into_iter().find(|k| k.as_str() == name)
    }
}

impl fmt::Display for ObjectKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A call's keys could not be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// The call id cannot be part of a key.
    #[error(
        "call id `{0}` cannot be part of an object key (letters, digits, `.`, `_`, `-`; at most 128)"
    )]
    CallId(String),
    /// The start time is not RFC 3339 UTC as the store writes it.
    #[error("start time `{0}` is not a UTC RFC 3339 time")]
    StartTime(String),
}

/// The keys of one call's objects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallKeys {
    date: String,
    timestamp: String,
    call_id: String,
}

impl CallKeys {
    /// The keys of call `call_id` started at `started_at` (RFC 3339 UTC,
    /// as the store writes it: `2026-01-15T10:30:00.123Z`).
    pub fn new(call_id: &str, started_at: &str) -> Result<CallKeys, KeyError> {
        let id_ok = !call_id.is_empty()
            && call_id.len() <= 128
            && call_id != "."
            && call_id != ".."
            && call_id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
        if !id_ok {
            return Err(KeyError::CallId(call_id.to_owned()));
        }
        let bad_time = || KeyError::StartTime(started_at.to_owned());
        let b = started_at.as_bytes();
        let shape_ok = b.len() >= 20
            && b[4] == b'-'
            && b[7] == b'-'
            && b[10] == b'T'
            && b[13] == b':'
            && b[16] == b':'
            && started_at.ends_with('Z')
            && [0..4, 5..7, 8..10, 11..13, 14..16, 17..19]
                .into_iter()
                .all(|r| b[r].iter().all(u8::is_ascii_digit));
        if !shape_ok {
            return Err(bad_time());
        }
        let part = |r: std::ops::Range<usize>| started_at.get(r).ok_or_else(bad_time);
        let timestamp = format!(
            "{}{}{}T{}{}{}Z",
            part(0..4)?,
            part(5..7)?,
            part(8..10)?,
            part(11..13)?,
            part(14..16)?,
            part(17..19)?
        );
        Ok(CallKeys {
            date: part(0..10)?.to_owned(),
            timestamp,
            call_id: call_id.to_owned(),
        })
    }

    /// The key of the object of `kind`.
    pub fn key(&self, kind: ObjectKind) -> String {
        let CallKeys {
            date,
            timestamp,
            call_id,
        } = self;
        match kind {
            ObjectKind::Recording => format!("calls/audio/{date}/{call_id}/recording.wav"),
            ObjectKind::Transcript => {
                format!("calls/transcripts/{date}/{call_id}/transcript.json")
            }
            ObjectKind::Profile => format!("calls/profiles/{date}/{call_id}/profile.json"),
            ObjectKind::Audit => format!("audit/{date}/audit_{timestamp}_{call_id}.json"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_follow_seed_002s_layout() {
        let keys = CallKeys::new("c-1", "2026-01-15T10:30:05.123Z").unwrap();
        let all: Vec<String> = ObjectKind::ALL.iter().map(|&k| keys.key(k)).collect();
        assert_eq!(
            all,
            [
                "calls/audio/2026-01-15/c-1/recording.wav",
                "calls/transcripts/2026-01-15/c-1/transcript.json",
                "calls/profiles/2026-01-15/c-1/profile.json",
                "audit/2026-01-15/audit_20260115T103005Z_c-1.json",
            ]
        );
    }

    #[test]
    fn refuses_ids_and_times_that_cannot_be_keys() {
        for id in ["", "..", "a/b", "a b", &"x".repeat(129)] {
            assert!(
                CallKeys::new(id, "2026-01-15T10:30:05.123Z").is_err(),
                "{id}"
            );
        }
        for at in [
            "2026-01-15",
            "2026-01-15T10:30:05+01:00",
            "yyyy-01-15T10:30:05Z",
        ] {
            assert!(CallKeys::new("c", at).is_err(), "{at}");
        }
    }
}
