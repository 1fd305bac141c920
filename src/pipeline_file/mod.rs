//! One pipeline file: read, overridden (`--set`), validated, and ready to
//! build sessions from.
//!
//! The TOML machinery (errors that name the file, the line and the key;
//! `--set` overrides) and the leaf sections live in [`config`](crate::config);
//! the `[[processor]]` tables are read by the
//! [processor registry](crate::processors::ProcessorRegistry) by their
//! `type`; the agent's sections (`[context]`, `[evaluator]`, `[webhook]`)
//! belong to the [agent layer](crate::agent). This module, above all of
//! them, puts one file together.

mod config;
mod load;
mod section_checks;

pub use config::PipelineConfig;
pub use load::{load_and_probe, load_pipeline, parse_pipeline, parse_pipeline_with_overrides};
