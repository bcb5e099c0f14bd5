//! `cloudmixer` command-line interface.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::{Parser, Subcommand};

use cloudmixer::compose::{self, Backend, Frames};
use cloudmixer::config::MixerConfig;
use cloudmixer::{decode, snapshot};

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
