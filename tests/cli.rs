//! The `cloudmixer` binary: validate and snapshot.
use std::process::Command;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_cloudmixer"))
}

fn out_dir(name: &str) -> std::path::PathBuf {
    let d = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[test]
fn validate_prints_resolved_layout() {
    let o = bin()
        .args([
            "validate",
            &format!("{ROOT}/fixtures/layouts/seed_side_by_side.json"),
        ])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["width"], 1280);
    assert_eq!(v["items"][1]["camid"], "Usr2.-1");
    assert_eq!(
        v["items"][1]["rect"],
        serde_json::json!({"x":640,"y":180,"w":640,"h":360})
    );
}

#[test]
fn validate_rejects_with_exit_2_and_path() {
    let d = out_dir("validate_bad");
    let p = d.join("bad.json");
    std::fs::write(&p, r#"{"videoFileCfg":{"svrPathName":"/a.mp4","vWidth":1280,"vHeight":720,"layoutConfig":[{"type":0,"left":0,"top":0,"width":-5,"height":3,"param":{"camid":"x"}}]}}"#).unwrap();
    let o = bin().arg("validate").arg(&p).output().unwrap();
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("videoFileCfg.layoutConfig[0].width: must be > 0, got -5"),
        "{err}"
    );
    assert!(o.stdout.is_empty());
    let o = bin()
        .args(["validate", "/nonexistent/cfg.json"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
}

fn read_png(p: &std::path::Path) -> (u32, u32, Vec<u8>) {
    let dec = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(p).unwrap()));
    let mut r = dec.read_info().unwrap();
    let mut buf = vec![0; r.output_buffer_size().unwrap()];
    let info = r.next_frame(&mut buf).unwrap();
    buf.truncate(info.buffer_size());
    (info.width, info.height, buf)
}

#[test]
fn snapshot_of_w1_from_clips() {
    let d = out_dir("snap_w1");
    let out = d.join("w1.png");
    let o = bin()
        .args([
            "snapshot",
            "--config",
            &format!("{ROOT}/fixtures/layouts/w1.json"),
            "--backend",
            "cpu",
        ])
        .args([
            "--input",
            &format!("cam1={ROOT}/fixtures/clips/cam1_640x480_15.mp4@2"),
        ])
        .args([
            "--input",
            &format!("cam4={ROOT}/fixtures/clips/cam4_1280x720_30.mp4@2"),
        ])
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stderr).contains("backend: cpu"));
    let (w, h, rgb) = read_png(&out);
    assert_eq!((w, h), (1280, 720));
    let px = |x: usize, y: usize| &rgb[(y * 1280 + x) * 3..(y * 1280 + x) * 3 + 3];
    // canvas margin and pillarbox bars are black
    assert_eq!(px(640, 100), [0, 0, 0]);
    assert_eq!(px(40, 300), [0, 0, 0]);
    assert_eq!(px(600, 300), [0, 0, 0]);
    // cam1 (testsrc2) starts with a red bar at the image's left edge; cam4 (smptehdbars) has grey
    let red = px(100, 250);
    assert!(red[0] > 200 && red[1] < 60 && red[2] < 60, "{red:?}");
    let grey = px(660, 200);
    assert!(grey.iter().all(|c| (80..130).contains(c)), "{grey:?}");
}

#[test]
fn snapshot_camid_without_input_draws_background_and_errors_are_clear() {
    let d = out_dir("snap_missing");
    let out = d.join("x.png");
    let o = bin()
        .args([
            "snapshot",
            "--config",
            &format!("{ROOT}/fixtures/layouts/seed_side_by_side.json"),
            "--out",
        ])
        .arg(&out)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let (_, _, rgb) = read_png(&out);
    assert!(rgb.iter().all(|&c| c == 0));
    // a missing input file names the file
    let o = bin()
        .args([
            "snapshot",
            "--config",
            &format!("{ROOT}/fixtures/layouts/seed_side_by_side.json"),
            "--input",
            "Usr1.-1=/no/such.mp4",
            "--out",
        ])
        .arg(&out)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("/no/such.mp4: no such file"));
    // a malformed --input
    let o = bin()
        .args([
            "snapshot",
            "--config",
            &format!("{ROOT}/fixtures/layouts/seed_side_by_side.json"),
            "--input",
            "x=a.mp4@soon",
            "--out",
        ])
        .arg(&out)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("'soon' is not a time in seconds"));
}

#[test]
fn snapshot_with_update_applies_pip() {
    let d = out_dir("snap_pip");
    let out = d.join("pip.png");
    let o = bin()
        .args([
            "snapshot",
            "--config",
            &format!("{ROOT}/fixtures/layouts/seed_side_by_side.json"),
        ])
        .args([
            "--update",
            &format!("{ROOT}/fixtures/layouts/seed_pip_update.json"),
        ])
        .args([
            "--input",
            &format!("Usr1.-1={ROOT}/fixtures/clips/cam4_1280x720_30.mp4"),
        ])
        .args([
            "--input",
            &format!("Usr2.-1={ROOT}/fixtures/clips/still_160x90.png"),
        ])
        .arg("--out")
        .arg(&out)
        .args(["--backend", "cpu"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let (_, _, rgb) = read_png(&out);
    // the full-frame camera covers the top-left corner: no black there
    assert!(rgb[..3].iter().any(|&c| c > 40));
}
