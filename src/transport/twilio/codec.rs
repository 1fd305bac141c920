//! Audio between Twilio (G.711 mu-law, 8 kHz mono) and the pipeline (16-bit
//! PCM at its own rate), in 20 ms frames both ways.
//!
//! Payloads may come in any size (160 bytes is Twilio's usual 20 ms, but an
//! odd size is still valid mu-law: one byte per sample); inbound audio is
//! regrouped into exact 20 ms frames at the pipeline rate, and outbound
//! audio into exact 160-byte chunks. Each direction keeps one streaming
//! resampler, so chunk edges join without clicks; the resampler delays the
//! audio (6 ms between 8 and 16 kHz, 10 ms for other rates).
//!
//! Scratch buffers are kept between calls: the steady path only allocates
//! the frames and chunks it hands out.

use std::time::Duration;

use crate::audio::{AudioError, StreamResampler, mulaw, pcm};
use crate::frame::AudioFrame;

use super::protocol::TWILIO_SAMPLE_RATE;

/// Bytes of mu-law in 20 ms at 8 kHz: one Twilio media chunk.
pub const CHUNK_BYTES: usize = 160;
/// Length of every frame and chunk.
pub const FRAME: Duration = Duration::from_millis(20);
/// mu-law for silence.
const MULAW_SILENCE: u8 = 0xFF;

/// Caller audio: mu-law in, 20 ms PCM frames at the pipeline rate out.
#[derive(Debug)]
pub struct InboundCodec {
    resampler: StreamResampler,
    rate: u32,
    frame_samples: usize,
    decoded: Vec<i16>,
    /// Resampled audio not yet handed out as a whole frame.
    pending: Vec<i16>,
    /// Where the next frame starts in `pending`: frames are taken from the
    /// front without moving the rest, which a payload of many frames would
    /// otherwise move once per frame.
    taken: usize,
    /// Presentation time of the next frame; set by the first payload.
    next_pts: Option<Duration>,
}

impl InboundCodec {
    /// A decoder to `pipeline_rate`.
    pub fn new(pipeline_rate: u32) -> Result<Self, AudioError> {
        Ok(InboundCodec {
            resampler: StreamResampler::new(TWILIO_SAMPLE_RATE, pipeline_rate)?,
            rate: pipeline_rate,
            frame_samples: (pipeline_rate / 50) as usize,
            decoded: Vec::with_capacity(CHUNK_BYTES),
            pending: Vec::new(),
            taken: 0,
            next_pts: None,
        })
    }

    /// Decodes one payload that arrived at session time `now`. Whole frames
    /// are then ready in [`Self::poll_frame`].
    pub fn push(&mut self, payload: &[u8], now: Duration) {
        if payload.is_empty() {
            return;
        }
        // The first audio was captured over the payload's length up to now.
        let captured =
            Duration::from_micros(payload.len() as u64 * 1_000_000 / u64::from(TWILIO_SAMPLE_RATE));
        self.next_pts
            .get_or_insert_with(|| now.saturating_sub(captured));
        self.decoded.clear();
        mulaw::decode(payload, &mut self.decoded);
        // What is left moves to the front once per payload, so `pending`
        // does not grow.
        self.pending.drain(..self.taken);
        self.taken = 0;
        self.resampler.process(&self.decoded, &mut self.pending);
    }

    /// Fills the timeline with silence up to session time `now`, in whole
    /// frames, standing in for payloads that have stopped coming; `false`
    /// when there was nothing to fill (no audio yet, or nothing missing).
    /// Payloads that come after all follow the silence.
    pub fn fill_silence(&mut self, now: Duration) -> bool {
        let Some(next_pts) = self.next_pts else {
            return false;
        };
        let held = self.pending.len() - self.taken + self.resampler.delay_samples();
        let end = next_pts + Duration::from_micros(held as u64 * 1_000_000 / u64::from(self.rate));
        let frames = now.saturating_sub(end).as_micros() / FRAME.as_micros();
        if frames == 0 {
            return false;
        }
        self.decoded.clear();
        self.decoded.resize(frames as usize * CHUNK_BYTES, 0);
        self.pending.drain(..self.taken);
        self.taken = 0;
        self.resampler.process(&self.decoded, &mut self.pending);
        true
    }

    /// The next whole 20 ms frame, if one is ready.
    pub fn poll_frame(&mut self) -> Option<AudioFrame> {
        let end = self.taken + self.frame_samples;
        if self.pending.len() < end {
            return None;
        }
        let pts = self.next_pts.unwrap_or_default();
        self.next_pts = Some(pts + FRAME);
        let frame = AudioFrame::from_samples(&self.pending[self.taken..end], self.rate, 1, pts);
        self.taken = end;
        Some(frame)
    }
}

/// Bot audio: PCM frames of any length in, 160-byte mu-law chunks out.
#[derive(Debug, Default)]
pub struct OutboundCodec {
    /// From the rate of the audio last seen to 8 kHz.
    resampler: Option<StreamResampler>,
    samples: Vec<i16>,
    resampled: Vec<i16>,
    /// Encoded audio not yet handed out as a whole chunk.
    pending: Vec<u8>,
    /// Where the next chunk starts in `pending`.
    taken: usize,
}

impl OutboundCodec {
    /// An empty encoder.
    pub fn new() -> Self {
        Self::default()
    }

    /// Encodes `audio` (any rate, any channels). Whole chunks are then ready
    /// in [`Self::poll_chunk`].
    pub fn push(&mut self, audio: &AudioFrame) -> Result<(), AudioError> {
        let resampler = match &mut self.resampler {
            Some(r) if r.from_hz() == audio.sample_rate => r,
            slot => slot.insert(StreamResampler::new(audio.sample_rate, TWILIO_SAMPLE_RATE)?),
        };
        self.samples.clear();
        pcm::le_bytes_to_mono(&audio.data, audio.channels, &mut self.samples);
        self.resampled.clear();
        resampler.process(&self.samples, &mut self.resampled);
        self.compact();
        mulaw::encode(&self.resampled, &mut self.pending);
        Ok(())
    }

    /// The next whole chunk (20 ms at 8 kHz), if one is ready.
    pub fn poll_chunk(&mut self) -> Option<&[u8]> {
        let end = self.taken + CHUNK_BYTES;
        if self.pending.len() < end {
            return None;
        }
        let chunk = &self.pending[self.taken..end];
        self.taken = end;
        Some(chunk)
    }

    /// The utterance is over: pushes out the resampler's delay line and pads
    /// the last partial chunk with silence, so that all of it is heard.
    pub fn flush(&mut self) {
        if let Some(resampler) = &mut self.resampler {
            self.resampled.clear();
            resampler.flush(&mut self.resampled);
            self.compact();
            mulaw::encode(&self.resampled, &mut self.pending);
        }
        let partial = (self.pending.len() - self.taken) % CHUNK_BYTES;
        if partial > 0 {
            self.pending
                .resize(self.pending.len() + CHUNK_BYTES - partial, MULAW_SILENCE);
        }
    }

    /// Drops everything not yet handed out (an interruption).
    pub fn reset(&mut self) {
        if let Some(resampler) = &mut self.resampler {
            resampler.reset();
        }
        self.pending.clear();
        self.taken = 0;
    }

    /// Moves what is left to the front, so `pending` does not grow.
    fn compact(&mut self) {
        if self.taken > 0 {
            self.pending.drain(..self.taken);
            self.taken = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tone_mulaw(samples: usize, amp: f64) -> Vec<u8> {
        let pcm: Vec<i16> = (0..samples)
            .map(|i| (amp * (2.0 * std::f64::consts::PI * 440.0 * i as f64 / 8000.0).sin()) as i16)
            .collect();
        let mut out = Vec::new();
        mulaw::encode(&pcm, &mut out);
        out
    }

    fn drain_frames(codec: &mut InboundCodec) -> Vec<AudioFrame> {
        std::iter::from_fn(|| codec.poll_frame()).collect()
    }

    #[test]
    fn silence_stands_in_for_payloads_that_stopped_and_later_ones_follow_it() {
        let mut codec = InboundCodec::new(16_000).unwrap();
        assert!(
            !codec.fill_silence(Duration::from_millis(500)),
            "no audio yet"
        );
        let payload = tone_mulaw(160, 8000.0);
        let ms = Duration::from_millis;
        for n in 0..5u64 {
            codec.push(&payload, ms(100 + 20 * n));
        }
        let spoken = drain_frames(&mut codec);
        assert!(!codec.fill_silence(ms(185)), "nothing missing yet");
        // Nothing for 500 ms after the last payload (at 180 ms).
        assert!(codec.fill_silence(ms(680)));
        let silence = drain_frames(&mut codec);
        let last = spoken.last().unwrap().pts;
        assert_eq!(silence[0].pts, last + FRAME, "the timeline runs on");
        let end = silence.last().unwrap().pts + FRAME;
        // Up to now, less what the resampler still holds (under a frame).
        assert!(end + 2 * FRAME > ms(680) && end <= ms(680), "{end:?}");
        assert!(
            silence[1..]
                .iter()
                .all(|f| f.samples().iter().all(|&s| s == 0))
        );
        // A payload after it follows it.
        codec.push(&payload, ms(700));
        codec.push(&payload, ms(720));
        let after = drain_frames(&mut codec);
        assert_eq!(after[0].pts, end);
    }

    #[test]
    fn each_160_byte_payload_becomes_one_20ms_frame_at_the_pipeline_rate() {
        let mut codec = InboundCodec::new(16_000).unwrap();
        let payload = tone_mulaw(160, 8000.0);
        for n in 0..5u32 {
            codec.push(&payload, FRAME * (n + 1));
            let frames = drain_frames(&mut codec);
            assert_eq!(frames.len(), 1);
            assert_eq!(frames[0].sample_rate, 16_000);
            assert_eq!(frames[0].num_frames(), 320);
            assert_eq!(frames[0].pts, FRAME * n, "pts follows the audio");
        }
    }

    #[test]
    fn odd_payload_sizes_lose_no_audio() {
        let mut codec = InboundCodec::new(16_000).unwrap();
        let audio = tone_mulaw(8_000, 8000.0); // one second
        let mut at = 0;
        let mut frames = 0;
        for size in [7, 161, 1, 159, 333, 0, 2_000].iter().cycle() {
            if at >= audio.len() {
                break;
            }
            let end = (at + size).min(audio.len());
            codec.push(&audio[at..end], Duration::ZERO);
            frames += drain_frames(&mut codec).len();
            at = end;
        }
        assert_eq!(frames, 50, "one second is 50 frames, however it was cut");
    }

    #[test]
    fn one_long_payload_gives_all_its_frames_in_order() {
        let mut codec = InboundCodec::new(8_000).unwrap();
        let payload = tone_mulaw(160 * 30, 8000.0);
        codec.push(&payload, FRAME * 30);
        let frames = drain_frames(&mut codec);
        assert_eq!(frames.len(), 30);
        let mut expected = Vec::new();
        mulaw::decode(&payload, &mut expected);
        let got: Vec<i16> = frames.iter().flat_map(AudioFrame::samples).collect();
        assert_eq!(got, expected);
        codec.push(&payload[..160], FRAME * 31);
        assert_eq!(drain_frames(&mut codec).len(), 1, "then goes on as before");
    }

    #[test]
    fn a_pipeline_at_8khz_gets_the_decoded_audio_unchanged() {
        let mut codec = InboundCodec::new(8_000).unwrap();
        let payload = tone_mulaw(160, 8000.0);
        codec.push(&payload, FRAME);
        let frame = codec.poll_frame().unwrap();
        let mut expected = Vec::new();
        mulaw::decode(&payload, &mut expected);
        assert_eq!(frame.samples(), expected);
    }

    #[test]
    fn outbound_audio_leaves_in_160_byte_chunks_and_flush_keeps_the_tail() {
        let mut codec = OutboundCodec::new();
        // 50 ms at 16 kHz in frames of 10 ms: 2 whole chunks, then a tail.
        let frame = AudioFrame::from_samples(&[1000; 160], 16_000, 1, Duration::ZERO);
        let mut chunks = 0;
        for _ in 0..5 {
            codec.push(&frame).unwrap();
            while let Some(chunk) = codec.poll_chunk() {
                assert_eq!(chunk.len(), CHUNK_BYTES);
                chunks += 1;
            }
        }
        assert_eq!(chunks, 2);
        codec.flush();
        let mut tail = 0;
        while let Some(chunk) = codec.poll_chunk() {
            assert_eq!(chunk.len(), CHUNK_BYTES);
            tail += 1;
        }
        // 10 ms left over plus the 6 ms delay line (96 samples at 16 kHz:
        // 48 at 8 kHz): one more chunk, padded.
        assert_eq!(tail, 1);
        assert!(codec.poll_chunk().is_none());
    }

    #[test]
    fn reset_drops_what_was_not_handed_out() {
        let mut codec = OutboundCodec::new();
        let frame = AudioFrame::from_samples(&[1000; 960], 48_000, 1, Duration::ZERO);
        codec.push(&frame).unwrap();
        codec.push(&frame).unwrap();
        codec.reset();
        assert!(codec.poll_chunk().is_none());
        codec.flush();
        assert!(
            codec.poll_chunk().is_some(),
            "the delay line refills after a reset"
        );
    }

    #[test]
    fn round_trip_keeps_a_tone() {
        let mut inbound = InboundCodec::new(16_000).unwrap();
        let mut outbound = OutboundCodec::new();
        let payload = tone_mulaw(160, 8000.0);
        let mut back = Vec::new();
        for n in 0..25u32 {
            inbound.push(&payload[..], FRAME * n);
            while let Some(frame) = inbound.poll_frame() {
                outbound.push(&frame).unwrap();
                while let Some(chunk) = outbound.poll_chunk() {
                    mulaw::decode(chunk, &mut back);
                }
            }
        }
        // After both delay lines, the tone is back at its level.
        let steady = &back[400..];
        let peak = steady.iter().map(|s| s.unsigned_abs()).max().unwrap();
        assert!((7_000..=9_000).contains(&peak), "peak {peak}");
    }
}
