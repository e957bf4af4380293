//! Who may change the gallery, as this box knows it: its own key ([`BoxKey`], made at first
//! start in the data folder), the site's trust list (`GALLERY_TRUSTED_KEYS`, [`TrustList`]),
//! read again when the file changes (checked at most every [`RECHECK`]; a file that does not
//! read keeps the list it replaces, and says why in `/health`), and this box's own role in it.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use serde_json::{json, Value};

use super::envelope::{self, Refusal};
use super::keys::{BoxKey, PublicKey};
use super::topics::Kind;
use super::trust::{Role, TrustList, Trusted};
use super::{Refused, ReplicationError};

/// How often the trust list's file is looked at for a change.
pub(super) const RECHECK: Duration = Duration::from_secs(2);

/// The key, the list, and where the list came from.
pub(super) struct Signers {
    key: BoxKey,
    public: PublicKey,
    box_id: String,
    path: PathBuf,
    list: TrustList,
    /// The file's modification time and length when last read (none: no file).
    read: Option<(SystemTime, u64)>,
    checked: Instant,
    problem: Option<String>,
    /// The list or its problem changed since [`Signers::show`] was last asked.
    changed: bool,
}

impl Signers {
    /// This box's key (made when missing) in `data_dir`, and the trust list at `path` (a
    /// missing file is an empty list; one that does not read is an error).
    pub(super) fn open(
        data_dir: &Path,
        box_id: &str,
        path: &Path,
    ) -> Result<Signers, ReplicationError> {
        let key = BoxKey::load_or_create(data_dir).map_err(ReplicationError::Key)?;
        let read = stamp(path);
        let list = TrustList::load(path).map_err(ReplicationError::Trust)?;
        Ok(Signers {
            public: key.public_key(),
            key,
            box_id: box_id.to_string(),
            path: path.to_path_buf(),
            list,
            read,
            checked: Instant::now(),
            problem: None,
            changed: true,
        })
    }

    /// Reads the trust list again when its file changed (at most every [`RECHECK`]); `true`
    /// when the list changed.
    pub(super) fn refresh(&mut self, now: Instant) -> bool {
        if now.saturating_duration_since(self.checked) < RECHECK {
            return false;
        }
        self.checked = now;
        let read = stamp(&self.path);
        if read == self.read {
            return false;
        }
        self.read = read;
        self.changed = true;
        match TrustList::load(&self.path) {
            Ok(list) => {
                self.problem = None;
                log::info!(
                    "gallery sync: trust list {} read again: {} keys",
                    self.path.display(),
                    list.len()
                );
                self.list = list;
                true
            }
            Err(e) => {
                log::error!("gallery sync: {e}; the previous trust list stays");
                self.problem = Some(e.to_string());
                false
            }
        }
    }

    /// This box's role: listed under its box id with its own key (none: not trusted).
    pub(super) fn own_role(&self) -> Option<Role> {
        self.list
            .get(&self.box_id)
            .filter(|t| t.key == self.public)
            .map(|t| t.role)
    }

    /// Who signed a message of `kind`, when the list trusts them and the signature holds.
    pub(super) fn verify(&self, kind: Kind, payload: &[u8]) -> Result<Trusted, Refused> {
        envelope::verify(kind, payload, &self.list).map_err(|r| match r {
            Refusal::Unsigned => Refused::Unsigned,
            Refusal::UnknownSigner(who) => Refused::Untrusted(who),
            Refusal::BadSignature(who) => Refused::BadSignature(who),
        })
    }

    /// `unsigned` (a JSON object) signed by this box.
    pub(super) fn seal(&self, kind: Kind, unsigned: &[u8]) -> Vec<u8> {
        envelope::seal(kind, unsigned, &self.box_id, &self.key)
    }

    /// Whether the list (or its problem) changed since [`Signers::show`] was last asked.
    pub(super) fn changed_since_shown(&self) -> bool {
        self.changed
    }

    /// What `/health` says of trust (`gallery_sync.trust`).
    pub(super) fn show(&mut self) -> Value {
        self.changed = false;
        json!({
            "box_id": self.box_id,
            "key": self.public.to_string(),
            "role": self.own_role().map(|r| r.to_string()),
            "trusted_keys": self.list.len(),
            "trust_file": self.path.display().to_string(),
            "trust_file_problem": self.problem,
        })
    }
}

fn stamp(path: &Path) -> Option<(SystemTime, u64)> {
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.modified().ok()?, meta.len()))
}
