//! Per-column lookup tables for the float steps between two int8 layers.
//!
//! Between two quantised matrix products the model dequantises, adds a
//! per-channel bias, applies a function (GELU, tanh, a scale) and
//! quantises again: for a given channel, a map from 256 bytes to 256
//! bytes. Tabulated once when the model loads, the step costs one lookup
//! per value and gives exactly the bytes the float arithmetic gives.

/// A table of 256 output bytes per column.
#[derive(Debug, Clone)]
pub(crate) struct ColumnLut {
    columns: usize,
    tables: Vec<[u8; 256]>,
}

impl ColumnLut {
    /// The table of `f(column, byte)`.
    pub(crate) fn new(columns: usize, f: impl Fn(usize, u8) -> u8) -> ColumnLut {
        let tables = (0..columns)
            .map(|c| std::array::from_fn(|q| f(c, q as u8)))
            .collect();
        ColumnLut { columns, tables }
    }

    /// Maps `values` (rows of `columns` bytes) in place.
    pub(crate) fn apply(&self, values: &mut [u8]) {
        for row in values.chunks_exact_mut(self.columns) {
            self.apply_from(0, row);
        }
    }

    /// Maps `values`, the columns from `first` on of one row, in place
    /// (a table of one column maps every column).
    pub(crate) fn apply_from(&self, first: usize, values: &mut [u8]) {
        if self.columns == 1 {
            let table = &self.tables[0];
            for v in values {
                *v = table[usize::from(*v)];
            }
        } else {
            for (v, table) in values.iter_mut().zip(&self.tables[first..]) {
                *v = table[usize::from(*v)];
            }
        }
    }

    /// The 8 bytes of `word` (columns `first` to `first + 7` of a row,
    /// little-endian) mapped, in general-purpose registers: the int8
    /// kernel calls it between its vector products, whose pipes it leaves
    /// free (a byte inserted into a vector would take a shuffle pipe,
    /// which this CPU shares with a multiplier).
    #[inline(always)]
    pub(crate) fn map_word(&self, first: usize, word: u64) -> u64 {
        let byte = |i: usize| usize::from((word >> (8 * i)) as u8);
        if self.columns == 1 {
            let table = &self.tables[0];
            (0..8).fold(0, |out, i| out | u64::from(table[byte(i)]) << (8 * i))
        } else {
            let tables = &self.tables[first..first + 8];
            (0..8).fold(0, |out, i| out | u64::from(tables[i][byte(i)]) << (8 * i))
        }
    }
}

/// The error function, as MLAS computes it (`MlasErfKernel`: an odd
/// polynomial below 0.921875, `1 - exp(-p(|x|))` above, clamped at 3.925),
/// so that GELU's quantised outputs match onnxruntime's.
// The coefficients are written as MLAS writes them, digits past f32's
// precision included, so they can be compared with its source.
#[allow(clippy::excessive_precision)]
pub(crate) fn erf(x: f32) -> f32 {
    let a = x.abs();
    if a > 0.921_875 {
        let a = a.min(3.925);
        let p = [
            1.729_489_3e-5,
            -3.832_086_8e-4,
            3.883_934_4e-3,
            -2.425_456e-2,
            1.067_778_5e-1,
            6.348_467e-1,
            1.287_175_1e-1,
        ]
        .iter()
        .fold(0.0f32, |acc, c| acc * a + c);
        let r = 1.0 - (-(p * a + a)).exp();
        if x < 0.0 { -r } else { r }
    } else {
        let s = a * a;
        let p = [
            -5.991_049_7e-4,
            4.993_395_9e-3,
            -2.676_673_4e-2,
            1.128_180_3e-1,
            -3.761_248_6e-1,
            1.283_791_5e-1,
        ]
        .iter()
        .fold(0.0f32, |acc, c| acc * s + c);
        p * x + x
    }
}

/// GELU as the exported graph spells it: `x * (0.5 * (erf(x / √2) + 1))`.
pub(crate) fn gelu(x: f32) -> f32 {
    x * (0.5 * (erf(x / std::f32::consts::SQRT_2) + 1.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn erf_matches_known_values() {
        for (x, want) in [
            (0.0f32, 0.0f32),
            (0.5, 0.520_499_9),
            (1.0, 0.842_700_8),
            (-2.0, -0.995_322_3),
            (10.0, 1.0),
        ] {
            assert!((erf(x) - want).abs() < 2e-7, "erf({x}) = {}", erf(x));
        }
    }

    #[test]
    fn tables_apply_per_column() {
        let lut = ColumnLut::new(2, |c, q| q.wrapping_add(c as u8 * 10));
        let mut values = vec![1, 1, 250, 250];
        lut.apply(&mut values);
        assert_eq!(values, [1, 11, 250, 4]);
        let mut second_column = [1, 250];
        lut.apply_from(1, &mut second_column[..1]);
        assert_eq!(second_column, [11, 250]);
        let one = ColumnLut::new(1, |_, q| q / 2);
        let mut values = vec![10, 20, 30];
        one.apply_from(5, &mut values);
        assert_eq!(values, [5, 10, 15]);
        // A word of 8 columns at once, as the int8 kernel maps them.
        let lut = ColumnLut::new(16, |c, q| q.wrapping_mul(3).wrapping_add(c as u8));
        let row: Vec<u8> = (0..16u8).map(|i| i * 13 + 5).collect();
        let mut one_by_one = row.clone();
        lut.apply(&mut one_by_one);
        let word = u64::from_le_bytes(row[8..].try_into().unwrap());
        assert_eq!(
            lut.map_word(8, word).to_le_bytes(),
            one_by_one[8..],
            "per column"
        );
        let word = u64::from_le_bytes(values.repeat(3)[..8].try_into().unwrap());
        assert_eq!(
            one.map_word(3, word).to_le_bytes(),
            [2, 5, 7, 2, 5, 7, 2, 5]
        );
    }
}
