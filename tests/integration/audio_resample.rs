//! StreamResampler: chunked processing equals whole-buffer processing, exact
//! lengths (no drift), right frequency and level, no clicks at block edges.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code may panic

use crate::support;

use support::signal::{max_step, rms, sine, snr_db, tone_amplitude, zero_crossing_freq};
use voxpipe::audio::{StreamResampler, resample_all};

const PAIRS: [(u32, u32); 5] = [
    (8_000, 16_000),
    (16_000, 8_000),
    (48_000, 16_000),
    (16_000, 48_000),
    (24_000, 16_000),
];
/// 440 Hz and 3 kHz: both below every Nyquist frequency in `PAIRS`.
const TONES: [f64; 2] = [440.0, 3_000.0];
const AMP: f64 = 12_000.0;

/// Feeds `input` in pieces of `piece` samples, then flushes.
fn stream(r: &mut StreamResampler, input: &[i16], piece: usize) -> Vec<i16> {
    let mut out = Vec::new();
    for chunk in input.chunks(piece) {
        r.process(chunk, &mut out);
    }
    r.flush(&mut out);
    out
}

#[test]
fn chunked_output_equals_whole_buffer_output_after_delay() {
    for (from, to) in PAIRS {
        for freq in TONES {
            let input = sine(freq, from, from as usize, AMP); // 1 s
            let whole = resample_all(&input, from, to).unwrap();
            let mut r = StreamResampler::new(from, to).unwrap();
            let delay = r.delay_samples();
            let chunk = (from / 50) as usize;
            for piece in [chunk, 7, 333, chunk * 3 + 1, input.len()] {
                let streamed = stream(&mut r, &input, piece);
                assert_eq!(
                    streamed.len(),
                    delay + whole.len(),
                    "{from}->{to} piece {piece}"
                );
                // The block structure is internal, so the result does not
                // depend on how the input was split: equal, not just close.
                assert_eq!(
                    &streamed[delay..],
                    &whole[..],
                    "{from}->{to} {freq} Hz piece {piece}"
                );
            }
        }
    }
}

#[test]
fn twenty_ms_chunks_give_exactly_twenty_ms_out_every_call() {
    for (from, to) in PAIRS {
        let (chunk_in, chunk_out) = ((from / 50) as usize, (to / 50) as usize);
        let input = sine(440.0, from, chunk_in * 250, AMP); // 5 s, 250 chunks
        let mut r = StreamResampler::new(from, to).unwrap();
        let mut out = Vec::new();
        for (n, chunk) in input.chunks(chunk_in).enumerate() {
            r.process(chunk, &mut out);
            assert_eq!(
                out.len(),
                (n + 1) * chunk_out,
                "{from}->{to} after chunk {n}"
            );
        }
    }
}

#[test]
fn output_has_the_input_frequency_and_level() {
    for (from, to) in PAIRS {
        for freq in TONES {
            let input = sine(freq, from, from as usize, AMP);
            let out = resample_all(&input, from, to).unwrap();
            // Skip the first and last 50 ms, where the block edges of the
            // whole buffer (silence before and after) shape the signal.
            let steady = &out[(to / 20) as usize..out.len() - (to / 20) as usize];
            let measured = zero_crossing_freq(steady, to);
            assert!(
                (measured - freq).abs() < freq * 0.001,
                "{from}->{to}: {freq} Hz came out at {measured:.2} Hz"
            );
            let amp = tone_amplitude(steady, freq, to);
            let gain_db = 20.0 * (amp / AMP).log10();
            assert!(
                gain_db.abs() < 0.5,
                "{from}->{to} {freq} Hz: gain {gain_db:.2} dB"
            );
        }
    }
}

#[test]
fn whole_buffer_output_is_aligned_with_the_ideal_resampled_sine() {
    // A misalignment of one output sample would cap the SNR near 10 dB at
    // 3 kHz; the resampler reaches more than 80 dB.
    for (from, to) in PAIRS {
        for freq in TONES {
            let input = sine(freq, from, from as usize, AMP);
            let out = resample_all(&input, from, to).unwrap();
            assert_eq!(out.len(), to as usize);
            let ideal = sine(freq, to, to as usize, AMP);
            let edge = (to / 20) as usize;
            let snr = snr_db(
                &ideal[edge..to as usize - edge],
                &out[edge..to as usize - edge],
            );
            assert!(
                snr > 60.0,
                "{from}->{to} {freq} Hz: SNR {snr:.1} dB against the ideal sine"
            );
        }
    }
}

#[test]
fn no_clicks_at_block_edges() {
    for (from, to) in PAIRS {
        for freq in TONES {
            let chunk_in = (from / 50) as usize;
            let input = sine(freq, from, chunk_in * 100, AMP);
            let mut r = StreamResampler::new(from, to).unwrap();
            let mut out = Vec::new();
            for chunk in input.chunks(chunk_in) {
                r.process(chunk, &mut out);
            }
            // Skip the start-up (delay plus one block, where the filter fills).
            let skip = r.delay_samples() + (to / 50) as usize;
            let clean = max_step(&sine(freq, to, to as usize, AMP));
            let worst = max_step(&out[skip..]);
            assert!(
                f64::from(worst) <= f64::from(clean) * 1.05 + 2.0,
                "{from}->{to} {freq} Hz: step {worst} vs clean {clean}"
            );
        }
    }
}

#[test]
fn downsampling_rejects_tones_above_the_new_nyquist() {
    // 10 kHz at 48 kHz has no place at 16 kHz: it must not alias to 6 kHz.
    let input = sine(10_000.0, 48_000, 48_000, AMP);
    let out = resample_all(&input, 48_000, 16_000).unwrap();
    let level_db = 20.0 * (rms(&out[800..15_200]) / (AMP / 2f64.sqrt())).log10();
    assert!(level_db < -40.0, "alias level {level_db:.1} dB");
}

#[test]
fn reset_starts_a_fresh_stream() {
    let input = sine(440.0, 16_000, 1000, AMP);
    let mut r = StreamResampler::new(16_000, 8_000).unwrap();
    let first = stream(&mut r, &input, 320);
    r.process(&input[..500], &mut Vec::new());
    r.reset();
    let second = stream(&mut r, &input, 320);
    assert_eq!(first, second);
}

#[test]
fn empty_and_tiny_inputs() {
    for (from, to) in PAIRS {
        assert!(resample_all(&[], from, to).unwrap().is_empty());
        let out = resample_all(&[1000; 3], from, to).unwrap();
        let expected = (3.0 * f64::from(to) / f64::from(from)).round() as usize;
        assert_eq!(out.len(), expected);
        let mut r = StreamResampler::new(from, to).unwrap();
        let mut out = Vec::new();
        r.process(&[], &mut out);
        assert!(out.is_empty());
        r.flush(&mut out);
        assert_eq!(
            out.len(),
            r.delay_samples(),
            "flush of an empty stream is the delay line"
        );
    }
}
