"""Training strategies: how batches become optimizer steps, one file each.

``joint`` (one optimizer on a weighted combination of the task losses) and
``alternating`` (each step trains one task with its own optimizer) register
under the ``automtl.strategies`` entry-point group; the trainer picks one by
the searched ``strategy`` parameter through :mod:`automtl.core.registry`.
"""
