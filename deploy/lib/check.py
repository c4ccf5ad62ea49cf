"""Offline validation of a deploy/ tree (run by deploy/check.sh; see its header).

Checks, each printed as "ok  ..." or "FAIL ...", all of them run even after a failure:
  kubevirt   KubeVirt objects against the vendored JSON schemas (deploy/schemas/), plus the
             facts the routing relies on (names, labels, probe, ports) across the manifests
  k8s        core Kubernetes objects with kubernetes-validate --strict (an unknown kind fails)
  nomad      the Nomad jobs parsed as HCL2, plus structural assertions (qemu driver, /readyz)
  haproxy    haproxy -c on haproxy.cfg with each backends file (and the Nomad template rendered
             with sample data), the generated files in sync with gen-backends.sh, and the
             pinning rules (same server names everywhere, weight 0 in the pinned backends)
Exit status: 0 when every check passed, 1 otherwise, 2 on bad usage or a missing tool.
"""

import argparse
import json
import os
import re
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path

try:
    import hcl2
    import jsonschema
    import yaml
except ImportError as e:  # a missing tool is a failure, never a skip
    sys.exit(f"check: missing Python module ({e}); run scripts/setup-python.sh")

# apiVersion/kind -> vendored schema (deploy/schemas/README.md says where they come from).
KUBEVIRT_SCHEMAS = {
    ("kubevirt.io/v1", "VirtualMachine"): "kubevirt.io/virtualmachine_v1.json",
    ("pool.kubevirt.io/v1alpha1", "VirtualMachinePool"): "pool.kubevirt.io/virtualmachinepool_v1alpha1.json",
    ("cdi.kubevirt.io/v1beta1", "DataVolume"): "cdi.kubevirt.io/datavolume_v1beta1.json",
}
# API groups kubernetes-validate knows (core Kubernetes); anything else must be in the table above.
CORE_GROUPS = {"v1", "apps/v1", "policy/v1", "batch/v1", "networking.k8s.io/v1", "autoscaling/v2"}
META_KEYS = {"name", "namespace", "labels", "annotations"}
RUN_STRATEGIES = {"Always", "RerunOnFailure", "Manual", "Halted", "Once", "WaitAsReceiver"}
K8S_VERSIONS = ["1.30.0", "1.37.0"]
APPLIANCE_PORTS = {"http": 8000, "viewer": 6081, "agent": 8001}


class Report:
    def __init__(self):
        self.passed = 0
        self.failed = 0

    def ok(self, what):
        self.passed += 1
        print(f"ok    {what}", flush=True)

    def fail(self, what, why):
        self.failed += 1
        why = str(why).strip().replace("\n", "\n        ")
        print(f"FAIL  {what}\n        {why}", flush=True)

    def check(self, what, problems):
        """problems: list of strings; empty = ok."""
        if problems:
            self.fail(what, "\n".join(problems))
        else:
            self.ok(what)


class UniqueKeyLoader(yaml.SafeLoader):
    """PyYAML keeps the last of two equal keys silently; a repeated key is a mistake here."""

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r}", key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def rel(path, base):
    return os.path.relpath(path, base)


def load_yaml_docs(path):
    with open(path, encoding="utf-8") as f:
        return [d for d in yaml.load_all(f, Loader=UniqueKeyLoader) if d is not None]


def dig(obj, *keys, default=None):
    for k in keys:
        if isinstance(obj, dict) and k in obj:
            obj = obj[k]
        elif isinstance(obj, list) and isinstance(k, int) and k < len(obj):
            obj = obj[k]
        else:
            return default
    return obj


def schema_errors(schema, obj):
    v = jsonschema.validators.validator_for(schema, default=jsonschema.Draft7Validator)(schema)
    out = []
    for e in sorted(v.iter_errors(obj), key=lambda e: list(e.absolute_path)):
        where = ".".join(str(p) for p in e.absolute_path) or "(top)"
        out.append(f"{where}: {e.message}")
    return out


def labels_match(selector, labels):
    want = (selector or {}).get("matchLabels", selector or {})
    return bool(want) and all((labels or {}).get(k) == v for k, v in want.items())


# ---------------------------------------------------------------------------------- KubeVirt


def vm_facts(vm_spec, ns, services):
    """What routing and health rely on, for one VM spec (inside a pool or standalone)."""
    p = []
    rs = vm_spec.get("runStrategy")
    if rs not in RUN_STRATEGIES:
        p.append(f"runStrategy {rs!r} is not one of {sorted(RUN_STRATEGIES)}")
    spec = dig(vm_spec, "template", "spec", default={})
    labels = dig(vm_spec, "template", "metadata", "labels", default={})
    probe = dig(spec, "readinessProbe", "httpGet", default={})
    if probe.get("path") != "/readyz" or probe.get("port") != 8000:
        p.append(f"readinessProbe must be httpGet /readyz on port 8000, got {probe}")
    disks = {d.get("name") for d in dig(spec, "domain", "devices", "disks", default=[])}
    vols = {v.get("name") for v in spec.get("volumes", [])}
    if disks != vols:
        p.append(f"disks {sorted(disks)} and volumes {sorted(vols)} must name the same set")
    for iface in dig(spec, "domain", "devices", "interfaces", default=[]):
        ports = {x.get("name"): x.get("port") for x in iface.get("ports", [])}
        if ports and ports != APPLIANCE_PORTS:
            p.append(f"interface {iface.get('name')} forwards {ports}, want {APPLIANCE_PORTS}")
    sub = spec.get("subdomain")
    headless = [s for s in services if dig(s, "spec", "clusterIP") == "None"]
    match = [s for s in headless if s["metadata"]["name"] == sub and s["metadata"].get("namespace") == ns]
    if not match:
        p.append(f"subdomain {sub!r} needs a headless Service of that name in namespace {ns!r}")
    elif not labels_match(dig(match[0], "spec", "selector"), labels):
        p.append(f"headless Service {sub} selector {dig(match[0], 'spec', 'selector')} "
                 f"does not select the VM template's labels {labels}")
    return p, sub


def check_kubevirt(r, d, schemas_dir, docs, services, k8s_backend_args):
    for path, doc in docs:
        key = (doc.get("apiVersion"), doc.get("kind"))
        what = f"kubevirt {rel(path, d)}: {key[1]} {dig(doc, 'metadata', 'name')}"
        schema = json.loads((schemas_dir / KUBEVIRT_SCHEMAS[key]).read_text(encoding="utf-8"))
        p = [f"schema: {e}" for e in schema_errors(schema, doc)]
        meta = doc.get("metadata", {})
        if not meta.get("name"):
            p.append("metadata.name is missing")
        extra = set(meta) - META_KEYS
        if extra:
            p.append(f"metadata: unexpected keys {sorted(extra)}")
        ns = meta.get("namespace")
        if key[1] == "VirtualMachinePool":
            vm_tmpl = doc["spec"].get("virtualMachineTemplate", {})
            # The template is a VirtualMachine: check it against that schema too.
            vm_schema = json.loads((schemas_dir / KUBEVIRT_SCHEMAS[("kubevirt.io/v1", "VirtualMachine")]).read_text())
            as_vm = {"apiVersion": "kubevirt.io/v1", "kind": "VirtualMachine",
                     "metadata": {"name": meta.get("name")}, "spec": vm_tmpl.get("spec", {})}
            p += [f"virtualMachineTemplate as VirtualMachine: {e}" for e in schema_errors(vm_schema, as_vm)]
            if not labels_match(doc["spec"].get("selector"), dig(vm_tmpl, "metadata", "labels")):
                p.append("spec.selector does not match virtualMachineTemplate.metadata.labels")
            facts, sub = vm_facts(vm_tmpl.get("spec", {}), ns, services)
            p += facts
            dv_schema = json.loads((schemas_dir / KUBEVIRT_SCHEMAS[("cdi.kubevirt.io/v1beta1", "DataVolume")]).read_text())
            for i, dvt in enumerate(dig(vm_tmpl, "spec", "dataVolumeTemplates", default=[])):
                as_dv = {"apiVersion": "cdi.kubevirt.io/v1beta1", "kind": "DataVolume", **dvt}
                p += [f"dataVolumeTemplates[{i}] as DataVolume: {e}" for e in schema_errors(dv_schema, as_dv)]
            # HAProxy's servers are <pool>-<i>.<subdomain>.<namespace>.svc...: same three names.
            want = {"pool": meta.get("name"), "subdomain": sub, "namespace": ns}
            got = {k: k8s_backend_args.get(k) for k in want}
            if k8s_backend_args and got != want:
                p.append(f"haproxy/backends.k8s.cfg was generated for {got}, this pool is {want} "
                         "(re-run gen-backends.sh k8s with matching options)")
        elif key[1] == "VirtualMachine":
            p += vm_facts(doc.get("spec", {}), ns, services)[0]
        r.check(what, p)


# ---------------------------------------------------------------------------------- core k8s


def check_core(r, d, kv, docs, kustomization):
    with tempfile.TemporaryDirectory(prefix="zigral-k8s-") as tmp:
        files = []
        for i, (path, doc) in enumerate(docs):
            f = Path(tmp) / f"{i:02d}-{Path(path).stem}.yaml"
            f.write_text(yaml.safe_dump(doc), encoding="utf-8")
            files.append((f, path, doc))
        for version in K8S_VERSIONS:
            for f, path, doc in files:
                what = (f"k8s {rel(path, d)}: {doc.get('kind')} {dig(doc, 'metadata', 'name')} "
                        f"(kubernetes-validate --strict, {version})")
                res = subprocess.run([kv, "--strict", "-k", version, str(f)],
                                     capture_output=True, text=True)
                out = (res.stdout + res.stderr).replace(str(f), rel(path, d))
                # Unknown kinds only WARN there (exit 0): here they fail.
                bad = [ln for ln in out.splitlines() if ln.startswith(("ERROR", "WARN"))]
                if res.returncode != 0 and not bad:
                    bad = [out.strip() or f"exit status {res.returncode}"]
                r.check(what, bad)

    # The facts that tie the core objects together (names the engine resolves at run time).
    deployments = [doc for _, doc in docs if doc.get("kind") == "Deployment"]
    services = [doc for _, doc in docs if doc.get("kind") == "Service"]
    p = []
    gen_names = {g.get("name"): g for g in (kustomization or {}).get("configMapGenerator", [])}
    for dep in deployments:
        tmpl = dig(dep, "spec", "template", default={})
        labels = dig(tmpl, "metadata", "labels", default={})
        if not labels_match(dig(dep, "spec", "selector"), labels):
            p.append(f"Deployment {dep['metadata']['name']}: selector does not match its pod labels")
        for vol in dig(tmpl, "spec", "volumes", default=[]):
            cm = dig(vol, "configMap", "name")
            if cm and kustomization is not None:
                if cm not in gen_names:
                    p.append(f"Deployment {dep['metadata']['name']}: ConfigMap {cm} is not generated by kustomization.yaml")
                else:
                    keys = {f.split("=", 1)[0] for f in gen_names[cm].get("files", [])}
                    args = " ".join(str(a) for c in dig(tmpl, "spec", "containers", default=[]) for a in c.get("args", []))
                    for k in keys:
                        if k not in args:
                            p.append(f"Deployment {dep['metadata']['name']}: config file {k} is generated but not passed to HAProxy")
    for svc in services:
        sel = dig(svc, "spec", "selector")
        if dig(svc, "spec", "clusterIP") == "None" or not sel:
            continue
        pods = [dig(dep, "spec", "template", default={}) for dep in deployments]
        hit = [t for t in pods if labels_match(sel, dig(t, "metadata", "labels"))]
        if not hit:
            p.append(f"Service {svc['metadata']['name']}: selector {sel} matches no Deployment's pods")
            continue
        named = {cp.get("name") for c in dig(hit[0], "spec", "containers", default=[]) for cp in c.get("ports", [])}
        for port in dig(svc, "spec", "ports", default=[]):
            t = port.get("targetPort")
            if isinstance(t, str) and t not in named:
                p.append(f"Service {svc['metadata']['name']}: targetPort {t!r} is not a named container port")
    r.check("k8s cross-references (selectors, ConfigMap keys, named ports)", p)


def check_kustomization(r, d, path, k):
    p = []
    for res in k.get("resources", []):
        if not (d / res).is_file():
            p.append(f"resource {res} does not exist")
    for g in k.get("configMapGenerator", []):
        for f in g.get("files", []):
            src = f.split("=", 1)[-1]
            if not (d / src).is_file():
                p.append(f"configMapGenerator {g.get('name')}: file {src} does not exist")
    if k.get("kind") != "Kustomization":
        p.append(f"kind must be Kustomization, got {k.get('kind')!r}")
    r.check(f"kustomize {rel(path, d)}: resources and generated files exist", p)


# ---------------------------------------------------------------------------------- Nomad

HCL_OPTS = hcl2.SerializationOptions(with_comments=False, with_meta=False, explicit_blocks=False,
                                     strip_string_quotes=True, preserve_heredocs=False)


def blocks(parent, key):
    """Nomad blocks of one type, as (label or None, body) pairs."""
    out = []
    for item in parent.get(key, []) if isinstance(parent, dict) else []:
        if isinstance(item, dict) and len(item) == 1 and isinstance(next(iter(item.values())), dict) \
                and key in ("job", "group", "task", "port"):
            label, body = next(iter(item.items()))
            out.append((label, body))
        else:
            out.append((None, item))
    return out


def check_nomad_appliances(job):
    p = []
    tasks = [(g, t, tb) for _, jb in blocks(job, "job") for g, gb in blocks(jb, "group")
             for t, tb in blocks(gb, "task")]
    qemu = [(g, t, tb) for g, t, tb in tasks if tb.get("driver") == "qemu"]
    if not qemu:
        return ['no task with driver = "qemu"']
    for _, jb in blocks(job, "job"):
        for g, gb in blocks(jb, "group"):
            ports = {lbl for nb in gb.get("network", []) for lbl, _ in blocks(nb, "port")}
            if not set(APPLIANCE_PORTS) <= ports:
                p.append(f"group {g}: network ports {sorted(ports)} must include {sorted(APPLIANCE_PORTS)}")
            svcs = gb.get("service", [])
            ready = [s for s in svcs if s.get("port") == "http"
                     and any(c.get("type") == "http" and c.get("path") == "/readyz" for c in s.get("check", []))]
            if not ready:
                p.append(f"group {g}: no service on port http with an http check on /readyz")
            for s in svcs:
                tags = s.get("tags", [])
                if not tags or "${NOMAD_ALLOC_INDEX}" not in tags[0]:
                    p.append(f"service {s.get('name')}: first tag must carry the appliance name (…${{NOMAD_ALLOC_INDEX}})")
    for g, t, tb in qemu:
        cfg = (tb.get("config") or [{}])[0]
        pm = (cfg.get("port_map") or [{}])[0]
        if pm != APPLIANCE_PORTS:
            p.append(f"task {t}: port_map {pm} must be {APPLIANCE_PORTS}")
        if not cfg.get("image_path"):
            p.append(f"task {t}: config.image_path is missing")
        if cfg.get("drive_interface") != "virtio":
            p.append(f"task {t}: drive_interface must be virtio (the driver's default is ide)")
    return p


# Sample service entries for rendering the Nomad backends template offline.
NOMAD_SAMPLE = {"name": "zigral-0", "address": "192.0.2.10", "http": 21000, "viewer": 21001, "agent": 21002}


def render_nomad_backends(text):
    """Render the backends template of haproxy.nomad.hcl with one sample appliance, enough for
    haproxy -c: the range/scratch actions become one concrete server per backend."""
    out = []
    current = None
    for line in text.splitlines():
        s = line.strip()
        m = re.match(r"backend (\S+)", s)
        if m:
            current = m.group(1)
        if re.fullmatch(r"(\{\{-?[^}]*-?\}\})+", s) or s.startswith("{{- range") or s.startswith("{{ range"):
            continue  # pure actions (range/end/scratch bookkeeping)
        port = NOMAD_SAMPLE["viewer"] if current == "be_viewer" else NOMAD_SAMPLE["http"]
        s2 = re.sub(r"\{\{ if scratch\.Key [^}]*\}\}(.*?)\{\{ end \}\}", r"\1", line)
        s2 = re.sub(r"\{\{ scratch\.Get [^}]*\}\}", str(NOMAD_SAMPLE["agent"]), s2)
        s2 = re.sub(r"\{\{ (\$name|index \.Tags 0) \}\}", NOMAD_SAMPLE["name"], s2)
        s2 = s2.replace("{{ .Address }}", NOMAD_SAMPLE["address"]).replace("{{ .Port }}", str(port))
        if "{{" in s2:
            raise ValueError(f"template action this check cannot render: {s2.strip()}")
        out.append(s2)
    return "\n".join(out) + "\n"


def check_nomad(r, d, haproxy, checks_env):
    files = sorted((d / "nomad").glob("*.nomad.hcl"))
    if not files:
        r.fail(f"nomad {d}/nomad", "no *.nomad.hcl job file")
    for f in files:
        what = f"nomad {rel(f, d)}"
        try:
            job = hcl2.load(open(f, encoding="utf-8"), serialization_options=HCL_OPTS)
        except Exception as e:  # python-hcl2 raises lark errors of several kinds
            r.fail(f"{what}: parses as HCL2", f"{type(e).__name__}: {e}")
            continue
        r.ok(f"{what}: parses as HCL2")
        drivers = {tb.get("driver") for _, jb in blocks(job, "job") for _, gb in blocks(jb, "group")
                   for _, tb in blocks(gb, "task")}
        if "qemu" in drivers:
            r.check(f"{what}: qemu task, ports http/viewer/agent, http check on /readyz",
                    check_nomad_appliances(job))
        for _, jb in blocks(job, "job"):
            for _, gb in blocks(jb, "group"):
                for t, tb in blocks(gb, "task"):
                    for tpl in tb.get("template", []):
                        data = tpl.get("data", "")
                        m = re.fullmatch(r'\$\{file\("([^"]+)"\)\}', data.strip())
                        if m:
                            src = d / m.group(1)
                            r.check(f"{what}: template {tpl.get('destination')} reads {m.group(1)}",
                                    [] if src.is_file() else [f"{src} does not exist (paths are relative to deploy/)"])
                        elif "nomadService" in data and "backend " in data:
                            dest = tpl.get("destination")
                            try:
                                # python-hcl2 hands heredocs back escaped like a quoted string.
                                rendered = render_nomad_backends(re.sub(r"\\(.)", r"\1", data))
                            except ValueError as e:
                                r.fail(f"{what}: template {dest} renders", e)
                                continue
                            with tempfile.NamedTemporaryFile("w", suffix=".cfg", prefix="nomad-backends-") as tf:
                                tf.write(rendered)
                                tf.flush()
                                haproxy_c(r, f"{what}: template {dest} with a sample appliance",
                                          haproxy, [d / "haproxy/haproxy.cfg", Path(tf.name)], checks_env)
                                pinning(r, f"{what}: template {dest}", tf.name)


# ---------------------------------------------------------------------------------- HAProxy


def haproxy_c(r, what, haproxy, cfgs, env):
    cmd = [haproxy, "-c"]
    for c in cfgs:
        cmd += ["-f", str(c)]
    res = subprocess.run(cmd, capture_output=True, text=True, env=env)
    out = (res.stdout + res.stderr).strip()
    if res.returncode == 0:
        r.ok(f"{what} (haproxy -c)")
    else:
        r.fail(f"{what} (haproxy -c)", out or f"exit status {res.returncode}")


def parse_backends(path):
    """backend name -> {"servers": {name: line}, "default": default-server line, "lines": [...]}"""
    out, cur = {}, None
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        s = line.strip()
        if not s or s.startswith("#"):
            continue
        if re.match(r"^(backend|frontend|listen|defaults|global|resolvers|http-errors)\b", s):
            cur = s.split()[1] if s.startswith("backend") else None
            if cur:
                out[cur] = {"servers": {}, "default": "", "lines": []}
            continue
        if cur is None:
            continue
        out[cur]["lines"].append(s)
        if s.startswith("server "):
            out[cur]["servers"][s.split()[1]] = s
        elif s.startswith("default-server "):
            out[cur]["default"] = s
    return out


def _weight(line):
    m = re.search(r"\bweight (\d+)", line)
    return int(m.group(1)) if m else None


def pinning(r, what, path):
    """The rules that keep a session on its appliance, read from a backends file."""
    b = parse_backends(path) or {}
    p = []
    for name in ("be_pool", "be_control", "be_viewer"):
        if name not in b:
            p.append(f"backend {name} is missing")
    if not p:
        names = {k: set(v["servers"]) for k, v in b.items() if k in ("be_pool", "be_control", "be_viewer")}
        if len({frozenset(s) for s in names.values()}) != 1:
            p.append(f"the three backends must list the same server names, got {names}")
        for pinned in ("be_control", "be_viewer"):
            be = b[pinned]
            if not any(ln.startswith("use-server %[var(txn.appliance)]") for ln in be["lines"]):
                p.append(f"{pinned}: no 'use-server %[var(txn.appliance)]' rule")
            if any(ln.startswith("option redispatch") for ln in be["lines"]):
                p.append(f"{pinned}: option redispatch would move a session to another appliance")
            for srv, line in be["servers"].items():
                w = _weight(line)
                w = _weight(be["default"]) if w is None else w
                if w != 0:
                    p.append(f"{pinned}/{srv}: weight must be 0 (got {w}): an unknown name would be load-balanced onto it")
        pool = b["be_pool"]
        if "balance leastconn" not in pool["lines"]:
            p.append("be_pool: balance leastconn is missing")
        for pinned in ("be_pool", "be_control"):
            if "option httpchk GET /readyz" not in b[pinned]["lines"]:
                p.append(f"{pinned}: option httpchk GET /readyz is missing")
    r.check(f"{what}: pinning rules (same names, weight 0 when pinned, no redispatch, leastconn)", p)


def generated_args(path):
    first = Path(path).read_text(encoding="utf-8").splitlines()[0]
    m = re.match(r"# GENERATED by: gen-backends\.sh (.*)$", first)
    return shlex.split(m.group(1).split("<")[0]) if m else None


def check_haproxy(r, d, haproxy, env):
    hd = d / "haproxy"
    main = hd / "haproxy.cfg"
    backends = sorted(hd.glob("backends.*.cfg"))
    if not backends:
        r.fail(f"haproxy {rel(hd, d)}", "no backends.*.cfg file")
    k8s_args = {}
    for b in backends:
        what = f"haproxy {rel(main, d)} + {rel(b, d)}"
        haproxy_c(r, what, haproxy, [main, b], env)
        pinning(r, f"haproxy {rel(b, d)}", b)
        args = generated_args(b)
        if args is None:
            r.fail(f"haproxy {rel(b, d)}: generated by gen-backends.sh", "first line must be '# GENERATED by: gen-backends.sh ...'")
            continue
        stdin = None
        if args[0] == "static":
            stdin = (hd / "appliances.static.txt").read_text(encoding="utf-8")
        res = subprocess.run(["bash", str(hd / "gen-backends.sh"), *args], input=stdin,
                             capture_output=True, text=True)
        same = res.returncode == 0 and res.stdout == b.read_text(encoding="utf-8")
        r.check(f"haproxy {rel(b, d)}: in sync with gen-backends.sh {' '.join(args)}",
                [] if same else [res.stderr.strip() or "differs from the generator's output: re-run it (see the file's first line)"])
        if args[0] == "k8s":
            it = iter(args[1:])
            k8s_args = {k.lstrip("-"): v for k, v in zip(it, it)}
    return k8s_args


# ---------------------------------------------------------------------------------- main


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dir", required=True, type=Path)
    ap.add_argument("--haproxy", required=True)
    ap.add_argument("--kubernetes-validate", required=True, dest="kv")
    a = ap.parse_args()
    d = a.dir.resolve()
    r = Report()
    # haproxy -c must not depend on the caller's environment (the config reads ZIGRAL_*).
    env = {k: v for k, v in os.environ.items() if not k.startswith("ZIGRAL_")}

    k8s_args = check_haproxy(r, d, a.haproxy, env)

    kv_docs, core_docs, services, kustomization = [], [], [], None
    for f in sorted((d / "kubevirt").glob("*.yaml")):
        try:
            docs = load_yaml_docs(f)
        except yaml.YAMLError as e:
            r.fail(f"yaml {rel(f, d)}: parses", e)
            continue
        r.ok(f"yaml {rel(f, d)}: parses ({len(docs)} objects)")
        for doc in docs:
            key = (doc.get("apiVersion"), doc.get("kind"))
            if key in KUBEVIRT_SCHEMAS:
                kv_docs.append((f, doc))
            elif key[0] in CORE_GROUPS:
                core_docs.append((f, doc))
                if key[1] == "Service":
                    services.append(doc)
            else:
                r.fail(f"yaml {rel(f, d)}: {key[1]} {dig(doc, 'metadata', 'name')}",
                       f"unknown apiVersion/kind {key}: add its schema to deploy/schemas and check.py")
    kz = d / "kustomization.yaml"
    if kz.is_file():
        try:
            kustomization = load_yaml_docs(kz)[0]
            check_kustomization(r, d, kz, kustomization)
        except yaml.YAMLError as e:
            r.fail(f"yaml {rel(kz, d)}: parses", e)
    if not kv_docs:
        r.fail("kubevirt", "no KubeVirt object found under kubevirt/")
    check_kubevirt(r, d, d / "schemas", kv_docs, services, k8s_args)
    check_core(r, d, a.kv, core_docs, kustomization)
    check_nomad(r, d, a.haproxy, env)

    print(f"deploy/check.sh {d}: {r.passed} passed, {r.failed} failed")
    return 1 if r.failed else 0


if __name__ == "__main__":
    sys.exit(main())
