//! The `cloudmixer` binary: validate and snapshot.
use std::process::Command;

// the repository root (fixtures/, scripts/): this crate is cli/
const ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/..");

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_cloudmixer"))
}

fn out_dir(name: &str) -> std::path::PathBuf {
    let d = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
    // fresh each run: recordings are never overwritten, a stale file would get a new name
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[test]
fn validate_prints_resolved_layout() {
    let o = bin()
        .args([
            "validate",
            &format!("{ROOT}/fixtures/layouts/seed_side_by_side.json"),
        ])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["width"], 1280);
    assert_eq!(v["items"][1]["camid"], "Usr2.-1");
    assert_eq!(
        v["items"][1]["rect"],
        serde_json::json!({"x":640,"y":180,"w":640,"h":360})
    );
}

#[test]
fn validate_rejects_with_exit_2_and_path() {
    let d = out_dir("validate_bad");
    let p = d.join("bad.json");
    std::fs::write(&p, r#"{"videoFileCfg":{"svrPathName":"/a.mp4","vWidth":1280,"vHeight":720,"layoutConfig":[{"type":0,"left":0,"top":0,"width":-5,"height":3,"param":{"camid":"x"}}]}}"#).unwrap();
    let o = bin().arg("validate").arg(&p).output().unwrap();
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("videoFileCfg.layoutConfig[0].width: must be > 0, got -5"),
        "{err}"
    );
    assert!(o.stdout.is_empty());
    let o = bin()
        .args(["validate", "/nonexistent/cfg.json"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
}

fn read_png(p: &std::path::Path) -> (u32, u32, Vec<u8>) {
    let dec = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(p).unwrap()));
    let mut r = dec.read_info().unwrap();
    let mut buf = vec![0; r.output_buffer_size().unwrap()];
    let info = r.next_frame(&mut buf).unwrap();
    buf.truncate(info.buffer_size());
    (info.width, info.height, buf)
}

#[test]
fn snapshot_of_w1_from_clips() {
    let d = out_dir("snap_w1");
    let out = d.join("w1.png");
    let o = bin()
        .args([
            "snapshot",
            "--config",
            &format!("{ROOT}/fixtures/layouts/w1.json"),
            "--backend",
            "cpu",
        ])
        .args([
            "--input",
            &format!("cam1={ROOT}/fixtures/clips/cam1_640x480_15.mp4@2"),
        ])
        .args([
            "--input",
            &format!("cam4={ROOT}/fixtures/clips/cam4_1280x720_30.mp4@2"),
        ])
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stderr).contains("backend: cpu"));
    let (w, h, rgb) = read_png(&out);
    assert_eq!((w, h), (1280, 720));
    let px = |x: usize, y: usize| &rgb[(y * 1280 + x) * 3..(y * 1280 + x) * 3 + 3];
    // canvas margin and pillarbox bars are black
    assert_eq!(px(640, 100), [0, 0, 0]);
    assert_eq!(px(40, 300), [0, 0, 0]);
    assert_eq!(px(600, 300), [0, 0, 0]);
    // cam1 (testsrc2) starts with a red bar at the image's left edge; cam4 (smptehdbars) has grey
    let red = px(100, 250);
    assert!(red[0] > 200 && red[1] < 60 && red[2] < 60, "{red:?}");
    let grey = px(660, 200);
    assert!(grey.iter().all(|c| (80..130).contains(c)), "{grey:?}");
}

#[test]
fn snapshot_camid_without_input_draws_background_and_errors_are_clear() {
    let d = out_dir("snap_missing");
    let out = d.join("x.png");
    let o = bin()
        .args([
            "snapshot",
            "--config",
            &format!("{ROOT}/fixtures/layouts/seed_side_by_side.json"),
            "--out",
        ])
        .arg(&out)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let (_, _, rgb) = read_png(&out);
    assert!(rgb.iter().all(|&c| c == 0));
    // a missing input file names the file
    let o = bin()
        .args([
            "snapshot",
            "--config",
            &format!("{ROOT}/fixtures/layouts/seed_side_by_side.json"),
            "--input",
            "Usr1.-1=/no/such.mp4",
            "--out",
        ])
        .arg(&out)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("/no/such.mp4: no such file"));
    // a malformed --input
    let o = bin()
        .args([
            "snapshot",
            "--config",
            &format!("{ROOT}/fixtures/layouts/seed_side_by_side.json"),
            "--input",
            "x=a.mp4@soon",
            "--out",
        ])
        .arg(&out)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("'soon' is not a time in seconds"));
}

#[test]
fn snapshot_with_update_applies_pip() {
    let d = out_dir("snap_pip");
    let out = d.join("pip.png");
    let o = bin()
        .args([
            "snapshot",
            "--config",
            &format!("{ROOT}/fixtures/layouts/seed_side_by_side.json"),
        ])
        .args([
            "--update",
            &format!("{ROOT}/fixtures/layouts/seed_pip_update.json"),
        ])
        .args([
            "--input",
            &format!("Usr1.-1={ROOT}/fixtures/clips/cam4_1280x720_30.mp4"),
        ])
        .args([
            "--input",
            &format!("Usr2.-1={ROOT}/fixtures/clips/still_160x90.png"),
        ])
        .arg("--out")
        .arg(&out)
        .args(["--backend", "cpu"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let (_, _, rgb) = read_png(&out);
    // the full-frame camera covers the top-left corner: no black there
    assert!(rgb[..3].iter().any(|&c| c > 40));
}

// ---- record: audio ----

/// `ffprobe`'s streams as JSON (codec_type, codec_name, duration, start_time, …).
fn probe_streams(p: &std::path::Path) -> Vec<serde_json::Value> {
    let o = Command::new("ffprobe")
        .args(["-v", "error", "-show_streams", "-of", "json"])
        .arg(p)
        .output()
        .expect("ffprobe");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    v["streams"].as_array().cloned().unwrap_or_default()
}

fn stream<'a>(streams: &'a [serde_json::Value], kind: &str) -> &'a serde_json::Value {
    streams
        .iter()
        .find(|s| s["codec_type"] == kind)
        .unwrap_or_else(|| panic!("no {kind} stream in {streams:?}"))
}

fn secs(v: &serde_json::Value) -> f64 {
    v.as_str()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("not a time: {v}"))
}

/// The file's audio decoded by the FFmpeg CLI as 48 kHz mono f32.
fn decode_mono(p: &std::path::Path) -> Vec<f32> {
    cloudmixer::testkit::signal::decode_audio(p, 1)
}

fn goertzel(x: &[f32], freq: f64) -> f64 {
    cloudmixer::testkit::signal::goertzel(x, freq, 48_000)
}

fn assert_tone(x: &[f32], freq: f64) {
    let db = 10.0 * (goertzel(x, freq) / goertzel(x, 1000.0).max(1e-30)).log10();
    assert!(db >= 20.0, "{freq} Hz only {db:.1} dB above 1 kHz");
}

fn clip(name: &str) -> String {
    format!("{ROOT}/fixtures/clips/{name}")
}

#[test]
fn record_takes_the_inputs_audio_into_an_aac_track_as_long_as_the_video() {
    let d = out_dir("rec_av");
    let o = bin()
        .args([
            "record",
            "--backend",
            "cpu",
            "--duration",
            "3",
            "--output",
            "av.mp4",
        ])
        .args([
            "--config",
            &format!("{ROOT}/fixtures/layouts/seed_side_by_side.json"),
        ])
        .args([
            "--input",
            &format!("Usr1.-1={}", clip("cam1_640x480_15.mp4")),
        ])
        .args([
            "--input",
            &format!("Usr2.-1={}", clip("cam4_1280x720_30.mp4")),
        ])
        .arg("--storage")
        .arg(&d)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let summary = String::from_utf8_lossy(&o.stdout);
    assert!(
        summary.contains("  audio:    AAC 48 kHz mono (2 inputs)"),
        "{summary}"
    );
    assert!(summary.contains("  frames:   45 (15 fps"), "{summary}");
    let p = d.join("av.mp4");
    let streams = probe_streams(&p);
    assert_eq!(streams.len(), 2, "{streams:?}");
    let (v, a) = (stream(&streams, "video"), stream(&streams, "audio"));
    assert_eq!(v["codec_name"], "h264");
    assert_eq!(a["codec_name"], "aac");
    assert_eq!(a["sample_rate"], "48000");
    let (vd, ad) = (secs(&v["duration"]), secs(&a["duration"]));
    assert!((vd - 3.0).abs() < 1e-3, "video {vd} s");
    // one AAC frame (1024 samples at 48 kHz)
    assert!((vd - ad).abs() <= 0.0213, "video {vd} s, audio {ad} s");
    let x = decode_mono(&p);
    assert!(
        (x.len() as f64 / 48_000.0 - 3.0).abs() <= 0.0213,
        "{}",
        x.len()
    );
    assert_tone(&x, 330.0); // cam1
    assert_tone(&x, 440.0); // cam4
}

#[test]
fn record_audio_only_mp3_from_an_audio_input() {
    let d = out_dir("rec_audio_only");
    let cfg = d.join("audio_only.json");
    std::fs::write(
        &cfg,
        r#"{"mode":0,"audioFileCfg":{"svrPathName":"/a.mp3"}}"#,
    )
    .unwrap();
    let o = bin()
        .args(["record", "--duration", "2", "--config"])
        .arg(&cfg)
        .args(["--audio", &format!("Usr9={}", clip("cam9_320x240_15.mp4"))])
        .arg("--storage")
        .arg(&d)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let summary = String::from_utf8_lossy(&o.stdout);
    assert!(summary.contains("a.mp3"), "{summary}");
    assert!(
        summary.contains("  frames:   none (audio only)"),
        "{summary}"
    );
    assert!(
        summary.contains("  audio:    MP3 48 kHz mono (1 input)"),
        "{summary}"
    );
    let p = d.join("a.mp3");
    let streams = probe_streams(&p);
    assert_eq!(streams.len(), 1, "{streams:?}");
    let a = stream(&streams, "audio");
    assert_eq!(a["codec_name"], "mp3");
    // ffprobe's duration of an mp3 counts whole 1152-sample frames including the encoder
    // delay it reports as start_time (FFmpeg 5.1 says 2.040 s, start 0.023 s, even for a 2 s
    // file of its own): what plays is duration − start_time
    let played = secs(&a["duration"]) - secs(&a["start_time"]);
    assert!((played - 2.0).abs() <= 0.030, "{a}");
    let x = decode_mono(&p);
    let decoded = x.len() as f64 / 48_000.0;
    assert!((decoded - 2.0).abs() <= 0.030, "decoded {decoded} s");
    assert_tone(&x, 770.0); // cam9
}

#[test]
fn record_audio_input_without_audio_or_missing_is_an_error_naming_the_file() {
    let d = out_dir("rec_audio_bad");
    let cfg = d.join("audio_only.json");
    std::fs::write(
        &cfg,
        r#"{"mode":0,"audioFileCfg":{"svrPathName":"/a.m4a"}}"#,
    )
    .unwrap();
    for file in [clip("still_160x90.png"), "/no/such/audio.wav".to_string()] {
        let o = bin()
            .args(["record", "--config"])
            .arg(&cfg)
            .args(["--audio", &format!("X={file}")])
            .arg("--storage")
            .arg(&d)
            .output()
            .unwrap();
        assert!(!o.status.success());
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.contains(&file), "{err}");
    }
    // ... with --duration too (the duration probe does not get there first)
    let o = bin()
        .args(["record", "--duration", "1", "--config"])
        .arg(&cfg)
        .args(["--audio", "X=/no/such/audio.wav"])
        .arg("--storage")
        .arg(&d)
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("/no/such/audio.wav"));
    // a malformed --audio
    let o = bin()
        .args(["record", "--config"])
        .arg(&cfg)
        .args(["--audio", "Usr1.-1"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("expected USER=FILE"));
}

#[test]
fn record_no_audio_writes_a_video_only_file() {
    let d = out_dir("rec_no_audio");
    let o = bin()
        .args([
            "record",
            "--backend",
            "cpu",
            "--duration",
            "1",
            "--no-audio",
        ])
        .args([
            "--config",
            &format!("{ROOT}/fixtures/layouts/seed_side_by_side.json"),
        ])
        .args([
            "--input",
            &format!("Usr1.-1={}", clip("cam1_640x480_15.mp4")),
        ])
        .args(["--output", "v.mp4", "--storage"])
        .arg(&d)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stdout).contains("  audio:    none"));
    let streams = probe_streams(&d.join("v.mp4"));
    assert_eq!(streams.len(), 1, "{streams:?}");
    assert_eq!(stream(&streams, "video")["codec_name"], "h264");
}

/// Times (s) of the output frames where cam1's flash box is visible (the seed layout puts
/// cam1, 640x480, pillarboxed at x 80..560, y 180..540: the box is near (540, 200)). The
/// picture there is grey (179) otherwise; B-frames next to a flash average the two (~217), so
/// only near-white counts.
fn flash_times(p: &std::path::Path, fps: f64) -> Vec<f64> {
    let o = Command::new("ffmpeg")
        .args(["-v", "error", "-i"])
        .arg(p)
        .args([
            "-map",
            "0:v:0",
            "-vf",
            "crop=8:8:536:196,scale=1:1,format=gray",
            "-f",
            "rawvideo",
            "-",
        ])
        .output()
        .expect("ffmpeg");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    o.stdout
        .iter()
        .enumerate()
        .filter(|(_, &y)| y > 240)
        .map(|(n, _)| n as f64 / fps)
        .collect()
}

use cloudmixer::testkit::signal::click_times;

/// Every flash has its click within one frame (15 fps) plus one AAC frame, and vice versa.
/// Marks in the first 100 ms are left out: the mixer's output loses the first AAC frame's
/// worth (21.3 ms) of audio, and with it the click at 0 s.
fn assert_in_step(p: &std::path::Path, min_marks: usize) {
    let flashes: Vec<f64> = flash_times(p, 15.0)
        .into_iter()
        .filter(|&t| t > 0.1)
        .collect();
    let clicks: Vec<f64> = click_times(&decode_mono(p))
        .into_iter()
        .filter(|&t| t > 0.1)
        .collect();
    assert!(
        flashes.len() >= min_marks,
        "flashes {flashes:?}, clicks {clicks:?}"
    );
    let tol = 1.0 / 15.0 + 0.0214;
    for f in &flashes {
        assert!(
            clicks.iter().any(|c| (c - f).abs() <= tol),
            "flash at {f:.3} s without a click: flashes {flashes:?}, clicks {clicks:?}"
        );
    }
    for c in &clicks {
        assert!(
            flashes.iter().any(|f| (c - f).abs() <= tol),
            "click at {c:.3} s without a flash: flashes {flashes:?}, clicks {clicks:?}"
        );
    }
}

fn record_marks(name: &str, extra: &[&str]) -> std::path::PathBuf {
    let d = out_dir(name);
    let o = bin()
        .args([
            "record",
            "--backend",
            "cpu",
            "--duration",
            "3.5",
            "--output",
            "m.mp4",
        ])
        .args(extra)
        .args([
            "--config",
            &format!("{ROOT}/fixtures/layouts/seed_side_by_side.json"),
        ])
        .args([
            "--input",
            &format!("Usr1.-1={}", clip("cam1_640x480_15.mp4")),
        ])
        .arg("--storage")
        .arg(&d)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    d.join("m.mp4")
}

#[test]
fn record_offline_keeps_flash_and_click_in_step() {
    let p = record_marks("rec_sync_offline", &[]);
    // flashes at 1, 2 and 3 s
    assert_in_step(&p, 3);
}

#[test]
fn record_realtime_keeps_flash_and_click_in_step() {
    // both tracks are delayed by the latency; what matters is that they are delayed alike.
    // A real-time recording on a box busy with the other tests may be late by more than a
    // frame and skip the one-frame flash (it says so: "late ticks"); up to three tries.
    let mut last = None;
    for n in 0..3 {
        let p = record_marks(
            &format!("rec_sync_realtime_{n}"),
            &["--realtime", "--latency", "300"],
        );
        match std::panic::catch_unwind(|| assert_in_step(&p, 3)) {
            Ok(()) => return,
            Err(e) => last = Some(e),
        }
    }
    std::panic::resume_unwind(last.expect("three tries failed"));
}

// ---- record: signals, warnings, usage errors ----

fn seed() -> String {
    format!("{ROOT}/fixtures/layouts/seed_side_by_side.json")
}

fn events_of(p: &std::path::Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(p)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// The first SIGTERM or SIGINT stops a live recording gracefully: it exits 0 within 3 s with
/// the summary, the events end with STOPPING, the final output info (STOPPED) and NULL, and
/// the file plays with everything recorded until the signal.
#[test]
fn record_stops_gracefully_on_sigterm_and_sigint() {
    use std::time::{Duration, Instant};
    let d = out_dir("rec_signal");
    for (sig, name) in [(libc::SIGTERM, "SIGTERM"), (libc::SIGINT, "SIGINT")] {
        let file = format!("sig{sig}.mp4");
        let events = d.join(format!("sig{sig}.events.jsonl"));
        let _ = std::fs::remove_file(d.join(&file));
        let _ = std::fs::remove_file(&events);
        let mut child = bin()
            .args([
                "record",
                "--realtime",
                "--duration",
                "30",
                "--backend",
                "cpu",
            ])
            .args(["--config", &seed(), "--output", &file])
            .args([
                "--input",
                &format!("Usr1.-1={}", clip("cam1_640x480_15.mp4")),
            ])
            .arg("--events")
            .arg(&events)
            .arg("--storage")
            .arg(&d)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        // wait for RUNNING, then record ~3 s
        let t0 = Instant::now();
        while !events_of(&events)
            .iter()
            .any(|e| e["event"] == "stateChanged" && e["state"] == 2)
        {
            assert!(t0.elapsed() < Duration::from_secs(30), "never RUNNING");
            assert!(child.try_wait().unwrap().is_none(), "exited early");
            std::thread::sleep(Duration::from_millis(50));
        }
        std::thread::sleep(Duration::from_secs(3));
        // SAFETY: kill has no memory preconditions; the pid is our child's
        assert_eq!(unsafe { libc::kill(child.id() as libc::pid_t, sig) }, 0);
        let killed = Instant::now();
        let status = loop {
            if let Some(s) = child.try_wait().unwrap() {
                break s;
            }
            if killed.elapsed() > Duration::from_secs(3) {
                let _ = child.kill();
                panic!("{name}: still running 3 s after the signal");
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let o = child.wait_with_output().unwrap();
        let (out, err) = (
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr),
        );
        assert_eq!(status.code(), Some(0), "{name}: {err}");
        assert!(out.contains("  stopped:  early, on request"), "{out}");
        assert!(err.contains(&format!("stopped by {name}")), "{err}");
        let ev = events_of(&events);
        let n = ev.len();
        assert!(n >= 3, "{ev:?}");
        assert_eq!(ev[n - 1]["event"], "stateChanged", "{ev:?}");
        assert_eq!(ev[n - 1]["state"], 0, "{ev:?}");
        assert_eq!(ev[n - 1]["err"], 0, "{ev:?}");
        assert_eq!(ev[n - 2]["event"], "outputInfoChanged", "{ev:?}");
        assert_eq!(ev[n - 2]["outputInfo"]["state"], 2, "{ev:?}");
        let stopping = ev
            .iter()
            .rposition(|e| e["event"] == "stateChanged" && e["state"] == 4)
            .unwrap_or_else(|| panic!("no STOPPING: {ev:?}"));
        assert!(stopping < n - 2, "{ev:?}");
        // the file plays, with the ~3 s recorded
        let p = d.join(&file);
        let f = Command::new("ffmpeg")
            .args(["-v", "error", "-i"])
            .arg(&p)
            .args(["-f", "null", "-"])
            .output()
            .unwrap();
        assert!(f.status.success(), "{}", String::from_utf8_lossy(&f.stderr));
        let streams = probe_streams(&p);
        let vd = secs(&stream(&streams, "video")["duration"]);
        assert!(vd >= 2.5, "{name}: {vd} s of video");
        assert!(vd < 20.0, "{name}: {vd} s of video");
    }
}

#[test]
fn validate_and_record_print_config_warnings() {
    let d = out_dir("cfg_warnings");
    let cfg = d.join("typo.json");
    std::fs::write(
        &cfg,
        r#"{"mode":0,"videoFileCfg":{"svrPathName":"/w.mp4","vWidth":640,"vHeight":360,"vWidht":640,"vendorThing":1,
            "layoutConfig":[{"type":0,"left":0,"top":0,"width":640,"height":360,"param":{"camid":"Usr1.-1"}}]}}"#,
    )
    .unwrap();
    let o = bin().arg("validate").arg(&cfg).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("warning: ")
            && err.contains("videoFileCfg.vWidht: unknown field (did you mean vWidth?)"),
        "{err}"
    );
    assert!(
        err.contains("videoFileCfg.vendorThing: unknown field\n"),
        "{err}"
    );
    // record says so too, and records
    let o = bin()
        .args([
            "record",
            "--backend",
            "cpu",
            "--duration",
            "0.5",
            "--no-audio",
        ])
        .arg("--config")
        .arg(&cfg)
        .args([
            "--input",
            &format!("Usr1.-1={}", clip("cam1_640x480_15.mp4")),
        ])
        .args(["--overwrite", "--storage"])
        .arg(&d)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("videoFileCfg.vWidht: unknown field (did you mean vWidth?)"),
        "{err}"
    );
    // a duplicate key is an error naming it (exit 2)
    std::fs::write(
        &cfg,
        r#"{"mode":0,"videoFileCfg":{"svrPathName":"/w.mp4","vWidth":640,"vHeight":360,"vHeight":720,"layoutConfig":[]}}"#,
    )
    .unwrap();
    let o = bin().arg("validate").arg(&cfg).output().unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("videoFileCfg.vHeight: duplicate key"));
}

#[test]
fn record_warns_about_an_unused_input_and_refuses_a_camid_twice() {
    let d = out_dir("rec_inputs");
    let cam1 = format!("Usr1.-1={}", clip("cam1_640x480_15.mp4"));
    let o = bin()
        .args([
            "record",
            "--backend",
            "cpu",
            "--duration",
            "0.5",
            "--no-audio",
        ])
        .args(["--config", &seed(), "--input", &cam1])
        .args([
            "--input",
            &format!("Usr7.-1={}", clip("cam7_180x320_30.mp4")),
        ])
        .args(["--output", "unused.mp4", "--overwrite", "--storage"])
        .arg(&d)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("warning: --input Usr7.-1=")
            && err.contains("no layout item (nor any --update) shows camid 'Usr7.-1'"),
        "{err}"
    );
    assert!(!err.contains("camid 'Usr1.-1'"), "{err}");
    // a camid shown only after an update is not warned about
    let upd = d.join("only_usr7.json");
    std::fs::write(
        &upd,
        r#"{"videoFileCfg":{"layoutConfig":[{"type":0,"left":0,"top":0,"width":640,"height":360,"param":{"camid":"Usr7.-1"}}]}}"#,
    )
    .unwrap();
    let o = bin()
        .args([
            "record",
            "--backend",
            "cpu",
            "--duration",
            "0.5",
            "--no-audio",
        ])
        .args(["--config", &seed(), "--input", &cam1])
        .args([
            "--input",
            &format!("Usr7.-1={}", clip("cam7_180x320_30.mp4")),
        ])
        .arg("--update")
        .arg(format!("0.2={}", upd.display()))
        .args(["--output", "unused.mp4", "--overwrite", "--storage"])
        .arg(&d)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(
        !String::from_utf8_lossy(&o.stderr).contains("shows camid"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    // one camid twice
    let o = bin()
        .args(["record", "--config", &seed(), "--input", &cam1])
        .args([
            "--input",
            &format!("Usr1.-1={}", clip("cam4_1280x720_30.mp4")),
        ])
        .arg("--storage")
        .arg(&d)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("--input Usr1.-1: camid 'Usr1.-1' given twice"),
        "{err}"
    );
}

#[test]
fn record_usage_errors_exit_2_with_clear_messages() {
    let d = out_dir("rec_usage");
    let cam1 = format!("Usr1.-1={}", clip("cam1_640x480_15.mp4"));
    let run = |extra: &[&str]| {
        let o = bin()
            .args(["record", "--backend", "cpu", "--no-audio"])
            .args(["--config", &seed(), "--input", &cam1])
            .args(extra)
            .output()
            .unwrap();
        (
            o.status.code(),
            String::from_utf8_lossy(&o.stderr).to_string(),
        )
    };
    let storage = d.to_str().unwrap();
    // --duration
    for (arg, want) in [
        (
            "--duration=inf",
            "--duration inf: must be a finite number of seconds",
        ),
        ("--duration=nan", "--duration NaN: not a number"),
        ("--duration=-3", "--duration -3: must be > 0 seconds"),
        ("--duration=0", "--duration 0: must be > 0 seconds"),
    ] {
        let (code, err) = run(&[arg, "--storage", storage]);
        assert_eq!(code, Some(2), "{arg}: {err}");
        assert!(err.contains(want), "{arg}: {err}");
    }
    // an invalid --update file: usage (2), naming the file and the field
    let upd = d.join("bad_update.json");
    std::fs::write(
        &upd,
        r#"{"videoFileCfg":{"layoutConfig":[{"type":0,"left":0,"top":0,"width":-5,"height":3,"param":{"camid":"x"}}]}}"#,
    )
    .unwrap();
    let u = format!("1={}", upd.display());
    let (code, err) = run(&["--duration", "1", "--update", &u, "--storage", storage]);
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("bad_update.json: videoFileCfg.layoutConfig[0].width: must be > 0, got -5"),
        "{err}"
    );
    std::fs::write(
        &upd,
        r#"{"videoFileCfg":{"layoutConfig":[],"layoutConfig":[]}}"#,
    )
    .unwrap();
    let (code, err) = run(&["--duration", "1", "--update", &u, "--storage", storage]);
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("videoFileCfg.layoutConfig: duplicate key"),
        "{err}"
    );
    // a storage root that is a file is named
    let file = d.join("not_a_folder");
    std::fs::write(&file, b"x").unwrap();
    let (code, err) = run(&["--duration", "1", "--storage", file.to_str().unwrap()]);
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains(&format!(
            "storage root {}: is a file, not a folder",
            file.display()
        )),
        "{err}"
    );
    // ... and so is a file where the recording's folder would be
    std::fs::write(d.join("2021-09-24"), b"x").unwrap();
    let (code, err) = run(&["--duration", "1", "--storage", storage]);
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains(&format!(
            "{}: is a file, not a folder",
            d.join("2021-09-24").display()
        )),
        "{err}"
    );
    assert!(!err.contains("os error"), "{err}");
}

#[test]
fn record_keeps_an_existing_file_unless_overwrite() {
    let d = out_dir("rec_overwrite");
    for f in ["o.mp4", "o_1.mp4", "o_2.mp4"] {
        let _ = std::fs::remove_file(d.join(f));
    }
    let rec = |extra: &[&str]| {
        let o = bin()
            .args([
                "record",
                "--backend",
                "cpu",
                "--duration",
                "0.5",
                "--no-audio",
            ])
            .args(["--config", &seed()])
            .args([
                "--input",
                &format!("Usr1.-1={}", clip("cam1_640x480_15.mp4")),
            ])
            .args(["--output", "o.mp4"])
            .args(extra)
            .arg("--storage")
            .arg(&d)
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        String::from_utf8_lossy(&o.stdout).to_string()
    };
    rec(&[]);
    assert!(d.join("o.mp4").exists());
    let out = rec(&[]);
    assert!(d.join("o_1.mp4").exists(), "{out}");
    // the summary names the file written
    assert!(
        out.contains("recorded ") && out.contains("o_1.mp4"),
        "{out}"
    );
    let out = rec(&["--overwrite"]);
    assert!(
        out.lines().next().unwrap_or("").ends_with("/o.mp4"),
        "{out}"
    );
    assert!(!d.join("o_2.mp4").exists(), "{out}");
    // documented in --help, with the exit statuses
    let o = bin().args(["record", "--help"]).output().unwrap();
    let help = String::from_utf8_lossy(&o.stdout);
    assert!(help.contains("--overwrite"), "{help}");
    assert!(help.contains("Exit status: 0 recorded"), "{help}");
    assert!(help.contains("SIGTERM"), "{help}");
}

/// A second signal while stopping exits at once with 128+signal; the fragmented mp4 written
/// until then still plays.
#[test]
fn record_second_signal_exits_at_once_and_the_file_plays() {
    use std::time::{Duration, Instant};
    let d = out_dir("rec_signal_twice");
    let _ = std::fs::remove_file(d.join("twice.mp4"));
    let events = d.join("twice.events.jsonl");
    let _ = std::fs::remove_file(&events);
    let mut child = bin()
        .args([
            "record",
            "--realtime",
            "--duration",
            "30",
            "--backend",
            "cpu",
        ])
        .args(["--config", &seed(), "--output", "twice.mp4"])
        .args([
            "--input",
            &format!("Usr1.-1={}", clip("cam1_640x480_15.mp4")),
        ])
        .arg("--events")
        .arg(&events)
        .arg("--storage")
        .arg(&d)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // wait until a fragment with video is on disk (an output info with a duration)
    let t0 = Instant::now();
    while !events_of(&events)
        .iter()
        .any(|e| e["outputInfo"]["duration"].as_u64().unwrap_or(0) >= 1000)
    {
        assert!(t0.elapsed() < Duration::from_secs(30), "never recorded 1 s");
        std::thread::sleep(Duration::from_millis(50));
    }
    let pid = child.id() as libc::pid_t;
    // SAFETY: kill has no memory preconditions; the pid is our child's
    assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
    std::thread::sleep(Duration::from_millis(20));
    assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(128 + libc::SIGTERM));
    let p = d.join("twice.mp4");
    let f = Command::new("ffmpeg")
        .args(["-v", "error", "-i"])
        .arg(&p)
        .args(["-f", "null", "-"])
        .output()
        .unwrap();
    assert!(f.status.success(), "{}", String::from_utf8_lossy(&f.stderr));
    assert!(secs(&stream(&probe_streams(&p), "video")["duration"]) >= 0.9);
}

/// The storage directory deleted 2.5 s into a real-time recording: the recording fails with
/// 905 naming what happened, `record` exits 1, and the summary never says "recorded".
#[test]
fn record_reports_a_deleted_storage_directory() {
    let d = out_dir("rec_deleted");
    let store = d.join("store");
    let events = d.join("events.jsonl");
    let child = bin()
        .args([
            "record",
            "--realtime",
            "--duration",
            "8",
            "--backend",
            "cpu",
        ])
        .args(["--config", &seed()])
        .args([
            "--input",
            &format!("Usr1.-1={}", clip("cam1_640x480_15.mp4")),
        ])
        .arg("--storage")
        .arg(&store)
        .arg("--events")
        .arg(&events)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(2500));
    std::fs::remove_dir_all(&store).unwrap();
    let o = child.wait_with_output().unwrap();
    let (out, err) = (
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr),
    );
    assert_eq!(o.status.code(), Some(1), "stdout: {out}\nstderr: {err}");
    assert!(!out.contains("recorded"), "{out}");
    assert!(err.contains("905") || err.contains("deleted"), "{err}");
    let evs = events_of(&events);
    let last_info = evs
        .iter()
        .rev()
        .find(|e| e["event"] == "outputInfoChanged")
        .expect("an output info");
    assert_eq!(last_info["outputInfo"]["state"], 3, "{last_info}");
    assert_eq!(last_info["outputInfo"]["errCode"], 905, "{last_info}");
    assert!(
        last_info["outputInfo"]["errDesc"]
            .as_str()
            .unwrap_or("")
            .contains("deleted while recording"),
        "{last_info}"
    );
}

/// The GPU probe on a headless host (no XDG_RUNTIME_DIR) writes nothing to stderr: the
/// drivers' messages go to `tracing`. `record` prints only its progress lines there.
#[test]
fn the_gpu_probe_writes_nothing_to_stderr() {
    let d = out_dir("gpu_probe_quiet");
    let root = ROOT;
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_cloudmixer"))
        .args(["record", "--config"])
        .arg(format!("{root}/fixtures/layouts/seed_side_by_side.json"))
        .arg("--input")
        .arg(format!("Usr1.-1={root}/fixtures/clips/cam1_640x480_15.mp4"))
        .arg("--storage")
        .arg(&d)
        .args(["--duration", "1", "--backend", "auto"])
        .env_remove("XDG_RUNTIME_DIR")
        .output()
        .unwrap();
    assert!(out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.lines().all(|l| l.starts_with("progress:")),
        "stderr: {err}"
    );
}
