//! Conversation memory: what persisting turns costs the audio path, and how
//! fast `search_context` answers.
//!
//! - `turns/record_turn`: one `SessionMemory::record_turn`, what an
//!   aggregator pays per completed turn (a channel send).
//! - `session_10s/*`: a 10 s file session (audio clock, as fast as it runs)
//!   through a parrot with a turn every 0.5 s: `no_store` records nothing
//!   (the baseline), `embedded_store` records on the embedded store,
//!   `stalled_redis` on a "Redis" that accepts connections and never
//!   answers, `embedded_store_extracting` on the embedded store with a
//!   worker extracting seed 002's profile from each finished session while
//!   the next one runs (a model stub answering at once, so the bench holds
//!   the extraction's own work: rendering, JSON Schema validation, store
//!   writes). Equal medians mean no frame waits on the store or the
//!   extraction.
//! - `skills/search_100k_768`: the top 5 of 100,000 skills of 768
//!   dimensions (two-stage search, 512 candidates re-ranked exactly), and
//!   `skills/exact_scan_100k_768` for reference. Recall@5 against the exact
//!   scan is printed.
//!
//! Run with: `cargo bench --bench context`

#![allow(clippy::expect_used, clippy::print_stderr)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use criterion::Criterion;
use voxpipe::agent::PostCallStep;
use voxpipe::agent::eval::JudgeModel;
use voxpipe::agent::extraction::{ExtractionModels, ExtractionStep};
use voxpipe::agent::skills::SkillIndex;
use voxpipe::agent::{AgentRuntime, ContextSection, RuntimeParts};
use voxpipe::conversation::{Role, Turn};
use voxpipe::frame::{AudioFrame, Direction, Frame, FrameBody};
use voxpipe::pipeline::SessionSetup;
use voxpipe::pipeline::{NamedProcessor, PipelineParams, PipelineTask, SessionClock};
use voxpipe::pipeline::{Processor, ProcessorContext, ProcessorError};
use voxpipe::pipeline_file::load_pipeline;
use voxpipe::processors::{Parrot, ProcessorRegistry};
use voxpipe::services::ServiceError;
use voxpipe::store::Skill;
use voxpipe::store::{MemoryStore, RedisStore, Store};
use voxpipe::transport::file::FileInput;
use voxpipe::transport::{AudioSink, OutputTransport, Pacing};

#[path = "../tests/support/mod.rs"]
mod support;
use support::rng::Rng;

/// Completes a turn every 25 input frames (0.5 s), pushing a
/// `TurnCompleted` frame as an aggregator does; the session memory's
/// observer stores it (with no memory nothing observes it: the baseline).
struct Turns {
    frames: u64,
}

fn turn(index: u64, at_ms: u64) -> Turn {
    Turn {
        index,
        role: Role::User,
        text: "It's too expensive.".to_owned(),
        interrupted: false,
        tool_calls: Vec::new(),
        at_ms,
        unix_ms: 0,
        latency_ms: None,
        agent: None,
        reflection: None,
    }
}

#[async_trait]
impl Processor for Turns {
    async fn process(
        &mut self,
        frame: Frame,
        direction: Direction,
        ctx: &ProcessorContext,
    ) -> Result<(), ProcessorError> {
        if let FrameBody::InputAudio(_) = frame.body {
            self.frames += 1;
            if self.frames.is_multiple_of(25) {
                let completed = turn(self.frames / 25, ctx.now().as_millis() as u64);
                ctx.push(
                    FrameBody::TurnCompleted(Arc::new(completed)),
                    Direction::Downstream,
                )
                .await;
            }
        }
        ctx.push(frame, direction).await;
        Ok(())
    }
}

struct Discard;

impl AudioSink for Discard {
    fn write(&mut self, _audio: &AudioFrame) -> Result<(), ProcessorError> {
        Ok(())
    }
}

fn runtime_on(store: Arc<dyn Store>) -> AgentRuntime {
    runtime_with(store, Vec::new())
}

fn runtime_with(store: Arc<dyn Store>, post_call: Vec<Arc<dyn PostCallStep>>) -> AgentRuntime {
    let section = ContextSection {
        // A stalled store gives up reading the prompt at once, so sessions
        // follow each other as closely as on the embedded store.
        prompt_timeout_ms: 1,
        flush_timeout_secs: voxpipe::config::Seconds::from_millis(200),
        ..ContextSection::default()
    };
    AgentRuntime::from_parts(RuntimeParts {
        store,
        section,
        evaluator: None,
        webhook: None,
        skills: None,
        post_call,
        objects: None,
        phone_hasher: None,
        learning: None,
    })
}

/// A model that answers at once with a profile the schema accepts.
struct InstantModel;

#[async_trait]
impl JudgeModel for InstantModel {
    fn model(&self) -> &str {
        "instant"
    }

    async fn complete(&self, _messages: &[(&str, String)]) -> Result<String, ServiceError> {
        Ok(
            r#"{"name": "Ann Lee", "current_job": {"title": "Welder", "company": "Acme",
            "start_year": 2004}, "employment_history": [{"title": "Welder", "company": "Acme",
            "start_year": 2004, "end_year": null}], "employment_gaps": [], "skills": ["welding"],
            "adversarial_score": 1, "confidence_score": 0.9, "consent_given": true}"#
                .to_owned(),
        )
    }
}

/// The embedded store with the shipped outbound pipeline's extraction on,
/// asking [`InstantModel`].
fn extracting_runtime() -> AgentRuntime {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/pipelines/outbound_profile.toml"
    );
    let config = load_pipeline(path.as_ref(), &[], &ProcessorRegistry::builtin())
        .expect("the shipped pipeline loads");
    let extraction = config.extraction.expect("extraction is on");
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new(Default::default()));
    let models = ExtractionModels {
        model: Arc::new(InstantModel),
        fallback: None,
    };
    let step = ExtractionStep::new(Arc::clone(&store), models, &extraction);
    runtime_with(store, vec![Arc::new(step)])
}

/// A "Redis" that accepts connections and never answers.
async fn stalled_redis() -> Arc<dyn Store> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a port");
    let url = format!("redis://{}", listener.local_addr().expect("an address"));
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    let settings = voxpipe::store::StoreSettings {
        op_timeout: Duration::from_secs(60),
        ..Default::default()
    };
    Arc::new(RedisStore::connect(&url, "REDIS_URL", settings).expect("a url"))
}

/// One 10 s session (with `context`'s memory, or none); returns how long
/// it ran.
async fn session(context: Option<&AgentRuntime>, n: u64) -> Duration {
    let setup = SessionSetup::new(format!("bench-{n}"), 16_000);
    let memory = match context {
        Some(context) => Some(context.open_session(&setup, "file").await),
        None => None,
    };
    let processors = vec![
        NamedProcessor::new("in", FileInput::new(vec![300; 160_000], 16_000, false)),
        NamedProcessor::new("parrot", Parrot::new(Duration::from_secs(30))),
        NamedProcessor::new("turns", Turns { frames: 0 }),
        NamedProcessor::new(
            "out",
            OutputTransport::new(Discard, Pacing::InboundAudio { realtime: false }),
        ),
    ];
    let mut params = PipelineParams::new(setup.session_id.clone(), 16_000);
    params.clock = SessionClock::audio();
    if let Some(memory) = &memory {
        params.observers.push(memory.observer());
    }
    params.measure = false;
    let task = PipelineTask::new(processors, params);
    let started = Instant::now();
    if let Some(memory) = &memory {
        memory.started();
    }
    let outcome = task.run().await;
    if let Some(memory) = &memory {
        memory.ended(&outcome.end_reason);
    }
    let elapsed = started.elapsed();
    assert_eq!(outcome.end_reason, "end_of_input");
    elapsed
}

fn bench_persistence(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().expect("a runtime");
    let embedded = runtime_on(Arc::new(MemoryStore::new(Default::default())));
    let stalled = runtime_on(rt.block_on(stalled_redis()));
    // A real Redis, standalone and a three-master cluster: persistence
    // must add nothing measurable to the audio path either way.
    let redis_server = support::redis_server::RedisServer::start();
    let redis_cluster = support::redis_cluster::RedisCluster::start(3, 0);
    let (standalone, cluster) = {
        let _entered = rt.enter();
        let url = redis_server.url();
        let standalone = RedisStore::connect(&url, "REDIS_URL", Default::default());
        let urls = redis_cluster.urls();
        let cluster = RedisStore::connect_cluster(&urls, "REDIS_URL", Default::default());
        (
            runtime_on(Arc::new(standalone.expect("a url"))),
            runtime_on(Arc::new(cluster.expect("urls"))),
        )
    };
    let extracting = rt.block_on(async { extracting_runtime() });
    let worker = extracting.worker("bench").expect("a post-call worker");
    rt.spawn(async move { worker.run(std::future::pending()).await });

    // Each sample records into a fresh store that is dropped after it:
    // one store kept for every iteration would hold tens of millions of
    // turns (about 20 GB) by the end.
    c.bench_function("turns/record_turn", |b| {
        let completed = Arc::new(turn(0, 0));
        b.iter_custom(|iters| {
            let context = runtime_on(Arc::new(MemoryStore::new(Default::default())));
            let setup = SessionSetup::new("turns", 16_000);
            let memory = rt.block_on(context.open_session(&setup, "file"));
            let _entered = rt.enter();
            let started = Instant::now();
            for _ in 0..iters {
                memory.record_turn(Arc::clone(&completed));
            }
            let elapsed = started.elapsed();
            // Untimed: let the writer store them all, so no sample's writer
            // still runs beside the next bench.
            memory.ended("end_of_input");
            rt.block_on(context.drain_writers(Duration::from_secs(600)));
            elapsed
        });
    });

    let mut group = c.benchmark_group("session_10s");
    group.sample_size(20);
    for (name, context) in [
        ("no_store", None),
        ("embedded_store", Some(&embedded)),
        ("stalled_redis", Some(&stalled)),
        ("standalone_redis", Some(&standalone)),
        ("cluster_redis", Some(&cluster)),
        ("embedded_store_extracting", Some(&extracting)),
    ] {
        let mut n = 0;
        group.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    n += 1;
                    total += rt.block_on(session(context, n));
                }
                total
            });
        });
    }
    group.finish();
    // The extraction did run beside the sessions.
    let stored = rt.block_on(async {
        let rest = extracting.worker("bench-rest").expect("a worker");
        rest.drain().await.expect("the rest extracted");
        extracting
            .store()
            .call("bench-1")
            .await
            .expect("the store answers")
    });
    let status = stored.and_then(|call| call.extraction).map(|e| match e {
        voxpipe::store::Extraction::Extracted { .. } => "extracted",
        voxpipe::store::Extraction::Unextracted { .. } => "unextracted",
    });
    eprintln!("embedded_store_extracting: bench-1 {status:?}");
}

fn bench_search(c: &mut Criterion) {
    const N: usize = 100_000;
    const DIMS: usize = 768;
    const TOPICS: usize = 5_000;
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let centres: Vec<Vec<f32>> = (0..TOPICS)
        .map(|_| (0..DIMS).map(|_| rng.next()).collect())
        .collect();
    let mut index = SkillIndex::new(512);
    let mut queries = Vec::new();
    for i in 0..N {
        let v: Vec<f32> = centres[i % TOPICS].iter().map(|c| c + rng.next()).collect();
        if i % 1_000 == 0 {
            queries.push(v.iter().map(|x| x + 0.3 * rng.next()).collect::<Vec<f32>>());
        }
        let skill = Skill::new(format!("objection {i}"), format!("rebuttal {i}"), v);
        index.insert(&skill).expect("same dimensions");
    }
    let mut found = 0;
    for query in &queries {
        let exact = index.search_exact(query, 5);
        found += index
            .search(query, 5)
            .iter()
            .filter(|hit| exact.iter().any(|e| e.hash == hit.hash))
            .count();
    }
    eprintln!(
        "recall@5 of the two-stage search over {N} x {DIMS}: {:.3} ({} queries)",
        found as f64 / (5 * queries.len()) as f64,
        queries.len()
    );

    let mut group = c.benchmark_group("skills");
    let mut q = 0;
    group.bench_function("search_100k_768", |b| {
        b.iter(|| {
            q = (q + 1) % queries.len();
            index.search(&queries[q], 5)
        });
    });
    group.sample_size(10);
    group.bench_function("exact_scan_100k_768", |b| {
        b.iter(|| index.search_exact(&queries[0], 5));
    });
    group.finish();
}

fn main() {
    let mut criterion = Criterion::default().configure_from_args();
    bench_persistence(&mut criterion);
    bench_search(&mut criterion);
    criterion.final_summary();
}
