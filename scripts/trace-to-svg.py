#!/usr/bin/env python3
"""Checks a Moirai trace (Chrome trace-event JSON, as moirai_trace_write_json()
writes it) and draws it as an SVG timeline: one lane per thread, spans as
boxes stacked by nesting depth, instants as ticks, a time axis in
milliseconds. Standard library only.

Usage:
  trace-to-svg.py TRACE.json [-o OUT.svg] [--title TEXT]
  trace-to-svg.py --check TRACE.json
  trace-to-svg.py --check --run PROGRAM [ARGS...]   (runs PROGRAM with a
      temporary path as its last argument, then checks what it wrote)

The check enforces what the recorder promises: a "traceEvents" array; every
event has ph, pid and tid; B and i events have name, cat and ts; per thread
the timestamps never decrease and every E closes an open B, none left open;
"otherData" holds "recorded" and "dropped". Exit status 0 when the trace is
well formed (and the SVG written), 1 otherwise.
"""
import argparse
import html
import json
import os
import subprocess
import sys
import tempfile


def check(doc):
    """Returns (lanes, problems): lanes maps tid to its name and its spans
    (start, end, depth, name, cat) and instants (ts, name)."""
    problems = []
    if not isinstance(doc, dict) or not isinstance(doc.get("traceEvents"), list):
        return {}, ["no traceEvents array"]
    lanes = {}
    for i, e in enumerate(doc["traceEvents"]):
        where = f"event {i}"
        if not isinstance(e, dict) or not all(k in e for k in ("ph", "pid", "tid")):
            problems.append(f"{where}: lacks ph, pid or tid")
            continue
        lane = lanes.setdefault(e["tid"], {"name": str(e["tid"]), "stack": [], "spans": [],
                                           "instants": [], "last": 0.0})
        ph = e["ph"]
        if ph == "M":
            if e.get("name") == "thread_name":
                lane["name"] = e.get("args", {}).get("name", lane["name"])
            continue
        if ph not in ("B", "E", "i"):
            problems.append(f"{where}: unexpected ph {ph!r}")
            continue
        ts = e.get("ts")
        if not isinstance(ts, (int, float)):
            problems.append(f"{where}: no numeric ts")
            continue
        if ph != "E" and not (isinstance(e.get("name"), str) and isinstance(e.get("cat"), str)):
            problems.append(f"{where}: {ph} without name or cat")
        if ts < lane["last"]:
            problems.append(f"{where}: ts {ts} goes back on tid {e['tid']}")
        lane["last"] = ts
        if ph == "B":
            lane["stack"].append((ts, e.get("name", "?"), e.get("cat", "?")))
        elif ph == "E":
            if not lane["stack"]:
                problems.append(f"{where}: E without an open B on tid {e['tid']}")
                continue
            start, name, cat = lane["stack"].pop()
            lane["spans"].append((start, ts, len(lane["stack"]), name, cat))
        else:
            lane["instants"].append((ts, e.get("name", "?")))
    for tid, lane in lanes.items():
        if lane["stack"]:
            problems.append(f"tid {tid}: {len(lane['stack'])} B without E")
    other = doc.get("otherData", {})
    for key in ("recorded", "dropped"):
        if not isinstance(other.get(key), (int, float)):
            problems.append(f"otherData lacks {key}")
    # Lanes with events only (the process_name event has its own tid).
    lanes = {t: l for t, l in lanes.items() if l["spans"] or l["instants"]}
    return lanes, problems


PALETTE = ["#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#edc948",
           "#b07aa1", "#ff9da7", "#9c755f", "#bab0ac"]


def colours(lanes):
    """A colour per span name: distinct for up to ten names, in name order."""
    names = sorted({s[3] for l in lanes.values() for s in l["spans"]})
    return {n: PALETTE[i % len(PALETTE)] for i, n in enumerate(names)}


def render(doc, lanes, title):
    """The SVG text of the timeline."""
    def lane_key(item):
        name = item[1]["name"]
        return (not name.startswith("main"), name)

    ordered = sorted(lanes.items(), key=lane_key)
    t0 = min([s[0] for _, l in ordered for s in l["spans"]] +
             [i[0] for _, l in ordered for i in l["instants"]])
    t1 = max([s[1] for _, l in ordered for s in l["spans"]] +
             [i[0] for _, l in ordered for i in l["instants"]])
    span = max(t1 - t0, 1e-3)
    left, right, top, row_h, gap = 110, 20, 40, 16, 14
    width = 1100
    plot_w = width - left - right

    def x(ts):
        return left + (ts - t0) / span * plot_w

    out = []
    y = top
    names = colours(lanes)
    for tid, lane in ordered:
        depth = max([s[2] for s in lane["spans"]] + [0]) + 1
        h = depth * row_h + 8
        out.append(f'<rect x="{left}" y="{y}" width="{plot_w}" height="{h}" fill="#f4f4f4"/>')
        out.append(f'<text x="{left - 8}" y="{y + h / 2 + 4:.1f}" text-anchor="end" '
                   f'font-size="12">{html.escape(lane["name"])}</text>')
        for start, end, d, name, cat in lane["spans"]:
            w = max(x(end) - x(start), 0.6)
            yy = y + 4 + d * row_h
            label = html.escape(f"{name} ({cat}) {end - start:.1f} us")
            out.append(f'<rect x="{x(start):.2f}" y="{yy}" width="{w:.2f}" height="{row_h - 2}" '
                       f'fill="{names[name]}" stroke="#ffffff" stroke-width="0.3">'
                       f'<title>{label}</title></rect>')
            if w > 7 * len(name):
                out.append(f'<text x="{x(start) + 3:.2f}" y="{yy + row_h - 5}" font-size="10" '
                           f'fill="#ffffff">{html.escape(name)}</text>')
        for ts, name in lane["instants"]:
            out.append(f'<path d="M{x(ts):.2f},{y} l-3,-6 l6,0 z" fill="#222222">'
                       f'<title>{html.escape(name)}</title></path>')
        y += h + gap
    # Time axis in milliseconds, about ten ticks.
    step_ms = 10 ** len(str(int(span / 1000 / 10))) / 10 if span > 1000 else 0.1
    while span / 1000 / step_ms > 12:
        step_ms *= 2
    axis = []
    tick = 0.0
    while tick * 1000 <= span:
        xx = x(t0 + tick * 1000)
        axis.append(f'<line x1="{xx:.2f}" y1="{top - 4}" x2="{xx:.2f}" y2="{y - gap}" '
                    f'stroke="#cccccc" stroke-width="0.5"/>')
        axis.append(f'<text x="{xx:.2f}" y="{y + 4}" font-size="10" text-anchor="middle">'
                    f'{tick:g} ms</text>')
        tick += step_ms
    # Legend.
    legend = []
    lx, ly = left, y + 24
    for name, fill in sorted(names.items()):
        legend.append(f'<rect x="{lx}" y="{ly}" width="10" height="10" fill="{fill}"/>')
        legend.append(f'<text x="{lx + 14}" y="{ly + 9}" font-size="11">{html.escape(name)}</text>')
        lx += 24 + 7 * len(name)
        if lx > width - 150:
            lx, ly = left, ly + 16
    legend.append(f'<path d="M{lx + 5},{ly + 10} l-4,-8 l8,0 z" fill="#222222"/>')
    legend.append(f'<text x="{lx + 14}" y="{ly + 9}" font-size="11">instant (steal)</text>')
    height = ly + 24
    other = doc.get("otherData", {})
    sub = (f'{other.get("recorded")} events, {other.get("dropped")} dropped, '
           f'{len(ordered)} threads, {span / 1000:.2f} ms')
    head = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
            f'viewBox="0 0 {width} {height}" font-family="sans-serif">',
            f'<rect width="{width}" height="{height}" fill="#ffffff"/>',
            f'<text x="{left}" y="18" font-size="14" font-weight="bold">{html.escape(title)}</text>',
            f'<text x="{left}" y="32" font-size="11" fill="#555555">{html.escape(sub)}</text>']
    return "\n".join(head + axis + out + legend + ["</svg>", ""])


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--check", action="store_true", help="only check the trace")
    ap.add_argument("--run", action="store_true",
                    help="TRACE is a program to run with an output path appended")
    ap.add_argument("-o", "--output", help="the SVG to write (default: TRACE with .svg)")
    ap.add_argument("--title", default="Moirai trace")
    ap.add_argument("trace")
    ap.add_argument("args", nargs="*")
    a = ap.parse_args()
    path = a.trace
    tmp = None
    if a.run:
        tmp = tempfile.NamedTemporaryFile(suffix=".json", delete=False)
        tmp.close()
        path = tmp.name
        rc = subprocess.run([a.trace] + a.args + [path]).returncode
        if rc != 0:
            print(f"{a.trace} exited with {rc}", file=sys.stderr)
            return 1
    try:
        with open(path, encoding="utf-8") as f:
            doc = json.load(f)
    except (OSError, ValueError) as err:
        print(f"{path}: {err}", file=sys.stderr)
        return 1
    finally:
        if tmp is not None:
            os.unlink(tmp.name)
    lanes, problems = check(doc)
    for p in problems:
        print(f"{path}: {p}", file=sys.stderr)
    if problems or not lanes:
        if not lanes:
            print(f"{path}: no events", file=sys.stderr)
        return 1
    spans = sum(len(l["spans"]) for l in lanes.values())
    print(f"{path}: well formed: {len(lanes)} threads, {spans} spans")
    if a.check:
        return 0
    out = a.output or os.path.splitext(path)[0] + ".svg"
    with open(out, "w", encoding="utf-8") as f:
        f.write(render(doc, lanes, a.title))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
