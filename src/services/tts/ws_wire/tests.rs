//! [`WsWire`] over a real loopback socket, on tokio's paused clock: the
//! socket opens while nothing polls the wire, and a stalled write is lost
//! `read_timeout` after it began, however often the engine cuts it short.

use std::time::Duration;

use futures_util::StreamExt;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;

use super::*;
use crate::services::websocket::WsTarget;

const READ_TIMEOUT: Duration = Duration::from_secs(5);

/// A provider whose messages are plain text: `{context}: {text}`.
struct Plain {
    url: String,
}

impl WsSpeech for Plain {
    fn provider(&self) -> &'static str {
        "plain"
    }

    fn sample_rate(&self) -> u32 {
        16_000
    }

    fn target(&self) -> WsTarget {
        WsTarget {
            url: self.url.clone(),
            headers: Vec::new(),
        }
    }

    fn text(&self, context: &str, text: &str, _first: bool) -> Vec<String> {
        vec![format!("{context}: {text}")]
    }

    fn finish(&self, context: &str) -> Vec<String> {
        vec![format!("{context}: done")]
    }

    fn cancel(&self, context: &str) -> Vec<String> {
        vec![format!("{context}: cancel")]
    }

    fn close(&self) -> Option<String> {
        None
    }

    fn parse(&mut self, _message: &str) -> Result<Vec<WireEvent>, ServiceError> {
        Ok(Vec::new())
    }

    fn reset(&mut self) {}
}

/// A provider's socket server on loopback, one connection at a time.
struct Server {
    url: String,
    /// One item per handshake done (server side).
    handshakes: mpsc::UnboundedReceiver<()>,
    /// The text messages read, when it reads.
    messages: mpsc::UnboundedReceiver<String>,
}

/// Starts a server that reads what it is sent, or (`reads` false) shakes
/// hands and never reads again: a provider that stopped reading.
async fn server(reads: bool) -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("ws://{}/", listener.local_addr().unwrap());
    let (handshake_tx, handshakes) = mpsc::unbounded_channel();
    let (message_tx, messages) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let Ok(mut socket) = tokio_tungstenite::accept_async(tcp).await else {
                continue;
            };
            let _ = handshake_tx.send(());
            if !reads {
                std::future::pending::<()>().await;
            }
            while let Some(Ok(message)) = socket.next().await {
                if let Message::Text(text) = message {
                    let _ = message_tx.send(text.to_string());
                }
            }
        }
    });
    Server {
        url,
        handshakes,
        messages,
    }
}

fn wire(server: &Server) -> WsWire<Plain> {
    let connection = Connection {
        read_timeout: READ_TIMEOUT,
        ..Connection::default()
    };
    let adapter = Plain {
        url: server.url.clone(),
    };
    WsWire::new(adapter, connection)
}

#[tokio::test(start_paused = true)]
async fn a_socket_opens_while_nothing_polls_the_wire() {
    let mut server = server(true).await;
    let mut wire = wire(&server);
    // Text with no socket: the wire starts opening one and returns.
    wire.send_text("c1", "Hi.").await.unwrap();
    // The engine is busy elsewhere (pushing audio into a full lane, say)
    // and asks for no event: the handshake goes on all the same.
    let shook = tokio::time::timeout(Duration::from_secs(1), server.handshakes.recv()).await;
    assert!(
        shook.is_ok(),
        "no handshake while the engine did not poll the wire"
    );
    // What waited for the socket goes out, in order, once the wire is
    // polled again.
    wire.finish("c1").await.unwrap();
    let mut got = Vec::new();
    while got.len() < 2 {
        tokio::select! {
            event = wire.next_event() => panic!("unexpected {event:?}"),
            message = server.messages.recv() => got.push(message.unwrap()),
        }
    }
    assert_eq!(got, ["c1: Hi.", "c1: done"]);
}

#[tokio::test(start_paused = true)]
async fn a_stalled_write_is_lost_a_read_timeout_after_it_began_however_often_it_is_cut_short() {
    let mut server = server(false).await;
    let mut wire = wire(&server);
    // Far more than the loopback socket's buffers hold: the write stalls.
    let big = "x".repeat(32 << 20);
    let began = tokio::time::Instant::now();
    wire.send_text("c1", &big).await.unwrap();
    // The engine waits on the wire, which takes up the socket opened (the
    // handshake costs no time on the paused clock) and starts the write; a
    // command comes 3 s later and cuts the wait short...
    let cut = tokio::time::timeout(Duration::from_secs(3), wire.next_event()).await;
    assert!(cut.is_err(), "the write did not stall: {cut:?}");
    assert!(server.handshakes.try_recv().is_ok(), "one socket opened");
    // ...and the next call takes the stalled write up again: it is lost 5 s
    // after it began, not 5 s after this call.
    wire.send_text("c1", "More.").await.unwrap();
    let event = wire.next_event().await;
    let waited = began.elapsed();
    assert!(
        matches!(
            &event,
            WireEvent::Failed {
                error: ServiceError::Timeout { after, .. },
                ..
            } if *after == READ_TIMEOUT
        ),
        "{event:?}"
    );
    assert!(
        waited >= READ_TIMEOUT && waited < READ_TIMEOUT + Duration::from_secs(1),
        "lost after {waited:?}"
    );
}
