//! The `ssh-edge` binary: parse arguments, load config, init tracing, run.
#![forbid(unsafe_code)]

mod cli;
mod demo;
mod signals;

fn main() -> std::process::ExitCode {
    cli::main()
}
