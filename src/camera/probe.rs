//! What cameras this machine has: the logic of `face-attendance cameras` (src/cli/cameras.rs
//! prints [`Report::render`] and exits with [`Report::exit_ok`]).
//!
//! Contract:
//! - [`v4l2_nodes`] lists every `/dev/videoN` with its `/dev/v4l/by-id` (else `by-path`) names,
//!   driver, card, bus, capture formats and frame sizes, and what it is for the box
//!   ([`Verdict`]): a camera the V4L2 source reads (MJPEG, else YUYV), the Raspberry Pi Camera
//!   Module's raw receiver (`unicam` on a Pi 4, `rp1-cfe` on a Pi 5, or a node offering only
//!   Bayer/raw formats: use `CAMERA_DEVICE=libcamera`), a metadata-only node, a codec or image
//!   processor, or a node the box cannot read. Nothing is streamed: opening a node to ask it is
//!   allowed while `serve` is capturing from it.
//! - [`libcamera_cameras`] runs `rpicam-hello --list-cameras` (else the older `libcamera-hello`)
//!   found on `PATH`, at most [`LIST_TIMEOUT`], and parses its answer ([`parse_list_cameras`]).
//! - [`first_frame`] opens a configured camera once through [`sources::open`] and waits for its
//!   first frame (or says why there was none); only redacted text is kept (credentials in a URL
//!   never reach the report).
//! - Every string a device or a program hands over is read lossily and bounded: a USB camera's
//!   name that is not UTF-8, or a program that prints without end, cannot stop the listing.

use std::ffi::OsStr;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::sources::{self, HttpAccess, SourceError, SourceOptions, SourceSpec};

/// How long `rpicam-hello --list-cameras` may take (libcamera probes every sensor; a few
/// seconds on a Pi).
pub const LIST_TIMEOUT: Duration = Duration::from_secs(15);

/// The most of a listing program's output that is read.
const MAX_LIST_OUTPUT: u64 = 1 << 20;

/// The largest first frame decoded (CAMERA_WIDTH and CAMERA_HEIGHT are at most 4096).
const MAX_FRAME_PIXELS: u64 = 4096 * 4096;

/// The most formats, and sizes per format, shown for one node (a device may claim hundreds).
const MAX_FORMATS: usize = 32;
const MAX_SIZES: usize = 12;

/// The Raspberry Pi's CSI-2 receivers: their nodes carry the sensor's raw frames, which only
/// libcamera (with the Pi's image processor) turns into pictures.
const CSI_RECEIVERS: [&str; 2] = ["unicam", "rp1-cfe"];

/// The Raspberry Pi's image signal processors (libcamera drives them; not cameras).
const PI_ISPS: [&str; 2] = ["bcm2835-isp", "pispbe"];

/// Raw (undemosaiced) formats by fourcc: the Bayer orders at 8 to 16 bits, unpacked and
/// MIPI-packed, and the Pi 5's compressed raw (PiSP). Any format whose description says
/// "Bayer" counts too.
const RAW_FOURCCS: [&str; 38] = [
    "BA81", "GBRG", "GRBG", "RGGB", "BG10", "GB10", "BA10", "RG10", "pBAA", "pGAA", "pgAA", "pRAA",
    "BG12", "GB12", "BA12", "RG12", "pBCC", "pGCC", "pgCC", "pRCC", "BG14", "GB14", "GR14", "RG14",
    "pBEE", "pGEE", "pgEE", "pREE", "BYR2", "GB16", "GR16", "RG16", "PC1B", "PC1G", "PC1g", "PC1R",
    "Y10P", "Y12P",
];

/// One frame size a format offers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FrameSizes {
    /// Exactly this size.
    Discrete(u32, u32),
    /// Any size between these (stepwise or continuous).
    Range {
        /// Smallest width x height.
        min: (u32, u32),
        /// Largest width x height.
        max: (u32, u32),
    },
}

impl std::fmt::Display for FrameSizes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FrameSizes::Discrete(w, h) => write!(f, "{w}x{h}"),
            FrameSizes::Range { min, max } => {
                write!(f, "{}x{} to {}x{}", min.0, min.1, max.0, max.1)
            }
        }
    }
}

/// One capture format of a node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FormatInfo {
    /// The fourcc, e.g. `MJPG`, `YUYV`, `pRAA`.
    pub fourcc: String,
    /// The driver's description, e.g. `Motion-JPEG`.
    pub description: String,
    /// The frame sizes it offers (at most [`MAX_SIZES`] kept).
    pub sizes: Vec<FrameSizes>,
    /// Sizes left out beyond [`MAX_SIZES`].
    pub more_sizes: usize,
}

impl FormatInfo {
    /// A raw sensor format (Bayer, packed raw, PiSP-compressed raw).
    pub fn is_raw(&self) -> bool {
        RAW_FOURCCS.contains(&self.fourcc.as_str()) || self.description.contains("Bayer")
    }
}

/// What `VIDIOC_QUERYCAP` and the format enumeration say of a node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeInfo {
    /// The driver, e.g. `uvcvideo`, `unicam`, `rp1-cfe`.
    pub driver: String,
    /// The card (for a USB camera, its product name).
    pub card: String,
    /// Where it sits, e.g. `usb-0000:01:00.0-1.2`, `platform:fe801000.csi`.
    pub bus: String,
    /// This node's capabilities (`device_caps`; the device's when the driver gives no other).
    pub caps: u32,
    /// Its single-planar capture formats (at most [`MAX_FORMATS`]).
    pub formats: Vec<FormatInfo>,
}

/// V4L2 capability bits (linux/videodev2.h).
const CAP_VIDEO_CAPTURE: u32 = 0x0000_0001;
const CAP_VIDEO_CAPTURE_MPLANE: u32 = 0x0000_1000;
const CAP_VIDEO_M2M_MPLANE: u32 = 0x0000_4000;
const CAP_VIDEO_M2M: u32 = 0x0000_8000;
const CAP_META_CAPTURE: u32 = 0x0080_0000;
const CAP_DEVICE_CAPS: u32 = 0x8000_0000;

/// What a node is for the box.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// The V4L2 source reads it, in this format (`MJPG` preferred, else `YUYV`).
    Usable(&'static str),
    /// The Camera Module's raw receiver (or a raw-only node): `CAMERA_DEVICE=libcamera`.
    CsiRaw,
    /// Metadata only (a UVC camera's second node, a CSI receiver's embedded data).
    MetadataOnly,
    /// Not a camera: a codec, a converter, an image processor or an output.
    NotACamera(&'static str),
    /// A capture node with neither MJPEG nor YUYV.
    NoUsableFormat,
}

/// Classifies a node; the rules in the order they apply: metadata-only nodes, the Pi's CSI
/// receivers by driver (their nodes offer YUYV too, which never carries the Camera Module's
/// picture), codecs and image processors, then the formats.
pub fn classify(info: &NodeInfo) -> Verdict {
    let capture = info.caps & (CAP_VIDEO_CAPTURE | CAP_VIDEO_CAPTURE_MPLANE) != 0;
    if info.caps & CAP_META_CAPTURE != 0 && !capture {
        return Verdict::MetadataOnly;
    }
    if CSI_RECEIVERS.contains(&info.driver.as_str()) {
        return Verdict::CsiRaw;
    }
    if info.caps & (CAP_VIDEO_M2M | CAP_VIDEO_M2M_MPLANE) != 0 {
        return Verdict::NotACamera("a codec or converter (memory to memory)");
    }
    if PI_ISPS.contains(&info.driver.as_str()) {
        return Verdict::NotACamera("the Raspberry Pi's image processor, which libcamera drives");
    }
    if !capture {
        return Verdict::NotACamera("no video capture");
    }
    for wanted in ["MJPG", "YUYV"] {
        if info.formats.iter().any(|f| f.fourcc == wanted) {
            return Verdict::Usable(wanted);
        }
    }
    if !info.formats.is_empty() && info.formats.iter().all(FormatInfo::is_raw) {
        return Verdict::CsiRaw;
    }
    Verdict::NoUsableFormat
}

/// One `/dev/videoN` node.
#[derive(Debug, Clone)]
pub struct V4l2Node {
    /// `/dev/videoN`.
    pub path: PathBuf,
    /// Its stable names: `/dev/v4l/by-id/...`, else `/dev/v4l/by-path/...` (CSI and on-board
    /// devices have no by-id name).
    pub stable_names: Vec<PathBuf>,
    /// What it says of itself, or why it could not be asked (e.g. permission denied).
    pub info: Result<NodeInfo, String>,
}

impl V4l2Node {
    /// The name to put in `CAMERA_DEVICE`: the first stable name, else the node.
    pub fn setting(&self) -> &Path {
        self.stable_names.first().unwrap_or(&self.path)
    }
}

/// The `videoN` nodes under `dev` (normally `/dev`), in N order, each asked what it is.
pub fn v4l2_nodes(dev: &Path) -> Vec<V4l2Node> {
    let Ok(entries) = std::fs::read_dir(dev) else {
        return Vec::new();
    };
    let mut found: Vec<(u32, PathBuf)> = entries
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name();
            let n = name.to_str()?.strip_prefix("video")?.parse::<u32>().ok()?;
            Some((n, e.path()))
        })
        .collect();
    found.sort();
    let links = stable_links(dev);
    found
        .into_iter()
        .map(|(_, path)| {
            let real = std::fs::canonicalize(&path).unwrap_or_else(|_| path.clone());
            let mut stable_names: Vec<PathBuf> = Vec::new();
            for kind in ["by-id", "by-path"] {
                if stable_names.is_empty() {
                    stable_names = links
                        .iter()
                        .filter(|(k, _, target)| *k == kind && *target == real)
                        .map(|(_, link, _)| link.clone())
                        .collect();
                    stable_names.sort();
                }
            }
            let info = query(&path);
            V4l2Node {
                path,
                stable_names,
                info,
            }
        })
        .collect()
}

/// The symbolic links of `dev/v4l/by-id` and `dev/v4l/by-path`: (kind, link, target).
fn stable_links(dev: &Path) -> Vec<(&'static str, PathBuf, PathBuf)> {
    let mut links = Vec::new();
    for kind in ["by-id", "by-path"] {
        let Ok(entries) = std::fs::read_dir(dev.join("v4l").join(kind)) else {
            continue;
        };
        for link in entries.filter_map(|e| e.ok()).map(|e| e.path()) {
            if let Ok(target) = std::fs::canonicalize(&link) {
                links.push((kind, link, target));
            }
        }
    }
    links
}

/// Asks a node what it is (no streaming, no format set).
fn query(path: &Path) -> Result<NodeInfo, String> {
    use v4l::video::Capture;

    let device = v4l::Device::with_path(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::PermissionDenied => {
            format!("cannot open: {e} (the user needs the group video)")
        }
        _ => format!("cannot open: {e}"),
    })?;
    let (driver, card, bus, caps) = query_caps(&device).map_err(|e| format!("not V4L2: {e}"))?;
    let mut formats = Vec::new();
    // No capture formats is an answer too (an output or metadata node).
    for format in device.enum_formats().unwrap_or_default() {
        if formats.len() == MAX_FORMATS {
            break;
        }
        let mut sizes = Vec::new();
        let mut more_sizes = 0;
        for size in device.enum_framesizes(format.fourcc).unwrap_or_default() {
            if sizes.len() == MAX_SIZES {
                more_sizes += 1;
                continue;
            }
            sizes.push(match size.size {
                v4l::framesize::FrameSizeEnum::Discrete(d) => {
                    FrameSizes::Discrete(d.width, d.height)
                }
                v4l::framesize::FrameSizeEnum::Stepwise(s) => FrameSizes::Range {
                    min: (s.min_width, s.min_height),
                    max: (s.max_width, s.max_height),
                },
            });
        }
        formats.push(FormatInfo {
            fourcc: String::from_utf8_lossy(&format.fourcc.repr).into_owned(),
            description: format.description,
            sizes,
            more_sizes,
        });
    }
    Ok(NodeInfo {
        driver,
        card,
        bus,
        caps,
        formats,
    })
}

/// `VIDIOC_QUERYCAP`, read lossily: the v4l crate's own `query_caps` panics on a card name that
/// is not UTF-8 (a USB product name cut at 31 bytes inside a character), and keeps only the
/// device's capabilities, not this node's.
fn query_caps(device: &v4l::Device) -> std::io::Result<(String, String, String, u32)> {
    let text = |bytes: &[u8]| {
        let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
        String::from_utf8_lossy(&bytes[..end]).trim().to_string()
    };
    // SAFETY: v4l2_capability is a plain C struct for which all-zero bytes are valid; the
    // pointer passed to the ioctl is to that live, exclusively borrowed struct of exactly the
    // size VIDIOC_QUERYCAP encodes, and the descriptor stays open for the call (`device`).
    let caps = unsafe {
        let mut caps: v4l::v4l_sys::v4l2_capability = std::mem::zeroed();
        v4l::v4l2::ioctl(
            device.handle().fd(),
            v4l::v4l2::vidioc::VIDIOC_QUERYCAP,
            &mut caps as *mut _ as *mut std::os::raw::c_void,
        )?;
        caps
    };
    let node_caps = if caps.capabilities & CAP_DEVICE_CAPS != 0 {
        caps.device_caps
    } else {
        caps.capabilities
    };
    Ok((
        text(&caps.driver),
        text(&caps.card),
        text(&caps.bus_info),
        node_caps,
    ))
}

/// One camera `rpicam-hello --list-cameras` lists.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LibcameraCamera {
    /// Its index: `CAMERA_DEVICE=libcamera:N`.
    pub index: u32,
    /// The sensor, e.g. `imx708`, `imx219`.
    pub model: String,
    /// What the brackets say: the pixel array, and on newer versions bit depth and colour
    /// filter, e.g. `4608x2592 10-bit RGGB`.
    pub sensor: String,
    /// libcamera's id: where it is attached (`/base/soc/i2c0mux/i2c@1/imx219@10`).
    pub id: String,
    /// The sensor mode sizes, each once, in the order listed.
    pub sizes: Vec<String>,
}

/// What the libcamera listing gave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Libcamera {
    /// Neither `rpicam-hello` nor `libcamera-hello` is on `PATH`.
    NotInstalled,
    /// The program answered (an empty list: "No cameras available!").
    Listed {
        /// The program run.
        program: String,
        /// The cameras, in index order.
        cameras: Vec<LibcameraCamera>,
    },
    /// The program failed, or gave no listing.
    Failed {
        /// The program run.
        program: String,
        /// Why, in a line.
        why: String,
    },
}

/// The libcamera cameras, by `rpicam-hello --list-cameras` (else `libcamera-hello`) found on
/// `path` (the `PATH` variable's value).
pub fn libcamera_cameras(path: Option<&OsStr>) -> Libcamera {
    let Some(program) = ["rpicam-hello", "libcamera-hello"]
        .iter()
        .find_map(|name| find_program(name, path))
    else {
        return Libcamera::NotInstalled;
    };
    let name = program
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    match run_bounded(&program, &["--list-cameras"], LIST_TIMEOUT) {
        Err(why) => Libcamera::Failed { program: name, why },
        Ok((stdout, stderr, status)) => {
            // rpicam-apps print the listing on standard output; older libcamera-apps on
            // standard error, beside libcamera's own log lines.
            for text in [&stdout, &stderr] {
                if text.contains("Available cameras") {
                    return Libcamera::Listed {
                        program: name,
                        cameras: parse_list_cameras(text),
                    };
                }
                if text.contains("No cameras available") {
                    return Libcamera::Listed {
                        program: name,
                        cameras: Vec::new(),
                    };
                }
            }
            let last = stderr
                .lines()
                .chain(stdout.lines())
                .rfind(|l| !l.trim().is_empty())
                .unwrap_or("no output")
                .trim()
                .to_string();
            Libcamera::Failed {
                program: name,
                why: format!("{status}: {last}"),
            }
        }
    }
}

/// Parses `--list-cameras` output: a line `N : model [sensor] (id)` per camera, then its
/// `Modes:` lines, `'FORMAT' : WxH [fps - crop] ...`, continued on further lines (the
/// rpicam-apps documentation's example, and the header's newer form with bit depth and
/// colour filter, are both in this module's tests).
pub fn parse_list_cameras(text: &str) -> Vec<LibcameraCamera> {
    let mut cameras: Vec<LibcameraCamera> = Vec::new();
    let mut in_modes = false;
    for line in text.lines() {
        let trimmed = line.trim();
        if let Some(camera) = camera_line(trimmed) {
            cameras.push(camera);
            in_modes = false;
            continue;
        }
        let Some(camera) = cameras.last_mut() else {
            continue;
        };
        if let Some(rest) = trimmed.strip_prefix("Modes:") {
            in_modes = true;
            add_sizes(&mut camera.sizes, rest);
        } else if in_modes && !trimmed.is_empty() && !trimmed.starts_with("Available controls") {
            add_sizes(&mut camera.sizes, trimmed);
        } else {
            in_modes = false;
        }
    }
    cameras
}

/// `0 : imx219 [3280x2464] (/base/soc/i2c0mux/i2c@1/imx219@10)`.
fn camera_line(line: &str) -> Option<LibcameraCamera> {
    let (index, rest) = line.split_once(" : ")?;
    let index = index.trim().parse::<u32>().ok()?;
    let (model, rest) = rest.split_once(" [")?;
    let (sensor, rest) = rest.split_once(']')?;
    let id = rest
        .trim()
        .strip_prefix('(')
        .and_then(|r| r.strip_suffix(')'))
        .unwrap_or_default();
    Some(LibcameraCamera {
        index,
        model: model.trim().to_string(),
        sensor: sensor.trim().to_string(),
        id: id.to_string(),
        sizes: Vec::new(),
    })
}

/// Adds the `WxH` words of a mode line (not the crop rectangles, which follow a `/`).
fn add_sizes(sizes: &mut Vec<String>, line: &str) {
    for word in line.split_whitespace() {
        let Some((w, h)) = word.split_once('x') else {
            continue;
        };
        let digits =
            |s: &str| !s.is_empty() && s.len() <= 5 && s.bytes().all(|b| b.is_ascii_digit());
        if digits(w) && digits(h) && !sizes.iter().any(|s| s == word) && sizes.len() < MAX_SIZES {
            sizes.push(word.to_string());
        }
    }
}

/// The first executable file `name` in the directories of `path` (a `PATH` value).
fn find_program(name: &str, path: Option<&OsStr>) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    std::env::split_paths(path?)
        .map(|dir| dir.join(name))
        .find(|p| {
            std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}

/// Runs `program args` with no input, reading at most [`MAX_LIST_OUTPUT`] of each output, for at
/// most `limit` (then it is killed): (stdout, stderr, exit status as text).
fn run_bounded(
    program: &Path,
    args: &[&str],
    limit: Duration,
) -> Result<(String, String, String), String> {
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run: {e}"))?;
    let reader = |pipe: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            if let Some(pipe) = pipe {
                let _ = pipe.take(MAX_LIST_OUTPUT).read_to_end(&mut bytes);
            }
            String::from_utf8_lossy(&bytes).into_owned()
        })
    };
    let stdout = reader(
        child
            .stdout
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let stderr = reader(
        child
            .stderr
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let deadline = Instant::now() + limit;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
            Ok(None) | Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("no answer within {} s", limit.as_secs_f64()));
            }
        }
    };
    let join = |h: std::thread::JoinHandle<String>| h.join().unwrap_or_default();
    Ok((join(stdout), join(stderr), status.to_string()))
}

/// What a configured camera gave when opened once.
#[derive(Debug, Clone, PartialEq)]
pub enum FirstFrame {
    /// A frame, decoded.
    Frame {
        /// The source's own description (redacted).
        source: String,
        /// Its size.
        width: usize,
        /// Its size.
        height: usize,
        /// From opening to the frame.
        after: Duration,
    },
    /// No frame: why (redacted).
    Failed(String),
}

/// Opens `spec` once and waits up to `limit` for a frame it can decode.
pub fn first_frame(
    spec: &SourceSpec,
    access: &HttpAccess,
    options: &SourceOptions,
    limit: Duration,
) -> FirstFrame {
    let secrets = spec.secrets();
    let safe = |text: String| sources::spec::scrub(&text, &secrets);
    let started = Instant::now();
    let mut source = match sources::open(spec, access, options) {
        Ok(source) => source,
        Err(e) => return FirstFrame::Failed(safe(e.to_string())),
    };
    loop {
        match source.next_frame() {
            Ok(frame) => {
                return match frame.to_rgb(MAX_FRAME_PIXELS) {
                    Ok(image) => FirstFrame::Frame {
                        source: safe(source.describe()),
                        width: image.width,
                        height: image.height,
                        after: started.elapsed(),
                    },
                    Err(e) => FirstFrame::Failed(format!("its first frame is unreadable: {e}")),
                }
            }
            Err(SourceError::NoFrameYet) if started.elapsed() < limit => continue,
            Err(SourceError::NoFrameYet) => {
                return FirstFrame::Failed(format!("no frame within {} s", limit.as_secs()))
            }
            Err(SourceError::Ended) => {
                return FirstFrame::Failed("the source ended before its first frame".into())
            }
            Err(e) => return FirstFrame::Failed(safe(e.to_string())),
        }
    }
}

/// A camera `serve` would run, by its settings.
#[derive(Debug, Clone)]
pub struct Configured {
    /// Its name (`CAMERA_NAME`, `CAMERA_<N>_NAME`).
    pub name: String,
    /// Its direction (`in`, `out`), when set.
    pub direction: Option<&'static str>,
    /// Where its frames come from.
    pub spec: SourceSpec,
    /// Its HTTP key and certificate fingerprint.
    pub access: HttpAccess,
}

/// Everything `cameras` found.
#[derive(Debug, Clone)]
pub struct Report {
    /// The V4L2 nodes.
    pub nodes: Vec<V4l2Node>,
    /// The libcamera listing.
    pub libcamera: Libcamera,
    /// Each configured camera and its first frame.
    pub configured: Vec<(Configured, FirstFrame)>,
}

impl Report {
    /// Whether any camera was found: a V4L2 node the box can use (directly or by libcamera),
    /// a libcamera camera, or a configured camera that gave a frame.
    pub fn found_any(&self) -> bool {
        let node = self.nodes.iter().any(|n| {
            matches!(
                n.info.as_ref().map(classify),
                Ok(Verdict::Usable(_) | Verdict::CsiRaw)
            )
        });
        let libcamera =
            matches!(&self.libcamera, Libcamera::Listed { cameras, .. } if !cameras.is_empty());
        let configured = self
            .configured
            .iter()
            .any(|(_, f)| matches!(f, FirstFrame::Frame { .. }));
        node || libcamera || configured
    }

    /// Success: some camera was found, and every configured camera gave a frame.
    pub fn exit_ok(&self) -> bool {
        self.found_any()
            && self
                .configured
                .iter()
                .all(|(_, f)| matches!(f, FirstFrame::Frame { .. }))
    }

    /// The report as text, one section per kind of camera, each entry with the setting to use.
    pub fn render(&self) -> String {
        let mut out = String::new();
        self.render_v4l2(&mut out);
        self.render_libcamera(&mut out);
        self.render_configured(&mut out);
        out
    }

    fn render_v4l2(&self, out: &mut String) {
        use std::fmt::Write;
        if self.nodes.is_empty() {
            out.push_str("V4L2 devices: none (no /dev/video*)\n");
            return;
        }
        out.push_str("V4L2 devices:\n");
        for node in &self.nodes {
            let _ = write!(out, "  {}", node.path.display());
            let info = match &node.info {
                Ok(info) => info,
                Err(why) => {
                    let _ = writeln!(out, ": {why}");
                    continue;
                }
            };
            let _ = writeln!(out, "  {}  \"{}\"  {}", info.driver, info.card, info.bus);
            for name in &node.stable_names {
                let _ = writeln!(out, "    {}", name.display());
            }
            for format in &info.formats {
                let sizes: Vec<String> = format.sizes.iter().map(|s| s.to_string()).collect();
                let more = match format.more_sizes {
                    0 => String::new(),
                    n => format!(" (+{n} more)"),
                };
                let _ = writeln!(
                    out,
                    "    {} ({}): {}{more}",
                    format.fourcc,
                    format.description,
                    sizes.join(" ")
                );
            }
            let setting = node.setting().display();
            let verdict = match classify(info) {
                Verdict::Usable(fourcc) => {
                    format!("a camera ({fourcc}): CAMERA_DEVICE={setting}")
                }
                Verdict::CsiRaw => "the Camera Module's raw sensor receiver, not readable \
                                    directly: CAMERA_DEVICE=libcamera"
                    .to_string(),
                Verdict::MetadataOnly => "metadata only, no picture: not this one".to_string(),
                Verdict::NotACamera(what) => format!("not a camera: {what}"),
                Verdict::NoUsableFormat => {
                    "neither MJPEG nor YUYV: the box cannot read it".to_string()
                }
            };
            let _ = writeln!(out, "    -> {verdict}");
        }
    }

    fn render_libcamera(&self, out: &mut String) {
        use std::fmt::Write;
        match &self.libcamera {
            Libcamera::NotInstalled => {
                let csi = self
                    .nodes
                    .iter()
                    .any(|n| matches!(n.info.as_ref().map(classify), Ok(Verdict::CsiRaw)));
                out.push_str("libcamera cameras: rpicam-hello is not installed");
                if csi {
                    out.push_str(
                        " (needed for the Camera Module: sudo apt install rpicam-apps-lite)",
                    );
                }
                out.push('\n');
            }
            Libcamera::Failed { program, why } => {
                let _ = writeln!(
                    out,
                    "libcamera cameras: {program} --list-cameras failed: {why}"
                );
            }
            Libcamera::Listed { program, cameras } if cameras.is_empty() => {
                let _ = writeln!(out, "libcamera cameras ({program}): none");
            }
            Libcamera::Listed { program, cameras } => {
                let _ = writeln!(out, "libcamera cameras ({program}):");
                for c in cameras {
                    let _ = writeln!(
                        out,
                        "  libcamera:{}  {} [{}]  {}",
                        c.index, c.model, c.sensor, c.id
                    );
                    if !c.sizes.is_empty() {
                        let _ = writeln!(out, "    sensor modes: {}", c.sizes.join(" "));
                    }
                    let setting = match c.index {
                        0 => "libcamera".to_string(),
                        n => format!("libcamera:{n}"),
                    };
                    let _ = writeln!(out, "    -> CAMERA_DEVICE={setting}");
                }
            }
        }
    }

    fn render_configured(&self, out: &mut String) {
        use std::fmt::Write;
        if self.configured.is_empty() {
            out.push_str(
                "Configured cameras: none (CAMERA_DEVICE, CAMERA_FRAMES and CAMERA_<N>_DEVICE unset)\n",
            );
            return;
        }
        out.push_str("Configured cameras:\n");
        for (camera, frame) in &self.configured {
            let direction = camera
                .direction
                .map(|d| format!(" ({d})"))
                .unwrap_or_default();
            let _ = write!(
                out,
                "  {}{direction}, {}: ",
                camera.name,
                camera.spec.redacted()
            );
            let _ = match frame {
                FirstFrame::Frame {
                    source,
                    width,
                    height,
                    after,
                } => writeln!(
                    out,
                    "first frame {width}x{height} after {:.1} s ({source})",
                    after.as_secs_f64()
                ),
                FirstFrame::Failed(why) => writeln!(out, "no frame: {why}"),
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn format(fourcc: &str, description: &str) -> FormatInfo {
        FormatInfo {
            fourcc: fourcc.into(),
            description: description.into(),
            sizes: vec![FrameSizes::Discrete(640, 480)],
            more_sizes: 0,
        }
    }

    fn node(driver: &str, caps: u32, formats: Vec<FormatInfo>) -> NodeInfo {
        NodeInfo {
            driver: driver.into(),
            card: "card".into(),
            bus: "bus".into(),
            caps,
            formats,
        }
    }

    const CAPTURE: u32 = CAP_VIDEO_CAPTURE;

    #[test]
    fn nodes_are_told_apart_as_the_box_sees_them() {
        // A UVC webcam: MJPEG preferred over YUYV, whatever the order.
        let webcam = node(
            "uvcvideo",
            CAPTURE,
            vec![format("YUYV", "YUYV 4:2:2"), format("MJPG", "Motion-JPEG")],
        );
        assert_eq!(classify(&webcam), Verdict::Usable("MJPG"));
        let yuyv_only = node("uvcvideo", CAPTURE, vec![format("YUYV", "YUYV 4:2:2")]);
        assert_eq!(classify(&yuyv_only), Verdict::Usable("YUYV"));
        // Its second node: metadata only.
        let meta = node("uvcvideo", CAP_META_CAPTURE, vec![]);
        assert_eq!(classify(&meta), Verdict::MetadataOnly);
        // A Pi 4's unicam node offers YUYV beside the Bayer formats (for YUV bridges), which
        // never carries the Camera Module's picture: the driver decides.
        let unicam = node(
            "unicam",
            CAPTURE,
            vec![
                format("YUYV", "YUYV 4:2:2"),
                format("pRAA", "10-bit Bayer RGRG/GBGB Packed"),
            ],
        );
        assert_eq!(classify(&unicam), Verdict::CsiRaw);
        let cfe = node(
            "rp1-cfe",
            CAPTURE,
            vec![format("PC1R", "PiSP 8b RGRG/GBGB mode1 compr")],
        );
        assert_eq!(classify(&cfe), Verdict::CsiRaw);
        // Any other driver offering only raw formats: a raw sensor, libcamera's job too.
        let raw = node(
            "other-csi",
            CAPTURE,
            vec![
                format("RG10", "10-bit Bayer RGRG/GBGB"),
                format("Y10P", "10-bit Greyscale (MIPI Packed)"),
            ],
        );
        assert_eq!(classify(&raw), Verdict::CsiRaw);
        // A greyscale camera is not raw, but the box cannot read it either.
        let grey = node("uvcvideo", CAPTURE, vec![format("GREY", "8-bit Greyscale")]);
        assert_eq!(classify(&grey), Verdict::NoUsableFormat);
        // The Pi's codecs and ISP are not cameras, even with capture formats.
        let codec = node("bcm2835-codec", CAP_VIDEO_M2M_MPLANE, vec![]);
        assert!(matches!(classify(&codec), Verdict::NotACamera(_)));
        let isp = node("bcm2835-isp", CAPTURE, vec![format("YUYV", "YUYV 4:2:2")]);
        assert!(matches!(classify(&isp), Verdict::NotACamera(_)));
        let output = node("vivid", 0x2, vec![]);
        assert!(matches!(classify(&output), Verdict::NotACamera(_)));
    }

    /// The example of `--list-cameras` in the rpicam-apps documentation (raspberrypi/
    /// documentation, documentation/asciidoc/computers/camera/rpicam_options_common.adoc,
    /// "list-cameras"): the same text as tests/fixtures/rpicam-hello prints.
    const DOCUMENTED: &str = include_str!("../../tests/fixtures/rpicam-list-cameras.txt");

    #[test]
    fn the_documented_listing_is_parsed() {
        let cameras = parse_list_cameras(DOCUMENTED);
        assert_eq!(cameras.len(), 2, "{cameras:?}");
        assert_eq!(cameras[0].index, 0);
        assert_eq!(cameras[0].model, "imx219");
        assert_eq!(cameras[0].sensor, "3280x2464");
        assert_eq!(cameras[0].id, "/base/soc/i2c0mux/i2c@1/imx219@10");
        assert_eq!(
            cameras[0].sizes,
            ["640x480", "1640x1232", "1920x1080", "3280x2464"]
        );
        assert_eq!(cameras[1].index, 1);
        assert_eq!(cameras[1].model, "imx477");
        assert_eq!(
            cameras[1].sizes,
            ["1332x990", "2028x1080", "2028x1520", "4056x3040"]
        );
    }

    #[test]
    fn the_newer_header_and_verbose_controls_are_parsed() {
        // rpicam-apps since 2023 add bit depth and colour filter in the brackets (its
        // core/options.cpp), and `-v` adds the controls, which are not modes.
        let text = "Available cameras\n-----------------\n\
            0 : imx708_wide [4608x2592 10-bit RGGB] (/base/axi/pcie@120000/rp1/i2c@88000/imx708@1a)\n\
            \x20   Modes: 'SRGGB10_CSI2P' : 1536x864 [120.13 fps - (768, 432)/3072x1728 crop]\n\
            \x20                            2304x1296 [56.03 fps - (0, 0)/4608x2592 crop]\n\
            \n\
            \x20   Available controls for 2304x1296 SRGGB10_CSI2P mode:\n\
            \x20   ScalerCrop : [(0, 0)/64x64..(0, 0)/4608x2592]\n";
        let cameras = parse_list_cameras(text);
        assert_eq!(cameras.len(), 1);
        assert_eq!(cameras[0].model, "imx708_wide");
        assert_eq!(cameras[0].sensor, "4608x2592 10-bit RGGB");
        assert_eq!(cameras[0].sizes, ["1536x864", "2304x1296"]);
        assert!(parse_list_cameras("No cameras available!\n").is_empty());
        // Log lines and garbage are not cameras.
        assert!(parse_list_cameras(
            "[0:01:43.688] [2074]  INFO Camera camera_manager.cpp:284 x\n1 : \n : [\n"
        )
        .is_empty());
    }

    #[test]
    fn a_program_that_hangs_is_killed_at_the_limit() {
        let started = Instant::now();
        let err = run_bounded(Path::new("/bin/sleep"), &["30"], Duration::from_millis(300));
        assert_eq!(err.unwrap_err(), "no answer within 0.3 s");
        assert!(started.elapsed() < Duration::from_secs(10));
        let (out, _, status) =
            run_bounded(Path::new("/bin/echo"), &["hello"], Duration::from_secs(10)).unwrap();
        assert_eq!(out, "hello\n");
        assert!(status.contains('0'), "{status}");
    }

    #[test]
    fn no_dev_folder_means_no_nodes() {
        let dir = tempfile::tempdir().unwrap();
        assert!(v4l2_nodes(dir.path()).is_empty());
        assert!(v4l2_nodes(&dir.path().join("missing")).is_empty());
        // A file named like a node that is not a device is listed with why it is not one.
        std::fs::write(dir.path().join("video3"), b"").unwrap();
        std::fs::write(dir.path().join("video-notanode"), b"").unwrap();
        let nodes = v4l2_nodes(dir.path());
        assert_eq!(nodes.len(), 1);
        assert!(nodes[0].info.is_err(), "{:?}", nodes[0].info);
    }
}
