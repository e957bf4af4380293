//! The site's trust list (`GALLERY_TRUSTED_KEYS`): which boxes may change the gallery, with
//! which key and role.
//!
//! The file is text, one box a line: `box_id public-key role`, fields separated by spaces or
//! tabs; `#` starts a comment line; blank lines are skipped. For example
//! `gate-1 ed25519:11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo= enroll`.
//!
//! Contract:
//! - [`TrustList::parse`] takes a whole file or nothing: a bad line (not three fields, a box id
//!   [`super::wire::check_box_id`] refuses, a key that is not a valid `ed25519:` key, a role
//!   that is neither `enroll` nor `admin`), a box id listed twice or a key listed twice is an error
//!   naming the line's number (from 1).
//! - [`TrustList::load`]: a missing file is an empty list (nobody trusted), not an error; any
//!   other I/O error, a file over [`MAX_FILE`] bytes or not UTF-8, is.
//! - One line per box and one box per key: [`TrustList::add`] replaces the box's line (and
//!   drops another box's line with the same key: a key is one box's identity; the CLI refuses
//!   that case first, see [`TrustList::box_with_key`]).
//! - [`TrustList::render`] writes a file [`TrustList::parse`] reads back as the same list: a
//!   header comment, then the boxes sorted by id; [`TrustList::save`] writes it atomically, mode
//!   0644 (public keys only: every box may read it).

use std::collections::BTreeMap;
use std::fmt;
use std::fs::{self, File};
use std::io::{self, Read};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use thiserror::Error;

use super::keys::PublicKey;
use super::wire::check_box_id;

/// The largest trust list file read (thousands of boxes).
pub const MAX_FILE: u64 = 1 << 20;

/// What a trusted box may change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Role {
    /// May add new people, and samples to a person when they match that person's.
    Enroll,
    /// May do all [`Role::Enroll`] may, and replace or remove samples, delete people and force a
    /// duplicate.
    Admin,
}

impl Role {
    /// Whether this role may do what `needed` may ([`Role::Admin`] may do all).
    pub fn allows(self, needed: Role) -> bool {
        match needed {
            Role::Enroll => true,
            Role::Admin => self == Role::Admin,
        }
    }

    /// Its name in the file: `enroll` or `admin`.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Enroll => "enroll",
            Role::Admin => "admin",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = String;

    fn from_str(text: &str) -> Result<Role, String> {
        match text {
            "enroll" => Ok(Role::Enroll),
            "admin" => Ok(Role::Admin),
            other => Err(format!(
                "role {:?} is neither \"enroll\" nor \"admin\"",
                super::wire::clip(other)
            )),
        }
    }
}

/// A box of the trust list: its id, key and role.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Trusted {
    /// The box's id (`BOX_ID`), as [`check_box_id`] accepts.
    pub box_id: String,
    /// Its public key.
    pub key: PublicKey,
    /// What it may change.
    pub role: Role,
}

/// What reading or writing a trust list can fail with.
#[derive(Debug, Error)]
pub enum TrustError {
    /// A line of the text given to [`TrustList::parse`] (its number, from 1) is wrong: why.
    #[error("line {line}: {reason}")]
    Line {
        /// The line's number, from 1.
        line: usize,
        /// Why.
        reason: String,
    },
    /// A line of the file is wrong.
    #[error("{}: line {line}: {reason}", path.display())]
    File {
        /// The file.
        path: PathBuf,
        /// The line's number, from 1.
        line: usize,
        /// Why.
        reason: String,
    },
    /// The file could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: io::Error,
    },
}

/// The boxes trusted to change the gallery, one line per box.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustList {
    boxes: BTreeMap<String, Trusted>,
}

impl TrustList {
    /// A list that trusts nobody.
    pub fn empty() -> TrustList {
        TrustList::default()
    }

    /// The list of a file's text (see the module's doc).
    pub fn parse(text: &str) -> Result<TrustList, TrustError> {
        let mut list = TrustList::empty();
        for (index, raw) in text.lines().enumerate() {
            let line = index + 1;
            let error = |reason: String| TrustError::Line { line, reason };
            let trimmed = raw.trim();
            if trimmed.is_empty() || trimmed.starts_with('#') {
                continue;
            }
            let fields: Vec<&str> = trimmed.split_whitespace().collect();
            let [box_id, key, role] = fields[..] else {
                return Err(error(format!(
                    "{} fields, expected 3: box_id public-key role",
                    fields.len()
                )));
            };
            check_box_id(box_id)
                .map_err(|e| error(format!("box id {:?}: {e}", super::wire::clip(box_id))))?;
            let key: PublicKey = key.parse().map_err(error)?;
            let role: Role = role.parse().map_err(error)?;
            if list.boxes.contains_key(box_id) {
                return Err(error(format!("box {box_id:?} is listed twice")));
            }
            if let Some(other) = list.box_with_key(&key) {
                return Err(error(format!(
                    "key {} is listed for {:?} already",
                    key.fingerprint(),
                    other.box_id
                )));
            }
            list.boxes.insert(
                box_id.to_string(),
                Trusted {
                    box_id: box_id.to_string(),
                    key,
                    role,
                },
            );
        }
        Ok(list)
    }

    /// The list in the file `path`; empty when there is no file.
    pub fn load(path: &Path) -> Result<TrustList, TrustError> {
        let io_error = |source| TrustError::Io {
            path: path.to_path_buf(),
            source,
        };
        let file = match File::open(path) {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(TrustList::empty()),
            Err(e) => return Err(io_error(e)),
        };
        let mut bytes = Vec::new();
        file.take(MAX_FILE + 1)
            .read_to_end(&mut bytes)
            .map_err(io_error)?;
        if bytes.len() as u64 > MAX_FILE {
            return Err(io_error(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("over {MAX_FILE} bytes: not a trust list"),
            )));
        }
        let text = String::from_utf8(bytes).map_err(|e| {
            io_error(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("not UTF-8 text: {e}"),
            ))
        })?;
        TrustList::parse(&text).map_err(|e| match e {
            TrustError::Line { line, reason } => TrustError::File {
                path: path.to_path_buf(),
                line,
                reason,
            },
            other => other,
        })
    }

    /// The line of `box_id`.
    pub fn get(&self, box_id: &str) -> Option<&Trusted> {
        self.boxes.get(box_id)
    }

    /// The box listed with `key`.
    pub fn box_with_key(&self, key: &PublicKey) -> Option<&Trusted> {
        self.boxes.values().find(|t| t.key == *key)
    }

    /// Every box, sorted by id.
    pub fn entries(&self) -> impl Iterator<Item = &Trusted> {
        self.boxes.values()
    }

    /// How many boxes.
    pub fn len(&self) -> usize {
        self.boxes.len()
    }

    /// Whether it trusts nobody.
    pub fn is_empty(&self) -> bool {
        self.boxes.is_empty()
    }

    /// Adds `trusted`, replacing its box's line and any other box's line with the same key.
    pub fn add(&mut self, trusted: Trusted) {
        self.boxes
            .retain(|id, t| *id == trusted.box_id || t.key != trusted.key);
        self.boxes.insert(trusted.box_id.clone(), trusted);
    }

    /// Removes the line of `box_id`; whether there was one.
    pub fn remove(&mut self, box_id: &str) -> bool {
        self.boxes.remove(box_id).is_some()
    }

    /// The file's text: a header comment, then one line per box sorted by id.
    pub fn render(&self) -> String {
        let mut text = String::from(
            "# face-attendance: the boxes trusted to change the gallery (GALLERY_TRUSTED_KEYS).\n\
             # One line per box: BOX_ID PUBLIC_KEY ROLE. ROLE is `enroll` (adds people, and samples\n\
             # that match a person's) or `admin` (also replaces samples, deletes, forces duplicates).\n\
             # `face-attendance box key` on a box prints its line; every box needs the same file.\n\
             # Edited with `face-attendance box trust add|remove|list`.\n",
        );
        for t in self.boxes.values() {
            text.push_str(&format!("{} {} {}\n", t.box_id, t.key, t.role));
        }
        text
    }

    /// Writes [`TrustList::render`] to `path` atomically, mode 0644.
    pub fn save(&self, path: &Path) -> Result<(), TrustError> {
        let io_error = |source| TrustError::Io {
            path: path.to_path_buf(),
            source,
        };
        crate::fsutil::atomic_write(path, self.render().as_bytes()).map_err(io_error)?;
        fs::set_permissions(path, fs::Permissions::from_mode(0o644)).map_err(io_error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::replication::keys::BoxKey;

    fn key(n: u8) -> PublicKey {
        BoxKey::from_seed([n; 32]).public_key()
    }

    #[test]
    fn a_list_is_parsed_rendered_and_read_back() {
        let (a, b) = (key(1), key(2));
        let text = format!(
            "# the site's boxes\n\n  gate-1 {a} enroll  \n\t# office\noffice.main\t{b}\tadmin\n"
        );
        let list = TrustList::parse(&text).unwrap();
        assert_eq!(list.len(), 2);
        assert_eq!(list.get("gate-1").unwrap().key, a);
        assert_eq!(list.get("gate-1").unwrap().role, Role::Enroll);
        assert_eq!(list.get("office.main").unwrap().role, Role::Admin);
        assert!(list.get("gate-2").is_none());
        assert_eq!(list.box_with_key(&b).unwrap().box_id, "office.main");
        let rendered = list.render();
        assert!(rendered.starts_with("# face-attendance"), "{rendered}");
        assert!(rendered.ends_with(&format!("gate-1 {a} enroll\noffice.main {b} admin\n")));
        assert_eq!(TrustList::parse(&rendered).unwrap(), list);
        assert!(TrustList::parse(&TrustList::empty().render())
            .unwrap()
            .is_empty());
        assert!(TrustList::parse("").unwrap().is_empty());
    }

    #[test]
    fn roles() {
        assert!(Role::Admin.allows(Role::Enroll) && Role::Admin.allows(Role::Admin));
        assert!(Role::Enroll.allows(Role::Enroll) && !Role::Enroll.allows(Role::Admin));
        for role in [Role::Enroll, Role::Admin] {
            assert_eq!(role.to_string().parse::<Role>().unwrap(), role);
        }
        for bad in ["", "Admin", "ENROLL", "root", "admin ", "enrol"] {
            assert!(bad.parse::<Role>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn bad_lines_are_errors_naming_their_number() {
        let (a, b) = (key(1), key(2));
        let cases = [
            (format!("# x\ngate-1 {a}\n"), 2, "2 fields"),
            (format!("gate-1 {a} enroll extra\n"), 1, "4 fields"),
            (format!("\n\n\ngate/1 {a} enroll\n"), 4, "box id"),
            (format!("gate+1 {a} enroll\n"), 1, "box id"),
            (format!("{} {a} enroll\n", "x".repeat(65)), 1, "box id"),
            ("gate-1 ed25519:AAAA enroll\n".to_string(), 1, "bytes"),
            (
                format!("gate-1 {} enroll\n", &a.to_string()[8..]),
                1,
                "starts with",
            ),
            (format!("gate-1 {a} owner\n"), 1, "role"),
            (format!("gate-1 {a} Admin\n"), 1, "role"),
            (format!("gate-1 {a} enroll # trailing\n"), 1, "fields"),
            (
                format!("gate-1 {a} enroll\ngate-1 {b} admin\n"),
                2,
                "listed twice",
            ),
            (
                format!("gate-1 {a} enroll\n#\ngate-2 {a} admin\n"),
                3,
                "listed for \"gate-1\"",
            ),
        ];
        for (text, line, why) in cases {
            match TrustList::parse(&text) {
                Err(TrustError::Line { line: l, reason }) => {
                    assert_eq!(l, line, "{text:?}: {reason}");
                    assert!(reason.contains(why), "{text:?}: {reason}");
                }
                other => panic!("{text:?}: {other:?}"),
            }
        }
    }

    #[test]
    fn files_are_loaded_saved_and_errors_name_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("gallery-trusted-keys");
        // No file: nobody trusted.
        assert!(TrustList::load(&path).unwrap().is_empty());
        let (a, b, c) = (key(1), key(2), key(3));
        let mut list = TrustList::empty();
        list.add(Trusted {
            box_id: "gate-2".into(),
            key: a,
            role: Role::Enroll,
        });
        list.add(Trusted {
            box_id: "gate-1".into(),
            key: b,
            role: Role::Admin,
        });
        // The same box again: its line replaced.
        list.add(Trusted {
            box_id: "gate-2".into(),
            key: c,
            role: Role::Admin,
        });
        assert_eq!(list.len(), 2);
        assert_eq!(list.get("gate-2").unwrap().key, c);
        // Another box with gate-1's key: a key is one box's.
        list.add(Trusted {
            box_id: "gate-3".into(),
            key: b,
            role: Role::Enroll,
        });
        assert!(list.get("gate-1").is_none());
        assert_eq!(list.box_with_key(&b).unwrap().box_id, "gate-3");
        list.save(&path).unwrap();
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o7777;
        assert_eq!(mode, 0o644);
        let loaded = TrustList::load(&path).unwrap();
        assert_eq!(loaded, list);
        let ids: Vec<_> = loaded.entries().map(|t| t.box_id.as_str()).collect();
        assert_eq!(ids, ["gate-2", "gate-3"]);
        assert!(list.remove("gate-2"));
        assert!(!list.remove("gate-2"));
        list.save(&path).unwrap();
        assert_eq!(TrustList::load(&path).unwrap().len(), 1);
        // Errors in the file name it and the line.
        fs::write(&path, format!("\ngate-1 {a} boss\n")).unwrap();
        let err = TrustList::load(&path).unwrap_err();
        assert!(matches!(err, TrustError::File { line: 2, .. }), "{err:?}");
        assert!(err
            .to_string()
            .starts_with(&format!("{}: line 2:", path.display())));
        fs::write(&path, [0xffu8, 0xfe]).unwrap();
        assert!(matches!(TrustList::load(&path), Err(TrustError::Io { .. })));
        fs::write(&path, vec![b'#'; MAX_FILE as usize + 1]).unwrap();
        assert!(matches!(TrustList::load(&path), Err(TrustError::Io { .. })));
        // A folder in its place: an error, not an empty list.
        fs::remove_file(&path).unwrap();
        fs::create_dir(&path).unwrap();
        assert!(matches!(TrustList::load(&path), Err(TrustError::Io { .. })));
    }
}
