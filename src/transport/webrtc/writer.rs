//! The task that writes bot audio packets to the call's current connection.
//!
//! The sink hands packets over as they leave (one per 20 ms while the bot
//! speaks), each tagged with the sink's clear epoch; an interruption bumps
//! the epoch, so a packet still in the hand-over queue when the user
//! interrupts is dropped here instead of sent. Sequence numbers are given
//! at write time, so dropped packets leave no gap (which would read as loss)
//! and a restarted connection simply carries on.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::{mpsc, watch};
use webrtc::media_stream::track_local::TrackLocal;

use crate::random::random_u32;

use super::outbound::OutboundPacket;
use super::peer::Connection;

/// A packet on its way to the writer.
pub(crate) struct QueuedPacket {
    pub(crate) epoch: u64,
    pub(crate) packet: OutboundPacket,
}

/// Gives RTP packets their sequence numbers, SSRC and payload type.
#[derive(Debug)]
pub(crate) struct RtpStamper {
    next_sequence: u16,
}

impl RtpStamper {
    pub(crate) fn new(first_sequence: u16) -> Self {
        RtpStamper {
            next_sequence: first_sequence,
        }
    }

    pub(crate) fn stamp(
        &mut self,
        packet: OutboundPacket,
        ssrc: u32,
        payload_type: u8,
    ) -> rtc::rtp::Packet {
        let sequence_number = self.next_sequence;
        self.next_sequence = self.next_sequence.wrapping_add(1);
        rtc::rtp::Packet {
            header: rtc::rtp::Header {
                version: 2,
                marker: packet.marker,
                payload_type,
                sequence_number,
                timestamp: packet.timestamp,
                ssrc,
                ..Default::default()
            },
            payload: packet.payload,
        }
    }
}

/// Writes packets until the sink is gone.
pub(crate) async fn run_writer(
    mut packets: mpsc::UnboundedReceiver<QueuedPacket>,
    epoch: Arc<AtomicU64>,
    connection: watch::Receiver<Option<Arc<Connection>>>,
) {
    let mut stamper = RtpStamper::new(random_u32() as u16);
    let mut failures = 0u64;
    while let Some(queued) = packets.recv().await {
        if queued.epoch != epoch.load(Ordering::Acquire) {
            continue; // interrupted before it left
        }
        let Some(connection) = connection.borrow().clone() else {
            continue;
        };
        let packet = stamper.stamp(queued.packet, connection.ssrc, connection.payload_type);
        if let Err(err) = connection.track.write_rtp(packet).await {
            // Before the connection is up, and after it is gone, writes
            // fail; log the first and count the rest.
            failures += 1;
            if failures == 1 {
                tracing::debug!(error = %err, "bot audio not sent");
            }
        }
    }
    if failures > 0 {
        tracing::debug!(failures, "bot audio packets not sent in this call");
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use bytes::Bytes;

    use super::*;

    fn packet(timestamp: u32, marker: bool) -> OutboundPacket {
        OutboundPacket {
            timestamp,
            marker,
            payload: Bytes::from_static(&[0xf8, 0xff, 0xfe]),
            pts: Duration::ZERO,
        }
    }

    #[test]
    fn stamps_contiguous_sequence_numbers_that_wrap() {
        let mut stamper = RtpStamper::new(u16::MAX);
        let a = stamper.stamp(packet(960, true), 0xabcd, 111);
        let b = stamper.stamp(packet(1_920, false), 0xabcd, 111);
        assert_eq!(a.header.sequence_number, u16::MAX);
        assert_eq!(b.header.sequence_number, 0);
        assert_eq!(a.header.version, 2);
        assert!(a.header.marker && !b.header.marker);
        assert_eq!((a.header.ssrc, a.header.payload_type), (0xabcd, 111));
        assert_eq!(b.header.timestamp, 1_920);
    }
}
