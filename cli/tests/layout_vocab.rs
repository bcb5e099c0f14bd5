//! The layout vocabulary as a user sees it in recordings and snapshots: timestamps, a camera
//! that stops and comes back behind its placeholder, a phone clip with a rotate tag.
//! Default mixer settings (CPU backend so that the checks do not depend on an adapter).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, UNIX_EPOCH};

use cloudmixer::compose::Backend;
use cloudmixer::media::decode::Decoder;
use cloudmixer::model::config::MixerConfig;
use cloudmixer::model::frame::{Rotation, VideoFrame};
use cloudmixer::model::time::PaceMode;
use cloudmixer::output::Storage;
use cloudmixer::pipeline::{Mixer, MixerSettings};
use cloudmixer::testkit::{each_frame, yuv_of, PALETTE};
use serde_json::json;

// the repository root (fixtures/, scripts/): this crate is cli/
const ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
const BIN: &str = env!("CARGO_BIN_EXE_cloudmixer");

fn dir(name: &str) -> PathBuf {
    let d = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("layout_vocab")
        .join(name);
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn offline() -> MixerSettings {
    MixerSettings {
        backend: Backend::Cpu,
        mode: PaceMode::Offline,
        ..Default::default()
    }
}

fn close(a: [u8; 3], b: [u8; 3], tol: i32) -> bool {
    a.iter()
        .zip(b)
        .all(|(x, y)| (*x as i32 - y as i32).abs() <= tol)
}

/// Luma of a decoded I420 frame inside a rectangle, row by row.
fn luma(f: &VideoFrame, x: u32, y: u32, w: u32, h: u32) -> Vec<u8> {
    let p = &f.planes()[0];
    (y..y + h)
        .flat_map(|r| p.data[r as usize * p.stride + x as usize..][..w as usize].to_vec())
        .collect()
}

/// Pixels that differ by more than coding noise.
fn changed(a: &[u8], b: &[u8]) -> usize {
    a.iter()
        .zip(b)
        .filter(|(x, y)| (**x as i32 - **y as i32).abs() > 24)
        .count()
}

#[test]
fn the_timestamp_changes_at_the_second_and_not_within_it() {
    let d = dir("timestamp");
    let cfg = json!({"mode":0,"videoFileCfg":{"svrPathName":"ts.mp4","vWidth":320,"vHeight":96,
        "vFps":10,"layoutConfig":[
            {"type":0,"left":0,"top":0,"width":320,"height":96,"param":{"camid":"cam"}},
            {"type":10,"left":8,"top":8,"width":1,"height":1,"param":{"text":"%timestamp%"}}]}});
    let settings = MixerSettings {
        // the first frame at a whole second, so t = 1.0 s is a second boundary
        start_time: Some(UNIX_EPOCH + Duration::from_secs(1_700_000_000)),
        ..offline()
    };
    let mut m = Mixer::create_with(
        MixerConfig::from_value(cfg).unwrap(),
        Storage::new(&d),
        settings,
    )
    .unwrap();
    m.push_video("cam", VideoFrame::solid_i420(64, 32, PALETTE[0]).unwrap())
        .unwrap();
    m.advance_to(Duration::from_secs(2)).unwrap();
    m.destroy().unwrap();
    let mut boxes = Vec::new();
    let (n, err) = each_frame(&d.join("ts.mp4"), |i, f| {
        if [9, 11, 19].contains(&i) {
            // the default 18 px box: "2023-11-14 22:13:20" is ≈ 170 x 30 px at (8, 8)
            boxes.push(luma(f, 8, 8, 180, 32));
        }
    });
    assert_eq!((n, err), (20, None));
    let (a, b, c) = (&boxes[0], &boxes[1], &boxes[2]);
    // "…:20" → "…:21": one digit's glyph pixels change
    let (ab, bc) = (changed(a, b), changed(b, c));
    assert!(ab > 20, "t = 0.9 s vs 1.1 s: {ab} pixels changed");
    assert_eq!(bc, 0, "t = 1.1 s vs 1.9 s: {bc} pixels changed");
    // text pixels are bright (white glyphs), the box darkens the camera
    assert!(b.iter().any(|&y| y > 200));
}

/// A PNG file's bytes: a `w`x`h` RGB picture of one colour.
fn png_bytes(w: u32, h: u32, rgb: [u8; 3]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut enc = png::Encoder::new(&mut out, w, h);
    enc.set_color(png::ColorType::Rgb);
    enc.set_depth(png::BitDepth::Eight);
    let mut wr = enc.write_header().unwrap();
    wr.write_image_data(&rgb.repeat((w * h) as usize)).unwrap();
    wr.finish().unwrap();
    out
}

#[test]
fn a_silent_camera_shows_its_placeholder_and_comes_back() {
    let d = dir("placeholder");
    let cfg = json!({"mode":0,"videoFileCfg":{"svrPathName":"ph.mp4","vWidth":128,"vHeight":64,
        "vFps":10,"layoutConfig":[
            {"type":0,"left":0,"top":0,"width":64,"height":64,"param":{"camid":"u1.0","placeholder":"off"}},
            {"type":0,"left":64,"top":0,"width":64,"height":64,"param":{"camid":"u2.0"}}]}});
    let mut m = Mixer::create_with(
        MixerConfig::from_value(cfg).unwrap(),
        Storage::new(&d),
        offline(),
    )
    .unwrap();
    // "camera off" card from PNG bytes (BT.709 of RGB 200, 40, 160)
    m.register_picture_bytes("off", &png_bytes(32, 32, [200, 40, 160]))
        .unwrap();
    // tagged BT.709, the output's space: the colours come out as they went in
    let cam = |c: usize| {
        VideoFrame::solid_i420(32, 32, PALETTE[c])
            .unwrap()
            .with_color(cloudmixer::model::color::ColorSpace::BT709_LIMITED)
    };
    // u1 sends for 1 s, stops (the 2 s timeout passes at 3 s), sends again from 4.5 s
    for i in 0..10u32 {
        m.push_video("u1.0", cam(0)).unwrap();
        m.push_video("u2.0", cam(1)).unwrap();
        m.advance_to(Duration::from_millis(100 * (i as u64 + 1)))
            .unwrap();
    }
    m.advance_to(Duration::from_millis(4500)).unwrap();
    for i in 45..60u32 {
        m.push_video("u1.0", cam(0)).unwrap();
        m.advance_to(Duration::from_millis(100 * (i as u64 + 1)))
            .unwrap();
    }
    m.destroy().unwrap();
    let card = cloudmixer::model::color::rgb_to_yuv709_limited([200, 40, 160]);
    let mut seen = Vec::new();
    let (n, err) = each_frame(&d.join("ph.mp4"), |i, f| {
        if [5, 25, 35, 55].contains(&i) {
            seen.push((i, yuv_of(f, 32, 32).unwrap(), yuv_of(f, 96, 32).unwrap()));
        }
    });
    assert_eq!((n, err), (60, None));
    let want = [
        (5, PALETTE[0], "camera"),
        (25, PALETTE[0], "within the timeout: the last frame"),
        (35, card, "after the timeout: the placeholder"),
        (55, PALETTE[0], "the camera again"),
    ];
    for ((i, got, _), (j, want, what)) in seen.iter().zip(want) {
        assert_eq!(*i, j);
        assert!(
            close(*got, want, 3),
            "frame {i}: {what}: {got:?} vs {want:?}"
        );
    }
    // u2 stopped at 1 s and has no placeholder picture: the placeholder colour (black)
    assert!(close(seen[2].2, [16, 128, 128], 2), "{:?}", seen[2]);
}

#[test]
fn a_rotate_90_phone_clip_is_drawn_portrait_and_pillarboxed() {
    let clip = format!("{ROOT}/fixtures/clips/phone_rot90_320x180_30.mp4");
    // the decoder reads the display matrix; turned upright it equals FFmpeg's own rendering
    let f = Decoder::open(&clip).unwrap().next_frame().unwrap().unwrap();
    assert_eq!((f.width(), f.height()), (320, 180));
    assert_ne!(f.rotation, Rotation::R0);
    let up = f.upright().unwrap();
    assert_eq!((up.width(), up.height()), (180, 320));
    let ff = Command::new("ffmpeg")
        .args([
            "-v",
            "error",
            "-i",
            &clip,
            "-frames:v",
            "1",
            "-f",
            "rawvideo",
        ])
        .args(["-pix_fmt", "yuv420p", "-"])
        .output()
        .unwrap();
    assert!(ff.status.success());
    let ours: Vec<u8> = (0..3).flat_map(|i| up.packed_plane(i)).collect();
    assert_eq!(ours.len(), ff.stdout.len());
    assert!(
        ours == ff.stdout,
        "the turned frame differs from FFmpeg's autorotated frame"
    );

    // a 16:9 cell: the portrait picture is fitted 101x180 at x = 109, black bars either side
    let d = dir("rotate");
    let cfg = d.join("cfg.json");
    std::fs::write(
        &cfg,
        json!({"mode":0,"videoFileCfg":{"svrPathName":"x.mp4","vWidth":320,"vHeight":180,
            "layoutConfig":[{"type":0,"left":0,"top":0,"width":320,"height":180,
            "param":{"camid":"phone"}}]}})
        .to_string(),
    )
    .unwrap();
    let png = d.join("snap.png");
    let out = Command::new(BIN)
        .args(["snapshot", "--backend", "cpu", "--config"])
        .arg(&cfg)
        .arg("--input")
        .arg(format!("phone={clip}"))
        .arg("--out")
        .arg(&png)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let dec = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(&png).unwrap()));
    let mut r = dec.read_info().unwrap();
    let mut buf = vec![0; r.output_buffer_size().unwrap()];
    let info = r.next_frame(&mut buf).unwrap();
    assert_eq!((info.width, info.height), (320, 180));
    let px = |x: usize, y: usize| -> [u8; 3] { buf[(y * 320 + x) * 3..][..3].try_into().unwrap() };
    for (x, y) in [(0, 90), (100, 10), (220, 170), (319, 90)] {
        assert_eq!(px(x, y), [0, 0, 0], "bar at ({x}, {y})");
    }
    // inside: cam7's colour bars run top to bottom (portrait), so a row varies along x
    // and the leftmost bar (red in testsrc2) is at the image's left edge
    let left = px(112, 150);
    assert!(
        left[0] > 150 && left[1] < 80,
        "red bar at the image's left: {left:?}"
    );
    assert_ne!(px(140, 150), px(200, 150));
}
