"""How long rendering content takes: Markdown to sanitised HTML and to platform text.

Prints one JSON object: for each input (typical posts and adversarial Markdown built to
be slow), the median milliseconds of ``render_html`` and ``render_rich`` over a few runs,
and how large the input was. Run: ``uv run python benchmarks/render.py``.
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from typing import TYPE_CHECKING

from plexus.content.render import render_html, render_rich

if TYPE_CHECKING:
    from collections.abc import Callable

RUNS = 5

POST = (
    "**Spring launch** is here! Read [the announcement](https://example.org/launch) and "
    "tell us what you think. #launch #spring\n\n- faster\n- safer\n- simpler\n"
)
INPUTS: dict[str, str] = {
    "post_200_chars": POST,
    "article_10k": (POST * 70)[:10_000],
    "article_100k": (POST * 700)[:100_000],
    "open_brackets_100k": "[" * 100_000,
    "unclosed_links_30k": "[a](" * 30_000,
    "emphasis_runs_100k": "_a" * 50_000,
    "nested_quotes_2k": "> " * 2_000 + "deep",
    "html_tags_100k": "<b>" * 33_000,
}


def _median_ms(fn: Callable[[str], object], text: str) -> float:
    times = []
    for _ in range(RUNS):
        start = time.perf_counter()
        fn(text)
        times.append((time.perf_counter() - start) * 1000)
    return round(statistics.median(times), 2)


def main() -> None:
    results = {
        name: {
            "chars": len(text),
            "render_html_ms": _median_ms(render_html, text),
            "render_rich_ms": _median_ms(render_rich, text),
        }
        for name, text in INPUTS.items()
    }
    json.dump({"benchmark": "render", "runs": RUNS, "results": results}, sys.stdout, indent=2)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
