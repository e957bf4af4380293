//! The programs a camera's frames come from, as argument lists for [`super::child`]:
//! `exec:COMMAND` (`sh -c COMMAND`), `libcamera[:N]` (`rpicam-vid`, or the older
//! `libcamera-vid`) and `rtsp(s)://` (FFmpeg). Nothing here starts anything; a program that is
//! not installed is a clear [`SourceError::Unavailable`] saying what to install.
//!
//! **libcamera.** Raspberry Pi OS's camera stack is reached through `rpicam-vid` (package
//! `rpicam-apps`; `libcamera-vid` before Bookworm's rename) writing MJPEG to its standard
//! output. Only options documented for rpicam-vid are used (Raspberry Pi documentation, "Camera
//! software", rpicam-apps common and video options):
//! - `--camera N`: the camera's index, as `--list-cameras` lists them;
//! - `--width W --height H`: the output size (the box's capture size);
//! - `--framerate F`: the frame rate asked of the camera;
//! - `--codec mjpeg`: MJPEG, decoded by the box like a webcam's frames (the default is H.264);
//! - `--timeout 0`: run until stopped (the default is 5 s);
//! - `--nopreview`: no preview window (a headless box);
//! - `--flush`: each frame is written out as soon as it is encoded (through a pipe, stdio would
//!   otherwise hold a frame's tail until the next one: a frame of latency);
//! - `--output -`: to standard output.
//!
//! **RTSP.** IP cameras send H.264 (or H.265) over RTSP; the box has it decoded by FFmpeg
//! rather than GStreamer: one program (`ffmpeg`, Debian's and Raspberry Pi OS's package of the
//! same name) with stable command-line options across the versions in use, whose RTSP client,
//! decoders (hardware ones included), scaler and MJPEG encoder are driven by one argument list;
//! a GStreamer pipeline needs several plugin packages whose element names and properties vary
//! with the version and the camera (depayloader and parser per codec). FFmpeg is told: RTSP
//! over TCP (interleaved: no UDP ports to open, no lost packets smearing frames), a socket
//! timeout of the stale time (a camera gone quiet ends the program), no audio, subtitles or
//! data, frames scaled down to at most the capture width (aspect kept, never up), at most the
//! capture rate (frames dropped, never duplicated), as MJPEG on standard output, each frame
//! flushed as it is written.

use std::ffi::{OsStr, OsString};
use std::path::PathBuf;

use super::{SourceError, SourceOptions};

/// A program to start and its arguments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Program {
    /// The program (a path, or a name looked up on `PATH`).
    pub program: OsString,
    /// Its arguments.
    pub args: Vec<OsString>,
}

impl Program {
    fn new(program: impl Into<OsString>, args: &[String]) -> Program {
        Program {
            program: program.into(),
            args: args.iter().map(OsString::from).collect(),
        }
    }
}

/// `exec:COMMAND`: the command run by `sh -c`.
pub fn exec(command: &str) -> Program {
    Program::new("sh", &["-c".into(), command.into()])
}

/// The first of `names` found as an executable file in the directories of `path` (a `PATH`
/// value).
pub fn find_program(names: &[&str], path: &OsStr) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    names.iter().find_map(|name| {
        std::env::split_paths(path)
            .filter(|dir| !dir.as_os_str().is_empty())
            .map(|dir| dir.join(name))
            .find(|p| {
                p.metadata()
                    .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
            })
    })
}

fn search_path() -> OsString {
    std::env::var_os("PATH").unwrap_or_else(|| "/usr/local/bin:/usr/bin:/bin".into())
}

/// `libcamera:N` through `rpicam-vid` (else `libcamera-vid`) found on `path`.
pub fn libcamera(
    index: u32,
    options: &SourceOptions,
    path: &OsStr,
) -> Result<Program, SourceError> {
    let program = find_program(&["rpicam-vid", "libcamera-vid"], path).ok_or_else(|| {
        SourceError::Unavailable(format!(
            "libcamera:{index}: neither rpicam-vid nor libcamera-vid is installed \
             (on Raspberry Pi OS: sudo apt install rpicam-apps)"
        ))
    })?;
    let args = [
        "--camera".into(),
        index.to_string(),
        "--width".into(),
        options.width.to_string(),
        "--height".into(),
        options.height.to_string(),
        "--framerate".into(),
        options.fps.max(1).to_string(),
        "--codec".into(),
        "mjpeg".into(),
        "--timeout".into(),
        "0".into(),
        "--nopreview".into(),
        "--flush".into(),
        "--output".into(),
        "-".into(),
    ];
    Ok(Program::new(program, &args))
}

/// `rtsp://` or `rtsps://` through FFmpeg found on `path`.
pub fn rtsp(url: &str, options: &SourceOptions, path: &OsStr) -> Result<Program, SourceError> {
    let program = find_program(&["ffmpeg"], path).ok_or_else(|| {
        SourceError::Unavailable(
            "ffmpeg is not installed; RTSP cameras are decoded by it (sudo apt install ffmpeg)"
                .into(),
        )
    })?;
    let timeout_us = options.stale.as_micros().max(1_000_000).to_string();
    let args = [
        "-nostdin".into(),
        "-hide_banner".into(),
        "-loglevel".into(),
        "error".into(),
        "-rtsp_transport".into(),
        "tcp".into(),
        "-timeout".into(),
        timeout_us,
        "-i".into(),
        url.into(),
        "-an".into(),
        "-sn".into(),
        "-dn".into(),
        "-vf".into(),
        format!("scale=w=min({}\\,iw):h=-2", options.width.max(2)),
        "-fps_mode".into(),
        "vfr".into(),
        "-r".into(),
        options.fps.max(1).to_string(),
        "-c:v".into(),
        "mjpeg".into(),
        "-q:v".into(),
        "5".into(),
        "-f".into(),
        "mjpeg".into(),
        "-flush_packets".into(),
        "1".into(),
        "-".into(),
    ];
    Ok(Program::new(program, &args))
}

/// [`libcamera`] on this process's `PATH`.
pub fn libcamera_here(index: u32, options: &SourceOptions) -> Result<Program, SourceError> {
    libcamera(index, options, &search_path())
}

/// [`rtsp`] on this process's `PATH`.
pub fn rtsp_here(url: &str, options: &SourceOptions) -> Result<Program, SourceError> {
    rtsp(url, options, &search_path())
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn tool(dir: &std::path::Path, name: &str, mode: u32) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
        p
    }

    fn strings(p: &Program) -> Vec<String> {
        p.args
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect()
    }

    #[test]
    fn exec_runs_the_command_through_sh() {
        let p = exec("ffmpeg -i 'a b' -f mjpeg -");
        assert_eq!(p.program, "sh");
        assert_eq!(strings(&p), ["-c", "ffmpeg -i 'a b' -f mjpeg -"]);
    }

    #[test]
    fn libcamera_prefers_rpicam_vid_and_says_what_to_install() {
        let empty = tempfile::tempdir().unwrap();
        let old = tempfile::tempdir().unwrap();
        let new = tempfile::tempdir().unwrap();
        let options = SourceOptions {
            width: 1280,
            height: 720,
            fps: 12,
            ..SourceOptions::default()
        };
        let err = libcamera(1, &options, empty.path().as_os_str()).unwrap_err();
        let SourceError::Unavailable(why) = err else {
            panic!("{err:?}")
        };
        assert!(why.contains("apt install rpicam-apps"), "{why}");
        // Not executable: not found.
        tool(old.path(), "rpicam-vid", 0o644);
        let legacy = tool(old.path(), "libcamera-vid", 0o755);
        let path = std::env::join_paths([empty.path(), old.path()]).unwrap();
        assert_eq!(libcamera(0, &options, &path).unwrap().program, legacy);
        let current = tool(new.path(), "rpicam-vid", 0o755);
        let path = std::env::join_paths([old.path(), new.path()]).unwrap();
        let p = libcamera(1, &options, &path).unwrap();
        assert_eq!(p.program, current);
        assert_eq!(
            strings(&p).join(" "),
            "--camera 1 --width 1280 --height 720 --framerate 12 --codec mjpeg --timeout 0 \
             --nopreview --flush --output -"
        );
    }

    #[test]
    fn rtsp_goes_through_ffmpeg_over_tcp_scaled_and_rate_capped() {
        let empty = tempfile::tempdir().unwrap();
        let bin = tempfile::tempdir().unwrap();
        let options = SourceOptions {
            width: 640,
            fps: 10,
            stale: std::time::Duration::from_secs(7),
            ..SourceOptions::default()
        };
        let url = "rtsp://admin:pw@10.0.0.5/Streaming/101";
        let SourceError::Unavailable(why) =
            rtsp(url, &options, empty.path().as_os_str()).unwrap_err()
        else {
            panic!()
        };
        assert!(
            why.contains("apt install ffmpeg") && !why.contains("pw"),
            "{why}"
        );
        let ffmpeg = tool(bin.path(), "ffmpeg", 0o755);
        let p = rtsp(url, &options, bin.path().as_os_str()).unwrap();
        assert_eq!(p.program, ffmpeg);
        let args = strings(&p).join(" ");
        for want in [
            "-rtsp_transport tcp",
            "-timeout 7000000",
            &format!("-i {url} -an -sn -dn"),
            "-vf scale=w=min(640\\,iw):h=-2",
            "-fps_mode vfr -r 10",
            "-f mjpeg -flush_packets 1 -",
        ] {
            assert!(args.contains(want), "{want} not in {args}");
        }
    }
}
