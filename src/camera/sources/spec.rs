//! What `CAMERA_DEVICE` (and `CAMERA_<N>_DEVICE`) says: where one camera's frames come from.
//! Parsing and redaction only; nothing here opens anything.
//!
//! Contract:
//! - a value is one of: a V4L2 device path (`/dev/video0`, `/dev/v4l/by-id/...`; any value
//!   without a `:` is a path, as the setting always was), `libcamera` or `libcamera:N`,
//!   `rtsp://` / `rtsps://`, `http://` / `https://`, `exec:COMMAND`, `frames:PATH`; anything else
//!   is refused with the list of what is accepted;
//! - [`SourceSpec::redacted`] is the only way a source is shown (logs, `/health`, `/config`,
//!   `/metrics`, the retained MQTT health message): a URL's user and password and its query
//!   string (where cameras put `user=` and `pwd=`) are replaced by `***`, in URLs inside an
//!   `exec:` command too; [`SourceSpec::secrets`] lists the strings a child program's standard
//!   error must be scrubbed of before it is logged ([`scrub`]).

use std::path::PathBuf;

use percent_encoding::percent_decode_str;

/// Where a camera's frames come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceSpec {
    /// A V4L2 device node (a USB webcam): MJPEG or YUYV.
    V4l2(PathBuf),
    /// The Raspberry Pi camera stack through `rpicam-vid` (or the older `libcamera-vid`): the
    /// camera with this index.
    Libcamera(u32),
    /// An IP camera's RTSP stream (`rtsp://` or `rtsps://`), decoded by FFmpeg.
    Rtsp(String),
    /// A `multipart/x-mixed-replace` MJPEG stream or a JPEG snapshot over HTTP(S).
    Http(String),
    /// A program (run by `sh -c`) writing MJPEG to its standard output.
    Exec(String),
    /// Replayed frames: a folder of JPEGs, one image, or an MJPEG file (or pipe).
    Frames(PathBuf),
}

/// The most cameras a libcamera index may name.
const MAX_LIBCAMERA_INDEX: u32 = 15;

const ACCEPTED: &str = "a V4L2 device (/dev/video0, /dev/v4l/by-id/...), libcamera or \
libcamera:N, rtsp://..., rtsps://..., http://..., https://..., exec:COMMAND or frames:PATH";

impl std::str::FromStr for SourceSpec {
    type Err = String;

    fn from_str(value: &str) -> Result<SourceSpec, String> {
        let value = value.trim();
        if value.is_empty() {
            return Err(format!("an empty camera; give {ACCEPTED}"));
        }
        if value.chars().any(char::is_control) {
            return Err("a camera with control characters in it".into());
        }
        let lower = value.to_ascii_lowercase();
        if lower == "libcamera" {
            return Ok(SourceSpec::Libcamera(0));
        }
        if let Some(index) = lower.strip_prefix("libcamera:") {
            return match index.parse::<u32>() {
                Ok(n) if n <= MAX_LIBCAMERA_INDEX => Ok(SourceSpec::Libcamera(n)),
                _ => Err(format!(
                    "libcamera:{index}: the camera index must be 0 to {MAX_LIBCAMERA_INDEX} \
                     (`face-attendance cameras` lists them)"
                )),
            };
        }
        for (scheme, make) in [
            ("rtsp://", SourceSpec::Rtsp as fn(String) -> SourceSpec),
            ("rtsps://", SourceSpec::Rtsp),
            ("http://", SourceSpec::Http),
            ("https://", SourceSpec::Http),
        ] {
            if lower.starts_with(scheme) {
                let url = &value[scheme.len()..];
                let host = authority(url).rsplit('@').next().unwrap_or_default();
                if host.is_empty() || host.starts_with(':') {
                    return Err(format!("{}: no host", redact_url(value)));
                }
                if value.contains(char::is_whitespace) {
                    return Err(format!("{}: a URL with spaces in it", redact_url(value)));
                }
                return Ok(make(value.to_string()));
            }
        }
        if let Some(command) = value.strip_prefix("exec:") {
            let command = command.trim();
            if command.is_empty() {
                return Err("exec: needs a command that writes MJPEG to its output".into());
            }
            return Ok(SourceSpec::Exec(command.to_string()));
        }
        if let Some(path) = value.strip_prefix("frames:") {
            if path.is_empty() {
                return Err("frames: needs a folder, an image or an MJPEG file".into());
            }
            return Ok(SourceSpec::Frames(PathBuf::from(path)));
        }
        if value.contains(':') {
            return Err(format!(
                "{}: not a camera this box knows; give {ACCEPTED}",
                scrub(value, &[])
            ));
        }
        Ok(SourceSpec::V4l2(PathBuf::from(value)))
    }
}

/// The `user:password@host:port` part of a URL after its scheme.
fn authority(after_scheme: &str) -> &str {
    let end = after_scheme
        .find(['/', '?', '#'])
        .unwrap_or(after_scheme.len());
    &after_scheme[..end]
}

/// `scheme://user:pass@host/path?query` as `scheme://***@host/path?***`.
fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let auth = authority(rest);
    let mut out = format!("{scheme}://");
    if let Some((_, host)) = auth.rsplit_once('@') {
        out.push_str("***@");
        out.push_str(host);
    } else {
        out.push_str(auth);
    }
    let tail = &rest[auth.len()..];
    let tail = tail.split('#').next().unwrap_or_default();
    match tail.split_once('?') {
        Some((path, _)) => {
            out.push_str(path);
            out.push_str("?***");
        }
        None => out.push_str(tail),
    }
    out
}

/// `text` with every URL in it redacted (user, password, query) and every one of `secrets`
/// replaced by `***`: for a child program's standard error and anything else shown of a source.
pub fn scrub(text: &str, secrets: &[String]) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("://") {
        // The URL starts after the last separator before its `://`.
        let start = rest[..at]
            .rfind(|c: char| c.is_whitespace() || matches!(c, '\'' | '"' | '(' | '<' | '='))
            .map_or(0, |i| i + 1);
        let end = at
            + rest[at..]
                .find(|c: char| c.is_whitespace() || matches!(c, '\'' | '"' | ')' | '>'))
                .unwrap_or(rest.len() - at);
        out.push_str(&rest[..start]);
        out.push_str(&redact_url(&rest[start..end]));
        rest = &rest[end..];
    }
    out.push_str(rest);
    for secret in secrets.iter().filter(|s| s.len() >= 3) {
        out = out.replace(secret.as_str(), "***");
    }
    out
}

impl SourceSpec {
    /// The source as it may be shown anywhere: credentials and query strings redacted.
    pub fn redacted(&self) -> String {
        match self {
            SourceSpec::V4l2(path) => path.display().to_string(),
            SourceSpec::Libcamera(n) => format!("libcamera:{n}"),
            SourceSpec::Rtsp(url) | SourceSpec::Http(url) => redact_url(url),
            SourceSpec::Exec(command) => format!("exec:{}", scrub(command, &[])),
            SourceSpec::Frames(path) => format!("frames:{}", path.display()),
        }
    }

    /// What must never be shown of this source: a URL's user information and query string, as
    /// written and percent-decoded (for [`scrub`]ing a child program's messages).
    pub fn secrets(&self) -> Vec<String> {
        let mut secrets = Vec::new();
        let mut add = |s: &str| {
            for part in [
                s.to_string(),
                percent_decode_str(s).decode_utf8_lossy().into_owned(),
            ] {
                if !part.is_empty() && !secrets.contains(&part) {
                    secrets.push(part);
                }
            }
        };
        let text = match self {
            SourceSpec::Rtsp(url) | SourceSpec::Http(url) | SourceSpec::Exec(url) => url,
            _ => return secrets,
        };
        let mut rest = text.as_str();
        while let Some(at) = rest.find("://") {
            rest = &rest[at + 3..];
            let url_end = rest.find(char::is_whitespace).unwrap_or(rest.len());
            let url = &rest[..url_end];
            let auth = authority(url);
            if let Some((user_info, _)) = auth.rsplit_once('@') {
                add(user_info);
                for part in user_info.split(':') {
                    add(part);
                }
            }
            if let Some((_, query)) = url.split_once('?') {
                let query = query.split('#').next().unwrap_or_default();
                add(query);
                for pair in query.split('&') {
                    add(pair.split_once('=').map_or(pair, |(_, v)| v));
                }
            }
            rest = &rest[url_end..];
        }
        secrets
    }

    /// Whether frames come from a program this box starts (libcamera, RTSP, `exec:`).
    pub fn is_child_program(&self) -> bool {
        matches!(
            self,
            SourceSpec::Libcamera(_) | SourceSpec::Rtsp(_) | SourceSpec::Exec(_)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<SourceSpec, String> {
        s.parse()
    }

    #[test]
    fn every_kind_parses_and_old_paths_stay_paths() {
        assert_eq!(
            parse("/dev/video0"),
            Ok(SourceSpec::V4l2("/dev/video0".into()))
        );
        let by_id = "/dev/v4l/by-id/usb-046d_HD_Pro_Webcam_C920-video-index0";
        assert_eq!(parse(by_id), Ok(SourceSpec::V4l2(by_id.into())));
        assert_eq!(parse("video0"), Ok(SourceSpec::V4l2("video0".into())));
        assert_eq!(parse("libcamera"), Ok(SourceSpec::Libcamera(0)));
        assert_eq!(parse(" libcamera:1 "), Ok(SourceSpec::Libcamera(1)));
        assert!(parse("libcamera:16").is_err());
        assert!(parse("libcamera:x").is_err());
        assert_eq!(
            parse("RTSP://cam/stream1"),
            Ok(SourceSpec::Rtsp("RTSP://cam/stream1".into()))
        );
        assert!(matches!(
            parse("rtsps://cam:322/s"),
            Ok(SourceSpec::Rtsp(_))
        ));
        assert!(matches!(
            parse("https://box:8443/stream.mjpg"),
            Ok(SourceSpec::Http(_))
        ));
        assert_eq!(
            parse("exec:ffmpeg -i x -f mjpeg -"),
            Ok(SourceSpec::Exec("ffmpeg -i x -f mjpeg -".into()))
        );
        assert_eq!(
            parse("frames:/tmp/f"),
            Ok(SourceSpec::Frames("/tmp/f".into()))
        );
        for bad in [
            "",
            "exec:",
            "frames:",
            "rtsp://",
            "http://@/x",
            "rtsp://:554/x",
            "ftp://cam/x",
            "http://cam/a b",
            "/dev/video0\n",
        ] {
            assert!(
                parse(bad).is_err() || bad.ends_with('\n'),
                "{bad:?} accepted"
            );
        }
        assert!(parse("/dev/vid\neo0").is_err());
    }

    #[test]
    fn credentials_never_show() {
        let s = parse("rtsp://admin:s3cret%21@10.0.0.5:554/Streaming/101?user=bob&pwd=hunter2")
            .unwrap();
        assert_eq!(s.redacted(), "rtsp://***@10.0.0.5:554/Streaming/101?***");
        let secrets = s.secrets();
        for want in ["admin", "s3cret%21", "s3cret!", "hunter2", "bob"] {
            assert!(secrets.iter().any(|x| x == want), "{want} in {secrets:?}");
        }
        let line = "[rtsp @ 0x55] method DESCRIBE failed: 401 rtsp://admin:s3cret%21@10.0.0.5:554/Streaming/101?user=bob&pwd=hunter2 and s3cret! again";
        let clean = scrub(line, &secrets);
        for secret in ["admin", "s3cret", "hunter2", "bob"] {
            assert!(!clean.contains(secret), "{clean}");
        }
        assert!(clean.contains("10.0.0.5:554/Streaming/101"), "{clean}");
        let e = parse("exec:ffmpeg -i 'rtsp://u:p4ss@cam/x' -f mjpeg -").unwrap();
        assert_eq!(e.redacted(), "exec:ffmpeg -i 'rtsp://***@cam/x' -f mjpeg -");
        assert!(e.secrets().contains(&"p4ss".to_string()));
        let h = parse("http://cam/snap.jpg").unwrap();
        assert_eq!(h.redacted(), "http://cam/snap.jpg");
        assert!(h.secrets().is_empty());
        let err = parse("foo://u:pw9@cam").unwrap_err();
        assert!(!err.contains("pw9"), "{err}");
    }
}
