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
