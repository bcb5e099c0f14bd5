//! `cloudmixer` command-line interface.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::{Parser, Subcommand};

use cloudmixer::compose::{self, Backend, Frames};
use cloudmixer::config::MixerConfig;
use cloudmixer::{bench, decode, snapshot};

#[derive(Parser)]
#[command(
    name = "cloudmixer",
    version,
    about = "Server-side cloud recording: composite a room's cameras per a live layout and record it"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Validate a cloud-mixer config and print the resolved layout as JSON (exit 2 if invalid).
    Validate {
        /// The config JSON file.
        config: PathBuf,
    },
    /// Compose one frame from files and write it as a PNG.
    Snapshot {
        /// The config JSON file.
        #[arg(long)]
        config: PathBuf,
        /// A source: CAMID=FILE or CAMID=FILE@SECONDS (repeatable). A camid without input
        /// draws the background.
        #[arg(long = "input", value_name = "CAMID=FILE[@SECONDS]")]
        inputs: Vec<String>,
        /// Apply this live-update JSON on top of the config's layout first.
        #[arg(long)]
        update: Option<PathBuf>,
        /// Output PNG.
        #[arg(long)]
        out: PathBuf,
        /// Compositor backend.
        #[arg(long, value_enum, default_value_t = Backend::Auto)]
        backend: Backend,
    },
    /// How many rooms this machine can mix: W1–W3 (or a config) × backends × mixer counts.
    Bench(BenchArgs),
}

#[derive(clap::Args)]
struct BenchArgs {
    /// W1, W2, W3, all, or a config JSON file.
    #[arg(long, default_value = "all")]
    workload: String,
    /// cpu, gpu or both.
    #[arg(long, default_value = "cpu")]
    backend: String,
    /// Concurrent mixers: N or a sweep N,N,...
    #[arg(long, default_value = "1")]
    mixers: String,
    /// Frames per mixer (default: the workload's 10 s).
    #[arg(long)]
    frames: Option<u64>,
    /// Tick at the output rate instead of as fast as possible; reports the capacity.
    #[arg(long)]
    realtime: bool,
    /// none (compose only) — encoding through the recording pipeline is not wired yet.
    #[arg(long, default_value = "none")]
    encode: String,
    /// Decode the workload's real clips (from --clips) instead of synthetic frames.
    #[arg(long)]
    decode: bool,
    /// Folder with the workload clips (cam1_640x480_15.mp4 …), for --decode and --vs-ffmpeg.
    #[arg(long, default_value = "/tmp/cloudmixer-peers/fixtures")]
    clips: PathBuf,
    /// Write the report as JSON.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Write a PNG plot (fps and p99 against mixers).
    #[arg(long)]
    plot: Option<PathBuf>,
    /// Run the equivalent FFmpeg commands in the same run and print our/FFmpeg ratios.
    #[arg(long)]
    vs_ffmpeg: bool,
    /// Runs of each FFmpeg command (median taken).
    #[arg(long, default_value_t = 3)]
    ffmpeg_runs: usize,
}

/// A user error: printed to stderr, exit code 2.
struct UserError(String);

impl<E: std::fmt::Display> From<E> for UserError {
    fn from(e: E) -> Self {
        UserError(e.to_string())
    }
}

fn read(path: &PathBuf) -> Result<String, UserError> {
    std::fs::read_to_string(path).map_err(|e| UserError(format!("{}: {e}", path.display())))
}

fn load_config(path: &PathBuf) -> Result<MixerConfig, UserError> {
    MixerConfig::from_json(&read(path)?).map_err(|e| UserError(format!("{}: {e}", path.display())))
}

/// Parses `CAMID=FILE[@SECONDS]`.
fn parse_input(s: &str) -> Result<(String, PathBuf, Duration), UserError> {
    let (id, rest) = s
        .split_once('=')
        .ok_or_else(|| UserError(format!("--input {s}: expected CAMID=FILE[@SECONDS]")))?;
    if id.is_empty() || rest.is_empty() {
        return Err(UserError(format!(
            "--input {s}: expected CAMID=FILE[@SECONDS]"
        )));
    }
    let (file, at) = match rest.rsplit_once('@') {
        Some((f, t)) => {
            let secs: f64 = t
                .parse()
                .ok()
                .filter(|v: &f64| v.is_finite() && *v >= 0.0)
                .ok_or_else(|| UserError(format!("--input {s}: '{t}' is not a time in seconds")))?;
            (f, Duration::from_secs_f64(secs))
        }
        None => (rest, Duration::ZERO),
    };
    Ok((id.to_string(), PathBuf::from(file), at))
}

fn run(cli: Cli) -> Result<(), UserError> {
    match cli.cmd {
        Cmd::Bench(a) => run_bench(a),
        Cmd::Validate { config } => {
            let cfg = load_config(&config)?;
            println!("{}", serde_json::to_string_pretty(&cfg.resolved_json())?);
            Ok(())
        }
        Cmd::Snapshot {
            config,
            inputs,
            update,
            out,
            backend,
        } => {
            let cfg = load_config(&config)?;
            let layout = match update {
                Some(u) => Arc::new(
                    cfg.parse_update(&read(&u)?)
                        .map_err(|e| UserError(format!("{}: {e}", u.display())))?,
                ),
                None => cfg.layout.clone(),
            };
            let mut frames: Frames = HashMap::new();
            for s in &inputs {
                let (id, file, at) = parse_input(s)?;
                let f = decode::frame_at(&file, at)?;
                frames.insert(id, Arc::new(f));
            }
            for it in &layout.items {
                if let Some(id) = it.kind.source_id() {
                    if !frames.contains_key(id) {
                        eprintln!("note: no --input for '{id}': drawing the placeholder");
                    }
                }
            }
            let mut c = compose::create(backend, cfg.output.width, cfg.output.height)?;
            eprintln!("backend: {}", c.describe());
            let img = c.compose(&layout, &frames)?;
            snapshot::write_png(&out, img)
                .map_err(|e| UserError(format!("{}: {e}", out.display())))?;
            eprintln!("wrote {} ({}x{})", out.display(), img.width, img.height);
            Ok(())
        }
    }
}

fn run_bench(a: BenchArgs) -> Result<(), UserError> {
    let workloads = bench::workloads(&a.workload).map_err(UserError)?;
    let backends: Vec<Backend> = match a.backend.as_str() {
        "cpu" => vec![Backend::Cpu],
        "gpu" => vec![Backend::Gpu],
        "both" => vec![Backend::Cpu, Backend::Gpu],
        o => return Err(UserError(format!("--backend {o}: use cpu, gpu or both"))),
    };
    let sweep = bench::parse_sweep(&a.mixers).map_err(UserError)?;
    if a.encode != "none" {
        return Err(UserError(format!(
            "--encode {}: only 'none' is available until the recording pipeline lands",
            a.encode
        )));
    }
    if a.decode {
        return Err(UserError(
            "--decode: not available yet (synthetic decoded frames only)".into(),
        ));
    }
    let mut results = Vec::new();
    for w in &workloads {
        let sources = Arc::new(bench::SyntheticSources::new(w));
        let ff = if a.vs_ffmpeg {
            eprintln!(
                "{}: timing ffmpeg ({} runs each of compose and decode)…",
                w.name, a.ffmpeg_runs
            );
            Some(bench::run_ffmpeg(w, &a.clips, a.ffmpeg_runs.max(1)).map_err(UserError)?)
        } else {
            None
        };
        for &b in &backends {
            for &m in &sweep {
                let frames = a.frames.unwrap_or(w.frames as u64);
                eprintln!(
                    "{} {:?} x{m} {}: {frames} frames…",
                    w.name,
                    b,
                    if a.realtime { "realtime" } else { "offline" }
                );
                let mut r =
                    bench::run_config(w, &sources, b, m, frames, a.realtime).map_err(UserError)?;
                r.ffmpeg = ff.clone();
                results.push(r);
            }
        }
    }
    print!("{}", bench::table(&results));
    let report = bench::Report {
        version: 1,
        unix_time: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
        cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
        cpu_model: std::fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(|s| {
                s.lines()
                    .find(|l| l.starts_with("model name"))
                    .and_then(|l| l.split(':').nth(1))
                    .map(|s| s.trim().to_string())
            })
            .unwrap_or_default(),
        capacity: bench::capacities(&results),
        results,
    };
    for c in &report.capacity {
        println!(
            "capacity {} {}: {} mixers keep {} fps",
            c.workload,
            c.backend,
            c.mixers,
            report
                .results
                .iter()
                .find(|r| r.workload == c.workload)
                .map_or(0, |r| r.target_fps)
        );
    }
    if let Some(p) = &a.json {
        std::fs::write(p, serde_json::to_string_pretty(&report)?)
            .map_err(|e| UserError(format!("{}: {e}", p.display())))?;
        eprintln!("wrote {}", p.display());
    }
    if let Some(p) = &a.plot {
        bench::plot(&report.results, p).map_err(|e| UserError(format!("{}: {e}", p.display())))?;
        eprintln!("wrote {}", p.display());
    }
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(UserError(msg)) => {
            eprintln!("error: {msg}");
            ExitCode::from(2)
        }
    }
}
