//! The TOML machinery of pipeline files and their leaf sections: `--set`
//! overrides, errors that name the file, the line and the key, and the
//! sections that depend on nothing else of voxpipe's: `[pipeline]`,
//! `[interruption]`, `[transport.twilio]` ([`TwilioSection`]),
//! `[transport.webrtc]` ([`WebRtcSection`]), `[server]`
//! ([`ServerSection`]) and `[recording]` ([`RecordingSection`]).
//!
//! A whole pipeline file, with its processors and the agent's sections, is
//! put together above the processors and the agent layer (the
//! `pipeline_file` module).

mod diagnostics;
mod error;
mod keypath;
mod overrides;
mod recording;
mod schema;
mod seconds;
mod server;
mod twilio;
mod webrtc;

pub(crate) use diagnostics::{Errors, blame_overrides};
pub use error::{ConfigError, ConfigErrors, Location};
pub(crate) use keypath::key_path_at;
pub use overrides::Override;
pub(crate) use overrides::apply as apply_overrides;
pub use recording::{RecordingDir, RecordingSection};
pub use schema::{
    InterruptionSection, Opening, PipelineSection, SUPPORTED_SAMPLE_RATES, SampleRate,
    TransportSection,
};
pub use seconds::{OutOfRange, Seconds};
pub(crate) use server::is_url_host;
pub use server::{CorsOrigin, MessageBytes, PublicHost, ServerId, ServerSection};
pub use twilio::{BaseUrl, TwilioSection};
pub use webrtc::{GatherTimeout, IceServerConfig, IceUrl, MdnsMode, WebRtcSection};
