//! Pipeline events to the page, over the data channel.
//!
//! [`EventRelay`] is an observer of the session: every event the pipeline
//! produces ([`crate::events`], the same lines `--events` prints) is queued
//! for the channel writer, so a new kind of event reaches the page without
//! a change here. Once the page has spoken RTVI (`client-ready`), each
//! event goes to the call's [`RtviSession`] instead, which re-encodes it
//! as RTVI messages: from then on the page gets RTVI alone. (The turn
//! events from before `client-ready`, sent as JSON lines at the time, are
//! sent again as RTVI after `bot-ready`, for a client that missed them.)
//! [`PageChannel`] is what the relay and the reader share: the writer's
//! queue and the RTVI state. The writer sends while the page's channel is open and
//! keeps a bounded backlog while it is not (before it opens, during a
//! connection restart), dropping the oldest first.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, watch};
use webrtc::data_channel::DataChannel;

use crate::events::{SessionEvents, end_events, event_line};
use crate::pipeline::{Observer, PipelineOutcome, PushEvent};
use crate::store::time::unix_ms;
use crate::transport::rtvi::RtviSession;

use super::messages::peer_left;

/// Events kept while the page's channel is not open.
const BACKLOG: usize = 1_024;

/// What the writer is asked to do.
pub(crate) enum Outgoing {
    Event(String),
    /// Send what is left and the goodbye, then stop.
    Close(oneshot::Sender<()>),
}

/// The page's end of a call's messages, shared by the relay (events out)
/// and the reader (messages in).
#[derive(Clone)]
pub(crate) struct PageChannel {
    outgoing: mpsc::UnboundedSender<Outgoing>,
    rtvi: Arc<Mutex<RtviSession>>,
}

impl PageChannel {
    /// The page of session `session_id`, written through `outgoing`;
    /// `rtvi` is the session's RTVI state (see [`RtviSession::resumed`]).
    pub(crate) fn new(outgoing: mpsc::UnboundedSender<Outgoing>, rtvi: RtviSession) -> Self {
        PageChannel {
            outgoing,
            rtvi: Arc::new(Mutex::new(rtvi)),
        }
    }

    /// Runs `f` on the call's RTVI state, then queues what it has for the
    /// page.
    pub(crate) fn rtvi<T>(&self, f: impl FnOnce(&mut RtviSession) -> T) -> T {
        // A panic elsewhere while holding the lock leaves the state usable.
        let mut rtvi = self.rtvi.lock().unwrap_or_else(|p| p.into_inner());
        let value = f(&mut rtvi);
        while let Some(message) = rtvi.poll_transmit() {
            self.send(message);
        }
        value
    }

    fn send(&self, text: String) {
        // Gone only once the call is closed: nobody to tell.
        let _closed = self.outgoing.send(Outgoing::Event(text));
    }

    /// One event, as RTVI once the page speaks it, else as a JSON line.
    fn event(&self, at: Duration, name: &str, fields: serde_json::Value) {
        let as_rtvi = self.rtvi(|rtvi| {
            rtvi.handle_event(name, &fields, unix_ms());
            rtvi.is_active()
        });
        if !as_rtvi {
            self.send(event_line(at, name, fields));
        }
    }
}

/// Queues the session's events for the page.
pub(crate) struct EventRelay {
    events: SessionEvents,
    page: PageChannel,
}

impl EventRelay {
    pub(crate) fn new(page: PageChannel) -> Self {
        EventRelay {
            events: SessionEvents::default(),
            page,
        }
    }
}

impl Observer for EventRelay {
    fn on_push(&self, push: &PushEvent<'_>) {
        self.events
            .on_push(push, |name, fields| self.page.event(push.at, name, fields));
    }

    fn on_pipeline_end(&self, outcome: &PipelineOutcome, at: Duration) {
        for (name, fields) in end_events(outcome) {
            self.page.event(at, name, fields);
        }
    }
}

/// Sends queued events on the page's open channel until told to close.
pub(crate) async fn run_channel_writer(
    mut outgoing: mpsc::UnboundedReceiver<Outgoing>,
    mut channel: watch::Receiver<Option<Arc<dyn DataChannel>>>,
) {
    let mut backlog: VecDeque<String> = VecDeque::new();
    loop {
        tokio::select! {
            next = outgoing.recv() => match next {
                Some(Outgoing::Event(line)) => {
                    if backlog.len() == BACKLOG {
                        backlog.pop_front();
                    }
                    backlog.push_back(line);
                }
                Some(Outgoing::Close(done)) => {
                    let open = channel.borrow().clone();
                    if let Some(open) = open {
                        send_backlog(&open, &mut backlog).await;
                        if let Err(err) = open.send_text(&peer_left()).await {
                            tracing::debug!(error = %err, "goodbye not sent");
                        }
                    }
                    let _waiter_gone = done.send(());
                    return;
                }
                None => return,
            },
            changed = channel.changed() => {
                if changed.is_err() {
                    return;
                }
            }
        }
        let open = channel.borrow().clone();
        if let Some(open) = open {
            send_backlog(&open, &mut backlog).await;
        }
    }
}

async fn send_backlog(open: &Arc<dyn DataChannel>, backlog: &mut VecDeque<String>) {
    while let Some(line) = backlog.front() {
        if let Err(err) = open.send_text(line).await {
            tracing::debug!(error = %err, "event not sent; kept for the next channel");
            return;
        }
        backlog.pop_front();
    }
}

/// Asks the writer to finish and waits for it, `timeout` at most.
pub(crate) async fn close_channel(outgoing: &mpsc::UnboundedSender<Outgoing>, timeout: Duration) {
    let (done, finished) = oneshot::channel();
    if outgoing.send(Outgoing::Close(done)).is_ok()
        && tokio::time::timeout(timeout, finished).await.is_err()
    {
        tracing::debug!("the page's channel did not drain in time");
    }
}
