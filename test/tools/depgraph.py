#!/usr/bin/env python3
"""Which src/ files call which, from the built objects (nm), and any cycle.

    python3 test/tools/depgraph.py [src]      # after make

Prints one line per file with the files it calls, then "no cycles" or each
cycle found, and exits 1 on a cycle. A file "calls" another when it uses a
global symbol (function or variable) that the other defines. A folder
under src/ (src/jsonschema/) is one module, a library with its own
header: its files may recurse into each other (a schema's keywords hold
schemas), and cycles are looked for between modules. The suite
"structure" of test/run-tests.sh runs it.
"""
import os
import subprocess
import sys


def symbols(obj):
    out = subprocess.run(["nm", obj], capture_output=True, text=True, check=True).stdout
    defined, used = set(), set()
    for line in out.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[0] == "U":
            used.add(parts[1])
        elif len(parts) == 3 and parts[1] in "TDBRC":
            defined.add(parts[2])
    return defined, used


def main():
    src = sys.argv[1] if len(sys.argv) > 1 else "src"
    objs = sorted(os.path.join(d, f) for d, _, fs in os.walk(src) for f in fs if f.endswith(".o"))
    if not objs:
        print("no objects under %s: run make first" % src)
        return 2
    table = {o: symbols(o) for o in objs}
    owner = {}
    for o, (defined, _) in table.items():
        for s in defined:
            owner[s] = o
    graph = {o: sorted({owner[s] for s in used if s in owner and owner[s] != o})
             for o, (_, used) in table.items()}
    name = lambda o: os.path.relpath(o, src)[:-2] + ".c"
    for o in objs:
        print("%-28s -> %s" % (name(o), ", ".join(name(d) for d in graph[o]) or "-"))
    # Modules: a file of src/, or a folder of src/ as a whole.
    module = lambda o: os.path.relpath(o, src).split(os.sep)[0].replace(".o", ".c")
    mgraph = {}
    for o in objs:
        mgraph.setdefault(module(o), set()).update(module(d) for d in graph[o] if module(d) != module(o))
    objs = sorted(mgraph)
    graph = {m: sorted(mgraph[m]) for m in objs}
    name = lambda m: m
    # Cycles: depth-first search, reporting each back edge's cycle once.
    cycles, state, stack = [], {}, []

    def visit(o):
        state[o] = 1
        stack.append(o)
        for d in graph[o]:
            if state.get(d) == 1:
                cycles.append(stack[stack.index(d):] + [d])
            elif d not in state:
                visit(d)
        stack.pop()
        state[o] = 2

    for o in objs:
        if o not in state:
            visit(o)
    if not cycles:
        print("no cycles")
        return 0
    for c in cycles:
        print("cycle: " + " -> ".join(name(o) for o in c))
    return 1


if __name__ == "__main__":
    sys.exit(main())
