//! What `run` and `serve` both do before their work: load the pipeline with
//! the built-in processors, and start the runtime.

use std::path::Path;
use std::process::ExitCode;

use voxpipe::config::Override;
use voxpipe::pipeline_file::{PipelineConfig, load_pipeline};
use voxpipe::processors::ProcessorRegistry;

/// The pipeline at `file` with `overrides`; its errors are printed and give
/// exit status 2.
pub(crate) fn load(file: &Path, overrides: &[Override]) -> Result<PipelineConfig, ExitCode> {
    load_pipeline(file, overrides, &ProcessorRegistry::builtin()).map_err(|errors| {
        eprintln!("{errors}");
        ExitCode::from(2)
    })
}

/// A multi-threaded runtime, or exit status 1.
pub(crate) fn runtime() -> Result<tokio::runtime::Runtime, ExitCode> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|err| {
            eprintln!("voxpipe: cannot start the runtime: {err}");
            ExitCode::FAILURE
        })
}
