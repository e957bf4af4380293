//! The command line (clap lives only here): `enroll`, `recognize`, `serve`, `people`,
//! `gallery`, `unknowns`, `cam-demo`, `rt-client`, `box`; and [`bench`], the benchmarks' binary
//! (`face-attendance-bench http|camera`). Each command takes the settings it uses ([`args`],
//! [`serve_args`]), turns them into [`crate::settings`] and calls the library
//! (`serve`: [`crate::service`]).

mod args;
pub mod bench;
mod box_cmd;
mod cam_demo;
mod cameras;
mod enroll;
mod people;
mod recognize;
mod report;
mod rt_client;
mod serve;
mod serve_args;
mod server_args;
pub mod settings_reference;

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use clap::{Parser, Subcommand};

use crate::bulk_enroll::BulkOptions;
use crate::data_format::Access;
use crate::recognizer::Recognizer;
use crate::settings::Settings;
use args::{Apply, EnrollArgs, GalleryArgs, RecognizerArgs, UnknownArgs};
use serve_args::ServeCommand;

/// The command line of `face-attendance`.
#[derive(Debug, Parser)]
#[command(
    name = "face-attendance",
    version,
    about = "Face-recognition attendance box"
)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The commands, each with the settings it uses.
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
        /// With --id: the person's display name (1-100 characters; bulk enrollment reads
        /// known_faces/<id>/person.json instead)
        #[arg(long, requires = "id", value_parser = people::name_arg)]
        name: Option<String>,
        /// With --id: the person's group, a class or a department (1-64 characters)
        #[arg(long, requires = "id", value_parser = people::group_arg)]
        group: Option<String>,
        /// Photos of the person named by --id
        #[arg(requires = "id")]
        files: Vec<PathBuf>,
        /// The gallery, the models and how photos are recognized.
        #[command(flatten)]
        recognizer: RecognizerArgs,
        /// What enrollment asks of a face.
        #[command(flatten)]
        enroll: EnrollArgs,
    },
    /// Print who is in each photo, one JSON object per file
    Recognize {
        /// Photos (JPEG or PNG), one answer each
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// The gallery, the models and how photos are recognized.
        #[command(flatten)]
        recognizer: RecognizerArgs,
    },
    /// Serve the HTTP API (the original service's endpoints, WebSocket feed and webhook)
    // Boxed: the largest settings by far, and a command is parsed once.
    Serve(Box<ServeCommand>),
    /// Enrolled people: list, show, delete, rename, reject, export (one JSON answer, as the HTTP API's)
    People {
        /// What to do with them.
        #[command(subcommand)]
        command: people::PeopleCommand,
        /// The gallery, the models and how photos are recognized.
        #[command(flatten)]
        recognizer: RecognizerArgs,
    },
    /// The whole gallery as one archive file: export, import (merge or replace)
    Gallery {
        /// What to do with them.
        #[command(subcommand)]
        command: people::GalleryCommand,
        /// The data folder and its crops.
        #[command(flatten)]
        gallery: GalleryArgs,
    },
    /// Unknown faces the camera kept for review, by cluster (read only: the service writes them)
    Unknowns {
        /// What to do with them.
        #[command(subcommand)]
        command: people::UnknownsCommand,
        /// The data folder and its crops.
        #[command(flatten)]
        gallery: GalleryArgs,
        /// The unknown faces kept for review.
        #[command(flatten)]
        unknowns: UnknownArgs,
    },
    /// The camera demo: recognize replayed frames and print one line per face with the fps
    CamDemo(cam_demo::CamDemoArgs),
    /// Post images to a server's /recognize/realtime and print its WebSocket stream
    RtClient(rt_client::RtClientArgs),
    /// This box's key for gallery sync (`box key`) and the boxes trusted to change the gallery
    /// (`box trust add|remove|list`)
    #[command(name = "box")]
    Boxes {
        /// What to do.
        #[command(subcommand)]
        command: box_cmd::BoxCommand,
    },
    /// The cameras this machine has (V4L2 devices with their formats, libcamera cameras) and
    /// the first frame of each configured camera (CAMERA_DEVICE, CAMERA_FRAMES), with the
    /// setting to use for each
    Cameras(cameras::CamerasArgs),
    /// Attendance reports from the data folder's files, without the service (`report daily`:
    /// the day's first in, last out and sightings of every enrolled person, as GET
    /// /reports/daily answers)
    Report {
        /// Which report.
        #[command(subcommand)]
        command: report::ReportCommand,
    },
    /// Print the book's settings page (docs/src/operations/settings.md), made from these
    /// commands' own definitions
    #[command(name = "settings-reference", hide = true)]
    SettingsReference,
}

impl Cli {
    /// Parses the process's arguments (exits with clap's message on a bad command line), after
    /// [`settings_after_command`].
    pub fn from_env() -> Cli {
        Cli::parse_from(settings_after_command(std::env::args_os().collect()))
    }
}

/// Until issue 23 the shared settings (`--data`, `--models`, `--tolerance`, ...) were global
/// flags, also taken before the command (`face-attendance --data /srv/box serve`); now each
/// command takes the ones it uses, after its name. So that such command lines (a site's own
/// unit file or script) keep working, `--flag value` / `--flag=value` pairs before the first
/// word that is not a flag are moved after it. Every one of those old settings took a value;
/// anything else before the command (`--help`, `-V`, a lone flag) is left where it is for clap
/// to answer as before.
pub fn settings_after_command(mut args: Vec<OsString>) -> Vec<OsString> {
    let is_flag = |a: &OsString| {
        a.to_str()
            .is_some_and(|s| s.starts_with("--") && s.len() > 2)
    };
    let mut i = 1;
    while i < args.len() && is_flag(&args[i]) {
        let with_value = args[i].to_str().is_some_and(|s| s.contains('='));
        let step = if with_value { 1 } else { 2 };
        let name = args[i].to_str().unwrap_or_default();
        if matches!(name, "--help" | "--version") || i + step > args.len() {
            return args;
        }
        if !with_value && is_flag(&args[i + 1]) {
            return args;
        }
        i += step;
    }
    if i == 1 || i >= args.len() {
        return args;
    }
    let leading: Vec<OsString> = args.drain(1..i).collect();
    let at = 2.min(args.len());
    args.splice(at..at, leading);
    args
}

/// Exit statuses: 0 all done, 1 some input failed, 2 cannot start (settings, models, data).
pub const EXIT_INPUT: i32 = 1;
/// See [`EXIT_INPUT`].
pub const EXIT_SETUP: i32 = 2;

/// Runs a parsed command line; returns the process exit status.
pub fn run(cli: Cli) -> i32 {
    init_logging();
    // The clients need no models or data; the gallery commands only the data folder.
    // The commands that use the data folder check its format marker first (see
    // crate::data_format: which write it, which only read it).
    match cli.command {
        Command::RtClient(args) => rt_client::run(&args),
        // `box key` checks it once the box id is found good (a bad one writes nothing).
        Command::Boxes { command } => box_cmd::run(&command),
        Command::Cameras(args) => cameras::run(&args),
        Command::Report { command } => {
            with_data_format(command.data_dir(), Access::Read, || report::run(&command))
        }
        Command::SettingsReference => {
            print!("{}", settings_reference::markdown());
            0
        }
        Command::People {
            command,
            recognizer,
        } => {
            let settings = recognizer.settings();
            with_data_format(&settings.data_dir, command.access(), || {
                people::run_people(&settings, &command)
            })
        }
        Command::Gallery { command, gallery } => {
            let settings = gallery.settings();
            with_data_format(&settings.data_dir, command.access(), || {
                people::run_gallery(&settings, &command)
            })
        }
        Command::Unknowns {
            command,
            gallery,
            unknowns,
        } => {
            let settings = (&gallery, &unknowns).settings();
            with_data_format(&settings.data_dir, Access::Read, || {
                people::run_unknowns(&settings, &command)
            })
        }
        Command::Enroll {
            id,
            known,
            replace,
            force,
            name,
            group,
            files,
            recognizer,
            enroll,
        } => {
            let settings = (&recognizer, &enroll).settings();
            with_data_format(&settings.data_dir, Access::Write, || {
                with_recognizer(&settings, |recognizer| match id {
                    Some(id) => {
                        let label = crate::gallery::LabelChange::setting(crate::gallery::Label {
                            name,
                            group,
                        });
                        enroll::one_person(&recognizer, &id, &files, force, label)
                    }
                    None => enroll::bulk(&recognizer, &known, BulkOptions { replace, force }),
                })
            })
        }
        Command::Recognize { files, recognizer } => {
            let settings = recognizer.settings();
            with_data_format(&settings.data_dir, Access::Read, || {
                with_recognizer(&settings, |r| recognize::files(&r, &files))
            })
        }
        Command::Serve(serve) => {
            let settings = serve.settings();
            let serve_settings = (&serve.serve).into();
            with_data_format(&settings.data_dir, Access::Write, || {
                with_recognizer(&settings, |r| serve::run(&settings, &serve_settings, r))
            })
        }
        Command::CamDemo(args) => {
            let settings = args.common.settings();
            with_data_format(&settings.data_dir, Access::Read, || {
                with_recognizer(&settings, |r| cam_demo::run(&args, r))
            })
        }
    }
}

/// Runs `command` once the data folder `dir`'s format marker lets it ([`crate::data_format`]:
/// with [`Access::Write`], an absent marker is written first); a newer or unreadable marker is
/// one `error:` line naming the file and [`EXIT_SETUP`], nothing in the folder touched.
pub(crate) fn with_data_format(dir: &Path, access: Access, command: impl FnOnce() -> i32) -> i32 {
    match crate::data_format::check(dir, access) {
        Ok(_) => command(),
        Err(e) => {
            eprintln!("error: {e}");
            EXIT_SETUP
        }
    }
}

/// Opens the recognizer the settings describe and runs `command` with it; a recognizer that
/// cannot be opened (settings, models, data) is one `error:` line and [`EXIT_SETUP`].
pub(crate) fn with_recognizer(settings: &Settings, command: impl FnOnce(Recognizer) -> i32) -> i32 {
    let (recognizer, report) = match crate::service::open_recognizer(settings) {
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
    command(recognizer)
}

/// Plain `LEVEL message` lines on stderr; journald adds the timestamps under systemd.
pub(crate) fn init_logging() {
    use std::io::Write;
    let _ = env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info"))
        .format(|buf, record| writeln!(buf, "{} {}", record.level(), record.args()))
        .try_init();
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(line: &str) -> Vec<OsString> {
        line.split(' ').map(OsString::from).collect()
    }

    fn moved(line: &str) -> String {
        let out = settings_after_command(args(line));
        out.iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect::<Vec<_>>()
            .join(" ")
    }

    #[test]
    fn settings_given_before_the_command_go_after_it() {
        assert_eq!(
            moved("fa --data /srv/box --tolerance=0.5 serve --bind 0.0.0.0:8000"),
            "fa serve --data /srv/box --tolerance=0.5 --bind 0.0.0.0:8000"
        );
        assert_eq!(moved("fa serve --data d"), "fa serve --data d");
        // Left for clap to answer as before: help, version, a missing value, no command.
        for line in [
            "fa --help serve",
            "fa --version",
            "fa --data",
            "fa --data d",
            "fa -h",
        ] {
            assert_eq!(moved(line), line);
        }
        assert_eq!(
            moved("fa --force --data d people list"),
            "fa --force --data d people list"
        );
        // The old command lines parse to the same settings as the new ones.
        let old = Cli::try_parse_from(settings_after_command(args(
            "fa --data /srv/box --tolerance 0.5 recognize p.jpg",
        )))
        .unwrap();
        let new = Cli::try_parse_from(args("fa recognize --data /srv/box --tolerance 0.5 p.jpg"))
            .unwrap();
        assert_eq!(format!("{old:?}"), format!("{new:?}"));
        // A setting the command does not take is refused, not ignored.
        assert!(Cli::try_parse_from(settings_after_command(args(
            "fa --face-crops-max-age-days 3 rt-client p.jpg"
        )))
        .is_err());
    }
}
