"""llama.cpp's C API, through llama-cpp-python's ctypes bindings alone.

``import llama_cpp`` runs the package's ``__init__``, which imports the
high-level ``Llama`` class and with it numpy, jinja2 and the chat-format tables
(about 70 ms of every start-up here). gptcli uses none of them: it drives the C
API through ``llama_cpp.llama_cpp`` and, for ``--schema``, the pure-Python
``llama_cpp.llama_grammar``. Those modules are imported under a package object
that is created but not executed, which is then taken out of ``sys.modules``
again, so a later plain ``import llama_cpp`` (by a plugin, say) runs the package
normally and finds the bindings already loaded: the shared library is loaded
once either way.
"""

from __future__ import annotations

import ctypes
import importlib
import importlib.util
import logging
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from types import ModuleType
from typing import Any

from gptcli.engine.base import Cancellation
from gptcli.errors import ModelError

PACKAGE = "llama_cpp"
_log_callback: Any = None
_log_to_stderr = False
_ready = False


def submodule(name: str) -> ModuleType:
    """``llama_cpp.<name>`` without running ``llama_cpp/__init__.py``."""
    qualified = f"{PACKAGE}.{name}"
    loaded = sys.modules.get(qualified)
    if loaded is not None:
        return loaded
    if PACKAGE in sys.modules:
        return importlib.import_module(qualified)
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or spec.submodule_search_locations is None:
        raise ImportError("llama-cpp-python is not installed")
    package = importlib.util.module_from_spec(spec)
    sys.modules[PACKAGE] = package
    try:
        return importlib.import_module(qualified)
    finally:
        if sys.modules.get(PACKAGE) is package:
            del sys.modules[PACKAGE]


def library_dir() -> Path | None:
    """Where the installed llama-cpp-python keeps its shared libraries."""
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        return None
    lib = Path(next(iter(spec.submodule_search_locations))) / "lib"
    return lib if lib.is_dir() else None


def engine_version() -> str:
    try:
        return version("llama-cpp-python")
    except PackageNotFoundError:
        return "?"


def bindings(debug: bool = False) -> Any:
    """The ctypes bindings, with llama.cpp initialised and its logs routed.

    Native logs go to stderr only with ``debug``; otherwise they are dropped, so
    stdout and stderr stay clean for scripts.
    """
    global _log_callback, _log_to_stderr, _ready
    lib = submodule("llama_cpp")
    _log_to_stderr = debug
    # Should the full package be imported later, its own log callback replaces
    # this one and obeys this logger's level.
    logging.getLogger("llama-cpp-python").setLevel(logging.DEBUG if debug else logging.CRITICAL + 1)
    if _log_callback is None:

        @lib.llama_log_callback  # type: ignore[untyped-decorator]
        def on_log(level: int, text: bytes, user_data: ctypes.c_void_p) -> None:
            if _log_to_stderr and text:
                sys.stderr.write(text.decode("utf-8", errors="replace"))
                sys.stderr.flush()

        _log_callback = on_log
        lib.llama_log_set(on_log, ctypes.c_void_p(0))
    if not _ready:
        lib.llama_backend_init()
        _ready = True
    return lib


def mtmd_bindings(debug: bool = False) -> Any:
    """libmtmd's bindings (images and audio), its logs routed as llama.cpp's are."""
    bindings(debug)
    mtmd = submodule("mtmd_cpp")
    mtmd.mtmd_log_set(_log_callback, ctypes.c_void_p(0))
    mtmd.mtmd_helper_log_set(_log_callback, ctypes.c_void_p(0))
    return mtmd


def load_model(lib: Any, path: Path, mparams: Any, cancel: Cancellation) -> Any:
    """The weights of ``path``, loaded with ``mparams``; Ctrl-C during the load stops
    llama.cpp's loader (KeyboardInterrupt), a file it refuses is a ModelError."""

    @lib.llama_progress_callback  # type: ignore[untyped-decorator]
    def on_progress(progress: float, user_data: ctypes.c_void_p) -> bool:
        return not cancel.cancelled

    mparams.progress_callback = on_progress  # alive as long as llama.cpp may call it
    model = lib.llama_model_load_from_file(str(path).encode(), mparams)
    if not model:
        if cancel.cancelled:
            raise KeyboardInterrupt
        raise ModelError(f"llama.cpp could not load {path} (run with --debug for details)")
    return model


@contextmanager
def quiet_stderr() -> Iterator[None]:
    """Native code run inside writes to stderr only with ``debug``, as the logs do.

    Some of llama.cpp writes to stderr itself instead of through the log callback:
    its grammar parser prints the parse error and the whole grammar with
    ``fprintf(stderr, ...)``. File descriptor 2 points at /dev/null meanwhile, so
    keep what runs inside short: another thread's writes to stderr are lost too.
    """
    if _log_to_stderr:
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "wb") as sink:
            os.dup2(sink.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
    finally:
        os.close(saved)


def release_freed_memory() -> None:
    """Hand memory freed by a closed model back to the operating system.

    glibc keeps freed heap memory for reuse, and after a model is freed that is
    several megabytes a time: a chat that switched models a dozen times grew by
    about 2 MiB per switch. ``malloc_trim`` returns it; elsewhere this does nothing.
    """
    try:
        trim = ctypes.CDLL(None).malloc_trim
    except (AttributeError, OSError):
        return
    trim.argtypes = [ctypes.c_size_t]
    trim(0)


_ggml_types: dict[int, tuple[str, int, int]] | None = None


def ggml_types() -> dict[int, tuple[str, int, int]]:
    """The tensor types of the linked ggml: id -> (name, elements per block, bytes per block).

    Read from ggml itself (``ggml_type_name``, ``ggml_blck_size``, ``ggml_type_size``), so
    a model file is checked against exactly the types the engine that loads it knows;
    ids ggml has retired (a block size of 0) are left out.
    """
    global _ggml_types
    if _ggml_types is None:
        ggml = _ggml_base()
        count = int(submodule("llama_cpp").GGML_TYPE_COUNT)
        found: dict[int, tuple[str, int, int]] = {}
        for type_id in range(count):
            block = int(ggml.ggml_blck_size(type_id))
            if block > 0:
                name = ggml.ggml_type_name(type_id).decode("ascii", errors="replace").upper()
                found[type_id] = (name, block, int(ggml.ggml_type_size(type_id)))
        _ggml_types = found
    return _ggml_types


def _ggml_base() -> Any:
    directory = library_dir()
    names = ("libggml-base.so", "libggml-base.dylib", "ggml-base.dll")
    for name in names:
        path = directory / name if directory is not None else None
        if path is not None and path.exists():
            ggml = ctypes.CDLL(str(path))
            break
    else:
        raise ImportError("the installed llama-cpp-python has no ggml-base library")
    ggml.ggml_blck_size.argtypes = [ctypes.c_int]
    ggml.ggml_blck_size.restype = ctypes.c_int64
    ggml.ggml_type_size.argtypes = [ctypes.c_int]
    ggml.ggml_type_size.restype = ctypes.c_size_t
    ggml.ggml_type_name.argtypes = [ctypes.c_int]
    ggml.ggml_type_name.restype = ctypes.c_char_p
    return ggml
