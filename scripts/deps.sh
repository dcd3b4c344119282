#!/usr/bin/env bash
# Installs what the test suite needs when it is missing. Go modules come
# through the Go module proxy on first build; nothing else is needed yet.
set -euo pipefail
if ! command -v go >/dev/null 2>&1 && [ ! -x /usr/local/go/bin/go ]; then
  echo "deps: Go is missing: install Go 1.26 or newer (https://go.dev/dl/)" >&2
  exit 1
fi
go mod download
(cd "$(dirname "$0")/../packaging" && go mod download)

# --- chromium ---
# The dashboard's browser tests (internal/admin and internal/gateway
# *browser_test.go, through internal/admin/browsertest) drive Debian's
# Chromium at /usr/bin/chromium. Needs root; without it, say how (the tests
# skip without Chromium unless CI is set).
if [ ! -x /usr/bin/chromium ]; then
  if [ "$(id -u)" -eq 0 ]; then
    if [ -z "${DEPS_APT_UPDATED:-}" ]; then
      apt-get update </dev/null
      DEPS_APT_UPDATED=1
    fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y chromium </dev/null
  else
    echo "deps: /usr/bin/chromium is missing: run as root, or: sudo apt-get install chromium" >&2
  fi
fi
# --- end chromium ---

# --- nginx/haproxy ---
# The driver tests (internal/gateway/driver_test.go, internal/driver) start
# Debian's nginx and HAProxy on 127.0.0.1 (they skip without them unless CI
# is set). Only the binaries are used: no service is started or enabled.
deps_missing=""
for prog in nginx haproxy; do
  if ! command -v "$prog" >/dev/null 2>&1 && [ ! -x "/usr/sbin/$prog" ]; then
    deps_missing="$deps_missing $prog"
  fi
done
if [ -n "$deps_missing" ]; then
  if [ "$(id -u)" -eq 0 ]; then
    if [ -z "${DEPS_APT_UPDATED:-}" ]; then
      apt-get update </dev/null
      DEPS_APT_UPDATED=1
    fi
    # shellcheck disable=SC2086 # one word per package
    DEBIAN_FRONTEND=noninteractive apt-get install -y $deps_missing </dev/null
  else
    echo "deps:$deps_missing missing: run as root, or: sudo apt-get install$deps_missing" >&2
  fi
fi
# --- end nginx/haproxy ---

# --- bench tools ---
# `make bench` and its smoke test (bench/bench_test.go) drive Debian's wrk
# against Debian's nginx and HAProxy on 127.0.0.1; the smoke test skips
# without them unless CI is set. Installed here too, so that this block
# alone is enough for `make bench`. Only the binaries are used.
bench_missing=""
for prog in nginx haproxy wrk; do
  if ! command -v "$prog" >/dev/null 2>&1 && [ ! -x "/usr/sbin/$prog" ]; then
    bench_missing="$bench_missing $prog"
  fi
done
if [ -n "$bench_missing" ]; then
  if [ "$(id -u)" -eq 0 ]; then
    if [ -z "${DEPS_APT_UPDATED:-}" ]; then
      apt-get update </dev/null
      DEPS_APT_UPDATED=1
    fi
    # shellcheck disable=SC2086 # one word per package
    DEBIAN_FRONTEND=noninteractive apt-get install -y $bench_missing </dev/null
  else
    echo "deps:$bench_missing missing (make bench): run as root, or: sudo apt-get install$bench_missing" >&2
  fi
fi
# --- end bench tools ---

# --- systemd-analyze, dpkg ---
# The unit test (cmd/cutover/unit_test.go) runs `systemd-analyze verify` on
# the packaged cutover.service, and the package test (packaging/deb) installs
# the .deb with dpkg into a throwaway root; both skip without the tool.
# Only the binaries are used: no service is started.
sys_missing=""
command -v systemd-analyze >/dev/null 2>&1 || sys_missing="$sys_missing systemd"
command -v dpkg >/dev/null 2>&1 || sys_missing="$sys_missing dpkg"
if [ -n "$sys_missing" ]; then
  if [ "$(id -u)" -eq 0 ]; then
    if [ -z "${DEPS_APT_UPDATED:-}" ]; then
      apt-get update </dev/null
      DEPS_APT_UPDATED=1
    fi
    # shellcheck disable=SC2086 # one word per package
    DEBIAN_FRONTEND=noninteractive apt-get install -y $sys_missing </dev/null
  else
    echo "deps:$sys_missing missing: run as root, or: sudo apt-get install$sys_missing" >&2
  fi
fi
# --- end systemd-analyze, dpkg ---
