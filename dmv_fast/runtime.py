"""The generator on ONNX Runtime: one session, honest about where it runs. No torch here.

``Generator`` owns one ``InferenceSession`` built with explicit ``SessionOptions``. Execution
providers: ``auto`` tries TensorRT ▸ CUDA ▸ CPU among those the installed onnxruntime offers;
after the session is built, the providers that actually loaded are compared with the request.
An explicit ``cuda``/``tensorrt`` that did not load is a RuntimeError naming the missing
piece; ``auto`` logs exactly one warning when it ends up on the CPU and goes on.

On a GPU provider the inputs and the output live in preallocated device buffers bound once
(IOBinding, static shapes), so a call copies the batch in, runs, and copies the uint8 frames
out; nothing is allocated per call.
"""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path
from typing import Any

import numpy as np

from dmv_fast.truncation import bn_inputs

logger = logging.getLogger("dmv_fast")

BACKENDS = ("auto", "cpu", "cuda", "tensorrt")
CPU = "CPUExecutionProvider"
CUDA = "CUDAExecutionProvider"
TENSORRT = "TensorrtExecutionProvider"
GPU_PROVIDERS = (TENSORRT, CUDA)

NOISE_DIM = 128
N_CLASSES = 1000
_INPUTS = ("noise", "classes", "bn_idx", "bn_w")

_GPU_HINT = "install the GPU build: pip uninstall onnxruntime && pip install 'dmv-fast[gpu]'"
_CUDA_LIBS = (
    "no usable NVIDIA GPU and driver, or the CUDA runtime and cuDNN 9 libraries that "
    "onnxruntime-gpu {version} was built for are not on the library path (LD_LIBRARY_PATH, or "
    "the nvidia-* pip packages loaded with onnxruntime.preload_dlls())"
)
_TRT_LIBS = (
    "the TensorRT libraries (libnvinfer, TensorRT 10) were not found on the library path, "
    "or the GPU and CUDA provider themselves did not load"
)


def resolve_precision(precision: str, backend: str) -> str:
    """``"auto"`` precision: fp16 where a GPU provider will run the graph, else fp32.

    ``"int8"`` is the CPU provider's: with ``backend`` ``"cuda"``/``"tensorrt"`` it is a
    ValueError (raised here, before any export or session).
    """
    if precision in ("fp32", "fp16", "int8"):
        from dmv_fast.models import check_precision_backend

        check_precision_backend(precision, backend)
        return precision
    if precision != "auto":
        raise ValueError(f"precision must be 'auto', 'fp32', 'fp16' or 'int8', got {precision!r}")
    if backend == "cpu":
        # Not int8: its frames are 20-27 dB from fp32's on the random weights, under the
        # 35 dB bar (benchmarks/results/int8_cpu.md); int8 is an explicit draft choice.
        return "fp32"
    if backend in ("cuda", "tensorrt"):
        return "fp16"
    import onnxruntime as ort

    return "fp16" if set(GPU_PROVIDERS) & set(ort.get_available_providers()) else "fp32"


def _check_batch(x: Any, width: int, name: str) -> np.ndarray:
    arr = np.asarray(x)
    if arr.ndim != 2 or arr.shape[1] != width:
        raise ValueError(f"{name} must have shape [B, {width}], got {list(arr.shape)}")
    if not np.issubdtype(arr.dtype, np.floating):
        raise ValueError(f"{name} must be a float array (float32), got dtype {arr.dtype}")
    arr = np.ascontiguousarray(arr, dtype=np.float32)
    if not np.isfinite(arr).all():
        bad = int(np.count_nonzero(~np.isfinite(arr)))
        raise ValueError(f"{name} has {bad} non-finite values (NaN or infinity)")
    return arr


class Generator:
    """BigGAN-deep frames from noise and class vectors, on ONNX Runtime.

    Args:
        model: path of an exported ``.onnx`` graph, or a pretrained name
            (``"biggan-deep-128"``...; exported on first use, see
            :func:`dmv_fast.models.ensure_onnx`).
        backend: ``"auto"`` (TensorRT ▸ CUDA ▸ CPU), ``"cpu"``, ``"cuda"`` or ``"tensorrt"``.
        threads: intra-op threads on the CPU (None: ONNX Runtime's default, one per core).
        batch_size, precision, scaling, pixels: graph settings when ``model`` is a name
            (``precision="auto"``: fp16 on a GPU provider, fp32 on the CPU; ``"int8"``: the
            CPU provider only, a ValueError with a GPU backend; ``auto`` then runs on the CPU).
        device_id: CUDA device.
        cuda_graph: capture the run in a CUDA graph (CUDA/TensorRT providers; every node must
            run on the GPU).
        provider_options: extra options merged into the GPU provider's options.
        yuv420: also make planar YUV 4:2:0 frames inside the graph (see
            :mod:`dmv_fast.yuv`), so that ``generate(..., pixel_format="yuv420p")`` hands the
            encoder ready planes and no colour conversion is left for the CPU.

    Raises:
        ValueError: bad backend or model. RuntimeError: an explicitly requested GPU backend
        did not load.
    """

    def __init__(
        self,
        model: str | os.PathLike[str],
        backend: str = "auto",
        *,
        threads: int | None = None,
        batch_size: int = 30,
        precision: str = "auto",
        scaling: int = 1,
        pixels: str = "stretch",
        device_id: int = 0,
        cuda_graph: bool = False,
        provider_options: dict[str, Any] | None = None,
        yuv420: bool = False,
    ) -> None:
        if backend not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
        if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int)
                                    or threads < 1):  # fmt: skip
            raise ValueError(f"threads must be a positive integer or None, got {threads!r}")
        from dmv_fast import models

        text = os.fspath(model)
        if text in models.PRETRAINED:
            path = models.ensure_onnx(
                models.PRETRAINED[text],
                text,
                resolve_precision(precision, backend),
                batch_size,
                scaling=scaling,
                pixels=pixels,
            )
        else:
            path = Path(text).expanduser()
            if not path.is_file():
                raise ValueError(
                    f"model {text!r} is neither an .onnx file nor one of "
                    f"{', '.join(models.PRETRAINED)}"
                )
        self.model_path = Path(path)
        record = models.onnx_record(self.model_path)
        if (
            record
            and isinstance(record.get("key"), dict)
            and record["key"].get("precision") == "int8"
        ):
            models.check_precision_backend("int8", backend)
            backend = "cpu"  # an int8 graph is made for the CPU provider
        self.yuv420 = bool(yuv420)
        self.backend = backend
        self.device_id = device_id
        self._lock = threading.Lock()
        self._session = self._create_session(threads, cuda_graph, provider_options or {})
        self._describe()
        self._io = None
        if self.providers[0] in GPU_PROVIDERS:
            self._bind_device_buffers()

    # -- session --------------------------------------------------------------------------

    def _requested(
        self, available: list[str], precision: str, cuda_graph: bool, extra: dict[str, Any]
    ) -> list[Any]:
        import onnxruntime as ort

        from dmv_fast.models import cache_dir

        if self.backend in ("cuda", "tensorrt"):
            wanted = TENSORRT if self.backend == "tensorrt" else CUDA
            if wanted not in available:
                raise RuntimeError(
                    f"backend {self.backend!r} needs onnxruntime-gpu, but the installed "
                    f"onnxruntime {ort.__version__} offers only {', '.join(available)}: "
                    f"{_GPU_HINT}"
                )
        names = {
            "auto": [p for p in (TENSORRT, CUDA) if p in available] + [CPU],
            "cpu": [CPU],
            "cuda": [CUDA, CPU],
            "tensorrt": [TENSORRT, CUDA, CPU],
        }[self.backend]
        trt_cache = cache_dir() / "tensorrt"
        providers: list[Any] = []
        for name in names:
            if name == TENSORRT:
                trt_cache.mkdir(parents=True, exist_ok=True)
                options = {
                    "device_id": self.device_id,
                    "trt_fp16_enable": precision == "fp16",
                    "trt_engine_cache_enable": True,
                    "trt_engine_cache_path": str(trt_cache),
                    "trt_timing_cache_enable": True,
                    "trt_timing_cache_path": str(trt_cache),
                    "trt_cuda_graph_enable": cuda_graph,
                    **extra,
                }
                providers.append((name, options))
            elif name == CUDA:
                options = {
                    "device_id": self.device_id,
                    "arena_extend_strategy": "kSameAsRequested",
                    "cudnn_conv_algo_search": "EXHAUSTIVE",
                    "do_copy_in_default_stream": True,
                    # With TensorRT in front, the CUDA graph (if any) is TensorRT's.
                    "enable_cuda_graph": cuda_graph and TENSORRT not in names,
                    **(extra if TENSORRT not in names else {}),
                }
                providers.append((name, options))
            else:
                providers.append(name)
        return providers

    def _create_session(self, threads: int | None, cuda_graph: bool, extra: dict[str, Any]):
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.intra_op_num_threads = threads or 0
        options.inter_op_num_threads = 1
        options.log_severity_level = 3  # errors only, for this session (no global setting)
        available = list(ort.get_available_providers())
        precision = self._graph_precision(available)
        requested = self._requested(available, precision, cuda_graph, extra)
        if requested == [CPU]:
            # The memory pattern preallocates every intermediate buffer of the batch at once:
            # on the CPU it costs a fifth of the process's peak and gains no speed (128 px,
            # batch 4: 596 vs 733 MiB, 22.9 vs 21.8 frames/s).
            options.enable_mem_pattern = False
        try:
            source: Any = os.fspath(self.model_path)
            if self.yuv420:
                import onnx

                from dmv_fast.yuv import append_yuv420

                source = append_yuv420(onnx.load(source), keep_rgb=True).SerializeToString()
            session = ort.InferenceSession(source, options, providers=requested)
        except Exception as e:  # onnxruntime raises its own exception types
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise RuntimeError(
                f"ONNX Runtime could not load {self.model_path.name}: {first}"
            ) from e
        loaded = list(session.get_providers())
        wanted = [p if isinstance(p, str) else p[0] for p in requested]
        self._check_loaded(wanted, loaded, available, ort.__version__)
        return session

    def _check_loaded(
        self, wanted: list[str], loaded: list[str], available: list[str], version: str
    ) -> None:
        def reason(provider: str) -> str:
            if provider == CUDA:
                return _CUDA_LIBS.format(version=version)
            return _TRT_LIBS

        if self.backend in ("cuda", "tensorrt"):
            primary = wanted[0]
            if primary not in loaded:
                label = "CUDA" if primary == CUDA else "TensorRT"
                raise RuntimeError(
                    f"the {label} execution provider did not load ({reason(primary)}); "
                    f"loaded: {', '.join(loaded)}"
                )
            return
        if self.backend == "auto" and loaded[0] not in GPU_PROVIDERS:
            gpu_offered = [p for p in available if p in GPU_PROVIDERS]
            if not gpu_offered:
                why = (
                    f"the installed onnxruntime {version} has no GPU provider ({_GPU_HINT} "
                    "on a GPU machine)"
                )
            else:
                why = f"{', '.join(gpu_offered)} did not load: {reason(gpu_offered[-1])}"
            logger.warning("generator runs on the CPU: %s", why)
        elif self.backend == "auto" and wanted[0] not in loaded:
            logger.warning(
                "generator runs on %s: %s did not load (%s)",
                loaded[0],
                wanted[0],
                reason(wanted[0]),
            )

    def _graph_precision(self, available: list[str]) -> str:
        """The graph's precision, needed before the session exists only for TensorRT."""
        if self.backend == "cpu" or self.backend == "cuda" or TENSORRT not in available:
            return "fp32"
        from dmv_fast.models import onnx_record

        record = onnx_record(self.model_path)
        if record and isinstance(record.get("key"), dict):
            return str(record["key"].get("precision", "fp32"))
        import onnx

        try:
            model = onnx.load(os.fspath(self.model_path), load_external_data=False)
        except Exception as e:  # a damaged file: protobuf raises DecodeError and others
            raise RuntimeError(f"{self.model_path} is not a readable ONNX model: {e}") from e
        meta = {p.key: p.value for p in model.metadata_props}
        return meta.get("dmv_fast.precision", "fp32")

    def _describe(self) -> None:
        session = self._session
        inputs = {i.name: i for i in session.get_inputs()}
        missing = [n for n in _INPUTS if n not in inputs]
        outputs = session.get_outputs()
        if missing or len(outputs) != 1 + self.yuv420:
            raise ValueError(
                f"{self.model_path.name} is not a dmv-fast generator graph "
                f"(missing inputs {missing}, {len(outputs)} outputs)"
            )
        batch = inputs["noise"].shape[0]
        out_shape = outputs[0].shape
        if not isinstance(batch, int) or not all(isinstance(d, int) for d in out_shape):
            raise ValueError(f"{self.model_path.name} has dynamic shapes; export a static batch")
        meta = dict(session.get_modelmeta().custom_metadata_map)
        self.metadata: dict[str, str] = meta
        self._output_name = outputs[0].name
        self._out_shape = tuple(int(d) for d in out_shape)
        # Output name and shape per pixel format.
        self._outputs = {"rgb24": (outputs[0].name, self._out_shape)}
        if self.yuv420:
            self._outputs["yuv420p"] = (outputs[1].name, tuple(int(d) for d in outputs[1].shape))
        self.batch_size: int = int(batch)
        self.resolution: int = int(out_shape[1])
        self.precision: str = meta.get("dmv_fast.precision", "unknown")
        self.pixels: str = meta.get("dmv_fast.pixels", "unknown")
        self.scaling: int = int(meta.get("dmv_fast.scaling", "1"))
        self.providers: list[str] = list(session.get_providers())

    def _bind_device_buffers(self) -> None:
        import onnxruntime as ort

        b = self.batch_size
        shapes = {
            "noise": ((b, NOISE_DIM), np.float32),
            "classes": ((b, N_CLASSES), np.float32),
            "bn_idx": ((2,), np.int64),
            "bn_w": ((2,), np.float32),
        }
        io = self._session.io_binding()
        self._device_inputs = {}
        for name, (shape, dtype) in shapes.items():
            value = ort.OrtValue.ortvalue_from_shape_and_type(shape, dtype, "cuda", self.device_id)
            io.bind_ortvalue_input(name, value)
            self._device_inputs[name] = value
        self._device_outputs = {}
        for fmt, (name, shape) in self._outputs.items():
            value = ort.OrtValue.ortvalue_from_shape_and_type(
                shape, np.uint8, "cuda", self.device_id
            )
            io.bind_ortvalue_output(name, value)
            self._device_outputs[fmt] = value
        self._io = io

    # -- inference ------------------------------------------------------------------------

    def _run(self, feeds: dict[str, np.ndarray], fmt: str) -> np.ndarray:
        if self._io is None:
            return self._session.run([self._outputs[fmt][0]], feeds)[0]
        for name, value in feeds.items():
            self._device_inputs[name].update_inplace(value)
        self._session.run_with_iobinding(self._io)
        return self._device_outputs[fmt].numpy()  # only the wanted format crosses to the host

    def generate(
        self, noise: Any, classes: Any, truncation: float, pixel_format: str = "rgb24"
    ) -> np.ndarray:
        """Generate frames.

        Args:
            noise: ``np.ndarray [shape=(B, 128)]`` float noise vectors (finite).
            classes: ``np.ndarray [shape=(B, 1000)]`` float class vectors (finite).
            truncation: BigGAN truncation in (0, 1].
            pixel_format: ``"rgb24"``, or ``"yuv420p"`` on a generator made with
                ``yuv420=True``.

        Returns:
            ``np.ndarray [shape=(B, H, W, 3)]`` uint8 RGB frames, ``H = W = resolution``;
            for ``"yuv420p"``: ``[shape=(B, H * 3 // 2, W)]`` planes (PyAV's layout).
            Any ``B``: batches are run at the graph's static batch size, the last one padded.

        Raises:
            ValueError: bad shapes, dtypes, non-finite values or truncation.
        """
        if pixel_format not in self._outputs:
            raise ValueError(
                f"pixel_format must be one of {', '.join(self._outputs)} for this generator, "
                f"got {pixel_format!r}"
            )
        idx, weights = bn_inputs(truncation)
        noise = _check_batch(noise, NOISE_DIM, "noise")
        classes = _check_batch(classes, N_CLASSES, "classes")
        if len(noise) != len(classes):
            raise ValueError(
                f"noise and classes must have the same batch size, got {len(noise)} and "
                f"{len(classes)}"
            )
        n, b = len(noise), self.batch_size
        out = np.empty((n, *self._outputs[pixel_format][1][1:]), dtype=np.uint8)
        with self._lock:
            for start in range(0, n, b):
                stop = min(start + b, n)
                z, c = noise[start:stop], classes[start:stop]
                if stop - start < b:  # frames are independent: padding rows change nothing
                    pad = b - (stop - start)
                    z = np.concatenate([z, np.zeros((pad, NOISE_DIM), np.float32)])
                    c = np.concatenate([c, np.zeros((pad, N_CLASSES), np.float32)])
                feeds = {"noise": z, "classes": c, "bn_idx": idx, "bn_w": weights}
                frames = self._run(feeds, pixel_format)
                out[start:stop] = frames[: stop - start]
        return out

    def __repr__(self) -> str:
        return (
            f"Generator({self.model_path.name!r}, providers={self.providers}, "
            f"resolution={self.resolution}, batch_size={self.batch_size}, "
            f"precision={self.precision!r})"
        )
