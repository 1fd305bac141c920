//! G.711 mu-law, the 8 kHz telephone codec (Twilio Media Streams' `audio/x-mulaw`).
//!
//! Decoding looks up a 256-entry table built at compile time from the
//! G.711 expansion formula; it equals the classic tables (CCITT/Sun
//! `g711.c`, CPython's `audioop.ulaw2lin`) for every code.
//!
//! Encoding follows the Sun / CCITT `g711.c` reference on the full 16-bit
//! magnitude: bias `0x84`, magnitude clipped at 32635, segment from the
//! position of the highest set bit. CPython's `audioop.lin2ulaw` first drops
//! to 14 bits with an arithmetic shift (a floor), so for some negative inputs
//! near a decision level it picks the neighbouring code, one quantisation
//! step away. Both are valid G.711; voxpipe follows the reference, and the
//! test vectors (`tests/fixtures/mulaw_vectors.json`) record both columns.
//!
//! Zero encodes to `0xFF` (no "zero trap"); code `0x7F` (negative zero)
//! decodes to 0.
//!
//! The slice functions append to their output and never clear it.

/// Bias added to the magnitude before finding the segment.
const BIAS: i32 = 0x84;
/// Largest magnitude encoded without clipping (`0x7FFF - BIAS`).
const CLIP: i32 = 32635;

/// mu-law code to linear sample, for all 256 codes.
static DECODE_TABLE: [i16; 256] = build_decode_table();

const fn build_decode_table() -> [i16; 256] {
    let mut table = [0i16; 256];
    let mut code = 0;
    while code < 256 {
        let u = !(code as u8);
        let mantissa = (u & 0x0F) as i32;
        let exponent = ((u >> 4) & 0x07) as i32;
        let magnitude = (((mantissa << 3) + BIAS) << exponent) - BIAS;
        table[code] = if u & 0x80 != 0 {
            -magnitude as i16
        } else {
            magnitude as i16
        };
        code += 1;
    }
    table
}

/// Encodes one linear 16-bit sample to a mu-law code.
#[inline]
pub fn encode_sample(sample: i16) -> u8 {
    let s = i32::from(sample);
    let (sign, magnitude) = if s < 0 { (0x80, -s) } else { (0x00, s) };
    let biased = magnitude.min(CLIP) + BIAS; // 0x84..=0x7FFF
    // Segment = position of the highest set bit above bit 7 (0..=7).
    let exponent = (31 - biased.leading_zeros() as i32 - 7).max(0);
    let mantissa = (biased >> (exponent + 3)) & 0x0F;
    !((sign | (exponent << 4) | mantissa) as u8)
}

/// Decodes one mu-law code to a linear 16-bit sample.
#[inline]
pub fn decode_sample(code: u8) -> i16 {
    DECODE_TABLE[usize::from(code)]
}

/// Appends the mu-law encoding of `samples` (one byte per sample) to `out`.
pub fn encode(samples: &[i16], out: &mut Vec<u8>) {
    out.extend(samples.iter().map(|&s| encode_sample(s)));
}

/// Appends the linear samples decoded from mu-law `codes` to `out`.
pub fn decode(codes: &[u8], out: &mut Vec<i16>) {
    out.extend(codes.iter().map(|&c| decode_sample(c)));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_corners() {
        assert_eq!(decode_sample(0x00), -32124);
        assert_eq!(decode_sample(0x80), 32124);
        assert_eq!(decode_sample(0x7F), 0);
        assert_eq!(decode_sample(0xFF), 0);
        assert_eq!(decode_sample(0x7E), -8);
        assert_eq!(decode_sample(0xFE), 8);
    }

    #[test]
    fn encode_corners() {
        assert_eq!(encode_sample(0), 0xFF);
        assert_eq!(encode_sample(-1), 0x7F);
        assert_eq!(encode_sample(i16::MAX), 0x80);
        assert_eq!(encode_sample(i16::MIN), 0x00);
    }

    #[test]
    fn every_code_survives_decode_then_encode() {
        for code in 0..=255u8 {
            let expected = if code == 0x7F { 0xFF } else { code }; // -0 becomes +0
            assert_eq!(
                encode_sample(decode_sample(code)),
                expected,
                "code {code:#04x}"
            );
        }
    }

    #[test]
    fn encoding_is_monotonic() {
        // Decoded value never decreases as the input increases.
        let mut last = i16::MIN;
        for x in i16::MIN..=i16::MAX {
            let y = decode_sample(encode_sample(x));
            assert!(y >= last, "x={x}");
            last = y;
        }
    }

    #[test]
    fn slices_append() {
        let mut codes = vec![0xAA];
        encode(&[0, 1000, -1000], &mut codes);
        assert_eq!(codes.len(), 4);
        let mut pcm = vec![5];
        decode(&codes[1..], &mut pcm);
        assert_eq!(pcm[0], 5);
        assert_eq!(pcm[1], 0);
        assert!((pcm[2] - 1000).abs() < 40 && (pcm[3] + 1000).abs() < 40);
    }
}
