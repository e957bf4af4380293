//! `face-attendance-bench open-set`: the camera's match tolerance measured as an open set, the
//! way a box meets people: some enrolled, most of the street not. On a faces folder
//! (`known/<person>/`, `probe/<person>/`, `strangers/`, as `../shared/faces`):
//!
//! - every `known/` photo is enrolled as the service enrolls them (bulk enroll, its checks);
//! - every photo (probe, stranger and known) is replayed as a walk-by: `--walk-frames` frames,
//!   the photo cut a little more each frame (the face moves and grows a little, as someone
//!   stepping up to the camera) and letterboxed to the camera's size through JPEG,
//!   seen once by the camera's own pipeline ([`Pipeline::look`], [`Pipeline::encode`], at
//!   `DETECT_SCALE`, `CAMERA_UPSAMPLE`, `FACE_JITTERS`);
//! - for each tolerance from 0.40 to 0.70 by 0.01, every walk-by is decided by the camera's own
//!   [`Decider`] (its tracker, `CAMERA_MATCH_MARGIN`, `CAMERA_CONFIRM_FRAMES` within
//!   `CAMERA_CONFIRM_SECONDS`, frames `1 / CAMERA_FPS` apart);
//! - genuine accepts: probe walk-bys decided as their own person, with the whole gallery (a probe
//!   named as somebody else is counted as `wrong`); false accepts: walk-bys given any name while
//!   their person is not in the gallery: the real strangers (whole gallery), and each enrolled
//!   person in turn left out of the gallery with every photo of theirs (known and probe) shown
//!   as a stranger (leave one identity out).
//!
//! It prints the genuine-accept and false-accept counts and rates per tolerance, the tolerance it
//! chooses (the lowest with the most genuine accepts while no walk-by is given a wrong name: no
//! false accept and no probe named as another person), and the first tolerance above it with a
//! false accept, with the walk-bys it names. `DEFAULT_CAMERA_TOLERANCE` is that choice on
//! `../shared/faces` (tests/open_set.rs checks it); `--json` prints the same as one document.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use clap::Args;
use serde::Serialize;
use serde_json::json;

use crate::bulk_enroll;
use crate::camera::frame::RawFrame;
use crate::camera::{Decider, Measured, Pipeline, PipelineSettings, DEFAULT_CAMERA_TOLERANCE};
use crate::cli::args::{Apply, EngineArgs};
use crate::cli::serve_args::CameraArgs;
use crate::engine::{Face, FaceBox};
use crate::gallery::{Gallery, UNKNOWN};
use crate::image_io;
use crate::pipeline::StageTimes;
use crate::quality::Thumbnail;
use crate::recognizer::Recognizer;
use crate::settings::CameraSettings;

/// The tolerances compared, in hundredths: 0.40 to 0.70.
const TOLERANCES: std::ops::RangeInclusive<u32> = 40..=70;

/// Most frames of a walk-by: each cuts the photo 0.5% more from the top and left and 0.25% more
/// from the right and bottom than the one before, so the face moves and grows a little from
/// frame to frame, as someone stepping up to the camera does (and stays one track).
const MAX_WALK_FRAMES: usize = 12;

/// `face-attendance-bench open-set`.
#[derive(Debug, Clone, Args)]
pub struct BenchOpenSetArgs {
    /// The models and the jitters (the tolerance is what is measured).
    #[command(flatten)]
    pub engine: EngineArgs,
    /// The camera's settings, as `serve` reads them (its tolerance is what is measured).
    #[command(flatten)]
    pub camera: CameraArgs,
    /// The photos: known/<person>/ (enrolled), probe/<person>/ (other photos of them),
    /// strangers/ (nobody enrolled)
    #[arg(long, env = "FACES_DIR", default_value = "../shared/faces")]
    pub faces: PathBuf,
    /// Frames per walk-by (each photo replayed as this many frames, 1 to 12)
    #[arg(long, default_value_t = 6)]
    pub walk_frames: usize,
    /// Print one JSON document instead of the table
    #[arg(long)]
    pub json: bool,
}

/// One frame of a walk-by as the camera's engine saw it: its faces and all their encodings.
struct SeenFrame {
    faces: Vec<(FaceBox, Thumbnail)>,
    encoded: Vec<(Face, Measured)>,
}

/// What a walk-by is, for the counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Probe,
    Known,
    Stranger,
}

/// One photo replayed as a walk-by.
struct Walk {
    /// The photo, relative to the faces folder.
    photo: String,
    /// Whose face it is (`None`: a stranger).
    person: Option<String>,
    kind: Kind,
    frames: Vec<SeenFrame>,
}

/// One tolerance's counts.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    tolerance: f64,
    genuine_accepts: usize,
    genuine_trials: usize,
    gar: f64,
    /// Probes named as another person.
    wrong: usize,
    false_accepts: usize,
    impostor_trials: usize,
    far: f64,
    /// Impostor walk-bys decided as close to two people.
    ambiguous: usize,
    /// The impostor walk-bys given a name: (photo, the name).
    #[serde(skip)]
    named: Vec<(String, String)>,
}

impl Row {
    fn clean(&self) -> bool {
        self.false_accepts == 0 && self.wrong == 0
    }
}

/// The benchmark's files (the galleries), removed when it ends.
struct Workdir(PathBuf);

impl Drop for Workdir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub fn run(args: &BenchOpenSetArgs) -> i32 {
    let camera = CameraSettings::from(&args.camera);
    if let Err(e) = camera.validate() {
        eprintln!("error: {e}");
        return crate::cli::EXIT_SETUP;
    }
    if !(1..=MAX_WALK_FRAMES).contains(&args.walk_frames) {
        eprintln!("error: --walk-frames takes 1 to {MAX_WALK_FRAMES}");
        return crate::cli::EXIT_SETUP;
    }
    let work =
        Workdir(std::env::temp_dir().join(format!("face-bench-open-set-{}", std::process::id())));
    let mut settings = args.engine.settings();
    settings.data_dir = work.0.join("all");
    let recognizer = match crate::service::open_recognizer(&settings) {
        Ok((r, _)) => r,
        Err(e) => {
            eprintln!("error: {e}");
            return crate::cli::EXIT_SETUP;
        }
    };
    match measure(args, &camera.pipeline(&settings), &recognizer, &work.0) {
        Ok(report) => {
            report.print(args, &camera);
            0
        }
        Err(e) => {
            eprintln!("error: {e}");
            crate::cli::EXIT_INPUT
        }
    }
}

/// What the benchmark found.
struct Report {
    enrolled_people: usize,
    enrolled_photos: usize,
    walks: Vec<(Kind, usize)>,
    /// Walk-bys with a face in fewer frames than a decision needs.
    short: Vec<String>,
    rows: Vec<Row>,
    confirm_frames: u32,
}

fn measure(
    args: &BenchOpenSetArgs,
    camera: &PipelineSettings,
    recognizer: &Recognizer,
    work: &Path,
) -> Result<Report, String> {
    let faces = &args.faces;
    let (people, _) = bulk_enroll::scan(&faces.join("known")).map_err(|e| e.to_string())?;
    if people.is_empty() {
        return Err(format!("{}: nobody in known/", faces.display()));
    }
    let enrolled = bulk_enroll::enroll_all(recognizer, &people, Default::default(), &|_| {});
    if let Some(failed) = enrolled.iter().find(|p| p.error.is_some()) {
        return Err(format!("enrolling {}: {:?}", failed.id, failed.error));
    }
    let enrolled_photos = enrolled.iter().map(|p| p.saved).sum();

    let pipeline = Pipeline::new(recognizer.clone(), camera.clone());
    let (width, height) = (args.camera.camera_width, args.camera.camera_height);
    let step = Duration::from_secs_f64(1.0 / args.camera.frames_fps);
    let see = |path: &Path, person: Option<&str>, kind: Kind| -> Result<Walk, String> {
        let frames = walk_by(&pipeline, path, args.walk_frames, (width, height))?;
        let photo = path.strip_prefix(faces).unwrap_or(path);
        Ok(Walk {
            photo: photo.display().to_string(),
            person: person.map(str::to_string),
            kind,
            frames,
        })
    };
    let mut walks = Vec::new();
    let (probes, _) = bulk_enroll::scan(&faces.join("probe")).map_err(|e| e.to_string())?;
    for (id, photos) in &probes {
        for path in photos {
            walks.push(see(path, Some(id.as_str()), Kind::Probe)?);
        }
    }
    for (id, photos) in &people {
        for path in photos {
            walks.push(see(path, Some(id.as_str()), Kind::Known)?);
        }
    }
    let strangers_dir = faces.join("strangers");
    let mut strangers: Vec<PathBuf> = std::fs::read_dir(&strangers_dir)
        .map_err(|e| format!("{}: {e}", strangers_dir.display()))?
        .filter_map(|e| Some(e.ok()?.path()).filter(|p| bulk_enroll::is_photo(p)))
        .collect();
    strangers.sort();
    for path in &strangers {
        walks.push(see(path, None, Kind::Stranger)?);
    }

    // Each person left out in turn: the gallery's files but theirs, opened as a gallery.
    let all = work.join("all").join("embeddings");
    let mut without: Vec<(String, Recognizer)> = Vec::new();
    for (id, _) in &people {
        let dir = work.join(format!("without-{id}"));
        let embeddings = dir.join("embeddings");
        std::fs::create_dir_all(&embeddings).map_err(|e| format!("{}: {e}", dir.display()))?;
        for entry in std::fs::read_dir(&all).map_err(|e| format!("{}: {e}", all.display()))? {
            let path = entry.map_err(|e| e.to_string())?.path();
            if path.file_stem().and_then(|s| s.to_str()) != Some(id.as_str()) {
                if let Some(name) = path.file_name() {
                    std::fs::copy(&path, embeddings.join(name)).map_err(|e| e.to_string())?;
                }
            }
        }
        let (gallery, _) = Gallery::open(&dir).map_err(|e| e.to_string())?;
        let others = Recognizer::new(recognizer.engine().clone(), Arc::new(gallery));
        without.push((id.to_string(), others));
    }

    let rows = TOLERANCES
        .map(|n| {
            let settings = PipelineSettings {
                tolerance: f64::from(n) / 100.0,
                ..camera.clone()
            };
            decide_all(&walks, recognizer, &without, &settings, step)
        })
        .collect();
    let needed = camera.confirm.frames() as usize;
    let count = |kind| walks.iter().filter(|w| w.kind == kind).count();
    Ok(Report {
        enrolled_people: people.len(),
        enrolled_photos,
        walks: vec![
            (Kind::Probe, count(Kind::Probe)),
            (Kind::Known, count(Kind::Known)),
            (Kind::Stranger, count(Kind::Stranger)),
        ],
        short: walks
            .iter()
            .filter(|w| w.frames.iter().filter(|f| !f.faces.is_empty()).count() < needed)
            .map(|w| w.photo.clone())
            .collect(),
        rows,
        confirm_frames: camera.confirm.frames(),
    })
}

/// The photo at `path` as `count` camera frames of `size`, each seen by the camera's pipeline
/// (every face found, every face encoded).
fn walk_by(
    pipeline: &Pipeline,
    path: &Path,
    count: usize,
    (width, height): (u32, u32),
) -> Result<Vec<SeenFrame>, String> {
    let failed = |e: &dyn std::fmt::Display| format!("{}: {e}", path.display());
    let bytes = std::fs::read(path).map_err(|e| failed(&e))?;
    let image = image_io::decode(&bytes, image_io::DEFAULT_MAX_PIXELS).map_err(|e| failed(&e))?;
    let (w, h) = (image.width, image.height);
    let mut frames = Vec::with_capacity(count);
    for k in 0..count {
        let (dx, dy) = (k * w / 200, k * h / 200);
        let moved = image.crop(dy, w - dx / 2, h - dy / 2, dx);
        let jpeg = image_io::encode_jpeg(&image_io::letterbox(&moved, width, height))
            .map_err(|e| failed(&e))?;
        let mut times = StageTimes::default();
        let looked = pipeline
            .look(&RawFrame::Mjpeg(jpeg), &mut times)
            .map_err(|e| failed(&e))?;
        let all: Vec<usize> = (0..looked.faces.len()).collect();
        let encoded = pipeline.encode(&looked, &all, &mut times);
        frames.push(SeenFrame {
            faces: looked.faces,
            encoded,
        });
    }
    Ok(frames)
}

/// The names the camera's [`Decider`] gives a walk-by against `recognizer`'s gallery, and
/// whether it decided a face close to two people.
fn decide(
    walk: &Walk,
    recognizer: &Recognizer,
    settings: &PipelineSettings,
    step: Duration,
) -> (Vec<String>, bool) {
    let mut decider = Decider::new(settings);
    let (mut names, mut ambiguous) = (Vec::new(), false);
    for (n, frame) in walk.frames.iter().enumerate() {
        let at = step * n as u32;
        let stepped = decider.step(recognizer, at, &frame.faces, |indices| {
            indices
                .iter()
                .filter_map(|&i| frame.encoded.get(i).cloned())
                .collect()
        });
        for d in stepped.decided {
            if d.recognition.ambiguous.is_some() {
                ambiguous = true;
            } else if d.recognition.label != UNKNOWN {
                names.push(d.recognition.label);
            }
        }
    }
    (names, ambiguous)
}

fn decide_all(
    walks: &[Walk],
    all: &Recognizer,
    without: &[(String, Recognizer)],
    settings: &PipelineSettings,
    step: Duration,
) -> Row {
    let mut row = Row {
        tolerance: settings.tolerance,
        genuine_accepts: 0,
        genuine_trials: 0,
        gar: 0.0,
        wrong: 0,
        false_accepts: 0,
        impostor_trials: 0,
        far: 0.0,
        ambiguous: 0,
        named: Vec::new(),
    };
    let impostor = |row: &mut Row, walk: &Walk, gallery: &Recognizer| {
        let (names, ambiguous) = decide(walk, gallery, settings, step);
        row.impostor_trials += 1;
        row.ambiguous += usize::from(ambiguous);
        if let Some(name) = names.first() {
            row.false_accepts += 1;
            row.named.push((walk.photo.clone(), name.clone()));
        }
    };
    for walk in walks {
        match (walk.kind, &walk.person) {
            (Kind::Probe, Some(person)) => {
                let (names, _) = decide(walk, all, settings, step);
                row.genuine_trials += 1;
                row.genuine_accepts += usize::from(names.contains(person));
                row.wrong += usize::from(names.iter().any(|n| n != person));
            }
            (Kind::Stranger, _) | (_, None) => impostor(&mut row, walk, all),
            _ => {}
        }
        // Left out: every photo of the person against the gallery without them.
        if let Some((_, gallery)) = without
            .iter()
            .find(|(id, _)| walk.person.as_ref() == Some(id))
        {
            impostor(&mut row, walk, gallery);
        }
    }
    let rate = |n: usize, of: usize| if of == 0 { 0.0 } else { n as f64 / of as f64 };
    row.gar = rate(row.genuine_accepts, row.genuine_trials);
    row.far = rate(row.false_accepts, row.impostor_trials);
    row
}

/// The lowest tolerance with the most genuine accepts among those that name nobody wrongly.
pub fn choose(rows: &[Row]) -> Option<&Row> {
    let best = rows
        .iter()
        .filter(|r| r.clean())
        .map(|r| r.genuine_accepts)
        .max()?;
    rows.iter().find(|r| r.clean() && r.genuine_accepts == best)
}

impl Report {
    fn print(&self, args: &BenchOpenSetArgs, camera: &CameraSettings) {
        let chosen = choose(&self.rows);
        let first_false = chosen.and_then(|c| {
            self.rows
                .iter()
                .find(|r| r.tolerance > c.tolerance && !r.clean())
        });
        let walks = |kind| {
            self.walks
                .iter()
                .find(|(k, _)| *k == kind)
                .map_or(0, |(_, n)| *n)
        };
        let hundredths = |t: f64| (t * 100.0).round() / 100.0;
        if args.json {
            let doc = json!({
                "faces": args.faces.display().to_string(),
                "enrolled_people": self.enrolled_people,
                "enrolled_photos": self.enrolled_photos,
                "walk_bys": {
                    "probe": walks(Kind::Probe),
                    "known": walks(Kind::Known),
                    "stranger": walks(Kind::Stranger),
                    "frames_each": args.walk_frames,
                },
                "camera": {
                    "detect_scale": camera.detect_scale,
                    "upsample": camera.camera_upsample,
                    "match_margin": camera.camera_match_margin,
                    "confirm_frames": camera.confirm_frames,
                    "confirm_seconds": camera.confirm_seconds,
                    "fps": args.camera.frames_fps,
                    "size": [args.camera.camera_width, args.camera.camera_height],
                },
                "too_few_frames_with_a_face": self.short,
                "rows": self.rows,
                "chosen": chosen.map(|c| hundredths(c.tolerance)),
                "first_false_accept": first_false.map(|r| json!({
                    "tolerance": hundredths(r.tolerance),
                    "above_chosen": chosen.map(|c| hundredths(r.tolerance - c.tolerance)),
                    "named": r.named.iter().map(|(p, n)| json!({"photo": p, "named": n})).collect::<Vec<_>>(),
                    "wrong": r.wrong,
                })),
                "default_camera_tolerance": DEFAULT_CAMERA_TOLERANCE,
            });
            println!("{doc:#}");
            return;
        }
        println!(
            "open set on {}: {} people enrolled from {} photos",
            args.faces.display(),
            self.enrolled_people,
            self.enrolled_photos
        );
        println!(
            "camera: {}x{}, DETECT_SCALE {}, CAMERA_UPSAMPLE {}, CAMERA_MATCH_MARGIN {}, \
             CAMERA_CONFIRM_FRAMES {} within {} s; walk-bys of {} frames at {} fps",
            args.camera.camera_width,
            args.camera.camera_height,
            camera.detect_scale,
            camera.camera_upsample,
            camera.camera_match_margin,
            camera.confirm_frames,
            camera.confirm_seconds,
            args.walk_frames,
            args.camera.frames_fps
        );
        println!(
            "genuine: {} probe walk-bys (whole gallery); impostors: {} strangers (whole gallery) \
             + {} walk-bys of a person left out of the gallery ({} probe + {} known photos)",
            walks(Kind::Probe),
            walks(Kind::Stranger),
            walks(Kind::Probe) + walks(Kind::Known),
            walks(Kind::Probe),
            walks(Kind::Known)
        );
        if !self.short.is_empty() {
            println!(
                "seen in fewer than {} frames (never decided at any tolerance): {}",
                self.confirm_frames,
                self.short.join(", ")
            );
        }
        println!(
            "{:>9} | {:>9} {:>6} {:>5} | {:>9} {:>6} {:>9}",
            "tolerance", "GA", "GAR", "wrong", "FA", "FAR", "ambiguous"
        );
        for r in &self.rows {
            println!(
                "{:>9.2} | {:>9} {:>6.3} {:>5} | {:>9} {:>6.3} {:>9}{}",
                r.tolerance,
                format!("{}/{}", r.genuine_accepts, r.genuine_trials),
                r.gar,
                r.wrong,
                format!("{}/{}", r.false_accepts, r.impostor_trials),
                r.far,
                r.ambiguous,
                if Some(r.tolerance) == chosen.map(|c| c.tolerance) {
                    "  <- chosen"
                } else {
                    ""
                }
            );
        }
        match chosen {
            None => println!("chosen: none (every tolerance names somebody wrongly)"),
            Some(c) => println!(
                "chosen: {:.2} (the lowest with the most genuine accepts, {}/{}, and no false accept)",
                c.tolerance, c.genuine_accepts, c.genuine_trials
            ),
        }
        match (chosen, first_false) {
            (Some(c), Some(f)) => {
                let named: Vec<String> =
                    f.named.iter().map(|(p, n)| format!("{p} as {n}")).collect();
                println!(
                    "first false accept at {:.2}, {:.2} above the choice: {}{}",
                    f.tolerance,
                    f.tolerance - c.tolerance,
                    named.join(", "),
                    if f.wrong > 0 {
                        format!(" ({} probes named as someone else)", f.wrong)
                    } else {
                        String::new()
                    }
                );
            }
            (Some(_), None) => println!("no false accept up to 0.70"),
            _ => {}
        }
        println!("DEFAULT_CAMERA_TOLERANCE is {DEFAULT_CAMERA_TOLERANCE:.2}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(tolerance: f64, genuine_accepts: usize, false_accepts: usize, wrong: usize) -> Row {
        Row {
            tolerance,
            genuine_accepts,
            genuine_trials: 20,
            gar: 0.0,
            wrong,
            false_accepts,
            impostor_trials: 58,
            far: 0.0,
            ambiguous: 0,
            named: Vec::new(),
        }
    }

    #[test]
    fn the_choice_is_the_lowest_with_the_most_genuine_accepts_and_no_wrong_name() {
        let rows = [
            row(0.44, 17, 0, 0),
            row(0.45, 18, 0, 0),
            row(0.46, 20, 0, 0),
            row(0.47, 20, 0, 0),
            row(0.48, 20, 1, 0),
        ];
        assert_eq!(choose(&rows).map(|r| r.tolerance), Some(0.46));
        // More genuine accepts bought with a false accept or a wrong name do not count.
        let rows = [row(0.5, 18, 0, 0), row(0.6, 20, 1, 0), row(0.7, 20, 0, 1)];
        assert_eq!(choose(&rows).map(|r| r.tolerance), Some(0.5));
        // Nothing clean: no choice.
        assert!(choose(&[row(0.5, 20, 2, 0)]).is_none());
    }
}
