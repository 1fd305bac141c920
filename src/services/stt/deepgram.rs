//! Deepgram live transcription (WebSocket `/v1/listen`): `[[processor]]
//! type = "stt", provider = "deepgram"`.
//!
//! Binary linear16 audio goes in; `Results` messages come out, interim
//! (`is_final: false`) and final, with `start` and `duration` in seconds of
//! the stream; `speech_final` marks the end of an utterance. Control
//! messages are `KeepAlive` (the server closes after 10 s without audio),
//! `Finalize` (flush now: sent when the VAD says the user stopped) and
//! `CloseStream` (finish and close). Authentication is the
//! `Authorization: Token` header.

use std::time::Duration;

use serde::Deserialize;

use crate::config::Seconds;
use crate::pipeline::Processor;
use crate::pipeline::ProcessorFactory;
use crate::pipeline::{BuildError, SessionSetup};
use crate::services::timestamp::provider_seconds;
use crate::services::url::check_ws_url;
use crate::services::websocket::WsTarget;
use crate::services::{ApiKey, ConnectionOptions, ServiceError};

use super::speech::{StreamingSpeech, SttEvent};
use super::streaming::StreamingStt;

/// `[[processor]] type = "stt", provider = "deepgram"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeepgramSttConfig {
    /// The socket root. Default `wss://api.deepgram.com`.
    #[serde(default = "default_base_url")]
    pub base_url: String,
    /// The model. Default `nova-3`.
    #[serde(default = "default_model")]
    pub model: String,
    /// The language. Default `en`.
    #[serde(default = "default_language")]
    pub language: String,
    /// The variable holding the API key.
    #[serde(default = "default_key_env")]
    pub api_key_env: String,
    /// Silence that ends an utterance on Deepgram's side, in milliseconds.
    /// Default 300.
    #[serde(default = "default_endpointing")]
    pub endpointing_ms: u32,
    /// Formatting of numbers, dates and punctuation. Default true.
    #[serde(default = "default_true")]
    pub smart_format: bool,
    /// Send `KeepAlive` after this long without audio, in seconds (above
    /// 0 and below 10: Deepgram closes a stream after 10 s of nothing).
    /// Default 4.
    #[serde(default = "default_keepalive")]
    pub keepalive_secs: Seconds<1, 10>,
    /// The most unconfirmed audio kept for a reconnect, in seconds.
    /// Default 30.
    #[serde(default = "default_max_replay")]
    pub max_replay_secs: Seconds<1, 300>,
    /// Timeouts and retries (of the connection).
    #[serde(default)]
    pub connection: ConnectionOptions,
}

fn default_base_url() -> String {
    "wss://api.deepgram.com".to_owned()
}

fn default_model() -> String {
    "nova-3".to_owned()
}

fn default_language() -> String {
    "en".to_owned()
}

fn default_key_env() -> String {
    "DEEPGRAM_API_KEY".to_owned()
}

fn default_endpointing() -> u32 {
    300
}

fn default_true() -> bool {
    true
}

fn default_keepalive() -> Seconds<1, 10> {
    Seconds::from_millis(4_000)
}

fn default_max_replay() -> Seconds<1, 300> {
    Seconds::from_millis(30_000)
}

impl ProcessorFactory for DeepgramSttConfig {
    fn build(&self, setup: &SessionSetup) -> Result<Box<dyn Processor>, BuildError> {
        check_ws_url("base_url", &self.base_url)?;
        if self.keepalive_secs.duration() >= Duration::from_secs(10) {
            return Err(BuildError::Invalid(
                "keepalive_secs must be below 10 (Deepgram closes after 10 s)".into(),
            ));
        }
        let speech = DeepgramListen {
            base_url: self.base_url.trim_end_matches('/').to_owned(),
            api_key: ApiKey::new(setup.env_var("api_key_env", &self.api_key_env)?),
            model: self.model.clone(),
            language: self.language.clone(),
            endpointing_ms: self.endpointing_ms,
            smart_format: self.smart_format,
        };
        Ok(Box::new(StreamingStt::new(
            Box::new(speech),
            self.connection.resolve()?,
            self.keepalive_secs.duration(),
            self.max_replay_secs.duration(),
        )))
    }
}

/// The Deepgram live protocol. See the module docs.
#[derive(Debug)]
pub(crate) struct DeepgramListen {
    base_url: String,
    api_key: ApiKey,
    model: String,
    language: String,
    endpointing_ms: u32,
    smart_format: bool,
}

impl DeepgramListen {
    /// The protocol with a made-up key, for tests from fixtures and the
    /// fuzz targets (`fuzz/`).
    pub(crate) fn fixture() -> Self {
        DeepgramListen {
            base_url: "wss://api.deepgram.com".into(),
            api_key: ApiKey::new("dg-key"),
            model: "nova-3".into(),
            language: "en".into(),
            endpointing_ms: 300,
            smart_format: true,
        }
    }
}

#[derive(Deserialize)]
struct Message {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    start: f64,
    #[serde(default)]
    duration: f64,
    #[serde(default)]
    is_final: bool,
    #[serde(default)]
    speech_final: bool,
    #[serde(default)]
    channel: Option<Channel>,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    message: Option<String>,
}

#[derive(Deserialize)]
struct Channel {
    alternatives: Vec<Alternative>,
}

#[derive(Deserialize)]
struct Alternative {
    transcript: String,
}

impl StreamingSpeech for DeepgramListen {
    fn provider(&self) -> &'static str {
        "deepgram"
    }

    fn target(&self, sample_rate: u32) -> WsTarget {
        let url = format!(
            "{}/v1/listen?encoding=linear16&sample_rate={sample_rate}&channels=1&model={}&language={}&interim_results=true&punctuate=true&smart_format={}&endpointing={}",
            self.base_url, self.model, self.language, self.smart_format, self.endpointing_ms
        );
        WsTarget {
            url,
            headers: vec![("authorization", format!("Token {}", self.api_key.expose()))],
        }
    }

    fn keepalive(&self) -> String {
        r#"{"type":"KeepAlive"}"#.to_owned()
    }

    fn finalize(&self) -> Option<String> {
        Some(r#"{"type":"Finalize"}"#.to_owned())
    }

    fn close_stream(&self) -> String {
        r#"{"type":"CloseStream"}"#.to_owned()
    }

    fn parse(&self, text: &str) -> Result<Option<SttEvent>, ServiceError> {
        let message: Message = serde_json::from_str(text)
            .map_err(|e| ServiceError::Protocol(format!("not a Deepgram message ({e})")))?;
        match message.kind.as_str() {
            "Results" => {
                let transcript = message
                    .channel
                    .and_then(|c| c.alternatives.into_iter().next())
                    .map(|a| a.transcript)
                    .unwrap_or_default();
                Ok(Some(SttEvent::Transcript {
                    text: transcript,
                    is_final: message.is_final,
                    speech_final: message.speech_final,
                    end: provider_seconds(message.start + message.duration),
                }))
            }
            "Error" => Err(ServiceError::Remote(
                message
                    .description
                    .or(message.message)
                    .unwrap_or_else(|| "Deepgram reported an error".to_owned()),
            )),
            // Metadata, SpeechStarted, UtteranceEnd
            _ => Ok(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listen() -> DeepgramListen {
        DeepgramListen::fixture()
    }

    #[test]
    fn the_socket_asks_for_linear16_interim_results_with_a_token() {
        let target = listen().target(16_000);
        assert!(target.url.starts_with(
            "wss://api.deepgram.com/v1/listen?encoding=linear16&sample_rate=16000&channels=1"
        ));
        assert!(target.url.contains("interim_results=true"));
        assert_eq!(
            target.headers,
            [("authorization", "Token dg-key".to_owned())]
        );
        assert!(!format!("{target:?}").contains("dg-key"));
    }

    #[test]
    fn results_are_parsed_with_their_end_in_the_stream() {
        let final_result = r#"{"type":"Results","channel_index":[0,1],"duration":1.5,"start":2.25,"is_final":true,"speech_final":true,"channel":{"alternatives":[{"transcript":"Hello there.","confidence":0.98,"words":[]}]},"metadata":{"request_id":"r","model_info":{"name":"n","version":"v","arch":"a"},"model_uuid":"u"},"from_finalize":false}"#;
        assert_eq!(
            listen().parse(final_result).unwrap(),
            Some(SttEvent::Transcript {
                text: "Hello there.".into(),
                is_final: true,
                speech_final: true,
                end: Duration::from_millis(3750),
            })
        );
        let interim = r#"{"type":"Results","duration":0.5,"start":0,"is_final":false,"speech_final":false,"channel":{"alternatives":[{"transcript":"Hel","confidence":0.5,"words":[]}]}}"#;
        assert!(matches!(
            listen().parse(interim).unwrap(),
            Some(SttEvent::Transcript {
                is_final: false,
                ..
            })
        ));
        let metadata = r#"{"type":"Metadata","transaction_key":"deprecated","request_id":"r","sha256":"s","created":"2024-08-29T22:37:55.202Z","duration":0.0,"channels":0}"#;
        assert_eq!(listen().parse(metadata).unwrap(), None);
        assert!(listen().parse("{").is_err());
        let absurd = r#"{"type":"Results","duration":1e300,"start":1e300,"is_final":true,"channel":{"alternatives":[{"transcript":"x"}]}}"#;
        assert!(matches!(
            listen().parse(absurd).unwrap(),
            Some(SttEvent::Transcript { end, .. }) if end == Duration::MAX
        ));
    }

    #[test]
    fn control_messages_are_the_documented_json() {
        let l = listen();
        assert_eq!(l.keepalive(), r#"{"type":"KeepAlive"}"#);
        assert_eq!(l.finalize().as_deref(), Some(r#"{"type":"Finalize"}"#));
        assert_eq!(l.close_stream(), r#"{"type":"CloseStream"}"#);
    }
}
