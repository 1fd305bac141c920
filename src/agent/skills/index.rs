//! The in-memory skill index: nearest triggers by cosine similarity, fast
//! at 100,000 skills of 768 dimensions.
//!
//! # Why two stages
//!
//! 100,000 × 768 f32 is 307 MB: one exact scan per query reads all of it,
//! and memory bandwidth alone makes that slower than the 5 ms budget. So
//! each unit-length vector also gets a 1-bit code (the sign of each
//! component, 96 bytes at 768 dimensions, 9.6 MB for 100,000): a query
//! first ranks every skill by the Hamming distance between codes (XOR and
//! popcount, which tracks the angle between vectors), keeps the `candidates`
//! closest, and ranks only those by exact cosine similarity on the f32
//! vectors. The exact stage makes the scores exact; the first stage can
//! only miss a true neighbour whose code is unusually far, which
//! `candidates` (512 by default, over 50 times a typical k) makes rare: see
//! the recall test and `benches/skills.rs`.
//!
//! Memory: 4 × dims + dims / 8 bytes per skill plus its texts (about 3.2 KB
//! at 768 dimensions).

use std::collections::HashMap;
use std::sync::Arc;

use crate::store::Skill;

/// One search result.
#[derive(Debug, Clone, PartialEq)]
pub struct SkillHit {
    /// The skill's hash.
    pub hash: String,
    /// The objection it answers.
    pub trigger: Arc<str>,
    /// What to answer.
    pub rebuttal: Arc<str>,
    /// Cosine similarity of the query and the trigger, -1 to 1.
    pub similarity: f32,
}

/// A skill the index cannot hold.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum IndexError {
    /// Its vector's length differs from the index's.
    #[error("skill {hash} has {got} dimensions; the index holds {expected}")]
    Dimensions {
        /// The skill.
        hash: String,
        /// The index's dimensions.
        expected: usize,
        /// The skill's.
        got: usize,
    },
    /// Its vector is zero or not finite: it has no direction.
    #[error("skill {0} has a zero or non-finite vector")]
    Degenerate(String),
    /// A query's vector length differs from the skills' (the embedding
    /// model or its `dimensions` changed since they were stored).
    #[error("the query has {got} dimensions; the skills have {expected}")]
    QueryDimensions {
        /// The index's dimensions.
        expected: usize,
        /// The query's.
        got: usize,
    },
}

struct Texts {
    hash: String,
    trigger: Arc<str>,
    rebuttal: Arc<str>,
}

/// Skills by trigger embedding. Not synchronised: wrap it in a lock to share.
pub struct SkillIndex {
    dims: usize,
    words: usize,
    candidates: usize,
    texts: Vec<Texts>,
    /// `words` u64 per skill: sign bits of the vector.
    codes: Vec<u64>,
    /// `dims` f32 per skill, unit length.
    vectors: Vec<f32>,
    positions: HashMap<String, usize>,
}

impl std::fmt::Debug for SkillIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SkillIndex")
            .field("len", &self.len())
            .field("dims", &self.dims)
            .field("candidates", &self.candidates)
            .finish()
    }
}

impl SkillIndex {
    /// An empty index re-ranking `candidates` per query exactly; its
    /// dimensions are those of the first skill inserted.
    pub fn new(candidates: usize) -> Self {
        SkillIndex {
            dims: 0,
            words: 0,
            candidates: candidates.max(1),
            texts: Vec::new(),
            codes: Vec::new(),
            vectors: Vec::new(),
            positions: HashMap::new(),
        }
    }

    /// Skills held.
    pub fn len(&self) -> usize {
        self.texts.len()
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.texts.is_empty()
    }

    /// Dimensions of the vectors (0 while empty).
    pub fn dims(&self) -> usize {
        self.dims
    }

    /// True when a skill with this hash is held.
    pub fn contains(&self, hash: &str) -> bool {
        self.positions.contains_key(hash)
    }

    /// The hashes held.
    pub fn hashes(&self) -> impl Iterator<Item = &str> {
        self.texts.iter().map(|t| t.hash.as_str())
    }

    /// Adds `skill`, replacing one with the same hash.
    pub fn insert(&mut self, skill: &Skill) -> Result<(), IndexError> {
        if self.texts.is_empty() {
            self.dims = skill.vector.len();
            self.words = self.dims.div_ceil(64);
            self.codes.clear();
            self.vectors.clear();
        }
        if skill.vector.len() != self.dims {
            return Err(IndexError::Dimensions {
                hash: skill.hash.clone(),
                expected: self.dims,
                got: skill.vector.len(),
            });
        }
        let Some(unit) = normalized(&skill.vector) else {
            return Err(IndexError::Degenerate(skill.hash.clone()));
        };
        let texts = Texts {
            hash: skill.hash.clone(),
            trigger: skill.trigger.as_str().into(),
            rebuttal: skill.rebuttal.as_str().into(),
        };
        match self.positions.get(&skill.hash) {
            Some(&at) => {
                self.texts[at] = texts;
                self.vectors[at * self.dims..(at + 1) * self.dims].copy_from_slice(&unit);
                let code = &mut self.codes[at * self.words..(at + 1) * self.words];
                write_code(&unit, code);
            }
            None => {
                self.positions.insert(skill.hash.clone(), self.texts.len());
                self.texts.push(texts);
                self.vectors.extend_from_slice(&unit);
                let start = self.codes.len();
                self.codes.resize(start + self.words, 0);
                write_code(&unit, &mut self.codes[start..]);
            }
        }
        Ok(())
    }

    /// Removes the skill with `hash`; true if it was held.
    pub fn remove(&mut self, hash: &str) -> bool {
        let Some(at) = self.positions.remove(hash) else {
            return false;
        };
        let last = self.texts.len() - 1;
        self.texts.swap_remove(at);
        swap_remove_row(&mut self.vectors, at, last, self.dims);
        swap_remove_row(&mut self.codes, at, last, self.words);
        if at != last {
            self.positions.insert(self.texts[at].hash.clone(), at);
        }
        true
    }

    /// The `k` skills whose triggers are most similar to `query`, best
    /// first (two stages: see the module docs).
    pub fn search(&self, query: &[f32], k: usize) -> Vec<SkillHit> {
        let Some(query) = self.query(query) else {
            return Vec::new();
        };
        let n = self.len();
        if k == 0 || n == 0 {
            return Vec::new();
        }
        if n <= self.candidates.max(k) {
            return self.rank((0..n).collect(), &query, k);
        }
        let mut code = vec![0u64; self.words];
        write_code(&query, &mut code);
        let mut distances = Vec::with_capacity(n);
        for row in self.codes.chunks_exact(self.words) {
            let d: u32 = row
                .iter()
                .zip(&code)
                .map(|(a, b)| (a ^ b).count_ones())
                .sum();
            distances.push(d as u16);
        }
        let wanted = self.candidates.max(k);
        let candidates = closest(&distances, wanted, self.dims);
        self.rank(candidates, &query, k)
    }

    /// The `k` most similar skills by exact cosine over every skill: the
    /// reference the two-stage search is measured against.
    pub fn search_exact(&self, query: &[f32], k: usize) -> Vec<SkillHit> {
        match self.query(query) {
            Some(query) => self.rank((0..self.len()).collect(), &query, k),
            None => Vec::new(),
        }
    }

    fn query(&self, query: &[f32]) -> Option<Vec<f32>> {
        if query.len() != self.dims {
            return None;
        }
        normalized(query)
    }

    fn rank(&self, rows: Vec<usize>, query: &[f32], k: usize) -> Vec<SkillHit> {
        let mut scored: Vec<(f32, usize)> = rows
            .into_iter()
            .map(|row| {
                let vector = &self.vectors[row * self.dims..(row + 1) * self.dims];
                (dot(vector, query), row)
            })
            .collect();
        let k = k.min(scored.len());
        if k == 0 {
            return Vec::new();
        }
        let by_score = |a: &(f32, usize), b: &(f32, usize)| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1));
        scored.select_nth_unstable_by(k - 1, by_score);
        scored.truncate(k);
        scored.sort_unstable_by(by_score);
        scored
            .into_iter()
            .map(|(similarity, row)| {
                let texts = &self.texts[row];
                SkillHit {
                    hash: texts.hash.clone(),
                    trigger: Arc::clone(&texts.trigger),
                    rebuttal: Arc::clone(&texts.rebuttal),
                    similarity,
                }
            })
            .collect()
    }
}

/// The rows of the `wanted` smallest distances (ties at the cut broken by
/// row order), found with a histogram: two linear passes, no sort.
fn closest(distances: &[u16], wanted: usize, max_distance: usize) -> Vec<usize> {
    let mut histogram = vec![0usize; max_distance + 1];
    for &d in distances {
        histogram[usize::from(d)] += 1;
    }
    let mut threshold = 0;
    let mut below = 0;
    for (d, &count) in histogram.iter().enumerate() {
        if below + count >= wanted {
            threshold = d;
            break;
        }
        below += count;
    }
    let threshold = threshold as u16;
    let mut at_threshold = wanted - below;
    let mut rows = Vec::with_capacity(wanted);
    for (row, &d) in distances.iter().enumerate() {
        if d < threshold {
            rows.push(row);
        } else if d == threshold && at_threshold > 0 {
            rows.push(row);
            at_threshold -= 1;
        }
    }
    rows
}

fn normalized(vector: &[f32]) -> Option<Vec<f32>> {
    let norm = dot(vector, vector).sqrt();
    (norm.is_finite() && norm > 0.0).then(|| vector.iter().map(|v| v / norm).collect())
}

fn write_code(unit: &[f32], code: &mut [u64]) {
    code.fill(0);
    for (i, &v) in unit.iter().enumerate() {
        if v > 0.0 {
            code[i / 64] |= 1 << (i % 64);
        }
    }
}

/// Dot product with eight independent sums, which the compiler keeps in
/// vector registers.
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut sums = [0f32; 8];
    let (a8, b8) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f32 = a8
        .remainder()
        .iter()
        .zip(b8.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (x, y) in a8.zip(b8) {
        for lane in 0..8 {
            sums[lane] += x[lane] * y[lane];
        }
    }
    sums.iter().sum::<f32>() + tail
}

fn swap_remove_row<T: Copy>(data: &mut Vec<T>, at: usize, last: usize, width: usize) {
    if at != last {
        data.copy_within(last * width..(last + 1) * width, at * width);
    }
    data.truncate(last * width);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn skill(name: &str, vector: Vec<f32>) -> Skill {
        Skill::new(name, format!("answer to {name}"), vector)
    }

    #[test]
    fn finds_the_nearest_and_replaces_and_removes() {
        let mut index = SkillIndex::new(2);
        index.insert(&skill("a", vec![1.0, 0.0, 0.0])).unwrap();
        index.insert(&skill("b", vec![0.0, 1.0, 0.0])).unwrap();
        index.insert(&skill("c", vec![0.7, 0.7, 0.0])).unwrap();
        index.insert(&skill("d", vec![0.0, 0.0, 1.0])).unwrap();
        let hits = index.search(&[0.9, 0.1, 0.0], 2);
        assert_eq!(&*hits[0].trigger, "a");
        assert_eq!(&*hits[1].trigger, "c");
        assert!((hits[0].similarity - 0.9938).abs() < 1e-3);

        // Same trigger: replaced, not added.
        index.insert(&skill("a", vec![0.0, -1.0, 0.0])).unwrap();
        assert_eq!(index.len(), 4);
        assert_eq!(&*index.search(&[0.9, 0.1, 0.0], 1)[0].trigger, "c");

        assert!(index.remove(&skill("c", vec![]).hash));
        assert!(!index.remove("nope"));
        assert_eq!(index.len(), 3);
        assert_eq!(&*index.search(&[0.0, 0.0, 2.0], 1)[0].trigger, "d");
        assert_eq!(
            index.insert(&skill("e", vec![1.0])),
            Err(IndexError::Dimensions {
                hash: skill("e", vec![]).hash,
                expected: 3,
                got: 1
            })
        );
        assert!(index.search(&[1.0], 1).is_empty());
    }

    #[test]
    fn closest_takes_exactly_the_smallest() {
        let distances = [5, 1, 3, 1, 9, 3, 0];
        assert_eq!(closest(&distances, 3, 9), [1, 3, 6]);
        assert_eq!(closest(&distances, 4, 9), [1, 2, 3, 6]);
        assert_eq!(closest(&distances, 7, 9).len(), 7);
    }
}
