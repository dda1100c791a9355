"""Kubernetes manifests for a search of N workers on one study (``automtl k8s render``).

Plain dictionaries, written as YAML: a Secret holding the storage URL, an
optional PostgreSQL StatefulSet and Service, an optional gRPC storage proxy
(``automtl storage serve``) Deployment and Service, an Indexed Job of N
workers (each an ordinary ``automtl search`` on the shared study, with its own
run folder on the volume) and an export Job to apply once the workers are done.
Kubernetes schedules; automtl only writes what a user would write by hand.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any

from automtl.errors import ConfigError

#: Where the volume holding the experiment folder and the run folders is mounted in every pod.
MOUNT = "/automtl"
PROXY_PORT = 13000
POSTGRES_PORT = 5432
SECRET_KEY = "storage-url"
#: The environment variable ``automtl search`` and ``automtl storage serve`` read ``--storage`` from.
STORAGE_ENV = "AUTOMTL_STORAGE"
MANAGED = {"app.kubernetes.io/managed-by": "automtl"}


@dataclass
class Plan:
    """What ``automtl k8s render`` was asked for (checked by :func:`check_plan`)."""

    name: str
    study: str
    experiment: str  # the experiment file's path inside the volume, relative to its root
    workers: int
    image: str
    volume: str  # a PersistentVolumeClaim (ReadWriteMany: every worker writes its run folder there)
    gpus: int = 0
    storage: str | None = None  # an existing database URL, or None with postgres
    postgres: bool = False
    proxy: bool = False
    namespace: str | None = None
    cpu: str = "2"
    memory: str = "8Gi"
    postgres_image: str = "postgres:15"
    postgres_size: str = "10Gi"


def dns_name(text: str) -> str:
    """``text`` as a Kubernetes object name: lower-case letters, digits and '-', at most 40 characters
    (room for the suffixes of the Job's pods)."""
    name = re.sub(r"[^a-z0-9-]+", "-", text.lower()).strip("-")[:40].strip("-")
    if not name or not name[0].isalpha():
        name = f"automtl-{name}".strip("-")[:40]
    return name


def check_plan(plan: Plan) -> None:
    """Refuse what could not run in a cluster, naming the option."""
    if plan.workers < 1:
        raise ConfigError("--workers: at least 1")
    if plan.gpus < 0:
        raise ConfigError("--gpus-per-worker: 0 or more")
    if (plan.storage is None) == (not plan.postgres):
        raise ConfigError("give exactly one of --storage URL (a database every pod reaches) or --postgres "
                          "(a PostgreSQL server in the cluster)")
    if plan.storage is not None:
        scheme = plan.storage.partition("://")[0] if "://" in plan.storage else ""
        if scheme.split("+")[0] not in ("postgresql", "postgres", "mysql"):
            from automtl.core import registry

            redact = registry.member("backend", "optuna").study_store().redact  # the manifests run Optuna studies
            raise ConfigError(f"--storage {redact(plan.storage)}: the pods share one study through a database "
                              "server (postgresql://USER:PASS@HOST/DB); a SQLite or journal file on a shared volume "
                              "is not safe for many writers, and --proxy starts the gRPC proxy itself")
    if PurePosixPath(plan.experiment).is_absolute() or ".." in PurePosixPath(plan.experiment).parts:
        raise ConfigError(f"the experiment's path in the volume must be relative to its root: {plan.experiment}")


def _meta(plan: Plan, name: str, component: str) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "labels": {"app.kubernetes.io/name": "automtl",
                                                     "app.kubernetes.io/instance": plan.name,
                                                     "app.kubernetes.io/component": component, **MANAGED}}
    if plan.namespace:
        meta["namespace"] = plan.namespace
    return meta


def _selector(plan: Plan, component: str) -> dict[str, str]:
    return {"app.kubernetes.io/instance": plan.name, "app.kubernetes.io/component": component}


def _secret_env(plan: Plan, env: str, key: str) -> dict[str, Any]:
    return {"name": env, "valueFrom": {"secretKeyRef": {"name": f"{plan.name}-storage", "key": key}}}


def secret(plan: Plan, postgres_password: str | None) -> dict[str, Any]:
    """The storage URL (and the in-cluster server's password): the only place it is written."""
    if plan.postgres:
        assert postgres_password is not None
        url = f"postgresql://automtl:{postgres_password}@{plan.name}-postgres:{POSTGRES_PORT}/automtl"
        data = {SECRET_KEY: url, "postgres-password": postgres_password}
    else:
        assert plan.storage is not None
        data = {SECRET_KEY: plan.storage}
    return {"apiVersion": "v1", "kind": "Secret", "metadata": _meta(plan, f"{plan.name}-storage", "storage"),
            "type": "Opaque", "stringData": data}


def postgres(plan: Plan) -> list[dict[str, Any]]:
    """A one-replica PostgreSQL StatefulSet with its own volume, and the Service the URL names."""
    name = f"{plan.name}-postgres"
    # each worker without the proxy holds a small pool of connections (plus its heartbeats)
    connections = 100 if plan.proxy else max(100, 8 * plan.workers + 20)
    labels = _selector(plan, "postgres")
    container = {
        "name": "postgres", "image": plan.postgres_image,
        "args": ["-c", f"max_connections={connections}"],
        "ports": [{"containerPort": POSTGRES_PORT, "name": "postgres"}],
        "env": [{"name": "POSTGRES_USER", "value": "automtl"}, {"name": "POSTGRES_DB", "value": "automtl"},
                _secret_env(plan, "POSTGRES_PASSWORD", "postgres-password"),
                {"name": "PGDATA", "value": "/var/lib/postgresql/data/pgdata"}],
        "readinessProbe": {"exec": {"command": ["pg_isready", "-U", "automtl", "-d", "automtl"]},
                           "periodSeconds": 5},
        "volumeMounts": [{"name": "data", "mountPath": "/var/lib/postgresql/data"}],
    }
    statefulset = {
        "apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": _meta(plan, name, "postgres"),
        "spec": {
            "serviceName": name, "replicas": 1, "selector": {"matchLabels": labels},
            "template": {"metadata": {"labels": {**labels, **MANAGED}}, "spec": {"containers": [container]}},
            "volumeClaimTemplates": [{"metadata": {"name": "data"}, "spec": {
                "accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": plan.postgres_size}}}}],
        },
    }
    service = {"apiVersion": "v1", "kind": "Service", "metadata": _meta(plan, name, "postgres"),
               "spec": {"selector": labels, "ports": [{"name": "postgres", "port": POSTGRES_PORT,
                                                       "targetPort": POSTGRES_PORT}]}}
    return [statefulset, service]


def proxy(plan: Plan) -> list[dict[str, Any]]:
    """Optuna's gRPC storage proxy (``automtl storage serve``) between the workers and the database."""
    name = f"{plan.name}-proxy"
    labels = _selector(plan, "proxy")
    container = {
        "name": "proxy", "image": plan.image,
        "command": ["automtl", "storage", "serve", "--host", "0.0.0.0", "--port", str(PROXY_PORT)],
        "env": [_secret_env(plan, STORAGE_ENV, SECRET_KEY)],
        "ports": [{"containerPort": PROXY_PORT, "name": "grpc"}],
        "readinessProbe": {"tcpSocket": {"port": PROXY_PORT}, "periodSeconds": 5},
        "resources": {"requests": {"cpu": "1", "memory": "1Gi"}},
    }
    deployment = {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": _meta(plan, name, "proxy"),
        "spec": {"replicas": 1, "selector": {"matchLabels": labels},
                 "template": {"metadata": {"labels": {**labels, **MANAGED}}, "spec": {"containers": [container]}}},
    }
    service = {"apiVersion": "v1", "kind": "Service", "metadata": _meta(plan, name, "proxy"),
               "spec": {"selector": labels, "ports": [{"name": "grpc", "port": PROXY_PORT,
                                                       "targetPort": PROXY_PORT}]}}
    return [deployment, service]


def storage_env(plan: Plan) -> dict[str, Any]:
    """How a worker finds the study: the proxy's address, or the Secret's URL."""
    if plan.proxy:
        return {"name": STORAGE_ENV, "value": f"grpc://{plan.name}-proxy:{PROXY_PORT}"}
    return _secret_env(plan, STORAGE_ENV, SECRET_KEY)


def runs_folder(plan: Plan) -> str:
    return f"{MOUNT}/runs/{plan.name}"


def _pod(plan: Plan, component: str, container: dict[str, Any]) -> dict[str, Any]:
    container = {**container, "volumeMounts": [{"name": "work", "mountPath": MOUNT}]}
    return {"metadata": {"labels": {**_selector(plan, component), **MANAGED}},
            "spec": {"restartPolicy": "OnFailure", "containers": [container],
                     "volumes": [{"name": "work", "persistentVolumeClaim": {"claimName": plan.volume}}]}}


def workers(plan: Plan) -> dict[str, Any]:
    """An Indexed Job: N pods, each ``automtl search`` on the one study with its own run folder."""
    resources: dict[str, Any] = {"requests": {"cpu": plan.cpu, "memory": plan.memory},
                                 "limits": {"memory": plan.memory}}
    if plan.gpus:
        resources["limits"]["nvidia.com/gpu"] = plan.gpus
    container = {
        "name": "worker", "image": plan.image, "command": ["automtl"],
        "args": ["search", "--config", f"{MOUNT}/{plan.experiment}", "--study", plan.study,
                 "--out", f"{runs_folder(plan)}/worker-$(WORKER_INDEX)", "--no-report", "--baselines", "off",
                 "--ensemble", "0"],
        "env": [{"name": "WORKER_INDEX", "valueFrom": {"fieldRef": {
                    "fieldPath": "metadata.annotations['batch.kubernetes.io/job-completion-index']"}}},
                storage_env(plan), {"name": "PYTHONUNBUFFERED", "value": "1"}],
        "resources": resources,
    }
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": _meta(plan, f"{plan.name}-workers", "worker"),
            "spec": {"completionMode": "Indexed", "completions": plan.workers, "parallelism": plan.workers,
                     "backoffLimit": 4 * plan.workers, "template": _pod(plan, "worker", container)}}


#: The export Job's script: the study's tables in a final run folder (the budget is full, so no trial runs),
#: then the best trial exported from the worker's run folder that trained it.
EXPORT_SCRIPT = """set -eu
R={runs}
automtl search --config {config} --study {study} --out "$R/final" --baselines off --ensemble 0
N=$(automtl trials "$R/final" --top 1 --json | python -c 'import json, sys; print(json.load(sys.stdin)["trials"][0]["number"])')
for d in "$R"/worker-*; do
  if [ -f "$d/trials/$(printf %05d "$N")/model.keras" ]; then
    exec automtl export "$d" --trial "$N" --out "$R/best"
  fi
done
echo "no worker's run folder under $R holds the model of trial $N" >&2
exit 1
"""


def export_job(plan: Plan) -> dict[str, Any]:
    """Run once the workers' Job is complete: the whole study's tables and report, and the best model."""
    script = EXPORT_SCRIPT.format(runs=runs_folder(plan), config=f"{MOUNT}/{plan.experiment}", study=plan.study)
    container = {"name": "export", "image": plan.image, "command": ["sh", "-c", script],
                 "env": [storage_env(plan)], "resources": {"requests": {"cpu": plan.cpu, "memory": plan.memory}}}
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": _meta(plan, f"{plan.name}-export", "export"),
            "spec": {"backoffLimit": 2, "template": _pod(plan, "export", container)}}


def render(plan: Plan) -> dict[str, list[dict[str, Any]]]:
    """``{file name: documents}``, in the order to apply them."""
    check_plan(plan)
    password = secrets.token_hex(16) if plan.postgres else None
    files: dict[str, list[dict[str, Any]]] = {"00-secret.yaml": [secret(plan, password)]}
    if plan.postgres:
        files["10-postgres.yaml"] = postgres(plan)
    if plan.proxy:
        files["20-proxy.yaml"] = proxy(plan)
    files["30-workers.yaml"] = [workers(plan)]
    files["40-export.yaml"] = [export_job(plan)]
    return files
