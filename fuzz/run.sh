#!/usr/bin/env bash
# Fuzz every decoder of caucus-protocol that reads untrusted bytes.
#
#   bash fuzz/run.sh [SECONDS] [TARGET...]   (default 60 seconds per target;
#                                              every target unless named)
#
# Installs cargo-fuzz if it is missing, generates the seed corpora from real
# objects (src/bin/gen-seeds.rs), builds every target with the nightly
# toolchain, runs the targets one at a time for SECONDS each, and prints a
# Markdown table: target, seconds, executions, corpus size, crashes found.
# libFuzzer's output for each target is kept in fuzz/logs/<target>.log and
# any crashing input in fuzz/artifacts/<target>/. Exits non-zero if any
# target found something.
set -euo pipefail

seconds="${1:-60}"
case "$seconds" in
    '' | *[!0-9]*)
        echo "usage: bash fuzz/run.sh [SECONDS] [TARGET...]" >&2
        exit 2
        ;;
esac
cd "$(dirname "$0")"

if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
    echo "== installing cargo-fuzz" >&2
    cargo install cargo-fuzz --locked
fi

echo "== generating seed corpora" >&2
cargo +nightly run --locked --quiet --bin gen-seeds -- corpus >&2

echo "== building the fuzz targets" >&2
cargo +nightly fuzz build >&2

mkdir -p logs artifacts
# Every target in fuzz_targets/ (cargo fuzz list also names the gen-seeds bin).
targets=$(cargo +nightly fuzz list | while read -r t; do [ -f "fuzz_targets/$t.rs" ] && echo "$t"; done)
if [ "$#" -gt 1 ]; then
    targets="${*:2}"
fi
rows=()
failed=0
for target in $targets; do
    echo "== $target: ${seconds}s" >&2
    mkdir -p "artifacts/$target"
    before=$(find "artifacts/$target" -type f | wc -l)
    log="logs/$target.log"
    status=0
    # -timeout: one input taking over 10 s counts as a finding (a hang).
    cargo +nightly fuzz run "$target" -- \
        -max_total_time="$seconds" -timeout=10 -print_final_stats=1 \
        >"$log" 2>&1 || status=$?
    after=$(find "artifacts/$target" -type f | wc -l)
    found=$((after - before))
    if [ "$status" -ne 0 ] && [ "$found" -eq 0 ]; then
        found="error (exit $status, see $log)"
    fi
    if [ "$found" != 0 ]; then
        failed=1
    fi
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1 || true)
    corpus=$(grep -o 'corp: [0-9]*' "$log" | tail -n 1 | cut -d' ' -f2 || true)
    artifact=$(grep -o 'Test unit written to [^ ]*' "$log" | tail -n 1 | cut -d' ' -f5 || true)
    rows+=("| $target | $seconds | ${execs:-?} | ${corpus:-?} | $found${artifact:+ ($artifact)} |")
done

echo
echo "fuzz/run.sh $seconds on $(date -u +%Y-%m-%d), $(nproc) cores, $(cargo +nightly --version)"
echo
echo "| target | seconds | executions | corpus | crashes found |"
echo "| --- | ---: | ---: | ---: | --- |"
printf '%s\n' "${rows[@]}"
exit "$failed"
