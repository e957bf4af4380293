//! A person's display name and group (a class, a department), kept in `people/<id>.json`
//! beside their samples' descriptions, and the rules every name and group passes wherever it
//! comes from (an API field, a CLI flag, `known_faces/<id>/person.json`, an archive, another
//! box).
//!
//! Contract: a name is 1 to [`NAME_MAX`] characters after trimming, a group 1 to
//! [`GROUP_MAX`]; neither holds a control character ([`char::is_control`]), a Unicode format
//! character (bidirectional overrides such as U+202E, zero-width spaces, the byte-order mark,
//! tags) or a line or paragraph separator: what the page, a CSV file or a log line shows is
//! what was typed. Zero-width joiner and non-joiner (U+200C, U+200D) are allowed: names in
//! Indic and Persian scripts need them. An empty value (after trimming) is refused: clearing
//! is said with `null`.

use serde::{Deserialize, Serialize};
use thiserror::Error;

/// Most characters of a display name.
pub const NAME_MAX: usize = 100;
/// Most characters of a group.
pub const GROUP_MAX: usize = 64;

/// A person's display name and group, each checked ([`check`]) when set.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Label {
    /// Their display name (`Alip Nugraha`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Their group (`7A`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
}

impl Label {
    /// Whether neither is set.
    pub fn is_empty(&self) -> bool {
        self.name.is_none() && self.group.is_none()
    }

    /// A label read from a file or a message: each value checked ([`check`]); the first bad
    /// one is the error.
    pub fn checked(name: Option<&str>, group: Option<&str>) -> Result<Label, LabelError> {
        Ok(Label {
            name: name.map(|n| check(Field::Name, n)).transpose()?,
            group: group.map(|g| check(Field::Group, g)).transpose()?,
        })
    }

    /// This label with each value checked again (a file written by hand, another box's
    /// message).
    pub fn rechecked(&self) -> Result<Label, LabelError> {
        Label::checked(self.name.as_deref(), self.group.as_deref())
    }
}

/// Which of the two a value is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    /// The display name.
    Name,
    /// The group.
    Group,
}

impl Field {
    /// As the API, the files and the CLI spell it: `name`, `group`.
    pub fn as_str(self) -> &'static str {
        match self {
            Field::Name => "name",
            Field::Group => "group",
        }
    }

    fn max(self) -> usize {
        match self {
            Field::Name => NAME_MAX,
            Field::Group => GROUP_MAX,
        }
    }
}

/// A name or group that breaks the rules (the field and why).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{}: {reason}", field.as_str())]
pub struct LabelError {
    /// Which value.
    pub field: Field,
    /// What is wrong with it.
    pub reason: String,
}

/// What a change does to a person's label: for each value, `None` keeps it, `Some(None)`
/// clears it, `Some(Some(v))` sets it (checked already).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LabelChange {
    /// The display name's change.
    pub name: Option<Option<String>>,
    /// The group's change.
    pub group: Option<Option<String>>,
}

impl LabelChange {
    /// A change that sets what `label` has and keeps the rest (an enrollment's fields).
    pub fn setting(label: Label) -> LabelChange {
        LabelChange {
            name: label.name.map(Some),
            group: label.group.map(Some),
        }
    }

    /// Whether it changes nothing.
    pub fn is_empty(&self) -> bool {
        self.name.is_none() && self.group.is_none()
    }

    /// `old` with this change made.
    pub fn apply(&self, old: &Label) -> Label {
        Label {
            name: self.name.clone().unwrap_or_else(|| old.name.clone()),
            group: self.group.clone().unwrap_or_else(|| old.group.clone()),
        }
    }
}

/// `value` trimmed, when it passes the rules of `field` (see the module docs).
pub fn check(field: Field, value: &str) -> Result<String, LabelError> {
    let bad = |reason: String| LabelError { field, reason };
    let value = value.trim();
    if value.is_empty() {
        return Err(bad("must not be empty (clear it with null)".into()));
    }
    let chars = value.chars().count();
    if chars > field.max() {
        return Err(bad(format!(
            "at most {} characters, got {chars}",
            field.max()
        )));
    }
    if let Some(c) = value.chars().find(|c| is_forbidden(*c)) {
        return Err(bad(format!(
            "must not hold control or invisible formatting characters (U+{:04X})",
            c as u32
        )));
    }
    Ok(value.to_string())
}

/// Control characters, Unicode format characters (general category Cf) but the joiners, and
/// the line and paragraph separators.
fn is_forbidden(c: char) -> bool {
    if c.is_control() {
        return true;
    }
    let n = c as u32;
    matches!(
        n,
        0x00AD
            | 0x0600..=0x0605
            | 0x061C
            | 0x06DD
            | 0x070F
            | 0x0890..=0x0891
            | 0x08E2
            | 0x180E
            | 0x200B
            | 0x200E..=0x200F
            | 0x2028..=0x202E
            | 0x2060..=0x2064
            | 0x2066..=0x206F
            | 0xFEFF
            | 0xFFF9..=0xFFFB
            | 0x110BD
            | 0x110CD
            | 0x13430..=0x1343F
            | 0x1BCA0..=0x1BCA3
            | 0x1D173..=0x1D17A
            | 0xE0001
            | 0xE0020..=0xE007F
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_trimmed_and_bounded() {
        assert_eq!(
            check(Field::Name, "  Alip Nugraha ").unwrap(),
            "Alip Nugraha"
        );
        assert_eq!(
            check(Field::Name, &"é".repeat(100))
                .unwrap()
                .chars()
                .count(),
            100
        );
        let long = check(Field::Name, &"é".repeat(101)).unwrap_err();
        assert_eq!(long.field, Field::Name);
        assert!(long.to_string().starts_with("name: at most 100"), "{long}");
        assert!(check(Field::Group, &"x".repeat(65)).is_err());
        assert!(check(Field::Group, &"x".repeat(64)).is_ok());
        assert!(check(Field::Group, "   ").is_err());
    }

    #[test]
    fn control_and_invisible_characters_are_refused_but_joiners_are_not() {
        for bad in [
            "Al\u{202E}pi",
            "a\nb",
            "a\u{0}b",
            "a\u{7F}",
            "a\u{200B}b",
            "\u{FEFF}a",
            "a\u{2028}b",
            "a\u{2066}b",
            "a\u{E0041}",
            "a\u{AD}b",
        ] {
            let e = check(Field::Name, bad).unwrap_err();
            assert!(e.reason.contains("U+"), "{bad:?}: {e}");
        }
        // Malayalam and Persian names use the joiners; emoji too.
        for ok in [
            "ന്‍",
            "می\u{200C}خواهم",
            "Budi 👨\u{200D}👩",
            "Ñandú O'Brien-Smith",
        ] {
            assert!(check(Field::Name, ok).is_ok(), "{ok:?}");
        }
    }

    #[test]
    fn a_change_keeps_clears_or_sets_each_value() {
        let old = Label {
            name: Some("A".into()),
            group: Some("7A".into()),
        };
        let change = LabelChange {
            name: None,
            group: Some(None),
        };
        assert_eq!(
            change.apply(&old),
            Label {
                name: Some("A".into()),
                group: None
            }
        );
        assert!(LabelChange::default().is_empty());
        assert_eq!(
            LabelChange::setting(old.clone()).apply(&Label::default()),
            old
        );
    }
}
