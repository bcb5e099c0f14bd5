//! A real RTMP server for tests: nginx with the `nginx-rtmp` module (Debian 12:
//! `nginx-light` + `libnginx-mod-rtmp`, see `scripts/install-deps.sh`), started on a loopback
//! port with a generated config and stopped at the end.
//!
//! The server runs in the foreground as a single process (`daemon off; master_process off;`),
//! so the spawned child *is* the server: killing it leaves nothing behind. Its one RTMP
//! application `live` records every published stream (`record all; record_unique on;`) as
//! `<record dir>/<stream name>-<unix seconds>.flv`; the files are written as data arrives, so
//! they are readable even after [`RtmpServer::kill`].
//!
//! ```no_run
//! use cloudmixer::testkit::nginx::RtmpServer;
//! let dir = std::env::temp_dir().join("my-rtmp-test");
//! let _ = std::fs::remove_dir_all(&dir);
//! let mut srv = RtmpServer::start(&dir);
//! let url = srv.url("cam"); // rtmp://127.0.0.1:<port>/live/cam
//! // ... publish to `url` ...
//! srv.stop();
//! assert_eq!(srv.recordings().len(), 1);
//! ```

use std::fs;
use std::io::{ErrorKind, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Where Debian 12 installs the nginx binary.
const NGINX_BIN: &str = "/usr/sbin/nginx";
/// Where `libnginx-mod-rtmp` installs the module. Debian auto-loads it only through
/// `/etc/nginx/modules-enabled/`, which a custom `-c` config does not include, so the
/// generated config names it in `load_module`.
const RTMP_MODULE: &str = "/usr/lib/nginx/modules/ngx_rtmp_module.so";
/// How long [`RtmpServer::start`] waits for the port to accept TCP.
const START_TIMEOUT: Duration = Duration::from_secs(10);
/// How long [`RtmpServer::stop`] waits for a graceful exit before it kills.
const STOP_TIMEOUT: Duration = Duration::from_secs(5);

/// A running nginx-rtmp server on `127.0.0.1`, recording everything published to its `live`
/// application. Dropping it kills the server (SIGKILL) and waits for it.
pub struct RtmpServer {
    child: Option<Child>,
    port: u16,
    prefix: PathBuf,
    record_dir: PathBuf,
}

impl RtmpServer {
    /// Starts nginx on a free loopback port, with `dir` as its prefix: the generated
    /// `nginx.conf`, `error.log`, `stderr.log` and `nginx.pid` go there, recordings into
    /// `dir/rec/`. `dir` is created if missing; pass a fresh directory per test (e.g. under
    /// `CARGO_TARGET_TMPDIR`), or the same one to [`RtmpServer::start_on`] to restart a server
    /// and keep its recordings.
    ///
    /// Waits until the port accepts TCP and answers an RTMP handshake (at most 10 s). Panics with nginx's error log when the
    /// binary or the rtmp module is missing, nginx exits early or the port does not open in
    /// time. A port taken by someone else between choosing and binding it is retried with
    /// another free port.
    pub fn start(dir: &Path) -> RtmpServer {
        let mut last = String::new();
        for _ in 0..3 {
            match Self::try_start(dir, free_port()) {
                Ok(s) => return s,
                Err(e) if e.contains("Address already in use") => last = e,
                Err(e) => panic!("{e}"),
            }
        }
        panic!("{last}")
    }

    /// Like [`RtmpServer::start`], on the given port (to restart a killed server on the same
    /// port and record dir). Panics when the port cannot be bound.
    pub fn start_on(dir: &Path, port: u16) -> RtmpServer {
        Self::try_start(dir, port).unwrap_or_else(|e| panic!("{e}"))
    }

    fn try_start(dir: &Path, port: u16) -> Result<RtmpServer, String> {
        let nginx = nginx_binary();
        assert!(
            Path::new(RTMP_MODULE).exists(),
            "nginx rtmp module {RTMP_MODULE} missing: run scripts/install-deps.sh \
             (Debian package libnginx-mod-rtmp)"
        );
        fs::create_dir_all(dir).expect("create nginx prefix dir");
        let prefix = fs::canonicalize(dir).expect("canonicalize nginx prefix dir");
        let record_dir = prefix.join("rec");
        fs::create_dir_all(&record_dir).expect("create record dir");
        let conf = prefix.join("nginx.conf");
        let error_log = prefix.join("error.log");
        // Each start's log starts empty, so a failure shows this start's errors only.
        let _ = fs::remove_file(&error_log);
        fs::write(&conf, config(&prefix, &record_dir, port)).expect("write nginx.conf");
        let stderr = fs::File::create(prefix.join("stderr.log")).expect("create stderr.log");
        let child = Command::new(&nginx)
            .arg("-c")
            .arg(&conf)
            .arg("-p")
            .arg(format!("{}/", prefix.display()))
            .arg("-e")
            .arg(&error_log)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {}: {e}", nginx.display()));
        let mut srv = RtmpServer {
            child: Some(child),
            port,
            prefix,
            record_dir,
        };
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        let t0 = Instant::now();
        loop {
            if let Some(status) = srv.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                srv.child = None;
                return Err(format!(
                    "nginx exited at start ({status}) on port {port}:\n{}",
                    srv.logs()
                ));
            }
            if rtmp_answers(&addr) {
                return Ok(srv);
            }
            if t0.elapsed() > START_TIMEOUT {
                srv.kill();
                return Err(format!(
                    "nginx did not accept TCP on port {port} within {START_TIMEOUT:?}:\n{}",
                    srv.logs()
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The loopback TCP port the server listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The URL to publish (or play) stream `name`: `rtmp://127.0.0.1:<port>/live/<name>`.
    pub fn url(&self, name: &str) -> String {
        format!("rtmp://127.0.0.1:{}/live/{name}", self.port)
    }

    /// The prefix directory (config, logs, pid; recordings under `rec/`).
    pub fn dir(&self) -> &Path {
        &self.prefix
    }

    /// Kills the server at once (SIGKILL) and waits for it. Recordings keep what was written
    /// up to then. Does nothing when it is not running.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Stops the server gracefully (SIGQUIT: nginx closes its connections and recordings and
    /// exits) and waits for it, killing it after 5 s. Does nothing when it is not running.
    pub fn stop(&mut self) {
        let Some(mut c) = self.child.take() else {
            return;
        };
        // SAFETY: plain kill(2) on our own child, which has not been reaped yet.
        unsafe { libc::kill(c.id() as libc::pid_t, libc::SIGQUIT) };
        let t0 = Instant::now();
        while t0.elapsed() < STOP_TIMEOUT {
            if let Ok(Some(_)) = c.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = c.kill();
        let _ = c.wait();
    }

    /// Whether the server process is still running.
    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// The `.flv` files recorded so far, sorted by name. Names are
    /// `<stream name>-<unix seconds at publish>.flv` (`record_unique on`), so the recordings of
    /// one stream come in publishing order (a same-second republish would overwrite the file).
    pub fn recordings(&self) -> Vec<PathBuf> {
        let mut v: Vec<PathBuf> = match fs::read_dir(&self.record_dir) {
            Ok(rd) => rd
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "flv"))
                .collect(),
            Err(e) if e.kind() == ErrorKind::NotFound => Vec::new(),
            Err(e) => panic!("read {}: {e}", self.record_dir.display()),
        };
        v.sort();
        v
    }

    /// nginx's error log and stderr, for failure messages.
    pub fn logs(&self) -> String {
        let read = |n: &str| fs::read_to_string(self.prefix.join(n)).unwrap_or_default();
        format!(
            "--- error.log\n{}--- stderr\n{}",
            read("error.log"),
            read("stderr.log")
        )
    }
}

impl Drop for RtmpServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A free TCP port on 127.0.0.1 (binds port 0, reads the port, releases it; another process
/// may take it before it is used).
pub fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|l| l.local_addr())
        .expect("bind 127.0.0.1:0")
        .port()
}

/// Whether an RTMP server answers at `addr`: it accepts TCP and replies to the client's C0+C1
/// handshake with S0 (version 3). Accepting TCP alone is no proof: another socket may hold the
/// port while nginx still retries binding it.
fn rtmp_answers(addr: &SocketAddr) -> bool {
    let Ok(mut s) = TcpStream::connect_timeout(addr, Duration::from_millis(200)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_millis(300)));
    let _ = s.set_write_timeout(Some(Duration::from_millis(300)));
    let mut c0c1 = vec![0u8; 1 + 1536];
    c0c1[0] = 3;
    let mut s0 = [0u8; 1];
    s.write_all(&c0c1).is_ok() && s.read_exact(&mut s0).is_ok() && s0[0] == 3
}

/// The nginx binary: `$CLOUDMIXER_NGINX`, else `/usr/sbin/nginx`, else `nginx` on `PATH`.
fn nginx_binary() -> PathBuf {
    if let Some(p) = std::env::var_os("CLOUDMIXER_NGINX") {
        return PathBuf::from(p);
    }
    if Path::new(NGINX_BIN).exists() {
        return PathBuf::from(NGINX_BIN);
    }
    let on_path = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|d| d.join("nginx"))
        .find(|p| p.exists());
    on_path.unwrap_or_else(|| {
        panic!("nginx not found: run scripts/install-deps.sh (Debian packages nginx-light, libnginx-mod-rtmp)")
    })
}

/// The generated config: one foreground process, RTMP on `127.0.0.1:port`, application `live`
/// recording everything into `record_dir`.
fn config(prefix: &Path, record_dir: &Path, port: u16) -> String {
    format!(
        r#"# generated by cloudmixer::testkit::nginx
daemon off;
master_process off;
worker_processes 1;
pid "{prefix}/nginx.pid";
error_log "{prefix}/error.log" info;
load_module {RTMP_MODULE};

events {{
    worker_connections 256;
}}

rtmp {{
    server {{
        listen 127.0.0.1:{port};
        chunk_size 4096;
        application live {{
            live on;
            record all;
            record_path "{rec}";
            record_unique on;
        }}
    }}
}}
"#,
        prefix = prefix.display(),
        rec = record_dir.display(),
    )
}
