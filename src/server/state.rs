//! What the server's request handlers share: the pipeline, the live
//! sessions, the metrics, each transport's side. Built once by
//! `ServerBuilder::build`, then only read (its parts change inside).

use std::sync::Arc;
use std::time::Instant;

use crate::agent::AgentRuntime;
use crate::outbound::TwilioDialer;
use crate::outbound::campaign::CampaignRunner;
use crate::pipeline::Observer;
use crate::pipeline::{EnvSource, SessionSetup};
use crate::pipeline_file::PipelineConfig;
use crate::transport::TransportStats;
use crate::transport::twilio::TwilioRest;
use crate::transport::webrtc::WebRtcSignalling;

use super::admission::Admission;
use super::api_access::ApiAccess;
use super::in_flight::InFlight;
use super::live_sessions::LiveSessions;
use super::message_marks::MessageMarks;
use super::message_sender::MessageSender;
use super::metrics::ServerMetrics;
use super::readiness::ReadinessCheck;
use super::stream_auth::StreamAuth;
use crate::text::TextConversations;

/// Makes an observer for each new session (turn persistence, tests).
pub type ObserverFactory = Arc<dyn Fn(&SessionSetup) -> Arc<dyn Observer> + Send + Sync>;

/// What every handler shares.
pub(crate) struct ServerState {
    pub(crate) config: PipelineConfig,
    pub(crate) env: EnvSource,
    pub(crate) sessions: Arc<LiveSessions>,
    pub(crate) metrics: Arc<ServerMetrics>,
    pub(crate) readiness: Vec<Arc<dyn ReadinessCheck>>,
    pub(crate) observers: Vec<ObserverFactory>,
    /// Session memory, the context store and its workers, when the
    /// pipeline keeps its calls.
    pub(crate) agent: Option<Arc<AgentRuntime>>,
    pub(crate) twilio: TwilioState,
    /// The browser calls, by `pc_id`.
    pub(crate) webrtc: WebRtcSignalling,
    /// Rate limits, keys, and the sessions `/start` made.
    pub(crate) admission: Admission,
    /// Who may use the management API.
    pub(crate) api: ApiAccess,
    /// The Twilio dialler behind `dialer`: status callbacks, cancels and
    /// the streams of outbound calls go through it.
    pub(crate) outbound: Option<Arc<TwilioDialer>>,
    /// The campaign worker, when this server can dial (a dialler and a
    /// store).
    pub(crate) campaigns: Option<CampaignRunner>,
    pub(crate) started: Instant,
    /// Text conversations (SMS, WhatsApp, `/api/chat`), when the pipeline
    /// has a text path.
    pub(crate) text: Option<Arc<TextConversations>>,
    /// Sends answers through Twilio's Messages resource, when the auth
    /// token and the account SID are configured.
    pub(crate) messaging: Option<MessageSender>,
    /// Answers still being made or sent after their request was answered
    /// (text messages): a graceful shutdown waits for them.
    pub(crate) answers: InFlight,
    /// Incoming messages noted in the store and not yet answered.
    pub(crate) message_marks: MessageMarks,
}

impl axum::extract::FromRef<Arc<ServerState>> for ApiAccess {
    fn from_ref(state: &Arc<ServerState>) -> ApiAccess {
        state.api.clone()
    }
}

/// The Twilio side of the server.
pub(crate) struct TwilioState {
    /// Verifies webhooks when set.
    pub(crate) auth_token: Option<String>,
    /// Hangs up calls; `None` without an auth token or with `hang_up = false`.
    pub(crate) rest: Option<TwilioRest>,
    pub(crate) stats: Arc<dyn TransportStats>,
    /// Who may open a media stream.
    pub(crate) stream_auth: StreamAuth,
}
