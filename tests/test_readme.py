"""The README's first interaction runs as written; every relative link in the docs resolves.

Which README blocks run: a fenced block whose info string is exactly ``sh`` (```sh) is a
runnable step; every other fence (```console such as `make up` and `make test`, ```text,
```python, ```yaml, a bare ```) is documentation and is never run. The ```sh blocks run in
the order they appear, concatenated into ONE bash script (so shell variables carry over from
block to block), under ``set -euo pipefail``, from the repository root, against an
``omnihub up`` this test starts with its own OMNIHUB_DATA_DIR and HTTP port (the ``omnihub``
commands in the blocks find it through $OMNIHUB_DATA_DIR/runtime.json). The one change made
to the blocks: the default address ``http://127.0.0.1:8080`` becomes that stack's address.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import psutil
import pytest

from services.stack.ports import free_port
from tests.support import ROOT
from tests.test_up import _read_url, _wait_ready

README = ROOT / "README.md"
DEFAULT_URL = "http://127.0.0.1:8080"
FENCE = re.compile(r"^(`{3,})(.*)$")


def fenced_blocks(text: str) -> list[tuple[str, str]]:
    """Every fenced code block of a Markdown text, as (info string, body)."""
    blocks: list[tuple[str, str]] = []
    opening: str | None = None
    info = ""
    body: list[str] = []
    for line in text.splitlines():
        match = FENCE.match(line)
        if opening is None:
            if match:
                opening, info, body = match.group(1), match.group(2).strip(), []
        elif match and match.group(1).startswith(opening) and not match.group(2).strip():
            blocks.append((info, "\n".join(body)))
            opening = None
        else:
            body.append(line)
    assert opening is None, "unclosed code fence"
    return blocks


def runnable_blocks(text: str) -> list[str]:
    """The ```sh blocks, in order."""
    return [body for info, body in fenced_blocks(text) if info == "sh"]


def posted_text(blocks: list[str]) -> str:
    """The "text" of the interaction the README posts to /v1/interactions."""
    for block in blocks:
        if "/v1/interactions" in block:
            match = re.search(r'"text":\s*"([^"]+)"', block)
            assert match, "the POST /v1/interactions block has no text"
            return match.group(1)
    raise AssertionError("no ```sh block posts to /v1/interactions")


def test_readme_convention_is_what_the_readme_uses() -> None:
    infos = [info for info, _ in fenced_blocks(README.read_text())]
    assert infos.count("sh") >= 3, infos
    blocks = runnable_blocks(README.read_text())
    assert not any(re.search(r"^\s*make (up|test)\b", b, re.M) for b in blocks), (
        "`make up` / `make test` must not be in a ```sh block (they are not run)"
    )


@pytest.mark.timeout(300)
def test_readme_first_interaction_runs_as_written(tmp_path: Path) -> None:
    omnihub = ROOT / ".venv" / "bin" / "omnihub"
    if not omnihub.exists():
        pytest.skip("the README's commands use .venv/bin/omnihub; run `make install` first")
    blocks = runnable_blocks(README.read_text())
    text = posted_text(blocks)
    script = "\n".join(blocks)
    assert DEFAULT_URL in script

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {
        k: v for k, v in os.environ.items() if k not in {"KAFKA_BOOTSTRAP_SERVERS", "DATABASE_URL"}
    }
    env.update(
        OMNIHUB_DATA_DIR=str(tmp_path / "data"),
        OMNIHUB_HTTP_PORT=str(port),
        OMNIHUB_SMTP_PORT=str(free_port()),  # the README's mail goes to the stack's SMTP server
        OMNIHUB_LOG_LEVEL="WARNING",
        COLUMNS="200",
    )
    (tmp_path / "readme.sh").write_text(
        "set -euo pipefail\n" + script.replace(DEFAULT_URL, url) + "\n"
    )
    up = subprocess.Popen(
        [sys.executable, "-m", "services.cli", "up"],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    supervisor = psutil.Process(up.pid)
    try:
        assert _read_url(up, timeout=60) == url
        with httpx.Client(base_url=url, timeout=10) as http:
            _wait_ready(http)
        shell = subprocess.Popen(
            ["bash", str(tmp_path / "readme.sh")],
            env=env,
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,  # its own process group: a timeout kills curl too
        )
        try:
            out, _ = shell.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(shell.pid, signal.SIGKILL)
            out, _ = shell.communicate()
            raise AssertionError(f"the README's blocks did not finish in 60 s:\n{out}") from None
        print(out)
        assert shell.returncode == 0, out
        timeline = out[out.rindex('"items"') :] if '"items"' in out else ""
        assert f'"text": "{text}"' in timeline, out
    finally:
        _stop(up, supervisor)


def _stop(up: subprocess.Popen[str], process: psutil.Process) -> None:
    """Ctrl-C ``omnihub up``, then make sure nothing it started is left running."""
    try:
        family = process.children(recursive=True)
    except psutil.NoSuchProcess:  # it has exited already, and stopped its children itself
        family = []
    up.send_signal(signal.SIGINT)  # what Ctrl-C sends
    try:
        out, _ = up.communicate(timeout=90)
    except subprocess.TimeoutExpired:
        up.kill()
        out, _ = up.communicate()
    _, alive = psutil.wait_procs(family, timeout=15)
    for left in alive:
        left.kill()
    assert not alive, f"omnihub up left running: {[p.pid for p in alive]}\n{out}"


LINK = re.compile(r"\]\(([^)\s]+)\)")


def _slug(heading: str) -> str:
    """GitHub's anchor of a heading."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link: its text
    text = text.replace("`", "").strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def _anchors(page: Path) -> set[str]:
    prose = _without_code(page.read_text())
    seen: dict[str, int] = {}
    anchors = set()
    for line in prose.splitlines():
        match = re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
        if match:
            slug = _slug(match.group(1))
            count = seen.get(slug, 0)
            seen[slug] = count + 1
            anchors.add(slug if count == 0 else f"{slug}-{count}")
    return anchors


def _without_code(text: str) -> str:
    """The text with its fenced code blocks blanked out."""
    out, opening = [], None
    for line in text.splitlines():
        match = FENCE.match(line)
        if opening is None and match:
            opening = match.group(1)
        elif opening is not None and match and match.group(1).startswith(opening):
            opening = None
        elif opening is None:
            out.append(line)
    return "\n".join(out)


def test_relative_links_resolve() -> None:
    pages = [README, *sorted((ROOT / "docs").glob("*.md"))]
    assert len(pages) > 10, pages
    broken = []
    for page in pages:
        for target in LINK.findall(_without_code(page.read_text())):
            if re.match(r"^[a-z][a-z0-9+.-]*:", target, re.I):  # http(s):, mailto: ...
                continue
            path, _, anchor = target.partition("#")
            resolved = (page.parent / path).resolve() if path else page
            if not resolved.exists():
                broken.append(f"{page.relative_to(ROOT)}: {target} (no such file)")
            elif anchor and resolved.suffix == ".md" and anchor not in _anchors(resolved):
                broken.append(f"{page.relative_to(ROOT)}: {target} (no such heading)")
    assert not broken, "\n".join(broken)
