//! Pipeline events to the page, over the data channel.
//!
//! [`EventRelay`] is an observer of the session: every event the pipeline
//! produces ([`crate::events`], the same lines `--events` prints) is queued
//! for the channel writer, so a new kind of event reaches the page without
//! a change here. The writer sends while the page's channel is open and
//! keeps a bounded backlog while it is not (before it opens, during a
//! connection restart), dropping the oldest first.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, watch};
use webrtc::data_channel::DataChannel;

use crate::events::{SessionEvents, end_events, event_line};
use crate::pipeline::{Observer, PipelineOutcome, PushEvent};

use super::messages::peer_left;

/// Events kept while the page's channel is not open.
const BACKLOG: usize = 1_024;

/// What the writer is asked to do.
pub(crate) enum Outgoing {
    Event(String),
    /// Send what is left and the goodbye, then stop.
    Close(oneshot::Sender<()>),
}

/// Queues the session's events for the page.
pub(crate) struct EventRelay {
    events: SessionEvents,
    outgoing: mpsc::UnboundedSender<Outgoing>,
}

impl EventRelay {
    pub(crate) fn new(outgoing: mpsc::UnboundedSender<Outgoing>) -> Self {
        EventRelay {
            events: SessionEvents::default(),
            outgoing,
        }
    }

    fn send(&self, at: Duration, name: &str, fields: serde_json::Value) {
        // Gone only once the call is closed: nobody to tell.
        let _closed = self
            .outgoing
            .send(Outgoing::Event(event_line(at, name, fields)));
    }
}

impl Observer for EventRelay {
    fn on_push(&self, push: &PushEvent<'_>) {
        self.events
            .on_push(push, |name, fields| self.send(push.at, name, fields));
    }

    fn on_pipeline_end(&self, outcome: &PipelineOutcome, at: Duration) {
        for (name, fields) in end_events(outcome) {
            self.send(at, name, fields);
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
