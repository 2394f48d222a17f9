#!/usr/bin/env bash
# Every test, on a fresh machine: installs what the tests need from the system
# (a one-node Slurm: slurmctld, slurmd, munge), then runs `cargo test`.
# This is the README's test command and what .ci/run runs.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    scripts/slurm/cluster.sh install
    export CURATE_REQUIRE_SLURM=1
else
    echo "note: not root or no apt-get: Slurm is not installed; tests/slurm.rs skips its cluster test" >&2
fi
cargo test "$@" 2>&1
