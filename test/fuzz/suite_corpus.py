#!/usr/bin/python3
"""Seeds for validator_fuzz from the JSON Schema Test Suite.

    suite_corpus.py SUITE_DIR OUT_DIR REMOTES_JSON

Writes one file per distinct (schema, document) pair of the suite's
draft2020-12.jsonl and draft7.jsonl into OUT_DIR, as validator_fuzz reads
them: the schema's JSON text, a NUL byte, the document's JSON text. Draft-07
schemas get "$schema": "http://json-schema.org/draft-07/schema#" when they
have none (the validator defaults to 2020-12), as test/jsonschema/
conformance.py does. Lines with \\u0000 (jsonb cannot hold it) are skipped.

Also writes REMOTES_JSON, {"http://localhost:1234/<path>": document, ...}
for every file under the suite's remotes/ (the draft-07 ones, as above, with
the draft-07 "$schema"), which validator_fuzz loads as "$ref" targets
(EB_FUZZ_REMOTES).
"""
import hashlib
import json
import os
import sys

DRAFT7 = "http://json-schema.org/draft-07/schema#"


def has_nul(v):
    if isinstance(v, str):
        return "\x00" in v
    if isinstance(v, list):
        return any(has_nul(x) for x in v)
    if isinstance(v, dict):
        return any("\x00" in k or has_nul(x) for k, x in v.items())
    return False


def with_draft(schema, draft):
    if draft == "draft7" and isinstance(schema, dict) and "$schema" not in schema:
        return dict([("$schema", DRAFT7)] + list(schema.items()))
    return schema


def main():
    if len(sys.argv) != 4:
        sys.exit(__doc__)
    suite, out, remotes_out = sys.argv[1:]
    os.makedirs(out, exist_ok=True)
    n = 0
    for draft in ("draft2020-12", "draft7"):
        path = os.path.join(suite, draft + ".jsonl")
        if not os.path.isfile(path):
            continue
        with open(path, encoding="utf-8") as f:
            for line in f:
                t = json.loads(line)
                if has_nul(t["schema"]) or has_nul(t["data"]):
                    continue
                blob = (json.dumps(with_draft(t["schema"], draft), ensure_ascii=False) + "\0" +
                        json.dumps(t["data"], ensure_ascii=False)).encode("utf-8")
                name = os.path.join(out, hashlib.sha1(blob).hexdigest())
                if not os.path.exists(name):
                    with open(name, "wb") as g:
                        g.write(blob)
                    n += 1
    remotes = {}
    root = os.path.join(suite, "remotes")
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(filenames):
            if not name.endswith(".json"):
                continue
            rel = os.path.relpath(os.path.join(dirpath, name), root).replace(os.sep, "/")
            with open(os.path.join(dirpath, name), encoding="utf-8") as f:
                doc = json.load(f)
            top = rel.split("/")[0]
            draft = "draft7" if (top == "draft7" or not (top.startswith("draft") or top == "v1")) else top
            remotes["http://localhost:1234/" + rel] = with_draft(doc, draft)
    with open(remotes_out, "w", encoding="utf-8") as f:
        json.dump(remotes, f)
    print("suite_corpus: %d new seeds in %s, %d remotes in %s" % (n, out, len(remotes), remotes_out))


if __name__ == "__main__":
    main()
