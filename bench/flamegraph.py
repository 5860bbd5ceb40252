"""A flame graph (SVG) and a folded-stack file from `perf script` output.

  perf record -F 999 --call-graph dwarf -p PID -- sleep 10
  perf script | python3 bench/flamegraph.py OUT.svg OUT.folded "title"

Frames are folded per sample (root first), widths are proportional to samples, colours
group frames by crate (vectorgate, qdrant_edge, datafusion, tokio, kernel, ...).
"""
import html
import re
import sys
from collections import Counter, defaultdict


def frames_of(stdin):
    stack = []
    for line in stdin:
        line = line.rstrip("\n")
        if not line.strip():
            if stack:
                yield list(reversed(stack))
            stack = []
            continue
        if not line.startswith((" ", "\t")):
            continue  # the sample header
        m = re.match(r"\s+[0-9a-f]+\s+(.*?)\s+\((.*)\)$", line)
        if not m:
            continue
        sym = m.group(1)
        sym = re.sub(r"\+0x[0-9a-f]+$", "", sym)
        if sym == "[unknown]":
            sym = "[" + m.group(2).split("/")[-1] + "]"
        stack.append(simplify(sym))
    if stack:
        yield list(reversed(stack))


def simplify(sym):
    sym = re.sub(r"::h[0-9a-f]{16}$", "", sym)
    sym = re.sub(r"\{\{closure\}\}", "{closure}", sym)
    return sym


def crate(sym):
    s = sym.lstrip("<&")
    for c in ("vectorgate", "qdrant_edge", "datafusion", "arrow", "tokio", "pgwire", "redb", "sqlparser", "serde", "std", "core", "alloc"):
        if s.startswith(c):
            return c
    if sym.startswith("["):
        return "other"
    if re.match(r"^(__|_int_|malloc|free|cfree|memcpy|memmove|realloc)", sym):
        return "libc"
    return "other"


COLOURS = {
    "vectorgate": "#e8743b", "qdrant_edge": "#c0392b", "datafusion": "#2e86c1", "arrow": "#5dade2",
    "tokio": "#27ae60", "pgwire": "#8e44ad", "redb": "#d4ac0d", "sqlparser": "#1abc9c",
    "serde": "#a569bd", "std": "#95a5a6", "core": "#aab7b8", "alloc": "#bfc9ca",
    "libc": "#7f8c8d", "other": "#d5dbdb",
}


def main():
    out_svg, out_folded, title = sys.argv[1], sys.argv[2], sys.argv[3]
    folded = Counter()
    for st in frames_of(sys.stdin):
        folded[";".join(st)] += 1
    with open(out_folded, "w") as f:
        for k, v in folded.most_common():
            f.write(f"{k} {v}\n")
    total = sum(folded.values()) or 1
    counts = defaultdict(int)
    for k, v in folded.items():
        path = ()
        for fr in k.split(";"):
            path = path + (fr,)
            counts[path] += v
    width, row = 1600, 17
    depth = max((len(p) for p in counts), default=1)
    height = (depth + 3) * row
    rects = []
    # Lay out children left to right under each parent, widest first.
    children = defaultdict(list)
    for p in counts:
        children[p[:-1]].append(p)
    def lay(parent, x):
        for p in sorted(children[parent], key=lambda q: -counts[q]):
            w = counts[p] / total * width
            if w >= 0.3:
                rects.append((x, len(p), w, p[-1], counts[p]))
                lay(p, x)
            x += w
    lay((), 0.0)
    svg = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="monospace" font-size="11">',
           f'<text x="4" y="13">{html.escape(title)} ({total} samples)</text>']
    for x, d, w, name, n in rects:
        y = height - (d + 1) * row
        c = COLOURS[crate(name)]
        label = name if len(name) * 6.6 < w else name[: max(0, int(w / 6.6) - 2)] + ".." if w > 20 else ""
        svg.append(f'<g><title>{html.escape(name)} ({n} samples, {100 * n / total:.1f}%)</title>'
                   f'<rect x="{x:.1f}" y="{y}" width="{w:.1f}" height="{row - 1}" fill="{c}"/>'
                   f'<text x="{x + 2:.1f}" y="{y + 12}">{html.escape(label)}</text></g>')
    svg.append("</svg>")
    with open(out_svg, "w") as f:
        f.write("\n".join(svg))
    # Inclusive share per crate of the leaf frames, for the report.
    leaf = Counter()
    for k, v in folded.items():
        leaf[crate(k.split(";")[-1])] += v
    inclusive = Counter()
    for k, v in folded.items():
        for c in {crate(fr) for fr in k.split(";")}:
            inclusive[c] += v
    print("crate        self  inclusive (share of samples)")
    for c, v in leaf.most_common():
        print(f"{c:<11} {100 * v / total:5.1f}%  {100 * inclusive[c] / total:5.1f}%")


if __name__ == "__main__":
    main()
