//! `face-attendance-bench camera-sources`: what each kind of camera source costs the box, through
//! the real camera loop (`sources::open`, the capture thread, the newest-frame slot, the pipeline
//! with the real recognizer, `serve`'s event path): frames per second captured and processed,
//! and CPU per frame of this process and of the source's decoder program, measured from `/proc`
//! over a fixed number of frames after a warm-up.
//!
//! The sources, all asked for the same size and rate (`--size`, `--fps`: the camera settings):
//! - `frames:` a folder of JPEGs made from the photos (each photo for two seconds of frames);
//! - `exec:` FFmpeg reading those JPEGs in real time and writing MJPEG (decode and re-encode);
//! - `rtsp://` H.264 at 640x480 (1 Mbit/s) and at 1280x720 (2 Mbit/s), served by
//!   `tests/fixtures/rtsp-server` (GStreamer's RTSP server; clips made by FFmpeg's libx264 from
//!   the photos, with sensor-like noise so each frame costs what a camera's does) and decoded by
//!   FFmpeg as the box does, scaled down to the capture width; `--rtsp URL` adds your cameras;
//! - two cameras at once (two `frames:` sources), beside one, at the asked rate and unpaced (one
//!   photo replayed faster than the pipeline: what the box can process at most).
//!
//! The RTSP server is not part of the box: it is started by the benchmark and not counted.
//! Figures, not assertions: run it on the board as well.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::Args;

use super::cpu;
use crate::camera::sources::{self, HttpAccess, SourceOptions, SourceSpec};
use crate::camera::{Camera, CameraStats, OpenSource, Pipeline, PipelineSettings};
use crate::events::Seer;
use crate::image_io;
use crate::recognizer::Recognizer;
use crate::service::frames::camera_events;

/// `face-attendance-bench camera-sources`: the photos, and how much to measure.
#[derive(Debug, Clone, Args)]
pub struct BenchSourcesArgs {
    /// The data folder and the models.
    #[command(flatten)]
    pub common: crate::cli::args::CameraEngineArgs,
    /// Frames processed per camera in each measurement (after a warm-up of 10)
    #[arg(long, default_value_t = 150)]
    pub frames: u64,
    /// Capture size asked of every source (CAMERA_WIDTH x CAMERA_HEIGHT); wider RTSP streams are
    /// scaled down to its width
    #[arg(long, value_parser = super::http::parse_size, default_value = "640x480")]
    pub size: (u32, u32),
    /// Frames a second asked of every source (CAMERA_FPS; also the replay rate)
    #[arg(long, default_value_t = 15, value_parser = clap::value_parser!(u32).range(1..=120))]
    pub fps: u32,
    /// The RTSP test server (the repository's tests/fixtures/rtsp-server); without it the RTSP
    /// H.264 rows are left out
    #[arg(long, default_value = "tests/fixtures/rtsp-server")]
    pub rtsp_server: PathBuf,
    /// An RTSP camera of your own to measure as well (repeatable; credentials are not printed)
    #[arg(long)]
    pub rtsp: Vec<String>,
    /// Photos with a face each, the frames' content, in turn (letterboxed to --size)
    #[arg(required = true, num_args = 1..)]
    pub photos: Vec<PathBuf>,
}

/// Frames processed (by every camera) before the measured window opens.
const WARM_UP: u64 = 10;
/// The replay rate of the unpaced rows: faster than any processing.
const UNPACED_FPS: f64 = 500.0;
/// The RTSP streams served: width, height, kbit/s (H.264 with sensor-like noise, at bitrates
/// IP cameras are commonly set to for such sizes).
const RTSP_STREAMS: [(u32, u32, u32); 2] = [(640, 480, 1000), (1280, 720, 2000)];
/// Seconds each photo is shown.
const PHOTO_SECONDS: u32 = 2;

pub fn run(args: &BenchSourcesArgs, recognizer: Recognizer) -> i32 {
    let work = match Workdir::make(args, &recognizer) {
        Ok(w) => w,
        Err(e) => {
            eprintln!("error: {e}");
            return crate::cli::EXIT_INPUT;
        }
    };
    let (encodings, people) = recognizer.gallery().counts();
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!(
        "camera sources on this machine: {cores} cores ({}), load average {} at the start",
        cpu_model(),
        std::fs::read_to_string("/proc/loadavg")
            .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
            .unwrap_or_else(|_| "?".into())
    );
    println!(
        "capture {}x{} at {} frames/s asked, {} frames a camera measured after {WARM_UP}; gallery of {encodings} encodings ({people} people); default pipeline",
        args.size.0, args.size.1, args.fps, args.frames
    );
    println!(
        "frames/s captured and processed per camera (x2: two cameras at once; unpaced: the replay faster than processing)"
    );
    println!(
        "CPU: ms per frame (this process: per processed frame, all its threads; decoder: the source's program and its children, per captured frame) and % of one core"
    );
    println!(
        "{:<38} {:>9} {:>9} {:>6} | {:>8} {:>6} | {:>8} {:>6}",
        "source", "captured", "processed", "faces", "this ms", "%core", "decoder", "%core"
    );
    let options = |fps: f64| SourceOptions {
        width: args.size.0,
        height: args.size.1,
        fps: args.fps,
        replay_fps: fps,
        replay_loop: true,
        ..SourceOptions::default()
    };
    let paced = options(f64::from(args.fps));
    let frames = SourceSpec::Frames(work.frames.clone());
    let exec = SourceSpec::Exec(format!(
        "ffmpeg -nostdin -hide_banner -loglevel error -re -loop 1 -framerate {} -i '{}/%04d.jpg' -f mjpeg -q:v 5 -",
        args.fps,
        work.frames.display()
    ));
    // Each row prints its figures, or why it was not measured; false then.
    let row =
        |label: &str, specs: Result<&[SourceSpec], String>, options: &SourceOptions| match specs
            .and_then(|specs| measure(&recognizer, specs, options, args.frames))
        {
            Ok(w) => {
                w.print(label);
                true
            }
            Err(e) => {
                println!("{label:<38} not measured: {e}");
                false
            }
        };
    let mut ok = row(
        "frames: (replay)",
        Ok(std::slice::from_ref(&frames)),
        &paced,
    );
    ok &= row("exec: ffmpeg MJPEG", Ok(&[exec]), &paced);
    for (w, h, kbps) in RTSP_STREAMS {
        let server = RtspServer::start(&args.rtsp_server, &work, args, (w, h, kbps));
        let spec = server
            .as_ref()
            .map(|s| vec![s.spec.clone()])
            .map_err(|e| e.clone());
        let label = format!("rtsp:// H.264 {w}x{h} {}M", kbps / 1000);
        ok &= row(&label, spec.as_deref().map_err(|e| e.clone()), &paced);
    }
    for url in &args.rtsp {
        let spec = url.parse::<SourceSpec>().map(|s| vec![s]);
        let label = spec
            .as_ref()
            .map_or_else(|_| "--rtsp".into(), |s| s[0].redacted());
        ok &= row(&label, spec.as_deref().map_err(|e| e.clone()), &paced);
    }
    let two = [frames.clone(), frames.clone()];
    ok &= row("frames: x2", Ok(&two), &paced);
    // Unpaced, the folder's photos would change every few processed frames (each lasts two
    // seconds of frames at the asked rate): one photo instead, its face tracked as in a camera.
    let unpaced = options(UNPACED_FPS);
    let one = SourceSpec::Frames(work.photos[0].clone());
    ok &= row(
        "frames: 1 photo, unpaced",
        Ok(std::slice::from_ref(&one)),
        &unpaced,
    );
    ok &= row(
        "frames: 1 photo, unpaced x2",
        Ok(&[one.clone(), one]),
        &unpaced,
    );
    if ok {
        0
    } else {
        crate::cli::EXIT_SETUP
    }
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name") || l.starts_with("Model"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_else(|| "?".into())
}

/// The benchmark's files (frames and clips), removed when it ends.
struct Workdir {
    dir: PathBuf,
    /// The frames: folder (`0001.jpg`...: each photo for [`PHOTO_SECONDS`]).
    frames: PathBuf,
    /// Each photo letterboxed to the size, once (the unpaced rows replay the first).
    photos: Vec<PathBuf>,
}

impl Workdir {
    fn make(args: &BenchSourcesArgs, recognizer: &Recognizer) -> Result<Workdir, String> {
        let dir = std::env::temp_dir().join(format!("face-bench-sources-{}", std::process::id()));
        let frames = dir.join("frames");
        std::fs::create_dir_all(&frames).map_err(|e| format!("{}: {e}", frames.display()))?;
        if frames.to_string_lossy().contains('\'') {
            return Err(format!(
                "{}: a quote in the temporary folder",
                dir.display()
            ));
        }
        let mut work = Workdir {
            dir,
            frames,
            photos: Vec::new(),
        };
        let (w, h) = args.size;
        let per_photo = args.fps * PHOTO_SECONDS;
        for (i, path) in args.photos.iter().enumerate() {
            let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
            let image = recognizer
                .decode(&bytes)
                .map_err(|e| format!("{}: {e}", path.display()))?;
            let jpeg = image_io::encode_jpeg(&image_io::letterbox(&image, w, h))
                .map_err(|e| e.to_string())?;
            let write =
                |p: &Path| std::fs::write(p, &jpeg).map_err(|e| format!("{}: {e}", p.display()));
            let photo = work.dir.join(format!("photo{i}.jpg"));
            write(&photo)?;
            work.photos.push(photo);
            for n in 0..per_photo {
                let index = i as u32 * per_photo + n + 1;
                write(&work.frames.join(format!("{index:04}.jpg")))?;
            }
        }
        Ok(work)
    }
}

impl Drop for Workdir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// `tests/fixtures/rtsp-server` serving a clip of the photos, stopped on drop.
struct RtspServer {
    child: Child,
    spec: SourceSpec,
}

impl RtspServer {
    fn start(
        program: &Path,
        work: &Workdir,
        args: &BenchSourcesArgs,
        (w, h, kbps): (u32, u32, u32),
    ) -> Result<RtspServer, String> {
        if !program.is_file() {
            return Err(format!(
                "{} not found (run from the repository, or give --rtsp-server)",
                program.display()
            ));
        }
        // Long enough for the warm-up and the frames even when processing lags the stream
        // three times over; a client is served the clip from its start.
        let seconds = (WARM_UP + args.frames) as f64 / f64::from(args.fps) * 3.0 + 15.0;
        let rounds =
            (seconds / f64::from(PHOTO_SECONDS * args.photos.len() as u32)).ceil() as usize;
        // The photos themselves (not the frames made for --size), so a 1280x720 clip is not an
        // upscaled 640x480 one.
        let scenes = (0..rounds.max(1))
            .flat_map(|_| args.photos.iter())
            .map(|p| format!("{}:{PHOTO_SECONDS}", p.display()));
        let still = work.dir.join(format!("still-{w}x{h}.mp4"));
        let made = Command::new(program)
            .args(["clip", "--out"])
            .arg(&still)
            .args([
                "--size",
                &format!("{w}x{h}"),
                "--fps",
                &args.fps.to_string(),
            ])
            .args(scenes)
            .status()
            .map_err(|e| format!("{}: {e}", program.display()))?;
        if !made.success() {
            return Err(format!("making the clip failed ({made})"));
        }
        // A camera's picture is never still: sensor noise changes every frame, and the encoder
        // spends its bitrate on it. Without it a still photo's P-frames cost little to decode
        // (less than half, measured at 640x480), which no camera shows.
        let clip = work.dir.join(format!("clip-{w}x{h}.mp4"));
        let rate = format!("{kbps}k");
        let noisy = Command::new("ffmpeg")
            .args(["-nostdin", "-hide_banner", "-loglevel", "error", "-y", "-i"])
            .arg(&still)
            .args([
                "-vf",
                "noise=alls=10:allf=t",
                "-c:v",
                "libx264",
                "-preset",
                "veryfast",
            ])
            .args(["-g", &args.fps.to_string(), "-bf", "0", "-b:v", &rate])
            .args(["-maxrate", &rate, "-bufsize", &rate, "-pix_fmt", "yuv420p"])
            .arg(&clip)
            .status()
            .map_err(|e| format!("ffmpeg: {e}"))?;
        if !noisy.success() {
            return Err(format!("adding noise to the clip failed ({noisy})"));
        }
        let mut child = Command::new(program)
            .args(["serve", "--port", "0", "--path", "/bench", "--clip"])
            .arg(&clip)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .map_err(|e| format!("{}: {e}", program.display()))?;
        let stdout = child.stdout.take();
        let mut server = RtspServer {
            child,
            spec: SourceSpec::Frames(PathBuf::new()),
        };
        // The server prints its one line once it listens, or exits (closing the pipe).
        let (tx, rx) = std::sync::mpsc::channel();
        if let Some(out) = stdout {
            std::thread::spawn(move || {
                let mut line = String::new();
                let _ = BufReader::new(out).read_line(&mut line);
                let _ = tx.send(line);
            });
        }
        let line = rx.recv_timeout(Duration::from_secs(30)).unwrap_or_default();
        let url = line
            .trim()
            .strip_prefix("rtsp-server ready ")
            .ok_or("the RTSP server did not start")?;
        server.spec = url.parse::<SourceSpec>()?;
        Ok(server)
    }
}

impl Drop for RtspServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One camera being measured: the pid of its source's program, and how often it was opened.
#[derive(Default)]
struct Opened {
    pid: Mutex<Option<u32>>,
    times: AtomicU64,
}

/// One camera's counters at a moment.
#[derive(Clone, Copy)]
struct Counts {
    captured: u64,
    processed: u64,
    faces: u64,
    opened: u64,
}

impl Counts {
    fn of(stats: &CameraStats, opened: &Opened) -> Counts {
        let json = stats.to_json();
        let n = |k: &str| json[k].as_u64().unwrap_or(0);
        Counts {
            captured: n("frames_captured"),
            processed: n("frames_processed"),
            faces: n("faces_detected"),
            opened: opened.times.load(Ordering::Relaxed),
        }
    }
}

/// What one measurement window gave.
struct Window {
    elapsed: Duration,
    /// Per camera: the counts' differences over the window.
    cameras: Vec<Counts>,
    own_cpu: Duration,
    /// The source programs' CPU over the window (`None`: no program runs).
    decoder_cpu: Option<Duration>,
}

impl Window {
    fn print(&self, label: &str) {
        let secs = self.elapsed.as_secs_f64();
        let processed: u64 = self.cameras.iter().map(|c| c.processed).sum();
        let captured: u64 = self.cameras.iter().map(|c| c.captured).sum();
        let ms = |cpu: Duration, n: u64| cpu.as_secs_f64() * 1000.0 / n.max(1) as f64;
        let core = |cpu: Duration| cpu.as_secs_f64() * 100.0 / secs;
        let decoder = match self.decoder_cpu {
            Some(cpu) => format!("{:>8.1} {:>6.0}", ms(cpu, captured), core(cpu)),
            None => format!("{:>8} {:>6}", "-", "-"),
        };
        let restarted = self.cameras.iter().any(|c| c.opened > 0);
        for (i, c) in self.cameras.iter().enumerate() {
            let name = if self.cameras.len() > 1 {
                format!("{label} [camera{}]", i + 1)
            } else {
                label.to_string()
            };
            let cpu = if i == 0 {
                format!(
                    "{:>8.1} {:>6.0} | {decoder}",
                    ms(self.own_cpu, processed),
                    core(self.own_cpu)
                )
            } else {
                format!("{:>8} {:>6} | {:>8} {:>6}", "\"", "\"", "\"", "\"")
            };
            println!(
                "{name:<38} {:>9.1} {:>9.1} {:>6.2} | {cpu}",
                c.captured as f64 / secs,
                c.processed as f64 / secs,
                c.faces as f64 / c.processed.max(1) as f64,
            );
        }
        if restarted {
            println!("  (a source was restarted during the window: its decoder figure misses the old program)");
        }
    }
}

/// Runs one camera loop per spec, waits for each to process [`WARM_UP`] frames, then measures
/// until each has processed `frames` more.
fn measure(
    recognizer: &Recognizer,
    specs: &[SourceSpec],
    options: &SourceOptions,
    frames: u64,
) -> Result<Window, String> {
    let dispatcher = super::camera::dispatcher();
    let mut cameras = Vec::new();
    let mut opened = Vec::new();
    let mut failure = None;
    for (i, spec) in specs.iter().enumerate() {
        let name = format!("camera{}", i + 1);
        let seer = Seer {
            name: name.clone(),
            direction: None,
            own_cooldown: specs.len() > 1,
        };
        let mut events = camera_events(dispatcher.clone(), false, seer);
        let count = Arc::new(Opened::default());
        opened.push(count.clone());
        let (spec, options) = (spec.clone(), options.clone());
        let open: OpenSource = Box::new(move || {
            let source = sources::open(&spec, &HttpAccess::default(), &options)?;
            *crate::locks::lock(&count.pid) = source.child_pid();
            count.times.fetch_add(1, Ordering::Relaxed);
            Ok(source)
        });
        let stats = Arc::new(CameraStats::for_source(String::new()));
        match Camera::start(
            &name,
            open,
            Pipeline::new(recognizer.clone(), PipelineSettings::default()),
            stats.clone(),
            Box::new(move |f| events(&f)),
        ) {
            Ok(camera) => cameras.push((camera, stats)),
            Err(e) => {
                failure = Some(format!("cannot start the camera loop: {e}"));
                break;
            }
        }
    }
    let result = match failure {
        Some(e) => Err(e),
        None => window(&cameras, &opened, options, frames),
    };
    for (camera, _) in cameras {
        camera.stop();
    }
    dispatcher.shutdown();
    result
}

/// The measurement itself: counters and CPU read when every camera has warmed up and again when
/// every camera has processed `frames` more (polled every few ms).
fn window(
    cameras: &[(Camera, Arc<CameraStats>)],
    opened: &[Arc<Opened>],
    options: &SourceOptions,
    frames: u64,
) -> Result<Window, String> {
    let counts = || -> Vec<Counts> {
        cameras
            .iter()
            .zip(opened)
            .map(|((_, stats), o)| Counts::of(stats, o))
            .collect()
    };
    let decoders = || -> Option<Duration> {
        let pids: Vec<u32> = opened
            .iter()
            .filter_map(|o| *crate::locks::lock(&o.pid))
            .collect();
        (!pids.is_empty()).then(|| pids.into_iter().map(cpu::group).sum())
    };
    // At least 2 frames a second, with a minute to connect.
    let limit = Duration::from_secs(60)
        + Duration::from_secs_f64((WARM_UP + frames) as f64 / 2.0)
        + options.stale;
    let started = Instant::now();
    let wait_until = |done: &dyn Fn(&[Counts]) -> bool| -> Result<(), String> {
        while !done(&counts()) {
            if started.elapsed() > limit {
                let states: Vec<String> = cameras.iter().map(|(_, s)| s.state()).collect();
                return Err(format!(
                    "too slow or no frames after {} s (state: {})",
                    limit.as_secs(),
                    states.join("; ")
                ));
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        Ok(())
    };
    wait_until(&|c| c.iter().all(|c| c.processed >= WARM_UP))?;
    let (t0, own0, dec0, c0) = (Instant::now(), cpu::own(), decoders(), counts());
    wait_until(&|c| {
        c.iter()
            .zip(&c0)
            .all(|(now, then)| now.processed >= then.processed + frames)
    })?;
    let (elapsed, own1, dec1, c1) = (t0.elapsed(), cpu::own(), decoders(), counts());
    let own_cpu = match (own0, own1) {
        (Some(a), Some(b)) => b.saturating_sub(a),
        _ => return Err("cannot read /proc/self/stat".into()),
    };
    Ok(Window {
        elapsed,
        cameras: c1
            .iter()
            .zip(&c0)
            .map(|(b, a)| Counts {
                captured: b.captured - a.captured,
                processed: b.processed - a.processed,
                faces: b.faces - a.faces,
                opened: b.opened - a.opened,
            })
            .collect(),
        own_cpu,
        decoder_cpu: dec1.zip(dec0).map(|(b, a)| b.saturating_sub(a)),
    })
}
