"""What this machine offers a plan: the ONNX Runtime execution providers that really load,
and the CPU's feature flags. Each is probed once per process (:func:`reset_probe` forgets)."""

from __future__ import annotations

import logging
import warnings

logger = logging.getLogger("dmv_fast")

CPU = "CPUExecutionProvider"
CUDA = "CUDAExecutionProvider"
TENSORRT = "TensorrtExecutionProvider"
GPU_PROVIDERS = (TENSORRT, CUDA)
PROVIDER_OF = {"cpu": CPU, "cuda": CUDA, "tensorrt": TENSORRT}
BACKEND_OF = {v: k for k, v in PROVIDER_OF.items()}

GPU_HINT = "install the GPU build: pip uninstall onnxruntime && pip install 'dmv-fast[gpu]'"

_probe: dict[str, tuple[str, ...]] = {}


def cpu_flags() -> frozenset[str]:
    """The CPU's feature flags (``/proc/cpuinfo``; empty where that cannot be read)."""
    if "cpu_flags" not in _probe:
        flags: tuple[str, ...] = ()
        try:
            with open("/proc/cpuinfo", encoding="utf-8") as f:
                for line in f:
                    if line.startswith("flags"):
                        flags = tuple(line.split(":", 1)[1].split())
                        break
        except OSError:
            pass
        _probe["cpu_flags"] = flags
    return frozenset(_probe["cpu_flags"])


def offered_providers() -> tuple[str, ...]:
    """The execution providers the installed onnxruntime offers (not necessarily loadable)."""
    if "offered" not in _probe:
        import onnxruntime as ort

        offered = tuple(ort.get_available_providers())
        if set(offered) & set(GPU_PROVIDERS) and hasattr(ort, "preload_dlls"):
            # onnxruntime-gpu >= 1.21 finds CUDA/cuDNN from the nvidia-* wheels this way.
            try:
                ort.preload_dlls()
            except Exception as e:  # missing libraries: the load probe will tell
                logger.debug("onnxruntime.preload_dlls() failed: %s", e)
        _probe["offered"] = offered
    return _probe["offered"]


def loadable_providers(offered: tuple[str, ...] | None = None) -> tuple[str, ...]:
    """Of the offered GPU providers, those that really load: a one-node session per provider.

    The CPU provider always loads. The answer is cached for the process.
    """
    offered = offered_providers() if offered is None else offered
    key = "loadable:" + ",".join(offered)
    if key not in _probe:
        loaded = [p for p in GPU_PROVIDERS if p in offered and _loads(p)]
        _probe[key] = (*loaded, CPU)
    return _probe[key]


def _loads(provider: str) -> bool:
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])
    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "probe", [x], [y])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = min(model.ir_version, onnx.IR_VERSION, 9)
    options = ort.SessionOptions()
    options.log_severity_level = 4
    try:
        with warnings.catch_warnings():  # onnxruntime warns when it drops a provider
            warnings.simplefilter("ignore")
            session = ort.InferenceSession(
                model.SerializeToString(), options, providers=[provider, CPU]
            )
    except Exception as e:  # the provider's libraries failed to load
        logger.debug("%s did not load: %s", provider, e)
        return False
    return provider in session.get_providers()


def reset_probe() -> None:
    """Forget the probed providers and flags (tests, or after installing libraries)."""
    _probe.clear()


def load_failure(provider: str) -> str:
    """Why a GPU provider may not load, in one line."""
    if provider == TENSORRT:
        return (
            "the TensorRT libraries (libnvinfer, TensorRT 10) were not found on the library "
            "path, or the GPU and CUDA provider themselves did not load"
        )
    return (
        "no usable NVIDIA GPU and driver, or the CUDA runtime and cuDNN 9 libraries that "
        "onnxruntime-gpu was built for are not on the library path (LD_LIBRARY_PATH, or the "
        "nvidia-* pip packages loaded with onnxruntime.preload_dlls())"
    )
