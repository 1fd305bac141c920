//! [`WebRtcSignalling`]: the signalling requests of a server's browser
//! calls, each routed to the call it is for.
//!
//! A `POST /api/offer` naming a live call's `pc_id` renegotiates it (or,
//! with `restart_pc`, replaces its connection); any other offer is a new
//! call, which the server admits and runs as a session (see
//! [`WebRtcSignalling::accept`]). A `PATCH /api/offer` adds trickled
//! candidates to a live call. Live calls are found by `pc_id` in
//! [`LiveCalls`].
//!
//! An offer is answered in a task of its own, which the caller awaits: an
//! HTTP server drops a request's handler when its client goes away, and a
//! connection dropped half-made would keep its sockets and its driver for
//! the life of the process. The task finishes the work instead: a new
//! call nobody awaits any more is dropped, which closes its connection; a
//! replaced connection is closed as usual.

use std::sync::Arc;

use tracing::Instrument as _;

use crate::transport::stats::{NoStats, TransportStats};

use super::call::WebRtcCall;
use super::ice_servers::IceServers;
use super::live_calls::LiveCalls;
use super::settings::WebRtcSettings;
use super::signalling::{Answer, OfferRequest, PatchRequest, SignallingError};

/// A server's WebRTC calls and their signalling.
#[derive(Clone)]
pub struct WebRtcSignalling {
    settings: Arc<WebRtcSettings>,
    sample_rate: u32,
    stats: Arc<dyn TransportStats>,
    calls: LiveCalls,
}

impl WebRtcSignalling {
    /// Signalling for calls of a pipeline running at `sample_rate`.
    pub fn new(settings: WebRtcSettings, sample_rate: u32) -> Self {
        WebRtcSignalling {
            settings: Arc::new(settings),
            sample_rate,
            stats: Arc::new(NoStats),
            calls: LiveCalls::default(),
        }
    }

    /// Counts the calls' traffic in `stats` (a server's metrics).
    pub fn with_stats(mut self, stats: Arc<dyn TransportStats>) -> Self {
        self.stats = stats;
        self
    }

    /// The STUN and TURN servers, which clients are given too.
    pub fn ice_servers(&self) -> &IceServers {
        self.settings.ice_servers()
    }

    /// Answers an offer for a live call (`pc_id` names one): renegotiates
    /// it, or replaces its connection when `restart_pc` is set. `None` when
    /// the offer is for a new call: no live call has the `pc_id`, or its
    /// end began before the offer could be answered.
    ///
    /// # Cancel safety
    /// Cancel safe: the work runs in a task of its own (see the module
    /// docs), to its end.
    pub async fn reoffer(&self, request: OfferRequest) -> Option<Result<Answer, SignallingError>> {
        let call = self.calls.get(request.pc_id.as_deref()?)?;
        let reoffer = async move { call.reoffer(request).await };
        run_to_completion(reoffer).await.transpose()
    }

    /// Answers the first offer of a new call, the session `session_id`
    /// (the answer names the call by a fresh `pc_id`, not by it). Run the
    /// call's session, then close it.
    ///
    /// `hold` (the session's admission permit) is kept by the task that
    /// builds the call and given back with it: a caller that goes away
    /// does not free it while the connection is still being made, only
    /// once the task has ended (and dropped the call).
    ///
    /// # Errors
    /// A malformed offer, one that cannot be negotiated (no Opus audio), or
    /// a connection that cannot be set up here.
    ///
    /// # Cancel safety
    /// Cancel safe: the work runs in a task of its own (see the module
    /// docs); a call answered after the caller went away is dropped, its
    /// connection closed, and `hold` with it.
    pub async fn accept<H: Send + 'static>(
        &self,
        request: OfferRequest,
        session_id: Arc<str>,
        hold: H,
    ) -> Result<(Answer, WebRtcCall, H), SignallingError> {
        let this = self.clone();
        run_to_completion(async move {
            let (answer, mut call) = WebRtcCall::accept(
                request,
                session_id,
                Arc::clone(&this.settings),
                this.sample_rate,
                Arc::clone(&this.stats),
            )
            .await?;
            let registration = this.calls.register(call.connection());
            call.set_registration(registration);
            Ok((answer, call, hold))
        })
        .await
    }

    /// The session of the live call named `pc_id`, if there is one.
    pub fn session_of(&self, pc_id: &str) -> Option<Arc<str>> {
        self.calls
            .get(pc_id)
            .map(|call| Arc::clone(call.session_id()))
    }

    /// Adds trickled candidates to a live call.
    ///
    /// # Errors
    /// [`SignallingError::UnknownPeer`] when no live call has the `pc_id`;
    /// [`SignallingError::BadRequest`] for a candidate that cannot be used.
    pub async fn patch(&self, request: PatchRequest) -> Result<(), SignallingError> {
        let call = self
            .calls
            .get(&request.pc_id)
            .ok_or_else(|| SignallingError::UnknownPeer(request.pc_id.clone()))?;
        call.add_candidates(&request).await
    }
}

/// Runs `work` in a task of its own, in the caller's span, and waits for
/// it: dropping the wait leaves the work running to its end (its result
/// is then dropped).
async fn run_to_completion<T: Send + 'static>(
    work: impl Future<Output = Result<T, SignallingError>> + Send + 'static,
) -> Result<T, SignallingError> {
    match tokio::spawn(work.in_current_span()).await {
        Ok(done) => done,
        Err(failed) => Err(SignallingError::Internal(format!(
            "the offer's task failed: {failed}"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicI64, Ordering};

    use super::*;
    use crate::pipeline::{PipelineParams, PipelineTask};
    use crate::transport::webrtc::ClientPeer;

    /// The peer connections open now.
    #[derive(Default)]
    struct OpenConnections(AtomicI64);

    impl TransportStats for OpenConnections {
        fn audio_in(&self, _frames: u64) {}
        fn audio_out(&self, _frames: u64) {}
        fn input_error(&self, _kind: &'static str) {}
        fn connection_opened(&self) {
            self.0.fetch_add(1, Ordering::AcqRel);
        }
        fn connection_closed(&self) {
            self.0.fetch_sub(1, Ordering::AcqRel);
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_restart_answered_while_its_call_closes_is_for_an_ended_call() {
        let open = Arc::new(OpenConnections::default());
        let signalling = WebRtcSignalling::new(WebRtcSettings::loopback(), 16_000)
            .with_stats(Arc::clone(&open) as Arc<dyn TransportStats>);
        let (_first, offer) = ClientPeer::offer().await.unwrap();
        let (answer, call, ()) = signalling.accept(offer, "s1".into(), ()).await.unwrap();

        // The page restarts its connection; the call closes after the new
        // connection is made and before it is installed.
        let (reached, resume) = call.connection().before_install.hold();
        let (_second, offer) = ClientPeer::offer().await.unwrap();
        let restart = OfferRequest {
            pc_id: Some(answer.pc_id.clone()),
            restart_pc: Some(true),
            ..offer
        };
        let restarting = tokio::spawn({
            let signalling = signalling.clone();
            async move { signalling.reoffer(restart).await }
        });
        // A restart that never reaches the hook fails the test, not hangs it.
        tokio::time::timeout(std::time::Duration::from_secs(20), reached)
            .await
            .expect("the restart reaches its installation")
            .unwrap();
        assert_eq!(open.0.load(Ordering::Acquire), 2, "old and new connections");
        call.close().await;
        resume.send(()).unwrap();

        let answered = restarting.await.unwrap();
        assert!(
            answered.is_none(),
            "an offer for an ended call, not a connection on it: {answered:?}"
        );
        assert_eq!(
            open.0.load(Ordering::Acquire),
            0,
            "the restart's connection is closed, not left on the closed call"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_restart_after_its_calls_session_ended_is_for_an_ended_call() {
        let open = Arc::new(OpenConnections::default());
        let signalling = WebRtcSignalling::new(WebRtcSettings::loopback(), 16_000)
            .with_stats(Arc::clone(&open) as Arc<dyn TransportStats>);
        let (_first, offer) = ClientPeer::offer().await.unwrap();
        let (answer, mut call, ()) = signalling.accept(offer, "s1".into(), ()).await.unwrap();
        let ends = call.take_ends().unwrap();
        let session = PipelineTask::new(
            vec![ends.input, ends.output],
            PipelineParams::new("s1", 16_000),
        );
        let handle = session.handle();
        let running = tokio::spawn(session.run());
        // The server ends the session (shutting down): the call is not
        // closed yet when the page restarts its connection.
        handle.end("shutdown").await;
        running.await.unwrap();

        let (_second, offer) = ClientPeer::offer().await.unwrap();
        let restart = OfferRequest {
            pc_id: Some(answer.pc_id.clone()),
            restart_pc: Some(true),
            ..offer
        };
        let answered = signalling.reoffer(restart).await;
        assert!(
            answered.is_none(),
            "an offer for an ended call, not a connection on it: {answered:?}"
        );
        call.close().await;
        assert_eq!(open.0.load(Ordering::Acquire), 0, "no connection left open");
    }
}
