//! `face-attendance cam-demo`: the original webcam demo for a headless board. One line per
//! recognized face with its distance and the loop's frames per second.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::camera::{Camera, FrameResult};
use crate::config::CameraSettings;
use crate::recognizer::Recognizer;

pub fn run(camera: &CameraSettings, recognizer: Recognizer) -> i32 {
    if let Err(e) = camera.validate() {
        eprintln!("error: {e}");
        return super::EXIT_SETUP;
    }
    let Some(open) = camera.source() else {
        eprintln!("error: give --camera /dev/videoN, or --frames PATH (a folder of JPEGs, an image or an MJPEG file)");
        return super::EXIT_SETUP;
    };
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        let _ = signal_hook::flag::register(signal, stop.clone());
    }
    let started = Instant::now();
    let mut frames = 0u64;
    let on_frame = Box::new(move |f: FrameResult| {
        frames += 1;
        let fps = frames as f64 / started.elapsed().as_secs_f64().max(1e-3);
        if f.results.is_empty() {
            println!("frame {frames}: no face ({fps:.1} fps)");
        }
        for r in &f.results {
            let distance = r
                .distance
                .map(|d| format!("{d:.3}"))
                .unwrap_or_else(|| "-".into());
            println!(
                "frame {frames}: {} distance {distance} box {:?} ({fps:.1} fps, {} ms)",
                r.label,
                r.bbox.as_css(),
                f.latency.as_millis()
            );
        }
    });
    let camera = match Camera::start(open, recognizer, Arc::default(), on_frame) {
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
