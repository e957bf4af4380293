//! The settings of the event command (`EVENT_COMMAND`, `crate::events::CommandSink`): the
//! program run for every event, its timeout and its queue.

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::time::Duration;

use crate::error::Error;
use crate::events::CommandConfig;

/// The default of `EVENT_COMMAND_TIMEOUT_SECONDS`.
pub const DEFAULT_TIMEOUT_SECONDS: f64 = 5.0;
/// The default of `EVENT_COMMAND_QUEUE`.
pub const DEFAULT_QUEUE: usize = 16;

/// `EVENT_COMMAND` and its bounds.
#[derive(Debug, Clone)]
pub struct EventCommandSettings {
    /// The program run for every event (an absolute path to an executable file; unset or empty:
    /// none)
    pub command: Option<PathBuf>,
    /// Seconds one run may take before the program (and what it started) is killed; 0.1 to 300
    pub timeout_seconds: f64,
    /// Most events waiting for their run; past it events are dropped (counted); 1 to 1000
    pub queue: usize,
}

/// No command.
impl Default for EventCommandSettings {
    fn default() -> EventCommandSettings {
        EventCommandSettings {
            command: None,
            timeout_seconds: DEFAULT_TIMEOUT_SECONDS,
            queue: DEFAULT_QUEUE,
        }
    }
}

impl EventCommandSettings {
    /// The program, when one is set (an empty `EVENT_COMMAND` is none).
    fn program(&self) -> Option<&PathBuf> {
        self.command.as_ref().filter(|p| !p.as_os_str().is_empty())
    }

    /// Checks the settings (the program is looked at now); the error names the variable.
    pub fn validate(&self) -> Result<(), Error> {
        let t = self.timeout_seconds;
        if !(t.is_finite() && (0.1..=300.0).contains(&t)) {
            return Err(Error::Config(format!(
                "EVENT_COMMAND_TIMEOUT_SECONDS must be 0.1 to 300, got {t}"
            )));
        }
        if !(1..=1000).contains(&self.queue) {
            return Err(Error::Config(format!(
                "EVENT_COMMAND_QUEUE must be 1 to 1000, got {}",
                self.queue
            )));
        }
        let Some(program) = self.program() else {
            return Ok(());
        };
        let bad = |why: String| {
            Err(Error::Config(format!(
                "EVENT_COMMAND must be the absolute path of an executable file, got {:?}: {why}",
                program.display().to_string()
            )))
        };
        if !program.is_absolute() {
            return bad("not an absolute path".into());
        }
        match std::fs::metadata(program) {
            Err(e) => bad(e.to_string()),
            Ok(m) if !m.is_file() => bad("not a file".into()),
            Ok(m) if m.permissions().mode() & 0o111 == 0 => bad("not executable".into()),
            // Anyone on the box could make the service run their code.
            Ok(m) if m.permissions().mode() & 0o002 != 0 => bad("writable by every user".into()),
            Ok(_) => Ok(()),
        }
    }

    /// What the event command runs with; `None` without a program.
    pub fn config(&self) -> Option<CommandConfig> {
        self.program().map(|program| CommandConfig {
            program: program.clone(),
            timeout: Duration::from_secs_f64(self.timeout_seconds),
            queue: self.queue,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(command: &str) -> EventCommandSettings {
        EventCommandSettings {
            command: Some(command.into()),
            ..EventCommandSettings::default()
        }
    }

    fn error(s: &EventCommandSettings) -> String {
        s.validate().unwrap_err().to_string()
    }

    #[test]
    fn the_program_must_be_an_absolute_executable_file() {
        let dir = tempfile::tempdir().unwrap();
        let script = dir.path().join("beep");
        std::fs::write(&script, "#!/bin/sh\n").unwrap();
        let path = script.display().to_string();
        assert!(error(&with(&path)).contains("not executable"));
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o757)).unwrap();
        assert!(error(&with(&path)).contains("writable by every user"));
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
        assert!(with(&path).validate().is_ok());
        assert!(with(&path).config().is_some());
        assert!(error(&with("beep")).contains("not an absolute path"));
        let folder = dir.path().display().to_string();
        assert!(error(&with(&folder)).contains("not a file"));
        let gone = dir.path().join("gone").display().to_string();
        let message = error(&with(&gone));
        assert!(message.contains("EVENT_COMMAND must be"), "{message}");
        // Empty: no command.
        assert!(with("").validate().is_ok() && with("").config().is_none());
    }

    #[test]
    fn the_bounds_are_checked() {
        for t in [0.05, 301.0, f64::NAN] {
            let s = EventCommandSettings {
                timeout_seconds: t,
                ..EventCommandSettings::default()
            };
            assert!(error(&s).contains("EVENT_COMMAND_TIMEOUT_SECONDS"));
        }
        for q in [0, 1001] {
            let s = EventCommandSettings {
                queue: q,
                ..EventCommandSettings::default()
            };
            assert!(error(&s).contains("EVENT_COMMAND_QUEUE"));
        }
    }
}
