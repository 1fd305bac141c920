//! [`RedisStore`]: connections and the timeout every operation runs under.

use std::future::Future;

use async_trait::async_trait;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};

use crate::store::{Store, StoreError, StoreSettings};

/// The consumer group of the evaluation job stream.
pub(super) const EVALUATORS: &str = "evaluators";

/// The Redis store: a [`ConnectionManager`] (cloneable, multiplexed,
/// reconnecting on its own) for everything, and a second one for blocking
/// stream reads, which would otherwise hold up every other command.
///
/// Connecting is lazy: a store made while Redis is down works as soon as
/// Redis is back. Each operation is bounded by the settings' `op_timeout`.
pub struct RedisStore {
    pub(super) settings: StoreSettings,
    pub(super) conn: ConnectionManager,
    pub(super) blocking: ConnectionManager,
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore")
            .field("keys", &self.settings.keys)
            .finish_non_exhaustive()
    }
}

impl RedisStore {
    /// A store on the Redis at `url` (`redis://[:password@]host:port[/db]`,
    /// or `rediss://` for TLS). `url_var` names where the URL came from, for
    /// messages. Does not wait for Redis to answer.
    pub fn connect(url: &str, url_var: &str, settings: StoreSettings) -> Result<Self, StoreError> {
        let url_error = |source| StoreError::Url {
            var: url_var.to_owned(),
            source,
        };
        let client = redis::Client::open(url).map_err(url_error)?;
        let timeout = settings.op_timeout;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(timeout))
            .set_response_timeout(Some(timeout))
            .set_number_of_retries(2)
            .set_max_delay(timeout);
        let conn = ConnectionManager::new_lazy_with_config(client.clone(), config.clone())
            .map_err(url_error)?;
        // Blocking reads wait up to their own limit; the caller bounds them.
        let blocking =
            ConnectionManager::new_lazy_with_config(client, config.set_response_timeout(None))
                .map_err(url_error)?;
        Ok(RedisStore {
            settings,
            conn,
            blocking,
        })
    }

    /// Runs one Redis exchange under the operation timeout.
    pub(super) async fn timed<T>(
        &self,
        exchange: impl Future<Output = redis::RedisResult<T>>,
    ) -> Result<T, StoreError> {
        match tokio::time::timeout(self.settings.op_timeout, exchange).await {
            Ok(result) => Ok(result?),
            Err(_) => Err(StoreError::Timeout(self.settings.op_timeout)),
        }
    }

    /// Runs `cmd` on the shared connection under the operation timeout.
    pub(super) async fn query<T: redis::FromRedisValue>(
        &self,
        cmd: &redis::Cmd,
    ) -> Result<T, StoreError> {
        let mut conn = self.conn.clone();
        self.timed(cmd.query_async(&mut conn)).await
    }

    /// Runs `pipe` on the shared connection under the operation timeout.
    pub(super) async fn query_pipe<T: redis::FromRedisValue>(
        &self,
        pipe: &redis::Pipeline,
    ) -> Result<T, StoreError> {
        let mut conn = self.conn.clone();
        self.timed(pipe.query_async(&mut conn)).await
    }

    /// Runs a script on the shared connection under the operation timeout.
    pub(super) async fn invoke<T: redis::FromRedisValue>(
        &self,
        script: &redis::ScriptInvocation<'_>,
    ) -> Result<T, StoreError> {
        let mut conn = self.conn.clone();
        self.timed(script.invoke_async(&mut conn)).await
    }
}

#[async_trait]
impl Store for RedisStore {
    fn backend(&self) -> &'static str {
        "redis"
    }

    async fn ping(&self) -> Result<(), StoreError> {
        let pong: String = self.query(&redis::cmd("PING")).await?;
        if pong == "PONG" {
            Ok(())
        } else {
            Err(StoreError::corrupt("PING", format!("answered {pong:?}")))
        }
    }
}
