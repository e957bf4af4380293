//! What every program the service starts shares (the camera programs of
//! `camera::sources::child`, the event command of `events::command`): the environment it is
//! given, its process group ended as a whole, and waiting on its pipes with a bound.
//!
//! Contract:
//! - a program gets only the environment a program needs to run ([`passes_to_program`]): never
//!   the service's keys and passwords, whatever its own settings add;
//! - a program runs as the leader of a process group of its own; [`kill_group`] ends it and
//!   whatever it started (SIGKILL), so nothing it started outlives it;
//! - [`peek_exit`] tells whether a program ended without reaping it, so that its process group id
//!   stays its own until [`kill_group`] has ended what it left behind;
//! - [`poll_readable`] waits on one descriptor for a bounded time, so that a thread reading a
//!   program's pipe can look at its stop flag or deadline.

/// Whether the environment variable `name` is passed to a program the service starts: the
/// locale, time zone, search path and home, and libcamera's and rpicam-apps' own (`LIBCAMERA_*`,
/// `RPICAM_*`). Everything else stays with the service: its settings carry keys and passwords
/// (`FACE_API_KEY`, `ATTENDANCE_API_KEY`, `MQTT_PASSWORD`, `CAMERA_HTTP_KEY`, camera URLs).
pub fn passes_to_program(name: &str) -> bool {
    const PLAIN: [&str; 9] = [
        "PATH",
        "HOME",
        "LANG",
        "LANGUAGE",
        "TZ",
        "TMPDIR",
        "USER",
        "LOGNAME",
        "XDG_RUNTIME_DIR",
    ];
    PLAIN.contains(&name)
        || ["LC_", "LIBCAMERA_", "RPICAM_"]
            .iter()
            .any(|prefix| name.starts_with(prefix))
}

/// The service's environment as a program gets it ([`passes_to_program`]).
pub fn program_env() -> impl Iterator<Item = (std::ffi::OsString, std::ffi::OsString)> {
    std::env::vars_os().filter(|(name, _)| name.to_str().is_some_and(passes_to_program))
}

/// Kills the process group `pid` leads (the program and whatever it started). Does nothing for
/// an id that cannot be a group of ours (0, 1, or out of range).
pub fn kill_group(pid: u32) {
    let Ok(pgid) = libc::pid_t::try_from(pid) else {
        return;
    };
    if pgid > 1 {
        // SAFETY: kill(2) with a negative pid signals the process group the caller started (the
        // program was spawned as its leader); it touches no memory of ours.
        unsafe {
            libc::kill(-pgid, libc::SIGKILL);
        }
    }
}

/// `poll(2)` on one descriptor for reading, at most `timeout_ms`: above 0 when it is readable
/// (or at its end), 0 on time-out, below 0 on an error (`EINTR` among them).
pub fn poll_readable(fd: std::os::fd::RawFd, timeout_ms: libc::c_int) -> libc::c_int {
    let mut poll = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd on the stack for the call; the caller owns `fd` and keeps it open
    // for the call.
    unsafe { libc::poll(&mut poll, 1, timeout_ms) }
}

/// How the program `pid` ended ("exited with status N", "was killed by signal N"), once it has,
/// without reaping it.
pub fn peek_exit(pid: u32) -> Option<String> {
    let id = libc::id_t::try_from(pid).ok()?;
    // SAFETY: siginfo_t is a plain C struct for which all-zero bytes are a valid value.
    let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
    // SAFETY: waitid(2) on the caller's own child, writing only into `info`, which lives on the
    // stack for the call; WNOWAIT leaves the child waitable (std's Child::wait reaps it later).
    let done = unsafe {
        libc::waitid(
            libc::P_PID,
            id,
            &mut info,
            libc::WEXITED | libc::WNOHANG | libc::WNOWAIT,
        )
    };
    // SAFETY: waitid filled `info` (si_pid stays 0 while the child runs); these read its
    // SIGCHLD fields, which is what waitid writes.
    let (who, status) = unsafe { (info.si_pid(), info.si_status()) };
    if done != 0 || who == 0 {
        return None;
    }
    Some(if info.si_code == libc::CLD_EXITED {
        format!("exited with status {status}")
    } else {
        format!("was killed by signal {status}")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_stay_with_the_service() {
        for name in [
            "PATH",
            "LANG",
            "LC_ALL",
            "TZ",
            "RPICAM_X",
            "LIBCAMERA_LOG_LEVELS",
        ] {
            assert!(passes_to_program(name), "{name}");
        }
        for name in [
            "FACE_API_KEY",
            "ATTENDANCE_API_KEY",
            "MQTT_PASSWORD",
            "CAMERA_HTTP_KEY",
            "EVENT_COMMAND",
            "path",
        ] {
            assert!(!passes_to_program(name), "{name}");
        }
    }
}
