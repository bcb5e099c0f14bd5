//! Upload speed to a loopback S3 server (s3s-fs, `testkit::s3`): writes a file (default 1 GiB),
//! uploads it with `output::upload::Uploader` and prints MB/s from submit to the verified
//! `Uploaded` event. With `beside`, a real-time W1 recording (`target/release/cloudmixer record
//! --realtime`, 20 s) runs during the upload and its summary (late ticks) is printed.
//!
//!     cargo run --release --example upload_speed -- [MiB] [part MiB] [parts in flight] [beside]

use std::io::Write;
use std::time::{Duration, Instant};

use cloudmixer::output::upload::{UploadEvent, UploadOptions, UploadTarget, Uploader};
use cloudmixer::testkit::s3::S3Server;

fn main() {
    let arg = |i: usize, d: usize| {
        std::env::args()
            .nth(i)
            .map(|a| a.parse().expect("a number"))
            .unwrap_or(d)
    };
    let (mib, part_mib, inflight) = (arg(1, 1024), arg(2, 8), arg(3, 4));
    let dir = std::env::temp_dir().join(format!("cm-upload-speed-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let server = S3Server::start(&dir.join("s3"));

    let file = dir.join("big.mp4");
    let mut block = vec![0u8; 1 << 20];
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    for c in block.chunks_mut(8) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        c.copy_from_slice(&x.to_le_bytes());
    }
    let mut f = std::io::BufWriter::new(std::fs::File::create(&file).unwrap());
    for i in 0..mib {
        block[0..8].copy_from_slice(&(i as u64).to_le_bytes());
        f.write_all(&block).unwrap();
    }
    f.into_inner().unwrap().sync_all().unwrap();

    let target = UploadTarget {
        region: "us-east-1".into(),
        bucket: server.bucket.clone(),
        access_key: server.access_key.clone(),
        secret_key: server.secret_key.clone(),
        endpoint: Some(server.endpoint.clone()),
        ..UploadTarget::default()
    };
    let opts = UploadOptions {
        part_size: part_mib << 20,
        part_concurrency: inflight,
        ..UploadOptions::default()
    };
    let (tx, rx) = crossbeam_channel::unbounded();
    let up = Uploader::new(
        target,
        opts,
        cloudmixer::output::Storage::new(&dir),
        cloudmixer::output::upload::JournalKey::random(),
        move |e| {
            let _ = tx.send(e);
        },
    )
    .unwrap();
    let beside = (std::env::args().nth(4).as_deref() == Some("beside")).then(|| {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let clip = |c: &str| root.join("fixtures/clips").join(c).display().to_string();
        std::process::Command::new(root.join("target/release/cloudmixer"))
            .args(["record", "--config"])
            .arg(root.join("fixtures/layouts/seed_side_by_side.json"))
            .args([
                "--input",
                &format!("Usr1.-1={}", clip("cam1_640x480_15.mp4")),
            ])
            .args([
                "--input",
                &format!("Usr2.-1={}", clip("cam4_1280x720_30.mp4")),
            ])
            .arg("--storage")
            .arg(dir.join("rec"))
            .args(["--realtime", "--duration", "20"])
            .stderr(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("target/release/cloudmixer (cargo build --release)")
    });
    if beside.is_some() {
        // the recording is under way before the upload starts
        std::thread::sleep(Duration::from_secs(2));
    }
    let t0 = Instant::now();
    up.submit(&file, "big.mp4").unwrap();
    let mut parts_done: Option<Duration> = None;
    loop {
        match rx
            .recv_timeout(Duration::from_secs(600))
            .expect("no event in 600 s")
        {
            UploadEvent::Uploaded { size, .. } => {
                let s = t0.elapsed().as_secs_f64();
                println!(
                    "uploaded {size} bytes ({mib} MiB, parts {part_mib} MiB, {inflight} in flight) in {s:.2} s: {:.0} MB/s ({:.0} MiB/s)",
                    size as f64 / 1e6 / s,
                    size as f64 / (1 << 20) as f64 / s
                );
                if let Some(p) = parts_done {
                    println!(
                        "  parts stored after {:.2} s, complete + HEAD {:.2} s",
                        p.as_secs_f64(),
                        s - p.as_secs_f64()
                    );
                }
                break;
            }
            UploadEvent::Progress { percent, .. } if percent >= 100.0 && parts_done.is_none() => {
                parts_done = Some(t0.elapsed());
            }
            UploadEvent::Failed { desc, .. } => panic!("upload failed: {desc}"),
            _ => {}
        }
    }
    if let Some(rec) = beside {
        let out = rec.wait_with_output().unwrap();
        println!(
            "the recording beside it:\n{}",
            String::from_utf8_lossy(&out.stdout)
        );
    }
    drop(up);
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
}
