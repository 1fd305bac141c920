//! Smart Turn v3.2 in process: Daily's end-of-turn classifier (a Whisper
//! tiny encoder and an attention-pooling head), run from the shipped int8
//! ONNX model by a forward pass written by hand, as Silero is.
//!
//! - [`features`]: Whisper's log-mel features as Pipecat computes them.
//! - [`weights`]: the int8 weights and quantisation parameters.
//! - [`qgemm`]: the int8 products, exact int32 sums (AVX-512 VNNI, AVX2 or
//!   plain Rust).
//! - [`encoder`]: the forward pass.
//!
//! Exactness and speed are measured against onnxruntime:
//! `tests/speech/smart_turn.rs` checks the decisions on the committed reference
//! set (`tools/gen_smart_turn_reference.py`), `benches/smart_turn.rs` and
//! `benches/smart_turn_onnxruntime.py` time a decision.

mod attention;
mod byte_product;
mod encoder;
mod features;
mod lut;
mod qgemm;
mod weights;

use std::sync::{Arc, OnceLock};

use super::{EndOfTurnModel, VadError};
use weights::Weights;

/// The model shipped with voxpipe (`assets/smart_turn/`).
static EMBEDDED_ONNX: &[u8] = include_bytes!("../../../assets/smart_turn/smart-turn-v3.2-cpu.onnx");

/// Smart Turn v3.2: how likely a turn's audio is complete.
///
/// The weights (about 12 MB with their lookup tables) are shared between
/// clones; each clone has its own scratch, so one per session.
#[derive(Debug, Clone)]
pub struct SmartTurnModel {
    weights: Arc<Weights>,
    encoder: encoder::Encoder,
}

impl SmartTurnModel {
    /// The model shipped with voxpipe, read once per process.
    pub fn bundled() -> Result<SmartTurnModel, VadError> {
        static WEIGHTS: OnceLock<Result<Arc<Weights>, VadError>> = OnceLock::new();
        let weights = WEIGHTS
            .get_or_init(|| Weights::from_onnx(EMBEDDED_ONNX).map(Arc::new))
            .clone()?;
        Ok(SmartTurnModel::with_weights(weights))
    }

    /// Reads a Smart Turn v3.2 int8 ONNX model (`smart-turn-v3.2-cpu.onnx`).
    pub fn from_onnx(bytes: &[u8]) -> Result<SmartTurnModel, VadError> {
        Ok(SmartTurnModel::with_weights(Arc::new(Weights::from_onnx(
            bytes,
        )?)))
    }

    fn with_weights(weights: Arc<Weights>) -> SmartTurnModel {
        SmartTurnModel {
            weights,
            encoder: encoder::Encoder::new(),
        }
    }

    /// The model's input for `turn`: the `[80][800]` log-mel features.
    pub fn features(&mut self, turn: &[i16]) -> Vec<f32> {
        let mut out = vec![0.0; features::BANDS * features::FRAMES];
        self.encoder.features(turn, &mut out);
        out
    }
}

impl EndOfTurnModel for SmartTurnModel {
    fn sample_rate(&self) -> u32 {
        features::SAMPLE_RATE as u32
    }

    fn end_of_turn_probability(&mut self, turn: &[i16]) -> f32 {
        self.encoder.probability(&self.weights, turn)
    }
}
