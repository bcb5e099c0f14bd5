//! Decoding fixture clips and stills; errors for missing, unsupported and corrupt files.
use std::time::Duration;

use cloudmixer::media::decode::{frame_at, DecodeError, Decoder};
use cloudmixer::model::frame::{Matrix, PixelFormat, Range};

const CLIPS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/clips");

fn clip(name: &str) -> String {
    format!("{CLIPS}/{name}")
}

#[test]
fn decodes_every_frame_with_increasing_pts() {
    let mut d = Decoder::open(clip("cam9_320x240_15.mp4")).unwrap();
    assert_eq!((d.width(), d.height()), (320, 240));
    assert!((d.fps() - 15.0).abs() < 1e-6);
    let mut n = 0;
    let mut last = None;
    while let Some(f) = d.next_frame().unwrap() {
        assert_eq!(
            (f.width(), f.height(), f.format()),
            (320, 240, PixelFormat::I420)
        );
        assert_eq!(f.color.matrix, Matrix::Bt709);
        assert_eq!(f.color.range, Range::Limited);
        if let Some(l) = last {
            assert!(f.pts > l, "pts {:?} after {:?}", f.pts, l);
        }
        last = Some(f.pts);
        n += 1;
    }
    assert_eq!(n, 150);
    let last = last.unwrap();
    assert!((last.as_secs_f64() - 149.0 / 15.0).abs() < 1e-3, "{last:?}");
}

#[test]
fn mkv_portrait_and_hd() {
    for (name, w, h) in [
        ("cam9_320x240_15.mkv", 320, 240),
        ("cam7_180x320_30.mp4", 180, 320),
        ("cam4_1280x720_30.mp4", 1280, 720),
    ] {
        let f = frame_at(clip(name), Duration::ZERO).unwrap();
        assert_eq!((f.width(), f.height()), (w, h), "{name}");
    }
}

#[test]
fn seek_lands_on_the_requested_time() {
    let mut d = Decoder::open(clip("cam4_1280x720_30.mp4")).unwrap();
    d.seek(Duration::from_millis(4510)).unwrap();
    let f = d.next_frame().unwrap().unwrap();
    // the first frame at or after 4.51 s at 30 fps is frame 136 (4.5333 s)
    assert!(
        (f.pts.as_secs_f64() - 136.0 / 30.0).abs() < 1e-3,
        "{:?}",
        f.pts
    );
    // seeking backwards works too
    d.seek(Duration::from_millis(1000)).unwrap();
    let f = d.next_frame().unwrap().unwrap();
    assert!((f.pts.as_secs_f64() - 1.0).abs() < 1e-3, "{:?}", f.pts);
    // past the end: frame_at gives the last frame
    let f = frame_at(clip("cam4_1280x720_30.mp4"), Duration::from_secs(60)).unwrap();
    assert!(
        (f.pts.as_secs_f64() - 299.0 / 30.0).abs() < 1e-3,
        "{:?}",
        f.pts
    );
}

#[test]
fn stills() {
    let png = frame_at(clip("still_160x90.png"), Duration::ZERO).unwrap();
    assert_eq!(
        (png.width(), png.height(), png.format()),
        (160, 90, PixelFormat::Rgba)
    );
    let jpg = frame_at(clip("still_160x120.jpg"), Duration::from_secs(3)).unwrap();
    assert_eq!(
        (jpg.width(), jpg.height(), jpg.format()),
        (160, 120, PixelFormat::I420)
    );
    assert_eq!(jpg.color.range, Range::Full);
}

#[test]
fn missing_file() {
    let e = Decoder::open(clip("nope.mp4")).err().unwrap();
    assert!(matches!(e, DecodeError::NotFound(_)));
    assert!(e.to_string().ends_with("nope.mp4: no such file"), "{e}");
}

#[test]
fn not_media() {
    let e = Decoder::open(clip("not_media.mp4")).err().unwrap();
    assert!(matches!(e, DecodeError::Open { .. }), "{e}");
    assert!(e.to_string().contains("cannot open as media"), "{e}");
}

#[test]
fn no_video_stream() {
    let e = Decoder::open(concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml"))
        .err()
        .unwrap();
    assert!(
        matches!(e, DecodeError::Open { .. } | DecodeError::NoVideo(_)),
        "{e}"
    );
}

#[test]
fn corrupt_file_ends_early_or_errors_without_panic() {
    // a truncated mp4 with garbage: either open fails with a clear error, or decoding yields
    // fewer frames than the full clip and then an error or the end
    match Decoder::open(clip("corrupt.mp4")) {
        Err(e) => assert!(e.to_string().contains("corrupt.mp4"), "{e}"),
        Ok(mut d) => {
            let mut n = 0;
            loop {
                match d.next_frame() {
                    Ok(Some(_)) => n += 1,
                    Ok(None) => break,
                    Err(e) => {
                        assert!(e.to_string().contains("corrupt.mp4"), "{e}");
                        break;
                    }
                }
            }
            assert!(n < 150, "decoded {n} frames from a truncated file");
        }
    }
}

/// Two `.ts` segments concatenated (their timestamps restart): every frame decodes with
/// increasing pts, the second part following the first.
#[test]
fn ts_timestamp_restart_keeps_the_source_going() {
    let d = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("ts_restart");
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    let seg = d.join("seg.ts");
    let st = std::process::Command::new("ffmpeg")
        .args(["-v", "error", "-y", "-i"])
        .arg(clip("cam9_320x240_15.mp4"))
        .args([
            "-t",
            "2",
            "-an",
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-bf",
            "0",
        ])
        .arg(&seg)
        .status()
        .unwrap();
    assert!(st.success());
    let one = std::fs::read(&seg).unwrap();
    let both = d.join("both.ts");
    std::fs::write(&both, [one.clone(), one].concat()).unwrap();
    let mut dec = Decoder::open(&both).unwrap();
    let mut pts = Vec::new();
    while let Some(f) = dec.next_frame().unwrap() {
        pts.push(f.pts);
    }
    assert_eq!(pts.len(), 60, "frames");
    assert!(
        pts.windows(2).all(|w| w[1] > w[0]),
        "pts not increasing: {pts:?}"
    );
    let last = pts.last().unwrap().as_secs_f64();
    assert!((last - 59.0 / 15.0).abs() < 0.1, "last pts {last}");
}
