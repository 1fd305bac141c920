//! Audio toolkit (being written on its own branch; this is a stand-in).

pub mod pcm {
    //! PCM helpers.
    /// 16-bit little-endian bytes from samples.
    pub fn samples_to_le_bytes(samples: &[i16]) -> bytes::Bytes {
        let mut out = Vec::with_capacity(samples.len() * 2);
        for s in samples {
            out.extend_from_slice(&s.to_le_bytes());
        }
        out.into()
    }
    /// Stand-in.
    pub fn apply_gain_db(samples: &mut [i16], db: f32) {
        let g = 10f32.powf(db / 20.0);
        for s in samples {
            *s = (f32::from(*s) * g).round().clamp(-32768.0, 32767.0) as i16;
        }
    }
    /// Samples from 16-bit little-endian bytes.
    pub fn samples_from_le_bytes(bytes: &[u8]) -> Vec<i16> {
        bytes
            .chunks_exact(2)
            .map(|c| i16::from_le_bytes([c[0], c[1]]))
            .collect()
    }
}

pub mod wav {
    //! Stand-in.
    use std::path::Path;
    /// Stand-in error.
    #[derive(Debug, thiserror::Error)]
    #[error("{0}")]
    pub struct AudioError(pub(crate) String);
    /// Stand-in writer.
    pub struct WavWriter(hound::WavWriter<std::io::BufWriter<std::fs::File>>);
    /// Stand-in.
    pub struct WavAudio {
        /// s
        pub samples: Vec<i16>,
        /// r
        pub sample_rate: u32,
        /// c
        pub channels: u16,
    }
    impl WavAudio {
        /// mono
        pub fn to_mono(&self) -> Vec<i16> {
            self.samples
                .chunks(self.channels as usize)
                .map(|c| (c.iter().map(|s| i32::from(*s)).sum::<i32>() / c.len() as i32) as i16)
                .collect()
        }
    }
    /// Stand-in.
    pub fn read_wav(path: &Path) -> Result<WavAudio, AudioError> {
        let r = hound::WavReader::open(path)
            .map_err(|e| AudioError(format!("{}: {e}", path.display())))?;
        let spec = r.spec();
        let samples = r
            .into_samples::<i16>()
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| AudioError(e.to_string()))?;
        Ok(WavAudio {
            samples,
            sample_rate: spec.sample_rate,
            channels: spec.channels,
        })
    }
    impl WavWriter {
        /// Create.
        pub fn create(path: &Path, sample_rate: u32) -> Result<Self, AudioError> {
            let spec = hound::WavSpec {
                channels: 1,
                sample_rate,
                bits_per_sample: 16,
                sample_format: hound::SampleFormat::Int,
            };
            hound::WavWriter::create(path, spec)
                .map(WavWriter)
                .map_err(|e| AudioError(e.to_string()))
        }
        /// Write.
        pub fn write(&mut self, samples: &[i16]) -> Result<(), AudioError> {
            for s in samples {
                self.0
                    .write_sample(*s)
                    .map_err(|e| AudioError(e.to_string()))?;
            }
            Ok(())
        }
        /// Finalize.
        pub fn finalize(self) -> Result<(), AudioError> {
            self.0.finalize().map_err(|e| AudioError(e.to_string()))
        }
    }
}

pub mod resample {
    //! Stand-in.
    /// Stand-in.
    pub fn resample_all(
        input: &[i16],
        from: u32,
        to: u32,
    ) -> Result<Vec<i16>, super::wav::AudioError> {
        if from == to {
            return Ok(input.to_vec());
        }
        Err(super::wav::AudioError("stand-in cannot resample".into()))
    }
}
