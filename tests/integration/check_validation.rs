//! `voxpipe check` refuses what `run` and `serve` refuse, and every refusal
//! names the file, the line and the key, non-UTF-8 files included.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::{Command, Output};

fn voxpipe(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_voxpipe"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("voxpipe runs")
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> String {
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path.to_str().unwrap().to_owned()
}

/// `check`, `run` and `serve` on `file` each fail, printing `expected`
/// (the file, line, column and key).
fn all_refuse(file: &str, expected: &str) {
    let wav = concat!(env!("CARGO_MANIFEST_DIR"), "/assets/samples/hello.wav");
    let out = std::env::temp_dir().join("voxpipe-check-validation.wav");
    let runs: [Vec<&str>; 3] = [
        vec!["check", file],
        vec![
            "run",
            file,
            "--input",
            wav,
            "--output",
            out.to_str().unwrap(),
        ],
        vec!["serve", file, "--bind", "127.0.0.1:0"],
    ];
    for args in runs {
        let output = voxpipe(&args);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{} accepted {file}", args[0]);
        assert!(
            stderr.contains(expected),
            "{}: expected `{expected}` in:\n{stderr}",
            args[0]
        );
    }
}

#[test]
fn a_processor_that_cannot_be_built_is_refused_by_check_run_and_serve_alike() {
    let dir = tempfile::tempdir().unwrap();
    let gain = write(
        dir.path(),
        "gain.toml",
        b"[pipeline]\nname = \"x\"\n\n[[processor]]\ntype = \"gain\"\ngain_db = 100\n",
    );
    all_refuse(
        &gain,
        &format!("{gain}:6:11: key `processor.0.gain_db`: gain_db must be between -60 and 40"),
    );
}

#[test]
fn a_vad_pause_as_long_as_its_stop_is_refused_with_its_key() {
    let dir = tempfile::tempdir().unwrap();
    let vad = write(
        dir.path(),
        "vad.toml",
        b"[pipeline]\nname = \"x\"\n\n[[processor]]\ntype = \"vad\"\nstop_secs = 0.2\npause_secs = 0.2\n",
    );
    all_refuse(
        &vad,
        &format!(
            "{vad}:7:14: key `processor.0.pause_secs`: pause_secs must be shorter than stop_secs (0.2 s), not 0.2 s"
        ),
    );
}

#[test]
fn out_of_range_durations_are_refused_with_their_key() {
    let dir = tempfile::tempdir().unwrap();
    for (n, value) in ["-1", "0", "nan", "1e308", "inf"].iter().enumerate() {
        let file = write(
            dir.path(),
            &format!("parrot{n}.toml"),
            format!(
                "[pipeline]\nname = \"x\"\n\n[[processor]]\ntype = \"parrot\"\nmax_secs = {value}\n"
            )
            .as_bytes(),
        );
        all_refuse(&file, &format!("{file}:6:12: key `processor.0.max_secs`"));
    }
}

#[test]
fn a_file_that_is_not_utf8_is_refused_at_its_line_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(
        dir.path(),
        "latin1.toml",
        b"[pipeline]\nname = \"caf\xe9\"\n\n[[processor]]\ntype = \"parrot\"\n",
    );
    all_refuse(
        &file,
        &format!("{file}:2:12: key `pipeline.name`: the file is not valid UTF-8"),
    );
}

#[test]
fn every_shipped_pipeline_still_checks() {
    let mut files: Vec<String> =
        std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/pipelines"))
            .unwrap()
            .map(|entry| entry.unwrap().path())
            .filter(|path| path.extension().is_some_and(|e| e == "toml"))
            .map(|path| path.to_str().unwrap().to_owned())
            .collect();
    files.sort();
    let mut args = vec!["check"];
    args.extend(files.iter().map(String::as_str));
    let output = voxpipe(&args);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// What the start checks across sections (the dialler's, the agent's,
/// WebRTC's), each blamed on its key by `check`, `run` and `serve` alike.
#[test]
fn what_the_start_would_refuse_across_sections_is_refused_at_load_with_its_key() {
    let dir = tempfile::tempdir().unwrap();
    let head = "[pipeline]\nname = \"x\"\n\n";
    let cases = [
        (
            "outbound.toml",
            format!("{head}[outbound]\nfrom = \"+15557654321\"\n"),
            "4:2: key `outbound`: [outbound] needs `[server] public_host`",
        ),
        (
            "turn.toml",
            format!(
                "{head}[transport.webrtc]\nice_servers = [{{ urls = [\"turn:t.example.com\"] }}]\n"
            ),
            "5:1: key `transport.webrtc.ice_servers`: entry 0: a TURN server needs `username`",
        ),
        (
            "optimiser.toml",
            format!("{head}[optimiser]\nenabled = true\n"),
            "5:1: key `optimiser.enabled`: [optimiser] needs an enabled [evaluator]",
        ),
        (
            "prefix.toml",
            format!("{head}[context]\ncluster = true\nprefix = \"acme{{\"\n"),
            "6:1: key `context.prefix`: \"acme{\" has a brace without its pair",
        ),
        (
            "tactics.toml",
            format!("{head}[context]\ntactic_min_calls = 17\n"),
            "5:1: key `context.tactic_min_calls`: 17 can never be reached",
        ),
        (
            "webhook.toml",
            format!("{head}[webhook]\nurl = \"hooks.example.com/calls\"\n"),
            "5:7: key `webhook.url`: expected an http:// or https:// URL",
        ),
        (
            "backoff.toml",
            format!(
                "{head}[webhook]\nurl = \"https://h.example.com/x\"\ninitial_backoff_secs = 0\n"
            ),
            "6:24: key `webhook.initial_backoff_secs`: expected seconds from 0.1",
        ),
        (
            "path.toml",
            format!("{head}[context]\npath = \"\"\n"),
            "5:1: key `context.path`: expected a file for the embedded store",
        ),
        (
            "endpoint.toml",
            format!(
                "{head}[storage]\nurl = \"s3://calls\"\nendpoint = \"http://127.0.0.1:9000\"\npath_style = false\n"
            ),
            "6:1: key `storage.endpoint`: `storage.endpoint` http://127.0.0.1:9000 cannot take virtual-hosted-style requests",
        ),
        (
            "retries.toml",
            format!("{head}[evaluator]\n[evaluator.connection]\nmax_retries = 11\n"),
            "5:12: key `evaluator.connection`: connection.max_retries must be at most 10, not 11",
        ),
    ];
    for (name, toml, expected) in cases {
        let file = write(dir.path(), name, toml.as_bytes());
        all_refuse(&file, &format!("{file}:{expected}"));
    }
}

/// A processor an override makes unbuildable is blamed on the override,
/// not on the file's line that the override replaced.
#[test]
fn a_processor_an_override_breaks_is_blamed_on_the_override() {
    let dir = tempfile::tempdir().unwrap();
    let gain = write(
        dir.path(),
        "gain.toml",
        b"[pipeline]\nname = \"x\"\n\n[[processor]]\ntype = \"gain\"\ngain_db = 3.0\n",
    );
    let output = voxpipe(&["check", &gain, "--set", "processor.0.gain_db=100"]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(
        stderr.contains(
            "--set processor.0.gain_db=100: key `processor.0.gain_db`: gain_db must be between -60 and 40"
        ),
        "{stderr}"
    );
    assert!(!stderr.contains(&format!("{gain}:6")), "{stderr}");
}

/// An override may supply what the file lacks: `check` judges the file as
/// it will run.
#[test]
fn an_override_may_mend_what_the_file_lacks() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(
        dir.path(),
        "outbound.toml",
        b"[pipeline]\nname = \"x\"\n\n[transport.twilio]\naccount_sid_env = \"SID\"\nauth_token_env = \"TOKEN\"\n\n[outbound]\nfrom = \"+15557654321\"\n",
    );
    let refused = voxpipe(&["check", &file]);
    assert!(!refused.status.success());
    let mended = voxpipe(&[
        "check",
        &file,
        "--set",
        "server.public_host=voice.example.com",
    ]);
    assert!(
        mended.status.success(),
        "{}",
        String::from_utf8_lossy(&mended.stderr)
    );
}
