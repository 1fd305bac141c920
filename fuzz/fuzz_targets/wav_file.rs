#![no_main]
// The body is the library's own (`voxpipe::testing::fuzz`), so
// `tests/integration/fuzz_corpus.rs` runs the same code over the seed corpus.
libfuzzer_sys::fuzz_target!(|data: &[u8]| voxpipe::testing::fuzz::wav_file(data));
