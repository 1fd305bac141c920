//! Turning text into vectors: an OpenAI-compatible `/embeddings` endpoint.

use async_trait::async_trait;
use serde::Deserialize;
use serde_json::json;

use crate::agent::eval::{ApiEndpoint, JsonClient};
use crate::services::ServiceError;

/// Embeds texts.
#[async_trait]
pub trait Embedder: Send + Sync {
    /// One vector per text, in order.
    async fn embed(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, ServiceError>;
}

/// [`Embedder`] over `POST {base_url}/embeddings`.
#[derive(Debug, Clone)]
pub struct OpenAiEmbedder {
    client: JsonClient,
    model: String,
    dimensions: Option<u32>,
}

impl OpenAiEmbedder {
    /// Embeds with `model`; `dimensions` is sent when set (models that can
    /// shorten their vectors, e.g. `text-embedding-3-*`).
    pub fn new(endpoint: ApiEndpoint, model: &str, dimensions: Option<u32>) -> Self {
        OpenAiEmbedder {
            client: JsonClient::new(endpoint),
            model: model.to_owned(),
            dimensions,
        }
    }
}

#[derive(Deserialize)]
struct Embeddings {
    data: Vec<Embedding>,
}

#[derive(Deserialize)]
struct Embedding {
    index: usize,
    embedding: Vec<f32>,
}

#[async_trait]
impl Embedder for OpenAiEmbedder {
    async fn embed(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, ServiceError> {
        let mut body = json!({
            "model": self.model,
            "input": texts,
            "encoding_format": "float",
        });
        if let Some(dimensions) = self.dimensions {
            body["dimensions"] = json!(dimensions);
        }
        let answer: Embeddings = self.client.post("embeddings", &body).await?;
        let protocol = |message: String| ServiceError::Protocol(format!("embeddings: {message}"));
        let mut vectors = vec![None; texts.len()];
        for item in answer.data {
            let slot = vectors.get_mut(item.index).ok_or_else(|| {
                protocol(format!("index {} for {} inputs", item.index, texts.len()))
            })?;
            *slot = Some(item.embedding);
        }
        vectors
            .into_iter()
            .enumerate()
            .map(|(i, v)| v.ok_or_else(|| protocol(format!("no embedding for input {i}"))))
            .collect()
    }
}
