//! The MQTT settings of `serve` as given, checked into [`crate::mqtt::MqttSettings`].

use std::path::PathBuf;

use crate::error::Error;

/// The MQTT broker of `serve` (src/mqtt/): events, box status and gallery sync between boxes.
#[derive(Debug, Clone, Default)]
pub struct MqttOptions {
    /// The broker: mqtt://host[:1883] or mqtts://host[:8883] (unset: no MQTT)
    pub mqtt_url: Option<String>,
    /// PEM CA certificates for mqtts:// instead of the system's
    pub mqtt_ca_file: Option<PathBuf>,
    /// The broker user (`MQTT_USERNAME`), if it asks for one.
    pub mqtt_username: Option<String>,
    /// Its password (`MQTT_PASSWORD`).
    pub mqtt_password: Option<String>,
    /// This box's name in MQTT topics, unique per box (default: the host name)
    pub box_id: Option<String>,
    /// First level of this service's MQTT topics
    pub mqtt_topic_prefix: String,
    /// Seconds between two retained health summaries on <prefix>/<box_id>/health
    pub mqtt_status_seconds: u64,
    /// Publish Home Assistant MQTT discovery configs (retained, under homeassistant/)
    pub mqtt_ha_discovery: bool,
    /// Gallery sync between boxes: off, pull (apply others' people) or both (also publish
    /// ours). Default: both when MQTT_URL is set
    pub gallery_sync: Option<String>,
    /// The trust list of gallery sync: `box_id public-key role` lines (default:
    /// <data dir>/gallery-trusted-keys)
    pub gallery_trusted_keys: Option<PathBuf>,
    /// People one box may change per hour through gallery sync (more wait)
    pub gallery_sync_people_per_hour: u32,
    /// Encodings one box may send per hour through gallery sync (more wait)
    pub gallery_sync_encodings_per_hour: u32,
    /// Gallery messages that may wait at most (over it, refused and counted)
    pub gallery_sync_max_waiting: usize,
}

/// `GALLERY_TRUSTED_KEYS`'s default: `gallery-trusted-keys` in the data folder.
pub fn default_trust_file(data_dir: &std::path::Path) -> PathBuf {
    data_dir.join("gallery-trusted-keys")
}

/// `MQTT_TOPIC_PREFIX`'s default.
pub const DEFAULT_TOPIC_PREFIX: &str = "face-attendance";
/// Most seconds between two health summaries (a day).
const MAX_STATUS_SECONDS: u64 = 86_400;

/// The host name, made one valid topic level: characters other than letters, digits, `-`, `_`
/// and `.` become `-`; "box" when there is none.
pub fn host_box_id() -> String {
    let name = host_name().unwrap_or_default();
    let safe: String = name
        .trim()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '-'
            }
        })
        .collect();
    if safe.is_empty() {
        "box".into()
    } else {
        safe
    }
}

fn host_name() -> Option<String> {
    let mut buf = [0u8; 256];
    // SAFETY: `buf` is valid for writes of its whole length, which is what is passed; the
    // result is read only up to the first NUL (or the length, if the name was cut).
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc == 0 {
        let end = buf.iter().position(|b| *b == 0).unwrap_or(buf.len());
        let name = String::from_utf8_lossy(&buf[..end]).into_owned();
        if !name.trim().is_empty() {
            return Some(name);
        }
    }
    std::fs::read_to_string("/etc/hostname").ok()
}

impl MqttOptions {
    /// The checked MQTT settings; `None` without `MQTT_URL`.
    pub fn settings(&self) -> Result<Option<crate::mqtt::MqttSettings>, Error> {
        use crate::mqtt::{valid_level, BrokerUrl, MqttSettings};
        use crate::replication::ReplicationMode;
        let Some(url) = self
            .mqtt_url
            .as_deref()
            .map(str::trim)
            .filter(|u| !u.is_empty())
        else {
            return Ok(None);
        };
        let broker = BrokerUrl::parse(url).map_err(|e| Error::Config(e.to_string()))?;
        if self.mqtt_ca_file.is_some() && !broker.tls {
            return Err(Error::Config(
                "MQTT_CA_FILE is set but MQTT_URL is not mqtts://".into(),
            ));
        }
        let box_id = match self.box_id.as_deref().map(str::trim) {
            Some(id) => {
                if !valid_level(id) {
                    return Err(Error::Config(format!(
                        "BOX_ID must be a non-empty name without '/', '+' or '#', got {id:?}"
                    )));
                }
                id.to_string()
            }
            None => host_box_id(),
        };
        let prefix = self.mqtt_topic_prefix.trim();
        if prefix.is_empty()
            || prefix.starts_with('/')
            || prefix.ends_with('/')
            || prefix.contains(['+', '#', '\0'])
            || prefix.split('/').any(str::is_empty)
        {
            return Err(Error::Config(format!(
                "MQTT_TOPIC_PREFIX must be topic levels joined by '/', without '+', '#' or a \
                 leading, trailing or doubled '/', got {prefix:?}"
            )));
        }
        if !(1..=MAX_STATUS_SECONDS).contains(&self.mqtt_status_seconds) {
            return Err(Error::Config(format!(
                "MQTT_STATUS_SECONDS must be 1 to {MAX_STATUS_SECONDS}, got {}",
                self.mqtt_status_seconds
            )));
        }
        let gallery_sync = match self
            .gallery_sync
            .as_deref()
            .map(|s| s.trim().to_ascii_lowercase())
            .as_deref()
        {
            None | Some("") | Some("both") => ReplicationMode::Both,
            Some("pull") => ReplicationMode::Pull,
            Some("off") => ReplicationMode::Off,
            Some(other) => {
                return Err(Error::Config(format!(
                    "GALLERY_SYNC must be off, pull or both, got {other:?}"
                )))
            }
        };
        for (name, value) in [
            (
                "GALLERY_SYNC_PEOPLE_PER_HOUR",
                u64::from(self.gallery_sync_people_per_hour),
            ),
            (
                "GALLERY_SYNC_ENCODINGS_PER_HOUR",
                u64::from(self.gallery_sync_encodings_per_hour),
            ),
        ] {
            if !(1..=1_000_000).contains(&value) {
                return Err(Error::Config(format!(
                    "{name} must be 1 to 1000000, got {value}"
                )));
            }
        }
        if !(1..=100_000).contains(&self.gallery_sync_max_waiting) {
            return Err(Error::Config(format!(
                "GALLERY_SYNC_MAX_WAITING must be 1 to 100000, got {}",
                self.gallery_sync_max_waiting
            )));
        }
        let text = |v: &Option<String>| v.clone().filter(|s| !s.is_empty());
        Ok(Some(MqttSettings {
            url: url.to_string(),
            ca_file: self.mqtt_ca_file.clone(),
            username: text(&self.mqtt_username),
            password: text(&self.mqtt_password),
            box_id,
            topic_prefix: prefix.to_string(),
            status_every: std::time::Duration::from_secs(self.mqtt_status_seconds),
            ha_discovery: self.mqtt_ha_discovery,
            gallery_sync,
            gallery_trusted_keys: self
                .gallery_trusted_keys
                .clone()
                .filter(|p| !p.as_os_str().is_empty()),
            gallery_people_per_hour: self.gallery_sync_people_per_hour,
            gallery_encodings_per_hour: self.gallery_sync_encodings_per_hour,
            gallery_max_waiting: self.gallery_sync_max_waiting,
        }))
    }
}
