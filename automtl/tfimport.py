"""Import TensorFlow without its native log lines on the user's console.

TensorFlow 2.21 logs through absl before any log level applies, so
``TF_CPP_MIN_LOG_LEVEL`` cannot silence "oneDNN custom operations are on" and
friends. The import runs with file descriptor 2 captured; if it fails, the
captured text is shown after all. After the import, TensorFlow's C++ log
lines below FATAL are silenced (``TF_CPP_MIN_LOG_LEVEL=3``): at error level
it prints harmless lines such as "oneDNN supports DT_BOOL only on platforms
with AVX-512" during text searches. Set ``AUTOMTL_TF_LOG`` (0-3, TensorFlow's
levels; any other value means 0) to see them, start-up lines included.
"""

from __future__ import annotations

import os
import sys
import tempfile


#: Set to TensorFlow's log level (0: everything) to see its C++ log lines.
LOG_ENV = "AUTOMTL_TF_LOG"


def set_tf_log_level() -> str:
    """``TF_CPP_MIN_LOG_LEVEL`` for this process and the ones it starts: 3 (fatal only) unless AUTOMTL_TF_LOG says."""
    wanted = os.environ.get(LOG_ENV)
    level = "3" if wanted is None else (wanted if wanted in ("0", "1", "2", "3") else "0")
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = level
    return level


def import_tensorflow_quietly() -> None:
    if "tensorflow" in sys.modules:
        return
    set_tf_log_level()
    if os.environ.get(LOG_ENV) is not None:  # the user asked to see TensorFlow's lines
        import tensorflow

        tensorflow.config.list_physical_devices("GPU")
        return
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
