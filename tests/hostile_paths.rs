//! Hostile names and trees under the storage root, against every kind of target.
//!
//! A table of hostile cases (`..` escapes, symlinked directories at every level, symlinks and
//! hard links at the target's own name and at every side file's name, FIFOs, NUL, overlong
//! names and paths, odd characters…) is run against every kind of target: mp4, flv, ts, mkv,
//! HLS, duration segments, audio files (m4a, mp3, wav), mode 1 (one file per stream) and upload
//! journals. Each (case, kind) runs in a fresh `base/` holding the storage `root/` and an
//! `outside/` dir with a sentinel `victim`, and must leave:
//! 1. everything outside the root byte-for-byte as it was (nothing written, created, deleted);
//! 2. every regular file that was inside the root with the same bytes (nothing clobbered);
//! 3. either a recording inside the root that ffprobe reads (packets > 0) — or, for uploads, a
//!    journal next to the file — or a typed error naming the path or the reason, with vendor
//!    code 5 or 905 (1107 for the uploader, whose errors all carry it); never a panic or a
//!    hang (each run is bounded in time).
//!
//! The trees are compared by walking them with `openat(O_NOFOLLOW)` from a directory
//! descriptor, so paths longer than `PATH_MAX` are checked too.

use std::collections::BTreeMap;
use std::ffi::{CString, OsStr};
use std::fs::File;
use std::io::Read;
use std::os::fd::{AsRawFd, FromRawFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cloudmixer::compose::Backend;
use cloudmixer::media::video_enc::EncoderSettings;
use cloudmixer::model::audio::AudioFrame;
use cloudmixer::model::config::MixerConfig;
use cloudmixer::model::events::{codes, MixerEvent, OutputState};
use cloudmixer::model::frame::VideoFrame;
use cloudmixer::model::time::PaceMode;
use cloudmixer::output::upload::{JournalKey, UploadOptions, UploadTarget, Uploader};
use cloudmixer::output::Storage;
use cloudmixer::pipeline::{Mixer, MixerError, MixerSettings, StreamRecorder};
use serde_json::{json, Value};

const VICTIM: &[u8] = b"VICTIM: the bytes of a file outside the storage root\n";
const INNER: &[u8] = b"an earlier recording inside the root\n";
/// The longest one (case, kind) may take before it counts as a hang.
const CASE_LIMIT: Duration = Duration::from_secs(45);

// ---------------------------------------------------------------------------------------------
// kinds of target

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Mp4,
    Flv,
    Ts,
    Mkv,
    Hls,
    Seg,
    M4a,
    Mp3,
    Wav,
    Mode1,
    Upload,
}

const KINDS: [Kind; 11] = [
    Kind::Mp4,
    Kind::Flv,
    Kind::Ts,
    Kind::Mkv,
    Kind::Hls,
    Kind::Seg,
    Kind::M4a,
    Kind::Mp3,
    Kind::Wav,
    Kind::Mode1,
    Kind::Upload,
];

impl Kind {
    fn ext(self) -> &'static str {
        match self {
            Kind::Mp4 | Kind::Seg | Kind::Mode1 | Kind::Upload => "mp4",
            Kind::Flv => "flv",
            Kind::Ts => "ts",
            Kind::Mkv => "mkv",
            Kind::Hls => "m3u8",
            Kind::M4a => "m4a",
            Kind::Mp3 => "mp3",
            Kind::Wav => "wav",
        }
    }

    fn label(self) -> &'static str {
        match self {
            Kind::Mp4 => "mp4",
            Kind::Flv => "flv",
            Kind::Ts => "ts",
            Kind::Mkv => "mkv",
            Kind::Hls => "hls",
            Kind::Seg => "seg",
            Kind::M4a => "m4a",
            Kind::Mp3 => "mp3",
            Kind::Wav => "wav",
            Kind::Mode1 => "mode1",
            Kind::Upload => "upload",
        }
    }

    fn audio_only(self) -> bool {
        matches!(self, Kind::M4a | Kind::Mp3 | Kind::Wav)
    }
}

// ---------------------------------------------------------------------------------------------
// the hostile cases

/// Where one (case, kind) runs.
struct Env {
    base: PathBuf,
    root: PathBuf,
    outside: PathBuf,
    kind: Kind,
}

impl Env {
    /// `stem.<ext of the kind>`.
    fn f(&self, stem: &str) -> String {
        format!("{stem}.{}", self.kind.ext())
    }
    fn r(&self, rel: &str) -> PathBuf {
        self.root.join(rel)
    }
    fn mkdir(&self, rel: &str) {
        std::fs::create_dir_all(self.r(rel)).unwrap();
    }
    fn write(&self, rel: &str, body: &[u8]) {
        let p = self.r(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, body).unwrap();
    }
    fn symlink(&self, target: impl AsRef<Path>, rel: &str) {
        let p = self.r(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::os::unix::fs::symlink(target, p).unwrap();
    }
    fn victim(&self) -> PathBuf {
        self.outside.join("victim")
    }
}

/// What a case expects beyond the three invariants.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    /// Refused (config validation or storage) with vendor code 5.
    Param,
    /// Refused, code 5 or 905.
    Refused,
    /// Written, under the name asked for or another one.
    Written,
    /// Any outcome that keeps the invariants.
    Any,
}

struct Case {
    name: &'static str,
    overwrite: bool,
    /// Builds the tree; returns the path as the config gives it, without its leading '/'.
    setup: fn(&Env) -> String,
    /// For file targets (not mode 1, whose path is a directory, nor uploads).
    expect: Expect,
}

fn c(name: &'static str, expect: Expect, setup: fn(&Env) -> String) -> Case {
    Case {
        name,
        overwrite: false,
        setup,
        expect,
    }
}

fn ow(name: &'static str, expect: Expect, setup: fn(&Env) -> String) -> Case {
    Case {
        name,
        overwrite: true,
        setup,
        expect,
    }
}

fn long_path(e: &Env) -> String {
    let comp = "d".repeat(250);
    let mut p = vec![comp; 17].join("/");
    p.push('/');
    p.push_str(&e.f("rec"));
    assert!(p.len() > 4096);
    p
}

fn cases() -> Vec<Case> {
    use Expect::*;
    vec![
        c("dotdot /../x", Param, |e| {
            format!("../outside/{}", e.f("rec"))
        }),
        c("dotdot /a/../../x", Param, |e| {
            e.mkdir("a");
            format!("a/../../outside/{}", e.f("rec"))
        }),
        c("dotdot ./../x", Param, |e| {
            format!("./../outside/{}", e.f("rec"))
        }),
        c("symlink dir L1 -> outside", Param, |e| {
            e.symlink(&e.outside, "l1");
            format!("l1/{}", e.f("rec"))
        }),
        c("symlink dir L2 -> outside", Param, |e| {
            e.symlink(&e.outside, "a/l2");
            format!("a/l2/{}", e.f("rec"))
        }),
        c("symlink dir L3 -> outside", Param, |e| {
            e.symlink(&e.outside, "a/b/l3");
            format!("a/b/l3/{}", e.f("rec"))
        }),
        c("symlink dir L1, new dirs below", Param, |e| {
            e.symlink(&e.outside, "l1");
            format!("l1/new/deeper/{}", e.f("rec"))
        }),
        c("relative symlink d -> ../outside", Param, |e| {
            e.symlink("../outside", "d");
            format!("d/{}", e.f("rec"))
        }),
        c("symlink dir -> inside root", Param, |e| {
            e.write("real/keep.bin", INNER);
            e.symlink("real", "alias");
            format!("alias/{}", e.f("rec"))
        }),
        c("symlink loop as dir", Param, |e| {
            e.symlink("loop", "loop");
            format!("loop/{}", e.f("rec"))
        }),
        c("symlink loop x->y->x", Param, |e| {
            e.symlink("y", "x");
            e.symlink("x", "y");
            format!("x/sub/{}", e.f("rec"))
        }),
        c("final symlink -> victim", Param, |e| {
            let n = e.f("rec");
            e.symlink(e.victim(), &n);
            n
        }),
        ow("final symlink -> victim +ow", Any, |e| {
            let n = e.f("rec");
            e.symlink(e.victim(), &n);
            n
        }),
        c("final dangling -> outside/new", Param, |e| {
            let n = e.f("rec");
            e.symlink(e.outside.join("new"), &n);
            n
        }),
        c("final symlink -> other rec", Param, |e| {
            let n = e.f("rec");
            e.write(&e.f("other"), INNER);
            e.symlink(e.f("other"), &n);
            n
        }),
        c("final hard link to victim", Written, |e| {
            let n = e.f("rec");
            std::fs::hard_link(e.victim(), e.r(&n)).unwrap();
            n
        }),
        ow("final hard link to victim +ow", Written, |e| {
            let n = e.f("rec");
            std::fs::hard_link(e.victim(), e.r(&n)).unwrap();
            n
        }),
        c("final name is a directory", Refused, |e| {
            let n = e.f("rec");
            e.write(&format!("{n}/inner.bin"), INNER);
            n
        }),
        ow("final name is a directory +ow", Refused, |e| {
            let n = e.f("rec");
            e.write(&format!("{n}/inner.bin"), INNER);
            n
        }),
        c("parent is a regular file", Refused, |e| {
            e.write("plain", INNER);
            format!("plain/{}", e.f("rec"))
        }),
        c("FIFO at final name", Written, |e| {
            let n = e.f("rec");
            mkfifo(&e.r(&n));
            n
        }),
        ow("FIFO at final name +ow", Any, |e| {
            let n = e.f("rec");
            mkfifo(&e.r(&n));
            n
        }),
        c("NUL in the name", Param, |e| e.f("rec\0evil")),
        c("NUL in a dir name", Param, |e| {
            format!("d\0x/{}", e.f("rec"))
        }),
        c("component of 300 bytes", Param, |e| e.f(&"a".repeat(300))),
        c("path over 4096 bytes", Any, long_path),
        c("case twin Rec exists", Written, |e| {
            e.write(&e.f("Rec"), INNER);
            e.f("rec")
        }),
        c("%d in the name", Any, |e| e.f("rec%d")),
        c("%05d in the name and dir", Any, |e| {
            format!("%05d/{}", e.f("r%05d"))
        }),
        c("spaces and unicode", Any, |e| {
            format!("dir with space/{}", e.f("my rec é 录像 🎥"))
        }),
        c("newline in the name", Any, |e| e.f("rec\nx")),
        c("leading dash", Any, |e| format!("-d/{}", e.f("-rec"))),
        c("leading dot", Any, |e| format!(".d/{}", e.f(".rec"))),
        c("name ends in .upload.json", Any, |e| {
            format!("{}.upload.json", e.f("rec"))
        }),
        c("HLS side files all symlinks", Any, |e| {
            for s in [
                "rec_init.mp4",
                "rec.m3u8.tmp",
                "rec_00000.m4s.tmp",
                "rec_00000.m4s",
            ] {
                e.symlink(e.victim(), s);
            }
            e.f("rec")
        }),
        c("HLS playlist .tmp symlink only", Any, |e| {
            // not a side-file pattern: the name stays, the temporary must be replaced
            e.symlink(e.victim(), "rec.m3u8.tmp");
            e.f("rec")
        }),
        c("HLS segment .tmp symlinks", Any, |e| {
            e.symlink(e.victim(), "rec_00000.m4s.tmp");
            e.symlink(e.outside.join("new_tmp"), "rec_00001.m4s.tmp");
            e.f("rec")
        }),
        c("HLS init dangling -> outside", Any, |e| {
            e.symlink(e.outside.join("new_init"), "rec_init.mp4");
            e.f("rec")
        }),
        c("HLS init hard link to victim", Any, |e| {
            std::fs::hard_link(e.victim(), e.r("rec_init.mp4")).unwrap();
            e.f("rec")
        }),
        c("segment name symlinks", Any, |e| {
            e.symlink(e.victim(), &e.f("rec_0001"));
            e.symlink(e.outside.join("new_seg"), &e.f("rec_0002"));
            e.f("rec")
        }),
        c("segment name is a regular file", Any, |e| {
            e.write(&e.f("rec_0001"), INNER);
            e.f("rec")
        }),
        c("journal names symlinks", Any, |e| {
            let n = e.f("rec");
            e.symlink(e.victim(), &format!("{n}.upload.json"));
            e.symlink(
                e.outside.join("new_journal"),
                &format!("{n}.upload.json.tmp"),
            );
            n
        }),
    ]
}

fn mkfifo(p: &Path) {
    let c = CString::new(p.as_os_str().as_bytes()).unwrap();
    // SAFETY: a NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0, "mkfifo");
}

// ---------------------------------------------------------------------------------------------
// trees, walked without following a symlink

#[derive(Debug, Clone, PartialEq, Eq)]
enum Ent {
    Dir,
    File(Vec<u8>),
    Link(Vec<u8>),
    Other(u32),
}

/// Every entry under a directory, by path relative to it (bytes).
type Snap = BTreeMap<Vec<u8>, Ent>;

fn snapshot(dir: &Path) -> Snap {
    let f = File::open(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    let mut out = Snap::new();
    walk(f.as_raw_fd(), b"", &mut out);
    out
}

fn walk(fd: RawFd, prefix: &[u8], out: &mut Snap) {
    // SAFETY: dup of a valid descriptor, handed to fdopendir (which owns it from then on).
    let dup = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 0) };
    assert!(dup >= 0);
    let d = unsafe { libc::fdopendir(dup) };
    assert!(!d.is_null());
    let mut names = Vec::new();
    loop {
        // SAFETY: a valid DIR stream; the entry is read before the next readdir.
        let ent = unsafe { libc::readdir(d) };
        if ent.is_null() {
            break;
        }
        let n = unsafe { std::ffi::CStr::from_ptr((*ent).d_name.as_ptr()) }.to_bytes();
        if n != b"." && n != b".." {
            names.push(n.to_vec());
        }
    }
    // SAFETY: closes the stream (and the dup) once.
    unsafe { libc::closedir(d) };
    for n in names {
        let mut rel = prefix.to_vec();
        if !rel.is_empty() {
            rel.push(b'/');
        }
        rel.extend_from_slice(&n);
        let cn = CString::new(n).unwrap();
        let mut st = std::mem::MaybeUninit::<libc::stat>::zeroed();
        // SAFETY: valid dirfd, NUL-terminated name.
        let r =
            unsafe { libc::fstatat(fd, cn.as_ptr(), st.as_mut_ptr(), libc::AT_SYMLINK_NOFOLLOW) };
        if r != 0 {
            continue; // gone while walking
        }
        let st = unsafe { st.assume_init() };
        let open = |flags: i32| -> Option<File> {
            // SAFETY: valid dirfd, NUL-terminated name; the result is ours.
            let f = unsafe {
                libc::openat(fd, cn.as_ptr(), flags | libc::O_NOFOLLOW | libc::O_CLOEXEC)
            };
            (f >= 0).then(|| unsafe { File::from_raw_fd(f) })
        };
        match st.st_mode & libc::S_IFMT {
            libc::S_IFDIR => {
                out.insert(rel.clone(), Ent::Dir);
                if let Some(sub) = open(libc::O_RDONLY | libc::O_DIRECTORY) {
                    walk(sub.as_raw_fd(), &rel, out);
                }
            }
            libc::S_IFREG => {
                let mut body = Vec::new();
                if let Some(mut f) = open(libc::O_RDONLY | libc::O_NONBLOCK) {
                    f.read_to_end(&mut body).unwrap();
                }
                out.insert(rel, Ent::File(body));
            }
            libc::S_IFLNK => {
                let mut buf = vec![0u8; 8192];
                // SAFETY: valid dirfd, NUL-terminated name, buffer of buf.len() bytes.
                let k = unsafe {
                    libc::readlinkat(fd, cn.as_ptr(), buf.as_mut_ptr().cast(), buf.len())
                };
                buf.truncate(k.max(0) as usize);
                out.insert(rel, Ent::Link(buf));
            }
            m => {
                out.insert(rel, Ent::Other(m));
            }
        }
    }
}

fn show(b: &[u8]) -> String {
    let s = String::from_utf8_lossy(b).escape_debug().to_string();
    if s.chars().count() > 60 {
        let head: String = s.chars().take(28).collect();
        let tail: String = s
            .chars()
            .rev()
            .take(28)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect();
        format!("{head}…{tail}")
    } else {
        s
    }
}

// ---------------------------------------------------------------------------------------------
// running one (case, kind)

/// What a run gave.
#[derive(Debug)]
enum Outcome {
    /// Written: the recording's files (paths under the root) or, for an upload, the journal.
    Written,
    /// A typed error: (vendor code, its text).
    Refused(i32, String),
}

fn settings(mode: PaceMode, overwrite: bool) -> MixerSettings {
    MixerSettings {
        backend: Backend::Cpu,
        encoder: EncoderSettings {
            encoder: Some("libx264".into()),
            preset: "ultrafast".into(),
            threads: 1,
        },
        mode,
        overwrite,
        ..Default::default()
    }
}

fn solid() -> VideoFrame {
    VideoFrame::solid_i420(160, 120, [81, 90, 240]).unwrap()
}

fn tone(k: u64) -> AudioFrame {
    let s: Vec<f32> = (0..480)
        .map(|i| {
            let t = (k * 480 + i) as f32 / 48_000.0;
            (t * 440.0 * std::f32::consts::TAU).sin() * 0.3
        })
        .collect();
    AudioFrame::f32_interleaved(s, 48_000, 1)
        .unwrap()
        .with_capture(Duration::from_millis(10 * k))
}

fn mixer_err(e: &MixerError) -> Outcome {
    Outcome::Refused(e.code(), e.to_string())
}

/// The final failure reported in the events, if any.
fn failed(evs: &[MixerEvent]) -> Option<Outcome> {
    evs.iter().find_map(|e| match e {
        MixerEvent::OutputInfoChanged(i) if i.state == OutputState::Fail => {
            Some(Outcome::Refused(i.err_code, i.err_desc.clone()))
        }
        MixerEvent::Error { code, desc } => Some(Outcome::Refused(*code, desc.clone())),
        _ => None,
    })
}

/// Runs the recorder (or uploader) of `kind` on `svr` (the config path, '/' + case path).
/// `Written`: it succeeded; the files are found by comparing the trees.
fn run_kind(env: &Env, svr: &str, overwrite: bool) -> Outcome {
    let storage = Storage::new(&env.root);
    let video = |extra: Value| -> Value {
        let mut vfc = json!({"svrPathName": svr, "vWidth": 160, "vHeight": 120, "vFps": 15,
            "layoutConfig": [{"type": 0, "left": 0, "top": 0, "width": 160, "height": 120,
                "param": {"camid": "a"}}]});
        for (k, v) in extra.as_object().unwrap() {
            vfc[k] = v.clone();
        }
        json!({"mode": 0, "videoFileCfg": vfc})
    };
    match env.kind {
        Kind::Upload => run_upload(env, svr),
        Kind::Mode1 => {
            let cfg = json!({"mode": 1, "roomId": 7,
                "videoFileCfg": {"svrPath": svr, "svrFileNameSuffix": ".mp4", "vFps": 15,
                    "subscribeVideos": ["_cr_all_"]}});
            let cfg = match MixerConfig::from_value(cfg) {
                Ok(c) => c,
                Err(e) => return mixer_err(&MixerError::from(e)),
            };
            let mut rec =
                match StreamRecorder::create(cfg, storage, settings(PaceMode::Realtime, overwrite))
                {
                    Ok(r) => r,
                    Err(e) => return mixer_err(&e),
                };
            let events = rec.subscribe();
            let mut first_err = None;
            for _ in 0..8 {
                if let Err(e) = rec.push_video("u1.0", solid()) {
                    first_err.get_or_insert(mixer_err(&e));
                }
                std::thread::sleep(Duration::from_millis(66));
            }
            let r = rec.destroy();
            let evs: Vec<MixerEvent> = events.try_iter().collect();
            if let Some(o) = first_err {
                return o;
            }
            if let Err(e) = r {
                return mixer_err(&e);
            }
            failed(&evs).unwrap_or(Outcome::Written)
        }
        kind => {
            let v = match kind {
                Kind::Seg => video(json!({"segmentDuration": 1})),
                k if k.audio_only() => json!({"mode": 0, "audioFileCfg": {"svrPathName": svr}}),
                _ => video(json!({})),
            };
            let cfg = match MixerConfig::from_value(v) {
                Ok(c) => c,
                Err(e) => return mixer_err(&MixerError::from(e)),
            };
            let mut m =
                match Mixer::create_with(cfg, storage, settings(PaceMode::Offline, overwrite)) {
                    Ok(m) => m,
                    Err(e) => return mixer_err(&e),
                };
            let mut err = None;
            for step in 1..=5u64 {
                let r = if kind.audio_only() {
                    (0..10).try_for_each(|i| m.push_audio("u1", tone((step - 1) * 10 + i)))
                } else {
                    m.push_video("a", solid())
                };
                let r = r.and_then(|_| m.advance_to(Duration::from_millis(100 * step)));
                if let Err(e) = r {
                    err = Some(mixer_err(&e));
                    break;
                }
            }
            let r = m.destroy();
            let evs: Vec<MixerEvent> = m.events().try_iter().collect();
            if let Err(e) = r {
                return mixer_err(&e);
            }
            err.or_else(|| failed(&evs)).unwrap_or(Outcome::Written)
        }
    }
}

/// Places a file at the hostile path (following whatever the tree says: this is the setup, not
/// the check) when nothing is there, then submits it and drops the uploader at once.
fn run_upload(env: &Env, svr: &str) -> Outcome {
    let rel = svr.trim_start_matches('/');
    let file = env.root.join(OsStr::from_bytes(rel.as_bytes()));
    let target = UploadTarget {
        region: "us-east-1".into(),
        bucket: "recordings".into(),
        access_key: "ak".into(),
        secret_key: "sk".into(),
        endpoint: Some(format!(
            "http://127.0.0.1:{}",
            cloudmixer::testkit::s3::free_port()
        )),
        ..UploadTarget::default()
    };
    let opts = UploadOptions {
        workers: 1,
        retries: 0,
        backoff_start: Duration::from_millis(10),
        ..UploadOptions::default()
    };
    let up = match Uploader::new(
        target,
        opts,
        Storage::new(&env.root),
        JournalKey::from_bytes([7; 32]),
        |_| {},
    ) {
        Ok(u) => u,
        Err(e) => return Outcome::Refused(e.code(), e.to_string()),
    };
    let r = up.submit(&file, rel);
    drop(up);
    match r {
        Ok(()) => Outcome::Written,
        Err(e) => Outcome::Refused(e.code(), e.to_string()),
    }
}

/// For an upload case: puts a small file at the path, following the tree (setup).
fn place_upload_file(env: &Env, rel: &str) {
    if rel.as_bytes().contains(&0) {
        return;
    }
    // through descriptors, so that paths over PATH_MAX work; symlinks are followed (setup)
    let root = File::open(&env.root).unwrap();
    let mut fd = root.as_raw_fd();
    let mut held = Vec::new();
    let parts: Vec<&str> = rel.split('/').collect();
    for (i, p) in parts.iter().enumerate() {
        let Ok(c) = CString::new(*p) else { return };
        if i + 1 == parts.len() {
            // SAFETY: valid dirfd, NUL-terminated name.
            let f = unsafe {
                libc::openat(
                    fd,
                    c.as_ptr(),
                    libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL | libc::O_CLOEXEC,
                    0o644,
                )
            };
            if f >= 0 {
                let mut f = unsafe { File::from_raw_fd(f) };
                std::io::Write::write_all(&mut f, b"a recording to upload\n").unwrap();
            }
            return;
        }
        // SAFETY: as above.
        unsafe { libc::mkdirat(fd, c.as_ptr(), 0o755) };
        let d = unsafe { libc::openat(fd, c.as_ptr(), libc::O_RDONLY | libc::O_DIRECTORY) };
        if d < 0 {
            return;
        }
        let d = unsafe { File::from_raw_fd(d) };
        fd = d.as_raw_fd();
        held.push(d);
    }
}

// ---------------------------------------------------------------------------------------------
// the checks

/// What one (case, kind) did, and what is wrong with it.
struct Report {
    case: &'static str,
    kind: Kind,
    cell: String,
    problems: Vec<String>,
    secs: f64,
}

/// Checks invariants (1) and (2) between two snapshots of `base` (holding `root/` and
/// `outside/`); `replaced` is the target's own path under `base` when overwrite may replace it.
fn check_trees(before: &Snap, after: &Snap, replaced: Option<&[u8]>) -> Vec<String> {
    let mut p = Vec::new();
    let in_root = |k: &[u8]| k.starts_with(b"root/");
    // (1) nothing outside the root changed, appeared or went away
    for (k, v) in before
        .iter()
        .filter(|(k, _)| !in_root(k) && k.as_slice() != b"root")
    {
        match after.get(k) {
            None => p.push(format!("outside the root: {} was deleted", show(k))),
            Some(w) if w != v => p.push(format!("outside the root: {} was changed", show(k))),
            _ => {}
        }
    }
    for k in after
        .keys()
        .filter(|k| !in_root(k) && k.as_slice() != b"root")
    {
        if !before.contains_key(k) {
            p.push(format!("outside the root: {} was created", show(k)));
        }
    }
    if let Some(Ent::File(b)) = after.get(b"outside/victim".as_slice()) {
        if b != VICTIM {
            p.push("the victim's bytes changed".into());
        }
    } else {
        p.push("the victim is gone or no longer a file".into());
    }
    // (2) no regular file inside the root clobbered
    for (k, v) in before.iter().filter(|(k, _)| in_root(k)) {
        if let Ent::File(b) = v {
            if Some(k.as_slice()) == replaced {
                continue;
            }
            match after.get(k) {
                Some(Ent::File(a)) if a == b => {}
                Some(_) => p.push(format!("inside the root: {} was clobbered", show(k))),
                None => p.push(format!("inside the root: {} was deleted", show(k))),
            }
        }
    }
    p
}

/// New or changed regular files under the root.
fn new_files(before: &Snap, after: &Snap) -> Vec<Vec<u8>> {
    after
        .iter()
        .filter(|(k, v)| {
            k.starts_with(b"root/") && matches!(v, Ent::File(_)) && before.get(*k) != Some(v)
        })
        .map(|(k, _)| k.clone())
        .collect()
}

fn dir_of(k: &[u8]) -> &[u8] {
    match k.iter().rposition(|&b| b == b'/') {
        Some(i) => &k[..i],
        None => b"",
    }
}

fn name_of(k: &[u8]) -> &[u8] {
    &k[k.iter().rposition(|&b| b == b'/').map_or(0, |i| i + 1)..]
}

/// Packets ffprobe reads from `main` (a copy of the recording's directory is probed, so long
/// and odd paths are no problem for ffprobe).
fn probe(after: &Snap, main: &[u8], scratch: &Path) -> Result<u64, String> {
    let _ = std::fs::remove_dir_all(scratch);
    std::fs::create_dir_all(scratch).unwrap();
    let dir = dir_of(main);
    for (k, v) in after {
        if let Ent::File(b) = v {
            if dir_of(k) == dir {
                std::fs::write(scratch.join(OsStr::from_bytes(name_of(k))), b).unwrap();
            }
        }
    }
    let out = Command::new("ffprobe")
        .args(["-v", "error", "-count_packets", "-show_entries"])
        .args(["stream=nb_read_packets", "-of", "csv=p=0"])
        .arg(scratch.join(OsStr::from_bytes(name_of(main))))
        .output()
        .map_err(|e| format!("ffprobe: {e}"))?;
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    let n: u64 = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.trim().trim_end_matches(',').parse::<u64>().ok())
        .sum();
    Ok(n)
}

/// Runs one (case, kind) in `base` and checks it.
fn run_case(case: &Case, kind: Kind, base: &Path) -> Report {
    let t0 = Instant::now();
    let _ = std::fs::remove_dir_all(base);
    let env = Env {
        base: base.to_path_buf(),
        root: base.join("root"),
        outside: base.join("outside"),
        kind,
    };
    std::fs::create_dir_all(&env.root).unwrap();
    std::fs::create_dir_all(&env.outside).unwrap();
    std::fs::write(env.victim(), VICTIM).unwrap();
    std::fs::write(env.outside.join("other.bin"), INNER).unwrap();
    std::fs::write(env.root.join("earlier.bin"), INNER).unwrap();
    let rel = (case.setup)(&env);
    if kind == Kind::Upload {
        place_upload_file(&env, &rel);
    }
    let before = snapshot(&env.base);
    let svr = format!("/{rel}");
    let outcome = run_kind(&env, &svr, case.overwrite);
    let after = snapshot(&env.base);

    let target_key = [b"root/".as_slice(), rel.as_bytes()].concat();
    let replaced = case.overwrite.then_some(target_key.as_slice());
    let mut problems = check_trees(&before, &after, replaced);
    let made = new_files(&before, &after);
    let want_name = name_of(rel.as_bytes()).to_vec();
    let cell = match &outcome {
        Outcome::Refused(code, text) => {
            let ok_codes: &[i32] = if kind == Kind::Upload {
                &[cloudmixer::model::events::codes::UPLOAD_FAIL]
            } else {
                &[codes::PARAM_ERR, codes::FILE_ERR]
            };
            if !ok_codes.contains(code) {
                problems.push(format!("refused with code {code}: {text}"));
            }
            // the text names the path (a component of it) or the reason
            let comps: Vec<String> = rel
                .split('/')
                .filter(|c| !c.is_empty() && *c != "." && *c != "..")
                .map(|c| c.chars().take(20).collect())
                .collect();
            let words = [
                "symlink",
                "..",
                "NUL",
                "control",
                "long",
                "directory",
                "escape",
                "name",
                "exist",
                "regular",
                "root",
                "path",
            ];
            if text.trim().is_empty()
                || !(comps.iter().any(|c| text.contains(c.as_str()))
                    || words.iter().any(|w| text.contains(w)))
            {
                problems.push(format!("the error names neither path nor reason: {text}"));
            }
            // nothing half-written left behind by a refusal (upload journals included)
            let stray: Vec<String> = made.iter().map(|k| show(k)).collect();
            if !stray.is_empty() && kind != Kind::Upload {
                problems.push(format!("refused ({code}) but left files: {stray:?}"));
            }
            let short: String = text.chars().take(110).collect();
            format!("refused {code}: {}", short.escape_debug())
        }
        Outcome::Written if kind == Kind::Upload => {
            // the journal lies next to a regular file under the root
            let journals: Vec<&Vec<u8>> = made
                .iter()
                .filter(|k| k.ends_with(b".upload.json"))
                .collect();
            let here = [want_name.as_slice(), b".upload.json"].concat();
            match journals.as_slice() {
                [j] if name_of(j) == here.as_slice() => {
                    let file = &j[..j.len() - b".upload.json".len()];
                    if !matches!(after.get(file), Some(Ent::File(_))) {
                        problems.push(format!("journal {} names no regular file", show(j)));
                    }
                    format!("ok journal {}", show(&j[5..]))
                }
                other => {
                    problems.push(format!(
                        "submit succeeded but journals are {:?}",
                        other.iter().map(|k| show(k)).collect::<Vec<_>>()
                    ));
                    "BAD".into()
                }
            }
        }
        Outcome::Written => {
            let ext = format!(".{}", kind.ext());
            let mains: Vec<&Vec<u8>> = made
                .iter()
                .filter(|k| k.ends_with(ext.as_bytes()) && !k.ends_with(b"_init.mp4"))
                .collect();
            if mains.is_empty() {
                problems.push(format!(
                    "succeeded but no new {ext} file under the root (new: {:?})",
                    made.iter().map(|k| show(k)).collect::<Vec<_>>()
                ));
            }
            for m in &mains {
                let scratch = base.with_extension("probe");
                match probe(&after, m, &scratch) {
                    Ok(n) if n > 0 => {}
                    Ok(n) => problems.push(format!("{}: ffprobe read {n} packets", show(m))),
                    Err(e) => problems.push(format!("{}: ffprobe: {}", show(m), e.trim())),
                }
                let _ = std::fs::remove_dir_all(&scratch);
            }
            // segments are named stem_0001.ext… by design
            let seg_name = match want_name.iter().rposition(|&b| b == b'.') {
                Some(i) => [&want_name[..i], b"_0001", &want_name[i..]].concat(),
                None => want_name.clone(),
            };
            let wanted = if kind == Kind::Seg {
                &seg_name
            } else {
                &want_name
            };
            let renamed = mains.iter().any(|m| name_of(m) != wanted.as_slice());
            let first = mains.first().map(|m| show(&m[5..])).unwrap_or_default();
            let more = if mains.len() > 1 {
                format!(" +{}", mains.len() - 1)
            } else {
                String::new()
            };
            if kind == Kind::Mode1 || !renamed {
                format!("ok {first}{more}")
            } else {
                format!("renamed {first}{more}")
            }
        }
    };
    // what the case expects of a file target (mode 1's path is a directory; uploads differ)
    if !matches!(kind, Kind::Mode1 | Kind::Upload) {
        let bad = match (case.expect, &outcome) {
            (Expect::Param, Outcome::Refused(c, _)) => *c != codes::PARAM_ERR,
            (Expect::Param | Expect::Refused, Outcome::Written) => true,
            (Expect::Written, Outcome::Refused(..)) => true,
            _ => false,
        };
        if bad {
            problems.push(format!("expected {:?}", case.expect));
        }
    }
    if problems.is_empty() {
        let _ = std::fs::remove_dir_all(base);
    }
    Report {
        case: case.name,
        kind,
        cell,
        problems,
        secs: t0.elapsed().as_secs_f64(),
    }
}

// ---------------------------------------------------------------------------------------------
// the tests

fn scratch_dir(name: &str) -> PathBuf {
    let d = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("hostile_paths")
        .join(name);
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[test]
fn hostile_paths_never_escape_clobber_panic_or_hang() {
    let dir = scratch_dir("table");
    let cases = Arc::new(cases());
    assert!(cases.len() >= 30);
    let jobs: Vec<(usize, Kind)> = KINDS
        .iter()
        .rev() // the real-time mode 1 runs first, next to the others
        .flat_map(|&k| (0..cases.len()).map(move |i| (i, k)))
        .collect();
    let total = jobs.len();
    let queue = Arc::new(Mutex::new(jobs));
    let reports = Arc::new(Mutex::new(Vec::<Report>::new()));
    let t0 = Instant::now();
    let workers: Vec<_> = (0..4)
        .map(|_| {
            let (queue, reports, cases, dir) =
                (queue.clone(), reports.clone(), cases.clone(), dir.clone());
            std::thread::spawn(move || loop {
                let Some((i, kind)) = queue.lock().unwrap().pop() else {
                    break;
                };
                let base = dir.join(format!("{i:02}_{}", kind.label()));
                let (tx, rx) = crossbeam_channel::bounded(1);
                let cs = cases.clone();
                let b = base.clone();
                // its own thread: a panic is caught, a hang is bounded
                std::thread::spawn(move || {
                    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                        run_case(&cs[i], kind, &b)
                    }));
                    let _ = tx.send(r);
                });
                let report = match rx.recv_timeout(CASE_LIMIT) {
                    Ok(Ok(r)) => r,
                    Ok(Err(p)) => {
                        let msg = p
                            .downcast_ref::<String>()
                            .cloned()
                            .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                            .unwrap_or_default();
                        Report {
                            case: cases[i].name,
                            kind,
                            cell: "PANIC".into(),
                            problems: vec![format!("panicked: {msg}")],
                            secs: 0.0,
                        }
                    }
                    Err(_) => Report {
                        case: cases[i].name,
                        kind,
                        cell: "HANG".into(),
                        problems: vec![format!("no result after {CASE_LIMIT:?}")],
                        secs: CASE_LIMIT.as_secs_f64(),
                    },
                };
                reports.lock().unwrap().push(report);
            })
        })
        .collect();
    for w in workers {
        w.join().unwrap();
    }
    let took = t0.elapsed();
    let mut reports = std::mem::take(&mut *reports.lock().unwrap());
    let order = |r: &Report| {
        (
            cases.iter().position(|c| c.name == r.case).unwrap(),
            KINDS.iter().position(|k| *k == r.kind).unwrap(),
        )
    };
    reports.sort_by_key(order);
    let mut table = String::new();
    let mut last = "";
    for r in &reports {
        if r.case != last {
            table.push_str(&format!("{}\n", r.case));
            last = r.case;
        }
        let mark = if r.problems.is_empty() { " " } else { "✗" };
        table.push_str(&format!(
            "  {mark} {:<6} {:>5.2}s {}\n",
            r.kind.label(),
            r.secs,
            r.cell
        ));
        for p in &r.problems {
            table.push_str(&format!("        ! {p}\n"));
        }
    }
    let bad: Vec<&Report> = reports.iter().filter(|r| !r.problems.is_empty()).collect();
    eprintln!(
        "{table}\n{} cases × {} kinds = {} runs ({} reported) in {:.1} s; {} failed",
        cases.len(),
        KINDS.len(),
        total,
        reports.len(),
        took.as_secs_f64(),
        bad.len()
    );
    assert_eq!(reports.len(), total);
    assert!(
        bad.is_empty(),
        "{} of {total} (case, kind) runs broke a rule:\n{}",
        bad.len(),
        bad.iter()
            .map(|r| format!(
                "{} × {}: {} — {}",
                r.case,
                r.kind.label(),
                r.cell,
                r.problems.join("; ")
            ))
            .collect::<Vec<_>>()
            .join("\n")
    );
}

/// The checks can fail: a "recorder" that writes through a planted symlink with std::fs, or
/// clobbers a file inside the root, or creates a file next to the victim, is caught.
#[test]
fn the_checks_catch_writes_through_symlinks_and_clobbers() {
    let base = scratch_dir("self_check");
    let root = base.join("root");
    let outside = base.join("outside");
    std::fs::create_dir_all(&root).unwrap();
    std::fs::create_dir_all(&outside).unwrap();
    std::fs::write(outside.join("victim"), VICTIM).unwrap();
    std::fs::write(root.join("earlier.bin"), INNER).unwrap();
    std::os::unix::fs::symlink(&outside, root.join("l1")).unwrap();
    std::os::unix::fs::symlink(outside.join("victim"), root.join("rec.mp4")).unwrap();
    let before = snapshot(&base);
    assert!(check_trees(&before, &snapshot(&base), None).is_empty());

    // a new file through a symlinked directory
    std::fs::write(root.join("l1/new.mp4"), b"x").unwrap();
    let p = check_trees(&before, &snapshot(&base), None);
    assert!(
        p.iter().any(|p| p.contains("outside/new.mp4 was created")),
        "{p:?}"
    );
    std::fs::remove_file(outside.join("new.mp4")).unwrap();

    // the victim written through the symlink at the final name
    std::fs::write(root.join("rec.mp4"), b"clobbered").unwrap();
    let p = check_trees(&before, &snapshot(&base), None);
    assert!(p.iter().any(|p| p.contains("victim")), "{p:?}");
    std::fs::write(outside.join("victim"), VICTIM).unwrap();

    // a file inside the root clobbered, another deleted outside
    std::fs::write(root.join("earlier.bin"), b"new").unwrap();
    let p = check_trees(&before, &snapshot(&base), None);
    assert!(
        p.iter().any(|p| p.contains("earlier.bin was clobbered")),
        "{p:?}"
    );
    std::fs::write(root.join("earlier.bin"), INNER).unwrap();
    std::fs::remove_file(outside.join("victim")).unwrap();
    let p = check_trees(&before, &snapshot(&base), None);
    assert!(p.iter().any(|p| p.contains("victim was deleted")), "{p:?}");

    // and the recorder's own outcome is checked: a refusal with a wrong code is a problem
    std::fs::write(outside.join("victim"), VICTIM).unwrap();
    let case = c("self check", Expect::Param, |e| {
        e.symlink(&e.outside, "l1");
        format!("l1/{}", e.f("rec"))
    });
    let r = run_case(&case, Kind::Mp4, &base.join("mp4"));
    assert!(r.problems.is_empty(), "{}: {:?}", r.cell, r.problems);
    assert!(r.cell.starts_with("refused 5"), "{}", r.cell);
    std::fs::remove_dir_all(&base).unwrap();
}
