"""Data: tables read from CSV/Parquet/NPZ, splits, and the built-in demo sets."""

from automtl.data.table import Table

__all__ = ["Table"]
