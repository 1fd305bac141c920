//! Bot audio to RTP, without I/O: pipeline frames in, 20 ms Opus packets
//! with their RTP timestamps and marker bits out.
//!
//! The bot talks in spurts with silence between them, and nothing is sent
//! during the silence. RTP timestamps follow the audio's session time, so a
//! pause of two seconds is a timestamp jump of two seconds: the browser's
//! jitter buffer sees packets arriving exactly as their timestamps say,
//! rather than a burst that looks like two seconds of network delay. The
//! first packet of each spurt carries the marker bit (RFC 3551, section 4.1),
//! which lets the receiver adapt its playout delay there. Sequence numbers
//! are given when a packet is actually written (see `writer.rs`), so that
//! packets dropped by an interruption leave no gap, which would read as loss.
//!
//! Audio is resampled to 48 kHz (the resampler delays it by a constant
//! 10 ms, the same for every spurt) and cut into 20 ms blocks for the
//! encoder. The end of a spurt is flushed when the producer says it is
//! complete ([`OutboundAudio::finish_utterance`]), or when the next spurt
//! begins. [`OutboundAudio::clear`] (an interruption) drops everything not
//! yet polled.

use std::collections::VecDeque;
use std::time::Duration;

use bytes::Bytes;

use crate::audio::opus::{FRAME_SAMPLES, SAMPLE_RATE_HZ};
use crate::audio::pcm::mixdown_to_mono;
use crate::audio::{AudioError, OpusEncoder, StreamResampler};
use crate::frame::AudioFrame;

/// Audio that starts more than this after the previous audio ended starts a
/// new spurt.
const CONTINUITY_TOLERANCE: Duration = Duration::from_millis(2);

/// One encoded 20 ms packet, ready for RTP (the writer adds the sequence
/// number, the SSRC and the payload type of the connection it goes out on).
#[derive(Debug, Clone, PartialEq)]
pub struct OutboundPacket {
    /// RTP timestamp (48 kHz clock).
    pub timestamp: u32,
    /// The first packet of a spurt.
    pub marker: bool,
    /// The Opus packet.
    pub payload: Bytes,
    /// Session time of the packet's audio (delayed by the resampler).
    pub pts: Duration,
}

struct Spurt {
    /// Where the next input audio is expected to start.
    next_input: Duration,
    /// Session time of the next 48 kHz block.
    next_block: Duration,
    /// Whether a packet of this spurt has been produced yet.
    started: bool,
}

/// Encodes one session's bot audio. See the module docs.
pub struct OutboundAudio {
    encoder: OpusEncoder,
    resampler: Option<StreamResampler>,
    /// 48 kHz audio waiting for a whole block.
    pcm: Vec<i16>,
    spurt: Option<Spurt>,
    /// RTP timestamp of session time zero.
    timestamp_base: u32,
    packets: VecDeque<OutboundPacket>,
}

impl OutboundAudio {
    /// An encoder whose RTP clock reads `timestamp_base` at session time
    /// zero (random in practice, RFC 3550 section 5.1).
    ///
    /// # Errors
    /// When libopus cannot make an encoder.
    pub fn new(timestamp_base: u32) -> Result<Self, AudioError> {
        Ok(OutboundAudio {
            encoder: OpusEncoder::new()?,
            resampler: None,
            pcm: Vec::with_capacity(2 * FRAME_SAMPLES),
            spurt: None,
            timestamp_base,
            packets: VecDeque::new(),
        })
    }

    /// Takes audio that leaves at its `pts` (several channels are mixed
    /// down).
    ///
    /// # Errors
    /// When the audio's rate cannot be resampled or the encoder fails; the
    /// audio is dropped and the stream goes on.
    pub fn push(&mut self, audio: &AudioFrame) -> Result<(), AudioError> {
        let continues = self
            .spurt
            .as_ref()
            .is_some_and(|s| audio.pts.abs_diff(s.next_input) <= CONTINUITY_TOLERANCE);
        if !continues {
            self.finish_utterance()?;
            self.spurt = Some(Spurt {
                next_input: audio.pts,
                next_block: audio.pts,
                started: false,
            });
        }
        let resampler = match &mut self.resampler {
            Some(r) if r.from_hz() == audio.sample_rate => r,
            slot => slot.insert(StreamResampler::new(audio.sample_rate, SAMPLE_RATE_HZ)?),
        };
        let samples = audio.samples();
        if audio.channels > 1 {
            resampler.process(&mixdown_to_mono(&samples, audio.channels), &mut self.pcm);
        } else {
            resampler.process(&samples, &mut self.pcm);
        }
        if let Some(spurt) = &mut self.spurt {
            spurt.next_input = audio.pts + audio.duration();
        }
        self.encode_blocks()
    }

    /// The current spurt is complete: what the resampler still holds is
    /// encoded, padded with silence to a whole packet.
    ///
    /// # Errors
    /// When the encoder fails.
    pub fn finish_utterance(&mut self) -> Result<(), AudioError> {
        if let Some(resampler) = &mut self.resampler {
            resampler.flush(&mut self.pcm);
            resampler.reset();
        }
        if !self.pcm.is_empty() {
            let padded = self.pcm.len().div_ceil(FRAME_SAMPLES) * FRAME_SAMPLES;
            self.pcm.resize(padded, 0);
        }
        let result = self.encode_blocks();
        self.spurt = None;
        result
    }

    /// Drops every packet not yet polled and the audio not yet encoded; the
    /// next audio starts a new spurt.
    pub fn clear(&mut self) {
        self.packets.clear();
        self.pcm.clear();
        if let Some(resampler) = &mut self.resampler {
            resampler.reset();
        }
        self.spurt = None;
    }

    /// The next packet to send, oldest first.
    pub fn poll_packet(&mut self) -> Option<OutboundPacket> {
        self.packets.pop_front()
    }

    fn encode_blocks(&mut self) -> Result<(), AudioError> {
        let blocks = self.pcm.len() / FRAME_SAMPLES;
        let mut result = Ok(());
        for block in self.pcm.chunks_exact(FRAME_SAMPLES).take(blocks) {
            let Some(spurt) = self.spurt.as_mut() else {
                break;
            };
            let pts = spurt.next_block;
            spurt.next_block += Duration::from_millis(20);
            let marker = !std::mem::replace(&mut spurt.started, true);
            match self.encoder.encode(block) {
                Ok(payload) => {
                    self.packets.push_back(OutboundPacket {
                        timestamp: self.timestamp_base.wrapping_add(rtp_ticks(pts)),
                        marker,
                        payload,
                        pts,
                    });
                }
                Err(err) => result = Err(err),
            }
        }
        self.pcm.drain(..blocks * FRAME_SAMPLES);
        result
    }
}

/// Session time in 48 kHz RTP ticks, wrapping like RTP timestamps do.
fn rtp_ticks(t: Duration) -> u32 {
    (t.as_micros() * u128::from(SAMPLE_RATE_HZ) / 1_000_000) as u32
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audio::OpusDecoder;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn frame(pts: Duration, amplitude: i16) -> AudioFrame {
        let samples: Vec<i16> = (0..320)
            .map(|i| if i % 16 < 8 { amplitude } else { -amplitude })
            .collect();
        AudioFrame::from_samples(&samples, 16_000, 1, pts)
    }

    fn drain(out: &mut OutboundAudio) -> Vec<OutboundPacket> {
        std::iter::from_fn(|| out.poll_packet()).collect()
    }

    #[test]
    fn a_spurt_is_one_packet_per_20_ms_with_a_marker_on_the_first() {
        let mut out = OutboundAudio::new(u32::MAX - 47_000).unwrap();
        for k in 0..5 {
            out.push(&frame(ms(1_000 + 20 * k), 4_000)).unwrap();
        }
        let packets = drain(&mut out);
        assert_eq!(packets.len(), 5);
        assert!(packets[0].marker);
        assert!(packets[1..].iter().all(|p| !p.marker));
        assert_eq!(packets[0].timestamp, 999, "wraps like RTP time");
        assert_eq!(packets[0].pts, ms(1_000));
        for pair in packets.windows(2) {
            assert_eq!(pair[1].timestamp.wrapping_sub(pair[0].timestamp), 960);
        }
        // The tail the resampler held is flushed as one more packet.
        out.finish_utterance().unwrap();
        let tail = drain(&mut out);
        assert_eq!(tail.len(), 1);
        assert_eq!(tail[0].timestamp.wrapping_sub(packets[4].timestamp), 960);
    }

    #[test]
    fn silence_between_spurts_is_a_timestamp_jump() {
        let mut out = OutboundAudio::new(0).unwrap();
        out.push(&frame(ms(0), 4_000)).unwrap();
        out.finish_utterance().unwrap();
        assert_eq!(drain(&mut out).len(), 2);
        out.push(&frame(ms(2_000), 4_000)).unwrap();
        let second = drain(&mut out);
        assert!(second[0].marker);
        assert_eq!(second[0].timestamp, 96_000);
    }

    #[test]
    fn an_unflushed_spurt_is_finished_when_the_next_begins() {
        let mut out = OutboundAudio::new(0).unwrap();
        out.push(&frame(ms(0), 4_000)).unwrap();
        assert_eq!(drain(&mut out).len(), 1);
        out.push(&frame(ms(500), 4_000)).unwrap();
        let packets = drain(&mut out);
        assert_eq!(packets.len(), 2, "the old tail, then the new spurt");
        assert_eq!(packets[0].timestamp, 960);
        assert!(!packets[0].marker);
        assert!(packets[1].marker);
        assert_eq!(packets[1].timestamp, 24_000);
    }

    #[test]
    fn clear_drops_everything_queued_and_restarts_the_spurt() {
        let mut out = OutboundAudio::new(0).unwrap();
        for k in 0..3 {
            out.push(&frame(ms(20 * k), 4_000)).unwrap();
        }
        out.clear();
        assert!(out.poll_packet().is_none());
        out.push(&frame(ms(60), 4_000)).unwrap();
        let packets = drain(&mut out);
        assert_eq!(packets.len(), 1);
        assert!(
            packets[0].marker,
            "audio after an interruption is a new spurt"
        );
        assert_eq!(packets[0].timestamp, 2_880);
    }

    #[test]
    fn packets_decode_back_to_the_audio() {
        let mut out = OutboundAudio::new(0).unwrap();
        let mut decoder = OpusDecoder::new().unwrap();
        let mut pcm = Vec::new();
        for k in 0..25 {
            out.push(&frame(ms(20 * k), 8_000)).unwrap();
            while let Some(p) = out.poll_packet() {
                decoder.decode(&p.payload, &mut pcm).unwrap();
            }
        }
        // A 1 kHz square wave of peak 8000 (0.24 of full scale): as loud
        // after the first packets.
        let rms = crate::audio::pcm::rms(&pcm[4_800..]);
        assert!(rms > 0.15, "rms {rms}");
    }

    #[test]
    fn stereo_is_mixed_down() {
        let mut out = OutboundAudio::new(0).unwrap();
        let stereo = AudioFrame::from_samples(&[100; 640], 16_000, 2, ms(0));
        out.push(&stereo).unwrap();
        assert_eq!(
            drain(&mut out).len(),
            1,
            "20 ms of stereo is 20 ms of audio"
        );
    }
}
