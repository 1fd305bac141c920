//! Pipeline definitions in TOML: the schema, `--set` overrides, and errors
//! that name the file, the line and the key.
//!
//! Sections: `[pipeline]`, `[[processor]]`, `[transport.twilio]`
//! ([`TwilioSection`]) and `[server]` ([`ServerSection`]).

mod error;
mod keypath;
mod load;
mod overrides;
mod schema;
mod server;
mod twilio;
mod webrtc;

pub use error::{ConfigError, ConfigErrors, Location};
pub use load::{load_pipeline, parse_pipeline};
pub use overrides::Override;
pub use schema::{
    InterruptionSection, PipelineConfig, PipelineSection, ProcessorEntry, SUPPORTED_SAMPLE_RATES,
    SampleRate, TransportSection,
};
pub(crate) use server::is_url_host;
pub use server::{MessageBytes, PublicHost, Seconds, ServerSection};
pub use twilio::{BaseUrl, TwilioSection};
pub use webrtc::{GatherTimeout, IceServerConfig, IceUrl, IdleTimeout, WebRtcSection};
