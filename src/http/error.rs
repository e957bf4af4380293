//! Every client mistake becomes `{"ok":false,"error":"…"}` with its status, here and only here.

use thiserror::Error;

use crate::error::Error;
use crate::image_io::ImageError;

/// An answer that is not a 200.
#[derive(Debug, Error)]
pub enum ApiError {
    #[error("{0}")]
    BadRequest(String),
    #[error("not found: {0}")]
    NotFound(String),
    #[error("method {method} not allowed on {path}; use {allowed}")]
    MethodNotAllowed {
        method: String,
        path: String,
        allowed: &'static str,
    },
    /// Identical for a missing and a wrong key: nothing tells which part was wrong.
    #[error("missing or invalid API key")]
    Unauthorized,
    #[error("the request body was not received in time")]
    Timeout,
    #[error("{0}")]
    TooLarge(String),
    #[error("{0}")]
    UnsupportedMedia(String),
    #[error("missing field: {0}")]
    MissingField(&'static str),
    #[error("internal error: {0}")]
    Internal(String),
    #[error("the server is busy: {0}")]
    Busy(&'static str),
}

impl ApiError {
    pub fn status(&self) -> u16 {
        match self {
            ApiError::BadRequest(_) => 400,
            ApiError::NotFound(_) => 404,
            ApiError::Unauthorized => 401,
            ApiError::MethodNotAllowed { .. } => 405,
            ApiError::Timeout => 408,
            ApiError::TooLarge(_) => 413,
            ApiError::UnsupportedMedia(_) => 415,
            ApiError::MissingField(_) => 422,
            ApiError::Internal(_) => 500,
            ApiError::Busy(_) => 503,
        }
    }

    pub fn body(&self) -> String {
        serde_json::json!({"ok": false, "error": self.to_string()}).to_string()
    }

    /// Headers the status calls for: `Allow` on 405, `WWW-Authenticate` on 401.
    pub fn headers(&self) -> Option<(&'static str, &'static str)> {
        match self {
            ApiError::MethodNotAllowed { allowed, .. } => Some(("Allow", allowed)),
            ApiError::Unauthorized => {
                Some(("WWW-Authenticate", r#"Bearer realm="face-attendance""#))
            }
            _ => None,
        }
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
            // Disk trouble or a bad setting is the server's problem, not the client's.
            Error::Gallery(g) => ApiError::Internal(g.to_string()),
            Error::Model(m) => ApiError::Internal(m.to_string()),
            Error::Config(c) => ApiError::Internal(c),
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
