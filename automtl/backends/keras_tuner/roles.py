"""Which part of a distributed Keras Tuner search this process is, from Keras Tuner's environment variables.

Light to import (no Keras Tuner, no TensorFlow): the run folder's lock asks it before TensorFlow loads.
"""

from __future__ import annotations

import os

from automtl.errors import ConfigError


def distributed_role() -> str:
    """``single``, ``chief`` or ``worker``, from Keras Tuner's environment variables (checked here)."""
    ip = os.environ.get("KERASTUNER_ORACLE_IP")
    if not ip:
        return "single"
    port = os.environ.get("KERASTUNER_ORACLE_PORT", "")
    tuner_id = os.environ.get("KERASTUNER_TUNER_ID", "")
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(f"KERASTUNER_ORACLE_IP is set ({ip}), so KERASTUNER_ORACLE_PORT must be the chief's port "
                          f"number (1-65535), got {port!r}")
    if not tuner_id:
        raise ConfigError("KERASTUNER_ORACLE_IP is set, so KERASTUNER_TUNER_ID must name this process: "
                          "'chief' for the one that holds the oracle, e.g. 'tuner0', 'tuner1' for the workers")
    return "chief" if "chief" in tuner_id else "worker"  # Keras Tuner's own rule
