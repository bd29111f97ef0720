"""Checks of the deployment manifests beyond their schemas; run by deploy/validate.sh.

Usage: check_manifests.py REPO_ROOT KUBERNETES_VERSION...

- deploy/k8s/*.yaml: each built-in resource through `kubernetes-validate --strict`
  for every KUBERNETES_VERSION. A SparkApplication is a custom resource that
  kubernetes-validate cannot check, so its driver and executor are checked as Pods
  made of their sidecars, env and grace period (all core/v1 types).
- Every pod with a sidekick container: probes on /v1/health, memory request and
  limit, and a termination grace period of at least 35 s for the 30 s drain.
- docker-compose.yml: depends_on names services, named volumes are declared, the
  build context has a Dockerfile, and sidekick's stop_grace_period covers the drain.

Prints one line per finding and exits 1 if there is any.
"""
import glob
import os
import re
import subprocess
import sys
import tempfile

import yaml

DRAIN_SECONDS = 35
problems = []


def problem(where, text):
    problems.append(f"{where}: {text}")


def check_sidekick_pod(where, grace, containers):
    sidekicks = [c for c in containers if c.get("name") == "sidekick"]
    if not sidekicks:
        return
    if grace is None or grace < DRAIN_SECONDS:
        problem(where, f"terminationGracePeriodSeconds {grace} < {DRAIN_SECONDS} (sidekick drains for 30 s)")
    for c in sidekicks:
        for probe in ("readinessProbe", "livenessProbe"):
            path = ((c.get(probe) or {}).get("httpGet") or {}).get("path")
            if path != "/v1/health":
                problem(where, f"sidekick {probe} is not an httpGet on /v1/health")
        resources = c.get("resources") or {}
        for kind in ("requests", "limits"):
            if "memory" not in (resources.get(kind) or {}):
                problem(where, f"sidekick has no memory {kind}")


def spark_pods(doc):
    """The driver and executor of a SparkApplication as plain Pods."""
    spec = doc.get("spec") or {}
    name = (doc.get("metadata") or {}).get("name", "spark")
    for role in ("driver", "executor"):
        role_spec = spec.get(role) or {}
        main = {"name": f"spark-{role}", "image": role_spec.get("image") or spec.get("image", "spark")}
        if role_spec.get("env"):
            main["env"] = role_spec["env"]
        pod_spec = {"containers": [main] + list(role_spec.get("sidecars") or [])}
        if role_spec.get("initContainers"):
            pod_spec["initContainers"] = role_spec["initContainers"]
        if "terminationGracePeriodSeconds" in role_spec:
            pod_spec["terminationGracePeriodSeconds"] = role_spec["terminationGracePeriodSeconds"]
        if not role_spec.get("sidecars"):
            problem(f"SparkApplication {name}", f"{role} has no sidecars")
        yield role, {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": f"{name}-{role}"}, "spec": pod_spec}


def pod_spec_of(doc):
    kind = doc.get("kind")
    spec = doc.get("spec") or {}
    if kind == "Pod":
        return spec
    if kind == "CronJob":
        return ((spec.get("jobTemplate") or {}).get("spec") or {}).get("template", {}).get("spec")
    if kind in ("Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job"):
        return (spec.get("template") or {}).get("spec")
    return None


def check_k8s(root, versions):
    to_validate = []
    for path in sorted(glob.glob(os.path.join(root, "deploy/k8s/*.y*ml"))):
        rel = os.path.relpath(path, root)
        with open(path) as f:
            docs = [d for d in yaml.safe_load_all(f) if d]
        for doc in docs:
            where = f"{rel} {doc.get('kind')} {(doc.get('metadata') or {}).get('name')}"
            if doc.get("apiVersion", "").startswith("sparkoperator.k8s.io/"):
                for role, pod in spark_pods(doc):
                    check_sidekick_pod(f"{where} {role}", pod["spec"].get("terminationGracePeriodSeconds"),
                                       pod["spec"]["containers"])
                    to_validate.append((f"{where} ({role} as a Pod)", pod))
                continue
            spec = pod_spec_of(doc)
            if spec:
                check_sidekick_pod(where, spec.get("terminationGracePeriodSeconds"),
                                   list(spec.get("containers") or []) + list(spec.get("initContainers") or []))
            to_validate.append((where, doc))
    if not to_validate:
        problem("deploy/k8s", "no manifests found")
    with tempfile.TemporaryDirectory() as tmp:
        for i, (where, doc) in enumerate(to_validate):
            path = os.path.join(tmp, f"{i}.yaml")
            with open(path, "w") as f:
                yaml.safe_dump(doc, f)
            for version in versions:
                run = subprocess.run(
                    ["kubernetes-validate", "--strict", "--quiet", "-k", version, path],
                    capture_output=True, text=True,
                )
                output = (run.stdout + run.stderr).strip()
                if run.returncode != 0 or output:
                    problem(where, f"kubernetes-validate {version}: {output or 'failed'}")
                else:
                    print(f"ok   {where}: kubernetes {version} schema")


def seconds(value):
    match = re.fullmatch(r"(?:(\d+)m)?(?:(\d+)s)?", str(value or ""))
    if not match or not any(match.groups()):
        return None
    return int(match.group(1) or 0) * 60 + int(match.group(2) or 0)


def check_compose(root):
    before = len(problems)
    path = os.path.join(root, "docker-compose.yml")
    with open(path) as f:
        compose = yaml.safe_load(f)
    services = compose.get("services") or {}
    volumes = set((compose.get("volumes") or {}).keys())
    for name, service in services.items():
        depends = service.get("depends_on") or []
        for dep in depends if isinstance(depends, list) else depends.keys():
            if dep not in services:
                problem(f"docker-compose.yml {name}", f"depends_on unknown service {dep}")
        for volume in service.get("volumes") or []:
            source = volume.split(":", 1)[0] if isinstance(volume, str) else volume.get("source")
            if source and not source.startswith((".", "/", "~")) and source not in volumes:
                problem(f"docker-compose.yml {name}", f"volume {source} is not declared")
        build = service.get("build")
        if build is not None:
            context = build if isinstance(build, str) else build.get("context", ".")
            dockerfile = "Dockerfile" if isinstance(build, str) else build.get("dockerfile", "Dockerfile")
            if not os.path.isfile(os.path.join(root, context, dockerfile)):
                problem(f"docker-compose.yml {name}", f"no {dockerfile} in build context {context}")
    sidekick = services.get("sidekick")
    if sidekick is None:
        problem("docker-compose.yml", "no sidekick service")
    elif (seconds(sidekick.get("stop_grace_period")) or 10) < DRAIN_SECONDS:
        problem("docker-compose.yml sidekick", f"stop_grace_period under {DRAIN_SECONDS}s")
    if len(problems) == before:
        print(f"ok   docker-compose.yml: references, build context, grace period ({len(services)} services)")


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__.strip())
    root, versions = sys.argv[1], sys.argv[2:]
    check_k8s(root, versions)
    check_compose(root)
    for line in problems:
        print(f"FAIL {line}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
