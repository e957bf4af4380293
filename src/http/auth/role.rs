//! Roles: what a key may do. Each role includes the ones below it:
//! `kiosk` < `viewer` < `operator` < `admin`.
//!
//! - `kiosk`: a greeting screen on the box: its session, tickets, the recognitions feed.
//! - `viewer`: the page, the live view, the event log, reading people and unknowns, `/metrics`.
//! - `operator`: adds enrolling, capturing, rejecting, enrolling or forgetting unknowns,
//!   `/recognize`, `/recognize/realtime` and `/mock/webhook`.
//! - `admin`: adds deleting, renaming, gallery export and import, `/config`.
//!
//! A box without keys answers everyone as `admin`, as the original service did (it listens on
//! loopback only then, unless told otherwise).

use std::fmt;

/// A key's role. Ordered: a role may do everything a lower one may.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    /// A greeting screen: its session, tickets, the recognitions feed.
    Kiosk,
    /// Adds reading: the page's data, the live view, the event log, people, unknowns, `/metrics`.
    Viewer,
    /// Adds enrolling, capturing, rejecting, the unknowns' enrollment, recognition.
    Operator,
    /// Adds deleting, renaming, gallery export and import, `/config`.
    Admin,
}

impl Role {
    /// Every role, lowest first.
    pub const ALL: [Role; 4] = [Role::Kiosk, Role::Viewer, Role::Operator, Role::Admin];

    /// The role as keys files and answers spell it (`kiosk`, `viewer`, `operator`, `admin`).
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Kiosk => "kiosk",
            Role::Viewer => "viewer",
            Role::Operator => "operator",
            Role::Admin => "admin",
        }
    }

    /// The role named `word` (lower case, as written in a keys file).
    pub fn parse(word: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.as_str() == word)
    }

    /// Whether this role may do what `needed` may.
    pub fn allows(self, needed: Role) -> bool {
        self >= needed
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_role_includes_the_ones_below_it() {
        assert!(Role::Admin.allows(Role::Kiosk));
        assert!(Role::Operator.allows(Role::Viewer));
        assert!(Role::Viewer.allows(Role::Viewer));
        assert!(!Role::Viewer.allows(Role::Operator));
        assert!(!Role::Kiosk.allows(Role::Viewer));
        for role in Role::ALL {
            assert_eq!(Role::parse(role.as_str()), Some(role));
        }
        assert_eq!(Role::parse("Admin"), None);
        assert_eq!(Role::parse("root"), None);
    }
}
