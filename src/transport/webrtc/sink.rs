//! The WebRTC transport's output sink: bot audio encoded as it leaves.
//!
//! [`OutputTransport`](crate::transport::output::OutputTransport) releases each
//! frame at its time (paced by a 20 ms timer); the sink encodes it to Opus
//! at once and hands the packet to the writer task. An interruption clears
//! the encoder's queue and bumps the clear epoch, so nothing scheduled
//! before the interruption leaves after it: the outbound buffer is flushed
//! within the frame being written.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::mpsc;

use crate::frame::AudioFrame;
use crate::pipeline::ProcessorError;
use crate::transport::output::AudioSink;
use crate::transport::stats::TransportStats;

use super::outbound::OutboundAudio;
use super::writer::QueuedPacket;

/// Where a WebRTC call's bot audio goes.
pub struct WebRtcSink {
    outbound: OutboundAudio,
    packets: mpsc::UnboundedSender<QueuedPacket>,
    epoch: Arc<AtomicU64>,
    stats: Arc<dyn TransportStats>,
}

impl WebRtcSink {
    pub(crate) fn new(
        outbound: OutboundAudio,
        packets: mpsc::UnboundedSender<QueuedPacket>,
        epoch: Arc<AtomicU64>,
        stats: Arc<dyn TransportStats>,
    ) -> Self {
        WebRtcSink {
            outbound,
            packets,
            epoch,
            stats,
        }
    }

    fn hand_over(&mut self) {
        let epoch = self.epoch.load(Ordering::Acquire);
        let mut sent = 0;
        while let Some(packet) = self.outbound.poll_packet() {
            if self.packets.send(QueuedPacket { epoch, packet }).is_err() {
                // The call is closing; its audio has nowhere to go.
                self.outbound.clear();
                break;
            }
            sent += 1;
        }
        if sent > 0 {
            self.stats.audio_out(sent);
        }
    }
}

impl AudioSink for WebRtcSink {
    fn write(&mut self, audio: &AudioFrame) -> Result<(), ProcessorError> {
        let encoded = self.outbound.push(audio);
        self.hand_over();
        encoded.map_err(ProcessorError::recoverable)
    }

    fn clear(&mut self) {
        self.outbound.clear();
        self.epoch.fetch_add(1, Ordering::AcqRel);
    }

    fn utterance_sent(&mut self, _end: Duration) {
        if let Err(err) = self.outbound.finish_utterance() {
            tracing::warn!(error = %err, "the end of the utterance could not be encoded");
        }
        self.hand_over();
    }

    fn finish(&mut self, _end: Duration) -> Result<(), ProcessorError> {
        let flushed = self.outbound.finish_utterance();
        self.hand_over();
        flushed.map_err(ProcessorError::recoverable)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transport::stats::NoStats;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn voice(pts: Duration) -> AudioFrame {
        let samples: Vec<i16> = (0..320).map(|i| ((i % 40) as i16 - 20) * 300).collect();
        AudioFrame::from_samples(&samples, 16_000, 1, pts)
    }

    #[test]
    fn packets_queued_before_an_interruption_are_stale_after_it() {
        let (tx, mut rx) = mpsc::unbounded_channel();
        let epoch = Arc::new(AtomicU64::new(0));
        let mut sink = WebRtcSink::new(
            OutboundAudio::new(0).unwrap(),
            tx,
            Arc::clone(&epoch),
            Arc::new(NoStats),
        );
        sink.write(&voice(ms(0))).unwrap();
        sink.write(&voice(ms(20))).unwrap();
        sink.clear();
        sink.write(&voice(ms(40))).unwrap();
        let queued: Vec<QueuedPacket> = std::iter::from_fn(|| rx.try_recv().ok()).collect();
        assert_eq!(queued.len(), 3);
        let current = epoch.load(Ordering::Acquire);
        let live: Vec<_> = queued.iter().filter(|q| q.epoch == current).collect();
        assert_eq!(live.len(), 1, "only audio after the interruption leaves");
        assert!(live[0].packet.marker);
    }

    #[test]
    fn the_end_of_an_utterance_is_flushed() {
        let (tx, mut rx) = mpsc::unbounded_channel();
        let mut sink = WebRtcSink::new(
            OutboundAudio::new(0).unwrap(),
            tx,
            Arc::new(AtomicU64::new(0)),
            Arc::new(NoStats),
        );
        sink.write(&voice(ms(0))).unwrap();
        sink.utterance_sent(ms(20));
        assert_eq!(std::iter::from_fn(|| rx.try_recv().ok()).count(), 2);
    }
}
