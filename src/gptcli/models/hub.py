"""Downloading models from Hugging Face (or any server speaking its API, via HF_ENDPOINT).

All HTTP goes through ``huggingface_hub`` (listing, file metadata, and its
``http_get``, which retries, shows a progress bar on stderr and checks the
size). A repository's projector (``mmproj*.gguf``, for models that see
images) comes with the model. gptcli keeps the partial file itself, named by the file's hash, so a
download killed in one process resumes in the next (``hf_hub_download`` 2.x
downloads to a fresh per-process file and would start over). It also picks
the file from a quantisation name, fails fast when the server is away, checks
the sha256 against the server's LFS hash, validates the GGUF and registers an
alias.
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import os
import re
import socket
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from gptcli.engine.modelfile import read_model_file
from gptcli.errors import ModelError, UsageError
from gptcli.models.names import HubRef
from gptcli.models.registry import ModelEntry, ModelRegistry, check_alias
from gptcli.paths import AppPaths, ensure_private_dir

PREFERRED_QUANTS = ("Q4_K_M", "Q4_K_S", "Q4_0", "Q5_K_M", "Q8_0", "Q4_1")
REACH_TIMEOUT = 5.0
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_SHARD = re.compile(r"-(\d{5})-of-(\d{5})\.gguf$", re.IGNORECASE)
PROJECTOR_PRECISIONS = ("F16", "BF16", "F32")


@dataclass(frozen=True)
class PullOptions:
    """What a pull registers and fetches besides the model file, and whether it draws a bar."""

    alias: str | None = None
    projector: str | None = None  # the projector file to take (a catalogue's choice)
    with_projector: bool = True
    progress: bool = True


def endpoint() -> str:
    from huggingface_hub import constants

    return os.environ.get("HF_ENDPOINT") or constants.ENDPOINT


def offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def check_reachable(url: str) -> None:
    """Fail in seconds, not after the library's minute of retries, when the server is away."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        with socket.create_connection((host, port), timeout=REACH_TIMEOUT):
            pass
    except OSError as exc:
        reason = exc.strerror or str(exc) or type(exc).__name__
        raise ModelError(
            f"cannot reach {parts.scheme}://{parts.netloc} ({reason}); check the network or "
            "HF_ENDPOINT, or set HF_HUB_OFFLINE=1 to use only downloaded models"
        ) from None


def _quant_matches(filename: str, quant: str) -> bool:
    stem = Path(filename).name.upper().removesuffix(".GGUF")
    return re.search(rf"(^|[-._]){re.escape(quant.upper())}($|[-._])", stem) is not None


def choose_file(files: list[str], ref: HubRef) -> str:
    """Pick the GGUF file a reference means; explain the choices when it is ambiguous."""
    ggufs = [f for f in files if f.lower().endswith(".gguf") and "mmproj" not in f.lower()]
    if not ggufs:
        raise ModelError(f"{ref.repo} has no .gguf files")
    selector = ref.selector
    if selector and selector.lower().endswith(".gguf"):
        exact = [f for f in ggufs if f == selector or Path(f).name == selector]
        if not exact:
            raise ModelError(f"{ref.repo} has no file {selector!r}")
        chosen = exact[0]
    else:
        quants = [selector] if selector else list(PREFERRED_QUANTS)
        matches: list[str] = []
        for quant in quants:
            matches = [f for f in ggufs if _quant_matches(f, quant)]
            if matches:
                break
        if not matches and not selector and len(ggufs) == 1:
            matches = ggufs
        if not matches:
            names = ", ".join(sorted(Path(f).name for f in ggufs)[:12])
            wanted = f"quantisation {selector}" if selector else "a default quantisation"
            raise ModelError(f"{ref.repo} has no file for {wanted}; it has: {names}")
        chosen = sorted(matches, key=lambda f: (len(f), f))[0]
    shard = _SHARD.search(chosen)
    if shard and shard.group(2) != "00001":
        raise ModelError(f"{chosen} is split into {int(shard.group(2))} files; not supported yet")
    return chosen


def _is_projector(filename: str) -> bool:
    return filename.lower().endswith(".gguf") and "mmproj" in Path(filename).name.lower()


def choose_projector(files: list[str], wanted: str | None = None) -> str | None:
    """The repository's projector file: ``wanted`` if it has it, else f16, bf16, f32, any."""
    projectors = sorted((f for f in files if _is_projector(f)), key=lambda f: (len(f), f))
    exact = [f for f in projectors if wanted and (f == wanted or Path(f).name == wanted)]
    if exact:
        return exact[0]
    for precision in PROJECTOR_PRECISIONS:
        matches = [f for f in projectors if _quant_matches(f, precision)]
        if matches:
            return matches[0]
    return projectors[0] if projectors else None


def _local_dir(paths: AppPaths, repo: str) -> Path:
    return paths.data_dir / "models" / repo.replace("/", "__")


def find_downloaded(ref: HubRef, paths: AppPaths) -> ModelEntry | None:
    """The registry entry of a downloaded file that ``ref`` names."""
    for entry in ModelRegistry(paths.data_dir).load().values():
        if entry.repo != ref.repo or not entry.filename or not Path(entry.path).is_file():
            continue
        if ref.selector is None or _quant_matches(entry.filename, ref.selector):
            return entry
        if Path(entry.filename).name == ref.selector:
            return entry
    return None


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _hub_error(exc: Exception, ref: HubRef) -> ModelError:
    from huggingface_hub import errors

    if isinstance(exc, errors.GatedRepoError):
        return ModelError(f"{ref.repo} is gated: accept its terms on the website and log in")
    if isinstance(exc, errors.RepositoryNotFoundError):
        return ModelError(f"no such repository on the hub: {ref.repo}")
    if isinstance(exc, errors.OfflineModeIsEnabled):
        return ModelError(f"HF_HUB_OFFLINE is set and {ref} is not downloaded")
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return ModelError(f"download of {ref} failed: {text}")


def _download(meta: Any, filename: str, directory: Path) -> tuple[Path, str]:
    """Fetch into ``.partial/`` (resuming what is there), verify, then move into place."""
    from huggingface_hub.file_download import http_get
    from huggingface_hub.utils import build_hf_headers  # type: ignore[attr-defined]

    target = directory / Path(filename).name
    expected = meta.etag if isinstance(meta.etag, str) and _SHA256.match(meta.etag) else None
    partial_dir = ensure_private_dir(directory / ".partial")
    partial = partial_dir / f"{target.name}.{(meta.etag or 'unknown')[:16]}.part"
    with partial.open("ab") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)  # a second pull waits, then finds the file
        if target.is_file() and expected and _sha256(target) == expected:
            return target, expected
        os.chmod(partial, 0o600)
        handle.seek(0, os.SEEK_END)
        http_get(
            meta.location,
            handle,
            resume_size=handle.tell(),
            headers=build_hf_headers(),
            expected_size=meta.size,
            displayed_filename=target.name,
        )
        handle.flush()
        os.fsync(handle.fileno())
        size = partial.stat().st_size
        if meta.size is not None and size != meta.size:
            partial.unlink(missing_ok=True)
            raise ModelError(f"{filename}: got {size} bytes, the server said {meta.size}")
        digest = _sha256(partial)
        if expected and digest != expected:
            partial.unlink(missing_ok=True)
            raise ModelError(
                f"{filename}: sha256 {digest} does not match the server's {expected}; "
                "the download was discarded"
            )
        os.replace(partial, target)
    return target, digest


def _fetch(repo: str, filename: str, directory: Path, base: str) -> tuple[Path, str]:
    from huggingface_hub import get_hf_file_metadata, hf_hub_url

    meta = get_hf_file_metadata(hf_hub_url(repo, filename, endpoint=base))
    return _download(meta, filename, directory)


def _start(paths: AppPaths, ref: HubRef, options: PullOptions) -> str:
    """Checks that fail in a second rather than after a minute; returns the endpoint."""
    from huggingface_hub.utils import disable_progress_bars  # type: ignore[attr-defined]

    if offline():
        raise ModelError(f"HF_HUB_OFFLINE is set and {ref} is not downloaded")
    logging.getLogger("huggingface_hub").setLevel(logging.ERROR)
    if not options.progress:
        disable_progress_bars("huggingface_hub.http_get")
    base = endpoint()
    check_reachable(base)
    ensure_private_dir(paths.data_dir / "models")
    return base


def pull_model(ref: HubRef, paths: AppPaths, options: PullOptions | None = None) -> ModelEntry:
    """Download the file ``ref`` names and the repository's projector (resuming a partial
    download), verify and register them."""
    import huggingface_hub
    from huggingface_hub import HfApi

    options = options or PullOptions()
    if options.alias is not None:
        check_alias(options.alias)
    base = _start(paths, ref, options)
    try:
        files = HfApi(endpoint=base).list_repo_files(ref.repo)
        filename = choose_file(files, ref)
        projector = choose_projector(files, options.projector) if options.with_projector else None
        directory = ensure_private_dir(_local_dir(paths, ref.repo))
        path, digest = _fetch(ref.repo, filename, directory, base)
        projector_path = _fetch(ref.repo, projector, directory, base)[0] if projector else None
    except ModelError:
        raise
    except (huggingface_hub.errors.HfHubHTTPError, OSError, ValueError) as exc:
        raise _hub_error(exc, ref) from None
    read_model_file(path)  # a file that is not a sound GGUF never gets an alias
    if projector_path is not None:
        read_model_file(projector_path)
    name = options.alias or check_alias(Path(filename).name.removesuffix(".gguf").lower()[:64])
    existing = ModelRegistry(paths.data_dir).get(name)
    if existing is not None and Path(existing.path).resolve() != path.resolve():
        raise UsageError(f"alias {name!r} is taken by {existing.path}; pass --alias")
    kept = existing.projector if existing is not None else None
    entry = ModelEntry(
        alias=name,
        path=str(path),
        downloaded=True,
        repo=ref.repo,
        filename=filename,
        sha256=digest,
        projector=str(projector_path) if projector_path is not None else kept,
    )
    ModelRegistry(paths.data_dir).put(entry)
    return entry


def pull_projector(entry: ModelEntry, paths: AppPaths, options: PullOptions) -> ModelEntry:
    """Fetch the projector of a model downloaded without one, and keep it in its entry."""
    import huggingface_hub
    from huggingface_hub import HfApi

    assert entry.repo is not None
    ref = HubRef(entry.repo, entry.filename)
    base = _start(paths, ref, options)
    try:
        projector = choose_projector(
            HfApi(endpoint=base).list_repo_files(entry.repo), options.projector
        )
        if projector is None:
            return entry
        directory = ensure_private_dir(_local_dir(paths, entry.repo))
        projector_path = _fetch(entry.repo, projector, directory, base)[0]
    except ModelError:
        raise
    except (huggingface_hub.errors.HfHubHTTPError, OSError, ValueError) as exc:
        raise _hub_error(exc, ref) from None
    read_model_file(projector_path)
    updated = replace(entry, projector=str(projector_path))
    ModelRegistry(paths.data_dir).put(updated)
    return updated
