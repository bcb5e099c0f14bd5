//! Mode 1 (one file per stream): the vendor's `svrPath`, `svrFileNameSuffix`,
//! `subscribeVideos` / `subscribeAudios`, `aStreamType`, the file-naming rule, and the mode 0
//! config each stream is recorded with.
//!
//! ```
//! use cloudmixer::model::config::MixerConfig;
//! let cfg = MixerConfig::from_json(r#"{"mode":1,"roomId":"42","nicknames":{"u1":"Ann"},
//!   "videoFileCfg":{"svrPath":"/rec","svrFileNameSuffix":".mp4","subscribeVideos":["_cr_all_"],
//!     "aStreamType":1},
//!   "audioFileCfg":{"svrPath":"/rec","svrFileNameSuffix":".mp3","subscribeAudios":["u1"]}}"#).unwrap();
//! let ps = cfg.per_stream.as_ref().unwrap();
//! assert!(ps.subscribes_video("u2.0", true));
//! assert!(!ps.subscribes_audio("u2"));
//! assert_eq!(ps.video_file_name("u1.0", "2026-11-26_10-00-00").unwrap(),
//!            "/rec/Ann_cam0_42_2026-11-26_10-00-00.mp4");
//! // each stream is recorded by a mode 0 config of its own: the camera at its size
//! let one = ps.video_config("u1.0", 640, 480, 30, "2026-11-26_10-00-00").unwrap();
//! assert_eq!((one.output.width, one.output.height, one.output.fps), (640, 480, 30));
//! ```

use std::collections::BTreeMap;

use serde_json::{json, Map, Value};

use super::{
    int_in, join, obj, opt_int, opt_str, parse_segments, refuse_keys, ConfigError, MixerConfig,
    Result, Segments, StorageSettings,
};

/// `_cr_all_`: every stream.
pub const SUBSCRIBE_ALL: &str = "_cr_all_";
/// `_cr_allDefCam_`: every user's default camera.
pub const SUBSCRIBE_ALL_DEFAULT_CAMS: &str = "_cr_allDefCam_";

/// What `subscribeVideos` / `subscribeAudios` select.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Subscribe {
    /// `_cr_all_`.
    All,
    /// `_cr_allDefCam_` (videos only): each user's default camera: the camid `user.-1`, or
    /// else the first camera of the user that sends frames.
    AllDefaultCams,
    /// The listed camids (`user.cam`) or user IDs.
    List(Vec<String>),
}

/// `videoFileCfg` of mode 1.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PerStreamVideo {
    /// `svrPath`: the folder of the files (default: the storage root).
    pub svr_path: String,
    /// `svrFileNameSuffix`, e.g. `.mp4`.
    pub suffix: String,
    /// `subscribeVideos`.
    pub subscribe: Subscribe,
    /// `aStreamType` 1: everyone's audio in each file; 0 (default): the stream's user's own.
    pub room_audio: bool,
    /// `vFps` (extension in mode 1); `None`: each camera's own rate.
    pub fps: Option<u32>,
    /// `vBps` (extension in mode 1; default by the camera's area).
    pub bitrate: Option<u32>,
    /// `vQP` (extension in mode 1).
    pub qp: Option<u8>,
    /// `segmentDuration` / `segmentSize` (extensions): each camera's file is split into
    /// numbered segments as a mode 0 file is.
    pub segments: Segments,
}

/// `audioFileCfg` of mode 1.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PerStreamAudio {
    /// `svrPath`.
    pub svr_path: String,
    /// `svrFileNameSuffix`: `.mp3` or `.wav` (also `.m4a`, `.aac`).
    pub suffix: String,
    /// `subscribeAudios` (`_cr_all_` or user IDs).
    pub subscribe: Subscribe,
}

/// Mode 1: one file per subscribed stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PerStream {
    /// Video files (camera streams), if configured.
    pub video: Option<PerStreamVideo>,
    /// Audio files (one per user), if configured.
    pub audio: Option<PerStreamAudio>,
    /// Extension `roomId`: the room ID in file names (default `0`).
    pub room_id: String,
    /// Extension `nicknames`: `{userId: nickname}` for file names (default: the user ID).
    pub nicknames: BTreeMap<String, String>,
    /// `storageConfig`, passed on to every stream's recording.
    pub storage: Option<StorageSettings>,
}

/// A name part safe in a file name: `/`, `\`, control characters and `:` become `_`.
fn safe(s: &str) -> String {
    let t: String = s
        .chars()
        .map(|c| {
            if c.is_control() || matches!(c, '/' | '\\' | ':' | '*' | '?' | '"' | '<' | '>' | '|') {
                '_'
            } else {
                c
            }
        })
        .collect();
    if t.trim().is_empty() || t == "." || t == ".." {
        "_".into()
    } else {
        t
    }
}

/// The longest file name (bytes) a stream's file is given: the file system's 255 bytes per
/// name, less room for what may be appended to it (a segment number `_0001`, a free-name number
/// `_12` when the file exists, the upload journal's `.upload.json`).
pub const MAX_FILE_NAME: usize = 255 - 32;

/// 64-bit FNV-1a: a hash that stays the same across builds and platforms.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// The first at most `max` bytes of `s`, cut between characters.
fn cut(s: &str, max: usize) -> &str {
    let mut end = max.min(s.len());
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// `nick + rest` (`rest`: the rule's other parts and the suffix), or when that is longer than
/// [`MAX_FILE_NAME`], the nickname cut and followed by `~` and a hash of the whole name, so two
/// long names stay apart: `Annnn…~1a2b3c4d_cam0_888_2026-11-26_10-00-00.mp4`. Only when the
/// other parts alone are too long (a huge room ID or camera number) are they cut too, before
/// the suffix.
fn fit_name(nick: &str, rest: &str, suffix: &str) -> String {
    let full = format!("{nick}{rest}");
    if full.len() <= MAX_FILE_NAME {
        return full;
    }
    let hash = format!("~{:08x}", fnv1a(full.as_bytes()) as u32);
    let room = MAX_FILE_NAME.saturating_sub(rest.len() + hash.len());
    if room >= 8.min(nick.len()) {
        return format!("{}{hash}{rest}", cut(nick, room));
    }
    let stem = full.strip_suffix(suffix).unwrap_or(&full);
    let room = MAX_FILE_NAME.saturating_sub(suffix.len() + hash.len());
    format!("{}{hash}{}", cut(stem, room), cut(suffix, MAX_FILE_NAME))
}

fn folder(path: &str, name: String) -> String {
    let p = path.trim_end_matches('/');
    if p.is_empty() && path.starts_with('/') {
        format!("/{name}")
    } else if p.is_empty() {
        name
    } else {
        format!("{p}/{name}")
    }
}

impl PerStream {
    /// The user of a camid (`user.cam` → `user`).
    pub fn user_of(camid: &str) -> &str {
        crate::model::audio::user_of(camid)
    }

    fn nickname(&self, user: &str) -> String {
        safe(self.nicknames.get(user).map_or(user, String::as_str))
    }

    /// Whether camera `camid` is recorded; `default_cam`: it is its user's default camera.
    pub fn subscribes_video(&self, camid: &str, default_cam: bool) -> bool {
        match self.video.as_ref().map(|v| &v.subscribe) {
            None => false,
            Some(Subscribe::All) => true,
            Some(Subscribe::AllDefaultCams) => default_cam,
            Some(Subscribe::List(l)) => l.iter().any(|c| c == camid),
        }
    }

    /// Whether user `user` gets an audio file.
    pub fn subscribes_audio(&self, user: &str) -> bool {
        match self.audio.as_ref().map(|a| &a.subscribe) {
            None => false,
            Some(Subscribe::All | Subscribe::AllDefaultCams) => true,
            Some(Subscribe::List(l)) => l.iter().any(|u| u == user),
        }
    }

    /// The vendor's rule: `svrPath/nickname_cam<camNo>_roomID_startTime.suffix` (camNo: the
    /// camid's part after the '.'); `start` is the stream's start as the caller formats it
    /// (cloudmixer: local time `YYYY-MM-DD_HH-MM-SS`). `None` without a `videoFileCfg`. A name
    /// longer than [`MAX_FILE_NAME`] bytes has its nickname cut and a hash added (see
    /// `fit_name`).
    pub fn video_file_name(&self, camid: &str, start: &str) -> Option<String> {
        let v = self.video.as_ref()?;
        let cam = camid.split_once('.').map_or("0", |(_, c)| c);
        let rest = format!(
            "_cam{}_{}_{}{}",
            safe(cam),
            safe(&self.room_id),
            safe(start),
            v.suffix
        );
        Some(folder(
            &v.svr_path,
            fit_name(&self.nickname(Self::user_of(camid)), &rest, &v.suffix),
        ))
    }

    /// The vendor's rule: `svrPath/nickname_roomID_startTime.suffix` (shortened as
    /// [`PerStream::video_file_name`] is).
    pub fn audio_file_name(&self, user: &str, start: &str) -> Option<String> {
        let a = self.audio.as_ref()?;
        let rest = format!("_{}_{}{}", safe(&self.room_id), safe(start), a.suffix);
        Some(folder(
            &a.svr_path,
            fit_name(&self.nickname(user), &rest, &a.suffix),
        ))
    }

    /// The mode 0 config that records camera `camid` alone into its file: the canvas is the
    /// camera's size (rounded down to even; later frames of another size are fitted), the
    /// one item shows it whole, the audio is the user's own (`aStreamType` 0) or everyone's;
    /// `fps` is used when the config has no `vFps`.
    pub fn video_config(
        &self,
        camid: &str,
        width: u32,
        height: u32,
        fps: u32,
        start: &str,
    ) -> Result<MixerConfig> {
        let v = self.video.as_ref().ok_or_else(|| {
            ConfigError::invalid(
                "videoFileCfg",
                "mode 1 without a videoFileCfg records no video",
            )
        })?;
        let name = self.video_file_name(camid, start).unwrap_or_default();
        let (w, h) = ((width & !1).max(2), (height & !1).max(2));
        let mut vfc = json!({
            "svrPathName": name, "vWidth": w, "vHeight": h, "vFps": v.fps.unwrap_or(fps),
            "layoutConfig": [{"type": 0, "left": 0, "top": 0, "width": w, "height": h,
                "keepAspectRatio": 1, "param": {"camid": camid}}],
        });
        if !v.room_audio {
            vfc["aChannelContent"] = json!([Self::user_of(camid)]);
        }
        if let Some(b) = v.bitrate {
            vfc["vBps"] = b.into();
        }
        if let Some(q) = v.qp {
            vfc["vQP"] = q.into();
        }
        if let Some(d) = v.segments.duration {
            vfc["segmentDuration"] = d.as_secs_f64().into();
        }
        if let Some(b) = v.segments.size {
            vfc["segmentSize"] = b.into();
        }
        self.derived(json!({"mode": 0, "videoFileCfg": vfc}))
    }

    /// The mode 0 config that records user `user`'s audio alone into its audio file.
    pub fn audio_config(&self, user: &str, start: &str) -> Result<MixerConfig> {
        let name = self.audio_file_name(user, start).ok_or_else(|| {
            ConfigError::invalid(
                "audioFileCfg",
                "mode 1 without an audioFileCfg records no audio files",
            )
        })?;
        self.derived(json!({"mode": 0,
            "audioFileCfg": {"svrPathName": name, "aChannelContent": [user]}}))
    }

    fn derived(&self, mut v: Value) -> Result<MixerConfig> {
        let mut cfg = MixerConfig::from_value(v.take())?;
        cfg.storage = self.storage.clone();
        Ok(cfg)
    }
}

fn parse_subscribe(
    m: &Map<String, Value>,
    path: &str,
    key: &str,
    videos: bool,
) -> Result<Subscribe> {
    let p = join(path, key);
    let list: Vec<String> = match m.get(key) {
        None | Some(Value::Null) => return Err(ConfigError::invalid(&p, "is required")),
        // the vendor's own docs show both a string and an array
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(a)) => a
            .iter()
            .enumerate()
            .map(|(i, v)| match v.as_str() {
                Some(s) if !s.trim().is_empty() => Ok(s.to_string()),
                _ => Err(ConfigError::invalid(
                    &format!("{p}[{i}]"),
                    "must be a non-empty string",
                )),
            })
            .collect::<Result<_>>()?,
        Some(other) => {
            return Err(ConfigError::invalid(
                &p,
                format!(
                    "must be an array of strings, got {}",
                    super::describe(other)
                ),
            ))
        }
    };
    if list.is_empty() {
        return Err(ConfigError::invalid(&p, "must not be empty"));
    }
    if list.iter().any(|s| s == SUBSCRIBE_ALL) {
        return Ok(Subscribe::All);
    }
    if list.iter().any(|s| s == SUBSCRIBE_ALL_DEFAULT_CAMS) {
        if !videos {
            return Err(ConfigError::invalid(
                &p,
                "_cr_allDefCam_ selects cameras; use _cr_all_ or user IDs",
            ));
        }
        return Ok(Subscribe::AllDefaultCams);
    }
    if videos {
        if let Some((i, c)) = list
            .iter()
            .enumerate()
            .find(|(_, c)| !c.contains('.') || c.starts_with('.') || c.ends_with('.'))
        {
            return Err(ConfigError::invalid(
                &format!("{p}[{i}]"),
                format!("\"{c}\" is not a camid \"userId.camId\" (or _cr_all_, _cr_allDefCam_)"),
            ));
        }
    }
    Ok(Subscribe::List(list))
}

fn parse_path(m: &Map<String, Value>, path: &str) -> Result<String> {
    let s = opt_str(m, path, "svrPath")?.unwrap_or("");
    if !s.is_empty() {
        super::confine(s).map_err(|e| ConfigError::invalid(&join(path, "svrPath"), e))?;
    }
    Ok(s.to_string())
}

fn parse_suffix(m: &Map<String, Value>, path: &str, allowed: &[&str]) -> Result<String> {
    let p = join(path, "svrFileNameSuffix");
    let s = opt_str(m, path, "svrFileNameSuffix")?
        .ok_or_else(|| ConfigError::invalid(&p, "is required"))?;
    let norm = if s.starts_with('.') {
        s.to_ascii_lowercase()
    } else {
        format!(".{}", s.to_ascii_lowercase())
    };
    if !allowed.contains(&norm.as_str()) {
        return Err(ConfigError::invalid(
            &p,
            format!("must be one of {}, got \"{s}\"", allowed.join(", ")),
        ));
    }
    Ok(norm)
}

/// A mode 0 file name in a mode 1 config.
const NAMES_RULE: &str = "is for mode 0; mode 1 names its files by svrPath + svrFileNameSuffix";
/// Any other mode 0 key in a mode 1 config.
const OTHER_MODE_RULE: &str =
    "is for mode 0 (composite); this config is mode 1 (one file per stream), where it would be \
     ignored";
/// Keys of a mode 0 `videoFileCfg` that mode 1 has no use for (besides the names).
const MODE0_VIDEO_KEYS: [&str; 8] = [
    "vWidth",
    "vHeight",
    "aChannelType",
    "aChannelContent",
    "aBps",
    "backgroundColor",
    "backgroundImage",
    "placeholder",
];
/// Keys of a mode 0 `audioFileCfg` that mode 1 has no use for (besides the name).
const MODE0_AUDIO_KEYS: [&str; 3] = ["aChannelType", "aChannelContent", "aBps"];

/// Parses the mode 1 parts of a config.
pub(super) fn parse(
    root: &Map<String, Value>,
    storage: Option<StorageSettings>,
) -> Result<PerStream> {
    let video = match root.get("videoFileCfg") {
        None | Some(Value::Null) => None,
        Some(v) => {
            let p = "videoFileCfg";
            let m = obj(v, p)?;
            refuse_keys(root, &[(p, "svrPathName"), (p, "layoutConfig")], NAMES_RULE)?;
            let others = MODE0_VIDEO_KEYS.map(|k| (p, k));
            refuse_keys(root, &others, OTHER_MODE_RULE)?;
            let fps = match opt_int(m, p, "vFps")?.unwrap_or(0) {
                0 => None,
                f => Some(int_in("videoFileCfg.vFps", f, 1, 30)? as u32),
            };
            let room_audio = match opt_int(m, p, "aStreamType")?.unwrap_or(0) {
                0 => false,
                1 => true,
                o => {
                    return Err(ConfigError::invalid(
                        "videoFileCfg.aStreamType",
                        format!("must be 0 (the user's own audio) or 1 (everyone's), got {o}"),
                    ))
                }
            };
            Some(PerStreamVideo {
                svr_path: parse_path(m, p)?,
                suffix: parse_suffix(m, p, &[".mp4", ".flv", ".ts", ".mkv"])?,
                subscribe: parse_subscribe(m, p, "subscribeVideos", true)?,
                room_audio,
                fps,
                bitrate: match opt_int(m, p, "vBps")? {
                    None | Some(0) => None,
                    Some(b) => Some(int_in("videoFileCfg.vBps", b, 10_000, 100_000_000)? as u32),
                },
                qp: match opt_int(m, p, "vQP")? {
                    None => None,
                    Some(q) => Some(int_in("videoFileCfg.vQP", q, 0, 51)? as u8),
                },
                segments: parse_segments(m, p)?,
            })
        }
    };
    let audio = match root.get("audioFileCfg") {
        None | Some(Value::Null) => None,
        Some(v) => {
            let p = "audioFileCfg";
            let m = obj(v, p)?;
            refuse_keys(root, &[(p, "svrPathName")], NAMES_RULE)?;
            let others = MODE0_AUDIO_KEYS.map(|k| (p, k));
            refuse_keys(root, &others, OTHER_MODE_RULE)?;
            Some(PerStreamAudio {
                svr_path: parse_path(m, p)?,
                suffix: parse_suffix(m, p, &[".mp3", ".wav", ".m4a", ".aac"])?,
                subscribe: parse_subscribe(m, p, "subscribeAudios", false)?,
            })
        }
    };
    if video.is_none() && audio.is_none() {
        return Err(ConfigError::invalid(
            "videoFileCfg",
            "mode 1 needs a videoFileCfg or an audioFileCfg",
        ));
    }
    let room_id = match root.get("roomId") {
        None | Some(Value::Null) => "0".to_string(),
        Some(Value::String(s)) if !s.trim().is_empty() => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        Some(other) => {
            return Err(ConfigError::invalid(
                "roomId",
                format!(
                    "must be a non-empty string or a number, got {}",
                    super::describe(other)
                ),
            ))
        }
    };
    let mut nicknames = BTreeMap::new();
    if let Some(v) = root.get("nicknames").filter(|v| !v.is_null()) {
        for (user, nick) in obj(v, "nicknames")? {
            match nick.as_str() {
                Some(n) if !n.trim().is_empty() => {
                    nicknames.insert(user.clone(), n.to_string());
                }
                _ => {
                    return Err(ConfigError::invalid(
                        &join("nicknames", user),
                        "must be a non-empty string",
                    ))
                }
            }
        }
    }
    Ok(PerStream {
        video,
        audio,
        room_id,
        nicknames,
        storage,
    })
}
