//! [`RedisStore`]: connections and the timeout every operation runs under.

use std::future::Future;

use async_trait::async_trait;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::cluster::{ClusterClientBuilder, ClusterConfig};

use super::connection::Connection;
use crate::store::{Store, StoreError, StoreSettings};

/// The consumer group of the evaluation job stream.
pub(super) const EVALUATORS: &str = "evaluators";

/// Keys asked per SCAN step.
const SCAN_BATCH: usize = 512;

/// Retries of one cluster request (a redirection, a node reconnecting).
const CLUSTER_RETRIES: u32 = 4;

/// The first wait before a cluster request is retried.
const CLUSTER_MIN_RETRY_WAIT_MS: u64 = 25;

/// The Redis store: a [`Connection`] (cloneable, multiplexed, reconnecting
/// on its own; one Redis or a cluster) for everything, and a second one
/// for blocking stream reads, which would otherwise hold up every other
/// command.
///
/// Connecting is lazy: a store made while Redis is down works as soon as
/// Redis is back. Each operation is bounded by the settings' `op_timeout`.
pub struct RedisStore {
    pub(super) settings: StoreSettings,
    pub(super) conn: Connection,
    pub(super) blocking: Connection,
    /// The URLs given (one, or a cluster's seed nodes), for
    /// [`RedisStore::check_topology`].
    seeds: Vec<redis::Client>,
    /// Where the URL came from, for messages.
    url_var: String,
    /// [`Store::identity`].
    identity: String,
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore")
            .field("keys", &self.settings.keys)
            .finish_non_exhaustive()
    }
}

/// `kind`, the first 16 hex digits of the SHA-256 of the servers'
/// addresses (host, port and database, sorted: no password, so that
/// rotating one or respelling the URL keeps the identity), and `prefix`.
fn identity(kind: &str, seeds: &[redis::Client], prefix: &str) -> String {
    let mut addresses: Vec<String> = seeds
        .iter()
        .map(|seed| {
            let info = seed.get_connection_info();
            format!("{}/{}", info.addr(), info.redis_settings().db())
        })
        .collect();
    addresses.sort();
    addresses.dedup();
    let digest = ring::digest::digest(&ring::digest::SHA256, addresses.join(",").as_bytes());
    let hash: String = digest.as_ref()[..8]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("{kind}:{hash}:{prefix}")
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
        let settings_prefix = settings.keys.prefix().to_owned();
        let timeout = settings.op_timeout;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(timeout))
            .set_response_timeout(Some(timeout))
            .set_number_of_retries(2)
            .set_max_delay(timeout);
        let conn = ConnectionManager::new_lazy_with_config(client.clone(), config.clone())
            .map_err(url_error)?;
        // Blocking reads wait up to their own limit; the caller bounds them.
        let blocking = ConnectionManager::new_lazy_with_config(
            client.clone(),
            config.set_response_timeout(None),
        )
        .map_err(url_error)?;
        let identity = identity("redis", std::slice::from_ref(&client), &settings_prefix);
        Ok(RedisStore {
            settings,
            conn: Connection::Standalone(conn),
            blocking: Connection::Standalone(blocking),
            seeds: vec![client],
            url_var: url_var.to_owned(),
            identity,
        })
    }

    /// A store on the Redis Cluster whose seed nodes `urls` names,
    /// comma-separated (`redis://10.0.0.1:6379,redis://10.0.0.2:6379`):
    /// any one that answers is enough to learn the others. Does not wait
    /// for the cluster to answer.
    pub fn connect_cluster(
        urls: &str,
        url_var: &str,
        settings: StoreSettings,
    ) -> Result<Self, StoreError> {
        let url_error = |source| StoreError::Url {
            var: url_var.to_owned(),
            source,
        };
        let seeds: Vec<&str> = urls
            .split(',')
            .map(str::trim)
            .filter(|url| !url.is_empty())
            .collect();
        let timeout = settings.op_timeout;
        // A moved slot or a failover is retried a few times with backoff
        // within the operation timeout; past it the caller retries (turns
        // wait in memory, as during a standalone outage).
        let client = ClusterClientBuilder::new(seeds.iter().copied())
            .retries(CLUSTER_RETRIES)
            .min_retry_wait(CLUSTER_MIN_RETRY_WAIT_MS)
            .max_retry_wait(u64::try_from(timeout.as_millis() / 2).unwrap_or(u64::MAX))
            .build()
            .map_err(url_error)?;
        let config = ClusterConfig::new().set_connection_timeout(timeout);
        let conn = client
            .get_pending_async_connection_with_config(config.clone().set_response_timeout(timeout));
        let blocking = client.get_pending_async_connection_with_config(config);
        let seeds = seeds
            .into_iter()
            .map(redis::Client::open)
            .collect::<Result<Vec<_>, _>>()
            .map_err(url_error)?;
        let identity = identity("redis-cluster", &seeds, settings.keys.prefix());
        Ok(RedisStore {
            settings,
            conn: Connection::Cluster(conn),
            blocking: Connection::Cluster(blocking),
            seeds,
            url_var: url_var.to_owned(),
            identity,
        })
    }

    /// True when the store is a Redis Cluster's.
    pub fn is_cluster(&self) -> bool {
        matches!(self.conn, Connection::Cluster(_))
    }

    /// Fails when the Redis answering at the URL is not deployed as the
    /// store was configured: a cluster node used as a standalone Redis
    /// (every key outside its slots would be refused with `MOVED`), or a
    /// standalone Redis given as a cluster. A seed that does not answer is
    /// no error: the store waits for it as for any outage.
    pub async fn check_topology(&self) -> Result<(), StoreError> {
        for seed in &self.seeds {
            let info = async {
                let mut conn = seed.get_multiplexed_async_connection().await?;
                redis::cmd("INFO")
                    .arg("cluster")
                    .query_async::<String>(&mut conn)
                    .await
            };
            let Ok(Ok(info)) = tokio::time::timeout(self.settings.op_timeout, info).await else {
                continue;
            };
            let enabled = info.lines().any(|line| line.trim() == "cluster_enabled:1");
            return match (self.is_cluster(), enabled) {
                (true, false) => Err(StoreError::Topology {
                    var: self.url_var.clone(),
                    found: "is a standalone Redis, not a cluster node".into(),
                    advice: "set `[context] cluster = false`, or name the cluster's nodes".into(),
                }),
                (false, true) => Err(StoreError::Topology {
                    var: self.url_var.clone(),
                    found: "is a Redis Cluster node".into(),
                    advice: "set `[context] cluster = true` (keys in other nodes' slots would be refused)".into(),
                }),
                _ => Ok(()),
            };
        }
        Ok(())
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

    /// `SET key 1 NX PX ttl_ms`: true when this set it.
    pub(super) async fn set_once(&self, key: String, ttl_ms: u64) -> Result<bool, StoreError> {
        self.set_once_as(key, "1", ttl_ms).await
    }

    /// [`set_once`](Self::set_once) with `value` as the key's value.
    pub(super) async fn set_once_as(
        &self,
        key: String,
        value: &str,
        ttl_ms: u64,
    ) -> Result<bool, StoreError> {
        let set: Option<String> = self
            .query(
                redis::cmd("SET")
                    .arg(key)
                    .arg(value)
                    .arg("NX")
                    .arg("PX")
                    .arg(ttl_ms.max(1)),
            )
            .await?;
        Ok(set.is_some())
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

    /// Every key matching `pattern` whose type is `kind`, from every master
    /// of a cluster (SCAN is per node), sorted and without duplicates (SCAN
    /// may return a key twice).
    pub(super) async fn scan_keys(
        &self,
        pattern: &str,
        kind: &str,
    ) -> Result<Vec<String>, StoreError> {
        let mut conn = self.conn.clone();
        let mut found = Vec::new();
        for master in self.timed(conn.masters()).await? {
            let mut cursor = 0u64;
            loop {
                let mut scan = redis::cmd("SCAN");
                scan.arg(cursor)
                    .arg("MATCH")
                    .arg(pattern)
                    .arg("COUNT")
                    .arg(SCAN_BATCH)
                    .arg("TYPE")
                    .arg(kind);
                let (next, batch): (u64, Vec<String>) =
                    self.timed(conn.query_on(master.as_ref(), &scan)).await?;
                found.extend(batch);
                if next == 0 {
                    break;
                }
                cursor = next;
            }
        }
        found.sort_unstable();
        found.dedup();
        Ok(found)
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

    fn identity(&self) -> String {
        self.identity.clone()
    }

    async fn check_topology(&self) -> Result<(), StoreError> {
        RedisStore::check_topology(self).await
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
