//! A small JSON-over-HTTP client for OpenAI-compatible endpoints
//! (`/chat/completions`, `/embeddings`): bearer auth, a timeout, and retries
//! with backoff for what is worth retrying (connection failures, timeouts,
//! 429 and 5xx).

use std::time::Duration;

use serde::de::DeserializeOwned;

/// An OpenAI-compatible endpoint failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ApiError {
    /// The request could not be sent or the answer not received.
    #[error("{url}: {source}")]
    Transport {
        /// The endpoint.
        url: String,
        /// Why.
        source: reqwest::Error,
    },
    /// The server answered with an error status.
    #[error("{url}: HTTP {status}: {body}")]
    Status {
        /// The endpoint.
        url: String,
        /// The status code.
        status: u16,
        /// The start of the answer's body.
        body: String,
    },
    /// The answer is not what the protocol says.
    #[error("{url}: unexpected answer: {message}")]
    Protocol {
        /// The endpoint.
        url: String,
        /// What is wrong.
        message: String,
    },
    /// The HTTP client could not be built.
    #[error("cannot build the HTTP client: {0}")]
    Client(reqwest::Error),
}

impl ApiError {
    /// True for failures another attempt may get past.
    pub fn is_transient(&self) -> bool {
        match self {
            ApiError::Transport { .. } => true,
            ApiError::Status { status, .. } => *status == 429 || *status >= 500,
            ApiError::Protocol { .. } | ApiError::Client(_) => false,
        }
    }
}

/// Where an OpenAI-compatible API lives and how to call it.
#[derive(Debug, Clone)]
pub struct ApiEndpoint {
    /// e.g. `https://api.openai.com/v1` or `http://127.0.0.1:8080/v1`.
    pub base_url: String,
    /// Sent as `Authorization: Bearer …` when set.
    pub api_key: Option<String>,
    /// Per request.
    pub timeout: Duration,
    /// Extra attempts after a transient failure.
    pub retries: u32,
}

/// An HTTP client with `timeout` per request.
pub(crate) fn http_client(timeout: Duration) -> Result<reqwest::Client, reqwest::Error> {
    // reqwest is built without a default crypto provider; ring is the one
    // the rest of the tree uses. Installing it twice is harmless.
    let _already_installed = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout.min(Duration::from_secs(10)))
        .build()
}

/// A client for one endpoint.
#[derive(Debug, Clone)]
pub(crate) struct JsonClient {
    http: reqwest::Client,
    endpoint: ApiEndpoint,
}

impl JsonClient {
    pub(crate) fn new(endpoint: ApiEndpoint) -> Result<Self, ApiError> {
        let http = http_client(endpoint.timeout).map_err(ApiError::Client)?;
        Ok(JsonClient { http, endpoint })
    }

    /// POSTs `body` to `{base_url}/{path}` and decodes the JSON answer.
    pub(crate) async fn post<T: DeserializeOwned>(
        &self,
        path: &str,
        body: &serde_json::Value,
    ) -> Result<T, ApiError> {
        let url = format!("{}/{path}", self.endpoint.base_url.trim_end_matches('/'));
        let mut backoff = Duration::from_millis(250);
        let mut attempt = 0;
        loop {
            match self.post_once(&url, body).await {
                Err(err) if err.is_transient() && attempt < self.endpoint.retries => {
                    attempt += 1;
                    tracing::warn!(%url, error = %err, attempt, "retrying");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 4).min(Duration::from_secs(8));
                }
                result => return result,
            }
        }
    }

    async fn post_once<T: DeserializeOwned>(
        &self,
        url: &str,
        body: &serde_json::Value,
    ) -> Result<T, ApiError> {
        let transport = |source| ApiError::Transport {
            url: url.to_owned(),
            source,
        };
        let mut request = self.http.post(url).json(body);
        if let Some(key) = &self.endpoint.api_key {
            request = request.bearer_auth(key);
        }
        let response = request.send().await.map_err(transport)?;
        let status = response.status();
        let bytes = response.bytes().await.map_err(transport)?;
        if !status.is_success() {
            let body = String::from_utf8_lossy(&bytes);
            return Err(ApiError::Status {
                url: url.to_owned(),
                status: status.as_u16(),
                body: body.chars().take(500).collect(),
            });
        }
        serde_json::from_slice(&bytes).map_err(|err| ApiError::Protocol {
            url: url.to_owned(),
            message: err.to_string(),
        })
    }
}
