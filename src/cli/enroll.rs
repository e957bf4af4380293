//! `face-attendance enroll`: bulk from `known_faces/`, or `--id ID FILE...` for one person.

use std::path::{Path, PathBuf};

use indicatif::{ProgressBar, ProgressStyle};
use serde_json::json;

use crate::bulk_enroll::{self, BulkOptions};
use crate::gallery::LabelChange;
use crate::recognizer::{EnrollRequest, Photo, Recognizer};

/// Prints the `/enroll` answer for each file; the name and group change with the first face
/// saved (`label`).
pub fn one_person(
    recognizer: &Recognizer,
    id: &str,
    files: &[PathBuf],
    force: bool,
    label: LabelChange,
) -> i32 {
    let request = EnrollRequest {
        force,
        label,
        ..EnrollRequest::default()
    };
    let mut status = 0;
    for path in files {
        let outcome = std::fs::read(path)
            .map_err(|e| e.to_string())
            .and_then(|bytes| {
                recognizer
                    .enroll(id, Photo::Bytes(&bytes), &request)
                    .map_err(|e| e.to_string())
            });
        let answer = match outcome {
            Ok(msg) => json!({"ok": true, "saved": msg.saved, "msg": msg}),
            Err(error) => {
                status = super::EXIT_INPUT;
                json!({"ok": false, "error": format!("{}: {error}", path.display())})
            }
        };
        println!("{answer}");
    }
    status
}

/// Enrolls every person folder and prints one summary line per person.
pub fn bulk(recognizer: &Recognizer, known: &Path, options: BulkOptions) -> i32 {
    let (people, labels, skipped_folders) = match bulk_enroll::scan_labelled(known) {
        Ok(found) => found,
        Err(e) => {
            eprintln!(
                "error: cannot read {}: {e} (put one folder per person there, named by id)",
                known.display()
            );
            return super::EXIT_SETUP;
        }
    };
    for folder in &skipped_folders {
        eprintln!(
            "skipped folder {}: {}",
            folder.path.display(),
            folder.reason
        );
    }
    let total: usize = people.iter().map(|(_, photos)| photos.len()).sum();
    let bar = ProgressBar::new(total as u64);
    bar.set_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} photos {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let summaries =
        bulk_enroll::enroll_all_labelled(recognizer, &people, &labels, options, &|path: &Path| {
            bar.set_message(path.display().to_string());
            bar.inc(1);
        });
    bar.finish_and_clear();

    let mut status = 0;
    for s in &summaries {
        println!(
            "{}: {} photos, {} faces saved, {} skipped",
            s.id,
            s.photos,
            s.saved,
            s.skipped.len()
        );
        for (path, reason) in &s.skipped {
            println!("  skipped {}: {reason}", path.display());
        }
        if let Some(e) = &s.error {
            status = super::EXIT_INPUT;
            println!("  error: {e}");
        }
    }
    let saved: usize = summaries.iter().map(|s| s.saved).sum();
    let (encodings, labels) = recognizer.gallery().counts();
    println!(
        "enrolled {saved} faces of {} people; the gallery now holds {encodings} encodings of {labels} people",
        summaries.iter().filter(|s| s.saved > 0).count()
    );
    status
}
