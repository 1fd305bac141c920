//! The one way the tests listen: a TCP listener on a free loopback port
//! (`127.0.0.1:0`), for the fake servers, the server under test and the
//! stand-ins for a dead peer.

use std::net::SocketAddr;

/// The address every test listener binds: loopback, any free port.
pub const LOOPBACK: &str = "127.0.0.1:0";

/// A listener on a free loopback port.
pub async fn loopback_listener() -> tokio::net::TcpListener {
    tokio::net::TcpListener::bind(LOOPBACK)
        .await
        .expect("a free loopback port")
}

/// A free loopback port for a child process to listen on (the listener
/// that found it is closed again at once).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind(LOOPBACK)
        .and_then(|l| l.local_addr())
        .expect("a free loopback port")
        .port()
}

/// Binds `router` on a free loopback port and serves it in the background.
pub async fn serve(router: axum::Router) -> SocketAddr {
    use axum::serve::ListenerExt;
    let listener = loopback_listener().await;
    let addr = listener.local_addr().expect("a bound address");
    // As real providers do: small streamed pieces go out at once rather than
    // waiting on Nagle's algorithm (40 ms with delayed ACKs).
    let listener = listener.tap_io(|socket| {
        let _ = socket.set_nodelay(true);
    });
    tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    addr
}

/// A peer that accepts connections and never says a word (a stalled
/// server): its address.
pub async fn silent_server() -> SocketAddr {
    let listener = loopback_listener().await;
    let addr = listener.local_addr().expect("a bound address");
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    addr
}
