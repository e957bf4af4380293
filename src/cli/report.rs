//! `face-attendance report daily --date D [--group G] [--format text|json|csv] [--data DIR]
//! [--timezone ZONE]`: the day's attendance report from the data folder's files (the gallery
//! for the roster, `events/` for the sightings), without the service, and the same as
//! `GET /reports/daily` answers (`--format json`, `--format csv`: byte for byte). Reads only:
//! safe beside a running service. A bad date or group exits 1, a bad time zone or a data
//! folder that cannot be used 2, each with one `error:` line.

use std::io::Write;
use std::path::{Path, PathBuf};

use clap::{Args, Subcommand, ValueEnum};

use super::{EXIT_INPUT, EXIT_SETUP};
use crate::events::daily::daily_report;
use crate::events::report::parse_group;
use crate::events::EventLogReader;
use crate::gallery::{CropPolicy, Gallery};
use crate::localtime::{parse_date, BoxZone};

#[derive(Debug, Subcommand)]
pub enum ReportCommand {
    /// For every enrolled person (of --group): first in, last out and sightings of a local
    /// day, and who was not seen
    Daily(DailyArgs),
}

/// How the report is printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// A table for a terminal.
    Text,
    /// GET /reports/daily's JSON.
    Json,
    /// GET /reports/daily?format=csv's CSV.
    Csv,
}

#[derive(Debug, Args)]
pub struct DailyArgs {
    /// The local day, YYYY-MM-DD [default: today in the box's time zone]
    #[arg(long)]
    date: Option<String>,
    /// Only the members of this group
    #[arg(long)]
    group: Option<String>,
    /// How to print it
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
    /// The data folder (its gallery and events/)
    #[arg(
        long = "data",
        visible_alias = "data-dir",
        env = "FACE_DATA_DIR",
        default_value = "data"
    )]
    data_dir: PathBuf,
    /// The box's time zone, an IANA name (Asia/Jakarta) [default: the system's]
    #[arg(
        long = "timezone",
        visible_alias = "box-timezone",
        env = "BOX_TIMEZONE"
    )]
    timezone: Option<String>,
}

impl ReportCommand {
    /// The data folder the report reads.
    pub fn data_dir(&self) -> &Path {
        match self {
            ReportCommand::Daily(args) => &args.data_dir,
        }
    }
}

/// Runs `report COMMAND`; returns the exit status.
pub fn run(command: &ReportCommand) -> i32 {
    match command {
        ReportCommand::Daily(args) => match daily(args) {
            Ok(()) => 0,
            Err((message, status)) => {
                eprintln!("error: {message}");
                status
            }
        },
    }
}

fn daily(args: &DailyArgs) -> Result<(), (String, i32)> {
    let input = |e: String| (e, EXIT_INPUT);
    let zone = match &args.timezone {
        Some(name) => {
            BoxZone::named(name).map_err(|e| (format!("BOX_TIMEZONE: {e}"), EXIT_SETUP))?
        }
        None => BoxZone::system(),
    };
    let date = match &args.date {
        Some(text) => {
            parse_date(text).map_err(|e| input(format!("date must be YYYY-MM-DD: {e}")))?
        }
        None => zone.date_of(crate::clock::unix_ms()),
    };
    let group = args
        .group
        .as_deref()
        .map(parse_group)
        .transpose()
        .map_err(input)?;
    if !args.data_dir.is_dir() {
        return Err((
            format!(
                "{}: no data folder there (FACE_DATA_DIR)",
                args.data_dir.display()
            ),
            EXIT_SETUP,
        ));
    }
    let (gallery, loaded) = Gallery::open_with(&args.data_dir, CropPolicy::keep())
        .map_err(|e| (e.to_string(), EXIT_SETUP))?;
    for (path, reason) in &loaded.skipped {
        log::warn!("skipped {}: {reason}", path.display());
    }
    let log = EventLogReader::at(&args.data_dir.join("events"));
    let report = daily_report(&log, &gallery, &zone, date, group.as_deref());
    let text = match args.format {
        Format::Text => report.to_text(),
        Format::Json => report.to_json() + "\n",
        Format::Csv => report.to_csv(),
    };
    std::io::stdout()
        .lock()
        .write_all(text.as_bytes())
        .map_err(|e| (format!("standard output: {e}"), EXIT_SETUP))
}
