"""The extension core: axis registries, entry-point discovery, declared parameters and the neutral trial record.

Plugins reach it through :mod:`automtl.api`, which re-exports what they need.
"""
