"""Scraper parse time of the saved 2022 Bulbapedia list page (from ../shared when present).

Usage:
    python benchmarks/bench_data.py [--page PATH] [--repeat 5]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import write_result  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
PAGE = ROOT.parent / "shared" / "fixtures" / "bulbapedia" / "list_by_national_dex_2022-10.html"


def main() -> None:
    from pokemon_diffusion.config import BULBAPEDIA_URL
    from pokemon_diffusion.collection.bulbapedia import parse_list_page

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--page", type=Path, default=PAGE)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    if not args.page.is_file():
        print(f"skipped: {args.page} not found (../shared absent)")
        return
    html = args.page.read_bytes()
    times, rows = [], []
    for _ in range(args.repeat):
        start = time.perf_counter()
        rows = parse_list_page(html, BULBAPEDIA_URL)
        times.append(time.perf_counter() - start)
    times.sort()
    write_result("data", {"page_bytes": len(html), "rows": len(rows),
                          "parse_seconds_median": times[len(times) // 2], "parse_seconds_min": times[0]})


if __name__ == "__main__":
    main()
