//! Decode only what is shown: a file whose frames no tick of the recording shows is not decoded
//! where the codec allows (non-reference frames), and a frame a tick shows is never skipped.
//! The source is a 30 fps camera with B-frames (every odd frame, a non-reference one) whose
//! timestamps jump a frame twice: before the first jump a 15 fps recording shows its even
//! frames, between the jumps its odd ones (the B-frames), after the second the even ones
//! again. Only odd frames flash (white or grey; even frames are dark): a rule that skipped by
//! frame count, or by frame type, instead of by the ticks would show the wrong frame.
mod common;

use std::path::Path;
use std::process::Command;

use common::test_dir;

/// Frames of the source, its rate and the frame indexes before which its timestamps jump one
/// frame.
const FRAMES: u64 = 120;
const FPS: u64 = 30;
const JUMPS: [u64; 2] = [15, 61];

/// Source frame `i`'s luma: dark for even frames, white for frames 1 mod 4, grey for 3 mod 4.
fn luma_of_frame(i: u64) -> u8 {
    match i % 4 {
        1 => 235,
        3 => 128,
        _ => 60,
    }
}

/// Frame `i`'s time in source frame periods (1/30 s).
fn slot_of(i: u64) -> u64 {
    i + JUMPS.iter().filter(|&&j| i >= j).count() as u64
}

/// What tick `k` of a `fps` recording shows: the latest frame due at or before it.
fn shown_at_tick(k: u64, fps: u64) -> u64 {
    (0..FRAMES)
        .rev()
        .find(|&i| slot_of(i) * fps <= k * FPS)
        .unwrap()
}

fn make_source(dir: &Path) -> std::path::PathBuf {
    let out = dir.join("flash.mp4");
    let jumps = JUMPS.map(|j| format!("gte(N\\,{j})")).join("+");
    let vf = format!(
        "color=c=black:s=320x240:r={FPS}:d=4,format=yuv420p,\
         geq=lum='if(mod(N\\,2)\\,if(mod(N\\,4)-1\\,128\\,235)\\,60)':cb=128:cr=128,\
         setpts='(N+{jumps})/({FPS}*TB)'"
    );
    let st = Command::new("ffmpeg")
        .args(["-v", "error", "-y", "-f", "lavfi", "-i", &vf])
        .args([
            "-fps_mode",
            "passthrough",
            "-c:v",
            "libx264",
            "-preset",
            "veryfast",
        ])
        // one B-frame between references, never a reference itself
        .args([
            "-bf",
            "1",
            "-x264-params",
            "b-pyramid=0:b-adapt=0:scenecut=0:keyint=30",
        ])
        .arg(&out)
        .status()
        .expect("ffmpeg");
    assert!(st.success());
    out
}

/// The luma at the centre of each frame of `file`.
fn centre_lumas(file: &Path) -> Vec<u8> {
    let out = Command::new("ffmpeg")
        .args(["-v", "error", "-i"])
        .arg(file)
        .args(["-vf", "crop=8:8:156:116,scale=1:1:flags=area"])
        .args(["-f", "rawvideo", "-pix_fmt", "gray", "-"])
        .output()
        .expect("ffmpeg");
    assert!(out.status.success());
    out.stdout
}

/// 0 dark, 1 grey, 2 white (the levels are far apart; x264 and the range conversion move
/// them a little); 3 black (a placeholder before the first frame).
fn class(l: u8) -> u8 {
    match l {
        0..=30 => 3,
        31..=100 => 0,
        101..=190 => 1,
        _ => 2,
    }
}

/// `(decoded, packets)` from the summary's `decoded:` line.
fn decoded(stdout: &str) -> (u64, u64) {
    let line = stdout
        .lines()
        .find(|l| l.trim_start().starts_with("decoded:"))
        .unwrap_or_else(|| panic!("no decoded line in:\n{stdout}"));
    let words: Vec<&str> = line.split_whitespace().collect();
    let of = words.iter().position(|w| *w == "of").unwrap();
    (
        words[of - 1].parse().unwrap(),
        words[of + 1].parse().unwrap(),
    )
}

fn record(dir: &Path, src: &Path, realtime: bool) -> (Vec<u8>, (u64, u64)) {
    let cfg = dir.join("cfg.json");
    std::fs::write(
        &cfg,
        r#"{"mode":0,"videoFileCfg":{"svrPathName":"/r.mp4","vWidth":320,"vHeight":240,"vFps":15,
        "layoutConfig":[{"type":0,"top":0,"left":0,"width":320,"height":240,"param":{"camid":"a.-1"}}]}}"#,
    )
    .unwrap();
    let storage = dir.join(if realtime { "rt" } else { "off" });
    std::fs::create_dir_all(&storage).unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_cloudmixer"));
    cmd.args(["record", "--config"])
        .arg(&cfg)
        .arg("--input")
        .arg(format!("a.-1={}", src.display()))
        .arg("--storage")
        .arg(&storage)
        .args(["--duration", "4"]);
    if realtime {
        cmd.arg("--realtime");
    }
    let out = cmd.output().expect("cloudmixer record");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    (
        centre_lumas(&storage.join("r.mp4"))
            .iter()
            .map(|&l| class(l))
            .collect(),
        decoded(&stdout),
    )
}

#[test]
fn a_frame_no_tick_shows_is_not_decoded_and_every_shown_one_is_in_the_file() {
    let dir = test_dir("decode_shown", "flash");
    let src = make_source(&dir);
    let expected: Vec<u8> = (0..60)
        .map(|k| class(luma_of_frame(shown_at_tick(k, 15))))
        .collect();
    // the test means something: between the jumps the ticks show odd (flashing) frames
    assert!(expected.contains(&2) && expected.contains(&1) && expected.contains(&0));

    // offline: tick k shows the source at k / 15 s
    let (off, (dec, packets)) = record(&dir, &src, false);
    assert_eq!(off, expected, "offline: ticks (0 dark, 1 grey, 2 white)");
    assert_eq!(packets, FRAMES);
    // the odd frames before the first jump and after the second are B-frames no tick shows
    assert!(
        dec <= FRAMES - 30,
        "offline: {dec} of {packets} frames decoded"
    );

    // real time: the file's time 0 is a tick; black placeholder ticks may come first
    let (rt, (dec, packets)) = record(&dir, &src, true);
    let lead = rt.iter().take_while(|&&c| c == 3).count();
    assert!(lead <= 3, "{lead} placeholder ticks: {rt:?}");
    let body = &rt[lead..];
    assert!(body.len() >= 56, "{} ticks", body.len());
    assert_eq!(
        body,
        &expected[..body.len()],
        "real time: ticks (0 dark, 1 grey, 2 white; {lead} placeholders cut)"
    );
    assert!(packets >= FRAMES - 10, "{packets} packets");
    assert!(dec <= packets - 30, "real time: {dec} of {packets} decoded");
}
