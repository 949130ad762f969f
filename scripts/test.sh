#!/usr/bin/env bash
# The README's test command: the whole workspace suite, then the tests that need
# the real SmolLM2-135M-Instruct model (`#[ignore]`d, so a plain `cargo test`
# lists them as ignored rather than passed) when that model is present.
# Extra arguments go to both `cargo test` runs (e.g. `--release`).
# Exit status: that of the first failing run, else 0. Says which runs it made.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

model="models/SmolLM2-135M-Instruct.Q4_1.gguf"

echo "== test.sh: cargo test --workspace $*"
cargo test --workspace "$@"

if [[ -s "$model" ]]; then
    echo "== test.sh: $model is present: running the ignored (model-dependent) tests"
    cargo test --workspace "$@" -- --ignored
    echo "== test.sh: all tests ran, the SmolLM2 ones included"
else
    echo "== test.sh: $model is absent: the SmolLM2 tests did NOT run (listed as ignored above);"
    echo "   run scripts/fetch-smollm2.sh and then this script again to run them"
fi
