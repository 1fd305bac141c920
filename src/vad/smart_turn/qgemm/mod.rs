//! The int8 matrix product of the encoder's linear layers and
//! convolutions: uint8 activations times int8 weights, summed **exactly**
//! in int32, and requantised in float with round-half-even, as the model's
//! `QLinearConv`, `QLinearMatMul` and `QGemm` define it.
//!
//! Exactly, because onnxruntime's answer depends on the CPU. Its AVX2 kernel
//! (MLAS U8S8, `vpmaddubsw`) sums each pair of neighbouring products into
//! an int16 **with saturation**, so with this model's full-range weights
//! (±127) and activations around their zero point (about 130) a pair's sum
//! is clipped now and then; with AVX-512 VNNI (`vpdpbusd`, Intel servers
//! since 2019 and AMD Zen 4) the sums are exact. The two disagree on the
//! decision for 13 of the 80 reference clips, and the exact sums are right
//! more often (53 of 80 against 40: `docs/architecture.md`), so voxpipe
//! computes them on every CPU.
//!
//! [`QLinear::run`] computes `out[m][n] = requant(dot(a[m], w[n]) +
//! offset[n])` with the fastest kernel the CPU has (detected at load):
//!
//! - **VNNI** (AVX-512 VNNI with VL): `vpdpbusd`, four products a lane
//!   summed into int32 in one instruction;
//! - **AVX2**: `vpmaddubsw` then `vpmaddwd`, where a group of 4 inputs'
//!   weights for the 16 columns cannot saturate a pair (in every lane, the
//!   positive weights of a pair sum to at most 128, and the negative ones:
//!   255 × 128 fits an int16; about 7 groups in 10 on this model), and
//!   otherwise `vpmaddwd` alone on the inputs and weights as int16 (exact
//!   for any bytes): the group's 4 input bytes, broadcast, give two int16
//!   pairs (inputs 0 and 2 by a mask, 1 and 3 by a shift), so such a group
//!   costs a row the same 4 multiplies as a group on bytes. Two groups on
//!   bytes whose weights together cannot saturate a pair are chained: their
//!   `vpmaddubsw` results added as int16, widened once (6 multiplies for
//!   both, not 8);
//! - plain Rust otherwise.
//!
//! The files, bottom up: `packed`, the layer as the kernels read it;
//! `schedule`, the AVX2 kernel's plan of each block's groups; `avx2` and
//! `vnni`, the kernels; `linear`, [`QLinear`]: the packing, the choice of
//! kernel and the plain loop.

#[cfg(target_arch = "x86_64")]
#[allow(unsafe_code)]
pub(crate) mod avx2;
mod linear;
mod packed;
mod schedule;
#[cfg(target_arch = "x86_64")]
#[allow(unsafe_code)]
pub(crate) mod vnni;

pub(crate) use linear::QLinear;
pub(crate) use packed::requantize;
