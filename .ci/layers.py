#!/usr/bin/env python3
"""Checks the layering of src/ (ARCHITECTURE.md): a folder imports only the layers
below it, and no files import each other in a cycle. Prints what it measured (files,
lines, largest file per layer) and exits 1 on any violation.

Usage: .ci/layers.py [--quiet]
"""

import re
import sys
from pathlib import Path

SRC = Path(__file__).resolve().parent.parent / "src"

# Lowest first: a layer may import only layers of a lower rank.
RANK = {
    "tls": 0,
    "config": 1,
    "upstream": 2,
    "pool": 3,
    "observe": 4,
    "cache": 5,
    "admin": 6,
    # Per client connection, under the requests on it; beside admin.
    "conn": 6,
    "proxy": 7,
    # Wiring: starts everything, imported by nothing but the wiring.
    "limits": 8,
    "http_server": 9,
    "server": 10,
    "signals": 9,
    "main": 11,
    "lib": 11,
}

CHILD = re.compile(r"(?<![\w:])([a-z_][a-z0-9_]*)::")
REF = re.compile(r"\b(crate|super|self)((?:::[a-z_][a-z0-9_]*)+)")


def module_of(path):
    """`src/pool/health.rs` -> ("pool", "health"); `src/pool/mod.rs` -> ("pool",)."""
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "mod":
        parts.pop()
    return tuple(parts)


def without_tests(text):
    """Unit tests sit at the end of a file and may import anything of their module."""
    cut = re.search(r"^#\[cfg\(test\)\]\s*\nmod tests", text, re.M)
    return text[: cut.start()] if cut else text


def resolve(module, root, tail, known):
    """The longest known module a path like `crate::pool::view::PoolView` names."""
    base = {"crate": (), "super": module[:-1], "self": module}[root]
    names = [n for n in tail.split("::") if n]
    best = None
    for i in range(1, len(names) + 1):
        if base + tuple(names[:i]) in known:
            best = base + tuple(names[:i])
    return best


def main():
    quiet = "--quiet" in sys.argv
    files = sorted(SRC.rglob("*.rs"))
    modules = {module_of(f): f for f in files}
    known = set(modules)
    edges = {}
    for m, f in modules.items():
        text = without_tests(f.read_text())
        if re.search(r"\bcrate::\{", text):
            print(f"{f.relative_to(SRC.parent)}: grouped `crate::{{…}}` import; name each path")
            return 1
        targets = set()
        for root, tail in REF.findall(text):
            t = resolve(m, root, tail, known)
            if t and t != m:
                targets.add(t)
        if f.name == "mod.rs":
            # A folder's mod.rs names its own files without a prefix.
            for name in CHILD.findall(text):
                if m + (name,) in known:
                    targets.add(m + (name,))
        edges[m] = targets

    errors = []
    for m, targets in edges.items():
        layer = m[0] if m else "lib"
        for t in targets:
            other = t[0]
            if other == layer:
                continue
            if layer not in RANK or other not in RANK:
                errors.append(f"{'::'.join(m)}: layer of {'::'.join(t)} not in .ci/layers.py")
            elif RANK[other] >= RANK[layer]:
                errors.append(f"{'::'.join(m)} imports {'::'.join(t)}: {other} is not below {layer}")

    # Module-level cycles, inside a folder as well as across folders.
    state = {}
    stack = []

    def visit(m):
        state[m] = 1
        stack.append(m)
        for t in sorted(edges.get(m, ())):
            if state.get(t) == 1:
                cycle = stack[stack.index(t):] + [t]
                errors.append("cycle: " + " -> ".join("::".join(c) for c in cycle))
            elif t not in state:
                visit(t)
        stack.pop()
        state[m] = 2

    for m in sorted(edges):
        if m not in state:
            visit(m)

    if not quiet:
        layers = {}
        for m, f in modules.items():
            layer = m[0] if m else "lib"
            n = len(f.read_text().splitlines())
            entry = layers.setdefault(layer, {"files": 0, "lines": 0, "largest": (0, "")})
            entry["files"] += 1
            entry["lines"] += n
            entry["largest"] = max(entry["largest"], (n, str(f.relative_to(SRC))))
        print(f"{'layer':10} {'files':>5} {'lines':>6}  largest file")
        for layer in sorted(layers, key=lambda l: (RANK.get(l, 99), l)):
            e = layers[layer]
            print(f"{layer:10} {e['files']:5} {e['lines']:6}  {e['largest'][1]} ({e['largest'][0]})")
    for e in errors:
        print(e)
    if not errors and not quiet:
        print("no layer violation, no import cycle")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
