#!/usr/bin/env python3
"""Independent oracle for medvault's FHIR import/export fidelity (docs/FHIR.md).

Reads the import inputs with Python's own JSON parser, keeping every number token as
its text (parse_float/parse_int), every member in order and every duplicated member
(object_pairs_hook), applies the documented Bundle rules (split, kept whole, skipped
entries, record ids, last-wins per resourceType/id) and compares the expected
resources with the lines of an export, as multisets:

    python3 fhir_oracle.py --export OUT.ndjson PATH [PATH...]

Prints one JSON object (counts only, never resource content) and exits 0 when every
expected resource is exported exactly once with equal value and number text and nothing
else is exported, 1 otherwise, 2 on usage errors. `--minified` also requires each
exported line to be byte-identical to its input line when that line was a minified
NDJSON line (acceptance 2).

It shares no code with medvault (Rust, its own JSON representation); only the rules of
docs/FHIR.md are implemented a second time, here.
"""

import argparse
import hashlib
import json
import os
import sys

SPLIT = {"transaction", "batch", "collection", "searchset",
         "transaction-response", "batch-response"}


class Num:
    """A JSON number kept as its source text."""
    __slots__ = ("text",)

    def __init__(self, text):
        self.text = text

    def __repr__(self):
        return "N(" + self.text + ")"


def _no_constants(name):
    raise ValueError("non-JSON constant " + name)


def parse(text):
    """Parses JSON keeping number text, member order and duplicate members."""
    return json.loads(text, parse_float=Num, parse_int=Num, parse_constant=_no_constants,
                      object_pairs_hook=lambda pairs: ("obj", tuple(pairs)))


def canon(v):
    """A hashable, order-preserving canonical form (numbers by text)."""
    if isinstance(v, tuple) and len(v) == 2 and v[0] == "obj":
        return ("{", tuple((k, canon(x)) for k, x in v[1]))
    if isinstance(v, list):
        return ("[", tuple(canon(x) for x in v))
    if isinstance(v, Num):
        return ("#", v.text)
    return ("=", type(v).__name__, v)


def get(obj, name):
    """Member `name` of a parsed object (the first one; duplicates are kept in canon)."""
    if isinstance(obj, tuple) and len(obj) == 2 and obj[0] == "obj":
        for k, v in obj[1]:
            if k == name:
                return v
    return None


def is_obj(v):
    return isinstance(v, tuple) and len(v) == 2 and v[0] == "obj"


def minify(text):
    """Removes JSON whitespace outside strings (no parsing of numbers or escapes)."""
    out = []
    in_str = False
    esc = False
    for ch in text:
        if in_str:
            out.append(ch)
            if esc:
                esc = False
            elif ch == "\\":
                esc = True
            elif ch == '"':
                in_str = False
        elif ch == '"':
            in_str = True
            out.append(ch)
        elif ch not in " \t\r\n":
            out.append(ch)
    return "".join(out)


class Expected:
    def __init__(self):
        self.by_key = {}      # (type, id) -> (canon, source_text_or_None)
        self.order = []
        self.writes = 0
        self.replaced = 0
        self.unchanged = 0
        self.skipped = 0

    def put(self, rtype, rid, value, source_line):
        key = (rtype, rid)
        self.writes += 1
        c = canon(value)
        if key in self.by_key:
            # The same resource again with the same value is not written again.
            if self.by_key[key][0] == c:
                self.unchanged += 1
            else:
                self.replaced += 1
        self.by_key[key] = (c, source_line)


def fullurl_id(full_url, rtype):
    if not isinstance(full_url, str):
        return None
    for prefix in ("urn:uuid:", "urn:oid:"):
        if full_url.startswith(prefix):
            return full_url[len(prefix):]
    segs = full_url.split("/")
    if len(segs) >= 4 and segs[-2] == "_history":
        segs = segs[:-2]
    if len(segs) >= 2 and segs[-2] == rtype:
        return segs[-1]
    return None


def record_id(value, full_url):
    rid = get(value, "id")
    if isinstance(rid, str) and rid:
        return rid
    fid = fullurl_id(full_url, get(value, "resourceType"))
    if fid:
        return fid
    # Content id: only its identity matters here (same content -> same record).
    return "content:" + repr(canon(value))


def take_resource(exp, value, full_url, source_line):
    """Applies docs/FHIR.md section 5 to one resource."""
    rtype = get(value, "resourceType")
    if rtype == "Bundle" and get(value, "type") in SPLIT:
        entries = get(value, "entry") or []
        for entry in entries:
            if not is_obj(entry):
                raise ValueError("entry is not an object")
            res = get(entry, "resource")
            if res is None:
                exp.skipped += 1
                continue
            method = get(get(entry, "request"), "method")
            mode = get(get(entry, "search"), "mode")
            if method == "PATCH" or mode == "outcome":
                exp.skipped += 1
                continue
            take_resource(exp, res, get(entry, "fullUrl"), None)
        return
    exp.put(rtype, record_id(value, full_url), value, source_line)


def inputs(paths):
    for p in paths:
        if os.path.isdir(p):
            names = sorted(os.listdir(p).__iter__(), key=lambda n: n.encode())
            for n in names:
                if n.lower().endswith((".ndjson", ".json")):
                    f = os.path.join(p, n)
                    if os.path.isfile(f):
                        yield f
        else:
            yield p


def read_inputs(paths):
    exp = Expected()
    for f in inputs(paths):
        with open(f, "rb") as fh:
            data = fh.read().decode("utf-8")
        if data.startswith("\ufeff"):
            data = data[1:]
        if f.lower().endswith(".ndjson"):
            for line in data.split("\n"):
                line = line[:-1] if line.endswith("\r") else line
                if not line.strip():
                    continue
                v = parse(line)
                if not is_obj(v) or get(v, "resourceType") is None:
                    exp.skipped += 1
                    continue
                take_resource(exp, v, None, line)
        else:
            take_resource(exp, parse(data), None, None)
    return exp


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--export", required=True)
    ap.add_argument("--minified", action="store_true")
    ap.add_argument("paths", nargs="+")
    a = ap.parse_args()

    exp = read_inputs(a.paths)
    expected = {}
    minified_lines = {}
    for key, (c, line) in exp.by_key.items():
        expected[c] = expected.get(c, 0) + 1
        if line is not None and minify(line) == line:
            minified_lines.setdefault(c, set()).add(line)

    got = {}
    exported = 0
    not_byte_identical = 0
    with open(a.export, "rb") as fh:
        for raw in fh.read().decode("utf-8").split("\n"):
            if not raw:
                continue
            exported += 1
            c = canon(parse(raw))
            got[c] = got.get(c, 0) + 1
            if a.minified and c in minified_lines and raw not in minified_lines[c]:
                not_byte_identical += 1

    missing = sum(max(0, n - got.get(c, 0)) for c, n in expected.items())
    unexpected = sum(max(0, n - expected.get(c, 0)) for c, n in got.items())
    exact = sum(min(n, got.get(c, 0)) for c, n in expected.items())
    report = {
        "expected": sum(expected.values()),
        "exported": exported,
        "exact": exact,
        "missing_or_changed": missing,
        "unexpected": unexpected,
        "writes": exp.writes,
        "replaced": exp.replaced,
        "unchanged": exp.unchanged,
        "skipped": exp.skipped,
        "minified_input_lines": sum(len(s) for s in minified_lines.values()),
        "not_byte_identical": not_byte_identical,
    }
    print(json.dumps(report, sort_keys=True))
    ok = missing == 0 and unexpected == 0 and not_byte_identical == 0
    return 0 if ok else 1


if __name__ == "__main__":
    try:
        sys.exit(main())
    except (OSError, ValueError) as e:
        print(json.dumps({"error": type(e).__name__}), file=sys.stderr)
        sys.exit(2)
