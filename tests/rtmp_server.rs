//! Tests of the RTMP test server harness (`testkit::nginx`): a real nginx-rtmp on loopback,
//! fed by the FFmpeg CLI, its recordings checked with ffprobe. Needs `nginx-light`,
//! `libnginx-mod-rtmp` and `ffmpeg` (scripts/install-deps.sh).
#![cfg(feature = "testkit")]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use cloudmixer::testkit::nginx::{free_port, RtmpServer};

/// A fresh, empty directory for one test's server.
fn fresh_dir(name: &str) -> PathBuf {
    let d = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("rtmp_server-{name}"));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// `ffmpeg` pushing `secs` s of 320x240@15 test video and a 440 Hz tone to `url`, in real time.
fn push(url: &str, secs: u32) -> Child {
    Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-nostdin", "-re"])
        .args(["-f", "lavfi", "-i", "testsrc2=size=320x240:rate=15"])
        .args(["-f", "lavfi", "-i", "sine=frequency=440"])
        .args(["-t", &secs.to_string()])
        .args([
            "-c:v", "libx264", "-g", "15", "-c:a", "aac", "-f", "flv", url,
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn ffmpeg (install it: scripts/install-deps.sh)")
}

/// Waits for `child` at most `limit`, killing it after that; returns its output and whether it
/// ended by itself.
fn wait_bounded(mut child: Child, limit: Duration) -> (Output, bool) {
    let t0 = Instant::now();
    let mut exited = true;
    while child.try_wait().unwrap().is_none() {
        if t0.elapsed() > limit {
            let _ = child.kill();
            exited = false;
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    (child.wait_with_output().unwrap(), exited)
}

/// (codec_type, frames counted by decoding) of each stream of `path`.
fn probe(path: &Path) -> Vec<(String, u64)> {
    let out = Command::new("ffprobe")
        .args(["-v", "error", "-count_frames"])
        .args(["-show_entries", "stream=codec_type,nb_read_frames"])
        .args(["-of", "csv=p=0"])
        .arg(path)
        .output()
        .expect("run ffprobe");
    assert!(
        out.status.success(),
        "ffprobe {}: {}",
        path.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let (t, n) = l.trim().split_once(',')?;
            Some((t.to_string(), n.trim().parse().ok()?))
        })
        .collect()
}

fn unix_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn frames(streams: &[(String, u64)], kind: &str) -> Option<u64> {
    streams.iter().find(|(t, _)| t == kind).map(|(_, n)| *n)
}

/// No process whose command line names the server's prefix dir is left.
fn assert_no_nginx_left(dir: &Path) {
    let out = Command::new("pgrep")
        .arg("-af")
        .arg(dir.to_str().unwrap())
        .output()
        .expect("run pgrep");
    assert!(
        out.stdout.is_empty(),
        "processes left behind: {}",
        String::from_utf8_lossy(&out.stdout)
    );
}

#[test]
fn free_port_is_bindable() {
    let p = free_port();
    assert_ne!(p, 0);
    std::net::TcpListener::bind(("127.0.0.1", p)).expect("free port can be bound");
}

#[test]
fn records_a_pushed_stream() {
    let dir = fresh_dir("record");
    let mut srv = RtmpServer::start(&dir);
    assert_eq!(
        srv.url("test"),
        format!("rtmp://127.0.0.1:{}/live/test", srv.port())
    );

    let (out, exited) = wait_bounded(push(&srv.url("test"), 3), Duration::from_secs(30));
    assert!(
        exited && out.status.success(),
        "ffmpeg push failed: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        srv.logs()
    );
    srv.stop();
    assert!(!srv.is_running());

    let recs = srv.recordings();
    assert_eq!(recs.len(), 1, "recordings: {recs:?}\n{}", srv.logs());
    let name = recs[0].file_name().unwrap().to_str().unwrap();
    assert!(
        name.starts_with("test-") && name.ends_with(".flv"),
        "{name}"
    );
    let streams = probe(&recs[0]);
    let v = frames(&streams, "video").unwrap_or_else(|| panic!("no video: {streams:?}"));
    assert!((43..=47).contains(&v), "{v} video frames, want 45±2");
    let a = frames(&streams, "audio").unwrap_or_else(|| panic!("no audio: {streams:?}"));
    assert!(a > 0, "{a} audio frames");

    drop(srv);
    assert_no_nginx_left(&dir);
}

#[test]
fn restart_after_kill_records_a_second_file() {
    let dir = fresh_dir("restart");
    let mut srv = RtmpServer::start(&dir);
    let port = srv.port();

    // A long push, killed under it once some of it has been recorded.
    let ff = push(&srv.url("test"), 60);
    let t0 = Instant::now();
    loop {
        let size = srv
            .recordings()
            .first()
            .and_then(|p| std::fs::metadata(p).ok())
            .map_or(0, |m| m.len());
        if size > 20_000 {
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(15),
            "nothing recorded after 15 s\n{}",
            srv.logs()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    srv.kill();
    assert!(!srv.is_running());
    // ffmpeg notices the dead server and gives up (else it is killed).
    let (_, _) = wait_bounded(ff, Duration::from_secs(10));
    assert_eq!(srv.recordings().len(), 1);

    // Recording names are `<name>-<unix seconds at publish>.flv`: make sure the second publish
    // is in a later second than the first, or it would overwrite the first file.
    let first = srv.recordings()[0].clone();
    let stem = first.file_stem().unwrap().to_str().unwrap();
    let secs: u64 = stem
        .rsplit('-')
        .next()
        .unwrap()
        .parse()
        .expect("unix seconds in name");
    while unix_secs() <= secs {
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut srv = RtmpServer::start_on(&dir, port);
    assert_eq!(srv.port(), port);
    let (out, exited) = wait_bounded(push(&srv.url("test"), 2), Duration::from_secs(30));
    assert!(
        exited && out.status.success(),
        "second push failed: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        srv.logs()
    );
    srv.stop();

    let recs = srv.recordings();
    assert_eq!(recs.len(), 2, "recordings: {recs:?}\n{}", srv.logs());
    // The killed one is readable up to where it was cut; the second is complete.
    let first = probe(&recs[0]);
    assert!(frames(&first, "video").is_some_and(|n| n > 0), "{first:?}");
    let second = probe(&recs[1]);
    let v = frames(&second, "video").unwrap_or(0);
    assert!(
        (28..=32).contains(&v),
        "{v} video frames, want 30±2: {second:?}"
    );
    assert!(
        frames(&second, "audio").is_some_and(|n| n > 0),
        "{second:?}"
    );

    drop(srv);
    assert_no_nginx_left(&dir);
}

#[test]
#[should_panic(expected = "Address already in use")]
fn start_on_a_busy_port_panics_with_the_error_log() {
    let dir = fresh_dir("busy");
    let busy = std::net::TcpListener::bind(("127.0.0.1", 0)).unwrap();
    let _srv = RtmpServer::start_on(&dir, busy.local_addr().unwrap().port());
}
