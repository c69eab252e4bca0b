#!/usr/bin/env bash
# Runs every libFuzzer target of a build for SECONDS seconds each:
#
#   tests/fuzz/run.sh BUILD_DIR SECONDS
#
# Each fuzzer starts from a copy of its seed corpus (tests/fuzz/corpus/<name>/)
# in a temporary directory, so the source tree is never modified. As many
# fuzzers run at once as there are CPUs (WSX_FUZZ_JOBS sets it). Prints one
# line per fuzzer (executions, coverage, corpus growth) and exits non-zero if
# any fuzzer crashed, leaked, timed out or could not run; the crash log and
# the input that caused it are kept and their place is printed.
set -euo pipefail

if [[ $# -ne 2 || ! $2 =~ ^[0-9]+$ ]]; then
    echo "usage: $0 BUILD_DIR SECONDS" >&2
    exit 2
fi
build_dir=$1
seconds=$2
source_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

work=$(mktemp -d "${TMPDIR:-/tmp}/wsx-fuzz.XXXXXX")
keep_work=0
cleanup() { if [[ $keep_work -eq 0 ]]; then rm -rf "$work"; fi; }
trap cleanup EXIT

shopt -s nullglob
fuzzers=("$build_dir"/tests/fuzz/wsx_fuzz_*)
if [[ ${#fuzzers[@]} -eq 0 ]]; then
    echo "no fuzzers found in $build_dir/tests/fuzz (configure with -DWSX_BUILD_FUZZERS=ON)" >&2
    exit 2
fi

parallel=${WSX_FUZZ_JOBS:-$(nproc)}
[[ $parallel =~ ^[1-9][0-9]*$ ]] || parallel=1

# Runs one fuzzer from a copy of its seeds; leaves its exit status in $dir/status.
run_one() {
    local fuzzer=$1 dir=$2 status=0
    "$fuzzer" -max_total_time="$seconds" -print_final_stats=1 -timeout=10 \
        -artifact_prefix="$dir/" "$dir/corpus" >"$dir/log" 2>&1 || status=$?
    echo "$status" >"$dir/status"
}

names=()
running=0
for fuzzer in "${fuzzers[@]}"; do
    [[ -f $fuzzer && -x $fuzzer ]] || continue
    name=${fuzzer##*/wsx_fuzz_}
    dir=$work/$name
    mkdir -p "$dir/corpus"
    if [[ -d $source_dir/corpus/$name ]]; then
        cp -R "$source_dir/corpus/$name/." "$dir/corpus/"
    fi
    find "$dir/corpus" -type f | wc -l >"$dir/seeds"
    names+=("$name")
    if [[ $running -ge $parallel ]]; then
        wait -n || true
        running=$((running - 1))
    fi
    run_one "$fuzzer" "$dir" &
    running=$((running + 1))
done
wait

failed=0
for name in "${names[@]}"; do
    dir=$work/$name
    seeds=$(cat "$dir/seeds")
    status=$(cat "$dir/status" 2>/dev/null || echo 1)

    # libFuzzer's final stats, and its last status line for coverage.
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$dir/log" | tail -n 1)
    rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$dir/log" | tail -n 1)
    cov=$(grep -o 'cov: [0-9]*' "$dir/log" | tail -n 1 | cut -d ' ' -f 2 || true)
    features=$(grep -o 'ft: [0-9]*' "$dir/log" | tail -n 1 | cut -d ' ' -f 2 || true)
    corpus=$(find "$dir/corpus" -type f | wc -l)

    if [[ $status -eq 0 ]]; then
        verdict=ok
    else
        verdict="FAILED (exit $status)"
        failed=1
        keep_work=1
    fi
    printf '%-22s %-16s executions: %-10s (%s/s)  coverage: %s edges, %s features  corpus: %s -> %s\n' \
        "$name" "$verdict" "${runs:-?}" "${rate:-?}" "${cov:-?}" "${features:-?}" "$seeds" "$corpus"
    if [[ $status -ne 0 ]]; then
        grep -E '^==[0-9]+==ERROR|SUMMARY|^artifact_prefix|Test unit written to' "$dir/log" | sed 's/^/    /' || true
        echo "    full log: $dir/log"
    fi
done

exit "$failed"
