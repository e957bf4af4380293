//! API keys: who may call the routes that change state or reveal identities.
//!
//! Keys come from `FACE_API_KEY` and/or `FACE_API_KEYS_FILE` (read once at start). Only their
//! SHA-256 digests are kept; a presented key is hashed and compared with every configured digest
//! in constant time and without early exit, so neither timing nor length tells an attacker how
//! close a guess was or which key it resembled.

use std::path::Path;

use sha2::{Digest, Sha256};
use subtle::{Choice, ConditionallySelectable, ConstantTimeEq};
use thiserror::Error;
use tiny_http::Request;

/// Shorter keys are refused at start: a key is a password anyone on the LAN may try to guess.
pub const MIN_KEY_LEN: usize = 16;

/// The query parameter that may carry the key on the WebSocket route only (browsers cannot set
/// headers on a WebSocket).
pub const QUERY_PARAM: &str = "api_key";

/// Why the configured keys cannot be used. Never shows a key, only where it came from.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum KeyError {
    #[error("the API key in {origin} has {len} characters; use at least {MIN_KEY_LEN} (e.g. `openssl rand -hex 32`)")]
    TooShort { origin: String, len: usize },
    #[error("the API key in {origin} holds spaces or characters outside printable ASCII")]
    BadCharacters { origin: String },
    #[error("cannot read FACE_API_KEYS_FILE {path}: {reason}")]
    Unreadable { path: String, reason: String },
    #[error("FACE_API_KEYS_FILE {path} holds no keys (one key per line; `#` starts a comment)")]
    NoKeys { path: String },
}

/// The configured keys, as SHA-256 digests. Empty: no key configured, every route is open.
#[derive(Clone, Default)]
pub struct ApiKeys {
    digests: Vec<[u8; 32]>,
    /// Each key's label, for the audit log: the word before it on its line of the keys file,
    /// else where it came from.
    labels: Vec<String>,
}

impl std::fmt::Debug for ApiKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ApiKeys({} keys)", self.digests.len())
    }
}

fn digest(key: &[u8]) -> [u8; 32] {
    Sha256::digest(key).into()
}

impl ApiKeys {
    /// The keys of `FACE_API_KEY` (blank counts as unset) and of the keys file, if any.
    pub fn load(key: Option<&str>, file: Option<&Path>) -> Result<ApiKeys, KeyError> {
        let mut keys: Vec<(String, String)> = Vec::new();
        if let Some(key) = key.map(str::trim).filter(|k| !k.is_empty()) {
            keys.push(("FACE_API_KEY".into(), key.to_string()));
        }
        if let Some(path) = file {
            let shown = path.display().to_string();
            let text = std::fs::read_to_string(path).map_err(|e| KeyError::Unreadable {
                path: shown.clone(),
                reason: e.to_string(),
            })?;
            let from_file = parse_keys_file(&text);
            if from_file.is_empty() {
                return Err(KeyError::NoKeys { path: shown });
            }
            let mut labels = vec!["FACE_API_KEY".to_string(); keys.len()];
            for (line, text) in from_file {
                let origin = format!("{shown} line {line}");
                match text.split_once(char::is_whitespace) {
                    Some((label, key)) => {
                        labels.push(label.to_string());
                        keys.push((origin, key.trim().to_string()));
                    }
                    None => {
                        labels.push(origin.clone());
                        keys.push((origin, text));
                    }
                }
            }
            return Ok(ApiKeys::new(&keys)?.with_labels(labels));
        }
        ApiKeys::new(&keys)
    }

    /// Each key labelled by its position's entry of `labels` (for the audit log).
    fn with_labels(mut self, labels: Vec<String>) -> ApiKeys {
        if labels.len() == self.digests.len() {
            self.labels = labels;
        }
        self
    }

    /// Checks and keeps `(origin, key)` pairs; `origin` names the key in error messages and is
    /// its label.
    pub fn new(keys: &[(String, String)]) -> Result<ApiKeys, KeyError> {
        let mut digests = Vec::with_capacity(keys.len());
        let labels = keys.iter().map(|(origin, _)| origin.clone()).collect();
        for (origin, key) in keys {
            if !key.bytes().all(|b| b.is_ascii_graphic()) {
                return Err(KeyError::BadCharacters {
                    origin: origin.clone(),
                });
            }
            if key.len() < MIN_KEY_LEN {
                return Err(KeyError::TooShort {
                    origin: origin.clone(),
                    len: key.len(),
                });
            }
            digests.push(digest(key.as_bytes()));
        }
        Ok(ApiKeys { digests, labels })
    }

    pub fn len(&self) -> usize {
        self.digests.len()
    }

    /// No key configured: every route is open.
    pub fn is_empty(&self) -> bool {
        self.digests.is_empty()
    }

    /// Whether any of the presented candidates is a configured key. Every candidate is hashed
    /// and compared with every key, whatever matched before.
    pub fn accepts<'a>(&self, candidates: impl IntoIterator<Item = &'a str>) -> bool {
        self.matching(candidates).is_some()
    }

    /// The index of the configured key that one of the candidates is (the last if several),
    /// found without early exit.
    fn matching<'a>(&self, candidates: impl IntoIterator<Item = &'a str>) -> Option<usize> {
        let mut ok = Choice::from(0);
        let mut found = 0u64;
        for candidate in candidates {
            let presented = digest(candidate.as_bytes());
            for (i, key) in self.digests.iter().enumerate() {
                let same = presented.ct_eq(key);
                ok |= same;
                found = u64::conditional_select(&found, &(i as u64), same);
            }
        }
        bool::from(ok).then_some(found as usize)
    }

    /// Whether `request` may go on: no key configured, or it carries one in `X-API-Key`,
    /// `Authorization: Bearer`, or (when `query_allowed`) the `api_key` query parameter.
    pub fn allows(&self, request: &Request, query: &str, query_allowed: bool) -> bool {
        self.caller(request, query, query_allowed).is_some()
    }

    /// Who `request` comes from when it may go on: the label of its key, or `anyone` when no
    /// key is configured. `None`: refused.
    pub fn caller(&self, request: &Request, query: &str, query_allowed: bool) -> Option<String> {
        if self.is_empty() {
            return Some("anyone".into());
        }
        let headers = request.headers().iter().filter_map(|h| {
            let name = h.field.as_str().as_str();
            if name.eq_ignore_ascii_case("X-API-Key") {
                Some(h.value.as_str().trim().to_string())
            } else if name.eq_ignore_ascii_case("Authorization") {
                bearer_token(h.value.as_str()).map(str::to_string)
            } else {
                None
            }
        });
        let from_query = query_allowed
            .then(|| query_value(query, QUERY_PARAM))
            .flatten();
        let candidates: Vec<String> = headers.chain(from_query).collect();
        let i = self.matching(candidates.iter().map(String::as_str))?;
        self.labels.get(i).cloned()
    }
}

/// The keys of a keys file with their line numbers: one per line, surrounding blanks trimmed,
/// blank lines and lines starting with `#` ignored.
pub fn parse_keys_file(text: &str) -> Vec<(usize, String)> {
    text.lines()
        .enumerate()
        .map(|(i, line)| (i + 1, line.trim()))
        .filter(|(_, line)| !line.is_empty() && !line.starts_with('#'))
        .map(|(n, line)| (n, line.to_string()))
        .collect()
}

/// The token of an `Authorization: Bearer <token>` value (scheme case-insensitive).
fn bearer_token(value: &str) -> Option<&str> {
    let (scheme, token) = value.trim().split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("Bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

/// The percent-decoded value of `name` in a query string (`+` stays `+`: keys hold no spaces).
pub(super) fn query_value(query: &str, name: &str) -> Option<String> {
    query
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .find(|(k, _)| *k == name)
        .and_then(|(_, v)| percent_decode(v))
}

/// `%XX` escapes decoded (`+` stays `+`); `None` for a bad escape or invalid UTF-8.
pub(super) fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const K1: &str = "0123456789abcdef-one";
    const K2: &str = "0123456789abcdef-two";

    fn keys(list: &[&str]) -> ApiKeys {
        let pairs: Vec<(String, String)> = list
            .iter()
            .map(|k| ("test".to_string(), k.to_string()))
            .collect();
        ApiKeys::new(&pairs).unwrap()
    }

    #[test]
    fn every_configured_key_is_accepted_and_nothing_else() {
        let both = keys(&[K1, K2]);
        assert!(both.accepts([K1]));
        assert!(both.accepts([K2]));
        assert!(both.accepts(["wrong", K2]));
        assert!(!both.accepts(["0123456789abcdef-on"]));
        assert!(!both.accepts([""]));
        assert!(!both.accepts([]));
        assert!(ApiKeys::default().is_empty());
    }

    #[test]
    fn short_or_odd_keys_are_refused_without_showing_them() {
        let short = ApiKeys::new(&[("FACE_API_KEY".into(), "secret".into())]).unwrap_err();
        assert_eq!(
            short,
            KeyError::TooShort {
                origin: "FACE_API_KEY".into(),
                len: 6
            }
        );
        assert!(!short.to_string().contains("secret"));
        let spaced = ApiKeys::new(&[("f line 2".into(), "0123456789 abcdefgh".into())]);
        assert!(matches!(spaced, Err(KeyError::BadCharacters { .. })));
    }

    #[test]
    fn keys_files_skip_comments_and_blank_lines() {
        let text = "# site keys\n\n  first-key-0123456789  \n#old-key-0123456789\nsecond-key-0123456789\r\n";
        assert_eq!(
            parse_keys_file(text),
            vec![
                (3, "first-key-0123456789".to_string()),
                (5, "second-key-0123456789".to_string())
            ]
        );
    }

    #[test]
    fn loading_reports_unreadable_and_empty_files() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing");
        assert!(matches!(
            ApiKeys::load(None, Some(&missing)),
            Err(KeyError::Unreadable { .. })
        ));
        let empty = dir.path().join("empty");
        std::fs::write(&empty, "# nothing yet\n\n").unwrap();
        assert!(matches!(
            ApiKeys::load(None, Some(&empty)),
            Err(KeyError::NoKeys { .. })
        ));
        let file = dir.path().join("keys");
        std::fs::write(&file, format!("{K1}\n{K2}\n")).unwrap();
        let loaded = ApiKeys::load(Some("  "), Some(&file)).unwrap();
        assert_eq!(loaded.len(), 2);
        let loaded = ApiKeys::load(Some(K1), Some(&file)).unwrap();
        assert_eq!(loaded.len(), 3);
        assert!(ApiKeys::load(Some(""), None).unwrap().is_empty());
        let short = std::fs::write(&file, "ok-key-0123456789\nshort\n");
        short.unwrap();
        let err = ApiKeys::load(None, Some(&file)).unwrap_err().to_string();
        assert!(err.contains("line 2"), "{err}");
    }

    #[test]
    fn bearer_and_query_values_are_parsed() {
        assert_eq!(bearer_token("Bearer abc"), Some("abc"));
        assert_eq!(bearer_token("bearer   abc "), Some("abc"));
        assert_eq!(bearer_token("Basic abc"), None);
        assert_eq!(bearer_token("Bearer"), None);
        assert_eq!(bearer_token("Bearer  "), None);
        assert_eq!(
            query_value("a=1&api_key=x%2By+z%3D", "api_key"),
            Some("x+y+z=".into())
        );
        assert_eq!(query_value("api_key=%zz", "api_key"), None);
        assert_eq!(query_value("api_key=%4", "api_key"), None);
        assert_eq!(query_value("xapi_key=1", "api_key"), None);
    }

    #[test]
    fn each_key_has_a_label_for_the_audit_log() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("keys");
        std::fs::write(&file, format!("# office first\noffice  {K1}\n{K2}\n")).unwrap();
        let env_key = "0123456789abcdef-env";
        let keys = ApiKeys::load(Some(env_key), Some(&file)).unwrap();
        let label = |k: &str| keys.matching([k]).and_then(|i| keys.labels.get(i).cloned());
        assert_eq!(label(K1).as_deref(), Some("office"));
        assert_eq!(label(K2), Some(format!("{} line 3", file.display())));
        assert_eq!(label(env_key).as_deref(), Some("FACE_API_KEY"));
        assert_eq!(label("0123456789abcdef-no"), None);
        // A wrong key before a right one still finds the right one.
        assert_eq!(keys.matching(["nope", K2]), Some(2));
        // A labelled line still needs a long enough key.
        std::fs::write(&file, "office short\n").unwrap();
        assert!(matches!(
            ApiKeys::load(None, Some(&file)),
            Err(KeyError::TooShort { .. })
        ));
    }
}
