//! Bulk enrollment from `known_faces/<id>/*.{jpg,jpeg,png}`, the original `bulk_enroll`.
//! Photos are decoded and encoded in parallel; each person's file is written once. A
//! `known_faces/<id>/person.json` (`{"name": "Alip Nugraha", "group": "7A"}`, both optional)
//! sets the person's name and group ([`crate::gallery::label`]'s rules); a folder whose
//! `person.json` cannot be read, is not such an object or breaks the rules is skipped whole,
//! with the reason.

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};

use rayon::prelude::*;

use crate::error::Error;
use crate::gallery::{GalleryError, Label, LabelChange, NewSample, StudentId};
use crate::recognizer::{Photo, Recognizer};

/// What happened to one person's folder.
#[derive(Debug, Clone, PartialEq)]
pub struct PersonSummary {
    /// The person's id (the folder's name).
    pub id: String,
    /// Photos found in the folder.
    pub photos: usize,
    /// Faces enrolled from them.
    pub saved: usize,
    /// Photos that gave nothing, with the reason.
    pub skipped: Vec<(PathBuf, String)>,
    /// Set when the person's encodings could not be written at all.
    pub error: Option<String>,
}

/// A folder of `known_faces/` that is not a valid person id.
#[derive(Debug, Clone, PartialEq)]
pub struct SkippedFolder {
    /// The photo (or folder) skipped.
    pub path: PathBuf,
    /// Why: the refusal, as a sentence.
    pub reason: String,
}

/// Whether a file name is a photo bulk enroll takes (jpg, jpeg, png; any case).
pub fn is_photo(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| matches!(e.to_ascii_lowercase().as_str(), "jpg" | "jpeg" | "png"))
}

/// Each person's id with the paths of their photos.
pub type People = Vec<(StudentId, Vec<PathBuf>)>;

/// The name and group of each person whose folder has a `person.json` with either.
pub type Labels = HashMap<StudentId, Label>;

/// The name of the file in a person's folder that gives their name and group.
pub const PERSON_FILE: &str = "person.json";

/// Most bytes of a `person.json`.
const PERSON_FILE_MAX: u64 = 4096;

/// The name and group of `folder/person.json` (none when there is no such file), or why the
/// folder is skipped.
pub fn read_person_file(folder: &Path) -> Result<Label, String> {
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct PersonFile {
        #[serde(default)]
        name: Option<String>,
        #[serde(default)]
        group: Option<String>,
    }
    let path = folder.join(PERSON_FILE);
    match fs::metadata(&path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Label::default()),
        Err(e) => return Err(format!("{PERSON_FILE}: {e}")),
        Ok(m) if !m.is_file() => return Err(format!("{PERSON_FILE} is not a file")),
        Ok(m) if m.len() > PERSON_FILE_MAX => {
            return Err(format!("{PERSON_FILE} is over {PERSON_FILE_MAX} bytes"))
        }
        Ok(_) => {}
    }
    let bytes = fs::read(&path).map_err(|e| format!("{PERSON_FILE}: {e}"))?;
    let file: PersonFile = serde_json::from_slice(&bytes).map_err(|e| {
        format!("{PERSON_FILE}: {e} (expected {{\"name\": \"...\", \"group\": \"...\"}})")
    })?;
    Label::checked(file.name.as_deref(), file.group.as_deref())
        .map_err(|e| format!("{PERSON_FILE}: {e}"))
}

/// The people folders and their photos, sorted, ready to enroll (a folder whose `person.json`
/// is bad is skipped: [`scan_labelled`]).
pub fn scan(known_dir: &Path) -> Result<(People, Vec<SkippedFolder>), Error> {
    scan_labelled(known_dir).map(|(people, _, skipped)| (people, skipped))
}

/// [`scan`], with the names and groups of the folders' `person.json` files.
pub fn scan_labelled(known_dir: &Path) -> Result<(People, Labels, Vec<SkippedFolder>), Error> {
    let io = |e| {
        Error::Gallery(GalleryError::Io {
            path: known_dir.to_path_buf(),
            source: e,
        })
    };
    let mut folders: Vec<PathBuf> = fs::read_dir(known_dir)
        .map_err(io)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_dir())
        .collect();
    folders.sort();
    let mut people = Vec::new();
    let mut labels = Labels::new();
    let mut skipped = Vec::new();
    for folder in folders {
        let name = folder
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let id = match StudentId::parse_new(&name) {
            Ok(id) => id,
            Err(reason) => {
                skipped.push(SkippedFolder {
                    path: folder,
                    reason,
                });
                continue;
            }
        };
        let mut photos: Vec<PathBuf> = match fs::read_dir(&folder) {
            Ok(entries) => entries
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.is_file() && is_photo(p))
                .collect(),
            Err(e) => {
                skipped.push(SkippedFolder {
                    path: folder,
                    reason: e.to_string(),
                });
                continue;
            }
        };
        photos.sort();
        let label = match read_person_file(&folder) {
            Ok(label) => label,
            Err(reason) => {
                skipped.push(SkippedFolder {
                    path: folder,
                    reason,
                });
                continue;
            }
        };
        if !label.is_empty() {
            labels.insert(id.clone(), label);
        }
        people.push((id, photos));
    }
    Ok((people, labels, skipped))
}

enum PhotoResult {
    Face(Box<NewSample>),
    Skipped(String),
}

/// How bulk enrollment writes: `replace` rebuilds each person's encodings from their folder
/// (otherwise photos are added, the original's way); `force` skips the duplicate check.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BulkOptions {
    /// Replace each person's samples rather than add to them.
    pub replace: bool,
    /// Enroll faces that look like someone else's (`force`, as `/enroll` takes it).
    pub force: bool,
}

/// Enrolls every photo of every person found by [`scan`], with the checks of one enrollment:
/// a photo whose face is another person's (within the duplicate distance) is skipped and
/// reported, unless `options.force`. `progress` is called once per photo done.
pub fn enroll_all(
    recognizer: &Recognizer,
    people: &[(StudentId, Vec<PathBuf>)],
    options: BulkOptions,
    progress: &(dyn Fn(&Path) + Sync),
) -> Vec<PersonSummary> {
    enroll_all_labelled(recognizer, people, &Labels::new(), options, progress)
}

/// [`enroll_all`], setting each person's name and group from `labels` ([`scan_labelled`]):
/// the values given are set (with their photos, or alone for a person enrolled already whose
/// photos added nothing), the others kept.
pub fn enroll_all_labelled(
    recognizer: &Recognizer,
    people: &[(StudentId, Vec<PathBuf>)],
    labels: &Labels,
    options: BulkOptions,
    progress: &(dyn Fn(&Path) + Sync),
) -> Vec<PersonSummary> {
    let jobs: Vec<(usize, &PathBuf)> = people
        .iter()
        .enumerate()
        .flat_map(|(i, (_, photos))| photos.iter().map(move |p| (i, p)))
        .collect();
    // On the engine's pool: one photo per core, decoding included.
    let mut results: Vec<(usize, &PathBuf, PhotoResult)> = recognizer.engine().install(|| {
        jobs.par_iter()
            .map(|(i, path)| {
                let result = enroll_photo(recognizer, path);
                progress(path);
                (*i, *path, result)
            })
            .collect()
    });
    let limit = recognizer
        .enroll_policy()
        .duplicate_limit(recognizer.tolerance(), options.force);
    let gallery = &recognizer.gallery();

    let mut report = Vec::with_capacity(people.len());
    for (i, (id, photos)) in people.iter().enumerate() {
        let mut summary = PersonSummary {
            id: id.to_string(),
            photos: photos.len(),
            saved: 0,
            skipped: Vec::new(),
            error: None,
        };
        let mut samples = Vec::new();
        for (_, path, result) in results.iter_mut().filter(|(j, _, _)| *j == i) {
            match std::mem::replace(result, PhotoResult::Skipped(String::new())) {
                PhotoResult::Face(sample) => {
                    // Checked against what is enrolled now, people written above included.
                    let twin = limit
                        .and_then(|l| Some((gallery.nearest_other(sample.encoding(), id)?, l)))
                        .filter(|((_, d), l)| d <= l);
                    match twin {
                        Some(((other, d), _)) => summary.skipped.push((
                            (*path).clone(),
                            format!("already enrolled as {other} (distance {d:.3}); --force to enroll it anyway"),
                        )),
                        None => samples.push(*sample),
                    }
                }
                PhotoResult::Skipped(reason) => summary.skipped.push(((*path).clone(), reason)),
            }
        }
        // The file's name and group are set; a value it does not give is kept.
        let change = LabelChange::setting(labels.get(id).cloned().unwrap_or_default());
        if samples.is_empty() && !options.replace {
            if !change.is_empty() && gallery.person(id).is_some() {
                if let Err(e) = gallery.set_label(id, &change, "cli") {
                    summary.error = Some(e.to_string());
                }
            }
            report.push(summary);
            continue;
        }
        let count = samples.len();
        let written = match options.replace {
            true => gallery.replace_labelled(id, samples, &change, "cli"),
            false => gallery.enroll_labelled(id, samples, limit, &change, "cli"),
        };
        match written {
            Ok(_) => summary.saved = count,
            Err(e) => summary.error = Some(e.to_string()),
        }
        report.push(summary);
    }
    report
}

fn enroll_photo(recognizer: &Recognizer, path: &Path) -> PhotoResult {
    let bytes = match fs::read(path) {
        Ok(b) => b,
        Err(e) => return PhotoResult::Skipped(format!("cannot read: {e}")),
    };
    // From the bytes: a large photo is detected on a small copy and never held whole and upright.
    let candidate = match recognizer.candidate(Photo::Bytes(&bytes), None) {
        Ok(c) => c,
        Err(e) => return PhotoResult::Skipped(e.to_string()),
    };
    let Some((face, jpeg)) = candidate.face else {
        return PhotoResult::Skipped("no face found".into());
    };
    // The same quality check as one enrollment: a poor face is reported, not enrolled.
    match recognizer.checked_sample(face, jpeg, candidate.quality, candidate.faces_found) {
        Ok(sample) => PhotoResult::Face(Box::new(sample)),
        Err(e) => PhotoResult::Skipped(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn photo_extensions() {
        for ok in ["a.jpg", "b.JPEG", "c.png", "d.Jpg"] {
            assert!(is_photo(Path::new(ok)), "{ok}");
        }
        for no in ["a.gif", "b", "c.jpg.txt", ".png.bak"] {
            assert!(!is_photo(Path::new(no)), "{no}");
        }
    }

    #[test]
    fn scan_skips_folders_that_are_not_ids() {
        let dir = tempfile::tempdir().unwrap();
        for d in ["alip", "yoga", ".hidden", "bad name"] {
            fs::create_dir_all(dir.path().join(d)).unwrap();
        }
        fs::write(dir.path().join("alip/1.jpg"), b"x").unwrap();
        fs::write(dir.path().join("alip/notes.txt"), b"x").unwrap();
        fs::write(dir.path().join("stray.jpg"), b"x").unwrap();
        let (people, skipped) = scan(dir.path()).unwrap();
        let ids: Vec<_> = people
            .iter()
            .map(|(id, p)| (id.to_string(), p.len()))
            .collect();
        assert_eq!(ids, vec![("alip".into(), 1), ("yoga".into(), 0)]);
        assert_eq!(skipped.len(), 2);
    }

    #[test]
    fn person_files_give_names_or_skip_the_folder_with_the_reason() {
        let dir = tempfile::tempdir().unwrap();
        let files: [(&str, &[u8]); 6] = [
            ("alip", br#"{"name": " Alip Nugraha ", "group": "7A"}"#),
            ("budi", br#"{"group": "7B"}"#),
            ("rlo", "{\"name\": \"Al\u{202E}ip\"}".as_bytes()),
            ("typo", br#"{"nmae": "x"}"#),
            ("wrong", br#"{"name": 5}"#),
            ("broken", b"{"),
        ];
        for (id, body) in files {
            fs::create_dir_all(dir.path().join(id)).unwrap();
            fs::write(dir.path().join(id).join(PERSON_FILE), body).unwrap();
        }
        fs::create_dir_all(dir.path().join("plain")).unwrap();
        let (people, labels, skipped) = scan_labelled(dir.path()).unwrap();
        let got: Vec<_> = people
            .iter()
            .map(|(id, _)| {
                let l = labels.get(id).cloned().unwrap_or_default();
                (id.to_string(), l.name, l.group)
            })
            .collect();
        let some = |s: &str| Some(s.to_string());
        assert_eq!(
            got,
            [
                ("alip".into(), some("Alip Nugraha"), some("7A")),
                ("budi".into(), None, some("7B")),
                ("plain".into(), None, None)
            ]
        );
        let reasons: Vec<_> = skipped
            .iter()
            .map(|s| {
                let name = s.path.file_name().unwrap().to_string_lossy().into_owned();
                (name, s.reason.clone())
            })
            .collect();
        assert_eq!(reasons.len(), 4, "{reasons:?}");
        assert!(reasons.iter().all(|(_, r)| r.starts_with("person.json")));
        let rlo = &reasons.iter().find(|(n, _)| n == "rlo").unwrap().1;
        assert!(rlo.contains("name") && rlo.contains("U+202E"), "{rlo}");
    }
}
