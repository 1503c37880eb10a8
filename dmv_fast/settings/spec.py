"""What was asked of the model (:class:`ModelSpec`) and what picks an exported graph
(:class:`GraphSpec`), each checked once when it is made."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from dmv_fast.settings.choices import (
    BACKENDS,
    CONV_FORMS,
    CPU_ONLY_PRECISIONS,
    DEFAULT_BATCH,
    DEFAULT_RESOLUTION,
    FILLS,
    GRAPH_PRECISIONS,
    MAX_BATCH,
    MAX_SCALING,
    PIXEL_FORMATS,
    PIXELS,
    PRECISIONS,
    RESOLUTIONS,
    choice,
    int_in,
    invalid,
    is_int,
)
from dmv_fast.settings.shape import (
    FrameShape,
    check_frame,
    format_aspect,
    format_size,
    frame_shape,
    parse_aspect,
    parse_size,
    shape_of,
)


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
            :data:`~dmv_fast.settings.plan.CPU_BATCH_CAP` on the CPU).
        scaling: integer Lanczos upscaling inside the graph, 1..8.
        pixels: ``"stretch"`` (each frame's min..max to 0..255, the original's look) or
            ``"fixed"`` ([-1, 1] to 0..255).
        aspect: the frame's ``"W:H"`` (``"16:9"``, ``"9:16"``, ``"2.39:1"``; stored reduced);
            None: 1:1, or the ratio of ``size``. The short side is ``resolution * scaling``.
        size: the exact frame size ``"WxH"`` (``"1920x1080"``; even sides), or None.
        fill: how a frame that is not square is filled: ``"wide"`` (the generator paints
            the whole canvas), ``"crop"`` or ``"pad"``; see :mod:`dmv_fast.settings.shape`.
    """

    resolution: int = DEFAULT_RESOLUTION
    weights: str | None = None
    backend: str = "auto"
    precision: str = "auto"
    batch_size: int = DEFAULT_BATCH
    scaling: int = 1
    pixels: str = "stretch"
    aspect: str | None = None
    size: str | None = None
    fill: str = "wide"

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
        if self.aspect is not None:
            object.__setattr__(self, "aspect", format_aspect(parse_aspect(self.aspect)))
        if self.size is not None:
            object.__setattr__(self, "size", format_size(parse_size(self.size)))
        object.__setattr__(self, "fill", choice("fill", self.fill, FILLS))
        self.shape  # noqa: B018 (checks how size, aspect and scaling go together)
        if self.cpu_only and self.backend in ("cuda", "tensorrt"):
            raise ValueError(
                f"precision {self.precision} runs only on the CPU, not with backend "
                f"{self.backend!r} (use --backend cpu, or fp16 on a GPU)"
            )

    @property
    def cpu_only(self) -> bool:
        """The precision runs only on the CPU provider (int8): the plan never puts it on a GPU."""
        return self.precision in CPU_ONLY_PRECISIONS

    @property
    def weights_name(self) -> str:
        """The weights as recorded: the given value, or the pretrained default's name."""
        return self.weights or f"biggan-deep-{self.resolution}"

    @property
    def shape(self) -> FrameShape:
        """The frame's size, fill and the canvas the generator paints for it."""
        return frame_shape(self.resolution, self.aspect, self.size, self.fill, self.scaling)

    @property
    def frame_size(self) -> tuple[int, int]:
        """``(height, width)`` of a video frame in pixels: ``size``, or the short side
        ``resolution * scaling`` and the long side from ``aspect`` (square by default)."""
        return self.shape.frame


@dataclass(frozen=True)
class GraphSpec:
    """What picks an exported graph, the weights aside: settled values only (no ``auto``).

    A plan makes one (:attr:`dmv_fast.settings.plan.Plan.graph`); ``dmv-fast export`` and the
    graph cache's tests make them directly. Checked at construction, like :class:`ModelSpec`.

    Attributes:
        resolution: the generator's output side (a local model's ``output_dim``).
        precision: ``"fp32"``, ``"fp16"`` or ``"int8"`` (CPU only, so RGB output only).
        batch_size: the graph's static batch, 1..1024.
        scaling: integer Lanczos upscaling inside the graph, 1..8.
        pixels: ``"stretch"`` or ``"fixed"``.
        pixel_format: ``"rgb24"``, or ``"yuv420p"`` for a graph that also outputs the
            encoder's YUV 4:2:0 planes (GPU plans).
        frame: ``(height, width)`` of the frames it outputs (even sides); None: square,
            ``resolution * scaling``.
        fill: ``"wide"``, ``"crop"`` or ``"pad"`` for a frame that is not square (ignored,
            and stored as ``"wide"``, for a square one).
        conv_form: ``"direct"``, or ``"winograd"``: the 3x3 convolutions the CPU runs
            faster as Winograd transforms (:mod:`dmv_fast_export.winograd`); fp32 RGB graphs
            only (a GPU chooses its own algorithms, int8 is quantized from the direct graph).
    """

    resolution: int
    precision: str = "fp32"
    batch_size: int = 1
    scaling: int = 1
    pixels: str = "stretch"
    pixel_format: str = "rgb24"
    frame: tuple[int, int] | None = None
    fill: str = "wide"
    conv_form: str = "direct"

    def __post_init__(self) -> None:
        if not is_int(self.resolution) or self.resolution < 8:
            raise invalid("resolution", self.resolution, "a positive number of pixels")
        object.__setattr__(self, "precision", choice("precision", self.precision, GRAPH_PRECISIONS))
        int_in("batch_size", self.batch_size, 1, MAX_BATCH)
        int_in("scaling", self.scaling, 1, MAX_SCALING)
        object.__setattr__(self, "pixels", choice("pixels", self.pixels, PIXELS))
        fmt = choice("pixel_format", self.pixel_format, PIXEL_FORMATS)
        object.__setattr__(self, "pixel_format", fmt)
        if self.precision in CPU_ONLY_PRECISIONS and fmt != "rgb24":
            raise ValueError(
                f"{self.precision} graphs run on the CPU and output rgb24 frames only, not {fmt}"
            )
        side = self.resolution * self.scaling
        frame = (side, side) if self.frame is None else check_frame(self.frame)
        object.__setattr__(self, "frame", frame)
        object.__setattr__(self, "fill", shape_of(self.resolution, frame, self.fill).fill)
        form = choice("conv_form", self.conv_form, CONV_FORMS)
        object.__setattr__(self, "conv_form", form)
        if form == "winograd" and (self.precision != "fp32" or fmt != "rgb24"):
            raise ValueError(
                f"winograd convolutions are for the CPU's fp32 rgb24 graph, not "
                f"{self.precision} {fmt}"
            )

    @property
    def shape(self) -> FrameShape:
        """The frame's size, fill and the canvas the generator paints for it."""
        assert self.frame is not None
        return shape_of(self.resolution, self.frame, self.fill)

    @property
    def frame_size(self) -> tuple[int, int]:
        """``(height, width)`` of the frames the graph outputs."""
        assert self.frame is not None
        return self.frame

    def to_dict(self) -> dict[str, Any]:
        """What picks the graph, as JSON-able values. A square frame keeps the keys it had
        before frames had other shapes (plus the convolutions' form); any other frame adds its
        fill and the canvas the generator paints."""
        data: dict[str, Any] = {
            "resolution": self.resolution,
            "precision": self.precision,
            "batch_size": self.batch_size,
            "scaling": self.scaling,
            "pixels": self.pixels,
            "pixel_format": self.pixel_format,
            "frame_size": list(self.frame_size),
            "conv_form": self.conv_form,
        }
        shape = self.shape
        if not shape.square:
            data["fill"] = shape.fill
            data["native_size"] = list(shape.native)
            data["first_map"] = list(shape.first_map)
        return data
