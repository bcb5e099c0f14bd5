//! Mixer states, output info and events (DESIGN §3 "States and events").
//!
//! Numbering follows the RTC vendor's cloud-mixer API so a recording server can pass states,
//! output info and error codes through unchanged.

use serde::ser::{Serialize, Serializer};
use serde_json::{json, Value};

/// Error codes reported in events and by [`crate::pipeline::MixerError::code`]: the one
/// definition of each (the vendor's numbers, plus 1 INTERNAL). Every other place (the host, the
/// uploader, `serve`, the C ABI's `CM_*` constants) uses these.
pub mod codes {
    /// No error.
    pub const OK: i32 = 0;
    /// Internal failure (encoder, compositor, thread); ours, not a vendor code.
    pub const INTERNAL: i32 = 1;
    /// A parameter (config, layout update, frame) is invalid.
    pub const PARAM_ERR: i32 = 5;
    /// 901: the maximum recording duration was reached; the recording stopped cleanly.
    pub const RECORD_MAX: i32 = 901;
    /// 902: the disk is full (ENOSPC) or the file hit its size limit (EFBIG).
    pub const RECORD_NO_DISK: i32 = 902;
    /// 903: the vendor's "file too large" (not reported by us: EFBIG is [`RECORD_NO_DISK`]).
    pub const FILE_TOO_LARGE: i32 = 903;
    /// 904: the vendor's "configuration not allowed" (not reported by us: a bad config is
    /// [`PARAM_ERR`]).
    pub const CONFIG_NOT_ALLOWED: i32 = 904;
    /// 905: a target file cannot be created or written.
    pub const FILE_ERR: i32 = 905;
    /// 906: "already started": a mixer with this id is already running (the host, `serve`).
    pub const ALREADY_STARTED: i32 = 906;
    /// 907: "not enough recording servers": no capacity for another recording (the host's room
    /// limit, `serve`).
    pub const NO_CAPACITY: i32 = 907;
    /// 908: the vendor's "cloud space full" (not reported by us: a failed upload is
    /// [`UPLOAD_FAIL`]).
    pub const CLOUD_SPACE_FULL: i32 = 908;
    /// 1106: the vendor's "file missing" (the file to upload is gone; not reported by us).
    pub const FILE_MISSING: i32 = 1106;
    /// 1107: uploading a finished file to `storageConfig` failed (output state 6 UPLOADFAIL).
    pub const UPLOAD_FAIL: i32 = 1107;
    /// 1200: the vendor's "upload state error" (not reported by us).
    pub const UPLOAD_STATE_ERR: i32 = 1200;
}

/// Mixer state (vendor numbering; 3 PAUSED is unused).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum MixerState {
    /// 0: stopped (initial and final state).
    Null = 0,
    /// 1: opening the encoder and targets.
    Starting = 1,
    /// 2: recording.
    Running = 2,
    /// 4: draining and finalising the file.
    Stopping = 4,
}

/// State of one output (target file).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum OutputState {
    /// 0: not started.
    Null = 0,
    /// 1: being written.
    Running = 1,
    /// 2: finished and finalised.
    Stopped = 2,
    /// 3: failed (see `errCode`); for a live target: down, reconnecting.
    Fail = 3,
    /// 4: the finished file is being uploaded (`storageConfig`; see `progress`).
    Uploading = 4,
    /// 5: uploaded; the object's size was checked.
    Uploaded = 5,
    /// 6: the upload failed (`errCode` 1107); the local file is kept.
    UploadFail = 6,
}

impl Serialize for MixerState {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u8(*self as u8)
    }
}

impl Serialize for OutputState {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u8(*self as u8)
    }
}

/// Progress and result of one output, serialised with the vendor's field names.
///
/// ```
/// use cloudmixer::model::events::{OutputInfo, OutputState};
/// let info = OutputInfo { id: 0, state: OutputState::Running, svr_file_path_name: "/a.mp4".into(),
///     start_time: 1_700_000_000_000, duration: 1500, file_size: 4096, err_code: 0,
///     err_desc: String::new(), progress: None };
/// let v = serde_json::to_value(&info).unwrap();
/// assert_eq!(v["svrFilePathName"], "/a.mp4");
/// assert_eq!(v["state"], 1);
/// assert_eq!(v["fileSize"], 4096);
/// assert!(v.get("progress").is_none()); // only while uploading (state 4)
/// ```
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct OutputInfo {
    /// Output index (0 for the first target of `svrPathName`).
    pub id: u32,
    /// Output state.
    pub state: OutputState,
    /// The target as given in `svrPathName`.
    #[serde(rename = "svrFilePathName")]
    pub svr_file_path_name: String,
    /// When the recording started, milliseconds since the Unix epoch.
    pub start_time: u64,
    /// Recorded duration in milliseconds (frames written / fps).
    pub duration: u64,
    /// Bytes written to the file so far.
    pub file_size: u64,
    /// 0, or the error code of a failure.
    pub err_code: i32,
    /// Empty, or the error description.
    pub err_desc: String,
    /// Upload progress 0–100 (state 4 UPLOADING only; 100 at 5 UPLOADED).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub progress: Option<f64>,
}

/// Counters of a running mixer (`Mixer::stats`, and the `stats` event once a second).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MixerStats {
    /// Ticks taken (video frames, or 20 ms steps without video).
    pub ticks: u64,
    /// Audio frames accepted by `push_audio`.
    pub audio_frames: u64,
    /// Audio frames refused because the audio queue was full.
    pub audio_queue_full: u64,
    /// Audio samples (48 kHz) dropped because they arrived after their block was mixed.
    pub audio_late_samples: u64,
    /// Users whose audio is on the mixer timeline: one track (resampled to 48 kHz once) per
    /// user that any audio output carries, shared by every audio output.
    pub audio_tracks: u64,
    /// Real time: ticks taken more than one frame interval after their deadline (the mixer
    /// could not keep time: the machine is overloaded). Always 0 offline.
    pub late_ticks: u64,
    /// Real time: the most any tick was taken after its deadline, in µs.
    pub max_tick_late_us: u64,
    /// Real time: a tick in the last second was late (the mixer is not keeping time now).
    pub overloaded: bool,
    /// Video frames pushed, all sources (per source: `Mixer::source_stats`).
    pub frames_received: u64,
    /// Pushed frames that became their source's picture.
    pub frames_used: u64,
    /// Pushed frames superseded before they were ever shown.
    pub frames_replaced: u64,
    /// Real time: pushed frames that arrived after the tick due to show them had been taken
    /// (more than the latency after their capture time); see `SourceStats::late`.
    pub frames_late: u64,
    /// Composed frames that repeat the one before: no source had a new frame and the layout
    /// did not change (sources stalled, or an output rate above every source's rate).
    pub frames_repeated: u64,
    /// Composed frames handed to the video encoder and not yet encoded (0–3 when it keeps up).
    pub encoder_queue: u64,
    /// The longest a composed frame waited for the encoder and was encoded, µs.
    pub encoder_max_us: u64,
}

/// An event from a mixer (see [`crate::pipeline::Mixer::events`]).
#[derive(Debug, Clone, PartialEq)]
pub enum MixerEvent {
    /// The mixer changed state. `err`/`err_desc` are set when it returns to NULL on failure
    /// (or on reaching the maximum duration). `encoder` and `backend` are set on RUNNING.
    StateChanged {
        /// New state.
        state: MixerState,
        /// 0, or the error code that caused the change.
        err: i32,
        /// Empty, or the error description.
        err_desc: String,
        /// The encoder in use (set on RUNNING), e.g. `libx264`.
        encoder: Option<String>,
        /// The compositor in use (set on RUNNING), e.g. `cpu (rayon, 2 threads)`.
        backend: Option<String>,
    },
    /// Progress or result of an output.
    OutputInfoChanged(OutputInfo),
    /// The mixer's counters, once a second while it runs (`{"event":"stats",…}`, ours).
    Stats(MixerStats),
    /// A failure (followed by a StateChanged to NULL when it ends the recording).
    Error {
        /// Error code ([`codes`]).
        code: i32,
        /// Description.
        desc: String,
    },
    /// A pulled input (URL) changed state (`{"event":"inputStateChanged",…}`, ours): the
    /// host's pull feeds report it (see `host::feed::pull`).
    InputStateChanged {
        /// The input's camid (or user).
        input: String,
        /// `connecting`, `live`, `stalled` or `reconnecting`; a published input (RTMP/SRT
        /// publish, WHIP) also `idle` once its publisher left.
        state: String,
        /// Why it is not live (empty when it is), URL credentials redacted.
        error: String,
    },
}

impl MixerEvent {
    /// A plain state change without error.
    pub fn state(state: MixerState) -> Self {
        MixerEvent::StateChanged {
            state,
            err: 0,
            err_desc: String::new(),
            encoder: None,
            backend: None,
        }
    }

    /// The event as one JSON object (`{"event":"stateChanged",…}`), e.g. for a JSON-lines log.
    ///
    /// ```
    /// use cloudmixer::model::events::{MixerEvent, MixerState};
    /// let v = MixerEvent::state(MixerState::Running).to_json();
    /// assert_eq!(v, serde_json::json!({"event":"stateChanged","state":2,"err":0,"errDesc":""}));
    /// ```
    pub fn to_json(&self) -> Value {
        match self {
            MixerEvent::StateChanged {
                state,
                err,
                err_desc,
                encoder,
                backend,
            } => {
                let mut v = json!({"event":"stateChanged","state":*state as u8,"err":err,"errDesc":err_desc});
                if let Some(e) = encoder {
                    v["encoder"] = e.clone().into();
                }
                if let Some(b) = backend {
                    v["backend"] = b.clone().into();
                }
                v
            }
            MixerEvent::OutputInfoChanged(info) => {
                json!({"event":"outputInfoChanged","outputInfo":info})
            }
            MixerEvent::Stats(st) => json!({"event":"stats","stats":st}),
            MixerEvent::Error { code, desc } => json!({"event":"error","code":code,"desc":desc}),
            MixerEvent::InputStateChanged {
                input,
                state,
                error,
            } => json!({"event":"inputStateChanged","input":input,"state":state,"error":error}),
        }
    }
}

impl Serialize for MixerEvent {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.to_json().serialize(s)
    }
}
