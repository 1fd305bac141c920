//! 48 kHz mono Opus decoder with loss concealment.

use ropus::OpusDecoder as Decoder;

use super::error::OpusError;
use super::format::{FRAME_SAMPLES, MAX_FRAME_SAMPLES, SAMPLE_RATE_HZ};
use crate::audio::AudioError;

/// Decodes Opus packets (mono or stereo) to 48 kHz mono samples.
///
/// See the [module docs](super) for how stereo packets are handled.
pub struct OpusDecoder {
    inner: Box<Decoder>,
    scratch: Box<[i16; MAX_FRAME_SAMPLES]>,
}

impl std::fmt::Debug for OpusDecoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpusDecoder").finish_non_exhaustive()
    }
}

impl OpusDecoder {
    /// Creates a 48 kHz mono decoder.
    ///
    /// # Errors
    ///
    /// [`AudioError::OpusInit`] if the codec refuses the parameters.
    pub fn new() -> Result<Self, AudioError> {
        let inner =
            Decoder::new(SAMPLE_RATE_HZ as i32, 1).map_err(|code| AudioError::OpusInit {
                source: OpusError::from_code(code),
            })?;
        Ok(Self {
            inner: Box::new(inner),
            scratch: Box::new([0; MAX_FRAME_SAMPLES]),
        })
    }

    /// Decodes one packet and appends its samples to `out`, returning how
    /// many were appended (960 for a 20 ms packet).
    ///
    /// An empty `packet` means "this packet was lost", as in libopus, and is
    /// the same as [`decode_lost`](Self::decode_lost).
    ///
    /// # Errors
    ///
    /// [`AudioError::OpusDecode`] if the packet is corrupt; the decoder stays
    /// usable and `out` is untouched.
    pub fn decode(&mut self, packet: &[u8], out: &mut Vec<i16>) -> Result<usize, AudioError> {
        if packet.is_empty() {
            return self.decode_lost(out);
        }
        self.run(packet, MAX_FRAME_SAMPLES, false, out)
    }

    /// Conceals one lost packet: appends a synthesised continuation as long
    /// as the last packet (20 ms before the first one) and returns its length.
    ///
    /// # Errors
    ///
    /// [`AudioError::OpusDecode`] if the codec fails.
    pub fn decode_lost(&mut self, out: &mut Vec<i16>) -> Result<usize, AudioError> {
        let len = self.last_packet_samples();
        self.run(&[], len, false, out)
    }

    /// Rebuilds a lost packet from the in-band FEC data carried by
    /// `next_packet`, the packet that arrived after the gap, and appends it
    /// (as long as the last packet). Call [`decode`](Self::decode) on
    /// `next_packet` afterwards as usual. If `next_packet` carries no FEC
    /// data, the codec falls back to concealment.
    ///
    /// # Errors
    ///
    /// [`AudioError::OpusDecode`] if `next_packet` is corrupt.
    pub fn decode_fec(
        &mut self,
        next_packet: &[u8],
        out: &mut Vec<i16>,
    ) -> Result<usize, AudioError> {
        let len = self.last_packet_samples();
        self.run(next_packet, len, !next_packet.is_empty(), out)
    }

    /// Forgets the decoder state, for a new stream.
    ///
    /// # Errors
    ///
    /// None today: the `Result` is kept so that callers need not change if
    /// a codec's reset can fail (libopus's could).
    pub fn reset(&mut self) -> Result<(), AudioError> {
        self.inner.reset();
        Ok(())
    }

    /// Duration of the last decoded packet, the length concealment and FEC
    /// must produce; a 20 ms frame before any packet.
    fn last_packet_samples(&self) -> usize {
        match usize::try_from(self.inner.get_last_packet_duration()) {
            Ok(n) if n > 0 => n.min(MAX_FRAME_SAMPLES),
            _ => FRAME_SAMPLES,
        }
    }

    fn run(
        &mut self,
        packet: &[u8],
        max_samples: usize,
        fec: bool,
        out: &mut Vec<i16>,
    ) -> Result<usize, AudioError> {
        let data = (!packet.is_empty()).then_some(packet);
        let n = self
            .inner
            .decode(
                data,
                &mut self.scratch[..max_samples],
                max_samples as i32,
                fec,
            )
            .map_err(|code| AudioError::OpusDecode {
                packet_len: packet.len(),
                source: OpusError::from_code(code),
            })?;
        let n = usize::try_from(n).unwrap_or(0).min(max_samples);
        out.extend_from_slice(&self.scratch[..n]);
        Ok(n)
    }
}
