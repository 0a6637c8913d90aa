"""Choosing and opening the backend for a set of settings."""

from __future__ import annotations

import os
from collections.abc import Mapping

from gptcli.backends.base import Cancellation
from gptcli.backends.llama import LlamaBackend, LoadOptions
from gptcli.config import Settings
from gptcli.cpuprobe import decide_extra_buffers
from gptcli.modelfile import read_model_file
from gptcli.models import resolve_model
from gptcli.paths import AppPaths


def open_backend(
    settings: Settings,
    paths: AppPaths,
    cancel: Cancellation,
    debug: bool = False,
    environ: Mapping[str, str] | None = None,
) -> tuple[LlamaBackend, list[str]]:
    """Load the configured model; returns the backend and notices for the user."""
    path = resolve_model(settings.model, paths)
    info = read_model_file(path)  # validated before any native code reads it
    verdict = decide_extra_buffers(
        path, info.quantization, paths.cache_dir, os.environ if environ is None else environ
    )
    engine = settings.engine
    backend = LlamaBackend(
        LoadOptions(
            path=path,
            ctx=engine.ctx,
            threads=engine.threads,
            gpu_layers=engine.gpu_layers,
            extra_buffers=verdict.extra_buffers,
            debug=debug,
        ),
        cancel,
        info,
    )
    notices = [verdict.notice] if verdict.notice else []
    return backend, notices + list(backend.notices)
