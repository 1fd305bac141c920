//! Pipeline definitions in TOML: the schema, `--set` overrides, and errors
//! that name the file, the line and the key.

mod error;
mod keypath;
mod load;
mod overrides;
mod schema;
mod webrtc;

pub use error::{ConfigError, ConfigErrors, Location};
pub use load::{load_pipeline, parse_pipeline};
pub use overrides::Override;
pub use schema::{
    InterruptionSection, PipelineConfig, PipelineSection, ProcessorEntry, SUPPORTED_SAMPLE_RATES,
    SampleRate, TransportSection,
};
pub use webrtc::{GatherTimeout, IceServerConfig, IceUrl, IdleTimeout, WebRtcSection};
