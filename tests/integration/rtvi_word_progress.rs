//! A word-timing TTS's words as an RTVI protocol 2 client sees them: the
//! output transport reports each word as its audio plays (not when the TTS
//! timed it), the session's events carry it, and `RtviSession` turns it
//! into `bot-output` progress; an interruption stops it. The real output
//! transport on the session clock (paused tokio time), an observer
//! standing in for the WebRTC relay.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};
use voxpipe::events::SessionEvents;
use voxpipe::frame::{AudioFrame, FrameBody, SpokenText, SpokenTiming};
use voxpipe::pipeline::{
    NamedProcessor, Observer, PipelineHandle, PipelineParams, PipelineTask, ProcessorError,
    PushEvent, SessionClock,
};
use voxpipe::transport::rtvi::{RtviSession, parse_rtvi};
use voxpipe::transport::{AudioSink, OutputTransport, Pacing, SendAhead};

/// A far end that plays what it gets.
struct Speaker;

impl AudioSink for Speaker {
    fn write(&mut self, _audio: &AudioFrame) -> Result<(), ProcessorError> {
        Ok(())
    }
}

/// The page of a protocol 2 client: the session's events as RTVI, each
/// message with the session time it was sent.
struct Page {
    events: SessionEvents,
    rtvi: Mutex<RtviSession>,
    sent: Mutex<Vec<(Duration, Value)>>,
    /// The words the output reported heard.
    heard: Mutex<Vec<String>>,
}

impl Observer for Page {
    fn on_push(&self, push: &PushEvent<'_>) {
        self.events.on_push(push, |name, fields| {
            if name == "bot_word_heard" {
                let text = fields["text"].as_str().unwrap().to_owned();
                self.heard.lock().unwrap().push(text);
            }
            let mut rtvi = self.rtvi.lock().unwrap();
            rtvi.handle_event(name, &fields, 0);
            while let Some(message) = rtvi.poll_transmit() {
                let message = serde_json::from_str(&message).unwrap();
                self.sent.lock().unwrap().push((push.at, message));
            }
        });
    }
}

impl Page {
    /// `(ms, spoken_status, accumulated_text)` of each `bot-output`.
    fn outputs(&self) -> Vec<(u128, String, String)> {
        let sent = self.sent.lock().unwrap();
        sent.iter()
            .filter(|(_, m)| m["type"] == "bot-output")
            .map(|(at, m)| {
                let data = &m["data"];
                (
                    at.as_millis(),
                    data["spoken_status"].as_str().unwrap().to_owned(),
                    data["spoken_progress"]["accumulated_text"]
                        .as_str()
                        .unwrap()
                        .to_owned(),
                )
            })
            .collect()
    }

    fn types(&self) -> Vec<String> {
        let sent = self.sent.lock().unwrap();
        sent.iter()
            .map(|(_, m)| m["type"].as_str().unwrap().to_owned())
            .collect()
    }
}

fn start() -> (PipelineHandle, tokio::task::JoinHandle<()>, Arc<Page>) {
    let mut rtvi = RtviSession::new("s1".into());
    let ready = json!({"label": "rtvi-ai", "type": "client-ready", "id": "r",
        "data": {"version": "2.1.0", "about": {"library": "@pipecat-ai/client-js"}}});
    rtvi.handle_inbound(parse_rtvi(&ready).unwrap(), Duration::ZERO);
    while rtvi.poll_transmit().is_some() {}
    let page = Arc::new(Page {
        events: SessionEvents::default(),
        rtvi: Mutex::new(rtvi),
        sent: Mutex::default(),
        heard: Mutex::default(),
    });
    let clock = SessionClock::wall();
    let output = OutputTransport::new(
        Speaker,
        Pacing::Timer {
            period: Duration::from_millis(20),
            send_ahead: SendAhead::NONE,
        },
    );
    let mut params = PipelineParams::new("test", 16_000);
    params.clock = clock;
    params
        .observers
        .push(Arc::clone(&page) as Arc<dyn Observer>);
    let task = PipelineTask::new(vec![NamedProcessor::new("out", output)], params);
    let handle = task.handle();
    let running = tokio::spawn(async move {
        task.run().await;
    });
    (handle, running, page)
}

/// A word `ms` into its response's audio.
fn word(text: &str, ms: u64) -> FrameBody {
    FrameBody::TtsText(SpokenText {
        text: text.into(),
        start: Duration::from_millis(ms),
        timing: SpokenTiming::Word,
    })
}

/// `ms` of bot audio in one piece (a TTS chunk).
fn audio(ms: usize) -> FrameBody {
    FrameBody::OutputAudio(AudioFrame::from_samples(
        &vec![1_000; 16 * ms],
        16_000,
        1,
        Duration::ZERO,
    ))
}

#[tokio::test(start_paused = true)]
async fn each_word_is_reported_to_a_protocol_2_client_when_its_audio_plays() {
    let (handle, running, page) = start();
    // The TTS's audio (half a second, one chunk) plays from 0; its words'
    // times come 100 ms later (as Cartesia's follow its audio), long
    // before the second word plays.
    handle.queue_frame(FrameBody::TtsStarted).await;
    handle.queue_frame(audio(500)).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    for frame in [word("Hello", 0), word("world.", 300), FrameBody::TtsStopped] {
        handle.queue_frame(frame).await;
    }
    tokio::time::sleep(Duration::from_millis(150)).await;
    let out = |ms: u128, status: &str, heard: &str| (ms, status.to_owned(), heard.to_owned());
    assert_eq!(
        page.outputs(),
        [out(100, "new", ""), out(100, "in-progress", "Hello")],
        "the first word as soon as it is known, nothing of the second before its audio plays"
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    let outputs = page.outputs();
    assert_eq!(outputs.len(), 3, "{outputs:?}");
    let (at, status, heard) = &outputs[2];
    assert_eq!(
        (status.as_str(), heard.as_str()),
        ("completed", "Hello world.")
    );
    assert!(
        (300..=340).contains(at),
        "the last word is heard at 300 ms (at most 40 late), not at {at} ms"
    );
    // Marked spoken by its words, once: the bot's stop adds none.
    assert_eq!(
        page.types(),
        [
            "bot-tts-started",
            "bot-started-speaking",
            "bot-tts-text",
            "bot-tts-text",
            "bot-output",
            "bot-tts-stopped",
            "bot-output",
            "bot-output",
            "bot-stopped-speaking"
        ]
    );
    handle.end("done").await;
    running.await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn an_interruption_stops_the_progress_of_what_it_cut() {
    let (handle, running, page) = start();
    for frame in [
        FrameBody::TtsStarted,
        word("Let", 0),
        word("me", 200),
        word("explain.", 400),
        audio(600),
        FrameBody::TtsStopped,
    ] {
        handle.queue_frame(frame).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    handle.queue_frame(FrameBody::Interruption).await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    let heard: Vec<(String, String)> = page
        .outputs()
        .into_iter()
        .map(|(_, status, heard)| (status, heard))
        .collect();
    let pair = |status: &str, heard: &str| (status.to_owned(), heard.to_owned());
    assert_eq!(
        heard,
        [
            pair("new", ""),
            pair("in-progress", "Let"),
            pair("in-progress", "Let me")
        ],
        "the cut word is never heard, the sentence never spoken"
    );
    assert_eq!(*page.heard.lock().unwrap(), ["Let", "me"]);
    assert!(page.types().contains(&"bot-interrupted".to_owned()));
    handle.end("done").await;
    running.await.unwrap();
}
