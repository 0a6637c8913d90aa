"""What a 20-page PDF costs an answer, in tokens and seconds: as text, and as page images.

    .venv/bin/python bench/pdfpages.py [--pages 20] [--shapes test,clip-b16-224] [--threads 1]

A PDF of ``--pages`` pages, each a paragraph of about 1,000 characters (a report's page),
is drawn with reportlab. Each run is ``gptcli ask -a report.pdf -n 1 --json`` through
the installed script, with a fresh GPTCLI_HOME (no prompt cache) and ``--ctx 16384``:
``--pdf-pages text`` without a projector, then ``--pdf-pages images`` and ``both`` with
each projector shape of bench/media.py (random weights, LLaVA-1.5 style). Reported: the
attachment's tokens, its read and encode seconds, the prompt's tokens and seconds, and the
wall-clock seconds of the whole command (model load included).

Writes bench/pdfpages-results.json.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.mmproj import write_projector

from bench.media import SHAPES

PARAGRAPH = (
    "Section {page}. The committee reviewed the budget for the river bridge, the repairs "
    "to the north road and the library's opening hours. Costs rose by {page} percent "
    "over the year, mostly for steel and labour; the contractor asked for an extension "
    "of six weeks. "
)


def make_report(path: Path, pages: int) -> Path:
    from reportlab.lib.pagesizes import A4
    from reportlab.pdfgen import canvas

    drawing = canvas.Canvas(str(path), pagesize=A4)
    for page in range(1, pages + 1):
        text = drawing.beginText(60, 780)
        text.setFont("Helvetica", 11)
        words = (PARAGRAPH.format(page=page) * 4).split()
        line = ""
        for word in words:  # wrapped at about 90 characters a line
            if len(line) + len(word) > 90:
                text.textLine(line)
                line = ""
            line = f"{line} {word}".strip()
        text.textLine(line)
        drawing.drawText(text)
        drawing.showPage()
    drawing.save()
    return path


def ask(pdf: Path, mode: str, mmproj: Path | None, threads: int) -> dict[str, object]:
    with tempfile.TemporaryDirectory() as home:
        command = [
            str(Path(sys.executable).with_name("gptcli")),
            "ask",
            *("-a", str(pdf), "--pdf-pages", mode, "--json"),
            *("-t", "0", "-n", "1", "--seed", "1", "--threads", str(threads)),
            *("--ctx", "16384"),
            *(("--mmproj", str(mmproj)) if mmproj else ()),
            "What rose most?",
        ]
        start = time.perf_counter()
        done = subprocess.run(
            command, capture_output=True, text=True, env={**os.environ, "GPTCLI_HOME": home}
        )
        wall = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{mode}: {done.stderr.strip()}")
    result = json.loads(done.stdout)
    (attached,) = result["attachments"]
    return {
        "mode": mode,
        "page_images": len(attached.get("page_images", [])),
        "attachment_tokens": attached["tokens"],
        "read_s": attached["read_s"],
        "encode_s": attached.get("encode_s"),
        "prompt_tokens": result["usage"]["prompt_tokens"],
        "prompt_s": result["timings"]["prompt_s"],
        "wall_s": round(wall, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pages", type=int, default=20)
    parser.add_argument("--shapes", default="test,clip-b16-224")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    results = []
    with tempfile.TemporaryDirectory() as folder:
        pdf = make_report(Path(folder) / "report.pdf", args.pages)
        runs: list[tuple[str, str | None]] = [("text", None)]
        runs += [(mode, shape) for shape in args.shapes.split(",") for mode in ("images", "both")]
        for mode, shape in runs:
            mmproj = None
            if shape is not None:
                mmproj = Path(folder) / f"mmproj-{shape}.gguf"
                if not mmproj.exists():
                    write_projector(mmproj, SHAPES[shape])
            result = {
                "pages": args.pages,
                "projector": shape,
                **ask(pdf, mode, mmproj, args.threads),
            }
            print(json.dumps(result), flush=True)
            results.append(result)
    out = Path(__file__).with_name("pdfpages-results.json")
    out.write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
