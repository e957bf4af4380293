# Shared helpers for the scripts in this folder (sourced, not run).
# shellcheck shell=bash

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export REPO_ROOT

say() { printf '==> %s\n' "$*" >&2; }
warn() { printf 'warning: %s\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

# Runs a command as root: directly when we are root, else through sudo.
as_root() {
  if [ "$(id -u)" -eq 0 ]; then
    "$@"
  elif command -v sudo >/dev/null 2>&1; then
    sudo "$@"
  else
    die "not root and no sudo: run as root: $*"
  fi
}

# Puts cargo on PATH when rustup installed it but the shell was not restarted.
find_cargo() {
  if ! command -v cargo >/dev/null 2>&1 && [ -x "$HOME/.cargo/bin/cargo" ]; then
    PATH="$HOME/.cargo/bin:$PATH"
  fi
  command -v cargo >/dev/null 2>&1 || die "no cargo found: run scripts/install-deps"
}

# --- The Rust version ----------------------------------------------------------------------------
# Cargo.toml's rust-version is the oldest Rust that builds this crate. scripts/install-deps and
# scripts/setup check the rustc and cargo on PATH against it before anything is built, so that an
# old toolchain (Debian 12's 1.63, which cannot even read Cargo.lock) is one clear message saying
# how to get a newer one, not an error from inside cargo. tests/setup_script.rs runs them with a
# fake old rustc and cargo.

# rust_version_needed: Cargo.toml's rust-version (1.89).
rust_version_needed() {
  local need
  need="$(sed -n 's/^rust-version *= *"\([0-9][0-9.]*\)".*/\1/p' "$REPO_ROOT/Cargo.toml" | head -n 1)"
  [ -n "$need" ] || die "$REPO_ROOT/Cargo.toml has no rust-version line"
  printf '%s\n' "$need"
}

# version_at_least HAVE NEED: whether the dotted version HAVE (1.63.0) is NEED (1.89) or newer.
version_at_least() {
  local -a have_parts need_parts
  local i h n
  IFS=. read -r -a have_parts <<<"$1"
  IFS=. read -r -a need_parts <<<"$2"
  for i in 0 1 2; do
    h="${have_parts[i]:-0}" n="${need_parts[i]:-0}"
    if ((10#$h > 10#$n)); then return 0; fi
    if ((10#$h < 10#$n)); then return 1; fi
  done
  return 0
}

# upstream_version TEXT: the leading dotted number of TEXT ("1.63.0" of "rustc 1.63.0 (...)" once
# the name is cut, "1.85.0" of Debian's "1.85.0+dfsg1-1"), without a Debian epoch; empty if none.
upstream_version() {
  local v="${1#*:}"
  if [[ "$v" =~ ^([0-9]+(\.[0-9]+)*) ]]; then printf '%s\n' "${BASH_REMATCH[1]}"; fi
}

# rust_upgrade_help NEED: on stderr, the commands that get a Rust of at least NEED.
rust_upgrade_help() {
  local need="$1"
  if command -v rustup >/dev/null 2>&1 || [ -x "$HOME/.cargo/bin/rustup" ]; then
    cat >&2 <<HELP
Update rustup's stable toolchain, then run this again:
  rustup update stable
  rustup default stable
HELP
  else
    cat >&2 <<HELP
Install Rust $need or newer with rustup (Rust's own installer; Debian's packaged Rust is older),
then run this again from a new shell (or after loading ~/.cargo/env as below):
  curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal --default-toolchain stable
  . "\$HOME/.cargo/env"
HELP
  fi
}

# check_rust_version: the rustc and cargo on PATH are at least Cargo.toml's rust-version; else an
# error naming both versions, rust_upgrade_help, and exit status 1.
check_rust_version() {
  local need tool path have found=""
  need="$(rust_version_needed)"
  for tool in rustc cargo; do
    if ! path="$(command -v "$tool")"; then
      printf 'error: no %s on PATH: this project needs Rust %s or newer\n' "$tool" "$need" >&2
      rust_upgrade_help "$need"
      exit 1
    fi
    have="$(upstream_version "$("$tool" --version 2>/dev/null | sed -n '1s/^[^ ]* //p')")"
    if [ -z "$have" ]; then
      die "could not read the version of $path ($tool --version)"
    fi
    if ! version_at_least "$have" "$need"; then
      printf 'error: %s %s (%s) is too old: this project needs Rust %s or newer (rust-version in Cargo.toml)\n' \
        "$tool" "$have" "$path" "$need" >&2
      rust_upgrade_help "$need"
      exit 1
    fi
    found="$found $tool $have"
  done
  say "rust:$found, at least $need (Cargo.toml's rust-version)"
}

# missing_packages PACKAGE...: prints, one a line, those dpkg does not have installed (a name may
# carry an architecture, e.g. libdlib-dev:arm64).
missing_packages() {
  local p status
  for p in "$@"; do
    status=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
    [ "$status" = "install ok installed" ] || printf '%s\n' "$p"
  done
}

# apt_install PACKAGE...: apt-get update, then install them (noninteractive, no recommends).
# apt may upgrade installed packages on the way: multiarch needs the same version of a library
# for every architecture.
apt_install() {
  as_root apt-get update -q || die "apt-get update failed (see above): fix the package sources first"
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$@"
}

# ensure_packages PACKAGE...: installs those that are missing; a second run installs nothing.
ensure_packages() {
  local missing
  mapfile -t missing < <(missing_packages "$@")
  if [ "${#missing[@]}" -eq 0 ]; then
    say "system packages: all present"
  else
    say "installing: ${missing[*]}"
    apt_install "${missing[@]}"
  fi
}

# --- The CPU the C++ is built for ----------------------------------------------------------------
# dlib's HOG face detector, the costliest stage of a request, is C++ template code that is compiled
# into this project's glue (build.rs) and dlib-face-recognition's (its build.rs), not taken from
# libdlib.so. Both go through the cc crate, which reads their flags from CXXFLAGS_<target triple>
# and has cargo rebuild both when that variable changes. FACE_CPU chooses those flags, here only:
# scripts/setup, scripts/test, scripts/cross-build and scripts/test-arm export them through
# use_cpu_flags, and scripts/cpu-flags prints them. .cargo/config.toml holds the values plain cargo
# commands use: FACE_CPU=native's on an AVX2+FMA machine, FACE_CPU=portable's for the Pi targets
# (tests/cpu_flags.rs keeps the two in step, so switching between them rebuilds nothing).

# cpu_arch TRIPLE: x86_64, aarch64, armv7 or other.
cpu_arch() {
  case "$1" in
    x86_64-* | x86_64) echo x86_64 ;;
    aarch64-* | aarch64 | arm64) echo aarch64 ;;
    armv7-* | armv7 | armhf) echo armv7 ;;
    *) echo other ;;
  esac
}

# cpu_has CPUINFO WORD...: does CPUINFO's first x86 "flags" line list every WORD?
cpu_has() {
  local cpuinfo="$1" have
  shift
  have=" $(awk -F: '/^flags[[:space:]]*:/ { print $2; exit }' "$cpuinfo" 2>/dev/null) "
  have="${have//$'\t'/ }"
  local w
  for w in "$@"; do
    case "$have" in *" $w "*) ;; *) return 1 ;; esac
  done
}

# pi_board CPUINFO: pi3, pi4 or pi5 when CPUINFO's first ARM core is the Cortex-A53, -A72 or -A76
# of those boards (implementer 0x41, part 0xd03, 0xd08, 0xd0b), else nothing.
pi_board() {
  awk -F: '
    /^CPU implementer/ { gsub(/[[:space:]]/, "", $2); impl = $2 }
    /^CPU part/ { gsub(/[[:space:]]/, "", $2); part = $2; exit }
    END {
      if (impl != "0x41") exit
      if (part == "0xd03") print "pi3"
      else if (part == "0xd08") print "pi4"
      else if (part == "0xd0b") print "pi5"
    }' "$1" 2>/dev/null || true
}

cpu_set() { CPU_FLAGS="$1" CPU_WHAT="$2" CPU_RUNS="$3"; }

# cpu_flags ARCH CHOICE [CPUINFO]: sets CPU_FLAGS (the C++ flags), CPU_WHAT (what they build
# for) and CPU_RUNS (where the binary runs), for ARCH (cpu_arch's) and CHOICE: native (the CPU
# that CPUINFO, default /proc/cpuinfo, describes), portable (any CPU of ARCH that Raspberry Pi OS
# or Debian runs on), pi3, pi4, pi5 (ARM only). Returns 1, CPU_WHAT saying why, for a CHOICE
# that does not fit ARCH.
cpu_flags() {
  local arch="$1" choice="$2" cpuinfo="${3:-/proc/cpuinfo}" board
  # In every choice: GCC fuses a*b+c into one FMA instruction wherever the target has one, which
  # rounds differently: with fusing, 5 of the 138 reference boxes moved by 1 px from the Python
  # library's (x86_64, -mavx2 -mfma). Unfused, the boxes are exact and HOG is as fast.
  local exact="-ffp-contract=off"
  local pi64="a Pi 3, 4, 5 or Zero 2 W" pi32="a Pi 3, 4, 5 or Zero 2 W (ARMv8), not a Pi 2"
  CPU_FLAGS="" CPU_WHAT="" CPU_RUNS=""
  case "$arch:$choice" in
    x86_64:native)
      if ! grep -q '^flags[[:space:]]*:' "$cpuinfo" 2>/dev/null; then
        CPU_WHAT="FACE_CPU=native: $cpuinfo describes no x86_64 CPU (a cross build? choose portable)"
        return 1
      fi
      # AVX2+FMA or nothing: with GCC 12, AVX without AVX2 (-mavx, what -march=native gives a
      # Sandy/Ivy Bridge) makes HOG detection ~60% slower than plain SSE2; -march=native and
      # -march=x86-64-v3 measured as fast as -mavx2 -mfma, which runs on more CPUs.
      if cpu_has "$cpuinfo" avx2 fma; then
        cpu_set "-mavx2 -mfma $exact" "this CPU: AVX2+FMA" \
          "any x86_64 with AVX2 and FMA (Intel Core 2013+, AMD 2015+)"
      else
        cpu_set "$exact" "this CPU: no AVX2+FMA, so the x86_64 baseline (SSE2)" "any x86_64"
      fi ;;
    x86_64:portable) cpu_set "$exact" "any x86_64 (SSE2)" "any x86_64" ;;
    aarch64:native | armv7:native)
      if ! grep -q '^CPU implementer' "$cpuinfo" 2>/dev/null; then
        CPU_WHAT="FACE_CPU=native: $cpuinfo describes no ARM CPU (a cross build cannot see the"
        CPU_WHAT+=" board's: choose portable, pi3, pi4 or pi5)"
        return 1
      fi
      board="$(pi_board "$cpuinfo")"
      cpu_flags "$arch" "${board:-portable}" || return 1
      CPU_WHAT="this CPU: $CPU_WHAT" ;;
    # 64-bit: NEON is part of ARMv8-A; -mcpu tunes, and for the A76 adds ARMv8.2-A instructions
    # (atomics among them) that a Pi 3 or 4 does not have.
    aarch64:portable) cpu_set "$exact" "any 64-bit Raspberry Pi (ARMv8-A)" "$pi64" ;;
    aarch64:pi3)
      cpu_set "-mcpu=cortex-a53 $exact" "Raspberry Pi 3, Zero 2 W (Cortex-A53)" "$pi64" ;;
    aarch64:pi4)
      cpu_set "-mcpu=cortex-a72 $exact" "Raspberry Pi 4, 400, CM4 (Cortex-A72)" "$pi64" ;;
    aarch64:pi5)
      cpu_set "-mcpu=cortex-a76 $exact" "Raspberry Pi 5 (Cortex-A76)" "a Pi 5 only (ARMv8.2-A)" ;;
    # 32-bit: Debian's armhf compiler assumes ARMv7 with VFPv3-D16 and no NEON, which dlib's SIMD
    # code needs (__ARM_NEON). -mfloat-abi=hard is that compiler's default already.
    armv7:portable)
      cpu_set "-mfpu=neon $exact" "any 32-bit Raspberry Pi (ARMv7 with NEON)" \
        "a Pi 2, 3, 4, 5 or Zero 2 W" ;;
    armv7:pi3)
      cpu_set "-mcpu=cortex-a53 -mfpu=neon-fp-armv8 $exact" \
        "Raspberry Pi 3, Zero 2 W, 32-bit (Cortex-A53)" "$pi32" ;;
    armv7:pi4)
      cpu_set "-mcpu=cortex-a72 -mfpu=neon-fp-armv8 $exact" \
        "Raspberry Pi 4, 400, CM4, 32-bit (Cortex-A72)" "$pi32" ;;
    armv7:pi5)
      cpu_set "-mcpu=cortex-a76 -mfpu=neon-fp-armv8 $exact" \
        "Raspberry Pi 5, 32-bit (Cortex-A76)" "a Pi 5 only (ARMv8.2-A)" ;;
    other:native | other:portable)
      cpu_set "$exact" "the target's baseline (no CPU choices known for it)" "any CPU of its kind" ;;
    *:pi3 | *:pi4 | *:pi5)
      CPU_WHAT="FACE_CPU=$choice is a Raspberry Pi model: it fits aarch64 and armv7 builds, not $arch"
      return 1 ;;
    *)
      CPU_WHAT="unknown FACE_CPU=$choice: native, portable, pi3, pi4 or pi5"
      return 1 ;;
  esac
}

# use_cpu_flags TRIPLE CHOICE [HINT]: exports CXXFLAGS_<TRIPLE> with cpu_flags' choice for cargo
# and says what it chose, then HINT (the other choices). A CXXFLAGS_<TRIPLE> already set in the
# environment wins, and is said instead.
use_cpu_flags() {
  local triple="$1" choice="$2" hint="${3:-}" var
  var="CXXFLAGS_${triple//-/_}"
  if [ -n "${!var:-}" ]; then
    say "C++ flags from the environment: $var=\"${!var}\"" \
      "(FACE_CPU=$choice ignored; unset $var to use it)"
    return 0
  fi
  cpu_flags "$(cpu_arch "$triple")" "$choice" || die "$CPU_WHAT"
  export "$var=$CPU_FLAGS"
  say "building for $CPU_WHAT (FACE_CPU=$choice); the binary runs on $CPU_RUNS"
  say "C++ flags: $var=\"$CPU_FLAGS\""
  if [ -n "$hint" ]; then say "$hint"; fi
}

# check_board BOARD: dies unless BOARD is a choice for a cross build (checked before anything is
# installed or built). native would read this machine's CPU, not the board's.
check_board() {
  case "$1" in
    portable | pi3 | pi4 | pi5) ;;
    *) die "--board (or FACE_CPU, which --board overrides) must be portable, pi3, pi4 or pi5" \
      "for a Raspberry Pi build, not $1" ;;
  esac
}

# qemu_cpu ARCH CHOICE: the CPU qemu-user emulates for a build for CHOICE: the board's own where
# qemu has it, so an instruction the board lacks stops the test (SIGILL); for portable, the
# oldest CPU the build claims to run on. qemu-arm has no 32-bit Cortex-A53/A72/A76: max (ARMv8 and
# more) runs those builds but cannot catch an instruction beyond the board's.
qemu_cpu() {
  case "$1:$2" in
    aarch64:portable | aarch64:pi3) echo cortex-a53 ;;
    aarch64:pi4) echo cortex-a72 ;;
    aarch64:pi5) echo cortex-a76 ;;
    armv7:portable) echo cortex-a7 ;;  # the Raspberry Pi 2's
    *) echo max ;;
  esac
}

# host_triple: the target rustc builds for by default (what scripts/setup's binary runs on).
host_triple() { rustc -vV | sed -n 's/^host: //p'; }
