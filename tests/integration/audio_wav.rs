//! WAV reading and writing: round trips, formats, mixdown, and every kind of
//! bad input failing with the right error and the file's name.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code may panic

use std::io::Cursor;
use std::path::{Path, PathBuf};
use std::time::Duration;

use voxpipe::audio::wav::{WavWriter, read_wav, read_wav_from, write_wav};
use voxpipe::audio::{AudioError, WavEncoding};

/// A RIFF/WAVE file from a fmt chunk body and the data chunk body, with
/// optional extra chunks before the data.
fn wav_bytes(fmt_body: &[u8], extra: &[u8], data: &[u8]) -> Vec<u8> {
    let mut v = b"RIFF".to_vec();
    let riff_len = 4 + 8 + fmt_body.len() + extra.len() + 8 + data.len();
    v.extend_from_slice(&(riff_len as u32).to_le_bytes());
    v.extend_from_slice(b"WAVE");
    v.extend_from_slice(b"fmt ");
    v.extend_from_slice(&(fmt_body.len() as u32).to_le_bytes());
    v.extend_from_slice(fmt_body);
    v.extend_from_slice(extra);
    v.extend_from_slice(b"data");
    v.extend_from_slice(&(data.len() as u32).to_le_bytes());
    v.extend_from_slice(data);
    v
}

/// A 16-byte fmt body.
fn fmt_body(tag: u16, channels: u16, rate: u32, block_align: u16, bits: u16) -> Vec<u8> {
    let mut v = Vec::new();
    v.extend_from_slice(&tag.to_le_bytes());
    v.extend_from_slice(&channels.to_le_bytes());
    v.extend_from_slice(&rate.to_le_bytes());
    v.extend_from_slice(&(rate * u32::from(block_align)).to_le_bytes());
    v.extend_from_slice(&block_align.to_le_bytes());
    v.extend_from_slice(&bits.to_le_bytes());
    v
}

/// A 40-byte WAVE_FORMAT_EXTENSIBLE fmt body.
fn extensible_body(sub_tag: u16, channels: u16, rate: u32, container: u16, valid: u16) -> Vec<u8> {
    let mut v = fmt_body(0xFFFE, channels, rate, container / 8 * channels, container);
    v.extend_from_slice(&22u16.to_le_bytes());
    v.extend_from_slice(&valid.to_le_bytes());
    v.extend_from_slice(&0u32.to_le_bytes());
    v.extend_from_slice(&sub_tag.to_le_bytes());
    v.extend_from_slice(&[
        0x00, 0x00, 0x00, 0x00, 0x10, 0x00, 0x80, 0x00, 0x00, 0xAA, 0x00, 0x38, 0x9B, 0x71,
    ]);
    v
}

fn pcm16_le(samples: &[i16]) -> Vec<u8> {
    samples.iter().flat_map(|s| s.to_le_bytes()).collect()
}

fn ramp(len: usize) -> Vec<i16> {
    (0..len)
        .map(|i| ((i * 523) % 65_536) as u16 as i16)
        .collect()
}

struct Dir(tempfile::TempDir);

impl Dir {
    fn new() -> Self {
        Self(tempfile::tempdir().unwrap())
    }
    fn path(&self, name: &str) -> PathBuf {
        self.0.path().join(name)
    }
    fn file(&self, name: &str, bytes: &[u8]) -> PathBuf {
        let p = self.path(name);
        std::fs::write(&p, bytes).unwrap();
        p
    }
}

fn read_err(path: &Path) -> AudioError {
    let err = read_wav(path).unwrap_err();
    let name = path.display().to_string();
    assert!(
        err.to_string().starts_with(&format!("{name}: ")),
        "{err} does not name {name}"
    );
    err
}

#[test]
fn write_then_read_round_trips() {
    let dir = Dir::new();
    let path = dir.path("ramp.wav");
    let samples = ramp(16_000);
    write_wav(&path, 16_000, &samples).unwrap();
    let audio = read_wav(&path).unwrap();
    assert_eq!((audio.sample_rate, audio.channels), (16_000, 1));
    assert_eq!(audio.samples, samples);
    assert_eq!(audio.duration(), Duration::from_secs(1));
    assert_eq!(audio.to_mono(), samples);
    // The plain 44-byte header: 16-bit mono PCM.
    assert_eq!(std::fs::metadata(&path).unwrap().len(), 44 + 32_000);
}

#[test]
fn streaming_writer_appends_across_calls() {
    let dir = Dir::new();
    let path = dir.path("stream.wav");
    let samples = ramp(8_000);
    let mut w = WavWriter::create(&path, 8_000).unwrap();
    assert!(w.is_empty());
    for chunk in samples.chunks(160) {
        w.write(chunk).unwrap();
    }
    w.write(&[]).unwrap();
    assert_eq!(w.len(), 8_000);
    w.finalize().unwrap();
    assert_eq!(read_wav(&path).unwrap().samples, samples);
}

#[test]
fn writer_errors_name_the_file() {
    let dir = Dir::new();
    let path = dir.path("missing-dir/out.wav");
    let err = WavWriter::create(&path, 16_000).unwrap_err();
    assert!(matches!(err, AudioError::Io { .. }), "{err:?}");
    assert!(err.to_string().contains("missing-dir/out.wav"), "{err}");
    let err = write_wav(dir.path("zero.wav"), 0, &[1]).unwrap_err();
    assert!(
        matches!(err, AudioError::UnsupportedSampleRate { rate_hz: 0, .. }),
        "{err:?}"
    );
}

#[test]
fn stereo_is_kept_interleaved_and_mixes_down_to_mono() {
    let left = ramp(1_000);
    let right: Vec<i16> = left.iter().map(|&s| s / 3).collect();
    let interleaved: Vec<i16> = left
        .iter()
        .zip(&right)
        .flat_map(|(&l, &r)| [l, r])
        .collect();
    let bytes = wav_bytes(&fmt_body(1, 2, 44_100, 4, 16), &[], &pcm16_le(&interleaved));
    let audio = read_wav_from(Cursor::new(bytes)).unwrap();
    assert_eq!(
        (audio.channels, audio.sample_rate, audio.frames()),
        (2, 44_100, 1_000)
    );
    assert_eq!(audio.samples, interleaved);
    let mono = audio.to_mono();
    assert_eq!(mono.len(), 1_000);
    for i in 0..1_000 {
        let mean = (f64::from(left[i]) + f64::from(right[i])) / 2.0;
        assert!((f64::from(mono[i]) - mean).abs() <= 0.5, "frame {i}");
    }
}

#[test]
fn more_channels_through_hound_extensible_header() {
    let dir = Dir::new();
    let path = dir.path("quad.wav");
    let spec = hound::WavSpec {
        channels: 4,
        sample_rate: 48_000,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut w = hound::WavWriter::create(&path, spec).unwrap();
    for i in 0..480i16 {
        for ch in 0..4 {
            w.write_sample(i * 10 + ch).unwrap();
        }
    }
    w.finalize().unwrap();
    let audio = read_wav(&path).unwrap();
    assert_eq!((audio.channels, audio.frames()), (4, 480));
    let mono = audio.to_mono();
    // mean of i*10 + 0..=3 is i*10 + 1.5, rounded away from zero
    assert_eq!(mono[..3], [2, 12, 22]);
}

/// Writes `values` with hound at the given format and reads them back.
fn hound_round_trip<S: hound::Sample + Copy>(
    bits: u16,
    format: hound::SampleFormat,
    values: &[S],
) -> Vec<i16> {
    let dir = Dir::new();
    let path = dir.path("f.wav");
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: 22_050,
        bits_per_sample: bits,
        sample_format: format,
    };
    let mut w = hound::WavWriter::create(&path, spec).unwrap();
    for &v in values {
        w.write_sample(v).unwrap();
    }
    w.finalize().unwrap();
    let audio = read_wav(&path).unwrap();
    assert_eq!((audio.channels, audio.sample_rate), (1, 22_050));
    audio.samples
}

#[test]
fn reads_8_bit_unsigned() {
    let got = hound_round_trip(8, hound::SampleFormat::Int, &[-128i8, -1, 0, 1, 127]);
    assert_eq!(got, vec![-32768, -256, 0, 256, 32512]);
}

#[test]
fn reads_24_bit_with_rounding() {
    let got = hound_round_trip(
        24,
        hound::SampleFormat::Int,
        &[-8_388_608i32, -256, 0x12_3400, 0x12_3480, 8_388_607],
    );
    assert_eq!(got, vec![-32768, -1, 0x1234, 0x1235, 32767]);
}

#[test]
fn reads_32_bit_int() {
    let got = hound_round_trip(
        32,
        hound::SampleFormat::Int,
        &[i32::MIN, 0x1234_0000, i32::MAX],
    );
    assert_eq!(got, vec![-32768, 0x1234, 32767]);
}

#[test]
fn reads_32_bit_float_saturating() {
    let got = hound_round_trip(
        32,
        hound::SampleFormat::Float,
        &[-1.0f32, -0.5, 0.0, 0.25, 1.5],
    );
    assert_eq!(got, vec![-32768, -16384, 0, 8192, 32767]);
}

#[test]
fn reads_24_bit_in_a_4_byte_extensible_container() {
    // Left-justified 24-bit samples in 32-bit containers.
    let data: Vec<u8> = [0x1234_5600i32, -0x0100_0000]
        .iter()
        .flat_map(|v| v.to_le_bytes())
        .collect();
    let bytes = wav_bytes(&extensible_body(1, 1, 48_000, 32, 24), &[], &data);
    let audio = read_wav_from(&bytes[..]).unwrap();
    assert_eq!(audio.samples, vec![0x1234, -0x0100]);
}

#[test]
fn skips_metadata_chunks_and_reads_unknown_length_to_the_end() {
    let samples = ramp(100);
    let list = b"LIST\x05\0\0\0INFOx\0";
    let mut bytes = wav_bytes(&fmt_body(1, 1, 8_000, 2, 16), list, &pcm16_le(&samples));
    assert_eq!(read_wav_from(&bytes[..]).unwrap().samples, samples);
    // A streaming writer's 0xFFFFFFFF data size: read whatever is there.
    let at = bytes.len() - samples.len() * 2 - 4;
    bytes[at..at + 4].copy_from_slice(&[0xFF; 4]);
    bytes.push(0x01); // half a sample at the end is dropped
    assert_eq!(read_wav_from(&bytes[..]).unwrap().samples, samples);
}

#[test]
fn truncated_files_fail_at_every_cut_point() {
    let dir = Dir::new();
    let samples = ramp(1_000);
    let list = b"LIST\x04\0\0\0INFO";
    let full = wav_bytes(&fmt_body(1, 1, 16_000, 2, 16), list, &pcm16_le(&samples));
    let header_len = full.len() - 2_000;
    let path = dir.path("cut.wav");
    for cut in 0..full.len() {
        std::fs::write(&path, &full[..cut]).unwrap();
        let err = read_err(&path);
        match cut {
            0 => assert!(
                matches!(err, AudioError::NotWav { .. }),
                "cut {cut}: {err:?}"
            ),
            c if c < header_len => {
                assert!(
                    matches!(err, AudioError::TruncatedWavHeader { .. }),
                    "cut {cut}: {err:?}"
                )
            }
            c => match err {
                AudioError::TruncatedWavData {
                    expected, actual, ..
                } => {
                    assert_eq!(expected, 1_000);
                    assert_eq!(actual, ((c - header_len) / 2) as u64, "cut {cut}");
                }
                other => panic!("cut {cut}: {other:?}"),
            },
        }
    }
    std::fs::write(&path, &full).unwrap();
    assert_eq!(read_wav(&path).unwrap().samples, samples);

    // The message a user sees.
    std::fs::write(&path, &full[..header_len + 2_400 / 2]).unwrap();
    let name = path.display();
    assert_eq!(
        read_wav(&path).unwrap_err().to_string(),
        format!("{name}: truncated: header says 1000 samples, file holds 600")
    );
}

#[test]
fn a_huge_announced_size_does_not_allocate_it() {
    // Claims 4 GiB of data, holds 10 bytes: a quick, cheap error.
    let mut bytes = wav_bytes(&fmt_body(1, 2, 48_000, 4, 16), &[], &[0; 10]);
    let at = bytes.len() - 14;
    bytes[at..at + 4].copy_from_slice(&0xFFFF_FFF0u32.to_le_bytes());
    let err = read_wav_from(&bytes[..]).unwrap_err();
    assert!(
        matches!(
            err,
            AudioError::TruncatedWavData {
                expected: 0x3FFF_FFFC,
                actual: 2,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.to_string().starts_with("<stream>: truncated"), "{err}");
}

#[test]
fn non_wav_files_are_rejected() {
    let dir = Dir::new();
    for (name, bytes) in [
        ("empty.wav", &b""[..]),
        ("text.wav", b"hello, this is not audio\n"),
        ("song.wav", b"ID3\x04\0\0\0\0\0\0\xff\xfb\x90\x64"),
        ("video.wav", b"RIFF\x04\0\0\0AVI LIST"),
    ] {
        let path = dir.file(name, bytes);
        let err = read_err(&path);
        assert!(matches!(err, AudioError::NotWav { .. }), "{name}: {err:?}");
        assert!(err.to_string().contains("not a WAV file"), "{err}");
    }
    let err = read_err(&dir.file("text2.wav", b"plain text"));
    assert!(
        err.to_string()
            .ends_with("not a WAV file (RIFF header missing)"),
        "{err}"
    );
}

#[test]
fn unsupported_formats_are_named() {
    let dir = Dir::new();
    let cases = [
        (
            "alaw.wav",
            fmt_body(6, 1, 8_000, 1, 8),
            WavEncoding::Other { tag: 6 },
            "A-law",
        ),
        (
            "ulaw.wav",
            fmt_body(7, 1, 8_000, 1, 8),
            WavEncoding::Other { tag: 7 },
            "mu-law",
        ),
        (
            "adpcm.wav",
            fmt_body(2, 1, 8_000, 256, 4),
            WavEncoding::Other { tag: 2 },
            "ADPCM",
        ),
        (
            "f64.wav",
            fmt_body(3, 1, 8_000, 8, 64),
            WavEncoding::Float { bits: 64 },
            "64-bit float",
        ),
        (
            "f24.wav",
            fmt_body(3, 1, 8_000, 3, 24),
            WavEncoding::Float { bits: 24 },
            "24-bit float",
        ),
        (
            "i64.wav",
            fmt_body(1, 1, 8_000, 8, 64),
            WavEncoding::Int { bits: 64 },
            "64-bit integer",
        ),
        (
            "ext-alaw.wav",
            extensible_body(6, 1, 8_000, 8, 8),
            WavEncoding::Other { tag: 6 },
            "A-law",
        ),
    ];
    for (name, fmt, encoding, phrase) in cases {
        let path = dir.file(name, &wav_bytes(&fmt, &[], &[0; 64]));
        let err = read_err(&path);
        match &err {
            AudioError::UnsupportedWav { encoding: e, .. } => assert_eq!(*e, encoding, "{name}"),
            other => panic!("{name}: {other:?}"),
        }
        let msg = err.to_string();
        assert!(
            msg.contains("unsupported WAV format") && msg.contains(phrase),
            "{msg}"
        );
    }
}

#[test]
fn inconsistent_headers_are_malformed() {
    let dir = Dir::new();
    for (name, fmt, reason) in [
        (
            "zero-channels.wav",
            fmt_body(1, 0, 8_000, 2, 16),
            "zero channels",
        ),
        (
            "zero-rate.wav",
            fmt_body(1, 1, 0, 2, 16),
            "zero sample rate",
        ),
        (
            "zero-bits.wav",
            fmt_body(1, 1, 8_000, 2, 0),
            "zero bits per sample",
        ),
        (
            "short-fmt.wav",
            fmt_body(1, 1, 8_000, 2, 16)[..14].to_vec(),
            "fmt chunk shorter than 16 bytes",
        ),
        (
            "bad-align.wav",
            fmt_body(1, 1, 8_000, 1, 16),
            "sample bits exceed the block size",
        ),
    ] {
        let path = dir.file(name, &wav_bytes(&fmt, &[], &[0; 8]));
        let err = read_err(&path);
        assert!(
            matches!(err, AudioError::MalformedWav { reason: r, .. } if r == reason),
            "{name}: {err:?}"
        );
    }
}

#[test]
fn missing_file_is_an_io_error_naming_it() {
    let dir = Dir::new();
    let path = dir.path("nope.wav");
    let err = read_err(&path);
    assert!(matches!(err, AudioError::Io { .. }), "{err:?}");
}

#[test]
fn damaged_headers_never_panic() {
    // Deterministic byte mutations of a valid file: whatever happens, the
    // reader returns (Ok or a typed error) instead of panicking.
    let base = wav_bytes(
        &extensible_body(1, 2, 16_000, 16, 16),
        b"LIST\x02\0\0\0ab",
        &[1; 64],
    );
    let mut state = 0x2545_F491_4F6C_DD1Du64;
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for _ in 0..5_000 {
        let mut bytes = base.clone();
        for _ in 0..1 + next() % 4 {
            let at = (next() % 72) as usize; // the header region
            bytes[at] = next() as u8;
        }
        let cut = bytes.len() - (next() % 8) as usize;
        let _ = read_wav_from(&bytes[..cut]);
    }
}
