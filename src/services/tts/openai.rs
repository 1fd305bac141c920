//! OpenAI-compatible speech (`POST {base_url}/audio/speech`, streamed raw
//! PCM): `[[processor]] type = "tts", provider = "openai"`.

use serde::Deserialize;
use serde_json::json;

use crate::pipeline::Processor;
use crate::pipeline::ProcessorFactory;
use crate::pipeline::{BuildError, SessionSetup};
use crate::services::url::check_http_url;
use crate::services::{ApiKey, ConnectionOptions};

use super::http_wire::{HttpSpeech, HttpWire};
use super::service::TtsService;

/// `[[processor]] type = "tts", provider = "openai"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OpenAiTtsConfig {
    /// The API root; `/audio/speech` is added. Default
    /// `https://api.openai.com/v1`.
    #[serde(default = "default_base_url")]
    pub base_url: String,
    /// The model. Default `gpt-4o-mini-tts`.
    #[serde(default = "default_model")]
    pub model: String,
    /// The voice. Default `alloy`.
    #[serde(default = "default_voice")]
    pub voice: String,
    /// The variable holding the API key; none for servers without keys.
    #[serde(default)]
    pub api_key_env: Option<String>,
    /// Speaking speed, 0.25 to 4.
    #[serde(default)]
    pub speed: Option<f64>,
    /// How to speak (tone, accent), for models that take instructions.
    #[serde(default)]
    pub instructions: Option<String>,
    /// The rate of the PCM the server returns. OpenAI's is 24000.
    #[serde(default = "default_rate")]
    pub sample_rate: u32,
    /// Timeouts and retries.
    #[serde(default)]
    pub connection: ConnectionOptions,
}

fn default_base_url() -> String {
    "https://api.openai.com/v1".to_owned()
}

fn default_model() -> String {
    "gpt-4o-mini-tts".to_owned()
}

fn default_voice() -> String {
    "alloy".to_owned()
}

fn default_rate() -> u32 {
    24_000
}

impl ProcessorFactory for OpenAiTtsConfig {
    fn build(&self, setup: &SessionSetup) -> Result<Box<dyn Processor>, BuildError> {
        check_http_url("base_url", &self.base_url)?;
        if let Some(speed) = self.speed
            && !(0.25..=4.0).contains(&speed)
        {
            return Err(BuildError::Invalid(format!(
                "speed must be between 0.25 and 4, not {speed}"
            )));
        }
        check_rate(self.sample_rate)?;
        let speech = OpenAiSpeech {
            url: format!("{}/audio/speech", self.base_url.trim_end_matches('/')),
            api_key: ApiKey::from_env(setup, "api_key_env", self.api_key_env.as_deref())?,
            model: self.model.clone(),
            voice: self.voice.clone(),
            speed: self.speed,
            instructions: self.instructions.clone(),
            sample_rate: self.sample_rate,
        };
        let wire = HttpWire::new(speech, self.connection.resolve()?);
        Ok(Box::new(TtsService::new(Box::new(wire))))
    }
}

/// Checks a provider's audio rate is one the resampler takes.
pub(crate) fn check_rate(rate: u32) -> Result<(), BuildError> {
    if (crate::audio::resample::MIN_RATE_HZ..=crate::audio::resample::MAX_RATE_HZ).contains(&rate) {
        Ok(())
    } else {
        Err(BuildError::Invalid(format!(
            "unsupported sample_rate {rate}"
        )))
    }
}

/// The request of one sentence.
#[derive(Debug)]
struct OpenAiSpeech {
    url: String,
    api_key: Option<ApiKey>,
    model: String,
    voice: String,
    speed: Option<f64>,
    instructions: Option<String>,
    sample_rate: u32,
}

impl OpenAiSpeech {
    fn body(&self, text: &str) -> serde_json::Value {
        let mut body = json!({
            "model": self.model,
            "input": text,
            "voice": self.voice,
            "response_format": "pcm",
        });
        if let Some(speed) = self.speed {
            body["speed"] = json!(speed);
        }
        if let Some(instructions) = &self.instructions {
            body["instructions"] = json!(instructions);
        }
        body
    }
}

impl HttpSpeech for OpenAiSpeech {
    fn provider(&self) -> &'static str {
        "openai"
    }

    fn sample_rate(&self) -> u32 {
        self.sample_rate
    }

    fn request(&self, client: &reqwest::Client, text: &str) -> reqwest::RequestBuilder {
        let request = client.post(&self.url).json(&self.body(text));
        match &self.api_key {
            Some(key) => request.bearer_auth(key.expose()),
            None => request,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_request_asks_for_raw_pcm() {
        let speech = OpenAiSpeech {
            url: "u".into(),
            api_key: None,
            model: "tts-1".into(),
            voice: "nova".into(),
            speed: Some(1.25),
            instructions: None,
            sample_rate: 24_000,
        };
        assert_eq!(
            speech.body("Hello."),
            json!({"model": "tts-1", "input": "Hello.", "voice": "nova", "response_format": "pcm", "speed": 1.25})
        );
    }
}
