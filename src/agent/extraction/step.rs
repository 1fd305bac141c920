//! The extraction step: asks the model, checks the answer, records the
//! result in `call:{id}`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use async_trait::async_trait;
use serde_json::json;

use super::config::{ExtractionConfig, FormatKind};
use crate::agent::eval::{ApiEndpoint, JudgeModel, OpenAiJudge, render_transcript, unavailable};
use crate::agent::post_call::{PostCallError, PostCallStep};
use crate::services::ServiceError;
use crate::store::time::{rfc3339, unix_ms};
use crate::store::{CallChange, CallRecord, Extraction, Interaction, Store};

use super::schema::ExtractionSchema;

/// The step's name, in logs and errors.
const STEP: &str = "extraction";

/// The models the step asks: the one with the configured response format,
/// and the JSON-mode one it falls back to when the server refuses a
/// `json_schema` format with 400.
pub struct ExtractionModels {
    /// Asked first.
    pub model: Arc<dyn JudgeModel>,
    /// Asked instead, from the first 400 of `model` on.
    pub fallback: Option<Arc<dyn JudgeModel>>,
}

impl ExtractionModels {
    /// OpenAI-compatible models at `endpoint` with `config`'s format.
    pub fn openai(endpoint: ApiEndpoint, config: &ExtractionConfig) -> Self {
        let section = &config.section;
        let json_mode = || Some(json!({"type": "json_object"}));
        let (format, fallback) = match section.response_format {
            FormatKind::JsonSchema => {
                let format = json!({
                    "type": "json_schema",
                    "json_schema": {
                        "name": section.schema_name,
                        "schema": config.schema.json(),
                        "strict": section.strict,
                    },
                });
                let fallback = OpenAiJudge::with_response_format(
                    endpoint.clone(),
                    &section.model,
                    json_mode(),
                );
                (
                    Some(format),
                    Some(Arc::new(fallback) as Arc<dyn JudgeModel>),
                )
            }
            FormatKind::JsonObject => (json_mode(), None),
            FormatKind::None => (None, None),
        };
        let model = OpenAiJudge::with_response_format(endpoint, &section.model, format);
        ExtractionModels {
            model: Arc::new(model),
            fallback,
        }
    }
}

/// The [`PostCallStep`] that fills the extraction schema from a call.
pub struct ExtractionStep {
    store: Arc<dyn Store>,
    models: ExtractionModels,
    /// Set at the first 400 to a `json_schema` request: this server does
    /// not do structured outputs, so later calls go straight to JSON mode.
    schema_refused: AtomicBool,
    schema: ExtractionSchema,
    /// The system message: the prompt and the schema.
    instructions: String,
    max_attempts: u32,
}

impl std::fmt::Debug for ExtractionStep {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExtractionStep")
            .field("model", &self.models.model.model())
            .field("max_attempts", &self.max_attempts)
            .finish_non_exhaustive()
    }
}

impl ExtractionStep {
    /// A step writing to `store`, asking `models` as `config` says.
    pub fn new(store: Arc<dyn Store>, models: ExtractionModels, config: &ExtractionConfig) -> Self {
        let schema_text = serde_json::to_string_pretty(config.schema.json())
            .unwrap_or_else(|_| config.schema.json().to_string());
        ExtractionStep {
            store,
            models,
            schema_refused: AtomicBool::new(false),
            schema: config.schema.clone(),
            instructions: format!("{}\n\nJSON Schema:\n{schema_text}", config.section.prompt()),
            max_attempts: config.section.max_attempts.max(1),
        }
    }

    /// Asks until an answer passes the schema or the attempts run out. A
    /// model that cannot be reached (transport errors, 429 and 5xx after the
    /// client's retries, refused credentials) is `Unavailable`: the job runs
    /// again later. A request the server refuses (another 4xx) or an
    /// envelope without an answer counts as a failed attempt.
    async fn extract(
        &self,
        call: &CallRecord,
        turns: &[Interaction],
    ) -> Result<Extraction, PostCallError> {
        let call_id = call.call_id.as_str();
        // The reason may quote the answer (personal data): it goes to the
        // record, not the logs.
        let unextracted = |reason: String, attempts| {
            tracing::warn!(call_id, attempts, "call recorded as unextracted");
            Extraction::Unextracted {
                reason,
                attempts,
                at: rfc3339(unix_ms()),
            }
        };
        if turns.is_empty() {
            return Ok(unextracted("the call has no transcript".into(), 0));
        }
        let mut messages = vec![
            ("system", self.instructions.clone()),
            ("user", render_transcript(call, turns)),
        ];
        let mut problem = String::new();
        for attempt in 1..=self.max_attempts {
            let answer = match self.ask(&messages).await {
                Ok(answer) => answer,
                Err(err) if unavailable(&err) => {
                    return Err(PostCallError::Unavailable {
                        step: STEP,
                        reason: err.to_string(),
                    });
                }
                Err(err) => {
                    tracing::warn!(call_id, attempt, error = %err, "extraction request refused");
                    problem = format!("the model refused the request: {err}");
                    continue;
                }
            };
            match self.schema.check(&answer) {
                Ok(data) => {
                    tracing::info!(call_id, attempt, "call extracted");
                    return Ok(Extraction::Extracted {
                        data,
                        model: self.models.model.model().to_owned(),
                        attempts: attempt,
                        at: rfc3339(unix_ms()),
                    });
                }
                Err(wrong) => {
                    tracing::warn!(
                        call_id,
                        attempt,
                        at = wrong.places,
                        "extraction answer unusable"
                    );
                    messages.push(("assistant", answer));
                    messages.push((
                        "user",
                        format!(
                            "That answer cannot be used: {}. Answer again with only the JSON object.",
                            wrong.told
                        ),
                    ));
                    problem = wrong.told;
                }
            }
        }
        let attempts = self.max_attempts;
        Ok(unextracted(
            format!("no schema-valid answer after {attempts} attempts ({problem})"),
            attempts,
        ))
    }

    /// One answer, from the fallback model once the server has refused the
    /// `json_schema` format.
    async fn ask(&self, messages: &[(&str, String)]) -> Result<String, ServiceError> {
        let Some(fallback) = &self.models.fallback else {
            return self.models.model.complete(messages).await;
        };
        if self.schema_refused.load(Ordering::Relaxed) {
            return fallback.complete(messages).await;
        }
        match self.models.model.complete(messages).await {
            Err(err) if err.status() == Some(400) => {
                if !self.schema_refused.swap(true, Ordering::Relaxed) {
                    tracing::warn!(error = %err, "the server refused a json_schema response format; asking in JSON mode from now on");
                }
                fallback.complete(messages).await
            }
            other => other,
        }
    }

    async fn record(&self, call_id: &str, extraction: Extraction) -> Result<(), PostCallError> {
        self.store
            .update_call(call_id, &CallChange::Extracted(extraction))
            .await?;
        Ok(())
    }
}

#[async_trait]
impl PostCallStep for ExtractionStep {
    fn name(&self) -> &'static str {
        STEP
    }

    async fn run(&self, call: &CallRecord) -> Result<(), PostCallError> {
        let call_id = call.call_id.as_str();
        if call.extraction.is_some() {
            tracing::info!(
                call_id,
                "re-running a job: the extraction is already stored"
            );
            return Ok(());
        }
        let turns = self.store.turns(call_id).await?;
        let extraction = self.extract(call, &turns).await?;
        self.record(call_id, extraction).await
    }

    async fn give_up(&self, call: &CallRecord, reason: &str) -> Result<(), PostCallError> {
        if call.extraction.is_some() {
            return Ok(());
        }
        let extraction = Extraction::Unextracted {
            reason: reason.to_owned(),
            attempts: 0,
            at: rfc3339(unix_ms()),
        };
        self.record(&call.call_id, extraction).await
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn status(status: u16) -> ServiceError {
        ServiceError::Status {
            status,
            message: String::new(),
            retry_after: None,
        }
    }

    #[test]
    fn a_model_down_or_refusing_keys_is_unavailable_and_a_refused_request_is_an_attempt() {
        for down in [
            status(500),
            status(503),
            status(429),
            status(401),
            ServiceError::Connect("refused".into()),
            ServiceError::Timeout {
                waiting_for: "response",
                after: Duration::from_secs(1),
            },
        ] {
            assert!(unavailable(&down), "{down}");
        }
        for attempt in [
            status(400),
            status(422),
            ServiceError::Protocol("no content".into()),
        ] {
            assert!(!unavailable(&attempt), "{attempt}");
        }
    }
}
