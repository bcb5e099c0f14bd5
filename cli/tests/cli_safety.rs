//! `cloudmixer record` against hostile or unlucky use: huge pictures, a live target that is
//! down, a signal right after the start, failed starts, bad usage, surround sound.
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

// the repository root (fixtures/, scripts/): this crate is cli/
const ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/..");

/// The binary under test (`CLOUDMIXER_TEST_BIN` runs these tests against another build, e.g.
/// an older one, to see them fail).
fn bin() -> Command {
    let exe = std::env::var("CLOUDMIXER_TEST_BIN")
        .unwrap_or_else(|_| env!("CARGO_BIN_EXE_cloudmixer").to_string());
    Command::new(exe)
}

fn out_dir(name: &str) -> PathBuf {
    let d = Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
    // fresh each run: recordings are never overwritten, a stale file would get a new name
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn clip(name: &str) -> String {
    format!("{ROOT}/fixtures/clips/{name}")
}

fn seed() -> String {
    format!("{ROOT}/fixtures/layouts/seed_side_by_side.json")
}

fn events_of(p: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(p)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}")))
        .collect()
}

/// What a finished child did: exit code, stdout, stderr, peak RSS in bytes.
struct Run {
    code: Option<i32>,
    out: String,
    err: String,
    max_rss: u64,
}

/// Runs `cmd` to its end and measures the child's peak RSS (`wait4`'s `ru_maxrss`).
#[allow(clippy::zombie_processes)] // reaped by `wait4`, which std's `wait` cannot replace
fn run_measured(cmd: &mut Command) -> Run {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut so = child.stdout.take().unwrap();
    let mut se = child.stderr.take().unwrap();
    let t_out = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = so.read_to_string(&mut s);
        s
    });
    let t_err = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = se.read_to_string(&mut s);
        s
    });
    let mut status = 0;
    // SAFETY: an all-zero rusage is a valid value of this plain C struct
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: waits for our own child; both out-pointers are valid for the call
    let pid = unsafe { libc::wait4(child.id() as libc::pid_t, &mut status, 0, &mut ru) };
    assert_eq!(pid, child.id() as libc::pid_t, "wait4 failed");
    let code = if libc::WIFEXITED(status) {
        Some(libc::WEXITSTATUS(status))
    } else {
        None
    };
    Run {
        code,
        out: t_out.join().unwrap(),
        err: t_err.join().unwrap(),
        max_rss: ru.ru_maxrss as u64 * 1024,
    }
}

/// A `w × h` PNG of one grey, written row by row (a 16000 × 16000 one is under 1 MB).
fn write_png(p: &Path, w: u32, h: u32) {
    let f = std::io::BufWriter::new(std::fs::File::create(p).unwrap());
    let mut e = png::Encoder::new(f, w, h);
    e.set_color(png::ColorType::Grayscale);
    e.set_compression(png::Compression::Fast);
    let mut wr = e.write_header().unwrap();
    let mut s = wr.stream_writer().unwrap();
    let row = vec![128u8; w as usize];
    for _ in 0..h {
        std::io::Write::write_all(&mut s, &row).unwrap();
    }
    s.finish().unwrap();
}

/// A 320 × 120 layout: a camera and, with `picture`, a type-1 item showing it.
fn picture_config(d: &Path, picture: Option<&str>) -> PathBuf {
    let mut items = vec![
        serde_json::json!({"type":0,"left":0,"top":0,"width":160,"height":120,
        "param":{"camid":"cam"}}),
    ];
    if let Some(id) = picture {
        items.push(
            serde_json::json!({"type":1,"left":160,"top":0,"width":160,"height":120,
            "param":{"resourceid":id}}),
        );
    }
    let cfg = d.join(format!("pic_{}.json", picture.unwrap_or("none")));
    std::fs::write(
        &cfg,
        serde_json::json!({"mode":0,"videoFileCfg":{"svrPathName":"pic.mp4","vWidth":320,
            "vHeight":120,"vFps":10,"layoutConfig":items}})
        .to_string(),
    )
    .unwrap();
    cfg
}

/// Peak RSS of a small recording is ~0.2 GB; decoding a 16000 × 16000 picture costs 1 GB+.
const RSS_LIMIT: u64 = 400 << 20;

/// A 16000 × 16000 PNG (under 1 MB on disk) is refused from its header with a usage error
/// naming the picture, the file, its size and the limit, whether or not a layout item shows
/// it, and without decoding it (peak RSS stays low). A file over 32 MiB is refused too.
#[test]
fn huge_picture_is_refused_from_its_header_with_low_peak_rss() {
    let d = out_dir("safety_big_picture");
    let big = d.join("big.png");
    write_png(&big, 16000, 16000);
    assert!(std::fs::metadata(&big).unwrap().len() < 4 << 20);
    for used in [true, false] {
        let cfg = picture_config(&d, used.then_some("big"));
        let r = run_measured(
            bin()
                .args([
                    "record",
                    "--backend",
                    "cpu",
                    "--no-audio",
                    "--duration",
                    "1",
                ])
                .args(["--preset", "ultrafast", "--config"])
                .arg(&cfg)
                .args(["--input", &format!("cam={}", clip("cam9_320x240_15.mp4"))])
                .arg("--picture")
                .arg(format!("big={}", big.display()))
                .arg("--storage")
                .arg(d.join("store")),
        );
        assert_eq!(r.code, Some(2), "used {used}: {}", r.err);
        for want in [
            "picture \"big\"",
            big.to_str().unwrap(),
            "16000x16000",
            "4096x4096",
        ] {
            assert!(
                r.err.contains(want),
                "used {used}: no {want:?} in {}",
                r.err
            );
        }
        assert!(
            r.max_rss < RSS_LIMIT,
            "used {used}: peak RSS {} MB",
            r.max_rss >> 20
        );
        assert!(!d.join("store/pic.mp4").exists());
        // snapshot too
        let r = run_measured(
            bin()
                .args(["snapshot", "--backend", "cpu", "--config"])
                .arg(&cfg)
                .arg("--picture")
                .arg(format!("big={}", big.display()))
                .arg("--out")
                .arg(d.join("snap.png")),
        );
        assert_eq!(r.code, Some(2), "snapshot, used {used}: {}", r.err);
        assert!(
            r.err.contains("picture \"big\"") && r.err.contains("16000x16000"),
            "{}",
            r.err
        );
        assert!(r.max_rss < RSS_LIMIT, "snapshot: {} MB", r.max_rss >> 20);
        assert!(!d.join("snap.png").exists());
    }
    // a file over the byte limit (sparse: a PNG signature, then 33 MiB)
    let fat = d.join("fat.png");
    {
        let mut f = std::fs::File::create(&fat).unwrap();
        std::io::Write::write_all(&mut f, b"\x89PNG\r\n\x1a\n").unwrap();
        f.set_len(33 << 20).unwrap();
    }
    let cfg = picture_config(&d, Some("fat"));
    let r = run_measured(
        bin()
            .args([
                "record",
                "--backend",
                "cpu",
                "--no-audio",
                "--duration",
                "1",
            ])
            .arg("--config")
            .arg(&cfg)
            .args(["--input", &format!("cam={}", clip("cam9_320x240_15.mp4"))])
            .arg("--picture")
            .arg(format!("fat={}", fat.display()))
            .arg("--storage")
            .arg(d.join("store")),
    );
    assert_eq!(r.code, Some(2), "{}", r.err);
    assert!(
        r.err.contains("picture \"fat\"")
            && r.err.contains(fat.to_str().unwrap())
            && r.err.contains("34603008 bytes")
            && r.err.contains("32 MiB"),
        "{}",
        r.err
    );
}

/// A picture within the limits that no layout item shows is only warned about (and not
/// decoded); one that is shown is recorded.
#[test]
fn picture_within_limits_is_recorded_and_an_unused_one_is_named() {
    let d = out_dir("safety_ok_picture");
    let ok = d.join("ok.png");
    write_png(&ok, 4096, 4096);
    for used in [true, false] {
        let cfg = picture_config(&d, used.then_some("ok"));
        let r = run_measured(
            bin()
                .args([
                    "record",
                    "--backend",
                    "cpu",
                    "--no-audio",
                    "--duration",
                    "1",
                ])
                .args(["--preset", "ultrafast", "--overwrite", "--config"])
                .arg(&cfg)
                .args(["--input", &format!("cam={}", clip("cam9_320x240_15.mp4"))])
                .arg("--picture")
                .arg(format!("ok={}", ok.display()))
                .arg("--storage")
                .arg(d.join("store")),
        );
        assert_eq!(r.code, Some(0), "used {used}: {}", r.err);
        assert!(r.out.contains("frames:   10"), "{}", r.out);
        assert_eq!(
            r.err
                .contains("no layout item (nor any --update) shows picture 'ok'"),
            !used,
            "{}",
            r.err
        );
        assert!(
            r.max_rss < RSS_LIMIT,
            "used {used}: peak RSS {} MB",
            r.max_rss >> 20
        );
    }
}

/// A recording whose only target is a live push that never connects has recorded nothing:
/// exit 1 with the live failure's vendor code and a message saying so.
#[test]
fn live_only_target_that_never_connects_is_a_failure() {
    let d = out_dir("safety_live_down");
    // a port nobody listens on
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let url = format!("rtmp://127.0.0.1:{port}/live/x");
    let mut cfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(seed()).unwrap()).unwrap();
    cfg["videoFileCfg"]["svrPathName"] = url.clone().into();
    let cfg_path = d.join("live.json");
    std::fs::write(&cfg_path, cfg.to_string()).unwrap();
    let ev = d.join("ev.jsonl");
    let r = run_measured(
        bin()
            .args(["record", "--backend", "cpu", "--duration", "2"])
            .args(["--preset", "ultrafast", "--config"])
            .arg(&cfg_path)
            .args([
                "--input",
                &format!("Usr1.-1={}", clip("cam1_640x480_15.mp4")),
            ])
            .arg("--events")
            .arg(&ev)
            .arg("--storage")
            .arg(&d),
    );
    assert_eq!(r.code, Some(1), "stdout: {}\nstderr: {}", r.out, r.err);
    assert!(
        r.err.contains("code 905")
            && r.err.contains(&url)
            && r.err.contains("never connected")
            && r.err.contains("nothing was recorded"),
        "{}",
        r.err
    );
    assert!(!r.out.contains("recorded "), "{}", r.out);
    // the events say the same: the output failed with 905
    let evs = events_of(&ev);
    assert!(
        evs.iter().any(|e| e["event"] == "outputInfoChanged"
            && e["outputInfo"]["state"] == 3
            && e["outputInfo"]["errCode"] == 905),
        "{evs:?}"
    );
}

/// SIGINT very soon after the start: either the file plays (ffprobe and a full decode read
/// it), or there is no file and the exit is non-zero with a message. Never exit 0 with an
/// unreadable file.
#[test]
fn sigint_right_after_start_leaves_a_playable_file_or_none() {
    let d = out_dir("safety_early_sigint");
    for realtime in [false, true] {
        for ms in [50u64, 100, 150, 300] {
            let name = format!("early_{ms}_{realtime}.mp4");
            let file = d.join(&name);
            let mut cmd = bin();
            cmd.args(["record", "--backend", "cpu", "--duration", "30"])
                .args(["--config", &seed(), "--output", &name])
                .args([
                    "--input",
                    &format!("Usr1.-1={}", clip("cam1_640x480_15.mp4")),
                ])
                .arg("--storage")
                .arg(&d)
                .stdout(Stdio::piped())
                .stderr(Stdio::piped());
            if realtime {
                cmd.arg("--realtime");
            }
            let child = cmd.spawn().unwrap();
            std::thread::sleep(Duration::from_millis(ms));
            // SAFETY: kill has no memory preconditions; the pid is our child's
            assert_eq!(
                unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGINT) },
                0
            );
            let t = Instant::now();
            let o = child.wait_with_output().unwrap();
            let what = format!("{ms} ms, realtime {realtime}");
            assert!(
                t.elapsed() < Duration::from_secs(10),
                "{what}: took {:?}",
                t.elapsed()
            );
            let err = String::from_utf8_lossy(&o.stderr);
            if file.exists() {
                assert_eq!(o.status.code(), Some(0), "{what}: {err}");
                let probe = Command::new("ffprobe")
                    .args(["-v", "error", "-count_frames", "-select_streams", "v:0"])
                    .args(["-show_entries", "stream=nb_read_frames", "-of", "csv=p=0"])
                    .arg(&file)
                    .output()
                    .unwrap();
                let frames = String::from_utf8_lossy(&probe.stdout);
                assert!(probe.status.success(), "{what}: ffprobe failed");
                assert!(
                    frames.trim().parse::<u64>().is_ok_and(|n| n >= 1),
                    "{what}: {frames:?} frames, {} bytes",
                    std::fs::metadata(&file).map_or(0, |m| m.len())
                );
                let dec = Command::new("ffmpeg")
                    .args(["-v", "error", "-i"])
                    .arg(&file)
                    .args(["-f", "null", "-"])
                    .output()
                    .unwrap();
                assert!(
                    dec.status.success() && dec.stderr.is_empty(),
                    "{what}: ffmpeg cannot decode it: {}",
                    String::from_utf8_lossy(&dec.stderr)
                );
            } else {
                use std::os::unix::process::ExitStatusExt;
                // killed before `main` installed its handlers (the process had not started
                // yet: nothing could be written), or a non-zero exit with a message
                let before_main = o.status.signal() == Some(libc::SIGINT);
                assert!(
                    before_main || (o.status.code() != Some(0) && err.contains("error")),
                    "{what}: no file, status {:?}: {err}",
                    o.status
                );
            }
        }
    }
}

/// A mixer that fails to start logs what a failed mixer does: STARTING, the error with its
/// code and description, NULL with the same code. So does a recording refused before its
/// mixer starts (a missing input).
#[test]
fn failed_start_logs_starting_error_and_null() {
    let d = out_dir("safety_failed_start");
    let cam1 = format!("Usr1.-1={}", clip("cam1_640x480_15.mp4"));
    for (extra, input, code) in [
        (vec!["--encoder", "bogus"], cam1.as_str(), 5),
        (vec![], "Usr1.-1=/no/such/input.mp4", 5),
    ] {
        let ev = d.join("ev.jsonl");
        let o = bin()
            .args(["record", "--backend", "cpu", "--duration", "1"])
            .args(["--config", &seed(), "--input", input])
            .args(&extra)
            .arg("--events")
            .arg(&ev)
            .arg("--storage")
            .arg(&d)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success(), "{err}");
        let evs = events_of(&ev);
        assert_eq!(evs.len(), 3, "{extra:?}: {evs:?}");
        assert_eq!(
            (&evs[0]["event"], &evs[0]["state"], &evs[0]["err"]),
            (&"stateChanged".into(), &1.into(), &0.into()),
            "{evs:?}"
        );
        assert_eq!(evs[1]["event"], "error", "{evs:?}");
        assert_eq!(evs[1]["code"], code, "{evs:?}");
        let desc = evs[1]["desc"].as_str().unwrap_or_default();
        assert!(!desc.is_empty(), "{evs:?}");
        assert_eq!(
            (&evs[2]["event"], &evs[2]["state"], &evs[2]["err"]),
            (&"stateChanged".into(), &0.into(), &code.into()),
            "{evs:?}"
        );
        assert_eq!(evs[2]["errDesc"], desc, "{evs:?}");
    }
}

/// Bad usage exits 2 (README) with a message naming the option or file: a missing picture,
/// a picture that is not an image, an input that cannot be opened, an unknown encoder.
#[test]
fn usage_errors_exit_2_naming_the_option_or_file() {
    let d = out_dir("safety_usage");
    let cfg = picture_config(&d, Some("card"));
    let cam = format!("cam={}", clip("cam9_320x240_15.mp4"));
    let card = format!("card={}", clip("still_160x120.jpg"));
    let not_image = d.join("not_image.png");
    std::fs::write(&not_image, b"this is text, not a picture").unwrap();
    let not_image_arg = format!("card={}", not_image.display());
    let not_media = format!("cam={}", clip("not_media.mp4"));
    let cases: Vec<(Vec<&str>, Vec<&str>)> = vec![
        (
            vec!["--input", &cam, "--picture", "card=/no/such.png"],
            vec!["picture \"card\"", "/no/such.png", "no such file"],
        ),
        (
            vec!["--input", &cam, "--picture", &not_image_arg],
            vec!["picture \"card\"", not_image.to_str().unwrap(), "not a PNG"],
        ),
        (
            vec!["--input", "cam=/no/such/cam.mp4", "--picture", &card],
            vec!["--input cam", "/no/such/cam.mp4", "no such file"],
        ),
        (
            vec!["--input", &not_media, "--picture", &card],
            vec!["--input cam", "not_media.mp4"],
        ),
        (
            vec!["--input", &cam, "--picture", &card, "--encoder", "bogus"],
            vec!["--encoder bogus", "not available"],
        ),
    ];
    for (args, wants) in cases {
        let o = bin()
            .args([
                "record",
                "--backend",
                "cpu",
                "--no-audio",
                "--duration",
                "1",
            ])
            .arg("--config")
            .arg(&cfg)
            .args(&args)
            .arg("--storage")
            .arg(d.join("store"))
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {err}");
        for w in wants {
            assert!(err.contains(w), "{args:?}: no {w:?} in {err}");
        }
        assert!(!err.contains("panicked"), "{err}");
    }
}

fn rms(x: &[f32]) -> f64 {
    (x.iter().map(|&v| f64::from(v) * f64::from(v)).sum::<f64>() / x.len().max(1) as f64).sqrt()
}

fn db(x: f64) -> f64 {
    20.0 * x.log10()
}

/// A 5.1 WAV recorded into a mono file is as loud as FFmpeg's own `-ac 1` downmix of it
/// (swresample's ITU matrix, normalised): within 1 dB, for correlated and uncorrelated
/// channels.
#[test]
fn surround_downmix_matches_ffmpeg_loudness() {
    let d = out_dir("safety_downmix");
    let cfg = d.join("audio.json");
    std::fs::write(
        &cfg,
        r#"{"mode":0,"audioFileCfg":{"svrPathName":"/mono.wav"}}"#,
    )
    .unwrap();
    for (name, expr) in [
        // one sine in every channel (a centred source)
        (
            "same",
            "0.2*sin(2*PI*440*t)|0.2*sin(2*PI*440*t)|0.2*sin(2*PI*440*t)|0.2*sin(2*PI*440*t)|0.2*sin(2*PI*440*t)|0.2*sin(2*PI*440*t)",
        ),
        // a different tone in each channel
        (
            "distinct",
            "0.3*sin(2*PI*300*t)|0.3*sin(2*PI*500*t)|0.3*sin(2*PI*700*t)|0.3*sin(2*PI*110*t)|0.3*sin(2*PI*900*t)|0.3*sin(2*PI*1100*t)",
        ),
    ] {
        let src = d.join(format!("{name}51.wav"));
        let st = Command::new("ffmpeg")
            .args(["-v", "error", "-y", "-f", "lavfi", "-i"])
            .arg(format!("aevalsrc={expr}:s=48000:d=2:c=5.1"))
            .arg(&src)
            .status()
            .unwrap();
        assert!(st.success());
        let theirs = d.join(format!("{name}_ffmpeg.wav"));
        let st = Command::new("ffmpeg")
            .args(["-v", "error", "-y", "-i"])
            .arg(&src)
            .args(["-ac", "1"])
            .arg(&theirs)
            .status()
            .unwrap();
        assert!(st.success());
        let store = d.join(format!("store_{name}"));
        let o = bin()
            .args(["record", "--config"])
            .arg(&cfg)
            .arg("--audio")
            .arg(format!("U={}", src.display()))
            .arg("--storage")
            .arg(&store)
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let ours = cloudmixer::testkit::signal::decode_audio(&store.join("mono.wav"), 1);
        let ref_ = cloudmixer::testkit::signal::decode_audio(&theirs, 1);
        // the steady middle of each (the mixer's start and end ramps left out)
        let mid = |x: &[f32]| rms(&x[24_000..72_000.min(x.len())]);
        let (a, b) = (mid(&ours), mid(&ref_));
        assert!(b > 0.05, "{name}: FFmpeg's downmix rms {b}");
        let diff = db(a) - db(b);
        assert!(
            diff.abs() <= 1.0,
            "{name}: ours {:.2} dBFS, FFmpeg's {:.2} dBFS ({diff:+.2} dB)",
            db(a),
            db(b)
        );
    }
}
