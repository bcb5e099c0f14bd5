//! A real S3-compatible test server on 127.0.0.1: `s3s-fs` (SigV4 authentication, multipart
//! uploads), storing its data under a directory so that it survives a kill and a restart.
//! `scripts/install-deps.sh` installs it (`cargo install s3s-fs --locked --features binary`);
//! `S3S_FS_BIN` names another binary.

use std::io::Read;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use object_store::aws::AmazonS3Builder;
use object_store::path::Path as ObjectPath;
use object_store::ObjectStoreExt;

/// How long a start may take before it panics.
const START_TIMEOUT: Duration = Duration::from_secs(10);

/// A running `s3s-fs` with one bucket; killed on drop.
#[derive(Debug)]
pub struct S3Server {
    /// `http://127.0.0.1:PORT`.
    pub endpoint: String,
    /// The access key the server accepts.
    pub access_key: String,
    /// The secret key the server accepts.
    pub secret_key: String,
    /// The bucket created at start.
    pub bucket: String,
    /// The port (the same after a restart).
    pub port: u16,
    root: PathBuf,
    log: PathBuf,
    child: Option<Child>,
}

/// The `s3s-fs` binary: `S3S_FS_BIN`, else `s3s-fs` on `PATH`, else `~/.cargo/bin/s3s-fs`.
pub fn s3s_fs_binary() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("S3S_FS_BIN") {
        return Some(PathBuf::from(p));
    }
    let mut dirs: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect())
        .unwrap_or_default();
    if let Some(home) = std::env::var_os("CARGO_HOME") {
        dirs.push(PathBuf::from(home).join("bin"));
    }
    if let Some(home) = std::env::var_os("HOME") {
        dirs.push(PathBuf::from(home).join(".cargo/bin"));
    }
    dirs.into_iter()
        .map(|d| d.join("s3s-fs"))
        .find(|p| p.is_file())
}

/// A free TCP port on 127.0.0.1 (bound, read and released).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind 127.0.0.1:0")
}

impl S3Server {
    /// Starts a server storing under `dir/data` (log in `dir/s3s-fs.log`) on a free port, with
    /// bucket `recordings` and fresh keys; waits until the port answers (panics after 10 s, or
    /// when the binary is missing, with the reason).
    pub fn start(dir: &Path) -> S3Server {
        let root = dir.join("data");
        let bucket = "recordings".to_string();
        std::fs::create_dir_all(root.join(&bucket)).expect("create the bucket directory");
        let port = free_port();
        let mut s = S3Server {
            endpoint: format!("http://127.0.0.1:{port}"),
            access_key: "cloudmixer-test".into(),
            secret_key: format!("secret-{}-{port}", std::process::id()),
            bucket,
            port,
            root,
            log: dir.join("s3s-fs.log"),
            child: None,
        };
        s.spawn();
        s
    }

    /// The directory the objects are stored under (`<root>/<bucket>/<key>`).
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Kills the server at once (no graceful shutdown); the data stays.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts it again on the same port with the same data (kills it first if it runs).
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    /// Whether the process is alive.
    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// GETs an object through the S3 API (signed like any client).
    pub fn get_object(&self, key: &str) -> Result<Vec<u8>, String> {
        crate::output::upload::install_tls_provider();
        let store = AmazonS3Builder::new()
            .with_endpoint(&self.endpoint)
            .with_allow_http(true)
            .with_region("us-east-1")
            .with_bucket_name(&self.bucket)
            .with_access_key_id(&self.access_key)
            .with_secret_access_key(&self.secret_key)
            .build()
            .map_err(|e| e.to_string())?;
        let path = ObjectPath::parse(key.trim_start_matches('/')).map_err(|e| e.to_string())?;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| e.to_string())?;
        rt.block_on(async {
            let r = store.get(&path).await.map_err(|e| e.to_string())?;
            r.bytes()
                .await
                .map(|b| b.to_vec())
                .map_err(|e| e.to_string())
        })
    }

    fn spawn(&mut self) {
        let bin = s3s_fs_binary().unwrap_or_else(|| {
            panic!(
                "s3s-fs not found (PATH, ~/.cargo/bin or S3S_FS_BIN): run scripts/install-deps.sh \
                 or `cargo install s3s-fs@0.14.1 --locked --features binary`"
            )
        });
        let deadline = Instant::now() + START_TIMEOUT;
        let addr = SocketAddr::from(([127, 0, 0, 1], self.port));
        loop {
            let log = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&self.log)
                .expect("open the server log");
            let mut child = Command::new(&bin)
                .arg("--host")
                .arg("127.0.0.1")
                .arg("--port")
                .arg(self.port.to_string())
                .arg("--access-key")
                .arg(&self.access_key)
                .arg("--secret-key")
                .arg(&self.secret_key)
                .arg(&self.root)
                .env("RUST_LOG", "error")
                .stdin(Stdio::null())
                .stdout(log.try_clone().expect("clone the log handle"))
                .stderr(log)
                .spawn()
                .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()));
            loop {
                if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                    self.child = Some(child);
                    return;
                }
                if let Ok(Some(status)) = child.try_wait() {
                    // the port may still be held by the killed server's sockets: try again
                    if Instant::now() < deadline {
                        std::thread::sleep(Duration::from_millis(100));
                        break;
                    }
                    panic!(
                        "s3s-fs exited ({status}) at start on port {}: {}",
                        self.port,
                        self.log_tail()
                    );
                }
                if Instant::now() >= deadline {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!(
                        "s3s-fs did not answer on port {} within {START_TIMEOUT:?}: {}",
                        self.port,
                        self.log_tail()
                    );
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }

    fn log_tail(&self) -> String {
        let mut s = String::new();
        if let Ok(mut f) = std::fs::File::open(&self.log) {
            let _ = f.read_to_string(&mut s);
        }
        let start = s.len().saturating_sub(2000);
        let start = (start..s.len())
            .find(|&i| s.is_char_boundary(i))
            .unwrap_or(s.len());
        s[start..].to_string()
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        self.kill();
    }
}
