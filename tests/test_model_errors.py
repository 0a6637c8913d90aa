"""Unusable model files: one line on stderr naming the file, exit status 3."""

from __future__ import annotations

import os
import struct
from pathlib import Path

import pytest

from gptcli.engine.modelfile import read_model_file
from gptcli.errors import ModelError
from tests.conftest import Gptcli

pytestmark = pytest.mark.slow


def assert_model_error(gptcli: Gptcli, path: Path | str, fragment: str) -> None:
    result = gptcli("ask", "-m", str(path), "hello")
    assert result.returncode == 3, result.stderr
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("gptcli: error: ")
    assert str(path) in lines[0]
    assert fragment in lines[0]


def test_missing_file(gptcli: Gptcli, tmp_path: Path) -> None:
    assert_model_error(gptcli, tmp_path / "nope.gguf", "not found")


def test_directory(gptcli: Gptcli, tmp_path: Path) -> None:
    assert_model_error(gptcli, tmp_path, "is a directory")


def test_empty_file(gptcli: Gptcli, tmp_path: Path) -> None:
    empty = tmp_path / "empty.gguf"
    empty.write_bytes(b"")
    assert_model_error(gptcli, empty, "empty")


def test_not_gguf(gptcli: Gptcli, tmp_path: Path) -> None:
    text = tmp_path / "notes.gguf"
    text.write_text("just some text, not a model\n")
    assert_model_error(gptcli, text, "not a GGUF model file")


def test_truncated_download(gptcli: Gptcli, tmp_path: Path, bundled_model: Path) -> None:
    truncated = tmp_path / "half.gguf"
    with bundled_model.open("rb") as source:
        truncated.write_bytes(source.read(bundled_model.stat().st_size // 2))
    assert_model_error(gptcli, truncated, "truncated")


def test_truncated_inside_metadata(gptcli: Gptcli, tmp_path: Path, bundled_model: Path) -> None:
    truncated = tmp_path / "head.gguf"
    with bundled_model.open("rb") as source:
        truncated.write_bytes(source.read(100_000))
    assert_model_error(gptcli, truncated, "not a usable GGUF file")


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their mode")
def test_unreadable_file(gptcli: Gptcli, tmp_path: Path, bundled_model: Path) -> None:
    locked = tmp_path / "locked.gguf"
    locked.write_bytes(b"GGUF" + b"\0" * 64)
    locked.chmod(0)
    assert_model_error(gptcli, locked, "permission denied")


def test_unknown_alias(gptcli: Gptcli) -> None:
    result = gptcli("ask", "-m", "no-such-model", "hello")
    assert result.returncode == 3
    assert "unknown model 'no-such-model'" in result.stderr


def test_model_from_environment(gptcli: Gptcli, tmp_path: Path) -> None:
    result = gptcli("ask", "hello", env={"GPTCLI_MODEL": str(tmp_path / "env.gguf")})
    assert result.returncode == 3
    assert "env.gguf" in result.stderr


def _header(version: int, tensors: int, kvs: int) -> bytes:
    return b"GGUF" + struct.pack("<IQQ", version, tensors, kvs)


@pytest.mark.parametrize(
    ("blob", "fragment"),
    [
        (_header(1, 0, 0), "unsupported GGUF version 1"),
        (_header(3, 0, 2**60), "metadata entries"),
        (_header(3, 2**40, 0), "tensors"),
        (_header(3, 0, 1) + struct.pack("<Q", 2**50), "claims"),
        (_header(3, 0, 1) + struct.pack("<Q", 3) + b"abc" + struct.pack("<I", 99), "value type"),
        (
            _header(3, 0, 1) + struct.pack("<Q", 3) + b"abc" + struct.pack("<IIQ", 9, 4, 2**40),
            "more than the file holds",
        ),
        (b"GGU", "not a GGUF model file"),
    ],
)
def test_lying_headers_are_rejected(tmp_path: Path, blob: bytes, fragment: str) -> None:
    path = tmp_path / "lies.gguf"
    path.write_bytes(blob + b"\0" * 32)
    with pytest.raises(ModelError, match=fragment):
        read_model_file(path)


def test_lying_tensor_table_from_gguf_writer(tmp_path: Path) -> None:
    import gguf
    import numpy as np

    path = tmp_path / "tiny.gguf"
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_tensor("w", np.zeros((4, 32), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    assert read_model_file(path).tensors[0].shape == (32, 4)
    data = bytearray(path.read_bytes())
    path.write_bytes(bytes(data[:-64]))  # the tensor's data now runs past the end
    with pytest.raises(ModelError, match="truncated"):
        read_model_file(path)


def test_bundled_model_metadata(bundled_model: Path) -> None:
    info = read_model_file(bundled_model)
    assert info.architecture == "llama"
    assert info.quantization == "Q4_1"
    assert info.context_length == 8192
    assert info.chat_template is not None and "<|im_start|>" in info.chat_template
    assert 130_000_000 < info.parameter_count < 140_000_000


def test_metadata_matches_what_llama_cpp_reports(bundled_model: Path) -> None:
    import ctypes

    import llama_cpp

    info = read_model_file(bundled_model)
    params = llama_cpp.llama_model_default_params()
    params.use_extra_bufts = False
    params.vocab_only = False
    model = llama_cpp.llama_model_load_from_file(str(bundled_model).encode(), params)
    assert model
    try:
        assert llama_cpp.llama_model_n_params(model) == info.parameter_count
        assert llama_cpp.llama_model_n_ctx_train(model) == info.context_length
        buf = ctypes.create_string_buffer(256)
        for key in ("general.architecture", "general.name", "llama.block_count"):
            size = llama_cpp.llama_model_meta_val_str(model, key.encode(), buf, len(buf))
            assert size > 0
            assert buf.value.decode() == str(info.metadata[key])
        template = llama_cpp.llama_model_chat_template(model, None)
        assert template.decode() == info.chat_template
    finally:
        llama_cpp.llama_model_free(model)
