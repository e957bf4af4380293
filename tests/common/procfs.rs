//! What /proc says about processes, for tests that check what a program or a source left
//! behind (children, process groups, zombies, threads, memory).
#![allow(dead_code)]

/// One process, from `/proc/PID/stat`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Process {
    pub pid: u32,
    pub parent: u32,
    pub group: u32,
    /// `R`, `S`, `D`, `Z` (a zombie: ended, not reaped), ...
    pub state: char,
}

/// Every process on the machine.
pub fn processes() -> Vec<Process> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // pid (comm) state ppid pgrp ...: comm may hold spaces and parentheses, so split after
        // its last ')'.
        let Some((_, rest)) = stat.rsplit_once(')') else {
            continue;
        };
        let fields: Vec<&str> = rest.split_whitespace().collect();
        if fields.len() < 3 {
            continue;
        }
        out.push(Process {
            pid,
            state: fields[0].chars().next().unwrap_or('?'),
            parent: fields[1].parse().unwrap_or(0),
            group: fields[2].parse().unwrap_or(0),
        });
    }
    out
}

/// A number of `/proc/PID/status` (`Threads:`, `VmRSS:` in kB, ...).
pub fn status_number(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"))
}
