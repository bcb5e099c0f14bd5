//! The audio stage of a recording with two audio outputs (the video file's AAC track and an
//! `audioFileCfg` `.m4a`, both mono): one second (100 blocks of 10 ms) of four users at
//! 16 kHz, pushed, mixed and encoded.
//!
//! - `per_output_tracks`: each output has its own `AudioMix`, so every user's audio is
//!   down-mixed, resampled and drift-steered once per output (the stage before issue 21).
//! - `shared_timeline`: one `Timeline` (each user resampled once), a `Mixdown` per output
//!   (the stage now).
//!
//! `mix_only/*` leaves the AAC encoders out.
//!
//! `cargo bench --bench audio_stage`
use criterion::{criterion_group, criterion_main, Criterion};
use ffmpeg_next as ffmpeg;

use cloudmixer::audio::mix::{AudioMix, ChannelMode, Mixdown, Timeline};
use cloudmixer::audio::BLOCK;
use cloudmixer::media::audio_enc::{AudioCodec, AudioEncoder};
use cloudmixer::model::audio::AudioFrame;

const USERS: usize = 4;
const RATE: u32 = 16_000;

fn frames() -> Vec<Vec<AudioFrame>> {
    (0..USERS)
        .map(|u| {
            (0..100)
                .map(|k| {
                    let s: Vec<f32> = (0..RATE as usize / 100)
                        .map(|i| {
                            let t = (k * 160 + i) as f32 / RATE as f32;
                            0.2 * (std::f32::consts::TAU * (300.0 + 150.0 * u as f32) * t).sin()
                        })
                        .collect();
                    AudioFrame::f32_interleaved(s, RATE, 1).unwrap()
                })
                .collect()
        })
        .collect()
}

const NAMES: [&str; USERS] = ["u0", "u1", "u2", "u3"];

fn mono() -> ChannelMode {
    ChannelMode::Mono { users: vec![] }
}

struct Encoders(Option<[AudioEncoder; 2]>, ffmpeg::Packet);

impl Encoders {
    fn new(encode: bool) -> Self {
        let open = || AudioEncoder::open(AudioCodec::Aac, 1, 64_000, true).unwrap();
        Encoders(encode.then(|| [open(), open()]), ffmpeg::Packet::empty())
    }
    fn encode(&mut self, k: usize, block: &[f32]) {
        if let Some(e) = &mut self.0 {
            e[k].push(block).unwrap();
            while e[k].receive(&mut self.1).unwrap() {}
        }
    }
}

/// Before: one `AudioMix` per output.
struct PerOutput {
    mixes: [AudioMix; 2],
    enc: Encoders,
    buf: Vec<f32>,
    pos: u64,
}

impl PerOutput {
    fn second(&mut self, frames: &[Vec<AudioFrame>]) {
        for k in 0..100 {
            for (u, f) in frames.iter().enumerate() {
                let at = (self.pos + BLOCK as u64) as f64;
                for m in &mut self.mixes {
                    m.push(NAMES[u], &f[k], at, self.pos).unwrap();
                }
            }
            for (i, m) in self.mixes.iter_mut().enumerate() {
                self.buf.fill(0.0);
                m.mix(self.pos, BLOCK, &mut self.buf);
                self.enc.encode(i, &self.buf);
            }
            self.pos += BLOCK as u64;
        }
    }
}

/// Now: one `Timeline`, a `Mixdown` per output.
struct Shared {
    timeline: Timeline,
    mixes: [Mixdown; 2],
    enc: Encoders,
    buf: Vec<f32>,
    pos: u64,
}

impl Shared {
    fn second(&mut self, frames: &[Vec<AudioFrame>]) {
        for k in 0..100 {
            for (u, f) in frames.iter().enumerate() {
                let at = (self.pos + BLOCK as u64) as f64;
                self.timeline.push(NAMES[u], &f[k], at, self.pos).unwrap();
            }
            for (i, m) in self.mixes.iter_mut().enumerate() {
                self.buf.fill(0.0);
                m.mix(&self.timeline, self.pos, BLOCK, &mut self.buf);
                self.enc.encode(i, &self.buf);
            }
            self.timeline.consume(self.pos + BLOCK as u64);
            self.pos += BLOCK as u64;
        }
    }
}

fn bench(c: &mut Criterion) {
    ffmpeg::init().expect("ffmpeg");
    let frames = frames();
    let mut g = c.benchmark_group("audio_stage_2_outputs_4_users_1s");
    g.sample_size(30);
    for (prefix, encode) in [("", true), ("mix_only/", false)] {
        let mut before = PerOutput {
            mixes: [AudioMix::new(mono(), 16), AudioMix::new(mono(), 16)],
            enc: Encoders::new(encode),
            buf: vec![0.0; BLOCK],
            pos: 0,
        };
        g.bench_function(format!("{prefix}per_output_tracks"), |b| {
            b.iter(|| before.second(&frames))
        });
        let mut now = Shared {
            timeline: Timeline::new(16),
            mixes: [Mixdown::new(mono()), Mixdown::new(mono())],
            enc: Encoders::new(encode),
            buf: vec![0.0; BLOCK],
            pos: 0,
        };
        g.bench_function(format!("{prefix}shared_timeline"), |b| {
            b.iter(|| now.second(&frames))
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
