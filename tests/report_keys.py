"""report.json's key tree, and the trees the report wrote before it became a package of
section records (tests/report_keys.json: from main at 46ba3fb, the demo run of
tests/stages/test_demo.py and the `tiny` report of tests/report/test_report.py). The tests compare a
fresh run's tree with those, so a key added, dropped or moved to another level shows.

    python tests/report_keys.py demo=DIR/report/report.json tiny=DIR2/report.json
rewrites tests/report_keys.json from the report.json files given.
"""
import json
import os
import sys

KEYS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "report_keys.json")


def key_tree(value):
    """A dict's keys with their values' trees; a list as {'[]': the merged tree of its
    items}; any other value as ''."""
    if isinstance(value, dict):
        return {k: key_tree(v) for k, v in value.items()}
    if isinstance(value, list):
        merged = None
        for item in value:
            merged = merge(merged, key_tree(item))
        return {"[]": "" if merged is None else merged}
    return ""


def merge(a, b):
    """The union of two trees (items of one list); a dict wins over ''."""
    if not isinstance(a, dict) or not isinstance(b, dict):
        return a if isinstance(a, dict) or b is None else b
    out = dict(a)
    for k, v in b.items():
        out[k] = merge(out.get(k), v)
    return out


def expected(name: str) -> dict:
    with open(KEYS) as f:
        return json.load(f)[name]


def differences(got, want, where: str = "") -> list:
    """Every path where two trees differ, in a few words each."""
    if not isinstance(got, dict) or not isinstance(want, dict):
        return [] if got == want else [f"{where or '/'}: {got!r} != {want!r}"]
    out = [f"{where}/{k}: missing" for k in want if k not in got]
    out += [f"{where}/{k}: new" for k in got if k not in want]
    for k in want:
        if k in got:
            out += differences(got[k], want[k], f"{where}/{k}")
    if not out and list(got) != list(want):
        out.append(f"{where or '/'}: keys in another order")
    return out


if __name__ == "__main__":
    trees = {}
    for arg in sys.argv[1:]:
        name, _, path = arg.partition("=")
        with open(path) as f:
            trees[name] = key_tree(json.load(f))
    with open(KEYS, "w") as f:
        json.dump(trees, f, indent=1)
        f.write("\n")
