#!/usr/bin/env python3
"""End-to-end tests of the Elasticsearch addon: the real component run by `kstash addon run`
against the kstash Elasticsearch emulator, cross-checked with multielasticdump and the official
Python client, and every request the addon sent checked against Elastic's REST spec.

Run through `roundtrip.sh` (it builds or locates the binaries). Environment:
KSTASH_BIN, ES_EMULATOR_BIN, ADDON_WASM, MULTIELASTICDUMP, KSTASH_ES_SPEC_DIR; ONLY=name,name
runs a subset while developing (the full run is the test).
"""

import glob
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

from elasticsearch import Elasticsearch, helpers  # noqa: F401 (helpers.bulk seeds)

KSTASH = os.environ["KSTASH_BIN"]
EMU = os.environ["ES_EMULATOR_BIN"]
WASM = os.environ["ADDON_WASM"]
MED = os.environ["MULTIELASTICDUMP"]
SPEC_DIR = os.environ["KSTASH_ES_SPEC_DIR"]
TMP = tempfile.mkdtemp(prefix="esaddon-e2e-")
SYSTEM_TEMPLATE = ("metrics", "logs")
PROCS = []


def fail(msg):
    raise AssertionError(msg)


# ---------------------------------------------------------------- emulator


class Emulator:
    def __init__(self, name, *extra):
        self.name = name
        self.log = os.path.join(TMP, f"{name}.requests.jsonl")
        self.err = open(os.path.join(TMP, f"{name}.stderr"), "w")
        self.proc = subprocess.Popen(
            [EMU, "--listen", "127.0.0.1:0", "--request-log", self.log, *extra],
            stdout=subprocess.PIPE, stderr=self.err, text=True)
        PROCS.append(self.proc)
        self.url = self.proc.stdout.readline().strip()
        if not self.url.startswith("http"):
            fail(f"emulator {name} did not start (see {self.err.name})")

    def client(self):
        return Elasticsearch(self.url, max_retries=20, retry_on_status=(429, 500, 502, 503, 504),
                             retry_on_timeout=True, request_timeout=120)

    def log_len(self):
        if not os.path.exists(self.log):
            return 0
        with open(self.log) as f:
            return sum(1 for _ in f)

    def log_entries(self, start, end=None):
        with open(self.log) as f:
            lines = f.readlines()
        return [json.loads(l) for l in lines[start:end]]

    def stop(self):
        self.proc.terminate()
        self.proc.wait(timeout=10)


# ---------------------------------------------------------------- spec check


def load_spec(opensearch=False):
    """Endpoints of Elastic's spec files (`elasticsearch/`) and of the transcribed supplement
    (`supplement/`, several endpoints per file); in OpenSearch mode its point-in-time API replaces
    Elasticsearch's."""
    endpoints, common = [], set()
    files = sorted(glob.glob(os.path.join(SPEC_DIR, "elasticsearch", "*.json")))
    files.append(os.path.join(SPEC_DIR, "supplement", "elasticsearch-8.19.json"))
    if opensearch:
        files.append(os.path.join(SPEC_DIR, "supplement", "opensearch-2.x.json"))
    seen = set()
    for path in files:
        with open(path) as f:
            doc = json.load(f)
        if os.path.basename(path) == "_common.json":
            common |= set(doc.get("params", {}).keys())
            continue
        for name, ep in doc.items():
            if name in seen:
                continue
            if opensearch and name in ("open_point_in_time", "close_point_in_time"):
                continue
            seen.add(name)
            params = set(ep.get("params", {}).keys())
            for p in ep["url"]["paths"]:
                segs = [s for s in p["path"].split("/") if s]
                endpoints.append((name, p["path"], segs, set(p["methods"]), params | set(p.get("parts", {}).keys())))
    if not endpoints:
        fail(f"the REST API spec was not found in {SPEC_DIR}")
    return endpoints, common


SPEC = None


def spec_check(entry):
    """The endpoint a logged request matches, or raise naming what is wrong."""
    endpoints, common = SPEC
    segs = [s for s in entry["path"].split("?")[0].split("/") if s]
    best, cands = None, []
    for ep in endpoints:
        name, pattern, psegs, methods, params = ep
        if len(psegs) != len(segs):
            continue
        if not all(p.startswith("{") or p == s for p, s in zip(psegs, segs)):
            continue
        key = [0 if not p.startswith("{") else 1 for p in psegs]
        if best is None or key < best:
            best, cands = key, [ep]
        elif key == best:
            cands.append(ep)
    if not cands:
        raise AssertionError(f"{entry['method']} {entry['path']}: no endpoint in the spec has this path")
    errors = []
    for name, pattern, psegs, methods, params in cands:
        if entry["method"] not in methods:
            errors.append(f"{name} {pattern}: method {entry['method']} not in {sorted(methods)}")
            continue
        unknown = [q for q in entry.get("query", {}) if q not in params and q not in common]
        if unknown:
            errors.append(f"{name} {pattern}: unknown query parameters {unknown}")
            continue
        return name
    raise AssertionError(f"{entry['method']} {entry['path']}: " + "; ".join(errors))


KSTASH_REQUESTS = []  # (emulator, start, end) slices of request logs made by kstash


# ---------------------------------------------------------------- kstash


def kstash(task, emu, directory, args=None, expect_ok=True):
    cmd = [KSTASH, "addon", "run", "--module", WASM, "--task", task, "--target-url", emu.url]
    cmd += ["--out-dir" if task == "logical-backup" else "--in-dir", directory]
    if args is not None:
        cmd += ["--param", f"args={args}"]
    start = emu.log_len()
    t0 = time.time()
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=1800)
    time.sleep(0.2)
    KSTASH_REQUESTS.append((emu, start, emu.log_len()))
    if expect_ok and r.returncode != 0:
        fail(f"{' '.join(cmd)} failed ({r.returncode}):\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}")
    r.seconds = time.time() - t0
    return r


def med(*args):
    r = subprocess.run([MED, *args], capture_output=True, text=True, timeout=1800,
                       env={**os.environ, "NODE_TLS_REJECT_UNAUTHORIZED": "0"})
    if r.returncode != 0:
        fail(f"multielasticdump {' '.join(args)} failed:\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}")
    return r


# ---------------------------------------------------------------- data


def seed(es):
    es.indices.put_template(name="prod-template", index_patterns=["prod-*"], order=1,
                            settings={"number_of_shards": 1},
                            mappings={"properties": {"created": {"type": "date"}}},
                            aliases={"prod-all": {}})
    es.indices.create(index="products", settings={"number_of_shards": 2, "number_of_replicas": 0},
                      mappings={"properties": {
                          "name": {"type": "text", "fields": {"raw": {"type": "keyword"}}},
                          "variants": {"type": "nested", "properties": {"sku": {"type": "keyword"}, "price": {"type": "float"}}},
                          "meta": {"properties": {"tags": {"type": "keyword"}, "dims": {"properties": {"w": {"type": "long"}}}}}}})
    es.indices.create(index="routed", mappings={"_routing": {"required": True}, "properties": {"n": {"type": "long"}}})
    es.indices.create(index="large-docs", mappings={"properties": {"blob": {"type": "text", "index": False}}})
    es.indices.create(index="empty", mappings={"properties": {"x": {"type": "keyword"}}})
    es.indices.create(index=".kibana_1", mappings={"properties": {}})
    es.indices.update_aliases(actions=[
        {"add": {"index": "products", "alias": "current"}},
        {"add": {"index": "products", "alias": "active-products", "filter": {"term": {"meta.tags": "active"}}}},
    ])
    actions = []
    for i in range(3000):
        actions.append({"_index": "products", "_id": f"p{i}", "_source": {
            "name": f"Produkt ü {i} 日本語 🚀 \"quoted\" \\ back",
            "variants": [{"sku": f"s{i}-{j}", "price": i + j / 4} for j in range(3)],
            "meta": {"tags": ["active"] if i % 2 else ["old", "x"], "dims": {"w": i * 1000}, "none": None},
            "ok": i % 3 == 0}})
    for i in range(200):
        actions.append({"_index": "routed", "_id": f"r{i}", "_routing": f"user{i % 5}", "_source": {"n": i}})
    for i in range(5):
        actions.append({"_index": "large-docs", "_id": f"l{i}", "_source": {"blob": ("ω" * 200_000) + str(i), "i": i}})
    for i in range(50):
        actions.append({"_index": "prod-logs", "_id": str(i), "_source": {"created": "2024-01-01T00:00:00Z", "msg": f"line {i}"}})
    actions.append({"_index": ".kibana_1", "_id": "k", "_source": {"type": "config"}})
    helpers.bulk(es, actions, chunk_size=500)
    es.indices.refresh(index="products,routed,large-docs,prod-logs,empty")


def user_indices(es):
    return sorted(i for i in es.indices.get_alias().body.keys() if not i.startswith("."))


def pit_hits(es, index):
    """Every hit of `index` via the official client with PIT + search_after: unlike a scroll
    (helpers.scan), a retried page after a dropped connection is the same page, so the check
    stays exact on an emulator that injects faults."""
    pit = es.open_point_in_time(index=index, keep_alive="5m")["id"]
    after = None
    while True:
        kw = {"search_after": after} if after else {}
        r = es.search(pit={"id": pit, "keep_alive": "5m"}, size=500, sort=[{"_shard_doc": "asc"}], **kw)
        hits = r["hits"]["hits"]
        if not hits:
            break
        pit = r.get("pit_id", pit)
        after = hits[-1]["sort"]
        yield from hits
    es.close_point_in_time(id=pit)


def state(es, with_aliases=True, with_templates=True):
    out = {}
    for i in user_indices(es):
        es.indices.refresh(index=i)
        docs = {}
        for h in pit_hits(es, i):
            docs[h["_id"]] = (h.get("_routing"), h["_source"])
        s = es.indices.get_settings(index=i).body[i]["settings"]["index"]
        entry = {
            "mappings": es.indices.get_mapping(index=i).body[i]["mappings"],
            "shards": s.get("number_of_shards"),
            "docs": docs,
        }
        if with_aliases:
            entry["aliases"] = es.indices.get_alias(index=i).body[i]["aliases"]
        out[i] = entry
    if with_templates:
        out["__templates__"] = {k: v for k, v in es.indices.get_template().body.items()
                                if k not in SYSTEM_TEMPLATE and not k.startswith(".")}
    return out


def assert_same(expected, actual, what):
    if expected == actual:
        return
    for k in sorted(set(expected) | set(actual)):
        e, a = expected.get(k), actual.get(k)
        if e == a:
            continue
        if isinstance(e, dict) and isinstance(a, dict) and "docs" in e and "docs" in a:
            for part in e:
                if e[part] != a.get(part):
                    if part == "docs":
                        missing = set(e["docs"]) - set(a["docs"])
                        extra = set(a["docs"]) - set(e["docs"])
                        diff = [d for d in e["docs"] if d in a["docs"] and e["docs"][d] != a["docs"][d]]
                        fail(f"{what}: index {k}: documents differ: {len(missing)} missing (e.g. {sorted(missing)[:3]}), "
                             f"{len(extra)} extra, {len(diff)} changed (e.g. {diff[:1]} {[e['docs'][x] for x in diff[:1]]} vs {[a['docs'][x] for x in diff[:1]]})")
                    fail(f"{what}: index {k}: {part} differ:\n expected {json.dumps(e[part])[:800]}\n actual   {json.dumps(a.get(part))[:800]}")
        fail(f"{what}: {k} differs:\n expected {json.dumps(e)[:800]}\n actual   {json.dumps(a)[:800]}")
    fail(f"{what}: states differ")


def wipe(es):
    for i in es.indices.get_alias().body.keys():
        es.indices.delete(index=i)
    for t in es.indices.get_template().body.keys():
        es.indices.delete_template(name=t)


def doc_lines(directory):
    """{index: {id: source}} from the data files of a dump directory."""
    out = {}
    for path in glob.glob(os.path.join(directory, "*.json")):
        base = os.path.basename(path)
        if base.count(".") > 1 and base.rsplit(".", 2)[1] in ("mapping", "settings", "template", "alias", "analyzer", "index"):
            continue
        docs = {}
        with open(path) as f:
            for line in f:
                if line.strip():
                    h = json.loads(line)
                    docs[h["_id"]] = (h.get("_routing"), h["_source"])
        out[base[:-5]] = docs
    return out


# ---------------------------------------------------------------- tests

RESULTS = []


ONLY = [x for x in os.environ.get("ONLY", "").split(",") if x]


def test(fn):
    if ONLY and fn.__name__ not in ONLY:
        print(f"skip {fn.__name__} (ONLY={','.join(ONLY)})")
        return
    t0 = time.time()
    fn()
    RESULTS.append((fn.__name__, time.time() - t0))
    print(f"ok   {fn.__name__} ({time.time() - t0:.1f}s)", flush=True)


def main():
    global SPEC
    SPEC = load_spec()
    a = Emulator("a")
    es = a.client()
    seed(es)
    expected = state(es)
    if ".kibana_1" in expected or "products" not in expected:
        fail("seeding went wrong")
    out_full = os.path.join(TMP, "kstash-full")
    out_default = os.path.join(TMP, "kstash-default")

    def backup_restore_roundtrip_identical():
        kstash("logical-backup", a, out_full, "--ignoreAlias=false --limit=500")
        names = sorted(os.listdir(out_full))
        for i in ["empty", "large-docs", "prod-logs", "products", "routed"]:
            for suffix in [".json", ".mapping.json", ".settings.json", ".template.json", ".alias.json"]:
                if i + suffix not in names:
                    fail(f"{i}{suffix} missing from {names}")
        if any(n.startswith(".kibana") for n in names):
            fail(f"system index dumped: {names}")
        first = open(os.path.join(out_full, "routed.json")).readline()
        h = json.loads(first)
        if list(h.keys()) != ["_index", "_id", "_score", "_routing", "_source"]:
            fail(f"data line shape: {first}")
        wipe(es)
        kstash("logical-backup-restore", a, out_full, "--ignoreAlias=false --limit=500")
        assert_same(expected, state(es), "kstash backup -> restore")

    def multielasticdump_dump_restores_with_kstash():
        d = os.path.join(TMP, "med-dump")
        os.makedirs(d)
        med("--direction=dump", f"--input={a.url}", f"--output={d}", "--match=^(?![.])(?!apm-agent-configuration)(?!kubedb-system).+",
            "--ignoreAlias=false", "--parallel=2", "--interval=10")
        b = Emulator("b")
        kstash("logical-backup-restore", b, d, "--ignoreAlias=false")
        assert_same(expected, state(b.client()), "multielasticdump dump -> kstash restore")
        b.stop()

    def kstash_dump_loads_with_multielasticdump():
        kstash("logical-backup", a, out_default)
        c = Emulator("c")
        # As KubeStash runs it: its default --match skips kstash's `.`-prefixed extra files.
        med("--direction=load", f"--input={out_default}", f"--output={c.url}", "--parallel=2", "--interval=10",
            "--match=^(?![.])(?!apm-agent-configuration)(?!kubedb-system).+")
        exp = {k: {kk: vv for kk, vv in v.items() if kk != "aliases"} if k != "__templates__" else v for k, v in expected.items()}
        assert_same(exp, state(c.client(), with_aliases=False), "kstash dump -> multielasticdump load")
        c.stop()

    def tutorial_ignore_type_template_settings():
        d = os.path.join(TMP, "kstash-ignoretype")
        kstash("logical-backup", a, d, "--ignoreType=template,settings")
        names = sorted(os.listdir(d))
        bad = [n for n in names if not (n.endswith(".mapping.json") or n.count(".") == 1)]
        if bad or "products.json" not in names or "products.mapping.json" not in names:
            fail(f"--ignoreType=template,settings wrote {names}")
        if any(n.startswith(".") for n in names):
            fail(f"system index dumped: {names}")

    def bad_match_fails_with_position_before_any_request():
        d = os.path.join(TMP, "kstash-badmatch")
        before = a.log_len()
        r = kstash("logical-backup", a, d, "--match=^(?![.]abc", expect_ok=False)
        text = r.stdout + r.stderr
        if r.returncode == 0 or "--match" not in text or "position" not in text:
            fail(f"bad --match: exit {r.returncode}, output:\n{text[-2000:]}")
        time.sleep(0.2)
        if a.log_len() != before:
            fail("requests were sent despite a bad --match")
        r = kstash("logical-backup", a, d + "2", "--limit=abc", expect_ok=False)
        if r.returncode == 0 or "--limit" not in (r.stdout + r.stderr):
            fail(f"bad --limit accepted: {r.stdout + r.stderr}")

    def faults_lose_nothing():
        seed_args = ["--seed-docs", "20000", "--seed-indices", "4", "--fault-seed", "7"]
        clean = Emulator("clean", *seed_args)
        faulty = Emulator("faulty", *seed_args, "--fault-429-rate", "0.1", "--fault-5xx-rate", "0.1",
                          "--fault-drop-rate", "0.02", "--fault-bulk-item-429-rate", "0.2")
        d_clean, d_faulty = os.path.join(TMP, "f-clean"), os.path.join(TMP, "f-faulty")
        kstash("logical-backup", clean, d_clean, "--limit=1000")
        kstash("logical-backup", faulty, d_faulty, "--limit=1000")
        want = doc_lines(d_clean)
        if sum(len(v) for v in want.values()) < 20000:
            fail(f"clean backup has {sum(len(v) for v in want.values())} documents")
        got = doc_lines(d_faulty)
        if want != got:
            fail("backup under faults differs from the clean backup")
        target = Emulator("faulty-target", "--fault-429-rate", "0.1", "--fault-5xx-rate", "0.1",
                          "--fault-drop-rate", "0.02", "--fault-bulk-item-429-rate", "0.2", "--fault-seed", "9")
        kstash("logical-backup-restore", target, d_faulty, "--limit=1000")
        faults = [e for e in target.log_entries(0) if e.get("fault")]
        if len(faults) < 5:
            fail(f"only {len(faults)} faults injected")
        assert_same(state(clean.client(), with_aliases=False, with_templates=False),
                    state(target.client(), with_aliases=False, with_templates=False),
                    "restore under faults")
        for e in (clean, faulty, target):
            e.stop()

    def every_kstash_request_is_in_the_spec():
        n = 0
        for emu, start, end in KSTASH_REQUESTS:
            for entry in emu.log_entries(start, end):
                spec_check(entry)
                n += 1
        if n < 100:
            fail(f"only {n} requests checked")
        print(f"     {n} requests checked against {SPEC_DIR}")

    test(backup_restore_roundtrip_identical)
    test(multielasticdump_dump_restores_with_kstash)
    test(kstash_dump_loads_with_multielasticdump)
    test(tutorial_ignore_type_template_settings)
    test(bad_match_fails_with_position_before_any_request)
    test(faults_lose_nothing)
    test(every_kstash_request_is_in_the_spec)
    a.stop()
    print(f"roundtrip: {len(RESULTS)} passed, 0 failed")


if __name__ == "__main__":
    try:
        main()
    finally:
        for p in PROCS:
            if p.poll() is None:
                p.kill()
        if os.environ.get("KEEP_TMP"):
            print(f"kept {TMP}")
        else:
            shutil.rmtree(TMP, ignore_errors=True)
