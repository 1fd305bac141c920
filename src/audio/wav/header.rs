//! Parsing the RIFF/WAVE header up to the start of the sample data.
//!
//! The parser reads the stream sequentially and never seeks: the RIFF
//! signature, then chunk after chunk (keeping `fmt `, skipping unknown ones
//! without buffering them) until the `data` chunk. It validates the format
//! completely, so the sample reader only has to decode.

use std::io::{self, Read};
use std::path::Path;

use crate::audio::error::{AudioError, WavEncoding};

/// Format tag of integer PCM.
const TAG_PCM: u16 = 0x0001;
/// Format tag of IEEE float.
const TAG_FLOAT: u16 = 0x0003;
/// Format tag announcing a `WAVEFORMATEXTENSIBLE` fmt chunk.
const TAG_EXTENSIBLE: u16 = 0xFFFE;
/// Data size that streaming writers use for "unknown, read to the end".
const DATA_LEN_UNKNOWN: u32 = u32::MAX;
/// Bytes of the fmt chunk the parser looks at (the extensible layout).
const FMT_BYTES_USED: usize = 40;

/// How one sample is stored in the data chunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum SampleCoding {
    /// Unsigned 8-bit integer, 128 = zero.
    U8,
    /// Signed little-endian integer in a container of 2, 3 or 4 bytes,
    /// left-justified when it has fewer valid bits.
    Int {
        /// Container size in bytes.
        bytes: usize,
    },
    /// Little-endian IEEE 754 single precision.
    F32,
}

impl SampleCoding {
    /// Bytes one sample occupies.
    pub(super) fn bytes(self) -> usize {
        match self {
            Self::U8 => 1,
            Self::Int { bytes } => bytes,
            Self::F32 => 4,
        }
    }
}

/// A validated WAV header, with the reader left at the first data byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct WavHeader {
    pub(super) channels: u16,
    pub(super) sample_rate: u32,
    pub(super) coding: SampleCoding,
    /// Data chunk length in bytes, `None` for "read to the end of the file".
    pub(super) data_len: Option<u64>,
}

impl WavHeader {
    /// Bytes per sample frame (one sample of every channel).
    pub(super) fn frame_bytes(&self) -> usize {
        self.coding.bytes() * usize::from(self.channels)
    }
}

/// The fields of a fmt chunk that matter here.
struct Fmt {
    tag: u16,
    channels: u16,
    sample_rate: u32,
    block_align: u16,
    bits: u16,
}

/// Reads and validates the header. Errors name `path`.
pub(super) fn read_header<R: Read>(reader: &mut R, path: &Path) -> Result<WavHeader, AudioError> {
    let io_err = |source| AudioError::Io {
        path: path.to_path_buf(),
        source,
    };
    let not_wav = |reason| AudioError::NotWav {
        path: path.to_path_buf(),
        reason,
    };
    let truncated = |within| AudioError::TruncatedWavHeader {
        path: path.to_path_buf(),
        within,
    };
    let malformed = |reason| AudioError::MalformedWav {
        path: path.to_path_buf(),
        reason,
    };

    let mut riff = [0u8; 12];
    let n = read_full(reader, &mut riff).map_err(io_err)?;
    if n == 0 {
        return Err(not_wav("file is empty"));
    }
    if riff[..n.min(4)] != b"RIFF"[..n.min(4)] {
        return Err(not_wav("RIFF header missing"));
    }
    if n < riff.len() {
        return Err(truncated("RIFF header"));
    }
    if &riff[8..12] != b"WAVE" {
        return Err(not_wav("RIFF file of another type, WAVE tag missing"));
    }

    let mut fmt = None;
    loop {
        let mut chunk = [0u8; 8];
        let n = read_full(reader, &mut chunk).map_err(io_err)?;
        if n == 0 {
            // No data chunk: whether the header was cut or never had one,
            // the file ended before any audio.
            return Err(truncated("header, before the data chunk"));
        }
        if n < chunk.len() {
            return Err(truncated("chunk header"));
        }
        let id = [chunk[0], chunk[1], chunk[2], chunk[3]];
        let len = u32::from_le_bytes([chunk[4], chunk[5], chunk[6], chunk[7]]);
        match &id {
            b"fmt " => {
                let mut buf = [0u8; FMT_BYTES_USED];
                let used = (len as usize).min(FMT_BYTES_USED);
                if read_full(reader, &mut buf[..used]).map_err(io_err)? < used
                    || !skip(reader, padded(len) - used as u64).map_err(io_err)?
                {
                    return Err(truncated("fmt chunk"));
                }
                fmt = Some(parse_fmt(&buf[..used], path)?);
            }
            b"data" => {
                let Some(fmt) = fmt else {
                    return Err(malformed("data chunk before the fmt chunk"));
                };
                let data_len = (len != DATA_LEN_UNKNOWN).then_some(u64::from(len));
                return validate(&fmt, data_len, path);
            }
            _ => {
                if !skip(reader, padded(len)).map_err(io_err)? {
                    return Err(truncated("chunk before the data chunk"));
                }
            }
        }
    }
}

/// Chunk length including the pad byte that keeps chunks word-aligned.
fn padded(len: u32) -> u64 {
    u64::from(len) + u64::from(len & 1)
}

/// Decodes the fmt chunk fields, resolving the extensible sub-format.
fn parse_fmt(buf: &[u8], path: &Path) -> Result<Fmt, AudioError> {
    let malformed = |reason| AudioError::MalformedWav {
        path: path.to_path_buf(),
        reason,
    };
    if buf.len() < 16 {
        return Err(malformed("fmt chunk shorter than 16 bytes"));
    }
    let u16_at = |i: usize| u16::from_le_bytes([buf[i], buf[i + 1]]);
    let u32_at = |i: usize| u32::from_le_bytes([buf[i], buf[i + 1], buf[i + 2], buf[i + 3]]);
    let mut fmt = Fmt {
        tag: u16_at(0),
        channels: u16_at(2),
        sample_rate: u32_at(4),
        block_align: u16_at(12),
        bits: u16_at(14),
    };
    if fmt.tag == TAG_EXTENSIBLE {
        // cbSize (16), valid bits (18), channel mask (20), sub-format GUID
        // (24..40) whose first two bytes are the format tag it stands for.
        if buf.len() < FMT_BYTES_USED {
            return Err(malformed("extensible fmt chunk shorter than 40 bytes"));
        }
        let valid_bits = u16_at(18);
        if valid_bits != 0 {
            fmt.bits = valid_bits;
        }
        fmt.tag = u16_at(24);
    }
    Ok(fmt)
}

/// Checks the format is consistent and readable.
fn validate(fmt: &Fmt, data_len: Option<u64>, path: &Path) -> Result<WavHeader, AudioError> {
    let malformed = |reason| AudioError::MalformedWav {
        path: path.to_path_buf(),
        reason,
    };
    let unsupported = |encoding| AudioError::UnsupportedWav {
        path: path.to_path_buf(),
        encoding,
    };

    let encoding = match fmt.tag {
        TAG_PCM => WavEncoding::Int { bits: fmt.bits },
        TAG_FLOAT => WavEncoding::Float { bits: fmt.bits },
        tag => return Err(unsupported(WavEncoding::Other { tag })),
    };
    if fmt.channels == 0 {
        return Err(malformed("zero channels"));
    }
    if fmt.sample_rate == 0 {
        return Err(malformed("zero sample rate"));
    }
    if fmt.bits == 0 {
        return Err(malformed("zero bits per sample"));
    }
    match encoding {
        WavEncoding::Int { bits } if bits > 32 => return Err(unsupported(encoding)),
        WavEncoding::Float { bits } if bits != 32 => return Err(unsupported(encoding)),
        _ => {}
    }
    if fmt.block_align == 0 || !fmt.block_align.is_multiple_of(fmt.channels) {
        return Err(malformed(
            "block size is not a whole number of bytes per channel",
        ));
    }
    let container = usize::from(fmt.block_align / fmt.channels);
    if usize::from(fmt.bits) > container * 8 {
        return Err(malformed("sample bits exceed the block size"));
    }
    let coding = match (encoding, container) {
        (WavEncoding::Int { .. }, 1) => SampleCoding::U8,
        (WavEncoding::Int { .. }, 2..=4) => SampleCoding::Int { bytes: container },
        (WavEncoding::Float { .. }, 4) => SampleCoding::F32,
        _ => return Err(malformed("block size does not match the sample format")),
    };
    Ok(WavHeader {
        channels: fmt.channels,
        sample_rate: fmt.sample_rate,
        coding,
        data_len,
    })
}

/// Reads until `buf` is full or the stream ends; returns the bytes read.
pub(super) fn read_full<R: Read>(reader: &mut R, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

/// Discards `n` bytes; `false` if the stream ended first.
fn skip<R: Read>(reader: &mut R, n: u64) -> io::Result<bool> {
    let skipped = io::copy(&mut reader.by_ref().take(n), &mut io::sink())?;
    Ok(skipped == n)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fmt_chunk(tag: u16, channels: u16, rate: u32, block: u16, bits: u16) -> Vec<u8> {
        let mut v = b"fmt ".to_vec();
        v.extend_from_slice(&16u32.to_le_bytes());
        v.extend_from_slice(&tag.to_le_bytes());
        v.extend_from_slice(&channels.to_le_bytes());
        v.extend_from_slice(&rate.to_le_bytes());
        v.extend_from_slice(&(rate * u32::from(block)).to_le_bytes());
        v.extend_from_slice(&block.to_le_bytes());
        v.extend_from_slice(&bits.to_le_bytes());
        v
    }

    fn file(chunks: &[&[u8]]) -> Vec<u8> {
        let mut v = b"RIFF\0\0\0\0WAVE".to_vec();
        for c in chunks {
            v.extend_from_slice(c);
        }
        v
    }

    fn parse(bytes: &[u8]) -> Result<WavHeader, AudioError> {
        read_header(&mut &bytes[..], Path::new("t.wav"))
    }

    #[test]
    fn skips_unknown_chunks_with_padding() {
        let fmt = fmt_chunk(TAG_PCM, 2, 16_000, 4, 16);
        let list = b"LIST\x03\0\0\0abc\0"; // odd length, one pad byte
        let data = b"data\x08\0\0\0";
        let h = parse(&file(&[list, &fmt, data])).unwrap();
        assert_eq!(h.channels, 2);
        assert_eq!(h.coding, SampleCoding::Int { bytes: 2 });
        assert_eq!(h.data_len, Some(8));
        assert_eq!(h.frame_bytes(), 4);
    }

    #[test]
    fn unknown_data_length_means_read_to_end() {
        let fmt = fmt_chunk(TAG_PCM, 1, 8_000, 1, 8);
        let h = parse(&file(&[&fmt, b"data\xff\xff\xff\xff"])).unwrap();
        assert_eq!((h.coding, h.data_len), (SampleCoding::U8, None));
    }

    #[test]
    fn header_problems_are_classified() {
        let pcm16 = fmt_chunk(TAG_PCM, 1, 8_000, 2, 16);
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (vec![], "not a WAV file (file is empty)"),
            (b"ID3\x04".to_vec(), "not a WAV file (RIFF header missing)"),
            (
                b"RIF".to_vec(),
                "truncated: file ends inside the RIFF header",
            ),
            (b"RIFF\0\0\0\0AVI ".to_vec(), "WAVE tag missing"),
            (
                file(&[]),
                "truncated: file ends inside the header, before the data chunk",
            ),
            (
                file(&[&pcm16]),
                "truncated: file ends inside the header, before the data chunk",
            ),
            (file(&[b"data\0\0\0\0"]), "data chunk before the fmt chunk"),
            (
                file(&[&pcm16[..20]]),
                "truncated: file ends inside the fmt chunk",
            ),
            (
                file(&[&pcm16, b"da"]),
                "truncated: file ends inside the chunk header",
            ),
            (
                file(&[b"LIST\x10\0\0\0ab"]),
                "inside the chunk before the data chunk",
            ),
            (
                file(&[&fmt_chunk(TAG_PCM, 0, 8_000, 2, 16), b"data\0\0\0\0"]),
                "zero channels",
            ),
            (
                file(&[&fmt_chunk(TAG_PCM, 1, 0, 2, 16), b"data\0\0\0\0"]),
                "zero sample rate",
            ),
            (
                file(&[&fmt_chunk(TAG_PCM, 2, 8_000, 3, 16), b"data\0\0\0\0"]),
                "block size",
            ),
            (
                file(&[&fmt_chunk(TAG_PCM, 1, 8_000, 2, 24), b"data\0\0\0\0"]),
                "exceed",
            ),
            (
                file(&[&fmt_chunk(6, 1, 8_000, 1, 8), b"data\0\0\0\0"]),
                "unsupported WAV format: A-law",
            ),
            (
                file(&[&fmt_chunk(TAG_FLOAT, 1, 8_000, 8, 64), b"data\0\0\0\0"]),
                "64-bit float",
            ),
            (
                file(&[&fmt_chunk(TAG_FLOAT, 1, 8_000, 3, 24), b"data\0\0\0\0"]),
                "24-bit float",
            ),
        ];
        for (bytes, expected) in cases {
            let err = parse(&bytes).unwrap_err().to_string();
            assert!(err.starts_with("t.wav: "), "{err}");
            assert!(
                err.contains(expected),
                "{err:?} should contain {expected:?}"
            );
        }
    }
}
