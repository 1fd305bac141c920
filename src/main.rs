//! The `voxpipe` command line: `check`, `run` and `serve`.

mod cli;

fn main() -> std::process::ExitCode {
    cli::main()
}
