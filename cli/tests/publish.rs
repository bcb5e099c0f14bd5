//! Publishing into `cloudmixer serve` with real programs on loopback: the FFmpeg CLI pushes
//! cameras over RTMP (`--rtmp-listen`, `rtmp://…/live/{mixerID}/{camid}`) and SRT
//! (`--srt-listen`, MPEG-TS, `streamid`) into a mixer created with no inputs; the recording
//! shows each publisher in its region with audio, a publish to an unknown mixer and a second
//! publisher of a camera are refused, and the service's descriptors come back once the
//! publishers are gone.

use std::net::{Ipv4Addr, UdpSocket};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use cloudmixer::testkit::nginx::free_port;
use serde_json::{json, Value};

mod common;

/// A child process killed (and waited for) when dropped.
struct Proc(Option<Child>);

impl Proc {
    fn pid(&self) -> u32 {
        self.0.as_ref().map_or(0, |c| c.id())
    }

    /// Its exit status if it ended within `limit` (`None`: still running).
    fn wait_for(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let t0 = Instant::now();
        loop {
            if let Some(st) = self.0.as_mut().and_then(|c| c.try_wait().unwrap()) {
                return Some(st);
            }
            if t0.elapsed() > limit {
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Some(mut c) = self.0.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A free UDP port on loopback (for the SRT listener).
fn free_udp_port() -> u16 {
    UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|s| s.local_addr())
        .unwrap()
        .port()
}

/// FFmpeg publishing a `colour` 320x240 15 fps picture (x264, a key frame a second) and a
/// `freq` Hz tone (AAC) in real time for at most 60 s, as `format` to `url`.
fn publish(colour: &str, freq: u32, format: &str, url: &str, log: &Path) -> Proc {
    publish_sized(colour, "320x240", freq, format, url, log)
}

fn publish_sized(colour: &str, size: &str, freq: u32, format: &str, url: &str, log: &Path) -> Proc {
    let c = Command::new("ffmpeg")
        .args(["-v", "error", "-re", "-f", "lavfi", "-i"])
        .arg(format!("color={colour}:size={size}:rate=15"))
        .args(["-re", "-f", "lavfi", "-i"])
        .arg(format!("sine=frequency={freq}:sample_rate=48000"))
        .args([
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-tune",
            "zerolatency",
        ])
        .args([
            "-g", "15", "-pix_fmt", "yuv420p", "-c:a", "aac", "-b:a", "64k",
        ])
        .args(["-t", "60", "-f", format, url])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .expect("ffmpeg");
    Proc(Some(c))
}

struct Serve {
    child: Proc,
    base: String,
    agent: ureq::Agent,
}

impl Serve {
    fn req(&self, method: &str, path: &str, body: Option<&Value>) -> (u16, Value) {
        let url = format!("{}{path}", self.base);
        let mut r = match method {
            "GET" => self.agent.get(&url).call(),
            "DELETE" => self.agent.delete(&url).call(),
            _ => self
                .agent
                .post(&url)
                .send_json(body.cloned().unwrap_or(Value::Null)),
        }
        .unwrap();
        let text = r.body_mut().read_to_string().unwrap_or_default();
        (
            r.status().as_u16(),
            serde_json::from_str(&text).unwrap_or(Value::Null),
        )
    }

    /// The serve process's open descriptors.
    fn fds(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.child.pid()))
            .unwrap()
            .count()
    }

    /// The mixer's input `input` (Null while it has none).
    fn input(&self, id: &str, input: &str) -> Value {
        let (_, v) = self.req("GET", &format!("/v1/mixers/{id}"), None);
        v["inputStates"]
            .as_array()
            .and_then(|a| a.iter().find(|s| s["input"] == input).cloned())
            .unwrap_or(Value::Null)
    }

    /// Waits (`limit` at most) until `check` holds for input `input` of mixer `id`.
    fn wait_input(
        &self,
        id: &str,
        input: &str,
        limit: Duration,
        check: impl Fn(&Value) -> bool,
    ) -> Value {
        let t0 = Instant::now();
        loop {
            let v = self.input(id, input);
            if check(&v) {
                return v;
            }
            assert!(t0.elapsed() < limit, "{input}: {v}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// `input → state` of the mixer's inputs.
    fn states(&self, id: &str) -> Vec<(String, String)> {
        let (_, v) = self.req("GET", &format!("/v1/mixers/{id}"), None);
        v["inputStates"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .iter()
            .map(|s| {
                (
                    s["input"].as_str().unwrap_or_default().to_string(),
                    s["state"].as_str().unwrap_or_default().to_string(),
                )
            })
            .collect()
    }
}

/// Per output frame, the RGB of the centre of each of the three 160x120 columns (each column
/// averaged down to one pixel).
fn column_colours(p: &Path) -> Vec<[[u8; 3]; 3]> {
    let o = Command::new("ffmpeg")
        .args(["-v", "error", "-i"])
        .arg(p)
        .args(["-map", "0:v:0", "-vf"])
        .arg("crop=480:80:0:20,format=rgb24,scale=3:1:flags=area")
        .args(["-f", "rawvideo", "-"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    o.stdout
        .chunks_exact(9)
        .map(|f| [[f[0], f[1], f[2]], [f[3], f[4], f[5]], [f[6], f[7], f[8]]])
        .collect()
}

fn is(c: [u8; 3], want: &str) -> bool {
    let [r, g, b] = c.map(i32::from);
    match want {
        // lavfi's "green" is #008000
        "red" => r > 180 && g < 70 && b < 70,
        "blue" => b > 180 && r < 70 && g < 70,
        "green" => g > 90 && r < 60 && b < 60,
        _ => false,
    }
}

/// Three cameras published (two over RTMP, one over SRT) into a mixer with no inputs: all
/// three `live` in its info, each in its column of the recording, with audio; a publish to an
/// unknown mixer (RTMP and SRT) and a second publisher of a camera are refused at once; the
/// room's end hangs up on its publishers, and the service holds no more descriptors than
/// before they came.
#[test]
fn cameras_published_over_rtmp_and_srt_are_mixed_and_refusals_are_clean() {
    let d = common::test_dir("publish", "three");
    let (rtmp, srt) = (free_port(), free_udp_port());
    let (rtmp_a, srt_a) = (format!("127.0.0.1:{rtmp}"), format!("127.0.0.1:{srt}"));
    let err = std::fs::File::create(d.join("serve.stderr")).unwrap();
    let (child, base) = common::spawn_serve(
        &d,
        false,
        &["--rtmp-listen", &rtmp_a, "--srt-listen", &srt_a],
        Stdio::from(err),
    );
    let s = Serve {
        child: Proc(Some(child)),
        base,
        agent: common::agent(),
    };
    let region = |x: u32, cam: &str| json!({"type":0,"left":x,"top":0,"width":160,"height":120,"param":{"camid":cam}});
    let body = json!({"mixerID":"room","mode":0,"videoFileCfg":{"svrPathName":"/room.mp4",
        "vWidth":480,"vHeight":120,"vFps":15,"backgroundColor":"#000000",
        "layoutConfig":[region(0,"Usr1.-1"),region(160,"Usr2.-1"),region(320,"Usr3.-1")]}});
    let (st, v) = s.req("POST", "/v1/mixers", Some(&body));
    assert_eq!(st, 201, "{v}");
    std::thread::sleep(Duration::from_millis(500));
    let fds_before = s.fds();

    let rtmp_url = |m: &str, c: &str| format!("rtmp://{rtmp_a}/live/{m}/{c}");
    let mut red = publish(
        "red",
        440,
        "flv",
        &rtmp_url("room", "Usr1.-1"),
        &d.join("red.log"),
    );
    let mut blue = publish(
        "blue",
        660,
        "flv",
        &rtmp_url("room", "Usr2.-1"),
        &d.join("blue.log"),
    );
    // SRT's access-control form of the streamid
    let mut green = publish(
        "green",
        880,
        "mpegts",
        &format!("srt://{srt_a}?streamid=#!::r=room/Usr3.-1,m=publish"),
        &d.join("green.log"),
    );
    let t0 = Instant::now();
    loop {
        let st = s.states("room");
        let live = st.iter().filter(|(_, s)| s == "live").count();
        if live == 3 {
            println!("all live after {:.1} s: {st:?}", t0.elapsed().as_secs_f64());
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(15),
            "not all live: {st:?}\n{}",
            std::fs::read_to_string(d.join("serve.stderr")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let live_at = Instant::now();

    // refused: a second publisher of Usr1.-1, a mixer that does not exist (RTMP and SRT)
    let mut refused = vec![
        (
            "second Usr1.-1",
            publish(
                "yellow",
                300,
                "flv",
                &rtmp_url("room", "Usr1.-1"),
                &d.join("dup.log"),
            ),
        ),
        (
            "unknown mixer over RTMP",
            publish(
                "yellow",
                300,
                "flv",
                &rtmp_url("nope", "Usr1.-1"),
                &d.join("nope_rtmp.log"),
            ),
        ),
        (
            "unknown mixer over SRT",
            publish(
                "yellow",
                300,
                "mpegts",
                &format!("srt://{srt_a}?streamid=live/nope/Usr1.-1"),
                &d.join("nope_srt.log"),
            ),
        ),
    ];
    for (what, p) in &mut refused {
        let st = p.wait_for(Duration::from_secs(8));
        let st = st.unwrap_or_else(|| panic!("{what}: still publishing after 8 s"));
        assert!(!st.success(), "{what}: {st}");
    }
    let dup = std::fs::read_to_string(d.join("dup.log")).unwrap();
    assert!(
        dup.contains("a publisher sends this camera already"),
        "{dup}"
    );
    let nope = std::fs::read_to_string(d.join("nope_rtmp.log")).unwrap();
    assert!(nope.contains("no mixer nope"), "{nope}");
    // the three are still live
    let st = s.states("room");
    assert_eq!(st.iter().filter(|(_, s)| s == "live").count(), 3, "{st:?}");
    assert!(!st.iter().any(|(i, _)| i.contains("nope")), "{st:?}");

    std::thread::sleep(Duration::from_secs(4).saturating_sub(live_at.elapsed()));
    let (st, v) = s.req("DELETE", "/v1/mixers/room", None);
    assert_eq!(st, 200, "{v}");
    // the room's end hangs up on the publishers (each FFmpeg then fails to write)
    let t_end = Instant::now();
    for (what, p) in [
        ("red", &mut red),
        ("blue", &mut blue),
        ("green", &mut green),
    ] {
        let st = p.wait_for(Duration::from_secs(10));
        let st = st.unwrap_or_else(|| panic!("{what}: not hung up on"));
        assert!(!st.success(), "{what}: {st}");
        println!(
            "{what} publisher ended {:.1} s after the delete",
            t_end.elapsed().as_secs_f64()
        );
    }
    // the publishers' sockets, pipes and decoders are gone (the room's files are closed too)
    let t1 = Instant::now();
    let fds_after = loop {
        let n = s.fds();
        if n <= fds_before || t1.elapsed() > Duration::from_secs(5) {
            break n;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    println!("descriptors: {fds_before} before the publishers, {fds_after} after");
    assert!(
        fds_after <= fds_before,
        "{fds_after} descriptors open, {fds_before} before the publishers"
    );

    let p = d.join("rec/room.mp4");
    let frames = column_colours(&p);
    assert!(frames.len() > 45, "{} frames", frames.len());
    // the last 2 s (the room ended while all three were live)
    let tail = &frames[frames.len() - 30..];
    let right = tail
        .iter()
        .filter(|f| is(f[0], "red") && is(f[1], "blue") && is(f[2], "green"))
        .count();
    assert!(
        right >= 25,
        "{right} of the last 30 frames show red, blue, green: {:?}",
        &tail[..3]
    );
    let audio = cloudmixer::testkit::signal::decode_audio(&p, 1);
    let last = &audio[audio.len().saturating_sub(96_000)..];
    let rms = (last.iter().map(|s| s * s).sum::<f32>() / last.len().max(1) as f32).sqrt();
    assert!(rms > 0.05, "the last 2 s of audio: rms {rms}");
}

/// A published stream over the size limit (`--max-input-size 160x120`, SRT 320x240) is dropped
/// with that error in the input's state and its publisher hung up on; a publisher that leaves
/// lets its camera go (`idle`, "the publisher left") and a later publish takes it again; one
/// that freezes is `stalled`, then hung up on.
#[test]
fn an_oversized_publish_is_dropped_and_a_camera_left_is_taken_again() {
    let d = common::test_dir("publish", "limits");
    let (rtmp, srt) = (free_port(), free_udp_port());
    let (rtmp_a, srt_a) = (format!("127.0.0.1:{rtmp}"), format!("127.0.0.1:{srt}"));
    let err = std::fs::File::create(d.join("serve.stderr")).unwrap();
    let (child, base) = common::spawn_serve(
        &d,
        false,
        &[
            "--rtmp-listen",
            &rtmp_a,
            "--srt-listen",
            &srt_a,
            "--max-input-size",
            "160x120",
        ],
        Stdio::from(err),
    );
    let s = Serve {
        child: Proc(Some(child)),
        base,
        agent: common::agent(),
    };
    let body = json!({"mixerID":"m2","mode":0,"videoFileCfg":{"svrPathName":"/m2.mp4",
        "vWidth":320,"vHeight":120,"vFps":15,"layoutConfig":[
        {"type":0,"left":0,"top":0,"width":160,"height":120,"param":{"camid":"Usr1.-1"}},
        {"type":0,"left":160,"top":0,"width":160,"height":120,"param":{"camid":"Usr2.-1"}}]}});
    let (st, v) = s.req("POST", "/v1/mixers", Some(&body));
    assert_eq!(st, 201, "{v}");
    let mut big = publish(
        "red",
        440,
        "mpegts",
        &format!("srt://{srt_a}?streamid=m2/Usr1.-1"),
        &d.join("big.log"),
    );
    let url2 = format!("rtmp://{rtmp_a}/live/m2/Usr2.-1");
    let small = publish_sized("blue", "160x120", 660, "flv", &url2, &d.join("small.log"));
    let inp = s.wait_input("m2", "Usr1.-1", Duration::from_secs(15), |v| {
        v["error"]
            .as_str()
            .is_some_and(|e| e.contains("over the limit"))
    });
    println!("{inp}");
    assert_eq!(inp["state"], "idle", "{inp}");
    assert!(
        inp["error"]
            .as_str()
            .unwrap()
            .starts_with("the stream is 320x240, over the limit of 160x120"),
        "{inp}"
    );
    assert_eq!(inp["videoFrames"], 0, "{inp}");
    assert!(
        big.wait_for(Duration::from_secs(10))
            .is_some_and(|st| !st.success()),
        "the oversized publisher was not hung up on"
    );
    s.wait_input("m2", "Usr2.-1", Duration::from_secs(15), |v| {
        v["state"] == "live"
    });
    drop(small);
    let inp = s.wait_input("m2", "Usr2.-1", Duration::from_secs(10), |v| {
        v["state"] == "idle"
    });
    assert_eq!(inp["error"], "the publisher left", "{inp}");
    let frames = inp["videoFrames"].as_u64().unwrap();
    assert!(frames > 0, "{inp}");
    // the camera is free again
    let _again = publish_sized("blue", "160x120", 660, "flv", &url2, &d.join("again.log"));
    let inp = s.wait_input("m2", "Usr2.-1", Duration::from_secs(15), |v| {
        v["state"] == "live" && v["videoFrames"].as_u64().unwrap_or(0) > frames
    });
    println!("{inp}");
    // a publisher that freezes (SIGSTOP) keeps its TCP connection: `stalled` after 1 s, hung
    // up on after the 5 s read time-out
    let frozen = publish_sized(
        "green",
        "160x120",
        880,
        "flv",
        &rtmp_url1(&rtmp_a),
        &d.join("frozen.log"),
    );
    s.wait_input("m2", "Usr1.-1", Duration::from_secs(15), |v| {
        v["state"] == "live"
    });
    let signal = |sig: &str| {
        let st = Command::new("kill")
            .args([sig, &frozen.pid().to_string()])
            .status()
            .unwrap();
        assert!(st.success());
    };
    signal("-STOP");
    let inp = s.wait_input("m2", "Usr1.-1", Duration::from_secs(5), |v| {
        v["state"] == "stalled"
    });
    println!("{inp}");
    let inp = s.wait_input("m2", "Usr1.-1", Duration::from_secs(10), |v| {
        v["state"] == "idle"
    });
    println!("{inp}");
    assert_eq!(inp["error"], "no data for 5 s", "{inp}");
    signal("-CONT");
    let (st, v) = s.req("DELETE", "/v1/mixers/m2", None);
    assert_eq!(st, 200, "{v}");
}

fn rtmp_url1(addr: &str) -> String {
    format!("rtmp://{addr}/live/m2/Usr1.-1")
}

/// SIGTERM with `--drain-timeout 2` while an RTMP and an SRT publisher are live: new
/// publishers are refused at once, the two go on through the grace (their colours are in the
/// last frames), then are hung up on before the service exits 0.
#[test]
fn a_drain_lets_publishers_run_through_the_grace_then_hangs_up() {
    let d = common::test_dir("publish", "drain");
    let (rtmp, srt) = (free_port(), free_udp_port());
    let (rtmp_a, srt_a) = (format!("127.0.0.1:{rtmp}"), format!("127.0.0.1:{srt}"));
    let err = std::fs::File::create(d.join("serve.stderr")).unwrap();
    let (child, base) = common::spawn_serve(
        &d,
        false,
        &[
            "--rtmp-listen",
            &rtmp_a,
            "--srt-listen",
            &srt_a,
            "--drain-timeout",
            "2",
        ],
        Stdio::from(err),
    );
    let mut s = Serve {
        child: Proc(Some(child)),
        base,
        agent: common::agent(),
    };
    let body = json!({"mixerID":"m3","mode":0,"videoFileCfg":{"svrPathName":"/m3.mp4",
        "vWidth":320,"vHeight":120,"vFps":15,"layoutConfig":[
        {"type":0,"left":0,"top":0,"width":160,"height":120,"param":{"camid":"Usr1.-1"}},
        {"type":0,"left":160,"top":0,"width":160,"height":120,"param":{"camid":"Usr2.-1"}}]}});
    let (st, v) = s.req("POST", "/v1/mixers", Some(&body));
    assert_eq!(st, 201, "{v}");
    let mut red = publish_sized(
        "red",
        "160x120",
        440,
        "flv",
        &format!("rtmp://{rtmp_a}/live/m3/Usr1.-1"),
        &d.join("red.log"),
    );
    let mut blue = publish_sized(
        "blue",
        "160x120",
        660,
        "mpegts",
        &format!("srt://{srt_a}?streamid=live/m3/Usr2.-1"),
        &d.join("blue.log"),
    );
    for cam in ["Usr1.-1", "Usr2.-1"] {
        s.wait_input("m3", cam, Duration::from_secs(15), |v| v["state"] == "live");
    }
    std::thread::sleep(Duration::from_secs(1));
    let st = Command::new("kill")
        .args(["-TERM", &s.child.pid().to_string()])
        .status()
        .unwrap();
    assert!(st.success());
    let t0 = Instant::now();
    // a new publisher is refused
    std::thread::sleep(Duration::from_millis(500));
    let mut late = publish_sized(
        "green",
        "160x120",
        880,
        "flv",
        &format!("rtmp://{rtmp_a}/live/m3/Usr3.-1"),
        &d.join("late.log"),
    );
    let late_st = late.wait_for(Duration::from_secs(5));
    assert!(late_st.is_some_and(|st| !st.success()), "{late_st:?}");
    let st = s.child.wait_for(Duration::from_secs(20));
    let grace = t0.elapsed();
    assert!(st.is_some_and(|st| st.success()), "serve: {st:?}");
    assert!(grace >= Duration::from_secs(2), "{grace:?}");
    for (what, p) in [("rtmp", &mut red), ("srt", &mut blue)] {
        let st = p.wait_for(Duration::from_secs(2));
        assert!(
            st.is_some_and(|st| !st.success()),
            "the {what} publisher was not hung up on: {st:?}"
        );
    }
    let o = Command::new("ffmpeg")
        .args(["-v", "error", "-i"])
        .arg(d.join("rec/m3.mp4"))
        .args(["-map", "0:v:0", "-vf"])
        .arg("crop=320:80:0:20,format=rgb24,scale=2:1:flags=area")
        .args(["-f", "rawvideo", "-"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let frames: Vec<&[u8]> = o.stdout.chunks_exact(6).collect();
    assert!(frames.len() > 45, "{} frames", frames.len());
    // the grace's last second still shows both publishers
    let right = frames[frames.len() - 15..]
        .iter()
        .filter(|f| is([f[0], f[1], f[2]], "red") && is([f[3], f[4], f[5]], "blue"))
        .count();
    assert!(right >= 12, "{right} of the last 15 frames show both");
}

/// With `--publish-key-file`, an RTMP or SRT publish without the key, or with another, is
/// refused (the publisher exits with an error, nothing of it reaches the mixer), and one with
/// the key is taken; the key appears in no answer and nowhere in the service's stderr.
#[test]
fn a_publish_key_is_asked_of_rtmp_and_srt_publishers() {
    const KEY: &str = "pk-0123456789abcdef";
    let d = common::test_dir("publish", "key");
    let (rtmp, srt) = (free_port(), free_udp_port());
    let (rtmp_a, srt_a) = (format!("127.0.0.1:{rtmp}"), format!("127.0.0.1:{srt}"));
    let key_file = d.join("publish.key");
    std::fs::write(&key_file, format!("{KEY}\n")).unwrap();
    // a key file that is not a key is a usage error naming the flag
    let bad = d.join("bad.key");
    std::fs::write(&bad, "short").unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_cloudmixer"))
        .args(["serve", "--listen", "127.0.0.1:0", "--storage"])
        .arg(d.join("bad"))
        .arg("--publish-key-file")
        .arg(&bad)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(
        e.contains("--publish-key-file") && e.contains("16 to 256"),
        "{e}"
    );
    let err_path = d.join("serve.stderr");
    let (child, base) = common::spawn_serve(
        &d,
        false,
        &[
            "--rtmp-listen",
            &rtmp_a,
            "--srt-listen",
            &srt_a,
            "--publish-key-file",
            key_file.to_str().unwrap(),
        ],
        Stdio::from(std::fs::File::create(&err_path).unwrap()),
    );
    let s = Serve {
        child: Proc(Some(child)),
        base,
        agent: common::agent(),
    };
    let body = json!({"mixerID":"k1","mode":0,"videoFileCfg":{"svrPathName":"/k1.mp4",
        "vWidth":320,"vHeight":120,"vFps":15,"layoutConfig":[
        {"type":0,"left":0,"top":0,"width":160,"height":120,"param":{"camid":"Usr1.-1"}},
        {"type":0,"left":160,"top":0,"width":160,"height":120,"param":{"camid":"Usr2.-1"}}]}});
    let (st, v) = s.req("POST", "/v1/mixers", Some(&body));
    assert_eq!(st, 201, "{v}");
    let refused = [
        ("flv", format!("rtmp://{rtmp_a}/live/k1/Usr1.-1")),
        (
            "flv",
            format!("rtmp://{rtmp_a}/live/k1/Usr1.-1?key=pk-wrong-wrong-wrong"),
        ),
        ("mpegts", format!("srt://{srt_a}?streamid=live/k1/Usr2.-1")),
        (
            "mpegts",
            format!("srt://{srt_a}?streamid=#!::r=k1/Usr2.-1,m=publish,s=pk-wrong-wrong-wrong"),
        ),
    ];
    for (i, (fmt, url)) in refused.iter().enumerate() {
        let mut p = publish("red", 440, fmt, url, &d.join(format!("refused{i}.log")));
        assert!(
            p.wait_for(Duration::from_secs(10))
                .is_some_and(|st| !st.success()),
            "{url}: not refused"
        );
    }
    assert!(s.states("k1").is_empty(), "{:?}", s.states("k1"));
    let _r = publish(
        "blue",
        440,
        "flv",
        &format!("rtmp://{rtmp_a}/live/k1/Usr1.-1?key={KEY}"),
        &d.join("rtmp.log"),
    );
    let _s = publish(
        "green",
        660,
        "mpegts",
        &format!("srt://{srt_a}?streamid=#!::r=k1/Usr2.-1,m=publish,s={KEY}"),
        &d.join("srt.log"),
    );
    for cam in ["Usr1.-1", "Usr2.-1"] {
        s.wait_input("k1", cam, Duration::from_secs(15), |v| {
            v["state"] == "live" && v["videoFrames"].as_u64().unwrap_or(0) > 0
        });
    }
    let (_, info) = s.req("GET", "/v1/mixers/k1", None);
    let (st, v) = s.req("DELETE", "/v1/mixers/k1", None);
    assert_eq!(st, 200, "{v}");
    drop(s);
    let stderr = std::fs::read_to_string(&err_path).unwrap();
    assert!(
        stderr.contains("wrong publish key") && stderr.contains("no publish key given"),
        "the refusals are logged: {stderr}"
    );
    for text in [info.to_string(), v.to_string(), stderr] {
        assert!(!text.contains(KEY), "the key leaked: {text}");
    }
}
