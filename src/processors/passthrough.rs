//! `passthrough`: forwards every frame unchanged. Useful to measure the
//! engine's own cost per hop and as a placeholder in a pipeline.

use async_trait::async_trait;
use serde::Deserialize;

use crate::frame::{Direction, Frame};
use crate::pipeline::{Processor, ProcessorContext, ProcessorError};

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

impl crate::pipeline::ProcessorFactory for PassthroughConfig {
    fn build(
        &self,
        _setup: &crate::pipeline::SessionSetup,
    ) -> Result<Box<dyn Processor>, crate::pipeline::BuildError> {
        Ok(Box::new(Passthrough))
    }
}
