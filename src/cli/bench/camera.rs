//! `face-attendance-bench camera`: the camera loop's frames per second and per-stage cost, on
//! camera-sized MJPEG frames made from photos, with 0, 1 and 3 faces, at detection scales 1.0
//! and 0.5. The figures in docs/src/performance.md come from here; run it on the board itself too.
//!
//! The frames go through the real loop: a replay source faster than processing, the newest-frame
//! slot, the pipeline, and `serve`'s event path (a dispatcher without webhook).

use std::path::PathBuf;
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Args;

use crate::camera::{Camera, FrameResult, Pipeline, PipelineSettings, ReplaySource, StageTimes};
use crate::events::{Destinations, Dispatcher};
use crate::image_io::{self, RgbImage};
use crate::recognizer::Recognizer;
use crate::service::frames::camera_events;

/// `face-attendance-bench camera`: the data and models, and what to measure.
#[derive(Debug, Clone, Args)]
pub struct BenchCameraArgs {
    /// The data folder and the models.
    #[command(flatten)]
    pub common: crate::cli::args::CameraEngineArgs,
    /// Frames measured per row (after a few warm-up frames)
    #[arg(long, default_value_t = 60)]
    pub frames: u64,
    /// Frame size, e.g. 640x480
    #[arg(long, value_parser = super::http::parse_size, default_value = "640x480")]
    pub size: (u32, u32),
    /// Detection scales to measure, comma-separated
    #[arg(long, value_delimiter = ',', default_value = "1.0,0.5")]
    pub scales: Vec<f64>,
    /// Detection upsample values to measure, comma-separated (default: CAMERA_UPSAMPLE's, 0)
    #[arg(long, value_delimiter = ',')]
    pub upsample: Vec<u32>,
    /// Photos with one face each: the 1-face frame is made from the first, the 3-face frame from
    /// the faces of all three side by side, the 0-face frame from the first upside down
    #[arg(required = true, num_args = 3)]
    pub photos: Vec<PathBuf>,
}

const WARM_UP: u64 = 5;

pub fn run(args: &BenchCameraArgs, recognizer: Recognizer) -> i32 {
    if args
        .upsample
        .iter()
        .any(|&u| u > crate::settings::MAX_UPSAMPLE)
        || !args.scales.iter().all(|s| (0.1..=1.0).contains(s))
    {
        eprintln!(
            "error: --upsample takes 0 to {} and --scales 0.1 to 1",
            crate::settings::MAX_UPSAMPLE
        );
        return crate::cli::EXIT_SETUP;
    }
    let frames = match scenes(args, &recognizer) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("error: {e}");
            return crate::cli::EXIT_INPUT;
        }
    };
    let (encodings, people) = recognizer.gallery().counts();
    println!(
        "camera loop on {}x{} MJPEG frames, gallery of {encodings} encodings ({people} people), {} frames a row",
        args.size.0, args.size.1, args.frames
    );
    println!(
        "times in ms per frame (wall clock); encoded = faces encoded per frame, the rest tracked"
    );
    println!(
        "{:>2} {:>5} {:>5} {:>7} {:>6} | {:>7} {:>7} {:>9} {:>7} {:>6} {:>8} | {:>7} {:>6}",
        "up",
        "scale",
        "faces",
        "recheck",
        "fps",
        "convert",
        "detect",
        "landmarks",
        "encode",
        "match",
        "dispatch",
        "encoded",
        "found"
    );
    let upsamples = if args.upsample.is_empty() {
        vec![PipelineSettings::default().upsample]
    } else {
        args.upsample.clone()
    };
    let recheck = PipelineSettings::default().recheck_frames;
    let mut rows: Vec<(u32, f64, usize, u32)> = Vec::new();
    for &upsample in &upsamples {
        for &scale in &args.scales {
            for faces in [0, 1, 3] {
                rows.push((upsample, scale, faces, recheck));
            }
        }
        // The same frames without tracking: what re-encoding every face of every frame costs.
        if let Some(&last) = args.scales.last() {
            rows.push((upsample, last, 1, 1));
            rows.push((upsample, last, 3, 1));
        }
    }
    for (upsample, scale, faces, recheck) in rows {
        let settings = PipelineSettings {
            detect_scale: scale,
            upsample,
            recheck_frames: recheck,
            ..PipelineSettings::default()
        };
        let jpeg = &frames[match faces {
            0 => 0,
            1 => 1,
            _ => 2,
        }];
        match measure(&recognizer, settings, jpeg, args.frames) {
            Ok(m) => {
                let per = |d: Duration| d.as_secs_f64() * 1000.0 / m.frames as f64;
                println!(
                    "{upsample:>2} {scale:>5.2} {faces:>5} {recheck:>7} {:>6.1} | {:>7.1} {:>7.1} {:>9.1} {:>7.1} {:>6.2} {:>8.2} | {:>7.2} {:>6.2}",
                    m.frames as f64 / m.elapsed.as_secs_f64(),
                    per(m.times.convert),
                    per(m.times.detect),
                    per(m.times.landmarks),
                    per(m.times.encode),
                    per(m.times.matching),
                    per(m.dispatch),
                    m.encoded as f64 / m.frames as f64,
                    m.found as f64 / m.frames as f64,
                );
            }
            Err(e) => {
                eprintln!("error: {e}");
                return crate::cli::EXIT_SETUP;
            }
        }
    }
    0
}

/// The 0-, 1- and 3-face frames, as JPEGs.
fn scenes(args: &BenchCameraArgs, recognizer: &Recognizer) -> Result<Vec<Vec<u8>>, String> {
    let (w, h) = args.size;
    let photos = args
        .photos
        .iter()
        .map(|p| {
            let bytes = std::fs::read(p).map_err(|e| format!("{}: {e}", p.display()))?;
            recognizer
                .decode(&bytes)
                .map_err(|e| format!("{}: {e}", p.display()))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let one = image_io::letterbox(&photos[0], w, h);
    // Three faces in a row, each as large as a third of the width allows (a tight crop around
    // its face), so they stay within reach of the faster detection settings.
    let third = w / 3;
    let columns: Vec<RgbImage> = photos
        .iter()
        .take(3)
        .map(|p| image_io::letterbox(&around_face(p, recognizer), third, h))
        .collect();
    let three = image_io::letterbox(&side_by_side(&columns), w, h);
    let none = upside_down(&one);
    [none, one, three]
        .iter()
        .map(|f| image_io::encode_jpeg(f).map_err(|e| e.to_string()))
        .collect()
}

/// The photo cropped to its largest face with a margin of 15% of the face's width around it
/// (the whole photo when no face is found).
fn around_face(photo: &RgbImage, recognizer: &Recognizer) -> RgbImage {
    let Some(b) = crate::pipeline::detect(recognizer.engine(), photo)
        .into_iter()
        .max_by_key(|b| b.area())
    else {
        return photo.clone();
    };
    let margin = (b.right - b.left) * 15 / 100;
    let clamp = |v: i64, max: usize| v.clamp(0, max as i64) as usize;
    photo.crop(
        clamp(b.top - margin, photo.height),
        clamp(b.right + margin, photo.width),
        clamp(b.bottom + margin, photo.height),
        clamp(b.left - margin, photo.width),
    )
}

/// Images of one height placed left to right.
fn side_by_side(images: &[RgbImage]) -> RgbImage {
    let height = images.iter().map(|i| i.height).max().unwrap_or(1);
    let width: usize = images.iter().map(|i| i.width).sum();
    let mut pixels = vec![128u8; width * height * 3];
    let mut x0 = 0;
    for image in images {
        for y in 0..image.height {
            let row = &image.pixels[y * image.width * 3..(y + 1) * image.width * 3];
            pixels[(y * width + x0) * 3..][..row.len()].copy_from_slice(row);
        }
        x0 += image.width;
    }
    RgbImage::from_raw(width, height, pixels).unwrap_or_else(|| images[0].clone())
}

/// The frontal-face detector finds nothing in a photo turned upside down: a frame with the
/// same content and cost of detection, but no face.
fn upside_down(image: &RgbImage) -> RgbImage {
    let pixels: Vec<u8> = image
        .pixels
        .chunks_exact(3)
        .rev()
        .flatten()
        .copied()
        .collect();
    RgbImage::from_raw(image.width, image.height, pixels).unwrap_or_else(|| image.clone())
}

#[derive(Default)]
struct Measured {
    frames: u64,
    elapsed: Duration,
    times: StageTimes,
    dispatch: Duration,
    encoded: u64,
    found: u64,
}

/// `serve`'s event path for the camera loop's frames, without a webhook (shut it down after).
pub(super) fn dispatcher() -> Arc<Dispatcher> {
    Arc::new(Dispatcher::start(
        Destinations::live_only(),
        Duration::from_secs(5),
        None,
    ))
}

/// Runs the camera loop on `jpeg` over and over until `frames` frames (after warm-up) are done.
fn measure(
    recognizer: &Recognizer,
    settings: PipelineSettings,
    jpeg: &[u8],
    frames: u64,
) -> Result<Measured, String> {
    let dispatcher = dispatcher();
    let seer = crate::events::Seer {
        name: "bench".into(),
        direction: None,
        own_cooldown: false,
    };
    let mut events = camera_events(dispatcher.clone(), false, seer);
    let (done_tx, done_rx) = mpsc::channel();
    let mut seen = 0u64;
    let mut m = Measured::default();
    let mut started = Instant::now();
    let on_frame = Box::new(move |f: FrameResult| {
        let t = Instant::now();
        events(&f);
        let dispatch = t.elapsed();
        seen += 1;
        if seen == WARM_UP {
            started = Instant::now();
        } else if seen > WARM_UP && seen <= WARM_UP + frames {
            m.frames += 1;
            m.times.add(&f.times);
            m.dispatch += dispatch;
            m.encoded += f.faces.iter().filter(|s| !s.tracked()).count() as u64;
            m.found += f.faces.len() as u64;
            if seen == WARM_UP + frames {
                m.elapsed = started.elapsed();
                let _ = done_tx.send(std::mem::take(&mut m));
            }
        }
    });
    // Faster than any processing: the loop is never waiting for a frame.
    let jpeg = jpeg.to_vec();
    let source = move || {
        Ok(Box::new(ReplaySource::from_jpegs(
            "bench",
            vec![jpeg.clone()],
            500.0,
            true,
        )) as Box<dyn crate::camera::FrameSource>)
    };
    let camera = Camera::start(
        "camera1",
        Box::new(source),
        Pipeline::new(recognizer.clone(), settings),
        Arc::default(),
        on_frame,
    )
    .map_err(|e| format!("cannot start the camera loop: {e}"))?;
    let result = done_rx
        .recv_timeout(Duration::from_secs(600))
        .map_err(|_| "the camera loop did not finish in 10 minutes".to_string());
    camera.stop();
    dispatcher.shutdown();
    result
}
