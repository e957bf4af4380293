//! `student_id` names files on disk, so it is checked before it touches a path. As JSON (the
//! replication state, `data/gallery-sync.json`) it is a string, checked again when read.

use std::fmt;

use serde::{Deserialize, Serialize};

/// A validated person id: 1-64 of `A-Z a-z 0-9 _ - .`, not starting with `.`.
/// No such string can name a parent directory, an absolute path or a hidden file.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StudentId(String);

/// Longest id, in bytes.
pub const MAX_LEN: usize = 64;

/// Ids the service itself answers with, which no person may take.
pub const RESERVED: &[&str] = &[super::UNKNOWN];

impl StudentId {
    /// Validates `raw`; the error is a sentence for the user.
    pub fn parse(raw: &str) -> Result<StudentId, String> {
        if raw.is_empty() {
            return Err("student_id is empty".into());
        }
        if raw.len() > MAX_LEN {
            return Err(format!("student_id is longer than {MAX_LEN} characters"));
        }
        if raw.starts_with('.') {
            return Err("student_id must not start with '.'".into());
        }
        if let Some(bad) = raw
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.')))
        {
            return Err(format!(
                "student_id may only contain letters, digits, '_', '-' and '.', not {bad:?}"
            ));
        }
        Ok(StudentId(raw.to_string()))
    }

    /// Validates `raw` as the id of a person being added (enrolled, renamed to, imported or
    /// synced): [`StudentId::parse`]'s rules, and not an id the service itself answers with
    /// ([`RESERVED`], any case): a person enrolled as `Unknown` would be reported as a stranger
    /// and fire no event, a way to hide anyone. An existing person of such an id (from before
    /// this rule) still loads and can be renamed or deleted.
    pub fn parse_new(raw: &str) -> Result<StudentId, String> {
        let id = StudentId::parse(raw)?;
        match RESERVED.iter().find(|r| r.eq_ignore_ascii_case(raw)) {
            Some(reserved) => Err(format!(
                "student_id {raw:?} is reserved: the service answers {reserved:?} for a face it \
                 does not know"
            )),
            None => Ok(id),
        }
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for StudentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Written as its text.
impl Serialize for StudentId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// Read as text, refused unless [`StudentId::parse`] accepts it.
impl<'de> Deserialize<'de> for StudentId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<StudentId, D::Error> {
        let raw = String::deserialize(d)?;
        StudentId::parse(&raw).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_ordinary_ids() {
        for ok in ["alip", "A-12_b.c", "2023.001", &"x".repeat(64)] {
            assert_eq!(StudentId::parse(ok).unwrap().as_str(), ok);
        }
    }

    #[test]
    fn refuses_anything_that_could_escape_data() {
        for bad in [
            "",
            "../x",
            "../../etc",
            "a/b",
            "a\\b",
            ".hidden",
            ".",
            "..",
            "/etc/passwd",
            "a b",
            "é",
            "a\0b",
            "a\nb",
            &"x".repeat(65),
        ] {
            assert!(StudentId::parse(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn the_answers_of_the_service_are_no_ones_id() {
        for reserved in ["Unknown", "unknown", "UNKNOWN", "uNkNoWn"] {
            assert!(
                StudentId::parse(reserved).is_ok(),
                "existing ones still load"
            );
            let err = StudentId::parse_new(reserved).unwrap_err();
            assert!(err.contains("reserved"), "{err}");
        }
        assert!(StudentId::parse_new("unknown2").is_ok());
        assert!(StudentId::parse_new("../x").is_err());
    }
}
