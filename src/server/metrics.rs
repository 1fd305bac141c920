//! The server's metrics, and their exposition for `GET /metrics`
//! (Prometheus text format).
//!
//! | metric | type | labels |
//! |---|---|---|
//! | `voxpipe_sessions_active` | gauge | |
//! | `voxpipe_sessions_total` | counter | `transport`, `reason` (how it ended) |
//! | `voxpipe_sessions_refused_total` | counter | `transport`, `reason` (`at_capacity`, `draining`) |
//! | `voxpipe_session_duration_seconds` | histogram | |
//! | `voxpipe_audio_frames_total` | counter | `transport`, `direction` (`in`, `out`); 20 ms each |
//! | `voxpipe_errors_total` | counter | `kind`, `source` (a transport or a processor) |
//! | `voxpipe_peer_connections` | gauge | `transport`: WebRTC peer connections open now, each holding its UDP sockets (other transports have none) |
//! | `voxpipe_transit_seconds` | histogram | inbound audio from transport in to transport out |
//! | `voxpipe_ttfb_seconds` | histogram | `processor` |
//! | `voxpipe_voice_to_voice_seconds` | histogram | end of user speech to first bot audio out |
//! | `voxpipe_preemptive_replies_total` | counter | `outcome` (`confirmed`: played the moment the turn ended, `discarded`: the user resumed, or an interruption cancelled it; never heard) |
//! | `voxpipe_twilio_hangups_total` | counter | `result` (`completed`, `already_ended`, `failed`) |
//! | `voxpipe_outbound_calls_total` | counter | `status`: the final status an outbound call settled in (`completed`, `busy`, `no-answer`, `failed`, `canceled`) |
//! | `voxpipe_dial_latency_seconds` | histogram | from a call handed to the dialler to Twilio accepting it (`Calls.json` answered 201) |
//! | `voxpipe_campaign_entries` | gauge | `state` (`pending`, `active`, `done`): every unfinished campaign's numbers, from the store (the same on every server) |
//! | `voxpipe_campaign_dials_total` | counter | `result` (`placed`, `uncertain`, `rate_limited`, `refused`, `number_limited`, `settled`, `unavailable`, `error`) |
//! | `voxpipe_campaign_dial_seconds` | histogram | a campaign call's slot to Twilio's answer |
//!
//! Every family is registered at start, so a scrape shows them all before
//! the first call.

use std::sync::Arc;
use std::time::Duration;

use axum::http::header;
use axum::response::IntoResponse;

use crate::metrics::prometheus::{Counter, Gauge, Histogram, LATENCY_BUCKETS, Registry};
use crate::outbound::CallSettled;
use crate::outbound::campaign::CampaignStats;
use crate::store::{CallRecord, CallStatus};
use crate::transport::TransportStats;

const SESSIONS_TOTAL: (&str, &str) = (
    "voxpipe_sessions_total",
    "Sessions ended, by transport and end reason.",
);
const REFUSED_TOTAL: (&str, &str) = (
    "voxpipe_sessions_refused_total",
    "Sessions refused, by transport and reason.",
);
const AUDIO_FRAMES: (&str, &str) = (
    "voxpipe_audio_frames_total",
    "20 ms audio frames in from users and out to them.",
);
const ERRORS_TOTAL: (&str, &str) = (
    "voxpipe_errors_total",
    "Errors and skipped input, by kind and source.",
);
const TTFB: (&str, &str) = (
    "voxpipe_ttfb_seconds",
    "Time to first byte of service responses, by processor.",
);
const HANGUPS_TOTAL: (&str, &str) = (
    "voxpipe_twilio_hangups_total",
    "Twilio calls hung up through the REST API, by result.",
);
const OUTBOUND_CALLS_TOTAL: (&str, &str) = (
    "voxpipe_outbound_calls_total",
    "Outbound calls that reached a final status, by status.",
);
const PREEMPTIVE_REPLIES: (&str, &str) = (
    "voxpipe_preemptive_replies_total",
    "Replies prepared before the user's turn was confirmed over, by outcome.",
);
const PEER_CONNECTIONS: (&str, &str) = (
    "voxpipe_peer_connections",
    "Peer connections open now (each holding its UDP sockets), by transport.",
);
const CAMPAIGN_DIALS: (&str, &str) = ("voxpipe_campaign_dials_total", "Campaign dials, by result.");
/// Call lengths, from 1 s to an hour.
const DURATION_BUCKETS: &[f64] = &[
    1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0,
];

/// Every metric the server exports.
#[derive(Debug)]
pub(crate) struct ServerMetrics {
    registry: Registry,
    pub(crate) sessions_active: Gauge,
    pub(crate) session_duration: Histogram,
    pub(crate) transit: Histogram,
    pub(crate) voice_to_voice: Histogram,
    dial_latency: Histogram,
    campaign_entries: [Gauge; 3],
    campaign_dial: Histogram,
}

impl ServerMetrics {
    pub(crate) fn new() -> Self {
        let registry = Registry::new();
        let sessions_active =
            registry.gauge("voxpipe_sessions_active", "Sessions running now.", &[]);
        let session_duration = registry.histogram(
            "voxpipe_session_duration_seconds",
            "How long sessions lasted.",
            &[],
            DURATION_BUCKETS,
        );
        let transit = registry.histogram(
            "voxpipe_transit_seconds",
            "Time inbound audio takes from the transport's input to its output.",
            &[],
            LATENCY_BUCKETS,
        );
        let voice_to_voice = registry.histogram(
            "voxpipe_voice_to_voice_seconds",
            "Time from the end of the user's speech to the bot's first audio out.",
            &[],
            LATENCY_BUCKETS,
        );
        let dial_latency = registry.histogram(
            "voxpipe_dial_latency_seconds",
            "Time from a call handed to the dialler to Twilio accepting it.",
            &[],
            LATENCY_BUCKETS,
        );
        let campaign_entries = ["pending", "active", "done"].map(|state| {
            registry.gauge(
                "voxpipe_campaign_entries",
                "Numbers of unfinished campaigns, by state.",
                &[("state", state)],
            )
        });
        let campaign_dial = registry.histogram(
            "voxpipe_campaign_dial_seconds",
            "Time a campaign dial takes, from its rate slot to Twilio's answer.",
            &[],
            LATENCY_BUCKETS,
        );
        // Families whose series appear with their first label set: declared
        // now so that a scrape lists them from the start.
        for (name, help) in [
            SESSIONS_TOTAL,
            REFUSED_TOTAL,
            AUDIO_FRAMES,
            ERRORS_TOTAL,
            HANGUPS_TOTAL,
            OUTBOUND_CALLS_TOTAL,
            CAMPAIGN_DIALS,
            PREEMPTIVE_REPLIES,
        ] {
            registry.declare_counter(name, help);
        }
        registry.declare_histogram(TTFB.0, TTFB.1, LATENCY_BUCKETS);
        ServerMetrics {
            registry,
            sessions_active,
            session_duration,
            transit,
            voice_to_voice,
            dial_latency,
            campaign_entries,
            campaign_dial,
        }
    }

    /// An outbound call reached its final status `status`: counted in
    /// `voxpipe_outbound_calls_total{status}`. Call it once per call, where
    /// the final status is first recorded (the status callback, a dial that
    /// failed), not for repeated callbacks. A status that is not final is
    /// ignored.
    pub(crate) fn outbound_call_settled(&self, status: CallStatus) {
        if !status.is_final() {
            return;
        }
        let (name, help) = OUTBOUND_CALLS_TOTAL;
        self.registry
            .counter(name, help, &[("status", status.as_str())])
            .inc();
    }

    /// The dialler placed a call in `latency`: from the call handed to it
    /// (an API request, a campaign's pick) to Twilio's `201` for
    /// `Calls.json`. Observed in `voxpipe_dial_latency_seconds`.
    pub(crate) fn dial_latency(&self, latency: Duration) {
        self.dial_latency.observe(latency.as_secs_f64());
    }

    pub(crate) fn session_ended(&self, transport: &str, reason: &str, duration: Duration) {
        let (name, help) = SESSIONS_TOTAL;
        self.registry
            .counter(name, help, &[("transport", transport), ("reason", reason)])
            .inc();
        self.session_duration.observe(duration.as_secs_f64());
    }

    pub(crate) fn session_refused(&self, transport: &str, reason: &str) {
        let (name, help) = REFUSED_TOTAL;
        self.registry
            .counter(name, help, &[("transport", transport), ("reason", reason)])
            .inc();
    }

    /// A preemptive reply was `confirmed` (played) or `discarded`.
    pub(crate) fn preemptive_reply(&self, outcome: &str) {
        let (name, help) = PREEMPTIVE_REPLIES;
        self.registry
            .counter(name, help, &[("outcome", outcome)])
            .inc();
    }

    pub(crate) fn error(&self, kind: &str, source: &str) {
        let (name, help) = ERRORS_TOTAL;
        self.registry
            .counter(name, help, &[("kind", kind), ("source", source)])
            .inc();
    }

    pub(crate) fn ttfb(&self, processor: &str, seconds: f64) {
        let (name, help) = TTFB;
        self.registry
            .histogram(name, help, &[("processor", processor)], LATENCY_BUCKETS)
            .observe(seconds);
    }

    pub(crate) fn hang_up(&self, result: &str) {
        let (name, help) = HANGUPS_TOTAL;
        self.registry
            .counter(name, help, &[("result", result)])
            .inc();
    }

    /// Counters for one transport's calls.
    pub(crate) fn transport_stats(
        self: &Arc<Self>,
        transport: &'static str,
    ) -> Arc<dyn TransportStats> {
        // Only WebRTC calls hold peer connections: another transport's
        // gauge would read 0 for ever.
        let connections = (transport == "webrtc").then(|| {
            let (name, help) = PEER_CONNECTIONS;
            self.registry.gauge(name, help, &[("transport", transport)])
        });
        let (name, help) = AUDIO_FRAMES;
        let frames = |direction| {
            self.registry.counter(
                name,
                help,
                &[("transport", transport), ("direction", direction)],
            )
        };
        Arc::new(ServerTransportStats {
            frames_in: frames("in"),
            frames_out: frames("out"),
            connections,
            metrics: Arc::clone(self),
            transport,
        })
    }

    pub(crate) fn render(&self) -> String {
        self.registry.render()
    }

    /// The answer to `GET /metrics`: every family in Prometheus text
    /// format.
    /// The response to `GET /metrics`: these metrics, then `more` (the
    /// prompt optimiser's, when it runs in this process).
    pub(crate) fn exposition(&self, more: Option<String>) -> impl IntoResponse + use<> {
        let mut text = self.render();
        text.push_str(&more.unwrap_or_default());
        (
            [(
                header::CONTENT_TYPE,
                "text/plain; version=0.0.4; charset=utf-8",
            )],
            text,
        )
    }
}

impl CampaignStats for ServerMetrics {
    fn dialled(&self, result: &'static str, seconds: f64) {
        let (name, help) = CAMPAIGN_DIALS;
        self.registry
            .counter(name, help, &[("result", result)])
            .inc();
        self.campaign_dial.observe(seconds);
    }

    fn entries(&self, pending: u64, active: u64, done: u64) {
        for (gauge, value) in self.campaign_entries.iter().zip([pending, active, done]) {
            gauge.set(i64::try_from(value).unwrap_or(i64::MAX));
        }
    }
}

struct ServerTransportStats {
    frames_in: Counter,
    frames_out: Counter,
    /// Peer connections open now; WebRTC's only.
    connections: Option<Gauge>,
    metrics: Arc<ServerMetrics>,
    transport: &'static str,
}

impl TransportStats for ServerTransportStats {
    fn audio_in(&self, frames: u64) {
        self.frames_in.inc_by(frames);
    }

    fn audio_out(&self, frames: u64) {
        self.frames_out.inc_by(frames);
    }

    fn input_error(&self, kind: &'static str) {
        self.metrics.error(kind, self.transport);
    }

    fn connection_opened(&self) {
        if let Some(connections) = &self.connections {
            connections.inc();
        }
    }

    fn connection_closed(&self) {
        if let Some(connections) = &self.connections {
            connections.dec();
        }
    }

    fn output_dropped(&self, kind: &'static str) {
        self.metrics.error(kind, self.transport);
    }
}

/// Counts each outbound call's final status as it settles.
#[async_trait::async_trait]
impl CallSettled for ServerMetrics {
    async fn call_settled(&self, call: &CallRecord) {
        self.outbound_call_settled(call.status);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outbound_calls_are_counted_by_final_status_and_dials_timed() {
        let metrics = ServerMetrics::new();
        let before = metrics.render();
        assert!(
            before.contains("# TYPE voxpipe_outbound_calls_total counter"),
            "{before}"
        );
        assert!(
            before.contains("voxpipe_dial_latency_seconds_count 0"),
            "{before}"
        );

        metrics.outbound_call_settled(CallStatus::Busy);
        metrics.outbound_call_settled(CallStatus::Busy);
        metrics.outbound_call_settled(CallStatus::NoAnswer);
        metrics.outbound_call_settled(CallStatus::Ringing);
        metrics.dial_latency(Duration::from_millis(120));
        let after = metrics.render();
        assert!(
            after.contains("voxpipe_outbound_calls_total{status=\"busy\"} 2"),
            "{after}"
        );
        assert!(
            after.contains("voxpipe_outbound_calls_total{status=\"no-answer\"} 1"),
            "{after}"
        );
        assert!(!after.contains("status=\"ringing\""), "{after}");
        assert!(
            after.contains("voxpipe_dial_latency_seconds_count 1"),
            "{after}"
        );
    }

    #[test]
    fn peer_connections_are_exported_for_webrtc_alone() {
        let metrics = Arc::new(ServerMetrics::new());
        let _twilio = metrics.transport_stats("twilio");
        let _webrtc = metrics.transport_stats("webrtc");
        let text = metrics.render();
        assert!(
            text.contains("voxpipe_peer_connections{transport=\"webrtc\"} 0"),
            "{text}"
        );
        assert!(
            !text.contains("voxpipe_peer_connections{transport=\"twilio\"}"),
            "{text}"
        );
    }
}
