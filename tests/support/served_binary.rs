//! `voxpipe serve` as a child process: its address, its log lines, its
//! memory, and signals, for tests of what only a whole process shows
//! (descriptor limits, RSS, exiting on SIGTERM).

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// A running `voxpipe serve`.
pub struct ServedBinary {
    pub child: Child,
    pub addr: SocketAddr,
    /// Its stderr, line by line.
    pub lines: mpsc::Receiver<String>,
}

impl ServedBinary {
    /// Serves `pipeline` (a path from the crate root) on a free loopback
    /// port with `--set` `overrides`, logging `log_format`, under
    /// `ulimit -n open_files` when given; waits for "listening on".
    pub fn start(
        pipeline: &str,
        overrides: &[&str],
        log_format: &str,
        open_files: Option<u32>,
    ) -> Self {
        let mut command = vec![
            "exec".to_owned(),
            env!("CARGO_BIN_EXE_voxpipe").to_owned(),
            "--log-format".to_owned(),
            log_format.to_owned(),
            "serve".to_owned(),
            pipeline.to_owned(),
            "--bind".to_owned(),
            "127.0.0.1:0".to_owned(),
        ];
        for set in overrides {
            command.push("--set".to_owned());
            command.push((*set).to_owned());
        }
        let quoted: Vec<String> = command
            .iter()
            .map(|arg| {
                if arg == "exec" {
                    arg.clone()
                } else {
                    format!("'{}'", arg.replace('\'', r"'\''"))
                }
            })
            .collect();
        let script = match open_files {
            Some(n) => format!("ulimit -n {n} && {}", quoted.join(" ")),
            None => quoted.join(" "),
        };
        let mut child = Command::new("sh")
            .args(["-c", &script])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("voxpipe starts");
        let stderr = child.stderr.take().unwrap();
        let (lines_tx, lines) = mpsc::channel::<String>();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { return };
                if lines_tx.send(line).is_err() {
                    return;
                }
            }
        });
        let deadline = Instant::now() + Duration::from_secs(60);
        let addr = loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = lines
                .recv_timeout(left)
                .expect("voxpipe says where it listens");
            if let Some(at) = line.find("listening on ") {
                let rest = &line[at + "listening on ".len()..];
                let addr: String = rest
                    .chars()
                    .take_while(|c| !c.is_whitespace() && *c != '"')
                    .collect();
                break addr.parse().expect("an address");
            }
        };
        ServedBinary { child, addr, lines }
    }

    /// Its resident set size, in bytes.
    pub fn rss_bytes(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        let kb: u64 = status
            .lines()
            .find(|l| l.starts_with("VmRSS:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|n| n.parse().ok())
            .expect("VmRSS");
        kb * 1024
    }

    /// Sends SIGTERM.
    pub fn terminate(&self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Waits for it to exit, at most `timeout`; `None` if still running.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Every log line so far.
    pub fn drain_lines(&self) -> Vec<String> {
        self.lines.try_iter().collect()
    }
}

impl Drop for ServedBinary {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
