//! Cartesia WebSocket TTS (`/tts/websocket`): `[[processor]] type = "tts",
//! provider = "cartesia"`.
//!
//! A context per response: each sentence is a generation request with the
//! response's `context_id` and `continue: true`, so prosody carries across
//! sentences; an empty transcript with `continue: false` ends it (the
//! server answers `done` after the last chunk); `cancel: true` drops it on
//! an interruption. Audio comes base64 in `chunk` messages; word timestamps
//! (`add_timestamps`) come in `timestamps` messages, in seconds from the
//! start of the context's audio.

use base64::Engine as _;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::frame::SpokenTiming;
use crate::pipeline::Processor;
use crate::pipeline::ProcessorFactory;
use crate::pipeline::{BuildError, SessionSetup};
use crate::services::timestamp::provider_seconds;
use crate::services::url::check_ws_url;
use crate::services::websocket::WsTarget;
use crate::services::{ApiKey, ConnectionOptions, ServiceError};

use super::openai::check_rate;
use super::service::TtsService;
use super::wire::WireEvent;
use super::ws_speech::WsSpeech;
use super::ws_wire::WsWire;

/// `[[processor]] type = "tts", provider = "cartesia"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CartesiaTtsConfig {
    /// The socket URL. Default `wss://api.cartesia.ai/tts/websocket`.
    #[serde(default = "default_url")]
    pub url: String,
    /// The API version (`cartesia_version`). Default `2025-04-16`.
    #[serde(default = "default_version")]
    pub version: String,
    /// The voice id.
    pub voice_id: String,
    /// The model. Default `sonic-2`.
    #[serde(default = "default_model")]
    pub model: String,
    /// The language. Default `en`.
    #[serde(default = "default_language")]
    pub language: String,
    /// The variable holding the API key (`X-API-Key`).
    #[serde(default = "default_key_env")]
    pub api_key_env: String,
    /// PCM rate asked for. Default 16000.
    #[serde(default = "default_rate")]
    pub sample_rate: u32,
    /// Timeouts and retries.
    #[serde(default)]
    pub connection: ConnectionOptions,
}

fn default_url() -> String {
    "wss://api.cartesia.ai/tts/websocket".to_owned()
}

fn default_version() -> String {
    "2025-04-16".to_owned()
}

fn default_model() -> String {
    "sonic-2".to_owned()
}

fn default_language() -> String {
    "en".to_owned()
}

fn default_key_env() -> String {
    "CARTESIA_API_KEY".to_owned()
}

fn default_rate() -> u32 {
    16_000
}

impl ProcessorFactory for CartesiaTtsConfig {
    fn build(&self, setup: &SessionSetup) -> Result<Box<dyn Processor>, BuildError> {
        check_ws_url("url", &self.url)?;
        check_rate(self.sample_rate)?;
        let separator = if self.url.contains('?') { '&' } else { '?' };
        let speech = CartesiaSpeech {
            url: format!("{}{separator}cartesia_version={}", self.url, self.version),
            api_key: ApiKey::new(setup.env_var("api_key_env", &self.api_key_env)?),
            model: self.model.clone(),
            voice_id: self.voice_id.clone(),
            language: self.language.clone(),
            sample_rate: self.sample_rate,
        };
        let wire = WsWire::new(speech, self.connection.resolve()?);
        Ok(Box::new(TtsService::new(Box::new(wire))))
    }
}

/// The Cartesia context protocol. See the module docs.
#[derive(Debug)]
pub(crate) struct CartesiaSpeech {
    url: String,
    api_key: ApiKey,
    model: String,
    voice_id: String,
    language: String,
    sample_rate: u32,
}

impl CartesiaSpeech {
    /// The protocol with a made-up key, for tests from fixtures and the
    /// fuzz targets (`fuzz/`).
    pub(crate) fn fixture() -> Self {
        CartesiaSpeech {
            url: "wss://x".into(),
            api_key: ApiKey::new("k"),
            model: "sonic-2".into(),
            voice_id: "v".into(),
            language: "en".into(),
            sample_rate: 16_000,
        }
    }
}

#[derive(Deserialize)]
struct Reply {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    context_id: Option<String>,
    #[serde(default)]
    data: Option<String>,
    #[serde(default)]
    done: bool,
    #[serde(default)]
    word_timestamps: Option<WordTimestamps>,
    #[serde(default)]
    error: Option<Value>,
    #[serde(default)]
    message: Option<String>,
    #[serde(default)]
    title: Option<String>,
}

#[derive(Deserialize)]
struct WordTimestamps {
    words: Vec<String>,
    start: Vec<f64>,
}

impl CartesiaSpeech {
    fn generation(&self, context: &str, transcript: &str, more: bool) -> String {
        json!({
            "model_id": self.model,
            "transcript": transcript,
            "voice": {"mode": "id", "id": self.voice_id},
            "language": self.language,
            "context_id": context,
            "output_format": {"container": "raw", "encoding": "pcm_s16le", "sample_rate": self.sample_rate},
            "add_timestamps": true,
            "continue": more,
        })
        .to_string()
    }
}

impl WsSpeech for CartesiaSpeech {
    fn provider(&self) -> &'static str {
        "cartesia"
    }

    /// A second after its last audio (Cartesia's docs, "Contexts").
    fn contexts_expire(&self) -> bool {
        true
    }

    fn sample_rate(&self) -> u32 {
        self.sample_rate
    }

    fn target(&self) -> WsTarget {
        WsTarget {
            url: self.url.clone(),
            headers: vec![("x-api-key", self.api_key.expose().to_owned())],
        }
    }

    fn text(&self, context: &str, text: &str, _first: bool) -> Vec<String> {
        // Transcripts are joined verbatim: keep the space between sentences.
        vec![self.generation(context, &format!("{text} "), true)]
    }

    fn finish(&self, context: &str) -> Vec<String> {
        vec![self.generation(context, "", false)]
    }

    fn cancel(&self, context: &str) -> Vec<String> {
        vec![json!({"context_id": context, "cancel": true}).to_string()]
    }

    fn close(&self) -> Option<String> {
        None
    }

    fn parse(&mut self, message: &str) -> Result<Vec<WireEvent>, ServiceError> {
        let reply: Reply = serde_json::from_str(message)
            .map_err(|e| ServiceError::Protocol(format!("not a Cartesia message ({e})")))?;
        let context = reply.context_id.unwrap_or_default();
        let mut events = Vec::new();
        match reply.kind.as_str() {
            "chunk" => {
                if let Some(data) = reply.data.filter(|d| !d.is_empty()) {
                    let pcm = base64::engine::general_purpose::STANDARD
                        .decode(data.as_bytes())
                        .map_err(|e| ServiceError::Protocol(format!("audio is not base64: {e}")))?;
                    events.push(WireEvent::Audio {
                        context: context.clone(),
                        pcm: pcm.into(),
                    });
                }
            }
            "timestamps" => {
                if let Some(words) = reply.word_timestamps {
                    for (word, start) in words.words.into_iter().zip(words.start) {
                        events.push(WireEvent::Text {
                            context: context.clone(),
                            text: word,
                            start: Some(provider_seconds(start)),
                            timing: SpokenTiming::Word,
                        });
                    }
                }
            }
            "error" => {
                let text = reply
                    .message
                    .or(reply.title)
                    .or_else(|| {
                        reply
                            .error
                            .as_ref()
                            .and_then(Value::as_str)
                            .map(str::to_owned)
                    })
                    .unwrap_or_else(|| "Cartesia reported an error".to_owned());
                events.push(WireEvent::Failed {
                    context: (!context.is_empty()).then(|| context.clone()),
                    error: ServiceError::Remote(text),
                });
            }
            _ => {} // done, flush_done, phoneme_timestamps
        }
        if reply.done && !context.is_empty() {
            events.push(WireEvent::Done { context });
        }
        Ok(events)
    }

    fn reset(&mut self) {}
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn speech() -> CartesiaSpeech {
        CartesiaSpeech::fixture()
    }

    #[test]
    fn sentences_continue_one_context_and_an_empty_transcript_ends_it() {
        let s = speech();
        let sent: Value = serde_json::from_str(&s.text("c1", "Hi.", true)[0]).unwrap();
        assert_eq!(sent["transcript"], json!("Hi. "));
        assert_eq!(sent["continue"], json!(true));
        assert_eq!(sent["context_id"], json!("c1"));
        assert_eq!(
            sent["output_format"],
            json!({"container": "raw", "encoding": "pcm_s16le", "sample_rate": 16000})
        );
        let end: Value = serde_json::from_str(&s.finish("c1")[0]).unwrap();
        assert_eq!(
            (end["transcript"].clone(), end["continue"].clone()),
            (json!(""), json!(false))
        );
        assert_eq!(
            serde_json::from_str::<Value>(&s.cancel("c1")[0]).unwrap(),
            json!({"context_id": "c1", "cancel": true})
        );
    }

    #[test]
    fn chunks_timestamps_done_and_errors_are_parsed() {
        let mut s = speech();
        let chunk = r#"{"type":"chunk","data":"AAABAA==","done":false,"status_code":206,"step_time":12,"context_id":"c1"}"#;
        assert!(
            matches!(&s.parse(chunk).unwrap()[..], [WireEvent::Audio { pcm, .. }] if pcm.len() == 4)
        );
        let stamps = r#"{"type":"timestamps","done":false,"status_code":206,"context_id":"c1","word_timestamps":{"words":["Hello","world"],"start":[0,0.5],"end":[0.4,0.9]}}"#;
        let events = s.parse(stamps).unwrap();
        assert!(
            matches!(&events[1], WireEvent::Text { text, start: Some(t), .. }
            if text == "world" && *t == Duration::from_millis(500))
        );
        let done = r#"{"type":"done","done":true,"status_code":206,"context_id":"c1"}"#;
        assert!(
            matches!(&s.parse(done).unwrap()[..], [WireEvent::Done { context }] if context == "c1")
        );
        let error = r#"{"type":"error","done":true,"title":"Invalid model","message":"The model is not valid.","error_code":"model_not_found","status_code":400,"context_id":"c1"}"#;
        let events = s.parse(error).unwrap();
        assert!(
            matches!(&events[0], WireEvent::Failed { error, .. } if error.to_string() == "The model is not valid.")
        );
        assert!(matches!(&events[1], WireEvent::Done { .. }));
        assert!(
            s.parse(r#"{"type":"flush_done","done":false,"context_id":"c1"}"#)
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn absurd_word_times_do_not_panic() {
        let stamps = r#"{"type":"timestamps","done":false,"context_id":"c1","word_timestamps":{"words":["far","back"],"start":[1e300,-2],"end":[1e300,0]}}"#;
        let events = speech().parse(stamps).unwrap();
        assert!(
            matches!(&events[..], [WireEvent::Text { start: Some(far), .. }, WireEvent::Text { start: Some(back), .. }]
            if *far == Duration::MAX && back.is_zero())
        );
    }
}
