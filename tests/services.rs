//! Issue 21, the host layer: one `Services` set per `Host`, handed to every room; a mixer
//! created without one gets a set of its own. No process statics: what two mixers share is
//! what they were given.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use cloudmixer::host::{CreateRoom, Host, HostSettings};
use cloudmixer::model::buffer::PlaneData;
use cloudmixer::pipeline::Services;
use cloudmixer::prelude::*;
use serde_json::json;

fn dir(name: &str) -> PathBuf {
    let d = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("services")
        .join(name);
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn room_config(file: &str) -> serde_json::Value {
    json!({"mode":0,"videoFileCfg":{"svrPathName":file,
        "vWidth":64,"vHeight":48,"vFps":15,"layoutConfig":[
            {"type":0,"left":0,"top":0,"width":64,"height":48,"param":{"camid":"u1.0"}}]}})
}

fn create(host: &Host, id: &str) -> Arc<Mixer> {
    host.create(CreateRoom {
        mixer_id: Some(id.into()),
        config: room_config(&format!("{id}.mp4")),
        inputs: vec![],
    })
    .unwrap();
    host.mixer(id).unwrap()
}

/// A 16x16 grey I420 frame lent with a release callback that reports the thread it ran on.
fn lent(tx: &crossbeam_channel::Sender<String>) -> VideoFrame {
    let (ys, cs) = (16 * 16, 8 * 8);
    let buf = vec![128u8; ys + 2 * cs].into_boxed_slice();
    let (ptr, len) = (buf.as_ptr(), buf.len());
    let tx = tx.clone();
    // SAFETY: `buf` moves into the callback: alive and unchanged until it runs
    let whole = unsafe {
        PlaneData::from_raw(ptr, len, move || {
            drop(buf);
            let name = std::thread::current().name().unwrap_or("").to_string();
            let _ = tx.send(name);
        })
    };
    VideoFrame::i420_shared(
        16,
        16,
        whole.slice(0..ys).unwrap(),
        whole.slice(ys..ys + cs).unwrap(),
        whole.slice(ys + cs..len).unwrap(),
    )
    .unwrap()
}

/// Two rooms of one host run on the host's services (one releaser: frames of both rooms go
/// back on one `cm-release` thread); two bare mixers each have their own set.
#[test]
fn rooms_of_a_host_share_its_services_and_bare_mixers_have_their_own() {
    let root = dir("host");
    let mut settings = HostSettings::new(&root);
    settings.mixer.backend = Backend::Cpu;
    let host = Host::new(settings);
    let (a, b) = (create(&host, "a"), create(&host, "b"));
    assert_eq!(a.services(), host.services());
    assert_eq!(b.services(), host.services());
    assert!(a.services().releaser().same(b.services().releaser()));

    // each room lets go of the frames a newer one replaced: both on the host's releaser
    let (tx, rx) = crossbeam_channel::unbounded();
    for _ in 0..3 {
        a.push_video("u1.0", lent(&tx)).unwrap();
        b.push_video("u1.0", lent(&tx)).unwrap();
    }
    host.destroy("a").unwrap();
    host.destroy("b").unwrap();
    drop((a, b));
    assert!(host.services().releaser().started());
    // no text item in the layout, no GPU room: no font loaded, no adapter opened
    assert!(!host.services().fonts().loaded());
    #[cfg(feature = "gpu")]
    assert!(host.services().renderer().is_none());
    let threads: Vec<String> = rx.try_iter().collect();
    assert_eq!(threads.len(), 6, "every lent frame went back: {threads:?}");
    assert!(threads.iter().all(|t| t == "cm-release"), "{threads:?}");

    // bare mixers: a set each, unless given one
    let store = Storage::new(dir("bare"));
    let cfg = |f: &str| MixerConfig::from_value(room_config(f)).unwrap();
    let offline = || MixerSettings {
        backend: Backend::Cpu,
        ..MixerSettings::offline()
    };
    let mut m1 = Mixer::create_with(cfg("m1.mp4"), store.clone(), offline()).unwrap();
    let mut m2 = Mixer::create_with(cfg("m2.mp4"), store.clone(), offline()).unwrap();
    assert_ne!(m1.services(), m2.services());
    assert!(!m1.services().releaser().same(m2.services().releaser()));
    assert_ne!(m1.services(), host.services());
    let shared = Services::new();
    let with = || MixerSettings {
        services: Some(shared.clone()),
        ..offline()
    };
    let mut m3 = Mixer::create_with(cfg("m3.mp4"), store.clone(), with()).unwrap();
    let mut m4 = Mixer::create_with(cfg("m4.mp4"), store.clone(), with()).unwrap();
    assert_eq!(m3.services(), &shared);
    assert_eq!(m4.services(), &shared);
    for m in [&mut m1, &mut m2, &mut m3, &mut m4] {
        m.destroy().unwrap();
    }
}

/// The rooms of a host compose on one GPU renderer (one batch queue for all), seen in the
/// host's stats; a CPU room opens no GPU at all; two bare GPU mixers get a renderer each.
#[cfg(feature = "gpu")]
#[test]
fn rooms_of_a_host_compose_on_one_gpu_renderer() {
    let require = std::env::var("CLOUDMIXER_REQUIRE_GPU").is_ok_and(|v| v == "1");
    // a CPU room: nothing opened
    let cpu_host = Host::new(HostSettings {
        mixer: MixerSettings {
            backend: Backend::Cpu,
            ..MixerSettings::default()
        },
        ..HostSettings::new(dir("cpu"))
    });
    let c = create(&cpu_host, "c");
    assert!(cpu_host.services().renderer().is_none());
    assert!(!cpu_host.stats().services.gpu_open);
    drop(c);
    cpu_host.destroy("c").unwrap();

    // the renderer waits up to 50 ms for every room's frame (default 3 ms)
    std::env::set_var("CLOUDMIXER_BATCH_GATHER_US", "50000");
    let host = Host::new(HostSettings {
        mixer: MixerSettings {
            backend: Backend::Gpu,
            ..MixerSettings::default()
        },
        ..HostSettings::new(dir("gpu"))
    });
    let first = host.create(CreateRoom {
        mixer_id: Some("g1".into()),
        config: room_config("g1.mp4"),
        inputs: vec![],
    });
    if let Err(e) = first {
        assert!(!require, "CLOUDMIXER_REQUIRE_GPU=1 but no GPU room: {e}");
        eprintln!("note: skipping the GPU host test, no GPU adapter: {e}");
        return;
    }
    let g2 = create(&host, "g2");
    let r = host
        .services()
        .renderer()
        .expect("opened by the first GPU room");
    assert_eq!(r.compositors(), 2, "both rooms on the host's one renderer");
    // both rooms get a new frame every 20 ms (each tick has GPU work): their ticks, at their
    // own phases, meet in the renderer's gather window (50 ms here) and go in one submission
    let g1 = host.mixer("g1").unwrap();
    for n in 0..50u8 {
        for m in [&g1, &g2] {
            let f = VideoFrame::solid_i420(16, 16, [n.wrapping_mul(5), 90, 240]).unwrap();
            m.push_video("u1.0", f).unwrap();
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let st = host.stats().services;
    assert!(st.gpu_open);
    assert_eq!(st.gpu_compositors, 2);
    assert!(st.gpu_frames > 0 && st.gpu_batches > 0, "{st:?}");
    assert_eq!(
        r.stats().max_batch,
        2,
        "the two rooms' frames in one batch: {st:?}"
    );
    assert!(st.gpu_batches < st.gpu_frames, "{st:?}");
    drop((g1, g2));
    host.destroy("g1").unwrap();
    host.destroy("g2").unwrap();
    assert_eq!(r.compositors(), 0, "the rooms' compositors are gone");

    // bare mixers on the GPU: a renderer each
    let store = Storage::new(dir("gpu-bare"));
    let gpu = || MixerSettings {
        backend: Backend::Gpu,
        ..MixerSettings::offline()
    };
    let cfg = |f: &str| MixerConfig::from_value(room_config(f)).unwrap();
    let mut m1 = Mixer::create_with(cfg("m1.mp4"), store.clone(), gpu()).unwrap();
    let mut m2 = Mixer::create_with(cfg("m2.mp4"), store.clone(), gpu()).unwrap();
    let (r1, r2) = (
        m1.services().renderer().unwrap(),
        m2.services().renderer().unwrap(),
    );
    assert!(!Arc::ptr_eq(&r1, &r2));
    assert_eq!((r1.compositors(), r2.compositors()), (1, 1));
    m1.destroy().unwrap();
    m2.destroy().unwrap();
}
