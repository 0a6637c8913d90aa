"""The GGUF validator against corrupted and random files: only ModelError, always fast.

100 examples here, 400 with GPTCLI_DEEP_TESTS=1; a longer run:
GPTCLI_FUZZ_EXAMPLES=200000 .venv/bin/python -m pytest tests/test_gguf_fuzz.py -k hypothesis
"""

from __future__ import annotations

import contextlib
import struct
import time
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gptcli.engine.modelfile import read_model_file
from gptcli.errors import ModelError
from tests.depth import rounds
from tests.timing import patience

EXAMPLES = rounds(100, 400, "GPTCLI_FUZZ_EXAMPLES")


@pytest.fixture(scope="module")
def small_gguf(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    import gguf

    path = tmp_path_factory.mktemp("gguf") / "small.gguf"
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_context_length(2048)
    writer.add_name("fuzz base")
    writer.add_chat_template("{% for m in messages %}{{ m['content'] }}{% endfor %}")
    writer.add_token_list(["<s>", "</s>", "a", "b", "c"])
    writer.add_token_scores([0.0, 0.0, -1.0, -2.0, -3.0])
    # Longer than KEEP_ARRAY_ITEMS: the validator steps over it without decoding.
    writer.add_token_merges([f"a{i} b{i}" for i in range(24)])
    writer.add_uint32("test.u32", 7)
    writer.add_float32("test.f32", 0.5)
    writer.add_bool("test.flag", True)
    writer.add_tensor("tok_embd", np.ones((5, 32), dtype=np.float32))
    writer.add_tensor("output", np.zeros((2, 64), dtype=np.float16))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    data = path.read_bytes()
    assert read_model_file(path).context_length == 2048
    return data


def _check(tmp_path: Path, data: bytes) -> None:
    path = tmp_path / "case.gguf"
    path.write_bytes(data)
    started = time.perf_counter()
    with contextlib.suppress(ModelError):
        read_model_file(path)
    assert time.perf_counter() - started < patience(1.0)


def _header_end(data: bytes) -> int:
    # Everything before the first tensor's data: magic, counts, metadata, tensor table.
    from gptcli.engine.modelfile import _parse, _Reader  # the parser's own idea of the layout

    reader = _Reader(data, Path("x"))
    _parse(reader, len(data))
    return reader.pos


def corruption_corpus(base: bytes) -> list[bytes]:
    """Truncations at every byte of the header and tensor table, and lying fields."""
    end = _header_end(base)
    cases = [base[:cut] for cut in range(end + 1)]
    cases += [base[: end + 1 + i * 97] for i in range(10)]  # inside the tensor data
    lies = [0, 1, 0x7F, 0xFF, 2**31 - 1, 2**32 - 1, 2**63 - 1, 2**64 - 1]
    for offset in range(4, end - 8, 4):
        for value in lies:
            mutated = bytearray(base)
            mutated[offset : offset + 8] = struct.pack("<Q", value)
            cases.append(bytes(mutated))
    return cases


def test_corruption_corpus_is_rejected_cleanly(small_gguf: bytes, tmp_path: Path) -> None:
    corpus = corruption_corpus(small_gguf)
    assert len(corpus) > 1000
    rejected = 0
    for case in corpus:
        path = tmp_path / "case.gguf"
        path.write_bytes(case)
        try:
            read_model_file(path)
        except ModelError:
            rejected += 1
    # Every truncation before the data ends must be rejected; a lie in a string's
    # bytes or a float's value can be harmless, so not every mutation is.
    assert rejected >= _header_end(small_gguf) + 1


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data())
def test_hypothesis_mutations_raise_only_model_error(
    small_gguf: bytes, tmp_path: Path, data: st.DataObject
) -> None:
    blob = bytearray(small_gguf)
    for _ in range(data.draw(st.integers(1, 8))):
        position = data.draw(st.integers(0, len(blob) - 1))
        blob[position] = data.draw(st.integers(0, 255))
    cut = data.draw(st.one_of(st.none(), st.integers(0, len(blob))))
    _check(tmp_path, bytes(blob[:cut] if cut is not None else blob))


@settings(
    max_examples=EXAMPLES // 2,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(tail=st.binary(max_size=512), version=st.integers(0, 5))
def test_hypothesis_random_bodies_raise_only_model_error(
    tmp_path: Path, tail: bytes, version: int
) -> None:
    _check(tmp_path, b"GGUF" + struct.pack("<I", version) + tail)


def test_adversarial_sizes_fail_fast(tmp_path: Path) -> None:
    head = b"GGUF" + struct.pack("<IQQ", 3, 0, 1)
    key = struct.pack("<Q", 4) + b"key."
    huge_array = head + key + struct.pack("<IIQ", 9, 8, 2**62) + b"\0" * 64
    many_strings = head + key + struct.pack("<IIQ", 9, 8, 10**6) + struct.pack("<Q", 0) * 10
    for blob in (huge_array, many_strings):
        started = time.perf_counter()
        with pytest.raises(ModelError):
            path = tmp_path / "adv.gguf"
            path.write_bytes(blob)
            read_model_file(path)
        assert time.perf_counter() - started < patience(0.5)


def test_tensor_types_come_from_the_linked_ggml() -> None:
    """Every type the engine's ggml knows, with gguf's own idea of its block size and bytes;
    the ones added after the table this replaced (NVFP4, Q1_0, Q2_0) among them."""
    from gguf.constants import GGML_QUANT_SIZES

    from gptcli.engine.native import ggml_types

    types = ggml_types()
    known = {int(kind): sizes for kind, sizes in GGML_QUANT_SIZES.items()}
    # Q8_1 only exists inside ggml's dot products; gguf still lists its old 40-byte block
    # (two floats) where ggml has had two halves (36 bytes) for years.
    known.pop(9)
    compared = 0
    for type_id, (name, block, size) in types.items():
        if type_id in known:
            assert (block, size) == known[type_id], name
            compared += 1
    assert compared >= 30
    assert {"Q4_1", "Q8_0", "BF16", "MXFP4"} <= {name for name, _, _ in types.values()}
    assert {40, 41, 42} <= set(types) or max(types) < 40
