//! Why a voice activity detector could not be set up.

/// A VAD model that cannot be loaded or run as asked.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum VadError {
    /// The model file is not a well-formed ONNX protobuf.
    #[error("malformed ONNX model: {what}")]
    MalformedModel {
        /// What is wrong.
        what: &'static str,
    },
    /// A tensor's shape and its number of values disagree.
    #[error("malformed ONNX model: tensor `{name}` has shape {dims:?} but {values} values")]
    TensorSize {
        /// The tensor.
        name: String,
        /// Its declared shape.
        dims: Vec<usize>,
        /// How many values it holds.
        values: usize,
    },
    /// The model has no weights for this sample rate.
    #[error("the Silero model has no weights for {rate} Hz")]
    MissingRate {
        /// The rate asked for.
        rate: u32,
    },
    /// A weight the Silero architecture needs is missing.
    #[error("the Silero model for {rate} Hz has no tensor `{name}`")]
    MissingTensor {
        /// The rate whose weights were being read.
        rate: u32,
        /// The tensor's name.
        name: &'static str,
    },
    /// A weight has another shape than the Silero architecture expects.
    #[error("the Silero model's `{name}` has shape {found:?}, expected {expected:?}")]
    TensorShape {
        /// The tensor's name.
        name: &'static str,
        /// The shape the forward pass is written for.
        expected: Vec<usize>,
        /// The shape in the file.
        found: Vec<usize>,
    },
    /// The model's STFT basis is not a windowed DFT, which the forward pass
    /// computes with an FFT.
    #[error("the Silero model's STFT basis for {rate} Hz is not a windowed DFT")]
    NotWindowedDft {
        /// The rate whose basis was checked.
        rate: u32,
    },
    /// A tensor the Smart Turn forward pass needs is missing, or has
    /// another type or shape than the shipped model's.
    #[error("the Smart Turn model's tensor `{name}` is {problem}")]
    SmartTurnTensor {
        /// The tensor's name in the ONNX file.
        name: String,
        /// What is wrong with it.
        problem: &'static str,
    },
    /// The engine cannot run at this sample rate.
    #[error("{engine} runs at {supported:?} Hz, not {rate} Hz")]
    UnsupportedRate {
        /// The engine.
        engine: &'static str,
        /// The rate asked for.
        rate: u32,
        /// The rates it supports.
        supported: &'static [u32],
    },
}
