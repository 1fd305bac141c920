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
//! # Which Opus
//!
//! The codec is [`ropus`], a pure-Rust port of the xiph reference
//! (fixed-point build), bit-exact against it. It replaced the `opus` crate,
//! whose libopus build needs cmake: with ropus a fresh machine builds
//! voxpipe with the Rust toolchain alone. Measured against that libopus
//! (1.5, float, runtime SIMD) at the settings above, complexity 10, on 17 s
//! of espeak-ng speech resampled to 48 kHz:
//!
//! | | libopus | ropus | opus-rs 0.1.40 | mousiki 0.2.1 |
//! |---|---|---|---|---|
//! | encode, instructions per frame (callgrind) | 2.21 M | 4.41 M | 4.28 M | |
//! | decode, instructions per frame (callgrind) | 0.30 M | 0.50 M | 0.51 M | |
//! | encode / decode, µs per frame (wall, median of 3, load 0.7 on 2 cores) | 221 / 30 | 374 / 38 | 374 / 35 | |
//! | round trip SNR / segmental SNR (dB) | 10.90 / 8.12 | 10.88 / 8.10 | 9.65 / 7.01 | -2.2 / -2.3 |
//! | its packets decoded by libopus, SNR (dB) | | 10.88 | 9.65 | -8.3 |
//! | bitrate for a 32 kbit/s target | 31.3 | 31.2 | 38.4 | 32.7 |
//! | 15 % loss: segmental SNR, all / lost frames (dB) | 6.24 / -0.55 | 6.24 / 0.21 | 6.24 / -0.55 | |
//! | 15 % loss: level of a concealed frame / the original's (median) | 0.53 | 0.19 | 0.53 | |
//! | 300 Hz tone, two lost then one FEC-rebuilt frame: RMS of the 7 070 sent | 5 974, 3 468 / 4 211 | 2 018, 14 / 2 123 | | |
//!
//! Where they differ is loss handling: ropus's concealment and FEC rebuild
//! come out at about half of float libopus's level, and a second loss in a
//! row fades to near silence (the fixed-point libopus build does not do
//! that, so it is a divergence of the port). On speech this costs nothing
//! measurable (the quieter guess is no less wrong); opus-rs's decoder
//! gives libopus's figures in both loss rows, should it ever matter.
//!
//! ropus costs about twice libopus's encoding instructions (under 0.5 ms
//! of one core per 20 ms frame, about 2 %) and 1.7 times its decoding
//! ones, for the same quality, and its packets and libopus's decode
//! identically either way round (Chromium runs libopus). opus-rs overshoots
//! the bitrate for less quality; mousiki's round trip is broken at these
//! settings. No crate builds the C libopus without cmake (`opusic-sys`,
//! `audiopus_sys`, `libopus_sys` and `opus-static-sys` all use it).
//!
//! What ropus costs beyond that: it allocates its scratch on the heap per
//! call, 28 buffers (16 KB) per decode and 262 (117 KB) per encode, where
//! libopus used the stack (tests/audio_alloc.rs holds it to those counts;
//! the instruction counts above include them). opus-rs is heap-free by
//! design; a switch to it, or a ropus patch upstream, would restore
//! allocation-free frames.
//!
//! # Stereo peers
//!
//! Browsers normally send mono (`stereo=0` in the SDP), but a peer may send
//! stereo packets regardless. The decoder is a mono Opus decoder, and
//! Opus decodes any packet to the channel count its decoder was created
//! with: a stereo packet is downmixed to mono inside the codec (the mid
//! signal), so callers never see interleaved audio and need no check.
//!
//! # Allocation
//!
//! Both sides preallocate their own output buffer. `decode` only appends to
//! the caller's `Vec`; `encode` allocates the returned [`bytes::Bytes`]. The
//! codec inside allocates its scratch per call (above).

mod decoder;
mod encoder;
mod error;
mod format;

pub use decoder::OpusDecoder;
pub use encoder::OpusEncoder;
pub use error::OpusError;
pub use format::{DEFAULT_BITRATE_BPS, FRAME_SAMPLES, MAX_FRAME_SAMPLES, SAMPLE_RATE_HZ};
