//! HTTP tools declared in TOML: the call POSTs its arguments as JSON to a
//! URL, and the response body is the result.
//!
//! ```toml
//! [[processor.http_tools]]
//! name = "get_weather"
//! description = "The weather in a city."
//! url = "https://tools.example.com/weather"
//! parameters = { type = "object", properties = { city = { type = "string" } }, required = ["city"] }
//! ```
//!
//! A tool call may have side effects, so it is never retried, and its
//! redirects are not followed: on a 301, 302 or 303 a client that follows
//! turns the POST into a body-less GET, and the landing page's 200 would
//! pass for the tool's answer. A 3xx is the call's error.
//!
//! The URL often carries a secret (a key in its path or query): errors
//! name the tool, never the URL, since the model, the store, the client
//! app and the logs all read them.

use std::time::Duration;

use async_trait::async_trait;
use futures_util::TryStreamExt;
use serde::Deserialize;
use serde_json::Value;

use crate::config::Seconds;
use crate::pipeline::{BuildError, SessionSetup};
use crate::services::http::{client_without_redirects, next_chunk};
use crate::services::url::check_http_url;
use crate::services::{ApiKey, Connection, error::error_message};

use super::super::tool_schema::check_schema;
use super::tool::{Tool, ToolError, ToolOutcome, ToolSpec, is_tool_name};

/// The longest result kept, in bytes; the model does not need more.
const MAX_RESULT: usize = 16 * 1024;

/// `[[processor.http_tools]]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpToolConfig {
    /// The name the model calls it by.
    pub name: String,
    /// What it does, for the model.
    pub description: String,
    /// Where the arguments are POSTed.
    pub url: String,
    /// Its arguments, as a JSON-schema object. Default: no arguments.
    #[serde(default = "no_parameters")]
    pub parameters: Value,
    /// The longest a call may take, in seconds (above 0, at most 300).
    /// Default: the LLM's
    /// `tool_timeout_secs`.
    #[serde(default)]
    pub timeout_secs: Option<Seconds<1, 300>>,
    /// Whether an interruption cancels a call in flight. Default true.
    #[serde(default = "default_true")]
    pub cancel_on_interruption: bool,
    /// Whether it is without side effects (a lookup): a preemptive reply
    /// may call it before the user's turn is confirmed over, and a
    /// reflection rewrite is offered it (without the key, a rewrite is not
    /// offered the tool). Default false.
    #[serde(default)]
    pub safe_to_run_early: bool,
    /// A variable holding a token sent as `Authorization: Bearer`.
    #[serde(default)]
    pub api_key_env: Option<String>,
}

fn no_parameters() -> Value {
    serde_json::json!({"type": "object", "properties": {}})
}

fn default_true() -> bool {
    true
}

impl HttpToolConfig {
    /// The tool for one session.
    pub fn build(&self, setup: &SessionSetup) -> Result<HttpTool, BuildError> {
        let invalid =
            |message: String| BuildError::Invalid(format!("http tool `{}`: {message}", self.name));
        if !is_tool_name(&self.name) {
            return Err(invalid(
                "the name must be letters, digits, `_` or `-`".into(),
            ));
        }
        check_http_url("url", &self.url).map_err(|e| invalid(e.to_string()))?;
        if self.parameters.get("type").and_then(Value::as_str) != Some("object") {
            return Err(invalid(
                "parameters must be a JSON-schema object with type = \"object\"".into(),
            ));
        }
        check_schema(&self.parameters)
            .map_err(|e| invalid(format!("parameters is not a valid JSON Schema: {e}")))?;
        let timeout = self.timeout_secs.map(Seconds::duration);
        Ok(HttpTool {
            spec: ToolSpec {
                name: self.name.clone(),
                description: self.description.clone(),
                parameters: self.parameters.clone(),
            },
            url: self.url.clone(),
            timeout,
            cancel_on_interruption: self.cancel_on_interruption,
            safe_to_run_early: self.safe_to_run_early,
            api_key: ApiKey::from_env(setup, "api_key_env", self.api_key_env.as_deref())?,
        })
    }
}

/// A tool served over HTTP. See the module docs.
pub struct HttpTool {
    spec: ToolSpec,
    url: String,
    timeout: Option<Duration>,
    cancel_on_interruption: bool,
    safe_to_run_early: bool,
    api_key: Option<ApiKey>,
}

impl std::fmt::Debug for HttpTool {
    // The URL may hold a secret.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpTool")
            .field("name", &self.spec.name)
            .finish_non_exhaustive()
    }
}

impl HttpTool {
    /// The tool's error for a request that failed: its cause, named by the
    /// tool, without the URL reqwest would quote.
    fn failed(&self, error: reqwest::Error) -> ToolError {
        let error = error.without_url();
        let mut reason = error.to_string();
        let mut source = std::error::Error::source(&error);
        while let Some(cause) = source {
            reason.push_str(": ");
            reason.push_str(&cause.to_string());
            source = cause.source();
        }
        // No cause is known to quote it; should one do so, it goes.
        let reason = self.scrub(&reason);
        ToolError::Failed(format!(
            "the HTTP tool `{}` could not be reached: {reason}",
            self.spec.name
        ))
    }

    /// `text` (from the server or reqwest) without the tool's URL, its
    /// path or its query string, any of which may hold a secret: a
    /// server's 404 page quotes the path (`Cannot POST /hooks/…`).
    fn scrub(&self, text: &str) -> String {
        let mut forms = vec![self.url.clone()];
        if let Ok(url) = reqwest::Url::parse(&self.url) {
            forms.push(url.to_string());
            let query = url.query().filter(|q| !q.is_empty());
            if let Some(query) = query {
                forms.push(format!("{}?{query}", url.path()));
                forms.push(query.to_owned());
            }
            // The root path says nothing and is everywhere.
            if url.path() != "/" {
                forms.push(url.path().to_owned());
            }
        }
        forms.sort_by_key(|form| std::cmp::Reverse(form.len()));
        let mut text = text.to_owned();
        for form in forms.iter().filter(|form| !form.is_empty()) {
            text = text.replace(form.as_str(), "…");
        }
        text
    }
}

#[async_trait]
impl Tool for HttpTool {
    fn spec(&self) -> &ToolSpec {
        &self.spec
    }

    fn cancel_on_interruption(&self) -> bool {
        self.cancel_on_interruption
    }

    fn safe_to_run_early(&self) -> bool {
        self.safe_to_run_early
    }

    fn timeout(&self) -> Option<Duration> {
        self.timeout
    }

    async fn call(&self, arguments: Value) -> Result<ToolOutcome, ToolError> {
        let mut request = client_without_redirects()?.post(&self.url).json(&arguments);
        if let Some(key) = &self.api_key {
            request = request.bearer_auth(key.expose());
        }
        // The caller bounds the whole call with the tool's timeout.
        let response = request.send().await.map_err(|e| self.failed(e))?;
        let status = response.status();
        let mut body = Vec::new();
        let mut stream = response.bytes_stream().map_err(reqwest::Error::without_url);
        let read_timeout = Connection::default().read_timeout;
        while body.len() < MAX_RESULT {
            match next_chunk(&mut stream, read_timeout).await? {
                Some(chunk) => body.extend_from_slice(&chunk),
                None => break,
            }
        }
        body.truncate(MAX_RESULT);
        if status.is_redirection() {
            // Where it points is not said: it may hold a secret too.
            return Err(ToolError::Failed(format!(
                "the HTTP tool `{}` answered with a redirect (HTTP {}), which tools do not \
                 follow",
                self.spec.name,
                status.as_u16()
            )));
        }
        if !status.is_success() {
            // Scrubbed before it is shortened too, lest a cut leave part
            // of a secret.
            let body = self.scrub(&String::from_utf8_lossy(&body));
            let message = self.scrub(&error_message(body.as_bytes()));
            return Err(ToolError::Failed(format!(
                "the HTTP tool `{}` answered HTTP {}: {message}",
                self.spec.name,
                status.as_u16()
            )));
        }
        Ok(ToolOutcome::result(
            String::from_utf8_lossy(&body).into_owned(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use axum::http::{StatusCode, header::LOCATION};
    use serde_json::json;

    use super::*;

    fn tool(extra: &str) -> Result<HttpTool, BuildError> {
        let config: HttpToolConfig =
            toml::from_str(&format!("name = \"lookup\"\ndescription = \"d\"\n{extra}"))
                .unwrap_or_else(|e| panic!("{e}"));
        config.build(&SessionSetup::new("s", 16_000))
    }

    #[tokio::test]
    async fn a_secret_in_the_url_is_not_in_the_error_of_a_server_that_is_down() {
        let closed = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .unwrap()
            .port();
        let tool = tool(&format!(
            "url = \"http://127.0.0.1:{closed}/hooks/SECRET-PATH?token=SECRET-TOKEN\""
        ))
        .unwrap();
        let error = tool.call(json!({})).await.unwrap_err().to_string();
        assert!(
            error.starts_with("the HTTP tool `lookup` could not be reached: "),
            "{error}"
        );
        assert!(!error.contains("SECRET"), "{error}");
        assert!(!format!("{tool:?}").contains("SECRET"));
    }

    #[tokio::test]
    async fn a_redirect_is_the_calls_error_and_not_followed() {
        let landed = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&landed);
        let app = axum::Router::new()
            .route(
                "/tool",
                axum::routing::post(|| async { (StatusCode::FOUND, [(LOCATION, "/landing")]) }),
            )
            .route(
                "/landing",
                axum::routing::any(move || {
                    counter.fetch_add(1, Ordering::SeqCst);
                    async { "Welcome to our site" }
                }),
            );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let served = tokio::spawn(async move { axum::serve(listener, app).await });
        let tool = tool(&format!("url = \"http://{addr}/tool\"")).unwrap();
        let error = tool.call(json!({})).await.unwrap_err().to_string();
        assert_eq!(
            error,
            "the HTTP tool `lookup` answered with a redirect (HTTP 302), which tools do not follow"
        );
        assert_eq!(
            landed.load(Ordering::SeqCst),
            0,
            "the landing page was not asked"
        );
        served.abort();
    }

    #[tokio::test]
    async fn an_error_status_names_the_tool_and_not_its_url() {
        let app = axum::Router::new().fallback(|uri: axum::http::Uri| async move {
            // As Express answers a route it does not know.
            let page = format!("<pre>Cannot POST {}</pre> (at {uri})", uri.path());
            (StatusCode::NOT_FOUND, page)
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let served = tokio::spawn(async move { axum::serve(listener, app).await });
        let tool = tool(&format!(
            "url = \"http://{addr}/hooks/SECRET-PATH?token=SECRET-TOKEN\""
        ))
        .unwrap();
        let error = tool.call(json!({})).await.unwrap_err().to_string();
        assert!(
            error.starts_with("the HTTP tool `lookup` answered HTTP 404: "),
            "{error}"
        );
        assert!(error.contains("Cannot POST …"), "{error}");
        assert!(!error.contains("SECRET"), "{error}");
        served.abort();
    }

    #[test]
    fn parameters_that_do_not_compile_fail_the_build() {
        let error = tool(
            "url = \"http://127.0.0.1:1/t\"\n\
             parameters = { type = \"object\", properties = { a = { type = \"nonsense\" } } }",
        )
        .unwrap_err()
        .to_string();
        assert!(
            error.contains("http tool `lookup`: parameters is not a valid JSON Schema"),
            "{error}"
        );
    }
}
