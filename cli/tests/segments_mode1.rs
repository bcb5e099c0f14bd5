//! Faults a user saw with `cloudmixer record` / `validate` (default settings): audio of size
//! based segments, mode 1 with long nicknames, mode 1 segments, the mode 1 summary, and configs
//! that were accepted and then ignored or failed at run time.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::{json, Value};

// the repository root (fixtures/, scripts/): this crate is cli/
const ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
const BIN: &str = env!("CARGO_BIN_EXE_cloudmixer");
/// One AAC frame at 48 kHz, in seconds.
const AAC_FRAME: f64 = 1024.0 / 48_000.0;

fn dir(name: &str) -> PathBuf {
    let d = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("segments_mode1")
        .join(name);
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn clip(name: &str) -> String {
    format!("{ROOT}/fixtures/clips/{name}")
}

/// `cloudmixer record --config <cfg> --storage <d>/out --duration <secs> <args…>`.
fn record(d: &Path, cfg: &Value, secs: u32, args: &[String]) -> Output {
    let path = d.join("cfg.json");
    std::fs::write(&path, cfg.to_string()).unwrap();
    Command::new(BIN)
        .args(["record", "--config"])
        .arg(&path)
        .arg("--storage")
        .arg(d.join("out"))
        .args(["--duration", &secs.to_string()])
        .args(args)
        .output()
        .unwrap()
}

fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "record failed ({:?}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `cloudmixer validate <cfg>`: (exit code, stderr).
fn validate(d: &Path, cfg: &Value) -> (i32, String) {
    let path = d.join("cfg.json");
    std::fs::write(&path, cfg.to_string()).unwrap();
    let out = Command::new(BIN)
        .arg("validate")
        .arg(&path)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A file's packets: (is video, pts in seconds, duration in seconds), in file order.
fn packets(p: &Path) -> Vec<(bool, f64, f64)> {
    let out = Command::new("ffprobe")
        .args(["-v", "error", "-show_entries"])
        .args(["packet=codec_type,pts_time,duration_time", "-of", "csv=p=0"])
        .arg(p)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}: {}",
        p.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            let num = |i: usize| f.get(i).and_then(|s| s.parse::<f64>().ok());
            Some((f.first()? == &"video", num(1)?, num(2).unwrap_or(0.0)))
        })
        .collect()
}

/// Per track of a file: (first pts, end of the last packet, packets).
#[derive(Debug, Clone, Copy)]
struct Span {
    first: f64,
    end: f64,
    n: usize,
}

fn spans(p: &Path) -> (Span, Span) {
    let pk = packets(p);
    let span = |video: bool| {
        let mine: Vec<_> = pk.iter().filter(|x| x.0 == video).collect();
        Span {
            first: mine.iter().map(|x| x.1).fold(f64::INFINITY, f64::min),
            end: mine
                .iter()
                .map(|x| x.1 + x.2)
                .fold(f64::NEG_INFINITY, f64::max),
            n: mine.len(),
        }
    };
    (span(true), span(false))
}

/// The files of a folder whose names end with `suffix`, sorted.
fn files_ending(d: &Path, suffix: &str) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(d)
        .unwrap_or_else(|e| panic!("{}: {e}", d.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.file_name().unwrap().to_string_lossy().ends_with(suffix))
        .collect();
    v.sort();
    v
}

/// cam1 (15 fps, with a tone) composed into 640x480 for `secs` seconds; `extra` goes into
/// `videoFileCfg`.
fn mode0(svr: &str, extra: Value) -> Value {
    let mut vfc = json!({"svrPathName": svr, "vWidth": 640, "vHeight": 480, "vFps": 15,
        "layoutConfig": [{"type": 0, "left": 0, "top": 0, "width": 640, "height": 480,
            "param": {"camid": "u1.0"}}]});
    for (k, v) in extra.as_object().unwrap() {
        vfc[k] = v.clone();
    }
    json!({"mode": 0, "videoFileCfg": vfc})
}

/// Size-based segments: every segment's audio starts with its video (within one AAC frame)
/// and ends where the video ends (the next segment's audio is not in it), and the segments
/// hold every audio packet of the unsegmented recording once.
#[test]
fn size_segments_keep_each_segments_audio_with_its_own_video() {
    let input = vec![
        "--input".to_string(),
        format!("u1.0={}", clip("cam1_640x480_15.mp4")),
    ];
    let whole = dir("size_whole");
    ok(&record(&whole, &mode0("rec.mp4", json!({})), 10, &input));
    let (wv, wa) = spans(&whole.join("out/rec.mp4"));
    assert_eq!(wv.n, 150);

    let d = dir("size");
    ok(&record(
        &d,
        &mode0("seg/rec.mp4", json!({"segmentSize": 65_536})),
        10,
        &input,
    ));
    let segs = files_ending(&d.join("out/seg"), ".mp4");
    assert!(segs.len() >= 3, "segments: {segs:?}");
    let (mut frames, mut audio) = (0, 0);
    for (i, s) in segs.iter().enumerate() {
        let (v, a) = spans(s);
        frames += v.n;
        audio += a.n;
        let name = s.file_name().unwrap().to_string_lossy().into_owned();
        assert!(
            (a.first - v.first).abs() <= AAC_FRAME + 0.002,
            "{name}: audio starts at {:.3} s, video at {:.3} s",
            a.first,
            v.first
        );
        if i + 1 < segs.len() {
            assert!(
                (a.end - v.end).abs() <= AAC_FRAME + 0.002,
                "{name}: audio ends at {:.3} s, video at {:.3} s ({} audio packets for {} frames)",
                a.end,
                v.end,
                a.n,
                v.n
            );
        }
    }
    assert_eq!(frames, wv.n, "video frames: segments vs one file");
    assert_eq!(audio, wa.n, "audio packets: segments vs one file");
}

/// Mode 1 config: cameras into `/room` (`extra` into `videoFileCfg`), room 888.
fn mode1(nicknames: Value, extra: Value) -> Value {
    let mut vfc = json!({"svrPath": "/room", "svrFileNameSuffix": ".mp4",
        "subscribeVideos": ["_cr_all_"]});
    for (k, v) in extra.as_object().unwrap() {
        vfc[k] = v.clone();
    }
    json!({"mode": 1, "roomId": "888", "nicknames": nicknames, "videoFileCfg": vfc,
        "audioFileCfg": {"svrPath": "/room", "svrFileNameSuffix": ".mp3",
            "subscribeAudios": ["_cr_all_"]}})
}

fn inputs(cams: &[(&str, &str)]) -> Vec<String> {
    cams.iter()
        .flat_map(|(c, f)| ["--input".to_string(), format!("{c}={}", clip(f))])
        .collect()
}

/// A 280-byte nickname (two long ones differing only at their end) next to a normal user:
/// every stream is recorded, every name fits the file system (≤ 255 bytes), the long names
/// keep the rule's suffix (`_cam0_888_<start>.mp4`, `_888_<start>.mp3`) and stay apart.
#[test]
fn long_nicknames_are_shortened_and_every_stream_is_recorded() {
    let d = dir("long_nick");
    // 2-byte characters: the cut must fall between characters
    let long1 = format!("{}1", "é".repeat(139)) + "x";
    let long2 = format!("{}2", "é".repeat(139)) + "x";
    assert_eq!(long1.len(), 280);
    let cfg = mode1(json!({"u1": long1, "u2": long2, "u3": "Bob"}), json!({}));
    let out = record(
        &d,
        &cfg,
        2,
        &inputs(&[
            ("u1.0", "cam9_320x240_15.mp4"),
            ("u2.0", "cam9_320x240_15.mp4"),
            ("u3.0", "cam8_480x270_30.mp4"),
        ]),
    );
    ok(&out);
    let room = d.join("out/room");
    let mp4 = files_ending(&room, ".mp4");
    let mp3 = files_ending(&room, ".mp3");
    let names: Vec<String> = mp4
        .iter()
        .chain(&mp3)
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!((mp4.len(), mp3.len()), (3, 3), "{names:?}");
    for n in &names {
        assert!(n.len() <= 255, "{} bytes: {n}", n.len());
    }
    let stamp_re = |n: &str, tail: &str| {
        // …_<YYYY-MM-DD_HH-MM-SS><tail>
        n.len() > 19 + tail.len() && n.ends_with(tail)
    };
    let bob: Vec<&String> = names.iter().filter(|n| n.starts_with("Bob_")).collect();
    assert_eq!(bob.len(), 2, "{names:?}");
    assert!(
        bob.iter().any(|n| n.starts_with("Bob_cam0_888_")),
        "{names:?}"
    );
    let longs: Vec<&String> = names.iter().filter(|n| n.starts_with("éé")).collect();
    assert_eq!(longs.len(), 4, "{names:?}");
    for n in &longs {
        let video = n.ends_with(".mp4");
        let part = if video { "_cam0_888_" } else { "_888_" };
        assert!(n.contains(part), "{n}");
        assert!(stamp_re(n, if video { ".mp4" } else { ".mp3" }), "{n}");
        // shortened (the whole nickname does not fit) and told apart by a hash
        assert!(!n.contains(&long1) && !n.contains(&long2), "{n}");
    }
    let mut unique = longs.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), 4, "{longs:?}");
    // each long video name differs from the other by more than the free-name rule's `_1`
    let v: Vec<&&String> = longs.iter().filter(|n| n.ends_with(".mp4")).collect();
    assert!(
        !v[0].ends_with("_1.mp4") && !v[1].ends_with("_1.mp4"),
        "{v:?}"
    );
    for f in &mp4 {
        let (vs, a) = spans(f);
        assert!(vs.n >= 30 && a.n > 50, "{}: {vs:?} {a:?}", f.display());
    }
}

/// Mode 1 with `segmentDuration` 2: each camera's file is split like a mode 0 file, named
/// `<vendor name>_0001.mp4`…, 2 s of video each with its audio.
#[test]
fn mode1_segments_split_each_cameras_file() {
    let d = dir("mode1_segments");
    let cfg = mode1(json!({"u1": "Ann"}), json!({"segmentDuration": 2}));
    let out = record(&d, &cfg, 6, &inputs(&[("u1.0", "cam1_640x480_15.mp4")]));
    ok(&out);
    let room = d.join("out/room");
    let segs = files_ending(&room, ".mp4");
    let names: Vec<String> = segs
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names.len(), 3, "{names:?}");
    for (i, n) in names.iter().enumerate() {
        assert!(n.starts_with("Ann_cam0_888_"), "{n}");
        assert!(n.ends_with(&format!("_{:04}.mp4", i + 1)), "{names:?}");
    }
    let mut audio = 0;
    for s in &segs {
        let (v, a) = spans(s);
        assert_eq!(v.n, 30, "{}: 2 s at 15 fps", s.display());
        assert!(
            (a.first - v.first).abs() <= AAC_FRAME + 0.002,
            "{a:?} {v:?}"
        );
        audio += a.n;
    }
    // the audio adds up to one unsegmented file's
    let whole = dir("mode1_whole");
    ok(&record(
        &whole,
        &mode1(json!({"u1": "Ann"}), json!({})),
        6,
        &inputs(&[("u1.0", "cam1_640x480_15.mp4")]),
    ));
    let one = files_ending(&whole.join("out/room"), ".mp4");
    assert_eq!(one.len(), 1, "{one:?}");
    assert_eq!(audio, spans(&one[0]).1.n);
}

/// The mode 1 summary lists every file under its own output id.
#[test]
fn mode1_summary_gives_every_output_its_own_id() {
    let d = dir("mode1_summary");
    let cfg = mode1(json!({"u1": "Ann"}), json!({}));
    let out = record(
        &d,
        &cfg,
        2,
        &inputs(&[
            ("u1.0", "cam9_320x240_15.mp4"),
            ("u2.0", "cam8_480x270_30.mp4"),
        ]),
    );
    let stdout = ok(&out);
    let lines: Vec<&str> = stdout
        .lines()
        .map(str::trim)
        .filter(|l| l.starts_with("output "))
        .collect();
    // two videos and two mp3s
    assert_eq!(lines.len(), 4, "{stdout}");
    for (i, l) in lines.iter().enumerate() {
        assert!(l.starts_with(&format!("output {i}: ")), "{stdout}");
    }
    let mut names: Vec<&str> = lines
        .iter()
        .map(|l| l.split(": ").nth(1).unwrap_or(""))
        .collect();
    names.sort();
    names.dedup();
    assert_eq!(names.len(), 4, "{stdout}");
}

/// Keys of the other mode are refused (exit 2) with an error naming the key and the mode.
#[test]
fn keys_of_the_other_mode_are_refused_by_validate() {
    let d = dir("other_mode");
    let mut m0_cases = Vec::new();
    for (k, v) in [
        ("svrPath", json!("/rec")),
        ("subscribeVideos", json!(["_cr_all_"])),
        ("svrFileNameSuffix", json!(".mp4")),
        ("aStreamType", json!(1)),
    ] {
        m0_cases.push((mode0("a.mp4", json!({ k: v })), format!("videoFileCfg.{k}")));
    }
    for (k, v) in [
        ("roomId", json!("888")),
        ("nicknames", json!({"u1": "Ann"})),
    ] {
        let mut c = mode0("a.mp4", json!({}));
        c[k] = v;
        m0_cases.push((c, k.to_string()));
    }
    for (cfg, key) in m0_cases {
        let (code, err) = validate(&d, &cfg);
        assert_eq!(code, 2, "{key}: {err}");
        assert!(err.contains(&key) && err.contains("mode 1"), "{key}: {err}");
    }
    for (k, v) in [
        ("vWidth", json!(640)),
        ("aChannelContent", json!(["u1"])),
        ("backgroundColor", json!("#000000")),
    ] {
        let cfg = mode1(json!({}), json!({ k: v }));
        let key = format!("videoFileCfg.{k}");
        let (code, err) = validate(&d, &cfg);
        assert_eq!(code, 2, "{key}: {err}");
        assert!(err.contains(&key) && err.contains("mode 0"), "{key}: {err}");
    }
    let mut cfg = mode1(json!({}), json!({}));
    cfg["audioFileCfg"]["aChannelType"] = json!(1);
    let (code, err) = validate(&d, &cfg);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("audioFileCfg.aChannelType") && err.contains("mode 0"),
        "{err}"
    );
}

/// HLS names that FFmpeg would read as patterns, or whose side files another target of the
/// same `svrPathName` names, are refused by validate, naming svrPathName.
#[test]
fn hls_names_that_cannot_work_are_refused_by_validate() {
    let d = dir("hls_names");
    for svr in [
        "/live/a%d.m3u8",
        "/live/%s.m3u8",
        "/live/a.m3u8;/live/a_init.mp4",
        "/live/a_init.mp4;/live/a.m3u8",
        "live/a.m3u8;/live/a_init.mp4",
    ] {
        let (code, err) = validate(&d, &mode0(svr, json!({})));
        assert_eq!(code, 2, "{svr}: {err}");
        assert!(err.contains("videoFileCfg.svrPathName"), "{svr}: {err}");
    }
    // still fine: a plain playlist next to an mp4 of another stem
    let (code, err) = validate(&d, &mode0("/live/a.m3u8;/live/b_init.mp4", json!({})));
    assert_eq!(code, 0, "{err}");
}

/// The live path (a server feeding a `StreamRecorder`): a camera whose user has a 280-byte
/// nickname gets its file like the camera next to it; no stream fails, no error is reported.
#[test]
fn stream_recorder_records_a_long_nickname_next_to_a_normal_one() {
    use cloudmixer::model::config::MixerConfig;
    use cloudmixer::model::events::MixerEvent;
    use cloudmixer::model::frame::VideoFrame;
    use cloudmixer::output::Storage;
    use cloudmixer::pipeline::{MixerSettings, StreamRecorder};
    use std::time::{Duration, Instant};

    let d = dir("live_long_nick");
    let cfg = json!({"mode": 1, "roomId": 7, "nicknames": {"u1": "n".repeat(280)},
        "videoFileCfg": {"svrPath": "", "svrFileNameSuffix": ".mp4",
            "subscribeVideos": ["_cr_all_"], "vFps": 15}});
    let cfg = MixerConfig::from_json(&cfg.to_string()).unwrap();
    let mut rec = StreamRecorder::create(cfg, Storage::new(&d), MixerSettings::default()).unwrap();
    let events = rec.events();
    let t0 = Instant::now();
    let mut n = 0u32;
    while t0.elapsed() < Duration::from_millis(1500) {
        for cam in ["u1.0", "u2.0"] {
            let f = VideoFrame::solid_i420(160, 120, [120, 128, 128]).unwrap();
            rec.push_video(cam, f)
                .unwrap_or_else(|e| panic!("{cam}: {e}"));
        }
        n += 1;
        std::thread::sleep(Duration::from_millis(66));
    }
    assert!(n > 10);
    assert_eq!(rec.streams(), 2);
    rec.destroy().unwrap();
    let errors: Vec<MixerEvent> = events
        .try_iter()
        .filter(|e| matches!(e, MixerEvent::Error { .. }))
        .collect();
    assert!(errors.is_empty(), "{errors:?}");
    let files = files_ending(&d, ".mp4");
    assert_eq!(files.len(), 2, "{files:?}");
    for f in &files {
        let name = f.file_name().unwrap().to_string_lossy().into_owned();
        assert!(name.len() <= 255, "{} bytes: {name}", name.len());
        assert!(
            name.starts_with("nnnn") || name.starts_with("u2_cam0_7_"),
            "{name}"
        );
        assert!(spans(f).0.n >= 10, "{name}");
    }
}

/// A stream whose file cannot be written (its folder is a file) does not end the recording:
/// the streams after it are recorded, then `record` fails (exit 1) naming the stream.
#[test]
fn a_failing_stream_does_not_end_the_others() {
    let d = dir("failing_stream");
    std::fs::create_dir_all(d.join("out")).unwrap();
    // the cameras' folder cannot be made: their files fail, the mp3s do not
    std::fs::write(d.join("out/v"), b"not a folder").unwrap();
    let cfg = json!({"mode": 1, "roomId": "888",
        "videoFileCfg": {"svrPath": "/v", "svrFileNameSuffix": ".mp4",
            "subscribeVideos": ["_cr_all_"]},
        "audioFileCfg": {"svrPath": "/a", "svrFileNameSuffix": ".mp3",
            "subscribeAudios": ["_cr_all_"]}});
    let out = record(
        &d,
        &cfg,
        2,
        &inputs(&[
            ("u1.0", "cam9_320x240_15.mp4"),
            ("u2.0", "cam8_480x270_30.mp4"),
        ]),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("stream u1.0") && stderr.contains("2 of 4 streams recorded"),
        "{stderr}"
    );
    let mp3 = files_ending(&d.join("out/a"), ".mp3");
    assert_eq!(mp3.len(), 2, "{mp3:?}");
    for f in &mp3 {
        assert!(spans(f).1.n > 50, "{}", f.display());
    }
}
