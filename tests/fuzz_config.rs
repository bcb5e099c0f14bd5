//! Property-based mutation of the valid seed configs and updates (fixtures/layouts/*.json).
//!
//! Each case starts from a seed, applies 1–5 random mutations (delete, duplicate or rename a
//! key, replace a value with another JSON type or with garbage, extreme numbers, long,
//! unicode and control-character strings, arrays of 0–300 items, deep nesting, a repeated key
//! in the text, a BOM) and checks:
//! - `MixerConfig::from_json` / `parse_update` never panic;
//! - every `Invalid` / `NotUpdatable` error has a non-empty path that names a place in the
//!   document (all of its segments exist, except possibly the last: a missing required key),
//!   and no error or warning contains a raw control character;
//! - a config that parses re-serialises with `resolved_json()`;
//! - `from_value` on the same value agrees with `from_json` on its text.
//!
//! Case counts: 10 000 in all by default (about 7 000 create, 3 000 update);
//! `CLOUDMIXER_FUZZ_CASES=N` sets the total (BENCHMARKS.md has a long run's figures).

use cloudmixer::model::config::{escape_controls, ConfigError, MixerConfig};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use serde_json::{Map, Value};

const SEEDS: [&str; 5] = [
    include_str!("../fixtures/layouts/seed_side_by_side.json"),
    include_str!("../fixtures/layouts/w1.json"),
    include_str!("../fixtures/layouts/w2.json"),
    include_str!("../fixtures/layouts/w3.json"),
    include_str!("../fixtures/layouts/seed_pip_update.json"),
];
/// Seeds that are complete create configs.
const CREATE_SEEDS: usize = 4;

/// Total cases of the default run.
const DEFAULT_CASES: u32 = 10_000;

fn total_cases() -> u32 {
    std::env::var("CLOUDMIXER_FUZZ_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(DEFAULT_CASES)
}

fn runner(cases: u32) -> TestRunner {
    TestRunner::new(Config {
        cases,
        failure_persistence: None,
        max_shrink_iters: 20_000,
        ..Config::default()
    })
}

/// Raw JSON tokens a `serde_json::Value` cannot hold; spliced into the text in place of
/// `"@@RAW<i>@@"` string markers. Those from `OUT_OF_RANGE` on are numbers serde_json refuses
/// (a `ConfigError::Json`, which has no path).
const RAW: [&str; 12] = [
    "-0",
    "-0.0",
    "0.0",
    "4.0",
    "1E2",
    "640.0",
    "123456789012345678901234567890",
    "18446744073709551616",
    "-9223372036854775809",
    "5e-324",
    "1e400",
    "-1e400",
];
const OUT_OF_RANGE: usize = 10;

/// Every key the parser knows, and near misses of some.
const KEYS: &[&str] = &[
    "mode",
    "videoFileCfg",
    "audioFileCfg",
    "storageConfig",
    "mixedLayout",
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
    "placeholder",
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
    "camid",
    "resourceid",
    "text",
    "color",
    "background",
    "font-size",
    "text-margin",
    "vWidht",
    "VWIDTH",
    "layoutconfig",
    "",
    " ",
    "a.b",
    "x[0]",
    "[1]",
    ".",
    "layoutConfig[0]",
];

/// Strings the parser gives meaning to, and hostile ones.
const STRINGS: &[&str] = &[
    "",
    " ",
    "fit",
    "fill",
    "stretch",
    "FIT",
    "#FFFFFF",
    "#00000080",
    "#12345",
    "#GGGGGG",
    "/a.mp4",
    "/a/b.flv;/c.ts;rtmp://h/app/key",
    ";",
    ";;a.mkv;",
    "rtmp://x/y",
    "rtsp://x",
    "http://x/a.mp4",
    "a.m4a",
    "b.wav",
    "c.aac",
    "d.mp3",
    "../x.mp4",
    "/a/../../x.mp4",
    "~/x.mp4",
    "C:/x.mp4",
    "a\\b.mp4",
    "dir/",
    "/",
    "a.MP4",
    ".mp4",
    "Usr1.-1",
    "Usr2.-1",
    "%timestamp%",
    "a\u{0}b.mp4",
    "\u{1b}[31mred",
    "\u{7f}\u{85}\u{9f}",
    "\u{202e}evil",
    "\u{feff}",
    "\u{10ffff}",
    "😀.mp4",
    "@@RAW0@@",
];

fn key_name() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => proptest::sample::select(KEYS).prop_map(str::to_string),
        1 => proptest::collection::vec(any::<char>(), 0..12).prop_map(String::from_iter),
        1 => proptest::collection::vec(
            proptest::sample::select(vec!['\0', '\n', '\t', '\u{1b}', '\u{7f}', '\u{85}', 'a', '.', '[', ']']),
            0..8
        )
        .prop_map(String::from_iter),
        1 => (1usize..400).prop_map(|n| "k".repeat(n)),
    ]
}

fn string_value() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => proptest::sample::select(STRINGS).prop_map(str::to_string),
        2 => proptest::collection::vec(any::<char>(), 0..24).prop_map(String::from_iter),
        1 => proptest::collection::vec(0u32..0x20, 0..10)
            .prop_map(|v| v.into_iter().filter_map(char::from_u32).collect()),
        1 => (any::<char>(), 100usize..20_000).prop_map(|(c, n)| c.to_string().repeat(n)),
        1 => (0usize..RAW.len()).prop_map(|i| format!("@@RAW{i}@@")),
    ]
}

fn number() -> impl Strategy<Value = Value> {
    prop_oneof![
        3 => proptest::sample::select(vec![
            i64::MIN, i64::MIN + 1, -16385, -16384, -1001, -1000, -2, -1, 0, 1, 2, 3, 5, 9, 10, 11,
            12, 29, 30, 31, 50, 51, 52, 64, 65, 511, 512, 513, 1279, 1281, 8191, 8192, 8193,
            8194, 9_999, 10_000, 15_999, 16_000, 16_383, 16_384, 16_385, 320_000, 320_001,
            100_000_000, 100_000_001, i32::MAX as i64, i32::MAX as i64 + 1, u32::MAX as i64,
            u32::MAX as i64 + 1, i64::MAX - 1, i64::MAX,
        ])
        .prop_map(Value::from),
        1 => Just(Value::from(u64::MAX)),
        1 => any::<i64>().prop_map(Value::from),
        1 => proptest::sample::select(vec![
            0.5, -0.5, 0.999_999, 1.000_001, 1e308, -1e308, f64::MAX, f64::MIN, f64::EPSILON,
            f64::MIN_POSITIVE, 5e-324, 1e19, -1e19, 9.223_372_036_854_776e18, 640.5, 2.0,
        ])
        .prop_map(Value::from),
        1 => any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
    ]
}

fn garbage() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        1 => Just(Value::Null),
        1 => any::<bool>().prop_map(Value::Bool),
        3 => number(),
        3 => string_value().prop_map(Value::String),
        1 => Just(Value::Array(Vec::new())),
        1 => Just(Value::Object(Map::new())),
    ];
    leaf.prop_recursive(4, 32, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            proptest::collection::vec((key_name(), inner), 0..6)
                .prop_map(|kv| Value::Object(kv.into_iter().collect())),
        ]
    })
}

/// One mutation. `sel` picks a node of the document (preorder, modulo the node count).
#[derive(Debug, Clone)]
enum Mutation {
    Delete {
        sel: usize,
    },
    /// Copies a member under another key (object) or an element to another position (array).
    Duplicate {
        sel: usize,
        name: String,
    },
    Rename {
        sel: usize,
        name: String,
    },
    Replace {
        sel: usize,
        value: Value,
    },
    /// A number leaf (if any) becomes another number.
    Number {
        sel: usize,
        value: Value,
    },
    /// The node becomes an array of `n` copies of itself, of one of its own elements, or of
    /// garbage.
    Array {
        sel: usize,
        n: usize,
        of: u8,
        value: Value,
    },
    /// The node is wrapped in `depth` arrays.
    Nest {
        sel: usize,
        depth: usize,
    },
}

fn mutation() -> impl Strategy<Value = Mutation> {
    let sel = any::<usize>();
    prop_oneof![
        3 => sel.prop_map(|sel| Mutation::Delete { sel }),
        2 => (sel, key_name()).prop_map(|(sel, name)| Mutation::Duplicate { sel, name }),
        2 => (sel, key_name()).prop_map(|(sel, name)| Mutation::Rename { sel, name }),
        4 => (sel, garbage()).prop_map(|(sel, value)| Mutation::Replace { sel, value }),
        4 => (sel, number()).prop_map(|(sel, value)| Mutation::Number { sel, value }),
        1 => (sel, prop_oneof![0usize..4, 60usize..70, 0usize..=300], 0u8..3, garbage())
            .prop_map(|(sel, n, of, value)| Mutation::Array { sel, n, of, value }),
        1 => (sel, prop_oneof![1usize..8, 100usize..200])
            .prop_map(|(sel, depth)| Mutation::Nest { sel, depth }),
    ]
}

#[derive(Debug, Clone, PartialEq)]
enum Seg {
    Key(String),
    Idx(usize),
}

/// Paths of every node, preorder (the root first).
fn nodes(v: &Value) -> Vec<Vec<Seg>> {
    fn walk(v: &Value, path: &mut Vec<Seg>, out: &mut Vec<Vec<Seg>>) {
        out.push(path.clone());
        match v {
            Value::Object(m) => {
                for (k, c) in m {
                    path.push(Seg::Key(k.clone()));
                    walk(c, path, out);
                    path.pop();
                }
            }
            Value::Array(a) => {
                for (i, c) in a.iter().enumerate() {
                    path.push(Seg::Idx(i));
                    walk(c, path, out);
                    path.pop();
                }
            }
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk(v, &mut Vec::new(), &mut out);
    out
}

fn at<'a>(v: &'a Value, path: &[Seg]) -> &'a Value {
    path.iter().fold(v, |v, s| match s {
        Seg::Key(k) => &v[k.as_str()],
        Seg::Idx(i) => &v[*i],
    })
}

fn at_mut<'a>(v: &'a mut Value, path: &[Seg]) -> &'a mut Value {
    path.iter().fold(v, |v, s| match s {
        Seg::Key(k) => &mut v[k.as_str()],
        Seg::Idx(i) => &mut v[*i],
    })
}

/// Applies a mutation; returns the nesting depth it added (for the recursion limit).
fn apply(doc: &mut Value, m: &Mutation) -> usize {
    let all = nodes(doc);
    let pick = |sel: usize| all[sel % all.len()].clone();
    match m {
        Mutation::Delete { sel } => {
            let p = pick(*sel);
            if let Some((last, parent)) = p.split_last() {
                match (at_mut(doc, parent), last) {
                    (Value::Object(o), Seg::Key(k)) => {
                        o.remove(k);
                    }
                    (Value::Array(a), Seg::Idx(i)) => {
                        a.remove(*i);
                    }
                    _ => unreachable!(),
                }
            }
        }
        Mutation::Duplicate { sel, name } => {
            let p = pick(*sel);
            if let Some((last, parent)) = p.split_last() {
                let v = at_mut(doc, &p).clone();
                match (at_mut(doc, parent), last) {
                    (Value::Object(o), _) => {
                        o.insert(name.clone(), v);
                    }
                    (Value::Array(a), _) => {
                        let to = name.len() % (a.len() + 1);
                        a.insert(to, v);
                    }
                    _ => unreachable!(),
                }
            }
        }
        Mutation::Rename { sel, name } => {
            let p = pick(*sel);
            if let Some((Seg::Key(k), parent)) = p.split_last() {
                if let Value::Object(o) = at_mut(doc, parent) {
                    if let Some(v) = o.remove(k) {
                        o.insert(name.clone(), v);
                    }
                }
            }
        }
        Mutation::Replace { sel, value } => *at_mut(doc, &pick(*sel)) = value.clone(),
        Mutation::Number { sel, value } => {
            let nums: Vec<_> = all.iter().filter(|p| at(doc, p).is_number()).collect();
            let p = if nums.is_empty() {
                pick(*sel)
            } else {
                nums[sel % nums.len()].to_vec()
            };
            *at_mut(doc, &p) = value.clone();
        }
        Mutation::Array { sel, n, of, value } => {
            let node = at_mut(doc, &pick(*sel));
            let elem = match of {
                0 => node.clone(),
                1 => match &*node {
                    Value::Array(a) if !a.is_empty() => a[sel % a.len()].clone(),
                    other => other.clone(),
                },
                _ => value.clone(),
            };
            *node = Value::Array(vec![elem; *n]);
        }
        Mutation::Nest { sel, depth } => {
            let node = at_mut(doc, &pick(*sel));
            for _ in 0..*depth {
                *node = Value::Array(vec![node.take()]);
            }
            return *depth;
        }
    }
    0
}

/// Serialises `v`; when `dup` is `Some(i)`, the i-th non-empty object (preorder, modulo their
/// count) repeats its first key at its end (a duplicate key in the text).
fn to_text(v: &Value, dup: Option<usize>) -> String {
    fn count(v: &Value) -> usize {
        match v {
            Value::Object(m) => usize::from(!m.is_empty()) + m.values().map(count).sum::<usize>(),
            Value::Array(a) => a.iter().map(count).sum(),
            _ => 0,
        }
    }
    fn write(v: &Value, target: usize, seen: &mut usize, out: &mut String) {
        match v {
            Value::Object(m) => {
                let me = if m.is_empty() { usize::MAX } else { *seen };
                if !m.is_empty() {
                    *seen += 1;
                }
                out.push('{');
                for (i, (k, c)) in m.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    out.push_str(&serde_json::to_string(k).unwrap());
                    out.push(':');
                    write(c, target, seen, out);
                }
                if let (true, Some(k)) = (me == target, m.keys().next()) {
                    out.push(',');
                    out.push_str(&serde_json::to_string(k).unwrap());
                    out.push_str(":null");
                }
                out.push('}');
            }
            Value::Array(a) => {
                out.push('[');
                for (i, c) in a.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    write(c, target, seen, out);
                }
                out.push(']');
            }
            other => out.push_str(&serde_json::to_string(other).unwrap()),
        }
    }
    let target = match (dup, count(v)) {
        (Some(i), n) if n > 0 => i % n,
        _ => usize::MAX,
    };
    let mut out = String::new();
    write(v, target, &mut 0, &mut out);
    for (i, raw) in RAW.iter().enumerate() {
        let marker = format!("\"@@RAW{i}@@\"");
        if out.contains(&marker) {
            out = out.replace(&marker, raw);
        }
    }
    out
}

/// A mutated document and the text sent to the parser.
#[derive(Debug, Clone)]
struct Case {
    value: Value,
    text: String,
    /// The text differs from `value` (duplicate key, BOM, raw tokens).
    text_only: bool,
    /// The text may be refused as JSON (numbers out of range, nesting over the limit).
    json_may_fail: bool,
}

fn case(seeds: std::ops::Range<usize>) -> impl Strategy<Value = Case> {
    (
        seeds,
        proptest::collection::vec(mutation(), 1..=5),
        proptest::option::weighted(0.1, any::<usize>()),
        proptest::bool::weighted(0.05),
    )
        .prop_map(|(seed, muts, dup, bom)| {
            let mut value: Value = serde_json::from_str(SEEDS[seed]).unwrap();
            let mut nest = 0;
            for m in &muts {
                nest += apply(&mut value, m);
            }
            let mut text = to_text(&value, dup);
            let raw = text != serde_json::to_string(&value).unwrap();
            if bom {
                text.insert(0, '\u{feff}');
            }
            let json_may_fail = nest > 100 || RAW[OUT_OF_RANGE..].iter().any(|r| text.contains(r));
            Case {
                value,
                text,
                text_only: raw || bom,
                json_may_fail,
            }
        })
}

/// Whether `path` names a place in `doc`: every segment exists except possibly the last one
/// or two keys (missing keys of an existing object, e.g. a required field). Keys may contain `.` or
/// `[`, so the split is searched; control characters in keys appear escaped in paths.
fn resolves(doc: &Value, path: &str) -> bool {
    fn go(v: Option<&Value>, rest: &str, first: bool) -> bool {
        if rest.is_empty() {
            return true;
        }
        let Some(v) = v else { return false };
        // an index
        if let Some(r) = rest.strip_prefix('[') {
            if let (Some(end), Value::Array(a)) = (r.find(']'), v) {
                if let Ok(i) = r[..end].parse::<usize>() {
                    let after = &r[end + 1..];
                    if after.is_empty() {
                        return i < a.len();
                    }
                    if go(a.get(i), after, false) {
                        return true;
                    }
                }
            }
        }
        // a key
        let r = if first {
            rest
        } else if let Some(r) = rest.strip_prefix('.') {
            r
        } else {
            return false;
        };
        let Value::Object(m) = v else { return false };
        for (k, c) in m {
            // an empty key is written `""` in paths
            let k = if k.is_empty() {
                "\"\"".to_string()
            } else {
                escape_controls(k)
            };
            if let Some(after) = r.strip_prefix(k.as_str()) {
                if (after.is_empty() || after.starts_with('.') || after.starts_with('['))
                    && go(Some(c), after, false)
                {
                    return true;
                }
            }
        }
        // the last segment may name a missing key of this object, or the last two (a
        // required `param.camid` of an item without `param`)
        !r.is_empty() && !r.contains('[') && r.matches('.').count() <= 1
    }
    go(Some(doc), path, true)
}

fn check_text(what: &str, s: &str) -> Result<(), TestCaseError> {
    prop_assert!(
        !s.chars().any(char::is_control),
        "{what} contains a raw control character: {s:?}"
    );
    Ok(())
}

/// The properties every error must have; `doc` is the document the paths refer to.
fn check_error(
    e: &ConfigError,
    doc: &Value,
    json_may_fail: bool,
    text: &str,
) -> Result<(), TestCaseError> {
    check_text("error message", &e.to_string())?;
    match e {
        ConfigError::Json(m) => prop_assert!(
            json_may_fail,
            "valid JSON refused as JSON: {m} (text {:?})",
            &text[..text.len().min(400)]
        ),
        ConfigError::Invalid { path, .. } | ConfigError::NotUpdatable { path } => {
            prop_assert!(
                !path.is_empty(),
                "empty path: {e}\n{}",
                &text[..text.len().min(2000)]
            );
            prop_assert_eq!(e.path(), Some(path.as_str()));
            if path == "(root)" {
                prop_assert!(!doc.is_object(), "(root) error for an object root: {}", e);
            } else {
                prop_assert!(
                    resolves(doc, path),
                    "error path {:?} does not name a place in the document: {}\n{}",
                    path,
                    e,
                    &text[..text.len().min(2000)]
                );
            }
        }
    }
    Ok(())
}

fn check_ok(cfg: &MixerConfig) -> Result<(), TestCaseError> {
    for w in cfg.warnings() {
        check_text("warning", w)?;
    }
    let j = cfg.resolved_json();
    prop_assert!(serde_json::to_string(&j).is_ok());
    Ok(())
}

/// A digest of a parse result that ignores the layout's generation counter. Errors are
/// compared by path: serde_json parses some floats 1 ulp off the value it prints (without
/// its `float_roundtrip` feature), so a number echoed in a message may differ in its last
/// digit between `from_value(v)` and `from_json(v.to_string())`.
fn digest(r: &Result<MixerConfig, ConfigError>) -> String {
    match r {
        Ok(c) => format!(
            "ok {:?} {:?} {:?} {} {:?}",
            c.output,
            c.audio,
            c.audio_file,
            c.resolved_json(),
            c.warnings()
        ),
        Err(e) => format!("err {:?}", e.path()),
    }
}

#[test]
fn create_configs_mutated() {
    let n = (total_cases() as u64 * 7 / 10) as u32;
    let t = std::time::Instant::now();
    runner(n)
        .run(&case(0..SEEDS.len()), |c| {
            let r = MixerConfig::from_json(&c.text);
            match &r {
                Ok(cfg) => check_ok(cfg)?,
                Err(e) => check_error(e, &c.value, c.json_may_fail, &c.text)?,
            }
            if !c.text_only && !c.json_may_fail {
                let v = MixerConfig::from_value(c.value.clone());
                prop_assert_eq!(digest(&r), digest(&v), "from_json and from_value disagree");
            }
            Ok(())
        })
        .unwrap();
    eprintln!("create_configs_mutated: {n} cases in {:.1?}", t.elapsed());
}

#[test]
fn updates_mutated() {
    let n = total_cases() - (total_cases() as u64 * 7 / 10) as u32;
    let creates: Vec<MixerConfig> = SEEDS[..CREATE_SEEDS]
        .iter()
        .map(|s| MixerConfig::from_json(s).unwrap())
        .collect();
    let t = std::time::Instant::now();
    // updates start from the update seed or from a whole create config (servers resend it)
    runner(n)
        .run(&(0..CREATE_SEEDS, case(0..SEEDS.len())), |(ci, c)| {
            let cfg = &creates[ci];
            match cfg.parse_update(&c.text) {
                Ok(layout) => {
                    prop_assert_eq!(
                        (layout.width(), layout.height()),
                        (cfg.output.width, cfg.output.height)
                    );
                }
                Err(e) => check_error(&e, &c.value, c.json_may_fail, &c.text)?,
            }
            Ok(())
        })
        .unwrap();
    eprintln!("updates_mutated: {n} cases in {:.1?}", t.elapsed());
}

#[test]
fn unmutated_seeds_are_valid() {
    for s in &SEEDS[..CREATE_SEEDS] {
        let cfg = MixerConfig::from_json(s).unwrap();
        assert!(cfg.warnings().is_empty());
        cfg.parse_update(SEEDS[4]).unwrap();
        cfg.parse_update(s).unwrap();
    }
}

#[test]
fn path_resolver_self_check() {
    let v: Value = serde_json::from_str(r#"{"a.b":{"c":[1,{"d\n":2}]},"e":{}}"#).unwrap();
    assert!(resolves(&v, "a.b.c[1].d\\n"));
    assert!(resolves(&v, "a.b.c[0]"));
    assert!(resolves(&v, "e.missing"));
    assert!(resolves(&v, "videoFileCfg"));
    assert!(resolves(&v, "videoFileCfg.vWidth"));
    assert!(!resolves(&v, "videoFileCfg.x.vWidth"));
    assert!(!resolves(&v, "a.b.c[5].d"));
    assert!(resolves(&v, "a.b.x.y"));
    assert!(!resolves(&v, "a.b.x.y.z"));
    assert!(!resolves(&v, "a.b.x[0]"));
}

/// A key "" is reported as `""` in paths (found by this fuzzer: it used to vanish).
#[test]
fn empty_key_gets_a_path() {
    let create = SEEDS[0];
    let cfg = MixerConfig::from_json(create).unwrap();
    let errors = [
        // NotUpdatable for an update with a root key ""
        cfg.parse_update(r#"{"":0,"videoFileCfg":{"layoutConfig":[]}}"#)
            .unwrap_err(),
        // a duplicate root key ""
        MixerConfig::from_json(&format!("{{\"\":0,\"\":0,{}", &create[1..])).unwrap_err(),
    ];
    // a duplicate key inside a root key "": the path reads as a root key "x"
    let e = MixerConfig::from_json(r#"{"":{"x":0,"x":0}}"#).unwrap_err();
    assert_ne!(e.path(), Some("x"), "{e}");
    let empty: Vec<String> = errors
        .iter()
        .filter(|e| e.path().is_none_or(str::is_empty))
        .map(|e| format!("{e:?}"))
        .collect();
    assert!(empty.is_empty(), "errors without a path: {empty:?}");
}
