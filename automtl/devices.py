"""Where trials train: device choice, GPU memory growth and mixed precision.

``--device auto`` trains on a GPU when TensorFlow sees one, ``cpu`` hides the
GPUs (before TensorFlow starts, so worker processes inherit it) and ``gpu``
refuses to run without one. Memory growth is always on, so several worker
processes can share a card. ``--precision auto`` picks Keras' ``mixed_float16``
policy on GPUs of compute capability 7.0 or newer (tensor cores) and float32
elsewhere; task heads end in a float32 layer and losses are computed in
float32 (see :func:`automtl.model.assemble.build_model`).
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from typing import Any

from automtl.errors import ConfigError

DEVICES = ("auto", "cpu", "gpu")
PRECISIONS = ("auto", "float32", "mixed")
#: Keras' policy for float16 compute with float32 variables.
MIXED = "mixed_float16"
#: Tensor cores (Volta) and newer: where float16 compute is faster than float32.
MIXED_MIN_CAPABILITY = (7, 0)


@dataclass(frozen=True)
class DevicePlan:
    """What this process trains on, as chosen by :func:`configure`."""

    device: str  # "cpu" or "gpu"
    precision: str  # a Keras dtype policy name: "float32" or "mixed_float16"
    gpus: tuple[str, ...] = field(default=())  # names of the GPUs TensorFlow sees

    def describe(self) -> str:
        where = f"GPU ({', '.join(self.gpus)})" if self.device == "gpu" else "CPU"
        return f"{where}, {self.precision}"


_configured: dict[tuple[str, str], DevicePlan] = {}


def hide_gpus() -> None:
    """Keep TensorFlow (here and in child processes) off every GPU; call before TensorFlow starts."""
    os.environ["CUDA_VISIBLE_DEVICES"] = "-1"


def configure(device: str = "auto", precision: str = "auto") -> DevicePlan:
    """Apply ``--device`` and ``--precision`` to this process (and its future children).

    Idempotent per process; raises :class:`ConfigError` for ``gpu`` without a
    GPU and for ``mixed`` without a GPU that runs float16 fast.
    """
    if device not in DEVICES:
        raise ConfigError(f"--device must be one of {', '.join(DEVICES)}, got {device!r}")
    if precision not in PRECISIONS:
        raise ConfigError(f"--precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    key = (device, precision)
    if key in _configured:
        return _configured[key]
    # Memory growth for every TensorFlow process started from here on (trial workers), and this one.
    os.environ.setdefault("TF_FORCE_GPU_ALLOW_GROWTH", "true")
    if device == "cpu":
        hide_gpus()
    import tensorflow as tf

    if device == "cpu":
        _set_visible(tf, [])
        gpus: list[Any] = []
    else:
        gpus = tf.config.list_physical_devices("GPU")
    if device == "gpu" and not gpus:
        visible = os.environ.get("CUDA_VISIBLE_DEVICES")
        hint = f"CUDA_VISIBLE_DEVICES is {visible!r}; " if visible is not None else ""
        build = "" if tf.test.is_built_with_cuda() else "this TensorFlow build has no CUDA support (pip install 'tensorflow[and-cuda]'); "
        raise ConfigError(f"--device gpu: TensorFlow sees no GPU ({hint}{build}use --device auto or cpu)")
    for gpu in gpus:
        try:
            tf.config.experimental.set_memory_growth(gpu, True)
        except RuntimeError:  # already initialised: TF_FORCE_GPU_ALLOW_GROWTH applied then
            pass
    capabilities = [compute_capability(tf, g) for g in gpus]
    fast_fp16 = bool(gpus) and all(c >= MIXED_MIN_CAPABILITY for c in capabilities)
    if precision == "mixed" and not fast_fp16:
        found = ", ".join(f"{'.'.join(map(str, c))}" for c in capabilities) or "no GPU"
        raise ConfigError(
            f"--precision mixed needs a GPU of compute capability {'.'.join(map(str, MIXED_MIN_CAPABILITY))} "
            f"or newer (found: {found}); use --precision float32 or auto"
        )
    policy = MIXED if precision == "mixed" or (precision == "auto" and fast_fp16) else "float32"
    names = tuple(_gpu_name(tf, g) for g in gpus)
    plan = DevicePlan("gpu" if gpus else "cpu", policy, names)
    set_precision(policy)
    _configured[key] = plan
    return plan


def gpus_without_tensorflow() -> tuple[int | None, list[tuple[int, int]]]:
    """How many GPUs this process could use and their compute capabilities, asked cheaply (no TensorFlow):
    ``CUDA_VISIBLE_DEVICES``, the NVIDIA driver's device files, and ``nvidia-smi`` when it is installed.

    ``(None, [])`` where it cannot tell (not Linux, another GPU stack); capabilities are empty where
    ``nvidia-smi`` cannot say. Lets ``--device gpu`` and ``--precision mixed`` be refused in a second,
    before TensorFlow starts, where they cannot work; TensorFlow's own check (:func:`configure`) stays.
    """
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None and (not visible.strip() or visible.strip().startswith("-1")):
        return 0, []
    if not sys.platform.startswith("linux"):
        return None, []
    nvidia = sorted(glob.glob("/dev/nvidia[0-9]*"))
    if not nvidia:
        # ROCm (/dev/kfd) and WSL (/dev/dxg) GPUs have no NVIDIA device files: unknown, not absent
        return (None, []) if any(os.path.exists(p) for p in ("/dev/kfd", "/dev/dxg")) else (0, [])
    capabilities = _nvidia_smi_capabilities()
    count = len(capabilities) if capabilities else len(nvidia)
    if visible is not None:
        count = min(count, len([v for v in visible.split(",") if v.strip()]))
    return count, capabilities


def _nvidia_smi_capabilities() -> list[tuple[int, int]]:
    """Each GPU's compute capability as ``nvidia-smi`` reports it; empty when it cannot."""
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return []
    try:
        out = subprocess.run([smi, "--query-gpu=compute_cap", "--format=csv,noheader"], capture_output=True,
                             text=True, timeout=10, check=True).stdout
        return [(int(major), int(minor)) for major, minor in
                (line.strip().split(".", 1) for line in out.splitlines() if line.strip())]
    except (OSError, subprocess.SubprocessError, ValueError):
        return []


def check_devices(device: str, precision: str) -> None:
    """Refuse ``--device gpu`` without a GPU and ``--precision mixed`` without a fast-float16 one, from
    :func:`gpus_without_tensorflow` (where it can tell; TensorFlow's check follows where it cannot)."""
    count, capabilities = gpus_without_tensorflow() if device != "cpu" else (0, [])
    if count is None:
        return
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    hint = f" (CUDA_VISIBLE_DEVICES is {visible!r})" if visible is not None else ""
    if device == "gpu" and count == 0:
        raise ConfigError(f"--device gpu: this machine has no GPU to train on{hint}; use --device auto or cpu")
    slow = [c for c in capabilities if c < MIXED_MIN_CAPABILITY]
    if precision == "mixed" and (count == 0 or slow):
        found = ", ".join(".".join(map(str, c)) for c in capabilities) if capabilities else (
            "the CPU only" if device == "cpu" else f"no GPU{hint}")
        raise ConfigError(f"--precision mixed needs a GPU of compute capability "
                          f"{'.'.join(map(str, MIXED_MIN_CAPABILITY))} or newer (found: {found}); use --precision "
                          "float32 or auto")


def set_precision(policy: str) -> None:
    """Set Keras' global dtype policy (``keras.backend.clear_session`` resets it, so per trial)."""
    import keras

    if keras.mixed_precision.global_policy().name != policy:
        keras.mixed_precision.set_global_policy(policy)


def float16_compute() -> bool:
    """Whether models built now compute in float16 (and so need loss scaling and float32 outputs)."""
    import keras

    return keras.mixed_precision.global_policy().compute_dtype == "float16"


def compute_capability(tf: Any, gpu: Any) -> tuple[int, int]:
    details = tf.config.experimental.get_device_details(gpu) or {}
    cap = details.get("compute_capability") or (0, 0)
    return (int(cap[0]), int(cap[1]))


def _gpu_name(tf: Any, gpu: Any) -> str:
    details = tf.config.experimental.get_device_details(gpu) or {}
    return str(details.get("device_name") or gpu.name)


def _set_visible(tf: Any, devices: list[Any]) -> None:
    try:
        tf.config.set_visible_devices(devices, "GPU")
    except RuntimeError:  # TensorFlow already started; CUDA_VISIBLE_DEVICES still rules the children
        pass


def physical_gpu_ids() -> list[str]:
    """The ids to pin worker processes to with ``CUDA_VISIBLE_DEVICES`` (honouring one the user set)."""
    import tensorflow as tf

    count = len(tf.config.list_physical_devices("GPU"))
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        ids = [v.strip() for v in visible.split(",") if v.strip()]
        if not ids or ids[0] == "-1":
            return []
        return ids[:count]
    return [str(i) for i in range(count)]


def trial_device() -> str:
    """The device a trial's ops run on by default: ``cpu`` or ``gpu:<physical id>``."""
    import tensorflow as tf

    if not tf.config.list_logical_devices("GPU"):
        return "cpu"
    visible = [v.strip() for v in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if v.strip()]
    return f"gpu:{visible[0]}" if visible else "gpu:0"
