//! The ends of text conversations, over the embedded store and a real
//! Redis: recorded once by two sweeps at once, retried and set aside when
//! they keep failing (the claims that keep two attempts apart are in
//! `text_end_claims`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::support;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use support::redis_server::RedisServer;
use support::text::{config, env, runtime};
use voxpipe::store::{EndClaim, TextEnd};
use voxpipe::text::{MAX_END_ATTEMPTS, TextConversations};

/// Where the ends tests keep their conversations: the embedded store in a
/// file (so a test can corrupt a record as another process would), or a
/// real Redis.
pub(crate) enum Kept {
    Memory(tempfile::TempDir),
    Redis(RedisServer),
}

impl Kept {
    pub(crate) fn memory() -> Self {
        Kept::Memory(tempfile::tempdir().unwrap())
    }

    fn log(&self) -> Option<std::path::PathBuf> {
        match self {
            Kept::Memory(dir) => Some(dir.path().join("context.jsonl")),
            Kept::Redis(_) => None,
        }
    }

    /// Two sweepers (two servers' `TextConversations`) over one store,
    /// with evaluation jobs queued when a call completes.
    pub(crate) fn sweepers(&self) -> [Arc<TextConversations>; 2] {
        let openai_free = "http://127.0.0.1:9";
        let mut toml = format!(
            "[pipeline]\nname = \"text\"\n\n[[processor]]\ntype = \"user_context\"\n\n\
             [[processor]]\ntype = \"llm\"\nprovider = \"openai\"\nbase_url = \"{openai_free}\"\nmodel = \"m\"\n\n\
             [[processor]]\ntype = \"assistant_context\"\n\n\
             [evaluator]\nbase_url = \"{openai_free}\"\nmodel = \"judge-1\"\n\n"
        );
        let env = match self {
            Kept::Memory(_) => {
                let log = self.log().unwrap();
                toml.push_str(&format!(
                    "[context]\nstore = \"memory\"\npath = {:?}\n",
                    log.display().to_string()
                ));
                Vec::new()
            }
            Kept::Redis(redis) => {
                toml.push_str("[context]\nstore = \"redis\"\nurl_env = \"TEST_REDIS\"\n");
                env(&redis.url())
            }
        };
        let config = config(&toml);
        let agent = runtime(&config, &env);
        [(), ()].map(|()| {
            Arc::new(
                TextConversations::new(
                    &config.processors,
                    config.session_setup("text"),
                    Arc::clone(&agent),
                    config.text.clone(),
                )
                .unwrap(),
            )
        })
    }

    /// Makes `call_id`'s record unreadable: every update of it fails.
    async fn break_call(&self, call_id: &str) {
        use redis::AsyncCommands as _;
        match self {
            Kept::Memory(_) => append_op(
                &self.log().unwrap(),
                serde_json::json!({"op": "set", "key": format!("call:{call_id}"), "value": "not a record"}),
            ),
            Kept::Redis(redis) => {
                let mut client = redis.client().await;
                let () = client
                    .rpush(format!("call:{call_id}"), "not a record")
                    .await
                    .unwrap();
            }
        }
    }

    /// How many claims on ends the store keeps, when it can tell (the
    /// embedded store's are looked at by its own tests).
    pub(crate) async fn claims_left(&self) -> Option<i64> {
        let Kept::Redis(redis) = self else {
            return None;
        };
        let mut client = redis.client().await;
        let claims: i64 = redis::cmd("HLEN")
            .arg("{text:active}:ending:claims")
            .query_async(&mut client)
            .await
            .unwrap();
        Some(claims)
    }

    /// Takes the unreadable record away again.
    async fn fix_call(&self, call_id: &str) {
        use redis::AsyncCommands as _;
        match self {
            Kept::Memory(_) => append_op(
                &self.log().unwrap(),
                serde_json::json!({"op": "del", "key": format!("call:{call_id}")}),
            ),
            Kept::Redis(redis) => {
                let mut client = redis.client().await;
                let () = client.del(format!("call:{call_id}")).await.unwrap();
            }
        }
    }
}

/// Appends `op` to the embedded store's log, as another process would.
fn append_op(log: &Path, op: serde_json::Value) {
    use std::io::Write as _;
    let mut file = std::fs::OpenOptions::new().append(true).open(log).unwrap();
    writeln!(file, "{op}").unwrap();
}

/// The call ids of the evaluation jobs queued so far, each as often as it
/// was queued.
async fn evaluations_queued(conversations: &TextConversations) -> Vec<String> {
    let jobs = conversations
        .runtime()
        .store()
        .read_jobs("ends-test", 10_000, Duration::ZERO)
        .await
        .unwrap();
    let mut ids: Vec<String> = jobs
        .iter()
        .map(|job| {
            let job: serde_json::Value = serde_json::from_str(&job.payload).unwrap();
            job["call_id"].as_str().unwrap().to_owned()
        })
        .collect();
    ids.sort();
    ids
}

/// The claim of a server that died at once: it holds nothing back.
pub(crate) fn lapsed() -> EndClaim {
    EndClaim {
        owner: "gone".into(),
        ttl_ms: 0,
    }
}

/// Ends noted as pending by a server that closed them and died before
/// recording them; two servers' sweeps then run at once.
async fn two_sweeps_at_once_record_each_end_once(kept: Kept) {
    const ENDS: usize = 100;
    let [a, b] = kept.sweepers();
    let store = Arc::clone(a.runtime().store());
    let mut ids = Vec::new();
    for n in 0..ENDS {
        let key = format!("chat:at-once-{n}");
        let id = format!("at-once-{n:02}");
        store
            .open_text_conversation(&key, None, &id, 1_000)
            .await
            .unwrap();
        let closed = store
            .close_text_conversation(&key, 1_000, "idle_timeout", 2_000, &lapsed())
            .await
            .unwrap();
        assert_eq!(closed.as_deref(), Some(id.as_str()));
        ids.push(id);
    }
    let ended = match kept {
        // The embedded store answers without waiting: the two sweeps run
        // on two threads, really at once.
        Kept::Memory(_) => {
            let start = Arc::new(std::sync::Barrier::new(2));
            let sweeps = [a, b].map(|sweeper| {
                let start = Arc::clone(&start);
                std::thread::spawn(move || {
                    let runtime = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .unwrap();
                    start.wait();
                    runtime.block_on(sweeper.sweep(10_000)).unwrap()
                })
            });
            sweeps.into_iter().map(|s| s.join().unwrap()).sum::<usize>()
        }
        // Each sweep waits on Redis between its steps: as two servers'.
        Kept::Redis(_) => {
            let (a, b) = tokio::join!(a.sweep(10_000), b.sweep(10_000));
            a.unwrap() + b.unwrap()
        }
    };
    let [a, _] = kept.sweepers();
    assert_eq!(
        evaluations_queued(&a).await,
        ids,
        "each end's hooks queued once"
    );
    assert_eq!(ended, ENDS);
}

#[tokio::test]
async fn two_sweeps_at_once_record_each_end_once_in_memory() {
    two_sweeps_at_once_record_each_end_once(Kept::memory()).await;
}

#[tokio::test]
async fn two_sweeps_at_once_record_each_end_once_in_redis() {
    two_sweeps_at_once_record_each_end_once(Kept::Redis(RedisServer::start())).await;
}

/// A full batch of ends that always fail, and a newer end that failed
/// once: the newer one is recorded all the same.
async fn ends_that_always_fail_hold_back_no_newer_end(kept: Kept) {
    const BROKEN: usize = 100;
    let [sweeper, _] = kept.sweepers();
    let store = Arc::clone(sweeper.runtime().store());
    let idle_ms = sweeper.section().idle_timeout_secs.duration().as_millis() as u64;
    for n in 0..BROKEN {
        let id = format!("broken-{n:03}");
        store
            .open_text_conversation(&format!("chat:broken-{n}"), None, &id, 1_000)
            .await
            .unwrap();
        kept.break_call(&id).await;
    }
    let t1 = 1_000 + idle_ms;
    assert_eq!(sweeper.sweep(t1).await.unwrap(), 0, "every end fails");
    store
        .open_text_conversation("chat:late", None, "late", t1)
        .await
        .unwrap();
    kept.break_call("late").await;
    let t2 = t1 + idle_ms;
    assert_eq!(sweeper.sweep(t2).await.unwrap(), 0, "every end fails");
    // The late end's failure was passing; the others' is not.
    kept.fix_call("late").await;
    let mut ended = 0;
    for step in 1..=4 {
        ended += sweeper.sweep(t2 + step * 10_000).await.unwrap();
    }
    assert_eq!(ended, 1, "the late end is recorded");
    assert_eq!(evaluations_queued(&sweeper).await, ["late"]);

    // The broken ends are tried until their attempts run out, then set
    // aside: listed, no longer pending, no longer tried.
    let mut now = t2 + 40_000;
    let mut sweeps = 0;
    while !store
        .pending_text_ends(u64::MAX, 1)
        .await
        .unwrap()
        .is_empty()
    {
        now += 3_600_000;
        assert_eq!(sweeper.sweep(now).await.unwrap(), 0);
        sweeps += 1;
        assert!(sweeps <= MAX_END_ATTEMPTS, "set aside after its attempts");
    }
    let set_aside = store.set_aside_text_ends(1_000).await.unwrap();
    assert_eq!(set_aside.len(), BROKEN);
    assert!(
        set_aside
            .iter()
            .all(|end| end.attempts == MAX_END_ATTEMPTS && end.at_ms == t1),
        "{set_aside:?}"
    );
    assert_eq!(sweeper.sweep(now + 3_600_000).await.unwrap(), 0);
    assert!(evaluations_queued(&sweeper).await.is_empty());
    let metrics = sweeper.render_metrics();
    for counted in [
        "voxpipe_text_ends_total{result=\"recorded\"} 1",
        "voxpipe_text_ends_total{result=\"set_aside\"} 100",
    ] {
        assert!(metrics.contains(counted), "{metrics}");
    }
}

#[tokio::test]
async fn ends_that_always_fail_hold_back_no_newer_end_in_memory() {
    ends_that_always_fail_hold_back_no_newer_end(Kept::memory()).await;
}

#[tokio::test]
async fn ends_that_always_fail_hold_back_no_newer_end_in_redis() {
    ends_that_always_fail_hold_back_no_newer_end(Kept::Redis(RedisServer::start())).await;
}

/// A pending end as the store lists it before any attempt.
pub(crate) fn untried_end(call: &str, at_ms: u64) -> TextEnd {
    TextEnd {
        call_id: call.to_owned(),
        reason: "idle_timeout".to_owned(),
        at_ms,
        attempts: 0,
    }
}
