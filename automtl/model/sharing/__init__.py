"""Sharing schemes: how tasks share (or copy, or mix) the trunk's levels between the inputs and their heads.

One file per scheme, registered under the ``automtl.sharing`` entry-point
group; a scheme subclasses :class:`SharingScheme` and walks the
:class:`Trunk` it is given (see :mod:`automtl.model.sharing.base`).
"""

from automtl.model.sharing.base import Shared, SharingScheme, Stream, Trunk, gated, mix, shared_last

__all__ = ["Shared", "SharingScheme", "Stream", "Trunk", "gated", "mix", "shared_last"]
