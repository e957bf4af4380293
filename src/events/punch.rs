//! In or out: what an attendance event says the person did.

use serde::{Deserialize, Serialize};

/// Whether a person came in or went out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Punch {
    /// Came in.
    In,
    /// Went out.
    Out,
}

impl Punch {
    /// As JSON, CSV and `FACE_PUNCH` spell it: `in`, `out`.
    pub fn as_str(self) -> &'static str {
        match self {
            Punch::In => "in",
            Punch::Out => "out",
        }
    }
}
