//! Upload of finished recordings to a real S3-compatible server (s3s-fs on 127.0.0.1, see
//! `testkit::s3`): multipart success, server down, server killed mid-upload, wrong credentials,
//! a pending upload resumed by a new process, bad input.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cloudmixer::model::events::codes;
use cloudmixer::output::upload::{
    JournalKey, UploadError, UploadEvent, UploadOptions, UploadTarget, Uploader, STATE_UPLOADED,
    STATE_UPLOADFAIL, STATE_UPLOADING,
};
use cloudmixer::output::Storage;
use cloudmixer::testkit::s3::{free_port, S3Server};
use crossbeam_channel::{Receiver, Sender};

const MIB: usize = 1024 * 1024;

/// A fresh directory under the system temp dir, removed on drop.
struct TempDir(PathBuf);
impl TempDir {
    fn new(name: &str) -> TempDir {
        let p = std::env::temp_dir().join(format!("cm-upload-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
}
impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A file of `len` pseudo-random bytes (xorshift, so a misplaced part shows).
fn make_file(path: &Path, len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    let mut data = Vec::with_capacity(len + 8);
    while data.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        data.extend_from_slice(&x.to_le_bytes());
    }
    data.truncate(len);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, &data).unwrap();
    data
}

/// The journal key both "processes" of a test share (as `record` keeps one in a file).
fn key() -> JournalKey {
    JournalKey::from_bytes([7; 32])
}

fn journal(file: &Path) -> PathBuf {
    PathBuf::from(format!("{}.upload.json", file.display()))
}

fn target(s: &S3Server) -> UploadTarget {
    UploadTarget {
        vendor: 0,
        region: "us-east-1".into(),
        bucket: s.bucket.clone(),
        access_key: s.access_key.clone(),
        secret_key: s.secret_key.clone(),
        endpoint: Some(s.endpoint.clone()),
        keep_local: false,
    }
}

fn quick_opts() -> UploadOptions {
    UploadOptions {
        part_size: 5 * MIB,
        progress_interval: Duration::ZERO,
        backoff_start: Duration::from_millis(50),
        backoff_max: Duration::from_millis(200),
        ..UploadOptions::default()
    }
}

fn channel() -> (Sender<UploadEvent>, Receiver<UploadEvent>) {
    crossbeam_channel::unbounded()
}

/// Collects events until Uploaded or Failed (panics after `limit`).
fn until_done(rx: &Receiver<UploadEvent>, limit: Duration) -> Vec<UploadEvent> {
    let deadline = Instant::now() + limit;
    let mut evs = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let ev = rx
            .recv_timeout(left)
            .unwrap_or_else(|_| panic!("no final event within {limit:?}; got {evs:#?}"));
        let done = matches!(
            ev,
            UploadEvent::Uploaded { .. } | UploadEvent::Failed { .. }
        );
        evs.push(ev);
        if done {
            return evs;
        }
    }
}

fn progress_of(evs: &[UploadEvent]) -> Vec<(f64, u64)> {
    evs.iter()
        .filter_map(|e| match e {
            UploadEvent::Progress { percent, bytes, .. } => Some((*percent, *bytes)),
            _ => None,
        })
        .collect()
}

fn retries_of(evs: &[UploadEvent]) -> Vec<(u32, Duration)> {
    evs.iter()
        .filter_map(|e| match e {
            UploadEvent::Retrying { attempt, delay, .. } => Some((*attempt, *delay)),
            _ => None,
        })
        .collect()
}

#[test]
fn uploads_in_parts_then_removes_file_and_journal() {
    let dir = TempDir::new("ok");
    let s = S3Server::start(&dir.0.join("s3"));
    let file = dir.0.join("rec/2021-09-24/rec.mp4");
    let data = make_file(&file, 20_000_000, 7);
    let (tx, rx) = channel();
    let up = Uploader::new(
        target(&s),
        quick_opts(),
        Storage::new(&dir.0),
        key(),
        move |e| {
            let _ = tx.send(e);
        },
    )
    .unwrap();

    let t0 = Instant::now();
    up.submit(&file, "/2021-09-24/rec.mp4").unwrap();
    let evs = until_done(&rx, Duration::from_secs(60));
    eprintln!("20 MB uploaded in {:?}", t0.elapsed());

    assert!(matches!(&evs[0], UploadEvent::Started { key, .. } if key == "/2021-09-24/rec.mp4"));
    assert!(
        matches!(evs.last().unwrap(), UploadEvent::Uploaded { size, .. } if *size == 20_000_000),
        "{evs:#?}"
    );
    let p = progress_of(&evs);
    assert!(p.len() >= 2, "progress events: {p:?}");
    assert!(
        p.windows(2).all(|w| w[1].0 >= w[0].0 && w[1].1 >= w[0].1),
        "{p:?}"
    );
    assert!(p[0].0 < 100.0 && p.last().unwrap().0 == 100.0, "{p:?}");
    assert!(p.iter().all(|(pc, _)| (0.0..=100.0).contains(pc)));
    assert_eq!(p.last().unwrap().1, 20_000_000);
    assert_eq!(evs[1].output_state(), STATE_UPLOADING);
    assert_eq!(evs.last().unwrap().output_state(), STATE_UPLOADED);
    assert!(retries_of(&evs).is_empty(), "{evs:#?}");

    let got = s.get_object("2021-09-24/rec.mp4").unwrap();
    assert!(
        got == data,
        "object differs from the file ({} bytes)",
        got.len()
    );
    assert!(!file.exists(), "local file not removed");
    assert!(!journal(&file).exists(), "journal not removed");
    assert!(up.wait_idle(Duration::from_secs(5)));

    // keep_local: the file stays, the journal goes
    let (tx, rx) = channel();
    let mut t = target(&s);
    t.keep_local = true;
    let up = Uploader::new(t, quick_opts(), Storage::new(&dir.0), key(), move |e| {
        let _ = tx.send(e);
    })
    .unwrap();
    let kept = dir.0.join("rec/kept.mp4");
    let data = make_file(&kept, 6 * MIB + 3, 8);
    up.submit(&kept, "kept.mp4").unwrap();
    let evs = until_done(&rx, Duration::from_secs(60));
    assert!(
        matches!(evs.last().unwrap(), UploadEvent::Uploaded { .. }),
        "{evs:#?}"
    );
    assert!(kept.exists(), "keep_local removed the file");
    assert!(!journal(&kept).exists());
    assert!(s.get_object("kept.mp4").unwrap() == data);
}

#[test]
fn server_down_retries_with_backoff_then_fails_keeping_file() {
    let d = UploadOptions::default();
    assert_eq!(d.workers, 2);
    assert_eq!(d.retries, 5);
    assert_eq!(d.backoff_start, Duration::from_secs(1));
    assert_eq!(d.backoff_max, Duration::from_secs(30));
    assert_eq!(d.part_size, 8 * MIB);
    assert!(d.progress_interval <= Duration::from_secs(1));

    let dir = TempDir::new("down");
    let file = dir.0.join("rec.mp4");
    make_file(&file, 1_000_000, 9);
    let t = UploadTarget {
        region: "us-east-1".into(),
        bucket: "recordings".into(),
        access_key: "ak".into(),
        secret_key: "sk".into(),
        endpoint: Some(format!("http://127.0.0.1:{}", free_port())),
        ..UploadTarget::default()
    };
    let opts = UploadOptions {
        retries: 3,
        ..quick_opts()
    };
    let (tx, rx) = channel();
    let up = Uploader::new(t, opts, Storage::new(&dir.0), key(), move |e| {
        let _ = tx.send(e);
    })
    .unwrap();
    let t0 = Instant::now();
    up.submit(&file, "rec.mp4").unwrap();
    let evs = until_done(&rx, Duration::from_secs(30));
    let took = t0.elapsed();

    let r = retries_of(&evs);
    let ms = |v: u64| Duration::from_millis(v);
    assert_eq!(r, [(1, ms(50)), (2, ms(100)), (3, ms(200))], "{evs:#?}");
    assert!(took >= ms(350), "backoff not waited: {took:?}");
    match evs.last().unwrap() {
        e @ UploadEvent::Failed { code, desc, .. } => {
            eprintln!("server down: {desc}");
            assert_eq!(*code, codes::UPLOAD_FAIL);
            assert_eq!(e.output_state(), STATE_UPLOADFAIL);
            assert!(
                desc.contains("network") && desc.contains("4 attempts"),
                "{desc}"
            );
        }
        e => panic!("expected Failed, got {e:?}"),
    }
    assert!(
        file.exists() && journal(&file).exists(),
        "file or journal lost"
    );
}

#[test]
fn server_killed_mid_upload_and_restarted_completes() {
    let dir = TempDir::new("kill");
    let s = Arc::new(Mutex::new(S3Server::start(&dir.0.join("s3"))));
    let file = dir.0.join("big.mp4");
    let data = make_file(&file, 60_000_000, 11);
    let opts = UploadOptions {
        part_concurrency: 2,
        retries: 6,
        backoff_start: Duration::from_millis(400),
        backoff_max: Duration::from_secs(2),
        ..quick_opts()
    };
    let (tx, rx) = channel();
    let (killed_tx, killed_rx) = crossbeam_channel::bounded::<u64>(1);
    let server = s.clone();
    let t = target(&s.lock().unwrap());
    let up = Uploader::new(t, opts, Storage::new(&dir.0), key(), move |e| {
        // kill the server as soon as the first part is stored, before anything else moves on
        if let UploadEvent::Progress { bytes, .. } = &e {
            if *bytes > 0 && killed_tx.try_send(*bytes).is_ok() {
                server.lock().unwrap().kill();
            }
        }
        let _ = tx.send(e);
    })
    .unwrap();
    up.submit(&file, "big.mp4").unwrap();
    let at_kill = killed_rx
        .recv_timeout(Duration::from_secs(30))
        .expect("no progress before the kill");
    assert!(at_kill < 60_000_000);
    std::thread::sleep(Duration::from_millis(1500));
    s.lock().unwrap().restart();
    let evs = until_done(&rx, Duration::from_secs(60));

    eprintln!("killed at {at_kill} bytes; retries {:?}", retries_of(&evs));
    assert!(
        !retries_of(&evs).is_empty(),
        "no retry after the kill: {evs:#?}"
    );
    assert!(
        matches!(evs.last().unwrap(), UploadEvent::Uploaded { size, .. } if *size == 60_000_000),
        "{evs:#?}"
    );
    // resumed, not restarted: progress never fell below what was stored before the kill
    let p = progress_of(&evs);
    let after: Vec<u64> = p.iter().map(|x| x.1).skip_while(|b| *b < at_kill).collect();
    assert!(after.windows(2).all(|w| w[1] >= w[0]), "{p:?}");
    let got = s.lock().unwrap().get_object("big.mp4").unwrap();
    assert!(
        got == data,
        "object differs from the file ({} bytes)",
        got.len()
    );
    assert!(!file.exists() && !journal(&file).exists());
}

#[test]
fn wrong_credentials_fail_at_once_naming_them() {
    let dir = TempDir::new("creds");
    let s = S3Server::start(&dir.0.join("s3"));
    let file = dir.0.join("rec.mp4");
    make_file(&file, 2_000_000, 5);
    let mut t = target(&s);
    t.secret_key = "not-the-secret".into();
    let (tx, rx) = channel();
    let up = Uploader::new(
        t,
        UploadOptions::default(),
        Storage::new(&dir.0),
        key(),
        move |e| {
            let _ = tx.send(e);
        },
    )
    .unwrap();
    let t0 = Instant::now();
    up.submit(&file, "rec.mp4").unwrap();
    let evs = until_done(&rx, Duration::from_secs(20));
    assert!(
        t0.elapsed() < Duration::from_secs(5),
        "took {:?}",
        t0.elapsed()
    );
    assert!(
        retries_of(&evs).is_empty(),
        "retried a credential error: {evs:#?}"
    );
    match evs.last().unwrap() {
        UploadEvent::Failed { code, desc, .. } => {
            eprintln!("wrong credentials: {desc}");
            assert_eq!(*code, codes::UPLOAD_FAIL);
            assert!(desc.contains("accessKey/secretKey"), "{desc}");
        }
        e => panic!("expected Failed, got {e:?}"),
    }
    assert!(file.exists() && journal(&file).exists());
    assert!(
        s.get_object("rec.mp4").is_err(),
        "object stored with wrong credentials"
    );
}

#[test]
fn pending_upload_is_resumed_by_a_new_uploader() {
    let dir = TempDir::new("resume");
    let mut s = S3Server::start(&dir.0.join("s3"));
    s.kill();
    let recs = dir.0.join("records");
    let file = recs.join("day/rec.mp4");
    let data = make_file(&file, 7 * MIB, 3);

    // process 1: the server is down; it retries, then the process goes away
    let (tx, rx) = channel();
    let opts = UploadOptions {
        backoff_start: Duration::from_secs(10),
        ..quick_opts()
    };
    let up = Uploader::new(target(&s), opts, Storage::new(&recs), key(), move |e| {
        let _ = tx.send(e);
    })
    .unwrap();
    up.submit(&file, "day/rec.mp4").unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !matches!(
        rx.recv_timeout(deadline.saturating_duration_since(Instant::now())),
        Ok(UploadEvent::Retrying { .. })
    ) {
        assert!(
            Instant::now() < deadline,
            "no retry while the server is down"
        );
    }
    let t0 = Instant::now();
    drop(up);
    assert!(
        t0.elapsed() < Duration::from_secs(3),
        "drop waited {:?}",
        t0.elapsed()
    );
    assert!(file.exists() && journal(&file).exists());

    // process 2: the server is back
    s.restart();
    let (tx, rx) = channel();
    let up = Uploader::new(
        target(&s),
        quick_opts(),
        Storage::new(&recs),
        key(),
        move |e| {
            let _ = tx.send(e);
        },
    )
    .unwrap();
    assert_eq!(up.resume_pending(&recs).unwrap(), 1);
    let evs = until_done(&rx, Duration::from_secs(60));
    assert!(
        matches!(evs.last().unwrap(), UploadEvent::Uploaded { .. }),
        "{evs:#?}"
    );
    assert!(s.get_object("day/rec.mp4").unwrap() == data);
    assert!(!file.exists() && !journal(&file).exists());
    assert!(up.wait_idle(Duration::from_secs(5)));
    assert_eq!(up.resume_pending(&recs).unwrap(), 0);
}

#[test]
fn bad_input_is_an_error_not_a_panic() {
    let dir = TempDir::new("bad");
    let t = UploadTarget {
        bucket: "bkt".into(),
        endpoint: Some(format!("http://127.0.0.1:{}", free_port())),
        ..UploadTarget::default()
    };
    let up = Uploader::new(
        t.clone(),
        UploadOptions::default(),
        Storage::new(&dir.0),
        key(),
        |_| {},
    )
    .unwrap();
    let missing = dir.0.join("missing.mp4");
    assert!(matches!(
        up.submit(&missing, "k"),
        Err(UploadError::File { .. })
    ));
    assert!(matches!(
        up.submit(&dir.0, "k"),
        Err(UploadError::File { .. })
    ));
    let f = dir.0.join("a.mp4");
    make_file(&f, 10, 1);
    assert!(matches!(
        up.submit(&f, "a//b"),
        Err(UploadError::Key { .. })
    ));
    assert!(!journal(&missing).exists() && !journal(&f).exists());
    // a journal without a valid signature, and junk: skipped, no panic, left alone
    std::fs::write(
        journal(&dir.0.join("gone.mp4")),
        br#"{"version":2,"key":"gone.mp4","size":5,"bucket":"bkt","endpoint":"","rel":"gone.mp4","dev":0,"ino":0,"created_ms":0,"mac":""}"#,
    )
    .unwrap();
    std::fs::write(journal(&dir.0.join("junk.mp4")), b"not json").unwrap();
    let (tx, _rx) = channel();
    let up = Uploader::new(
        t.clone(),
        quick_opts(),
        Storage::new(&dir.0),
        key(),
        move |e| {
            let _ = tx.send(e);
        },
    )
    .unwrap();
    assert_eq!(up.resume_pending(&dir.0).unwrap(), 0);
    assert!(journal(&dir.0.join("gone.mp4")).exists() && journal(&dir.0.join("junk.mp4")).exists());
    // a signed journal whose file is gone: Failed ("missing"), no panic
    let g = dir.0.join("gone2.mp4");
    make_file(&g, 10, 2);
    let (tx, rx) = channel();
    let up2 = Uploader::new(
        t.clone(),
        UploadOptions {
            retries: 0,
            ..quick_opts()
        },
        Storage::new(&dir.0),
        key(),
        move |e| {
            let _ = tx.send(e);
        },
    )
    .unwrap();
    up2.submit(&g, "gone2.mp4").unwrap();
    let _ = until_done(&rx, Duration::from_secs(20));
    drop(up2);
    std::fs::remove_file(&g).unwrap();
    let (tx, rx) = channel();
    let up3 = Uploader::new(
        t.clone(),
        quick_opts(),
        Storage::new(&dir.0),
        key(),
        move |e| {
            let _ = tx.send(e);
        },
    )
    .unwrap();
    assert_eq!(up3.resume_pending(&dir.0).unwrap(), 1);
    let evs = until_done(&rx, Duration::from_secs(20));
    assert!(
        matches!(evs.last().unwrap(), UploadEvent::Failed { desc, .. } if desc.contains("missing")),
        "{evs:#?}"
    );
    for bad in ["not a url", "ftp://host"] {
        let t = UploadTarget {
            endpoint: Some(bad.into()),
            ..t.clone()
        };
        assert!(matches!(
            Uploader::new(
                t,
                UploadOptions::default(),
                Storage::new(&dir.0),
                key(),
                |_| {}
            ),
            Err(UploadError::Config(_))
        ));
    }
}
