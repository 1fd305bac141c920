//! [`TransportEnds`]: what a transport gives a session.

use crate::pipeline::NamedProcessor;

/// The name every transport gives its input processor: observers find the
/// caller's audio as it enters by it.
pub const INPUT_NAME: &str = "transport.input";

/// A transport's two processors for one session.
pub struct TransportEnds {
    /// Goes in front of the pipeline's processors.
    pub input: NamedProcessor,
    /// Goes after them.
    pub output: NamedProcessor,
}
