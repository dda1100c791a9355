"""Sharing schemes: how tasks share parameters between the inputs and their heads.

One file per scheme, registered under the ``automtl.sharing`` entry-point
group; see :class:`~automtl.model.sharing.base.SharingScheme`.
"""
