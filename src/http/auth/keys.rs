//! API keys and their roles, read once at start from `FACE_API_KEY` (an admin key) and
//! `FACE_API_KEYS_FILE`.
//!
//! A keys file holds one key a line (`#` starts a comment, blank lines are skipped):
//! - `KEY`: an admin key, labelled by its file and line;
//! - `LABEL KEY`: an admin key, labelled (the label names it in the audit log);
//! - `LABEL ROLE KEY`: a key of that role (`kiosk`, `viewer`, `operator`, `admin`).
//!
//! Only the keys' SHA-256 digests are kept; a presented key is hashed and compared with every
//! configured digest in constant time and without early exit, so neither timing nor length
//! tells an attacker how close a guess was or which key it resembled.

use std::path::Path;

use sha2::{Digest, Sha256};
use subtle::{Choice, ConditionallySelectable, ConstantTimeEq};
use thiserror::Error;

use super::role::Role;

/// Shorter keys are refused at start: a key is a password anyone on the LAN may try to guess.
pub const MIN_KEY_LEN: usize = 16;
/// Shorter keys are warned about at start: a valid key is never throttled, so while a guesser's
/// address is held off a right guess still gets in; only the key's length makes guessing
/// hopeless (the install makes 64 hex characters).
pub const RECOMMENDED_KEY_LEN: usize = 32;

/// Why the configured keys cannot be used. Never shows a key, only where it came from.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum KeyError {
    /// A key shorter than [`MIN_KEY_LEN`].
    #[error("the API key in {origin} has {len} characters; use at least {MIN_KEY_LEN} (e.g. `openssl rand -hex 32`)")]
    TooShort {
        /// Where the key was written (`FACE_API_KEY`, or the file and line).
        origin: String,
        /// Its length.
        len: usize,
    },
    /// A key with characters outside printable ASCII.
    #[error("the API key in {origin} holds characters outside printable ASCII")]
    BadCharacters {
        /// Where the key was written (`FACE_API_KEY`, or the file and line).
        origin: String,
    },
    /// A line naming a role that does not exist.
    #[error("{origin} names the role {role:?}; the roles are kiosk, viewer, operator, admin")]
    BadRole {
        /// Where the key was written (`FACE_API_KEY`, or the file and line).
        origin: String,
        /// The role named.
        role: String,
    },
    /// A line of the keys file with too many or too few words.
    #[error("{origin} has {words} words; a line is KEY, LABEL KEY or LABEL ROLE KEY")]
    BadLine {
        /// Where the key was written (`FACE_API_KEY`, or the file and line).
        origin: String,
        /// Its words.
        words: usize,
    },
    /// The keys file cannot be read.
    #[error("cannot read FACE_API_KEYS_FILE {path}: {reason}")]
    Unreadable {
        /// The file.
        path: String,
        /// Why.
        reason: String,
    },
    /// The keys file holds no key.
    #[error("FACE_API_KEYS_FILE {path} holds no keys (one key per line; `#` starts a comment)")]
    NoKeys {
        /// The file.
        path: String,
    },
}

/// Who a valid credential belongs to: its label (for the audit log) and its role.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    label: String,
    role: Role,
}

impl Caller {
    /// A caller labelled `label` with `role`.
    pub fn new(label: impl Into<String>, role: Role) -> Caller {
        Caller {
            label: label.into(),
            role,
        }
    }

    /// Everyone, on a box without keys: admin, as the original service.
    pub fn anyone() -> Caller {
        Caller::new("anyone", Role::Admin)
    }

    /// The key's label ("anyone" on a box without keys).
    pub fn label(&self) -> &str {
        &self.label
    }

    /// The key's role.
    pub fn role(&self) -> Role {
        self.role
    }
}

/// One configured key: where it came from, its label and role, its digest.
#[derive(Clone)]
struct Key {
    digest: [u8; 32],
    caller: Caller,
}

/// The configured keys. Empty: no key configured, every route is open.
#[derive(Clone, Default)]
pub struct ApiKeys {
    keys: Vec<Key>,
    /// Where each key shorter than [`RECOMMENDED_KEY_LEN`] was written (for a warning).
    short: Vec<String>,
}

impl std::fmt::Debug for ApiKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ApiKeys({} keys)", self.keys.len())
    }
}

fn digest(key: &[u8]) -> [u8; 32] {
    Sha256::digest(key).into()
}

/// One key as configured: where it was written (for errors), its label, role and text.
#[derive(Debug, Clone)]
pub struct KeyLine {
    /// Where the key was written (`FACE_API_KEY`, or the file and line), for errors.
    pub origin: String,
    /// Its label, for the audit log and the log.
    pub label: String,
    /// What it may do.
    pub role: Role,
    /// The key itself (never shown).
    pub key: String,
}

impl ApiKeys {
    /// The keys of `FACE_API_KEY` (blank counts as unset; admin) and of the keys file, if any.
    pub fn load(key: Option<&str>, file: Option<&Path>) -> Result<ApiKeys, KeyError> {
        let mut lines = Vec::new();
        if let Some(key) = key.map(str::trim).filter(|k| !k.is_empty()) {
            lines.push(KeyLine {
                origin: "FACE_API_KEY".into(),
                label: "FACE_API_KEY".into(),
                role: Role::Admin,
                key: key.to_string(),
            });
        }
        if let Some(path) = file {
            let shown = path.display().to_string();
            let text = std::fs::read_to_string(path).map_err(|e| KeyError::Unreadable {
                path: shown.clone(),
                reason: e.to_string(),
            })?;
            let from_file = parse_keys_file(&shown, &text)?;
            if from_file.is_empty() {
                return Err(KeyError::NoKeys { path: shown });
            }
            lines.extend(from_file);
        }
        ApiKeys::new(lines)
    }

    /// Checks and keeps the keys.
    pub fn new(lines: Vec<KeyLine>) -> Result<ApiKeys, KeyError> {
        let mut keys = Vec::with_capacity(lines.len());
        let mut short = Vec::new();
        for line in lines {
            if !line.key.bytes().all(|b| b.is_ascii_graphic()) {
                return Err(KeyError::BadCharacters {
                    origin: line.origin,
                });
            }
            if line.key.len() < MIN_KEY_LEN {
                return Err(KeyError::TooShort {
                    origin: line.origin,
                    len: line.key.len(),
                });
            }
            if line.key.len() < RECOMMENDED_KEY_LEN {
                short.push(line.origin.clone());
            }
            keys.push(Key {
                digest: digest(line.key.as_bytes()),
                caller: Caller::new(line.label, line.role),
            });
        }
        Ok(ApiKeys { keys, short })
    }

    /// The keys configured.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Where the keys shorter than [`RECOMMENDED_KEY_LEN`] were written.
    pub fn short(&self) -> &[String] {
        &self.short
    }

    /// No key configured: every route is open.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// How many keys have each role (for the start-up line).
    pub fn roles(&self) -> Vec<(Role, usize)> {
        Role::ALL
            .into_iter()
            .map(|r| (r, self.keys.iter().filter(|k| k.caller.role == r).count()))
            .filter(|(_, n)| *n > 0)
            .collect()
    }

    /// Who `presented` belongs to, if it is a configured key. It is hashed and compared with
    /// every key, without early exit.
    pub fn identify(&self, presented: &str) -> Option<&Caller> {
        let presented = digest(presented.as_bytes());
        let mut ok = Choice::from(0);
        let mut found = 0u64;
        for (i, key) in self.keys.iter().enumerate() {
            let same = presented.ct_eq(&key.digest);
            ok |= same;
            found = u64::conditional_select(&found, &(i as u64), same);
        }
        bool::from(ok)
            .then(|| self.keys.get(found as usize))
            .flatten()
            .map(|k| &k.caller)
    }
}

/// The keys of a keys file (`shown` names it in labels and errors).
pub fn parse_keys_file(shown: &str, text: &str) -> Result<Vec<KeyLine>, KeyError> {
    let mut keys = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let origin = format!("{shown} line {}", i + 1);
        let words: Vec<&str> = line.split_whitespace().collect();
        let (label, role, key) = match words.as_slice() {
            [key] => (origin.clone(), Role::Admin, *key),
            [label, key] => (label.to_string(), Role::Admin, *key),
            [label, role, key] => {
                let role = Role::parse(role).ok_or_else(|| KeyError::BadRole {
                    origin: origin.clone(),
                    role: role.to_string(),
                })?;
                (label.to_string(), role, *key)
            }
            _ => {
                return Err(KeyError::BadLine {
                    origin,
                    words: words.len(),
                })
            }
        };
        keys.push(KeyLine {
            origin,
            label,
            role,
            key: key.to_string(),
        });
    }
    Ok(keys)
}

#[cfg(test)]
mod tests {
    use super::*;

    const K1: &str = "0123456789abcdef-one";
    const K2: &str = "0123456789abcdef-two";

    fn line(key: &str) -> KeyLine {
        KeyLine {
            origin: "test".into(),
            label: "test".into(),
            role: Role::Admin,
            key: key.into(),
        }
    }

    #[test]
    fn every_configured_key_is_accepted_and_nothing_else() {
        let both = ApiKeys::new(vec![line(K1), line(K2)]).unwrap();
        assert!(both.identify(K1).is_some());
        assert!(both.identify(K2).is_some());
        assert!(both.identify("0123456789abcdef-on").is_none());
        assert!(both.identify("").is_none());
        assert!(ApiKeys::default().is_empty());
    }

    #[test]
    fn short_or_odd_keys_are_refused_without_showing_them() {
        let mut short = line("secret");
        short.origin = "FACE_API_KEY".into();
        let short = ApiKeys::new(vec![short]).unwrap_err();
        assert_eq!(
            short,
            KeyError::TooShort {
                origin: "FACE_API_KEY".into(),
                len: 6
            }
        );
        assert!(!short.to_string().contains("secret"));
        let odd = ApiKeys::new(vec![line("0123456789\u{e9}abcdefgh")]);
        assert!(matches!(odd, Err(KeyError::BadCharacters { .. })));
    }

    #[test]
    fn keys_files_give_labels_and_roles() {
        let text = format!(
            "# site keys\n\n  {K1}  \noffice  {K2}\nhall viewer hall-key-0123456789\r\n\
             door kiosk door-key-0123456789\n"
        );
        let keys = parse_keys_file("keys", &text).unwrap();
        let got: Vec<(&str, Role, &str)> = keys
            .iter()
            .map(|k| (k.label.as_str(), k.role, k.key.as_str()))
            .collect();
        assert_eq!(
            got,
            vec![
                ("keys line 3", Role::Admin, K1),
                ("office", Role::Admin, K2),
                ("hall", Role::Viewer, "hall-key-0123456789"),
                ("door", Role::Kiosk, "door-key-0123456789"),
            ]
        );
        let bad_role = parse_keys_file("keys", "hall root hall-key-0123456789\n").unwrap_err();
        assert!(matches!(bad_role, KeyError::BadRole { .. }), "{bad_role}");
        assert!(bad_role.to_string().contains("keys line 1"));
        let four = parse_keys_file("keys", "a b c d\n").unwrap_err();
        assert_eq!(
            four,
            KeyError::BadLine {
                origin: "keys line 1".into(),
                words: 4
            }
        );
        assert!(!four.to_string().contains(" d"), "{four}");
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
        assert_eq!(ApiKeys::load(Some("  "), Some(&file)).unwrap().len(), 2);
        assert_eq!(ApiKeys::load(Some(K1), Some(&file)).unwrap().len(), 3);
        assert!(ApiKeys::load(Some(""), None).unwrap().is_empty());
        std::fs::write(&file, "ok-key-0123456789\nshort\n").unwrap();
        let err = ApiKeys::load(None, Some(&file)).unwrap_err().to_string();
        assert!(err.contains("line 2"), "{err}");
    }

    #[test]
    fn each_key_has_a_label_and_a_role() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("keys");
        std::fs::write(
            &file,
            format!("# office first\noffice  {K1}\n{K2}\nhall viewer hall-key-0123456789\n"),
        )
        .unwrap();
        let env_key = "0123456789abcdef-env";
        let keys = ApiKeys::load(Some(env_key), Some(&file)).unwrap();
        let who = |k: &str| keys.identify(k).map(|c| (c.label().to_string(), c.role()));
        assert_eq!(who(K1), Some(("office".into(), Role::Admin)));
        assert_eq!(
            who(K2),
            Some((format!("{} line 3", file.display()), Role::Admin))
        );
        assert_eq!(who(env_key), Some(("FACE_API_KEY".into(), Role::Admin)));
        assert_eq!(
            who("hall-key-0123456789"),
            Some(("hall".into(), Role::Viewer))
        );
        assert_eq!(who("0123456789abcdef-no"), None);
        assert_eq!(keys.roles(), vec![(Role::Viewer, 1), (Role::Admin, 3)]);
        // Every key here is shorter than 32 characters: each is named for the warning.
        assert_eq!(keys.short().len(), 4);
        assert_eq!(keys.short()[0], "FACE_API_KEY");
        // A labelled line still needs a long enough key.
        std::fs::write(&file, "office short\n").unwrap();
        assert!(matches!(
            ApiKeys::load(None, Some(&file)),
            Err(KeyError::TooShort { .. })
        ));
    }
}
