//! [`HttpWire`]: TTS over plain HTTP, one streamed request per sentence, in
//! order. The provider adapter ([`HttpSpeech`]) only builds the request.

use std::collections::{HashSet, VecDeque};
use std::pin::Pin;

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::Stream;
use futures_util::future::BoxFuture;

use crate::frame::SpokenTiming;
use crate::services::http::{client, next_chunk, send};
use crate::services::{Connection, ServiceError};

use super::wire::{TtsWire, WireEvent};

/// How a provider's HTTP speech endpoint is called.
pub(crate) trait HttpSpeech: Send + Sync + 'static {
    /// The provider's name.
    fn provider(&self) -> &'static str;

    /// The rate of the PCM it streams back.
    fn sample_rate(&self) -> u32;

    /// The request speaking `text`, answered by streamed 16-bit mono PCM.
    fn request(&self, client: &reqwest::Client, text: &str) -> reqwest::RequestBuilder;
}

type Body = Pin<Box<dyn Stream<Item = Result<Bytes, reqwest::Error>> + Send>>;

enum Current {
    /// The request is out; the response headers have not come.
    Starting {
        context: String,
        text: String,
        response: BoxFuture<'static, Result<reqwest::Response, ServiceError>>,
    },
    /// The audio streams.
    Streaming { context: String, body: Body },
}

/// Speaks sentences one request at a time. See the module docs.
pub(crate) struct HttpWire<A> {
    adapter: std::sync::Arc<A>,
    connection: Connection,
    queue: VecDeque<(String, String)>,
    current: Option<Current>,
    finished: HashSet<String>,
    done: VecDeque<String>,
}

impl<A: HttpSpeech> HttpWire<A> {
    pub(crate) fn new(adapter: A, connection: Connection) -> Self {
        HttpWire {
            adapter: std::sync::Arc::new(adapter),
            connection,
            queue: VecDeque::new(),
            current: None,
            finished: HashSet::new(),
            done: VecDeque::new(),
        }
    }

    fn current_context(&self) -> Option<&str> {
        match &self.current {
            Some(Current::Starting { context, .. } | Current::Streaming { context, .. }) => {
                Some(context)
            }
            None => None,
        }
    }

    /// Reports `context` done if it is finished and has nothing left.
    fn settle(&mut self, context: &str) {
        let busy =
            self.current_context() == Some(context) || self.queue.iter().any(|(c, _)| c == context);
        if !busy && self.finished.remove(context) {
            self.done.push_back(context.to_owned());
        }
    }

    fn start(&mut self, context: String, text: String) {
        let adapter = std::sync::Arc::clone(&self.adapter);
        let connection = self.connection;
        let body = text.clone();
        let response = Box::pin(async move {
            send(
                |client| adapter.request(client, &body),
                &connection,
                adapter.provider(),
            )
            .await
        });
        self.current = Some(Current::Starting {
            context,
            text,
            response,
        });
    }
}

#[async_trait]
impl<A: HttpSpeech> TtsWire for HttpWire<A> {
    fn provider(&self) -> &'static str {
        self.adapter.provider()
    }

    fn sample_rate(&self) -> u32 {
        self.adapter.sample_rate()
    }

    async fn warm_up(&mut self) -> Result<(), ServiceError> {
        client().map(|_| ())
    }

    async fn send_text(&mut self, context: &str, text: &str) -> Result<(), ServiceError> {
        self.queue.push_back((context.to_owned(), text.to_owned()));
        Ok(())
    }

    async fn finish(&mut self, context: &str) -> Result<(), ServiceError> {
        self.finished.insert(context.to_owned());
        self.settle(context);
        Ok(())
    }

    async fn cancel(&mut self, context: &str) {
        self.queue.retain(|(c, _)| c != context);
        if self.current_context() == Some(context) {
            self.current = None;
        }
        self.finished.remove(context);
        self.done.retain(|c| c != context);
    }

    async fn next_event(&mut self) -> WireEvent {
        loop {
            if let Some(context) = self.done.pop_front() {
                return WireEvent::Done { context };
            }
            match &mut self.current {
                None => match self.queue.pop_front() {
                    Some((context, text)) => self.start(context, text),
                    None => std::future::pending::<()>().await,
                },
                Some(Current::Starting { response, .. }) => {
                    let result = response.await;
                    let Some(Current::Starting { context, text, .. }) = self.current.take() else {
                        continue;
                    };
                    match result {
                        Ok(response) => {
                            self.current = Some(Current::Streaming {
                                context: context.clone(),
                                body: Box::pin(response.bytes_stream()),
                            });
                            return WireEvent::Text {
                                context,
                                text,
                                start: None,
                                timing: SpokenTiming::Sentence,
                            };
                        }
                        Err(error) => {
                            self.settle(&context);
                            return WireEvent::Failed {
                                context: Some(context),
                                error,
                            };
                        }
                    }
                }
                Some(Current::Streaming { body, context }) => {
                    let context = context.clone();
                    match next_chunk(body, self.connection.read_timeout).await {
                        Ok(Some(pcm)) => return WireEvent::Audio { context, pcm },
                        Ok(None) => {
                            self.current = None;
                            self.settle(&context);
                        }
                        Err(error) => {
                            // Never retried: part of the sentence was heard.
                            self.current = None;
                            self.settle(&context);
                            return WireEvent::Failed {
                                context: Some(context),
                                error,
                            };
                        }
                    }
                }
            }
        }
    }
}
