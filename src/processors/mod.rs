//! The built-in processors, and the registry that builds them from TOML.

mod aggregators;
mod gain;
mod parallel;
mod parrot;
mod passthrough;
mod registry;
mod resample;
mod vad;

pub use aggregators::{
    AssistantContextAggregator, AssistantContextConfig, AssistantTurnTracker, CompletedTurn,
    TurnAnalyzerKind, TurnEndConfig, UserContextAggregator, UserContextConfig, UserTurnTracker,
    end_of_turn_model, heard_text,
};
pub use gain::{AudioSelector, Gain, GainConfig};
pub use parallel::{Parallel, ParallelFactory};
pub use parrot::{Parrot, ParrotConfig};
pub use passthrough::{Passthrough, PassthroughConfig};
pub use registry::ProcessorRegistry;
pub use resample::{Resample, ResampleConfig};
pub use vad::{Vad, VadConfig, VadEngine};

/// Registers every built-in processor type.
fn register_builtin(registry: &mut ProcessorRegistry) {
    registry.register::<GainConfig>("gain");
    registry.register::<ParrotConfig>("parrot");
    registry.register::<PassthroughConfig>("passthrough");
    registry.register::<ResampleConfig>("resample");
    registry.register::<VadConfig>("vad");
    registry.register::<UserContextConfig>("user_context");
    registry.register::<AssistantContextConfig>("assistant_context");
    registry.register_provider::<crate::services::stt::DeepgramSttConfig>("stt", "deepgram");
    registry.register_provider::<crate::services::stt::OpenAiSttConfig>("stt", "openai");
    registry.register_provider::<crate::services::llm::OpenAiLlmConfig>("llm", "openai");
    registry.register_provider::<crate::services::tts::OpenAiTtsConfig>("tts", "openai");
    registry.register_provider::<crate::services::tts::ElevenLabsTtsConfig>("tts", "elevenlabs");
    registry.register_provider::<crate::services::tts::CartesiaTtsConfig>("tts", "cartesia");
}
