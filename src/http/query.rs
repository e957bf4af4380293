//! Request targets, query strings and percent-encoding: the one place that reads them.
//!
//! Contract: `%XX` escapes are decoded by the `percent-encoding` crate after a strict check (a
//! `%` not followed by two hex digits, or bytes that are not UTF-8, make the value unreadable:
//! `None`, and the caller answers 400). `+` stays `+` in a query (keys, tickets and ids hold no
//! spaces); an `application/x-www-form-urlencoded` body turns it into a space first
//! ([`form_decode`]).

use percent_encoding::percent_decode_str;

/// `%XX` escapes decoded (`+` stays `+`); `None` for a bad escape or invalid UTF-8.
pub fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let well_formed = bytes.iter().enumerate().all(|(i, b)| {
        *b != b'%'
            || bytes
                .get(i + 1..i + 3)
                .is_some_and(|hex| hex.iter().all(u8::is_ascii_hexdigit))
    });
    if !well_formed {
        return None;
    }
    percent_decode_str(text)
        .decode_utf8()
        .ok()
        .map(|s| s.into_owned())
}

/// A form field's name or value: `+` is a space, then `%XX` escapes decoded.
pub fn form_decode(text: &str) -> Option<String> {
    percent_decode(&text.replace('+', " "))
}

/// The `name=value` pairs of a query string, undecoded (`flag` alone is `("flag", "")`).
pub fn pairs(query: &str) -> impl Iterator<Item = (&str, &str)> {
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| pair.split_once('=').unwrap_or((pair, "")))
}

/// The percent-decoded value of the first `name` in a query string.
pub fn value(query: &str, name: &str) -> Option<String> {
    pairs(query)
        .find(|(k, _)| *k == name)
        .and_then(|(_, v)| percent_decode(v))
}

/// How many times `name` appears in a query string.
pub fn count(query: &str, name: &str) -> usize {
    pairs(query).filter(|(k, _)| *k == name).count()
}

/// A request target split into its path (without a trailing `/`, except the root's) and its
/// query string (undecoded, empty when there is none).
pub fn split_url(url: &str) -> (String, String) {
    let (path, query) = url.split_once('?').unwrap_or((url, ""));
    let path = if path.len() > 1 {
        path.trim_end_matches('/')
    } else {
        path
    };
    (path.to_string(), query.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_split_from_queries() {
        assert_eq!(
            split_url("/recognize/realtime?min_conf=1"),
            ("/recognize/realtime".into(), "min_conf=1".into())
        );
        assert_eq!(split_url("/health/"), ("/health".into(), String::new()));
        assert_eq!(split_url("/"), ("/".into(), String::new()));
    }

    #[test]
    fn values_are_decoded_strictly() {
        assert_eq!(
            value("a=1&api_key=x%2By+z%3D", "api_key"),
            Some("x+y+z=".into())
        );
        assert_eq!(value("api_key=%zz", "api_key"), None);
        assert_eq!(value("api_key=%4", "api_key"), None);
        assert_eq!(value("api_key=%ff", "api_key"), None);
        assert_eq!(value("xapi_key=1", "api_key"), None);
        assert_eq!(value("flag&b=2", "flag"), Some(String::new()));
        assert_eq!(value("b=%C3%A9", "b"), Some("é".into()));
        assert_eq!(form_decode("a+b%2B"), Some("a b+".into()));
        assert_eq!(count("t=1&t=2&x=t", "t"), 2);
        assert_eq!(count("", "t"), 0);
    }
}
