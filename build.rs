// SPDX-License-Identifier: LGPL-2.1-or-later
//! Link settings of the C ABI library, on every build path: a plain
//! `cargo build` (as Fedora's %cargo_build runs it), Meson
//! (scripts/cargo-build.py) and the Debian package all give the same `.so`.
//!
//! - The SONAME, `libvircgroup_v2_devices.so.N`, with N read from
//!   `abi/soversion` (the policy for changing it is in ABI.md).
//! - GNU ld (`-fuse-ld=bfd`): rustc >= 1.90 links with its own rust-lld,
//!   where the anonymous version script rustc writes for a cdylib (its export
//!   list) leaves every symbol unversioned, whatever version script is added.
//!   GNU ld's `--default-symver` versions every exported symbol with the
//!   SONAME as the version node (`vircgroup_v2_allow_device@@
//!   libvircgroup_v2_devices.so.0`). The later `-fuse-ld` wins over rustc's.
//!
//! Only the cdylib gets these: the rlib, the tests and the binaries link as
//! rustc chooses.

use std::{env, fs, path::Path};

fn main() {
    println!("cargo:rerun-if-changed=abi/soversion");
    let root = env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    let path = Path::new(&root).join("abi/soversion");
    let text = fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let soversion = text.trim();
    if soversion.is_empty() || !soversion.bytes().all(|b| b.is_ascii_digit()) {
        panic!("{}: '{soversion}' is not a number", path.display());
    }
    if env::var("CARGO_CFG_TARGET_OS").as_deref() != Ok("linux") {
        return;
    }
    let soname = format!("libvircgroup_v2_devices.so.{soversion}");
    for arg in [
        "-fuse-ld=bfd".to_owned(),
        format!("-Wl,-soname,{soname}"),
        "-Wl,--default-symver".to_owned(),
    ] {
        println!("cargo:rustc-cdylib-link-arg={arg}");
    }
}
