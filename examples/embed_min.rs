//! The smallest embedder: one offline mixer, two cameras, two seconds, local files only. Built
//! in every feature set (no required features); BENCHMARKS.md "Lean library build" compares
//! its binary size with `--no-default-features` and with the default features.
//!
//!     cargo run --no-default-features --example embed_min -- /tmp/embed_min

use std::time::Duration;

use cloudmixer::prelude::*;

const CONFIG: &str = r#"{"mode":0,"videoFileCfg":{"svrPathName":"/embed_min.mp4",
  "vWidth":640,"vHeight":360,"vFps":15,"layoutConfig":[
  {"type":0,"left":0,"top":0,"width":320,"height":360,"param":{"camid":"u1.0"}},
  {"type":0,"left":320,"top":0,"width":320,"height":360,"param":{"camid":"u2.0"}}]}}"#;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = std::env::args().nth(1).unwrap_or_else(|| "out".into());
    let settings = MixerSettings {
        overwrite: true,
        ..MixerSettings::offline()
    };
    let mut mixer = Mixer::create_with(
        MixerConfig::from_json(CONFIG)?,
        Storage::new(&root),
        settings,
    )?;
    mixer.push_video("u1.0", VideoFrame::solid_i420(640, 480, [81, 90, 240])?)?;
    mixer.push_video("u2.0", VideoFrame::solid_i420(1280, 720, [145, 54, 34])?)?;
    mixer.advance_to(Duration::from_secs(2))?;
    mixer.destroy()?;
    for ev in mixer.events().try_iter() {
        println!("{}", ev.to_json());
    }
    println!("backend: {}", mixer.backend_name());
    Ok(())
}
