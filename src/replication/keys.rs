//! A box's signing key for gallery replication, and the public keys of others.
//!
//! Contract:
//! - A box's key ([`BoxKey`]) is an Ed25519 key whose 32-byte seed lives in `data/box-key`
//!   ([`key_path`]), as one line of text: `ed25519-secret:<standard base64 of the seed>\n`.
//! - [`BoxKey::load_or_create`] makes it at first use, from the OS's random bytes: written to a
//!   temp file opened with mode 0600 (never readable by others, not even for an instant), synced,
//!   then given its name without replacing a file another process made at the same moment (that
//!   one wins, and is the key returned). When root makes it (`sudo face-attendance box key`), the
//!   file is given to the data folder's owner, so that the service's user can read it.
//! - Reading a key file refuses, with an error naming the path: a file that group or others may
//!   read or write ([`KeyError::Exposed`]; the fix is `chmod 600`: the key may have leaked, and
//!   a key other users can read signs as this box for them), and a damaged file
//!   ([`KeyError::Damaged`]). A damaged or exposed file is never replaced silently: a box's key
//!   is its identity in the other boxes' trust lists.
//! - The secret is never printed (no `Debug` of it) and is wiped from memory when the key is
//!   dropped.
//! - A public key ([`PublicKey`]) is written `ed25519:<standard base64 of 32 bytes>`; parsing
//!   accepts only the canonical text of a valid, non-weak key. Verification is strict
//!   (`verify_strict`: no small-order keys or malleable signatures).

use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::str::FromStr;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use ed25519_dalek::{Signature, SigningKey, VerifyingKey};
use sha2::{Digest, Sha256};
use thiserror::Error;
use zeroize::Zeroizing;

/// The key file's name in the data folder.
pub const KEY_FILE: &str = "box-key";

/// What starts a public key's text.
pub const PUBLIC_PREFIX: &str = "ed25519:";

/// What starts the key file's text.
const SECRET_PREFIX: &str = "ed25519-secret:";

/// A key file is one short line: anything longer is not one.
const MAX_KEY_FILE: u64 = 256;

/// The key file of the data folder `data_dir`.
pub fn key_path(data_dir: &Path) -> PathBuf {
    data_dir.join(KEY_FILE)
}

/// What reading or making a box's key can fail with.
#[derive(Debug, Error)]
pub enum KeyError {
    /// The file (or its folder) could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// The error.
        source: io::Error,
    },
    /// The file is not a key: why.
    #[error("{}: not a box key ({reason}); it is not replaced: restore it, or remove it to make a new key (then the other boxes must trust the new one)", path.display())]
    Damaged {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// Group or others may read or write the file (its mode).
    #[error("{}: mode {mode:04o} lets other users read or change this box's secret key; `chmod 600` it (and make a new key if someone may have copied it)", path.display())]
    Exposed {
        /// The file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// The OS gave no random bytes.
    #[error("no random bytes from the OS: {0}")]
    Random(String),
}

/// A public key: Ed25519, 32 bytes. Written `ed25519:<standard base64>` ([`fmt::Display`],
/// [`FromStr`]).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PublicKey([u8; 32]);

impl PublicKey {
    /// The key from its 32 bytes, if they are a valid, non-weak Ed25519 key.
    pub fn from_bytes(bytes: [u8; 32]) -> Option<PublicKey> {
        let key = VerifyingKey::from_bytes(&bytes).ok()?;
        (!key.is_weak()).then_some(PublicKey(bytes))
    }

    /// Its 32 bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Whether `signature` is this key's on `message` (strict: Ed25519 `verify_strict`).
    pub fn verify(&self, message: &[u8], signature: &[u8; 64]) -> bool {
        let Ok(key) = VerifyingKey::from_bytes(&self.0) else {
            return false;
        };
        key.verify_strict(message, &Signature::from_bytes(signature))
            .is_ok()
    }

    /// A short name for logs and people: the first 16 hex digits of the SHA-256 of its bytes.
    pub fn fingerprint(&self) -> String {
        Sha256::digest(self.0)
            .iter()
            .take(8)
            .map(|b| format!("{b:02x}"))
            .collect()
    }
}

impl fmt::Display for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{PUBLIC_PREFIX}{}", STANDARD.encode(self.0))
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({self})")
    }
}

impl FromStr for PublicKey {
    type Err = String;

    /// `ed25519:` and the canonical standard base64 (with padding) of a valid key's 32 bytes.
    fn from_str(text: &str) -> Result<PublicKey, String> {
        let Some(encoded) = text.strip_prefix(PUBLIC_PREFIX) else {
            return Err(format!("a public key starts with {PUBLIC_PREFIX:?}"));
        };
        let bytes = STANDARD
            .decode(encoded)
            .map_err(|e| format!("not base64 after {PUBLIC_PREFIX:?}: {e}"))?;
        let bytes: [u8; 32] = bytes
            .try_into()
            .map_err(|b: Vec<u8>| format!("{} bytes, a public key has 32", b.len()))?;
        PublicKey::from_bytes(bytes).ok_or_else(|| "not a valid Ed25519 public key".to_string())
    }
}

/// This box's signing key (`data/box-key`). Its secret is never printed, and is wiped when it
/// is dropped.
pub struct BoxKey {
    signing: SigningKey,
}

impl fmt::Debug for BoxKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "BoxKey({})", self.public_key())
    }
}

impl BoxKey {
    /// The key of the data folder `data_dir`, made (and the folder too) if there is none yet.
    pub fn load_or_create(data_dir: &Path) -> Result<BoxKey, KeyError> {
        if let Some(key) = BoxKey::load(data_dir)? {
            return Ok(key);
        }
        fs::create_dir_all(data_dir).map_err(|source| KeyError::Io {
            path: data_dir.to_path_buf(),
            source,
        })?;
        let mut seed = Zeroizing::new([0u8; 32]);
        getrandom::fill(seed.as_mut()).map_err(|e| KeyError::Random(e.to_string()))?;
        let path = key_path(data_dir);
        let text = Zeroizing::new(format!(
            "{SECRET_PREFIX}{}\n",
            STANDARD.encode(seed.as_ref())
        ));
        match create_new_private(data_dir, &path, text.as_bytes()) {
            Ok(()) => Ok(BoxKey {
                signing: SigningKey::from_bytes(&seed),
            }),
            // Another process made it first: theirs is the key.
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => BoxKey::load(data_dir)?
                .ok_or_else(|| KeyError::Io {
                    path,
                    source: io::Error::new(io::ErrorKind::NotFound, "made, then gone"),
                }),
            Err(source) => Err(KeyError::Io { path, source }),
        }
    }

    /// The key of the data folder `data_dir`; `None` when it has none.
    pub fn load(data_dir: &Path) -> Result<Option<BoxKey>, KeyError> {
        let path = key_path(data_dir);
        let io_error = |source| KeyError::Io {
            path: path.clone(),
            source,
        };
        let file = match File::open(&path) {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io_error(e)),
        };
        let meta = file.metadata().map_err(io_error)?;
        if !meta.is_file() {
            return Err(KeyError::Damaged {
                path,
                reason: "not a regular file".into(),
            });
        }
        let mode = meta.permissions().mode() & 0o7777;
        if mode & 0o077 != 0 {
            return Err(KeyError::Exposed { path, mode });
        }
        let mut raw = Zeroizing::new(Vec::new());
        file.take(MAX_KEY_FILE + 1)
            .read_to_end(&mut raw)
            .map_err(io_error)?;
        let damaged = |reason: &str| KeyError::Damaged {
            path: path.clone(),
            reason: reason.to_string(),
        };
        if raw.len() as u64 > MAX_KEY_FILE {
            return Err(damaged("too long"));
        }
        let text = std::str::from_utf8(&raw).map_err(|_| damaged("not text"))?;
        let line = text.strip_suffix('\n').unwrap_or(text);
        let encoded = line
            .strip_prefix(SECRET_PREFIX)
            .ok_or_else(|| damaged(&format!("does not start with {SECRET_PREFIX:?}")))?;
        let seed = Zeroizing::new(
            STANDARD
                .decode(encoded)
                .map_err(|_| damaged("not one line of base64 after the prefix"))?,
        );
        let seed: &[u8; 32] = seed
            .as_slice()
            .try_into()
            .map_err(|_| damaged(&format!("{} bytes of seed, 32 expected", seed.len())))?;
        Ok(Some(BoxKey {
            signing: SigningKey::from_bytes(seed),
        }))
    }

    /// The key of a known seed: for tests and the fuzz target (a box's own key comes from
    /// [`BoxKey::load_or_create`]).
    #[doc(hidden)]
    pub fn from_seed(seed: [u8; 32]) -> BoxKey {
        let seed = Zeroizing::new(seed);
        BoxKey {
            signing: SigningKey::from_bytes(&seed),
        }
    }

    /// Its public key.
    pub fn public_key(&self) -> PublicKey {
        PublicKey(self.signing.verifying_key().to_bytes())
    }

    /// Its Ed25519 signature of `message`.
    pub fn sign(&self, message: &[u8]) -> [u8; 64] {
        use ed25519_dalek::Signer;
        self.signing.sign(message).to_bytes()
    }
}

/// Writes `bytes` as the new file `path` in `dir`, mode 0600 from its creation, durably, without
/// replacing a file there (`AlreadyExists` then). Made by root, it is given to `dir`'s owner.
fn create_new_private(dir: &Path, path: &Path, bytes: &[u8]) -> io::Result<()> {
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    let temp = dir.join(format!(".{name}.new-{}", std::process::id()));
    let result = (|| {
        // A leftover of a process killed here with the same pid: never a key in use.
        let _ = fs::remove_file(&temp);
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&temp)?;
        // The mode given at creation is masked by the umask: only ever narrower, but set it
        // exactly.
        file.set_permissions(fs::Permissions::from_mode(0o600))?;
        give_to_folder_owner(&file, dir)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        drop(file);
        match fs::hard_link(&temp, path) {
            Ok(()) => {}
            // File systems without hard links: a rename, which could replace a key made at
            // this very instant by another process (then both hold a key; the file has one).
            Err(e)
                if matches!(
                    e.raw_os_error(),
                    Some(libc::EPERM | libc::EOPNOTSUPP | libc::EMLINK)
                ) =>
            {
                if path.exists() {
                    return Err(io::ErrorKind::AlreadyExists.into());
                }
                fs::rename(&temp, path)?;
            }
            Err(e) => return Err(e),
        }
        crate::fsutil::sync_dir(dir)
    })();
    let _ = fs::remove_file(&temp);
    result
}

/// Run as root, gives `file` to the owner of `dir` (when that is another user).
fn give_to_folder_owner(file: &File, dir: &Path) -> io::Result<()> {
    // SAFETY: geteuid takes no argument, cannot fail and touches no memory of ours.
    let euid = unsafe { libc::geteuid() };
    if euid != 0 {
        return Ok(());
    }
    let owner = fs::metadata(dir)?;
    if owner.uid() == 0 && owner.gid() == 0 {
        return Ok(());
    }
    std::os::unix::fs::fchown(file, Some(owner.uid()), Some(owner.gid()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_is_made_once_mode_0600_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        assert!(BoxKey::load(&data).unwrap().is_none());
        let key = BoxKey::load_or_create(&data).unwrap();
        let path = key_path(&data);
        let meta = fs::metadata(&path).unwrap();
        assert_eq!(meta.permissions().mode() & 0o7777, 0o600);
        let text = fs::read_to_string(&path).unwrap();
        assert!(
            text.starts_with("ed25519-secret:") && text.ends_with("=\n"),
            "{text}"
        );
        assert_eq!(text.len(), "ed25519-secret:".len() + 44 + 1);
        // Read back, made again: the same key; no temp file left.
        let again = BoxKey::load_or_create(&data).unwrap();
        assert_eq!(again.public_key(), key.public_key());
        assert_eq!(
            BoxKey::load(&data).unwrap().unwrap().public_key(),
            key.public_key()
        );
        let names: Vec<_> = fs::read_dir(&data)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, [KEY_FILE]);
        // Another folder: another key.
        let other = BoxKey::load_or_create(&dir.path().join("other")).unwrap();
        assert_ne!(other.public_key(), key.public_key());
    }

    #[test]
    fn the_secret_is_never_printed() {
        let dir = tempfile::tempdir().unwrap();
        let key = BoxKey::load_or_create(dir.path()).unwrap();
        let text = fs::read_to_string(key_path(dir.path())).unwrap();
        let secret = text.trim_end().strip_prefix(SECRET_PREFIX).unwrap();
        let shown = format!("{key:?}");
        assert!(!shown.contains(secret), "{shown}");
        assert!(shown.contains(&key.public_key().to_string()), "{shown}");
    }

    #[test]
    fn a_known_seed_gives_the_rfc_8032_key_and_signature() {
        // RFC 8032, 7.1, TEST 1.
        let dir = tempfile::tempdir().unwrap();
        let seed = hex("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60");
        let path = key_path(dir.path());
        fs::write(
            &path,
            format!("{SECRET_PREFIX}{}\n", STANDARD.encode(&seed)),
        )
        .unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
        let key = BoxKey::load(dir.path()).unwrap().unwrap();
        let public = hex("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a");
        assert_eq!(key.public_key().as_bytes().as_slice(), public);
        let signature = key.sign(b"");
        assert_eq!(
            signature.to_vec(),
            hex(concat!(
                "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e06522490155",
                "5fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b"
            ))
        );
        assert!(key.public_key().verify(b"", &signature));
        assert!(!key.public_key().verify(b"x", &signature));
        let mut bad = signature;
        bad[63] ^= 0x10;
        assert!(!key.public_key().verify(b"", &bad));
    }

    #[test]
    fn public_keys_are_written_and_read_canonically() {
        let dir = tempfile::tempdir().unwrap();
        let key = BoxKey::load_or_create(dir.path()).unwrap().public_key();
        let text = key.to_string();
        assert!(
            text.starts_with("ed25519:") && text.len() == 8 + 44,
            "{text}"
        );
        assert_eq!(text.parse::<PublicKey>().unwrap(), key);
        assert_eq!(key.fingerprint().len(), 16);
        assert!(key.fingerprint().chars().all(|c| c.is_ascii_hexdigit()));
        let encoded = &text[8..];
        // A non-canonical last character (trailing bits set) of the same bytes.
        let last = encoded.as_bytes()[42];
        let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let index = alphabet.iter().position(|&c| c == last).unwrap();
        let sloppy = format!("ed25519:{}{}=", &encoded[..42], alphabet[index ^ 1] as char);
        for bad in [
            "",
            "ed25519:",
            encoded,
            &format!("ED25519:{encoded}"),
            &format!("ssh-ed25519:{encoded}"),
            &format!("ed25519:{}", &encoded[..43]),
            &format!("ed25519:{encoded}="),
            &format!("ed25519: {encoded}"),
            &format!("ed25519:{encoded} "),
            &format!("ed25519:{}", STANDARD.encode([7u8; 31])),
            &format!("ed25519:{}", STANDARD.encode([7u8; 33])),
            &sloppy,
            // The identity point: a weak (small-order) key.
            &format!("ed25519:{}", STANDARD.encode(identity())),
            // Not a point on the curve (y = 2).
            &format!("ed25519:{}", STANDARD.encode(two())),
        ] {
            assert!(bad.parse::<PublicKey>().is_err(), "{bad:?} was taken");
        }
    }

    #[test]
    fn damaged_and_exposed_key_files_are_errors_naming_the_path_and_kept() {
        let seed = STANDARD.encode([1u8; 32]);
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (b"".to_vec(), "does not start"),
            (b"\n".to_vec(), "does not start"),
            (seed.clone().into_bytes(), "does not start"),
            (format!("ed25519-secret:{seed}\n\n").into_bytes(), "base64"),
            (
                format!(" ed25519-secret:{seed}\n").into_bytes(),
                "does not start",
            ),
            (
                format!("ed25519-secret:{}\n", &seed[..40]).into_bytes(),
                "30 bytes",
            ),
            (
                format!("ed25519-secret:{}*\n", &seed[..43]).into_bytes(),
                "base64",
            ),
            (format!("ed25519-secret:{seed}\r\n").into_bytes(), "base64"),
            (
                format!("ed25519-secret:{}\n", STANDARD.encode([1u8; 31])).into_bytes(),
                "31 bytes",
            ),
            (
                format!("ed25519-secret:{}\n", STANDARD.encode([1u8; 64])).into_bytes(),
                "64 bytes",
            ),
            (vec![0xff; 40], "not text"),
            (vec![b'a'; 300], "too long"),
        ];
        for (bytes, why) in cases {
            let dir = tempfile::tempdir().unwrap();
            let path = key_path(dir.path());
            fs::write(&path, &bytes).unwrap();
            fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
            for result in [
                BoxKey::load(dir.path()).map(|_| ()),
                BoxKey::load_or_create(dir.path()).map(|_| ()),
            ] {
                let err = result.unwrap_err();
                assert!(matches!(err, KeyError::Damaged { .. }), "{err:?}");
                let text = err.to_string();
                assert!(text.contains(&path.display().to_string()), "{text}");
                assert!(text.contains(why), "{why}: {text}");
            }
            assert_eq!(fs::read(&path).unwrap(), bytes, "the file was replaced");
        }
        // The right text without its final newline is still the key.
        let dir = tempfile::tempdir().unwrap();
        let path = key_path(dir.path());
        fs::write(&path, format!("ed25519-secret:{seed}")).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
        assert!(BoxKey::load(dir.path()).unwrap().is_some());
        // Readable or writable by others: refused, whatever its content, and kept.
        for mode in [0o640, 0o604, 0o620, 0o602, 0o644, 0o666] {
            fs::set_permissions(&path, fs::Permissions::from_mode(mode)).unwrap();
            let err = BoxKey::load_or_create(dir.path()).unwrap_err();
            match &err {
                KeyError::Exposed { path: p, mode: m } => assert_eq!((p, *m), (&path, mode)),
                other => panic!("{other:?}"),
            }
            assert!(err.to_string().contains("chmod 600"), "{err}");
        }
        // A folder in its place.
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir(key_path(dir.path())).unwrap();
        fs::set_permissions(key_path(dir.path()), fs::Permissions::from_mode(0o700)).unwrap();
        assert!(matches!(
            BoxKey::load_or_create(dir.path()),
            Err(KeyError::Damaged { .. })
        ));
    }

    #[test]
    fn processes_making_the_key_at_once_end_with_one_key() {
        // One after another, the same key.
        let dir = tempfile::tempdir().unwrap();
        let keys: Vec<PublicKey> = (0..4)
            .map(|_| BoxKey::load_or_create(dir.path()).unwrap().public_key())
            .collect();
        assert!(keys.iter().all(|k| *k == keys[0]));
        // A key file made between the check and the link wins over ours.
        let existing = dir.path().join("x");
        fs::create_dir(&existing).unwrap();
        let path = key_path(&existing);
        fs::write(&path, b"made by another process").unwrap();
        let err = create_new_private(&existing, &path, b"ours").unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AlreadyExists);
        assert_eq!(fs::read(&path).unwrap(), b"made by another process");
        assert_eq!(fs::read_dir(&existing).unwrap().count(), 1);
    }

    fn hex(text: &str) -> Vec<u8> {
        (0..text.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
            .collect()
    }

    fn identity() -> [u8; 32] {
        let mut bytes = [0u8; 32];
        bytes[0] = 1;
        bytes
    }

    fn two() -> [u8; 32] {
        let mut bytes = [0u8; 32];
        bytes[0] = 2;
        bytes
    }
}
