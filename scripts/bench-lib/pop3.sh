# shellcheck shell=bash
# The POP3 scenario of scripts/bench (`scripts/bench pop3`; docs/benchmark.md, "POP3 and LMTP").
# Sourced by scripts/bench, whose helpers (log, jw, free_ports, launch_sut, stop_sut_process,
# quiet_wait, wait_port, pf_*) it uses. Three measurements in one run, everything on loopback:
#
#  1. RETR throughput: one Maildir of POP3_MSGS messages of SIZE bytes, written once in the
#     format dakiya's delivery writes, read by dakiya's POP3 and by Dovecot's POP3 (the same
#     Maildir, the same users file: Dovecot's passdb is docs/dovecot.md's passwd-file over
#     dakiya's users file). One pass = log in, UIDL, LIST, RETR every message (pipelined when
#     the server announces PIPELINING), no DELE, QUIT (pop3bench.py retr). One unreported pass
#     per server first (dakiya moves new/ to cur/, Dovecot builds its index), then
#     POP3_ROUNDS rounds of dakiya, Dovecot (A B A B), a fresh server for each pass.
#  2. Memory per idle POP3 connection: IDLE_CONNS connections that read the greeting and CAPA
#     (pop3bench.py idle), PSS of each server's process tree before and after.
#  3. LMTP delivery: LMTP_MSGS messages injected with smtp-source into dakiya
#     ([delivery] method = "lmtp") and into Postfix (local_transport = lmtp:unix:...), both
#     delivering to the same kind of private Dovecot LMTP (a fresh one per run, empty Maildir);
#     from smtp-source's start to the N-th file in the Maildir (pop3bench.py lmtp). A B A B.
#
# Results: RES/pop3/meta.json and RES/pop3/runs.jsonl (one JSON object per measurement, with
# "kind" retr|idle|lmtp, "server" and "round"); scripts/bench-lib/pop3report.py prints them.

P3=""             # the scenario's directory (under TMP)
P3RUN=""          # Dovecot's base_dir (its sockets: short path)
P3_DOVECOT_PID=""
P3_USER=b@bench.test
P3_LMTP_USER=l@bench.test

pop3b() { python3 "$LIB/pop3bench.py" "$@"; }

# p3_record KIND SERVER ROUND JSON: appends one measurement to RES/pop3/runs.jsonl.
p3_record() {
    python3 - "$RES/pop3/runs.jsonl" "$1" "$2" "$3" "$4" <<'PY'
import json, sys
path, kind, server, rnd, text = sys.argv[1:]
try:
    r = json.loads(text)
except ValueError:
    r = {"error": text[-300:] or "no output"}
r.update({"kind": kind, "server": server, "round": int(rnd)})
with open(path, "a") as f:
    f.write(json.dumps(r) + "\n")
PY
}

# p3_dakiya_config MODE: dakiya.toml for the scenario: mx on SUT_PORT, pop3 on P3_DK_PORT,
# clear-text logins from loopback; MODE lmtp adds [delivery] method = "lmtp" to Dovecot.
p3_dakiya_config() {
    local delivery=""
    [[ $1 == lmtp ]] && delivery="[delivery]
method = \"lmtp\"
lmtp = \"unix:$P3RUN/lmtp\""
    cat >"$P3/dakiya.toml" <<EOF
hostname = "bench.test"
# The bench may run as root (a fresh VM); a real server names a \`user\` instead.
allow_root = true
data_dir = "$P3/data"
[[listen]]
address = "$HOST:$SUT_PORT"
role = "mx"
verify = false
rate_limits = "bench"
[[listen]]
address = "$HOST:$P3_DK_PORT"
role = "pop3"
[rate_limits.bench]
[auth]
# Dovecot gets disable_plaintext_auth = no: both take USER/PASS in clear, on loopback only.
plaintext_on_loopback = true
$delivery
[domains."bench.test"]
any_mailbox = true
[limits]
max_connections = 5000
max_connections_per_ip = 5000
max_connections_per_network = 5000
EOF
}

p3_dakiya_start() {
    p3_dakiya_config "$1"
    RUST_LOG=${RUST_LOG:-info} launch_sut "$P3/dakiya.log" "$DAKIYA_BIN" serve --config "$P3/dakiya.toml" || return 1
    # data_dir and mail/ must stay traversable for Dovecot's mail processes (user mail).
    chmod o+x "$P3/data" "$P3/data/mail" 2>/dev/null || true
    local rc=0
    wait_port "$P3_DK_PORT" 20 "$SUT_PID" || rc=$?
    if [[ $rc -ne 0 ]]; then
        SKIP_REASON="dakiya did not open its pop3 listener $HOST:$P3_DK_PORT$(log_tail "$P3/dakiya.log")"
        stop_sut_process
        return 1
    fi
}
p3_dakiya_stop() {
    stop_sut_process
    cat "$P3/dakiya.log" >>"$TMP/logs/dakiya-pop3.log" 2>/dev/null || true
    : >"$P3/dakiya.log"
}

# p3_dovecot_conf: Dovecot 2.3's config (Debian bookworm): pop3 on P3_DV_PORT, LMTP on a unix
# socket any local user may use (Postfix's lmtp(8) runs as postfix), the passdb over dakiya's
# users file (argon2id, as docs/dovecot.md), mail as the user `mail` in the same tree.
p3_dovecot_conf() {
    local uid gid limit=$((IDLE_CONNS + 100))
    uid=$(id -u mail) gid=$(id -g mail)
    mkdir -p "$P3/dovecot/state"
    cat >"$P3/dovecot/dovecot.conf" <<EOF
base_dir = $P3RUN
state_dir = $P3/dovecot/state
log_path = $P3/dovecot/dovecot.log
protocols = pop3 lmtp
listen = $HOST
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain
first_valid_uid = $uid
first_valid_gid = $gid
default_client_limit = $((limit * 2 + 100))
passdb {
  driver = passwd-file
  args = scheme=ARGON2ID $P3/data/users
}
userdb {
  driver = static
  args = uid=$uid gid=$gid allow_all_users=yes
}
mail_location = maildir:$P3/data/mail/%d/%n
# dakiya's UIDs (docs/pop3.md); RETR sets no \\Seen flag (no renames), as in dakiya.
pop3_uidl_format = %f
pop3_no_flag_updates = yes
service pop3-login {
  inet_listener pop3 {
    address = $HOST
    port = $P3_DV_PORT
  }
  inet_listener pop3s {
    port = 0
  }
  # Debian's default login mode (one pop3-login process per connection), with room for the
  # idle test's connections.
  process_limit = $limit
}
service lmtp {
  unix_listener lmtp {
    mode = 0666
  }
}
EOF
}

p3_dovecot_start() {
    p3_dovecot_conf
    dovecot -F -c "$P3/dovecot/dovecot.conf" >>"$P3/dovecot/stdio.log" 2>&1 &
    P3_DOVECOT_PID=$!
    if ! wait_port "$P3_DV_PORT" 20 "$P3_DOVECOT_PID"; then
        SKIP_REASON="Dovecot did not open $HOST:$P3_DV_PORT$(log_tail "$P3/dovecot/dovecot.log")$(log_tail "$P3/dovecot/stdio.log")"
        p3_dovecot_stop
        return 1
    fi
    local i
    for ((i = 0; i < 100; i++)); do
        [[ -S $P3RUN/lmtp ]] && return 0
        sleep 0.1
    done
    SKIP_REASON="Dovecot made no LMTP socket at $P3RUN/lmtp"
    p3_dovecot_stop
    return 1
}
p3_dovecot_stop() {
    [[ -n $P3_DOVECOT_PID ]] || return 0
    local pids p i
    pids=$(python3 -c 'import json,sys; print(" ".join(map(str, json.loads(sys.argv[1])["pids"])))' \
        "$(memstat mem "$P3_DOVECOT_PID")" 2>/dev/null || echo "$P3_DOVECOT_PID")
    kill -TERM "$P3_DOVECOT_PID" 2>/dev/null || true
    for ((i = 0; i < 100; i++)); do
        kill -0 "$P3_DOVECOT_PID" 2>/dev/null || break
        sleep 0.1
    done
    for p in $pids; do kill -KILL "$p" 2>/dev/null || true; done
    wait "$P3_DOVECOT_PID" 2>/dev/null || true
    P3_DOVECOT_PID=""
}

# p3_retr SERVER ROUND: one download pass against a fresh SERVER (dakiya|dovecot); ROUND 0 is
# the unreported warm-up.
p3_retr() {
    local server=$1 round=$2 port pids out
    SKIP_REASON=""
    if [[ $server == dakiya ]]; then
        p3_dakiya_start maildir || { p3_record retr "$server" "$round" "start failed: $SKIP_REASON"; return 0; }
        port=$P3_DK_PORT pids=$SUT_PID
    else
        p3_dovecot_start || { p3_record retr "$server" "$round" "start failed: $SKIP_REASON"; return 0; }
        port=$P3_DV_PORT pids=$P3_DOVECOT_PID
    fi
    SRV_PIDS=$pids
    memstat settle "$pids" --max 10 >/dev/null
    [[ $round -eq 0 ]] || quiet_wait pop3 "retr-$server-$round"
    log "pop3: $server: RETR pass $round ($POP3_MSGS messages, window $POP3_WINDOW)"
    out=$(pop3b retr --port "$port" --user "$P3_USER" --password-file "$P3/password" \
        --expect "$POP3_MSGS" --window "$POP3_WINDOW" --pids "$pids" 2>>"$TMP/pop3-client.err") || true
    log "pop3: $server: $out"
    [[ $round -eq 0 ]] || p3_record retr "$server" "$round" "$out"
    if [[ $server == dakiya ]]; then p3_dakiya_stop; else p3_dovecot_stop; fi
}

# p3_idle SERVER: IDLE_CONNS connections after the greeting and CAPA.
p3_idle() {
    local server=$1 port pids out
    SKIP_REASON=""
    if [[ $server == dakiya ]]; then
        p3_dakiya_start maildir || { p3_record idle "$server" 1 "start failed: $SKIP_REASON"; return 0; }
        port=$P3_DK_PORT pids=$SUT_PID
    else
        p3_dovecot_start || { p3_record idle "$server" 1 "start failed: $SKIP_REASON"; return 0; }
        port=$P3_DV_PORT pids=$P3_DOVECOT_PID
    fi
    SRV_PIDS=$pids
    memstat settle "$pids" --max 10 >/dev/null
    quiet_wait pop3 "idle-$server"
    log "pop3: $server: $IDLE_CONNS idle connections (greeting, CAPA, then wait)"
    out=$(pop3b idle --port "$port" --conns "$IDLE_CONNS" --pids "$pids" 2>>"$TMP/pop3-client.err") || true
    log "pop3: $server: idle: $out"
    p3_record idle "$server" 1 "$out"
    if [[ $server == dakiya ]]; then p3_dakiya_stop; else p3_dovecot_stop; fi
}

# p3_postfix_setup: the bench's private Postfix, its local domain (bench.test) delivered by
# lmtp(8) to Dovecot's socket.
P3_PF_DIR=""
p3_postfix_setup() {
    P3_PF_DIR=$TMP/postfix-lmtp
    pf_setup "$P3_PF_DIR" "$PF_PORT" maildir >"$TMP/pf-setup-lmtp.log" 2>&1 || return 1
    postconf -c "$P3_PF_DIR/conf" -e "local_transport = lmtp:unix:$P3RUN/lmtp" || return 1
    echo "lmtp         unix  -       -       n       -       -       lmtp" >>"$P3_PF_DIR/conf/master.cf"
    postfix -c "$P3_PF_DIR/conf" check >>"$TMP/pf-setup-lmtp.log" 2>&1
}

# p3_lmtp MTA ROUND: a fresh Dovecot and a fresh MTA (dakiya|postfix), an empty Maildir for
# P3_LMTP_USER, LMTP_MSGS messages injected, timed to the N-th file in its new/.
p3_lmtp() {
    local mta=$1 round=$2 port mpids out maildir=$P3/data/mail/bench.test/l
    SKIP_REASON=""
    rm -rf "$maildir"
    if ! p3_dovecot_start; then
        p3_record lmtp "$mta" "$round" "dovecot did not start: $SKIP_REASON"
        return 0
    fi
    if [[ $mta == dakiya ]]; then
        if ! p3_dakiya_start lmtp; then
            p3_record lmtp "$mta" "$round" "dakiya did not start: $SKIP_REASON"
            p3_dovecot_stop
            return 0
        fi
        port=$SUT_PORT mpids=$SUT_PID
    else
        [[ " ${PF_DIRS[*]} " == *" $P3_PF_DIR "* ]] || PF_DIRS+=("$P3_PF_DIR")
        if ! pf_start "$P3_PF_DIR" "$PF_PORT"; then
            p3_record lmtp "$mta" "$round" "postfix did not start"
            pf_stop "$P3_PF_DIR"
            p3_dovecot_stop
            return 0
        fi
        port=$PF_PORT mpids=$(pf_master_pid "$P3_PF_DIR")
    fi
    SRV_PIDS="$mpids $P3_DOVECOT_PID"
    # shellcheck disable=SC2086
    memstat settle $SRV_PIDS --max 10 >/dev/null
    quiet_wait pop3 "lmtp-$mta-$round"
    local cmd=(smtp-source -d -s "$SESSIONS" -l "$SIZE" -m "$LMTP_MSGS" -c -f "$FROM" -t "$P3_LMTP_USER" "$HOST:$port")
    log "pop3: lmtp $round: ${cmd[*]} (to $mta, LMTP to Dovecot)"
    out=$(pop3b lmtp --new "$maildir/new" --target "$LMTP_MSGS" --mta "$mpids" --dovecot "$P3_DOVECOT_PID" \
        --stall 20 --max 600 -- timeout 300 "${cmd[@]}" 2>>"$TMP/pop3-client.err") || true
    log "pop3: lmtp $mta: $out"
    p3_record lmtp "$mta" "$round" "$out"
    if [[ $mta == dakiya ]]; then
        p3_dakiya_stop
    else
        pf_stop "$P3_PF_DIR"
        tail -n 2000 "$P3_PF_DIR/maillog" >"$TMP/logs/postfix-lmtp.maillog" 2>/dev/null || true
    fi
    p3_dovecot_stop
    tail -n 2000 "$P3/dovecot/dovecot.log" >"$TMP/logs/dovecot-pop3.log" 2>/dev/null || true
}

bench_pop3() {
    mkdir -p "$RES/pop3"
    : >"$RES/pop3/runs.jsonl"
    local missing="" b
    for b in dovecot /usr/lib/dovecot/pop3 /usr/lib/dovecot/pop3-login /usr/lib/dovecot/lmtp smtp-source; do
        command -v "$b" >/dev/null 2>&1 || [[ -x $b ]] || missing="$missing $b"
    done
    if [[ -n $missing ]]; then
        jw "$RES/pop3/meta.json" status=skipped reason="not installed:$missing (apt-get install dovecot-pop3d dovecot-lmtpd postfix)"
        return 0
    fi
    if [[ $EUID -ne 0 ]]; then
        jw "$RES/pop3/meta.json" status=skipped reason="runs Dovecot (mail as user mail): needs root"
        return 0
    fi
    local ports
    if ! ports=$(free_ports 2); then
        jw "$RES/pop3/meta.json" status=skipped reason="no free loopback ports"
        return 0
    fi
    P3_DK_PORT=${ports% *}
    P3_DV_PORT=${ports#* }
    P3=$TMP/pop3
    P3RUN=$(mktemp -d /tmp/dkp3.XXXXXX)   # unix socket paths must stay short
    chmod 755 "$P3RUN"
    mkdir -p "$P3/data/mail" "$P3/dovecot"
    chmod 755 "$P3" "$P3/data" "$P3/data/mail"
    python3 -c 'import secrets; print(secrets.token_urlsafe(18))' >"$P3/password"
    chmod 600 "$P3/password"
    p3_dakiya_config maildir
    if ! "$DAKIYA_BIN" user --config "$P3/dakiya.toml" add "$P3_USER" <"$P3/password" >"$P3/user-add.log" 2>&1; then
        jw "$RES/pop3/meta.json" status=skipped reason="dakiya user add failed: $(tail -2 "$P3/user-add.log" | tr '\n' ' ')"
        return 0
    fi
    # Dovecot's auth process (user dovecot) reads dakiya's users file, as docs/dovecot.md says.
    chgrp dovecot "$P3/data/users" && chmod 0640 "$P3/data/users"
    chmod o+x "$P3/data"
    log "pop3: writing $POP3_MSGS messages of $SIZE B into $P3/data/mail/bench.test/b"
    pop3b maildir "$P3/data/mail/bench.test/b" "$POP3_MSGS" "$SIZE"
    chown -R mail:mail "$P3/data/mail"
    local mb
    mb=$(du -sm "$P3/data/mail/bench.test/b" | cut -f1)
    jw "$RES/pop3/meta.json" status=ok messages="$POP3_MSGS" size="$SIZE" maildir_mb="$mb" \
        rounds="$POP3_ROUNDS" window="$POP3_WINDOW" idle_conns="$IDLE_CONNS" lmtp_messages="$LMTP_MSGS" \
        lmtp_rounds="$LMTP_ROUNDS" sessions="$SESSIONS" dakiya_pop3_port="$P3_DK_PORT" \
        dovecot_pop3_port="$P3_DV_PORT" dovecot_version="$(dovecot --version 2>/dev/null | cut -d' ' -f1)" \
        postfix_version="$(postconf -d -h mail_version 2>/dev/null)"
    log "pop3: dakiya pop3 on $HOST:$P3_DK_PORT, Dovecot pop3 on $HOST:$P3_DV_PORT, Dovecot LMTP at $P3RUN/lmtp"

    # 1. RETR: an unreported pass each, then A B A B.
    p3_retr dakiya 0
    p3_retr dovecot 0
    local r
    for ((r = 1; r <= POP3_ROUNDS; r++)); do
        p3_retr dakiya "$r"
        p3_retr dovecot "$r"
    done
    # 2. Idle connections.
    p3_idle dakiya
    p3_idle dovecot
    # 3. LMTP delivery.
    if ! p3_postfix_setup; then
        p3_record lmtp postfix 1 "postfix set-up failed: $(tail -3 "$TMP/pf-setup-lmtp.log" | tr '\n' ' ')"
    fi
    for ((r = 1; r <= LMTP_ROUNDS; r++)); do
        p3_lmtp dakiya "$r"
        [[ -z $P3_PF_DIR ]] || p3_lmtp postfix "$r"
    done
    rm -rf "$P3RUN"
    P3RUN=""
}

# p3_cleanup: for the bench's EXIT trap.
p3_cleanup() {
    p3_dovecot_stop
    [[ -z $P3RUN ]] || rm -rf "$P3RUN"
}
