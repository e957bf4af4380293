//! `face-attendance cameras`: what cameras this machine has, and what each configured camera
//! gives (the logic is [`crate::camera::probe`]). It reads the camera settings as `serve` does
//! (the same flags and environment variables: `CAMERA_DEVICE` or `CAMERA_FRAMES`, and
//! `CAMERA_<N>_DEVICE` with their names, directions and HTTP keys), so on a box
//! `set -a; . /etc/face-attendance/env; set +a; face-attendance cameras` checks the service's
//! own cameras.
//!
//! Exit status: 0 when some camera was found and every configured camera gave a frame;
//! [`super::EXIT_INPUT`] when there is no camera at all, or a configured camera gave none;
//! [`super::EXIT_SETUP`] when the camera settings are wrong.

use std::path::Path;
use std::time::Duration;

use clap::Args;

use super::serve_args::CameraArgs;
use crate::camera::probe::{self, Configured, Report};
use crate::settings::CameraSettings;

#[derive(Debug, Clone, Args)]
pub struct CamerasArgs {
    /// The cameras `serve` would run (CAMERA_DEVICE, CAMERA_FRAMES, ...).
    #[command(flatten)]
    pub camera: CameraArgs,
}

pub fn run(args: &CamerasArgs) -> i32 {
    let camera = CameraSettings::from(&args.camera);
    if let Err(e) = camera.validate() {
        eprintln!("error: {e}");
        return super::EXIT_SETUP;
    }
    let configured = match configured_cameras(&camera) {
        Ok(configured) => configured,
        Err(e) => {
            eprintln!("error: {e}");
            return super::EXIT_SETUP;
        }
    };
    let options = camera.source_options();
    // A first frame may take a program's start or a server's answer; as long as `serve` waits
    // before calling a camera stale, within reason.
    let limit = Duration::from_secs(camera.camera_stale_seconds.clamp(3, 60));
    let configured = configured
        .into_iter()
        .map(|c| {
            let frame = probe::first_frame(&c.spec, &c.access, &options, limit);
            (c, frame)
        })
        .collect();
    let report = Report {
        nodes: probe::v4l2_nodes(Path::new("/dev")),
        libcamera: probe::libcamera_cameras(std::env::var_os("PATH").as_deref()),
        configured,
    };
    print!("{}", report.render());
    if !report.found_any() {
        eprintln!(
            "No camera found: no V4L2 camera (/dev/video*), no libcamera camera (a Camera \
             Module needs rpicam-apps) and no configured camera that gives frames."
        );
    }
    if report.exit_ok() {
        0
    } else {
        super::EXIT_INPUT
    }
}

/// The cameras `serve` would run, in its order: the first (`CAMERA_DEVICE`, else
/// `CAMERA_FRAMES`), then `CAMERA_<N>_DEVICE`, each with its name, direction and HTTP access.
fn configured_cameras(camera: &CameraSettings) -> Result<Vec<Configured>, String> {
    let cameras = camera.cameras().map_err(|e| e.to_string())?;
    Ok(cameras
        .into_iter()
        .map(|c| Configured {
            name: c.name().to_string(),
            direction: c.direction().map(|d| d.as_str()),
            spec: c.spec().clone(),
            access: c.access().clone(),
        })
        .collect())
}
