//! ElevenLabs multi-context WebSocket TTS
//! (`/v1/text-to-speech/{voice_id}/multi-stream-input`):
//! `[[processor]] type = "tts", provider = "elevenlabs"`.
//!
//! A context per response: its first message opens it (`"text": " "`), each
//! sentence is sent with `flush` so it is spoken at once, `close_context`
//! ends it (the server answers `isFinal` after the last audio; sent only
//! once audio has come after the last sentence, as a close ahead of the
//! synthesis is honoured with none: see `context_socket`) and also drops
//! it on an interruption. Audio comes base64 in `audio`, with a
//! character alignment relative to that chunk, turned here into timed
//! words placed in the context's audio.

use std::collections::HashMap;
use std::time::Duration;

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
use super::ws_speech::{WsSpeech, counted_chars};
use super::ws_wire::WsWire;

/// `[[processor]] type = "tts", provider = "elevenlabs"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ElevenLabsTtsConfig {
    /// The socket root. Default `wss://api.elevenlabs.io`.
    #[serde(default = "default_base_url")]
    pub base_url: String,
    /// The voice id.
    pub voice_id: String,
    /// The model. Default `eleven_flash_v2_5`.
    #[serde(default = "default_model")]
    pub model: String,
    /// The variable holding the API key (`xi-api-key`).
    #[serde(default = "default_key_env")]
    pub api_key_env: String,
    /// PCM rate asked for: 8000, 16000, 22050, 24000 or 44100. Default
    /// 16000.
    #[serde(default = "default_rate")]
    pub sample_rate: u32,
    /// Voice settings sent when a context opens (`stability`,
    /// `similarity_boost`, `speed`, ...), as the API names them.
    #[serde(default)]
    pub voice_settings: Option<toml::Table>,
    /// Timeouts and retries.
    #[serde(default)]
    pub connection: ConnectionOptions,
}

fn default_base_url() -> String {
    "wss://api.elevenlabs.io".to_owned()
}

fn default_model() -> String {
    "eleven_flash_v2_5".to_owned()
}

fn default_key_env() -> String {
    "ELEVENLABS_API_KEY".to_owned()
}

fn default_rate() -> u32 {
    16_000
}

impl ProcessorFactory for ElevenLabsTtsConfig {
    fn build(&self, setup: &SessionSetup) -> Result<Box<dyn Processor>, BuildError> {
        check_ws_url("base_url", &self.base_url)?;
        if ![8_000, 16_000, 22_050, 24_000, 44_100].contains(&self.sample_rate) {
            return Err(BuildError::Invalid(format!(
                "sample_rate must be 8000, 16000, 22050, 24000 or 44100, not {}",
                self.sample_rate
            )));
        }
        check_rate(self.sample_rate)?;
        let voice_settings = match &self.voice_settings {
            Some(table) => Some(
                serde_json::to_value(table)
                    .map_err(|e| BuildError::Invalid(format!("voice_settings: {e}")))?,
            ),
            None => None,
        };
        // ElevenLabs closes a socket idle for 20 s by default: the one
        // opened at the session's start would be gone by the first reply
        // to a user who talks longer, and a context waiting on a long tool
        // call would be closed under it. 180 s is the most it allows.
        const INACTIVITY_TIMEOUT_SECS: u32 = 180;
        let speech = ElevenLabsSpeech {
            url: format!(
                "{}/v1/text-to-speech/{}/multi-stream-input?model_id={}&output_format=pcm_{}&sync_alignment=true&auto_mode=true&inactivity_timeout={INACTIVITY_TIMEOUT_SECS}",
                self.base_url.trim_end_matches('/'),
                self.voice_id,
                self.model,
                self.sample_rate
            ),
            api_key: ApiKey::new(setup.env_var("api_key_env", &self.api_key_env)?),
            sample_rate: self.sample_rate,
            voice_settings,
            contexts: HashMap::new(),
        };
        let wire = WsWire::new(speech, self.connection.resolve()?);
        Ok(Box::new(TtsService::new(Box::new(wire))))
    }
}

/// Per context: audio received so far, and a word cut between chunks.
#[derive(Debug, Default)]
struct ContextState {
    audio_bytes: usize,
    /// Characters (whitespace aside) the audio was aligned with so far.
    aligned: Option<usize>,
    partial: String,
    partial_start: Duration,
}

/// The ElevenLabs multi-context protocol. See the module docs.
#[derive(Debug)]
pub(crate) struct ElevenLabsSpeech {
    url: String,
    api_key: ApiKey,
    sample_rate: u32,
    voice_settings: Option<Value>,
    contexts: HashMap<String, ContextState>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Reply {
    #[serde(default)]
    audio: Option<String>,
    #[serde(default)]
    alignment: Option<Alignment>,
    #[serde(default)]
    is_final: Option<bool>,
    #[serde(default)]
    context_id: Option<String>,
    #[serde(default)]
    error: Option<Value>,
    #[serde(default)]
    message: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Alignment {
    chars: Vec<String>,
    char_start_times_ms: Vec<f64>,
}

impl ElevenLabsSpeech {
    /// The protocol with a made-up key, for tests from fixtures and the
    /// fuzz targets (`fuzz/`).
    pub(crate) fn fixture() -> Self {
        ElevenLabsSpeech {
            url: "wss://x".into(),
            api_key: ApiKey::new("k"),
            sample_rate: 16_000,
            voice_settings: Some(json!({"stability": 0.5})),
            contexts: HashMap::new(),
        }
    }

    fn duration_of(&self, bytes: usize) -> Duration {
        Duration::from_secs_f64(bytes as f64 / 2.0 / f64::from(self.sample_rate))
    }
}

impl WsSpeech for ElevenLabsSpeech {
    fn provider(&self) -> &'static str {
        "elevenlabs"
    }

    fn sample_rate(&self) -> u32 {
        self.sample_rate
    }

    fn close_waits_for_audio(&self) -> bool {
        // A `close_context` ahead of the synthesis is honoured with no
        // audio (Pipecat issues #4681, #5271).
        true
    }

    fn aligned_chars(&self, context: &str) -> Option<usize> {
        self.contexts.get(context).and_then(|state| state.aligned)
    }

    fn target(&self) -> WsTarget {
        WsTarget {
            url: self.url.clone(),
            headers: vec![("xi-api-key", self.api_key.expose().to_owned())],
        }
    }

    fn text(&self, context: &str, text: &str, first: bool) -> Vec<String> {
        let mut messages = Vec::with_capacity(2);
        if first {
            let mut open = json!({"text": " ", "context_id": context});
            if let Some(settings) = &self.voice_settings {
                open["voice_settings"] = settings.clone();
            }
            messages.push(open.to_string());
        }
        messages.push(
            json!({"text": format!("{text} "), "context_id": context, "flush": true}).to_string(),
        );
        messages
    }

    fn finish(&self, context: &str) -> Vec<String> {
        vec![json!({"context_id": context, "close_context": true}).to_string()]
    }

    fn cancel(&self, context: &str) -> Vec<String> {
        self.finish(context)
    }

    fn close(&self) -> Option<String> {
        Some(json!({"close_socket": true}).to_string())
    }

    fn parse(&mut self, message: &str) -> Result<Vec<WireEvent>, ServiceError> {
        let reply: Reply = serde_json::from_str(message)
            .map_err(|e| ServiceError::Protocol(format!("not an ElevenLabs message ({e})")))?;
        if let Some(error) = reply.error {
            let text = reply
                .message
                .or_else(|| error.as_str().map(str::to_owned))
                .unwrap_or_else(|| error.to_string());
            return Ok(vec![WireEvent::Failed {
                context: reply.context_id,
                error: ServiceError::Remote(text),
            }]);
        }
        let Some(context) = reply.context_id else {
            return Ok(Vec::new());
        };
        let mut events = Vec::new();
        let chunk_start = {
            let state = self.contexts.entry(context.clone()).or_default();
            state.audio_bytes
        };
        if let Some(audio) = reply.audio.filter(|a| !a.is_empty()) {
            let pcm = base64::engine::general_purpose::STANDARD
                .decode(audio.as_bytes())
                .map_err(|e| ServiceError::Protocol(format!("audio is not base64: {e}")))?;
            if let Some(state) = self.contexts.get_mut(&context) {
                state.audio_bytes += pcm.len();
            }
            events.push(WireEvent::Audio {
                context: context.clone(),
                pcm: pcm.into(),
            });
        }
        if let Some(alignment) = reply.alignment {
            let offset = self.duration_of(chunk_start);
            let state = self.contexts.entry(context.clone()).or_default();
            let chars: usize = alignment.chars.iter().map(|c| counted_chars(c)).sum();
            state.aligned = Some(state.aligned.unwrap_or(0).saturating_add(chars));
            for (word, start) in words(state, &alignment, offset) {
                events.push(WireEvent::Text {
                    context: context.clone(),
                    text: word,
                    start: Some(start),
                    timing: SpokenTiming::Word,
                });
            }
        }
        if reply.is_final == Some(true) {
            if let Some(mut state) = self.contexts.remove(&context)
                && !state.partial.is_empty()
            {
                events.push(WireEvent::Text {
                    context: context.clone(),
                    text: std::mem::take(&mut state.partial),
                    start: Some(state.partial_start),
                    timing: SpokenTiming::Word,
                });
            }
            events.push(WireEvent::Done { context });
        }
        Ok(events)
    }

    fn reset(&mut self) {
        self.contexts.clear();
    }
}

/// Whole words of a chunk's character alignment, placed `offset` into the
/// context's audio; a word still open at the chunk's end waits for the
/// next chunk.
fn words(
    state: &mut ContextState,
    alignment: &Alignment,
    offset: Duration,
) -> Vec<(String, Duration)> {
    let mut words = Vec::new();
    for (ch, start_ms) in alignment.chars.iter().zip(&alignment.char_start_times_ms) {
        if ch.trim().is_empty() {
            if !state.partial.is_empty() {
                words.push((std::mem::take(&mut state.partial), state.partial_start));
            }
            continue;
        }
        if state.partial.is_empty() {
            state.partial_start = offset.saturating_add(provider_seconds(start_ms / 1000.0));
        }
        state.partial.push_str(ch);
    }
    words
}

#[cfg(test)]
mod tests {
    use super::*;

    fn speech() -> ElevenLabsSpeech {
        ElevenLabsSpeech::fixture()
    }

    #[test]
    fn a_context_opens_then_takes_flushed_sentences_and_closes() {
        let s = speech();
        let opened = s.text("c1", "Hello there.", true);
        assert_eq!(
            serde_json::from_str::<Value>(&opened[0]).unwrap(),
            json!({"text": " ", "context_id": "c1", "voice_settings": {"stability": 0.5}})
        );
        assert_eq!(
            serde_json::from_str::<Value>(&opened[1]).unwrap(),
            json!({"text": "Hello there. ", "context_id": "c1", "flush": true})
        );
        assert_eq!(s.text("c1", "More.", false).len(), 1);
        assert_eq!(
            serde_json::from_str::<Value>(&s.finish("c1")[0]).unwrap(),
            json!({"context_id": "c1", "close_context": true})
        );
        assert!(s.close().unwrap().contains("close_socket"));
    }

    #[test]
    fn audio_alignment_becomes_words_placed_in_the_context_audio() {
        let mut s = speech();
        // 0.1 s of audio at 16 kHz, then the next chunk.
        let audio = base64::engine::general_purpose::STANDARD.encode(vec![0u8; 3200]);
        let first = json!({
            "audio": audio,
            "alignment": {"chars": ["H","i"," ","t","h"], "charStartTimesMs": [0, 40, 60, 70, 90], "charDurationsMs": [40,20,10,20,10]},
            "contextId": "c1"
        });
        let events = s.parse(&first.to_string()).unwrap();
        assert!(matches!(&events[0], WireEvent::Audio { pcm, .. } if pcm.len() == 3200));
        assert!(
            matches!(&events[1], WireEvent::Text { text, start: Some(t), .. } if text == "Hi" && t.is_zero())
        );
        assert_eq!(events.len(), 2, "`th` waits for the rest of its word");
        let second = json!({
            "audio": base64::engine::general_purpose::STANDARD.encode(vec![0u8; 320]),
            "alignment": {"chars": ["e","r","e"," "], "charStartTimesMs": [0, 5, 8, 9], "charDurationsMs": [5,3,1,1]},
            "contextId": "c1"
        });
        let events = s.parse(&second.to_string()).unwrap();
        assert!(
            matches!(&events[1], WireEvent::Text { text, start: Some(t), .. }
            if text == "there" && *t == Duration::from_millis(70))
        );
        let last = s.parse(r#"{"isFinal": true, "contextId": "c1"}"#).unwrap();
        assert!(matches!(&last[..], [WireEvent::Done { context }] if context == "c1"));
    }

    #[test]
    fn absurd_character_times_do_not_panic() {
        let mut s = speech();
        let audio = base64::engine::general_purpose::STANDARD.encode(vec![0u8; 3200]);
        s.parse(&json!({"audio": audio, "contextId": "c1"}).to_string())
            .unwrap();
        let late = json!({
            "alignment": {"chars": ["a"," ","b"," "], "charStartTimesMs": [1e300, 0, -5, 0], "charDurationsMs": [1,1,1,1]},
            "contextId": "c1"
        });
        let events = s.parse(&late.to_string()).unwrap();
        assert!(
            matches!(&events[..], [WireEvent::Text { start: Some(a), .. }, WireEvent::Text { start: Some(b), .. }]
            if *a == Duration::MAX && *b == Duration::from_millis(100))
        );
    }

    #[test]
    fn errors_and_garbage_are_reported() {
        let mut s = speech();
        let events = s
            .parse(r#"{"message": "Invalid voice id", "error": "invalid_request", "code": 1008}"#)
            .unwrap();
        assert!(
            matches!(&events[0], WireEvent::Failed { error, .. } if error.to_string() == "Invalid voice id")
        );
        assert!(matches!(s.parse("nope"), Err(ServiceError::Protocol(_))));
        assert!(matches!(
            s.parse(r#"{"audio": "***", "contextId": "c"}"#),
            Err(ServiceError::Protocol(_))
        ));
    }
}
