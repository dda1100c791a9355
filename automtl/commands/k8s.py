"""``automtl k8s render``: Kubernetes manifests for N search workers on one study."""

from __future__ import annotations

from pathlib import Path

import click

from automtl.commands.base import user_errors

APPLY_HELP = """\
kubectl apply -f {out}/00-secret.yaml{more}
kubectl apply -f {out}/30-workers.yaml
kubectl wait --for=condition=complete --timeout=-1s job/{name}-workers
kubectl apply -f {out}/40-export.yaml"""


@click.group()
def k8s() -> None:
    """Kubernetes: run a search's workers as a Job in a cluster."""


@k8s.command()
@click.option("--config", "config_path", type=click.Path(path_type=Path, dir_okay=False), required=True,
              help="Experiment YAML file; copy its folder (with its data and space) to the volume's root.")
@click.option("--workers", type=click.IntRange(min=1), required=True, help="Worker pods (an Indexed Job).")
@click.option("--image", required=True, help="Container image with automtl installed.")
@click.option("--volume", required=True,
              help=f"PersistentVolumeClaim (ReadWriteMany) holding the experiment folder; mounted at /automtl, "
                   "run folders go to /automtl/runs/NAME/.")
@click.option("--gpus-per-worker", "gpus", type=click.IntRange(min=0), default=0, show_default=True,
              help="nvidia.com/gpu limit of each worker pod.")
@click.option("--storage", envvar="AUTOMTL_STORAGE", help="Study database every pod reaches: "
              "postgresql://USER:PASS@HOST/DB (or $AUTOMTL_STORAGE); kept in the Secret only.")
@click.option("--postgres", is_flag=True, help="Run a PostgreSQL server in the cluster (StatefulSet + Service).")
@click.option("--proxy", is_flag=True, help="Workers talk to Optuna's gRPC storage proxy (`automtl storage serve`), "
              "not to the database: for many workers.")
@click.option("--name", help="Prefix of the objects' names (default: the study name).")
@click.option("--namespace", help="Namespace of every object (default: kubectl's current one).")
@click.option("--cpu", default="2", show_default=True, help="CPU request of each worker pod.")
@click.option("--memory", default="8Gi", show_default=True, help="Memory request and limit of each worker pod.")
@click.option("--out", type=click.Path(path_type=Path, file_okay=False), required=True, help="Folder to write.")
@user_errors
def render(config_path: Path, workers: int, image: str, volume: str, gpus: int, storage: str | None, postgres: bool,
           proxy: bool, name: str | None, namespace: str | None, cpu: str, memory: str, out: Path) -> None:
    """Write plain YAML: a Secret with the storage URL, optionally PostgreSQL and the storage proxy, an
    Indexed Job of workers (each `automtl search` on the one study) and an export Job for when they are done."""
    from automtl.config import load_experiment
    from automtl.deploy.kubernetes import Plan, dns_name, render as build
    from automtl.deploy.manifests import write_manifests
    from automtl.errors import ConfigError

    exp = load_experiment(config_path)
    if exp.search.backend != "optuna":
        raise ConfigError(f"{config_path}: search.backend '{exp.search.backend}': the workers share one Optuna "
                          "study; use backend optuna")
    study = exp.study_name
    plan = Plan(name=dns_name(name or study), study=study, experiment=config_path.name, workers=workers, image=image,
                volume=volume, gpus=gpus, storage=storage, postgres=postgres, proxy=proxy, namespace=namespace,
                cpu=cpu, memory=memory)
    written = write_manifests(build(plan), out)
    click.echo(f"wrote {len(written)} files to {out} ({workers} workers on study '{study}'); "
               f"{out / '00-secret.yaml'} holds the storage URL with its password: keep it out of version control")
    more = "".join(f"\nkubectl apply -f {out}/{f}" for f in ("10-postgres.yaml", "20-proxy.yaml")
                   if (out / f) in written)
    click.echo("apply them with:\n" + APPLY_HELP.format(out=out, more=more, name=plan.name))
