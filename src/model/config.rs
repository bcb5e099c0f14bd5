//! The cloud-mixer JSON (DESIGN §3) → a validated [`MixerConfig`] and [`Layout`].
//!
//! Validation walks the JSON by hand rather than through serde derive so that every error names
//! the JSON path of the bad field and the rule it broke:
//! `videoFileCfg.layoutConfig[1].width: must be > 0, got -5`.

use std::path::{Component, Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Map, Value};
use thiserror::Error;

use crate::model::audio::ChannelMode;
use crate::model::color::{parse_hex_color, rgb_to_yuv709_limited};
use crate::model::layout::{
    FitMode, Item, ItemKind, Layout, Rect, LOCAL_SCREEN_KEY, MEDIA_SHARE_KEY, SCREEN_SHARE_KEY,
    WHITEBOARD_KEY,
};

/// Largest canvas side.
pub const MAX_CANVAS: u32 = 8192;
/// Largest item side.
pub const MAX_ITEM: i64 = 16384;
/// Default output frame rate when `vFps` is 0 or absent.
pub const DEFAULT_FPS: u32 = 12;
/// Default quantiser.
pub const DEFAULT_QP: u8 = 19;
/// Clock rate of a mixer that records audio only (no `videoFileCfg`): its ticks drive the
/// audio mix every 20 ms.
pub const AUDIO_ONLY_TICK_RATE: u32 = 50;

/// A config that cannot be used. Nothing was changed.
#[derive(Debug, Error, Clone, PartialEq)]
pub enum ConfigError {
    /// Not parseable as JSON.
    #[error("config is not valid JSON: {0}")]
    Json(String),
    /// A field breaks a rule.
    #[error("{path}: {rule}")]
    Invalid {
        /// JSON path of the field, e.g. `videoFileCfg.layoutConfig[1].width`.
        path: String,
        /// What is wrong.
        rule: String,
    },
    /// A live update tried to change something other than `layoutConfig`.
    #[error("{path}: cannot be changed while recording (update_content may change videoFileCfg.layoutConfig only)")]
    NotUpdatable {
        /// JSON path of the field.
        path: String,
    },
}

impl ConfigError {
    /// Control characters of the path and rule (values echoed from the JSON) are escaped.
    fn invalid(path: &str, rule: impl Into<String>) -> Self {
        ConfigError::Invalid {
            path: escape_controls(path),
            rule: escape_controls(&rule.into()),
        }
    }
    /// The JSON path the error is about, if any.
    pub fn path(&self) -> Option<&str> {
        match self {
            ConfigError::Json(_) => None,
            ConfigError::Invalid { path, .. } | ConfigError::NotUpdatable { path } => Some(path),
        }
    }
}

type Result<T> = std::result::Result<T, ConfigError>;

/// Container chosen from a target's extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Container {
    /// Fragmented MP4 (default).
    Mp4,
    /// FLV.
    Flv,
    /// MPEG-TS.
    Ts,
    /// Matroska.
    Mkv,
    /// Audio only: fragmented MPEG-4 audio (AAC).
    M4a,
    /// Audio only: raw AAC in ADTS frames.
    Aac,
    /// Audio only: MP3 (libmp3lame).
    Mp3,
    /// Audio only: WAV (16-bit PCM).
    Wav,
    /// HLS (`.m3u8`): a playlist and fMP4 segments next to it, written live.
    Hls,
}

impl Container {
    /// Whether this container holds audio only (an `audioFileCfg` target).
    pub fn audio_only(self) -> bool {
        matches!(
            self,
            Container::M4a | Container::Aac | Container::Mp3 | Container::Wav
        )
    }
}

/// One output target of `svrPathName`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Target {
    /// A file, relative to the mixer's storage root (normalised, no `..`).
    File {
        /// Relative path under the storage root.
        path: PathBuf,
        /// Container from the extension.
        container: Container,
    },
    /// A live `rtmp://` or `rtsp://` target.
    Url {
        /// The URL as given.
        url: String,
    },
}

/// Output settings that are fixed for a mixer's life.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct OutputSettings {
    /// Targets written from one encode.
    pub targets: Vec<Target>,
    /// The raw `svrPathName`.
    pub svr_path_name: String,
    /// Canvas width (even).
    pub width: u32,
    /// Canvas height (even).
    pub height: u32,
    /// Frames per second (1–30).
    pub fps: u32,
    /// Forced bitrate in bit/s (`vBps`), if any.
    pub bitrate: Option<u32>,
    /// Quantiser when no bitrate is forced.
    pub qp: u8,
    /// Split file targets into numbered segments (`segmentDuration`, `segmentSize`).
    pub segments: Segments,
}

/// When to start the next segment of a file target (extensions `segmentDuration` in seconds,
/// `segmentSize` in bytes): at the first keyframe after either limit. Neither: one file.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Segments {
    /// Longest segment.
    pub duration: Option<Duration>,
    /// Largest segment in bytes.
    pub size: Option<u64>,
    /// Number the files (`rec_0001.mp4`) even with neither limit: one numbered file, or more
    /// when another process continues the series (`serve --fleet` sets it: a room taken over
    /// after its worker died goes on in the next number). Not a config key.
    pub numbered: bool,
    /// The number of the first file (0 or 1: a new series, `rec_1_0001.mp4` when `rec_0…`
    /// exists). Above 1: the series of the target's name is continued at the first free
    /// number from this one. Not a config key.
    pub first: u32,
}

impl Segments {
    /// Whether files are numbered (split by a limit, or [`Segments::numbered`]).
    pub fn enabled(&self) -> bool {
        self.duration.is_some() || self.size.is_some() || self.numbered
    }
}

/// `storageConfig`: where finished recordings are uploaded (an S3-compatible object store), the
/// vendor's fields plus our extensions. The one storage type: the uploader takes it as is
/// (`output::upload::UploadTarget` is this type). Deserialises from the vendor JSON (`vendor`,
/// `region`, `bucket`, `accessKey`, `secretKey`, and ours: `endpoint`, `keepLocal`) without the
/// config's checks (a mixer config is parsed by [`MixerConfig::from_json`], which checks them);
/// serialises without the secret key, and its `Debug` output hides it.
#[derive(Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all(deserialize = "camelCase"))]
pub struct StorageSettings {
    /// The vendor's storage kind: 1 Aliyun OSS (virtual-hosted style,
    /// `https://oss-{region}.aliyuncs.com` without an endpoint); any other value an
    /// S3-compatible store (AWS S3 of `region` unless `endpoint` says otherwise).
    #[serde(default)]
    pub vendor: u32,
    /// Region (`cn-hangzhou` or `oss-cn-hangzhou` for OSS, `us-east-1` for AWS…); also the SigV4
    /// signing region (empty = `us-east-1`).
    #[serde(default)]
    pub region: String,
    /// Bucket, which must exist.
    pub bucket: String,
    /// Access key id.
    pub access_key: String,
    /// Secret access key (never printed, never serialised).
    #[serde(skip_serializing)]
    pub secret_key: String,
    /// Extension: the store's URL (`http://127.0.0.1:9000`, an R2 or MinIO endpoint…);
    /// path-style requests except for vendor 1.
    #[serde(default)]
    pub endpoint: Option<String>,
    /// Extension `keepLocal`: keep the local file after a verified upload (default: removed).
    #[serde(default)]
    pub keep_local: bool,
}

impl std::fmt::Debug for StorageSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StorageSettings")
            .field("vendor", &self.vendor)
            .field("region", &self.region)
            .field("bucket", &self.bucket)
            .field("access_key", &self.access_key)
            .field("secret_key", &"***")
            .field("endpoint", &self.endpoint)
            .field("keep_local", &self.keep_local)
            .finish()
    }
}

impl OutputSettings {
    /// `vBps` when forced, else the resolution table's bitrate (720p: 1 Mbit/s).
    pub fn effective_bitrate(&self) -> u32 {
        self.bitrate
            .unwrap_or_else(|| default_bitrate(self.width, self.height))
    }
}

/// Default bitrate by output size.
pub fn default_bitrate(w: u32, h: u32) -> u32 {
    let px = w as u64 * h as u64;
    match px {
        0..=76_800 => 200_000,            // ≤ 320x240
        76_801..=307_200 => 500_000,      // ≤ 640x480
        307_201..=921_600 => 1_000_000,   // ≤ 1280x720
        921_601..=2_073_600 => 2_000_000, // ≤ 1920x1080
        _ => 4_000_000,
    }
}

/// The audio of one output: which users go where, and the bit rate.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct AudioSettings {
    /// `aChannelType` / `aChannelContent`.
    #[serde(skip)]
    pub channels: ChannelMode,
    /// `aBps` (extension): forced bit rate in bit/s; `None` = 64 kbit/s mono, 128 kbit/s stereo.
    pub bitrate: Option<u32>,
}

impl Default for AudioSettings {
    fn default() -> Self {
        AudioSettings {
            channels: ChannelMode::Mono { users: Vec::new() },
            bitrate: None,
        }
    }
}

impl AudioSettings {
    /// Output channels: 1 (mono mix) or 2 (left/right).
    pub fn channel_count(&self) -> u16 {
        match self.channels {
            ChannelMode::Mono { .. } => 1,
            ChannelMode::LeftRight { .. } => 2,
        }
    }
}

/// `audioFileCfg`: an audio-only recording.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct AudioFileSettings {
    /// The one audio file (`.m4a`, `.aac`, `.mp3` or `.wav`).
    pub target: Target,
    /// The raw `svrPathName`.
    pub svr_path_name: String,
    /// Channels and bit rate.
    pub audio: AudioSettings,
}

/// A validated mixer configuration.
///
/// ```
/// use cloudmixer::model::config::MixerConfig;
/// let cfg = MixerConfig::from_json(r#"{"mode":0,"videoFileCfg":{"svrPathName":"/a/rec.mp4",
///   "vWidth":1280,"vHeight":720,"vFps":15,"layoutConfig":[{"type":0,"left":0,"top":180,
///   "width":640,"height":360,"keepAspectRatio":1,"param":{"camid":"Usr1.-1"}}]}}"#).unwrap();
/// assert_eq!(cfg.output.fps, 15);
/// assert_eq!(cfg.layout.items().len(), 1);
/// let err = MixerConfig::from_json(r#"{"videoFileCfg":{"svrPathName":"a.mp4","vWidth":1281,"vHeight":720,"layoutConfig":[]}}"#).unwrap_err();
/// assert_eq!(err.to_string(), "videoFileCfg.vWidth: must be even, got 1281");
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct MixerConfig {
    /// 0 = composite.
    pub mode: u32,
    /// Fixed video output settings (`videoFileCfg`). Without a `videoFileCfg` (audio only) it
    /// has no targets, a 0x0 canvas and [`AUDIO_ONLY_TICK_RATE`] as its clock rate.
    pub output: OutputSettings,
    /// The audio track of the video targets (`videoFileCfg.aChannelType` / `aChannelContent`).
    pub audio: AudioSettings,
    /// `audioFileCfg`: an audio-only file, if configured.
    pub audio_file: Option<AudioFileSettings>,
    /// The initial layout.
    pub layout: Arc<Layout>,
    /// `storageConfig`: upload finished files there.
    pub storage: Option<StorageSettings>,
    /// Mode 1: one file per stream (then `output` has no targets and `layout` is empty; each
    /// stream is recorded with [`PerStream::video_config`] / [`PerStream::audio_config`]).
    pub per_stream: Option<PerStream>,
    raw: Value,
    warnings: Vec<String>,
}

/// Escapes the control characters of a value echoed into a message (`\n`, `\t`, `\r`,
/// others as `\u{1b}`), so that an error or warning never prints them raw.
pub fn escape_controls(s: &str) -> String {
    if !s.chars().any(char::is_control) {
        return s.to_string();
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => out.push_str(&format!("\\u{{{:x}}}", c as u32)),
            c => out.push(c),
        }
    }
    out
}

/// Parses config JSON text (a create config or an update) strictly: a UTF-8 byte order mark
/// at the start is skipped, and a key repeated in one object is an error naming its path
/// (`videoFileCfg.vWidth: duplicate key …`), at any depth; serde_json alone would keep the
/// last value silently.
pub fn parse_json(text: &str) -> Result<Value> {
    use serde::de::DeserializeSeed;
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let dup = std::cell::RefCell::new(None);
    let mut de = serde_json::Deserializer::from_str(text);
    let seed = strict::ValueSeed {
        path: String::new(),
        dup: &dup,
    };
    let parsed = seed.deserialize(&mut de).and_then(|v| de.end().map(|()| v));
    match parsed {
        Ok(v) => Ok(v),
        Err(e) => match dup.into_inner() {
            Some(path) => Err(ConfigError::invalid(
                &path,
                "duplicate key (each key may appear once in an object)",
            )),
            None => Err(ConfigError::Json(escape_controls(&e.to_string()))),
        },
    }
}

/// A JSON value builder that refuses duplicate keys (see [`parse_json`]).
mod strict {
    use std::cell::RefCell;
    use std::fmt;

    use serde::de::{DeserializeSeed, Error as _, MapAccess, SeqAccess, Visitor};
    use serde_json::{Map, Number, Value};

    pub(super) struct ValueSeed<'a> {
        /// JSON path of the value (`""` for the root).
        pub path: String,
        /// Set to the path of the first duplicate key.
        pub dup: &'a RefCell<Option<String>>,
    }

    impl<'de> DeserializeSeed<'de> for ValueSeed<'_> {
        type Value = Value;
        fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
            d.deserialize_any(self)
        }
    }

    impl<'de> Visitor<'de> for ValueSeed<'_> {
        type Value = Value;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a JSON value")
        }
        fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
            Ok(Value::Bool(v))
        }
        fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
            Ok(Value::Number(v.into()))
        }
        fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
            Ok(Value::Number(v.into()))
        }
        fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
            Ok(Number::from_f64(v).map_or(Value::Null, Value::Number))
        }
        fn visit_str<E>(self, v: &str) -> Result<Value, E> {
            Ok(Value::String(v.to_string()))
        }
        fn visit_string<E>(self, v: String) -> Result<Value, E> {
            Ok(Value::String(v))
        }
        fn visit_unit<E>(self) -> Result<Value, E> {
            Ok(Value::Null)
        }
        fn visit_none<E>(self) -> Result<Value, E> {
            Ok(Value::Null)
        }
        fn visit_some<D: serde::Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
            d.deserialize_any(self)
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
            let mut out = Vec::new();
            while let Some(v) = seq.next_element_seed(ValueSeed {
                path: format!("{}[{}]", self.path, out.len()),
                dup: self.dup,
            })? {
                out.push(v);
            }
            Ok(Value::Array(out))
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
            let mut out = Map::new();
            while let Some(key) = map.next_key::<String>()? {
                let path = super::join(&self.path, &key);
                if out.contains_key(&key) {
                    let msg = format!("duplicate key {}", super::escape_controls(&path));
                    *self.dup.borrow_mut() = Some(path);
                    return Err(A::Error::custom(msg));
                }
                let v = map.next_value_seed(ValueSeed {
                    path,
                    dup: self.dup,
                })?;
                out.insert(key, v);
            }
            Ok(Value::Object(out))
        }
    }
}

/// Keys the parser reads (or accepts and ignores) in each object of a config or update.
const ROOT_KEYS: &[&str] = &[
    "mode",
    "videoFileCfg",
    "audioFileCfg",
    // upload of finished files (object storage)
    "storageConfig",
    // vendor extension, accepted and ignored
    "mixedLayout",
    // mode 1 file names (extensions)
    "roomId",
    "nicknames",
];
const VIDEO_KEYS: &[&str] = &[
    "svrPathName",
    "vWidth",
    "vHeight",
    "vFps",
    "vBps",
    "vQP",
    "aChannelType",
    "aChannelContent",
    "aBps",
    "layoutConfig",
    "backgroundColor",
    "backgroundImage",
    "placeholder",
    "segmentDuration",
    "segmentSize",
    // mode 1
    "svrPath",
    "svrFileNameSuffix",
    "subscribeVideos",
    "aStreamType",
    // vendor extension, accepted and ignored
    "mixedLayout",
];
const STORAGE_KEYS: &[&str] = &[
    "vendor",
    "region",
    "bucket",
    "accessKey",
    "secretKey",
    "endpoint",
    "keepLocal",
];
const AUDIO_KEYS: &[&str] = &[
    "svrPathName",
    "aChannelType",
    "aChannelContent",
    "aBps",
    // mode 1
    "svrPath",
    "svrFileNameSuffix",
    "subscribeAudios",
];
const ITEM_KEYS: &[&str] = &[
    "type",
    "left",
    "top",
    "width",
    "height",
    "keepAspectRatio",
    "param",
    "zorder",
    "alpha",
    "fit",
];
const PARAM_KEYS: &[&str] = &[
    "camid",
    "resourceid",
    "placeholder",
    "text",
    "color",
    "background",
    "font-size",
    "text-margin",
    // type 2 (local screen) in the vendor's local mixer: accepted, unused here
    "screenid",
    "pid",
    "area",
    "window",
];

/// Keys of mode 1 only, by object (`""`: the root): an error in a mode 0 config.
const MODE1_KEYS: &[(&str, &str)] = &[
    ("", "roomId"),
    ("", "nicknames"),
    ("videoFileCfg", "svrPath"),
    ("videoFileCfg", "svrFileNameSuffix"),
    ("videoFileCfg", "subscribeVideos"),
    ("videoFileCfg", "aStreamType"),
    ("audioFileCfg", "svrPath"),
    ("audioFileCfg", "svrFileNameSuffix"),
    ("audioFileCfg", "subscribeAudios"),
];

/// Refuses the first of `keys` (`(object, key)`, object `""` the root) that `root` has with a
/// value other than null: a key of the other mode would be silently ignored.
fn refuse_keys(root: &Map<String, Value>, keys: &[(&str, &str)], rule: &str) -> Result<()> {
    for (o, k) in keys {
        let m = if o.is_empty() {
            Some(root)
        } else {
            root.get(*o).and_then(Value::as_object)
        };
        if m.and_then(|m| m.get(*k)).is_some_and(|v| !v.is_null()) {
            return Err(ConfigError::invalid(&join(o, k), rule));
        }
    }
    Ok(())
}

/// Most characters in a text item's `param.text`.
pub const MAX_TEXT_CHARS: usize = 256;
/// Largest `param.font-size` (output pixels).
pub const MAX_FONT_SIZE: i64 = 256;
/// Largest `param.text-margin` (output pixels).
pub const MAX_TEXT_MARGIN: i64 = 256;
/// Most characters in a picture id (`resourceid`, `placeholder`, `backgroundImage`).
pub const MAX_PICTURE_ID: usize = 128;

/// Item types, for error messages.
const TYPES: &str =
    "0 camera, 1 picture, 2 local screen, 3 media share, 5 screen share, 6 whiteboard, 10 text";

/// A picture id: a non-empty string of at most [`MAX_PICTURE_ID`] characters.
fn picture_id(m: &Map<String, Value>, path: &str, key: &str) -> Result<Option<String>> {
    match opt_str(m, path, key)? {
        None => Ok(None),
        Some(s) if s.trim().is_empty() => Err(ConfigError::invalid(
            &join(path, key),
            "must name a registered picture, got an empty string",
        )),
        Some(s) if s.chars().count() > MAX_PICTURE_ID => Err(ConfigError::invalid(
            &join(path, key),
            format!("a picture id has at most {MAX_PICTURE_ID} characters"),
        )),
        Some(s) => Ok(Some(s.to_string())),
    }
}

/// Levenshtein distance (in chars).
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != *cb);
            cur[j + 1] = sub.min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

fn unknown_in(m: &Map<String, Value>, path: &str, known: &[&str], out: &mut Vec<String>) {
    for k in m.keys() {
        if known.contains(&k.as_str()) {
            continue;
        }
        let near = known
            .iter()
            .map(|c| {
                (
                    edit_distance(&k.to_ascii_lowercase(), &c.to_ascii_lowercase()),
                    c,
                )
            })
            .filter(|(d, _)| *d <= 2)
            .min_by_key(|(d, _)| *d);
        let p = escape_controls(&join(path, k));
        out.push(match near {
            Some((_, c)) => format!("{p}: unknown field (did you mean {c}?)"),
            None => format!("{p}: unknown field"),
        });
    }
}

/// Warnings for the fields of a create config or update that the parser does not know:
/// servers send fields we do not read, so they are not errors, but a near miss of a known key
/// is most likely a typo: `videoFileCfg.vWidht: unknown field (did you mean vWidth?)`.
/// Objects of the wrong type are left to the parser's errors.
pub fn unknown_fields(root: &Value) -> Vec<String> {
    let mut out = Vec::new();
    let Some(m) = root.as_object() else {
        return out;
    };
    unknown_in(m, "", ROOT_KEYS, &mut out);
    if let Some(st) = m.get("storageConfig").and_then(Value::as_object) {
        unknown_in(st, "storageConfig", STORAGE_KEYS, &mut out);
    }
    if let Some(a) = m.get("audioFileCfg").and_then(Value::as_object) {
        unknown_in(a, "audioFileCfg", AUDIO_KEYS, &mut out);
    }
    if let Some(v) = m.get("videoFileCfg").and_then(Value::as_object) {
        unknown_in(v, "videoFileCfg", VIDEO_KEYS, &mut out);
        if let Some(items) = v.get("layoutConfig").and_then(Value::as_array) {
            for (i, it) in items.iter().enumerate() {
                let Some(it) = it.as_object() else { continue };
                let ip = format!("videoFileCfg.layoutConfig[{i}]");
                unknown_in(it, &ip, ITEM_KEYS, &mut out);
                if let Some(p) = it.get("param").and_then(Value::as_object) {
                    unknown_in(p, &join(&ip, "param"), PARAM_KEYS, &mut out);
                }
            }
        }
    }
    out
}

fn describe(v: &Value) -> String {
    let s = v.to_string();
    if s.len() > 40 {
        format!(
            "{}…",
            &s[..s.char_indices().nth(40).map(|c| c.0).unwrap_or(s.len())]
        )
    } else {
        s
    }
}

fn obj<'a>(v: &'a Value, path: &str) -> Result<&'a Map<String, Value>> {
    v.as_object().ok_or_else(|| {
        ConfigError::invalid(path, format!("must be an object, got {}", describe(v)))
    })
}

/// The JSON path of `key` inside `path`. An empty key is written `""`, so that an error
/// about it (or inside it) still names where it is.
fn join(path: &str, key: &str) -> String {
    let key = if key.is_empty() { "\"\"" } else { key };
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

/// An integer field: absent → `None`; present but not an integer → error.
fn opt_int(m: &Map<String, Value>, path: &str, key: &str) -> Result<Option<i64>> {
    let p = join(path, key);
    match m.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v @ Value::Number(n)) => match n.as_i64() {
            Some(i) => Ok(Some(i)),
            // JSON `-0` parses as the float -0.0 (as does `-0.0`, which cannot be told apart)
            None if n.as_f64() == Some(0.0) && n.as_f64().is_some_and(f64::is_sign_negative) => {
                Ok(Some(0))
            }
            None => Err(ConfigError::invalid(
                &p,
                format!("must be an integer, got {}", describe(v)),
            )),
        },
        Some(v) => Err(ConfigError::invalid(
            &p,
            format!("must be an integer, got {}", describe(v)),
        )),
    }
}

fn req_int(m: &Map<String, Value>, path: &str, key: &str) -> Result<i64> {
    opt_int(m, path, key)?.ok_or_else(|| ConfigError::invalid(&join(path, key), "is required"))
}

fn int_in(p: &str, v: i64, lo: i64, hi: i64) -> Result<i64> {
    if v < lo {
        let rule = if lo == 1 {
            format!("must be > 0, got {v}")
        } else {
            format!("must be >= {lo}, got {v}")
        };
        return Err(ConfigError::invalid(p, rule));
    }
    if v > hi {
        return Err(ConfigError::invalid(p, format!("must be <= {hi}, got {v}")));
    }
    Ok(v)
}

fn opt_str<'a>(m: &'a Map<String, Value>, path: &str, key: &str) -> Result<Option<&'a str>> {
    match m.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(v) => Err(ConfigError::invalid(
            &join(path, key),
            format!("must be a string, got {}", describe(v)),
        )),
    }
}

fn opt_color(m: &Map<String, Value>, path: &str, key: &str) -> Result<Option<[u8; 4]>> {
    match opt_str(m, path, key)? {
        None => Ok(None),
        Some(s) => parse_hex_color(s).map(Some).ok_or_else(|| {
            ConfigError::invalid(
                &join(path, key),
                format!("must be a colour #RRGGBB or #RRGGBBAA, got \"{s}\""),
            )
        }),
    }
}

/// Splits and checks a `videoFileCfg.svrPathName`.
pub fn parse_targets(s: &str, path: &str) -> Result<Vec<Target>> {
    parse_targets_of(s, path, false)
}

fn parse_targets_of(s: &str, path: &str, audio: bool) -> Result<Vec<Target>> {
    let mut out = Vec::new();
    for part in s.split(';') {
        let t = part.trim();
        if t.is_empty() {
            if s.trim().is_empty() {
                return Err(ConfigError::invalid(path, "must name at least one target"));
            }
            continue;
        }
        let lower = t.to_ascii_lowercase();
        if !audio
            && (lower.starts_with("rtmp://")
                || lower.starts_with("rtmps://")
                || lower.starts_with("rtsp://"))
        {
            let target = Target::Url { url: t.to_string() };
            if out.contains(&target) {
                return Err(ConfigError::invalid(
                    path,
                    format!("\"{t}\" is named twice"),
                ));
            }
            out.push(target);
            continue;
        }
        if lower.contains("://") {
            let rule = if audio {
                format!("\"{t}\": audio recordings are files, not URLs")
            } else {
                format!("\"{t}\": only file paths and rtmp:// or rtsp:// URLs are supported")
            };
            return Err(ConfigError::invalid(path, rule));
        }
        let container = container_of(t).filter(|c| c.audio_only() == audio);
        let target = Target::File {
            path: confine(t)
                .map_err(|rule| ConfigError::invalid(path, format!("\"{t}\": {rule}")))?,
            container: container.ok_or_else(|| {
                let exts = if audio {
                    ".m4a, .aac, .mp3 or .wav"
                } else {
                    ".mp4, .flv, .ts, .mkv or .m3u8"
                };
                ConfigError::invalid(path, format!("\"{t}\": extension must be {exts}"))
            })?,
        };
        if container == Some(Container::Hls) {
            let name = Path::new(t).file_name().map(|n| n.to_string_lossy());
            if name.is_some_and(|n| n.contains('%')) {
                return Err(ConfigError::invalid(
                    path,
                    format!(
                        "\"{t}\": an HLS playlist's name must not contain '%' (FFmpeg reads it \
                         as a pattern in the names of the segments)"
                    ),
                ));
            }
        }
        if let Some(other) = out.iter().find(|o| same_file(o, &target)) {
            let rule = match (other, &target) {
                (Target::File { path: o, .. }, Target::File { path: p, container }) if o != p => {
                    let (playlist, file) = if *container == Container::Hls && hls_writes(p, o) {
                        (p, o)
                    } else {
                        (o, p)
                    };
                    format!(
                        "\"{}\" is named twice: the HLS playlist \"{}\" writes it next to \
                         itself (each file is written once)",
                        file.display(),
                        playlist.display()
                    )
                }
                _ => format!("\"{t}\" is named twice (each file is written once)"),
            };
            return Err(ConfigError::invalid(path, rule));
        }
        out.push(target);
    }
    Ok(out)
}

/// Whether an HLS playlist at `playlist` writes `file` next to it: its init segment
/// `<stem>_init.mp4` or a segment `<stem>_NNNNN.m4s`.
fn hls_writes(playlist: &Path, file: &Path) -> bool {
    if playlist.parent() != file.parent() {
        return false;
    }
    let (Some(stem), Some(name)) = (
        playlist.file_stem().and_then(|s| s.to_str()),
        file.file_name().and_then(|s| s.to_str()),
    ) else {
        return false;
    };
    let Some(rest) = name.strip_prefix(stem).and_then(|r| r.strip_prefix('_')) else {
        return false;
    };
    rest == "init.mp4"
        || rest
            .strip_suffix(".m4s")
            .is_some_and(|n| n.len() >= 5 && n.bytes().all(|b| b.is_ascii_digit()))
}

/// Whether two targets write the same file: the same name, or a name one of them (an HLS
/// playlist) writes as a side file.
fn same_file(a: &Target, b: &Target) -> bool {
    match (a, b) {
        (
            Target::File {
                path: pa,
                container: ca,
            },
            Target::File {
                path: pb,
                container: cb,
            },
        ) => {
            pa == pb
                || (*ca == Container::Hls && hls_writes(pa, pb))
                || (*cb == Container::Hls && hls_writes(pb, pa))
        }
        _ => a == b,
    }
}

fn container_of(p: &str) -> Option<Container> {
    let ext = Path::new(p).extension()?.to_str()?.to_ascii_lowercase();
    Some(match ext.as_str() {
        "mp4" => Container::Mp4,
        "flv" => Container::Flv,
        "ts" => Container::Ts,
        "mkv" => Container::Mkv,
        "m4a" => Container::M4a,
        "aac" => Container::Aac,
        "mp3" => Container::Mp3,
        "wav" => Container::Wav,
        "m3u8" => Container::Hls,
        _ => return None,
    })
}

/// Turns a `svrPathName` file path into a relative path under the storage root.
/// A leading `/` means the storage root. `..`, `~`, backslashes, drive prefixes and control
/// characters are refused (symlink escapes are checked when the file is opened).
pub fn confine(p: &str) -> std::result::Result<PathBuf, String> {
    if p.chars().any(|c| c.is_control()) {
        return Err("path contains control characters".into());
    }
    if p.contains('\\') {
        return Err("path must use '/' separators".into());
    }
    if p.starts_with('~') {
        return Err("'~' paths escape the storage root".into());
    }
    if p.len() >= 2 && p.as_bytes()[1] == b':' {
        return Err("drive-letter paths escape the storage root".into());
    }
    let mut rel = PathBuf::new();
    for c in Path::new(p).components() {
        match c {
            Component::RootDir | Component::CurDir => {}
            Component::Normal(s) if s.len() > 255 => {
                return Err(format!(
                    "a name in the path is {} bytes long; file systems allow 255",
                    s.len()
                ))
            }
            Component::Normal(s) => rel.push(s),
            Component::ParentDir => return Err("'..' escapes the storage root".into()),
            Component::Prefix(_) => return Err("path prefix escapes the storage root".into()),
        }
    }
    if rel.as_os_str().is_empty() || p.ends_with('/') {
        return Err("must name a file".into());
    }
    // room for what the recorder adds to a name: `_N`, `_0001`, `.upload.json`
    if let Some(name) = rel
        .file_name()
        .filter(|n| n.len() > per_stream::MAX_FILE_NAME)
    {
        return Err(format!(
            "the file name is {} bytes long; at most {} (file systems allow 255, and the \
             recorder may add `_1`, `_0001` or `.upload.json`)",
            name.len(),
            per_stream::MAX_FILE_NAME
        ));
    }
    Ok(rel)
}

fn parse_item(v: &Value, path: &str, cw: u32, ch: u32, index: usize) -> Result<Item> {
    let m = obj(v, path)?;
    let ty = req_int(m, path, "type")?;
    let left = int_in(
        &join(path, "left"),
        req_int(m, path, "left")?,
        -MAX_ITEM,
        MAX_ITEM,
    )?;
    let top = int_in(
        &join(path, "top"),
        req_int(m, path, "top")?,
        -MAX_ITEM,
        MAX_ITEM,
    )?;
    // a text box sizes itself: its width/height are ignored (optional, 0 allowed)
    let size = |key: &str| -> Result<i64> {
        let p = join(path, key);
        if ty == 10 {
            let v = opt_int(m, path, key)?.unwrap_or(0);
            int_in(&p, v, 0, MAX_ITEM).map(|v| v.max(1))
        } else {
            int_in(&p, req_int(m, path, key)?, 1, MAX_ITEM)
        }
    };
    let width = size("width")?;
    let height = size("height")?;
    let rect = Rect::new(left as i32, top as i32, width as u32, height as u32);
    if rect.clip(cw, ch).is_none() {
        return Err(ConfigError::invalid(
            path,
            format!(
                "rect {}x{} at ({left},{top}) lies wholly outside the {cw}x{ch} canvas",
                width, height
            ),
        ));
    }
    let keep = opt_int(m, path, "keepAspectRatio")?.unwrap_or(1);
    let keep = int_in(&join(path, "keepAspectRatio"), keep, 0, 1)?;
    let mut fit = if keep == 1 {
        FitMode::Fit
    } else {
        FitMode::Stretch
    };
    if let Some(f) = opt_str(m, path, "fit")? {
        fit = match f {
            "fit" => FitMode::Fit,
            "fill" => FitMode::Fill,
            "stretch" => FitMode::Stretch,
            other => {
                return Err(ConfigError::invalid(
                    &join(path, "fit"),
                    format!("must be \"fit\", \"fill\" or \"stretch\", got \"{other}\""),
                ))
            }
        };
    }
    let zorder = opt_int(m, path, "zorder")?.unwrap_or(0);
    let zorder = int_in(&join(path, "zorder"), zorder, -1000, 1000)? as i32;
    let alpha = match m.get("alpha") {
        None | Some(Value::Null) => 1.0,
        Some(Value::Number(n)) => {
            let a = n.as_f64().unwrap_or(f64::NAN);
            if !(0.0..=1.0).contains(&a) {
                return Err(ConfigError::invalid(
                    &join(path, "alpha"),
                    format!("must be between 0 and 1, got {a}"),
                ));
            }
            a as f32
        }
        Some(v) => {
            return Err(ConfigError::invalid(
                &join(path, "alpha"),
                format!("must be a number between 0 and 1, got {}", describe(v)),
            ))
        }
    };
    let ppath = join(path, "param");
    let empty = Map::new();
    let param = match m.get("param") {
        None | Some(Value::Null) => &empty,
        Some(p) => obj(p, &ppath)?,
    };
    let need_str = |key: &str| -> Result<String> {
        match opt_str(param, &ppath, key)? {
            Some(s) if !s.trim().is_empty() => Ok(s.to_string()),
            Some(_) => Err(ConfigError::invalid(
                &join(&ppath, key),
                "must not be empty",
            )),
            None => Err(ConfigError::invalid(
                &join(&ppath, key),
                format!("is required for an item of type {ty}"),
            )),
        }
    };
    // types 2/3/5/6: the vendor sends no param; the source key defaults per type
    let stream = |default: &str| -> Result<String> {
        match opt_str(param, &ppath, "camid")? {
            None => Ok(default.to_string()),
            Some(_) => need_str("camid"),
        }
    };
    let kind = match ty {
        0 => ItemKind::Camera {
            camid: need_str("camid")?,
        },
        1 => ItemKind::Picture {
            resource_id: match picture_id(param, &ppath, "resourceid")? {
                Some(id) => id,
                None => need_str("resourceid")?,
            },
        },
        2 => ItemKind::LocalScreen {
            camid: stream(LOCAL_SCREEN_KEY)?,
        },
        3 => ItemKind::MediaShare {
            camid: stream(MEDIA_SHARE_KEY)?,
        },
        5 => ItemKind::ScreenShare {
            camid: stream(SCREEN_SHARE_KEY)?,
        },
        6 => ItemKind::Whiteboard {
            camid: stream(WHITEBOARD_KEY)?,
        },
        10 => {
            let tpath = join(&ppath, "text");
            let text = match opt_str(param, &ppath, "text")? {
                Some(s) if s.trim().is_empty() => {
                    return Err(ConfigError::invalid(&tpath, "must not be empty"))
                }
                Some(s) if s.chars().count() > MAX_TEXT_CHARS => {
                    return Err(ConfigError::invalid(
                        &tpath,
                        format!(
                            "at most {MAX_TEXT_CHARS} characters, got {}",
                            s.chars().count()
                        ),
                    ))
                }
                Some(s) => s.to_string(),
                None => {
                    return Err(ConfigError::invalid(
                        &tpath,
                        "is required for an item of type 10",
                    ))
                }
            };
            let font = opt_int(param, &ppath, "font-size")?.unwrap_or(18);
            let margin = opt_int(param, &ppath, "text-margin")?.unwrap_or(5);
            ItemKind::Text {
                text,
                color: opt_color(param, &ppath, "color")?.unwrap_or([255, 255, 255, 255]),
                background: opt_color(param, &ppath, "background")?.unwrap_or([0, 0, 0, 0x7d]),
                font_size: int_in(&join(&ppath, "font-size"), font, 1, MAX_FONT_SIZE)? as u32,
                margin: int_in(&join(&ppath, "text-margin"), margin, 0, MAX_TEXT_MARGIN)? as u32,
            }
        }
        4 | 7..=9 => {
            return Err(ConfigError::invalid(
                &join(path, "type"),
                format!("item type {ty} is deprecated and not supported (use {TYPES})"),
            ))
        }
        _ => {
            return Err(ConfigError::invalid(
                &join(path, "type"),
                format!("unknown item type {ty} (use {TYPES})"),
            ))
        }
    };
    let placeholder = picture_id(param, &ppath, "placeholder")?;
    Ok(Item {
        kind,
        rect,
        fit,
        alpha,
        zorder,
        index,
        placeholder,
    })
}

fn parse_layout(vfc: &Map<String, Value>, cw: u32, ch: u32) -> Result<Layout> {
    let path = "videoFileCfg.layoutConfig";
    let arr = match vfc.get("layoutConfig") {
        None | Some(Value::Null) => return Err(ConfigError::invalid(path, "is required")),
        Some(Value::Array(a)) => a,
        Some(v) => {
            return Err(ConfigError::invalid(
                path,
                format!("must be an array, got {}", describe(v)),
            ))
        }
    };
    if arr.len() > 64 {
        return Err(ConfigError::invalid(
            path,
            format!("at most 64 items, got {}", arr.len()),
        ));
    }
    let items = arr
        .iter()
        .enumerate()
        .map(|(i, v)| parse_item(v, &format!("{path}[{i}]"), cw, ch, i))
        .collect::<Result<Vec<_>>>()?;
    let bg = opt_color(vfc, "videoFileCfg", "backgroundColor")?.unwrap_or([0, 0, 0, 255]);
    let bg = rgb_to_yuv709_limited([bg[0], bg[1], bg[2]]);
    let mut layout = Layout::new(cw, ch, bg, items);
    // `placeholder`: a colour #RRGGBB[AA] (the '#' optional, as for every colour), or the id
    // of a registered picture
    match opt_str(vfc, "videoFileCfg", "placeholder")? {
        Some(s) if s.starts_with('#') || parse_hex_color(s).is_some() => {
            if let Some(p) = opt_color(vfc, "videoFileCfg", "placeholder")? {
                layout.placeholder = rgb_to_yuv709_limited([p[0], p[1], p[2]]);
            }
        }
        Some(_) => layout.placeholder_image = picture_id(vfc, "videoFileCfg", "placeholder")?,
        None => {}
    }
    layout.background_image = picture_id(vfc, "videoFileCfg", "backgroundImage")?;
    Ok(layout)
}

/// `segmentDuration` (seconds, 1–86 400) and `segmentSize` (bytes, ≥ 64 KiB).
fn parse_segments(m: &Map<String, Value>, path: &str) -> Result<Segments> {
    let duration = match m.get("segmentDuration") {
        None | Some(Value::Null) => None,
        Some(Value::Number(n)) => {
            let s = n.as_f64().unwrap_or(f64::NAN);
            if !(1.0..=86_400.0).contains(&s) {
                return Err(ConfigError::invalid(
                    &join(path, "segmentDuration"),
                    format!("must be between 1 and 86400 seconds, got {s}"),
                ));
            }
            Some(Duration::from_secs_f64(s))
        }
        Some(v) => {
            return Err(ConfigError::invalid(
                &join(path, "segmentDuration"),
                format!("must be a number of seconds, got {}", describe(v)),
            ))
        }
    };
    let size = match opt_int(m, path, "segmentSize")? {
        None => None,
        Some(b) => Some(int_in(&join(path, "segmentSize"), b, 65_536, i64::MAX)? as u64),
    };
    Ok(Segments {
        duration,
        size,
        ..Segments::default()
    })
}

/// `storageConfig { vendor, region, bucket, accessKey, secretKey }` + `endpoint`, `keepLocal`.
fn parse_storage(m: &Map<String, Value>) -> Result<StorageSettings> {
    let path = "storageConfig";
    let req = |key: &str| -> Result<String> {
        match opt_str(m, path, key)? {
            Some(s) if !s.trim().is_empty() => Ok(s.to_string()),
            Some(_) => Err(ConfigError::invalid(&join(path, key), "must not be empty")),
            None => Err(ConfigError::invalid(&join(path, key), "is required")),
        }
    };
    let vendor = int_in(
        &join(path, "vendor"),
        opt_int(m, path, "vendor")?.unwrap_or(0),
        0,
        u32::MAX as i64,
    )? as u32;
    let endpoint = match opt_str(m, path, "endpoint")? {
        None => None,
        Some(e) if e.starts_with("http://") || e.starts_with("https://") => Some(e.to_string()),
        Some(e) => {
            return Err(ConfigError::invalid(
                &join(path, "endpoint"),
                format!("must be an http:// or https:// URL, got \"{e}\""),
            ))
        }
    };
    let keep_local = match m.get("keepLocal") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(v) => match v.as_i64() {
            Some(0) => false,
            Some(1) => true,
            _ => {
                return Err(ConfigError::invalid(
                    &join(path, "keepLocal"),
                    format!("must be true/false or 1/0, got {}", describe(v)),
                ))
            }
        },
    };
    Ok(StorageSettings {
        vendor,
        region: req("region")?,
        bucket: req("bucket")?,
        access_key: req("accessKey")?,
        secret_key: req("secretKey")?,
        endpoint,
        keep_local,
    })
}

/// `aChannelType`, `aChannelContent` and `aBps` of `videoFileCfg` or `audioFileCfg`.
fn parse_audio(m: &Map<String, Value>, path: &str) -> Result<AudioSettings> {
    let tp = join(path, "aChannelType");
    let ty = match opt_int(m, path, "aChannelType")? {
        None | Some(0) => 0,
        Some(1) => 1,
        Some(other) => {
            return Err(ConfigError::invalid(
                &tp,
                format!("must be 0 (mono) or 1 (left/right), got {other}"),
            ))
        }
    };
    let cp = join(path, "aChannelContent");
    let users: Vec<String> = match m.get("aChannelContent") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(a)) => a
            .iter()
            .enumerate()
            .map(|(i, v)| match v {
                Value::String(s) if !s.trim().is_empty() && !s.chars().any(|c| c.is_control()) => {
                    Ok(s.clone())
                }
                other => Err(ConfigError::invalid(
                    &format!("{cp}[{i}]"),
                    format!(
                        "must be a user ID (a non-empty string), got {}",
                        describe(other)
                    ),
                )),
            })
            .collect::<Result<_>>()?,
        Some(v) => {
            return Err(ConfigError::invalid(
                &cp,
                format!("must be an array of user IDs, got {}", describe(v)),
            ))
        }
    };
    let channels = if ty == 1 {
        match users.as_slice() {
            [l, r] if l != r => ChannelMode::LeftRight {
                left: l.clone(),
                right: r.clone(),
            },
            [_, _] => {
                return Err(ConfigError::invalid(
                    &cp,
                    "left/right (aChannelType 1) needs two different user IDs",
                ))
            }
            _ => {
                return Err(ConfigError::invalid(
                    &cp,
                    format!(
                    "left/right (aChannelType 1) needs exactly two user IDs [left, right], got {}",
                    users.len()
                ),
                ))
            }
        }
    } else {
        ChannelMode::Mono { users }
    };
    let bitrate = match opt_int(m, path, "aBps")? {
        None | Some(0) => None,
        Some(b) => Some(int_in(&join(path, "aBps"), b, 16_000, 320_000)? as u32),
    };
    Ok(AudioSettings { channels, bitrate })
}

/// `audioFileCfg` (mode 0): one audio file.
fn parse_audio_file(m: &Map<String, Value>) -> Result<AudioFileSettings> {
    let p = "audioFileCfg";
    let svr = opt_str(m, p, "svrPathName")?
        .ok_or_else(|| ConfigError::invalid("audioFileCfg.svrPathName", "is required"))?;
    let mut targets = parse_targets_of(svr, "audioFileCfg.svrPathName", true)?;
    if targets.len() != 1 {
        return Err(ConfigError::invalid(
            "audioFileCfg.svrPathName",
            format!("must name one audio file, got {}", targets.len()),
        ));
    }
    Ok(AudioFileSettings {
        target: targets.remove(0),
        svr_path_name: svr.to_string(),
        audio: parse_audio(m, p)?,
    })
}

impl MixerConfig {
    /// Parses and validates a create config. The text is parsed by [`parse_json`] (a leading
    /// byte order mark is skipped, a duplicate key is an error); unknown fields are not errors
    /// but [`MixerConfig::warnings`].
    pub fn from_json(text: &str) -> Result<Self> {
        Self::from_value(parse_json(text)?)
    }

    /// Validates an already-parsed JSON value. (A `Value` has lost any duplicate keys: parse
    /// text with [`parse_json`] to have them refused.)
    pub fn from_value(root: Value) -> Result<Self> {
        let m = obj(&root, "(root)")?;
        let warnings = unknown_fields(&root);
        let mode = opt_int(m, "", "mode")?.unwrap_or(0);
        let storage = match m.get("storageConfig") {
            None | Some(Value::Null) => None,
            Some(v) => Some(parse_storage(obj(v, "storageConfig")?)?),
        };
        match mode {
            0 => refuse_keys(
                m,
                MODE1_KEYS,
                "is for mode 1 (one file per stream); this config is mode 0 (composite)",
            )?,
            1 => {
                let ps = per_stream::parse(m, storage.clone())?;
                return Ok(MixerConfig {
                    mode: 1,
                    output: OutputSettings {
                        targets: Vec::new(),
                        svr_path_name: String::new(),
                        width: 0,
                        height: 0,
                        fps: ps
                            .video
                            .as_ref()
                            .map_or(AUDIO_ONLY_TICK_RATE, |v| v.fps.unwrap_or(DEFAULT_FPS)),
                        bitrate: None,
                        qp: DEFAULT_QP,
                        segments: ps.video.as_ref().map(|v| v.segments).unwrap_or_default(),
                    },
                    audio: AudioSettings::default(),
                    audio_file: None,
                    layout: Arc::new(Layout::new(0, 0, [16, 128, 128], Vec::new())),
                    storage,
                    per_stream: Some(ps),
                    raw: root,
                    warnings,
                });
            }
            other => {
                return Err(ConfigError::invalid(
                    "mode",
                    format!("must be 0 (composite) or 1 (one file per stream), got {other}"),
                ))
            }
        }
        let audio_file = match m.get("audioFileCfg") {
            None | Some(Value::Null) => None,
            Some(v) => Some(parse_audio_file(obj(v, "audioFileCfg")?)?),
        };
        let vp = "videoFileCfg";
        let vfc = match m.get(vp) {
            None | Some(Value::Null) if audio_file.is_some() => {
                // audio only: no canvas, no video targets; the clock ticks every 20 ms
                return Ok(MixerConfig {
                    mode: mode as u32,
                    output: OutputSettings {
                        targets: Vec::new(),
                        svr_path_name: String::new(),
                        width: 0,
                        height: 0,
                        fps: AUDIO_ONLY_TICK_RATE,
                        bitrate: None,
                        qp: DEFAULT_QP,
                        segments: Segments::default(),
                    },
                    audio: AudioSettings::default(),
                    audio_file,
                    layout: Arc::new(Layout::new(0, 0, [16, 128, 128], Vec::new())),
                    storage,
                    per_stream: None,
                    raw: root,
                    warnings,
                });
            }
            None | Some(Value::Null) => {
                return Err(ConfigError::invalid(
                    vp,
                    "is required (or an audioFileCfg for an audio-only recording)",
                ))
            }
            Some(v) => obj(v, vp)?,
        };
        let svr = opt_str(vfc, vp, "svrPathName")?
            .ok_or_else(|| ConfigError::invalid("videoFileCfg.svrPathName", "is required"))?;
        let targets = parse_targets(svr, "videoFileCfg.svrPathName")?;
        let mut dims = [0u32; 2];
        for (i, key) in ["vWidth", "vHeight"].iter().enumerate() {
            let p = join(vp, key);
            let v = int_in(&p, req_int(vfc, vp, key)?, 1, MAX_CANVAS as i64)?;
            if v % 2 != 0 {
                return Err(ConfigError::invalid(&p, format!("must be even, got {v}")));
            }
            dims[i] = v as u32;
        }
        let fps = match opt_int(vfc, vp, "vFps")?.unwrap_or(0) {
            0 => DEFAULT_FPS,
            f => int_in("videoFileCfg.vFps", f, 1, 30)? as u32,
        };
        let bitrate = match opt_int(vfc, vp, "vBps")? {
            None | Some(0) => None,
            Some(b) => Some(int_in("videoFileCfg.vBps", b, 10_000, 100_000_000)? as u32),
        };
        let qp = match opt_int(vfc, vp, "vQP")? {
            None => DEFAULT_QP,
            Some(q) => int_in("videoFileCfg.vQP", q, 0, 51)? as u8,
        };
        let audio = parse_audio(vfc, vp)?;
        let layout = parse_layout(vfc, dims[0], dims[1])?;
        Ok(MixerConfig {
            mode: mode as u32,
            output: OutputSettings {
                targets,
                svr_path_name: svr.to_string(),
                width: dims[0],
                height: dims[1],
                fps,
                bitrate,
                qp,
                segments: parse_segments(vfc, vp)?,
            },
            audio,
            audio_file,
            layout: Arc::new(layout),
            storage,
            per_stream: None,
            raw: root,
            warnings,
        })
    }

    /// What the config has that the parser does not read (unknown fields, see
    /// [`unknown_fields`]): not errors, but worth telling the operator.
    ///
    /// ```
    /// use cloudmixer::model::config::MixerConfig;
    /// let cfg = MixerConfig::from_json(r#"{"videoFileCfg":{"svrPathName":"a.mp4","vWidth":640,
    ///   "vHeight":360,"vWidht":640,"layoutConfig":[]}}"#).unwrap();
    /// assert_eq!(cfg.warnings(), ["videoFileCfg.vWidht: unknown field (did you mean vWidth?)"]);
    /// ```
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }

    /// Whether this mixer records video (it has a `videoFileCfg`).
    pub fn has_video(&self) -> bool {
        !self.output.targets.is_empty()
    }

    /// Validates a live update (`{"videoFileCfg":{"layoutConfig":[…]}}`) against this config
    /// and returns the new layout. Fields other than `layoutConfig` may be repeated only with
    /// their current values.
    pub fn parse_update(&self, text: &str) -> Result<Layout> {
        self.parse_update_value(&parse_json(text)?)
    }

    /// As [`MixerConfig::parse_update`], from a parsed value.
    pub fn parse_update_value(&self, root: &Value) -> Result<Layout> {
        let m = obj(root, "(root)")?;
        if !self.has_video() {
            return Err(ConfigError::invalid(
                "videoFileCfg",
                "this mixer records audio only: it has no layout to update",
            ));
        }
        for (k, v) in m {
            if k != "videoFileCfg" && self.raw.get(k) != Some(v) {
                return Err(ConfigError::NotUpdatable {
                    path: escape_controls(&join("", k)),
                });
            }
        }
        let vfc = match m.get("videoFileCfg") {
            None => return Err(ConfigError::invalid("videoFileCfg", "is required")),
            Some(v) => obj(v, "videoFileCfg")?,
        };
        let cur = self.raw.get("videoFileCfg");
        for (k, v) in vfc {
            if k != "layoutConfig" && cur.and_then(|c| c.get(k)) != Some(v) {
                return Err(ConfigError::NotUpdatable {
                    path: escape_controls(&join("videoFileCfg", k)),
                });
            }
        }
        // background/placeholder stay those of the create config
        let mut merged = cur.and_then(|c| c.as_object()).cloned().unwrap_or_default();
        merged.insert(
            "layoutConfig".into(),
            vfc.get("layoutConfig").cloned().unwrap_or(Value::Null),
        );
        parse_layout(&merged, self.output.width, self.output.height)
    }

    /// The layout as resolved JSON: each item's source and its draw rect for a source of
    /// `source_size(camid)` (or the item rect when unknown).
    pub fn resolved_json(&self) -> Value {
        resolved_layout_json(&self.layout, &self.output)
    }
}

/// Checks that every picture `layout` names (type 1 `resourceid`, `param.placeholder`,
/// `placeholder`, `backgroundImage`) is one for which `registered` holds; the error names the
/// first field that is not.
///
/// ```
/// use cloudmixer::model::config::{check_pictures, MixerConfig};
/// let cfg = MixerConfig::from_json(r#"{"videoFileCfg":{"svrPathName":"a.mp4","vWidth":640,
///   "vHeight":360,"backgroundImage":"bg","layoutConfig":[]}}"#).unwrap();
/// let e = check_pictures(&cfg.layout, |id| id == "logo").unwrap_err();
/// assert_eq!(e.to_string(), "videoFileCfg.backgroundImage: picture \"bg\" is not registered");
/// assert!(check_pictures(&cfg.layout, |id| id == "bg").is_ok());
/// ```
pub fn check_pictures(layout: &Layout, registered: impl Fn(&str) -> bool) -> Result<()> {
    let mut refs: Vec<(String, &str)> = Vec::new();
    for it in layout.items() {
        let at = format!("videoFileCfg.layoutConfig[{}].param", it.index);
        if let ItemKind::Picture { resource_id } = &it.kind {
            refs.push((join(&at, "resourceid"), resource_id));
        }
        if let Some(p) = &it.placeholder {
            refs.push((join(&at, "placeholder"), p));
        }
    }
    if let Some(p) = layout.placeholder_image() {
        refs.push(("videoFileCfg.placeholder".into(), p));
    }
    if let Some(p) = layout.background_image() {
        refs.push(("videoFileCfg.backgroundImage".into(), p));
    }
    refs.sort_by(|a, b| a.0.cmp(&b.0));
    match refs.into_iter().find(|(_, id)| !registered(id)) {
        Some((path, id)) => Err(ConfigError::invalid(
            &path,
            format!("picture \"{id}\" is not registered"),
        )),
        None => Ok(()),
    }
}

/// Resolved layout JSON (used by `cloudmixer validate`).
pub fn resolved_layout_json(layout: &Layout, out: &OutputSettings) -> Value {
    let items: Vec<Value> = layout
        .items
        .iter()
        .map(|it| {
            let mut o = serde_json::json!({
                "index": it.index,
                "rect": it.rect,
                "visible": it.rect.clip(layout.width, layout.height),
                "fit": it.fit,
                "alpha": it.alpha,
                "zorder": it.zorder,
            });
            match &it.kind {
                ItemKind::Camera { camid } => {
                    o["type"] = "camera".into();
                    o["camid"] = camid.clone().into();
                }
                ItemKind::LocalScreen { camid } => {
                    o["type"] = "local_screen".into();
                    o["camid"] = camid.clone().into();
                }
                ItemKind::Whiteboard { camid } => {
                    o["type"] = "whiteboard".into();
                    o["camid"] = camid.clone().into();
                }
                ItemKind::MediaShare { camid } => {
                    o["type"] = "media_share".into();
                    o["camid"] = camid.clone().into();
                }
                ItemKind::ScreenShare { camid } => {
                    o["type"] = "screen_share".into();
                    o["camid"] = camid.clone().into();
                }
                ItemKind::Picture { resource_id } => {
                    o["type"] = "picture".into();
                    o["resourceid"] = resource_id.clone().into();
                }
                ItemKind::Text { text, .. } => {
                    o["type"] = "text".into();
                    o["text"] = text.clone().into();
                }
            }
            if let Some(p) = &it.placeholder {
                o["placeholder"] = p.clone().into();
            }
            o
        })
        .collect();
    serde_json::json!({
        "width": out.width,
        "height": out.height,
        "fps": out.fps,
        "bitrate": out.effective_bitrate(),
        "bitrateForced": out.bitrate.is_some(),
        "qp": out.qp,
        "targets": out.targets,
        "background": layout.background,
        "backgroundImage": layout.background_image,
        "placeholderImage": layout.placeholder_image,
        "items": items,
    })
}

pub mod per_stream;
pub use per_stream::{PerStream, PerStreamAudio, PerStreamVideo, Subscribe};

#[cfg(test)]
mod tests;
