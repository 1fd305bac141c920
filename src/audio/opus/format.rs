//! The fixed stream parameters of voxpipe's Opus audio.

/// Opus sample rate voxpipe uses, in Hz (WebRTC's Opus clock).
pub const SAMPLE_RATE_HZ: u32 = 48_000;

/// Samples in one 20 ms mono frame at 48 kHz: the only size
/// [`OpusEncoder::encode`](super::OpusEncoder::encode) accepts.
pub const FRAME_SAMPLES: usize = 960;

/// Samples in the longest Opus packet (120 ms at 48 kHz): the most one
/// [`OpusDecoder::decode`](super::OpusDecoder::decode) call can append.
pub const MAX_FRAME_SAMPLES: usize = 5_760;

/// Encoder bitrate set by [`OpusEncoder::new`](super::OpusEncoder::new), in
/// bits per second: wideband speech with room for FEC.
pub const DEFAULT_BITRATE_BPS: i32 = 32_000;

/// Largest packet libopus is allowed to write (its recommended bound).
pub(super) const MAX_PACKET_BYTES: usize = 4_000;

/// Loss rate the encoder plans FEC for, in percent. Opus only spends bits
/// on in-band FEC when this is above zero.
pub(super) const EXPECTED_LOSS_PERCENT: i32 = 10;
