use clap::Parser;

fn main() {
    let cli = face_attendance::cli::Cli::parse();
    std::process::exit(face_attendance::cli::run(cli));
}
