"""`dakiya trace`: a message's whole history, read from DATA/history with the real binary.

One dakiya relays to two routes on loopback: sink.test, where nothing listens at first (two
connection-refused attempts, deferred) and then a Postfix `smtp-sink` does (delivered); and
bad.test, an smtp-sink answering RCPT with a 5xx (failed, a failure notice to the local
sender alice). Once both have left the queue, trace finds each by queue ID, by Message-ID and
by address, with every attempt, the bounce notice (followed by its own queue ID) and the final
state; `--json` parses; damaged history lines are skipped. Old history files are removed at
start. Waits are bounded polls; nothing asserts how fast anything happens.
"""

from __future__ import annotations

import datetime
import json
import re
import socket
import subprocess

from mailutil import build_message, tag
from test_outbound import ALICE, HOST, SINK_HARD_RCPT, TRUSTED, outbound_config, relay, wait_queue_empty, wait_until

BOB = "bob@sink.test"
DAVE = "dave@bad.test"


def trace(server, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([server.binary, "trace", "--config", str(server.config_path), *args],
                          capture_output=True, text=True, timeout=30)  # fmt: skip


def trace_json(server, query: str) -> dict:
    out = trace(server, query, "--json")
    assert out.returncode == 0, f"trace {query} --json: status {out.returncode}\n{out.stderr}"
    return json.loads(out.stdout)


def events(msg: dict, kind: str) -> list[dict]:
    return [e for e in msg["events"] if e["ev"] == kind]


def final(msg: dict) -> str | None:
    done = events(msg, "done")
    return done[-1]["final"] if done else None


def message_id_of(message: str) -> str:
    return re.search(r"^Message-ID: (<[^>]+>)", message, re.MULTILINE).group(1)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((HOST, 0))
        return probe.getsockname()[1]


def test_trace_deferred_then_delivered_and_bounced(dakiya_factory, smtp_sink):
    down = free_port()
    bad = smtp_sink(reject_hard=["RCPT"], hard_reply=SINK_HARD_RCPT)
    tables = outbound_config({"sink.test": down, "bad.test": bad.port}, retry=("1s",), max_age="1h")
    server = dakiya_factory(top=TRUSTED, tables=tables)
    t = tag()
    first = build_message(ALICE, BOB, f"late {t}", "deferred twice, then delivered\r\n")
    second = build_message(ALICE, DAVE, f"bounce {t}", "refused by the next hop\r\n")
    late = relay(server, ALICE, [BOB], first)

    # Two refused connections, seen through trace itself while the message is queued.
    def deferred_twice():
        out = trace(server, late, "--json")
        if out.returncode != 0:
            return False
        [msg] = json.loads(out.stdout)["messages"]
        return len([a for a in events(msg, "attempt") if a["state"] == "deferred"]) >= 2
    wait_until(deferred_twice, f"two deferred attempts of {late} in the history", server)
    sink = smtp_sink(port=down)
    bounced = relay(server, ALICE, [DAVE], second)
    sink.wait_for_messages(1)
    wait_queue_empty(server, sink=sink)

    def both_done():
        return all(trace(server, q).returncode == 0 and "left the queue" in trace(server, q).stdout for q in (late, bounced))
    wait_until(both_done, "both messages' final states in the history", server)

    # By queue ID: received, the two deferred attempts, the delivery, the final state.
    [msg] = trace_json(server, late)["messages"]
    assert msg["id"] == late
    [rx] = events(msg, "received")
    assert rx["client"] == HOST and rx["helo"] and rx["sender"] == ALICE and rx["rcpts"] == [BOB], rx
    assert rx["message_id"] == message_id_of(first) and rx["size"] > len(first) and rx["listener"].startswith("mx "), rx
    states = [(a["rcpt"], a["state"]) for a in events(msg, "attempt")]
    assert states[-1] == (BOB, "delivered") and states[:-1] == [(BOB, "deferred")] * (len(states) - 1) and len(states) >= 3, states
    assert all(a["until"] >= a["t"] for a in events(msg, "attempt") if a["state"] == "deferred")
    delivered = events(msg, "attempt")[-1]
    assert delivered["hop"].endswith(f"[{HOST}]") and delivered["reply"].startswith("250"), delivered
    assert final(msg) == "delivered" and msg["notices"] == []

    text = trace(server, late.lower())
    assert text.returncode == 0, text.stderr
    assert text.stdout.startswith(f"message {late}: delivered\n"), text.stdout
    assert text.stdout.count(": deferred until ") >= 2 and f"attempt {BOB} remote via" in text.stdout, text.stdout

    # By Message-ID (with and without <>): the failed attempt, the notice and its own history.
    for query in (message_id_of(second), message_id_of(second).strip("<>")):
        [msg] = trace_json(server, query)["messages"]
        assert msg["id"] == bounced, (query, msg["id"])
    [attempt] = events(msg, "attempt")
    assert attempt["state"] == "failed" and SINK_HARD_RCPT in attempt["reply"] and attempt["hop"].endswith(f"[{HOST}]"), attempt
    [notice] = events(msg, "notice")
    assert notice["kind"] == "failure" and re.fullmatch(r"[0-9A-F]{16}", notice["notice"]), notice
    assert final(msg) == "bounced"
    [dsn] = msg["notices"]
    assert dsn["id"] == notice["notice"]
    [dsn_rx] = events(dsn, "received")
    assert dsn_rx["sender"] == "" and dsn_rx["rcpts"] == [ALICE] and dsn_rx["listener"] == "queue", dsn_rx
    assert [a["state"] for a in events(dsn, "attempt")] == ["delivered"] and events(dsn, "attempt")[0]["local"]
    assert final(dsn) == "delivered"
    text = trace(server, message_id_of(second)).stdout
    assert f"notice failure sent: {dsn['id']}" in text and f"    notice {dsn['id']}: delivered" in text, text

    # By address: alice sent both (oldest first); the notice to her is shown under its message.
    found = trace_json(server, ALICE.upper().replace("ALICE", "alice"))["messages"]
    assert [m["id"] for m in found] == [late, bounced], [m["id"] for m in found]
    assert [m["id"] for m in trace_json(server, DAVE)["messages"]] == [bounced]
    assert trace(server, BOB, "--since", "1h").returncode == 0

    # Nothing matches: exit status 1 and a message.
    none = trace(server, "nobody@nowhere.test")
    assert none.returncode == 1 and "no message in the history matches" in none.stderr, (none.returncode, none.stderr)
    bad_since = trace(server, BOB, "--since", "soon")
    assert bad_since.returncode == 2, bad_since.stderr

    # Damaged lines (garbage, a torn record) are skipped, not fatal.
    history = server.data_dir / "history"
    [today] = sorted(history.glob("*.jsonl"))[-1:]
    with open(today, "ab") as f:
        f.write(b"\x00\xffgarbage\n{\"t\":1,\"id\":\"00\n" + b"x" * 5000 + b"\n")
    out = trace_json(server, late)
    assert out["skipped_lines"] >= 2 and [m["id"] for m in out["messages"]] == [late], out["skipped_lines"]
    assert trace(server, late).returncode == 0


def test_history_files_older_than_history_days_are_removed(dakiya_factory):
    today = datetime.datetime.now(datetime.timezone.utc).date()
    names = {d: f"{today - datetime.timedelta(days=d)}.jsonl" for d in (0, 1, 2, 30)}

    def prepare(_config, data_dir):
        (data_dir / "history").mkdir(parents=True)
        for name in names.values():
            (data_dir / "history" / name).write_text("{}\n")
        (data_dir / "history" / "notes.txt").write_text("not history")

    server = dakiya_factory(tables="[history]\ndays = 2\n", prepare=prepare)
    history = server.data_dir / "history"
    wait_until(lambda: not (history / names[30]).exists() and not (history / names[2]).exists(),
               "history files older than 2 days removed at start", server)  # fmt: skip
    assert (history / names[0]).exists() and (history / names[1]).exists() and (history / "notes.txt").exists()
