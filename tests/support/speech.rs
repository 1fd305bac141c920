//! Speech with known boundaries for the turn-end tests and the turn
//! latency bench: espeak-ng's voice trimmed by sox, pink noise from sox,
//! and the shipped agents' sections read from `pipelines/`.

use std::path::Path;
use std::process::Command;

use voxpipe::audio::wav::read_wav;

/// Runs a test tool (espeak-ng, sox), which `tests/run` installs.
pub fn run_tool(program: &str, args: &[&str]) {
    let status = Command::new(program)
        .args(args)
        .status()
        .unwrap_or_else(|e| panic!("{program} must be installed (tests/run installs it): {e}"));
    assert!(status.success(), "{program} {args:?} failed");
}

/// `text` spoken by espeak-ng at `rate` (mono), espeak's own leading and
/// trailing silence cut, so the speech starts and ends with the samples.
pub fn say(dir: &Path, name: &str, text: &str, rate: u32) -> Vec<i16> {
    let raw = dir.join(format!("{name}_raw.wav"));
    let trimmed = dir.join(format!("{name}_{rate}.wav"));
    run_tool(
        "espeak-ng",
        &[
            "-v",
            "en-us",
            "-s",
            "160",
            "-w",
            raw.to_str().unwrap(),
            text,
        ],
    );
    let rate = rate.to_string();
    run_tool(
        "sox",
        &[
            raw.to_str().unwrap(),
            "-r",
            &rate,
            "-c",
            "1",
            "-b",
            "16",
            trimmed.to_str().unwrap(),
            "silence",
            "1",
            "0.01",
            "0.5%",
            "reverse",
            "silence",
            "1",
            "0.01",
            "0.5%",
            "reverse",
        ],
    );
    read_wav(&trimmed).unwrap().to_mono()
}

/// `len` samples of sox's pink noise at `rate`, scaled to `volume` of full
/// scale.
pub fn pink_noise(dir: &Path, rate: u32, len: usize, volume: f64) -> Vec<i16> {
    let path = dir.join(format!("pink_{rate}.wav"));
    let secs = format!("{:.3}", len as f64 / f64::from(rate) + 0.1);
    run_tool(
        "sox",
        &[
            "-n",
            "-r",
            &rate.to_string(),
            "-c",
            "1",
            "-b",
            "16",
            path.to_str().unwrap(),
            "synth",
            &secs,
            "pinknoise",
            "vol",
            &volume.to_string(),
        ],
    );
    let mut noise = read_wav(&path).unwrap().to_mono();
    noise.truncate(len);
    noise
}

/// The table of the first `[[processor]]` of `kind` in the shipped
/// pipeline `pipelines/{file}`, as TOML without its `type`: what the tests
/// and the bench build, so they measure what ships.
pub fn shipped_section(file: &str, kind: &str) -> String {
    let pipelines = Path::new(env!("CARGO_MANIFEST_DIR")).join("pipelines");
    section(&pipelines.join(file), kind)
}

/// The table of the first `[[processor]]` of `kind` in the pipeline file
/// at `path`, as TOML without its `type`.
pub fn section(path: &Path, kind: &str) -> String {
    let text = std::fs::read_to_string(path).unwrap();
    let pipeline: toml::Table = toml::from_str(&text).unwrap();
    let mut section = pipeline["processor"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(toml::Value::as_table)
        .find(|p| p["type"].as_str() == Some(kind))
        .unwrap_or_else(|| panic!("{} has no {kind}", path.display()))
        .clone();
    section.remove("type");
    toml::to_string(&section).unwrap()
}
