//! Side requests: the router's and the reviewer's questions to their
//! [`SideModel`], each a whole answer asked at temperature 0 and bounded
//! by the side model's limit. A field the server refuses is dropped and
//! the request asked again; the side model remembers a refused token cap
//! or temperature, so later requests do not pay that round trip again.

use std::sync::atomic::Ordering;

use serde_json::Value;

use crate::conversation::Message;
use crate::pipeline::ProcessorContext;
use crate::services::ServiceError;

use super::driver::Responder;
use super::round::Ask;
use super::side_model::SideModel;
use super::wire::{ChatRequest, ToolChoice};

impl Responder {
    /// A side request (the router's, the reviewer's): its whole text, asked
    /// at temperature 0. A server refusing the request (400) is asked again
    /// without what its message names: the temperature (reasoning models,
    /// OpenAI's o-series and gpt-5, take only their default: "Unsupported
    /// value: 'temperature' does not support 0 with this model"), the
    /// response format (servers without structured outputs), the token cap
    /// (the same models refuse `max_tokens`; the time limit still bounds
    /// the request), or the first two when it names none. A refused token
    /// cap, or a temperature the message names, is remembered on the side
    /// model and not sent again.
    pub(crate) async fn ask_side(
        &self,
        side: &SideModel,
        messages: &[Message],
        format: &Value,
        ctx: &ProcessorContext,
    ) -> Result<String, ServiceError> {
        // The reply waits on this: a reasoning model thinking aloud for
        // minutes, or a prose answer to a schema, would hold it that long.
        // Past the limit the caller goes on as when the side model is down
        // (the default agent, the draft unreviewed).
        tokio::time::timeout(
            side.limit,
            self.ask_side_unbounded(side, messages, format, ctx),
        )
        .await
        .unwrap_or(Err(ServiceError::Timeout {
            waiting_for: "side answer",
            after: side.limit,
        }))
    }

    async fn ask_side_unbounded(
        &self,
        side: &SideModel,
        messages: &[Message],
        format: &Value,
        ctx: &ProcessorContext,
    ) -> Result<String, ServiceError> {
        let mut ask = Ask {
            wire: side.wire.as_deref().unwrap_or(&*self.wire),
            request: ChatRequest {
                model: side.model.as_deref().unwrap_or(&self.model),
                temperature: (!side.refuses_temperature.load(Ordering::Relaxed)).then_some(0.0),
                max_tokens: side
                    .max_tokens
                    .filter(|_| !side.refuses_max_tokens.load(Ordering::Relaxed)),
                tools: &[],
                tool_choice: ToolChoice::None,
                response_format: Some(format),
            },
            speak: false,
        };
        let mut round = ask
            .stream(&self.connection, "side", messages, ctx, &mut None)
            .await;
        // Each pass drops a field the request still has: three at most.
        while let Err(ServiceError::Status {
            status: 400,
            message,
            ..
        }) = &round
        {
            let names_temperature = message.contains("temperature");
            let names_format =
                message.contains("response_format") || message.contains("json_schema");
            let names_cap = message.contains("max_tokens");
            let names_none = !names_temperature && !names_format && !names_cap;
            let request = &mut ask.request;
            let drop_temperature =
                request.temperature.is_some() && (names_temperature || names_none);
            let drop_format = request.response_format.is_some() && (names_format || names_none);
            let drop_cap = request.max_tokens.is_some() && names_cap;
            if !drop_temperature && !drop_format && !drop_cap {
                break;
            }
            if drop_cap {
                tracing::info!("the server refused max_tokens; asking without it from now on");
                request.max_tokens = None;
                side.refuses_max_tokens.store(true, Ordering::Relaxed);
            }
            if drop_temperature {
                tracing::info!("the server refused the temperature; asking without it");
                request.temperature = None;
                if names_temperature {
                    // Named, so surely refused: not sent again.
                    side.refuses_temperature.store(true, Ordering::Relaxed);
                }
            }
            if drop_format {
                tracing::info!("the server refused the response format; asking without it");
                request.response_format = None;
            }
            round = ask
                .stream(&self.connection, "side", messages, ctx, &mut None)
                .await;
        }
        Ok(round?.text)
    }
}
