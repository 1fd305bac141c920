//! The built-in processors, and the registry that builds them from TOML.

mod gain;
mod parallel;
mod parrot;
mod passthrough;
mod registry;
mod resample;
mod vad;

pub use gain::{AudioSelector, Gain, GainConfig};
pub use parallel::{Parallel, ParallelFactory};
pub use parrot::{Parrot, ParrotConfig};
pub use passthrough::{Passthrough, PassthroughConfig};
pub use registry::{ProcessorFactory, ProcessorRegistry};
pub use resample::{FrameResampler, Resample, ResampleConfig};
pub use vad::{Vad, VadConfig, VadEngine};

/// Registers every built-in processor type.
fn register_builtin(registry: &mut ProcessorRegistry) {
    registry.register::<GainConfig>("gain");
    registry.register::<ParrotConfig>("parrot");
    registry.register::<PassthroughConfig>("passthrough");
    registry.register::<ResampleConfig>("resample");
    registry.register::<VadConfig>("vad");
}
