"""Import TensorFlow without its native log lines on the user's console, and keep third-party noise off it.

TensorFlow 2.21 logs through absl before any log level applies, so
``TF_CPP_MIN_LOG_LEVEL`` cannot silence "oneDNN custom operations are on",
"Could not find cuda drivers" and friends. The import runs with file
descriptor 2 captured (:func:`native_stderr_captured`); if it fails, the
captured text is shown after all. After the import, TensorFlow's C++ log
lines below FATAL are silenced (``TF_CPP_MIN_LOG_LEVEL=3``): at error level
it prints harmless lines such as "oneDNN supports DT_BOOL only on platforms
with AVX-512" during text searches. TensorFlow's and absl's Python loggers
show errors only, and warnings raised inside Keras, TensorFlow and the
converters (retracing notes, deprecations, "`input_shape` is undefined or
non-square") are ignored.

A command may import TensorFlow in places nobody wraps (a plugin decoding
images while the inputs are checked): :func:`quiet_on_import` makes the first
``import tensorflow`` anywhere in the process a quiet one.

Set ``AUTOMTL_TF_LOG`` (0-3, TensorFlow's levels; any other value means 0),
or pass ``-v`` to a command, to see all of it, start-up lines included.
"""

from __future__ import annotations

import contextlib
import importlib.abc
import importlib.util
import logging
import os
import sys
import tempfile
import warnings
from typing import Any, Iterator


#: Set to TensorFlow's log level (0: everything) to see its C++ log lines (``-v`` sets it to 0).
LOG_ENV = "AUTOMTL_TF_LOG"
#: Modules whose warnings and log lines are theirs, not the user's business at the default verbosity.
THIRD_PARTY = r"(keras|tensorflow|tf_keras|tf2onnx|absl|onnx|onnxruntime|ai_edge_litert|google\.protobuf)(\.|$)"
_LOGGERS = ("tensorflow", "absl", "tf2onnx", "h5py")


def verbose() -> bool:
    """The user asked to see third-party log lines (``-v`` or ``AUTOMTL_TF_LOG``)."""
    return os.environ.get(LOG_ENV) is not None


def set_tf_log_level() -> str:
    """``TF_CPP_MIN_LOG_LEVEL`` for this process and the ones it starts: 3 (fatal only) unless AUTOMTL_TF_LOG says."""
    wanted = os.environ.get(LOG_ENV)
    level = "3" if wanted is None else (wanted if wanted in ("0", "1", "2", "3") else "0")
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = level
    return level


def quiet_python_side() -> None:
    """TensorFlow's, absl's and the converters' Python loggers at ERROR, their warnings ignored
    (nothing changes when the user asked to see them)."""
    if verbose():
        return
    warnings.filterwarnings("ignore", module=THIRD_PARTY)
    for name in _LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)


@contextlib.contextmanager
def native_stderr_captured() -> Iterator[None]:
    """File descriptor 2 goes to a temporary file (C++ libraries write there directly); shown only
    when the block raises, or when the user asked to see third-party lines."""
    if verbose():
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            yield
        except BaseException:
            os.dup2(saved, 2)
            captured.seek(0)
            sys.stderr.write(captured.read().decode(errors="replace"))
            raise
        finally:
            os.dup2(saved, 2)
            os.close(saved)


def import_tensorflow_quietly() -> None:
    if "tensorflow" in sys.modules:
        quiet_python_side()
        return
    set_tf_log_level()
    with native_stderr_captured():
        import tensorflow

        # Probing for GPUs logs CUDA errors on machines without a driver; do it here, quietly.
        # (Listing physical devices leaves memory growth and visibility still configurable.)
        tensorflow.config.list_physical_devices("GPU")
    quiet_python_side()


class _QuietLoader(importlib.abc.Loader):
    """TensorFlow's own loader, run with native stderr captured and the Python side quieted after."""

    def __init__(self, loader: Any) -> None:
        self._loader = loader

    def create_module(self, spec: Any) -> Any:
        return self._loader.create_module(spec)

    def exec_module(self, module: Any) -> None:
        set_tf_log_level()
        with native_stderr_captured():
            self._loader.exec_module(module)
            module.config.list_physical_devices("GPU")
        quiet_python_side()

    def __getattr__(self, name: str) -> Any:  # get_source, get_filename ... as the real loader
        return getattr(self._loader, name)


class _QuietFinder(importlib.abc.MetaPathFinder):
    def find_spec(self, name: str, path: Any = None, target: Any = None) -> Any:
        if name != "tensorflow":
            return None
        sys.meta_path.remove(self)  # once: the real finders answer from here on
        spec = importlib.util.find_spec(name)
        if spec is not None and spec.loader is not None:
            spec.loader = _QuietLoader(spec.loader)
        return spec


def quiet_on_import() -> None:
    """Make this process's first ``import tensorflow``, wherever it happens, a quiet one; quiet the
    Python side of what is already imported. Nothing changes when the user asked to see it all."""
    set_tf_log_level()
    quiet_python_side()
    if verbose():
        return
    if "tensorflow" not in sys.modules and not any(isinstance(f, _QuietFinder) for f in sys.meta_path):
        sys.meta_path.insert(0, _QuietFinder())


def be_verbose() -> None:
    """``-v``: third-party log lines and warnings back on, in this process and the ones it starts."""
    os.environ.setdefault(LOG_ENV, "0")
    set_tf_log_level()
    warnings.filters[:] = [f for f in warnings.filters if getattr(f[3], "pattern", None) != THIRD_PARTY]
    for name in _LOGGERS:
        logging.getLogger(name).setLevel(logging.NOTSET)
    for finder in [f for f in sys.meta_path if isinstance(f, _QuietFinder)]:
        sys.meta_path.remove(finder)
