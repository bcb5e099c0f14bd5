//! Text items (DESIGN §3): rasterising a timestamp, and what a cached text box costs a W1
//! frame between changes (composed through the scene, CPU compositor).
//!
//! `W1/plain` is the workload as is; `W1/timestamp_on_background` adds an 18 px `%timestamp%`
//! box over the black band above the cameras; `W1/timestamp_on_camera` puts it over cam4's
//! picture (then the camera's redraw redraws the box too). The wall clock stays inside one
//! second, so the box is not re-rasterised.
use std::collections::HashMap;
use std::sync::Arc;

use criterion::{criterion_group, criterion_main, Criterion};

use cloudmixer::compose::scene::Scene;
use cloudmixer::compose::text::{render, Fonts, TextStyle};
use cloudmixer::compose::{cpu::CpuCompositor, Compositor, Frames};
use cloudmixer::model::layout::{FitMode, Item, ItemKind, Layout, Rect};
use cloudmixer::testkit::synth::SyntheticSources;
use cloudmixer::testkit::workloads::Workload;

fn timestamp_at(x: i32, y: i32) -> Item {
    Item {
        kind: ItemKind::Text {
            text: "%timestamp%".into(),
            color: [255, 255, 255, 255],
            background: [0, 0, 0, 0x7d],
            font_size: 18,
            margin: 5,
        },
        rect: Rect::new(x, y, 1, 1),
        fit: FitMode::Fit,
        alpha: 1.0,
        zorder: 0,
        index: 2,
        placeholder: None,
    }
}

fn bench(c: &mut Criterion) {
    let fonts: Arc<Fonts> = Fonts::system()
        .map(Arc::new)
        .expect("fonts (scripts/install-deps.sh)");
    let mut g = c.benchmark_group("text");
    g.sample_size(50);
    let style = TextStyle {
        color: [255, 255, 255, 255],
        background: [0, 0, 0, 0x7d],
        font_size: 18,
        margin: 5,
    };
    g.bench_function("rasterise/timestamp_18px", |b| {
        b.iter(|| render(&fonts, "2026-11-26 12:34:56", &style, 1280, 720).width)
    });
    g.bench_function("rasterise/chinese_48px", |b| {
        let big = TextStyle {
            font_size: 48,
            ..style
        };
        b.iter(|| render(&fonts, "会议录制 第一会议室", &big, 1280, 720).width)
    });
    let w = Workload::all()
        .into_iter()
        .find(|w| w.name == "W1")
        .expect("W1");
    let sources = SyntheticSources::new(&w);
    let layouts: [(&str, Layout); 3] = [
        ("plain", w.layout()),
        (
            "timestamp_on_background",
            w.layout().with_items(|v| v.push(timestamp_at(16, 16))),
        ),
        (
            "timestamp_on_camera",
            w.layout().with_items(|v| v.push(timestamp_at(660, 200))),
        ),
    ];
    for (name, layout) in layouts {
        let mut comp = CpuCompositor::new(w.width, w.height);
        let mut scene = Scene::with_fonts(fonts.clone());
        let mut frames: Frames = HashMap::new();
        let mut tick: u64 = 0;
        g.bench_function(format!("W1/{name}"), |b| {
            b.iter(|| {
                sources.frames_at(tick, &mut frames);
                tick += 1;
                // one second of wall clock, then back: the box stays cached
                let wall_ms = 1_795_694_400_000 + (tick % 15) as i64 * 66;
                let (l, f) = scene.resolve(&layout, &frames, wall_ms);
                comp.compose(l, f).unwrap().y[0]
            })
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
