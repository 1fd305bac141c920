//! Graceful shutdown: the signals, and draining the sessions.
//!
//! On SIGTERM or ctrl-c the listener closes and no session is admitted.
//! Calls in progress go on until `[server] shutdown_deadline_secs`; those
//! still running are then ended, which drains them (a reply being spoken
//! finishes, turns are kept); any still running `shutdown_grace_secs`
//! later is cancelled.

use std::time::Duration;

use super::state::ServerState;

/// The end reason of sessions the shutdown ends.
pub const SHUTDOWN_REASON: &str = "server_shutdown";

/// How long cancelled sessions get to stop.
const CANCEL_WAIT: Duration = Duration::from_secs(2);

/// Resolves on SIGTERM or ctrl-c (SIGINT).
pub async fn signal() {
    let ctrl_c = async {
        if let Err(err) = tokio::signal::ctrl_c().await {
            tracing::error!(error = %err, "cannot listen for ctrl-c");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut term) => {
                term.recv().await;
            }
            Err(err) => {
                tracing::error!(error = %err, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => tracing::info!("ctrl-c received"),
        () = terminate => tracing::info!("SIGTERM received"),
    }
}

/// Waits for the sessions to finish, ending and then cancelling the ones
/// that take too long, and for answers still on their way (text messages)
/// as long.
pub(crate) async fn drain(state: &ServerState) {
    let server = &state.config.server;
    let answers = async {
        let limit =
            server.shutdown_deadline_secs.duration() + server.shutdown_grace_secs.duration();
        if !state.answers.wait_idle(limit).await {
            tracing::warn!(
                running = state.answers.running(),
                "answers still being sent at exit: dropped"
            );
        }
    };
    tokio::join!(drain_sessions(state), answers);
}

async fn drain_sessions(state: &ServerState) {
    let server = &state.config.server;
    let sessions = &state.sessions;
    if sessions
        .wait_empty(server.shutdown_deadline_secs.duration())
        .await
    {
        tracing::info!("every call has finished");
        return;
    }
    tracing::info!(
        active = sessions.active(),
        "shutdown deadline reached: ending the calls still running"
    );
    sessions.end_all(SHUTDOWN_REASON).await;
    if sessions
        .wait_empty(server.shutdown_grace_secs.duration())
        .await
    {
        tracing::info!("every call has finished");
        return;
    }
    tracing::warn!(
        active = sessions.active(),
        "calls still running after the grace period: cancelling them"
    );
    sessions.cancel_all(SHUTDOWN_REASON);
    if !sessions.wait_empty(CANCEL_WAIT).await {
        tracing::error!(
            active = sessions.active(),
            "calls did not stop; exiting anyway"
        );
    }
}
