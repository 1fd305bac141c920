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
/// The most silence put in at once; past it (the reader held up, the
/// clock jumped) the timeline skips ahead.
const MAX_FILL: Duration = Duration::from_secs(1);

/// How long `bytes` of Twilio's caller audio play (mu-law at 8 kHz, one
/// byte a sample).
pub(super) fn mulaw_duration(bytes: usize) -> Duration {
    Duration::from_micros(bytes as u64 * 1_000_000 / u64::from(TWILIO_SAMPLE_RATE))
}

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
    /// Silence put in for audio that had not come, that audio arriving
    /// after all (a stall's backlog) may still take the place of.
    stood_in: Duration,
    /// How far ahead of real time the timeline may run while `stood_in`
    /// lasts before arriving audio is taken for the backlog it stood in
    /// for: reads batch a few payloads, and those must never be cut.
    lead_allowance: Duration,
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
            stood_in: Duration::ZERO,
            lead_allowance: Duration::from_millis(100),
        })
    }

    /// Sets how far ahead of real time the timeline may run after silence
    /// stood in for audio before more audio is dropped as its backlog: at
    /// least the socket's read interval, plus jitter.
    pub fn set_lead_allowance(&mut self, allowance: Duration) {
        self.lead_allowance = allowance;
    }

    /// Where the timeline ends: the next frame's start plus what is held.
    fn timeline_end(&self, next_pts: Duration) -> Duration {
        let held = self.pending.len() - self.taken + self.resampler.delay_samples();
        next_pts + Duration::from_micros(held as u64 * 1_000_000 / u64::from(self.rate))
    }

    /// `payload` less the front of it that silence already stood in for:
    /// the part that would put the timeline further ahead of real time
    /// than the allowance, up to what was stood in for. Payloads arriving
    /// at real time after a pause are never cut.
    fn past_stood_in<'a>(&mut self, payload: &'a [u8], now: Duration) -> &'a [u8] {
        let Some(next_pts) = self.next_pts.filter(|_| !self.stood_in.is_zero()) else {
            return payload;
        };
        let lead =
            (self.timeline_end(next_pts) + mulaw_duration(payload.len())).saturating_sub(now);
        let cut = lead
            .saturating_sub(self.lead_allowance)
            .min(self.stood_in)
            .min(mulaw_duration(payload.len()));
        let bytes = (cut.as_micros() * u128::from(TWILIO_SAMPLE_RATE) / 1_000_000) as usize;
        self.stood_in = self.stood_in.saturating_sub(cut);
        &payload[bytes.min(payload.len())..]
    }

    /// Decodes one payload that arrived at session time `now`. Whole frames
    /// are then ready in [`Self::poll_frame`].
    pub fn push(&mut self, payload: &[u8], now: Duration) {
        if payload.is_empty() {
            return;
        }
        // The first audio was captured over the payload's length up to now.
        let captured = mulaw_duration(payload.len());
        self.next_pts
            .get_or_insert_with(|| now.saturating_sub(captured));
        let payload = self.past_stood_in(payload, now);
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
    /// At most a second is filled at once (the timeline skips the rest).
    /// Payloads that come after all follow the silence, less what would
    /// put the timeline ahead of real time (a stall's backlog: the silence
    /// stood in for it), so turn decisions measured against the session
    /// clock stay right.
    pub fn fill_silence(&mut self, now: Duration) -> bool {
        let Some(next_pts) = self.next_pts else {
            return false;
        };
        let missing = now.saturating_sub(self.timeline_end(next_pts));
        if missing > MAX_FILL {
            self.next_pts = Some(next_pts + (missing - MAX_FILL));
        }
        let frames = missing.min(MAX_FILL).as_micros() / FRAME.as_micros();
        if frames == 0 {
            return false;
        }
        self.stood_in += FRAME * frames as u32;
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
    fn a_stalls_backlog_after_silence_is_cut_to_real_time_and_a_pause_is_not() {
        let ms = Duration::from_millis;
        let payload = tone_mulaw(160, 8000.0);
        let heard = |codec: &mut InboundCodec| {
            drain_frames(codec)
                .iter()
                .filter(|f| f.samples().iter().any(|&s| s.abs() > 1_000))
                .count()
        };
        // A stall: 600 ms without audio, silence put in, then the 600 ms
        // held up arrive at once and the caller goes on in real time.
        let mut codec = InboundCodec::new(16_000).unwrap();
        codec.push(&payload, ms(100));
        assert!(codec.fill_silence(ms(700)));
        drain_frames(&mut codec);
        for _ in 0..30 {
            codec.push(&payload, ms(710));
        }
        let backlog = heard(&mut codec);
        assert!((4..=7).contains(&backlog), "{backlog} frames of it kept");
        for n in 1..=10u64 {
            codec.push(&payload, ms(710 + 20 * n));
        }
        assert_eq!(heard(&mut codec), 10, "real time again: nothing cut");
        let end = codec.timeline_end(codec.next_pts.unwrap());
        assert!(
            end <= ms(910) + ms(100),
            "lead within the allowance: {end:?}"
        );

        // A pause: silence put in, then the caller speaks again in real
        // time: every word is kept.
        let mut codec = InboundCodec::new(16_000).unwrap();
        codec.push(&payload, ms(100));
        assert!(codec.fill_silence(ms(700)));
        drain_frames(&mut codec);
        for n in 0..30u64 {
            codec.push(&payload, ms(720 + 20 * n));
        }
        assert!(heard(&mut codec) >= 29, "the words after the pause");

        // Held up for an hour: a second of silence, the rest skipped.
        let mut codec = InboundCodec::new(16_000).unwrap();
        codec.push(&payload, ms(100));
        drain_frames(&mut codec);
        assert!(codec.fill_silence(ms(3_600_000)));
        let frames = drain_frames(&mut codec);
        assert!(frames.len() <= 50, "{} frames", frames.len());
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
