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
//! connection restart), dropping the oldest first. An event the channel
//! refuses for good (larger than the page's maximum message size: aiortc
//! takes 64 KiB, Chrome 256 KiB) is dropped, logged and counted, so the
//! events after it still go; any other refusal (a channel not open, yet
//! or any more) keeps the event in the backlog for the next try.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, watch};
use webrtc::data_channel::DataChannel;
use webrtc::error::Error as ChannelError;

use crate::events::{SessionEvents, end_events, event_line};
use crate::pipeline::{Observer, PipelineOutcome, PushEvent};
use crate::store::time::unix_ms;
use crate::transport::rtvi::RtviSession;
use crate::transport::stats::TransportStats;

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

/// Sends queued events on the page's open channel until told to close;
/// events dropped are counted in `stats`.
pub(crate) async fn run_channel_writer(
    mut outgoing: mpsc::UnboundedReceiver<Outgoing>,
    mut channel: watch::Receiver<Option<Arc<dyn DataChannel>>>,
    stats: Arc<dyn TransportStats>,
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
                        send_to(&open, &mut backlog, &*stats).await;
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
            send_to(&open, &mut backlog, &*stats).await;
        }
    }
}

/// Sends the backlog on `open`, oldest first, until it is empty or the
/// channel is not open.
async fn send_to(
    open: &Arc<dyn DataChannel>,
    backlog: &mut VecDeque<String>,
    stats: &dyn TransportStats,
) {
    while let Some(line) = backlog.front() {
        let sent = open.send_text(line).await;
        if !settle(backlog, sent, stats) {
            return;
        }
    }
}

/// Settles the backlog's oldest event after its send: gone when sent, or
/// when refused for good (over the page's maximum message size: logged,
/// counted); kept on any other refusal (a channel not open, yet or any
/// more, or a transient failure), for the next try. Whether to send the
/// next.
fn settle(
    backlog: &mut VecDeque<String>,
    sent: Result<(), ChannelError>,
    stats: &dyn TransportStats,
) -> bool {
    match sent {
        Ok(()) => {}
        Err(err) if too_large(&err) => {
            let bytes = backlog.front().map_or(0, String::len);
            tracing::warn!(error = %err, bytes, "an event to the page dropped");
            stats.output_dropped("event_too_large");
        }
        Err(err) => {
            tracing::debug!(error = %err, "event not sent; kept for the next try");
            return false;
        }
    }
    backlog.pop_front();
    true
}

/// Whether a send was refused for the event's own sake (larger than the
/// page's maximum message size), so that it would be refused again. Any
/// other refusal (a channel not open, not yet or no more) may pass later.
fn too_large(err: &ChannelError) -> bool {
    matches!(err, ChannelError::ErrOutboundPacketTooLarge)
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Counts the events dropped, by kind.
    #[derive(Default)]
    struct Dropped(Mutex<Vec<&'static str>>);

    impl TransportStats for Dropped {
        fn audio_in(&self, _frames: u64) {}
        fn audio_out(&self, _frames: u64) {}
        fn input_error(&self, _kind: &'static str) {}
        fn output_dropped(&self, kind: &'static str) {
            self.0.lock().unwrap().push(kind);
        }
    }

    /// Sends `backlog` as `send_to` does, to a channel answering each
    /// line with `answer`; the lines it took.
    fn send_all(
        backlog: &mut VecDeque<String>,
        stats: &Dropped,
        answer: impl Fn(&str) -> Result<(), ChannelError>,
    ) -> Vec<String> {
        let mut taken = Vec::new();
        while let Some(line) = backlog.front() {
            let sent = answer(line);
            if sent.is_ok() {
                taken.push(line.clone());
            }
            if !settle(backlog, sent, stats) {
                break;
            }
        }
        taken
    }

    fn backlog(lines: &[&str]) -> VecDeque<String> {
        lines.iter().map(|l| (*l).to_owned()).collect()
    }

    #[test]
    fn an_event_over_the_pages_maximum_is_dropped_and_the_next_ones_go() {
        let stats = Dropped::default();
        let mut events = backlog(&["first", "huge", "after"]);
        let taken = send_all(&mut events, &stats, |line| match line {
            "huge" => Err(ChannelError::ErrOutboundPacketTooLarge),
            _ => Ok(()),
        });
        assert_eq!(taken, ["first", "after"]);
        assert!(events.is_empty());
        assert_eq!(*stats.0.lock().unwrap(), ["event_too_large"]);
    }

    #[test]
    fn an_event_for_a_channel_not_open_waits_for_the_next() {
        // Any refusal but the event's size keeps it, not only a channel
        // not open: a transient failure must not lose it for good.
        let refusals: [fn() -> ChannelError; 4] = [
            || ChannelError::ErrDataChannelNotOpen,
            || ChannelError::ErrDataChannelClosed,
            || ChannelError::ErrClosedPipe,
            || ChannelError::Other("the association is busy".to_owned()),
        ];
        for refusal in refusals {
            let stats = Dropped::default();
            let mut events = backlog(&["first", "second"]);
            let taken = send_all(&mut events, &stats, |_| Err(refusal()));
            assert!(taken.is_empty());
            assert_eq!(events, backlog(&["first", "second"]), "{}", refusal());
            assert!(stats.0.lock().unwrap().is_empty());
        }
    }
}
