//! WAV files: read any common PCM WAV into 16-bit samples, write 16-bit mono.
//!
//! # Reading
//!
//! [`read_wav`] (and [`read_wav_from`] for any `Read`) accepts integer PCM
//! of 8, 16, 24 or 32 bits and 32-bit float, at any sample rate and channel
//! count, in plain (`WAVE_FORMAT_PCM`, `WAVE_FORMAT_IEEE_FLOAT`) or
//! `WAVE_FORMAT_EXTENSIBLE` headers, and converts every sample to `i16`
//! (wider integers rounded to nearest, floats scaled by 32768 and
//! saturated). The result keeps the file's channels interleaved;
//! [`WavAudio::to_mono`] mixes them down.
//!
//! # Why the reader is not hound's
//!
//! hound (a dependency already, for writing) reads the same encodings
//! (8-bit, 16/24/32-bit integer, 32-bit float, `WAVE_FORMAT_EXTENSIBLE`;
//! neither reads A-law or mu-law), but refuses files voxpipe must read and
//! loses what its errors must say.
//! Measured against hound 3.5.1 with the fixtures of `tests/integration/audio_wav.rs`:
//!
//! - a chunk of odd length before the data (a `LIST`/`INFO` chunk, padded
//!   to an even size as RIFF requires): hound does not skip the pad byte
//!   and fails with "Failed to read enough bytes";
//! - a data size of `0xFFFFFFFF` (streaming encoders, e.g. ffmpeg writing
//!   to a pipe) and a data chunk ending in part of a sample: hound refuses
//!   both ("data chunk length is not a multiple of sample size");
//! - A-law, mu-law and ADPCM are one `Error::Unsupported` that names no
//!   encoding, and a truncated data chunk an I/O error without counts;
//! - a zero sample rate is accepted.
//!
//! (5000 mutated headers, the `damaged_headers_never_panic` test's, made
//! hound panic 0 times: robustness is not the reason.) So the reader
//! (`header.rs`, `read.rs`) is voxpipe's own, and it reads strictly:
//!
//! - A data chunk shorter than its header says is an error,
//!   [`AudioError::TruncatedWavData`](super::AudioError::TruncatedWavData),
//!   with both counts; a file that ends before its data chunk starts is
//!   [`AudioError::TruncatedWavHeader`](super::AudioError::TruncatedWavHeader).
//!   Nothing is returned from a truncated file: a clip that silently ends
//!   early is worse than a clear error.
//! - A data size of `0xFFFFFFFF` (written by streaming encoders that cannot
//!   seek back) means "until the end of the file".
//! - Trailing bytes that do not make a whole frame are ignored, as are
//!   chunks after the data chunk and the RIFF size field.
//! - Compressed or exotic encodings (A-law, mu-law, ADPCM, 64-bit float, ...)
//!   are [`AudioError::UnsupportedWav`](super::AudioError::UnsupportedWav);
//!   inconsistent headers (zero channels, zero rate, a block size that does
//!   not fit the sample size, data before format) are
//!   [`AudioError::MalformedWav`](super::AudioError::MalformedWav).
//!
//! Every error names the file. Memory use is bounded by the file's actual
//! content, never by a size the header claims.
//!
//! # Writing
//!
//! [`WavWriter`] streams 16-bit mono PCM to a file (through hound) and
//! patches the header sizes on [`WavWriter::finalize`]; [`write_wav`] writes
//! a whole buffer in one call.

mod audio;
mod header;
mod read;
mod write;

pub use audio::WavAudio;
pub use read::{read_wav, read_wav_from};
pub use write::{WavWriter, encode_wav, write_wav};
