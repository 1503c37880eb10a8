"""Model settings in one place, and the plan that settles every ``auto`` once.

Two objects carry everything the generator and the encoder depend on:

- :class:`ModelSpec`: what was asked of the model (resolution, weights, backend, precision,
  batch, scaling, pixels). Frozen; every value is checked at construction, so a bad one fails
  before any work. It may say ``auto``.
- :class:`Plan`: what will run, from :func:`resolve`. It never says ``auto``: backend,
  ONNX Runtime providers, precision, the graph's static batch, the pixel format the graph
  hands the encoder, the encoder and the number of segment workers. The graph cache key, the
  ``-d`` manifest, the record, :class:`~dmv_fast.pipeline.RenderResult` and ``dmv-fast bench``
  store :meth:`Plan.to_dict`.

:func:`resolve` probes the installed execution providers once per process: which ones the
installed onnxruntime offers, and which of them actually load (a one-node session). If a
session later contradicts the plan, :func:`settle` redoes it once as the CPU plan (capped
batch, fp32, RGB) with one warning; an explicit ``cuda``/``tensorrt`` that does not load is an
error. Nothing downstream decides ``auto`` again.

The choice lists and defaults below are the only copies; the CLI reads them.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import numbers
import os
import warnings
from dataclasses import dataclass
from typing import Any

logger = logging.getLogger("dmv_fast")

RESOLUTIONS = (128, 256, 512)
BACKENDS = ("auto", "cpu", "cuda", "tensorrt")
PRECISIONS = ("auto", "fp32", "fp16", "int8")
ENCODERS = ("auto", "x264", "nvenc")
PIXELS = ("stretch", "fixed")
PIXEL_FORMATS = ("rgb24", "yuv420p")
X264_PRESETS = (
    "ultrafast",
    "superfast",
    "veryfast",
    "faster",
    "fast",
    "medium",
    "slow",
    "slower",
    "veryslow",
    "placebo",
)
#: Container format for each accepted output suffix.
CONTAINERS = {".mp4": "mp4", ".m4v": "mp4", ".mov": "mov", ".mkv": "matroska"}

DEFAULT_RESOLUTION = 512
DEFAULT_BATCH = 30
MAX_BATCH = 1024
MAX_SCALING = 8
MAX_WORKERS = 256
#: On the CPU a larger batch buys no speed (the convolutions already fill the cores) while
#: ONNX Runtime's buffers grow with it: batch 30 peaks near 3 GB at 128 px, batch 4 under 1 GB
#: (benchmarks/results/e2e_cpu.md). So the CPU graph batch is capped; GPUs use the batch asked.
CPU_BATCH_CAP = 4
#: Precision ``auto`` picks on the CPU (see benchmarks/results/int8_cpu.md for why not int8).
CPU_AUTO_PRECISION = "fp32"

CPU = "CPUExecutionProvider"
CUDA = "CUDAExecutionProvider"
TENSORRT = "TensorrtExecutionProvider"
GPU_PROVIDERS = (TENSORRT, CUDA)
_PROVIDER_OF = {"cpu": CPU, "cuda": CUDA, "tensorrt": TENSORRT}
_BACKEND_OF = {v: k for k, v in _PROVIDER_OF.items()}

GPU_HINT = "install the GPU build: pip uninstall onnxruntime && pip install 'dmv-fast[gpu]'"


# ---------------------------------------------------------------------------------------------
# Checks shared with RenderOptions


def is_int(value: Any) -> bool:
    """An integer that is not a bool."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def is_real(value: Any) -> bool:
    """A finite real number that is not a bool."""
    return (
        isinstance(value, numbers.Real)
        and not isinstance(value, bool)
        and math.isfinite(float(value))
    )


def invalid(name: str, value: Any, valid: str) -> ValueError:
    """The one-line error for a bad setting: its name, the valid range, the value."""
    return ValueError(f"{name} must be {valid}, got {value!r}")


def choice(name: str, value: Any, choices: tuple[str, ...]) -> str:
    """``value`` (a string or a str Enum) if it is one of ``choices``, else ValueError."""
    text = getattr(value, "value", value)
    if text not in choices:
        raise invalid(name, text, "one of " + ", ".join(choices))
    return str(text)


def int_in(name: str, value: Any, low: int, high: int) -> int:
    if not is_int(value) or not low <= value <= high:
        raise invalid(name, value, f"an integer in {low}..{high}")
    return int(value)


# ---------------------------------------------------------------------------------------------
# What was asked


@dataclass(frozen=True)
class ModelSpec:
    """The model settings of a render, checked at construction (``ValueError`` naming the bad
    one). Change them with :func:`dataclasses.replace`.

    Attributes:
        resolution: BigGAN-deep output size, 128, 256 or 512.
        weights: ``None`` (pretrained ``biggan-deep-<resolution>``), a pretrained name,
            ``"random"`` (seeded random weights) or a local folder / ``.bin`` file.
        backend: ``"auto"`` (TensorRT ▸ CUDA ▸ CPU), ``"cpu"``, ``"cuda"`` or ``"tensorrt"``.
        precision: ``"auto"`` (fp16 on a GPU, fp32 on the CPU), ``"fp32"``, ``"fp16"``, or
            ``"int8"`` (CPU only).
        batch_size: frames per generator call on a GPU, 1..1024 (capped at
            :data:`CPU_BATCH_CAP` on the CPU).
        scaling: integer Lanczos upscaling inside the graph, 1..8.
        pixels: ``"stretch"`` (each frame's min..max to 0..255, the original's look) or
            ``"fixed"`` ([-1, 1] to 0..255).
    """

    resolution: int = DEFAULT_RESOLUTION
    weights: str | None = None
    backend: str = "auto"
    precision: str = "auto"
    batch_size: int = DEFAULT_BATCH
    scaling: int = 1
    pixels: str = "stretch"

    def __post_init__(self) -> None:
        res = getattr(self.resolution, "value", self.resolution)
        if isinstance(res, str) and res.isdigit():
            res = int(res)
        if not is_int(res) or res not in RESOLUTIONS:
            raise invalid("resolution", res, "128, 256 or 512")
        object.__setattr__(self, "resolution", int(res))
        weights = self.weights
        if isinstance(weights, os.PathLike):
            weights = os.fspath(weights)
        if weights is not None and (not isinstance(weights, str) or not weights):
            raise invalid("weights", weights, "None, a pretrained name, 'random' or a path")
        object.__setattr__(self, "weights", weights)
        for name, choices in (
            ("backend", BACKENDS),
            ("precision", PRECISIONS),
            ("pixels", PIXELS),
        ):
            object.__setattr__(self, name, choice(name, getattr(self, name), choices))
        int_in("batch_size", self.batch_size, 1, MAX_BATCH)
        int_in("scaling", self.scaling, 1, MAX_SCALING)
        if self.precision == "int8" and self.backend in ("cuda", "tensorrt"):
            raise ValueError(
                f"precision int8 runs only on the CPU, not with backend {self.backend!r} "
                "(use --backend cpu, or fp16 on a GPU)"
            )

    @property
    def weights_name(self) -> str:
        """The weights as recorded: the given value, or the pretrained default's name."""
        return self.weights or f"biggan-deep-{self.resolution}"

    @property
    def frame_size(self) -> int:
        """Width and height of a video frame in pixels (resolution times scaling)."""
        return self.resolution * self.scaling


# ---------------------------------------------------------------------------------------------
# What will run


@dataclass(frozen=True)
class Plan:
    """Everything ``auto`` was resolved to; see :func:`resolve`.

    Attributes:
        spec: the model settings asked for.
        backend: ``"cpu"``, ``"cuda"`` or ``"tensorrt"``.
        providers: ONNX Runtime execution providers to request, in order.
        precision: ``"fp32"``, ``"fp16"`` or ``"int8"``.
        batch_size: the graph's static batch.
        pixel_format: what the graph hands the encoder: ``"rgb24"`` (``[B, H, W, 3]``) or
            ``"yuv420p"`` (``[B, H * 3 // 2, W]`` planes made on the GPU).
        encoder: ``"x264"`` or ``"nvenc"``.
        workers: segment workers (each with its own encoder); 1 renders in one stream.
        notes: why each ``auto`` went the way it did, one line each.
        warning: what the generator logs once when its session is built (``auto`` that ends
            on the CPU), else empty.
    """

    spec: ModelSpec
    backend: str
    providers: tuple[str, ...]
    precision: str
    batch_size: int
    pixel_format: str
    encoder: str
    workers: int = 1
    notes: tuple[str, ...] = ()
    warning: str = ""

    @property
    def on_gpu(self) -> bool:
        return self.backend != "cpu"

    @property
    def resolution(self) -> int:
        return self.spec.resolution

    @property
    def frame_size(self) -> int:
        return self.spec.frame_size

    def graph_settings(self) -> dict[str, Any]:
        """What picks the exported graph (besides the weights): part of its cache key."""
        return {
            "resolution": self.spec.resolution,
            "precision": self.precision,
            "batch_size": self.batch_size,
            "scaling": self.spec.scaling,
            "pixels": self.spec.pixels,
            "pixel_format": self.pixel_format,
        }

    def to_dict(self) -> dict[str, Any]:
        """The plan as JSON-able values (no ``auto`` anywhere)."""
        return {
            **self.graph_settings(),
            "weights": self.spec.weights_name,
            "backend": self.backend,
            "providers": list(self.providers),
            "encoder": self.encoder,
            "workers": self.workers,
        }

    def on_cpu(self, why: str) -> Plan:
        """The CPU plan for the same request: capped batch, fp32 (or int8), RGB."""
        return dataclasses.replace(
            self,
            backend="cpu",
            providers=(CPU,),
            precision="int8" if self.spec.precision == "int8" else cpu_precision(self.spec),
            batch_size=min(self.spec.batch_size, CPU_BATCH_CAP),
            pixel_format="rgb24",
            workers=1,
            notes=(*self.notes, f"runs on the CPU: {why}"),
            warning="",
        )


def cpu_precision(spec: ModelSpec) -> str:
    return CPU_AUTO_PRECISION if spec.precision == "auto" else spec.precision


# ---------------------------------------------------------------------------------------------
# Probing the providers (once per process)


_probe: dict[str, tuple[str, ...]] = {}


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
    """Forget the probed providers (tests, or after installing libraries)."""
    _probe.clear()


# ---------------------------------------------------------------------------------------------
# Resolving


def resolve(
    spec: ModelSpec,
    *,
    encoder: str = "auto",
    workers: int | None = None,
    offered: tuple[str, ...] | None = None,
    loadable: tuple[str, ...] | None = None,
) -> Plan:
    """Settle backend, providers, precision, graph batch, pixel format, encoder and workers.

    Args:
        spec: the model settings asked for.
        encoder: ``"auto"``, ``"x264"`` or ``"nvenc"``.
        workers: segment workers; None picks what keeps the encoder from being the
            bottleneck (1 on the CPU).
        offered, loadable: provider lists to use instead of probing (tests).

    Raises:
        ValueError: an explicit backend or encoder this machine cannot run (one line, before
            any work).
    """
    encoder = choice("encoder", encoder, ENCODERS)
    if workers is not None:
        int_in("workers", workers, 1, MAX_WORKERS)
    offered = offered_providers() if offered is None else tuple(offered)
    notes: list[str] = []
    warning = ""
    providers: tuple[str, ...]
    if spec.backend in ("cuda", "tensorrt"):
        wanted = _PROVIDER_OF[spec.backend]
        if wanted not in offered:
            raise ValueError(
                f"backend {spec.backend!r} needs onnxruntime-gpu, but the installed onnxruntime "
                f"offers only {', '.join(offered)}: {GPU_HINT}"
            )
        loadable = loadable_providers(offered) if loadable is None else tuple(loadable)
        if wanted not in loadable:
            raise ValueError(
                f"backend {spec.backend!r}: {wanted} did not load ({load_failure(wanted)})"
            )
        backend = spec.backend
        providers = (TENSORRT, CUDA, CPU) if backend == "tensorrt" else (CUDA, CPU)
        providers = tuple(p for p in providers if p in loadable)
    elif spec.backend == "cpu" or spec.precision == "int8":
        backend, providers = "cpu", (CPU,)
        if spec.backend == "auto":
            notes.append("precision int8 runs on the CPU")
    else:
        gpu_offered = [p for p in GPU_PROVIDERS if p in offered]
        loadable = (
            (loadable_providers(offered) if gpu_offered else (CPU,))
            if loadable is None
            else tuple(loadable)
        )
        gpu = [p for p in GPU_PROVIDERS if p in loadable]
        if gpu:
            backend, providers = _BACKEND_OF[gpu[0]], (*gpu, CPU)
            notes.append(f"backend {backend}: {gpu[0]} loads")
        else:
            backend, providers = "cpu", (CPU,)
            why = (
                f"{', '.join(gpu_offered)} did not load ({load_failure(gpu_offered[-1])})"
                if gpu_offered
                else f"the installed onnxruntime has no GPU provider ({GPU_HINT} on a GPU machine)"
            )
            notes.append(f"backend cpu: {why}")
            warning = f"generator runs on the CPU: {why}"
    on_gpu = backend != "cpu"
    if spec.precision != "auto":
        precision = spec.precision
    else:
        precision = "fp16" if on_gpu else cpu_precision(spec)
    batch = spec.batch_size if on_gpu else min(spec.batch_size, CPU_BATCH_CAP)
    if batch != spec.batch_size:
        notes.append(f"graph batch {batch}: the CPU batch cap")
    pixel_format = "yuv420p" if on_gpu else "rgb24"
    chosen_encoder = _resolve_encoder(encoder, on_gpu, notes)
    if workers is None:
        workers = default_workers(on_gpu, chosen_encoder, spec.frame_size)
    return Plan(
        spec=spec,
        backend=backend,
        providers=providers,
        precision=precision,
        batch_size=batch,
        pixel_format=pixel_format,
        encoder=chosen_encoder,
        workers=workers,
        notes=tuple(notes),
        warning=warning,
    )


def _resolve_encoder(encoder: str, on_gpu: bool, notes: list[str]) -> str:
    if encoder == "x264":
        return "x264"
    from dmv_fast.encode import probe_nvenc

    if encoder == "nvenc":
        ok, why = probe_nvenc()
        if not ok:
            raise ValueError(f"encoder 'nvenc' is not available here: {why}")
        return "nvenc"
    if not on_gpu:
        notes.append("encoder x264: the generator runs on the CPU")
        return "x264"
    ok, why = probe_nvenc()
    notes.append(f"encoder {'nvenc' if ok else 'x264'}: {why}")
    return "nvenc" if ok else "x264"


def default_workers(on_gpu: bool, encoder: str, frame_size: int) -> int:
    """Segment workers that keep the encoder from being the bottleneck: 1 on the CPU (the
    generator is far slower than one encoder) and with NVENC; on a GPU with libx264, one
    encoder per two cores, at most 8."""
    if not on_gpu or encoder == "nvenc":
        return 1
    return max(1, min(8, (os.cpu_count() or 2) // 2))


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


def settle(plan: Plan, loaded: list[str] | tuple[str, ...]) -> Plan:
    """Check a built session's providers against the plan.

    Returns the plan unchanged when they agree; for ``auto`` on a GPU plan whose session ended
    on the CPU, the CPU plan (one warning: the caller rebuilds the graph and session); for
    ``auto`` TensorRT that fell to CUDA, the CUDA plan.

    Raises:
        RuntimeError: an explicit ``cuda``/``tensorrt`` whose provider did not load.
    """
    loaded = list(loaded)
    if not plan.on_gpu or (loaded and loaded[0] == plan.providers[0]):
        return plan
    wanted = plan.providers[0]
    if plan.spec.backend != "auto":
        label = "CUDA" if wanted == CUDA else "TensorRT"
        raise RuntimeError(
            f"the {label} execution provider did not load ({load_failure(wanted)}); "
            f"loaded: {', '.join(loaded)}"
        )
    if loaded and loaded[0] in GPU_PROVIDERS:
        logger.warning("generator runs on %s: %s did not load", loaded[0], wanted)
        return dataclasses.replace(
            plan,
            backend=_BACKEND_OF[loaded[0]],
            providers=tuple(p for p in plan.providers if p != wanted),
            notes=(*plan.notes, f"{wanted} did not load"),
        )
    why = f"{wanted} did not load ({load_failure(wanted)})"
    logger.warning("generator runs on the CPU: %s", why)
    return plan.on_cpu(why)
