#!/usr/bin/env bash
# Runs the etcd-tokio `tour` example against a throwaway etcd 3.5.1 server.
# Usage: scripts/demo.sh
set -euo pipefail

# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$(repo_root)"

install_etcd 3.5
trap stop_all_etcd EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
start_etcd 3.5 demo
cargo run --quiet -p etcd-tokio --example tour -- "$ETCD_URL"
