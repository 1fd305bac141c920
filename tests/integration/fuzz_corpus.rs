//! The fuzz targets (`fuzz/`, bodies in `voxpipe::testing::fuzz`) over their
//! committed seed corpus, then over a bounded number of mutations of it:
//! a regression run of every parser that reads the network or a file, in
//! every `cargo test`. CI also runs the libFuzzer builds for a few seconds
//! each; `cargo fuzz run TARGET` runs one for as long as you like (README,
//! "Fuzzing").

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};

use voxpipe::testing::fuzz::TARGETS;

/// Mutations tried per seed: enough to reach past the well-formed shapes
/// (truncations, flipped bytes, spliced fields) in a second or two.
const MUTATIONS_PER_SEED: u32 = 300;

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz")
}

fn seeds(target: &str) -> Vec<(String, Vec<u8>)> {
    let dir = fuzz_dir().join("corpus").join(target);
    let mut seeds: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| {
            let path = entry
                .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
                .path();
            let name = path
                .file_name()
                .unwrap_or_default()
                .to_string_lossy()
                .into_owned();
            let data = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            (name, data)
        })
        .collect();
    seeds.sort();
    seeds
}

/// A small deterministic generator (xorshift64*): the same mutations on
/// every run, so a failure reproduces.
struct Mutator(u64);

impl Mutator {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }

    /// One to four edits of `seed`, each a libFuzzer-style mutation.
    fn mutate(&mut self, seed: &[u8], other: &[u8]) -> Vec<u8> {
        const INTERESTING: &[&[u8]] = &[
            b"\0",
            b"\xff",
            b"\"",
            b"\\",
            b"\n",
            b"\x1b",
            b"-1",
            b"1e308",
            b"NaN",
            b"[]",
            b"{}",
            b"null",
            b"\xc3\x28",
            b"\r\n",
            b"4294967296",
        ];
        let mut data = seed.to_vec();
        for _ in 0..=self.below(4) {
            let at = self.below(data.len() + 1);
            match self.below(6) {
                0 => data.truncate(at),
                1 if at < data.len() => data[at] ^= 1 << self.below(8),
                2 if at < data.len() => data[at] = self.next() as u8,
                3 => {
                    let token = INTERESTING[self.below(INTERESTING.len())];
                    data.splice(at..at, token.iter().copied());
                }
                4 if !other.is_empty() => {
                    let from = self.below(other.len());
                    let to = from + self.below(other.len() - from + 1);
                    data.splice(at..at, other[from..to].iter().copied());
                }
                _ if at < data.len() => {
                    let end = at + self.below(data.len() - at + 1);
                    data.drain(at..end);
                }
                _ => {}
            }
        }
        data
    }
}

fn run_one(target: &str, run: fn(&[u8]), input: &[u8], what: &str) {
    if catch_unwind(AssertUnwindSafe(|| run(input))).is_err() {
        panic!(
            "fuzz target {target} panicked on {what}; input (hex): {}",
            input.iter().map(|b| format!("{b:02x}")).collect::<String>()
        );
    }
}

#[test]
fn every_target_has_a_cargo_fuzz_binary_and_seeds() {
    let manifest = std::fs::read_to_string(fuzz_dir().join("Cargo.toml")).unwrap();
    for (name, _) in TARGETS {
        let source = fuzz_dir().join("fuzz_targets").join(format!("{name}.rs"));
        let text = std::fs::read_to_string(&source)
            .unwrap_or_else(|e| panic!("{}: {e}", source.display()));
        assert!(
            text.contains(&format!("voxpipe::testing::fuzz::{name}(")),
            "{name}"
        );
        assert!(
            manifest.contains(&format!("name = \"{name}\"")),
            "{name} not in fuzz/Cargo.toml"
        );
        assert!(!seeds(name).is_empty(), "{name} has no seeds");
    }
}

#[test]
fn every_target_survives_its_seeds_and_their_mutations() {
    for &(name, run) in TARGETS {
        let seeds = seeds(name);
        let mut mutator = Mutator(0x9E37_79B9_7F4A_7C15 ^ name.len() as u64);
        for (index, (seed_name, seed)) in seeds.iter().enumerate() {
            run_one(name, run, seed, &format!("seed {seed_name}"));
            let other = &seeds[(index + 1) % seeds.len()].1;
            for round in 0..MUTATIONS_PER_SEED {
                let input = mutator.mutate(seed, other);
                run_one(
                    name,
                    run,
                    &input,
                    &format!("mutation {round} of {seed_name}"),
                );
            }
        }
    }
}

#[test]
fn the_mutator_changes_its_input() {
    let mut mutator = Mutator(1);
    let seed = b"{\"event\":\"media\"}";
    let changed = (0..100)
        .filter(|_| mutator.mutate(seed, b"x") != seed)
        .count();
    assert!(
        changed > 90,
        "only {changed} of 100 mutations changed the seed"
    );
}
