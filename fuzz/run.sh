#!/usr/bin/env bash
# Fuzzes the endpoint expander, the request-head handling, the backend response
# parsers and the cache's metadata objects for a few minutes each
# (not in CI). Findings land in fuzz/artifacts/; the corpus grows in fuzz/corpus/.
#   fuzz/run.sh [SECONDS_PER_TARGET]
set -euo pipefail
cd "$(dirname "$0")"
seconds="${1:-180}"
command -v cargo-fuzz >/dev/null 2>&1 || cargo install cargo-fuzz --locked
# cargo-fuzz needs nightly flags (sanitizers); the stable toolchain allows them this way.
export RUSTC_BOOTSTRAP=1
for target in expand request_head response meta; do
    mkdir -p "corpus/$target"
    cargo fuzz run "$target" "corpus/$target" -- -max_total_time="$seconds" -max_len=4096
done
