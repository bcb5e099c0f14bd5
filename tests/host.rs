//! The host in-process (CPU backend, small canvas): ended rooms keep their final info and
//! let go of their mixers; mode 1 rooms record one file per stream.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use cloudmixer::compose::Backend;
use cloudmixer::host::{CreateRoom, Host, HostSettings};
use cloudmixer::model::events::OutputState;
use serde_json::{json, Value};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

fn dir(name: &str) -> PathBuf {
    let d = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("host")
        .join(name);
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn host(storage: &Path) -> Host {
    let mut s = HostSettings::new(storage);
    s.media_root = Some(format!("{ROOT}/fixtures/clips").into());
    s.mixer.backend = Backend::Cpu;
    Host::new(s)
}

fn tiny(svr: &str) -> Value {
    json!({"mode":0,"videoFileCfg":{"svrPathName":svr,"vWidth":160,"vHeight":120,"vFps":15,
        "layoutConfig":[{"type":0,"left":0,"top":0,"width":160,"height":120,"param":{"camid":"Usr1.-1"}}]}})
}

fn frames(p: &Path) -> u64 {
    let o = Command::new("ffprobe")
        .args(["-v", "error", "-count_frames", "-select_streams", "v:0"])
        .args(["-show_entries", "stream=nb_read_frames", "-of", "csv=p=0"])
        .arg(p)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8_lossy(&o.stdout).trim().parse().unwrap()
}

/// Waits until `f` holds, for up to 10 s.
fn eventually(what: &str, f: impl Fn() -> bool) {
    let until = Instant::now() + Duration::from_secs(10);
    while !f() {
        assert!(Instant::now() < until, "{what}: not within 10 s");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Rooms created and destroyed one after the other: each ended room still answers `get` and
/// `list` with its final outputs, and its mixer (threads, buffers, encoder) is gone.
#[test]
fn ended_rooms_keep_their_final_info_and_free_their_mixer() {
    let d = dir("ended");
    let h = host(&d);
    let mut weak = Vec::new();
    for i in 0..6 {
        let id = h
            .create(CreateRoom {
                mixer_id: Some(format!("r{i}")),
                config: tiny(&format!("/r{i}.mp4")),
                inputs: vec![("Usr1.-1".into(), "cam1_640x480_15.mp4".into())],
            })
            .unwrap();
        let m = h.mixer(&id).unwrap();
        eventually("a tick", || m.ticks() > 2);
        weak.push(Arc::downgrade(&m));
        drop(m);
        let outs = h.destroy(&id).unwrap();
        assert_eq!(outs.len(), 1);
        assert_eq!(outs[0].state, OutputState::Stopped);
        let info = h.get(&id).unwrap();
        assert_eq!(info.state, 0);
        assert_eq!(info.outputs, outs, "get answers with the final outputs");
        assert!(info.stats.ticks > 2);
        assert_eq!(info.encoder, "libx264");
        // the mixer is no longer handed out, and the host let go of it
        assert!(h.mixer(&id).is_err());
        assert!(h.update(&id, &json!({})).is_err());
        let w = weak.last().unwrap().clone();
        eventually("the ended room's mixer dropped", move || {
            w.strong_count() == 0
        });
        assert!(frames(&d.join(format!("r{i}.mp4"))) > 2);
    }
    assert!(weak.iter().all(|w| w.upgrade().is_none()));
    let list = h.list();
    assert_eq!(list.len(), 6);
    assert!(list.iter().all(|r| r.state == 0 && r.outputs.len() == 1));
    assert_eq!(h.stats().rooms_by_state[0], 6);
    // destroying an ended room again answers with its final outputs
    assert_eq!(h.destroy("r0").unwrap(), h.get("r0").unwrap().outputs);
}

/// A room that ends on its own (its maximum duration) lets go of its mixer too.
#[test]
fn a_room_that_ends_on_its_own_frees_its_mixer() {
    let d = dir("own");
    let mut s = HostSettings::new(&d);
    s.media_root = Some(format!("{ROOT}/fixtures/clips").into());
    s.mixer.backend = Backend::Cpu;
    s.mixer.max_duration = Duration::from_secs(1);
    let h = Host::new(s);
    let id = h
        .create(CreateRoom {
            mixer_id: None,
            config: tiny("/own.mp4"),
            inputs: vec![("Usr1.-1".into(), "cam1_640x480_15.mp4".into())],
        })
        .unwrap();
    let w = Arc::downgrade(&h.mixer(&id).unwrap());
    eventually("the room ended and let go of its mixer", || {
        w.strong_count() == 0
    });
    let info = h.get(&id).unwrap();
    assert_eq!(info.state, 0);
    assert_eq!(info.outputs.len(), 1);
    assert_eq!(info.outputs[0].state, OutputState::Stopped);
}

/// The files in `d` whose names start with `prefix` and end with `suffix`.
fn files_like(d: &Path, prefix: &str, suffix: &str) -> Vec<PathBuf> {
    std::fs::read_dir(d)
        .map(|r| {
            r.map(|e| e.unwrap().path())
                .filter(|p| {
                    let n = p.file_name().unwrap().to_string_lossy();
                    n.starts_with(prefix) && n.ends_with(suffix)
                })
                .collect()
        })
        .unwrap_or_default()
}

/// A mode 1 room fed by two files: one video file per camera and one audio file per user,
/// named by the vendor's per-stream rule, each playable; the room takes no update, and
/// get/list/stats/events report it like any room.
#[test]
fn a_mode_1_room_records_one_file_per_stream() {
    let d = dir("mode1");
    let h = host(&d);
    let (_, events) = h.subscribe(None);
    let cfg = json!({"mode": 1, "roomId": "888", "nicknames": {"u1": "Ann"},
        "videoFileCfg": {"svrPath": "/room", "svrFileNameSuffix": ".mp4",
            "subscribeVideos": ["_cr_all_"]},
        "audioFileCfg": {"svrPath": "/room", "svrFileNameSuffix": ".mp3",
            "subscribeAudios": ["_cr_all_"]}});
    let id = h
        .create(CreateRoom {
            mixer_id: Some("m1".into()),
            config: cfg,
            inputs: vec![
                ("u1.0".into(), "cam9_320x240_15.mp4".into()),
                ("u2.0".into(), "cam8_480x270_30.mp4".into()),
            ],
        })
        .unwrap();
    assert_eq!(h.get(&id).unwrap().state, 2);
    let e = h.update(&id, &json!({"videoFileCfg": {"layoutConfig": []}}));
    let e = e.unwrap_err();
    assert_eq!(e.code(), 5, "{e}");
    assert!(e.to_string().contains("mode 1"), "{e}");
    assert!(h.mixer(&id).is_err());
    let room = d.join("room");
    eventually("four stream files started", || {
        files_like(&room, "", "").len() == 4
    });
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(h.stats().rooms_by_state[2], 1);
    let outs = h.destroy(&id).unwrap();
    assert_eq!(outs.len(), 4, "{outs:?}");
    assert!(
        outs.iter().all(|o| o.state == OutputState::Stopped),
        "{outs:?}"
    );
    let info = h.get(&id).unwrap();
    assert_eq!((info.state, info.err_code), (0, 0));
    assert_eq!(info.outputs, outs);
    assert_eq!(h.list().len(), 1);
    for (prefix, suffix, fps) in [("Ann_cam0_888_", ".mp4", 15), ("u2_cam0_888_", ".mp4", 30)] {
        let f = files_like(&room, prefix, suffix);
        assert_eq!(f.len(), 1, "{prefix}*{suffix}: {f:?}");
        let n = frames(&f[0]);
        // about 2 s or more of the camera at its own rate
        assert!(n >= fps, "{}: {n} frames", f[0].display());
    }
    for prefix in ["Ann_888_", "u2_888_"] {
        assert_eq!(files_like(&room, prefix, ".mp3").len(), 1, "{prefix}*.mp3");
    }
    // the host's stream: STARTING once, RUNNING, the files' infos, STOPPING, NULL
    let evs: Vec<_> = events.try_iter().filter(|e| &*e.mixer_id == "m1").collect();
    let states: Vec<i64> = evs
        .iter()
        .filter(|e| e.name() == "stateChanged")
        .map(|e| e.to_json()["state"].as_i64().unwrap())
        .collect();
    assert_eq!(states, [1, 2, 4, 0], "{evs:?}");
    assert!(evs.iter().any(|e| e.name() == "outputInfoChanged"));
}

/// An offline room (the C ABI's `realtime` 0): no file inputs, its caller pushes frames and
/// advances the clock; exactly the frames advanced are recorded, and the room ends as any.
#[test]
fn an_offline_room_is_driven_by_its_caller() {
    use cloudmixer::model::frame::VideoFrame;
    use cloudmixer::model::time::PaceMode;
    let d = dir("offline");
    let h = host(&d);
    let refused = h.create_with(
        CreateRoom {
            mixer_id: None,
            config: tiny("/x.mp4"),
            inputs: vec![("Usr1.-1".into(), "cam1_640x480_15.mp4".into())],
        },
        PaceMode::Offline,
    );
    assert_eq!(refused.unwrap_err().code(), 5);
    let id = h
        .create_with(
            CreateRoom {
                mixer_id: Some("off".into()),
                config: tiny("/off.mp4"),
                inputs: vec![],
            },
            PaceMode::Offline,
        )
        .unwrap();
    let m = h.mixer(&id).unwrap();
    for n in 0..30u64 {
        let f = VideoFrame::solid_i420(160, 120, [(40 + n * 5) as u8, 128, 128]).unwrap();
        m.push_video("Usr1.-1", f).unwrap();
        m.advance_frames(n + 1).unwrap();
    }
    drop(m);
    let outs = h.destroy(&id).unwrap();
    assert_eq!(outs[0].state, OutputState::Stopped);
    assert_eq!(frames(&d.join("off.mp4")), 30);
    assert_eq!(h.get(&id).unwrap().stats.ticks, 30);
}

/// Publishers take cameras of a running room: an unknown mixer, a camera the room's inputs
/// feed, a second publisher of a camera and a bad camid are refused; the publisher's frames
/// reach the mixer; letting go makes the input `idle` (with an event) and a new publisher may
/// take it again.
#[test]
fn publishers_take_cameras_of_a_running_room() {
    use cloudmixer::host::feed::pull::InputState;
    use cloudmixer::host::{ErrorKind, HostError};
    use cloudmixer::model::frame::VideoFrame;
    let d = dir("publish");
    let h = host(&d);
    let id = h
        .create(CreateRoom {
            mixer_id: Some("pub".into()),
            config: json!({"mode":0,"videoFileCfg":{"svrPathName":"/pub.mp4","vWidth":160,
                "vHeight":120,"vFps":15,"layoutConfig":[
                {"type":0,"left":0,"top":0,"width":80,"height":120,"param":{"camid":"Usr1.-1"}},
                {"type":0,"left":80,"top":0,"width":80,"height":120,"param":{"camid":"Usr2.-1"}}]}}),
            inputs: vec![("Usr1.-1".into(), "cam1_640x480_15.mp4".into())],
        })
        .unwrap();
    let (_, rx) = h.subscribe(None);
    let e = h
        .publish("nope", "Usr2.-1", "rtmp://127.0.0.1:1")
        .unwrap_err();
    assert!(matches!(e, HostError::NotFound(_)), "{e}");
    let e = h.publish(&id, "Usr1.-1", "rtmp://127.0.0.1:1").unwrap_err();
    assert_eq!(
        (e.kind(), e.to_string().as_str()),
        (
            ErrorKind::Conflict,
            "pub/Usr1.-1: the mixer's inputs feed this camera"
        )
    );
    for bad in ["Usr2", "", "a/b.-1", "Usr2.-1\n"] {
        let e = h.publish(&id, bad, "x").unwrap_err();
        assert!(e.to_string().starts_with("camid: "), "{bad:?}: {e}");
    }
    let p = h
        .publish(&id, "Usr2.-1", "rtmp://u:secret@127.0.0.1:5/live")
        .unwrap();
    assert_eq!(p.spec().video.as_deref(), Some("Usr2.-1"));
    assert_eq!(p.spec().audio.as_deref(), Some("Usr2"));
    let e = h.publish(&id, "Usr2.-1", "srt://127.0.0.1:6").unwrap_err();
    assert_eq!(
        e.to_string(),
        "pub/Usr2.-1: a publisher sends this camera already"
    );
    assert_eq!(e.code(), 906);
    let st = h.get(&id).unwrap().input_states;
    assert_eq!(st.len(), 1);
    assert_eq!(
        (st[0].input.as_str(), st[0].state),
        ("Usr2.-1", InputState::Connecting)
    );
    assert!(!st[0].url.contains("secret"), "{}", st[0].url);
    // a green frame through the publication reaches the mixer's source
    let t = p.target();
    let green = VideoFrame::solid_i420(64, 48, [150, 44, 21]).unwrap();
    for _ in 0..5 {
        t.push_video_at("Usr2.-1", green.clone(), t.clock_now())
            .unwrap();
        std::thread::sleep(Duration::from_millis(70));
    }
    let m = h.mixer(&id).unwrap();
    eventually("the published camera's frames counted", || {
        m.source_stats()
            .iter()
            .any(|s| s.camid == "Usr2.-1" && s.received > 0)
    });
    drop(p);
    assert_eq!(h.get(&id).unwrap().input_states[0].state, InputState::Idle);
    let states: Vec<String> = rx
        .try_iter()
        .filter_map(|e| {
            let v = e.to_json();
            (v["event"] == "inputStateChanged").then(|| v["state"].as_str().unwrap().to_string())
        })
        .collect();
    assert_eq!(states, ["connecting", "idle"]);
    // taken again by a new publisher
    let p2 = h.publish(&id, "Usr2.-1", "whip://127.0.0.1:7").unwrap();
    assert_eq!(p2.input().stats().state, InputState::Connecting);
    drop(p2);
    // a draining host takes no new publisher (the room still records through the grace)
    let drainer = {
        let h = h.clone();
        std::thread::spawn(move || h.drain(Duration::from_secs(2)))
    };
    eventually("draining", || h.draining());
    let e = h.publish(&id, "Usr2.-1", "x").unwrap_err();
    assert_eq!(
        (e.kind(), e.code(), e.to_string().as_str()),
        (
            ErrorKind::Unavailable,
            907,
            "pub/Usr2.-1: the service is draining: no new publishers"
        )
    );
    assert_eq!(h.get(&id).unwrap().state, 2, "the room records on");
    drainer.join().unwrap();
    let e = h.publish(&id, "Usr2.-1", "x").unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Conflict, "{e}");
}
