"""A real pseudo-terminal running gptcli, read back through a VT100 emulator (pyte)."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pexpect
import pyte

from tests.timing import patience


class _Screen(pyte.HistoryScreen):
    """Answers the terminal's queries (cursor position) the way a real terminal does."""

    def __init__(self, columns: int, lines: int, reply: Callable[[str], None]) -> None:
        super().__init__(columns, lines, history=5000)
        self._reply = reply

    def write_process_input(self, data: str) -> None:
        self._reply(data)


class Terminal:
    """Runs a command in a pty of a given size; ``screen_text`` is what a user would see."""

    def __init__(
        self,
        argv: list[str],
        env: dict[str, str],
        rows: int = 30,
        cols: int = 100,
        cwd: Path | None = None,
    ) -> None:
        self.child = pexpect.spawn(
            argv[0],
            argv[1:],
            env=env,
            dimensions=(rows, cols),
            encoding=None,
            timeout=5,
            cwd=str(cwd) if cwd is not None else None,
        )
        self.screen = _Screen(cols, rows, self._answer)
        self.stream = pyte.ByteStream(self.screen)
        self.raw = b""

    def _answer(self, data: str) -> None:
        if self.child.isalive():
            self.child.send(data.encode())

    def pump(self, seconds: float = 0.05) -> None:
        deadline = time.monotonic() + seconds
        while True:
            try:
                chunk = self.child.read_nonblocking(65536, timeout=0.02)
            except pexpect.TIMEOUT:
                chunk = b""
            except pexpect.EOF:
                return
            if chunk:
                self.raw += chunk
                self.stream.feed(chunk)
            elif time.monotonic() >= deadline:
                return

    def screen_text(self) -> str:
        return "\n".join(line.rstrip() for line in self.screen.display)

    def scrollback(self) -> list[str]:
        """Every line that scrolled off the top, then the visible screen."""
        top = [
            "".join(self.screen.history.top[i][x].data for x in range(self.screen.columns))
            for i in range(len(self.screen.history.top))
        ]
        return [line.rstrip() for line in top] + self.screen_text().split("\n")

    def wait_for(self, predicate: Callable[[str], bool], timeout: float = 60) -> str:
        deadline = time.monotonic() + patience(timeout)
        while time.monotonic() < deadline:
            self.pump(0.1)
            text = self.screen_text()
            if predicate(text):
                return text
            if not self.child.isalive():
                self.pump(0.2)
                break
        raise AssertionError(f"timed out; screen:\n{self.screen_text()}")

    def wait_text(self, text: str, timeout: float = 60) -> str:
        return self.wait_for(lambda screen: text in screen, timeout)

    def prompts(self) -> int:
        return sum(line.startswith(">>>") for line in self.scrollback())

    def at_prompt(self) -> bool:
        return self.screen.display[self.screen.cursor.y].startswith(">>>")

    def wait_prompt(self, count: int, timeout: float = 60) -> str:
        """Wait until the ``count``-th input prompt is shown and waiting for input."""
        return self.wait_for(lambda _: self.prompts() >= count and self.at_prompt(), timeout)

    def send(self, text: str) -> None:
        self.child.send(text.encode())

    def type_line(self, text: str) -> None:
        self.send(text + "\r")

    def ctrl(self, key: str) -> None:
        self.child.sendcontrol(key)

    def wait_exit(self, timeout: float = 30) -> int:
        deadline = time.monotonic() + patience(timeout)
        while self.child.isalive() and time.monotonic() < deadline:
            self.pump(0.1)
        self.pump(0.1)
        self.child.close()
        status = self.child.exitstatus
        assert status is not None, f"no exit status; screen:\n{self.screen_text()}"
        return int(status)

    def close(self) -> None:
        if self.child.isalive():
            self.child.terminate(force=True)
