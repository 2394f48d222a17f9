#!/usr/bin/env bash
# Every test, on a fresh machine: installs what the tests need beyond Rust, then runs
# `cargo test`. This is the README's test command and what .ci/run runs.
#  - a one-node Slurm (Debian's slurmctld, slurmd, munge) for tests/slurm.rs (needs root + apt)
#  - moto_server (PyPI moto[server]) in .venv-moto/ for tests/s3.rs
# Once installed, their absence is a test failure (CURATE_REQUIRE_*), not a skip.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    scripts/slurm/cluster.sh install
    export CURATE_REQUIRE_SLURM=1
else
    echo "note: not root or no apt-get: Slurm not installed; tests/slurm.rs skips its cluster test" >&2
fi
if scripts/s3/moto.sh install; then
    export CURATE_REQUIRE_S3=1
else
    echo "note: moto_server could not be installed; tests/s3.rs skips" >&2
fi
cargo test "$@" 2>&1
