//! 20 ms mono Opus encoder.

use bytes::Bytes;
use ropus::{OPUS_APPLICATION_VOIP, OpusEncoder as Encoder};

use super::error::{OpusError, check};
use super::format::{
    DEFAULT_BITRATE_BPS, EXPECTED_LOSS_PERCENT, FRAME_SAMPLES, MAX_PACKET_BYTES, SAMPLE_RATE_HZ,
};
use crate::audio::AudioError;

/// Encodes 20 ms frames of 48 kHz mono audio to Opus packets.
///
/// See the [module docs](super) for the settings.
pub struct OpusEncoder {
    inner: Box<Encoder>,
    packet: Box<[u8; MAX_PACKET_BYTES]>,
}

impl std::fmt::Debug for OpusEncoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpusEncoder").finish_non_exhaustive()
    }
}

impl OpusEncoder {
    /// Creates an encoder: VoIP application, [`DEFAULT_BITRATE_BPS`],
    /// in-band FEC on for 10 % expected loss, no DTX.
    ///
    /// # Errors
    ///
    /// [`AudioError::OpusInit`] if the codec refuses a setting.
    pub fn new() -> Result<Self, AudioError> {
        let init = |source| AudioError::OpusInit { source };
        let mut inner = Encoder::new(SAMPLE_RATE_HZ as i32, 1, OPUS_APPLICATION_VOIP)
            .map_err(|code| init(OpusError::from_code(code)))?;
        check(inner.set_bitrate(DEFAULT_BITRATE_BPS)).map_err(init)?;
        check(inner.set_inband_fec(1)).map_err(init)?;
        check(inner.set_packet_loss_perc(EXPECTED_LOSS_PERCENT)).map_err(init)?;
        Ok(Self {
            inner: Box::new(inner),
            packet: Box::new([0; MAX_PACKET_BYTES]),
        })
    }

    /// Encodes one 20 ms frame ([`FRAME_SAMPLES`] samples) into a packet.
    ///
    /// # Errors
    ///
    /// [`AudioError::FrameSize`] if `pcm_20ms` is not exactly
    /// [`FRAME_SAMPLES`] long; [`AudioError::OpusEncode`] if the codec fails.
    pub fn encode(&mut self, pcm_20ms: &[i16]) -> Result<Bytes, AudioError> {
        if pcm_20ms.len() != FRAME_SAMPLES {
            return Err(AudioError::FrameSize {
                expected: FRAME_SAMPLES,
                actual: pcm_20ms.len(),
            });
        }
        let len = self
            .inner
            .encode(
                pcm_20ms,
                FRAME_SAMPLES as i32,
                &mut self.packet[..],
                MAX_PACKET_BYTES as i32,
            )
            .map_err(|code| AudioError::OpusEncode {
                source: OpusError::from_code(code),
            })?;
        let len = usize::try_from(len).unwrap_or(0).min(MAX_PACKET_BYTES);
        Ok(Bytes::copy_from_slice(&self.packet[..len]))
    }

    /// Sets the target bitrate in bits per second; the codec clamps positive
    /// values to 500..=750 000 for mono.
    ///
    /// # Errors
    ///
    /// [`AudioError::OpusInit`] for zero or negative values.
    pub fn set_bitrate(&mut self, bits_per_second: i32) -> Result<(), AudioError> {
        check(self.inner.set_bitrate(bits_per_second))
            .map_err(|source| AudioError::OpusInit { source })
    }

    /// Sets the CPU/quality trade-off, 0 (cheapest) to 10 (best, the
    /// default). Lower values let one core encode more streams.
    ///
    /// # Errors
    ///
    /// [`AudioError::OpusInit`] if the codec rejects the value.
    pub fn set_complexity(&mut self, complexity: i32) -> Result<(), AudioError> {
        check(self.inner.set_complexity(complexity))
            .map_err(|source| AudioError::OpusInit { source })
    }

    /// The encoder's look-ahead in 48 kHz samples: how much later a sound
    /// comes out of encode-then-decode than it went in.
    ///
    /// # Errors
    ///
    /// [`AudioError::OpusInit`] if the codec reports an error code.
    pub fn lookahead_samples(&mut self) -> Result<usize, AudioError> {
        let samples = self.inner.get_lookahead();
        check(samples).map_err(|source| AudioError::OpusInit { source })?;
        Ok(usize::try_from(samples).unwrap_or(0))
    }
}
