"""--kv-type: the KV cache's element type, its size per token, and the flag's errors."""

from __future__ import annotations

import json

from gptcli.engine.kvcache import KvShape, cell_bytes, kv_fit, shape_of
from tests.conftest import Gptcli

# The bundled model: 30 layers of 3 key-value heads of 64.
SMOLLM2 = {
    "general.architecture": "llama",
    "llama.block_count": 30,
    "llama.embedding_length": 576,
    "llama.attention.head_count": 9,
    "llama.attention.head_count_kv": 3,
}


def test_a_token_takes_the_bytes_of_its_type() -> None:
    shape = shape_of(SMOLLM2)
    assert shape == KvShape((3,) * 30, 64, 64)
    assert cell_bytes(shape, "f16") == 2 * 30 * 3 * 64 * 2
    assert cell_bytes(shape, "f32") == 2 * cell_bytes(shape, "f16")
    # 192 elements a layer: 6 blocks of 32, 34 bytes each in q8_0, 18 in q4_0.
    assert cell_bytes(shape, "q8_0") == 2 * 30 * 6 * 34
    assert cell_bytes(shape, "q4_0") == 2 * 30 * 6 * 18


def test_per_layer_head_counts_and_explicit_head_sizes() -> None:
    metadata = {
        **SMOLLM2,
        "llama.block_count": 2,
        "llama.attention.head_count_kv": [4, 0],
        "llama.attention.key_length": 128,
        "llama.attention.value_length": 64,
    }
    shape = shape_of(metadata)
    assert shape == KvShape((4, 0), 128, 64)
    assert cell_bytes(shape, "f16") == 4 * 128 * 2 + 4 * 64 * 2
    assert shape_of({"general.architecture": "llama"}) is None


def test_the_largest_window_leaves_room_for_the_weights() -> None:
    shape = KvShape((1,), 32, 32)  # 128 bytes a token in f16
    fits = {f.kv_type: f for f in kv_fit(shape, 1000, 1000 + 128 * 1000)}
    assert fits["f16"].largest_window == 768  # 1,000 cells, in steps of 256
    assert fits["q8_0"].bytes_per_token == 68
    assert kv_fit(shape, 1000, None)[0].largest_window is None


def test_ask_answers_with_a_quantized_cache(gptcli: Gptcli) -> None:
    for kv_type in ("q8_0", "q4_0"):
        result = gptcli("ask", "--json", "-t", "0", "-n", "4", "--kv-type", kv_type, "Hi")
        assert result.returncode == 0, result.stderr
        assert json.loads(result.stdout)["usage"]["completion_tokens"] > 0


def test_a_bad_kv_type_is_one_line_and_exit_2(gptcli: Gptcli) -> None:
    result = gptcli("ask", "--kv-type", "q5", "Hi")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "gptcli: error: --kv-type must be f16, q8_0, q4_0 or f32"
    ]
    (gptcli.home / "config").mkdir()
    (gptcli.home / "config" / "config.toml").write_text('kv_type = "int8"\n')
    result = gptcli("ask", "Hi")
    assert result.returncode == 2
    assert "kv_type must be" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_models_info_fit_and_doctor_give_the_bytes_per_token(gptcli: Gptcli) -> None:
    result = gptcli("models", "info", "smollm2", "--fit", "--json")
    assert result.returncode == 0, result.stderr
    fits = {f["kv_type"]: f for f in json.loads(result.stdout)["kv_cache"]}
    assert fits["f16"]["bytes_per_token"] == 23040
    assert fits["q8_0"]["bytes_per_token"] <= 0.55 * 23040
    (gptcli.home / "config").mkdir()
    (gptcli.home / "config" / "config.toml").write_text('kv_type = "q8_0"\nctx = 2048\n')
    doctor = gptcli("doctor")
    assert "KV cache            q8_0, 12.0 KiB per token, 23.9 MiB at 2,048 tokens" in doctor.stdout
