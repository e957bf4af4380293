use clap::Parser;

fn main() {
    // Before anything else: it may run the program again (see its docs).
    face_attendance::engine::blas::reexec_with_best_kernels();
    let cli = face_attendance::cli::Cli::parse();
    std::process::exit(face_attendance::cli::run(cli));
}
