"""The configuration snippets of docs/dovecot.md, so that the tests run what the guide says.

A snippet is the fenced block right after a `<!-- snippet: NAME -->` line. Its example paths
are replaced by the test's own: /var/lib/dakiya (dakiya's data_dir), /run/dovecot (Dovecot's
base_dir)."""

from __future__ import annotations

import re
from pathlib import Path

DOC = Path(__file__).resolve().parents[2] / "docs" / "dovecot.md"
SNIPPET_RE = re.compile(r"<!-- snippet: ([\w-]+) -->\n```[a-z]*\n(.*?)```", re.S)


def snippets() -> dict[str, str]:
    return {m.group(1): m.group(2) for m in SNIPPET_RE.finditer(DOC.read_text(encoding="utf-8"))}


def snippet(name: str, *, data_dir: Path | None = None, run_dir: Path | None = None) -> str:
    text = snippets()[name]
    if data_dir is not None:
        text = text.replace("/var/lib/dakiya", str(data_dir))
    if run_dir is not None:
        text = text.replace("/run/dovecot", str(run_dir))
    return text
