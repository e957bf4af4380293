//! `face-attendance cameras`: what cameras this machine has, and what each configured camera
//! gives (the logic is [`crate::camera::probe`]). It reads the camera settings as `serve` does
//! (the same flags and environment variables), so on a box
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
use crate::camera::sources::{HttpAccess, SourceOptions, SourceSpec};
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
    let options = source_options(&camera);
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

// ---- MERGE (issue 25, lead): replace the body of `configured_cameras` with the settings'
// `cameras()` list (CAMERA_NAME, CAMERA_<N>_DEVICE / _NAME / _HTTP_KEY / _TLS_FINGERPRINT),
// and `source_options` with the settings' own, when settings/camera.rs lands; nothing else
// here reads the camera settings.

/// The cameras `serve` would run, in order: today `CAMERA_DEVICE` (any form: a V4L2 path,
/// `libcamera[:N]`, `rtsp://`, `http(s)://`, `exec:`, `frames:`) or `CAMERA_FRAMES`.
fn configured_cameras(camera: &CameraSettings) -> Result<Vec<Configured>, String> {
    let (setting, spec) = match (&camera.camera, &camera.frames) {
        (Some(device), _) => (
            "CAMERA_DEVICE",
            device
                .to_string_lossy()
                .parse::<SourceSpec>()
                .map_err(|e| format!("CAMERA_DEVICE: {e}"))?,
        ),
        (None, Some(frames)) => ("CAMERA_FRAMES", SourceSpec::Frames(frames.clone())),
        (None, None) => return Ok(Vec::new()),
    };
    Ok(vec![Configured {
        name: "camera1".into(),
        setting: setting.into(),
        spec,
        access: HttpAccess::default(),
    }])
}

/// How the cameras are asked for frames, from the shared camera settings.
fn source_options(camera: &CameraSettings) -> SourceOptions {
    SourceOptions {
        width: camera.camera_width,
        height: camera.camera_height,
        fps: camera.camera_fps,
        replay_fps: camera.frames_fps,
        replay_loop: camera.frames_loop,
        stale: Duration::from_secs(camera.camera_stale_seconds.max(1)),
        ..SourceOptions::default()
    }
}

// ---- end of MERGE
