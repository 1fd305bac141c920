//! Sessions over a WAV file, through the library: pacing, alignment, and
//! errors at session start.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::support;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use voxpipe::pipeline::Processor;
use voxpipe::pipeline::ProcessorFactory;
use voxpipe::pipeline::{BuildError, EnvSource, SessionSetup};
use voxpipe::pipeline::{NamedProcessor, SessionClock};
use voxpipe::pipeline_file::parse_pipeline;
use voxpipe::processors::{Passthrough, ProcessorRegistry};
use voxpipe::session::{SessionError, SessionOptions, run_session};
use voxpipe::testing::RecordingObserver;
use voxpipe::transport::TransportEnds;
use voxpipe::transport::file::{FileInput, WavSink};
use voxpipe::transport::{OutputTransport, Pacing};

const PARROT: &str = "[pipeline]\nname = \"p\"\n\n[[processor]]\ntype = \"parrot\"\n";

fn tone(samples: usize) -> Vec<i16> {
    support::signal::sine(440.0, 16_000, samples, 6_000.0)
}

async fn run_parrot(out: &Path, realtime: bool) -> Vec<i16> {
    let config =
        parse_pipeline(Path::new("p.toml"), PARROT, &ProcessorRegistry::builtin()).unwrap();
    let input = tone(16_000 / 2);
    let ends = TransportEnds {
        input: NamedProcessor::new("in", FileInput::new(input, 16_000, realtime)),
        output: NamedProcessor::new(
            "out",
            OutputTransport::new(
                WavSink::create(out, 16_000).unwrap(),
                Pacing::InboundAudio { realtime },
            ),
        ),
    };
    let report = run_session(
        &config.processors,
        ends,
        SessionOptions {
            setup: config.session_setup("s"),
            clock: SessionClock::audio(),
            observers: vec![],
            memory: None,
        },
    )
    .await
    .unwrap();
    assert_eq!(report.end_reason, "end_of_input");
    assert!(report.fatal_error.is_none());
    assert_eq!(report.duration, Duration::from_secs(1));
    hound::WavReader::open(out)
        .unwrap()
        .into_samples()
        .map(Result::unwrap)
        .collect()
}

#[tokio::test(start_paused = true)]
async fn realtime_and_fast_runs_write_the_same_output() {
    let dir = tempfile::tempdir().unwrap();
    let started = tokio::time::Instant::now();
    let realtime = run_parrot(&dir.path().join("rt.wav"), true).await;
    // Half a second of input, then half a second of echo, paced.
    assert!(started.elapsed() >= Duration::from_secs(1));
    let fast = run_parrot(&dir.path().join("fast.wav"), false).await;
    assert_eq!(realtime.len(), 16_000);
    assert_eq!(realtime, fast);
    assert_eq!(&fast[8_000..], &tone(8_000)[..]);
}

/// A processor type that needs a key from the environment.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyedConfig {
    api_key_env: String,
}

impl ProcessorFactory for KeyedConfig {
    fn build(&self, setup: &SessionSetup) -> Result<Box<dyn Processor>, BuildError> {
        setup.env_var("api_key_env", &self.api_key_env)?;
        Ok(Box::new(Passthrough))
    }
}

#[tokio::test]
async fn an_unset_env_variable_fails_the_session_start_naming_it() {
    let mut registry = ProcessorRegistry::builtin();
    registry.register::<KeyedConfig>("keyed");
    let text = "[pipeline]\nname = \"k\"\n\n[[processor]]\ntype = \"keyed\"\napi_key_env = \"VOXPIPE_TEST_KEY\"\n";
    // Checking needs no secrets.
    let config = parse_pipeline(Path::new("k.toml"), text, &registry).unwrap();
    let run = |env: EnvSource| {
        let config = config.clone();
        async move {
            let mut setup = config.session_setup("s");
            setup.env = env;
            let recorder = RecordingObserver::new();
            run_session(
                &config.processors,
                TransportEnds {
                    input: NamedProcessor::new(
                        "in",
                        FileInput::new(vec![0i16; 320], 16_000, false),
                    ),
                    output: NamedProcessor::new("out", Passthrough),
                },
                SessionOptions {
                    setup,
                    clock: SessionClock::audio(),
                    observers: vec![recorder],
                    memory: None,
                },
            )
            .await
        }
    };
    let err = run(EnvSource::Fixed(Arc::default())).await.unwrap_err();
    let SessionError::Build { processor, source } = &err else {
        panic!("{err}");
    };
    assert_eq!(processor, "keyed");
    assert!(matches!(source, BuildError::MissingEnv { var, .. } if var == "VOXPIPE_TEST_KEY"));
    assert_eq!(
        err.to_string(),
        "processor `keyed`: environment variable VOXPIPE_TEST_KEY (named by `api_key_env`) is not set"
    );
    let vars = [("VOXPIPE_TEST_KEY".to_owned(), "secret".to_owned())];
    let report = run(EnvSource::Fixed(Arc::new(vars.into_iter().collect())))
        .await
        .unwrap();
    assert_eq!(report.end_reason, "end_of_input");
}
