//! Parses and validates every `shaders/*.wgsl` with naga (no adapter needed), with the
//! capabilities of WebGPU core only, so a shader that would need a native-only feature fails here.

use std::path::Path;

#[test]
fn every_shader_parses_and_validates() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("shaders");
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).expect("shaders/ exists") {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) != Some("wgsl") {
            continue;
        }
        let src = std::fs::read_to_string(&path).unwrap();
        let module = naga::front::wgsl::parse_str(&src)
            .unwrap_or_else(|e| panic!("{}: {}", path.display(), e.emit_to_string(&src)));
        let mut v = naga::valid::Validator::new(
            naga::valid::ValidationFlags::all(),
            naga::valid::Capabilities::empty(),
        );
        v.validate(&module)
            .unwrap_or_else(|e| panic!("{}: {}", path.display(), e.emit_to_string(&src)));
        assert!(
            !module.entry_points.is_empty(),
            "{}: no entry points",
            path.display()
        );
        n += 1;
    }
    assert!(n > 0, "no shaders found in {}", dir.display());
}

#[test]
fn compose_shader_has_the_entry_points_the_pipelines_use() {
    let src = include_str!("../shaders/compose.wgsl");
    let module = naga::front::wgsl::parse_str(src).unwrap();
    let names: Vec<&str> = module
        .entry_points
        .iter()
        .map(|e| e.name.as_str())
        .collect();
    for want in ["vs_main", "fs_y", "fs_uv", "fs_u_v"] {
        assert!(
            names.contains(&want),
            "missing entry point {want}: {names:?}"
        );
    }
}
