//! An offer on a host with no multicast route: a network namespace with
//! loopback only, where opening an mDNS socket fails with ENODEV. The
//! server must answer (200) and the parrot must be heard.
//!
//! The test re-runs itself inside the namespace (`ip netns exec`), where
//! the server and a Rust client peer talk over loopback. It needs root and
//! iproute2; without them it says why and passes as skipped.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::process::Command;

use support::server::TestServer;
use support::webrtc::{connected_client, parrot_correlation, speak_to_the_parrot};
use voxpipe::transport::webrtc::ClientPeer;

const INSIDE: &str = "VOXPIPE_TEST_IN_NETNS";
const HEARD: &str = "parrot heard in the namespace";
const TEST: &str = "an_offer_is_answered_and_heard_without_a_multicast_route";

/// Deletes the namespace when the test ends, however it ends.
struct Namespace(String);

impl Drop for Namespace {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

fn ip(args: &[&str]) -> Result<(), String> {
    match Command::new("ip").args(args).output() {
        Ok(out) if out.status.success() => Ok(()),
        Ok(out) => Err(format!(
            "`ip {}`: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        )),
        Err(err) => Err(format!("`ip`: {err}")),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_offer_is_answered_and_heard_without_a_multicast_route() {
    if std::env::var_os(INSIDE).is_some() {
        return call_the_parrot().await;
    }
    let name = format!("voxpipe-test-{}", std::process::id());
    if let Err(why) = ip(&["netns", "add", &name]) {
        eprintln!("SKIPPED: cannot make a network namespace ({why}); needs root and iproute2");
        return;
    }
    let namespace = Namespace(name);
    ip(&[
        "netns",
        "exec",
        &namespace.0,
        "ip",
        "link",
        "set",
        "lo",
        "up",
    ])
    .unwrap();
    let exe = std::env::current_exe().unwrap();
    let output = tokio::task::spawn_blocking(move || {
        Command::new("ip")
            .args(["netns", "exec", &namespace.0])
            .arg(exe)
            .args(["--exact", TEST, "--nocapture", "--test-threads=1"])
            .env(INSIDE, "1")
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success() && stderr.contains(HEARD),
        "inside the namespace:\n{stdout}\n{stderr}"
    );
}

/// Inside the namespace: the multicast socket cannot be opened there.
async fn call_the_parrot() {
    let probe = std::net::UdpSocket::bind("0.0.0.0:0").unwrap();
    let joined = probe.join_multicast_v4(&[224, 0, 0, 251].into(), &[0, 0, 0, 0].into());
    assert!(
        joined.is_err(),
        "the namespace was meant to have no multicast route"
    );

    let server = TestServer::parrot(&[]).await;
    let (client, offer) = ClientPeer::offer().await.unwrap();
    let (mut client, answer, _events) = connected_client(&server.url(""), offer, client).await;
    assert!(answer.sdp.contains("127.0.0.1"), "{}", answer.sdp);
    let mut audio = client.take_audio().unwrap();
    let received = speak_to_the_parrot(&client, &mut audio).await;
    client.close().await;
    let (correlation, lag) = parrot_correlation(&received);
    assert!(
        correlation > 0.9,
        "the parrot repeats the utterance: correlation {correlation:.3} at {lag}0 ms"
    );
    eprintln!(
        "{HEARD}: {} packets, correlation {correlation:.3}",
        received.len()
    );
}
