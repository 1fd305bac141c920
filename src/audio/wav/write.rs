//! Writing 16-bit mono WAV files.

use std::fs::File;
use std::io::BufWriter;
use std::path::{Path, PathBuf};

use crate::audio::error::AudioError;

/// Streams 16-bit mono PCM samples into a WAV file.
///
/// The header is written by [`create`](Self::create) and its sizes are
/// patched by [`finalize`](Self::finalize). Dropping a writer without
/// finalizing still patches them, but any error is lost: call `finalize`.
pub struct WavWriter {
    inner: hound::WavWriter<BufWriter<File>>,
    path: PathBuf,
}

impl std::fmt::Debug for WavWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WavWriter")
            .field("path", &self.path)
            .field("sample_rate", &self.inner.spec().sample_rate)
            .field("samples", &self.inner.len())
            .finish()
    }
}

impl WavWriter {
    /// Creates (or truncates) `path` and writes a 16-bit mono header at
    /// `sample_rate` Hz.
    ///
    /// # Errors
    ///
    /// [`AudioError::UnsupportedSampleRate`] for a zero rate;
    /// [`AudioError::Io`] if the file cannot be created.
    pub fn create(path: impl AsRef<Path>, sample_rate: u32) -> Result<Self, AudioError> {
        let path = path.as_ref();
        let spec = mono16(sample_rate)?;
        let inner = hound::WavWriter::create(path, spec).map_err(|e| wrap(path, e))?;
        Ok(Self {
            inner,
            path: path.to_path_buf(),
        })
    }

    /// Appends samples.
    ///
    /// # Errors
    ///
    /// [`AudioError::Io`] if writing fails; [`AudioError::WavWrite`] if the
    /// file would exceed the 4 GiB limit of the format.
    pub fn write(&mut self, samples: &[i16]) -> Result<(), AudioError> {
        for &s in samples {
            self.inner
                .write_sample(s)
                .map_err(|e| wrap(&self.path, e))?;
        }
        Ok(())
    }

    /// Samples written so far.
    pub fn len(&self) -> u64 {
        u64::from(self.inner.len())
    }

    /// Whether no samples have been written yet.
    pub fn is_empty(&self) -> bool {
        self.inner.len() == 0
    }

    /// Patches the header sizes, flushes and closes the file.
    ///
    /// # Errors
    ///
    /// [`AudioError::Io`] if the final writes fail.
    pub fn finalize(self) -> Result<(), AudioError> {
        let Self { inner, path } = self;
        inner.finalize().map_err(|e| wrap(&path, e))
    }
}

/// Writes `samples` as a 16-bit mono WAV file at `sample_rate` Hz.
///
/// # Errors
///
/// As [`WavWriter::create`], [`WavWriter::write`] and [`WavWriter::finalize`].
pub fn write_wav(
    path: impl AsRef<Path>,
    sample_rate: u32,
    samples: &[i16],
) -> Result<(), AudioError> {
    let mut writer = WavWriter::create(path, sample_rate)?;
    writer.write(samples)?;
    writer.finalize()
}

/// `samples` as the bytes of a 16-bit mono WAV file at `sample_rate` Hz:
/// an upload body, for services that take a file.
///
/// # Errors
///
/// [`AudioError::UnsupportedSampleRate`] for a zero rate.
pub fn encode_wav(sample_rate: u32, samples: &[i16]) -> Result<Vec<u8>, AudioError> {
    let spec = mono16(sample_rate)?;
    let memory = Path::new("<memory>");
    let mut cursor = std::io::Cursor::new(Vec::with_capacity(44 + samples.len() * 2));
    let mut writer = hound::WavWriter::new(&mut cursor, spec).map_err(|e| wrap(memory, e))?;
    {
        let mut block = writer.get_i16_writer(samples.len() as u32);
        for &sample in samples {
            block.write_sample(sample);
        }
        block.flush().map_err(|e| wrap(memory, e))?;
    }
    writer.finalize().map_err(|e| wrap(memory, e))?;
    Ok(cursor.into_inner())
}

/// The format written: 16-bit mono PCM at `sample_rate` Hz (not zero).
fn mono16(sample_rate: u32) -> Result<hound::WavSpec, AudioError> {
    if sample_rate == 0 {
        return Err(AudioError::UnsupportedSampleRate {
            rate_hz: 0,
            min_hz: 1,
            max_hz: u32::MAX,
        });
    }
    Ok(hound::WavSpec {
        channels: 1,
        sample_rate,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    })
}

/// Attaches the path to a hound error, keeping I/O errors as I/O errors.
fn wrap(path: &Path, err: hound::Error) -> AudioError {
    match err {
        hound::Error::IoError(source) => AudioError::Io {
            path: path.to_path_buf(),
            source,
        },
        source => AudioError::WavWrite {
            path: path.to_path_buf(),
            source,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoded_bytes_read_back_as_the_same_audio() {
        let samples: Vec<i16> = (0..1000).map(|i| (i * 37 % 2000 - 1000) as i16).collect();
        let bytes = encode_wav(16_000, &samples).unwrap();
        assert_eq!(bytes.len(), 44 + samples.len() * 2);
        let audio = crate::audio::wav::read_wav_from(&bytes[..]).unwrap();
        assert_eq!(audio.sample_rate, 16_000);
        assert_eq!(audio.to_mono(), samples);
        assert!(encode_wav(0, &samples).is_err());
    }
}
