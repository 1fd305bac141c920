//! [`TransportEnds`]: what a transport gives a session.

use crate::pipeline::NamedProcessor;

/// A transport's two processors for one session.
pub struct TransportEnds {
    /// Goes in front of the pipeline's processors.
    pub input: NamedProcessor,
    /// Goes after them.
    pub output: NamedProcessor,
}
