//! Compiles the XDP program (bpf/steer.c) with clang into BPF bytecode with
//! BTF (`-g`), so the loader can embed it with `include_bytes_aligned!`.
//! Rust eBPF (aya-ebpf) would need a bpf-linker for LLVM 22 that the package
//! registries here do not carry; see DESIGN.md.

use std::{env, path::PathBuf, process::Command};

fn main() {
    let src = "bpf/steer.c";
    println!("cargo:rerun-if-changed={src}");
    println!("cargo:rerun-if-env-changed=CLANG");
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("OUT_DIR")).join("steer.o");
    let clang = env::var("CLANG").unwrap_or_else(|_| "clang".into());
    let arch = match env::var("CARGO_CFG_TARGET_ARCH").as_deref() {
        Ok("aarch64") => "aarch64-linux-gnu",
        _ => "x86_64-linux-gnu",
    };
    let status = Command::new(&clang)
        .args(["-O2", "-g", "-Wall", "-Werror", "-target", "bpf"])
        .arg(format!("-I/usr/include/{arch}"))
        .args(["-c", src, "-o"])
        .arg(&out)
        .status()
        .unwrap_or_else(|e| {
            panic!("cannot run {clang} to build the XDP program: {e} (install clang: scripts/deps)")
        });
    assert!(status.success(), "{clang} failed to compile {src}");
}
