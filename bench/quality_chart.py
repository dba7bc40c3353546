"""The quality table as a chart: each market's holdout Sharpe for the served model and the two
baselines a user computes in a minute, with the oracle's ceiling marked, one panel per draw.

usage: python bench/quality_chart.py [--results bench/results/quality.json,...] [--out bench/results/quality.svg]

Reads the JSONs `bench/quality.py` writes (by default the table's draw and the reseeded draws
that are there) and writes one SVG, drawn by hand so that it needs nothing beyond the standard
library: grey bars for `ridge` and `const_rank`, a dark bar for the model, a red tick for the
ceiling where the market has one.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path
from xml.sax.saxutils import escape

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
DEFAULT = ("quality.json", "quality_reseed100.json", "quality_reseed200.json")
SERIES = (("ridge", "#b9c2cc", "ridge on every input"), ("const_rank", "#8a96a3", "constant ranking"),
          ("model", "#1f4e79", "served model"))
CEILING = "#c0392b"
PANEL_H, TOP, LEFT, RIGHT, GROUP_W, BAR_W = 190, 34, 56, 16, 92, 20


def title_of(result: dict, path: Path) -> str:
    reseed = result.get("reseed", 0)
    return f"{path.name}: " + ("the table's draw" if not reseed else f"every synthetic seed moved by {reseed}")


def chart(results: list[tuple[str, dict]]) -> str:
    """The SVG text of one panel per (title, result) pair, the markets in the result's order."""
    markets = list(dict.fromkeys(m for _, r in results for m in r["markets"]))
    values = [v for _, r in results for row in r["markets"].values()
              for v in (row.get(k) for k, *_ in SERIES + (("ceiling",),)) if v is not None]
    lo, hi = min(0.0, min(values, default=0.0)), max(0.1, max(values, default=0.1))
    lo, hi = lo - 0.05 * (hi - lo), hi + 0.05 * (hi - lo)
    width = LEFT + GROUP_W * len(markets) + RIGHT
    height = TOP + len(results) * (PANEL_H + 40) + 10
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
           f'font-family="sans-serif" font-size="11">',
           f'<rect width="{width}" height="{height}" fill="white"/>']
    x = LEFT
    for key, colour, label in SERIES:                                   # the legend
        out.append(f'<rect x="{x}" y="8" width="12" height="12" fill="{colour}"/>'
                   f'<text x="{x + 16}" y="18">{escape(label)}</text>')
        x += 22 + 7 * len(label)
    out.append(f'<line x1="{x}" y1="14" x2="{x + 14}" y2="14" stroke="{CEILING}" stroke-width="3"/>'
               f'<text x="{x + 18}" y="18">ceiling (the oracle)</text>')
    for p, (title, result) in enumerate(results):
        top = TOP + p * (PANEL_H + 40) + 16

        def y(v: float) -> float:
            return top + (hi - v) / (hi - lo) * PANEL_H

        out.append(f'<text x="{LEFT}" y="{top - 4}" font-weight="bold">{escape(title)}</text>')
        for tick in (t / 10 for t in range(int(lo * 10) - 1, int(hi * 10) + 2, 2)):
            if lo <= tick <= hi:
                out.append(f'<line x1="{LEFT}" y1="{y(tick):.1f}" x2="{width - RIGHT}" y2="{y(tick):.1f}" '
                           f'stroke="{"#444" if abs(tick) < 1e-9 else "#e3e3e3"}"/>'
                           f'<text x="{LEFT - 6}" y="{y(tick) + 4:.1f}" text-anchor="end">{tick:+.1f}</text>')
        for i, market in enumerate(markets):
            row = result["markets"].get(market)
            gx = LEFT + i * GROUP_W + (GROUP_W - len(SERIES) * BAR_W) / 2
            out.append(f'<text x="{LEFT + i * GROUP_W + GROUP_W / 2}" y="{top + PANEL_H + 14}" '
                       f'text-anchor="middle">{escape(market)}</text>')
            if row is None:
                out.append(f'<text x="{LEFT + i * GROUP_W + GROUP_W / 2}" y="{y(0.0) - 6:.1f}" text-anchor="middle" '
                           f'fill="#888" font-size="9">not on this draw</text>')
                continue
            for j, (key, colour, label) in enumerate(SERIES):
                v = row.get(key)
                if v is None:
                    continue
                y0, y1 = sorted((y(0.0), y(v)))
                out.append(f'<rect x="{gx + j * BAR_W:.1f}" y="{y0:.1f}" width="{BAR_W - 2}" '
                           f'height="{max(y1 - y0, 0.5):.1f}" fill="{colour}"><title>{escape(market)} '
                           f'{escape(label)}: {v:+.3f}</title></rect>')
            if row.get("model") is not None:
                v = row["model"]
                out.append(f'<text x="{gx + 2.5 * BAR_W - 1:.1f}" y="{(y(v) - 3) if v >= 0 else (y(v) + 11):.1f}" '
                           f'text-anchor="middle" font-size="9">{v:+.2f}</text>')
            if row.get("ceiling"):
                c = y(row["ceiling"])
                out.append(f'<line x1="{gx - 4:.1f}" y1="{c:.1f}" x2="{gx + len(SERIES) * BAR_W + 2:.1f}" '
                           f'y2="{c:.1f}" stroke="{CEILING}" stroke-width="3"><title>{escape(market)} ceiling: '
                           f'{row["ceiling"]:+.3f}</title></line>')
    out.append("</svg>")
    return "\n".join(out) + "\n"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--results", default=None,
                   help="comma-separated quality JSONs (default: those of the three draws in bench/results)")
    p.add_argument("--out", default=str(RESULTS / "quality.svg"))
    args = p.parse_args()
    paths = [Path(s) for s in args.results.split(",")] if args.results else \
        [RESULTS / name for name in DEFAULT if (RESULTS / name).exists()]
    if not paths:
        raise SystemExit("quality_chart: no quality results to draw; run bench/quality.py first")
    results = []
    for path in paths:
        try:
            result = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as err:
            raise SystemExit(f"quality_chart: cannot read {path}: {err}")
        if not isinstance(result.get("markets"), dict):
            raise SystemExit(f"quality_chart: {path} has no 'markets' table: is it bench/quality.py's output?")
        results.append((title_of(result, path), result))
    out = Path(args.out)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(chart(results))
    tmp.replace(out)
    print(f"-> {out} ({len(results)} draws, {len({m for _, r in results for m in r['markets']})} markets)")


if __name__ == "__main__":
    main()
