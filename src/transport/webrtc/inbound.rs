//! Caller audio from RTP, without I/O: Opus packets in, 20 ms frames at the
//! pipeline rate out, on one unbroken timeline.
//!
//! The pipeline does not play caller audio, it listens to it, so nothing is
//! held back to wait for late packets: each packet is decoded the moment it
//! arrives. Network trouble is repaired on the way, so the VAD and the STT
//! always hear a continuous stream:
//!
//! - A gap in sequence numbers (lost packets) is concealed at once, the last
//!   lost packet rebuilt from the forward error correction the next packet
//!   carries (browsers send Opus with in-band FEC), earlier ones by Opus
//!   packet-loss concealment.
//! - A packet up to `MAX_MISORDER` older than what has been decoded
//!   (reordered past its turn, or a duplicate) is dropped: its place was
//!   already concealed.
//! - A timestamp jump without loss (discontinuous transmission) is filled
//!   with silence.
//! - Packets that stop coming (the far end stopped sending: a file played
//!   to its end, a track removed, a network stall) are stood in for by
//!   silence up to the present when the reader asks
//!   ([`InboundAudio::fill_silence`]), so the VAD and the STT hear the
//!   caller stop. As in a jitter buffer, a packet that arrives after all
//!   for time the silence stood in for (a network stall that ended) is
//!   late and dropped: the timeline stays in real time, so the turn
//!   decisions that measure silence against the session clock stay right.
//!   A packet resuming after discontinuous transmission (its timestamp
//!   moved on) carries on after the silence.
//! - A new SSRC (the browser restarted its connection), a sequence number
//!   jump, a timestamp going backwards or a gap longer than [`MAX_REPAIR`]
//!   starts a new stream: the
//!   timeline resumes at the packet's arrival time.
//!
//! Timestamps, not arrival times, place audio on the timeline, so network
//! jitter never stretches or squeezes it. A stream's timeline is anchored
//! once, at its first packet's arrival on the session clock.

use std::collections::VecDeque;
use std::time::Duration;

use crate::audio::opus::SAMPLE_RATE_HZ;
use crate::audio::{AudioError, OpusDecoder, StreamResampler};
use crate::frame::AudioFrame;

/// The longest stretch repaired (concealed or filled with silence); a longer
/// gap starts a new stream.
pub const MAX_REPAIR: Duration = Duration::from_secs(1);

/// At most this many lost packets in a row are concealed; more is a gap.
const MAX_CONCEALED_PACKETS: u16 = 5;

/// A packet at most this many behind the next expected one is late (or a
/// duplicate); further behind, the sequence jumped (RFC 3550, A.1).
const MAX_MISORDER: u16 = 100;

/// Length of the frames pushed into the pipeline.
const FRAME: Duration = Duration::from_millis(20);

/// One RTP packet of the caller's audio: the header fields that matter and
/// the Opus payload.
#[derive(Debug, Clone, Copy)]
pub struct RtpAudio<'a> {
    /// The stream's synchronization source.
    pub ssrc: u32,
    /// RTP sequence number.
    pub sequence: u16,
    /// RTP timestamp (48 kHz).
    pub timestamp: u32,
    /// The Opus packet.
    pub payload: &'a [u8],
}

/// What became of one packet.
#[derive(Debug)]
pub enum PacketOutcome {
    /// Decoded; `concealed` lost packets were repaired before it.
    Decoded {
        /// Lost packets concealed before this one.
        concealed: u16,
    },
    /// Older than what was already decoded (late or duplicate): dropped.
    Late,
    /// The payload is not valid Opus: concealed as if lost.
    Corrupt(AudioError),
    /// The first packet of a new stream (first, new SSRC, or after a gap).
    NewStream,
}

struct Stream {
    ssrc: u32,
    next_sequence: u16,
    /// RTP timestamp right after the last decoded audio (or silence put
    /// in its place).
    next_timestamp: u32,
    /// Samples (48 kHz) of silence put in since the last decoded packet: a
    /// packet whose audio falls within them is late.
    stood_in: u32,
}

/// Turns one caller's RTP audio into pipeline frames. See the module docs.
pub struct InboundAudio {
    rate: u32,
    frame_len: usize,
    decoder: OpusDecoder,
    resampler: StreamResampler,
    stream: Option<Stream>,
    /// Decoded 48 kHz audio of the current packet.
    decoded: Vec<i16>,
    /// Audio at the pipeline rate not yet cut into a frame.
    pending: Vec<i16>,
    /// Where the next frame starts on the session clock.
    next_pts: Duration,
    frames: VecDeque<AudioFrame>,
}

impl InboundAudio {
    /// Audio for a pipeline running at `rate` Hz.
    ///
    /// # Errors
    /// When `rate` is not a rate the resampler supports, or libopus cannot
    /// make a decoder.
    pub fn new(rate: u32) -> Result<Self, AudioError> {
        Ok(InboundAudio {
            rate,
            frame_len: (rate as usize) / 50,
            decoder: OpusDecoder::new()?,
            resampler: StreamResampler::new(SAMPLE_RATE_HZ, rate)?,
            stream: None,
            decoded: Vec::with_capacity(5_760),
            pending: Vec::with_capacity(2 * (rate as usize) / 50),
            next_pts: Duration::ZERO,
            frames: VecDeque::new(),
        })
    }

    /// Takes one packet that arrived at session time `now`.
    pub fn handle_packet(&mut self, packet: RtpAudio<'_>, now: Duration) -> PacketOutcome {
        self.decoded.clear();
        let Some(stream) = self.stream.as_mut().filter(|s| s.ssrc == packet.ssrc) else {
            return self.start_stream(packet, now);
        };
        let behind = stream.next_sequence.wrapping_sub(packet.sequence);
        if (1..=MAX_MISORDER).contains(&behind) {
            return PacketOutcome::Late;
        }
        // Further behind is a jump, not a late packet (RFC 3550, A.1): read
        // as "late", every packet would be dropped until the sequence wrapped
        // back into place. A jump is more than `MAX_CONCEALED_PACKETS` lost,
        // so it starts a new stream below.
        let lost = packet.sequence.wrapping_sub(stream.next_sequence);
        let gap = packet.timestamp.wrapping_sub(stream.next_timestamp) as i32;
        let max_gap = max_repair_samples();
        if gap < 0 && gap.unsigned_abs() <= stream.stood_in {
            // Its time was filled with silence already.
            stream.next_sequence = packet.sequence.wrapping_add(1);
            return PacketOutcome::Late;
        }
        if gap < 0 || gap > max_gap || lost > MAX_CONCEALED_PACKETS {
            return self.start_stream(packet, now);
        }
        let mut concealed = 0;
        let mut repaired = Ok(());
        for n in 1..=lost {
            repaired = if n == lost {
                self.decoder.decode_fec(packet.payload, &mut self.decoded)
            } else {
                self.decoder.decode_lost(&mut self.decoded)
            }
            .map(|_| ());
            if repaired.is_err() {
                break;
            }
            concealed += 1;
        }
        // Whatever the timestamps say is still missing (discontinuous
        // transmission) is silence.
        let missing = usize::try_from(gap)
            .unwrap_or(0)
            .saturating_sub(self.decoded.len());
        self.decoded.resize(self.decoded.len() + missing, 0);
        let outcome = match repaired.and_then(|()| self.decode(packet.payload)) {
            Ok(()) => PacketOutcome::Decoded { concealed },
            Err(err) => {
                self.conceal_one();
                PacketOutcome::Corrupt(err)
            }
        };
        if let Some(stream) = self.stream.as_mut() {
            stream.next_sequence = packet.sequence.wrapping_add(1);
            stream.next_timestamp = stream
                .next_timestamp
                .wrapping_add(self.decoded.len() as u32);
            stream.stood_in = 0;
        }
        self.emit();
        outcome
    }

    /// Fills the timeline with silence up to session time `until`, in
    /// whole frames, standing in for packets that have stopped coming;
    /// `false` when there was nothing to fill (no stream yet, or nothing
    /// missing). At most [`MAX_REPAIR`] is filled at once: past that (the
    /// reader held up, the clock jumped) the timeline skips ahead.
    ///
    /// The stream's RTP clock moves on with it, so a packet resuming after
    /// discontinuous transmission only has the rest of its gap filled, and
    /// one from before the silence is late.
    pub fn fill_silence(&mut self, until: Duration) -> bool {
        let Some(stream) = self.stream.as_mut() else {
            return false;
        };
        let held = self.pending.len() + self.resampler.delay_samples();
        let end = self.next_pts + samples_duration(held, self.rate);
        let missing = until.saturating_sub(end);
        if missing > MAX_REPAIR {
            self.next_pts += missing - MAX_REPAIR;
        }
        let packets = missing.min(MAX_REPAIR).as_micros() / FRAME.as_micros();
        if packets == 0 {
            return false;
        }
        let samples = packets as usize * (SAMPLE_RATE_HZ as usize / 50);
        stream.next_timestamp = stream.next_timestamp.wrapping_add(samples as u32);
        stream.stood_in = stream.stood_in.saturating_add(samples as u32);
        self.decoded.clear();
        self.decoded.resize(samples, 0);
        self.emit();
        true
    }

    /// The next frame, oldest first.
    pub fn poll_frame(&mut self) -> Option<AudioFrame> {
        self.frames.pop_front()
    }

    fn decode(&mut self, payload: &[u8]) -> Result<(), AudioError> {
        self.decoder.decode(payload, &mut self.decoded).map(|_| ())
    }

    /// Stands in for one packet that could not be decoded.
    fn conceal_one(&mut self) {
        if self.decoder.decode_lost(&mut self.decoded).is_err() {
            self.decoded.resize(self.decoded.len() + 960, 0);
        }
    }

    fn start_stream(&mut self, packet: RtpAudio<'_>, now: Duration) -> PacketOutcome {
        // The previous stream's last audio still in the resampler goes out
        // on the old timeline, padded to a whole frame.
        if self.stream.is_some() {
            self.resampler.flush(&mut self.pending);
            if !self.pending.is_empty() {
                let padded = self.pending.len().div_ceil(self.frame_len) * self.frame_len;
                self.pending.resize(padded, 0);
                self.emit_frames();
            }
            self.resampler.reset();
        }
        let _fresh = self.decoder.reset();
        let outcome = match self.decode(packet.payload) {
            Ok(()) => PacketOutcome::NewStream,
            Err(err) => {
                self.conceal_one();
                PacketOutcome::Corrupt(err)
            }
        };
        // The packet's audio was captured over the time before it arrived;
        // the resampler adds its delay ahead of it.
        let captured = samples_duration(self.decoded.len(), SAMPLE_RATE_HZ);
        let delay = samples_duration(self.resampler.delay_samples(), self.rate);
        let start = now.saturating_sub(captured).saturating_sub(delay);
        self.next_pts = self.next_pts.max(start);
        self.stream = Some(Stream {
            ssrc: packet.ssrc,
            next_sequence: packet.sequence.wrapping_add(1),
            next_timestamp: packet.timestamp.wrapping_add(self.decoded.len() as u32),
            stood_in: 0,
        });
        self.emit();
        outcome
    }

    /// Resamples what was decoded and cuts it into frames.
    fn emit(&mut self) {
        self.resampler.process(&self.decoded, &mut self.pending);
        self.emit_frames();
    }

    fn emit_frames(&mut self) {
        let mut start = 0;
        while self.pending.len() - start >= self.frame_len {
            let chunk = &self.pending[start..start + self.frame_len];
            self.frames
                .push_back(AudioFrame::from_samples(chunk, self.rate, 1, self.next_pts));
            self.next_pts += FRAME;
            start += self.frame_len;
        }
        self.pending.drain(..start);
    }
}

fn max_repair_samples() -> i32 {
    (MAX_REPAIR.as_millis() as i32) * (SAMPLE_RATE_HZ as i32 / 1000)
}

fn samples_duration(samples: usize, rate: u32) -> Duration {
    Duration::from_micros(samples as u64 * 1_000_000 / u64::from(rate.max(1)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audio::OpusEncoder;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// Opus packets of a 440 Hz tone, 20 ms each.
    fn tone_packets(n: usize) -> Vec<Vec<u8>> {
        let mut encoder = OpusEncoder::new().unwrap();
        (0..n)
            .map(|k| {
                let frame: Vec<i16> = (0..960)
                    .map(|i| {
                        let t = (k * 960 + i) as f64 / 48_000.0;
                        (8_000.0 * (2.0 * std::f64::consts::PI * 440.0 * t).sin()) as i16
                    })
                    .collect();
                encoder.encode(&frame).unwrap().to_vec()
            })
            .collect()
    }

    fn packet(payload: &[u8], sequence: u16, timestamp: u32) -> RtpAudio<'_> {
        RtpAudio {
            ssrc: 7,
            sequence,
            timestamp,
            payload,
        }
    }

    fn drain(inbound: &mut InboundAudio) -> Vec<AudioFrame> {
        std::iter::from_fn(|| inbound.poll_frame()).collect()
    }

    #[test]
    fn packets_become_contiguous_frames_at_the_pipeline_rate() {
        let packets = tone_packets(10);
        let mut inbound = InboundAudio::new(16_000).unwrap();
        let mut frames = Vec::new();
        for (k, p) in packets.iter().enumerate() {
            let seq = 65_530u16.wrapping_add(k as u16); // wraps around
            let arrival = ms(100 + 20 * k as u64);
            inbound.handle_packet(
                packet(p, seq, (u32::MAX - 2_000).wrapping_add(960 * k as u32)),
                arrival,
            );
            frames.extend(drain(&mut inbound));
        }
        assert_eq!(frames.len(), 10);
        // Anchored at the first packet's capture, less the resampler delay.
        assert_eq!(frames[0].pts, ms(70));
        for pair in frames.windows(2) {
            assert_eq!(pair[1].pts, pair[0].pts + ms(20));
            assert_eq!(pair[0].num_frames(), 320);
            assert_eq!(pair[0].sample_rate, 16_000);
        }
    }

    #[test]
    fn a_lost_packet_is_rebuilt_and_the_timeline_keeps_its_length() {
        let packets = tone_packets(6);
        let mut inbound = InboundAudio::new(16_000).unwrap();
        let mut frames = Vec::new();
        for k in [0usize, 1, 2, 4, 5] {
            let outcome = inbound.handle_packet(
                packet(&packets[k], k as u16, 960 * k as u32),
                ms(20 * k as u64),
            );
            if k == 4 {
                assert!(matches!(outcome, PacketOutcome::Decoded { concealed: 1 }));
            }
            frames.extend(drain(&mut inbound));
        }
        assert_eq!(frames.len(), 6, "the lost packet's 20 ms is there");
        let rebuilt = &frames[3].samples();
        let rms = crate::audio::pcm::rms(rebuilt);
        assert!(
            rms > 0.1,
            "FEC rebuilt the tone (0.17 of full scale), rms {rms}"
        );
    }

    #[test]
    fn late_and_duplicate_packets_are_dropped() {
        let packets = tone_packets(4);
        let mut inbound = InboundAudio::new(16_000).unwrap();
        inbound.handle_packet(packet(&packets[0], 10, 0), ms(20));
        inbound.handle_packet(packet(&packets[2], 12, 1_920), ms(60));
        assert!(matches!(
            inbound.handle_packet(packet(&packets[1], 11, 960), ms(61)),
            PacketOutcome::Late
        ));
        assert!(matches!(
            inbound.handle_packet(packet(&packets[2], 12, 1_920), ms(62)),
            PacketOutcome::Late
        ));
        assert_eq!(drain(&mut inbound).len(), 3);
    }

    #[test]
    fn a_timestamp_jump_without_loss_is_filled_with_silence() {
        let packets = tone_packets(2);
        let mut inbound = InboundAudio::new(16_000).unwrap();
        inbound.handle_packet(packet(&packets[0], 0, 0), ms(20));
        // Discontinuous transmission: 200 ms skipped, sequence unbroken.
        inbound.handle_packet(packet(&packets[1], 1, 960 * 11), ms(240));
        let frames = drain(&mut inbound);
        assert_eq!(frames.len(), 12);
        let silent = &frames[5].samples();
        assert!(silent.iter().all(|&s| s == 0));
    }

    #[test]
    fn silence_stands_in_for_packets_that_stopped_and_held_up_ones_are_late() {
        let packets = tone_packets(3);
        let mut inbound = InboundAudio::new(16_000).unwrap();
        assert!(!inbound.fill_silence(ms(500)), "no stream yet");
        inbound.handle_packet(packet(&packets[0], 0, 0), ms(100));
        let first = drain(&mut inbound);
        assert_eq!(first.len(), 1);
        assert!(!inbound.fill_silence(ms(105)), "nothing missing yet");
        // Nothing for 500 ms: the timeline reaches the present in silence.
        assert!(inbound.fill_silence(ms(600)));
        let silence = drain(&mut inbound);
        assert_eq!(silence.len(), 25);
        assert_eq!(silence[0].pts, first[0].pts + ms(20));
        assert!(
            silence[1..]
                .iter()
                .all(|f| f.samples().iter().all(|&s| s == 0))
        );
        // The far end resumes after discontinuous transmission (the RTP
        // clock ran on): only the rest of the gap is filled.
        let resumed = inbound.handle_packet(packet(&packets[1], 1, 960 * 27), ms(640));
        assert!(matches!(resumed, PacketOutcome::Decoded { concealed: 0 }));
        let after = drain(&mut inbound);
        assert_eq!(after.len(), 2, "20 ms of gap, then the packet");
        assert_eq!(after[0].pts, silence[24].pts + ms(20));
        // A stall: the packets held up come after silence stood in for
        // them. Those are late; the first one past the silence carries on.
        let packets = tone_packets(40);
        assert!(inbound.fill_silence(ms(1_200)));
        let stalled = drain(&mut inbound);
        for k in 2..30u16 {
            let late = inbound.handle_packet(
                packet(&packets[k as usize], k, 960 * (26 + u32::from(k))),
                ms(1_210),
            );
            assert!(matches!(late, PacketOutcome::Late), "{k}: {late:?}");
        }
        let past = inbound.handle_packet(packet(&packets[30], 30, 960 * 56), ms(1_220));
        assert!(
            matches!(past, PacketOutcome::Decoded { concealed: 0 }),
            "{past:?}"
        );
        let kept = drain(&mut inbound);
        assert_eq!(kept[0].pts, stalled.last().unwrap().pts + ms(20));
        assert!(
            kept.last().unwrap().pts <= ms(1_220),
            "the timeline stays in real time"
        );
    }

    #[test]
    fn a_long_hold_up_fills_at_most_a_second_and_the_timeline_skips_the_rest() {
        let packets = tone_packets(1);
        let mut inbound = InboundAudio::new(16_000).unwrap();
        inbound.handle_packet(packet(&packets[0], 0, 0), ms(100));
        drain(&mut inbound);
        assert!(inbound.fill_silence(ms(3_600_000)));
        let silence = drain(&mut inbound);
        assert!(silence.len() <= 50, "{} frames", silence.len());
        let end = silence.last().unwrap().pts + ms(20);
        assert!(end > ms(3_599_900) && end <= ms(3_600_000), "{end:?}");
    }

    #[test]
    fn a_new_ssrc_or_a_long_gap_starts_a_new_stream_later_on_the_timeline() {
        let packets = tone_packets(3);
        let mut inbound = InboundAudio::new(16_000).unwrap();
        inbound.handle_packet(packet(&packets[0], 0, 0), ms(20));
        let first = drain(&mut inbound);
        assert_eq!(first.len(), 1);
        let restarted = RtpAudio {
            ssrc: 99,
            ..packet(&packets[1], 5_000, 123_456)
        };
        assert!(matches!(
            inbound.handle_packet(restarted, ms(5_000)),
            PacketOutcome::NewStream
        ));
        let frames = drain(&mut inbound);
        // The old stream's tail (flushed), then the new stream's audio.
        assert_eq!(frames.len(), 2);
        assert_eq!(frames[0].pts, first[0].pts + ms(20));
        assert_eq!(frames[1].pts, ms(4_970));
        // A gap over a second on the same stream: a new stream again.
        assert!(matches!(
            inbound.handle_packet(packet(&packets[2], 5_001, 123_456 + 96_000), ms(7_000)),
            PacketOutcome::NewStream
        ));
    }

    #[test]
    fn a_sequence_jump_on_the_same_ssrc_starts_a_new_stream() {
        let packets = tone_packets(4);
        let mut inbound = InboundAudio::new(16_000).unwrap();
        inbound.handle_packet(packet(&packets[0], 10, 0), ms(20));
        // Far "behind" in u16 arithmetic: read as late, the stream would be
        // dropped until the sequence wrapped back, ten minutes later.
        let jumped = 10u16.wrapping_add(40_000);
        assert!(matches!(
            inbound.handle_packet(packet(&packets[1], jumped, 960), ms(40)),
            PacketOutcome::NewStream
        ));
        assert!(matches!(
            inbound.handle_packet(packet(&packets[2], jumped.wrapping_add(1), 1_920), ms(60)),
            PacketOutcome::Decoded { concealed: 0 }
        ));
        assert!(matches!(
            inbound.handle_packet(packet(&packets[1], jumped, 960), ms(61)),
            PacketOutcome::Late
        ));
        // The first stream's packet, its flushed tail, then the new
        // stream's two packets.
        assert_eq!(drain(&mut inbound).len(), 4);
    }

    #[test]
    fn jitter_and_reordering_never_break_the_timeline() {
        let packets = tone_packets(100);
        // Arrival order: mostly in order, each late by up to 60 ms (a
        // fixed pseudo-random pattern), some overtaken by the next.
        let mut arrivals: Vec<(u64, usize)> = (0..100)
            .map(|k| (20 * k as u64 + (k as u64 * 37 % 61), k))
            .collect();
        arrivals.sort();
        let mut inbound = InboundAudio::new(16_000).unwrap();
        let mut frames = Vec::new();
        let mut late = 0;
        for (at, k) in arrivals {
            let outcome =
                inbound.handle_packet(packet(&packets[k], k as u16, 960 * k as u32), ms(at));
            if matches!(outcome, PacketOutcome::Late) {
                late += 1;
            }
            frames.extend(drain(&mut inbound));
        }
        assert!(late > 0, "the pattern reorders some packets");
        // Every 20 ms is there exactly once (a reordered packet's place was
        // concealed), back to back.
        assert_eq!(frames.len(), 100);
        for pair in frames.windows(2) {
            assert_eq!(pair[1].pts, pair[0].pts + ms(20));
        }
    }

    #[test]
    fn a_corrupt_payload_is_concealed_and_reported() {
        let packets = tone_packets(1);
        let mut inbound = InboundAudio::new(16_000).unwrap();
        inbound.handle_packet(packet(&packets[0], 0, 0), ms(20));
        // A TOC byte announcing a code-3 packet with no frame count.
        let outcome = inbound.handle_packet(packet(&[0x03], 1, 960), ms(40));
        assert!(matches!(outcome, PacketOutcome::Corrupt(_)), "{outcome:?}");
        assert_eq!(drain(&mut inbound).len(), 2);
    }
}
