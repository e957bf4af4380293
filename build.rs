// Compiles the inline C++ (cpp! blocks) of src/lib.rs's module tree against the system dlib
// headers: src/engine/dlib_ext.rs, and src/engine/hog.rs with the header it includes,
// src/engine/hog.hpp (so src/engine is on the include path).
fn main() {
    println!("cargo:rerun-if-changed=src/engine/dlib_ext.rs");
    println!("cargo:rerun-if-changed=src/engine/hog.rs");
    println!("cargo:rerun-if-changed=src/engine/hog.hpp");
    build_time();
    let engine_dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/engine");
    warn_if_this_cpu_cannot_run_it();
    cpp_build::Config::new()
        .flag("-std=c++14")
        .include(engine_dir)
        .build("src/lib.rs");
}

/// .cargo/config.toml builds the C++ for AVX2+FMA by default (scripts/setup chooses per CPU). A
/// plain cargo build on an x86_64 CPU without them makes a binary that stops with "Illegal
/// instruction" when it detects faces: say so now. (cc, below, has cargo rerun this script when
/// the flags change.)
fn warn_if_this_cpu_cannot_run_it() {
    let (Ok(target), Ok(host)) = (std::env::var("TARGET"), std::env::var("HOST")) else {
        return;
    };
    if target != host || !target.starts_with("x86_64-") {
        return;
    }
    let flags = std::env::var(format!("CXXFLAGS_{}", target.replace('-', "_"))).unwrap_or_default();
    let Ok(cpuinfo) = std::fs::read_to_string("/proc/cpuinfo") else {
        return;
    };
    let has = |word: &str| {
        cpuinfo
            .lines()
            .find(|l| l.starts_with("flags"))
            .is_some_and(|l| l.split_whitespace().any(|w| w == word))
    };
    for (flag, feature) in [("-mavx2", "avx2"), ("-mfma", "fma")] {
        if flags.split_whitespace().any(|f| f == flag) && !has(feature) {
            println!(
                "cargo:warning=the C++ is built with {flag} (CXXFLAGS_{}), which this CPU lacks: \
                 the binary will stop with \"Illegal instruction\". Build with scripts/setup, or \
                 with FACE_CPU=portable: eval \"$(scripts/cpu-flags --cpu portable --env)\"",
                target.replace('-', "_")
            );
            return;
        }
    }
}

/// `FACE_BUILD_UNIX_MS`: when this build was made (`SOURCE_DATE_EPOCH` when set, for
/// reproducible builds). Gallery replication takes a clock that reads earlier as not set yet
/// (src/replication/wire.rs).
fn build_time() {
    println!("cargo:rerun-if-env-changed=SOURCE_DATE_EPOCH");
    let ms = std::env::var("SOURCE_DATE_EPOCH")
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok())
        .map(|s| s * 1000)
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64)
        });
    println!("cargo:rustc-env=FACE_BUILD_UNIX_MS={ms}");
}
