"""Choosing and opening the backend for a set of settings."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from gptcli.config import DEFAULT_MODEL, Settings, where_model_is_set
from gptcli.engine.base import Backend, Cancellation
from gptcli.errors import ModelError, UsageError
from gptcli.models.names import PullReport
from gptcli.paths import AppPaths

if TYPE_CHECKING:
    from gptcli.engine.draft import DraftOptions
    from gptcli.store.promptcache import PromptCacheDir


def open_backend(
    settings: Settings,
    paths: AppPaths,
    cancel: Cancellation,
    debug: bool = False,
    environ: Mapping[str, str] | None = None,
    report: PullReport | None = None,
) -> tuple[Backend, list[str]]:
    """Load the configured model or connect to the configured server; returns notices too.

    ``report`` hears of a download on first use (a short name or a hub reference).
    """
    if settings.backend == "openai":
        return _open_remote(settings), []
    return _open_local(settings, paths, cancel, debug, environ, report)


def served_models(settings: Settings) -> list[str]:
    """The models the settings' server serves (its ``/v1/models``)."""
    from gptcli.engine.openai import OpenAIBackend, RemoteOptions

    assert settings.base_url is not None
    backend = OpenAIBackend(
        RemoteOptions(settings.base_url, settings.model, settings.api_key_env, settings.timeout)
    )
    try:
        return backend.list_models()
    finally:
        backend.close()


def _open_remote(settings: Settings) -> Backend:
    """Connect to the server and learn its model and window, unless the settings name them.

    The window comes from --ctx or the profile's ``ctx``, else from the server itself
    (llama-server's per-slot context, vLLM's ``max_model_len``), else the backend's fallback.
    """
    from gptcli.engine.openai import OpenAIBackend, RemoteOptions

    if not settings.base_url:
        raise UsageError("the openai backend needs --base-url (or base_url in a profile)")
    options = RemoteOptions(
        base_url=settings.base_url,
        model=settings.model,
        api_key_env=settings.api_key_env,
        timeout=settings.timeout,
        context_size=settings.engine.ctx,
        profile=settings.profile,
    )
    backend = OpenAIBackend(options)
    learned = options
    if settings.model == DEFAULT_MODEL:
        # No model named for this server: use the first one it serves.
        served = backend.list_models()
        if served:
            learned = replace(learned, model=served[0])
    if learned.context_size is None:
        learned = replace(learned, context_size=backend.server_window(learned.model))
    if learned == options:
        return backend
    backend.close()
    return OpenAIBackend(learned)


def _open_local(
    settings: Settings,
    paths: AppPaths,
    cancel: Cancellation,
    debug: bool,
    environ: Mapping[str, str] | None,
    report: PullReport | None,
) -> tuple[Backend, list[str]]:
    from gptcli.engine.cpuprobe import decide_extra_buffers
    from gptcli.engine.kvcache import DEFAULT_KV_TYPE
    from gptcli.engine.llama import LlamaBackend, LoadOptions
    from gptcli.engine.modelfile import read_model_file
    from gptcli.models.projectors import model_projector
    from gptcli.models.resolve import resolve_model

    if settings.sampling.speculate == "draft" and not settings.engine.draft:
        raise UsageError("--speculate draft needs a draft model (--draft MODEL)")
    try:
        path = resolve_model(settings.model, paths, report=report)
        info = read_model_file(path)  # validated before any native code reads it
    except ModelError as exc:
        origin = where_model_is_set(settings, paths.config_file)
        if origin is None:
            raise
        raise ModelError(f"{exc.message} ({origin})") from None
    environ = os.environ if environ is None else environ
    verdict = decide_extra_buffers(path, info.quantization, paths.cache_dir, environ)
    engine = settings.engine
    projector = model_projector(path, engine.mmproj, paths.data_dir)
    # With speculation off a draft model would be loaded (or downloaded) for nothing.
    wanted = engine.draft and settings.sampling.speculate != "off"
    draft = _draft_options(settings, paths, environ) if wanted else None
    backend = LlamaBackend(
        LoadOptions(
            path=path,
            ctx=engine.ctx,
            threads=engine.threads,
            gpu_layers=engine.gpu_layers,
            extra_buffers=verdict.extra_buffers,
            debug=debug,
            kv_type=engine.kv_type or DEFAULT_KV_TYPE,
            prompt_cache=_prompt_store(settings, paths, path, info.name),
            mmproj=projector.path if projector is not None else None,
            mmproj_optional=projector is not None and not projector.asked,
            draft=draft,
        ),
        cancel,
        info,
    )
    notices = [verdict.notice] if verdict.notice else []
    return backend, notices + list(backend.notices)


def _prompt_store(
    settings: Settings, paths: AppPaths, path: Path, name: str
) -> PromptCacheDir | None:
    """The prompt cache's entries for this model file, unless it is off (or cannot be keyed)."""
    from gptcli.models.registry import file_sha256
    from gptcli.store.promptcache import PromptCacheDir

    if not settings.prompt_cache or settings.prompt_cache_size <= 0:
        return None

    def digest() -> str | None:
        try:
            return file_sha256(path, paths.cache_dir)
        except OSError:
            return None

    return PromptCacheDir(paths.cache_dir / "prompts", settings.prompt_cache_size, digest, name)


def _draft_options(settings: Settings, paths: AppPaths, environ: Mapping[str, str]) -> DraftOptions:
    """The draft model named by ``--draft`` (or ``draft``), resolved and validated as the
    model is, before native code reads it."""
    from gptcli.engine.cpuprobe import decide_extra_buffers
    from gptcli.engine.draft import DraftOptions
    from gptcli.engine.modelfile import read_model_file
    from gptcli.models.resolve import resolve_model

    engine = settings.engine
    assert engine.draft is not None
    try:
        path = resolve_model(engine.draft, paths)
        info = read_model_file(path)
    except ModelError as exc:
        raise ModelError(f"the draft model: {exc.message}") from None
    verdict = decide_extra_buffers(path, info.quantization, paths.cache_dir, environ)
    return DraftOptions(path, engine.draft_max, verdict.extra_buffers)
