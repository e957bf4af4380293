//! CPU time read from `/proc` (Linux), for the benchmarks' "CPU per frame": this process's
//! (every thread), and a camera program's (its whole process group: the program, what it
//! started, and what of theirs was already reaped).
//!
//! The kernel counts in clock ticks (`sysconf(_SC_CLK_TCK)`, 100 a second on Linux), so a figure
//! is only as fine as 10 ms: measure over seconds, not single frames.

use std::time::Duration;

/// The numbers of one `/proc/PID/stat` line after the command name (which may hold spaces and
/// parentheses, hence the split at the last `)`) and the state letter: index 0 is field 4
/// (`ppid`) of proc(5).
fn stat_fields(text: &str) -> Option<Vec<u64>> {
    let (_, rest) = text.rsplit_once(')')?;
    Some(
        rest.split_whitespace()
            .skip(1)
            .map(|f| f.parse::<i64>().map_or(0, |v| v.max(0) as u64))
            .collect(),
    )
}

// proc(5) field numbers, less 4 (the first number after the state is field 4, `ppid`).
const PGRP: usize = 5 - 4;
const UTIME: usize = 14 - 4;
const STIME: usize = 15 - 4;
const CUTIME: usize = 16 - 4;
const CSTIME: usize = 17 - 4;

fn ticks_per_second() -> u64 {
    // SAFETY: sysconf only reads a configuration value; no memory is passed.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if ticks > 0 {
        ticks as u64
    } else {
        100
    }
}

fn to_duration(ticks: u64) -> Duration {
    Duration::from_secs_f64(ticks as f64 / ticks_per_second() as f64)
}

/// User and system CPU time of this process, all its threads (not its children).
pub fn own() -> Option<Duration> {
    let fields = stat_fields(&std::fs::read_to_string("/proc/self/stat").ok()?)?;
    Some(to_duration(fields.get(UTIME)? + fields.get(STIME)?))
}

/// User and system CPU time of process group `pgid` (a camera program started in a group of its
/// own, `pgid` being its pid): every live member's, plus what their reaped children used.
/// Zero when the group is gone.
pub fn group(pgid: u32) -> Duration {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Duration::ZERO;
    };
    let ticks: u64 = entries
        .filter_map(|e| e.ok())
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .bytes()
                .all(|b| b.is_ascii_digit())
        })
        .filter_map(|e| std::fs::read_to_string(e.path().join("stat")).ok())
        .filter_map(|text| stat_fields(&text))
        .filter(|f| f.get(PGRP) == Some(&u64::from(pgid)))
        .map(|f| {
            [UTIME, STIME, CUTIME, CSTIME]
                .iter()
                .filter_map(|&i| f.get(i))
                .sum::<u64>()
        })
        .sum();
    to_duration(ticks)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_are_read_after_a_command_name_with_spaces_and_parentheses() {
        let line = "4242 (sh -c (x) y) S 1 4242 4242 0 -1 4194560 10 0 0 0 7 3 2 1 20 0";
        let f = stat_fields(line).unwrap();
        assert_eq!(f[PGRP], 4242);
        assert_eq!((f[UTIME], f[STIME], f[CUTIME], f[CSTIME]), (7, 3, 2, 1));
    }

    #[test]
    fn this_process_and_a_busy_child_group_are_counted() {
        let before = own().expect("/proc/self/stat");
        let until = std::time::Instant::now() + Duration::from_millis(300);
        let mut x = 0u64;
        while std::time::Instant::now() < until {
            x = std::hint::black_box(x.wrapping_add(1));
        }
        assert!(own().unwrap() > before);

        use std::os::unix::process::CommandExt;
        let mut child = std::process::Command::new("sh")
            .args([
                "-c",
                "i=0; while [ $i -lt 200000 ]; do i=$((i+1)); done; sleep 30",
            ])
            .process_group(0)
            .spawn()
            .expect("sh");
        let pgid = child.id();
        let mut used = Duration::ZERO;
        for _ in 0..100 {
            used = group(pgid);
            if used >= Duration::from_millis(50) {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        // SAFETY: kill(2) with a negative pid signals the group this test started; no memory.
        unsafe { libc::kill(-(pgid as i32), libc::SIGKILL) };
        let _ = child.wait();
        assert!(used >= Duration::from_millis(50), "{used:?}");
        assert_eq!(group(pgid), Duration::ZERO);
    }
}
