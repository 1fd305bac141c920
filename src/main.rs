//! The `voxpipe` command line: `check`, `run`, and (later) `serve`.

mod cli;

fn main() -> std::process::ExitCode {
    cli::main()
}
