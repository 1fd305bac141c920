//! Opus: tone round trip, frame size errors, stereo peers, loss handling.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code may panic

use crate::support;

use support::signal::{sine, tone_amplitude, zero_crossing_freq};
use voxpipe::audio::AudioError;
use voxpipe::audio::opus::{FRAME_SAMPLES, MAX_FRAME_SAMPLES, OpusDecoder, OpusEncoder};

const RATE: u32 = 48_000;

fn encode_all(enc: &mut OpusEncoder, pcm: &[i16]) -> Vec<bytes::Bytes> {
    pcm.chunks_exact(FRAME_SAMPLES)
        .map(|f| enc.encode(f).unwrap())
        .collect()
}

/// Normalised correlation of `a` and `b` over their common length.
fn correlation(a: &[i16], b: &[i16]) -> f64 {
    let n = a.len().min(b.len());
    let (mut ab, mut aa, mut bb) = (0.0, 0.0, 0.0);
    for i in 0..n {
        let (x, y) = (f64::from(a[i]), f64::from(b[i]));
        ab += x * y;
        aa += x * x;
        bb += y * y;
    }
    ab / (aa * bb).sqrt().max(1e-9)
}

#[test]
fn a_tone_survives_the_round_trip() {
    let input = sine(440.0, RATE, RATE as usize, 10_000.0); // 1 s, 50 frames
    let mut enc = OpusEncoder::new().unwrap();
    let lookahead = enc.lookahead_samples().unwrap();
    assert!(lookahead > 0 && lookahead < 1_000, "lookahead {lookahead}");
    let packets = encode_all(&mut enc, &input);
    assert_eq!(packets.len(), 50);
    // 32 kbit/s is about 80 bytes per 20 ms.
    let bytes: usize = packets.iter().map(|p| p.len()).sum();
    assert!(bytes > 50 * 20 && bytes < 50 * 200, "{bytes} bytes");

    let mut dec = OpusDecoder::new().unwrap();
    let mut out = Vec::new();
    for p in &packets {
        assert_eq!(dec.decode(p, &mut out).unwrap(), FRAME_SAMPLES);
    }
    assert_eq!(out.len(), input.len());

    // Skip the first 100 ms while the codec settles, then compare with the
    // input delayed by about the encoder's look-ahead (SILK's resampler
    // lands a few samples off the reported figure).
    let settled = &out[4_800..];
    let (best_lag, best_corr) = (lookahead - 20..=lookahead + 20)
        .map(|lag| (lag, correlation(&input[4_800 - lag..], settled)))
        .max_by(|a, b| a.1.total_cmp(&b.1))
        .unwrap();
    assert!(
        best_corr > 0.99,
        "correlation {best_corr:.4} at lag {best_lag}"
    );
    let freq = zero_crossing_freq(settled, RATE);
    assert!((freq - 440.0).abs() < 1.0, "decoded tone at {freq:.2} Hz");
    let amp = tone_amplitude(settled, 440.0, RATE);
    assert!(
        (amp / 10_000.0 - 1.0).abs() < 0.2,
        "decoded amplitude {amp:.0}"
    );
}

#[test]
fn wrong_frame_sizes_are_errors() {
    let mut enc = OpusEncoder::new().unwrap();
    for len in [0, 1, 480, 959, 961, 1_920] {
        match enc.encode(&vec![0; len]) {
            Err(AudioError::FrameSize { expected, actual }) => {
                assert_eq!((expected, actual), (FRAME_SAMPLES, len));
            }
            other => panic!("{len} samples: {other:?}"),
        }
    }
    let err = enc.encode(&[0; 480]).unwrap_err();
    assert_eq!(
        err.to_string(),
        "wrong frame size: expected 960 samples, got 480"
    );
    assert!(matches!(
        enc.set_complexity(11),
        Err(AudioError::OpusInit { .. })
    ));
    assert!(matches!(
        enc.set_bitrate(-5),
        Err(AudioError::OpusInit { .. })
    ));
    enc.set_complexity(5).unwrap();
    enc.set_bitrate(24_000).unwrap();
    // Still usable afterwards.
    assert!(!enc.encode(&[0; FRAME_SAMPLES]).unwrap().is_empty());
}

#[test]
fn stereo_packets_decode_to_mono() {
    // A peer that ignores stereo=0: 440 Hz left, 440 Hz right.
    let mut stereo =
        ropus::Encoder::builder(RATE, ropus::Channels::Stereo, ropus::Application::Voip)
            .build()
            .unwrap();
    let tone = sine(440.0, RATE, RATE as usize / 2, 8_000.0);
    let interleaved: Vec<i16> = tone.iter().flat_map(|&s| [s, s]).collect();
    let mut dec = OpusDecoder::new().unwrap();
    let mut out = Vec::new();
    let mut buf = [0u8; 4_000];
    for frame in interleaved.chunks_exact(2 * FRAME_SAMPLES) {
        let len = stereo.encode(frame, &mut buf).unwrap();
        let packet = &buf[..len];
        // The TOC byte's stereo flag.
        assert_eq!(packet[0] & 0x04, 0x04, "stereo packet");
        assert_eq!(dec.decode(packet, &mut out).unwrap(), FRAME_SAMPLES);
    }
    assert_eq!(out.len(), tone.len());
    let settled = &out[4_800..];
    let freq = zero_crossing_freq(settled, RATE);
    assert!((freq - 440.0).abs() < 1.0, "{freq}");
    let amp = tone_amplitude(settled, 440.0, RATE);
    assert!(
        amp > 8_000.0 * 0.7 && amp < 8_000.0 * 1.3,
        "mono downmix amplitude {amp:.0}"
    );
}

#[test]
fn corrupt_packets_are_errors_and_the_decoder_recovers() {
    let mut enc = OpusEncoder::new().unwrap();
    let mut dec = OpusDecoder::new().unwrap();
    let mut out = vec![7];
    // TOC code 3 (arbitrary frame count) announcing zero frames.
    let err = dec.decode(&[0xFB, 0x00], &mut out).unwrap_err();
    assert!(
        matches!(err, AudioError::OpusDecode { packet_len: 2, .. }),
        "{err:?}"
    );
    assert_eq!(out, vec![7], "output untouched on error");
    let good = enc.encode(&[0; FRAME_SAMPLES]).unwrap();
    assert_eq!(dec.decode(&good, &mut out).unwrap(), FRAME_SAMPLES);
}

#[test]
fn lost_packets_are_concealed_or_recovered_from_fec() {
    let input = sine(300.0, RATE, RATE as usize, 10_000.0);
    let mut enc = OpusEncoder::new().unwrap();
    let packets = encode_all(&mut enc, &input);
    let mut dec = OpusDecoder::new().unwrap();
    let mut out = Vec::new();

    // Concealment before any packet is 20 ms of (near) silence.
    assert_eq!(dec.decode_lost(&mut out).unwrap(), FRAME_SAMPLES);
    out.clear();

    for p in &packets[..20] {
        dec.decode(p, &mut out).unwrap();
    }
    // Packets 20 and 21 lost: conceal them; an empty packet means the same.
    assert_eq!(dec.decode_lost(&mut out).unwrap(), FRAME_SAMPLES);
    assert_eq!(dec.decode(&[], &mut out).unwrap(), FRAME_SAMPLES);
    for p in &packets[22..30] {
        dec.decode(p, &mut out).unwrap();
    }
    // Packet 30 lost, rebuilt from the FEC in packet 31.
    assert_eq!(
        dec.decode_fec(&packets[31], &mut out).unwrap(),
        FRAME_SAMPLES
    );
    for p in &packets[31..] {
        dec.decode(p, &mut out).unwrap();
    }
    assert_eq!(out.len(), input.len());
    // Concealed and recovered audio continues the tone rather than going
    // silent. ropus rebuilds lost audio at about half of float libopus's
    // level (the module docs give the figures), so both frames are held to
    // 5 % of the tone: about 930 each here, where libopus gave over 2 000.
    let frame = |i: usize| &out[i * FRAME_SAMPLES..(i + 1) * FRAME_SAMPLES];
    for (i, what) in [(20, "concealed"), (30, "rebuilt from FEC")] {
        let amp = tone_amplitude(frame(i), 300.0, RATE);
        assert!(amp > 500.0, "{what} frame {i}: amplitude {amp:.0}");
    }
    assert!(out.len() <= 50 * MAX_FRAME_SAMPLES);
}

#[test]
fn codec_types_can_move_between_threads() {
    fn check<T: Send>() {}
    check::<OpusEncoder>();
    check::<OpusDecoder>();
}
