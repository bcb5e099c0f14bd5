//! `cloudmixer bench` without the rest of the CLI: the same flags and library code, but the
//! binary links no FFmpeg libraries (handy on a GPU machine without FFmpeg installed).
use clap::Parser;

#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    args: cloudmixer::bench::BenchArgs,
}

fn main() -> std::process::ExitCode {
    match cloudmixer::bench::run_with(Cli::parse().args, None) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::ExitCode::from(2)
        }
    }
}
