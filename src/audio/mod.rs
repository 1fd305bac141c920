//! Audio toolkit: PCM helpers, G.711 mu-law, resampling, Opus and WAV.
//!
//! Everything here works on signed 16-bit samples (`i16`), mono unless a
//! type says otherwise, and is free of I/O except the [`wav`] file functions.
//!
//! | module | what |
//! |---|---|
//! | [`pcm`] | float conversion, mixdown, RMS/dBFS, little-endian bytes, gain |
//! | [`mulaw`] | G.711 mu-law, bit-exact with the classic tables (Twilio audio) |
//! | [`resample`] | [`StreamResampler`]: stateful 20 ms block resampling, any direction |
//! | `half_band` | [`StreamResampler`]'s stage for twice or half the rate (8 ↔ 16 kHz): a half-band filter, no blocks |
//! | [`opus`] | [`OpusEncoder`] / [`OpusDecoder`]: 48 kHz mono, 20 ms frames (WebRTC audio) |
//! | [`wav`] | [`read_wav`], [`WavWriter`], [`write_wav`] |
//!
//! All failures are one type, [`AudioError`].
//!
//! Functions that write into a caller's `&mut Vec` append to it and never
//! clear it, so a caller can reuse one buffer and stay allocation-free on
//! the per-frame path.

pub mod error;
mod half_band;
pub mod mulaw;
pub mod opus;
pub mod pcm;
pub mod resample;
pub mod wav;

pub use error::{AudioError, WavEncoding};
pub use opus::{OpusDecoder, OpusEncoder};
pub use resample::{StreamResampler, resample_all};
pub use wav::{WavAudio, WavWriter, read_wav, read_wav_from, write_wav};
