#!/usr/bin/env bash
# Runs each cargo-fuzz target for a given number of seconds, one after the other, each in one
# process on one core. Not part of CI.
#
#   fuzz/run.sh [SECONDS] [TARGET...]     default: 300 seconds, every target
#
# Needs the nightly toolchain and cargo-fuzz (`cargo install cargo-fuzz`). The committed seeds
# in fuzz/corpus/<target> are read; what the fuzzer learns goes to fuzz/work/<target> (not
# committed) and is reused by the next run; a crash is written to fuzz/artifacts/<target>/.
# Prints, per target, libFuzzer's final statistics (stat::number_of_executed_units is the
# number of inputs run) and the corpus size. Exits non-zero if any target crashed.
set -uo pipefail
cd "$(dirname "$0")"
seconds=${1:-300}
shift || true
if [ $# -gt 0 ]; then
    targets=("$@")
else
    mapfile -t targets < <(cargo +nightly fuzz list)
fi
cargo +nightly fuzz build -O || exit 1
status=0
for t in "${targets[@]}"; do
    mkdir -p "work/$t" "artifacts/$t"
    echo "== $t: ${seconds}s"
    cargo +nightly fuzz run -O "$t" "work/$t" "corpus/$t" -- \
        -max_total_time="$seconds" -print_final_stats=1 -timeout=10 -max_len=8192 \
        -artifact_prefix="artifacts/$t/" >"work/$t.log" 2>&1
    grep -E '^(stat::number_of_executed_units|stat::peak_rss_mb|==[0-9]+== ?ERROR|SUMMARY)' "work/$t.log"
    grep -E '^#[0-9]+' "work/$t.log" | tail -n 1
    echo "   corpus: $(find "work/$t" -type f | wc -l) units (seeds: $(find "corpus/$t" -type f | wc -l))"
    if [ -n "$(ls -A "artifacts/$t")" ]; then
        echo "!! $t crashed: see fuzz/work/$t.log and fuzz/artifacts/$t/"
        status=1
    fi
done
exit $status
