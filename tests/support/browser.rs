//! Scripts of `tests/browser/` run with node against headless Chromium:
//! where Chromium is (`CHROMIUM`, else Debian's), that `npm ci` was run,
//! and running one script to its end.

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The sample speech the fake microphone plays.
pub fn sample_wav() -> PathBuf {
    repo().join("assets/samples/hello.wav")
}

fn chromium() -> PathBuf {
    let path = std::env::var_os("CHROMIUM")
        .map_or_else(|| PathBuf::from("/usr/bin/chromium"), PathBuf::from);
    assert!(
        path.exists(),
        "no Chromium at {}: install Debian's `chromium` (apt-get install chromium; tests/run does) or set CHROMIUM",
        path.display()
    );
    path
}

/// `tests/browser/`, once its `packages` are installed.
fn browser_tests(packages: &[&str]) -> PathBuf {
    let dir = repo().join("tests/browser");
    for package in packages {
        assert!(
            dir.join("node_modules").join(package).exists(),
            "{package} is not installed: run `npm ci` in {} (tests/run does)",
            dir.display()
        );
    }
    dir
}

/// Runs `node script args…` in `tests/browser/` (which needs `packages`),
/// and gives its stdout once it succeeded; a failure panics with its
/// output.
pub async fn run_script(
    script: &str,
    packages: &[&str],
    args: &[OsString],
    timeout: Duration,
) -> String {
    let chromium = chromium();
    let mut node = tokio::process::Command::new("node");
    node.current_dir(browser_tests(packages))
        .arg(script)
        .args(args)
        .env("CHROMIUM", &chromium)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let output = tokio::time::timeout(timeout, node.output())
        .await
        .expect("the browser test finishes")
        .expect("node runs");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "{script} failed ({}):\n{stdout}\n{stderr}",
        output.status
    );
    stdout
}
