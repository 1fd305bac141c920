//! Opus for WebRTC audio: 48 kHz mono, 20 ms frames.
//!
//! [`OpusEncoder`] turns exactly one 20 ms frame ([`FRAME_SAMPLES`] = 960
//! samples at 48 kHz) into one packet; any other length is
//! [`AudioError::FrameSize`](super::AudioError::FrameSize). It is set up for
//! speech over a lossy network: the VoIP application, 32 kbit/s, in-band
//! forward error correction on, tuned for 10 % expected loss.
//!
//! [`OpusDecoder`] decodes packets of any legal duration (2.5 to 120 ms)
//! to 48 kHz mono, conceals lost packets ([`OpusDecoder::decode_lost`]) and
//! can rebuild a lost packet from the FEC data of the one after it
//! ([`OpusDecoder::decode_fec`]).
//!
//! # Stereo peers
//!
//! Browsers normally send mono (`stereo=0` in the SDP), but a peer may send
//! stereo packets regardless. The decoder is a mono libopus decoder, and
//! libopus decodes any packet to the channel count its decoder was created
//! with: a stereo packet is downmixed to mono inside the codec (the mid
//! signal), so callers never see interleaved audio and need no check.
//!
//! # Allocation
//!
//! Both sides preallocate their scratch buffer. `decode` only appends to the
//! caller's `Vec`; `encode` allocates the returned [`bytes::Bytes`].

mod decoder;
mod encoder;
mod format;

pub use decoder::OpusDecoder;
pub use encoder::OpusEncoder;
pub use format::{DEFAULT_BITRATE_BPS, FRAME_SAMPLES, MAX_FRAME_SAMPLES, SAMPLE_RATE_HZ};
