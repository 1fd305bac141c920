//! A Redis Cluster of our own on free loopback ports: `redis-server`s
//! with `cluster-enabled yes`, joined by `redis-cli --cluster create`,
//! killed on drop.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// One node of the cluster.
struct Node {
    port: u16,
    /// Its cluster bus port, chosen free too (the default, port + 10000,
    /// may be taken or beyond 65535).
    bus_port: u16,
    child: Option<Child>,
}

/// A running cluster: `masters` masters, each with `replicas` replicas.
pub struct RedisCluster {
    dir: tempfile::TempDir,
    nodes: Vec<Node>,
}

/// A node's role, from `CLUSTER NODES`.
#[derive(Debug, Clone)]
pub struct NodeRole {
    /// Its port.
    pub port: u16,
    /// Its id.
    pub id: String,
    /// The id of the master it replicates, if a replica.
    pub master_of: Option<String>,
    /// Whether it is a master serving slots.
    pub is_master: bool,
}

/// How long a cluster node is unreachable before its replica takes over:
/// short, so the failover test is quick; long enough for a loaded CI
/// machine not to fail over a node that is merely slow.
const NODE_TIMEOUT_MS: u64 = 2000;

impl RedisCluster {
    /// Starts `masters` masters with `replicas` replicas each and waits
    /// until every node reports `cluster_state:ok`.
    pub fn start(masters: usize, replicas: usize) -> Self {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let mut cluster = RedisCluster {
            dir,
            nodes: Vec::new(),
        };
        for _ in 0..masters * (1 + replicas) {
            let node = cluster.spawn_answering();
            cluster.nodes.push(node);
        }
        let addresses: Vec<String> = cluster
            .nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port))
            .collect();
        let created = Command::new("redis-cli")
            .arg("--cluster")
            .arg("create")
            .args(&addresses)
            .args(["--cluster-replicas", &replicas.to_string(), "--cluster-yes"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("redis-cli (apt-get install redis-tools)");
        assert!(created.success(), "redis-cli --cluster create failed");
        cluster.wait_ok();
        if replicas > 0 {
            // Every replica has finished its first sync: a failover then
            // has a replica to promote.
            for node in cluster.roles().iter().filter(|r| r.master_of.is_some()) {
                wait_until(&format!("replica {} in sync", node.port), || {
                    cli(node.port, &["INFO", "replication"])
                        .is_some_and(|info| info.contains("master_link_status:up"))
                });
            }
        }
        cluster
    }

    /// A node started on free ports, answering as itself. A port found
    /// free can be taken before the node binds it (the tests of a binary
    /// run in parallel, each starting nodes): a node that exits is started
    /// again on other ports, and the answer must come from its own
    /// process, not from another test's node on the same port.
    fn spawn_answering(&self) -> Node {
        for _ in 0..5 {
            let mut node = Node {
                port: super::net::free_port(),
                bus_port: super::net::free_port(),
                child: None,
            };
            self.spawn(&mut node);
            let pid = node.child.as_ref().map_or(0, Child::id);
            let own_answer = format!("process_id:{pid}");
            let mut exited = false;
            wait_until(&format!("node {} answers or exits", node.port), || {
                if let Some(child) = node.child.as_mut()
                    && matches!(child.try_wait(), Ok(Some(_)))
                {
                    exited = true;
                    return true;
                }
                cli(node.port, &["INFO", "server"])
                    .is_some_and(|info| info.lines().any(|line| line.trim() == own_answer))
            });
            if !exited {
                return node;
            }
        }
        panic!("no redis-server node could start on free ports in five tries");
    }

    fn spawn(&self, node: &mut Node) {
        let dir = self.dir.path().join(node.port.to_string());
        std::fs::create_dir_all(&dir).expect("a node directory");
        let log = std::fs::File::create(dir.join("redis.log")).expect("a log file");
        let child = Command::new("redis-server")
            .args(["--port", &node.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--dir", dir.to_str().expect("a UTF-8 path")])
            .args(["--save", "", "--appendonly", "no", "--protected-mode", "no"])
            .args([
                "--cluster-enabled",
                "yes",
                "--cluster-config-file",
                "nodes.conf",
            ])
            .args(["--cluster-node-timeout", &NODE_TIMEOUT_MS.to_string()])
            .args(["--cluster-port", &node.bus_port.to_string()])
            // The other masters' slots stay served while one fails over.
            .args(["--cluster-require-full-coverage", "no"])
            // A replica may be promoted however long its link was down: on a
            // loaded machine a first sync can fail and be retried, and the
            // default validity factor then refuses the failover the tests
            // are about. Syncs start at once rather than after diskless
            // sync's 5 s wait for more replicas.
            .args(["--cluster-replica-validity-factor", "0"])
            .args(["--repl-diskless-sync-delay", "0"])
            .stdout(Stdio::from(log))
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server (apt-get install redis-server)");
        node.child = Some(child);
    }

    /// Every node's `redis://127.0.0.1:PORT`, comma-separated: the value
    /// of `url_env` with `[context] cluster = true`.
    pub fn urls(&self) -> String {
        self.nodes
            .iter()
            .map(|n| format!("redis://127.0.0.1:{}", n.port))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The nodes' roles as a live node sees them now.
    pub fn roles(&self) -> Vec<NodeRole> {
        let live = self
            .nodes
            .iter()
            .find(|n| n.child.is_some())
            .expect("a live node");
        let out = cli(live.port, &["CLUSTER", "NODES"]).expect("CLUSTER NODES answers");
        out.lines()
            .filter_map(|line| {
                let fields: Vec<&str> = line.split_whitespace().collect();
                let port = fields.get(1)?.split([':', '@']).nth(1)?.parse().ok()?;
                let flags = fields.get(2)?;
                Some(NodeRole {
                    port,
                    id: (*fields.first()?).to_owned(),
                    master_of: (*fields.get(3)? != "-").then(|| fields[3].to_owned()),
                    is_master: flags.contains("master") && !flags.contains("fail"),
                })
            })
            .collect()
    }

    /// The port of the master serving `key`'s slot.
    pub fn master_of_key(&self, key: &str) -> u16 {
        let slot: u16 = cli(self.live_port(), &["CLUSTER", "KEYSLOT", key])
            .and_then(|s| s.trim().parse().ok())
            .expect("CLUSTER KEYSLOT answers");
        self.roles()
            .iter()
            .filter(|r| r.is_master)
            .find(|r| {
                cli(r.port, &["CLUSTER", "NODES"]).is_some_and(|nodes| {
                    nodes
                        .lines()
                        .any(|l| l.contains("myself") && owns_slot(l, slot))
                })
            })
            .map(|r| r.port)
            .expect("a master serves the slot")
    }

    fn live_port(&self) -> u16 {
        self.nodes
            .iter()
            .find(|n| n.child.is_some())
            .expect("a live node")
            .port
    }

    /// Kills the node on `port` at once (SIGKILL), as a crash would.
    pub fn kill(&mut self, port: u16) {
        let node = self
            .nodes
            .iter_mut()
            .find(|n| n.port == port)
            .expect("a node on that port");
        if let Some(mut child) = node.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Waits until every live node reports `cluster_state:ok` (after a
    /// start or a failover). A bounded poll: a cluster gives no
    /// notification when it has converged.
    pub fn wait_ok(&self) {
        for node in self.nodes.iter().filter(|n| n.child.is_some()) {
            wait_until(
                &format!("node {} reports cluster_state:ok", node.port),
                || {
                    cli(node.port, &["CLUSTER", "INFO"])
                        .is_some_and(|info| info.contains("cluster_state:ok"))
                },
            );
        }
    }

    /// Keys held by the master on `port`.
    pub fn dbsize(&self, port: u16) -> u64 {
        cli(port, &["DBSIZE"])
            .and_then(|s| s.trim().parse().ok())
            .expect("DBSIZE answers")
    }

    /// Clears every live master's command counts (`CONFIG RESETSTAT`).
    pub fn reset_stats(&self) {
        for role in self.roles().iter().filter(|r| r.is_master) {
            cli(role.port, &["CONFIG", "RESETSTAT"]).expect("CONFIG RESETSTAT answers");
        }
    }

    /// Commands run by every live master since [`Self::reset_stats`], by
    /// name (`INFO commandstats`), summed.
    pub fn command_stats(&self) -> std::collections::BTreeMap<String, u64> {
        let mut stats = std::collections::BTreeMap::new();
        for role in self.roles().iter().filter(|r| r.is_master) {
            let info = cli(role.port, &["INFO", "commandstats"]).expect("INFO answers");
            for line in info.lines() {
                // cmdstat_get:calls=12,usec=...
                let Some((name, rest)) = line
                    .trim()
                    .strip_prefix("cmdstat_")
                    .and_then(|l| l.split_once(':'))
                else {
                    continue;
                };
                let calls = rest
                    .split(',')
                    .find_map(|kv| kv.strip_prefix("calls="))
                    .and_then(|n| n.parse::<u64>().ok())
                    .unwrap_or(0);
                *stats.entry(name.to_owned()).or_insert(0) += calls;
            }
        }
        stats
    }

    /// A cluster client connection for assertions.
    pub async fn client(&self) -> redis::cluster_async::ClusterConnection {
        let seeds: Vec<String> = self.urls().split(',').map(str::to_owned).collect();
        redis::cluster::ClusterClient::new(seeds)
            .expect("valid urls")
            .get_async_connection()
            .await
            .expect("a cluster connection")
    }
}

/// Whether a `CLUSTER NODES` line lists `slot` among its ranges.
fn owns_slot(line: &str, slot: u16) -> bool {
    line.split_whitespace().skip(8).any(|range| {
        let (start, end) = range.split_once('-').unwrap_or((range, range));
        match (start.parse::<u16>(), end.parse::<u16>()) {
            (Ok(start), Ok(end)) => (start..=end).contains(&slot),
            _ => false,
        }
    })
}

/// `redis-cli -p PORT ARGS...`'s output, if it ran.
fn cli(port: u16, args: &[&str]) -> Option<String> {
    let out = Command::new("redis-cli")
        .args(["-p", &port.to_string()])
        .args(args)
        .stderr(Stdio::null())
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Polls `ready` until it holds (generously bounded for a loaded CI
/// machine).
fn wait_until(what: &str, mut ready: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        if ready() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("timed out waiting: {what}");
}

impl Drop for RedisCluster {
    fn drop(&mut self) {
        for node in &mut self.nodes {
            if let Some(mut child) = node.child.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}
