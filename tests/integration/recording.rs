//! Call recording (`[recording]`): a stereo WAV per call, the caller on the
//! left, the bot as the caller heard it on the right; its outcome in the
//! call record of both store backends; a full disk or an unwritable
//! directory fails the recording and never the call.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::support;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use voxpipe::agent::{AgentRuntime, ContextSection, RuntimeParts};
use voxpipe::audio::read_wav;
use voxpipe::frame::{AudioFrame, FrameBody};
use voxpipe::pipeline_file::parse_pipeline;
use voxpipe::session::SessionReport;
use voxpipe::store::{CallRecording, MemoryStore, RecordingStatus, RedisStore, Store};

use support::processors::registry;
use support::redis_server::RedisServer;
use support::session::run_kept;
use support::signal::{sine, tone_amplitude};

const RATE: u32 = 16_000;

/// A parrot behind a loudness VAD that lets the caller barge in.
fn parrot_toml(recording: &str) -> String {
    format!(
        r#"
[pipeline]
name = "recorded-parrot"
sample_rate = 16000

{recording}

[[processor]]
type = "test_turns"

[[processor]]
type = "parrot"
"#
    )
}

fn recording_on(dir: &Path) -> String {
    format!(
        "[recording]\nenabled = true\ndir = {:?}\n",
        dir.display().to_string()
    )
}

fn ms(n: u64) -> usize {
    n as usize * RATE as usize / 1000
}

/// The caller: 2 s at 440 Hz, then, while the bot repeats it, 0.6 s at
/// 880 Hz over it (the barge-in), then quiet while the bot repeats that.
fn caller_audio() -> Vec<i16> {
    [
        vec![0; ms(500)],
        sine(440.0, RATE, ms(2_000), 8_000.0),
        vec![0; ms(1_500)],
        sine(880.0, RATE, ms(600), 8_000.0),
        vec![0; ms(2_400)],
    ]
    .concat()
}

/// What one file session produced.
struct Recorded {
    report: SessionReport,
    /// Bot audio as it left the output, with its session times.
    released: Vec<AudioFrame>,
    /// `played` of the interruption, if any.
    played: Option<Duration>,
}

/// Runs `toml` over `input` on the audio clock, read in real time, with
/// the call kept in `store` (through the session's call writer) when given.
async fn run_file(
    toml: &str,
    input: Vec<i16>,
    session_id: &str,
    store: Option<Arc<dyn Store>>,
) -> Recorded {
    let runtime = store.map(|store| {
        AgentRuntime::from_parts(RuntimeParts {
            store,
            section: ContextSection::default(),
            evaluator: None,
            webhook: None,
            skills: None,
            post_call: Vec::new(),
            objects: None,
            phone_hasher: None,
            learning: None,
        })
    });
    // Read in real time: the barge-in must find the bot speaking, and the
    // parrot's reply comes from a child task a fast read can outrun.
    let run = run_kept(
        toml,
        input,
        &[],
        Vec::new(),
        session_id,
        runtime.as_ref(),
        true,
    )
    .await;
    let played = run
        .pushes
        .iter()
        .find_map(|(_, _, frame)| match &frame.body {
            FrameBody::BotInterrupted { played, .. } => Some(*played),
            _ => None,
        });
    Recorded {
        report: run.report,
        released: run.audio,
        played,
    }
}

fn index(t: Duration) -> usize {
    ((t.as_micros() as u64 * u64::from(RATE) + 500_000) / 1_000_000) as usize
}

/// The recording's two channels.
fn channels(path: &Path) -> (Vec<i16>, Vec<i16>) {
    let wav = read_wav(path).unwrap();
    assert_eq!(wav.channels, 2, "stereo");
    assert_eq!(wav.sample_rate, RATE, "at the pipeline's rate");
    let left = wav.samples.iter().step_by(2).copied().collect();
    let right = wav.samples.iter().skip(1).step_by(2).copied().collect();
    (left, right)
}

fn files_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

/// Checks a barge-in session's recording against what entered and what
/// left: left = the caller's audio sample for sample; right = each bot frame
/// at its session time, silent from the cut until the next reply.
fn check_barge_in_recording(run: &Recorded, path: &Path, input: &[i16]) {
    let (left, right) = channels(path);
    assert_eq!(left.len(), right.len());
    assert!(left.len() >= input.len());
    assert_eq!(&left[..input.len()], input, "left: the caller's audio");
    assert!(left[input.len()..].iter().all(|&s| s == 0));

    let played = run.played.expect("the caller barged in");
    let first = run.released.first().expect("the bot spoke").pts;
    let cut = first + played;
    // The reply to the barge-in starts after a gap: the first utterance's
    // frames leave back to back.
    let next_reply = run
        .released
        .windows(2)
        .find(|pair| pair[1].pts > pair[0].pts + pair[0].duration())
        .map(|pair| pair[1].pts)
        .expect("the bot answered the barge-in");
    assert!(next_reply >= cut);
    assert!(
        played > Duration::from_millis(300) && played < Duration::from_millis(1_500),
        "the 2 s reply was cut after {played:?}"
    );
    // The right channel, rebuilt from the frames that left, cut at the
    // barge-in.
    let mut expected = vec![0_i16; right.len()];
    for audio in &run.released {
        let start = index(audio.pts);
        for (i, s) in audio.samples().into_iter().enumerate() {
            let at = start + i;
            if at < expected.len() && !(index(cut)..index(next_reply)).contains(&at) {
                expected[at] = s;
            }
        }
    }
    let differ = right.iter().zip(&expected).position(|(a, b)| a != b);
    assert!(
        differ.is_none(),
        "right: the bot's audio at its session time, cut at the barge-in; \
         first difference at sample {differ:?} (bot from {first:?}, cut at {cut:?}, \
         next reply at {next_reply:?}, frames {:?})",
        run.released
            .iter()
            .map(|a| (a.pts, a.duration()))
            .take(8)
            .collect::<Vec<_>>()
    );
    let heard = &right[index(first)..index(cut)];
    assert!(tone_amplitude(heard, 440.0, RATE) > 5_000.0);
    assert!(
        right[index(cut)..index(next_reply)].iter().all(|&s| s == 0),
        "no bot audio between the cut and the next reply"
    );
    let answer = &right[index(next_reply)..index(next_reply) + ms(500)];
    assert!(
        tone_amplitude(answer, 880.0, RATE) > 5_000.0,
        "then the reply to the barge-in"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_session_with_a_barge_in_is_recorded_as_heard_in_both_stores() {
    let redis = RedisServer::start();
    let backends: Vec<(&str, Arc<dyn Store>)> = vec![
        ("memory", Arc::new(MemoryStore::new(Default::default()))),
        (
            "redis",
            Arc::new(RedisStore::connect(&redis.url(), "REDIS_URL", Default::default()).unwrap()),
        ),
    ];
    for (backend, store) in backends {
        let dir = tempfile::tempdir().unwrap();
        let input = caller_audio();
        let call_id = format!("rec-{backend}");
        let toml = parrot_toml(&recording_on(dir.path()));
        let run = run_file(&toml, input.clone(), &call_id, Some(Arc::clone(&store))).await;
        assert_eq!(run.report.end_reason, "end_of_input");
        assert!(run.report.fatal_error.is_none());

        let path = dir.path().join(format!("{call_id}.wav"));
        assert_eq!(files_in(dir.path()), [format!("{call_id}.wav")]);
        check_barge_in_recording(&run, &path, &input);

        let recording = run.report.recording.clone().unwrap();
        assert_eq!(recording.status, RecordingStatus::Recorded);
        assert_eq!(recording.file.as_deref(), Some(path.to_str().unwrap()));
        assert_eq!(recording.sample_rate, RATE);
        assert!(!recording.degraded, "{recording:?}");
        let (left, _) = channels(&path);
        assert_eq!(
            recording.duration_ms,
            left.len() as u64 * 1000 / u64::from(RATE)
        );
        let call = store.call(&call_id).await.unwrap().unwrap();
        assert_eq!(call.recording.as_ref(), Some(&recording), "{backend}");
        let json = serde_json::to_value(&call).unwrap();
        assert_eq!(json["recording"]["status"], "recorded", "{backend}");
        assert_eq!(json["status"], "completed");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recording_is_off_by_default() {
    let run = run_file(&parrot_toml(""), caller_audio(), "not-recorded", None).await;
    assert!(run.report.recording.is_none());
    assert_eq!(run.report.end_reason, "end_of_input", "the session ran");
    assert!(!run.released.is_empty(), "and the bot spoke");
}

/// A file system too small for the recording: a 64 KiB tmpfs when this
/// process may mount one (root), else `/dev/full` standing in for the
/// partial file (every write to it fails with ENOSPC).
struct FullDisk {
    dir: tempfile::TempDir,
    mounted: bool,
}

impl FullDisk {
    fn new(call_id: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mounted = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=64k", "tmpfs"])
            .arg(dir.path())
            .output()
            .is_ok_and(|out| out.status.success());
        if !mounted {
            eprintln!("cannot mount a tmpfs (not root?): /dev/full stands in for a full disk");
            std::os::unix::fs::symlink("/dev/full", dir.path().join(format!("{call_id}.wav.part")))
                .unwrap();
        }
        FullDisk { dir, mounted }
    }
}

impl Drop for FullDisk {
    fn drop(&mut self) {
        if self.mounted {
            let _ = std::process::Command::new("umount")
                .arg(self.dir.path())
                .status();
        }
    }
}

fn assert_failed_and_the_call_went_on(run: &Recorded, reason: &str) -> CallRecording {
    assert_eq!(run.report.end_reason, "end_of_input", "the call went on");
    assert!(run.report.fatal_error.is_none());
    assert!(!run.released.is_empty(), "the bot spoke as usual");
    let recording = run.report.recording.clone().unwrap();
    assert_eq!(recording.status, RecordingStatus::Failed);
    let why = recording.reason.clone().unwrap();
    assert!(why.contains(reason), "{why}");
    assert!(recording.file.is_none());
    recording
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_fails_the_recording_not_the_call() {
    let disk = FullDisk::new("full-disk");
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new(Default::default()));
    let toml = parrot_toml(&recording_on(disk.dir.path()));
    // 7 s of stereo 16 kHz is 448 KB: far over 64 KiB.
    let run = run_file(&toml, caller_audio(), "full-disk", Some(Arc::clone(&store))).await;
    let recording = assert_failed_and_the_call_went_on(&run, "No space left on device");
    assert_eq!(
        files_in(disk.dir.path()),
        Vec::<String>::new(),
        "the partial file is removed, nothing looks finished (tmpfs: {})",
        disk.mounted
    );
    let call = store.call("full-disk").await.unwrap().unwrap();
    assert_eq!(call.recording, Some(recording));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unwritable_directory_fails_the_recording_not_the_call() {
    let dir = tempfile::tempdir().unwrap();
    // Root writes anywhere: a file where the directory should be is what
    // stops it.
    let not_a_dir = dir.path().join("recordings");
    std::fs::write(&not_a_dir, b"in the way").unwrap();
    let toml = parrot_toml(&recording_on(&not_a_dir));
    let run = run_file(&toml, caller_audio(), "no-dir", None).await;
    assert_failed_and_the_call_went_on(&run, "recordings");
    assert_eq!(files_in(dir.path()), ["recordings"]);
}

#[test]
fn recording_keys_are_checked_like_the_rest() {
    let toml = parrot_toml("[recording]\nenabled = true\ndirectory = \"x\"\n");
    let err = parse_pipeline(Path::new("test.toml"), &toml, &registry())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("test.toml:8:1: key `recording.directory`: unknown key `directory`"),
        "{err}"
    );
    let toml = parrot_toml("[recording]\nenabled = \"yes\"\n");
    let err = parse_pipeline(Path::new("test.toml"), &toml, &registry())
        .unwrap_err()
        .to_string();
    assert!(err.contains("key `recording.enabled`"), "{err}");
}

/// `voxpipe run` in a fresh working directory, with `extra` arguments.
fn voxpipe_run(cwd: &Path, input: &Path, extra: &[&str]) -> std::process::Output {
    let pipeline = concat!(env!("CARGO_MANIFEST_DIR"), "/pipelines/parrot.toml");
    std::process::Command::new(env!("CARGO_BIN_EXE_voxpipe"))
        .args(["run", pipeline, "--input"])
        .arg(input)
        .args(extra)
        .current_dir(cwd)
        .output()
        .expect("voxpipe runs")
}

#[test]
fn voxpipe_run_records_into_the_spool_directory_only_when_asked() {
    let cwd = tempfile::tempdir().unwrap();
    // 1.5 s of silence, then speech the VAD hears and parrot repeats.
    let input = Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/samples/hello.wav");

    let off = voxpipe_run(cwd.path(), &input, &["--session-id", "cli-off"]);
    assert!(
        off.status.success(),
        "{}",
        String::from_utf8_lossy(&off.stderr)
    );
    assert!(
        !cwd.path().join("voxpipe-data/recordings").exists(),
        "off by default: nothing written"
    );

    let on = voxpipe_run(
        cwd.path(),
        &input,
        &["--session-id", "cli-on", "--set", "recording.enabled=true"],
    );
    assert!(
        on.status.success(),
        "{}",
        String::from_utf8_lossy(&on.stderr)
    );
    let spool = cwd.path().join("voxpipe-data/recordings");
    assert_eq!(files_in(&spool), ["cli-on.wav"]);
    let (left, right) = channels(&spool.join("cli-on.wav"));
    let said = read_wav(&input).unwrap().to_mono();
    assert_eq!(&left[..said.len()], &said[..], "left: the caller");
    let loud_ms = right
        .chunks(ms(20))
        .filter(|frame| support::signal::rms(frame) > 300.0)
        .count()
        * 20;
    assert!(loud_ms > 1_000, "right: the bot repeating ({loud_ms} ms)");
    assert!(
        right[..ms(1_500)].iter().all(|&s| s == 0),
        "the bot is silent before anyone spoke"
    );
}

/// The best normalized correlation of `a` with `b` shifted by up to
/// `max_lag` samples either way around `around`.
fn best_correlation(a: &[i16], b: &[i16], around: isize, max_lag: isize) -> f64 {
    let mut best = 0.0_f64;
    for lag in around - max_lag..=around + max_lag {
        let (mut dot, mut aa, mut bb) = (0.0, 0.0, 0.0);
        for (i, &x) in a.iter().enumerate() {
            let j = i as isize + lag;
            if j < 0 || j as usize >= b.len() {
                continue;
            }
            let (x, y) = (f64::from(x), f64::from(b[j as usize]));
            dot += x * y;
            aa += x * x;
            bb += y * y;
        }
        if aa > 0.0 && bb > 0.0 {
            best = best.max(dot / (aa * bb).sqrt());
        }
    }
    best
}

/// 20 ms loudness of `x` at `rate`.
fn envelope(x: &[i16], rate: u32) -> Vec<f64> {
    x.chunks(rate as usize / 50)
        .map(support::signal::rms)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_twilio_call_with_a_barge_in_is_recorded_as_the_caller_heard_it() {
    use support::fake::twilio_media::{CallConfig, FakeCall};
    use support::mulaw::{decode, loud_frames, silence, speech, tone};
    use support::server::{Setup, TestServer};

    const WAIT: Duration = Duration::from_secs(30);
    let dir = tempfile::tempdir().unwrap();
    let runtime = Arc::new(AgentRuntime::from_parts(RuntimeParts {
        store: Arc::new(MemoryStore::new(Default::default())),
        section: ContextSection::default(),
        evaluator: None,
        webhook: None,
        skills: None,
        post_call: Vec::new(),
        objects: None,
        phone_hasher: None,
        learning: None,
    }));
    let toml = parrot_toml(&recording_on(dir.path()));
    let server = TestServer::start(Setup {
        toml: Some(&toml),
        path: "test.toml",
        context: Some(Arc::clone(&runtime)),
        ..Setup::default()
    })
    .await;
    let call = FakeCall::connect(server.addr, CallConfig::new(7)).await;
    let heard_ms =
        |r: &support::fake::twilio_media::Record| loud_frames(&decode(&r.heard), 1_000.0) * 20;

    let words = speech(1_400, 3_400);
    call.say([words.clone(), silence(500)].concat());
    // The caller talks over the reply once it has heard 300 ms of it.
    call.wait_until(WAIT, |r| heard_ms(r) >= 300).await;
    call.say([tone(880.0, 600, 8_000.0), silence(600)].concat());
    let at_clear = call.wait_until(WAIT, |r| r.clears >= 1).await;
    call.wait_until(WAIT, |r| !r.marks_echoed.is_empty()).await;
    call.stop();
    let ended = server.sessions.ended(1, WAIT).await;
    assert_eq!(runtime.drain_writers(WAIT).await, 0);
    let call_id = &ended[0].session_id;

    let path = dir.path().join(format!("{call_id}.wav"));
    assert_eq!(files_in(dir.path()), [format!("{call_id}.wav")]);
    let (left, right) = channels(&path);

    // Left: the caller's words, where they entered.
    let said = decode(&words);
    let left_8k = voxpipe::audio::resample_all(&left, RATE, 8_000).unwrap();
    let (said_env, left_env) = (envelope(&said, 8_000), envelope(&left_8k, 8_000));
    // Piece by piece (200 ms): where a loaded machine made the fake caller
    // fall behind, the recording follows it with a gap, which one lag for
    // the whole would not fit. Each piece is found by its loudness
    // envelope, then matched sample by sample.
    let find = |piece_env: &[f64]| -> usize {
        (0..=left_env.len().saturating_sub(piece_env.len()))
            .max_by(|&a, &b| {
                // Normalized: the louder barge-in tone must not win.
                let score = |lag: usize| -> f64 {
                    let window = &left_env[lag..lag + piece_env.len()];
                    let dot: f64 = piece_env.iter().zip(window).map(|(x, y)| x * y).sum();
                    let norm: f64 = window.iter().map(|y| y * y).sum::<f64>().sqrt();
                    dot / norm.max(1e-9)
                };
                score(a).total_cmp(&score(b))
            })
            .unwrap_or(0)
    };
    let mut pieces: Vec<f64> = said
        .chunks(1_600)
        .zip(said_env.chunks(10))
        .filter(|(piece, _)| support::signal::rms(piece) > 500.0)
        .map(|(piece, piece_env)| {
            let around = (find(piece_env) * 160) as isize;
            best_correlation(piece, &left_8k, around, 200)
        })
        .collect();
    pieces.sort_by(f64::total_cmp);
    let median = pieces[pieces.len() / 2];
    assert!(
        median > 0.9,
        "left: the caller's audio (correlations {pieces:.2?})"
    );

    // Right: the reply (the words again) from when it left, cut shortly
    // after the caller barged in, then silent until the reply to the
    // barge-in (880 Hz).
    let first_reply_start = right.iter().position(|&s| s != 0).unwrap();
    let cut = index(*ended[0].bot_cut_at.first().expect("the bot was cut"));
    assert!(
        right[cut - ms(300)..cut].iter().any(|&s| s != 0),
        "the bot spoke up to the cut"
    );
    let next_reply = cut
        + right[cut..]
            .iter()
            .position(|&s| s != 0)
            .expect("the reply to the barge-in is recorded");
    assert!(
        tone_amplitude(&right[next_reply..next_reply + ms(200)], 880.0, RATE) > 3_000.0,
        "the first bot audio after the cut is the reply to the barge-in"
    );
    let barge_in = left
        .chunks(ms(20))
        .position(|f| tone_amplitude(f, 880.0, RATE) > 3_000.0)
        .unwrap()
        * ms(20);
    let to_ms = |samples: usize| samples as i64 * 1000 / i64::from(RATE);
    assert!(
        to_ms(next_reply - cut) >= 500,
        "silence from the cut until the caller has finished and been answered"
    );
    let after = to_ms(cut) - to_ms(barge_in);
    assert!(
        (-200..=500).contains(&after),
        "both channels on one timeline: the cut is {after} ms after the caller's barge-in starts"
    );
    // As long as the caller heard it before the `clear`.
    let recorded_ms = to_ms(cut - first_reply_start);
    let heard_total_ms = (at_clear.heard.len() / 8) as i64;
    assert!(
        (recorded_ms - heard_total_ms).abs() <= 200,
        "recorded {recorded_ms} ms of the first reply, the caller heard {heard_total_ms} ms"
    );

    let stored = runtime.store().call(call_id).await.unwrap().unwrap();
    let recording = stored.recording.unwrap();
    assert_eq!(recording.status, RecordingStatus::Recorded);
    assert_eq!(recording.file.as_deref(), Some(path.to_str().unwrap()));
    assert_eq!(recording.duration_ms as i64, to_ms(left.len()));
}
