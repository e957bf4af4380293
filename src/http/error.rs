//! Every answer that is not a 200 becomes `{"ok":false,"error":"…"}` with its status, here and
//! only here. What the client reads never holds a server path or an OS error: the server's own
//! trouble is logged in full ([`ApiError::log_detail`]) and answered in plain words.

use serde_json::Value;
use thiserror::Error;

use crate::error::Error;
use crate::gallery::GalleryError;
use crate::image_io::ImageError;
use crate::unknowns::UnknownsError;

/// An answer that is not a 200.
#[derive(Debug, Error)]
pub enum ApiError {
    /// 400: the request is malformed (the sentence says how).
    #[error("{0}")]
    BadRequest(String),
    /// 404: nothing there (what was looked for).
    #[error("not found: {0}")]
    NotFound(String),
    /// 405: the path exists, not with this method (`Allow` lists the methods).
    #[error("method {method} not allowed on {path}; use {allowed}")]
    MethodNotAllowed {
        /// The method asked.
        method: String,
        /// The path asked.
        path: String,
        /// Every method of the path, as `Allow` lists them.
        allowed: &'static str,
    },
    /// Identical for a missing and a wrong key: nothing tells which part was wrong.
    #[error("missing or invalid API key")]
    Unauthorized,
    /// A valid key whose role may not do this, or a browser request from another site.
    #[error("{0}")]
    Forbidden(String),
    /// The `Host` header does not name this box (DNS rebinding): 421.
    #[error("this box does not answer to the host {0:?}; use its own name or address (FACE_ALLOWED_HOSTS adds names)")]
    WrongHost(String),
    /// Too many wrong keys from this address: wait this many seconds (`Retry-After`).
    #[error("too many wrong API keys from this address; try again in {0} s")]
    TooManyGuesses(u64),
    /// 408: the body did not arrive in time.
    #[error("the request body was not received in time")]
    Timeout,
    /// 413: the body is over its limit (the sentence gives it).
    #[error("{0}")]
    TooLarge(String),
    /// 415: a body of a type the route does not take.
    #[error("{0}")]
    UnsupportedMedia(String),
    /// 422: a field the route needs is missing (its name).
    #[error("missing field: {0}")]
    MissingField(&'static str),
    /// The server's own trouble; the detail (paths, OS errors) goes to the log only.
    #[error("internal error: {0}")]
    Internal(String),
    /// The disk is full: nothing was written, and the client may try again later.
    #[error("the server's disk is full: {0}")]
    InsufficientStorage(String),
    /// Every slot for this kind of work is taken: try again in a moment (`Retry-After`).
    #[error("the server is busy: {0}")]
    Busy(&'static str),
    /// The request clashes with what is enrolled (an id taken, a face already enrolled);
    /// `details` are added to the answer (`duplicate_of`, `distance`).
    #[error("{message}")]
    Conflict {
        /// What the client is told.
        message: String,
        /// Added to the answer's JSON.
        details: Value,
    },
    /// Understood but refused as it is (a poor face for enrollment); `details` are added to the
    /// answer (`quality`).
    #[error("{message}")]
    Unprocessable {
        /// What the client is told.
        message: String,
        /// Added to the answer's JSON.
        details: Value,
    },
}

/// Seconds a client is asked to wait (`Retry-After`) when the server is busy.
pub const RETRY_AFTER_SECONDS: &str = "1";

impl ApiError {
    /// The HTTP status of the answer.
    pub fn status(&self) -> u16 {
        match self {
            ApiError::BadRequest(_) => 400,
            ApiError::NotFound(_) => 404,
            ApiError::Unauthorized => 401,
            ApiError::Forbidden(_) => 403,
            ApiError::WrongHost(_) => 421,
            ApiError::TooManyGuesses(_) => 429,
            ApiError::MethodNotAllowed { .. } => 405,
            ApiError::Timeout => 408,
            ApiError::TooLarge(_) => 413,
            ApiError::UnsupportedMedia(_) => 415,
            ApiError::MissingField(_) => 422,
            ApiError::Internal(_) => 500,
            ApiError::InsufficientStorage(_) => 507,
            ApiError::Busy(_) => 503,
            ApiError::Conflict { .. } => 409,
            ApiError::Unprocessable { .. } => 422,
        }
    }

    /// What the client reads: the error itself for its own mistakes, plain words for the
    /// server's trouble (whose detail may name paths on the box).
    pub fn public_message(&self) -> String {
        match self {
            ApiError::Internal(_) => "internal error; the details are in the server's log".into(),
            ApiError::InsufficientStorage(_) => {
                "the server's disk is full; nothing was saved, try again later".into()
            }
            other => other.to_string(),
        }
    }

    /// Whether the answer is the server's own trouble, worth a line in its log (a busy server
    /// is not: an attacker could flood the log with refusals).
    pub fn is_servers_trouble(&self) -> bool {
        matches!(
            self,
            ApiError::Internal(_) | ApiError::InsufficientStorage(_)
        )
    }

    /// The server's own I/O trouble (`what` says what failed, for the log): 507 when the disk
    /// is full, else 500.
    pub fn io(what: &str, e: std::io::Error) -> ApiError {
        let detail = format!("{what}: {e}");
        match is_disk_full(&e) {
            true => ApiError::InsufficientStorage(detail),
            false => ApiError::Internal(detail),
        }
    }

    /// What the server's log says about this answer (the full detail).
    pub fn log_detail(&self) -> String {
        self.to_string()
    }

    /// The JSON body of the answer: `{"ok":false,"error":"..."}`, plus the details some errors
    /// carry.
    pub fn body(&self) -> String {
        let mut body = serde_json::json!({"ok": false, "error": self.public_message()});
        if let ApiError::Conflict { details, .. } | ApiError::Unprocessable { details, .. } = self {
            if let (Some(body), Some(details)) = (body.as_object_mut(), details.as_object()) {
                for (k, v) in details {
                    body.entry(k.clone()).or_insert_with(|| v.clone());
                }
            }
        }
        body.to_string()
    }

    /// Headers the status calls for: `Allow` on 405, `WWW-Authenticate` on 401, `Retry-After`
    /// on 429 and 503.
    pub fn headers(&self) -> Option<(&'static str, String)> {
        match self {
            ApiError::MethodNotAllowed { allowed, .. } => Some(("Allow", allowed.to_string())),
            ApiError::Unauthorized => Some((
                "WWW-Authenticate",
                r#"Bearer realm="face-attendance""#.to_string(),
            )),
            ApiError::Busy(_) => Some(("Retry-After", RETRY_AFTER_SECONDS.to_string())),
            ApiError::TooManyGuesses(seconds) => Some(("Retry-After", seconds.to_string())),
            _ => None,
        }
    }
}

/// Whether an I/O error means the disk (or the user's quota) is full.
fn is_disk_full(e: &std::io::Error) -> bool {
    e.kind() == std::io::ErrorKind::StorageFull
        || e.kind() == std::io::ErrorKind::QuotaExceeded
        || matches!(e.raw_os_error(), Some(28) | Some(122)) // ENOSPC, EDQUOT
}

impl From<GalleryError> for ApiError {
    fn from(e: GalleryError) -> ApiError {
        ApiError::from(Error::from(e))
    }
}

impl From<Error> for ApiError {
    fn from(e: Error) -> ApiError {
        match e {
            Error::Image(img) => match img {
                ImageError::Empty | ImageError::Truncated | ImageError::Corrupt(_) => {
                    ApiError::BadRequest(img.to_string())
                }
                ImageError::NotAnImage | ImageError::UnsupportedFormat(_) => {
                    ApiError::UnsupportedMedia(img.to_string())
                }
                ImageError::TooLarge { .. } => ApiError::TooLarge(img.to_string()),
            },
            Error::InvalidId(msg) => ApiError::BadRequest(format!("invalid student_id: {msg}")),
            // It names the archive's entry and the reason, never a server path.
            Error::Archive(a) => ApiError::BadRequest(a.to_string()),
            // Disk trouble or a bad setting is the server's problem, not the client's.
            Error::Gallery(GalleryError::Io { ref source, .. }) if is_disk_full(source) => {
                ApiError::InsufficientStorage(e.to_string())
            }
            Error::Gallery(GalleryError::NotEnrolled(_) | GalleryError::NoSuchSample { .. }) => {
                ApiError::NotFound(e.to_string())
            }
            Error::Gallery(GalleryError::InvalidLabel(ref l)) => {
                ApiError::BadRequest(l.to_string())
            }
            Error::Gallery(GalleryError::AlreadyEnrolled(_)) => ApiError::Conflict {
                message: e.to_string(),
                details: Value::Null,
            },
            Error::Gallery(GalleryError::Duplicate {
                ref duplicate_of,
                distance,
            }) => ApiError::Conflict {
                details: serde_json::json!({
                    "duplicate_of": duplicate_of,
                    "distance": (distance * 1e4).round() / 1e4,
                }),
                message: e.to_string(),
            },
            Error::Gallery(g) => ApiError::Internal(g.to_string()),
            Error::PoorFace {
                ref refusal,
                faces_found,
            } => ApiError::Unprocessable {
                details: serde_json::json!({
                    "quality": refusal.quality,
                    "faces_found": faces_found,
                }),
                message: e.to_string(),
            },
            Error::NoFace | Error::NothingToEnroll(_) => ApiError::Unprocessable {
                message: e.to_string(),
                details: serde_json::json!({"faces_found": 0}),
            },
            Error::Model(m) => ApiError::Internal(m.to_string()),
            Error::Config(c) => ApiError::Internal(c),
        }
    }
}

/// The unknown-faces store's trouble is the server's own: a full disk is 507, the rest 500.
impl From<UnknownsError> for ApiError {
    fn from(e: UnknownsError) -> ApiError {
        match e {
            UnknownsError::Io { ref source, .. } if is_disk_full(source) => {
                ApiError::InsufficientStorage(e.to_string())
            }
            e => ApiError::Internal(e.to_string()),
        }
    }
}

/// A person's export: nothing held is 404, the gallery's and the store's trouble as theirs, a
/// log or temp file's the server's own (507 when the disk is full).
impl From<crate::privacy::PrivacyError> for ApiError {
    fn from(e: crate::privacy::PrivacyError) -> ApiError {
        use crate::privacy::PrivacyError;
        match e {
            PrivacyError::NotFound(_) => ApiError::NotFound(e.to_string()),
            PrivacyError::Gallery(g) => ApiError::from(g),
            PrivacyError::Unknowns(u) => ApiError::from(u),
            PrivacyError::Io { ref source, .. } if is_disk_full(source) => {
                ApiError::InsufficientStorage(e.to_string())
            }
            PrivacyError::Io { .. } => ApiError::Internal(e.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_errors_map_to_the_documented_statuses() {
        let cases = [
            (ImageError::Empty, 400),
            (ImageError::Truncated, 400),
            (ImageError::NotAnImage, 415),
            (ImageError::UnsupportedFormat("GIF"), 415),
            (
                ImageError::TooLarge {
                    width: 1,
                    height: 1,
                    max_pixels: 0,
                },
                413,
            ),
        ];
        for (e, status) in cases {
            assert_eq!(ApiError::from(Error::Image(e)).status(), status);
        }
        let e = ApiError::from(Error::InvalidId("x".into()));
        assert_eq!(e.status(), 400);
        assert_eq!(e.body(), r#"{"ok":false,"error":"invalid student_id: x"}"#);
    }

    #[test]
    fn server_trouble_never_shows_paths_and_a_full_disk_is_507() {
        let full = GalleryError::Io {
            path: "/var/lib/face-attendance/embeddings/.alip.npy.tmp-1".into(),
            source: std::io::Error::from_raw_os_error(28),
        };
        let e = ApiError::from(Error::Gallery(full));
        assert_eq!(e.status(), 507);
        assert!(!e.body().contains("/var/lib"), "{}", e.body());
        assert!(
            e.log_detail().contains("/var/lib"),
            "the log keeps the detail"
        );
        let other = GalleryError::Io {
            path: "/var/lib/face-attendance/embeddings/alip.npy".into(),
            source: std::io::Error::from_raw_os_error(13),
        };
        let e = ApiError::from(Error::Gallery(other));
        assert_eq!(e.status(), 500);
        assert!(!e.body().contains("/var/lib"), "{}", e.body());
        let damaged = GalleryError::Damaged {
            path: "/srv/data/embeddings/alip.npy".into(),
            reason: "bad header".into(),
        };
        assert!(!ApiError::from(Error::Gallery(damaged))
            .body()
            .contains("/srv"));
    }

    #[test]
    fn gallery_refusals_are_404_and_409_with_their_details() {
        let dup = ApiError::from(Error::Gallery(GalleryError::Duplicate {
            duplicate_of: "budi".into(),
            distance: 0.312_345,
        }));
        assert_eq!(dup.status(), 409);
        let body: Value = serde_json::from_str(&dup.body()).unwrap();
        assert_eq!(body["duplicate_of"], "budi");
        assert_eq!(body["distance"], 0.3123);
        assert!(body["error"].as_str().unwrap().contains("force=true"));
        let taken = ApiError::from(Error::Gallery(GalleryError::AlreadyEnrolled("x".into())));
        assert_eq!(taken.status(), 409);
        let gone = ApiError::from(Error::Gallery(GalleryError::NoSuchSample {
            student_id: "x".into(),
            index: 3,
            samples: 2,
        }));
        assert_eq!(
            (gone.status(), gone.public_message().contains("0 to 1")),
            (404, true)
        );
    }

    #[test]
    fn busy_is_503_with_retry_after() {
        let e = ApiError::Busy("too many uploads in progress");
        assert_eq!(e.status(), 503);
        assert_eq!(e.headers(), Some(("Retry-After", "1".to_string())));
        let held = ApiError::TooManyGuesses(12);
        assert_eq!(held.status(), 429);
        assert_eq!(held.headers(), Some(("Retry-After", "12".to_string())));
    }

    #[test]
    fn unauthorized_is_401_with_a_bearer_challenge() {
        let e = ApiError::Unauthorized;
        assert_eq!(e.status(), 401);
        assert_eq!(
            e.body(),
            r#"{"ok":false,"error":"missing or invalid API key"}"#
        );
        assert_eq!(e.headers().map(|h| h.0), Some("WWW-Authenticate"));
    }
}
