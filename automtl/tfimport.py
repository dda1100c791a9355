"""Import TensorFlow without its native start-up log lines on the user's console.

TensorFlow 2.21 logs through absl before any log level applies, so
``TF_CPP_MIN_LOG_LEVEL`` cannot silence "oneDNN custom operations are on" and
friends. The import runs with file descriptor 2 captured; if it fails, the
captured text is shown after all.
"""

from __future__ import annotations

import os
import sys
import tempfile


def import_tensorflow_quietly() -> None:
    if "tensorflow" in sys.modules:
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            import tensorflow

            # Probing for GPUs logs CUDA errors on machines without a driver; do it here, quietly.
            # (Listing physical devices leaves memory growth and visibility still configurable.)
            tensorflow.config.list_physical_devices("GPU")
        except BaseException:
            os.dup2(saved, 2)
            captured.seek(0)
            sys.stderr.write(captured.read().decode(errors="replace"))
            raise
        finally:
            os.dup2(saved, 2)
            os.close(saved)
