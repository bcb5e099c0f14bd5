//! CPU cost of one extra RTMP sink on a W1 recording: `cloudmixer record --realtime` of W1
//! (10 s) into a file, and into the same file plus an RTMP push to a loopback nginx
//! (`testkit::nginx`), alternating, each run's CPU time (user + system, from `wait4`).
//!
//!     cargo build --release && cargo run --release --example live_sink_cost -- [runs]

use std::path::Path;
use std::process::Command;

use cloudmixer::testkit::nginx::RtmpServer;

/// CPU seconds (user, system) of one `record` run.
#[allow(clippy::zombie_processes)] // reaped with wait4, which also reports its CPU time
fn run(bin: &Path, root: &Path, out: &Path, svr: &str) -> (f64, f64) {
    let child = Command::new(bin)
        .args(["record", "--config"])
        .arg(root.join("fixtures/layouts/seed_side_by_side.json"))
        .arg("--input")
        .arg(format!(
            "Usr1.-1={}",
            root.join("fixtures/clips/cam1_640x480_15.mp4").display()
        ))
        .arg("--input")
        .arg(format!(
            "Usr2.-1={}",
            root.join("fixtures/clips/cam4_1280x720_30.mp4").display()
        ))
        .arg("--storage")
        .arg(out)
        .args([
            "--output",
            svr,
            "--overwrite",
            "--realtime",
            "--duration",
            "10",
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("run cloudmixer (cargo build --release first)");
    let mut status = 0;
    // SAFETY: rusage is plain old data; wait4 fills it for our own child.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    let r = unsafe { libc::wait4(child.id() as libc::pid_t, &mut status, 0, &mut ru) };
    assert!(
        r > 0 && libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "record failed"
    );
    // reaped by wait4 above: this only releases the handle
    drop(child);
    let s = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    (s(ru.ru_utime), s(ru.ru_stime))
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let runs: usize = std::env::args()
        .nth(1)
        .map_or(5, |a| a.parse().expect("a count"));
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let bin = root.join("target/release/cloudmixer");
    let dir = std::env::temp_dir().join(format!("cm-live-cost-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let mut server = RtmpServer::start(&dir.join("nginx"));
    let url = server.url("w1");
    let (mut file, mut live) = (Vec::new(), Vec::new());
    for i in 0..runs {
        let (u, s) = run(&bin, root, &dir.join("out"), "/w1.mp4");
        file.push(u + s);
        let (u2, s2) = run(&bin, root, &dir.join("out"), &format!("/w1.mp4;{url}"));
        live.push(u2 + s2);
        println!(
            "run {i}: file {:.2} s CPU, file + rtmp {:.2} s CPU",
            u + s,
            u2 + s2
        );
    }
    server.stop();
    let recs = server.recordings();
    let (f, l) = (median(&mut file), median(&mut live));
    println!(
        "W1 10 s real time, median of {runs}: file {f:.2} s CPU, file + RTMP {l:.2} s CPU: +{:.1} % ({} nginx recordings)",
        (l / f - 1.0) * 100.0,
        recs.len()
    );
    let _ = std::fs::remove_dir_all(&dir);
}
