//! Load generator: N concurrent fake Twilio calls against `voxpipe serve`
//! (this crate's binary, built with the bench profile), over loopback.
//!
//! Run with: `cargo bench --bench twilio_load -- --calls 100,250,500 --secs 6`
//! (`--runs 3` repeats each step; `--busy 1` keeps one core busy with
//! another process throughout, a spinning `sh`; `--server PATH` measures
//! another build of `voxpipe`, for a before and after; `--external CMD`
//! another server altogether, e.g. Pipecat's, see below).
//!
//! Each call connects, sends `connected` and `start`, then 160-byte mu-law
//! `media` every 20 ms (speech from `assets/samples/hello.wav`, or the WAV
//! file `--audio` names, looped) for twice
//! `--secs`; then `stop`, keeping the socket open until the server closes
//! it. Calls start spread over `--secs`, so all N are connected together
//! from `--secs` to twice `--secs` (the bench warns if a call was not
//! connected all through the window where it measures that).
//!
//! With `pipelines/parrot.toml` (the Silero VAD, then the parrot), the
//! server repeats each utterance once the caller stops, resampled and
//! mu-law encoded, paced in real time; the caller's next utterance often
//! interrupts the reply (barge-in), as a real caller would.
//!
//! Measured:
//! - **lateness** of every outbound `media` message: within one utterance
//!   (up to the server's `mark`, or its `clear` when the caller barged in),
//!   a message is due when the audio before it
//!   has played, counted from the utterance's first message (its payload
//!   length says how much audio it holds: 20 ms in voxpipe's, 40 ms in
//!   Pipecat's); a message arriving more than 20 ms after its due time
//!   would have left a gap in the caller's playback. "On time" means none
//!   did. A server that sends no `mark` (Pipecat) needs
//!   `--utterance-gap-ms`: a pause that long between messages starts a new
//!   utterance (so lateness beyond it cannot be seen).
//! - the client's own lateness in sending (if the client falls behind, the
//!   numbers say more about the client than the server);
//! - the server's RSS (idle, peak) and CPU, from `/proc`: the share of a
//!   core it used while every call was connected (and that per call,
//!   `win_ms/cs`: milliseconds per call-second without the ramps), and
//!   its CPU time per call-second over the whole step (work done, whatever the machine's
//!   other load), a call-second being a second some call's stream was
//!   open (each call's own time from its `start` to the socket's close,
//!   measured); the client's CPU the same two ways, since on one machine
//!   the two share the cores;
//! - the machine's load average (1 min) when the step starts and ends,
//!   and the share of calls that had any frame over 20 ms late;
//! - the machine's own stalls, to tell a late server from a stalled
//!   machine, both over the whole step (from the server's start to the
//!   last call's end, so idle seconds dilute `steal%`): a probe thread in
//!   the client that sleeps 1 ms at a time reports its worst oversleep
//!   (`probe_max`; with cores to spare it is well under a millisecond, so
//!   hundreds of milliseconds mean every process stood still), and the
//!   share of CPU time the hypervisor took from the machine's cores
//!   (`steal%`, from `/proc/stat`). The scheduler favours a thread waking
//!   from a short sleep, so the probe is a lower bound on how long a busy
//!   thread waits for a core: it shows a stalled machine, not a full one.
//!   Its own cost (1,000 wake-ups a second) is in the client's CPU.
//!
//! Side by side with Pipecat 1.14 on the same driver:
//! `--external "/tmp/pcvenv/bin/python benches/pipecat_twilio_parrot.py"
//! --utterance-gap-ms 100` (that script says how to install Pipecat). An
//! external server is started with `sh -c CMD` from the crate's directory
//! and must print `listening on HOST:PORT` on stderr and serve
//! `/twilio/ws`.

#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    clippy::print_stdout,
    clippy::print_stderr
)]

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use base64::Engine as _;
use clap::Parser;
use futures_util::{SinkExt, StreamExt};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;
use voxpipe::audio::{mulaw, read_wav, resample_all};

mod proc_stats;
use proc_stats::{clock_ticks_per_sec, cpu_ticks, rss_kib};

/// Frame period.
const FRAME: Duration = Duration::from_millis(20);

#[derive(Debug, Parser)]
struct Args {
    /// Numbers of concurrent calls to try, each on a fresh server.
    #[arg(long, value_delimiter = ',', default_value = "100")]
    calls: Vec<usize>,
    /// Calls start spread over this many seconds, and each speaks for
    /// twice as long, so that all are connected together for a while.
    #[arg(long, default_value_t = 6.0)]
    secs: f64,
    /// The callers' audio: a WAV file (any rate, mixed to mono), looped.
    /// The default's pauses let the VAD skip its model on quiet chunks;
    /// continuous speech in noise keeps the model running.
    #[arg(long, default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/assets/samples/hello.wav"))]
    audio: String,
    /// The pipeline to serve.
    #[arg(long, default_value = "pipelines/parrot.toml")]
    pipeline: String,
    /// Overrides passed to `voxpipe serve` (`--set pipeline.sample_rate=8000`).
    #[arg(long = "set", value_name = "KEY.PATH=VALUE")]
    overrides: Vec<String>,
    /// Worker threads of the client's runtime.
    #[arg(long, default_value_t = 2)]
    client_threads: usize,
    /// Runs of each step.
    #[arg(long, default_value_t = 1)]
    runs: usize,
    /// Processes kept spinning (a busy core each) while the steps run.
    #[arg(long, default_value_t = 0)]
    busy: usize,
    /// The `voxpipe` binary to serve with (default: this crate's).
    #[arg(long)]
    server: Option<String>,
    /// Another server to measure, started with `sh -c`; see the module docs.
    #[arg(long, conflicts_with = "server")]
    external: Option<String>,
    /// For servers that send no `mark`: a pause between messages this long
    /// starts a new utterance.
    #[arg(long)]
    utterance_gap_ms: Option<u64>,
    /// Print each message over 20 ms late: its call, how far into its
    /// utterance it was and how late (to tell a stall, late everywhere,
    /// from a message late at one place in every utterance).
    #[arg(long)]
    show_late: bool,
    /// Passed by `cargo bench`.
    #[arg(long, hide = true)]
    bench: bool,
}

fn main() {
    let args = Args::parse();
    let payloads = Arc::new(speech_payloads(&args.audio));
    let busy: Vec<Busy> = (0..args.busy).map(|_| Busy::start()).collect();
    println!(
        "{:>6} {:>9} {:>8} {:>9} {:>10} {:>6} {:>7} {:>7} {:>8} {:>8} {:>9} {:>9} {:>8} {:>9} {:>9} {:>10} {:>10} {:>10} {:>9} {:>6} {:>11}",
        "calls",
        "complete",
        "frames",
        "late>20ms",
        "late_calls",
        "late%",
        "p50_ms",
        "p99_ms",
        "max_ms",
        "send_max",
        "rss_idle",
        "rss_peak",
        "kb/call",
        "srv_core%",
        "cli_core%",
        "srv_ms/cs",
        "win_ms/cs",
        "cli_ms/cs",
        "probe_max",
        "steal%",
        "load1"
    );
    for &calls in &args.calls {
        for _ in 0..args.runs {
            let step = run_step(&args, calls, Arc::clone(&payloads));
            println!("{step}");
        }
    }
    drop(busy);
}

/// Another process spinning on one core while it lives.
struct Busy(Child);

impl Busy {
    fn start() -> Self {
        let child = Command::new("sh")
            .args(["-c", "while :; do :; done"])
            .spawn()
            .expect("sh starts");
        Busy(child)
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The callers' audio as 8 kHz mu-law, base64 per 20 ms chunk.
fn speech_payloads(path: &str) -> Vec<String> {
    let wav = read_wav(std::path::Path::new(path)).expect("the callers' audio (--audio)");
    let pcm = resample_all(&wav.to_mono(), wav.sample_rate, 8_000).expect("resampled");
    let mut codes = Vec::new();
    mulaw::encode(&pcm, &mut codes);
    codes
        .chunks(160)
        .map(|chunk| {
            let mut chunk = chunk.to_vec();
            chunk.resize(160, 0xFF);
            base64::engine::general_purpose::STANDARD.encode(chunk)
        })
        .collect()
}

struct Server {
    child: Child,
    addr: SocketAddr,
}

impl Server {
    /// `voxpipe serve` from `args`, or the external server.
    fn start(args: &Args, calls: usize) -> Self {
        let mut command = match &args.external {
            Some(external) => {
                let mut command = Command::new("sh");
                // `exec`: the pid measured is the server's, not the shell's.
                command.args(["-c", &format!("exec {external}")]);
                command
            }
            None => {
                let binary = args
                    .server
                    .as_deref()
                    .unwrap_or(env!("CARGO_BIN_EXE_voxpipe"));
                let mut command = Command::new(binary);
                command
                    .args(["--log-level", "warn,voxpipe::server::serve=info"])
                    .args(["serve", &args.pipeline, "--bind", "127.0.0.1:0"])
                    .args(["--set", &format!("server.max_sessions={}", calls + 16)])
                    .args(args.overrides.iter().flat_map(|o| ["--set", o.as_str()]));
                command
            }
        };
        let mut child = command
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("voxpipe serve starts");
        let stderr = child.stderr.take().expect("stderr");
        let mut lines = BufReader::new(stderr).lines();
        let addr = loop {
            let line = lines.next().expect("the server logs").expect("a line");
            if let Some(at) = line.find("listening on ") {
                let rest = &line[at + "listening on ".len()..];
                break rest
                    .split_whitespace()
                    .next()
                    .expect("an address")
                    .parse()
                    .expect("a socket address");
            }
        };
        // Keep draining stderr so the server never blocks on it.
        std::thread::spawn(move || {
            for line in lines.map_while(Result::ok) {
                eprintln!("server: {line}");
            }
        });
        Server { child, addr }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn stop(mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
    }
}

/// A thread sleeping 1 ms at a time, keeping its worst oversleep.
struct StallProbe {
    stop: Arc<std::sync::atomic::AtomicBool>,
    thread: std::thread::JoinHandle<Duration>,
}

impl StallProbe {
    fn start() -> Self {
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let thread = {
            let stop = Arc::clone(&stop);
            std::thread::spawn(move || {
                let mut worst = Duration::ZERO;
                while !stop.load(Ordering::Relaxed) {
                    let asked = Duration::from_millis(1);
                    let before = std::time::Instant::now();
                    std::thread::sleep(asked);
                    worst = worst.max(before.elapsed().saturating_sub(asked));
                }
                worst
            })
        };
        StallProbe { stop, thread }
    }

    fn stop(self) -> Duration {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().unwrap_or_default()
    }
}

/// All CPU time and stolen CPU time, in ticks, from `/proc/stat`.
fn machine_cpu() -> Option<(u64, u64)> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let line = stat.lines().next()?.strip_prefix("cpu ")?;
    let ticks: Vec<u64> = line
        .split_whitespace()
        .filter_map(|t| t.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal (guest time is
    // already inside user).
    let total = ticks.iter().take(8).sum();
    Some((total, *ticks.get(7)?))
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split_whitespace().next().map(str::to_owned))
        .unwrap_or_default()
}

/// What one call saw.
#[derive(Default)]
struct CallResult {
    complete: bool,
    frames_out: usize,
    /// Lateness of every outbound frame, microseconds.
    late_us: Vec<u64>,
    /// The client's own worst lateness in sending.
    send_late: Duration,
    /// From the `start` message to the socket's close.
    connected: Duration,
    /// When the `start` message went, and when the socket closed.
    span: Option<(Instant, Instant)>,
}

struct Step {
    calls: usize,
    complete: usize,
    frames: usize,
    late_over_20: usize,
    /// Calls with at least one frame over 20 ms late.
    late_calls: usize,
    p50: f64,
    p99: f64,
    max: f64,
    send_max: f64,
    rss_idle: u64,
    rss_peak: u64,
    cpu_core_pct: f64,
    client_core_pct: f64,
    /// Server and client CPU milliseconds per call-second.
    server_ms_per_call_sec: f64,
    client_ms_per_call_sec: f64,
    /// The probe thread's worst oversleep, milliseconds.
    probe_max_ms: f64,
    /// CPU time stolen by the hypervisor, percent of all CPU time.
    steal_pct: f64,
    load_before: String,
    load: String,
}

impl std::fmt::Display for Step {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let per_call_kib = self.rss_peak.saturating_sub(self.rss_idle) as f64 / self.calls as f64;
        write!(
            f,
            "{:>6} {:>9} {:>8} {:>9} {:>10} {:>6.1} {:>7.2} {:>7.2} {:>8.2} {:>8.2} {:>9} {:>9} {:>8.0} {:>9.1} {:>9.1} {:>10.3} {:>10.3} {:>10.3} {:>9.1} {:>6.1} {:>11}",
            self.calls,
            self.complete,
            self.frames,
            self.late_over_20,
            self.late_calls,
            100.0 * self.late_calls as f64 / self.calls as f64,
            self.p50,
            self.p99,
            self.max,
            self.send_max,
            self.rss_idle,
            self.rss_peak,
            per_call_kib,
            self.cpu_core_pct,
            self.client_core_pct,
            self.server_ms_per_call_sec,
            // The window's share of a core, per call: ms per call-second
            // while every call is connected, without the ramps.
            self.cpu_core_pct * 10.0 / self.calls as f64,
            self.client_ms_per_call_sec,
            self.probe_max_ms,
            self.steal_pct,
            format!("{}→{}", self.load_before, self.load)
        )
    }
}

fn run_step(args: &Args, calls: usize, payloads: Arc<Vec<String>>) -> Step {
    let load_before = load_average();
    let cpu_before = machine_cpu();
    let probe = StallProbe::start();
    let server = Server::start(args, calls);
    let pid = server.pid();
    let addr = server.addr;
    std::thread::sleep(Duration::from_millis(300));
    let rss_idle = rss_kib(pid);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.client_threads)
        .enable_all()
        .build()
        .expect("a runtime");
    let secs = args.secs;
    let gap = args.utterance_gap_ms.map(Duration::from_millis);
    let show_late = args.show_late;
    let ticks_per_sec = clock_ticks_per_sec();
    let (server_cpu_before, client_cpu_before) = (cpu_ticks(pid), cpu_ticks(std::process::id()));
    let (results, rss_peak, (cpu_core_pct, client_core_pct)) = runtime.block_on(async move {
        let peak = Arc::new(AtomicU64::new(0));
        let sampling = {
            let peak = Arc::clone(&peak);
            tokio::spawn(async move {
                loop {
                    peak.fetch_max(rss_kib(pid), Ordering::Relaxed);
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            })
        };
        let started = Instant::now();
        // While every call is connected: from secs to 2 x secs.
        let window = tokio::spawn(async move {
            tokio::time::sleep_until(started + Duration::from_secs_f64(secs * 1.1)).await;
            let me = std::process::id();
            let (t0, c0, m0) = (Instant::now(), cpu_ticks(pid), cpu_ticks(me));
            tokio::time::sleep(Duration::from_secs_f64(secs * 0.8)).await;
            let (t1, c1, m1) = (Instant::now(), cpu_ticks(pid), cpu_ticks(me));
            let pct = |ticks: u64| 100.0 * ticks as f64 / ticks_per_sec / (t1 - t0).as_secs_f64();
            (pct(c1 - c0), pct(m1 - m0), t0..t1)
        });
        let tasks: Vec<_> = (0..calls)
            .map(|n| {
                let start = started + Duration::from_secs_f64(secs * n as f64 / calls as f64);
                tokio::spawn(call(addr, n, start, secs, gap, Arc::clone(&payloads), show_late))
            })
            .collect();
        let mut results = Vec::with_capacity(calls);
        for task in tasks {
            results.push(task.await.unwrap_or_default());
        }
        let (server_pct, client_pct, measured) = window.await.expect("the window's task");
        // The window's shares are per call only if every call was
        // connected all through it.
        let outside = results
            .iter()
            .filter(|r| !r.span.is_some_and(|(opened, closed)| opened <= measured.start && closed >= measured.end))
            .count();
        if outside > 0 {
            eprintln!("{outside} of {calls} calls were not connected all through the CPU window: srv_core% and win_ms/cs count fewer calls");
        }
        let cpu_core_pct = (server_pct, client_pct);
        sampling.abort();
        (results, peak.load(Ordering::Relaxed), cpu_core_pct)
    });
    let load = load_average();
    let cpu_ms = |before: u64, pid: u32| {
        cpu_ticks(pid).saturating_sub(before) as f64 / ticks_per_sec * 1000.0
    };
    let server_cpu_ms = cpu_ms(server_cpu_before, pid);
    let client_cpu_ms = cpu_ms(client_cpu_before, std::process::id());
    // Each call's own time connected, from its `start` to the close (no
    // call connected: no figure, NaN).
    let call_secs: f64 = results.iter().map(|r| r.connected.as_secs_f64()).sum();
    let call_secs = if call_secs > 0.0 { call_secs } else { f64::NAN };
    let probe_max_ms = probe.stop().as_secs_f64() * 1000.0;
    let cpu_after = machine_cpu();
    server.stop();
    let steal_pct = match (cpu_before, cpu_after) {
        (Some((total0, steal0)), Some((total1, steal1))) if total1 > total0 => {
            100.0 * steal1.saturating_sub(steal0) as f64 / (total1 - total0) as f64
        }
        _ => f64::NAN,
    };

    let mut late: Vec<u64> = results
        .iter()
        .flat_map(|r| r.late_us.iter().copied())
        .collect();
    late.sort_unstable();
    let quantile = |q: f64| {
        late.get(((late.len() as f64 - 1.0) * q).round() as usize)
            .map_or(0.0, |us| *us as f64 / 1000.0)
    };
    Step {
        calls,
        complete: results.iter().filter(|r| r.complete).count(),
        frames: results.iter().map(|r| r.frames_out).sum(),
        late_over_20: late.iter().filter(|us| **us > 20_000).count(),
        late_calls: results
            .iter()
            .filter(|r| r.late_us.iter().any(|us| *us > 20_000))
            .count(),
        p50: quantile(0.5),
        p99: quantile(0.99),
        max: quantile(1.0),
        send_max: results
            .iter()
            .map(|r| r.send_late.as_secs_f64() * 1000.0)
            .fold(0.0, f64::max),
        rss_idle,
        rss_peak,
        cpu_core_pct,
        client_core_pct,
        server_ms_per_call_sec: server_cpu_ms / call_secs,
        client_ms_per_call_sec: client_cpu_ms / call_secs,
        probe_max_ms,
        steal_pct,
        load_before,
        load,
    }
}

fn media(sid: &str, sequence: u64, chunk: u64, payload: &str) -> String {
    format!(
        r#"{{"event":"media","sequenceNumber":"{sequence}","media":{{"track":"inbound","chunk":"{chunk}","timestamp":"{}","payload":"{payload}"}},"streamSid":"{sid}"}}"#,
        (chunk - 1) * 20
    )
}

/// The string value of the first `"name"` field in a JSON text, read
/// without parsing the whole (servers differ in spacing: `"a": "b"`).
fn string_field<'t>(text: &'t str, name: &str) -> Option<&'t str> {
    // `"name"` found without building the quoted needle.
    let at = text.match_indices(name).map(|(at, _)| at).find(|&at| {
        at > 0
            && text.as_bytes()[at - 1] == b'"'
            && text.as_bytes().get(at + name.len()) == Some(&b'"')
    })? + name.len()
        + 1;
    let rest = text[at..].trim_start().strip_prefix(':')?.trim_start();
    let value = rest.strip_prefix('"')?;
    value.find('"').map(|end| &value[..end])
}

/// How long 8 kHz mu-law audio in base64 plays.
fn mulaw_duration(base64: &str) -> Duration {
    let padding = base64.bytes().rev().take_while(|b| *b == b'=').count();
    let bytes = (base64.len() / 4 * 3).saturating_sub(padding);
    Duration::from_micros(bytes as u64 * 125)
}

/// One fake call; see the module docs.
async fn call(
    addr: SocketAddr,
    n: usize,
    start: Instant,
    secs: f64,
    gap: Option<Duration>,
    payloads: Arc<Vec<String>>,
    show_late: bool,
) -> CallResult {
    tokio::time::sleep_until(start).await;
    // A small read buffer: tungstenite zero-fills the whole buffer on each
    // read, and the default 128 KiB would make the client the bottleneck.
    let config = tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default()
        .read_buffer_size(2 * 1024);
    let Ok((ws, _)) = tokio_tungstenite::connect_async_with_config(
        format!("ws://{addr}/twilio/ws"),
        Some(config),
        true, // TCP_NODELAY: small messages every 20 ms
    )
    .await
    else {
        eprintln!("call {n}: cannot connect");
        return CallResult::default();
    };
    let (mut tx, mut rx) = ws.split();
    let sid = format!("MZ{n:032x}");
    let call_sid = format!("CA{n:032x}");
    let account = format!("AC{:032x}", 1);
    let hello = [
        r#"{"event":"connected","protocol":"Call","version":"1.0.0"}"#.to_owned(),
        format!(
            r#"{{"event":"start","sequenceNumber":"1","start":{{"accountSid":"{account}","streamSid":"{sid}","callSid":"{call_sid}","tracks":["inbound"],"mediaFormat":{{"encoding":"audio/x-mulaw","sampleRate":8000,"channels":1}},"customParameters":{{}}}},"streamSid":"{sid}"}}"#
        ),
    ];
    for message in hello {
        if tx.send(Message::text(message)).await.is_err() {
            return CallResult::default();
        }
    }
    let frames_to_send = (2.0 * secs * 50.0).round() as u64;
    let began = Instant::now();
    let mut ticker = tokio::time::interval_at(began, FRAME);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut sent = 0u64;
    let mut stopped = false;
    let mut result = CallResult::default();
    // The current utterance: arrival of its first message, audio so far;
    // when the last message arrived.
    let mut utterance: Option<(Instant, Duration)> = None;
    let mut last_arrival = began;
    // One timer for the whole call (a new one per message would cost the
    // client a timer registration each).
    let deadline = tokio::time::sleep_until(began + Duration::from_secs_f64(secs * 3.0 + 30.0));
    tokio::pin!(deadline);
    loop {
        tokio::select! {
            _ = ticker.tick(), if !stopped => {
                let due = began + FRAME * sent as u32;
                result.send_late = result.send_late.max(Instant::now().saturating_duration_since(due));
                let message = if sent < frames_to_send {
                    sent += 1;
                    media(&sid, sent + 1, sent, &payloads[(sent as usize - 1) % payloads.len()])
                } else {
                    stopped = true;
                    format!(
                        r#"{{"event":"stop","sequenceNumber":"{}","stop":{{"accountSid":"{account}","callSid":"{call_sid}"}},"streamSid":"{sid}"}}"#,
                        sent + 2
                    )
                };
                if tx.send(Message::text(message)).await.is_err() {
                    break;
                }
            }
            message = rx.next() => {
                let arrived = Instant::now();
                match message {
                    Some(Ok(Message::Text(text))) => {
                        let text = text.as_str();
                        let event = string_field(text, "event");
                        if event == Some("media") {
                            result.frames_out += 1;
                            if gap.is_some_and(|gap| arrived - last_arrival > gap) {
                                utterance = None;
                            }
                            last_arrival = arrived;
                            let (first, played) = utterance.get_or_insert((arrived, Duration::ZERO));
                            let due = *first + *played;
                            let late_us = arrived.saturating_duration_since(due).as_micros() as u64;
                            if show_late && late_us > 20_000 {
                                eprintln!(
                                    "late: call {n}, {} ms into its utterance, {:.1} ms late",
                                    played.as_millis(),
                                    late_us as f64 / 1000.0
                                );
                            }
                            result.late_us.push(late_us);
                            *played += mulaw_duration(string_field(text, "payload").unwrap_or_default());
                        } else if event == Some("clear") {
                            // A barge-in: Twilio drops what it buffered, and
                            // the next reply plays from its own first message.
                            utterance = None;
                        } else if event == Some("mark") {
                            utterance = None;
                            if !stopped {
                                // Playback here is instant: echo at once.
                                let echo = text.replacen(r#""mark","streamSid""#, r#""mark","sequenceNumber":"0","streamSid""#, 1);
                                if tx.send(Message::text(echo)).await.is_err() {
                                    break;
                                }
                            }
                        }
                    }
                    Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break,
                    Some(Ok(_)) => {}
                }
            }
            () = &mut deadline => {
                eprintln!("call {n}: no end within the deadline");
                break;
            }
        }
    }
    // A call is complete when it was heard back and ended with `stop`.
    result.complete = stopped && result.frames_out > 0;
    result.connected = began.elapsed();
    result.span = Some((began, Instant::now()));
    result
}
