//! [`ClientGate`]: when a WebRTC call tells its pipeline that the client
//! can hear the bot.
//!
//! A WebRTC session starts with the offer, before ICE and DTLS have
//! connected: audio sent then is lost. The session's `ClientConnected`
//! (queued when the pipeline opens the conversation) is therefore held by
//! the input until the peer connection is connected, and passed on once,
//! whichever of the two comes first.

/// Whether the session's announcement may go on. See the module docs.
#[derive(Debug, Default)]
pub(crate) struct ClientGate {
    /// The session's `ClientConnected` reached the input.
    announced: bool,
    /// The peer connection has been connected.
    connected: bool,
    /// The announcement went on.
    passed: bool,
}

impl ClientGate {
    /// The session announced its client: whether to pass it on now.
    pub(crate) fn announced(&mut self) -> bool {
        self.announced = true;
        self.release()
    }

    /// The peer connection is connected: whether to announce the client
    /// now.
    pub(crate) fn connected(&mut self) -> bool {
        self.connected = true;
        self.release()
    }

    fn release(&mut self) -> bool {
        let go = self.announced && self.connected && !self.passed;
        self.passed |= go;
        go
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_client_is_announced_once_when_both_have_happened() {
        let mut gate = ClientGate::default();
        assert!(!gate.announced(), "not connected yet");
        assert!(gate.connected());
        assert!(
            !gate.connected(),
            "a restarted connection announces nothing"
        );

        let mut gate = ClientGate::default();
        assert!(!gate.connected(), "the session has not announced");
        assert!(gate.announced());
        assert!(!gate.announced());
    }
}
