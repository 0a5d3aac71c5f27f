// SPDX-License-Identifier: LGPL-2.1-or-later
//! The committed header equals a fresh cbindgen run (cbindgen is pinned in
//! Cargo.toml). `UPDATE_HEADER=1 cargo test --test header` rewrites it.

use std::path::Path;

#[test]
fn header_is_fresh() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let config = cbindgen::Config::from_file(root.join("cbindgen.toml")).expect("cbindgen.toml");
    let mut fresh = Vec::new();
    cbindgen::Builder::new()
        .with_crate(root)
        .with_config(config)
        .generate()
        .expect("cbindgen")
        .write(&mut fresh);
    let path = root.join("include/vircgroup_v2_devices.h");
    if std::env::var_os("UPDATE_HEADER").is_some() {
        std::fs::write(&path, &fresh).expect("write header");
    }
    let committed = std::fs::read(&path).unwrap_or_default();
    assert!(
        committed == fresh,
        "include/vircgroup_v2_devices.h is stale: run UPDATE_HEADER=1 cargo test --test header"
    );
}
