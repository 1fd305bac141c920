//! Running one session for a connection, whatever its transport: observers,
//! registration for shutdown, logs and metrics of how it ended.

use std::sync::Arc;

use crate::pipeline::SessionSetup;
use crate::pipeline::{Observer, SessionClock};
use crate::session::{Session, SessionOptions, SessionReport};
use crate::transport::TransportEnds;

use super::live_sessions::SessionPermit;
use super::observer::MetricsObserver;
use super::state::ServerState;

/// Builds and runs the session, with the transport's own `observers`
/// besides the server's; `None` if it could not be built (logged).
pub(crate) async fn run_session(
    state: &ServerState,
    permit: &SessionPermit,
    transport: &'static str,
    setup: SessionSetup,
    ends: TransportEnds,
    mut observers: Vec<Arc<dyn Observer>>,
) -> Option<SessionReport> {
    let memory = match &state.agent {
        Some(agent) => Some(agent.open_session(&setup, transport).await),
        None => None,
    };
    observers.push(Arc::new(MetricsObserver::new(Arc::clone(&state.metrics))));
    observers.extend(state.observers.iter().map(|make| make(&setup)));
    let options = SessionOptions {
        setup,
        clock: SessionClock::wall(),
        observers,
        memory,
    };
    let session = match Session::new(&state.config.processors, ends, options) {
        Ok(session) => session,
        Err(err) => {
            tracing::error!(error = %err, "the session could not start");
            state.metrics.error("session_build", transport);
            return None;
        }
    };
    let handle = session.handle();
    if let Some(reason) = permit.attach(handle.clone()) {
        handle.end(&*reason).await;
    }
    tracing::info!(pipeline = %state.config.pipeline.name, "session started");
    let report = session.run().await;
    match &report.fatal_error {
        Some(error) => tracing::warn!(
            reason = %report.end_reason,
            processor = %error.processor,
            error = %error.message,
            duration_ms = report.duration.as_millis() as u64,
            "session ended by an error"
        ),
        None => tracing::info!(
            reason = %report.end_reason,
            cancelled = report.cancelled,
            duration_ms = report.duration.as_millis() as u64,
            "session ended"
        ),
    }
    state
        .metrics
        .session_ended(transport, &report.end_reason, report.duration);
    Some(report)
}
