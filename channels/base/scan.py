"""A virus-scan hook for files customers send: a command the operator chooses (ClamAV's
``clamdscan --no-summary --stream -`` or ``clamscan --no-summary -``, or any program that
keeps clamscan's convention) reads the file on its standard input and answers by its exit
status: 0 clean, 1 infected (its output names what it found), anything else an error.

A file the scanner refuses is refused; a scanner that cannot answer (missing, crashed, too
slow) fails closed: the file is not taken, and the sender may try again."""

from __future__ import annotations

import asyncio
import shlex
from dataclasses import dataclass

#: What the scanner's output may say, kept for the refusal (bounded, one line).
_REASON_CHARS = 200


class ScanUnavailable(OSError):
    """The scanner gave no verdict (not found, an error status, too slow)."""


@dataclass(frozen=True)
class CommandScanner:
    """Runs ``command`` once a file (no shell: the command line is split as a shell would)."""

    command: str
    timeout: float = 30.0

    async def infected(self, data: bytes) -> str | None:
        """What the scanner found in ``data``, or None when it is clean; ScanUnavailable
        when it gave no verdict."""
        argv = shlex.split(self.command)
        try:
            process = await asyncio.create_subprocess_exec(
                *argv,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.DEVNULL,
            )
        except OSError as exc:
            raise ScanUnavailable(f"the scanner cannot run: {exc}") from exc
        try:
            async with asyncio.timeout(self.timeout):
                output, _ = await process.communicate(data)
        except TimeoutError:
            process.kill()
            await process.wait()
            raise ScanUnavailable(f"the scanner took over {self.timeout:g} s") from None
        if process.returncode == 0:
            return None
        if process.returncode == 1:
            said = output.decode("utf-8", "replace").strip().splitlines()
            return (said[0] if said else "infected")[:_REASON_CHARS]
        raise ScanUnavailable(f"the scanner failed (exit status {process.returncode})")
