//! The `voxpipe` command line, as a user runs it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn voxpipe(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_voxpipe"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("voxpipe runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A mono 16-bit WAV of a 440 Hz tone at `rate`, `secs` long.
fn tone_wav(dir: &Path, name: &str, rate: u32, secs: f64) -> PathBuf {
    let path = dir.join(name);
    support::signal::tone_wav(&path, rate, secs);
    path
}

#[test]
fn check_accepts_every_shipped_pipeline() {
    let pipelines: Vec<String> =
        std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/pipelines"))
            .unwrap()
            .map(|e| e.unwrap().path().display().to_string())
            .filter(|p| p.ends_with(".toml"))
            .collect();
    let mut args = vec!["check"];
    args.extend(pipelines.iter().map(String::as_str));
    let out = voxpipe(&args);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout).lines().count(), pipelines.len());
}

#[test]
fn check_fails_with_file_line_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.toml");
    std::fs::write(
        &bad,
        "[pipeline]\nname = \"x\"\n\n[[processor]]\ntype = \"parrot\"\nmax_sec = 3\n",
    )
    .unwrap();
    let good = concat!(env!("CARGO_MANIFEST_DIR"), "/pipelines/parrot.toml");
    let out = voxpipe(&["check", good, bad.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains(&format!(
            "{}:6:1: key `processor.0.max_sec`: unknown key `max_sec`",
            bad.display()
        )),
        "{stderr}"
    );
}

#[test]
fn run_writes_a_wav_aligned_with_the_input_and_json_events() {
    let dir = tempfile::tempdir().unwrap();
    let input = tone_wav(dir.path(), "in.wav", 22_050, 1.0);
    let output = dir.path().join("out.wav");
    // Parrot without a VAD: the whole input is one utterance.
    let pipeline = dir.path().join("parrot_only.toml");
    std::fs::write(
        &pipeline,
        "[pipeline]\nname = \"p\"\n\n[[processor]]\ntype = \"parrot\"\n",
    )
    .unwrap();
    let out = voxpipe(&[
        "run",
        pipeline.to_str().unwrap(),
        "--input",
        input.to_str().unwrap(),
        "--output",
        output.to_str().unwrap(),
        "--events",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));

    let reader = hound::WavReader::open(&output).unwrap();
    assert_eq!(reader.spec().sample_rate, 16_000);
    assert_eq!(reader.spec().channels, 1);
    let samples: Vec<i16> = reader.into_samples().map(Result::unwrap).collect();
    // With no VAD, parrot repeats the whole input after it: 1 s of silence,
    // then 1 s of tone.
    assert_eq!(samples.len(), 32_000);
    assert!(samples[..16_000].iter().all(|s| *s == 0));
    let echo_peak = samples[16_000..]
        .iter()
        .map(|s| s.unsigned_abs())
        .max()
        .unwrap();
    assert!(
        (7_000..=9_000).contains(&echo_peak),
        "echo peak {echo_peak}"
    );

    let stdout = text(&out.stdout);
    let events: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).expect("every stdout line is JSON"))
        .collect();
    let names: Vec<&str> = events
        .iter()
        .map(|e| e["event"].as_str().unwrap())
        .collect();
    assert_eq!(names.first(), Some(&"session_started"));
    assert_eq!(names.last(), Some(&"session_ended"));
    for expected in ["bot_started_speaking", "bot_stopped_speaking", "metrics"] {
        assert!(names.contains(&expected), "{names:?}");
    }
    let at = |name: &str| {
        events.iter().find(|e| e["event"] == name).unwrap()["t_ms"]
            .as_u64()
            .unwrap()
    };
    assert_eq!(at("bot_started_speaking"), 1_000);
    assert_eq!(at("bot_stopped_speaking"), 2_000);
    assert!(
        events
            .iter()
            .any(|e| e["event"] == "metrics" && e["metric"] == "transit")
    );
    // Logs never reach stdout.
    assert!(!stdout.contains("INFO"));
}

#[test]
fn run_rejects_an_override_of_an_unknown_path() {
    let dir = tempfile::tempdir().unwrap();
    let input = tone_wav(dir.path(), "in.wav", 16_000, 0.1);
    let out = voxpipe(&[
        "run",
        "pipelines/parrot.toml",
        "--input",
        input.to_str().unwrap(),
        "--set",
        "processor.0.volume=3",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr)
            .contains("--set processor.0.volume=3: key `processor.0.volume`: unknown key"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn run_rejects_bad_wav_input_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let not_wav = dir.path().join("notes.wav");
    std::fs::write(&not_wav, "these are not samples").unwrap();
    let out = voxpipe(&[
        "run",
        "pipelines/parrot.toml",
        "--input",
        not_wav.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = text(&out.stderr);
    assert!(stderr.contains("notes.wav"), "{stderr}");
}
