//! Silero VAD v6 in process: the ONNX model's weights, run by a forward pass
//! written by hand (no inference runtime).
//!
//! Speed and exactness are measured, not assumed: `benches/vad.rs` times a
//! chunk against `benches/silero_onnxruntime.py`, and `tests/speech/vad_silero.rs`
//! checks the probabilities against onnxruntime's on committed reference
//! numbers (`tools/gen_vad_reference.py`).

mod kernels;
mod layers;
mod model;
mod weights;

#[cfg(target_arch = "x86_64")]
pub(crate) use kernels::has_avx2_fma;
pub use model::SileroVad;
pub use weights::SileroModel;
