//! The command line of `face-attendance-bench`, the benchmarks' own binary (they stay out of
//! the service's): `http` measures a running server's `/recognize`, `camera` the camera loop.
//! The figures in the README come from here; run them on the board itself too.

mod camera;
mod http;

use clap::{Parser, Subcommand};

use super::args::Apply;

/// The command line of `face-attendance-bench`.
#[derive(Debug, Parser)]
#[command(
    name = "face-attendance-bench",
    version,
    about = "Benchmarks of the face-recognition attendance box"
)]
pub struct BenchCli {
    /// What to measure.
    #[command(subcommand)]
    pub command: BenchCommand,
}

/// The benchmarks.
#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Measure a running server: requests/s and latency of /recognize at 1, 2, 4 clients
    Http(http::BenchHttpArgs),
    /// Measure the camera loop: frames/s and per-stage ms on frames made from photos
    Camera(camera::BenchCameraArgs),
}

/// Runs a parsed benchmark command line; returns the process exit status (as
/// `face-attendance`'s: 1 an input failed, 2 cannot start).
pub fn run(cli: BenchCli) -> i32 {
    super::init_logging();
    match cli.command {
        BenchCommand::Http(args) => http::run(&args),
        BenchCommand::Camera(args) => {
            super::with_recognizer(&args.common.settings(), |r| camera::run(&args, r))
        }
    }
}
