//! `cloudmixer bench` without the rest of the CLI: the same flags and library code, but the
//! binary links no FFmpeg libraries (handy on a GPU machine without FFmpeg installed). The
//! harness is the CLI's own module (`cli/src/bench.rs`), compiled in here too.
use clap::Parser;

#[path = "../src/bench.rs"]
#[allow(dead_code)]
mod bench;

#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    args: bench::BenchArgs,
}

fn main() -> std::process::ExitCode {
    match bench::run_with(Cli::parse().args, None) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::ExitCode::from(2)
        }
    }
}
