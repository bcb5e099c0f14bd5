//! Writes include/cloudmixer.h from the crate's `extern "C"` items (cbindgen), only when it
//! changed (so an unchanged tree stays unchanged).
fn main() {
    let dir = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets it");
    println!("cargo:rerun-if-changed=src/lib.rs");
    println!("cargo:rerun-if-changed=cbindgen.toml");
    let config =
        cbindgen::Config::from_file(format!("{dir}/cbindgen.toml")).expect("cbindgen.toml");
    let header = cbindgen::Builder::new()
        .with_crate(&dir)
        .with_config(config)
        .generate()
        .expect("cbindgen: the C header");
    let path = format!("{dir}/include/cloudmixer.h");
    let mut new = Vec::new();
    header.write(&mut new);
    if std::fs::read(&path).ok().as_deref() != Some(&new[..]) {
        std::fs::write(&path, new).expect("write include/cloudmixer.h");
    }
}
