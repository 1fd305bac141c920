//! Parallel branches: each gets a copy, outputs merge once per frame, End
//! waits for every branch, errors leave through the session's source.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::time::Duration;

use async_trait::async_trait;
use voxpipe::frame::{AudioFrame, Direction, Frame, FrameBody};
use voxpipe::pipeline::NamedProcessor;
use voxpipe::pipeline::{Processor, ProcessorContext, ProcessorError};
use voxpipe::pipeline_file::parse_pipeline;
use voxpipe::processors::{AudioSelector, Gain, Parallel, Passthrough, ProcessorRegistry};
use voxpipe::testing::run_test;

fn audio(level: i16) -> FrameBody {
    FrameBody::InputAudio(AudioFrame::from_samples(
        &[level; 320],
        16_000,
        1,
        Duration::ZERO,
    ))
}

fn level(frame: &Frame) -> Option<i16> {
    match &frame.body {
        FrameBody::InputAudio(a) => a.samples().first().copied(),
        _ => None,
    }
}

#[tokio::test]
async fn each_branch_gets_a_copy_and_unchanged_frames_merge_once() {
    let parallel = Parallel::new(vec![
        vec![NamedProcessor::new(
            "quiet",
            Gain::new(-6.0206, AudioSelector::Input),
        )],
        vec![NamedProcessor::new("same", Passthrough)],
    ]);
    let out = run_test(
        vec![NamedProcessor::new("parallel", parallel)],
        vec![audio(1000), FrameBody::Text("hello".into())],
    )
    .await;
    let mut levels: Vec<i16> = out.downstream.iter().filter_map(level).collect();
    levels.sort_unstable();
    assert_eq!(
        levels,
        [500, 1000],
        "the changed copy and the original, once each"
    );
    let texts = out
        .downstream
        .iter()
        .filter(|f| matches!(f.body, FrameBody::Text(_)))
        .count();
    assert_eq!(texts, 1, "a frame both branches pass on is pushed once");
    assert_eq!(out.downstream_names().last(), Some(&"End"));
}

/// Emits `count` texts from a child task whenever it sees a text, slowly.
struct Echoes {
    count: usize,
    task: Option<tokio::task::JoinHandle<()>>,
}

#[async_trait]
impl Processor for Echoes {
    async fn process(
        &mut self,
        frame: Frame,
        direction: Direction,
        ctx: &ProcessorContext,
    ) -> Result<(), ProcessorError> {
        if let FrameBody::Text(_) = frame.body {
            let ctx = ctx.clone();
            let count = self.count;
            self.task = Some(tokio::spawn(async move {
                for i in 0..count {
                    tokio::task::yield_now().await;
                    ctx.push_downstream(FrameBody::LlmText(i.to_string())).await;
                }
            }));
        }
        ctx.push(frame, direction).await;
        Ok(())
    }

    async fn on_end(&mut self, _ctx: &ProcessorContext) -> Result<(), ProcessorError> {
        if let Some(task) = self.task.take() {
            task.await.unwrap();
        }
        Ok(())
    }
}

#[tokio::test]
async fn end_waits_for_every_branch_to_drain() {
    let parallel = Parallel::new(vec![
        vec![NamedProcessor::new(
            "a",
            Echoes {
                count: 300,
                task: None,
            },
        )],
        vec![NamedProcessor::new(
            "b",
            Echoes {
                count: 5,
                task: None,
            },
        )],
    ]);
    let out = run_test(
        vec![NamedProcessor::new("parallel", parallel)],
        vec![FrameBody::Text("go".into())],
    )
    .await;
    let names = out.downstream_names();
    let echoes = names.iter().filter(|n| **n == "LlmText").count();
    assert_eq!(echoes, 305);
    assert_eq!(names.last(), Some(&"End"));
    assert_eq!(names.iter().filter(|n| **n == "End").count(), 1);
}

struct FailOnText;

#[async_trait]
impl Processor for FailOnText {
    async fn process(
        &mut self,
        frame: Frame,
        direction: Direction,
        ctx: &ProcessorContext,
    ) -> Result<(), ProcessorError> {
        if let FrameBody::Text(_) = frame.body {
            return Err(ProcessorError::fatal("branch broke"));
        }
        ctx.push(frame, direction).await;
        Ok(())
    }
}

#[tokio::test]
async fn a_fatal_error_in_a_branch_ends_the_session() {
    let parallel = Parallel::new(vec![
        vec![NamedProcessor::new("fails", FailOnText)],
        vec![NamedProcessor::new("fine", Passthrough)],
    ]);
    let out = run_test(
        vec![NamedProcessor::new("parallel", parallel)],
        vec![FrameBody::Text("boom".into())],
    )
    .await;
    assert!(out.outcome.cancelled, "{:?}", out.outcome);
    let error = out
        .outcome
        .fatal_error
        .clone()
        .expect("the branch error ended it");
    assert_eq!(&*error.processor, "fails");
    assert!(out.upstream_names().contains(&"Error"));
}

#[tokio::test]
async fn branches_are_read_from_toml_with_errors_naming_their_keys() {
    let registry = ProcessorRegistry::builtin();
    let good = "[pipeline]\nname = \"p\"\n\n[[processor]]\ntype = \"parallel\"\nbranches = [\n  [{ type = \"gain\", gain_db = -6 }],\n  [{ type = \"passthrough\" }, { type = \"passthrough\" }],\n]\n";
    let config = parse_pipeline(Path::new("p.toml"), good, &registry).unwrap();
    assert_eq!(config.processors[0].name, "parallel");
    let processor = config.processors[0]
        .factory
        .build(&config.session_setup("s"))
        .unwrap();
    let out = run_test(
        vec![NamedProcessor {
            name: "parallel".into(),
            processor,
        }],
        vec![audio(1000)],
    )
    .await;
    assert_eq!(out.downstream.iter().filter_map(level).count(), 2);

    let bad = good.replace("gain_db", "gain_dbb");
    let errors = parse_pipeline(Path::new("p.toml"), &bad, &registry).unwrap_err();
    let message = errors.to_string();
    assert!(
        message.starts_with(
            "p.toml:7:21: key `processor.0.branches.0.0.gain_dbb`: unknown key `gain_dbb`"
        ),
        "{message}"
    );
    let missing = "[pipeline]\nname = \"p\"\n[[processor]]\ntype = \"parallel\"\n";
    let message = parse_pipeline(Path::new("p.toml"), missing, &registry)
        .unwrap_err()
        .to_string();
    assert!(
        message.contains("key `processor.0.branches`: missing required key `branches`"),
        "{message}"
    );
}
