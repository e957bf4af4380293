fn main() {
    // Before anything else: it may run the program again (see its docs).
    face_attendance::engine::blas::reexec_with_best_kernels();
    let cli = face_attendance::cli::Cli::from_env();
    std::process::exit(face_attendance::cli::run(cli));
}
