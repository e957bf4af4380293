//! Camera sources that run a program (`exec:`, RTSP through FFmpeg), with real programs: FFmpeg
//! writing MJPEG of real photos, a program that exits, one that stalls, one that starts another
//! and stalls, one that floods its standard error, one that writes garbage, cut and oversize
//! frames. What a source leaves behind after it is dropped is checked in /proc: the program and
//! its group gone (no zombie), the reader threads gone, the pipes closed.

mod common;

use std::collections::HashSet;
use std::path::Path;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use face_attendance::camera::frame::RawFrame;
use face_attendance::camera::sources::{
    self, FrameSource, HttpAccess, Skipped, SourceError, SourceOptions, SourceSpec,
};

/// Warnings logged by this test binary (the sources' standard error lines).
fn logged() -> &'static Mutex<Vec<String>> {
    static LINES: OnceLock<Mutex<Vec<String>>> = OnceLock::new();
    LINES.get_or_init(|| Mutex::new(Vec::new()))
}

struct Capture;

impl log::Log for Capture {
    fn enabled(&self, metadata: &log::Metadata) -> bool {
        metadata.level() <= log::Level::Warn
    }
    fn log(&self, record: &log::Record) {
        if self.enabled(record.metadata()) {
            logged().lock().unwrap().push(format!("{}", record.args()));
        }
    }
    fn flush(&self) {}
}

fn capture_logs() {
    static ONCE: OnceLock<()> = OnceLock::new();
    ONCE.get_or_init(|| {
        log::set_boxed_logger(Box::new(Capture)).unwrap();
        log::set_max_level(log::LevelFilter::Warn);
    });
}

fn logged_with(marker: &str) -> Vec<String> {
    logged()
        .lock()
        .unwrap()
        .iter()
        .filter(|l| l.contains(marker))
        .cloned()
        .collect()
}

fn have_ffmpeg() -> bool {
    let ok = std::process::Command::new("ffmpeg")
        .arg("-version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        common::skip_unless_required("ffmpeg is not installed");
    }
    ok
}

fn photo(name: &str) -> String {
    let path = common::faces_dir().join(name);
    assert!(path.is_file(), "{}", path.display());
    path.display().to_string()
}

fn open(spec: &str, options: &SourceOptions) -> Box<dyn FrameSource> {
    let spec: SourceSpec = spec.parse().unwrap();
    sources::open(&spec, &HttpAccess::default(), options).unwrap()
}

/// The next answer that is not `NoFrameYet`, within `limit`; each call returns within about
/// a second (the sources' contract).
fn next_answer(source: &mut dyn FrameSource, limit: Duration) -> Result<RawFrame, SourceError> {
    let deadline = Instant::now() + limit;
    loop {
        let asked = Instant::now();
        let answer = source.next_frame();
        assert!(
            asked.elapsed() < Duration::from_millis(2500),
            "next_frame blocked"
        );
        match answer {
            Err(SourceError::NoFrameYet) if Instant::now() < deadline => continue,
            other => return other,
        }
    }
}

/// Why `answer` is `Unavailable` (failing the test if it is anything else).
fn why_unavailable(answer: Result<RawFrame, SourceError>) -> String {
    match answer {
        Err(SourceError::Unavailable(why)) => why,
        other => panic!("not unavailable: {other:?}"),
    }
}

/// Fails if any of `secrets` shows in `text`.
fn assert_shows_none(text: &str, secrets: &[&str]) {
    for secret in secrets {
        assert!(!text.contains(secret), "{secret} shows in {text}");
    }
}

/// Live (not zombie) processes of the process group `pgid`.
fn live_in_group(pgid: u32) -> Vec<u32> {
    common::procfs::processes()
        .into_iter()
        .filter(|p| p.group == pgid && p.state != 'Z')
        .map(|p| p.pid)
        .collect()
}

/// Names of this process's threads.
fn thread_names() -> HashSet<String> {
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("comm")).ok())
        .map(|n| n.trim().to_string())
        .collect()
}

/// The pipe inodes (`pipe:[N]`) a process's descriptors `fds` are.
fn pipes_of(pid: u32, fds: &[u32]) -> Vec<String> {
    fds.iter()
        .filter_map(|fd| std::fs::read_link(format!("/proc/{pid}/fd/{fd}")).ok())
        .map(|l| l.display().to_string())
        .filter(|l| l.starts_with("pipe:"))
        .collect()
}

/// Everything this process has open.
fn own_descriptors() -> HashSet<String> {
    std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .flatten()
        .filter_map(|fd| std::fs::read_link(fd.path()).ok())
        .map(|l| l.display().to_string())
        .collect()
}

/// Drops `source` (running program `pid`) and checks that nothing of it is left: the program
/// reaped (no /proc entry, not even a zombie), its group killed, the reader threads joined, the
/// pipes closed on our side.
fn drop_and_check_gone(source: Box<dyn FrameSource>, pid: u32) {
    let pipes = pipes_of(pid, &[1, 2]);
    assert_eq!(pipes.len(), 2, "the program's output and error are pipes");
    assert!(pipes.iter().all(|p| own_descriptors().contains(p)));
    let names = [format!("cam-out-{pid}"), format!("cam-err-{pid}")];
    let threads = thread_names();
    assert!(names.iter().all(|n| threads.contains(n)), "{threads:?}");
    drop(source);
    assert!(
        !Path::new(&format!("/proc/{pid}")).exists(),
        "program {pid} still there (a zombie?)"
    );
    common::wait_for("the program's group to die", Duration::from_secs(5), || {
        live_in_group(pid).is_empty()
    });
    let threads = thread_names();
    assert!(names.iter().all(|n| !threads.contains(n)), "{threads:?}");
    let open = own_descriptors();
    assert!(pipes.iter().all(|p| !open.contains(p)), "pipes still open");
}

#[test]
fn ffmpeg_mjpeg_into_exec_gives_the_real_frames_and_a_drop_ends_everything() {
    if !have_ffmpeg() {
        return;
    }
    let spec = format!(
        "exec:ffmpeg -nostdin -hide_banner -loglevel error -re -loop 1 -framerate 10 -i '{}' \
         -vf scale=640:480 -f mjpeg -q:v 5 -",
        photo("known/obama/obama_1.jpg")
    );
    let mut source = open(&spec, &SourceOptions::default());
    assert!(
        source.describe().starts_with("exec:ffmpeg"),
        "{}",
        source.describe()
    );
    let pid = source.child_pid().expect("a program runs");
    let mut sizes = Vec::new();
    for _ in 0..5 {
        match next_answer(source.as_mut(), Duration::from_secs(20)) {
            Ok(frame) => {
                let rgb = frame.to_rgb(1 << 24).expect("a real JPEG");
                sizes.push((rgb.width, rgb.height));
            }
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(sizes, vec![(640, 480); 5]);
    assert_eq!(source.skipped(), Skipped::default());
    drop_and_check_gone(source, pid);
}

#[test]
fn a_program_that_exits_is_unavailable_with_its_status_and_scrubbed_last_words() {
    capture_logs();
    // The secrets reach its standard error without being in the command line as such.
    let spec = "exec:echo 'starting MARK-EXIT' >&2; \
                echo 'MARK-EXIT cannot open rtsp://admin:hunter22@10.1.2.3/s?pwd=s3cr3tpw' >&2; \
                p=hunter; a=adm; echo \"MARK-EXIT login ${a}in with ${p}22 refused\" >&2; exit 3";
    let mut source = open(spec, &SourceOptions::default());
    assert!(
        !source.describe().contains("hunter22"),
        "{}",
        source.describe()
    );
    let why = why_unavailable(next_answer(source.as_mut(), Duration::from_secs(10)));
    assert!(why.contains("exited with status 3"), "{why}");
    assert!(
        why.contains("MARK-EXIT login *** with *** refused"),
        "{why}"
    );
    // It stays unavailable (the capture thread drops it and opens a new one).
    assert!(matches!(
        source.next_frame(),
        Err(SourceError::Unavailable(_))
    ));
    drop(source);
    let lines = logged_with("MARK-EXIT");
    assert_eq!(lines.len(), 3, "{lines:?}");
    assert!(
        lines
            .iter()
            .any(|l| l.contains("rtsp://***@10.1.2.3/s?***")),
        "{lines:?}"
    );
    for text in lines.iter().chain([&why]) {
        assert_shows_none(text, &["hunter22", "s3cr3tpw", "admin"]);
    }
}

#[test]
fn a_stalled_program_is_unavailable_after_the_stale_time_and_killed_with_its_group() {
    if !have_ffmpeg() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let pid_file = dir.path().join("sleeper");
    // Three frames, then a background sleeper (a grandchild of ours) and a wait: no frame more.
    let spec = format!(
        "exec:ffmpeg -nostdin -loglevel error -loop 1 -i '{}' -frames:v 3 -f mjpeg -; \
         sleep 1000 & echo $! > '{}'; wait",
        photo("known/penny/penny_3.jpg"),
        pid_file.display()
    );
    let options = SourceOptions {
        stale: Duration::from_secs(2),
        ..SourceOptions::default()
    };
    let mut source = open(&spec, &options);
    let pid = source.child_pid().unwrap();
    let first = next_answer(source.as_mut(), Duration::from_secs(20));
    assert!(matches!(first, Ok(RawFrame::Mjpeg(_))), "{first:?}");
    loop {
        match next_answer(source.as_mut(), Duration::from_secs(10)) {
            Ok(_) => continue,
            Err(SourceError::Unavailable(why)) => {
                assert!(why.ends_with("no frame for 2 s"), "{why}");
                break;
            }
            other => panic!("{other:?}"),
        }
    }
    let sleeper: u32 = std::fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(
        live_in_group(pid).contains(&sleeper),
        "the sleeper runs in the group"
    );
    drop_and_check_gone(source, pid);
    assert!(!live_in_group(pid).contains(&sleeper));
}

#[test]
fn garbage_cut_and_oversize_frames_from_a_program_are_counted_and_the_stream_goes_on() {
    let small = std::fs::read(photo("known/penny/penny_3.jpg")).unwrap();
    let big = std::fs::read(photo("known/obama/obama_1.jpg")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let stream = dir.path().join("stream.bin");
    std::fs::write(
        &stream,
        [
            &small[..],
            b"\x00garbage\xff",
            &big,
            &small[..small.len() / 2],
            &small,
        ]
        .concat(),
    )
    .unwrap();
    let options = SourceOptions {
        max_frame_bytes: 100_000,
        ..SourceOptions::default()
    };
    // The stream twice, slowly enough that each frame is taken before the next.
    let spec = format!(
        "exec:for i in 1 2; do cat '{}'; sleep 0.5; done; sleep 1000",
        stream.display()
    );
    let mut source = open(&spec, &options);
    let want = Skipped {
        oversize: 2,
        truncated: 2,
        garbage_bytes: 2 * 9,
    };
    // Newest wins: a frame not taken before the next is replaced, but each pass's last frame
    // waits to be taken (the passes are half a second apart), and every skip is counted.
    let mut frames = 0;
    let mut skipped = Skipped::default();
    let deadline = Instant::now() + Duration::from_secs(10);
    while skipped != want || frames < 2 {
        assert!(Instant::now() < deadline, "{frames} frames, {skipped:?}");
        match source.next_frame() {
            Ok(RawFrame::Mjpeg(f)) => {
                assert_eq!(f, small);
                frames += 1;
            }
            Err(SourceError::NoFrameYet) => {}
            other => panic!("{other:?}"),
        }
        skipped.add(source.skipped());
    }
    let pid = source.child_pid().unwrap();
    drop_and_check_gone(source, pid);
}

#[test]
fn a_flood_on_standard_error_is_rate_limited() {
    capture_logs();
    let spec = "exec:i=0; while [ $i -lt 300 ]; do echo \"MARK-FLOOD line $i\" >&2; \
                i=$((i+1)); done; sleep 1000";
    let options = SourceOptions {
        stale: Duration::from_secs(30),
        ..SourceOptions::default()
    };
    let mut source = open(spec, &options);
    // The program is running and its lines are read (the flood is over in well under 3 s).
    for _ in 0..3 {
        assert_eq!(source.next_frame(), Err(SourceError::NoFrameYet));
    }
    let pid = source.child_pid().unwrap();
    drop_and_check_gone(source, pid);
    let lines = logged_with("MARK-FLOOD");
    let shown: Vec<&String> = lines
        .iter()
        .filter(|l| l.contains(": MARK-FLOOD line"))
        .collect();
    assert_eq!(shown.len(), 20, "{lines:?}");
    assert!(
        lines
            .iter()
            .any(|l| l.ends_with("280 more lines of its standard error not logged")),
        "{lines:?}"
    );
}

#[test]
fn an_rtsp_camera_that_is_not_there_is_unavailable_without_its_password() {
    if !have_ffmpeg() {
        return;
    }
    // A port nothing listens on: FFmpeg (with the argument list of an RTSP source, which it
    // must accept) fails to connect and says so.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    let mut source = open(
        &format!("rtsp://viewer:pa55word9@127.0.0.1:{port}/stream1?token=t0ps3cret"),
        &SourceOptions::default(),
    );
    assert_eq!(
        source.describe(),
        format!("rtsp://***@127.0.0.1:{port}/stream1?***")
    );
    let why = why_unavailable(next_answer(source.as_mut(), Duration::from_secs(15)));
    assert!(why.contains("exited with status"), "{why}");
    assert!(why.to_lowercase().contains("connection refused"), "{why}");
    assert_shows_none(&why, &["pa55word9", "t0ps3cret", "viewer"]);
}

#[test]
fn frames_of_a_fifo_that_ffmpeg_writes_are_read_as_they_come() {
    if !have_ffmpeg() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("camera.mjpg");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(made.success());
    let options = SourceOptions {
        replay_fps: 100.0,
        ..SourceOptions::default()
    };
    // Opened before anything writes: no wait.
    let mut source = open(&format!("frames:{}", fifo.display()), &options);
    assert_eq!(source.next_frame(), Err(SourceError::NoFrameYet));
    let mut ffmpeg = std::process::Command::new("ffmpeg")
        .args(["-nostdin", "-loglevel", "error", "-y", "-re", "-loop", "1"])
        .args(["-framerate", "10", "-i", &photo("known/obama/obama_2.jpg")])
        .args([
            "-frames:v",
            "8",
            "-vf",
            "scale=640:480",
            "-f",
            "mjpeg",
            "-q:v",
            "5",
        ])
        .arg(&fifo)
        .spawn()
        .unwrap();
    let mut frames = 0;
    loop {
        match next_answer(source.as_mut(), Duration::from_secs(20)) {
            Ok(frame) => {
                let rgb = frame.to_rgb(1 << 24).unwrap();
                assert_eq!((rgb.width, rgb.height), (640, 480));
                frames += 1;
            }
            Err(SourceError::Ended) => break,
            other => panic!("{other:?}"),
        }
    }
    assert!(ffmpeg.wait().unwrap().success());
    assert_eq!(frames, 8);
    assert_eq!(source.skipped(), Skipped::default());
}

#[test]
fn a_program_gets_no_secret_of_the_service_from_its_environment() {
    // The service's settings carry its keys; a camera program needs none of them. (Set once,
    // before the program starts; no other test of this file reads these variables.)
    std::env::set_var("ATTENDANCE_API_KEY", "main-api-secret-in-env");
    std::env::set_var("LIBCAMERA_LOG_LEVELS", "*:ERROR");
    let spec = "exec:env >&2; if env | grep -q main-api-secret-in-env; then echo LEAKED >&2; \
                else echo KEPT-OUT >&2; fi; exit 4";
    let mut source = open(spec, &SourceOptions::default());
    let why = why_unavailable(next_answer(source.as_mut(), Duration::from_secs(10)));
    assert!(why.contains("KEPT-OUT"), "{why}");
    drop(source);
    // What libcamera reads is passed on, and a search path to find programs by.
    let spec = "exec:test \"$LIBCAMERA_LOG_LEVELS\" = '*:ERROR' && test -n \"$PATH\" \
                && echo PASSED-ON >&2; exit 5";
    let mut source = open(spec, &SourceOptions::default());
    let why = why_unavailable(next_answer(source.as_mut(), Duration::from_secs(10)));
    assert!(why.contains("PASSED-ON"), "{why}");
}
