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
        self.opensearch = "opensearch" in extra
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
SPEC_OS = None


def spec_check(entry, opensearch=False):
    """The endpoint a logged request matches, or raise naming what is wrong (against the
    OpenSearch variant of the spec for an emulator answering as OpenSearch)."""
    endpoints, common = SPEC_OS if opensearch else SPEC
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
        if base.startswith(".") and not base.startswith(".datastream."):
            continue  # kstash's cluster files and manifest
        if base.count(".") > 1 and not base.startswith(".datastream.") and base.rsplit(".", 2)[1] in ("mapping", "settings", "template", "alias", "analyzer", "index"):
            continue
        docs = {}
        with open(path) as f:
            for line in f:
                if line.strip():
                    h = json.loads(line)
                    docs[h["_id"]] = (h.get("_routing"), h["_source"])
        out[base[:-5]] = docs
    return out


def dump_ids(directory):
    """{index: [id, …]} of the data files of a dump directory, in file order, repeats kept (the
    exactly-once checks need them)."""
    out = {}
    for path in glob.glob(os.path.join(directory, "*.json")):
        base = os.path.basename(path)
        if base.startswith("."):
            continue
        if base.count(".") > 1 and base.rsplit(".", 2)[1] in ("mapping", "settings", "template", "alias", "analyzer", "index"):
            continue
        with open(path) as f:
            out[base[:-5]] = [json.loads(l)["_id"] for l in f if l.strip()]
    return out


# ---------------------------------------------------------------- raw REST (both flavours)
#
# The complete round trips compare clusters through plain REST calls, not the Python client:
# the official client refuses to talk to OpenSearch, and the judge must not be the addon's reader.


def rest(url, method, path, body=None, ok=(200, 201), ndjson=False):
    import urllib.request
    import urllib.error
    data = None
    headers = {}
    if body is not None:
        if ndjson:
            data = ("".join(json.dumps(l) + "\n" for l in body)).encode()
            headers["content-type"] = "application/x-ndjson"
        else:
            data = json.dumps(body).encode()
            headers["content-type"] = "application/json"
    req = urllib.request.Request(url + path, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=120) as r:
            status, text = r.status, r.read()
    except urllib.error.HTTPError as e:
        status, text = e.code, e.read()
    v = json.loads(text) if text else None
    if ok and status not in ok:
        fail(f"{method} {path}: {status} {text[:600]!r}")
    return v


def seed_everything(url, opensearch=False):
    """Every part a default backup must capture: open and closed indices with aliases, routing,
    nested objects, unicode and large documents; a data stream with its composable template built
    of a component template; an ILM policy (Elasticsearch only); an ingest pipeline."""
    if not opensearch:
        rest(url, "PUT", "/_ilm/policy/rollover-daily", {"policy": {
            "_meta": {"owner": "team-a"},
            "phases": {"hot": {"min_age": "0ms", "actions": {"rollover": {"max_age": "1d"}}},
                       "delete": {"min_age": "30d", "actions": {"delete": {}}}}}})
    rest(url, "PUT", "/_ingest/pipeline/stamp", {
        "description": "adds a field", "processors": [{"set": {"field": "stamped", "value": "yes"}}]})
    rest(url, "PUT", "/_component_template/app-mappings", {"template": {"mappings": {"properties": {
        "@timestamp": {"type": "date"}, "msg": {"type": "text"}, "level": {"type": "keyword"}}}}})
    ds_settings = {"index.default_pipeline": "stamp"}
    if not opensearch:
        ds_settings["index.lifecycle.name"] = "rollover-daily"
    rest(url, "PUT", "/_index_template/app-logs", {
        "index_patterns": ["app-logs*"], "data_stream": {}, "composed_of": ["app-mappings"],
        "priority": 200, "template": {"settings": ds_settings}, "_meta": {"why": "test"}})
    rest(url, "PUT", "/_template/legacy-web", {"index_patterns": ["web-*"], "order": 2,
                                                "settings": {"number_of_shards": 1},
                                                "mappings": {"properties": {"host": {"type": "keyword"}}}})
    rest(url, "PUT", "/catalog", {"settings": {"number_of_shards": 3, "number_of_replicas": 0},
                                  "mappings": {"properties": {
                                      "name": {"type": "text", "fields": {"raw": {"type": "keyword"}}},
                                      "parts": {"type": "nested", "properties": {"sku": {"type": "keyword"}}}}}})
    rest(url, "PUT", "/routed-x", {"mappings": {"_routing": {"required": True}, "properties": {"n": {"type": "long"}}}})
    rest(url, "PUT", "/archive-2023", {"mappings": {"properties": {"y": {"type": "keyword"}}}})
    rest(url, "POST", "/_aliases", {"actions": [
        {"add": {"index": "catalog", "alias": "catalog-read"}},
        {"add": {"index": "catalog", "alias": "catalog-cheap", "filter": {"range": {"price": {"lt": 10}}}}},
        {"add": {"index": "archive-2023", "alias": "archives"}}]})
    lines = []
    for i in range(1200):
        lines += [{"index": {"_index": "catalog", "_id": f"c{i}"}},
                  {"name": f"Ding ü {i} 日本語 🚀", "price": i % 40,
                   "parts": [{"sku": f"{i}-{j}"} for j in range(2)], "deep": {"a": {"b": {"c": i}}}}]
    for i in range(3):
        lines += [{"index": {"_index": "catalog", "_id": f"big{i}"}}, {"name": "big", "blob": "ω" * 150_000}]
    for i in range(100):
        lines += [{"index": {"_index": "routed-x", "_id": f"r{i}", "routing": f"u{i % 7}"}}, {"n": i}]
    for i in range(40):
        lines += [{"index": {"_index": "archive-2023", "_id": f"a{i}"}}, {"y": str(i)}]
    for i in range(30):
        lines += [{"index": {"_index": "web-1", "_id": f"w{i}"}}, {"host": f"h{i}"}]
    for i in range(250):
        lines += [{"create": {"_index": "app-logs"}},
                  {"@timestamp": f"2024-01-01T00:{i // 60:02d}:{i % 60:02d}Z", "msg": f"event {i}", "level": "info"}]
    r = rest(url, "POST", "/_bulk?refresh=true", lines, ndjson=True)
    if r.get("errors"):
        fail(f"seeding: {json.dumps([it for it in r['items'] if any(v.get('error') for v in it.values())][:2])}")
    rest(url, "POST", "/archive-2023/_close")


def scroll_docs(url, index):
    """{_id: (_routing, _source)} of `index` via a plain scroll (works on both flavours)."""
    docs = {}
    r = rest(url, "POST", f"/{index}/_search?scroll=1m", {"size": 500, "sort": ["_doc"]})
    while True:
        hits = r["hits"]["hits"]
        if not hits:
            break
        for h in hits:
            if h["_id"] in docs:
                fail(f"{index}: {h['_id']} seen twice")
            docs[h["_id"]] = (h.get("_routing"), h["_source"])
        r = rest(url, "POST", "/_search/scroll", {"scroll": "1m", "scroll_id": r["_scroll_id"]})
    rest(url, "DELETE", "/_search/scroll", {"scroll_id": r["_scroll_id"]})
    return docs


def full_state(url, opensearch=False):
    """The whole user-visible cluster through the REST API. Closed indices are opened to read
    their documents and closed again."""
    out = {}
    cat = rest(url, "GET", "/_cat/indices?format=json&h=index,status&expand_wildcards=all")
    status = {r["index"]: r["status"] for r in cat}
    streams = rest(url, "GET", "/_data_stream?expand_wildcards=all")["data_streams"]
    backing = {i["index_name"] for d in streams for i in d["indices"]}
    for i in sorted(status):
        if i.startswith(".") or i in backing:
            continue
        closed = status[i] == "close"
        if closed:
            rest(url, "POST", f"/{i}/_open")
        s = rest(url, "GET", f"/{i}/_settings")[i]["settings"]["index"]
        out[f"index/{i}"] = {
            "status": status[i],
            "mappings": rest(url, "GET", f"/{i}/_mapping")[i]["mappings"],
            "aliases": rest(url, "GET", f"/{i}/_alias")[i]["aliases"],
            "shards": s.get("number_of_shards"),
            "docs": scroll_docs(url, i),
        }
        if closed:
            rest(url, "POST", f"/{i}/_close")
    for d in streams:
        n = d["name"]
        out[f"data_stream/{n}"] = {"template": d["template"], "backing": len(d["indices"]) > 0,
                                  "docs": scroll_docs(url, n)}
    out["index_templates"] = {t["name"]: t["index_template"]
                              for t in rest(url, "GET", "/_index_template")["index_templates"]}
    out["component_templates"] = {t["name"]: t["component_template"]
                                  for t in rest(url, "GET", "/_component_template")["component_templates"]}
    out["legacy_templates"] = {k: v for k, v in rest(url, "GET", "/_template").items()
                               if k not in SYSTEM_TEMPLATE and not k.startswith(".")}
    out["pipelines"] = rest(url, "GET", "/_ingest/pipeline", ok=(200, 404)) or {}
    if not opensearch:
        out["ilm"] = {k: v["policy"] for k, v in rest(url, "GET", "/_ilm/policy").items()}
    return out


def assert_same_state(expected, actual, what):
    if expected == actual:
        return
    for k in sorted(set(expected) | set(actual)):
        e, a = expected.get(k), actual.get(k)
        if e == a:
            continue
        if isinstance(e, dict) and isinstance(a, dict):
            for part in sorted(set(e) | set(a)):
                if e.get(part) != a.get(part):
                    if part == "docs":
                        ed, ad = e["docs"], a["docs"]
                        missing, extra = set(ed) - set(ad), set(ad) - set(ed)
                        changed = [x for x in ed if x in ad and ed[x] != ad[x]]
                        fail(f"{what}: {k}: documents differ: {len(missing)} missing {sorted(missing)[:3]}, "
                             f"{len(extra)} extra {sorted(extra)[:3]}, {len(changed)} changed {changed[:2]}")
                    fail(f"{what}: {k}: {part} differs:\n expected {json.dumps(e.get(part))[:800]}\n"
                         f" actual   {json.dumps(a.get(part))[:800]}")
        fail(f"{what}: {k} differs:\n expected {json.dumps(e)[:800]}\n actual   {json.dumps(a)[:800]}")


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
    global SPEC, SPEC_OS
    SPEC = load_spec()
    SPEC_OS = load_spec(opensearch=True)
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
        # The tutorial's `--ignoreType=template,settings` leaves out exactly those two parts
        # (legacy templates and index settings); every other part stays in the dump.
        d = os.path.join(TMP, "kstash-ignoretype")
        kstash("logical-backup", a, d, "--ignoreType=template,settings")
        names = sorted(os.listdir(d))
        bad = [n for n in names if n.endswith((".settings.json", ".template.json"))
               or n == ".cluster.legacy_templates.json" or n.startswith(".kibana")]
        if bad or "products.json" not in names or "products.mapping.json" not in names \
                or "products.alias.json" not in names or ".kstash.manifest.json" not in names:
            fail(f"--ignoreType=template,settings wrote {names}")
        manifest = json.load(open(os.path.join(d, ".kstash.manifest.json")))
        if "template" in manifest["parts"] or "settings" in manifest["parts"] or "data" not in manifest["parts"]:
            fail(f"manifest parts {manifest['parts']}")

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

    def complete_roundtrip(flavor):
        extra = ["--builtins"] + (["--flavor", "opensearch"] if flavor == "opensearch" else [])
        os_mode = flavor == "opensearch"
        src = Emulator(f"all-{flavor}", *extra)
        seed_everything(src.url, opensearch=os_mode)
        want = full_state(src.url, opensearch=os_mode)
        for k in ["index/catalog", "index/routed-x", "index/archive-2023", "index/web-1", "data_stream/app-logs"]:
            if k not in want or not want[k]["docs"]:
                fail(f"{flavor}: seeding went wrong: {k} missing or empty in {sorted(want)}")
        if want["index/archive-2023"]["status"] != "close":
            fail(f"{flavor}: archive-2023 is not closed")
        d = os.path.join(TMP, f"kstash-all-{flavor}")
        r = kstash("logical-backup", src, d)
        names = set(os.listdir(d))
        for f in [".kstash.manifest.json", ".cluster.data_streams.json", ".cluster.index_templates.json",
                  ".cluster.component_templates.json", ".cluster.ingest_pipelines.json", ".datastream.app-logs.json",
                  "archive-2023.json", "catalog.alias.json"] + ([] if os_mode else [".cluster.ilm_policies.json"]):
            if f not in names:
                fail(f"{flavor}: {f} missing from the default dump {sorted(names)}")
        if any(n.startswith(".ds-") for n in names):
            fail(f"{flavor}: backing indices dumped as indices: {sorted(names)}")
        if want != full_state(src.url, opensearch=os_mode):
            fail(f"{flavor}: the backup changed the source cluster")
        dst = Emulator(f"all-{flavor}-target", *extra)
        kstash("logical-backup-restore", dst, d)
        got = full_state(dst.url, opensearch=os_mode)
        assert_same_state(want, got, f"{flavor}: default backup -> fresh cluster -> default restore")
        manifest = json.load(open(os.path.join(d, ".kstash.manifest.json")))
        if manifest["indices"]["catalog"]["documents"] != 1203 or not manifest["indices"]["archive-2023"]["closed"]:
            fail(f"{flavor}: manifest {json.dumps(manifest)[:600]}")
        if "count index/catalog = 1203" not in r.stdout + r.stderr:
            fail(f"{flavor}: no per-index count in the task's output:\n{(r.stdout + r.stderr)[-1500:]}")
        # A second restore onto the now full target must refuse (documents exist), naming the index.
        r2 = kstash("logical-backup-restore", dst, d, expect_ok=False)
        if r2.returncode == 0:
            fail(f"{flavor}: restore over existing documents succeeded")
        src.stop()
        dst.stop()
        return d

    def default_roundtrip_restores_everything():
        complete_roundtrip("elasticsearch")

    def opensearch_roundtrip_restores_everything():
        complete_roundtrip("opensearch")

    def crafted_file_names_are_refused_before_any_request():
        for bad in ["_all", "*", "-x", "+x", "a,b"]:
            d = os.path.join(TMP, f"crafted-{len(bad)}-{abs(hash(bad))}")
            os.makedirs(d)
            with open(os.path.join(d, f"{bad}.json"), "w") as f:
                f.write(json.dumps({"_index": "x", "_id": "1", "_source": {}}) + "\n")
            with open(os.path.join(d, "fine.json"), "w") as f:
                f.write(json.dumps({"_index": "fine", "_id": "1", "_source": {}}) + "\n")
            before = a.log_len()
            r = kstash("logical-backup-restore", a, d, "--delete=true", expect_ok=False)
            text = r.stdout + r.stderr
            if r.returncode == 0 or "refused" not in text or bad not in text:
                fail(f"crafted {bad}.json: exit {r.returncode}, output:\n{text[-1500:]}")
            time.sleep(0.2)
            if a.log_len() != before:
                fail(f"crafted {bad}.json: requests were sent: {a.log_entries(before)[:3]}")

    def pit_expiry_with_shuffled_shards_loses_nothing():
        seed_args = ["--seed-docs", "12000", "--seed-indices", "3", "--seed-large-doc-bytes", "0"]
        clean = Emulator("pit-clean", *seed_args)
        d_clean = os.path.join(TMP, "pit-clean")
        kstash("logical-backup", clean, d_clean, "--limit=500")
        want = doc_lines(d_clean)
        if sum(len(v) for v in want.values()) != 12000:
            fail(f"clean backup has {sum(len(v) for v in want.values())} documents")
        for flavor in ["elasticsearch", "opensearch"]:
            faulty = Emulator(f"pit-{flavor}", *seed_args, "--flavor", flavor, "--fault-pit-expire-every", "4",
                              "--fault-shuffle-shards")
            d = os.path.join(TMP, f"pit-{flavor}")
            r = kstash("logical-backup", faulty, d, "--limit=500", expect_ok=False)
            expired = [e for e in faulty.log_entries(0) if e.get("status") == 404 and "search" in e.get("path", "")]
            if not expired:
                fail(f"{flavor}: no PIT expired")
            if r.returncode == 0:
                if doc_lines(d) != want:
                    fail(f"{flavor}: backup after PIT expiry Succeeded with other documents than the clean one")
            elif "index" not in (r.stdout + r.stderr) or "point in time" not in (r.stdout + r.stderr).lower():
                fail(f"{flavor}: backup after PIT expiry failed without naming the index and the cause:\n"
                     f"{(r.stdout + r.stderr)[-1500:]}")
            faulty.stop()
        clean.stop()

    def shard_failures_fail_naming_the_index():
        f = Emulator("shardfail", "--seed-docs", "3000", "--seed-indices", "2", "--seed-large-doc-bytes", "0",
                     "--fault-shard-failure-rate", "1.0", "--fault-path", "_search")
        d = os.path.join(TMP, "shardfail")
        r = kstash("logical-backup", f, d, "--limit=500", expect_ok=False)
        text = r.stdout + r.stderr
        if r.returncode == 0:
            fail("backup with failed shards Succeeded")
        if "shard" not in text or "index" not in text:
            fail(f"shard failure not named:\n{text[-1500:]}")
        if os.path.exists(os.path.join(d, ".kstash.manifest.json")):
            fail("a failed backup wrote its manifest")
        f.stop()

    def scroll_mode_roundtrips_and_a_lost_scroll_answer_loses_nothing():
        # A server without a point-in-time API (as Elasticsearch before 7.10): the addon scrolls.
        seed_args = ["--seed-docs", "6000", "--seed-indices", "2", "--seed-large-doc-bytes", "0", "--no-pit"]

        def rest_ids(url):
            cat = rest(url, "GET", "/_cat/indices?format=json&h=index")
            return {r["index"]: scroll_docs(url, r["index"]) for r in cat if not r["index"].startswith(".")}

        def scrolled(emu, start):
            entries = emu.log_entries(start)
            pits = [e for e in entries if e["path"].endswith("/_pit") and e["status"] == 200]
            conts = [e for e in entries if e["method"] == "POST" and e["path"] == "/_search/scroll"]
            if pits or not conts:
                fail(f"{emu.name}: not read with a scroll ({len(pits)} PITs, {len(conts)} continuations)")

        # 1. A clean scroll-mode backup round-trips: every document once, restored identical.
        src = Emulator("scroll-src", *seed_args)
        want = rest_ids(src.url)
        if sum(len(v) for v in want.values()) != 6000:
            fail(f"scroll-src: seeded {sum(len(v) for v in want.values())} documents")
        d = os.path.join(TMP, "scroll-clean")
        start = src.log_len()
        r = kstash("logical-backup", src, d, "--limit=500")
        scrolled(src, start)
        if "reading with a scroll" not in r.stdout + r.stderr:
            fail(f"scroll-src: no scroll warning in the output:\n{(r.stdout + r.stderr)[-1500:]}")
        got = dump_ids(d)
        for i, docs in want.items():
            ids = got.get(i, [])
            if len(ids) != len(set(ids)) or set(ids) != set(docs):
                fail(f"scroll-src: {i}: {len(ids)} lines, {len(set(ids))} distinct ids, {len(docs)} expected")
        dst = Emulator("scroll-dst", "--no-pit")
        kstash("logical-backup-restore", dst, d, "--limit=500")
        restored = rest_ids(dst.url)
        if restored != want:
            fail(f"scroll mode: restored documents differ: {sorted((i, len(v)) for i, v in restored.items())} "
                 f"vs {sorted((i, len(v)) for i, v in want.items())}")
        dst.stop()

        # 2. Every third scroll continuation is executed and its answer lost: the backup either
        # has every document exactly once or fails naming the index; the lost continuation is
        # never sent again (that would return the next page and skip the lost one).
        lost = Emulator("scroll-lost", *seed_args, "--fault-scroll-lost-answer-every", "3")
        # (Seeding is deterministic; counted here, as a scroll would meet the fault.)
        if {i: rest(lost.url, "GET", f"/{i}/_count")["count"] for i in want} != {i: len(v) for i, v in want.items()}:
            fail("scroll-lost: not seeded like scroll-src")
        d = os.path.join(TMP, "scroll-lost")
        start = lost.log_len()
        r = kstash("logical-backup", lost, d, "--limit=500", expect_ok=False)
        text = r.stdout + r.stderr
        entries = lost.log_entries(start)
        cut = [k for k, e in enumerate(entries) if e.get("fault") == "lost-answer"]
        if not cut:
            fail("scroll-lost: no scroll answer was lost")
        after = entries[cut[0] + 1] if cut[0] + 1 < len(entries) else None
        if after is not None and after["method"] == "POST" and after["path"] == "/_search/scroll":
            fail(f"scroll-lost: the lost continuation was sent again: {entries[cut[0]:cut[0] + 3]}")
        if r.returncode == 0:
            got = dump_ids(d)
            for i, docs in want.items():
                ids = got.get(i, [])
                if len(ids) != len(set(ids)) or set(ids) != set(docs):
                    fail(f"scroll-lost: Succeeded with {i}: {len(ids)} lines, {len(set(ids))} distinct, "
                         f"{len(docs)} expected")
        else:
            named = [i for i in want if f"index {i}:" in text]
            if not named or "cannot ask for a page again" not in text:
                fail(f"scroll-lost: failed without naming the index and the lost scroll page:\n{text[-1500:]}")
            if os.path.exists(os.path.join(d, ".kstash.manifest.json")):
                fail("scroll-lost: a failed backup wrote its manifest")
        lost.stop()
        src.stop()

    def every_kstash_request_is_in_the_spec():
        n = 0
        for emu, start, end in KSTASH_REQUESTS:
            for entry in emu.log_entries(start, end):
                spec_check(entry, emu.opensearch)
                n += 1
        if n < 100:
            fail(f"only {n} requests checked")
        print(f"     {n} requests checked against {SPEC_DIR}")

    test(backup_restore_roundtrip_identical)
    test(default_roundtrip_restores_everything)
    test(opensearch_roundtrip_restores_everything)
    test(crafted_file_names_are_refused_before_any_request)
    test(pit_expiry_with_shuffled_shards_loses_nothing)
    test(shard_failures_fail_naming_the_index)
    test(multielasticdump_dump_restores_with_kstash)
    test(kstash_dump_loads_with_multielasticdump)
    test(tutorial_ignore_type_template_settings)
    test(bad_match_fails_with_position_before_any_request)
    test(faults_lose_nothing)
    test(scroll_mode_roundtrips_and_a_lost_scroll_answer_loses_nothing)
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
