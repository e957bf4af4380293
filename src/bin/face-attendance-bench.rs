//! `face-attendance-bench`: the benchmarks (`http`, `camera`), a binary of their own beside the
//! service's `face-attendance`.

use clap::Parser;

fn main() {
    // Before anything else: it may run the program again (see its docs).
    face_attendance::engine::blas::reexec_with_best_kernels();
    let cli = face_attendance::cli::bench::BenchCli::parse();
    std::process::exit(face_attendance::cli::bench::run(cli));
}
