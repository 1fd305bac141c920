//! Audio toolkit (being written on its own branch; this is a stand-in).

pub mod pcm {
    //! PCM helpers.
    /// 16-bit little-endian bytes from samples.
    pub fn samples_to_le_bytes(samples: &[i16]) -> bytes::Bytes {
        let mut out = Vec::with_capacity(samples.len() * 2);
        for s in samples {
            out.extend_from_slice(&s.to_le_bytes());
        }
        out.into()
    }
    /// Samples from 16-bit little-endian bytes.
    pub fn samples_from_le_bytes(bytes: &[u8]) -> Vec<i16> {
        bytes
            .chunks_exact(2)
            .map(|c| i16::from_le_bytes([c[0], c[1]]))
            .collect()
    }
}
