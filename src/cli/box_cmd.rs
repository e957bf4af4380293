//! `face-attendance box key` and `box trust add|remove|list`: this box's signing key for gallery
//! sync and the site's trust list (`GALLERY_TRUSTED_KEYS`), without a server.
//!
//! - `box key` prints `BOX_ID ed25519:<public key>`, the first two fields of this box's line in
//!   the trust list (`box trust add $(ssh gate-2 face-attendance box key) enroll`), and makes the
//!   key (`data/box-key`, mode 0600) when there is none yet; a key file that cannot be used is
//!   one `error:` line on stderr and exit 2.
//! - `box trust …` print one JSON object, `{"ok":true,…}`, as the `people` commands do; a failure
//!   prints `{"ok":false,"error":…}` and exits 1 (bad input: an id, a key, a role, a box not
//!   listed, a key listed for another box) or 2 (the file cannot be read or written, or is not a
//!   trust list). A file that is not a trust list is never overwritten.

use std::path::PathBuf;

use clap::{Args, Subcommand};
use serde_json::{json, Value};

use super::args::DataArgs;
use super::{EXIT_INPUT, EXIT_SETUP};
use crate::data_format::Access;
use crate::replication::keys::{key_path, BoxKey, PublicKey};
use crate::replication::trust::{Role, TrustList, Trusted};
use crate::replication::wire::check_box_id;

/// `face-attendance box …`.
#[derive(Debug, Subcommand)]
pub enum BoxCommand {
    /// Print this box's id and public key (`BOX_ID ed25519:KEY`), its line for the trust list
    /// less the role; makes the key (data/box-key, mode 0600) at first use
    Key(KeyArgs),
    /// The boxes trusted to change the gallery (GALLERY_TRUSTED_KEYS): add, remove, list
    Trust {
        /// What to do with it.
        #[command(subcommand)]
        command: TrustCommand,
        /// The trust list's file.
        #[command(flatten)]
        file: TrustFileArgs,
    },
}

/// The settings of `box key`.
#[derive(Debug, Args)]
pub struct KeyArgs {
    /// The data folder (the key is its box-key file).
    #[command(flatten)]
    data: DataArgs,
    /// This box's name in MQTT topics, unique per box (default: the host name)
    #[arg(long, env = "BOX_ID")]
    box_id: Option<String>,
}

/// Where the trust list is.
#[derive(Debug, Args)]
pub struct TrustFileArgs {
    /// The data folder (the trust list's default place; `list` reads this box's key there).
    #[command(flatten)]
    data: DataArgs,
    /// The trust list of gallery sync: `box_id public-key role` lines (default:
    /// <data dir>/gallery-trusted-keys)
    #[arg(long, env = "GALLERY_TRUSTED_KEYS", global = true)]
    gallery_trusted_keys: Option<PathBuf>,
}

impl TrustFileArgs {
    fn path(&self) -> PathBuf {
        self.gallery_trusted_keys
            .clone()
            .unwrap_or_else(|| crate::settings::default_trust_file(&self.data.data_dir))
    }
}

/// `face-attendance box trust …`.
#[derive(Debug, Subcommand)]
pub enum TrustCommand {
    /// Trust BOX_ID's KEY with ROLE (enroll or admin), replacing its line if it has one
    Add {
        /// The box's id (its BOX_ID)
        box_id: String,
        /// Its public key, `ed25519:…` as `box key` prints it
        key: String,
        /// enroll (adds people, and samples that match a person's) or admin (also replaces
        /// samples, deletes, forces duplicates)
        role: String,
    },
    /// Stop trusting BOX_ID (what it changed stays)
    Remove {
        /// The box's id
        box_id: String,
    },
    /// The trusted boxes: {"ok":true,"file":…,"total":N,"boxes":[…]}
    List,
}

/// A failure: its message and the exit status.
struct Failure(String, i32);

impl Failure {
    fn input(message: impl Into<String>) -> Failure {
        Failure(message.into(), EXIT_INPUT)
    }

    fn setup(message: impl ToString) -> Failure {
        Failure(message.to_string(), EXIT_SETUP)
    }
}

/// Runs `box …`; returns the exit status.
/// The data folder's format marker is checked first ([`crate::data_format`]): `key` writes the
/// folder (its key), `trust add|remove` when the trust list is the folder's.
pub fn run(command: &BoxCommand) -> i32 {
    match command {
        BoxCommand::Key(args) => key(args),
        BoxCommand::Trust { command, file } => {
            let writes = !matches!(command, TrustCommand::List)
                && file.path().starts_with(&file.data.data_dir);
            let access = if writes { Access::Write } else { Access::Read };
            super::with_data_format(&file.data.data_dir, access, || match trust(command, file) {
                Ok(answer) => {
                    println!("{answer}");
                    0
                }
                Err(Failure(error, status)) => {
                    println!("{}", json!({"ok": false, "error": error}));
                    status
                }
            })
        }
    }
}

fn key(args: &KeyArgs) -> i32 {
    let box_id = match args.box_id.as_deref().map(str::trim) {
        Some(id) => id.to_string(),
        None => crate::settings::host_box_id(),
    };
    if let Err(e) = check_box_id(&box_id) {
        eprintln!("error: BOX_ID {box_id:?}: {e}");
        return EXIT_SETUP;
    }
    let data = &args.data.data_dir;
    if let Err(e) = crate::data_format::check(data, Access::Write) {
        eprintln!("error: {e}");
        return EXIT_SETUP;
    }
    let existed = matches!(BoxKey::load(data), Ok(Some(_)));
    match BoxKey::load_or_create(data) {
        Ok(key) => {
            if !existed {
                log::info!(
                    "made this box's key: {} (mode 0600)",
                    key_path(data).display()
                );
            }
            println!("{box_id} {}", key.public_key());
            0
        }
        Err(e) => {
            eprintln!("error: {e}");
            EXIT_SETUP
        }
    }
}

fn entry(t: &Trusted, own: Option<&PublicKey>) -> Value {
    json!({
        "box_id": t.box_id,
        "public_key": t.key.to_string(),
        "fingerprint": t.key.fingerprint(),
        "role": t.role.as_str(),
        "this_box": own == Some(&t.key),
    })
}

fn trust(command: &TrustCommand, file: &TrustFileArgs) -> Result<Value, Failure> {
    let path = file.path();
    let mut list = TrustList::load(&path).map_err(Failure::setup)?;
    let shown = path.display().to_string();
    match command {
        TrustCommand::Add { box_id, key, role } => {
            check_box_id(box_id).map_err(|e| Failure::input(format!("box id {box_id:?}: {e}")))?;
            let key: PublicKey = key
                .parse()
                .map_err(|e| Failure::input(format!("key: {e}")))?;
            let role: Role = role.parse().map_err(Failure::input)?;
            if let Some(other) = list.box_with_key(&key).filter(|t| t.box_id != *box_id) {
                return Err(Failure::input(format!(
                    "key {} is box {:?}'s already: one key per box (remove that line first)",
                    key.fingerprint(),
                    other.box_id
                )));
            }
            let replaced = list.get(box_id).map(|t| entry(t, None));
            let added = Trusted {
                box_id: box_id.clone(),
                key,
                role,
            };
            let answer = entry(&added, None);
            list.add(added);
            list.save(&path).map_err(Failure::setup)?;
            Ok(json!({
                "ok": true,
                "file": shown,
                "added": answer,
                "replaced": replaced,
                "total": list.len(),
            }))
        }
        TrustCommand::Remove { box_id } => {
            if !list.remove(box_id) {
                return Err(Failure::input(format!(
                    "not found: box {:?} is not in {shown}",
                    box_id.chars().take(80).collect::<String>()
                )));
            }
            list.save(&path).map_err(Failure::setup)?;
            Ok(json!({"ok": true, "file": shown, "removed": box_id, "total": list.len()}))
        }
        TrustCommand::List => {
            // This box's key, to mark its line; a key file that cannot be read marks none.
            let own = match BoxKey::load(&file.data.data_dir) {
                Ok(key) => key.map(|k| k.public_key()),
                Err(e) => {
                    log::warn!("{e}");
                    None
                }
            };
            let boxes: Vec<Value> = list.entries().map(|t| entry(t, own.as_ref())).collect();
            Ok(json!({
                "ok": true,
                "file": shown,
                "total": list.len(),
                "boxes": boxes,
                "this_box_key": own.map(|k| k.to_string()),
            }))
        }
    }
}
