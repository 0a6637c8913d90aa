"""Encoding an image with a projector beside the bundled model, on this CPU.

    .venv/bin/python bench/media.py [--shapes test,clip-b16-224,clip-l14-336] [--rounds 3]
        [--threads 1]

Each shape is a projector with random weights built with tests/mmproj.py (LLaVA-1.5
style, ``mlp``): ``test`` is the 64-pixel one of the test suite, ``clip-b16-224`` a
ViT-B/16 encoder at 224 pixels (196 tokens), ``clip-l14-336`` LLaVA-1.5's ViT-L/14 at
336 pixels (576 tokens). For each, the bundled model and the projector are loaded once;
then ``--rounds`` different images of the encoder's own size are encoded
(``LlamaBackend.prepare_media``, what `ask -a photo.png` runs before the answer), and
the median seconds per image are reported beside the projector's load time and size.
The weights are random: the time is the encoder's, whatever it would say.

Writes bench/media-results.json.
"""

from __future__ import annotations

import argparse
import io
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.mmproj import ProjectorShape, write_projector

SHAPES = {
    "test": ProjectorShape(),
    "clip-b16-224": ProjectorShape(224, 16, 768, 3072, 12, 12, 1024),
    "clip-l14-336": ProjectorShape(336, 14, 1024, 4096, 24, 16, 1024),
}


def _image(side: int, seed: int) -> bytes:
    import numpy as np
    from PIL import Image

    pixels = np.random.default_rng(seed).integers(0, 255, (side, side, 3), dtype=np.uint8)
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, "PNG")
    return out.getvalue()


def measure(name: str, rounds: int, threads: int, folder: Path) -> dict[str, object]:
    from gptcli.engine.llama import LlamaBackend, LoadOptions
    from gptcli.media import MediaItem
    from gptcli.models.resolve import bundled_model_path

    shape = SHAPES[name]
    start = time.perf_counter()
    path = write_projector(folder / f"mmproj-{name}.gguf", shape)
    written = time.perf_counter() - start
    start = time.perf_counter()
    backend = LlamaBackend(
        LoadOptions(bundled_model_path(), threads=threads, extra_buffers=False, mmproj=path)
    )
    loaded = time.perf_counter() - start
    try:
        facts = backend.media_facts()
        seconds = []
        for seed in range(rounds):
            data = _image(shape.image_size, seed)
            seconds.append(backend.prepare_media(MediaItem("image", "png", f"{seed}.png", data)))
    finally:
        backend.close()
    return {
        "shape": name,
        "image_pixels": shape.image_size,
        "image_tokens": facts.image_tokens if facts else None,
        "projector_mib": round(path.stat().st_size / 2**20, 1),
        "threads": threads,
        "load_model_and_projector_s": round(loaded, 3),
        "encode_s_median": round(statistics.median(seconds), 4),
        "encode_s_all": [round(s, 4) for s in seconds],
        "write_projector_s": round(written, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--shapes", default="test,clip-b16-224")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    results = []
    with tempfile.TemporaryDirectory() as folder:
        for name in args.shapes.split(","):
            result = measure(name, args.rounds, args.threads, Path(folder))
            print(json.dumps(result))
            results.append(result)
            (Path(folder) / f"mmproj-{name}.gguf").unlink()
    out = Path(__file__).with_name("media-results.json")
    out.write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
