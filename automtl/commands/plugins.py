"""``automtl plugins``: the installed task and input types (no TensorFlow loaded)."""

from __future__ import annotations


import click



@click.command()
@click.option("--metrics", "show_metrics", is_flag=True,
              help="Also list the metrics each task type can be ranked by (a task's `metric:`); loads the task plugins.")
def plugins(show_metrics: bool) -> None:
    """List installed task and input types, with the package each comes from."""
    from rich.table import Table

    from automtl.console import make_console, print_table
    from automtl.core.plugins import list_plugins

    table = Table(title="automtl plugins", title_justify="left")
    for col in ("kind", "type", "distribution", "version", "object"):
        table.add_column(col)
    for p in list_plugins():
        table.add_row(p.kind, p.name, p.distribution, p.version, p.target)
    console = make_console()
    # a narrow terminal loses the distribution and version before the object path is cut
    print_table(console, table, drop=("version", "distribution"))
    if not show_metrics:
        return
    console.print("Metrics a task can be ranked by (the task's `metric:` in the experiment file; the first is "
                  "the default):", highlight=False)
    for name, metrics in task_metrics().items():
        console.print(f"  {name}: {', '.join(metrics) or '(its own)'}", highlight=False)


def task_metrics() -> dict[str, list[str]]:
    """Each installed task type's declared metrics (``Task.metrics``), default first; the classes are light to load."""
    from automtl import plugins as found

    out = {}
    for name in sorted(found.entry_points("task")):
        try:
            cls = found.load("task", name, where="automtl plugins")
        except Exception:  # noqa: BLE001 - a broken plugin is listed above; its metrics are unknown
            out[name] = ["(could not load)"]
            continue
        declared = [m.name for m in getattr(cls, "metrics", ())]
        default = getattr(cls, "primary_metric", "")
        out[name] = ([default] if default else []) + [m for m in declared if m != default]
    return out
