//! `passthrough`: forwards every frame unchanged. Useful to measure the
//! engine's own cost per hop and as a placeholder in a pipeline.

use async_trait::async_trait;
use serde::Deserialize;

use crate::frame::{Direction, Frame};
use crate::processor::{Processor, ProcessorContext, ProcessorError};

/// Forwards every frame unchanged.
#[derive(Debug, Default, Clone, Copy)]
pub struct Passthrough;

/// `[[processor]] type = "passthrough"`: no options.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PassthroughConfig {}

#[async_trait]
impl Processor for Passthrough {
    async fn process(
        &mut self,
        frame: Frame,
        direction: Direction,
        ctx: &ProcessorContext,
    ) -> Result<(), ProcessorError> {
        ctx.push(frame, direction).await;
        Ok(())
    }
}

impl crate::processors::ProcessorFactory for PassthroughConfig {
    fn build(
        &self,
        _setup: &crate::session::SessionSetup,
    ) -> Result<Box<dyn Processor>, crate::session::BuildError> {
        Ok(Box::new(Passthrough))
    }
}
