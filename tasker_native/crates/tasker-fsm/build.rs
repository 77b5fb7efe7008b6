//! Generate the transition tables from spec/states.toml into `$OUT_DIR/tables.rs`.
//!
//! The spec is the single source of truth; a malformed spec fails the build with a message
//! naming the file and the offending entry.

#[path = "codegen/tables.rs"]
mod tables;

use sha2::{Digest, Sha256};
use std::path::PathBuf;
use std::{env, fs};

fn main() {
    let manifest = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets it"));
    let spec_path = manifest.join("../../../spec/states.toml");
    println!("cargo:rerun-if-changed={}", spec_path.display());
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=codegen/tables.rs");

    let bytes =
        fs::read(&spec_path).unwrap_or_else(|e| panic!("cannot read {}: {e}", spec_path.display()));
    let text = std::str::from_utf8(&bytes)
        .unwrap_or_else(|e| panic!("{} is not UTF-8: {e}", spec_path.display()));
    let specs = tables::parse(text).unwrap_or_else(|e| panic!("{}: {e}", spec_path.display()));
    let digest = tables::hex(&Sha256::digest(&bytes));

    let out = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets it")).join("tables.rs");
    fs::write(&out, tables::render(&specs, &digest))
        .unwrap_or_else(|e| panic!("cannot write {}: {e}", out.display()));
}
