//! `cloudmixer` command-line interface.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use clap::{Parser, Subcommand};

use cloudmixer::compose::{self, Backend, Frames};
use cloudmixer::media::video_enc::EncoderSettings;
use cloudmixer::model::config::{self, MixerConfig};
use cloudmixer::model::events::{OutputInfo, OutputState};
use cloudmixer::model::time::PaceMode;
use cloudmixer::pipeline::picture::{check_picture_file, load_picture};
use cloudmixer::pipeline::MixerSettings;
use cloudmixer::record::{record_until, RecordError, RecordOptions};
use cloudmixer::{media::decode, snapshot};
use std::io::IsTerminal;

#[cfg(feature = "bench")]
mod bench;
#[cfg(feature = "serve")]
mod serve;

/// A command this build left out (`make demo` builds the command with its default features
/// off): its arguments are taken as they come and it fails with a message that says how to get it.
#[cfg(not(all(feature = "bench", feature = "serve")))]
#[derive(clap::Args)]
struct LeftOut {
    #[arg(trailing_var_arg = true, allow_hyphen_values = true, hide = true)]
    _args: Vec<String>,
}

#[cfg(not(all(feature = "bench", feature = "serve")))]
fn left_out(cmd: &str) -> UserError {
    UserError(format!(
        "this build of cloudmixer has no `{cmd}` (it was built without the feature `{cmd}` of \
         cloudmixer-cli, e.g. by `make demo`); build the whole command with \
         `cargo build --release -p cloudmixer-cli`"
    ))
}

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
        /// draws its placeholder.
        #[arg(long = "input", value_name = "CAMID=FILE[@SECONDS]")]
        inputs: Vec<String>,
        /// A picture for items of type 1, placeholders and backgroundImage:
        /// RESOURCEID=IMAGE (PNG, JPEG, …; repeatable).
        #[arg(long = "picture", value_name = "RESOURCEID=IMAGE")]
        pictures: Vec<String>,
        /// Wall-clock time that `%timestamp%` shows, in Unix seconds (default: now).
        #[arg(long, value_name = "UNIX_SECONDS")]
        clock: Option<i64>,
        /// Apply this live-update JSON on top of the config's layout first.
        #[arg(long)]
        update: Option<PathBuf>,
        /// Output PNG.
        #[arg(long)]
        out: PathBuf,
        /// Compositor backend.
        #[arg(long, default_value = "auto")]
        backend: Backend,
    },
    /// How many rooms this machine can mix: W1–W3 (or a config) × backends × mixer counts.
    #[cfg(feature = "bench")]
    Bench(bench::BenchArgs),
    /// (not in this build: see `cargo build --release -p cloudmixer-cli`)
    #[cfg(not(feature = "bench"))]
    #[command(hide = true)]
    Bench(LeftOut),
    /// Record files into one composed recording (offline, as fast as possible, by default).
    #[command(after_help = RECORD_EXIT_HELP)]
    Record(RecordArgs),
    /// Run the mixer service: the vendor's create/update/destroy API over HTTP, events, metrics.
    #[cfg(feature = "serve")]
    #[command(after_help = serve::SERVE_EXIT_HELP)]
    Serve(Box<serve::ServeArgs>),
    /// (not in this build: see `cargo build --release -p cloudmixer-cli`)
    #[cfg(not(feature = "serve"))]
    #[command(hide = true)]
    Serve(LeftOut),
}

/// `record --help`: signals and exit statuses (also in README.md).
const RECORD_EXIT_HELP: &str = "\
Signals: the first SIGTERM or SIGINT (systemctl stop, docker stop, Ctrl-C) stops the recording
gracefully: every frame composed so far is kept (at least the first, so the file always
plays), the file is finalised, the final events
(STOPPING, the final output info, NULL) are written and the summary is printed. A second
SIGTERM or SIGINT exits at once with status 128+signal (143, 130); the fragmented mp4 written so
far still plays.

Exit status: 0 recorded (also when stopped early by a first SIGTERM/SIGINT); 1 the recording
failed (the vendor code is printed: 901 max duration, 902 no disk, 905 file error, ...; also
when every output failed, e.g. a live target that never connected); 2 bad usage or an invalid
config or --update file, an --input/--audio/--picture file that cannot be used, an --encoder
or --preset this build does not have (nothing recorded); 3 recorded, but the upload
to storageConfig failed or was interrupted by a SIGTERM/SIGINT (1107; the file is kept with its
.upload.json journal and the next run with the same --storage and storageConfig uploads it);
130/143 a second SIGINT/SIGTERM.

Progress (stderr, once a second when not a terminal) shows every output: bytes written, live
targets' state, and after the end the upload percentage.";

#[derive(clap::Args)]
struct RecordArgs {
    /// The config JSON file.
    #[arg(long)]
    config: PathBuf,
    /// A source: CAMID=FILE (repeatable). The file's audio, if it has any, is taken too, as the
    /// audio of the user named by the camid (the part before the first '.'; the first input
    /// of a user with audio, unless --audio names the user). Or CAMID=URL, a live stream
    /// pulled with its audio (rtmp://, rtmps://, rtsp:// (?transport=udp for UDP), srt://,
    /// http(s):// progressive or HLS), reconnecting when lost: only with --realtime and
    /// --duration.
    #[arg(long = "input", value_name = "CAMID=FILE|URL")]
    inputs: Vec<String>,
    /// An audio-only source: USER=FILE (any file with an audio stream; repeatable). Replaces
    /// the audio of that user's --input files.
    #[arg(long = "audio", value_name = "USER=FILE")]
    audio: Vec<String>,
    /// A picture for layout items of type 1: RESOURCEID=IMAGE (PNG, JPEG, GIF, BMP or WebP, at
    /// most 4096x4096 pixels and 32 MiB; repeatable). Decoded only if the layout or an
    /// --update shows it.
    #[arg(long = "picture", value_name = "RESOURCEID=IMAGE")]
    pictures: Vec<String>,
    /// A live layout update applied at a time: SECONDS=LAYOUT.json (repeatable).
    #[arg(long = "update", value_name = "SECONDS=LAYOUT.json")]
    updates: Vec<String>,
    /// Storage root; svrPathName is resolved under it.
    #[arg(long, default_value = "out")]
    storage: PathBuf,
    /// Write to this path under the storage root instead of the config's svrPathName.
    #[arg(long, value_name = "PATH")]
    output: Option<String>,
    /// Length in seconds (default: the longest input).
    #[arg(long)]
    duration: Option<f64>,
    /// Pace on the wall clock (a live recording) instead of as fast as possible.
    #[arg(long)]
    realtime: bool,
    /// Real time: how late video and audio may arrive after their capture time, in ms.
    #[arg(long, value_name = "MS", default_value_t = 200)]
    latency: u64,
    /// Record no audio track in the video file (video only, as before audio existed).
    #[arg(long)]
    no_audio: bool,
    /// Compositor backend.
    #[arg(long, default_value = "auto")]
    backend: Backend,
    /// FFmpeg encoder to try first (default: probe hardware encoders, then libx264).
    #[arg(long)]
    encoder: Option<String>,
    /// x264 preset.
    #[arg(long, default_value = cloudmixer::media::video_enc::DEFAULT_PRESET)]
    preset: String,
    /// Write every event as a JSON line to this file.
    #[arg(long, value_name = "FILE.jsonl")]
    events: Option<PathBuf>,
    /// Replace an existing file at the output path (default: keep it and record to the first
    /// free name, rec_1.mp4, rec_2.mp4, ...).
    #[arg(long)]
    overwrite: bool,
    /// The key that signs upload journals (32 bytes; created when missing). It must lie
    /// outside --storage. Default: $CLOUDMIXER_JOURNAL_KEY, else
    /// $XDG_STATE_HOME/cloudmixer/journal.key, else ~/.local/state/cloudmixer/journal.key.
    #[arg(long, value_name = "FILE")]
    journal_key: Option<PathBuf>,
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
    let cfg = MixerConfig::from_json(&read(path)?)
        .map_err(|e| UserError(format!("{}: {e}", path.display())))?;
    warn_all(path, cfg.warnings());
    Ok(cfg)
}

/// Prints warnings about a config or update file (unknown fields) to stderr.
fn warn_all(path: &std::path::Path, warnings: &[String]) {
    for w in warnings {
        eprintln!("warning: {}: {w}", path.display());
    }
}

/// A recording length in seconds: a finite number > 0.
fn parse_duration(d: f64) -> Result<Duration, UserError> {
    if d.is_nan() {
        return Err(UserError(format!(
            "--duration {d}: not a number; give the length in seconds, e.g. --duration 60"
        )));
    }
    if d.is_infinite() {
        return Err(UserError(format!(
            "--duration {d}: must be a finite number of seconds (leave --duration out to record the longest input)"
        )));
    }
    if d <= 0.0 {
        return Err(UserError(format!("--duration {d}: must be > 0 seconds")));
    }
    Duration::try_from_secs_f64(d).map_err(|_| UserError(format!("--duration {d}: too long")))
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

/// A failed recording: printed to stderr with its code, exit code 1.
enum Failure {
    User(UserError),
    Record(RecordError),
    /// The recording ran but every output failed (e.g. a live target that never
    /// connected): nothing was recorded; exit code 1.
    Outputs(Vec<OutputInfo>),
    /// Recorded, but uploads failed: `(name, code, desc)`; exit code 3.
    Upload(Vec<(String, i32, String)>),
}

impl From<UserError> for Failure {
    fn from(e: UserError) -> Self {
        Failure::User(e)
    }
}

/// `record`'s SIGTERM/SIGINT handling: the first signal sets `stop` (a graceful stop), a
/// second one exits at once with 128+signal; `by_signal` says which signal came.
struct Signals {
    stop: Arc<AtomicBool>,
    by_signal: Vec<(i32, Arc<AtomicBool>)>,
}

/// Installs `record`'s handlers (first thing in `main`, so that a signal during start-up
/// stops the recording gracefully too).
fn install_signals() -> Result<Signals, UserError> {
    let stop = Arc::new(AtomicBool::new(false));
    let mut by_signal = Vec::new();
    for sig in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        let got = Arc::new(AtomicBool::new(false));
        let reg = signal_hook::flag::register_conditional_shutdown(sig, 128 + sig, stop.clone())
            .and_then(|_| signal_hook::flag::register(sig, got.clone()))
            .and_then(|_| signal_hook::flag::register(sig, stop.clone()));
        if let Err(e) = reg {
            return Err(UserError(format!("cannot handle signal {sig}: {e}")));
        }
        by_signal.push((sig, got));
    }
    Ok(Signals { stop, by_signal })
}

fn record_cmd(a: RecordArgs, signals: Option<Signals>) -> Result<(), Failure> {
    let text = read(&a.config)?;
    let mut raw =
        config::parse_json(&text).map_err(|e| UserError(format!("{}: {e}", a.config.display())))?;
    if let Some(o) = &a.output {
        // the video file, or the audio file of an audio-only config
        let section = if raw.get("videoFileCfg").is_some_and(|v| !v.is_null()) {
            "videoFileCfg"
        } else {
            "audioFileCfg"
        };
        match raw.get_mut(section).and_then(|v| v.as_object_mut()) {
            Some(v) => {
                v.insert("svrPathName".into(), o.clone().into());
            }
            None => {
                return Err(UserError(format!(
                    "{}: videoFileCfg or audioFileCfg is required",
                    a.config.display()
                ))
                .into())
            }
        }
    }
    let config = MixerConfig::from_value(raw)
        .map_err(|e| UserError(format!("{}: {e}", a.config.display())))?;
    warn_all(&a.config, config.warnings());
    let mut inputs: Vec<(String, PathBuf)> = Vec::new();
    for s in &a.inputs {
        let (id, file) = s
            .split_once('=')
            .filter(|(i, f)| !i.is_empty() && !f.is_empty())
            .ok_or_else(|| UserError(format!("--input {s}: expected CAMID=FILE")))?;
        if let Some((_, first)) = inputs.iter().find(|(c, _)| c == id) {
            return Err(UserError(format!(
                "--input {id}: camid '{id}' given twice ({} and {file}); one --input per camid",
                first.display()
            ))
            .into());
        }
        inputs.push((id.to_string(), PathBuf::from(file)));
    }
    let mut audio = Vec::new();
    for s in &a.audio {
        let (user, file) = s
            .split_once('=')
            .filter(|(u, f)| !u.is_empty() && !f.is_empty() && !u.contains('.'))
            .ok_or_else(|| UserError(format!("--audio {s}: expected USER=FILE")))?;
        audio.push((user.to_string(), PathBuf::from(file)));
    }
    let mut updates = Vec::new();
    for s in &a.updates {
        let (t, file) = s
            .split_once('=')
            .ok_or_else(|| UserError(format!("--update {s}: expected SECONDS=LAYOUT.json")))?;
        let secs: f64 = t
            .parse()
            .ok()
            .filter(|v: &f64| v.is_finite() && *v >= 0.0)
            .ok_or_else(|| UserError(format!("--update {s}: '{t}' is not a time in seconds")))?;
        let path = PathBuf::from(file);
        let v = config::parse_json(&read(&path)?).map_err(|e| UserError(format!("{file}: {e}")))?;
        // an invalid update is a usage error (exit 2), found before anything is recorded
        config
            .parse_update_value(&v)
            .map_err(|e| UserError(format!("{file}: {e}")))?;
        warn_all(&path, &config::unknown_fields(&v));
        updates.push((Duration::from_secs_f64(secs), v));
    }
    if config.has_video() {
        // the camids the layout shows, now or after an update
        let mut shown: Vec<String> = Vec::new();
        let layouts = std::iter::once(Ok(config.layout.clone())).chain(
            updates
                .iter()
                .map(|(_, v)| config.parse_update_value(v).map(Arc::new)),
        );
        for l in layouts.flatten() {
            shown.extend(
                l.items()
                    .iter()
                    .filter_map(|it| it.kind.source_id().map(str::to_string)),
            );
        }
        for (camid, file) in &inputs {
            if !shown.contains(camid) {
                eprintln!(
                    "warning: --input {camid}={}: no layout item (nor any --update) shows camid '{camid}'",
                    file.display()
                );
            }
        }
    }
    let pictures = parse_pictures(&a.pictures)?;
    {
        // the pictures the layout shows, now or after an update (the others are not decoded)
        let used = std::cell::RefCell::new(Vec::<String>::new());
        let note = |id: &str| {
            used.borrow_mut().push(id.to_string());
            true
        };
        let _ = config::check_pictures(&config.layout, note);
        for (_, v) in &updates {
            if let Ok(l) = config.parse_update_value(v) {
                let _ = config::check_pictures(&l, note);
            }
        }
        let used = used.into_inner();
        for (id, file) in &pictures {
            if !used.contains(id) {
                eprintln!(
                    "warning: --picture {id}={}: no layout item (nor any --update) shows picture '{id}'",
                    file.display()
                );
            }
        }
    }
    let duration = a.duration.map(parse_duration).transpose()?;
    let settings = MixerSettings {
        backend: a.backend,
        encoder: EncoderSettings {
            encoder: a.encoder.clone(),
            preset: a.preset.clone(),
            threads: 0,
        },
        mode: if a.realtime {
            PaceMode::Realtime
        } else {
            PaceMode::Offline
        },
        latency: Duration::from_millis(a.latency),
        audio: !a.no_audio,
        overwrite: a.overwrite,
        ..Default::default()
    };
    let mut settings = settings;
    if config.storage.is_some() {
        settings.journal_key =
            cloudmixer::record::load_journal_key(a.journal_key.as_deref(), &a.storage)
                .map_err(|e| UserError(e.to_string()))?;
    }
    let opts = RecordOptions {
        config,
        inputs,
        audio,
        pictures,
        updates,
        storage: a.storage.clone(),
        duration,
        settings,
        events: a.events.clone(),
    };
    // the first SIGTERM/SIGINT stops the recording gracefully; a second one exits at once
    let Signals { stop, by_signal } = match signals {
        Some(s) => s,
        None => install_signals()?,
    };
    let tty = std::io::stderr().is_terminal();
    let mut bar: Option<indicatif::ProgressBar> = None;
    let mut last_line = std::time::Instant::now();
    // the line of the last frame is printed once (uploads may follow)
    let mut last_printed = false;
    let result = record_until(opts, &stop, |p| {
        if tty {
            let b = bar.get_or_insert_with(|| {
                let b = indicatif::ProgressBar::new(p.total);
                if let Ok(st) = indicatif::ProgressStyle::with_template(
                    "{bar:40} {pos}/{len} frames  {elapsed_precise}  {msg}",
                ) {
                    b.set_style(st);
                }
                b
            });
            b.set_position(p.frames);
            b.set_message(format!("{:.1}x real time{}", speed(p), sinks(p)));
        } else if last_line.elapsed() >= Duration::from_secs(1)
            || (p.frames == p.total && !last_printed)
        {
            last_printed = p.frames == p.total;
            last_line = std::time::Instant::now();
            eprintln!(
                "progress: {}/{} frames ({:.0}%), {:.1}x real time{}",
                p.frames,
                p.total,
                100.0 * p.frames as f64 / p.total.max(1) as f64,
                speed(p),
                sinks(p)
            );
        }
    });
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    let summary = result.map_err(Failure::Record)?;
    // every output failed (a live target that never connected): nothing was recorded
    if !summary.outputs.is_empty() && summary.outputs.iter().all(|o| o.state == OutputState::Fail) {
        return Err(Failure::Outputs(summary.outputs));
    }
    println!("{summary}");
    let failed: Vec<_> = summary
        .failed_uploads()
        .map(|o| (o.svr_file_path_name.clone(), o.err_code, o.err_desc.clone()))
        .collect();
    if let Some((sig, _)) = by_signal
        .iter()
        .find(|(_, got)| got.load(Ordering::Relaxed))
    {
        let name = if *sig == signal_hook::consts::SIGINT {
            "SIGINT"
        } else {
            "SIGTERM"
        };
        eprintln!(
            "stopped by {name}: recording finalised ({:.3} s)",
            summary.duration_ms as f64 / 1000.0
        );
    }
    if failed.is_empty() {
        Ok(())
    } else {
        Err(Failure::Upload(failed))
    }
}

/// The outputs on the progress line: `; #0 a.mp4 1.20 MB; #1 rtmp://… live 0.31 MB`, and
/// after the end the uploads.
fn sinks(p: &cloudmixer::record::Progress) -> String {
    if p.outputs.len() < 2 && !p.outputs.iter().any(|o| o.state as u8 >= 4) {
        return String::new();
    }
    p.outputs
        .iter()
        .map(|o| format!("; #{} {}", o.id, cloudmixer::record::describe_output(o)))
        .collect()
}

/// `--picture RESOURCEID=IMAGE` values.
fn parse_pictures(args: &[String]) -> Result<Vec<(String, PathBuf)>, UserError> {
    args.iter()
        .map(|s| {
            let (id, file) = s
                .split_once('=')
                .filter(|(i, f)| !i.is_empty() && !f.is_empty())
                .ok_or_else(|| UserError(format!("--picture {s}: expected RESOURCEID=IMAGE")))?;
            Ok((id.to_string(), PathBuf::from(file)))
        })
        .collect()
}

fn speed(p: &cloudmixer::record::Progress) -> f64 {
    p.frames as f64 / p.fps.max(1) as f64 / p.elapsed.as_secs_f64().max(1e-9)
}

fn run(cli: Cli, signals: Option<Signals>) -> Result<(), Failure> {
    match cli.cmd {
        Cmd::Record(a) => record_cmd(a, signals),
        other => run_other(other).map_err(Failure::User),
    }
}

fn run_other(cmd: Cmd) -> Result<(), UserError> {
    match cmd {
        Cmd::Record(_) => Err(UserError("internal: not a plain command".into())),
        #[cfg(feature = "serve")]
        Cmd::Serve(_) => Err(UserError("internal: not a plain command".into())),
        #[cfg(not(feature = "serve"))]
        Cmd::Serve(_) => Err(left_out("serve")),
        #[cfg(feature = "bench")]
        Cmd::Bench(a) => bench::run(a).map_err(UserError),
        #[cfg(not(feature = "bench"))]
        Cmd::Bench(_) => Err(left_out("bench")),
        Cmd::Validate { config } => {
            let cfg = load_config(&config)?;
            println!("{}", serde_json::to_string_pretty(&cfg.resolved_json())?);
            Ok(())
        }
        Cmd::Snapshot {
            config,
            inputs,
            pictures,
            clock,
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
            // every picture is checked from its header; only those the layout shows are decoded
            let used = std::cell::RefCell::new(Vec::<String>::new());
            let _ = config::check_pictures(&layout, |id| {
                used.borrow_mut().push(id.to_string());
                true
            });
            let mut used = used.into_inner();
            // (a picture may also stand in for a camid)
            used.extend(
                layout
                    .items()
                    .iter()
                    .filter_map(|it| it.kind.source_id().map(str::to_string)),
            );
            for (id, file) in parse_pictures(&pictures)? {
                if used.contains(&id) {
                    frames.insert(id.clone(), Arc::new(load_picture(&id, &file)?));
                } else {
                    check_picture_file(&id, &file)?;
                    eprintln!(
                        "warning: --picture {id}={}: no layout item shows picture '{id}'",
                        file.display()
                    );
                }
            }
            for it in layout.items() {
                if let Some(id) = it.kind.source_id() {
                    if !frames.contains_key(id) {
                        eprintln!("note: no --input for '{id}': drawing the placeholder");
                    }
                }
            }
            let mut c = compose::create(backend, cfg.output.width, cfg.output.height)?;
            eprintln!("backend: {}", c.describe());
            let wall_ms = match clock {
                Some(s) => s.saturating_mul(1000),
                None => std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_millis() as i64),
            };
            let mut scene = cloudmixer::compose::scene::Scene::new();
            let (layout, frames) = scene.resolve(&layout, &frames, wall_ms);
            let img = c.compose(layout, frames)?;
            snapshot::write_png(&out, img)
                .map_err(|e| UserError(format!("{}: {e}", out.display())))?;
            eprintln!("wrote {} ({}x{})", out.display(), img.width, img.height);
            Ok(())
        }
    }
}

/// The library's `tracing` records on stderr, one line each (`warn` and above unless
/// `CLOUDMIXER_LOG` says otherwise, e.g. `CLOUDMIXER_LOG=info` or
/// `CLOUDMIXER_LOG=cloudmixer::host=debug`): why a pulled input was lost, why a publish was
/// refused, an upload retried. A filter that does not parse falls back to `warn`.
fn init_logging() {
    use tracing_subscriber::EnvFilter;
    let filter = std::env::var("CLOUDMIXER_LOG")
        .ok()
        .and_then(|f| EnvFilter::try_new(f).ok())
        .unwrap_or_else(|| EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .with_target(false)
        .try_init();
}

fn main() -> ExitCode {
    // `record` handles SIGTERM/SIGINT from the start (a signal during start-up still ends in
    // a finalised file or a clear error)
    let signals = if std::env::args_os().nth(1).is_some_and(|a| a == "record") {
        match install_signals() {
            Ok(s) => Some(s),
            Err(UserError(msg)) => {
                eprintln!("error: {msg}");
                return ExitCode::from(2);
            }
        }
    } else {
        None
    };
    init_logging();
    let cli = Cli::parse();
    let cli = match cli.cmd {
        #[cfg(feature = "serve")]
        Cmd::Serve(a) => return serve::run(*a),
        cmd => Cli { cmd },
    };
    match run(cli, signals) {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::User(UserError(msg))) => {
            eprintln!("error: {msg}");
            ExitCode::from(2)
        }
        // bad usage found by the recorder before anything was recorded (an input's camid,
        // an input or picture that cannot be used, an update, the storage root): usage, as
        // for the checks above
        Err(Failure::Record(
            e @ (RecordError::Usage(_)
            | RecordError::Config(_)
            | RecordError::Input { .. }
            | RecordError::AudioInput { .. }
            | RecordError::Picture(_)),
        )) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
        // a setting the mixer refused at start: name the option
        Err(Failure::Record(RecordError::Setting(e))) => {
            use cloudmixer::media::video_enc::EncodeError;
            use cloudmixer::pipeline::MixerError;
            let opt = match &e {
                MixerError::Encode(EncodeError::NotFound(n)) => format!("--encoder {n}: "),
                MixerError::Encode(EncodeError::Setting(_)) => "--encoder/--preset: ".into(),
                _ => String::new(),
            };
            eprintln!("error (code {}): {opt}{e}", e.code());
            ExitCode::from(2)
        }
        Err(Failure::Outputs(outputs)) => {
            for o in outputs {
                let name = &o.svr_file_path_name;
                let what = match (name.contains("://"), o.file_size) {
                    (true, 0) => "the live target never connected; nothing was recorded".into(),
                    (_, 0) => "the output failed; nothing was recorded".into(),
                    (_, n) => format!("the output failed after {n} bytes"),
                };
                eprintln!(
                    "error (code {}): {name}: {what} ({})",
                    o.err_code, o.err_desc
                );
            }
            ExitCode::from(1)
        }
        Err(Failure::Record(e)) => {
            eprintln!("error (code {}): {e}", e.code());
            ExitCode::from(1)
        }
        Err(Failure::Upload(failed)) => {
            for (name, code, desc) in failed {
                eprintln!(
                    "error (code {code}): upload of {name} failed: {desc}; the file is kept and \
                     the next run with this --storage and storageConfig uploads it"
                );
            }
            ExitCode::from(3)
        }
    }
}
