"""TensorFlow's C++ log lines stay off the console unless AUTOMTL_TF_LOG asks for them."""

from __future__ import annotations

import os
import subprocess
import sys

SCRIPT = """
import os
from automtl.tfimport import import_tensorflow_quietly
import_tensorflow_quietly()
import tensorflow as tf
tf.constant([1.0]) + 1.0
print("level", os.environ["TF_CPP_MIN_LOG_LEVEL"])
"""


def run(**env: str) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if k not in ("TF_CPP_MIN_LOG_LEVEL", "AUTOMTL_TF_LOG")}
    return subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=300,
                          env={**clean, **env})


def test_silent_by_default_and_visible_on_request():
    quiet = run()
    assert "level 3" in quiet.stdout and quiet.stderr.strip() == "", quiet.stderr
    loud = run(AUTOMTL_TF_LOG="0")
    assert "level 0" in loud.stdout
    assert "I0000" in loud.stderr or "absl::InitializeLog" in loud.stderr  # TensorFlow's own start-up lines
