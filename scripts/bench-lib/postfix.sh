# shellcheck shell=bash
# A private Postfix instance for scripts/bench: own config and queue directories under a temp
# dir, smtpd on 127.0.0.1:PORT only, never the system instance (which stays unconfigured).
#
#   pf_setup DIR PORT MODE [SINK_PORT]
#                            write DIR/conf/{main,master}.cf, create DIR/queue, DIR/data,
#                            DIR/mail; MODE is "maildir" (virtual(8) delivery into the one
#                            Maildir DIR/mail/bench.test/b/) or "discard" (discard(8)).
#                            With SINK_PORT (the outbound scenario), mail for sink.test is
#                            relayed by smtp(8) to 127.0.0.1:SINK_PORT (see pf_outbound_conf).
#   pf_hold_on_arrival DIR on|off
#                            (instance stopped) every message smtpd accepts goes to the hold
#                            queue (on), or not (off): the outbound scenario's backlog phase.
#   pf_queue_count DIR Q     files in queue Q (hold, deferred, ...).
#   pf_start DIR PORT        postfix -c DIR/conf start; waits for the port (<= 20 s) with the
#                            caller's wait_port.
#   pf_stop DIR              postfix -c DIR/conf stop; waits <= 10 s for master(8) to exit,
#                            then SIGKILLs it (its children exit when master is gone).
#   pf_master_pid DIR        PID of this instance's master(8).
#   pf_queue_empty DIR       true when no message is left in incoming/active/deferred/maildrop.

pf_setup() {
    local dir=$1 port=$2 mode=$3 sink_port=${4:-}
    local conf=$dir/conf
    mkdir -p "$conf" "$dir/queue" "$dir/data" "$dir/mail"
    # Postfix daemons run as mail_owner (postfix): they must be able to reach the queue, and
    # `postfix check` insists that the queue and config paths be root-owned, not group/other
    # writable.
    chmod 755 "$dir" "$conf" "$dir/queue"
    chown root:root "$dir" "$conf" "$dir/queue"
    chown postfix:postfix "$dir/data"
    chmod 700 "$dir/data"
    # virtual(8) delivers as nobody (virtual_uid_maps below) and creates the Maildirs itself.
    chown nobody:nogroup "$dir/mail"
    : >"$dir/maillog"

    local transport
    case $mode in
    maildir) transport=virtual ;;
    discard) transport=discard ;;
    *) echo "bench: unknown postfix delivery mode $mode" >&2; return 1 ;;
    esac

    cat >"$conf/main.cf" <<MAINCF
# Written by scripts/bench: a private, loopback-only Postfix used as the benchmark's baseline.
compatibility_level = 3.6
config_directory = $conf
queue_directory = $dir/queue
data_directory = $dir/data
# The package's own programs and templates (Debian paths).
command_directory = /usr/sbin
daemon_directory = /usr/lib/postfix/sbin
shlib_directory = /usr/lib/postfix
meta_directory = /etc/postfix
mail_owner = postfix
setgid_group = postdrop

myhostname = bench.test
mydomain = bench.test
myorigin = bench.test
mydestination = bench.test, localhost
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
relayhost =
smtpd_banner = \$myhostname ESMTP
biff = no
append_dot_mydomain = no
alias_maps =
alias_database =
# Accept any local part (dakiya's any_mailbox = true); no passwd lookups.
local_recipient_maps =
# Never look anything up in DNS: everything here is loopback.
smtp_dns_support_level = disabled
smtpd_peername_lookup = no

# Delivery: "$mode".
local_transport = $transport
virtual_mailbox_base = $dir/mail
# Every recipient goes to the one Maildir DIR/mail/bench.test/b/ (the benchmark sends to
# b@bench.test only; virtual(8) refuses regexp substitution, so no per-local-part map).
virtual_mailbox_maps = static:bench.test/b/
# bench.test is a local domain (mydestination) delivered by virtual(8), not a virtual one.
virtual_mailbox_domains =
virtual_uid_maps = static:65534
virtual_gid_maps = static:65534
virtual_minimum_uid = 100

# Log to a file through postlogd(8) (no syslog daemon in a container).
maillog_file = $dir/maillog
maillog_file_prefixes = $dir

# Load limits: many smtpd processes (one per connection) for the idle-connection test, and no
# per-client rate or count limits (all clients are 127.0.0.1).
default_process_limit = 1200
smtpd_client_connection_count_limit = 0
smtpd_client_connection_rate_limit = 0
smtpd_client_message_rate_limit = 0
smtpd_client_recipient_rate_limit = 0
smtpd_client_new_tls_session_rate_limit = 0
message_size_limit = 10240000
MAINCF
    [[ -z $sink_port ]] || pf_outbound_conf "$sink_port" >>"$conf/main.cf"

    # chroot off everywhere (no chroot tree to populate); smtpd only on loopback.
    cat >"$conf/master.cf" <<MASTERCF
# service    type  private unpriv  chroot  wakeup  maxproc command
127.0.0.1:$port inet n     -       n       -       1200    smtpd
pickup       unix  n       -       n       60      1       pickup
cleanup      unix  n       -       n       -       0       cleanup
qmgr         unix  n       -       n       300     1       qmgr
rewrite      unix  -       -       n       -       -       trivial-rewrite
bounce       unix  -       -       n       -       0       bounce
defer        unix  -       -       n       -       0       bounce
trace        unix  -       -       n       -       0       bounce
verify       unix  -       -       n       -       1       verify
flush        unix  n       -       n       1000?   0       flush
proxymap     unix  -       -       n       -       -       proxymap
proxywrite   unix  -       -       n       -       1       proxymap
showq        unix  n       -       n       -       -       showq
error        unix  -       -       n       -       -       error
retry        unix  -       -       n       -       -       error
discard      unix  -       -       n       -       -       discard
local        unix  -       n       n       -       -       local
virtual      unix  -       n       n       -       -       virtual
anvil        unix  -       -       n       -       1       anvil
scache       unix  -       -       n       -       1       scache
postlog      unix-dgram n  -       n       -       1       postlogd
MASTERCF
    if [[ -n $sink_port ]]; then
        echo "smtp         unix  -       -       n       -       -       smtp" >>"$conf/master.cf"
    fi
    # Creates the queue subdirectories with the right owners (post-install create-missing), and
    # checks the whole set-up.
    postfix -c "$conf" check
}

pf_master_pid() {
    local f=$1/queue/pid/master.pid
    [[ -r $f ]] && tr -dc '0-9' <"$f"
}

pf_start() {
    local dir=$1 port=$2
    postfix -c "$dir/conf" start >>"$dir/start.log" 2>&1 || {
        cat "$dir/start.log" >&2
        return 1
    }
    wait_port "$port" 20
}

pf_stop() {
    local dir=$1 pid
    pid=$(pf_master_pid "$dir")
    postfix -c "$dir/conf" stop >>"$dir/start.log" 2>&1 || true
    if [[ -n $pid ]]; then
        local i
        for ((i = 0; i < 100; i++)); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        if kill -0 "$pid" 2>/dev/null; then kill -9 "$pid" 2>/dev/null || true; fi
    fi
}

pf_queue_empty() {
    local q=$1/queue n
    n=$(find "$q/incoming" "$q/active" "$q/deferred" "$q/maildrop" -type f 2>/dev/null | head -1 | wc -l)
    [[ $n -eq 0 ]]
}

# pf_outbound_conf SINK_PORT: the main.cf lines of the outbound scenario. Everything for
# sink.test goes to smtp-sink on 127.0.0.1:SINK_PORT through smtp(8) (the [] mean no MX
# lookup; DNS is off anyway), in clear text, up to 20 connections at once to it (Postfix's
# default, set explicitly: dakiya's per_destination is the same), starting at
# initial_destination_concurrency (5, default) and growing while deliveries succeed. The
# connection cache is Postfix's default (smtp_connection_cache_on_demand = yes: a session is
# kept, for smtp_connection_cache_time_limit = 2 s, whenever more mail for the destination is
# waiting in the active queue) and so is everything else about smtp(8), PIPELINING included.
pf_outbound_conf() {
    cat <<OUTCF

# Outbound (scripts/bench outbound): relay sink.test to smtp-sink on 127.0.0.1:$1.
transport_maps = inline:{ sink.test=smtp:[127.0.0.1]:$1 }
smtp_tls_security_level = none
smtp_helo_name = bench.test
default_destination_concurrency_limit = 20
smtp_destination_concurrency_limit = 20
smtp_connection_cache_on_demand = yes
OUTCF
}

pf_hold_on_arrival() {
    local dir=$1 on=$2
    if [[ $on == on ]]; then
        postconf -c "$dir/conf" -e 'smtpd_end_of_data_restrictions = check_client_access static:HOLD'
    else
        postconf -c "$dir/conf" -e 'smtpd_end_of_data_restrictions ='
    fi
}

pf_queue_count() {
    find "$1/queue/$2" -type f 2>/dev/null | wc -l
}
