//! What a transport reports about its traffic, so that a server can export
//! it as metrics without the transport knowing about the server.

/// Receives a transport's counts. Called on the audio path: keep it cheap
/// (an atomic add).
pub trait TransportStats: Send + Sync {
    /// `frames` 20 ms frames of the user's audio came in.
    fn audio_in(&self, frames: u64);

    /// `frames` 20 ms frames of bot audio went out.
    fn audio_out(&self, frames: u64);

    /// A message from the far end was skipped or ended its session; `kind`
    /// is a short stable label such as `not_json` or `idle_timeout`.
    fn input_error(&self, kind: &'static str);

    /// A connection of the transport's own opened: a WebRTC peer
    /// connection, which holds UDP sockets and a task until it is closed.
    /// Each is told closed once ([`connection_closed`](Self::connection_closed)),
    /// so opened minus closed is what the process holds now.
    fn connection_opened(&self) {}

    /// A connection told opened was closed.
    fn connection_closed(&self) {}

    /// An outgoing message to the far end was dropped for good (over the
    /// far end's size limit); `kind` is a short stable label.
    fn output_dropped(&self, _kind: &'static str) {}
}

/// Counts nothing.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoStats;

impl TransportStats for NoStats {
    fn audio_in(&self, _frames: u64) {}
    fn audio_out(&self, _frames: u64) {}
    fn input_error(&self, _kind: &'static str) {}
}
