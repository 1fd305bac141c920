//! Reading a whole WAV file into 16-bit samples.

use std::fs::File;
use std::io::{BufReader, Read};
use std::path::Path;

use super::audio::WavAudio;
use super::header::{SampleCoding, WavHeader, read_full, read_header};
use crate::audio::error::AudioError;
use crate::audio::pcm::f32_sample_to_i16;

/// Path used in errors from [`read_wav_from`], which has no file name.
const STREAM_LABEL: &str = "<stream>";
/// Bytes read from the data chunk per `read` call.
const READ_BLOCK: usize = 64 * 1024;
/// Samples reserved up front at most, whatever the header claims.
const MAX_RESERVE: u64 = 1 << 22;

/// Reads a WAV file into 16-bit interleaved samples.
///
/// See the [module docs](super) for the accepted formats and how damaged
/// files are treated.
///
/// # Errors
///
/// [`AudioError::Io`] if the file cannot be opened or read;
/// [`AudioError::NotWav`], [`AudioError::UnsupportedWav`],
/// [`AudioError::MalformedWav`], [`AudioError::TruncatedWavHeader`] or
/// [`AudioError::TruncatedWavData`] for bad content. All name `path`.
pub fn read_wav(path: &Path) -> Result<WavAudio, AudioError> {
    let file = File::open(path).map_err(|source| AudioError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    read_wav_named(BufReader::new(file), path)
}

/// Reads WAV data from any reader, like [`read_wav`]; errors name the
/// source `<stream>`.
///
/// # Errors
///
/// As [`read_wav`].
pub fn read_wav_from<R: Read>(reader: R) -> Result<WavAudio, AudioError> {
    read_wav_named(reader, Path::new(STREAM_LABEL))
}

fn read_wav_named<R: Read>(mut reader: R, path: &Path) -> Result<WavAudio, AudioError> {
    let header = read_header(&mut reader, path)?;
    let samples = read_samples(&mut reader, &header, path)?;
    Ok(WavAudio {
        samples,
        sample_rate: header.sample_rate,
        channels: header.channels,
    })
}

/// Reads the data chunk, whole frames only, converting as it goes.
fn read_samples<R: Read>(
    reader: &mut R,
    header: &WavHeader,
    path: &Path,
) -> Result<Vec<i16>, AudioError> {
    let frame_bytes = header.frame_bytes();
    let sample_bytes = header.coding.bytes();
    let expected_frames = header.data_len.map(|len| len / frame_bytes as u64);
    let reserve = expected_frames.map_or(0, |f| f * u64::from(header.channels));
    let mut samples = Vec::with_capacity(reserve.min(MAX_RESERVE) as usize);

    // Whole frames per block, so a block never splits a frame unless the
    // file ends there.
    let block_len = (READ_BLOCK / frame_bytes).max(1) * frame_bytes;
    let mut block = vec![0u8; block_len];
    let mut remaining = header.data_len;
    loop {
        let want = remaining.map_or(block_len, |r| r.min(block_len as u64) as usize);
        if want == 0 {
            break;
        }
        let got = read_full(reader, &mut block[..want]).map_err(|source| AudioError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let whole = got - got % frame_bytes;
        decode_into(&block[..whole], header.coding, sample_bytes, &mut samples);
        if let Some(r) = remaining.as_mut() {
            *r -= got as u64;
        }
        if got < want {
            break; // end of file
        }
    }

    let frames = samples.len() as u64 / u64::from(header.channels);
    match expected_frames {
        Some(expected) if frames < expected => Err(AudioError::TruncatedWavData {
            path: path.to_path_buf(),
            expected,
            actual: frames,
        }),
        _ => Ok(samples),
    }
}

/// Appends the samples in `bytes` (a whole number of samples) as `i16`.
fn decode_into(bytes: &[u8], coding: SampleCoding, sample_bytes: usize, out: &mut Vec<i16>) {
    let samples = bytes.chunks_exact(sample_bytes);
    match coding {
        SampleCoding::U8 => out.extend(bytes.iter().map(|&b| (i16::from(b) - 128) << 8)),
        SampleCoding::Int { bytes: 2 } => {
            out.extend(samples.map(|b| i16::from_le_bytes([b[0], b[1]])));
        }
        SampleCoding::Int { bytes: 3 } => out.extend(samples.map(|b| {
            // Sign-extend through the top byte of an i32, then round off the
            // lowest 8 bits.
            let v = i32::from_le_bytes([0, b[0], b[1], b[2]]) >> 8;
            saturate((v + 0x80) >> 8)
        })),
        SampleCoding::Int { .. } => out.extend(samples.map(|b| {
            let v = i64::from(i32::from_le_bytes([b[0], b[1], b[2], b[3]]));
            saturate(((v + 0x8000) >> 16) as i32)
        })),
        SampleCoding::F32 => out.extend(
            samples.map(|b| f32_sample_to_i16(f32::from_le_bytes([b[0], b[1], b[2], b[3]]))),
        ),
    }
}

/// Clamps a rounded value to the `i16` range (only the largest positive
/// inputs can round past it).
fn saturate(v: i32) -> i16 {
    v.clamp(i32::from(i16::MIN), i32::from(i16::MAX)) as i16
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(bytes: &[u8], coding: SampleCoding) -> Vec<i16> {
        let mut out = Vec::new();
        decode_into(bytes, coding, coding.bytes(), &mut out);
        out
    }

    #[test]
    fn converts_every_container_to_16_bits() {
        assert_eq!(
            decode(&[0, 128, 255], SampleCoding::U8),
            vec![-32768, 0, 32512]
        );
        assert_eq!(
            decode(&[0x34, 0x12, 0x00, 0x80], SampleCoding::Int { bytes: 2 }),
            vec![0x1234, -32768]
        );
        // 24-bit: exact for 16-bit content, rounds the low byte, saturates.
        let i24 = SampleCoding::Int { bytes: 3 };
        assert_eq!(decode(&[0x00, 0x34, 0x12], i24), vec![0x1234]);
        assert_eq!(decode(&[0x80, 0x34, 0x12], i24), vec![0x1235]);
        assert_eq!(decode(&[0x7F, 0x34, 0x12], i24), vec![0x1234]);
        assert_eq!(decode(&[0xFF, 0xFF, 0x7F], i24), vec![32767]);
        assert_eq!(decode(&[0x00, 0x00, 0x80], i24), vec![-32768]);
        assert_eq!(decode(&[0xFF, 0xFF, 0xFF], i24), vec![0]);
        let i32c = SampleCoding::Int { bytes: 4 };
        assert_eq!(decode(&[0, 0, 0x34, 0x12], i32c), vec![0x1234]);
        assert_eq!(decode(&[0xFF, 0xFF, 0xFF, 0x7F], i32c), vec![32767]);
        assert_eq!(decode(&[0, 0, 0, 0x80], i32c), vec![-32768]);
        let floats: Vec<u8> = [0.5f32, -1.0, 2.0, f32::NAN]
            .iter()
            .flat_map(|f| f.to_le_bytes())
            .collect();
        assert_eq!(
            decode(&floats, SampleCoding::F32),
            vec![16384, -32768, 32767, 0]
        );
    }
}
