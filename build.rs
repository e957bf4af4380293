// Compiles the inline C++ in src/engine/dlib_ext.rs against the system dlib headers.
fn main() {
    println!("cargo:rerun-if-changed=src/engine/dlib_ext.rs");
    cpp_build::Config::new()
        .flag("-std=c++14")
        .build("src/lib.rs");
}
