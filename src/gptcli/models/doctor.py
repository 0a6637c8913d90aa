"""`gptcli doctor`: what gptcli runs on, and whether each part works."""

from __future__ import annotations

import os
import platform
import sys
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from gptcli.config import EngineOptions, env_overrides, load_config_file, resolve_settings
from gptcli.engine.cpuprobe import CACHE_NAME, build_fingerprint, cpu_flags
from gptcli.engine.modelfile import ModelFileInfo
from gptcli.errors import GptcliError
from gptcli.parsing import loads_json
from gptcli.paths import AppPaths
from gptcli.version import __version__

INTERESTING_FLAGS = (
    "avx",
    "avx2",
    "avx512f",
    "avx512_vnni",
    "avx_vnni",
    "f16c",
    "fma",
    "neon",
    "amx_tile",
    "amx_int8",
    "amx_bf16",
)


@dataclass(frozen=True)
class Check:
    """One line of the report; ``ok`` False marks something broken."""

    name: str
    detail: str
    ok: bool = True


def _backends(system_info: str) -> list[str]:
    names = []
    for segment in system_info.split("|"):
        head, sep, _ = segment.partition(" : ")
        if sep and head.strip():
            names.append(head.strip())
    return names


def _engine_checks() -> list[Check]:
    try:
        engine_version = version("llama-cpp-python")
        from gptcli.engine import native

        llama_cpp = native.bindings()
    except (PackageNotFoundError, ImportError, OSError) as exc:
        return [Check("llama-cpp-python", f"not usable: {exc}", ok=False)]
    info = llama_cpp.llama_print_system_info().decode("utf-8", errors="replace").strip()
    gpu = bool(llama_cpp.llama_supports_gpu_offload())
    return [
        Check("llama-cpp-python", engine_version),
        Check("llama.cpp backends", ", ".join(_backends(info)) or "CPU"),
        Check("llama.cpp features", info),
        Check("GPU offload", "compiled in (default: all layers)" if gpu else "not compiled in"),
    ]


def _fallback_check(paths: AppPaths, quantization: str | None) -> Check:
    forced = os.environ.get("GPTCLI_CPU_EXTRA_BUFFERS")
    if forced:
        return Check("CPU fallback", f"forced by GPTCLI_CPU_EXTRA_BUFFERS={forced}")
    if not any(flag.startswith("amx") for flag in cpu_flags()):
        return Check("CPU fallback", "not needed (the CPU reports no AMX)")
    cache_file = paths.cache_dir / CACHE_NAME
    try:
        verdicts = loads_json(cache_file.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        verdicts = {}
    verdict = verdicts.get(build_fingerprint(quantization)) if quantization else None
    if verdict is False:
        return Check(
            "CPU fallback",
            f"active: AMX kernels crashed in the one-time check ({cache_file}); portable path used",
        )
    if verdict is True:
        return Check("CPU fallback", "not needed: AMX kernels passed the one-time check")
    return Check("CPU fallback", "AMX reported; checked at the next model load")


def _kv_check(info: ModelFileInfo, engine: EngineOptions) -> Check:
    """The KV cache the default model gets: its type, per token, and at the default window."""
    from gptcli.engine.kvcache import DEFAULT_KV_TYPE, cell_bytes, human_bytes, shape_of

    kv_type = engine.kv_type or DEFAULT_KV_TYPE
    shape = shape_of(info.metadata)
    if shape is None:
        return Check("KV cache", f"{kv_type}; the model file does not give its attention's shape")
    per_token = cell_bytes(shape, kv_type)
    window = engine.ctx or min(info.context_length or 4096, 4096)
    return Check(
        "KV cache",
        f"{kv_type}, {human_bytes(per_token)} per token, "
        f"{human_bytes(per_token * window)} at {window:,} tokens",
    )


def _projector_check(
    model: Path, info: ModelFileInfo, mmproj: str | None, data_dir: Path
) -> Check | None:
    """The projector the default model would load (--mmproj, the config's, or beside it)."""
    from gptcli.models.projectors import model_projector, projector_facts

    try:
        choice = model_projector(model, mmproj, data_dir)
        if choice is None:
            return None
        width = info.metadata.get(f"{info.architecture}.embedding_length")
        facts = projector_facts(choice.path, width if isinstance(width, int) else None)
    except GptcliError as exc:
        return Check("projector", exc.message, ok=False)
    takes = [k for k in ("vision", "audio") if facts[k]] or ["nothing"]
    tokens = f", {facts['image_tokens']} tokens per image" if facts["image_tokens"] else ""
    return Check("projector", f"{choice.path}: {' and '.join(takes)}{tokens}")


def run_checks(paths: AppPaths, model: str, engine: EngineOptions | None = None) -> list[Check]:
    from gptcli.engine.modelfile import read_model_file
    from gptcli.models.registry import file_sha256
    from gptcli.models.resolve import resolve_model

    checks = [
        Check("gptcli", __version__),
        Check("Python", f"{platform.python_version()} ({sys.executable})"),
        Check("platform", f"{platform.system()} {platform.machine()}"),
        *_engine_checks(),
        Check("CPU features", " ".join(f for f in INTERESTING_FLAGS if f in cpu_flags()) or "?"),
        Check("config file", str(paths.config_file)),
        Check("data directory", str(paths.data_dir)),
        Check("cache directory", str(paths.cache_dir)),
    ]
    try:  # the file, and the environment's settings over it, as every command reads them
        resolve_settings(load_config_file(paths.config_file), env_overrides(os.environ), {})
    except GptcliError as exc:
        checks.append(Check("config", exc.message, ok=False))
    quantization = None
    try:
        path = resolve_model(model, paths, pull=False)
        info = read_model_file(path)
        quantization = info.quantization
        checks += [
            Check("default model", f"{model} -> {path}"),
            Check(
                "model facts",
                f"{info.architecture}, {info.quantization}, "
                f"{info.parameter_count / 1e6:.0f}M parameters, {info.size / 2**20:.0f} MiB",
            ),
            Check("model sha256", file_sha256(path, paths.cache_dir)),
            _kv_check(info, engine or EngineOptions()),
        ]
        projector = _projector_check(path, info, engine.mmproj if engine else None, paths.data_dir)
        checks += [projector] if projector is not None else []
    except GptcliError as exc:
        checks.append(Check("default model", exc.message, ok=False))
    except OSError as exc:
        checks.append(Check("default model", f"{model}: {exc}", ok=False))
    checks.append(_fallback_check(paths, quantization))
    return checks
