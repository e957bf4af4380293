//! The CPU the C++ face detector is built for (FACE_CPU, scripts/lib.sh `cpu_flags`), as
//! `scripts/cpu-flags` prints it for a given /proc/cpuinfo: AVX2+FMA only on a CPU with both,
//! the Raspberry Pi boards from their ARM core, wrong choices refused before anything is built;
//! `.cargo/config.toml`'s defaults for plain cargo equal what the scripts choose; the qemu CPU
//! each board's test build runs on.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// A command with none of the variables the scripts take a choice from: cargo sets
/// .cargo/config.toml's CXXFLAGS_<target> for the tests it runs, scripts/test exports its own.
fn clean(mut cmd: Command) -> Command {
    cmd.env_remove("FACE_CPU");
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("CXXFLAGS") {
            cmd.env_remove(key);
        }
    }
    cmd
}

fn cpu_flags_cmd(args: &[&str]) -> Output {
    let mut cmd = clean(Command::new(repo().join("scripts/cpu-flags")));
    cmd.args(args).output().expect("run scripts/cpu-flags")
}

/// Runs `script` in bash with scripts/lib.sh sourced.
fn lib(script: &str, envs: &[(&str, &str)]) -> Output {
    let mut cmd = clean(Command::new("bash"));
    cmd.arg("-c")
        .arg(format!("set -eu; source scripts/lib.sh; {script}"))
        .current_dir(repo())
        .envs(envs.iter().copied());
    cmd.output().expect("run bash")
}

/// A fake /proc/cpuinfo.
struct CpuInfo {
    _dir: tempfile::TempDir,
    path: PathBuf,
}

fn cpuinfo(text: &str) -> CpuInfo {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cpuinfo");
    std::fs::write(&path, text).unwrap();
    CpuInfo { _dir: dir, path }
}

fn x86(flags: &str) -> CpuInfo {
    // Two processors, as on a real machine: the first "flags" line decides.
    let one = |n: u32| {
        format!(
            "processor\t: {n}\nvendor_id\t: GenuineIntel\nmodel name\t: Test CPU\nflags\t\t: {flags}\nbogomips\t: 4800.00\n\n"
        )
    };
    cpuinfo(&(one(0) + &one(1)))
}

fn arm(part: &str, implementer: &str) -> CpuInfo {
    let one = |n: u32| {
        format!(
            "processor\t: {n}\nBogoMIPS\t: 108.00\nFeatures\t: fp asimd evtstrm crc32 cpuid\nCPU implementer\t: {implementer}\nCPU architecture: 8\nCPU variant\t: 0x0\nCPU part\t: {part}\nCPU revision\t: 3\n\n"
        )
    };
    cpuinfo(&(one(0) + &one(1) + "Hardware\t: BCM2835\nModel\t\t: Raspberry Pi\n"))
}

const BASE: &str = "fpu vme de pse tsc msr pae mce cx8 apic sep mtrr pge mca cmov pat clflush mmx fxsr sse sse2 ht syscall nx lm";

/// The flags printed for target / choice / cpuinfo; panics (with stderr) on failure.
fn flags(target: &str, choice: &str, info: &CpuInfo) -> String {
    let out = cpu_flags_cmd(&[
        "--target",
        target,
        "--cpu",
        choice,
        "--cpuinfo",
        &info.path.display().to_string(),
    ]);
    assert!(
        out.status.success(),
        "{target} {choice}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .trim_end()
        .to_string()
}

fn refused(args: &[&str]) -> String {
    let out = cpu_flags_cmd(args);
    assert!(!out.status.success(), "{args:?} was accepted");
    assert!(out.stdout.is_empty(), "{args:?} printed flags");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

const EXACT: &str = "-ffp-contract=off";

#[test]
fn native_x86_64_is_avx2_fma_only_on_a_cpu_with_both() {
    let haswell = x86(&format!(
        "{BASE} pni ssse3 fma cx16 sse4_1 sse4_2 movbe popcnt avx f16c avx2 bmi1 bmi2"
    ));
    assert_eq!(
        flags("x86_64", "native", &haswell),
        format!("-mavx2 -mfma {EXACT}")
    );
    // AVX without AVX2 (Sandy/Ivy Bridge): -mavx is slower than SSE2 here, so the baseline.
    let ivy = x86(&format!(
        "{BASE} pni ssse3 cx16 sse4_1 sse4_2 popcnt avx f16c"
    ));
    assert_eq!(flags("x86_64", "native", &ivy), EXACT);
    // Words, not substrings: avx512f is not avx2, fma4 is not fma.
    let look_alike = x86(&format!("{BASE} avx avx512f fma4"));
    assert_eq!(flags("x86_64", "native", &look_alike), EXACT);
    let no_fma = x86(&format!("{BASE} avx avx2"));
    assert_eq!(flags("x86_64", "native", &no_fma), EXACT);
    // portable ignores the CPU.
    assert_eq!(flags("x86_64", "portable", &haswell), EXACT);
    // The real machine: whatever it is, one of the two.
    let here = cpu_flags_cmd(&["--target", "x86_64", "--cpu", "native"]);
    if cfg!(target_arch = "x86_64") {
        let here = String::from_utf8(here.stdout).unwrap();
        assert!(
            here.trim_end() == EXACT || here.trim_end() == format!("-mavx2 -mfma {EXACT}"),
            "{here}"
        );
    }
}

#[test]
fn native_on_a_pi_builds_for_its_core() {
    for (part, board_flag) in [
        ("0xd03", "-mcpu=cortex-a53"),
        ("0xd08", "-mcpu=cortex-a72"),
        ("0xd0b", "-mcpu=cortex-a76"),
    ] {
        let info = arm(part, "0x41");
        assert_eq!(
            flags("aarch64", "native", &info),
            format!("{board_flag} {EXACT}")
        );
        assert_eq!(
            flags("armv7", "native", &info),
            format!("{board_flag} -mfpu=neon-fp-armv8 {EXACT}")
        );
    }
    // Another core (a Cortex-A57; a Pi 2's Cortex-A7), or another maker's: portable.
    for info in [
        arm("0xd07", "0x41"),
        arm("0xc07", "0x41"),
        arm("0xd08", "0x51"),
    ] {
        assert_eq!(flags("aarch64", "native", &info), EXACT);
        assert_eq!(
            flags("armv7", "native", &info),
            format!("-mfpu=neon {EXACT}")
        );
    }
}

#[test]
fn each_board_and_portable() {
    let any = x86(BASE);
    let expect = [
        ("aarch64", "portable", EXACT.to_string()),
        ("aarch64", "pi3", format!("-mcpu=cortex-a53 {EXACT}")),
        ("aarch64", "pi4", format!("-mcpu=cortex-a72 {EXACT}")),
        ("aarch64", "pi5", format!("-mcpu=cortex-a76 {EXACT}")),
        ("armv7", "portable", format!("-mfpu=neon {EXACT}")),
        (
            "armv7",
            "pi3",
            format!("-mcpu=cortex-a53 -mfpu=neon-fp-armv8 {EXACT}"),
        ),
        (
            "armv7",
            "pi4",
            format!("-mcpu=cortex-a72 -mfpu=neon-fp-armv8 {EXACT}"),
        ),
        (
            "armv7",
            "pi5",
            format!("-mcpu=cortex-a76 -mfpu=neon-fp-armv8 {EXACT}"),
        ),
        // Full triples work as well as the short names.
        (
            "aarch64-unknown-linux-gnu",
            "pi4",
            format!("-mcpu=cortex-a72 {EXACT}"),
        ),
    ];
    for (target, choice, want) in expect {
        assert_eq!(flags(target, choice, &any), want, "{target} {choice}");
    }
}

#[test]
fn wrong_choices_are_refused() {
    let stderr = refused(&["--target", "x86_64", "--cpu", "pi4"]);
    assert!(stderr.contains("Raspberry Pi model"), "{stderr}");
    let stderr = refused(&["--target", "aarch64", "--cpu", "fast"]);
    assert!(stderr.contains("unknown FACE_CPU=fast"), "{stderr}");
    // native for a Pi, seen from an x86_64 machine: a cross build cannot see the board's CPU.
    let laptop = x86(BASE);
    let path = laptop.path.display().to_string();
    let stderr = refused(&["--target", "aarch64", "--cpu", "native", "--cpuinfo", &path]);
    assert!(stderr.contains("cross build"), "{stderr}");
    let pi = arm("0xd08", "0x41");
    let path = pi.path.display().to_string();
    let stderr = refused(&["--target", "x86_64", "--cpu", "native", "--cpuinfo", &path]);
    assert!(stderr.contains("no x86_64 CPU"), "{stderr}");
    // The cross build refuses a choice that is not a board before it installs anything.
    for board in ["native", "pi9"] {
        let out = clean(Command::new(repo().join("scripts/cross-build")))
            .args(["--board", board, "aarch64"])
            .output()
            .unwrap();
        assert!(!out.status.success());
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains("must be portable, pi3, pi4 or pi5") && !stderr.contains("==>"),
            "{stderr}"
        );
    }
}

/// Plain cargo commands use .cargo/config.toml's values: the same as the scripts' on an
/// AVX2+FMA machine (and for the Pi builds by default), so switching between them rebuilds nothing.
#[test]
fn cargo_config_defaults_match_the_scripts() {
    let config = std::fs::read_to_string(repo().join(".cargo/config.toml")).unwrap();
    let value = |key: &str| {
        config
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{key} = ")))
            .unwrap_or_else(|| panic!("no {key} in .cargo/config.toml"))
            .trim_matches('"')
            .to_string()
    };
    let haswell = x86(&format!("{BASE} fma avx avx2"));
    assert_eq!(
        value("CXXFLAGS_x86_64_unknown_linux_gnu"),
        flags("x86_64", "native", &haswell)
    );
    assert_eq!(
        value("CXXFLAGS_aarch64_unknown_linux_gnu"),
        flags("aarch64", "portable", &haswell)
    );
    assert_eq!(
        value("CXXFLAGS_armv7_unknown_linux_gnueabihf"),
        flags("armv7", "portable", &haswell)
    );
}

#[test]
fn env_prints_an_export_for_a_shell() {
    let pi = arm("0xd03", "0x41");
    let out = cpu_flags_cmd(&[
        "--target",
        "armv7",
        "--cpu",
        "pi3",
        "--env",
        "--cpuinfo",
        &pi.path.display().to_string(),
    ]);
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        format!("export CXXFLAGS_armv7_unknown_linux_gnueabihf='-mcpu=cortex-a53 -mfpu=neon-fp-armv8 {EXACT}'\n")
    );
    // What it builds for goes to stderr, for a person.
    assert!(String::from_utf8_lossy(&out.stderr).contains("Raspberry Pi 3"));
}

/// use_cpu_flags, which every build script calls: exports the variable cc reads and says what it
/// chose; one already set in the environment wins, and is said.
#[test]
fn use_cpu_flags_exports_the_choice_and_says_it() {
    let out = lib(
        r#"use_cpu_flags aarch64-unknown-linux-gnu pi4 "other boards: ..."; printf '%s' "$CXXFLAGS_aarch64_unknown_linux_gnu""#,
        &[],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        format!("-mcpu=cortex-a72 {EXACT}")
    );
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(
        stderr.contains("building for Raspberry Pi 4, 400, CM4 (Cortex-A72)")
            && stderr.contains("FACE_CPU=pi4")
            && stderr.contains("other boards: ..."),
        "{stderr}"
    );

    let out = lib(
        r#"use_cpu_flags x86_64-unknown-linux-gnu portable; printf '%s' "$CXXFLAGS_x86_64_unknown_linux_gnu""#,
        &[("CXXFLAGS_x86_64_unknown_linux_gnu", "-O1 -march=znver3")],
    );
    assert!(out.status.success());
    assert_eq!(String::from_utf8(out.stdout).unwrap(), "-O1 -march=znver3");
    assert!(String::from_utf8_lossy(&out.stderr).contains("from the environment"));

    let out = lib("use_cpu_flags x86_64-unknown-linux-gnu pi5", &[]);
    assert!(!out.status.success());
}

/// scripts/test-arm runs each board's build on that board's CPU where qemu has it, so an
/// instruction the board lacks fails the test.
#[test]
fn qemu_emulates_the_board() {
    for (arch, board, cpu) in [
        ("aarch64", "portable", "cortex-a53"),
        ("aarch64", "pi3", "cortex-a53"),
        ("aarch64", "pi4", "cortex-a72"),
        ("aarch64", "pi5", "cortex-a76"),
        ("armv7", "portable", "cortex-a7"),
        ("armv7", "pi4", "max"),
    ] {
        let out = lib(&format!("qemu_cpu {arch} {board}"), &[]);
        assert_eq!(
            String::from_utf8(out.stdout).unwrap().trim_end(),
            cpu,
            "{arch} {board}"
        );
    }
}
