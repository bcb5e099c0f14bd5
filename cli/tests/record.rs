//! End-to-end recording: mixer API and `cloudmixer record`, decoded back and checked.
//! CPU backend, x264 ultrafast, small canvases where the check allows.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use cloudmixer::compose::Backend;
use cloudmixer::media::video_enc::EncoderSettings;
use cloudmixer::model::config::MixerConfig;
use cloudmixer::model::events::{codes, MixerEvent, MixerState, OutputInfo, OutputState};
use cloudmixer::model::frame::VideoFrame;
use cloudmixer::model::time::{tick_time, PaceMode};
use cloudmixer::output::Storage;
use cloudmixer::pipeline::{Mixer, MixerError, MixerSettings};
use cloudmixer::testkit::PALETTE;
use serde_json::{json, Value};

// the repository root (fixtures/, scripts/): this crate is cli/
const ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
const BIN: &str = env!("CARGO_BIN_EXE_cloudmixer");
const BLACK: [u8; 3] = [16, 128, 128];

fn dir(name: &str) -> PathBuf {
    let d = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("record")
        .join(name);
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn settings(mode: PaceMode) -> MixerSettings {
    MixerSettings {
        backend: Backend::Cpu,
        encoder: EncoderSettings {
            encoder: Some("libx264".into()),
            preset: "ultrafast".into(),
            threads: 2,
        },
        mode,
        ..Default::default()
    }
}

fn seed(svr: &str) -> Value {
    let mut v: Value = serde_json::from_str(
        &std::fs::read_to_string(format!("{ROOT}/fixtures/layouts/seed_side_by_side.json"))
            .unwrap(),
    )
    .unwrap();
    v["videoFileCfg"]["svrPathName"] = svr.into();
    v
}

/// A solid frame tagged BT.709 (the output's space): its colour comes out as it went in.
fn solid(w: u32, h: u32, c: [u8; 3]) -> VideoFrame {
    VideoFrame::solid_i420(w, h, c)
        .unwrap()
        .with_color(cloudmixer::model::color::ColorSpace::BT709_LIMITED)
}

/// (Y, U, V) at luma (x, y) of a decoded frame.
fn yuv(f: &VideoFrame, x: usize, y: usize) -> [u8; 3] {
    let p = f.planes();
    match f.format() {
        cloudmixer::model::frame::PixelFormat::I420 => [
            p[0].data[y * p[0].stride + x],
            p[1].data[(y / 2) * p[1].stride + x / 2],
            p[2].data[(y / 2) * p[2].stride + x / 2],
        ],
        other => panic!("decoded {other:?}"),
    }
}

fn close(a: [u8; 3], b: [u8; 3], tol: i32) -> bool {
    a.iter()
        .zip(&b)
        .all(|(x, y)| (*x as i32 - *y as i32).abs() <= tol)
}

/// Decodes every frame; returns how many decoded and the first error, if any.
fn each_frame(path: &Path, f: impl FnMut(usize, &VideoFrame)) -> (usize, Option<String>) {
    cloudmixer::testkit::each_frame(path, f)
}

fn ffprobe(path: &Path, entries: &str) -> String {
    let o = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-select_streams",
            "v:0",
            "-show_entries",
            entries,
            "-of",
            "default=nw=1",
        ])
        .arg(path)
        .output()
        .expect("ffprobe is installed");
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn events(m: &Mixer) -> Vec<MixerEvent> {
    m.events().try_iter().collect()
}

#[test]
fn ten_seconds_side_by_side_with_pip_update_at_5s() {
    let d = dir("seed");
    let cfg = MixerConfig::from_value(seed("/2021-09-24/rec.mp4")).unwrap();
    let mut m = Mixer::create_with(cfg, Storage::new(&d), settings(PaceMode::Offline)).unwrap();
    let (a, b) = (PALETTE[0], PALETTE[1]);
    // a 5 fps camera pair (sources silent for 2 s would be drawn as missing)
    let (fa, fb) = (solid(640, 480, a), solid(1280, 720, b));
    let feed = |m: &Mixer, until: Duration| {
        let mut t = tick_time(5, m.ticks().div_ceil(3));
        while t < until {
            m.push_video("Usr1.-1", fa.clone()).unwrap();
            m.push_video("Usr2.-1", fb.clone()).unwrap();
            t += Duration::from_millis(200);
            m.advance_to(t.min(until)).unwrap();
        }
    };
    feed(&m, Duration::from_secs(5));
    assert_eq!(m.ticks(), 75);
    let pip =
        std::fs::read_to_string(format!("{ROOT}/fixtures/layouts/seed_pip_update.json")).unwrap();
    m.update_content(pip.as_str()).unwrap();
    feed(&m, Duration::from_secs(10));
    m.destroy().unwrap();
    assert_eq!(m.ticks(), 150);

    let file = d.join("2021-09-24/rec.mp4");
    let probe = ffprobe(
        &file,
        "stream=width,height,r_frame_rate,avg_frame_rate,color_space,color_range",
    );
    for want in [
        "width=1280",
        "height=720",
        "r_frame_rate=15/1",
        "avg_frame_rate=15/1",
        "color_space=bt709",
        "color_range=tv",
    ] {
        assert!(probe.contains(want), "{want} not in {probe}");
    }

    // seed: Usr1 (4:3) pillarboxed in the left cell, Usr2 exact in the right; black margins
    let seed_probes = [
        ((40, 360), BLACK),
        ((600, 360), BLACK),
        ((320, 360), a),
        ((90, 190), a),
        ((960, 360), b),
        ((1270, 530), b),
        ((640, 90), BLACK),
        ((640, 630), BLACK),
    ];
    // pip: Usr1 960x720 at x=160 over the whole canvas, Usr2 400x225 at (880,495) on top
    let pip_probes = [
        ((80, 360), BLACK),
        ((1200, 200), BLACK),
        ((500, 300), a),
        ((870, 600), a),
        ((1080, 607), b),
        ((1270, 715), b),
    ];
    let mut last_pts = None;
    let mut bad = Vec::new();
    let (n, err) = each_frame(&file, |i, f| {
        assert_eq!((f.width(), f.height()), (1280, 720));
        // CFR: pts = i / 15 exactly (to the container's rounding), strictly increasing
        let want = Duration::from_nanos(i as u64 * 1_000_000_000 / 15);
        assert!(
            f.pts.abs_diff(want) < Duration::from_millis(1),
            "frame {i} pts {:?}",
            f.pts
        );
        assert!(
            last_pts.is_none_or(|p| f.pts > p),
            "pts not increasing at {i}"
        );
        last_pts = Some(f.pts);
        let probes: &[((usize, usize), [u8; 3])] = if i < 75 { &seed_probes } else { &pip_probes };
        for &((x, y), want) in probes {
            let got = yuv(f, x, y);
            if !close(got, want, 3) {
                bad.push(format!("frame {i} ({x},{y}): got {got:?} want {want:?}"));
            }
        }
    });
    assert_eq!(err, None);
    assert_eq!(n, 150);
    assert!(
        bad.is_empty(),
        "{} mismatches, first: {:?}",
        bad.len(),
        &bad[..bad.len().min(5)]
    );
}

#[test]
fn event_sequence_and_output_info_fields() {
    let d = dir("events");
    let mut v = json!({"mode":0,"videoFileCfg":{"svrPathName":"/ev/rec.mp4","vWidth":64,"vHeight":48,"vFps":10,
        "layoutConfig":[{"type":0,"left":0,"top":0,"width":64,"height":48,"param":{"camid":"a"}}]}});
    v["videoFileCfg"]["vQP"] = 23.into();
    let cfg = MixerConfig::from_value(v).unwrap();
    let before = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    let mut m = Mixer::create_with(cfg, Storage::new(&d), settings(PaceMode::Realtime)).unwrap();
    let after = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    assert_eq!(m.state(), MixerState::Running);
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_millis(2300) {
        m.push_video("a", solid(32, 24, PALETTE[2])).unwrap();
        std::thread::sleep(Duration::from_millis(50));
    }
    m.destroy().unwrap();
    assert_eq!(m.state(), MixerState::Null);
    let evs = events(&m);
    let file = d.join("ev/rec.mp4");
    let size = std::fs::metadata(&file).unwrap().len();
    let frames = m.ticks();
    assert!(
        (20..=26).contains(&frames),
        "{frames} frames in 2.3 s at 10 fps"
    );

    let state = |e: &MixerEvent| match e {
        MixerEvent::StateChanged { state, .. } => Some(*state),
        _ => None,
    };
    let infos: Vec<&OutputInfo> = evs
        .iter()
        .filter_map(|e| match e {
            MixerEvent::OutputInfoChanged(i) => Some(i),
            _ => None,
        })
        .collect();
    // STARTING, info(RUNNING), RUNNING(encoder, backend), info… , STOPPING, info(STOPPED), NULL
    assert_eq!(state(&evs[0]), Some(MixerState::Starting));
    assert!(
        matches!(&evs[1], MixerEvent::OutputInfoChanged(i) if i.state == OutputState::Running && i.duration == 0)
    );
    match &evs[2] {
        MixerEvent::StateChanged {
            state: MixerState::Running,
            err: 0,
            encoder: Some(e),
            backend: Some(b),
            ..
        } => {
            assert_eq!(e, "libx264");
            assert!(b.starts_with("cpu"), "{b}");
        }
        other => panic!("expected RUNNING, got {other:?}"),
    }
    let n = evs.len();
    assert_eq!(state(&evs[n - 3]), Some(MixerState::Stopping), "{evs:#?}");
    assert!(matches!(&evs[n - 2], MixerEvent::OutputInfoChanged(_)));
    assert_eq!(
        evs[n - 1],
        MixerEvent::StateChanged {
            state: MixerState::Null,
            err: 0,
            err_desc: String::new(),
            encoder: None,
            backend: None
        }
    );
    assert!(!evs.iter().any(|e| matches!(e, MixerEvent::Error { .. })));
    // at least once a second while running: 2.3 s → at least 2 periodic infos
    let running: Vec<_> = infos
        .iter()
        .filter(|i| i.state == OutputState::Running)
        .collect();
    assert!(running.len() >= 3, "{running:#?}");
    for w in running.windows(2) {
        assert!(w[1].duration >= w[0].duration && w[1].file_size >= w[0].file_size);
    }
    assert!(running.last().unwrap().duration > 0 && running.last().unwrap().file_size > 0);
    for i in &infos {
        assert_eq!(i.id, 0);
        assert_eq!(i.svr_file_path_name, "/ev/rec.mp4");
        assert!(
            i.start_time >= before && i.start_time <= after,
            "{} not in {before}..{after}",
            i.start_time
        );
        assert_eq!(i.err_code, 0);
        assert_eq!(i.err_desc, "");
    }
    let last = infos.last().unwrap();
    assert_eq!(last.state, OutputState::Stopped);
    assert_eq!(last.duration, frames * 1000 / 10);
    assert_eq!(last.file_size, size);
    // wire names
    let j = MixerEvent::OutputInfoChanged((*last).clone()).to_json();
    for k in [
        "id",
        "state",
        "svrFilePathName",
        "startTime",
        "duration",
        "fileSize",
        "errCode",
        "errDesc",
    ] {
        assert!(j["outputInfo"].get(k).is_some(), "{k} missing in {j}");
    }
    assert_eq!(j["outputInfo"]["state"], 2);
    // pushes after the end are refused, destroy is idempotent
    assert!(m.push_video("a", solid(2, 2, BLACK)).is_err());
    m.destroy().unwrap();
    let (decoded, err) = each_frame(&file, |_, _| {});
    assert_eq!((decoded as u64, err), (frames, None));
}

/// Six layouts: the three sources in the three 64x64 cells of a 192x64 canvas, each
/// permutation once, so a frame's cell colours identify exactly one layout.
fn perm_layouts() -> Vec<[usize; 3]> {
    vec![
        [0, 1, 2],
        [0, 2, 1],
        [1, 0, 2],
        [1, 2, 0],
        [2, 0, 1],
        [2, 1, 0],
    ]
}

fn perm_update(p: [usize; 3]) -> Value {
    let items: Vec<Value> = (0..3)
        .map(|cell| {
            json!({"type":0,"left":cell*64,"top":0,"width":64,"height":64,"keepAspectRatio":1,
            "param":{"camid":format!("s{}", p[cell])}})
        })
        .collect();
    json!({"videoFileCfg":{"layoutConfig":items}})
}

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

#[test]
fn concurrent_random_updates_never_tear_a_frame() {
    let d = dir("updates");
    let mut create = perm_update([0, 1, 2]);
    create["mode"] = 0.into();
    create["videoFileCfg"]["svrPathName"] = "u.mp4".into();
    create["videoFileCfg"]["vWidth"] = 192.into();
    create["videoFileCfg"]["vHeight"] = 64.into();
    create["videoFileCfg"]["vFps"] = 30.into();
    let cfg = MixerConfig::from_value(create).unwrap();
    let m =
        Arc::new(Mixer::create_with(cfg, Storage::new(&d), settings(PaceMode::Offline)).unwrap());
    let colours = [PALETTE[0], PALETTE[1], PALETTE[2]];
    let sources: Vec<VideoFrame> = colours.iter().map(|c| solid(64, 64, *c)).collect();
    let frames = 120u64;
    let done = Arc::new(AtomicBool::new(false));
    let (fin_tx, fin_rx) = crossbeam_channel::bounded(1);
    let watchdog = {
        let m = m.clone();
        let done = done.clone();
        std::thread::spawn(move || {
            let workers: Vec<_> = (0..4u64)
                .map(|t| {
                    let m = m.clone();
                    std::thread::spawn(move || {
                        let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ (t + 1));
                        let (mut ok, mut bad) = (0, 0);
                        for _ in 0..250 {
                            let r = rng.next();
                            let mut u = perm_update(perm_layouts()[(r % 6) as usize]);
                            let valid = (r >> 8) % 3 != 0;
                            if !valid {
                                match (r >> 16) % 5 {
                                    0 => {
                                        u["videoFileCfg"]["layoutConfig"][1]["width"] = (-5).into()
                                    }
                                    1 => u["videoFileCfg"]["vWidth"] = 640.into(),
                                    2 => u["videoFileCfg"]["layoutConfig"][0]["type"] = 4.into(),
                                    3 => u["videoFileCfg"]["layoutConfig"] = "nope".into(),
                                    _ => u["videoFileCfg"]["layoutConfig"][2]["left"] = 5000.into(),
                                }
                            }
                            let res = if r & 1 == 0 {
                                m.update_content(&u)
                            } else {
                                m.update_content(u.to_string().as_str())
                            };
                            match res {
                                Ok(()) => ok += 1,
                                Err(e) => {
                                    assert!(!valid, "valid update refused: {e}");
                                    assert_eq!(e.code(), codes::PARAM_ERR);
                                    bad += 1
                                }
                            }
                            std::thread::sleep(Duration::from_micros((r >> 24) % 400));
                        }
                        (ok, bad)
                    })
                })
                .collect();
            for n in 1..=frames {
                for (i, f) in sources.iter().enumerate() {
                    m.push_video(&format!("s{i}"), f.clone()).unwrap();
                }
                m.advance_frames(n).unwrap();
                std::thread::sleep(Duration::from_millis(1));
            }
            let res: Vec<(u32, u32)> = workers.into_iter().map(|w| w.join().unwrap()).collect();
            done.store(true, Ordering::Release);
            let _ = fin_tx.send(res);
        })
    };
    let res = fin_rx
        .recv_timeout(Duration::from_secs(120))
        .expect("deadlock: updates and recording did not finish in 120 s");
    watchdog.join().unwrap();
    assert!(done.load(Ordering::Acquire));
    let (ok, bad) = res.iter().fold((0, 0), |a, r| (a.0 + r.0, a.1 + r.1));
    assert_eq!(ok + bad, 1000);
    assert!(ok > 500 && bad > 200, "ok {ok} bad {bad}");
    let mut m = Arc::try_unwrap(m).expect("sole owner");
    m.destroy().unwrap();

    let mut seen = std::collections::HashSet::new();
    let mut bad_frames = Vec::new();
    let (n, err) = each_frame(&d.join("u.mp4"), |i, f| {
        // every cell uniform and equal to one source; together exactly one permutation
        let mut perm = [usize::MAX; 3];
        for (cell, p) in perm.iter_mut().enumerate() {
            let pts = [(8, 8), (32, 32), (56, 56), (8, 56), (56, 8)];
            let idx: Vec<Option<usize>> = pts
                .iter()
                .map(|&(x, y)| {
                    colours
                        .iter()
                        .position(|c| close(yuv(f, cell * 64 + x, y), *c, 6))
                })
                .collect();
            if idx.iter().all(|v| v.is_some() && *v == idx[0]) {
                *p = idx[0].unwrap();
            }
        }
        match perm_layouts().iter().position(|p| *p == perm) {
            Some(k) => {
                seen.insert(k);
            }
            None => bad_frames.push(format!("frame {i}: cells {perm:?}")),
        }
    });
    assert_eq!((n as u64, err), (frames, None));
    assert!(bad_frames.is_empty(), "{bad_frames:?}");
    assert!(seen.len() >= 3, "only {seen:?} layouts recorded");
}

fn clip(name: &str) -> String {
    format!("{ROOT}/fixtures/clips/{name}")
}

fn small_config(dir: &Path, svr: &str) -> PathBuf {
    let p = dir.join("cfg.json");
    std::fs::write(
        &p,
        json!({"mode":0,"videoFileCfg":{"svrPathName":svr,"vWidth":320,"vHeight":240,"vFps":15,
            "layoutConfig":[{"type":0,"left":0,"top":0,"width":320,"height":240,"keepAspectRatio":1,"param":{"camid":"cam"}}]}})
        .to_string(),
    )
    .unwrap();
    p
}

fn read_events(p: &Path) -> Vec<Value> {
    std::fs::read_to_string(p)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn kill_9_mid_recording_leaves_a_playable_file() {
    let d = dir("kill");
    let cfg = small_config(&d, "/live/rec.mp4");
    let mut child = Command::new(BIN)
        .args([
            "record",
            "--realtime",
            "--duration",
            "30",
            "--preset",
            "ultrafast",
            "--backend",
            "cpu",
        ])
        .arg("--config")
        .arg(&cfg)
        .arg("--input")
        .arg(format!("cam={}", clip("cam9_320x240_15.mp4")))
        .arg("--storage")
        .arg(d.join("store"))
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_secs(4));
    child.kill().unwrap(); // SIGKILL
    let status = child.wait().unwrap();
    assert!(!status.success());
    let file = d.join("store/live/rec.mp4");
    let (n, _err) = each_frame(&file, |_, f| assert_eq!(f.width(), 320));
    assert!(
        n >= 45,
        "only {n} frames (< 3 s at 15 fps) survived kill -9"
    );
    let probe = Command::new("ffmpeg")
        .args(["-v", "error", "-i"])
        .arg(&file)
        .args(["-f", "null", "-"])
        .output()
        .unwrap();
    assert!(
        probe.status.success(),
        "ffmpeg cannot read it: {}",
        String::from_utf8_lossy(&probe.stderr)
    );
}

#[test]
fn full_disk_reports_902_and_keeps_what_was_written() {
    let d = dir("full");
    let cfg = small_config(&d, "/full/rec.mp4");
    let ev = d.join("events.jsonl");
    // RLIMIT_FSIZE of 96 KiB in a child; SIGXFSZ ignored so write() fails with EFBIG
    let script = format!(
        "trap '' XFSZ; ulimit -f 96; exec '{BIN}' record --preset ultrafast --backend cpu --duration 10 --config '{}' --input 'cam={}' --storage '{}' --events '{}'",
        cfg.display(),
        clip("cam9_320x240_15.mp4"),
        d.join("store").display(),
        ev.display()
    );
    let o = Command::new("bash")
        .arg("-c")
        .arg(&script)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("code 902"), "{stderr}");
    let evs = read_events(&ev);
    assert!(
        evs.iter()
            .any(|e| e["event"] == "error" && e["code"] == 902),
        "{evs:#?}"
    );
    let last = evs.last().unwrap();
    assert_eq!(
        (
            last["event"].as_str(),
            last["state"].as_i64(),
            last["err"].as_i64()
        ),
        (Some("stateChanged"), Some(0), Some(902))
    );
    let fin = evs
        .iter()
        .rev()
        .find(|e| e["event"] == "outputInfoChanged")
        .unwrap();
    assert_eq!(fin["outputInfo"]["state"], 3);
    assert_eq!(fin["outputInfo"]["errCode"], 902);
    let file = d.join("store/full/rec.mp4");
    assert!(std::fs::metadata(&file).unwrap().len() <= 96 * 1024);
    let (n, _) = each_frame(&file, |_, f| assert_eq!(f.height(), 240));
    assert!(n >= 8, "only {n} frames playable before the disk filled");
}

/// A directory this process cannot write: chmod 555 (not enough for root), else a read-only
/// tmpfs mounted over it, else a storage root under /proc.
fn unwritable_root(d: &Path) -> (PathBuf, bool) {
    use std::os::unix::fs::PermissionsExt;
    let ro = d.join("ro");
    std::fs::create_dir_all(&ro).unwrap();
    std::fs::set_permissions(&ro, std::fs::Permissions::from_mode(0o555)).unwrap();
    if std::fs::write(ro.join("probe"), b"x").is_err() {
        return (ro, false);
    }
    let _ = std::fs::remove_file(ro.join("probe"));
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "ro,size=64k", "tmpfs"])
        .arg(&ro)
        .status()
        .is_ok_and(|s| s.success());
    if mounted && std::fs::write(ro.join("probe"), b"x").is_err() {
        return (ro, true);
    }
    if mounted {
        let _ = Command::new("umount").arg(&ro).status();
    }
    (PathBuf::from("/proc/cloudmixer-unwritable"), false)
}

#[test]
fn unwritable_target_and_escaping_paths_are_errors_with_codes() {
    let d = dir("unwritable");
    let (root, mounted) = unwritable_root(&d);
    let cfg = MixerConfig::from_value(seed("/2021/rec.mp4")).unwrap();
    let r = Mixer::create_with(cfg, Storage::new(&root), settings(PaceMode::Offline));
    if mounted {
        let _ = Command::new("umount").arg(&root).status();
    }
    let e = r.expect_err("an unwritable root must fail");
    assert_eq!(e.code(), codes::FILE_ERR, "{e}");

    // `..` never reaches the disk: a config error with PARAM_ERR naming the field
    let e = MixerConfig::from_value(seed("/a/../../etc/x.mp4")).unwrap_err();
    assert!(e.to_string().contains("videoFileCfg.svrPathName"), "{e}");
    assert_eq!(MixerError::from(e).code(), codes::PARAM_ERR);

    // the same through the CLI: exit 2, no file anywhere
    let o = Command::new(BIN)
        .args(["record", "--duration", "1", "--config"])
        .arg(small_config(&d, "../../escape.mp4"))
        .arg("--input")
        .arg(format!("cam={}", clip("cam9_320x240_15.mp4")))
        .arg("--storage")
        .arg(d.join("store"))
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("'..' escapes the storage root"));
}

#[test]
fn unwritable_target_emits_error_then_null() {
    let d = dir("unwritable_events");
    let (root, mounted) = unwritable_root(&d);
    let ev = d.join("ev.jsonl");
    let o = Command::new(BIN)
        .args([
            "record",
            "--duration",
            "1",
            "--preset",
            "ultrafast",
            "--config",
        ])
        .arg(small_config(&d, "/x/rec.mp4"))
        .arg("--input")
        .arg(format!("cam={}", clip("cam9_320x240_15.mp4")))
        .arg("--storage")
        .arg(&root)
        .arg("--events")
        .arg(&ev)
        .output()
        .unwrap();
    if mounted {
        let _ = Command::new("umount").arg(&root).status();
    }
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("code 905"), "{stderr}");
    let evs = read_events(&ev);
    assert!(
        evs.iter()
            .any(|e| e["event"] == "error" && e["code"] == 905),
        "{evs:?}"
    );
}

#[test]
fn max_duration_stops_cleanly_with_901() {
    let d = dir("max");
    let v = json!({"mode":0,"videoFileCfg":{"svrPathName":"m.mkv","vWidth":64,"vHeight":48,"vFps":15,
        "layoutConfig":[{"type":0,"left":0,"top":0,"width":64,"height":48,"param":{"camid":"a"}}]}});
    let s = MixerSettings {
        max_duration: Duration::from_secs(1),
        ..settings(PaceMode::Offline)
    };
    let mut m =
        Mixer::create_with(MixerConfig::from_value(v).unwrap(), Storage::new(&d), s).unwrap();
    // resolution changes mid-stream just work
    m.push_video("a", solid(32, 24, PALETTE[3])).unwrap();
    m.advance_to(Duration::from_millis(500)).unwrap();
    m.push_video("a", solid(17, 31, PALETTE[4])).unwrap();
    let e = m.advance_to(Duration::from_secs(2)).unwrap_err();
    assert_eq!(e.code(), codes::RECORD_MAX, "{e}");
    m.destroy().unwrap(); // reaching the maximum is a clean stop
    let evs = events(&m);
    let n = evs.len();
    assert!(
        matches!(&evs[n - 4], MixerEvent::Error { code: 901, .. }),
        "{evs:#?}"
    );
    assert_eq!(evs[n - 3], MixerEvent::state(MixerState::Stopping));
    match &evs[n - 2] {
        MixerEvent::OutputInfoChanged(i) => {
            assert_eq!(
                (i.state, i.err_code, i.duration),
                (OutputState::Stopped, 901, 1000)
            );
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        &evs[n - 1],
        MixerEvent::StateChanged {
            state: MixerState::Null,
            err: 901,
            ..
        }
    ));
    let mut colours = Vec::new();
    let (frames, err) = each_frame(&d.join("m.mkv"), |i, f| {
        if i == 0 || i == 14 {
            colours.push(yuv(f, 32, 24));
        }
    });
    assert_eq!((frames, err), (15, None));
    assert!(
        close(colours[0], PALETTE[3], 3) && close(colours[1], PALETTE[4], 3),
        "{colours:?}"
    );
}

#[test]
fn update_content_takes_well_under_100us() {
    let d = dir("latency");
    let cfg = MixerConfig::from_value(seed("l.mp4")).unwrap();
    let m = Mixer::create_with(cfg, Storage::new(&d), settings(PaceMode::Offline)).unwrap();
    let pip =
        std::fs::read_to_string(format!("{ROOT}/fixtures/layouts/seed_pip_update.json")).unwrap();
    let t: Vec<Duration> = (0..300)
        .map(|_| {
            let s = Instant::now();
            m.update_content(pip.as_str()).unwrap();
            s.elapsed()
        })
        .collect();
    let us: Vec<f64> = t.iter().map(|d| d.as_secs_f64() * 1e6).collect();
    let s = cloudmixer::testkit::stats::LatencyStats::of(&us);
    eprintln!(
        "update_content: median {:.1} µs, p99 {:.1} µs",
        s.p50, s.p99
    );
    assert!(s.p50 < 100.0, "median {:.1} µs", s.p50);
}

#[test]
fn registered_picture_outlives_the_source_timeout_while_a_silent_camera_does_not() {
    let d = dir("picture");
    let v = json!({"mode":0,"videoFileCfg":{"svrPathName":"p.mkv","vWidth":64,"vHeight":32,"vFps":10,
        "layoutConfig":[{"type":1,"left":0,"top":0,"width":32,"height":32,"param":{"resourceid":"logo"}},
                        {"type":0,"left":32,"top":0,"width":32,"height":32,"param":{"camid":"cam"}}]}});
    let mut m = Mixer::create_with(
        MixerConfig::from_value(v).unwrap(),
        Storage::new(&d),
        settings(PaceMode::Offline),
    )
    .unwrap();
    m.register_picture("logo", solid(16, 16, PALETTE[2]))
        .unwrap();
    m.push_video("cam", solid(16, 16, PALETTE[5])).unwrap();
    // 4 s of synthetic time: the camera is silent after t = 0, the default timeout is 2 s
    m.advance_to(Duration::from_secs(4)).unwrap();
    m.destroy().unwrap();
    let mut seen = Vec::new();
    let (frames, err) = each_frame(&d.join("p.mkv"), |i, f| {
        if i == 0 || i == 39 {
            seen.push((yuv(f, 16, 16), yuv(f, 48, 16)));
        }
    });
    assert_eq!((frames, err), (40, None));
    assert!(
        close(seen[0].0, PALETTE[2], 3) && close(seen[1].0, PALETTE[2], 3),
        "{seen:?}"
    );
    assert!(close(seen[0].1, PALETTE[5], 3), "{seen:?}");
    // the silent camera is drawn as the placeholder (background black) at the end
    assert!(close(seen[1].1, [16, 128, 128], 3), "{seen:?}");
}

#[test]
fn records_through_the_gpu_backend() {
    let d = dir("gpu");
    let v = json!({"mode":0,"videoFileCfg":{"svrPathName":"g.mkv","vWidth":64,"vHeight":48,"vFps":15,
        "layoutConfig":[{"type":0,"left":0,"top":0,"width":32,"height":48,"param":{"camid":"a"}}]}});
    let s = MixerSettings {
        backend: Backend::Gpu,
        ..settings(PaceMode::Offline)
    };
    let Some(mut m) = cloudmixer::testkit::gpu_or_skip(
        Mixer::create_with(MixerConfig::from_value(v).unwrap(), Storage::new(&d), s),
        "a GPU recording",
    ) else {
        return;
    };
    assert!(m.backend_name().starts_with("gpu"), "{}", m.backend_name());
    m.push_video("a", solid(16, 24, PALETTE[1])).unwrap();
    m.advance_frames(5).unwrap();
    m.destroy().unwrap();
    let mut px = Vec::new();
    let (n, err) = each_frame(&d.join("g.mkv"), |_, f| {
        px.push((yuv(f, 16, 24), yuv(f, 48, 24)))
    });
    assert_eq!((n, err), (5, None));
    for (cell, bg) in px {
        assert!(
            close(cell, PALETTE[1], 3) && close(bg, [16, 128, 128], 3),
            "{cell:?} {bg:?}"
        );
    }
}

#[test]
fn record_cli_shows_a_registered_picture_and_names_a_bad_one() {
    let d = dir("cli_picture");
    let cfg = d.join("cfg.json");
    std::fs::write(
        &cfg,
        json!({"mode":0,"videoFileCfg":{"svrPathName":"pic.mkv","vWidth":320,"vHeight":120,"vFps":10,
            "layoutConfig":[{"type":0,"left":0,"top":0,"width":160,"height":120,"param":{"camid":"cam"}},
                            {"type":1,"left":160,"top":0,"width":160,"height":120,"keepAspectRatio":0,"param":{"resourceid":"card"}}]}})
        .to_string(),
    )
    .unwrap();
    let run = |picture: &str| {
        Command::new(BIN)
            .args([
                "record",
                "--preset",
                "ultrafast",
                "--backend",
                "cpu",
                "--duration",
                "3",
            ])
            .arg("--config")
            .arg(&cfg)
            .args(["--input", &format!("cam={}", clip("cam9_320x240_15.mp4"))])
            .args(["--picture", picture])
            .arg("--storage")
            .arg(d.join("store"))
            .output()
            .unwrap()
    };
    let o = run(&format!("card={}", clip("still_160x120.jpg")));
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let mut last = None;
    let (n, err) = each_frame(&d.join("store/pic.mkv"), |_, f| {
        last = Some(yuv(f, 170, 20))
    });
    assert_eq!((n, err), (30, None));
    // smptebars' first bar (grey ~ Y 180) is still there at 3 s: the picture did not time out
    let px = last.unwrap();
    assert!(px[0] > 120, "{px:?}");
    let o = run("card=/no/such.png");
    // like a missing --input: bad usage (exit 2), naming the picture and the file
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(
        err.contains("picture \"card\" (/no/such.png): cannot read the file: no such file"),
        "{err}"
    );
}

fn final_info(m: &Mixer) -> OutputInfo {
    events(m)
        .into_iter()
        .rev()
        .find_map(|e| match e {
            MixerEvent::OutputInfoChanged(i) => Some(i),
            _ => None,
        })
        .expect("an output info")
}

fn tiny_config(svr: &str) -> MixerConfig {
    MixerConfig::from_value(
        serde_json::json!({"mode":0,"videoFileCfg":{"svrPathName":svr,
        "vWidth":64,"vHeight":48,"vFps":15,"layoutConfig":[{"type":0,"left":0,"top":0,
        "width":64,"height":48,"param":{"camid":"a"}}]}}),
    )
    .unwrap()
}

fn record_tiny(d: &Path, svr: &str, s: MixerSettings, secs: u64) -> Mixer {
    let mut m = Mixer::create_with(tiny_config(svr), Storage::new(d), s).unwrap();
    m.push_video("a", solid(32, 24, PALETTE[2])).unwrap();
    m.advance_to(Duration::from_secs(secs)).unwrap();
    m.destroy().unwrap();
    m
}

#[test]
fn an_existing_recording_is_never_overwritten() {
    let d = dir("no_overwrite");
    let first = record_tiny(&d, "/day/rec.mp4", settings(PaceMode::Offline), 1);
    assert_eq!(final_info(&first).svr_file_path_name, "/day/rec.mp4");
    let size = std::fs::metadata(d.join("day/rec.mp4")).unwrap().len();
    // the same config again: a new name, reported as such; the first file untouched
    let second = record_tiny(&d, "/day/rec.mp4", settings(PaceMode::Offline), 2);
    let info = final_info(&second);
    assert_eq!(info.svr_file_path_name, "/day/rec_1.mp4");
    assert_eq!(info.state, OutputState::Stopped);
    assert_eq!(
        std::fs::metadata(d.join("day/rec.mp4")).unwrap().len(),
        size
    );
    let (n, _) = each_frame(&d.join("day/rec_1.mp4"), |_, _| {});
    assert_eq!(n, 30);
    let third = record_tiny(&d, "/day/rec.mp4", settings(PaceMode::Offline), 1);
    assert_eq!(final_info(&third).svr_file_path_name, "/day/rec_2.mp4");
    // asked for: overwrite in place
    let s = MixerSettings {
        overwrite: true,
        ..settings(PaceMode::Offline)
    };
    let fourth = record_tiny(&d, "/day/rec.mp4", s, 3);
    assert_eq!(final_info(&fourth).svr_file_path_name, "/day/rec.mp4");
    let (n, _) = each_frame(&d.join("day/rec.mp4"), |_, _| {});
    assert_eq!(n, 45);
    assert!(!d.join("day/rec_3.mp4").exists());
}

#[test]
fn a_deleted_storage_directory_fails_the_recording_with_905() {
    let d = dir("deleted");
    let mut m = Mixer::create_with(
        tiny_config("/live/rec.mp4"),
        Storage::new(&d),
        settings(PaceMode::Offline),
    )
    .unwrap();
    m.push_video("a", solid(32, 24, PALETTE[2])).unwrap();
    m.advance_to(Duration::from_secs(2)).unwrap();
    std::fs::remove_dir_all(d.join("live")).unwrap();
    // the writer looks at least once a second
    let t0 = std::time::Instant::now();
    while m.state() == MixerState::Running && t0.elapsed() < Duration::from_secs(3) {
        let _ = m.advance_to(Duration::from_secs(2) + t0.elapsed());
        std::thread::sleep(Duration::from_millis(50));
    }
    let e = m.destroy().unwrap_err();
    assert_eq!(e.code(), codes::FILE_ERR, "{e}");
    let info = final_info(&m);
    assert_eq!(info.state, OutputState::Fail);
    assert_eq!(info.err_code, codes::FILE_ERR);
    assert!(
        info.err_desc.contains("deleted while recording"),
        "{}",
        info.err_desc
    );
    // a file replaced under the same name is caught too
    let d = dir("replaced");
    let mut m = Mixer::create_with(
        tiny_config("/rec.mp4"),
        Storage::new(&d),
        settings(PaceMode::Offline),
    )
    .unwrap();
    m.push_video("a", solid(32, 24, PALETTE[2])).unwrap();
    m.advance_to(Duration::from_secs(1)).unwrap();
    std::fs::remove_file(d.join("rec.mp4")).unwrap();
    std::fs::write(d.join("rec.mp4"), b"someone else's").unwrap();
    let e = m.destroy().unwrap_err();
    assert_eq!(e.code(), codes::FILE_ERR, "{e}");
    assert!(final_info(&m).err_desc.contains("replaced"), "{e}");
}
