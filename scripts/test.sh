#!/usr/bin/env bash
# The project's single test command (CI runs it through .ci/run).
#
# 1. installs etcd 3.4.23 and 3.5.1 (scripts/install-etcd.sh),
# 2. starts one shared server of each version on free loopback ports and
#    exports ETCD_TEST_ENDPOINT_3_4 / ETCD_TEST_ENDPOINT_3_5 (URLs) and
#    ETCD_BIN_3_4 / ETCD_BIN_3_5 (binaries) for the tests,
# 3. runs, failing fast: rustfmt check, clippy, tests (nextest if available,
#    plus doctests), rustdoc with warnings denied,
# 4. stops the servers on exit, whatever happened.
set -euo pipefail

# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
ROOT="$(repo_root)"
cd "$ROOT"

STAGE="setup"
STAGE_START=$SECONDS
RUN_START=$SECONDS

stage() {
    STAGE="$1"
    STAGE_START=$SECONDS
    printf '\n==================== %s ====================\n' "$STAGE"
}

stage_done() {
    printf -- '---- %s: ok (%ss)\n' "$STAGE" "$((SECONDS - STAGE_START))"
}

on_exit() {
    local rc=$?
    set +e
    if [ "$rc" != 0 ]; then
        printf '\n==================== FAILED: %s (exit %s) ====================\n' "$STAGE" "$rc"
        # the shared servers' logs go with their data dirs: show them now
        local var dir
        for var in ETCD_DIR_SHARED_3_5 ETCD_DIR_SHARED_3_4; do
            dir="${!var:-}"
            if [ -n "$dir" ] && [ -f "$dir/etcd.log" ]; then
                printf -- '---- last lines of %s/etcd.log:\n' "$dir"
                tail -n 20 "$dir/etcd.log"
            fi
        done
    fi
    stop_all_etcd
    exit "$rc"
}
trap on_exit EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

stage "install etcd"
install_etcd 3.4 3.5
stage_done

stage "start shared etcd servers"
start_etcd 3.5 shared_3_5
ETCD_TEST_ENDPOINT_3_5="$ETCD_URL"
start_etcd 3.4 shared_3_4
ETCD_TEST_ENDPOINT_3_4="$ETCD_URL"
ETCD_BIN_3_5="$(etcd_bin 3.5)"
ETCD_BIN_3_4="$(etcd_bin 3.4)"
export ETCD_TEST_ENDPOINT_3_5 ETCD_TEST_ENDPOINT_3_4 ETCD_BIN_3_5 ETCD_BIN_3_4
echo "ETCD_TEST_ENDPOINT_3_5=$ETCD_TEST_ENDPOINT_3_5 ETCD_BIN_3_5=$ETCD_BIN_3_5"
echo "ETCD_TEST_ENDPOINT_3_4=$ETCD_TEST_ENDPOINT_3_4 ETCD_BIN_3_4=$ETCD_BIN_3_4"
stage_done

stage "cargo fmt --check"
cargo fmt --all -- --check
stage_done

stage "cargo clippy"
cargo clippy --workspace --all-targets -- -D warnings
stage_done

if cargo nextest --version >/dev/null 2>&1; then
    stage "cargo nextest run"
    cargo nextest run --workspace
    stage_done

    stage "cargo test --doc"
    cargo test --workspace --doc
    stage_done
else
    stage "cargo test"
    cargo test --workspace
    stage_done
fi

stage "cargo doc"
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps
stage_done

printf '\n==================== all stages passed (%ss) ====================\n' "$((SECONDS - RUN_START))"
