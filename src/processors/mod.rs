//! The built-in processors, and the registry that builds them from TOML.

mod passthrough;

pub use passthrough::{Passthrough, PassthroughConfig};
