//! The FLV container around an RTMP publisher's messages: RTMP carries audio and video
//! messages whose bodies are FLV tag bodies (codec header byte(s), then the payload), so a
//! header and one tag per message make a byte stream that FFmpeg's `flv` demuxer reads.

/// Tag type of an audio message.
pub const AUDIO: u8 = 8;
/// Tag type of a video message.
pub const VIDEO: u8 = 9;
/// Tag type of a script (`onMetaData`) message.
pub const SCRIPT: u8 = 18;

/// The FLV file header (version 1, audio and video announced) and the first
/// `PreviousTagSize` (0).
pub fn header() -> [u8; 13] {
    [b'F', b'L', b'V', 1, 0x05, 0, 0, 0, 9, 0, 0, 0, 0]
}

/// Appends one tag of `kind` ([`AUDIO`], [`VIDEO`], [`SCRIPT`]) holding `body` at `ts_ms`
/// (milliseconds, the RTMP message's timestamp; FLV keeps 32 bits: 24 low + 8 extended), then
/// its `PreviousTagSize`. A body of 16 MiB or more does not fit a tag: it is not written
/// (false).
pub fn write_tag(out: &mut Vec<u8>, kind: u8, ts_ms: u32, body: &[u8]) -> bool {
    let len = body.len();
    if len >= 1 << 24 {
        return false;
    }
    let len = len as u32;
    out.push(kind);
    out.extend_from_slice(&len.to_be_bytes()[1..]);
    out.extend_from_slice(&ts_ms.to_be_bytes()[1..]);
    out.push((ts_ms >> 24) as u8);
    out.extend_from_slice(&[0, 0, 0]);
    out.extend_from_slice(body);
    out.extend_from_slice(&(11 + len).to_be_bytes());
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_are_laid_out_as_flv_has_them() {
        assert_eq!(&header()[..5], b"FLV\x01\x05");
        let mut out = Vec::new();
        assert!(write_tag(&mut out, VIDEO, 0x0102_0304, &[0x17, 0, 0xAA]));
        assert_eq!(
            out,
            [
                9, 0, 0, 3, // type, size
                0x02, 0x03, 0x04, 0x01, // timestamp: 24 low bits, then the high byte
                0, 0, 0, // stream id
                0x17, 0, 0xAA, // body
                0, 0, 0, 14 // previous tag size: 11 + 3
            ]
        );
        let n = out.len();
        assert!(write_tag(&mut out, AUDIO, 40, &[]));
        assert_eq!(&out[n..], &[8, 0, 0, 0, 0, 0, 40, 0, 0, 0, 0, 0, 0, 0, 11]);
        assert!(!write_tag(&mut out, AUDIO, 0, &vec![0; 1 << 24]));
    }
}
