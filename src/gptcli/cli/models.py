"""`gptcli models …` and `gptcli doctor`: Typer commands only, the work is elsewhere."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Annotated, Any

import typer

from gptcli.cli.completion_values import model_names
from gptcli.cli.options import JsonOpt, MmprojOpt, print_table
from gptcli.errors import ModelError, UsageError

models_app = typer.Typer(
    help="List, inspect, download and register GGUF models.",
    no_args_is_help=True,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _paths() -> Any:
    from gptcli.paths import app_paths

    return app_paths()


def _human_size(size: int) -> str:
    return f"{size / 2**30:.1f} GiB" if size >= 2**30 else f"{size / 2**20:.0f} MiB"


@models_app.command("list")
def list_models(
    json_output: JsonOpt = False,
    profile: Annotated[
        str | None,
        typer.Option("--profile", "-p", help="List the models of this profile's server."),
    ] = None,
    available: Annotated[
        bool,
        typer.Option("--available", help="List the short names gptcli knows (qwen3:4b, …)."),
    ] = False,
) -> None:
    """Bundled, registered and downloaded models (or a server's, with --profile)."""
    from gptcli.engine.modelfile import read_model_file
    from gptcli.models.registry import ModelRegistry
    from gptcli.models.resolve import BUNDLED_ALIAS, bundled_model_path

    paths = _paths()
    if profile is not None:
        _list_served(paths, profile, json_output)
        return
    if available:
        _list_available(paths, json_output)
        return
    found: list[tuple[str, Path, str]] = []
    with contextlib.suppress(ModelError):
        found.append((BUNDLED_ALIAS, bundled_model_path(), "bundled"))
    projectors: dict[str, str | None] = {}
    for entry in ModelRegistry(paths.data_dir).load().values():
        kind = f"downloaded from {entry.repo}" if entry.downloaded else "added"
        found.append((entry.alias, Path(entry.path), kind))
        projectors[entry.alias] = entry.projector
    records = []
    for alias, path, kind in found:
        record: dict[str, Any] = {"alias": alias, "path": str(path), "source": kind}
        if projectors.get(alias):
            record["projector"] = projectors[alias]
        try:
            info = read_model_file(path)
            record.update(
                size=info.size, quantization=info.quantization, architecture=info.architecture
            )
        except ModelError as exc:
            record.update(error=exc.message)
        records.append(record)
    if json_output:
        typer.echo(json.dumps(records, indent=1))
        return
    rows = [
        [
            r["alias"],
            r.get("architecture", "-"),
            r.get("quantization", "-"),
            _human_size(r["size"]) if "size" in r else "-",
            r["source"] if "error" not in r else f"BROKEN: {r['error']}",
            r["path"],
        ]
        for r in records
    ]
    print_table(["alias", "arch", "quant", "size", "source", "file"], rows)


def _decimal_size(megabytes: int | None) -> str:
    if megabytes is None:
        return "?"
    return f"{megabytes / 1000:.1f} GB" if megabytes >= 1000 else f"{megabytes} MB"


def _list_available(paths: Any, json_output: bool) -> None:
    """The shipped catalogue of short names, and which of them are downloaded (their alias)."""
    from gptcli.models.catalogue import catalogue
    from gptcli.models.registry import ModelRegistry

    entries = [e for e in ModelRegistry(paths.data_dir).load().values() if e.repo]
    records: list[dict[str, Any]] = []
    for model in catalogue().values():
        here = [
            e.alias
            for e in entries
            if e.repo == model.repo and Path(e.path).is_file() and e.filename == model.file
        ]
        records.append(
            {
                "name": model.name,
                "default": model.default,
                "repo": model.repo,
                "file": model.file,
                "projector": model.projector,
                "megabytes": model.total_mb,
                "takes": list(model.takes),
                "thinking": model.thinking,
                "tools": model.tools,
                "downloaded": here,
            }
        )
    if json_output:
        typer.echo(json.dumps(records, indent=1))
        return
    rows = [
        [
            r["name"] + (" *" if r["default"] else ""),
            _decimal_size(r["megabytes"]),
            ", ".join(r["takes"]),
            "yes" if r["thinking"] else "-",
            "yes" if r["tools"] else "-",
            ", ".join(r["downloaded"]) or "-",
            r["repo"],
        ]
        for r in records
    ]
    print_table(["name", "size", "takes", "thinking", "tools", "downloaded as", "from"], rows)
    typer.echo("* what the bare family name stands for (qwen3 is qwen3:4b)")


def _list_served(paths: Any, profile: str, json_output: bool) -> None:
    from gptcli.config import load_settings
    from gptcli.models.loader import served_models

    settings = load_settings(paths.config_file, {"profile": profile})
    if settings.backend != "openai" or not settings.base_url:
        raise UsageError(f"profile {profile!r} names no server (backend = openai, base_url)")
    served = served_models(settings)
    if json_output:
        typer.echo(json.dumps([{"id": m, "profile": profile} for m in served], indent=1))
        return
    for model in served:
        typer.echo(model)


@models_app.command("info")
def info(
    name: Annotated[
        str,
        typer.Argument(help="Alias, path or Hugging Face reference.", autocompletion=model_names),
    ],
    sha: Annotated[bool, typer.Option("--sha", help="Also compute the file's sha256.")] = False,
    template: Annotated[
        bool, typer.Option("--template", help="Show the start of the chat template.")
    ] = False,
    fit: Annotated[
        bool,
        typer.Option(
            "--fit",
            help="Also show the KV cache per token in each --kv-type and the largest context "
            "window whose cache fits in this machine's memory beside the weights.",
        ),
    ] = False,
    mmproj: MmprojOpt = None,
    json_output: JsonOpt = False,
) -> None:
    """GGUF metadata, read without loading the weights; with a projector (--mmproj, or one
    beside the model), what the model can take: vision, audio, tokens per image."""
    from gptcli.engine.modelfile import read_model_file
    from gptcli.models.projectors import model_projector, projector_facts
    from gptcli.models.registry import file_sha256
    from gptcli.models.resolve import resolve_model

    paths = _paths()
    path = resolve_model(name, paths, pull=False)
    model = read_model_file(path)
    meta = model.metadata
    facts: dict[str, Any] = {
        "file": str(path),
        "name": model.title,
        "architecture": model.architecture,
        "parameters": model.parameter_count,
        "quantization": model.quantization,
        "trained_context": model.context_length,
        "chat_template": model.chat_template is not None,
        "tokenizer": meta.get("tokenizer.ggml.model"),
        "size": model.size,
        "gguf_version": model.version,
        "tensors": len(model.tensors),
    }
    choice = model_projector(path, mmproj, paths.data_dir)
    width = meta.get(f"{model.architecture}.embedding_length")
    facts.update({"projector": None, "vision": False, "audio": False, "image_tokens": None})
    if choice is not None:
        facts.update(projector_facts(choice.path, width if isinstance(width, int) else None))
    if sha:
        facts["sha256"] = file_sha256(path, paths.cache_dir)
    if template and model.chat_template:
        facts["chat_template_text"] = model.chat_template
    if fit:
        facts["kv_cache"] = _kv_fit(model)
    if json_output:
        typer.echo(json.dumps(facts, indent=1))
        return
    _print_info(facts, model.chat_template if template else None)


def _print_info(facts: dict[str, Any], template: str | None) -> None:
    """`models info` as a table, then the KV cache fit and the template's start when asked."""
    from gptcli.terminal.render import sanitize

    rows = []
    for key, value in facts.items():
        if key in ("chat_template_text", "kv_cache") or (key == "projector" and value is None):
            continue
        if key == "parameters":
            value = f"{value / 1e6:.1f}M"
        elif key == "size":
            value = f"{_human_size(value)} ({value:,} bytes)"
        elif isinstance(value, bool) or value is None:
            value = {True: "yes", False: "no", None: "none"}[value]
        elif isinstance(value, int):
            value = f"{value:,}"
        rows.append([key, sanitize(str(value))])
    print_table(["", ""], rows)
    if "kv_cache" in facts:
        _print_fit(facts["kv_cache"])
    if template:
        typer.echo("chat template (first 15 lines):")
        for line in template.splitlines()[:15]:
            typer.echo("  " + sanitize(line))


def _kv_fit(model: Any) -> list[dict[str, Any]]:
    """Each KV cache type's bytes per token and the largest window that fits in memory."""
    from gptcli.engine.jobs import physical_memory
    from gptcli.engine.kvcache import kv_fit, shape_of

    shape = shape_of(model.metadata)
    if shape is None:
        return []
    fits = kv_fit(shape, model.size, physical_memory())
    return [
        {
            "kv_type": f.kv_type,
            "bytes_per_token": f.bytes_per_token,
            "largest_ctx": f.largest_window,
        }
        for f in fits
    ]


def _print_fit(fits: list[dict[str, Any]]) -> None:
    from gptcli.engine.kvcache import human_bytes

    if not fits:
        typer.echo("kv cache: the file does not give its attention's shape")
        return
    rows = [
        [
            f["kv_type"],
            human_bytes(f["bytes_per_token"]),
            "?" if f["largest_ctx"] is None else f"{f['largest_ctx']:,}",
        ]
        for f in fits
    ]
    print_table(["kv type", "per token", "largest --ctx in memory"], rows)


@models_app.command("add")
def add(
    path: Annotated[Path, typer.Argument(help="A GGUF file.")],
    alias: Annotated[str, typer.Option("--alias", "-a", help="The name to use with -m.")],
) -> None:
    """Register a GGUF file under an alias (the file stays where it is)."""
    from gptcli.engine.modelfile import read_model_file
    from gptcli.models.registry import ModelEntry, ModelRegistry, check_alias
    from gptcli.models.resolve import BUNDLED_ALIAS

    check_alias(alias)
    if alias.lower() == BUNDLED_ALIAS:
        raise UsageError(f"{BUNDLED_ALIAS!r} is the bundled model's alias")
    model = read_model_file(path.expanduser())
    ModelRegistry(_paths().data_dir).put(
        ModelEntry(alias=alias, path=str(path.expanduser().resolve()))
    )
    typer.echo(f"{alias}: {model.path} ({model.architecture}, {model.quantization})")


@models_app.command("rm")
def remove(
    alias: Annotated[
        str,
        typer.Argument(
            help="A registered alias, or a downloaded short name (qwen3:4b).",
            autocompletion=model_names,
        ),
    ],
    delete_file: Annotated[
        bool,
        typer.Option("--delete-file", help="Also delete a file gptcli did not download."),
    ] = False,
) -> None:
    """Forget an alias; deletes the file only if gptcli downloaded it (or --delete-file).

    A downloaded projector goes too, unless another registered model uses it.
    """
    from gptcli.models.registry import ModelRegistry
    from gptcli.models.resolve import BUNDLED_ALIAS, find_entry

    if alias.strip().lower() == BUNDLED_ALIAS:
        raise UsageError(f"{alias} is the bundled model and cannot be removed")
    paths = _paths()
    found = find_entry(alias, paths)
    registry = ModelRegistry(paths.data_dir)
    entry = registry.remove(found.alias) if found is not None else None
    if entry is None:
        raise UsageError(f"no registered model {alias!r} (see gptcli models list)")
    name = entry.alias
    if entry.downloaded or delete_file:
        Path(entry.path).unlink(missing_ok=True)
        typer.echo(f"removed {name} and deleted {entry.path}")
    else:
        typer.echo(f"removed {name}; kept {entry.path}")
    if entry.projector and entry.downloaded:
        users = registry.projector_users(entry.projector)
        if users:
            typer.echo(f"kept its projector {entry.projector} (used by {', '.join(users)})")
        else:
            Path(entry.projector).unlink(missing_ok=True)
            typer.echo(f"deleted its projector {entry.projector}")
    _warn_if_default(name)
    if name != alias:
        _warn_if_default(alias)


def _warn_if_default(alias: str) -> None:
    """The config file is the user's: removing its default model is said, not repaired."""
    from gptcli.config import config_line, load_config_file

    config_file = _paths().config_file
    try:
        configured = load_config_file(config_file).get("model")
    except UsageError:
        return  # a broken config file is reported by every command that reads it
    if configured != alias:
        return
    where = config_line(config_file, "model", alias)
    typer.echo(
        f"gptcli: warning: {alias} is the default model ({where}); until it is changed "
        "(gptcli models default NAME), commands that load a model will fail",
        err=True,
    )


@models_app.command("default")
def default(
    name: Annotated[str, typer.Argument(help="Alias or path.", autocompletion=model_names)],
) -> None:
    """Make a model the default (writes `model = …` in the config file)."""
    from gptcli.config import set_config_value
    from gptcli.engine.modelfile import read_model_file
    from gptcli.models.resolve import resolve_model

    paths = _paths()
    read_model_file(resolve_model(name, paths, pull=False))
    set_config_value(paths.config_file, "model", name)
    typer.echo(f"default model: {name} (in {paths.config_file})")


@models_app.command("pull")
def pull(
    reference: Annotated[
        str,
        typer.Argument(
            help="A short name (qwen3:4b, gemma3:4b-q8_0; see models list --available), "
            "owner/repo, owner/repo:QUANT (e.g. Q4_K_M) or owner/repo:FILE."
        ),
    ],
    alias: Annotated[str | None, typer.Option("--alias", "-a", help="Alias to register.")] = None,
    no_projector: Annotated[
        bool,
        typer.Option("--no-projector", help="Leave the repository's projector (mmproj) file."),
    ] = False,
) -> None:
    """Download a GGUF model from Hugging Face (HF_ENDPOINT and HF_HUB_OFFLINE apply).

    The repository's projector (mmproj*.gguf, what a model needs to see images) comes
    with it: the f16 one when there are several, or the one the catalogue names.
    """
    import sys

    from gptcli.models.catalogue import parse_short_name, suggest
    from gptcli.models.hub import PullOptions, pull_model
    from gptcli.models.names import parse_hub_ref

    short = parse_short_name(reference)
    ref = short.ref if short is not None else parse_hub_ref(reference)
    if ref is None:
        close = suggest(reference)
        hint = f"did you mean {close[0]}? " if close else ""
        raise UsageError(
            f"not a short name or a Hugging Face reference: {reference!r}; {hint}"
            "(see gptcli models list --available, or owner/repo[:QUANT])"
        )
    options = PullOptions(
        alias=alias,
        projector=short.model.projector if short is not None else None,
        with_projector=not no_projector and (short is None or short.model.projector is not None),
        progress=sys.stderr.isatty(),
    )
    entry = pull_model(ref, _paths(), options)
    typer.echo(f"{entry.alias}: {entry.path} (sha256 {entry.sha256})")
    if entry.projector:
        typer.echo(f"projector: {entry.projector}")
