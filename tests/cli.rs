//! The `cloudmixer` binary: validate and snapshot.
use std::process::Command;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_cloudmixer"))
}

fn out_dir(name: &str) -> std::path::PathBuf {
    let d = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
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

/// Onsets (s) of the clicks: the first sample of each run above 0.6 (the tone is at 0.2).
fn click_times(x: &[f32]) -> Vec<f64> {
    let mut out = Vec::new();
    let mut last = f64::NEG_INFINITY;
    for (i, v) in x.iter().enumerate() {
        let t = i as f64 / 48_000.0;
        if v.abs() > 0.6 && t - last > 0.5 {
            out.push(t);
            last = t;
        } else if v.abs() > 0.6 {
            last = t;
        }
    }
    out
}

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
    // both tracks are delayed by the latency; what matters is that they are delayed alike
    let p = record_marks("rec_sync_realtime", &["--realtime", "--latency", "300"]);
    assert_in_step(&p, 3);
}
