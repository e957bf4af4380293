//! The command line: `enroll`, `recognize`, `serve`, `people`, `gallery`, `cam-demo`,
//! `rt-client`, `bench-http`, `bench-camera`.

mod bench_camera;
mod bench_http;
mod cam_demo;
mod enroll;
mod people;
mod recognize;
mod rt_client;
mod serve;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::bulk_enroll::BulkOptions;
use crate::config::{ServeSettings, Settings};

#[derive(Debug, Parser)]
#[command(
    name = "face-attendance",
    version,
    about = "Face-recognition attendance box"
)]
pub struct Cli {
    #[command(flatten)]
    pub settings: Settings,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Enroll faces: every known_faces/<id>/*.{jpg,jpeg,png}, or FILEs for one person with --id
    Enroll {
        /// The person the FILEs show (letters, digits, '_', '-', '.')
        #[arg(long, requires = "files")]
        id: Option<String>,
        /// Folder of per-person folders for bulk enrollment
        #[arg(long, env = "FACE_KNOWN_DIR", default_value = "known_faces")]
        known: PathBuf,
        /// Bulk: rebuild each person's encodings from the folder instead of adding to them
        #[arg(long, conflicts_with = "id")]
        replace: bool,
        /// Enroll faces that look like another enrolled person's (skipped otherwise)
        #[arg(long)]
        force: bool,
        /// Photos of the person named by --id
        #[arg(requires = "id")]
        files: Vec<PathBuf>,
    },
    /// Print who is in each photo, one JSON object per file
    Recognize {
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Serve the HTTP API (the original service's endpoints, WebSocket feed and webhook)
    // Boxed: the largest settings by far, and a command is parsed once.
    Serve(Box<ServeSettings>),
    /// Enrolled people: list, show, delete, rename, reject (one JSON answer, as the HTTP API's)
    People {
        #[command(subcommand)]
        command: people::PeopleCommand,
    },
    /// The whole gallery as one archive file: export, import (merge or replace)
    Gallery {
        #[command(subcommand)]
        command: people::GalleryCommand,
    },
    /// Unknown faces the camera kept for review, by cluster (read only: the service writes them)
    Unknowns {
        #[command(subcommand)]
        command: people::UnknownsCommand,
    },
    /// The camera demo: recognize replayed frames and print one line per face with the fps
    CamDemo(cam_demo::CamDemoArgs),
    /// Post images to a server's /recognize/realtime and print its WebSocket stream
    RtClient(rt_client::RtClientArgs),
    /// Measure a running server: requests/s and latency of /recognize at 1, 2, 4 clients
    BenchHttp(bench_http::BenchHttpArgs),
    /// Measure the camera loop: frames/s and per-stage ms on frames made from photos
    BenchCamera(bench_camera::BenchCameraArgs),
}

/// Exit statuses: 0 all done, 1 some input failed, 2 cannot start (settings, models, data).
pub const EXIT_INPUT: i32 = 1;
pub const EXIT_SETUP: i32 = 2;

/// Runs a parsed command line; returns the process exit status.
pub fn run(cli: Cli) -> i32 {
    init_logging();
    // The clients need no models or data; the gallery commands only the data folder.
    match &cli.command {
        Command::RtClient(args) => return rt_client::run(args),
        Command::BenchHttp(args) => return bench_http::run(args),
        Command::People { command } => return people::run_people(&cli.settings, command),
        Command::Gallery { command } => return people::run_gallery(&cli.settings, command),
        Command::Unknowns { command } => return people::run_unknowns(&cli.settings, command),
        _ => {}
    }
    let (recognizer, report) = match cli.settings.open() {
        Ok(opened) => opened,
        Err(e) => {
            eprintln!("error: {e}");
            return EXIT_SETUP;
        }
    };
    log::debug!(
        "gallery: {} files, {} encodings, {} skipped",
        report.files,
        report.encodings,
        report.skipped.len()
    );
    match cli.command {
        Command::Enroll {
            id: Some(id),
            files,
            force,
            ..
        } => enroll::one_person(&recognizer, &id, &files, force),
        Command::Enroll {
            known,
            replace,
            force,
            ..
        } => enroll::bulk(&recognizer, &known, BulkOptions { replace, force }),
        Command::Recognize { files } => recognize::files(&recognizer, &files),
        Command::Serve(serve) => serve::run(&cli.settings, &serve, recognizer),
        Command::CamDemo(args) => cam_demo::run(&args, recognizer),
        Command::BenchCamera(args) => bench_camera::run(&args, recognizer),
        Command::RtClient(_)
        | Command::BenchHttp(_)
        | Command::People { .. }
        | Command::Gallery { .. }
        | Command::Unknowns { .. } => EXIT_SETUP,
    }
}

/// Plain `LEVEL message` lines on stderr; journald adds the timestamps under systemd.
fn init_logging() {
    use std::io::Write;
    let _ = env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info"))
        .format(|buf, record| writeln!(buf, "{} {}", record.level(), record.args()))
        .try_init();
}
