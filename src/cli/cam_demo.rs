//! `face-attendance cam-demo`: the original webcam demo for a headless board. One line per
//! recognized face with its distance and the loop's frames per second; with
//! `--save-annotated DIR`, the frames with faces are saved with boxes and names drawn.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Args;

use super::args::{Apply, CameraEngineArgs};
use super::serve_args::CameraArgs;
use crate::camera::{annotate, Camera, FrameResult, Pipeline};
use crate::image_io;
use crate::recognizer::Recognizer;
use crate::settings::CameraSettings;

#[derive(Debug, Clone, Args)]
pub struct CamDemoArgs {
    #[command(flatten)]
    pub common: CameraEngineArgs,
    #[command(flatten)]
    pub camera: CameraArgs,
    /// Save each frame that has faces, with boxes and names drawn, as DIR/frame-NNNNNN.jpg
    #[arg(long, value_name = "DIR")]
    pub save_annotated: Option<PathBuf>,
    /// Stop saving after this many frames (an SD card fills up at 25 frames/s)
    #[arg(long, default_value_t = 1000)]
    pub save_limit: u64,
}

pub fn run(args: &CamDemoArgs, recognizer: Recognizer) -> i32 {
    let camera = &CameraSettings::from(&args.camera);
    if let Err(e) = camera.validate() {
        eprintln!("error: {e}");
        return super::EXIT_SETUP;
    }
    let Some(open) = camera.source() else {
        eprintln!("error: give --camera (/dev/videoN, libcamera, rtsp://..., http(s)://..., exec:COMMAND or frames:PATH), or --frames PATH (a folder of JPEGs, an image or an MJPEG file)");
        return super::EXIT_SETUP;
    };
    if let Some(dir) = &args.save_annotated {
        if let Err(e) = std::fs::create_dir_all(dir) {
            eprintln!("error: cannot create {}: {e}", dir.display());
            return super::EXIT_SETUP;
        }
    }
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        let _ = signal_hook::flag::register(signal, stop.clone());
    }
    let started = Instant::now();
    let mut frames = 0u64;
    let mut saver = args
        .save_annotated
        .clone()
        .map(|dir| Saver::new(dir, args.save_limit));
    let on_frame = Box::new(move |mut f: FrameResult| {
        frames += 1;
        let fps = frames as f64 / started.elapsed().as_secs_f64().max(1e-3);
        if f.faces.is_empty() {
            println!("frame {frames}: no face ({fps:.1} fps)");
        }
        for face in &f.faces {
            let r = &face.recognition;
            let distance = r
                .distance
                .map(|d| format!("{d:.3}"))
                .unwrap_or_else(|| "-".into());
            let decided = f.decided.iter().find(|d| d.track == face.track);
            println!(
                "frame {frames}: {} distance {distance} box {:?}{}{} ({fps:.1} fps, {} ms)",
                r.label,
                r.bbox.as_css(),
                if face.tracked() { " tracked" } else { "" },
                match decided {
                    Some(d) => format!(" CONFIRMED over {} frames", d.decision.frames),
                    None => String::new(),
                },
                f.latency.as_millis()
            );
        }
        if let Some(saver) = saver.as_mut().filter(|_| !f.faces.is_empty()) {
            annotate::draw(&mut f.image, &f.faces);
            saver.save(frames, &f.image);
        }
    });
    let pipeline = Pipeline::new(recognizer.clone(), camera.pipeline(&args.common.settings()));
    let camera = match Camera::start("camera1", open, pipeline, Arc::default(), on_frame) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: cannot start the camera loop: {e}");
            return super::EXIT_SETUP;
        }
    };
    while !stop.load(Ordering::Relaxed) && !camera.finished() {
        std::thread::sleep(Duration::from_millis(50));
    }
    let stats = camera.stats().to_json();
    camera.stop();
    eprintln!("camera: {stats}");
    0
}

/// Writes annotated frames, up to a limit; a failed write is reported once and saving stops
/// (the demo goes on).
struct Saver {
    dir: PathBuf,
    left: u64,
}

impl Saver {
    fn new(dir: PathBuf, limit: u64) -> Saver {
        Saver { dir, left: limit }
    }

    fn save(&mut self, frame: u64, image: &image_io::RgbImage) {
        if self.left == 0 {
            return;
        }
        let path = self.dir.join(format!("frame-{frame:06}.jpg"));
        match write(&path, image) {
            Ok(()) => {
                self.left -= 1;
                if self.left == 0 {
                    eprintln!("saved the last annotated frame allowed by --save-limit");
                }
            }
            Err(e) => {
                eprintln!(
                    "error: cannot save {}: {e}; no more frames will be saved",
                    path.display()
                );
                self.left = 0;
            }
        }
    }
}

fn write(path: &Path, image: &image_io::RgbImage) -> Result<(), String> {
    let jpeg = image_io::encode_jpeg(image).map_err(|e| e.to_string())?;
    std::fs::write(path, jpeg).map_err(|e| e.to_string())
}
