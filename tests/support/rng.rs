//! xorshift64*: deterministic pseudo-random test vectors, shared by the
//! skills tests and the context benchmark.

/// A deterministic generator.
pub(crate) struct Rng(pub(crate) u64);

impl Rng {
    /// The next value, uniform in [-1, 1).
    pub(crate) fn next(&mut self) -> f32 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        let bits = self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 40;
        bits as f32 / (1u64 << 24) as f32 * 2.0 - 1.0
    }
}
