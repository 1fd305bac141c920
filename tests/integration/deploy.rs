//! What `deploy/` ships, checked as far as this machine allows: the compose
//! file by `docker compose config` (skipped, and said so, without Docker's
//! compose plugin), the nginx configuration by `nginx -t` (likewise without
//! nginx), and the key migration script against a real redis-server.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::support;

use std::path::Path;
use std::process::Command;

use support::redis_server::RedisServer;

const DEPLOY: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy");

/// Whether `program args` runs at all (the tool is installed).
fn available(program: &str, args: &[&str]) -> bool {
    Command::new(program)
        .args(args)
        .output()
        .is_ok_and(|out| out.status.success())
}

#[test]
fn the_compose_file_is_valid_where_docker_compose_is_installed() {
    if !available("docker", &["compose", "version"]) {
        eprintln!("skipped: `docker compose` is not installed here");
        return;
    }
    let out = Command::new("docker")
        .args(["compose", "-f", "compose.yaml", "config", "--quiet"])
        .current_dir(DEPLOY)
        .env("OPENAI_API_KEY", "sk-test")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn the_nginx_configuration_is_valid_where_nginx_is_installed() {
    if !available("nginx", &["-v"]) {
        eprintln!("skipped: nginx is not installed here");
        return;
    }
    // The compose network's names and certificate paths, replaced by what
    // exists here: the rest is checked as shipped.
    let dir = tempfile::tempdir().unwrap();
    let certs = dir.path().join("certs");
    std::fs::create_dir(&certs).unwrap();
    let made = Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
        ])
        .args(["-subj", "/CN=localhost", "-keyout"])
        .arg(certs.join("key.pem"))
        .arg("-out")
        .arg(certs.join("cert.pem"))
        .output()
        .unwrap();
    assert!(made.status.success());
    let shipped = std::fs::read_to_string(Path::new(DEPLOY).join("nginx.conf")).unwrap();
    let local = shipped
        .replace("/etc/nginx/certs", certs.to_str().unwrap())
        .replace("server1:8080", "127.0.0.1:18081")
        .replace("server2:8080", "127.0.0.1:18082")
        .replace(
            "pid /tmp/nginx.pid;",
            &format!("pid {};", dir.path().join("pid").display()),
        );
    let conf = dir.path().join("nginx.conf");
    std::fs::write(&conf, local).unwrap();
    let out = Command::new("nginx")
        .args(["-t", "-p"])
        .arg(dir.path())
        .arg("-c")
        .arg(&conf)
        .args([
            "-g",
            &format!("error_log {}/error.log;", dir.path().display()),
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test]
async fn the_migration_moves_the_renamed_keys_once() {
    let redis = RedisServer::start();
    let mut client = redis.client().await;
    let old = [
        (
            "acme:webhook:event:call_completed:c1",
            "{acme:webhook:outbox}:event:call_completed:c1",
        ),
        ("acme:campaign:c9:due", "{acme:campaign:c9}:due"),
        (
            "acme:prompt:segment:US:retail:version",
            "{acme:prompt:segment:US:retail}:version",
        ),
        ("acme:prompt:base:history", "{acme:prompt:base}:history"),
    ];
    for (key, _) in old {
        let _: () = redis::cmd("SET")
            .arg(key)
            .arg("x")
            .query_async(&mut client)
            .await
            .unwrap();
    }
    let _: () = redis::cmd("SET")
        .arg("acme:prompt:base")
        .arg("kept")
        .query_async(&mut client)
        .await
        .unwrap();
    let port = redis.url().rsplit(':').next().unwrap().to_owned();
    for _ in 0..2 {
        let out = Command::new("sh")
            .arg(Path::new(DEPLOY).join("migrate-keys.sh"))
            .arg("acme:")
            .env("REDIS", format!("-p {port}"))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let mut keys: Vec<String> = redis::cmd("KEYS")
        .arg("*")
        .query_async(&mut client)
        .await
        .unwrap();
    keys.sort();
    let mut expected: Vec<String> = old.iter().map(|(_, new)| (*new).to_owned()).collect();
    expected.push("acme:prompt:base".into());
    expected.sort();
    assert_eq!(keys, expected);
}
