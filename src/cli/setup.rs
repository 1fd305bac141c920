//! What `run` and `serve` both do before their work: load the pipeline with
//! the built-in processors, and start the runtime.

use std::path::Path;
use std::process::ExitCode;

use voxpipe::config::{ConfigErrors, Override};
use voxpipe::pipeline_file::{PipelineConfig, load_and_probe, load_pipeline};
use voxpipe::processors::ProcessorRegistry;

/// The pipeline at `file` with `overrides`, its processors built once to
/// check them (as `voxpipe check` does); its errors are printed and give
/// exit status 2.
pub(crate) fn load(file: &Path, overrides: &[Override]) -> Result<PipelineConfig, ExitCode> {
    validate(file, overrides).map_err(|errors| {
        eprintln!("{errors}");
        ExitCode::from(2)
    })
}

/// The checks `check`, `run` and `serve` all make: the file, then each
/// processor built once, inside a runtime of its own (a processor may
/// start tasks as it is built).
pub(crate) fn validate(
    file: &Path,
    overrides: &[Override],
) -> Result<PipelineConfig, ConfigErrors> {
    let registry = ProcessorRegistry::builtin();
    match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => {
            let _entered = runtime.enter();
            load_and_probe(file, overrides, &registry)
        }
        // Without a runtime the file is still checked; the processors are
        // when the session builds them.
        Err(_) => load_pipeline(file, overrides, &registry),
    }
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
