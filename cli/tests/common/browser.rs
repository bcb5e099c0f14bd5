//! Headless Chromium under chromedriver (WebDriver, fantoccini) for the tests that drive a real
//! browser (the console, WHIP). Included with `#[path]` by those tests only.

use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder};
use serde_json::{json, Value};

fn which(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|p| {
        std::env::split_paths(&p)
            .map(|d| d.join(name))
            .find(|f| f.is_file())
    })
}

/// A free port on 127.0.0.1 (bound, then released for the child to take).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// chromedriver in a process group of its own: dropping it kills the group (chromedriver and
/// the browser it started), also when the test fails.
pub struct Driver {
    child: Child,
    url: String,
}

impl Drop for Driver {
    fn drop(&mut self) {
        // SAFETY: kill(2) on the process group of our own child (it leads it).
        unsafe { libc::kill(-(self.child.id() as i32), libc::SIGKILL) };
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts chromedriver (`$CHROMEDRIVER` or on `PATH`) and a headless chromium session
/// (`$CHROME_BIN` or on `PATH`) with `--headless=new --disable-gpu --disable-dev-shm-usage
/// --no-first-run` (and `--no-sandbox` as root), `args` and the profile `prefs`, or says why
/// not.
pub async fn chromium(args: &[String], prefs: Value) -> Result<(Driver, Client), String> {
    let driver_bin = std::env::var_os("CHROMEDRIVER")
        .map(PathBuf::from)
        .or_else(|| which("chromedriver"))
        .ok_or("no chromedriver on PATH (Debian: apt-get install chromium chromium-driver)")?;
    let chrome = std::env::var_os("CHROME_BIN")
        .map(PathBuf::from)
        .or_else(|| which("chromium"))
        .ok_or("no chromium on PATH (Debian: apt-get install chromium chromium-driver)")?;
    let port = free_port();
    let child = Command::new(&driver_bin)
        .arg(format!("--port={port}"))
        .arg("--allowed-ips=127.0.0.1")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", driver_bin.display()))?;
    let drv = Driver {
        child,
        url: format!("http://127.0.0.1:{port}"),
    };
    let t0 = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if t0.elapsed() > Duration::from_secs(15) {
            return Err(format!(
                "{} did not listen within 15 s",
                driver_bin.display()
            ));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut all: Vec<String> = [
        "--headless=new",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--no-first-run",
    ]
    .map(String::from)
    .to_vec();
    all.extend(args.iter().cloned());
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        // chromium refuses to run as root with its sandbox
        all.push("--no-sandbox".into());
    }
    let caps = json!({
        "browserName": "chrome",
        "goog:chromeOptions": {"binary": chrome, "args": all, "prefs": prefs}
    });
    let Value::Object(caps) = caps else {
        unreachable!()
    };
    let mut b = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new());
    b.capabilities(caps);
    let c = tokio::time::timeout(Duration::from_secs(60), b.connect(&drv.url))
        .await
        .map_err(|_| "no browser session within 60 s".to_string())?
        .map_err(|e| format!("chromium did not start under chromedriver: {e}"))?;
    Ok((drv, c))
}
