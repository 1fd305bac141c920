//! G.711 mu-law against the committed vectors (`tests/fixtures/mulaw_vectors.json`,
//! generated once by `tools/gen_mulaw_vectors.py` from CPython's `audioop`).

#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers may panic

use voxpipe::audio::mulaw;

struct Vectors {
    decode: Vec<i16>,
    /// (linear, audioop code, reference code)
    encode: Vec<(i16, u8, u8)>,
}

fn vectors() -> Vectors {
    let text = include_str!("../fixtures/mulaw_vectors.json");
    let json: serde_json::Value = serde_json::from_str(text).unwrap();
    let decode = json["decode"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| i16::try_from(v.as_i64().unwrap()).unwrap())
        .collect();
    let encode = json["encode"]
        .as_array()
        .unwrap()
        .iter()
        .map(|row| {
            let n = |i: usize| row[i].as_i64().unwrap();
            (
                i16::try_from(n(0)).unwrap(),
                u8::try_from(n(1)).unwrap(),
                u8::try_from(n(2)).unwrap(),
            )
        })
        .collect();
    Vectors { decode, encode }
}

#[test]
fn decode_matches_audioop_for_all_256_codes() {
    let v = vectors();
    assert_eq!(v.decode.len(), 256);
    for code in 0..=255u8 {
        assert_eq!(
            mulaw::decode_sample(code),
            v.decode[usize::from(code)],
            "code {code:#04x}"
        );
    }
    let codes: Vec<u8> = (0..=255).collect();
    let mut out = Vec::new();
    mulaw::decode(&codes, &mut out);
    assert_eq!(out, v.decode);
}

#[test]
fn encode_matches_the_g711_reference_on_the_sweep() {
    let v = vectors();
    assert!(v.encode.len() > 3000);
    for &(x, _, reference) in &v.encode {
        assert_eq!(mulaw::encode_sample(x), reference, "linear {x}");
    }
    let linear: Vec<i16> = v.encode.iter().map(|r| r.0).collect();
    let mut out = Vec::new();
    mulaw::encode(&linear, &mut out);
    assert_eq!(out, v.encode.iter().map(|r| r.2).collect::<Vec<u8>>());
}

#[test]
fn encode_differs_from_audioop_only_by_one_step_on_negative_inputs() {
    // audioop floors to 14 bits first; the reference does not. The two may
    // only disagree on negative inputs, and then by one adjacent code.
    let v = vectors();
    let mut differences = 0;
    for &(x, audioop, reference) in &v.encode {
        if audioop == reference {
            continue;
        }
        differences += 1;
        assert!(x < 0, "positive input {x} differs");
        assert_eq!(audioop.abs_diff(reference), 1, "input {x}");
        assert_eq!(audioop & 0x80, reference & 0x80, "sign differs for {x}");
        let (a, r) = (
            mulaw::decode_sample(audioop),
            mulaw::decode_sample(reference),
        );
        // Both are valid quantisations: x lies between the two levels.
        assert!(
            x >= a.min(r) && x <= a.max(r),
            "{x} not between {a} and {r}"
        );
    }
    assert!(
        differences > 0,
        "expected audioop's known negative rounding differences"
    );
}

#[test]
fn round_trip_error_is_within_half_a_step() {
    // Quantisation error never exceeds half the step of the segment (plus the
    // clip region above 32124).
    for x in i16::MIN..=i16::MAX {
        let y = mulaw::decode_sample(mulaw::encode_sample(x));
        let mag = i32::from(x).unsigned_abs().min(32635);
        let segment = (31 - (mag + 0x84).leading_zeros()).saturating_sub(7);
        let step = 1i32 << (segment + 3);
        let err = (i32::from(x) - i32::from(y)).abs();
        let clip = (i32::from(x).abs() - 32124).max(0);
        assert!(err <= step / 2 + clip + 1, "x={x} y={y} step={step}");
    }
}

#[test]
fn codes_round_trip_through_decode_and_encode() {
    let codes: Vec<u8> = (0..=255).collect();
    let mut linear = Vec::new();
    mulaw::decode(&codes, &mut linear);
    let mut again = Vec::new();
    mulaw::encode(&linear, &mut again);
    for (c, a) in codes.iter().zip(&again) {
        let expected = if *c == 0x7F { 0xFF } else { *c };
        assert_eq!(*a, expected);
    }
}
