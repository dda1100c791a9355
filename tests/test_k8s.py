"""`automtl k8s render`: manifests that validate offline against a named Kubernetes version's schemas."""

from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path

import pytest
import yaml

#: The Kubernetes version the manifests are checked against (schemas shipped by kubernetes-validate).
K8S_VERSION = "1.30"
PASSWORD = "pw-in-the-secret-only"


def _validate(docs: list[dict]) -> None:
    kv = pytest.importorskip("kubernetes_validate", reason="kubernetes-validate (test extra) is missing")
    for doc in docs:
        kv.validate(doc, K8S_VERSION, strict=True)  # strict: an unknown field is an error too


def _render(cli, tmp_path: Path, write_experiment, *extra: str):
    out = tmp_path / "k8s"
    result = cli("k8s", "render", "--config", write_experiment(), "--image", "registry.example/automtl:1",
                 "--volume", "automtl-work", "--out", out, *extra)
    return result, out


def _docs(out: Path) -> dict[str, list[dict]]:
    return {p.name: list(yaml.safe_load_all(p.read_text())) for p in sorted(out.glob("*.yaml"))}


def _kinds(files: dict[str, list[dict]]) -> dict[tuple[str, str], dict]:
    return {(d["kind"], d["metadata"]["name"]): d for docs in files.values() for d in docs}


def test_postgres_proxy_and_gpu_workers_validate(cli, tmp_path, write_experiment):
    result, out = _render(cli, tmp_path, write_experiment, "--workers", "16", "--gpus-per-worker", "2", "--postgres",
                          "--proxy", "--namespace", "search")
    assert result.exit_code == 0, result.output
    files = _docs(out)
    assert list(files) == ["00-secret.yaml", "10-postgres.yaml", "20-proxy.yaml", "30-workers.yaml", "40-export.yaml"]
    for docs in files.values():
        _validate(docs)
    objs = _kinds(files)
    assert set(objs) == {("Secret", "tiny-storage"), ("StatefulSet", "tiny-postgres"), ("Service", "tiny-postgres"),
                         ("Deployment", "tiny-proxy"), ("Service", "tiny-proxy"), ("Job", "tiny-workers"),
                         ("Job", "tiny-export")}
    assert all(d["metadata"]["namespace"] == "search" for d in objs.values())
    job = objs["Job", "tiny-workers"]["spec"]
    assert (job["completionMode"], job["completions"], job["parallelism"]) == ("Indexed", 16, 16)
    worker = job["template"]["spec"]["containers"][0]
    assert worker["resources"]["limits"]["nvidia.com/gpu"] == 2
    env = {e["name"]: e for e in worker["env"]}
    assert env["AUTOMTL_STORAGE"]["value"] == "grpc://tiny-proxy:13000"  # workers talk to the proxy only
    args = worker["args"]
    assert args[:3] == ["search", "--config", "/automtl/experiment.yaml"]
    assert args[args.index("--study") + 1] == "tiny"
    assert args[args.index("--out") + 1] == "/automtl/runs/tiny/worker-$(WORKER_INDEX)"  # one run folder per pod
    proxy = objs["Deployment", "tiny-proxy"]["spec"]["template"]["spec"]["containers"][0]
    assert proxy["command"][:3] == ["automtl", "storage", "serve"]
    assert proxy["env"][0]["valueFrom"]["secretKeyRef"] == {"name": "tiny-storage", "key": "storage-url"}
    # The in-cluster server's password: generated, in the Secret only, readable by its owner only.
    secret = objs["Secret", "tiny-storage"]["stringData"]
    password = secret["postgres-password"]
    assert len(password) >= 32 and secret["storage-url"] == f"postgresql://automtl:{password}@tiny-postgres:5432/automtl"
    assert stat.S_IMODE((out / "00-secret.yaml").stat().st_mode) == 0o600
    assert not any(password in p.read_text() for p in out.glob("*.yaml") if p.name != "00-secret.yaml")
    assert password not in result.output


def test_existing_database_without_gpus(cli, tmp_path, write_experiment):
    url = f"postgresql://automtl:{PASSWORD}@db.internal:5432/studies"
    result, out = _render(cli, tmp_path, write_experiment, "--workers", "3", "--storage", url, "--name", "My_Search")
    assert result.exit_code == 0, result.output
    files = _docs(out)
    assert list(files) == ["00-secret.yaml", "30-workers.yaml", "40-export.yaml"]
    for docs in files.values():
        _validate(docs)
    objs = _kinds(files)
    worker = objs["Job", "my-search-workers"]["spec"]["template"]["spec"]["containers"][0]
    assert "nvidia.com/gpu" not in worker["resources"]["limits"]
    assert {e["name"]: e for e in worker["env"]}["AUTOMTL_STORAGE"]["valueFrom"]["secretKeyRef"]["key"] == "storage-url"
    assert objs["Secret", "my-search-storage"]["stringData"]["storage-url"] == url
    assert PASSWORD not in result.output
    assert not any(PASSWORD in p.read_text() for p in out.glob("*.yaml") if p.name != "00-secret.yaml")


def test_the_validator_catches_a_broken_manifest(cli, tmp_path, write_experiment):
    kv = pytest.importorskip("kubernetes_validate", reason="kubernetes-validate (test extra) is missing")
    result, out = _render(cli, tmp_path, write_experiment, "--workers", "2", "--postgres")
    assert result.exit_code == 0, result.output
    job = _docs(out)["30-workers.yaml"][0]
    job["spec"]["completions"] = "two"
    with pytest.raises(kv.ValidationError):
        kv.validate(job, K8S_VERSION, strict=True)
    job["spec"]["completions"] = 2
    job["spec"]["template"]["spec"]["containers"][0]["gpus"] = 1  # not a field of a container
    with pytest.raises(kv.ValidationError):
        kv.validate(job, K8S_VERSION, strict=True)


@pytest.mark.parametrize("extra, message", [
    ((), "exactly one of --storage URL"),
    (("--postgres", "--storage", "postgresql://u@h/db"), "exactly one of --storage URL"),
    (("--storage", "sqlite:///study.db"), "not safe for many writers"),
    (("--storage", "grpc://proxy:13000"), "--proxy starts the gRPC proxy itself"),
])
def test_bad_storage_options_exit_2(cli, tmp_path, write_experiment, extra, message):
    result, out = _render(cli, tmp_path, write_experiment, "--workers", "2", *extra)
    assert result.exit_code == 2 and message in result.output
    assert not out.exists()


def test_a_file_automtl_did_not_write_is_never_replaced(cli, tmp_path, write_experiment):
    out = tmp_path / "k8s"
    out.mkdir()
    (out / "30-workers.yaml").write_text("mine: true\n")
    result, _ = _render(cli, tmp_path, write_experiment, "--workers", "2", "--postgres")
    assert result.exit_code == 2 and "not written by automtl" in result.output
    assert (out / "30-workers.yaml").read_text() == "mine: true\n" and not (out / "00-secret.yaml").exists()
    # rendering again over its own files is fine
    (out / "30-workers.yaml").unlink()
    assert _render(cli, tmp_path, write_experiment, "--workers", "2", "--postgres")[0].exit_code == 0
    assert _render(cli, tmp_path, write_experiment, "--workers", "4", "--postgres")[0].exit_code == 0
    assert _docs(out)["30-workers.yaml"][0]["spec"]["completions"] == 4


def test_export_script_exports_the_best_trial_from_the_worker_folder_that_trained_it(cli, tmp_path, write_experiment):
    """The export Job's shell script, run with stand-ins for `automtl` (its calls are recorded)."""
    result, out = _render(cli, tmp_path, write_experiment, "--workers", "2", "--postgres")
    assert result.exit_code == 0, result.output
    script = _docs(out)["40-export.yaml"][0]["spec"]["template"]["spec"]["containers"][0]["command"][2]
    runs = tmp_path / "volume" / "runs" / "tiny"
    for worker, numbers in (("worker-0", [0, 2]), ("worker-1", [1, 3])):
        for n in numbers:
            (runs / worker / "trials" / f"{n:05d}").mkdir(parents=True)
            (runs / worker / "trials" / f"{n:05d}" / "model.keras").write_text("model")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    calls = tmp_path / "calls.log"
    (bin_dir / "automtl").write_text(
        "#!/bin/sh\n"
        f'echo "$@" >> {calls}\n'
        'if [ "$1" = trials ]; then echo \'{"trials": [{"number": 3}]}\'; fi\n')
    (bin_dir / "automtl").chmod(0o755)
    script = script.replace("/automtl/runs/tiny", str(runs))
    env = dict(os.environ, PATH=f"{bin_dir}:{os.environ['PATH']}")
    done = subprocess.run(["sh", "-c", script], capture_output=True, text=True, env=env, timeout=60)
    assert done.returncode == 0, done.stderr
    lines = calls.read_text().splitlines()
    assert lines[0].startswith("search --config /automtl/experiment.yaml --study tiny --out " + str(runs / "final"))
    assert lines[-1] == f"export {runs / 'worker-1'} --trial 3 --out {runs / 'best'}"
