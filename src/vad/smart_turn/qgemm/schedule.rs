//! The AVX2 kernel's plan for a block of 16 columns, made once at load:
//! which groups of 4 inputs it multiplies on bytes (`vpmaddubsw`), which
//! of those it chains in pairs, and which it multiplies on int16.
//!
//! `vpmaddubsw` sums each pair of neighbouring uint8 × int8 products into
//! an int16 with saturation. With inputs in [0, 255], a lane's pair lies
//! within 255 times its positive weights' sum and 255 times its negative
//! weights' sum (the pair's *masses*); while both masses are at most 128
//! ([`PAIR_MASS`]), 255 × 128 fits an int16 and the sum is exact.
//!
//! - A group whose masses fit in all its 32 lanes (16 columns, 2 pairs)
//!   goes on bytes: 2 `vpmaddubsw`, then 2 `vpmaddwd` by ones to widen.
//! - Two such groups whose masses, added lane by lane, still fit are
//!   *chained*: their `vpmaddubsw` results are added as int16 (the sum is
//!   bounded as a single pair's is) and widened once, 6 multiplies a row
//!   for both where they took 8 (the time fell less than the multiplies:
//!   `docs/architecture.md`, Smart Turn, Speed).
//! - The others go on int16 (`vpmaddwd` alone, exact for any bytes).

use std::ops::Range;

use super::packed::{COLUMNS, PAIR_MASS};

/// A group's lanes: for each of the 16 columns, its two pairs.
const LANES: usize = 2 * COLUMNS;

/// Each lane's positive and negative mass.
type Masses = [(i32, i32); LANES];

/// The order in which the AVX2 kernel takes a block's groups: the chained
/// pairs first (each pair's two groups one after the other), then the
/// other groups on bytes, then those on int16.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct BlockSchedule {
    /// Every group once (`k / 4` of them; `k / 4` fits a u16).
    pub(super) order: Vec<u16>,
    /// How many pairs of groups `order` leads with.
    pub(super) chained: usize,
    /// How many groups go on bytes, the chained ones included.
    pub(super) bytes: usize,
}

/// The schedule of the `columns` (16) of `weights` (`[n][k]`).
pub(super) fn schedule(weights: &[i8], k: usize, columns: Range<usize>) -> BlockSchedule {
    let masses: Vec<Masses> = (0..k / 4)
        .map(|group| {
            let mut masses = [(0, 0); LANES];
            for (c, lanes) in columns.clone().zip(masses.chunks_exact_mut(2)) {
                let pairs = weights[c * k + 4 * group..][..4].chunks_exact(2);
                for (lane, pair) in lanes.iter_mut().zip(pairs) {
                    for w in pair {
                        let w = i32::from(*w);
                        if w > 0 {
                            lane.0 += w;
                        } else {
                            lane.1 -= w;
                        }
                    }
                }
            }
            masses
        })
        .collect();
    let (mut bytes, words): (Vec<usize>, Vec<usize>) = (0..k / 4).partition(|g| fits(&masses[*g]));
    let on_bytes = bytes.len();
    // The heaviest group left first, with the heaviest of the others that
    // fits with it (the lightest are kept for the heavy groups to come);
    // where none does, alone. On this model it chains about 4 in 5 groups
    // on bytes.
    let heaviest = |g: &usize| masses[*g].iter().map(|(p, n)| *p.max(n)).max();
    bytes.sort_by_key(|g| (heaviest(g), *g));
    let (mut pairs, mut singles) = (Vec::new(), Vec::new());
    while let Some(heavy) = bytes.pop() {
        let partner = bytes
            .iter()
            .rposition(|light| fit_together(&masses[heavy], &masses[*light]));
        match partner {
            Some(at) => pairs.extend([bytes.remove(at), heavy]),
            None => singles.push(heavy),
        }
    }
    let chained = pairs.len() / 2;
    // `k / 4` fits a u16: `QLinear::with_kernel` checked.
    let order = pairs
        .into_iter()
        .chain(singles)
        .chain(words)
        .map(|g| g as u16)
        .collect();
    BlockSchedule {
        order,
        chained,
        bytes: on_bytes,
    }
}

/// Whether no lane's pair can saturate `vpmaddubsw`.
fn fits(masses: &Masses) -> bool {
    masses
        .iter()
        .all(|(positive, negative)| *positive <= PAIR_MASS && *negative <= PAIR_MASS)
}

/// Whether two groups' pairs, added lane by lane, cannot saturate an
/// int16 either.
fn fit_together(a: &Masses, b: &Masses) -> bool {
    a.iter()
        .zip(b)
        .all(|(a, b)| a.0 + b.0 <= PAIR_MASS && a.1 + b.1 <= PAIR_MASS)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One block of 16 columns: column 0's weights `column_0`, the
    /// others zero.
    fn weights(column_0: &[i8]) -> Vec<i8> {
        let k = column_0.len();
        let mut w = vec![0_i8; 16 * k];
        w[..k].copy_from_slice(column_0);
        w
    }

    #[test]
    fn groups_go_on_int16_only_where_a_pair_could_saturate() {
        // Group 0's first pair weighs 64 + 64 (bytes), group 1's 64 + 65.
        let s = schedule(&weights(&[64, 64, 0, 0, 64, 65, 0, 0]), 8, 0..16);
        assert_eq!((s.order, s.chained, s.bytes), (vec![0, 1], 0, 1));
        // Negative weights count apart from positive ones.
        let s = schedule(&weights(&[-128, 127, 0, 0, -64, -65, 0, 0]), 8, 0..16);
        assert_eq!((s.order, s.chained, s.bytes), (vec![0, 1], 0, 1));
        let s = schedule(&weights(&[-65, -64, 0, 0, 0, 0, 1, 1]), 8, 0..16);
        assert_eq!((s.order, s.chained, s.bytes), (vec![1, 0], 0, 1));
    }

    #[test]
    fn groups_are_chained_where_their_pairs_fit_together() {
        // In one lane: group 0 weighs 60, group 1 100, group 2 29. The
        // heaviest (1) fits with neither (160, 129) and goes alone; 0
        // and 2 fit (89).
        let s = schedule(
            &weights(&[60, 0, 0, 0, 100, 0, 0, 0, 29, 0, 0, 0]),
            12,
            0..16,
        );
        assert_eq!((s.order, s.chained, s.bytes), (vec![2, 0, 1], 1, 3));
        // Groups in different lanes fit together whatever they weigh.
        let s = schedule(&weights(&[127, 0, 0, 0, 0, 0, 127, 0]), 8, 0..16);
        assert_eq!((s.chained, s.bytes), (1, 2));
        // Masses add up to 128 at most; opposite signs count apart.
        let s = schedule(&weights(&[127, 0, 0, 0, 1, 0, 0, 0]), 8, 0..16);
        assert_eq!((s.chained, s.bytes), (1, 2));
        let s = schedule(&weights(&[100, 0, 0, 0, 29, 0, 0, 0]), 8, 0..16);
        assert_eq!((s.chained, s.bytes), (0, 2));
        let s = schedule(&weights(&[-100, 0, 0, 0, 100, 0, 0, 0]), 8, 0..16);
        assert_eq!((s.chained, s.bytes), (1, 2));
    }
}
