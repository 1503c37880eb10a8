"""The render pipeline: analysis -> trajectories -> generator -> bounded queue -> encoder.

Inference of batch k+1 overlaps the encoding of batch k: the generator runs on the calling
thread (ONNX Runtime releases the GIL) while a worker thread encodes. The queue between them
is bounded, so memory stays flat whatever the song's length.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import logging
import os
import queue
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from dmv_fast.options import RenderOptions

logger = logging.getLogger("dmv_fast")

#: ``progress(stage, done, total)``; stages: "analysis", "export", "render", "encode".
ProgressCallback = Callable[[str, int, int], None]

QUEUE_DEPTH = 3  # batches in flight between the generator and the encoder (>= 2)
# On the CPU a larger batch buys no speed (the convolutions already fill the cores) while
# ONNX Runtime's buffers grow with it: batch 30 peaks near 3 GB at 128 px, batch 4 under 1 GB
# (benchmarks/results/e2e_cpu.md). So the CPU graph batch is capped; GPUs use --batch_size.
CPU_BATCH_CAP = 4


def _no_progress(stage: str, done: int, total: int) -> None:
    return None


@dataclass
class RenderResult:
    """What a render produced and what it used."""

    output: Path
    frames: int
    fps: Fraction
    seed: int
    classes: tuple[int, ...]
    record: Path
    providers: list[str]
    encoder: str
    timings: dict[str, float] = field(default_factory=dict)


def runs_on_gpu(backend: str) -> bool:
    """Whether ``backend`` will run the graph on a GPU provider (for ``auto``: one is installed)."""
    if backend == "cpu":
        return False
    if backend in ("cuda", "tensorrt"):
        return True
    import onnxruntime as ort

    gpu = {"CUDAExecutionProvider", "TensorrtExecutionProvider"}
    return bool(gpu & set(ort.get_available_providers()))


def frames_folder(output_file: str | os.PathLike[str]) -> Path:
    """The ``-d`` frames folder of an output: ``NAME.frames/`` beside ``NAME.mp4``."""
    out = Path(output_file)
    return out.with_name(out.stem + ".frames")


def video_frame_count(n_feature_frames: int, options: RenderOptions) -> int:
    """Frames in the video: every feature frame, or exactly ``--duration`` seconds of them."""
    if options.duration is None:
        return n_feature_frames
    wanted = round(options.duration * options.fps)
    if wanted > n_feature_frames:
        logger.warning(
            "--duration %.3g s is longer than the song (%.3f s): rendering the whole song",
            options.duration,
            n_feature_frames / options.fps,
        )
        return n_feature_frames
    return max(1, wanted)


def check_output(path: Path, overwrite: bool, song: str | os.PathLike[str] | None = None) -> None:
    """Refuse an output we could not write, before any expensive work starts.

    Also refuses an output that is the song itself (through links too), and sweeps the
    temporaries that killed runs left in the output folder.
    """
    from dmv_fast.encode import CONTAINERS
    from dmv_fast.files import same_file, sweep, temporary_name

    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir():
        raise ValueError(f"output folder {str(folder)!r} does not exist")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise ValueError(f"output folder {str(folder)!r} is not writable")
    if path.is_dir():
        raise ValueError(f"output {str(path)!r} is a folder, not a file")
    if song is not None and same_file(path, song):
        raise ValueError(f"output {str(path)!r} is the song itself; choose another output file")
    if path.exists() and not overwrite:
        raise FileExistsError(f"{str(path)!r} already exists (pass --overwrite to replace it)")
    if path.suffix.lower() not in CONTAINERS:
        raise ValueError(
            f"output {str(path)!r} must end in one of {', '.join(CONTAINERS)}; got {path.suffix!r}"
        )
    probe = temporary_name(path)  # the very name the encoder will create
    try:
        with open(probe, "xb"):
            pass
    except OSError as e:
        raise ValueError(
            f"cannot write the output {str(path)!r}: {e.strerror or type(e).__name__}"
        ) from e
    finally:
        probe.unlink(missing_ok=True)
    sweep(folder)


class Visualizer:
    """Owns the generator (one ONNX Runtime session): build once, render many songs.

    Args:
        resolution: BigGAN-deep resolution, 128, 256 or 512.
        weights: ``None`` for the pretrained ``biggan-deep-<resolution>``, a local folder or
            file in pytorch-pretrained-biggan's format, or ``"random"``.
        backend: ``"auto"``, ``"cpu"``, ``"cuda"`` or ``"tensorrt"``.
        precision: ``"auto"`` (fp16 on a GPU provider, fp32 on the CPU), ``"fp32"``, ``"fp16"``.
        batch_size: the graph's static batch size on a GPU; on the CPU it is capped at
            ``CPU_BATCH_CAP`` (same speed, a fraction of the memory).
        scaling: integer Lanczos upscaling done inside the graph.
        pixels: ``"stretch"`` (the original's look) or ``"fixed"``.
    """

    def __init__(
        self,
        resolution: int = 512,
        *,
        weights: str | None = None,
        backend: str = "auto",
        precision: str = "auto",
        batch_size: int = 30,
        scaling: int = 1,
        pixels: str = "stretch",
        threads: int | None = None,
        progress: ProgressCallback | None = None,
    ) -> None:
        self.resolution = resolution
        self.weights = weights
        self.backend = backend
        self.precision = precision
        self.batch_size = batch_size
        self.scaling = scaling
        self.pixels = pixels
        self.threads = threads
        self._progress = progress or _no_progress
        self._generator: Any = None

    @classmethod
    def from_options(
        cls, options: RenderOptions, progress: ProgressCallback | None = None
    ) -> Visualizer:
        return cls(
            options.resolution,
            weights=options.weights,
            backend=options.backend,
            precision=options.precision,
            batch_size=options.batch_size,
            scaling=options.scaling,
            pixels=options.pixels,
            progress=progress,
        )

    def matches(self, options: RenderOptions) -> bool:
        """Whether this visualizer's model serves ``options`` as they are."""
        return (
            self.resolution == options.resolution
            and self.weights == options.weights
            and self.backend == options.backend
            and self.precision == options.precision
            and self.batch_size == options.batch_size
            and self.scaling == options.scaling
            and self.pixels == options.pixels
        )

    @property
    def generator(self) -> Any:
        """The :class:`dmv_fast.runtime.Generator`, exported and loaded on first use."""
        if self._generator is None:
            from dmv_fast.models import ensure_onnx
            from dmv_fast.runtime import Generator, resolve_precision

            precision = resolve_precision(self.precision, self.backend)
            batch = self.batch_size
            if not runs_on_gpu(self.backend):
                batch = min(batch, CPU_BATCH_CAP)
            path = ensure_onnx(
                self.resolution,
                self.weights,
                precision,
                batch,
                scaling=self.scaling,
                pixels=self.pixels,
                progress=lambda done, total: self._progress("export", done, total),
            )
            # On a GPU the graph also emits YUV 4:2:0 planes for the encoder (no CPU colour
            # conversion left); on the CPU the conversion costs the same either way.
            self._generator = Generator(
                path, backend=self.backend, threads=self.threads, yuv420=runs_on_gpu(self.backend)
            )
        return self._generator

    @property
    def encoder_format(self) -> str:
        """The pixel format the render path hands the encoder: ``yuv420p`` when the graph
        makes the planes (GPU), else ``rgb24``."""
        return "yuv420p" if self.generator.yuv420 else "rgb24"

    def frames(
        self,
        noise: np.ndarray,
        class_vectors: np.ndarray,
        truncation: float,
        pixel_format: str = "rgb24",
    ) -> Iterator[np.ndarray]:
        """Lazily generate frames, one batch at a time.

        Args:
            noise: ``np.ndarray [shape=(n_frames, 128)]`` float32 noise vectors.
            class_vectors: ``np.ndarray [shape=(n_frames, 1000)]`` float32 class vectors.
            truncation: BigGAN truncation in (0, 1].
            pixel_format: ``"rgb24"``, or ``"yuv420p"`` when :attr:`encoder_format` says the
                graph makes the planes.

        Yields:
            ``np.ndarray [shape=(b, H, W, 3)]`` uint8 RGB batches (``b <= batch_size``), or
            ``[shape=(b, H * 3 // 2, W)]`` YUV 4:2:0 planes.
        """
        gen = self.generator
        step = gen.batch_size
        for start in range(0, len(noise), step):
            yield gen.generate(
                noise[start : start + step],
                class_vectors[start : start + step],
                truncation,
                pixel_format=pixel_format,
            )

    def render(self, options: RenderOptions, *, overwrite: bool = False) -> RenderResult:
        """Render ``options.song`` into ``options.output_file``; see :func:`render`."""
        return _render(self, options, overwrite=overwrite, progress=self._progress)


def render(
    options: RenderOptions,
    *,
    overwrite: bool = False,
    progress: ProgressCallback | None = None,
    visualizer: Visualizer | None = None,
) -> RenderResult:
    """Render a song into an MP4 with its own audio.

    Everything that can be checked cheaply (options, song, output folder) is checked before
    the analysis starts. The MP4 is written to a temporary file beside the destination and
    renamed at the end, so a failure or an interrupt never leaves a truncated video.

    Args:
        options: validated or not; validated here.
        overwrite: replace an existing output file.
        progress: ``progress(stage, done, total)`` callback.
        visualizer: reuse a model session across renders (must match ``options``).
    """
    if visualizer is None or not visualizer.matches(options):
        visualizer = Visualizer.from_options(options, progress=progress)
    return _render(visualizer, options, overwrite=overwrite, progress=progress or _no_progress)


def _render(
    vis: Visualizer, options: RenderOptions, *, overwrite: bool, progress: ProgressCallback
) -> RenderResult:
    from dmv_fast.audio import analyze, probe_audio
    from dmv_fast.encode import check_audio
    from dmv_fast.frames import FrameStore
    from dmv_fast.record import read_record, song_sha256, stage_record
    from dmv_fast.trajectory import compute_vectors

    options.validate()
    output = Path(options.output_file)
    check_output(output, overwrite, options.song)
    song = Path(options.song)
    probe_audio(song)  # unreadable or empty songs fail here, before any analysis
    check_audio(song)  # and songs whose audio track the encoder cannot carry
    song_hash = song_sha256(song)
    timings: dict[str, float] = {}

    t0 = time.perf_counter()
    progress("analysis", 0, 1)
    features = analyze(song, options.frame_length)
    progress("analysis", 1, 1)
    timings["analysis"] = time.perf_counter() - t0

    folder = frames_folder(output)
    if options.use_disk or options.save_only:
        # A rerun without --seed adopts the seed of the frames already on disk.
        recorded = FrameStore.read_manifest(folder)
        if options.seed is None and recorded is not None and recorded.get("seed") is not None:
            options = dataclasses.replace(options, seed=int(recorded["seed"]))

    t0 = time.perf_counter()
    previous_classes = None
    if options.use_previous_vectors:
        vectors = read_record(output, options, features)
    else:
        if options.use_previous_classes:
            previous_classes = read_record(output, options, features).classes
        vectors = compute_vectors(features, options, seed=options.seed, classes=previous_classes)
    timings["vectors"] = time.perf_counter() - t0
    n_frames = video_frame_count(features.n_frames, options)

    # The video and its record are one result: the record waits under temporary names
    # until the video is in place, and is dropped if the video fails.
    with stage_record(output, vectors, options, features, song_hash) as staged:
        encoder, providers = _produce(
            vis, options, output, folder, song, song_hash, vectors, n_frames, overwrite,
            progress, timings,
        )  # fmt: skip
        try:
            record = staged.publish()
        except BaseException:
            output.unlink(missing_ok=True)
            raise
    return RenderResult(
        output=output,
        frames=n_frames,
        fps=options.fps,
        seed=vectors.seed,
        classes=tuple(vectors.classes),
        record=record,
        providers=providers,
        encoder=encoder,
        timings=timings,
    )


def _produce(
    vis: Visualizer,
    options: RenderOptions,
    output: Path,
    folder: Path,
    song: Path,
    song_hash: str | None,
    vectors: Any,
    n_frames: int,
    overwrite: bool,
    progress: ProgressCallback,
    timings: dict[str, float],
) -> tuple[str, list[str]]:
    """Generate (or read back) the frames and encode the video; returns (encoder, providers)."""
    from dmv_fast.frames import FrameStore

    noise = np.ascontiguousarray(vectors.noise[:n_frames], dtype=np.float32)
    class_vectors = np.ascontiguousarray(vectors.class_vectors[:n_frames], dtype=np.float32)
    store = None
    if options.use_disk or options.save_only:
        manifest = _frames_manifest(options, song, vectors.seed, noise, class_vectors, song_hash)
        store = FrameStore.open(folder, manifest, create=not options.save_only)

    t0 = time.perf_counter()
    providers: list[str] = []
    if store is None:
        providers = list(vis.generator.providers)
        fmt = vis.encoder_format
        encoder = _encode(
            vis.frames(noise, class_vectors, options.truncation, pixel_format=fmt),
            options,
            n_frames,
            output,
            overwrite,
            progress,
            stage="render",
            pixel_format=fmt,
        )
    else:
        if not options.save_only:  # -s: FrameStore.open has checked every frame is there
            providers = list(vis.generator.providers)
            start = store.complete_frames()
            if start:
                logger.info("resuming from frame %d of %d in %s", start, n_frames, folder)
            _run_overlapped(
                vis.frames(noise[start:], class_vectors[start:], options.truncation),
                lambda i, batch: store.write(start + i, batch),
                n_frames,
                start,
                progress,
            )
            timings["generate"] = time.perf_counter() - t0
            t0 = time.perf_counter()
        encoder = _encode(
            store.iter_batches(0, n_frames, vis.batch_size),
            options,
            n_frames,
            output,
            overwrite,
            progress,
        )
    timings["render" if store is None else "encode"] = time.perf_counter() - t0
    return encoder, providers


def _frames_manifest(
    options: RenderOptions,
    song: Path,
    seed: int,
    noise: np.ndarray,
    class_vectors: np.ndarray,
    song_hash: str | None = None,
) -> dict[str, Any]:
    """The settings that decide the pixels of a frames folder (for -d resume and -s)."""
    digest = hashlib.sha256()
    digest.update(noise.tobytes())
    digest.update(class_vectors.tobytes())
    st = song.stat()
    return {
        "song": song.name,
        "song_size": st.st_size,
        "song_sha256": song_hash,
        "frame_length": options.frame_length,
        "resolution": options.resolution,
        "scaling": options.scaling,
        "truncation": options.truncation,
        "weights": options.weights or f"biggan-deep-{options.resolution}",
        "precision": options.precision,
        "pixels": options.pixels,
        "seed": seed,
        "frames": len(noise),
        "vectors_sha256": digest.hexdigest(),
    }


def _run_overlapped(
    batches: Iterator[np.ndarray],
    consume: Callable[[int, np.ndarray], None],
    total: int,
    done: int,
    progress: ProgressCallback,
    stage: str = "render",
) -> None:
    """Produce batches on this thread, consume them on a worker, at most QUEUE_DEPTH apart.

    ``consume(offset, batch)`` receives the offset of the batch's first frame relative to the
    first batch. An exception on either side stops both and is raised here.
    """
    q: queue.Queue[tuple[int, np.ndarray] | None] = queue.Queue(maxsize=QUEUE_DEPTH)
    failure: list[BaseException] = []
    stop = threading.Event()

    def worker() -> None:
        try:
            while True:
                item = q.get()
                if item is None:
                    return
                offset, batch = item
                consume(offset, batch)
                progress(stage, done + offset + len(batch), total)
        except BaseException as exc:  # handed to the producer, re-raised there
            failure.append(exc)
            stop.set()
            # Drain so a producer blocked on put() can notice the failure.
            while True:
                try:
                    q.get_nowait()
                except queue.Empty:
                    return

    thread = threading.Thread(target=worker, name="dmv-fast-encoder", daemon=True)
    thread.start()
    offset = 0
    try:
        progress(stage, done, total)
        for batch in batches:
            while not stop.is_set():
                try:
                    q.put((offset, batch), timeout=0.1)
                    break
                except queue.Full:
                    continue
            if stop.is_set():
                break
            offset += len(batch)
    finally:
        # Always let the worker finish what it holds, then end it.
        while thread.is_alive():
            try:
                q.put(None, timeout=0.1)
                break
            except queue.Full:
                continue
        thread.join()
    if failure:
        raise failure[0]


def _encode(
    batches: Iterator[np.ndarray],
    options: RenderOptions,
    n_frames: int,
    output: Path,
    overwrite: bool,
    progress: ProgressCallback,
    stage: str = "encode",
    pixel_format: str = "rgb24",
) -> str:
    """Encode ``batches`` (exactly ``n_frames`` frames) with the song's audio into ``output``.

    ``batches`` hold RGB ``[b, H, W, 3]`` or, for ``pixel_format="yuv420p"``, planes
    ``[b, H * 3 // 2, W]``.
    """
    from dmv_fast.encode import VideoWriter

    first = next(batches, None)
    if first is None:
        raise RuntimeError("no frames to encode")
    if pixel_format == "yuv420p":
        height, width = first.shape[1] * 2 // 3, first.shape[2]
    else:
        height, width = first.shape[1:3]
    batches = itertools.chain([first], batches)
    with VideoWriter(
        output,
        width,
        height,
        options.fps,
        audio=options.song,
        encoder=options.encoder,
        crf=options.crf,
        preset=options.preset,
        overwrite=overwrite,
        pixel_format=pixel_format,
    ) as writer:
        _run_overlapped(
            batches, lambda _i, batch: writer.write(batch), n_frames, 0, progress, stage
        )
        if writer.frames_written != n_frames:  # internal invariant of the batching
            raise RuntimeError(f"wrote {writer.frames_written} frames, expected {n_frames}")
        name = writer.encoder_name
    return name
