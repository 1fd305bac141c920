//! A `redis-server` of our own, on a free loopback port, killed on drop.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running (or killed, to be restarted) redis-server.
pub struct RedisServer {
    port: u16,
    dir: tempfile::TempDir,
    persistent: bool,
    child: Option<Child>,
}

impl RedisServer {
    /// A server that keeps nothing on disk.
    pub fn start() -> Self {
        Self::launch(false)
    }

    /// A server with an append-only file fsynced on every write, so a kill
    /// and restart loses nothing it acknowledged.
    pub fn start_persistent() -> Self {
        Self::launch(true)
    }

    fn launch(persistent: bool) -> Self {
        let port = super::net::free_port();
        let mut server = RedisServer {
            port,
            dir: tempfile::tempdir().expect("a temporary directory"),
            persistent,
            child: None,
        };
        server.spawn();
        server
    }

    /// `redis://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Its address, `127.0.0.1:PORT`.
    pub fn addr(&self) -> std::net::SocketAddr {
        std::net::SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// Kills the server at once (SIGKILL), as a crash would.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same port (and, if persistent, the
    /// same data).
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    fn spawn(&mut self) {
        let port = self.port.to_string();
        let dir = self.dir.path().to_str().expect("a UTF-8 path").to_owned();
        let mut args = vec![
            "--port",
            &port,
            "--bind",
            "127.0.0.1",
            "--dir",
            &dir,
            "--save",
            "",
            "--protected-mode",
            "no",
        ];
        if self.persistent {
            args.extend(["--appendonly", "yes", "--appendfsync", "always"]);
        } else {
            args.extend(["--appendonly", "no"]);
        }
        let log = std::fs::File::create(self.dir.path().join("redis.log")).expect("a log file");
        let child = Command::new("redis-server")
            .args(&args)
            .stdout(Stdio::from(log))
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server (apt-get install redis-server)");
        self.child = Some(child);
        self.wait_ready();
    }

    /// Polls PING until the server answers PONG (it may be loading its
    /// append-only file). A bounded poll on purpose: a child process gives
    /// no notification that it listens, and redis-server's own readiness
    /// signal (`--supervised systemd`) needs a systemd notify socket.
    fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(mut stream) = TcpStream::connect(("127.0.0.1", self.port)) {
                let mut reply = [0u8; 64];
                let pong = stream.write_all(b"PING\r\n").is_ok()
                    && stream
                        .read(&mut reply)
                        .is_ok_and(|n| reply[..n].starts_with(b"+PONG"));
                if pong {
                    return;
                }
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        panic!("redis-server on port {} did not start", self.port);
    }

    /// A plain client connection for assertions.
    pub async fn client(&self) -> redis::aio::MultiplexedConnection {
        redis::Client::open(self.url())
            .expect("a valid url")
            .get_multiplexed_async_connection()
            .await
            .expect("a connection")
    }

    /// Jobs of `eval:jobs` delivered to a worker and not acknowledged.
    pub async fn pending_jobs(&self) -> i64 {
        let mut client = self.client().await;
        let summary: redis::Value = redis::cmd("XPENDING")
            .arg("eval:jobs")
            .arg("evaluators")
            .query_async(&mut client)
            .await
            .expect("XPENDING answers");
        match summary {
            redis::Value::Array(items) => match items.first() {
                Some(redis::Value::Int(n)) => *n,
                other => panic!("{other:?}"),
            },
            other => panic!("{other:?}"),
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}
