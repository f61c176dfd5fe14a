# shellcheck shell=bash
# Installs what scripts/bench needs, idempotently. Sourced by scripts/bench.
#
#   ensure_postfix   Debian's postfix (postfix, smtp-source, smtp-sink), installed without
#                    configuring or starting the system instance.

_bench_policy_rc_created=""

_bench_restore_policy_rc() {
    if [[ -n "$_bench_policy_rc_created" ]]; then
        rm -f /usr/sbin/policy-rc.d
        _bench_policy_rc_created=""
    fi
}

ensure_postfix() {
    if command -v smtp-source >/dev/null 2>&1 && command -v smtp-sink >/dev/null 2>&1 \
        && [[ -x /usr/sbin/postfix ]]; then
        return 0
    fi
    if [[ $EUID -ne 0 ]]; then
        echo "bench: postfix is not installed and we are not root; run: sudo apt-get install postfix" >&2
        return 1
    fi
    echo "bench: installing Debian postfix (smtp-source, smtp-sink) ..." >&2
    export DEBIAN_FRONTEND=noninteractive
    # No configuration: the package leaves /etc/postfix/main.cf alone and we never use the system
    # instance; the benchmark runs its own instance from a temp config directory.
    echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
    # Keep invoke-rc.d from starting the system daemon during the install.
    if [[ ! -e /usr/sbin/policy-rc.d ]]; then
        printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
        chmod 755 /usr/sbin/policy-rc.d
        _bench_policy_rc_created=1
    fi
    local apt=(apt-get -y -q -o DPkg::Lock::Timeout=300)
    # apt-get update only if the package lists do not know postfix (fresh image, stale lists).
    if ! apt-cache show postfix >/dev/null 2>&1; then
        "${apt[@]}" update
    fi
    local rc=0
    "${apt[@]}" install --no-install-recommends postfix || rc=$?
    if [[ $rc -ne 0 ]]; then
        # A stale list (404 on the .deb) is the usual cause: refresh once and retry.
        "${apt[@]}" update && "${apt[@]}" install --no-install-recommends postfix
        rc=$?
    fi
    _bench_restore_policy_rc
    if [[ $rc -ne 0 ]] || ! command -v smtp-source >/dev/null 2>&1; then
        echo "bench: installing postfix failed" >&2
        return 1
    fi
}
