//! tests/fixtures/rtsp-server (GStreamer's RTSP server through python3-gi): the URL it serves,
//! from the line it prints once it listens.

use std::io::{BufRead, BufReader};
use std::process::Child;

/// Reads the fixture's `rtsp-server ready URL` line from `child`'s piped standard output and
/// returns the URL; fails the test when the first line is anything else.
pub fn ready_url(child: &mut Child) -> String {
    let stdout = child.stdout.take().expect("rtsp-server's stdout is piped");
    let mut line = String::new();
    BufReader::new(stdout)
        .read_line(&mut line)
        .expect("rtsp-server's first line");
    line.trim()
        .strip_prefix("rtsp-server ready ")
        .unwrap_or_else(|| panic!("rtsp-server did not start: {line:?}"))
        .to_string()
}
