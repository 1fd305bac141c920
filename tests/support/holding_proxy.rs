//! A TCP proxy that holds one request: the first bytes a client sends that
//! contain a marker wait at the proxy until the test releases them, so a
//! test can stall one client of a server (a Redis command of one store)
//! at a chosen step while other clients go on.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::Notify;

/// How long [`HoldingProxy::held`] waits for the marked request.
pub const HELD_WITHIN: Duration = Duration::from_secs(10);

/// A proxy to one server, holding the first request with its marker.
pub struct HoldingProxy {
    addr: SocketAddr,
    held: Arc<Notify>,
    release: Arc<Notify>,
}

impl HoldingProxy {
    /// Proxies loopback connections to `target`; the first client bytes
    /// containing `marker` are held.
    pub async fn start(target: SocketAddr, marker: &[u8]) -> HoldingProxy {
        let listener = super::net::loopback_listener().await;
        let addr = listener.local_addr().expect("a bound address");
        let held = Arc::new(Notify::new());
        let release = Arc::new(Notify::new());
        let armed = Arc::new(AtomicBool::new(true));
        let marker = marker.to_vec();
        let (held_at, release_at) = (held.clone(), release.clone());
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let Ok(server) = TcpStream::connect(target).await else {
                    continue;
                };
                let (mut client_in, mut client_out) = client.into_split();
                let (mut server_in, mut server_out) = server.into_split();
                tokio::spawn(async move {
                    let _ = tokio::io::copy(&mut server_in, &mut client_out).await;
                });
                let (marker, armed) = (marker.clone(), armed.clone());
                let (held, release) = (held_at.clone(), release_at.clone());
                tokio::spawn(async move {
                    // The last `marker.len() - 1` bytes this client sent,
                    // so a marker split between reads is still seen.
                    let keep = marker.len().saturating_sub(1);
                    let mut tail: Vec<u8> = Vec::with_capacity(keep);
                    let mut buf = vec![0u8; 64 * 1024];
                    loop {
                        let n = match client_in.read(&mut buf).await {
                            Ok(0) | Err(_) => break,
                            Ok(n) => n,
                        };
                        if armed.load(Ordering::SeqCst) {
                            let mut seen = std::mem::take(&mut tail);
                            seen.extend_from_slice(&buf[..n]);
                            if seen.windows(marker.len()).any(|w| w == marker.as_slice())
                                && armed.swap(false, Ordering::SeqCst)
                            {
                                held.notify_one();
                                release.notified().await;
                            } else {
                                tail = seen.split_off(seen.len().saturating_sub(keep));
                            }
                        }
                        if server_out.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                    }
                });
            }
        });
        HoldingProxy {
            addr,
            held,
            release,
        }
    }

    /// `redis://` at the proxy.
    pub fn redis_url(&self) -> String {
        format!("redis://{}", self.addr)
    }

    /// Waits until the marked request is held; panics after
    /// [`HELD_WITHIN`] (the request never came: the test is wrong).
    pub async fn held(&self) {
        if tokio::time::timeout(HELD_WITHIN, self.held.notified())
            .await
            .is_err()
        {
            panic!("no request with the proxy's marker came within {HELD_WITHIN:?}");
        }
    }

    /// Lets the held request through.
    pub fn release(&self) {
        self.release.notify_one();
    }
}
