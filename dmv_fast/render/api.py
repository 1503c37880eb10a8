"""The render front: :class:`Visualizer` and :func:`render` choose between a one-process
render (:mod:`dmv_fast.render.single`) and a segmented one (:mod:`dmv_fast.render.segmented`).

Both drivers sit below this module and run on an :class:`~dmv_fast.render.engine.Engine`; the
choice is made here only.
"""

from __future__ import annotations

from dmv_fast.render.engine import Engine, ProgressCallback
from dmv_fast.render.job import RenderResult
from dmv_fast.render.segmented import render_segmented
from dmv_fast.render.single import render_single
from dmv_fast.settings.options import RenderOptions
from dmv_fast.settings.spec import ModelSpec


class Visualizer(Engine):
    """The engine (resolved plan + generator session, see
    :class:`~dmv_fast.render.engine.Engine` for the arguments) with the render front: build
    once, render many songs.

    ``frames()`` generates lazily, ``stream()`` opens a live session, and :meth:`render`
    renders a song in this process or, with several workers, in segments.
    """

    def render(
        self,
        options: RenderOptions,
        *,
        overwrite: bool = False,
        workers: int | None = None,
        ray_address: str | None = None,
    ) -> RenderResult:
        """Render ``options.song`` into ``options.output_file``; see :func:`render`.

        With ``workers > 1`` (given, or the plan's on a GPU) or a ``ray_address``, the render
        is cut into segments made by several workers and joined
        (:func:`dmv_fast.render.segmented.render_segmented`); ``-d``/``-s`` renders stay in
        one process unless workers are asked for explicitly.
        """
        staged = options.use_disk or options.save_only
        segmented = ray_address is not None or (
            (workers or 1) > 1 if workers is not None else self.plan.workers > 1 and not staged
        )
        if segmented:
            return render_segmented(
                options,
                self,
                workers=workers,
                ray_address=ray_address,
                overwrite=overwrite,
                progress=self.progress,
            )
        return render_single(self, options, overwrite=overwrite, progress=self.progress)


def render(
    options: RenderOptions,
    model: ModelSpec | None = None,
    *,
    overwrite: bool = False,
    progress: ProgressCallback | None = None,
    visualizer: Visualizer | None = None,
    workers: int | None = None,
    ray_address: str | None = None,
) -> RenderResult:
    """Render a song into an MP4 with its own audio.

    Everything that can be checked cheaply (options, plan, song, output folder) is checked
    before the analysis starts. The MP4 is written to a temporary file beside the destination
    and renamed at the end, so a failure or an interrupt never leaves a truncated video.

    Args:
        options: the per-render settings.
        model: the model settings (default: ``ModelSpec()``, pretrained 512 px); ignored
            when ``visualizer`` is given, which must then have the same spec.
        overwrite: replace an existing output file.
        progress: ``progress(stage, done, total)`` callback.
        visualizer: reuse a model session across renders.
        workers, ray_address: segment workers on this machine, or Ray actors (a cluster
            address, ``"auto"`` or ``"local"``); see :meth:`Visualizer.render`.

    Raises:
        ValueError: a bad setting, song or output; a ``visualizer`` whose model differs from
            ``model``.
    """
    if visualizer is None:
        visualizer = Visualizer(
            model if model is not None else ModelSpec(),
            encoder=options.encoder,
            workers=workers,
            progress=progress,
        )
    elif model is not None and model != visualizer.spec:
        raise ValueError(
            f"the visualizer's model ({visualizer.spec}) is not the one asked for ({model}); "
            "pass one or the other"
        )
    if progress is not None:
        visualizer.progress = progress
    return visualizer.render(options, overwrite=overwrite, workers=workers, ray_address=ray_address)
