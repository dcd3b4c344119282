#!/usr/bin/env bash
# Installs what the test suite needs when it is missing. Go modules come
# through the Go module proxy on first build; nothing else is needed yet.
set -euo pipefail
if ! command -v go >/dev/null 2>&1 && [ ! -x /usr/local/go/bin/go ]; then
  echo "deps: Go is missing: install Go 1.26 or newer (https://go.dev/dl/)" >&2
  exit 1
fi
go mod download
