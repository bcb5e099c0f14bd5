//! What the tests that run `cloudmixer serve` share: starting it on a free loopback port, an
//! HTTP agent that answers every status, the fixtures' root and the token they use.
#![allow(dead_code)] // each test file uses its own part

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// The repository root (fixtures, scripts).
pub const ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
/// The token the tests give `serve` (`--token-file`).
pub const TOKEN: &str = "test-token-0123456789abcdef";

/// An empty folder `CARGO_TARGET_TMPDIR/group/name` with an empty `rec/` (the storage root).
pub fn test_dir(group: &str, name: &str) -> PathBuf {
    let d = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(group)
        .join(name);
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(d.join("rec")).unwrap();
    d
}

/// Starts `cloudmixer serve --listen 127.0.0.1:0 --backend cpu --storage d/rec --media-root
/// fixtures/clips [--token-file d/token] extra…` with `stderr`, and waits (20 s at most) for
/// its `listening on http://ADDR` line: the child and `http://ADDR`. Its stdout keeps being
/// read so it never blocks on a full pipe.
pub fn spawn_serve(d: &Path, token: bool, extra: &[&str], stderr: Stdio) -> (Child, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_cloudmixer"));
    cmd.args(["serve", "--listen", "127.0.0.1:0", "--backend", "cpu"])
        .arg("--storage")
        .arg(d.join("rec"))
        .arg("--media-root")
        .arg(format!("{ROOT}/fixtures/clips"))
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(stderr);
    if token {
        let tf = d.join("token");
        std::fs::write(&tf, format!("{TOKEN}\n")).unwrap();
        cmd.arg("--token-file").arg(tf);
    }
    let mut child = cmd.spawn().expect("cloudmixer serve");
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = out.read_line(&mut line);
        let _ = tx.send(line);
        let mut rest = String::new();
        while out.read_line(&mut rest).is_ok_and(|n| n > 0) {
            rest.clear();
        }
    });
    let line = rx
        .recv_timeout(Duration::from_secs(20))
        .expect("serve did not say where it listens");
    let base = line
        .trim()
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .to_string();
    (child, base)
}

/// Video frames of `p` (a file or a playlist), decoded and counted by ffprobe.
pub fn frames(p: &Path) -> u64 {
    let o = Command::new("ffprobe")
        .args(["-v", "error", "-count_frames", "-select_streams", "v:0"])
        .args(["-show_entries", "stream=nb_read_frames", "-of", "csv=p=0"])
        .arg(p)
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "{}: {}",
        p.display(),
        String::from_utf8_lossy(&o.stderr)
    );
    // (a playlist lists its stream twice: program and stream)
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .find_map(|l| l.trim().parse().ok())
        .unwrap_or_else(|| panic!("{}: no frame count", p.display()))
}

/// An HTTP agent that hands back every status (no error for 4xx/5xx), 60 s per request.
pub fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(60)))
        .build()
        .into()
}

/// The value of header `name` (lowercase) in `(name, value)` pairs, or "".
pub fn header<'a>(h: &'a [(String, String)], name: &str) -> &'a str {
    h.iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
        .unwrap_or("")
}

/// `promtool check metrics` on `text` (it must pass; in CI promtool must be there).
pub fn promtool_check(text: &str) {
    if Command::new("promtool").arg("--version").output().is_err() {
        assert!(
            std::env::var_os("CI").is_none(),
            "promtool is missing in CI (scripts/install-deps.sh installs it)"
        );
        return;
    }
    let mut c = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    c.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let o = c.wait_with_output().unwrap();
    assert!(
        o.status.success(),
        "promtool: {}{}\n{text}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
}
