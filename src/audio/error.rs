//! The one error type of the audio toolkit.
//!
//! Every variant is one cause, with the values a caller needs to act on it
//! (the file, the sizes, the rate) kept as fields rather than folded into a
//! string. WAV variants carry the path so that the message alone tells the
//! user which file is wrong; readers with no path (the WAV reader of a
//! stream) use the placeholder path `<stream>`.

use std::fmt;
use std::io;
use std::path::PathBuf;

/// What went wrong in the audio toolkit.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AudioError {
    /// Opening, reading or writing a file failed at the operating-system level.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file being read or written.
        path: PathBuf,
        /// The underlying I/O error.
        #[source]
        source: io::Error,
    },

    /// The input does not start like a WAV file at all.
    #[error("{}: not a WAV file ({reason})", path.display())]
    NotWav {
        /// The file being read.
        path: PathBuf,
        /// Which part of the RIFF/WAVE signature is missing.
        reason: &'static str,
    },

    /// The file is a WAV file, but its sample encoding is not one voxpipe reads.
    ///
    /// Readable encodings are 8, 16, 24 and 32-bit integer PCM and 32-bit
    /// float, plain or in a `WAVE_FORMAT_EXTENSIBLE` header.
    #[error("{}: unsupported WAV format: {encoding}", path.display())]
    UnsupportedWav {
        /// The file being read.
        path: PathBuf,
        /// The encoding the header declares.
        encoding: WavEncoding,
    },

    /// The WAV header contradicts itself or the format (zero channels, a
    /// block size that does not match the sample size, data before format).
    #[error("{}: malformed WAV file: {reason}", path.display())]
    MalformedWav {
        /// The file being read.
        path: PathBuf,
        /// What is inconsistent.
        reason: &'static str,
    },

    /// The file ends before its header does (before the data chunk starts).
    #[error("{}: truncated: file ends inside the {within}", path.display())]
    TruncatedWavHeader {
        /// The file being read.
        path: PathBuf,
        /// The part of the header being read when the file ended.
        within: &'static str,
    },

    /// The file ends before the end of the data chunk its header announces.
    ///
    /// Counts are in sample frames (samples per channel).
    #[error(
        "{}: truncated: header says {expected} samples, file holds {actual}",
        path.display()
    )]
    TruncatedWavData {
        /// The file being read.
        path: PathBuf,
        /// Sample frames the data chunk header announces.
        expected: u64,
        /// Complete sample frames actually present.
        actual: u64,
    },

    /// Writing a WAV file failed for a reason other than I/O (for example the
    /// file grew past the 4 GiB limit of the format).
    #[error("{}: cannot write WAV: {source}", path.display())]
    WavWrite {
        /// The file being written.
        path: PathBuf,
        /// The error reported by the WAV writer.
        #[source]
        source: hound::Error,
    },

    /// A sample rate outside the range the toolkit handles.
    #[error("unsupported sample rate: {rate_hz} Hz (supported: {min_hz} to {max_hz} Hz)")]
    UnsupportedSampleRate {
        /// The rejected rate.
        rate_hz: u32,
        /// The lowest accepted rate.
        min_hz: u32,
        /// The highest accepted rate.
        max_hz: u32,
    },

    /// The resampler library refused the rate pair.
    #[error("cannot build a resampler from {from_hz} Hz to {to_hz} Hz: {source}")]
    ResamplerInit {
        /// Input rate.
        from_hz: u32,
        /// Output rate.
        to_hz: u32,
        /// The error reported by rubato.
        #[source]
        source: rubato::ResamplerConstructionError,
    },

    /// A PCM frame handed to a codec has the wrong number of samples.
    #[error("wrong frame size: expected {expected} samples, got {actual}")]
    FrameSize {
        /// Samples the codec needs per frame.
        expected: usize,
        /// Samples it was given.
        actual: usize,
    },

    /// Creating or configuring an Opus encoder or decoder failed.
    #[error("cannot set up Opus: {source}")]
    OpusInit {
        /// The error reported by the codec.
        #[source]
        source: super::opus::OpusError,
    },

    /// The codec failed to encode a frame.
    #[error("Opus encoding failed: {source}")]
    OpusEncode {
        /// The error reported by the codec.
        #[source]
        source: super::opus::OpusError,
    },

    /// The codec rejected a packet (corrupt, or not Opus).
    #[error("Opus packet of {packet_len} bytes could not be decoded: {source}")]
    OpusDecode {
        /// Length of the rejected packet in bytes.
        packet_len: usize,
        /// The error reported by the codec.
        #[source]
        source: super::opus::OpusError,
    },
}

/// A WAV sample encoding, as declared by the header's format tag and bit depth.
///
/// Carried by [`AudioError::UnsupportedWav`]; its `Display` is the phrase a
/// user recognises ("24-bit float", "A-law").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum WavEncoding {
    /// Integer PCM of the given bit depth.
    Int {
        /// Significant bits per sample.
        bits: u16,
    },
    /// IEEE float of the given bit depth.
    Float {
        /// Bits per sample.
        bits: u16,
    },
    /// Any other format tag (compressed or vendor-specific).
    Other {
        /// The `wFormatTag` (or extensible sub-format) value.
        tag: u16,
    },
}

impl fmt::Display for WavEncoding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::Int { bits } => write!(f, "{bits}-bit integer PCM"),
            Self::Float { bits } => write!(f, "{bits}-bit float"),
            Self::Other { tag } => match format_tag_name(tag) {
                Some(name) => write!(f, "{name} (format tag {tag:#06x})"),
                None => write!(f, "format tag {tag:#06x}"),
            },
        }
    }
}

/// Names of the format tags a user is likely to meet.
fn format_tag_name(tag: u16) -> Option<&'static str> {
    Some(match tag {
        0x0002 => "Microsoft ADPCM",
        0x0006 => "A-law",
        0x0007 => "mu-law",
        0x0011 => "IMA ADPCM",
        0x0031 => "GSM 6.10",
        0x0050 => "MPEG audio",
        0x0055 => "MP3",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_the_file_and_the_cause() {
        let err = AudioError::UnsupportedWav {
            path: PathBuf::from("input.wav"),
            encoding: WavEncoding::Float { bits: 24 },
        };
        assert_eq!(
            err.to_string(),
            "input.wav: unsupported WAV format: 24-bit float"
        );

        let err = AudioError::TruncatedWavData {
            path: PathBuf::from("input.wav"),
            expected: 32000,
            actual: 1200,
        };
        assert_eq!(
            err.to_string(),
            "input.wav: truncated: header says 32000 samples, file holds 1200"
        );

        let err = AudioError::NotWav {
            path: PathBuf::from("input.wav"),
            reason: "RIFF header missing",
        };
        assert_eq!(
            err.to_string(),
            "input.wav: not a WAV file (RIFF header missing)"
        );
    }

    #[test]
    fn encoding_names() {
        assert_eq!(
            WavEncoding::Other { tag: 6 }.to_string(),
            "A-law (format tag 0x0006)"
        );
        assert_eq!(
            WavEncoding::Other { tag: 0x1234 }.to_string(),
            "format tag 0x1234"
        );
        assert_eq!(
            WavEncoding::Int { bits: 40 }.to_string(),
            "40-bit integer PCM"
        );
    }

    #[test]
    fn error_is_send_and_sync() {
        fn check<T: Send + Sync + 'static>() {}
        check::<AudioError>();
    }
}
