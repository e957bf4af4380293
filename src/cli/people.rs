//! `face-attendance people list|show|set|delete|rename|reject|export` and `gallery export|import`: the
//! gallery without a server (and without the models: only the data folder is opened; `reject`
//! with an IMAGE loads them, to find its face). Each command
//! prints one JSON object, the HTTP API's answer; a failure prints `{"ok":false,"error":…}` and
//! exits 1 (bad input: an unknown or invalid id, a bad archive) or 2 (the data folder or a file
//! cannot be used). The writes take the gallery's locks, so they are safe beside a running server
//! (which reloads the gallery within seconds: `data/.generation`).

use std::fs;
use std::io::{self, Read, Seek, Write};
use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};
use serde_json::{json, Value};

use super::{EXIT_INPUT, EXIT_SETUP};
use crate::data_format::Access;
use crate::gallery::archive::{ImportError, ImportMode, MAX_ARCHIVE_BYTES};
use crate::gallery::label::{self, Field};
use crate::gallery::{Gallery, GalleryError, LabelChange, StudentId};
use crate::privacy::PrivacyError;
use crate::recognizer::Photo;
use crate::settings::Settings;

/// What the audit log names as the author of changes made here.
const BY: &str = "cli";

#[derive(Debug, Subcommand)]
pub enum PeopleCommand {
    /// List enrolled people by id: {"ok":true,"total":N,"people":[…]}
    List(ListArgs),
    /// One person's samples (crop URLs, quality) and history
    Show {
        /// The person's id
        id: String,
    },
    /// Set or clear a person's display name and group, as PATCH /people/{id} does
    Set {
        /// The person's id
        id: String,
        /// Their display name (1-100 characters)
        #[arg(long, value_parser = name_arg, conflicts_with = "clear_name")]
        name: Option<String>,
        /// Their group: a class, a department (1-64 characters)
        #[arg(long, value_parser = group_arg, conflicts_with = "clear_group")]
        group: Option<String>,
        /// Remove their display name
        #[arg(long)]
        clear_name: bool,
        /// Remove their group
        #[arg(long)]
        clear_group: bool,
    },
    /// Remove a person (every file of theirs), or one sample with --sample
    Delete {
        /// The person's id
        id: String,
        /// Remove only this sample (its index, as `show` lists them)
        #[arg(long)]
        sample: Option<usize>,
    },
    /// Write everything the box holds about a person (samples, quality, crops, rejections,
    /// unknown faces like theirs, event log records, audit lines) as one tar archive, as GET
    /// /people/{id}/export does
    Export {
        /// The person's id
        id: String,
        /// Where to write the archive (written to FILE.tmp, then renamed; `-`: standard
        /// output); default face-attendance-ID.tar in the current folder
        #[arg(long, short)]
        output: Option<PathBuf>,
    },
    /// Give a person another id (refused if NEW is enrolled)
    Rename {
        /// The current id
        old: String,
        /// The new id
        new: String,
    },
    /// Say the largest face of IMAGE is not this person: faces closer to it than to the
    /// person are not matched to them again (--forget: forget every such rejection)
    Reject {
        /// The person's id
        id: String,
        /// A photo of someone who is not them
        #[arg(required_unless_present = "forget", conflicts_with = "forget")]
        image: Option<PathBuf>,
        /// Forget the person's rejections instead
        #[arg(long)]
        forget: bool,
    },
}

/// `--name`: a display name, checked as the API checks it.
pub fn name_arg(raw: &str) -> Result<String, String> {
    label::check(Field::Name, raw).map_err(|e| e.reason)
}

/// `--group`: a group, checked as the API checks it.
pub fn group_arg(raw: &str) -> Result<String, String> {
    label::check(Field::Group, raw).map_err(|e| e.reason)
}

#[derive(Debug, Args)]
pub struct ListArgs {
    /// Only ids starting with this
    #[arg(long, default_value = "")]
    q: String,
    /// Only people of this group
    #[arg(long, value_parser = group_arg)]
    group: Option<String>,
    /// At most this many people
    #[arg(long, default_value_t = 100)]
    limit: usize,
    /// Skip this many people first
    #[arg(long, default_value_t = 0)]
    offset: usize,
}

#[derive(Debug, Subcommand)]
pub enum GalleryCommand {
    /// Write the gallery to FILE as one tar archive (`-`: standard output)
    Export {
        /// Where to write the archive; written to FILE.tmp, then renamed
        file: PathBuf,
    },
    /// Add a gallery archive to this one (or replace it with --replace); checked whole first:
    /// a bad archive changes nothing
    Import {
        /// The archive (`-`: standard input)
        file: PathBuf,
        /// Make the gallery exactly the archive: people it does not hold are removed
        #[arg(long)]
        replace: bool,
    },
}

/// A failure: its message and exit status.
struct Failure(String, i32);

impl Failure {
    fn input(message: impl Into<String>) -> Failure {
        Failure(message.into(), EXIT_INPUT)
    }

    fn setup(message: impl Into<String>) -> Failure {
        Failure(message.into(), EXIT_SETUP)
    }
}

impl From<GalleryError> for Failure {
    fn from(e: GalleryError) -> Failure {
        match e {
            // The disk's trouble, not the command's.
            GalleryError::Io { .. } => Failure::setup(e.to_string()),
            _ => Failure::input(e.to_string()),
        }
    }
}

/// Prints the answer (`null`: none, stdout holds an archive) or the failure, and returns the
/// exit status.
fn finish(outcome: Result<Value, Failure>) -> i32 {
    match outcome {
        Ok(Value::Null) => 0,
        Ok(answer) => {
            println!("{answer}");
            0
        }
        Err(Failure(error, status)) => {
            println!("{}", json!({"ok": false, "error": error}));
            status
        }
    }
}

fn open(settings: &Settings) -> Result<Gallery, Failure> {
    let (gallery, report) = settings
        .open_gallery()
        .map_err(|e| Failure::setup(e.to_string()))?;
    for (path, reason) in &report.skipped {
        log::warn!("skipped {}: {reason}", path.display());
    }
    Ok(gallery)
}

fn parse_id(raw: &str) -> Result<StudentId, Failure> {
    StudentId::parse(raw).map_err(|e| Failure::input(format!("invalid student_id: {e}")))
}

impl PeopleCommand {
    /// Whether the command writes the data folder ([`crate::data_format`]).
    pub fn access(&self) -> Access {
        match self {
            PeopleCommand::List(_) | PeopleCommand::Show { .. } | PeopleCommand::Export { .. } => {
                Access::Read
            }
            PeopleCommand::Set { .. }
            | PeopleCommand::Delete { .. }
            | PeopleCommand::Rename { .. }
            | PeopleCommand::Reject { .. } => Access::Write,
        }
    }
}

impl GalleryCommand {
    /// Whether the command writes the data folder ([`crate::data_format`]).
    pub fn access(&self) -> Access {
        match self {
            GalleryCommand::Export { .. } => Access::Read,
            GalleryCommand::Import { .. } => Access::Write,
        }
    }
}

pub fn run_people(settings: &Settings, command: &PeopleCommand) -> i32 {
    if let PeopleCommand::Reject {
        id,
        image: Some(image),
        ..
    } = command
    {
        return finish(reject(settings, id, image));
    }
    finish(open(settings).and_then(|gallery| people(&gallery, command, settings.tolerance)))
}

/// `people reject ID IMAGE`: the models are needed to find the face, so the whole recognizer
/// is opened (as `recognize` does).
fn reject(settings: &Settings, id: &str, image: &Path) -> Result<Value, Failure> {
    let id = parse_id(id)?;
    let bytes = fs::read(image).map_err(|e| Failure::input(format!("{}: {e}", image.display())))?;
    let (recognizer, _) =
        crate::service::open_recognizer(settings).map_err(|e| Failure::setup(e.to_string()))?;
    match recognizer.reject(&id, Photo::Bytes(&bytes), BY) {
        Ok(r) => Ok(json!({
            "ok": true,
            "student_id": id.as_str(),
            "rejected": r.rejected,
            "distance": r.distance,
        })),
        Err(crate::Error::Gallery(GalleryError::NotEnrolled(_))) => {
            Err(Failure::input(format!("not found: person {id}")))
        }
        Err(crate::Error::Gallery(e)) => Err(e.into()),
        Err(e @ (crate::Error::Model(_) | crate::Error::Config(_))) => {
            Err(Failure::setup(e.to_string()))
        }
        Err(e) => Err(Failure::input(format!("{}: {e}", image.display()))),
    }
}

#[derive(Debug, Subcommand)]
pub enum UnknownsCommand {
    /// The clusters of unknown faces, as GET /unknowns lists them: {"ok":true,"clusters":[…]}
    List,
}

/// `unknowns list`: reads `data/unknowns` without writing anything.
pub fn run_unknowns(settings: &Settings, command: &UnknownsCommand) -> i32 {
    finish(match command {
        UnknownsCommand::List => {
            let unknowns = settings.unknown_settings();
            crate::unknowns::list(&settings.data_dir, &unknowns)
                .map(|clusters| crate::unknowns::list_json(&unknowns, &clusters))
                .map_err(|e| Failure::setup(e.to_string()))
        }
    })
}

pub fn run_gallery(settings: &Settings, command: &GalleryCommand) -> i32 {
    finish(open(settings).and_then(|gallery| match command {
        GalleryCommand::Export { file } => export(&gallery, file),
        GalleryCommand::Import { file, replace } => {
            let mode = if *replace {
                ImportMode::Replace
            } else {
                ImportMode::Merge
            };
            import(&gallery, file, mode)
        }
    }))
}

fn people(gallery: &Gallery, command: &PeopleCommand, tolerance: f64) -> Result<Value, Failure> {
    match command {
        PeopleCommand::List(args) => {
            let (total, page) =
                gallery.people_page(&args.q, args.group.as_deref(), args.offset, args.limit);
            Ok(json!({"ok": true, "total": total, "people": page}))
        }
        PeopleCommand::Show { id } => {
            let id = parse_id(id)?;
            let detail = gallery
                .person_detail(&id)
                .ok_or_else(|| Failure::input(format!("not found: person {id}")))?;
            Ok(detail.to_json(&gallery.history(&id)))
        }
        PeopleCommand::Set {
            id,
            name,
            group,
            clear_name,
            clear_group,
        } => {
            let id = parse_id(id)?;
            let change = LabelChange {
                name: name.clone().map(Some).or(clear_name.then_some(None)),
                group: group.clone().map(Some).or(clear_group.then_some(None)),
            };
            if change.is_empty() {
                return Err(Failure::input(
                    "nothing to change: give --name, --group, --clear-name or --clear-group",
                ));
            }
            let label = gallery.set_label(&id, &change, BY)?;
            Ok(json!({
                "ok": true,
                "student_id": id.as_str(),
                "name": label.name,
                "group": label.group,
            }))
        }
        PeopleCommand::Delete { id, sample: None } => {
            let id = parse_id(id)?;
            let samples = gallery
                .remove(&id, BY)?
                .ok_or_else(|| Failure::input(format!("not found: person {id}")))?;
            Ok(json!({"ok": true, "deleted": id.as_str(), "samples": samples}))
        }
        PeopleCommand::Delete {
            id,
            sample: Some(index),
        } => {
            let id = parse_id(id)?;
            let left = gallery.remove_sample(&id, *index, BY)?;
            Ok(json!({"ok": true, "student_id": id.as_str(), "samples": left}))
        }
        PeopleCommand::Reject { id, .. } => {
            // With an IMAGE, `run_people` went to `reject`: here it is --forget.
            let id = parse_id(id)?;
            let forgotten = gallery.forget_rejections(&id, BY).map_err(|e| match e {
                GalleryError::NotEnrolled(_) => Failure::input(format!("not found: person {id}")),
                e => e.into(),
            })?;
            Ok(
                json!({"ok": true, "student_id": id.as_str(), "rejected": 0, "forgotten": forgotten}),
            )
        }
        PeopleCommand::Export { id, output } => {
            let id = StudentId::parse_new(id)
                .map_err(|e| Failure::input(format!("invalid student_id: {e}")))?;
            let file = output
                .clone()
                .unwrap_or_else(|| PathBuf::from(format!("face-attendance-{id}.tar")));
            let exported = write_archive(&file, |out| {
                crate::privacy::export_person(gallery, &id, tolerance, out).map_err(|e| match e {
                    PrivacyError::NotFound(_) => Failure::input(e.to_string()),
                    PrivacyError::Gallery(g) => g.into(),
                    e => Failure::setup(e.to_string()),
                })
            })?;
            Ok(to_answer(&file, "exported", exported))
        }
        PeopleCommand::Rename { old, new } => {
            let to = StudentId::parse_new(new)
                .map_err(|e| Failure::input(format!("invalid student_id: {e}")))?;
            let (from, to) = (parse_id(old)?, to);
            let samples = gallery.rename(&from, &to, BY)?;
            Ok(
                json!({"ok": true, "student_id": to.as_str(), "from": from.as_str(), "samples": samples}),
            )
        }
    }
}

fn is_stdio(file: &Path) -> bool {
    file.as_os_str() == "-"
}

/// Writes the archive to `file` through `file.tmp` (a cut export never leaves a half archive
/// under the final name), or to standard output, where the summary then goes to stderr.
fn export(gallery: &Gallery, file: &Path) -> Result<Value, Failure> {
    let summary = write_archive(file, |out| Ok(gallery.export(out)?))?;
    Ok(to_answer(file, "exported", summary))
}

/// The answer of an export to `file`: `{"ok":true,"file":…,"<key>":summary}`, or nothing when
/// standard output held the archive (the summary then went to stderr).
fn to_answer<T: serde::Serialize>(file: &Path, key: &str, summary: Option<T>) -> Value {
    match summary {
        Some(summary) => json!({"ok": true, "file": file.display().to_string(), key: summary}),
        None => Value::Null,
    }
}

/// Runs `write` into `file` through `file.tmp` (renamed once complete and synced), or into
/// standard output (`-`), where its summary then goes to stderr and `None` is returned.
fn write_archive<T: serde::Serialize>(
    file: &Path,
    write: impl FnOnce(&mut dyn Write) -> Result<T, Failure>,
) -> Result<Option<T>, Failure> {
    if is_stdio(file) {
        let stdout = io::stdout();
        let mut out = io::BufWriter::new(stdout.lock());
        let summary = write(&mut out)?;
        out.flush()
            .map_err(|e| Failure::setup(format!("standard output: {e}")))?;
        drop(out);
        eprintln!("{}", json!({"ok": true, "exported": summary}));
        // Nothing more on stdout: it holds the archive.
        return Ok(None);
    }
    let mut temp = file.as_os_str().to_owned();
    temp.push(".tmp");
    let temp = PathBuf::from(temp);
    let failed = |e: io::Error| Failure::setup(format!("{}: {e}", temp.display()));
    let result = (|| {
        let mut out = io::BufWriter::new(fs::File::create(&temp).map_err(failed)?);
        let summary = write(&mut out)?;
        let written = out.into_inner().map_err(|e| failed(e.into_error()))?;
        written.sync_all().map_err(failed)?;
        fs::rename(&temp, file).map_err(|e| Failure::setup(format!("{}: {e}", file.display())))?;
        Ok(summary)
    })();
    match result {
        Ok(summary) => Ok(Some(summary)),
        Err(e) => {
            let _ = fs::remove_file(&temp);
            Err(e)
        }
    }
}

/// The archive as a file to read from: `file` itself, or standard input copied to an unlinked
/// file in the data folder (an import reads the archive twice, never holding it in memory).
/// One larger than [`MAX_ARCHIVE_BYTES`] is refused before it is read.
fn open_archive(gallery: &Gallery, file: &Path) -> Result<fs::File, Failure> {
    let too_large = || {
        Failure::input(format!(
            "{}: larger than {} MiB, not a gallery archive",
            file.display(),
            MAX_ARCHIVE_BYTES >> 20
        ))
    };
    let failed = |e: io::Error| Failure::input(format!("{}: {e}", file.display()));
    if !is_stdio(file) {
        let opened = fs::File::open(file).map_err(failed)?;
        if opened.metadata().is_ok_and(|m| m.len() > MAX_ARCHIVE_BYTES) {
            return Err(too_large());
        }
        return Ok(opened);
    }
    let mut spool = gallery
        .import_spool()
        .map_err(|e| Failure::setup(format!("a file for the archive in the data folder: {e}")))?;
    let copied = io::copy(
        &mut io::stdin().lock().take(MAX_ARCHIVE_BYTES + 1),
        &mut spool,
    )
    .map_err(failed)?;
    if copied > MAX_ARCHIVE_BYTES {
        return Err(too_large());
    }
    spool.seek(io::SeekFrom::Start(0)).map_err(failed)?;
    Ok(spool)
}

fn import(gallery: &Gallery, file: &Path, mode: ImportMode) -> Result<Value, Failure> {
    let mut archive = open_archive(gallery, file)?;
    match gallery.import_from(&mut archive, mode, BY) {
        Ok(summary) => Ok(json!({"ok": true, "imported": summary})),
        Err(ImportError::Archive(e)) => Err(Failure::input(format!("{}: {e}", file.display()))),
        Err(ImportError::Gallery(e)) => Err(e.into()),
    }
}
