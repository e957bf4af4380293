// Compiles the inline C++ (cpp! blocks) of src/lib.rs's module tree against the system dlib
// headers: src/engine/dlib_ext.rs, and src/engine/hog.rs with the header it includes,
// src/engine/hog.hpp (so src/engine is on the include path).
fn main() {
    println!("cargo:rerun-if-changed=src/engine/dlib_ext.rs");
    println!("cargo:rerun-if-changed=src/engine/hog.rs");
    println!("cargo:rerun-if-changed=src/engine/hog.hpp");
    let engine_dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/engine");
    cpp_build::Config::new()
        .flag("-std=c++14")
        .include(engine_dir)
        .build("src/lib.rs");
}
