"""Progressive layered extraction (Tang et al., 2020): shared and task-specific experts at every level."""

from __future__ import annotations

from automtl.core.params import positive_int
from automtl.core.trial_params import TrialParams
from automtl.model.sharing.base import Shared, SharingScheme, Stream, Trunk, gated, pooled_summary


def split_levels(depth: int, groups: int) -> list[tuple[int, int]]:
    """``[start, stop)`` of ``groups`` consecutive, near-equal runs of ``depth`` levels (deeper ones first)."""
    size, extra = divmod(depth, groups)
    bounds, at = [], 0
    for g in range(groups):
        step = size + (1 if g < extra else 0)
        bounds.append((at, at + step))
        at += step
    return bounds


class ProgressiveLayeredExtraction(SharingScheme):
    """The trunk's levels are cut into ``ple.levels`` extraction levels (at most its depth). At each,
    every task has ``ple.task_experts`` experts of its own and all tasks ``ple.shared_experts``
    shared ones (each a copy of that part of the trunk); task ``t``'s gate mixes its own and the
    shared experts for its next input, and, below the top, a shared gate mixes all experts for
    the shared experts' next input. One extraction level is CGC (customized gate control)."""

    parameters = (
        positive_int("ple.levels", 2, "extraction levels (capped by the trunk's depth)"),
        positive_int("ple.shared_experts", 1, "shared experts per extraction level"),
        positive_int("ple.task_experts", 1, "experts of each task per extraction level"),
    )

    def build(self, trunk: Trunk, tasks: list[str], params: TrialParams) -> Shared:
        wanted = int(self.value(params, "ple.levels"))
        n_shared = int(self.value(params, "ple.shared_experts"))
        n_own = int(self.value(params, "ple.task_experts"))
        trunk = trunk.with_min_depth(1)
        if trunk.depth == 0:
            raise ValueError("ple needs at least one level to make experts of (a dense trunk layer or encoder block)")
        bounds = split_levels(trunk.depth, min(wanted, trunk.depth))
        inputs_summary = trunk.summary("ple_gate_input")
        streams: dict[str, Stream] = {t: trunk.begin() for t in tasks}
        common = trunk.begin()
        for g, (a, b) in enumerate(bounds):

            def gate_input(stream: Stream, who: str, g: int = g) -> object:
                return inputs_summary if g == 0 else pooled_summary(stream, f"ple{g}_summary_{who}")

            shared = [trunk.run(common, a, b, tag=f"ple{g}-shared{k}") for k in range(n_shared)]
            own = {t: [trunk.run(streams[t], a, b, tag=f"ple{g}-{t}-{k}") for k in range(n_own)] for t in tasks}
            streams = {t: gated(gate_input(streams[t], f"task_{t}"), own[t] + shared, f"ple{g}_task_{t}") for t in tasks}
            if g < len(bounds) - 1:
                everyone = [e for t in tasks for e in own[t]] + shared
                common = gated(gate_input(common, "shared"), everyone, f"ple{g}_shared")
        last_suffixes = [f"-ple{len(bounds) - 1}-shared{k}" for k in range(n_shared)]
        last = trunk.last_layers(last_suffixes)
        per_task = {t: trunk.run(s, trunk.depth, trunk.depth, tag=t).tensors for t, s in streams.items()}
        return Shared(per_task, last, "the shared experts' last level: " + ", ".join(l.name for l in last))
