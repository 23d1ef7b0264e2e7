#!/usr/bin/env python3
"""Copies the functions and views of the install script into an update script.

The update script (sql/updates/eventbus--A--B.sql) re-creates every function
and view with CREATE OR REPLACE, as the install script of B defines them.
After changing a function or view in sql/*.sql, run

    make && python3 test/tools/sync_update.py eventbus--B.sql sql/updates/eventbus--A--B.sql

to copy its new text into the update script. Statements of objects new in B
(and the tables' changes) are written into the update script by hand; this
tool only refreshes the ones already there, and says which function or view
of the install script the update script lacks. test/t/013_upgrade.pl checks
that the result equals a fresh install.
"""
import re
import sys


def statements(text):
    """Splits SQL text into statements (with the comments before them)."""
    out, start, i, n = [], 0, 0, len(text)
    while i < n:
        c = text[i]
        if text.startswith('--', i):
            j = text.find('\n', i)
            i = n if j < 0 else j + 1
            continue
        if c == "'":
            j = i + 1
            while j < n:
                if text[j] == "'" and text[j + 1:j + 2] == "'":
                    j += 2
                    continue
                if text[j] == "'":
                    break
                j += 1
            i = j + 1
            continue
        if c == '$':
            m = re.match(r'\$[A-Za-z_0-9]*\$', text[i:])
            if m:
                tag = m.group(0)
                j = text.find(tag, i + len(tag))
                i = n if j < 0 else j + len(tag)
                continue
        if c == ';':
            out.append(text[start:i + 1])
            start = i + 1
        i += 1
    if text[start:].strip():
        out.append(text[start:])
    return out


def body(stmt):
    """The statement without the comments and blank lines before it."""
    lines = stmt.split('\n')
    while lines and (not lines[0].strip() or lines[0].lstrip().startswith('--')):
        lines.pop(0)
    return '\n'.join(lines)


KEY = re.compile(r'CREATE\s+(?:OR\s+REPLACE\s+)?(FUNCTION|VIEW)\s+([\w.]+)', re.I)


def key(stmt):
    m = KEY.match(body(stmt))
    return (m.group(1).upper(), m.group(2)) if m else None


def main():
    install_path, update_path = sys.argv[1], sys.argv[2]
    install = statements(open(install_path).read())
    update_text = open(update_path).read()
    update = statements(update_text)
    defs = {}
    for s in install:
        k = key(s)
        if k:
            defs.setdefault(k, []).append(body(s))
    changed, seen = 0, set()
    result = []
    for s in update:
        k = key(s)
        b = body(s)
        if k and k in defs and re.match(r'CREATE\s+OR\s+REPLACE', b, re.I):
            seen.add(k)
            if len(defs[k]) != 1:
                print(f'{k[0].lower()} {k[1]} is defined {len(defs[k])} times; left as it is', file=sys.stderr)
            else:
                new = re.sub(r'^CREATE\s+(?:OR\s+REPLACE\s+)?', 'CREATE OR REPLACE ', defs[k][0], count=1)
                if new != b:
                    s = s[:len(s) - len(b)] + new
                    changed += 1
        elif k:
            seen.add(k)
        result.append(s)
    open(update_path, 'w').write(''.join(result) + update_text[len(''.join(update)):])
    for k in defs:
        if k not in seen:
            print(f'{k[0].lower()} {k[1]} is not in {update_path}: add it by hand', file=sys.stderr)
    print(f'{changed} statement(s) updated')


if __name__ == '__main__':
    main()
