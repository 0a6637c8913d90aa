"""llama-cpp-python's own OpenAI-compatible server on 127.0.0.1, serving the bundled model,
optionally with a projector for images."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

# The server loads models with llama.cpp's default parameters, whose AMX kernels crash
# on this project's CI machine; the wrapper turns the extra buffer types off, as gptcli
# itself does after its CPU check.
WRAPPER = """
import runpy, sys
import llama_cpp.llama_cpp as native
default = native.llama_model_default_params
def portable():
    params = default()
    params.use_extra_bufts = False
    return params
native.llama_model_default_params = portable
sys.argv = ["llama_cpp.server", *sys.argv[1:]]
runpy.run_module("llama_cpp.server", run_name="__main__")
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class LlamaServer:
    """Starts the server and waits until it lists its model.

    With ``projector`` the server takes images as LLaVA-1.5 does (``--chat_format llava-1-5``,
    its handler over libmtmd, with its own USER/ASSISTANT template and system message). The
    handler encodes on the model's ``n_threads``: such a server runs on one thread, as the
    projector's tests do (two threads beside other busy processes encode many times slower).
    """

    def __init__(
        self,
        model: Path,
        log: Path,
        alias: str = "smol",
        extra: tuple[str, ...] = (),
        projector: Path | None = None,
        ctx: int = 2048,
    ) -> None:
        threads: tuple[str, ...] = ("--n_threads", "2")
        vision: tuple[str, ...] = ()
        if projector is not None:
            threads = ("--n_threads", "1", "--n_threads_batch", "1")
            vision = ("--chat_format", "llava-1-5", "--clip_model_path", str(projector))
        self.port = free_port()
        self.log = log
        self.url = f"http://127.0.0.1:{self.port}/v1"
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-c",
                WRAPPER,
                "--model",
                str(model),
                "--model_alias",
                alias,
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--n_ctx",
                str(ctx),
                *threads,
                *vision,
                *extra,
            ],
            stdout=subprocess.DEVNULL,
            stderr=log.open("wb"),  # a pipe nobody reads would fill and stall the server
            stdin=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(log.read_text(errors="replace")[-2000:])
            try:
                with urllib.request.urlopen(f"{self.url}/models", timeout=2) as answer:
                    if answer.status == 200:
                        return
            except OSError:
                time.sleep(0.3)
        self.close()
        raise RuntimeError("llama_cpp.server did not start")

    def close(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
