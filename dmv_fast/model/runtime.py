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

import contextlib
import dataclasses
import logging
import os
import threading
from pathlib import Path
from typing import Any

import numpy as np

from dmv_fast.model.truncation import bn_inputs
from dmv_fast.settings.choices import N_IMAGENET, NOISE_DIM
from dmv_fast.settings.machine import CPU, CUDA, GPU_PROVIDERS, TENSORRT
from dmv_fast.settings.plan import Plan, resolve, settle
from dmv_fast.settings.spec import ModelSpec

logger = logging.getLogger("dmv_fast")

_INPUTS = ("noise", "classes", "bn_idx", "bn_w")


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
            :func:`dmv_fast.model.cache.ensure_graph`).
        backend: ``"auto"`` (TensorRT ▸ CUDA ▸ CPU), ``"cpu"``, ``"cuda"`` or ``"tensorrt"``;
            ignored when ``plan`` is given.
        plan: the resolved :class:`~dmv_fast.settings.plan.Plan` to run (its providers and precision).
        threads: intra-op threads on the CPU (None: ONNX Runtime's default, one per core).
        batch_size, precision, scaling, pixels: graph settings when ``model`` is a name.
        device_id: CUDA device.
        cuda_graph: capture the run in a CUDA graph (CUDA/TensorRT providers; every node must
            run on the GPU).
        provider_options: extra options merged into the GPU provider's options.

    A graph exported for a ``yuv420p`` plan also makes planar YUV 4:2:0 frames, so that
    ``generate(..., pixel_format="yuv420p")`` hands the encoder ready planes.

    After the session is built, the providers that loaded are checked against the plan
    (:func:`dmv_fast.settings.plan.settle`): :attr:`plan` is the plan that really runs.

    Raises:
        ValueError: bad backend or model. RuntimeError: an explicitly requested GPU backend
        did not load.
    """

    def __init__(
        self,
        model: str | os.PathLike[str],
        backend: str = "auto",
        *,
        plan: Plan | None = None,
        threads: int | None = None,
        batch_size: int = 30,
        precision: str = "auto",
        scaling: int = 1,
        pixels: str = "stretch",
        device_id: int = 0,
        cuda_graph: bool = False,
        provider_options: dict[str, Any] | None = None,
    ) -> None:
        if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int)
                                    or threads < 1):  # fmt: skip
            raise ValueError(f"threads must be a positive integer or None, got {threads!r}")
        from dmv_fast.model import cache as models
        from dmv_fast.model import weights as model_weights

        text = os.fspath(model)
        if text in model_weights.PRETRAINED:
            if plan is None:
                spec = ModelSpec(
                    model_weights.PRETRAINED[text],
                    text,
                    backend,
                    precision,
                    batch_size,
                    scaling,
                    pixels,
                )
                plan = resolve(spec, encoder="x264", workers=1)
            path = models.ensure_graph(plan)
        else:
            path = Path(text).expanduser()
            if not path.is_file():
                raise ValueError(
                    f"model {text!r} is neither an .onnx file nor one of "
                    f"{', '.join(model_weights.PRETRAINED)}"
                )
            if plan is None:
                precision, conv_form = _graph_settings(path)
                spec = ModelSpec(backend=backend, precision=precision)
                plan = resolve(spec, encoder="x264", workers=1)
                if not plan.on_gpu:  # the file decides, whatever this CPU would choose
                    plan = dataclasses.replace(plan, conv_form=conv_form)
        self.model_path = Path(path)
        self.device_id = device_id
        self._lock = threading.Lock()
        self._session = self._create_session(plan, threads, cuda_graph, provider_options or {})
        self.plan: Plan = settle(plan, self._session.get_providers())
        if self.plan.warning:
            logger.warning("%s", self.plan.warning)
        self.backend = self.plan.backend
        self._describe()
        self._io = None
        if self.providers[0] in GPU_PROVIDERS:
            self._bind_device_buffers()

    # -- session --------------------------------------------------------------------------

    def _requested(self, plan: Plan, cuda_graph: bool, extra: dict[str, Any]) -> list[Any]:
        from dmv_fast.model.weights import cache_dir

        names = list(plan.providers)
        trt_cache = cache_dir() / "tensorrt"
        providers: list[Any] = []
        for name in names:
            if name == TENSORRT:
                trt_cache.mkdir(parents=True, exist_ok=True)
                options = {
                    "device_id": self.device_id,
                    "trt_fp16_enable": plan.precision == "fp16",
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

    def _create_session(
        self, plan: Plan, threads: int | None, cuda_graph: bool, extra: dict[str, Any]
    ) -> Any:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.intra_op_num_threads = threads or 0
        options.inter_op_num_threads = 1
        options.log_severity_level = 3  # errors only, for this session (no global setting)
        requested = self._requested(plan, cuda_graph, extra)
        if requested == [CPU]:
            # The memory pattern preallocates every intermediate buffer of the batch at once:
            # on the CPU it costs a fifth of the process's peak and gains no speed (128 px,
            # batch 4: 596 vs 733 MiB, 22.9 vs 21.8 frames/s).
            options.enable_mem_pattern = False
            session = self._cached_cpu_session(options)
            if session is not None:
                return session
        return self._load(self.model_path, options, requested)

    def _load(self, path: Path, options: Any, providers: list[Any]) -> Any:
        import onnxruntime as ort

        try:
            session = ort.InferenceSession(os.fspath(path), options, providers=providers)
        except Exception as e:  # onnxruntime raises its own exception types
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise RuntimeError(
                f"ONNX Runtime could not load {self.model_path.name}: {first}"
            ) from e
        self.session_graph = Path(path)
        return session

    def _cached_cpu_session(self, options: Any) -> Any:
        """A CPU session from ONNX Runtime's optimised form of a cached graph, saved beside
        it the first time (:func:`dmv_fast.model.cache.optimized_path`): later sessions skip
        the graph optimisation. None when the graph is not in the cache or the optimised form
        cannot be written (the caller builds the session as usual)."""
        import onnxruntime as ort

        from dmv_fast.files import publish, temporary
        from dmv_fast.model.cache import drop_optimized, optimized_path

        optimized = optimized_path(self.model_path)
        if optimized is None:
            return None
        if optimized.is_file():
            level = options.graph_optimization_level
            options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
            try:
                return self._load(optimized, options, [CPU])
            except RuntimeError as e:  # damaged: rebuilt below from the graph itself
                logger.warning("%s; optimising %s again", e, self.model_path.name)
                options.graph_optimization_level = level
        try:
            with temporary(optimized) as tmp:
                options.optimized_model_filepath = os.fspath(tmp)
                session = self._load(self.model_path, options, [CPU])
                publish(tmp, optimized, overwrite=True, sync=False)
        except (OSError, RuntimeError) as e:  # a full or read-only cache: run without it
            logger.debug("could not keep the optimised graph %s: %s", optimized.name, e)
            options.optimized_model_filepath = ""
            return None
        drop_optimized(self.model_path, keep=optimized)
        return session

    def _describe(self) -> None:
        session = self._session
        inputs = {i.name: i for i in session.get_inputs()}
        missing = [n for n in _INPUTS if n not in inputs]
        outputs = session.get_outputs()
        self.yuv420 = len(outputs) == 2
        if missing or len(outputs) not in (1, 2):
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
        #: ``(height, width)`` of the frames the graph makes.
        self.frame_size: tuple[int, int] = (int(out_shape[1]), int(out_shape[2]))
        #: The frame's height (the side of a square frame).
        self.resolution: int = int(out_shape[1])
        self.precision: str = meta.get("dmv_fast.precision", "unknown")
        self.pixels: str = meta.get("dmv_fast.pixels", "unknown")
        self.scaling: int = int(meta.get("dmv_fast.scaling", "1"))
        self.conv_form: str = meta.get("dmv_fast.conv_form", "direct")
        self.providers: list[str] = list(session.get_providers())

    def _bind_device_buffers(self) -> None:
        import onnxruntime as ort

        b = self.batch_size
        shapes = {
            "noise": ((b, NOISE_DIM), np.float32),
            "classes": ((b, N_IMAGENET), np.float32),
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

    def _run(self, feeds: dict[str, np.ndarray], fmt: str, run_options: Any = None) -> np.ndarray:
        if self._io is None:
            return self._session.run([self._outputs[fmt][0]], feeds, run_options)[0]
        for name, value in feeds.items():
            self._device_inputs[name].update_inplace(value)
        self._session.run_with_iobinding(self._io, run_options)
        return self._device_outputs[fmt].numpy()  # only the wanted format crosses to the host

    def generate(
        self,
        noise: Any,
        classes: Any,
        truncation: float,
        pixel_format: str = "rgb24",
        run_options: Any = None,
    ) -> np.ndarray:
        """Generate frames.

        Args:
            noise: ``np.ndarray [shape=(B, 128)]`` float noise vectors (finite).
            classes: ``np.ndarray [shape=(B, 1000)]`` float class vectors (finite).
            truncation: BigGAN truncation in (0, 1].
            pixel_format: ``"rgb24"``, or ``"yuv420p"`` on a graph exported for a ``yuv420p``
                plan.
            run_options: an ``onnxruntime.RunOptions`` for the calls (setting its
                ``terminate`` from another thread stops them).

        Returns:
            ``np.ndarray [shape=(B, H, W, 3)]`` uint8 RGB frames, ``(H, W) = frame_size``;
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
        classes = _check_batch(classes, N_IMAGENET, "classes")
        if len(noise) != len(classes):
            raise ValueError(
                f"noise and classes must have the same batch size, got {len(noise)} and "
                f"{len(classes)}"
            )
        n, b = len(noise), self.batch_size
        out = np.empty((n, *self._outputs[pixel_format][1][1:]), dtype=np.uint8)
        # Device buffers are bound once and shared: GPU calls take turns. CPU calls run side
        # by side (ONNX Runtime's run is thread-safe; the plan's lanes rely on it).
        with self._lock if self._io is not None else contextlib.nullcontext():
            for start in range(0, n, b):
                stop = min(start + b, n)
                z, c = noise[start:stop], classes[start:stop]
                if stop - start < b:  # frames are independent: padding rows change nothing
                    pad = b - (stop - start)
                    z = np.concatenate([z, np.zeros((pad, NOISE_DIM), np.float32)])
                    c = np.concatenate([c, np.zeros((pad, N_IMAGENET), np.float32)])
                feeds = {"noise": z, "classes": c, "bn_idx": idx, "bn_w": weights}
                frames = self._run(feeds, pixel_format, run_options)
                out[start:stop] = frames[: stop - start]
        return out

    def __repr__(self) -> str:
        return (
            f"Generator({self.model_path.name!r}, providers={self.providers}, "
            f"frame_size={self.frame_size}, batch_size={self.batch_size}, "
            f"precision={self.precision!r})"
        )


def _graph_settings(path: Path) -> tuple[str, str]:
    """The precision and convolution form an exported graph records (its sidecar, else its
    metadata)."""
    from dmv_fast.model.cache import onnx_record

    record = onnx_record(path)
    if record and isinstance(record.get("key"), dict):
        key = record["key"]
        applied = (record.get("winograd") or {}).get("applied", True)
        form = str(key.get("conv_form", "direct")) if applied else "direct"
        return str(key.get("precision", "fp32")), form
    import onnx

    try:
        model = onnx.load(os.fspath(path), load_external_data=False)
    except Exception:  # a damaged file: the session reports it when it loads
        return "fp32", "direct"
    meta = {p.key: p.value for p in model.metadata_props}
    return meta.get("dmv_fast.precision", "fp32"), meta.get("dmv_fast.conv_form", "direct")
