//! JSON requests to OpenAI-compatible endpoints (`/chat/completions`,
//! `/embeddings`) over the services' shared HTTP plumbing: one client per
//! process, timeouts, retries of 429 and 5xx with backoff, errors read from
//! the provider's body ([`ServiceError`]).

use serde::de::DeserializeOwned;

use crate::pipeline::BuildError;
use crate::services::http::{next_chunk, send};
use crate::services::{ApiKey, Connection, ConnectionOptions, ServiceError};

/// The largest answer read, in bytes (a batch of embeddings is the largest).
const MAX_BODY: usize = 32 * 1024 * 1024;

/// Where an OpenAI-compatible API lives and how to call it.
#[derive(Debug, Clone)]
pub struct ApiEndpoint {
    /// e.g. `https://api.openai.com/v1` or `http://127.0.0.1:8080/v1`.
    pub base_url: String,
    /// Sent as `Authorization: Bearer …` when set.
    pub api_key: Option<ApiKey>,
    /// Timeouts and retries.
    pub connection: Connection,
    /// The provider's name in errors and logs.
    pub provider: &'static str,
}

impl ApiEndpoint {
    /// The endpoint at `base_url` with `connection` checked and resolved.
    pub fn new(
        base_url: &str,
        api_key: Option<ApiKey>,
        connection: &ConnectionOptions,
        provider: &'static str,
    ) -> Result<Self, BuildError> {
        Ok(ApiEndpoint {
            base_url: base_url.to_owned(),
            api_key,
            connection: connection.resolve()?,
            provider,
        })
    }
}

/// JSON over one endpoint.
#[derive(Debug, Clone)]
pub(crate) struct JsonClient {
    endpoint: ApiEndpoint,
}

impl JsonClient {
    pub(crate) fn new(endpoint: ApiEndpoint) -> Self {
        JsonClient { endpoint }
    }

    /// POSTs `body` to `{base_url}/{path}` and decodes the JSON answer.
    pub(crate) async fn post<T: DeserializeOwned>(
        &self,
        path: &str,
        body: &serde_json::Value,
    ) -> Result<T, ServiceError> {
        let endpoint = &self.endpoint;
        let url = format!("{}/{path}", endpoint.base_url.trim_end_matches('/'));
        let response = send(
            |client| {
                let request = client.post(&url).json(body);
                match &endpoint.api_key {
                    Some(key) => request.bearer_auth(key.expose()),
                    None => request,
                }
            },
            &endpoint.connection,
            endpoint.provider,
        )
        .await?;
        let mut answer = Vec::new();
        let mut stream = response.bytes_stream();
        while let Some(chunk) = next_chunk(&mut stream, endpoint.connection.read_timeout).await? {
            answer.extend_from_slice(&chunk);
            if answer.len() > MAX_BODY {
                return Err(ServiceError::Protocol(format!(
                    "{url}: the answer is larger than {MAX_BODY} bytes"
                )));
            }
        }
        serde_json::from_slice(&answer)
            .map_err(|err| ServiceError::Protocol(format!("{url}: {err}")))
    }
}

/// Whether `err` means "the model is down, try the whole job later" (after
/// the client's own retries: transport errors, timeouts, 429 and 5xx,
/// refused credentials) rather than "this attempt failed" (another 4xx, an
/// answer without content).
pub(crate) fn unavailable(err: &ServiceError) -> bool {
    match err {
        ServiceError::Status { .. } => err.is_retryable() || err.is_auth(),
        ServiceError::Protocol(_) => false,
        _ => true,
    }
}
