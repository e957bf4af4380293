//! Headers: the one reader of a request's headers ([`header`]), and the security headers every
//! answer carries, added in one place ([`secure`]).
//!
//! - `X-Content-Type-Options: nosniff`: an upload answered back is never run as a script.
//! - `Referrer-Policy: no-referrer`: nothing of the box's URLs leaves in a `Referer`.
//! - `X-Frame-Options: DENY` and CSP `frame-ancestors 'none'`: no other page frames the box
//!   (clickjacking the page's buttons).
//! - A Content-Security-Policy: the pages (`text/html`) may load only their own scripts,
//!   styles and images, none inline; everything else (JSON, images, exports) may load nothing.
//! - `Cache-Control: no-store` on every answer: most are behind a key or name people
//!   (`/health` included), and the static ones are small.

use tiny_http::{Header, Request, Response};

/// The value of header `name` (case-insensitive), if present.
pub fn header<'a>(request: &'a Request, name: &str) -> Option<&'a str> {
    request
        .headers()
        .iter()
        .find(|h| h.field.as_str().as_str().eq_ignore_ascii_case(name))
        .map(|h| h.value.as_str())
}

/// The CSP of the box's pages (`/`, `/docs`): no inline script or style anywhere.
pub const PAGE_CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; \
     img-src 'self' blob: data:; connect-src 'self'; media-src 'self' blob:; object-src 'none'; \
     base-uri 'none'; form-action 'self'; frame-ancestors 'none'";
/// The CSP of every other answer: it loads nothing and is framed nowhere.
pub const DATA_CSP: &str = "default-src 'none'; frame-ancestors 'none'; sandbox";

/// The security headers for an answer of `content_type`.
pub fn for_content(content_type: &str) -> [(&'static str, &'static str); 5] {
    let csp = if content_type.starts_with("text/html") {
        PAGE_CSP
    } else {
        DATA_CSP
    };
    [
        ("X-Content-Type-Options", "nosniff"),
        ("Referrer-Policy", "no-referrer"),
        ("X-Frame-Options", "DENY"),
        ("Content-Security-Policy", csp),
        ("Cache-Control", "no-store"),
    ]
}

/// `response` with the security headers for an answer of `content_type`.
pub fn secure<R: std::io::Read>(mut response: Response<R>, content_type: &str) -> Response<R> {
    for (name, value) in for_content(content_type) {
        if let Ok(header) = Header::from_bytes(name, value) {
            response.add_header(header);
        }
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_get_the_page_policy_and_the_rest_loads_nothing() {
        let page = for_content("text/html; charset=utf-8");
        assert!(page.contains(&("Content-Security-Policy", PAGE_CSP)));
        assert!(!PAGE_CSP.contains("unsafe-inline"));
        let json = for_content("application/json");
        assert!(json.contains(&("Content-Security-Policy", DATA_CSP)));
        assert!(json.contains(&("X-Content-Type-Options", "nosniff")));
        assert!(json.contains(&("Cache-Control", "no-store")));
    }
}
