#!/usr/bin/env python3
"""Validates pgsplit's Kubernetes manifests (deploy/kubernetes).

Run through scripts/k8s-validate.sh, which installs what this needs in a
virtualenv: kubernetes-validate (the Kubernetes API's JSON schemas, for
every version from 1.25) and cloudcoil.models.prometheus_operator (the
ServiceMonitor CRD's schema as pydantic models), plus kubectl for
`kubectl kustomize`.

What it checks, for a directory DIR:
  1. every kustomization under DIR renders (`kubectl kustomize`);
  2. every object rendered, and every plain manifest file, against the
     Kubernetes schemas of K8S_VERSIONS, strictly (an unknown field is an
     error, as `kubectl apply --validate=strict` would make it); the
     ServiceMonitor against its CRD's schema; any other kind is an error,
     since nothing could check it;
  3. every plain manifest file is part of some kustomization's output (a
     file nobody applies is a mistake);
  4. the fleet holds together: the config Secret's config.toml parses and
     its ports are the container's, peers_dns names the headless Service
     in its namespace, the grace period covers preStop and
     shutdown_timeout, the Services, the PodDisruptionBudget and the
     ServiceMonitor select what they should, and the pod keeps the
     restricted Pod Security Standard with a read-only root filesystem;
     with --dockerfile, the pod runs that image's binary as its user.

With `--self-test`, once DIR validates, it copies DIR, breaks the copy in
one way at a time and expects each break to be found: that the validation
validates.
"""

import argparse
import base64
import functools
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import tomllib

import kubernetes_validate.utils as kv
import yaml

# The oldest Kubernetes version the manifests promise to fit, and the newest
# kubernetes-validate knows. Both are checked: a field added after the
# oldest, or removed by the newest, is found.
DEFAULT_K8S_VERSIONS = ["1.29.0", "1.37.0"]

KUSTOMIZATION_FILES = ("kustomization.yaml", "kustomization.yml", "Kustomization")


def kn(obj):
    """The name a person would look for: Kind/name."""
    meta = obj.get("metadata") or {}
    return f"{obj.get('kind', '?')}/{meta.get('name', '?')}"


def load_yaml(text, where):
    try:
        return [d for d in yaml.safe_load_all(text) if d]
    except yaml.YAMLError as e:
        raise ValueError(f"{where}: not YAML: {' '.join(str(e).split())}") from e


def kustomization_dirs(root):
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        if any(f in filenames for f in KUSTOMIZATION_FILES):
            found.append(dirpath)
    return found


def plain_manifests(root):
    """Every .yaml file that is not a kustomization."""
    files = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for f in sorted(filenames):
            if f.endswith((".yaml", ".yml")) and f not in KUSTOMIZATION_FILES:
                files.append(os.path.join(dirpath, f))
    return files


def render(kubectl, directory):
    run = subprocess.run(
        [kubectl, "kustomize", directory], capture_output=True, text=True
    )
    if run.returncode != 0:
        message = " ".join(run.stderr.split())
        raise ValueError(f"{directory}: kubectl kustomize failed: {message}")
    return load_yaml(run.stdout, f"kubectl kustomize {directory}")


# Schemas ---------------------------------------------------------------------


# kubernetes-validate reads and parses a schema file (the definitions are
# 1 MB of JSON) for every object it checks; the files do not change.
kv.schema_contents = functools.lru_cache(maxsize=None)(kv.schema_contents)


def schema_errors(obj, versions):
    """What the Kubernetes API schemas, or the ServiceMonitor CRD's, refuse."""
    # The same object comes out of several kustomizations and copies.
    return list(_schema_errors(json.dumps(obj, sort_keys=True, default=str), tuple(versions)))


@functools.lru_cache(maxsize=None)
def _schema_errors(obj_json, versions):
    obj = json.loads(obj_json)
    if not isinstance(obj, dict) or "kind" not in obj or "apiVersion" not in obj:
        return ["not a Kubernetes object (no kind or apiVersion)"]
    if obj["kind"] == "ServiceMonitor":
        return servicemonitor_errors(obj)
    errors = []
    for version in versions:
        try:
            kv.validate(obj, version, strict=True)
        except kv.ValidationError as e:
            path = ".".join(str(p) for p in e.path)
            errors.append(f"Kubernetes {e.version}: {path}: {e.message}")
        except kv.SchemaNotFoundError:
            errors.append(
                f"no schema for {obj['apiVersion']} {obj['kind']} in Kubernetes"
                f" {version}: nothing here can check it"
            )
    return errors


def servicemonitor_errors(obj):
    """The CRD's schema (types, patterns, required fields) through the
    pydantic models generated from it; pydantic drops unknown fields
    silently, so a field that does not come back out is reported."""
    # Imported here: the models take seconds to import, and only a
    # ServiceMonitor needs them.
    import pydantic
    from cloudcoil.models.prometheus_operator.v1 import ServiceMonitor

    try:
        model = ServiceMonitor.model_validate(obj)
    except pydantic.ValidationError as e:
        return [
            f"ServiceMonitor CRD: {'.'.join(str(p) for p in err['loc'])}: {err['msg']}"
            for err in e.errors()
        ]
    back = model.model_dump(by_alias=True, exclude_unset=True, mode="json")
    return [
        f"ServiceMonitor CRD: {path}: unknown field"
        for path in unknown_fields(obj, back, "")
    ]


def unknown_fields(given, kept, path):
    if isinstance(given, dict) and isinstance(kept, dict):
        for key, value in given.items():
            where = f"{path}.{key}" if path else key
            if key not in kept:
                yield where
            else:
                yield from unknown_fields(value, kept[key], where)
    elif isinstance(given, list) and isinstance(kept, list):
        for i, (g, k) in enumerate(zip(given, kept)):
            yield from unknown_fields(g, k, f"{path}[{i}]")


# The fleet -------------------------------------------------------------------


def port_of(addr):
    return int(addr.rsplit(":", 1)[1])


def selects(selector, labels):
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def fleet_errors(objs, dockerfile=None):
    """Cross-checks of one rendered fleet (a Deployment named pgsplit)."""
    by_kind = {}
    for o in objs:
        by_kind.setdefault(o.get("kind"), []).append(o)
    deployments = [d for d in by_kind.get("Deployment", []) if d["metadata"]["name"] == "pgsplit"]
    if not deployments:
        return ["no Deployment named pgsplit"]
    dep = deployments[0]
    errors = []
    namespace = dep["metadata"].get("namespace")
    if not namespace:
        errors.append("Deployment/pgsplit has no namespace (kustomization.yaml's namespace)")
    pod = dep["spec"]["template"]
    pod_labels = pod["metadata"].get("labels", {})
    if not selects(dep["spec"]["selector"].get("matchLabels", {}), pod_labels):
        errors.append("Deployment/pgsplit: its selector does not select its pods")
    container = next((c for c in pod["spec"]["containers"] if c["name"] == "pgsplit"), None)
    if container is None:
        return errors + ["Deployment/pgsplit has no container named pgsplit"]
    ports = {p.get("name"): p["containerPort"] for p in container.get("ports", [])}

    config = fleet_config(objs, pod, errors)
    if config is not None:
        for key, name in [("listen", "postgres"), ("metrics_listen", "metrics")]:
            addr = config.get(key)
            if addr is None:
                errors.append(f"config.toml: {key} is not set (the probes and Services need it)")
            elif ports.get(name) != port_of(addr):
                errors.append(
                    f"config.toml: {key} = {addr!r}, but the container's port {name!r} is {ports.get(name)}"
                )
        for key in ("listen", "metrics_listen"):
            host = str(config.get(key, "")).rsplit(":", 1)[0]
            if host.startswith("127.") or host in ("localhost", "[::1]"):
                errors.append(f"config.toml: {key} = {config[key]!r} is not reachable from outside the pod")
        grace = pod["spec"].get("terminationGracePeriodSeconds", 30)
        pre_stop = pre_stop_seconds(container)
        drain = float(config.get("shutdown_timeout", 30.0))
        if grace <= pre_stop + drain:
            errors.append(
                f"terminationGracePeriodSeconds ({grace}) must exceed the preStop sleep ({pre_stop})"
                f" plus config.toml's shutdown_timeout ({drain}), or pods are killed mid-drain"
            )
        errors += peers_errors(config, by_kind.get("Service", []), namespace, pod_labels)

    errors += security_errors(pod["spec"], container)
    if dockerfile:
        errors += image_errors(pod["spec"], container, dockerfile)
    for probe in ("readinessProbe", "livenessProbe"):
        port = ((container.get(probe) or {}).get("httpGet") or {}).get("port")
        if port is None:
            errors.append(f"Deployment/pgsplit: no HTTP {probe}")
        elif isinstance(port, str) and port not in ports:
            errors.append(f"Deployment/pgsplit: {probe} uses port {port!r}, which the container does not name")
    for svc in by_kind.get("Service", []):
        if not selects(svc["spec"].get("selector", {}), pod_labels):
            errors.append(f"{kn(svc)}: its selector does not select pgsplit's pods")
        for p in svc["spec"].get("ports", []):
            target = p.get("targetPort", p["port"])
            if isinstance(target, str) and target not in ports:
                errors.append(f"{kn(svc)}: targetPort {target!r} is not a container port")
    for pdb in by_kind.get("PodDisruptionBudget", []):
        if not selects(pdb["spec"].get("selector", {}).get("matchLabels", {}), pod_labels):
            errors.append(f"{kn(pdb)}: its selector does not select pgsplit's pods")
    for sm in by_kind.get("ServiceMonitor", []):
        errors += servicemonitor_target_errors(sm, by_kind.get("Service", []), namespace)
    return errors


def image_errors(pod_spec, container, dockerfile):
    """The pod runs the Dockerfile's binary as the Dockerfile's user."""
    with open(dockerfile) as f:
        text = f.read()
    errors = []
    uid = re.search(r"useradd\b.*--uid (\d+)", text)
    run_as = (container.get("securityContext") or {}).get("runAsUser") or (
        pod_spec.get("securityContext") or {}
    ).get("runAsUser")
    if uid and run_as != int(uid.group(1)):
        errors.append(f"runAsUser is {run_as}, but the Dockerfile's user has uid {uid.group(1)}")
    dest = re.search(r"^COPY --from=\S+ .*/pgsplit\b.* (/\S+/)$", text, re.M)
    command = (container.get("command") or [None])[0]
    if dest and command != dest.group(1) + "pgsplit":
        errors.append(f"the container runs {command}, but the Dockerfile puts pgsplit in {dest.group(1)}")
    return errors


def security_errors(pod_spec, container):
    """The "restricted" Pod Security Standard (namespace.yaml enforces it)
    and a read-only root filesystem."""
    pod_sc = pod_spec.get("securityContext") or {}
    sc = container.get("securityContext") or {}
    errors = []
    if not (sc.get("runAsNonRoot") or pod_sc.get("runAsNonRoot")):
        errors.append("pgsplit container: runAsNonRoot must be true")
    if sc.get("allowPrivilegeEscalation") is not False:
        errors.append("pgsplit container: allowPrivilegeEscalation must be false")
    if (sc.get("capabilities") or {}).get("drop") != ["ALL"]:
        errors.append("pgsplit container: capabilities must drop ALL")
    seccomp = (sc.get("seccompProfile") or pod_sc.get("seccompProfile") or {}).get("type")
    if seccomp not in ("RuntimeDefault", "Localhost"):
        errors.append("pgsplit pod: seccompProfile must be RuntimeDefault")
    if not sc.get("readOnlyRootFilesystem"):
        errors.append("pgsplit container: readOnlyRootFilesystem must be true")
    return errors


def fleet_config(objs, pod, errors):
    """config.toml from the Secret the pods mount, parsed."""
    secret_names = [
        v["secret"]["secretName"] for v in pod["spec"].get("volumes", []) if "secret" in v
    ]
    secrets = [o for o in objs if o.get("kind") == "Secret" and o["metadata"]["name"] in secret_names]
    if not secrets:
        errors.append(f"the pods mount Secret {secret_names}, which is not among the objects")
        return None
    data = secrets[0].get("data", {})
    if "config.toml" not in data:
        errors.append(f"{kn(secrets[0])} has no config.toml")
        return None
    try:
        return tomllib.loads(base64.b64decode(data["config.toml"]).decode())
    except (ValueError, tomllib.TOMLDecodeError) as e:
        errors.append(f"config.toml: not TOML: {e}")
        return None


def pre_stop_seconds(container):
    command = (((container.get("lifecycle") or {}).get("preStop") or {}).get("exec") or {}).get("command")
    if command and command[0] in ("sleep", "/bin/sleep") and len(command) == 2:
        return float(command[1])
    return 0.0


def peers_errors(config, services, namespace, pod_labels):
    peers_dns = config.get("peers_dns")
    if peers_dns is None:
        return ["config.toml: peers_dns is not set (cancels would not find their instance)"]
    headless = [s for s in services if s["spec"].get("clusterIP") == "None"]
    if not headless:
        return ["no headless Service (clusterIP: None) for peers_dns"]
    errors = []
    wanted = []
    for svc in headless:
        if not svc["spec"].get("publishNotReadyAddresses"):
            errors.append(f"{kn(svc)}: publishNotReadyAddresses must be true (cancels for pods not ready)")
        for p in svc["spec"].get("ports", []):
            if p.get("name") == "postgres":
                wanted.append(f"{svc['metadata']['name']}.{namespace}.svc.cluster.local:{p['port']}")
    if peers_dns not in wanted:
        errors.append(f"config.toml: peers_dns = {peers_dns!r}, expected one of {wanted}")
    return errors


def servicemonitor_target_errors(sm, services, namespace):
    selector = sm["spec"]["selector"].get("matchLabels", {})
    chosen = [s for s in services if selects(selector, s["metadata"].get("labels", {}))]
    if len(chosen) != 1:
        return [f"{kn(sm)}: selects {len(chosen)} Services, expected 1 (pods would be scraped twice, or not at all)"]
    if sm["metadata"].get("namespace") != namespace:
        return [f"{kn(sm)}: namespace {sm['metadata'].get('namespace')!r}, not the fleet's {namespace!r}"]
    names = {p.get("name") for p in chosen[0]["spec"].get("ports", [])}
    return [
        f"{kn(sm)}: endpoint port {e.get('port')!r} is not a port of {kn(chosen[0])}"
        for e in sm["spec"].get("endpoints", [])
        if e.get("port") not in names
    ]


# Putting it together ---------------------------------------------------------


def validate_tree(root, kubectl, versions, dockerfile=None, say=print):
    """Every error found under root; says what it checked."""
    errors = []
    rendered_ids = set()
    dirs = kustomization_dirs(root)
    if not dirs:
        errors.append(f"{root}: no kustomization.yaml")
    for d in dirs:
        where = os.path.relpath(d, root)
        try:
            objs = render(kubectl, d)
        except ValueError as e:
            errors.append(str(e))
            continue
        found = []
        for o in objs:
            rendered_ids.add(identity(o))
            found += [f"{where} (kustomize): {kn(o)}: {e}" for e in schema_errors(o, versions)]
        errors += found
        # The cross-checks read fields the schemas require: only on objects
        # that passed them.
        if not found and any(o.get("kind") == "Deployment" for o in objs):
            errors += [f"{where} (kustomize): {e}" for e in fleet_errors(objs, dockerfile)]
        say(f"  rendered {where}: {len(objs)} objects: {', '.join(kn(o) for o in objs)}")
    for path in plain_manifests(root):
        where = os.path.relpath(path, root)
        try:
            with open(path) as f:
                objs = load_yaml(f.read(), where)
        except ValueError as e:
            errors.append(str(e))
            continue
        for o in objs:
            errors += [f"{where}: {kn(o)}: {e}" for e in schema_errors(o, versions)]
            if identity(o) not in rendered_ids:
                errors.append(f"{where}: {kn(o)} is in no kustomization's output (add it to resources)")
    say(f"  checked against Kubernetes {', '.join(versions)} (strict) and the ServiceMonitor CRD")
    return errors


def identity(obj):
    """Kind and name; a generated Secret's name loses its hash suffix."""
    return (obj.get("kind"), (obj.get("metadata") or {}).get("name"))


# Self-test: each break must be found ------------------------------------------

def _edit(path, old, new):
    def apply(root):
        file = os.path.join(root, path)
        with open(file) as f:
            text = f.read()
        if old not in text:
            raise AssertionError(f"self-test is stale: {old!r} is not in {path}")
        with open(file, "w") as f:
            f.write(text.replace(old, new, 1))
    return apply


BREAKS = [
    ("a type error (replicas: three)", _edit("base/deployment.yaml", "replicas: 3", "replicas: three"), "replicas"),
    ("an unknown field (strict)", _edit("base/service.yaml", "  type: ClusterIP", "  type: ClusterIP\n  sessionAfinity: None"), "sessionAfinity"),
    ("a missing required field (container image name)", _edit("base/deployment.yaml", "        - name: pgsplit\n", "        - nam: pgsplit\n"), "name"),
    ("not YAML", _edit("base/poddisruptionbudget.yaml", "  maxUnavailable: 1", "  maxUnavailable: [1"), "YAML"),
    ("a kind nothing can check", _edit("base/namespace.yaml", "apiVersion: v1", "apiVersion: v2"), "no schema"),
    ("a ServiceMonitor field of the wrong form", _edit("prometheus-operator/servicemonitor.yaml", "interval: 15s", "interval: 15 seconds"), "interval"),
    ("an unknown ServiceMonitor field", _edit("prometheus-operator/servicemonitor.yaml", "path: /metrics", "path: /metrics\n      scrapeIntervall: 15s"), "scrapeIntervall"),
    ("a file in no kustomization", _edit("base/kustomization.yaml", "  - poddisruptionbudget.yaml\n", ""), "no kustomization"),
    ("metrics_listen on another port than the probes", _edit("base/config.toml", 'metrics_listen = "0.0.0.0:9930"', 'metrics_listen = "0.0.0.0:9931"'), "metrics_listen"),
    ("peers_dns in another namespace", _edit("base/config.toml", "pgsplit-peers.pgsplit.svc", "pgsplit-peers.default.svc"), "peers_dns"),
    ("a grace period shorter than the drain", _edit("base/deployment.yaml", "terminationGracePeriodSeconds: 45", "terminationGracePeriodSeconds: 30"), "terminationGracePeriodSeconds"),
    ("a container that may escalate privileges", _edit("base/deployment.yaml", "allowPrivilegeEscalation: false", "allowPrivilegeEscalation: true"), "allowPrivilegeEscalation"),
    ("another user than the image's", _edit("base/deployment.yaml", "runAsUser: 10001", "runAsUser: 1000"), "runAsUser"),
    ("a peers Service that hides pods not ready", _edit("base/service-peers.yaml", "publishNotReadyAddresses: true", "publishNotReadyAddresses: false"), "publishNotReadyAddresses"),
]


def self_test(root, kubectl, versions, dockerfile):
    passed = failed = 0
    with tempfile.TemporaryDirectory(prefix="pgsplit-k8s-selftest.") as tmp:
        pristine = os.path.join(tmp, "pristine")
        shutil.copytree(root, pristine)
        errors = validate_tree(pristine, kubectl, versions, dockerfile, say=lambda _: None)
        if errors:
            print("  FAIL the unbroken copy does not validate:", *errors, sep="\n    ")
            failed += 1
        else:
            print("  ok   the unbroken copy validates")
            passed += 1
        for i, (what, brk, expect) in enumerate(BREAKS):
            copy_dir = os.path.join(tmp, f"break{i}")
            shutil.copytree(root, copy_dir)
            brk(copy_dir)
            errors = validate_tree(copy_dir, kubectl, versions, dockerfile, say=lambda _: None)
            if any(expect in e for e in errors):
                print(f"  ok   {what}: found ({next(e for e in errors if expect in e)[:150]})")
                passed += 1
            else:
                print(f"  FAIL {what}: not found (errors: {errors or 'none'})")
                failed += 1
    print(f"k8s-validate: {passed} passed, {failed} failed")
    return 1 if failed else 0


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dir", help="deploy/kubernetes or a copy of it")
    parser.add_argument("--kubectl", default="kubectl")
    parser.add_argument("--dockerfile", help="the image's Dockerfile: check its user and binary path")
    parser.add_argument("--self-test", action="store_true", help="then break copies of DIR and expect failures")
    args = parser.parse_args()
    versions = os.environ.get("K8S_VERSIONS", " ".join(DEFAULT_K8S_VERSIONS)).split()
    print(f"k8s-validate: {args.dir}")
    errors = validate_tree(args.dir, args.kubectl, versions, args.dockerfile)
    for e in errors:
        print(f"  ERROR {e}")
    print(f"k8s-validate: {'FAILED, ' + str(len(errors)) + ' errors' if errors else 'ok'}")
    if errors:
        return 1
    return self_test(args.dir, args.kubectl, versions, args.dockerfile) if args.self_test else 0


if __name__ == "__main__":
    sys.exit(main())
