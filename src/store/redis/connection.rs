//! [`Connection`]: one standalone Redis or a Redis Cluster behind the same
//! commands.
//!
//! A cluster connection routes each command by its key's slot, follows
//! `MOVED` and `ASK` redirections, refreshes its slot map when a master
//! fails over, and retries with backoff. A pipeline or script must keep
//! its keys in one slot (`docs/architecture.md`, "Redis Cluster"), except
//! `MGET`, which the crate splits by slot. `SCAN` is one master's: a
//! cluster's keys are scanned master by master ([`Connection::masters`]).

use redis::aio::ConnectionManager;
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{RoutingInfo, SingleNodeRoutingInfo};
use redis::{Cmd, Pipeline, RedisFuture, Value};

/// A connection to the store's Redis, standalone or cluster.
#[derive(Clone)]
pub(super) enum Connection {
    /// One Redis (reconnecting on its own).
    Standalone(ConnectionManager),
    /// A Redis Cluster.
    Cluster(ClusterConnection),
}

/// A cluster master's address, as the cluster announces it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct Master {
    pub(super) host: String,
    pub(super) port: u16,
}

impl Connection {
    /// Runs `cmd` on one master (cluster) or on the only server.
    pub(super) async fn query_on<T: redis::FromRedisValue>(
        &mut self,
        master: Option<&Master>,
        cmd: &Cmd,
    ) -> redis::RedisResult<T> {
        match (self, master) {
            (Connection::Cluster(conn), Some(master)) => {
                let routing = RoutingInfo::SingleNode(SingleNodeRoutingInfo::ByAddress {
                    host: master.host.clone(),
                    port: master.port,
                });
                let value = conn.route_command(cmd.clone(), routing).await?;
                redis::from_redis_value(value).map_err(Into::into)
            }
            (conn, _) => cmd.query_async(conn).await,
        }
    }

    /// The masters to scan: `[None]` for a standalone Redis, else every
    /// master serving a slot now (from `CLUSTER SLOTS`).
    pub(super) async fn masters(&mut self) -> redis::RedisResult<Vec<Option<Master>>> {
        let Connection::Cluster(conn) = self else {
            return Ok(vec![None]);
        };
        let slots = conn
            .route_command(
                redis::cmd("CLUSTER").arg("SLOTS").clone(),
                RoutingInfo::SingleNode(SingleNodeRoutingInfo::Random),
            )
            .await?;
        let mut masters = masters_of(&slots);
        masters.sort();
        masters.dedup();
        Ok(masters.into_iter().map(Some).collect())
    }
}

/// The masters in a `CLUSTER SLOTS` answer: each range is
/// `[start, end, [host, port, id, ...], replicas...]`.
fn masters_of(slots: &Value) -> Vec<Master> {
    let Value::Array(ranges) = slots else {
        return Vec::new();
    };
    ranges
        .iter()
        .filter_map(|range| match range {
            Value::Array(fields) => match fields.get(2) {
                Some(Value::Array(node)) => match (node.first(), node.get(1)) {
                    (Some(host), Some(Value::Int(port))) => Some(Master {
                        host: redis::from_redis_value_ref::<String>(host).ok()?,
                        port: u16::try_from(*port).ok()?,
                    }),
                    _ => None,
                },
                _ => None,
            },
            _ => None,
        })
        .collect()
}

impl redis::aio::ConnectionLike for Connection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Connection::Standalone(conn) => conn.req_packed_command(cmd),
            Connection::Cluster(conn) => conn.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Connection::Standalone(conn) => conn.req_packed_commands(pipeline, offset, count),
            Connection::Cluster(conn) => conn.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Connection::Standalone(conn) => conn.get_db(),
            Connection::Cluster(conn) => conn.get_db(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(s: &str) -> Value {
        Value::BulkString(s.as_bytes().to_vec())
    }

    #[test]
    fn masters_are_the_first_node_of_each_slot_range() {
        let range = |start, end, port| {
            Value::Array(vec![
                Value::Int(start),
                Value::Int(end),
                Value::Array(vec![bulk("127.0.0.1"), Value::Int(port), bulk("id")]),
                Value::Array(vec![bulk("127.0.0.1"), Value::Int(port + 10), bulk("r")]),
            ])
        };
        let slots = Value::Array(vec![
            range(0, 5460, 7000),
            range(5461, 10922, 7001),
            range(10923, 16383, 7002),
        ]);
        let ports: Vec<u16> = masters_of(&slots).iter().map(|m| m.port).collect();
        assert_eq!(ports, [7000, 7001, 7002]);
        assert!(masters_of(&Value::Nil).is_empty());
    }
}
