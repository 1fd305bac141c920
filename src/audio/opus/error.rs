//! The codec's own error codes, as one typed value.

/// An error code from the Opus codec, numbered as in libopus
/// (`OPUS_BAD_ARG` = -1 ... `OPUS_ALLOC_FAIL` = -7), which ropus keeps.
///
/// Carried as the `source` of the Opus variants of
/// [`AudioError`](crate::audio::AudioError).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{} (Opus error {code})", describe(*.code))]
pub struct OpusError {
    code: i32,
}

impl OpusError {
    /// Wraps a negative code returned by the codec.
    pub(super) fn from_code(code: i32) -> Self {
        Self { code }
    }

    /// The libopus error code (negative).
    pub fn code(&self) -> i32 {
        self.code
    }
}

/// libopus's `opus_strerror` texts.
fn describe(code: i32) -> &'static str {
    match code {
        -1 => "invalid argument",
        -2 => "buffer too small",
        -3 => "internal error",
        -4 => "corrupted stream",
        -5 => "request not implemented",
        -6 => "invalid state",
        -7 => "memory allocation failed",
        _ => "unknown error",
    }
}

/// Turns a libopus-style status (`OPUS_OK` = 0 or a negative code) into a
/// `Result`.
pub(super) fn check(status: i32) -> Result<(), OpusError> {
    if status < 0 {
        Err(OpusError::from_code(status))
    } else {
        Ok(())
    }
}
