#!/usr/bin/env bash
# Coverage-guided fuzzing of every reader (tests/fuzz) with libFuzzer, on the
# stable toolchain: the binaries are instrumented with LLVM's sanitizer
# coverage passes through -C passes / -C llvm-args (what cargo-fuzz does with
# `--sanitizer none`), so neither nightly nor cargo-fuzz is needed.
#
#   scripts/fuzz.sh SECONDS [TARGET...]   fuzz each target (all by default)
#   scripts/fuzz.sh --build               only build the fuzz binaries
#   FUZZ_RUNS=N scripts/fuzz.sh S T...    stop each target at N executions
#                                         (or S seconds, whichever is first)
#
# Each target starts from the committed corpus (tests/fuzz/corpus/TARGET) and
# keeps what it finds in target/fuzz/corpus/TARGET (copy new inputs worth
# keeping into the committed corpus). A crash, an out-of-memory (RSS over
# 2 GiB) or a hang (one input over 10 s) stops that target and leaves the
# input under target/fuzz/artifacts/TARGET/. Prints one line per target and
# writes the table to target/fuzz/report.md. Exit status 1 when any target
# found a problem.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

all_targets=(safetensors safetensors_index gguf delta_file config_json tokenizer
             chat_template datasets method_spec serve_request)

build_only=0
if [[ "${1:-}" == "--build" ]]; then build_only=1; shift; fi
secs="${1:-10}"; [[ $# -gt 0 ]] && shift
targets=("$@"); [[ ${#targets[@]} -eq 0 ]] && targets=("${all_targets[@]}")

export CARGO_TARGET_DIR="$PWD/target/fuzz"
host="$(rustc -vV | sed -n 's/^host: //p')"
flags="-Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4"
flags+=" -Cllvm-args=-sanitizer-coverage-inline-8bit-counters"
flags+=" -Cllvm-args=-sanitizer-coverage-pc-table"
flags+=" -Cllvm-args=-sanitizer-coverage-trace-compares --cfg fuzzing"
echo "== fuzz.sh: building the instrumented targets (profile fuzz, $host)"
# --target keeps RUSTFLAGS off build scripts and proc macros.
# Only the fuzz-* binaries: make-corpus has no libFuzzer runtime to link
# the coverage hooks against.
bins=(); for t in "${targets[@]}"; do bins+=(--bin "fuzz-$t"); done
RUSTFLAGS="$flags" cargo build --profile fuzz -p deltaguard-fuzz --features libfuzzer \
    "${bins[@]}" --target "$host"
[[ $build_only -eq 1 ]] && exit 0

bindir="$CARGO_TARGET_DIR/$host/fuzz"
report="${FUZZ_REPORT:-$CARGO_TARGET_DIR/report.md}"
cpu="$(sed -n 's/^model name\s*: //p' /proc/cpuinfo | head -1)"
{
  echo "Fuzzing, $(date -u +%Y-%m-%dT%H:%MZ), commit $(git rev-parse --short HEAD 2>/dev/null || echo '?'), $cpu, 1 process per target"
  echo
  echo "| target | seconds | executions | exec/s | crashes | hangs / OOM | corpus | coverage (edges) |"
  echo "|---|---:|---:|---:|---:|---:|---:|---:|"
} >"$report"
failed=0
for t in "${targets[@]}"; do
  work="$CARGO_TARGET_DIR/corpus/$t"; art="$CARGO_TARGET_DIR/artifacts/$t/"
  mkdir -p "$work" "$art"
  log="$CARGO_TARGET_DIR/$t.log"
  args=(-timeout=10 -rss_limit_mb=2048 -print_final_stats=1 -artifact_prefix="$art")
  args+=(-max_total_time="$secs")
  [[ -n "${FUZZ_RUNS:-}" ]] && args+=(-runs="$FUZZ_RUNS")
  stamp="$CARGO_TARGET_DIR/$t.stamp"; touch "$stamp"
  start=$(date +%s)
  set +e
  "$bindir/fuzz-$t" "${args[@]}" "$work" "tests/fuzz/corpus/$t" >"$log" 2>&1
  rc=$?
  set -e
  took=$(( $(date +%s) - start ))
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
  cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1 | cut -d' ' -f2)
  # Only what this run found (earlier findings stay in the folder).
  found=$(find "$art" -type f -newer "$stamp" -printf '%f\n')
  crashes=$(grep -c '^crash-' <<<"$found" || true)
  hangs=$(grep -Ec '^(timeout|oom)-' <<<"$found" || true)
  n=$(ls "$work" | wc -l)
  echo "| $t | $took | ${execs:-?} | ${rate:-?} | $crashes | $hangs | $n | ${cov:-?} |" >>"$report"
  if [[ $rc -ne 0 ]]; then
    failed=1
    echo "fuzz.sh: $t FAILED (exit $rc); its log: $log; inputs: $art"
    grep -m1 -A20 -E 'panicked|ERROR: libFuzzer|==[0-9]+==' "$log" || tail -20 "$log"
  else
    echo "fuzz.sh: $t ok: ${execs:-?} executions in ${took}s, 0 crashes"
  fi
done
echo
cat "$report"
exit $failed
