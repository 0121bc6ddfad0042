#!/usr/bin/env bash
# Installs `kubernetes-validate` (PyPI; it bundles the Kubernetes JSON schemas, so validation
# needs no network) into the git-ignored .venv-tools/, for tests/deploy_configs.rs. Idempotent:
# a fast no-op when the pinned version is there. Prints the binary's path on its last line.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
version="${K8S_VALIDATE_VERSION:-1.37.0}"
venv="$repo/.venv-tools"
bin="$venv/bin/kubernetes-validate"

if [[ -x "$bin" ]] && [[ "$("$bin" --version 2>/dev/null)" == "$version" ]]; then
    echo "$bin"
    exit 0
fi
if ! "$venv/bin/python" -c '' 2>/dev/null; then
    echo "creating venv $venv" >&2
    rm -rf "$venv"
    "${PYTHON:-python3}" -m venv "$venv"
fi
echo "installing kubernetes-validate==$version into $venv" >&2
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check "kubernetes-validate==$version" >&2
echo "$bin"
