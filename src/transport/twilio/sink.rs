//! The Twilio transport's [`AudioSink`]: bot audio out as `media` messages,
//! a `mark` after each utterance, `clear` on an interruption.
//!
//! The output transport releases audio on a 20 ms timer, up to
//! `send_ahead_secs` (0.5 s) ahead of what the caller is hearing, topped up
//! a few frames at a time, so Twilio's buffer holds at most that; the sink
//! only encodes and hands messages to the socket's writer task. It never blocks: when the socket is gone or not keeping up,
//! audio is dropped (and logged once), because holding the output's timer
//! would delay every later frame instead.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::sync::mpsc::error::{TryRecvError, TrySendError};

use crate::frame::AudioFrame;
use crate::pipeline::ProcessorError;
use crate::transport::output::AudioSink;
use crate::transport::stats::TransportStats;

use super::codec::OutboundCodec;
use super::marks::MarkTracker;
use super::protocol::{MediaMessages, clear_message, mark_message};

/// Writes bot audio to a Twilio stream.
pub struct TwilioSink {
    stream_sid: String,
    media: MediaMessages,
    codec: OutboundCodec,
    outbound: mpsc::Sender<String>,
    marks: MarkTracker,
    echoes: mpsc::Receiver<String>,
    stats: Arc<dyn TransportStats>,
    dropped: u64,
}

impl TwilioSink {
    /// A sink for the stream `stream_sid`, sending messages on `outbound`
    /// and learning of mark echoes from `echoes`.
    pub fn new(
        stream_sid: String,
        outbound: mpsc::Sender<String>,
        echoes: mpsc::Receiver<String>,
        stats: Arc<dyn TransportStats>,
    ) -> Self {
        TwilioSink {
            media: MediaMessages::new(&stream_sid),
            stream_sid,
            codec: OutboundCodec::new(),
            outbound,
            marks: MarkTracker::new(),
            echoes,
            stats,
            dropped: 0,
        }
    }

    fn send(&mut self, message: String) {
        match self.outbound.try_send(message) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                self.dropped += 1;
                if self.dropped == 1 {
                    tracing::warn!("the stream is not keeping up; dropping outbound messages");
                }
            }
            Err(TrySendError::Closed(_)) => {
                self.dropped += 1;
                if self.dropped == 1 {
                    tracing::debug!("the stream is closed; dropping outbound messages");
                }
            }
        }
    }

    fn send_chunks(&mut self) {
        let mut sent = 0;
        while let Some(chunk) = self.codec.poll_chunk() {
            let message = self.media.message(chunk);
            self.send(message);
            sent += 1;
        }
        if sent > 0 {
            self.stats.audio_out(sent);
        }
    }
}

impl AudioSink for TwilioSink {
    fn write(&mut self, audio: &AudioFrame) -> Result<(), ProcessorError> {
        self.codec
            .push(audio)
            .map_err(ProcessorError::recoverable)?;
        self.send_chunks();
        Ok(())
    }

    fn clear(&mut self) {
        self.codec.reset();
        self.marks.clear();
        let message = clear_message(&self.stream_sid);
        self.send(message);
    }

    fn utterance_sent(&mut self, end: Duration) {
        self.codec.flush();
        self.send_chunks();
        let name = self.marks.sent(end);
        let message = mark_message(&self.stream_sid, &name);
        self.send(message);
    }

    fn still_playing(&mut self, now: Duration) -> bool {
        loop {
            match self.echoes.try_recv() {
                Ok(name) => {
                    if !self.marks.echoed(&name) {
                        tracing::debug!(mark = %name, "echo of a mark no longer pending");
                    }
                }
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => {
                    // The stream has ended: no echo can come any more.
                    self.marks.clear();
                    break;
                }
            }
        }
        self.marks.playing(now)
    }

    fn finish(&mut self, _end: Duration) -> Result<(), ProcessorError> {
        if self.dropped > 0 || self.marks.given_up() > 0 {
            tracing::info!(
                dropped_messages = self.dropped,
                marks_given_up = self.marks.given_up(),
                "outbound stream finished"
            );
        }
        Ok(())
    }
}
