//! The JSON-lines event log: one event per line, each written with a single `write` on a file
//! opened for appending, so writers sharing the file (a recording, resumed uploads, a service's
//! rooms) never interleave inside a line, and a kill leaves every line before it whole.

use std::io::Write;
use std::path::Path;
use std::sync::Arc;

use serde_json::Value;

use super::{Host, HostEvent};

/// Opens (creating it) an events file for appending.
pub fn open_events(p: &Path) -> std::io::Result<std::fs::File> {
    std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(p)
}

/// Writes one event as a JSON line with a single `write`.
pub fn write_event(mut file: &std::fs::File, ev: &Value) -> std::io::Result<()> {
    file.write_all(format!("{ev}\n").as_bytes())
}

/// Appends every event of `host` from now on to `file` (each with its `mixerID` and `seq`), on
/// a thread of its own, until the host is gone or a write fails (logged). A log that falls
/// behind by more than the host's subscriber queue picks up from the backlog, so nothing kept
/// is lost.
pub fn log_events(
    host: &Host,
    file: std::fs::File,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    let host = host.clone();
    std::thread::Builder::new()
        .name("cm-event-log".into())
        .spawn(move || {
            let (_, mut rx) = host.subscribe(None);
            let mut last = 0u64;
            loop {
                for e in rx.iter() {
                    if let Err(err) = write_line(&file, &e) {
                        tracing::warn!("event log: {err}; no more events are logged");
                        return;
                    }
                    last = e.seq;
                }
                // cut off (fell behind): resume after the last one written
                let (missed, next) = host.subscribe(Some(last));
                for e in missed {
                    if write_line(&file, &e).is_err() {
                        return;
                    }
                    last = e.seq;
                }
                rx = next;
            }
        })
}

fn write_line(file: &std::fs::File, e: &Arc<HostEvent>) -> std::io::Result<()> {
    let mut v = e.to_json();
    v["seq"] = Value::from(e.seq);
    write_event(file, &v)
}
