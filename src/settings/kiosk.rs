//! The settings of the greeting screen (`GET /kiosk`, [`crate::kiosk`]): how long a greeting
//! stays, whether it sounds, and whether the box's own screen needs no key.

use std::time::Duration;

use crate::error::Error;
use crate::kiosk::KioskSettings;

/// The shortest and the longest greeting (`KIOSK_GREETING_SECONDS`), in seconds.
pub const KIOSK_GREETING_RANGE: (f64, f64) = (0.5, 600.0);

/// `KIOSK_GREETING_SECONDS`, `KIOSK_SOUND`, `KIOSK_LOOPBACK_WITHOUT_KEY`.
#[derive(Debug, Clone, PartialEq)]
pub struct KioskOptions {
    /// Seconds a greeting (or a stranger's notice) stays before the idle clock; 0.5 to 600
    pub greeting_seconds: f64,
    /// The greeting screen plays a short sound for each greeting and notice (it also has a mute
    /// switch of its own)
    pub sound: bool,
    /// A client on the box itself (loopback: its own screen) opens `/kiosk` without a key; false
    /// for a box behind a reverse proxy on the box (every client would be loopback then)
    pub loopback_without_key: bool,
}

/// 5 s, with sound, the box's own screen without a key.
impl Default for KioskOptions {
    fn default() -> KioskOptions {
        KioskOptions {
            greeting_seconds: 5.0,
            sound: true,
            loopback_without_key: true,
        }
    }
}

impl KioskOptions {
    /// Checks the settings; the error names the variable at fault.
    pub fn validate(&self) -> Result<(), Error> {
        let (min, max) = KIOSK_GREETING_RANGE;
        let v = self.greeting_seconds;
        if !(v.is_finite() && (min..=max).contains(&v)) {
            return Err(Error::Config(format!(
                "KIOSK_GREETING_SECONDS must be {min} to {max}, got {v}"
            )));
        }
        Ok(())
    }

    /// The board's settings (checked ones: see [`KioskOptions::validate`]).
    pub fn board(&self) -> KioskSettings {
        let (min, max) = KIOSK_GREETING_RANGE;
        let seconds = if self.greeting_seconds.is_finite() {
            self.greeting_seconds.clamp(min, max)
        } else {
            KioskOptions::default().greeting_seconds
        };
        KioskSettings {
            greeting: Duration::from_secs_f64(seconds),
            sound: self.sound,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_greeting_time_is_bounded() {
        for bad in [0.0, 0.4, 601.0, f64::NAN, f64::INFINITY, -1.0] {
            let o = KioskOptions {
                greeting_seconds: bad,
                ..KioskOptions::default()
            };
            let e = o.validate().unwrap_err().to_string();
            assert!(e.contains("KIOSK_GREETING_SECONDS"), "{e}");
        }
        let o = KioskOptions::default();
        assert!(o.validate().is_ok());
        assert_eq!(o.board().greeting, Duration::from_secs(5));
    }
}
