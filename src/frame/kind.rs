//! How a frame travels: its [`FrameKind`] and its [`Direction`].

/// Which way a frame travels along the chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    /// From the transport input toward the transport output: the direction of
    /// the conversation.
    Downstream,
    /// Back toward the transport input: errors, interruption and end requests,
    /// bot speaking state.
    Upstream,
}

/// How the runner queues a frame and whether an interruption drops it (see
/// the module docs of `frame`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FrameKind {
    /// Jumps the queue; never dropped by an interruption.
    System,
    /// FIFO; dropped by an interruption.
    Data,
    /// FIFO with data; dropped by an interruption, except `End`.
    Control,
}
