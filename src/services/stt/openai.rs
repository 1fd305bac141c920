//! OpenAI-compatible transcription (`POST {base_url}/audio/transcriptions`,
//! multipart, one WAV per utterance): `[[processor]] type = "stt",
//! provider = "openai"`.

use std::sync::Arc;

use serde::Deserialize;

use crate::config::Seconds;
use crate::pipeline::Processor;
use crate::pipeline::ProcessorFactory;
use crate::pipeline::{BuildError, SessionSetup};
use crate::services::url::check_http_url;
use crate::services::{ApiKey, ConnectionOptions, ServiceError};

use super::segmented::{SegmentedSpeech, SegmentedStt};

/// `[[processor]] type = "stt", provider = "openai"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OpenAiSttConfig {
    /// The API root; `/audio/transcriptions` is added. Default
    /// `https://api.openai.com/v1`.
    #[serde(default = "default_base_url")]
    pub base_url: String,
    /// The model. Default `gpt-4o-mini-transcribe`.
    #[serde(default = "default_model")]
    pub model: String,
    /// The variable holding the API key; none for servers without keys.
    #[serde(default)]
    pub api_key_env: Option<String>,
    /// The spoken language (ISO 639-1), if known.
    #[serde(default)]
    pub language: Option<String>,
    /// Text to guide the model (names, spelling).
    #[serde(default)]
    pub prompt: Option<String>,
    /// Audio kept before the speech start the VAD reports, in seconds.
    /// Default 0.3.
    #[serde(default = "default_pre_roll")]
    pub pre_roll_secs: Seconds<0, 2>,
    /// The longest utterance sent, in seconds. Default 60.
    #[serde(default = "default_max_utterance")]
    pub max_utterance_secs: Seconds<1, 600>,
    /// Send the speech so far when the VAD reports a pause (its
    /// `pause_secs`), before its stop, and keep that transcript if the
    /// user does not go on. Default false.
    #[serde(default)]
    pub transcribe_on_pause: bool,
    /// Timeouts and retries.
    #[serde(default)]
    pub connection: ConnectionOptions,
}

fn default_base_url() -> String {
    "https://api.openai.com/v1".to_owned()
}

fn default_model() -> String {
    "gpt-4o-mini-transcribe".to_owned()
}

fn default_pre_roll() -> Seconds<0, 2> {
    Seconds::from_millis(300)
}

fn default_max_utterance() -> Seconds<1, 600> {
    Seconds::from_millis(60_000)
}

impl ProcessorFactory for OpenAiSttConfig {
    fn build(&self, setup: &SessionSetup) -> Result<Box<dyn Processor>, BuildError> {
        check_http_url("base_url", &self.base_url)?;
        let speech = OpenAiTranscription {
            url: format!(
                "{}/audio/transcriptions",
                self.base_url.trim_end_matches('/')
            ),
            api_key: ApiKey::from_env(setup, "api_key_env", self.api_key_env.as_deref())?,
            model: self.model.clone(),
            language: self.language.clone(),
            prompt: self.prompt.clone(),
        };
        Ok(Box::new(SegmentedStt::new(
            Arc::new(speech),
            self.connection.resolve()?,
            self.pre_roll_secs.duration(),
            self.max_utterance_secs.duration(),
            self.transcribe_on_pause,
        )))
    }
}

#[derive(Debug)]
struct OpenAiTranscription {
    url: String,
    api_key: Option<ApiKey>,
    model: String,
    language: Option<String>,
    prompt: Option<String>,
}

#[derive(Deserialize)]
struct Transcript {
    text: String,
}

impl SegmentedSpeech for OpenAiTranscription {
    fn provider(&self) -> &'static str {
        "openai"
    }

    fn request(&self, client: &reqwest::Client, wav: &[u8]) -> reqwest::RequestBuilder {
        let file = reqwest::multipart::Part::bytes(wav.to_vec()).file_name("utterance.wav");
        // A static, valid MIME type: the fallback is never taken.
        let file = file.mime_str("audio/wav").unwrap_or_else(|_| {
            reqwest::multipart::Part::bytes(wav.to_vec()).file_name("utterance.wav")
        });
        let mut form = reqwest::multipart::Form::new()
            .part("file", file)
            .text("model", self.model.clone())
            .text("response_format", "json");
        if let Some(language) = &self.language {
            form = form.text("language", language.clone());
        }
        if let Some(prompt) = &self.prompt {
            form = form.text("prompt", prompt.clone());
        }
        let request = client.post(&self.url).multipart(form);
        match &self.api_key {
            Some(key) => request.bearer_auth(key.expose()),
            None => request,
        }
    }

    fn parse(&self, body: &[u8]) -> Result<String, ServiceError> {
        serde_json::from_slice::<Transcript>(body)
            .map(|t| t.text)
            .map_err(|e| ServiceError::Protocol(format!("not a transcription ({e})")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_text_is_read_from_the_json_body() {
        let speech = OpenAiTranscription {
            url: "u".into(),
            api_key: None,
            model: "whisper-1".into(),
            language: None,
            prompt: None,
        };
        assert_eq!(
            speech
                .parse(br#"{"text":"Hello there.","usage":{"type":"duration","seconds":2}}"#)
                .unwrap(),
            "Hello there."
        );
        assert!(matches!(
            speech.parse(b"<html>"),
            Err(ServiceError::Protocol(_))
        ));
    }
}
