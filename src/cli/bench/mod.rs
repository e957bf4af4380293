//! The command line of `face-attendance-bench`, the benchmarks' own binary (they stay out of
//! the service's): `http` measures a running server's `/recognize`, `camera` the camera loop,
//! `camera-sources` what each kind of camera source costs, `open-set` how the camera's match
//! tolerance trades genuine accepts against false accepts (it chose `DEFAULT_CAMERA_TOLERANCE`).
//! The figures in docs/src/performance.md come from here; run them on the board itself too.

mod camera;
mod cpu;
mod http;
mod open_set;
mod sources;

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
    /// Measure each kind of camera source (frames:, exec:, RTSP H.264, two cameras): frames/s
    /// captured and processed, CPU per frame of this process and of the decoder program
    CameraSources(sources::BenchSourcesArgs),
    /// The camera's decisions as an open set: genuine and false accepts per tolerance (0.40 to
    /// 0.70), each enrolled person in turn left out of the gallery as a stranger; the tolerance
    /// the camera's default should be
    OpenSet(open_set::BenchOpenSetArgs),
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
        BenchCommand::CameraSources(args) => {
            super::with_recognizer(&args.common.settings(), |r| sources::run(&args, r))
        }
        BenchCommand::OpenSet(args) => open_set::run(&args),
    }
}
