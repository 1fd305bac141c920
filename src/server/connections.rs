//! The server's connections, bounded: how many at once, and how long one
//! may send nothing.
//!
//! Every accepted socket is wrapped ([`TrackedIo`]) and registered. A
//! socket that receives no byte for `[server] http_idle_timeout_secs` is
//! closed, whatever it was doing: half-sent headers, a body shorter than
//! its `Content-Length`, an idle keep-alive, a WebSocket gone quiet (a
//! Twilio stream sends every 20 ms, and ends itself sooner on its own idle
//! timeout). At `[server] max_connections` (never more than the process's
//! open-file limit allows, less a reserve for sessions, files and stores),
//! a new connection closes the one idle longest, if it has been idle a
//! while; otherwise the new one is refused. So idle sockets can neither
//! exhaust descriptors nor lock out `/health` or a call.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::{Instant, Sleep};

/// Descriptors kept free for what is not a client connection and not a
/// session's: the store, the spool, logs, the runtime.
const FD_RESERVE: usize = 64;

/// Descriptors a session may hold besides its client connection: its
/// speech-to-text, LLM and TTS sockets, a recording or spool file.
const FDS_PER_SESSION: usize = 4;

/// A connection idle less than this is never closed to make room: it is
/// in use (a call's stream reads every 20 ms).
const EVICTABLE_AFTER: Duration = Duration::from_secs(1);

/// After an accept error other than a dropped connection (out of
/// descriptors), how long to wait before trying again.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// What one connection shares with the registry.
#[derive(Debug)]
struct Entry {
    /// When it last received a byte, in ms since the registry's epoch.
    last_read_ms: AtomicU64,
    evicted: AtomicBool,
    waker: Mutex<Option<Waker>>,
}

impl Entry {
    fn evict(&self) {
        self.evicted.store(true, Ordering::Release);
        let waker = self
            .waker
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(waker) = waker {
            waker.wake();
        }
    }
}

/// The live connections.
#[derive(Debug)]
struct Registry {
    epoch: Instant,
    live: Mutex<HashMap<u64, Arc<Entry>>>,
    next_id: AtomicU64,
}

impl Registry {
    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn len(&self) -> usize {
        self.live
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    /// Closes the connection idle longest, if it has been idle a while;
    /// `false` when every connection is in use.
    fn evict_idlest(&self) -> bool {
        let now = self.now_ms();
        let live = self.live.lock().unwrap_or_else(PoisonError::into_inner);
        let idlest = live
            .values()
            .filter(|entry| !entry.evicted.load(Ordering::Acquire))
            .min_by_key(|entry| entry.last_read_ms.load(Ordering::Relaxed));
        match idlest {
            Some(entry)
                if now.saturating_sub(entry.last_read_ms.load(Ordering::Relaxed))
                    >= EVICTABLE_AFTER.as_millis() as u64 =>
            {
                entry.evict();
                true
            }
            _ => false,
        }
    }
}

/// The listener, handing out tracked connections within the cap.
pub(crate) struct BoundedListener {
    inner: TcpListener,
    registry: Arc<Registry>,
    max: usize,
    idle: Duration,
}

impl BoundedListener {
    /// `listener`, keeping at most `max` connections, each closed after
    /// `idle` without a byte, and no more than the open-file limit allows
    /// beside `sessions` sessions' own descriptors (see
    /// [`raise_open_file_limit`]).
    pub(crate) fn new(listener: TcpListener, max: usize, idle: Duration, sessions: usize) -> Self {
        let max = match open_file_limit() {
            Some(limit) => {
                // Never below half the limit: a limit too low for every
                // session's sockets must still leave connections for the
                // calls themselves and for webhooks.
                let reserve = FD_RESERVE.saturating_add(sessions.saturating_mul(FDS_PER_SESSION));
                let room = limit.saturating_sub(reserve).max(limit / 2).max(1);
                if room < max.min(sessions) {
                    tracing::warn!(
                        open_file_limit = limit,
                        connections = room,
                        max_sessions = sessions,
                        "the open-file limit leaves room for fewer connections than sessions: \
                         raise it (ulimit -n) or lower [server] max_sessions"
                    );
                }
                max.min(room)
            }
            None => max,
        };
        BoundedListener {
            inner: listener,
            registry: Arc::new(Registry {
                epoch: Instant::now(),
                live: Mutex::new(HashMap::new()),
                next_id: AtomicU64::new(0),
            }),
            max,
            idle,
        }
    }

    /// The cap in force.
    pub(crate) fn max(&self) -> usize {
        self.max
    }

    fn track(&self, tcp: TcpStream) -> TrackedIo {
        let id = self.registry.next_id.fetch_add(1, Ordering::Relaxed);
        let entry = Arc::new(Entry {
            last_read_ms: AtomicU64::new(self.registry.now_ms()),
            evicted: AtomicBool::new(false),
            waker: Mutex::new(None),
        });
        self.registry
            .live
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(id, Arc::clone(&entry));
        TrackedIo {
            io: tcp,
            id,
            entry,
            registry: Arc::clone(&self.registry),
            idle: self.idle,
            timer: Box::pin(tokio::time::sleep(self.idle)),
            linger: None,
        }
    }
}

impl axum::serve::Listener for BoundedListener {
    type Io = TrackedIo;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            match self.inner.accept().await {
                Ok((tcp, addr)) => {
                    if self.registry.len() >= self.max && !self.registry.evict_idlest() {
                        tracing::warn!(
                            max = self.max,
                            "connection refused: every connection is in use"
                        );
                        drop(tcp);
                        continue;
                    }
                    return (self.track(tcp), addr);
                }
                Err(err) if is_connection_error(&err) => {}
                Err(err) => {
                    // Out of descriptors, most likely: make room.
                    tracing::warn!(error = %err, "accept failed; closing the idlest connection");
                    self.registry.evict_idlest();
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                }
            }
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.inner.local_addr()
    }
}

fn is_connection_error(err: &io::Error) -> bool {
    matches!(
        err.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    )
}

/// The soft limit on open files; `None` when there is none.
fn open_file_limit() -> Option<usize> {
    let current = rustix::process::getrlimit(rustix::process::Resource::Nofile).current?;
    Some(usize::try_from(current).unwrap_or(usize::MAX))
}

/// Raises the soft limit on open files to the hard one, as servers do: the
/// soft limit is often 1,024 where the hard one is far higher, and every
/// client connection and each session's provider sockets take one.
pub(crate) fn raise_open_file_limit() {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let limit = getrlimit(Resource::Nofile);
    // The hard limit, else (macOS refuses an unlimited soft limit for
    // files) the largest of a few that it allows.
    let tries = [limit.maximum, Some(1 << 20), Some(65_536), Some(10_240)];
    for to in tries {
        let raises = match (to, limit.current) {
            (_, None) => false,
            (None, Some(_)) => true,
            (Some(to), Some(current)) => {
                to > current && limit.maximum.is_none_or(|maximum| to <= maximum)
            }
        };
        if !raises {
            continue;
        }
        let raised = Rlimit {
            current: to,
            maximum: limit.maximum,
        };
        match setrlimit(Resource::Nofile, raised) {
            Ok(()) => {
                tracing::debug!(from = ?limit.current, to = ?to, "open-file limit raised");
                return;
            }
            Err(err) => tracing::debug!(error = %err, to = ?to, "the open-file limit not raised"),
        }
    }
}

/// A connection the registry tracks: closed when idle too long or evicted.
pub(crate) struct TrackedIo {
    io: TcpStream,
    id: u64,
    entry: Arc<Entry>,
    registry: Arc<Registry>,
    idle: Duration,
    timer: Pin<Box<Sleep>>,
    /// While closing: until when, and how much more, to read and discard.
    linger: Option<(Pin<Box<Sleep>>, usize)>,
}

/// How long a closing connection reads what its client still sends.
const LINGER: Duration = Duration::from_secs(2);
/// How much a closing connection reads and discards at most.
const LINGER_BYTES: usize = 4 * 1024 * 1024;

impl TrackedIo {
    /// The socket.
    pub(crate) fn tcp(&self) -> &TcpStream {
        &self.io
    }

    /// Whether the idle timer has run out; re-arms it lazily (a read does
    /// not touch the timer, only the time it happened).
    fn idle_expired(&mut self, cx: &mut Context<'_>) -> bool {
        while self.timer.as_mut().poll(cx).is_ready() {
            let last = self.entry.last_read_ms.load(Ordering::Relaxed);
            let deadline = self.registry.epoch + Duration::from_millis(last) + self.idle;
            if deadline <= Instant::now() {
                return true;
            }
            self.timer.as_mut().reset(deadline);
        }
        false
    }
}

impl Drop for TrackedIo {
    fn drop(&mut self) {
        self.registry
            .live
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&self.id);
    }
}

impl AsyncRead for TrackedIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.entry.evicted.load(Ordering::Acquire) {
            return Poll::Ready(Err(io::ErrorKind::ConnectionAborted.into()));
        }
        let before = buf.filled().len();
        match Pin::new(&mut this.io).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                if buf.filled().len() > before {
                    let now = this.registry.now_ms();
                    this.entry.last_read_ms.store(now, Ordering::Relaxed);
                }
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(err)) => Poll::Ready(Err(err)),
            Poll::Pending => {
                if this.idle_expired(cx) {
                    return Poll::Ready(Err(io::ErrorKind::TimedOut.into()));
                }
                let mut waker = this
                    .entry
                    .waker
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner);
                if !waker.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                    *waker = Some(cx.waker().clone());
                }
                Poll::Pending
            }
        }
    }
}

impl AsyncWrite for TrackedIo {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    /// A lingering close: the write side is shut (the response is out,
    /// then FIN), then what the client still sends is read and discarded
    /// until it closes, for at most [`LINGER`] and [`LINGER_BYTES`].
    /// Closing a socket with unread data resets the connection, and a
    /// reset can destroy the response before the client reads it: a
    /// client still sending a body the server refused (`413`) would see a
    /// broken pipe instead of the status.
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.linger.is_none() {
            std::task::ready!(Pin::new(&mut this.io).poll_shutdown(cx))?;
            this.linger = Some((Box::pin(tokio::time::sleep(LINGER)), LINGER_BYTES));
        }
        let Some((deadline, left)) = &mut this.linger else {
            return Poll::Ready(Ok(()));
        };
        let mut discard = [0u8; 8 * 1024];
        while *left > 0 {
            let mut buf = ReadBuf::new(&mut discard);
            match Pin::new(&mut this.io).poll_read(cx, &mut buf) {
                Poll::Ready(Ok(())) if buf.filled().is_empty() => break,
                Poll::Ready(Ok(())) => *left = left.saturating_sub(buf.filled().len()),
                Poll::Ready(Err(_)) => break,
                Poll::Pending => {
                    if deadline.as_mut().poll(cx).is_ready() {
                        break;
                    }
                    return Poll::Pending;
                }
            }
        }
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    async fn pair(listener: &mut BoundedListener) -> (TrackedIo, TcpStream) {
        use axum::serve::Listener as _;
        let addr = listener.local_addr().unwrap();
        let client = TcpStream::connect(addr);
        let ((io, _), client) = tokio::join!(listener.accept(), client);
        (io, client.unwrap())
    }

    #[tokio::test]
    async fn a_connection_that_sends_nothing_is_closed_after_the_idle_timeout() {
        let tcp = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut listener = BoundedListener::new(tcp, 10, Duration::from_millis(300), 0);
        let (mut io, mut client) = pair(&mut listener).await;
        client.write_all(b"GET / HT").await.unwrap();
        let mut buf = [0u8; 16];
        assert_eq!(io.read(&mut buf).await.unwrap(), 8);
        let started = Instant::now();
        let err = io.read(&mut buf).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert!(started.elapsed() >= Duration::from_millis(250));
    }

    #[tokio::test]
    async fn at_the_cap_the_idlest_connection_makes_room() {
        let tcp = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut listener = BoundedListener::new(tcp, 1, Duration::from_secs(60), 0);
        let (mut idle, _client) = pair(&mut listener).await;
        tokio::time::sleep(EVICTABLE_AFTER + Duration::from_millis(100)).await;
        let (_fresh, _client2) = pair(&mut listener).await;
        let mut buf = [0u8; 4];
        let err = idle.read(&mut buf).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::ConnectionAborted);
        drop(idle);
        assert_eq!(listener.registry.len(), 1);
    }
}
