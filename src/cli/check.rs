//! `voxpipe check FILE...`

#![allow(clippy::print_stdout)]

use std::path::PathBuf;
use std::process::ExitCode;

use voxpipe::config::Override;
use voxpipe::processors::ProcessorRegistry;

#[derive(Debug, clap::Args)]
pub(crate) struct CheckArgs {
    /// Pipeline files to validate.
    #[arg(required_unless_present = "list_types")]
    files: Vec<PathBuf>,

    /// Validate with these overrides applied (as `run --set`).
    #[arg(long = "set", value_name = "KEY.PATH=VALUE")]
    overrides: Vec<Override>,

    /// List the processor types a pipeline can use, and exit.
    #[arg(long)]
    list_types: bool,
}

pub(crate) fn check(args: &CheckArgs) -> ExitCode {
    let registry = ProcessorRegistry::builtin();
    if args.list_types {
        for name in registry.type_names() {
            println!("{name}");
        }
        return ExitCode::SUCCESS;
    }
    let mut failed = 0;
    for file in &args.files {
        match super::setup::validate(file, &args.overrides) {
            Ok(config) => println!(
                "ok: {} ({}: {} processor{})",
                file.display(),
                config.pipeline.name,
                config.processors.len(),
                if config.processors.len() == 1 {
                    ""
                } else {
                    "s"
                }
            ),
            Err(errors) => {
                failed += 1;
                eprintln!("{errors}");
            }
        }
    }
    if failed == 0 {
        ExitCode::SUCCESS
    } else {
        eprintln!("{failed} of {} pipeline files invalid", args.files.len());
        ExitCode::FAILURE
    }
}
