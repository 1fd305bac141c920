//! Concurrent WebRTC sessions with `parrot`, Opus both ways, over loopback.
//!
//! The server (`voxpipe serve pipelines/parrot.toml`, in this process) is
//! called over HTTP as a page calls it. For each count N, N client peers
//! call it at once (staggered over a second), each speaks the sample speech once in real time (three
//! utterances over 11 s) and hears the parrot repeat each one. Reported:
//!
//! - **on time**: within each reply spurt, how late each packet arrives
//!   against the spurt's first packet and its RTP timestamps (lateness a
//!   browser's jitter buffer must absorb): p50, p99, max, and the share of
//!   packets more than 40 ms late;
//! - **engine**: the engine's added latency per turn, from the arrival of
//!   the inbound packet that completed the VAD's stop window (speech end +
//!   stop wait) to the bot's first audio leaving the output (server clock);
//! - **wire**: the same, ending when the client receives the first reply
//!   packet (adds SRTP, both drivers and loopback);
//! - replies heard, and the process's CPU use (server and clients together;
//!   the speech is encoded once, so the clients only packetize and
//!   encrypt), in cores;
//! - `wait`: cores' worth of time the process's threads were runnable but
//!   waited for a CPU, and the machine's load average when the run started:
//!   on a shared machine, lateness comes from there.
//!
//! The pipeline is `pipelines/parrot.toml`: the Silero VAD (0.8 s stop
//! wait) and the parrot.
//!
//! Run with: `cargo bench --bench webrtc_sessions -- 1 10 25 50`

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout,
    clippy::print_stderr
)]

#[path = "../tests/support/mod.rs"]
mod support;

use std::collections::{HashMap, VecDeque};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::oneshot;
use tokio::time::Instant;
use voxpipe::frame::{AudioFrame, Direction, FrameBody, FrameId};
use voxpipe::metrics::LatencyHistogram;
use voxpipe::pipeline::{Observer, PushEvent};
use voxpipe::pipeline_file::load_pipeline;
use voxpipe::processors::ProcessorRegistry;
use voxpipe::server::Server;
use voxpipe::transport::webrtc::outbound::{OutboundAudio, OutboundPacket};
use voxpipe::transport::webrtc::{ClientPeer, ReceivedAudio};

/// The VAD's stop wait in `pipelines/parrot.toml` (the default `stop_secs`).
const STOP_WAIT: Duration = Duration::from_millis(800);

/// One answered turn, seen from the server.
#[derive(Debug, Clone, Copy)]
struct ServerTurn {
    /// When the inbound audio completing the stop window arrived.
    window_complete: Instant,
    /// The bot's first audio left the output.
    first_out: Instant,
}

#[derive(Default)]
struct ProbeState {
    /// (end of the frame on the session timeline, when it arrived).
    inbound: VecDeque<(Duration, Instant)>,
    pending: Option<Instant>,
    last_stop: Option<FrameId>,
    last_start: Option<FrameId>,
    turns: Vec<ServerTurn>,
}

/// Watches one session for its turns.
#[derive(Default)]
struct Probe(Mutex<ProbeState>);

impl Observer for Probe {
    fn on_push(&self, push: &PushEvent<'_>) {
        let now = Instant::now();
        let mut state = self.0.lock().unwrap();
        match &push.frame.body {
            FrameBody::InputAudio(audio)
                if push.from == "transport.input" && push.direction == Direction::Downstream =>
            {
                state.inbound.push_back((audio.pts + audio.duration(), now));
                if state.inbound.len() > 500 {
                    state.inbound.pop_front();
                }
            }
            FrameBody::UserStoppedSpeaking { end }
                if state.last_stop.replace(push.frame.id) != Some(push.frame.id) =>
            {
                let target = *end + STOP_WAIT;
                state.pending = state
                    .inbound
                    .iter()
                    .find(|(frame_end, _)| *frame_end + Duration::from_millis(1) >= target)
                    .map(|(_, at)| *at);
            }
            FrameBody::BotStartedSpeaking
                if state.last_start.replace(push.frame.id) != Some(push.frame.id) =>
            {
                if let Some(window_complete) = state.pending.take() {
                    state.turns.push(ServerTurn {
                        window_complete,
                        first_out: now,
                    });
                }
            }
            _ => {}
        }
    }
}

/// What one client heard.
struct ClientRun {
    pc_id: String,
    packets: Vec<ReceivedAudio>,
}

async fn client(base: String, speech: Arc<Vec<OutboundPacket>>, delay: Duration) -> ClientRun {
    tokio::time::sleep(delay).await;
    let (mut client, offer) = ClientPeer::offer().await.unwrap();
    let answer = support::webrtc::answer(&base, &offer).await;
    client.accept(&answer).await.unwrap();
    client
        .wait_connected(Duration::from_secs(20))
        .await
        .unwrap();
    let mut audio = client.take_audio().unwrap();
    let mut ticker = tokio::time::interval(Duration::from_millis(20));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    for packet in speech.iter() {
        ticker.tick().await;
        client.send_packet(packet.clone()).await.unwrap();
    }
    let packets = support::webrtc::drain(&mut audio);
    client.close().await;
    ClientRun {
        pc_id: answer.pc_id,
        packets,
    }
}

type Probes = Arc<Mutex<HashMap<String, Arc<Probe>>>>;

/// Reply spurts of one client: packets in sequence order, split at markers.
fn spurts(packets: &[ReceivedAudio]) -> Vec<Vec<&ReceivedAudio>> {
    let mut sorted: Vec<&ReceivedAudio> = packets.iter().collect();
    sorted.sort_by_key(|p| p.packet.header.sequence_number);
    let mut spurts: Vec<Vec<&ReceivedAudio>> = Vec::new();
    for p in sorted {
        match spurts.last_mut() {
            Some(spurt) if !p.packet.header.marker => spurt.push(p),
            _ => spurts.push(vec![p]),
        }
    }
    spurts
}

fn cpu_seconds() -> f64 {
    // utime and stime, fields 14 and 15 of /proc/self/stat, in clock ticks
    // (100 per second on Linux).
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after_name = stat.rsplit(')').next().unwrap_or("");
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (ticks(11) + ticks(12)) / 100.0
}

/// Time this process's threads waited for a CPU while runnable (the second
/// field of each thread's schedstat): when other processes share the
/// machine, lateness comes from here rather than from the engine.
fn cpu_wait_seconds() -> f64 {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return 0.0;
    };
    tasks
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("schedstat")).ok())
        .filter_map(|s| s.split_whitespace().nth(1)?.parse::<f64>().ok())
        .sum::<f64>()
        / 1e9
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(1).collect())
        .unwrap_or_default()
}

fn ms(h: &LatencyHistogram, q: f64) -> f64 {
    h.quantile(q).map_or(f64::NAN, |d| d.as_secs_f64() * 1000.0)
}

/// The sample speech and two seconds of silence, encoded once for every
/// client: the clients only packetize and encrypt, so the CPU figure is
/// mostly the server's.
fn encoded_speech() -> Vec<OutboundPacket> {
    let mut speech = support::signal::sample_speech();
    speech.extend(std::iter::repeat_n(0, 16_000 * 2));
    let mut encoder = OutboundAudio::new(0).unwrap();
    let mut packets = Vec::new();
    for (k, chunk) in speech.chunks_exact(320).enumerate() {
        let pts = Duration::from_millis(20 * k as u64);
        encoder
            .push(&AudioFrame::from_samples(chunk, 16_000, 1, pts))
            .unwrap();
        packets.extend(std::iter::from_fn(|| encoder.poll_packet()));
    }
    packets
}

/// The parrot served on a free loopback port; a probe watches each session.
async fn serve(probes: Probes) -> (String, oneshot::Sender<()>) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("pipelines/parrot.toml");
    // Every call comes from 127.0.0.1: no rate limit per address.
    let overrides = [
        "server.max_sessions=1000".parse().unwrap(),
        "server.rate_limit_per_minute=0".parse().unwrap(),
    ];
    let config = load_pipeline(&path, &overrides, &ProcessorRegistry::builtin()).unwrap();
    let server = Server::builder(config)
        .session_observer(move |setup| {
            let probe = Arc::new(Probe::default());
            probes
                .lock()
                .unwrap()
                .insert(setup.session_id.to_string(), Arc::clone(&probe));
            probe
        })
        .build()
        .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(server.serve(listener, async move {
        let _ = stopped.await;
    }));
    (base, stop)
}

async fn run(sessions: usize, speech: Arc<Vec<OutboundPacket>>) {
    let probes: Probes = Arc::default();
    let (base, stop) = serve(Arc::clone(&probes)).await;
    let cpu_before = cpu_seconds();
    let wait_before = cpu_wait_seconds();
    let load = load_average();
    let wall = Instant::now();
    let clients: Vec<_> = (0..sessions)
        .map(|i| {
            let delay = Duration::from_millis((i as u64 * 1_000) / sessions.max(1) as u64);
            tokio::spawn(client(base.clone(), Arc::clone(&speech), delay))
        })
        .collect();
    let mut runs = Vec::new();
    for c in clients {
        runs.push(c.await.unwrap());
    }
    let elapsed = wall.elapsed().as_secs_f64();
    let cores = (cpu_seconds() - cpu_before) / elapsed;
    let waited = (cpu_wait_seconds() - wait_before) / elapsed;

    let mut lateness = LatencyHistogram::new();
    let mut late_40 = 0usize;
    let mut total_packets = 0usize;
    let mut engine = LatencyHistogram::new();
    let mut wire = LatencyHistogram::new();
    let mut replies = 0usize;
    let _stopped = stop.send(());
    let probes = probes.lock().unwrap();
    for run in &runs {
        let spurts = spurts(&run.packets);
        // Short spurts are the old tail flushed after an utterance; a
        // reply is at least 20 packets.
        let replies_here: Vec<_> = spurts.iter().filter(|s| s.len() >= 20).collect();
        replies += replies_here.len();
        for spurt in &spurts {
            let (first_ts, first_at) = (spurt[0].packet.header.timestamp, spurt[0].arrived);
            for p in spurt.iter() {
                let ticks = p.packet.header.timestamp.wrapping_sub(first_ts);
                let due = first_at + Duration::from_micros(u64::from(ticks) * 1_000 / 48);
                let late = p.arrived.saturating_duration_since(due);
                lateness.record(late);
                total_packets += 1;
                if late > Duration::from_millis(40) {
                    late_40 += 1;
                }
            }
        }
        if let Some(probe) = probes.get(&run.pc_id) {
            let turns = probe.0.lock().unwrap().turns.clone();
            for (turn, spurt) in turns.iter().zip(replies_here.iter()) {
                engine.record(turn.first_out - turn.window_complete);
                wire.record(
                    spurt[0]
                        .arrived
                        .saturating_duration_since(turn.window_complete),
                );
            }
        }
    }
    println!(
        "{sessions:>8} {replies:>4}/{:<4} {:>6.1} {:>6.1} {:>6.1} {:>6.2}% {:>7.2} {:>7.2} {:>7.2} {:>7.2} {:>7.2} {:>6.2} {:>6.2} {load:>5}",
        sessions * 3,
        ms(&lateness, 0.5),
        ms(&lateness, 0.99),
        ms(&lateness, 1.0),
        100.0 * late_40 as f64 / total_packets.max(1) as f64,
        ms(&engine, 0.5),
        ms(&engine, 0.99),
        ms(&engine, 1.0),
        ms(&wire, 0.5),
        ms(&wire, 0.99),
        cores,
        waited,
    );
}

fn main() {
    let counts: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let counts = if counts.is_empty() {
        vec![1, 10, 25]
    } else {
        counts
    };
    let _ = rustls::crypto::ring::default_provider().install_default();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    println!(
        "{:>8} {:>9} {:>20} {:>7} {:>23} {:>15} {:>6}",
        "sessions",
        "replies",
        "lateness ms p50/p99/max",
        ">40ms",
        "engine ms p50/p99/max",
        "wire ms p50/p99",
        "cores"
    );
    let speech = Arc::new(encoded_speech());
    for n in counts {
        runtime.block_on(run(n, Arc::clone(&speech)));
    }
}
