"""Rendering: a song through the engine into a video, in one process or in segments.

- :mod:`~dmv_fast.render.engine`: :class:`Engine`, the plan and its generator session.
- :mod:`~dmv_fast.render.job`: the song side of a render (analysis, seed, vectors).
- :mod:`~dmv_fast.render.single`: the one-process render.
- :mod:`~dmv_fast.render.segmented`: segmented renders and playlists.
- :mod:`~dmv_fast.render.workers`, :mod:`~dmv_fast.render.ray_pool`: segment workers, local
  processes or Ray actors.
- :mod:`~dmv_fast.render.folders`: the ``-d`` frames folder and the segments folder.
- :mod:`~dmv_fast.render.record`, :mod:`~dmv_fast.render.preflight`: the record beside the
  video, the checks before any work.
- :mod:`~dmv_fast.render.api`: :class:`Visualizer` and :func:`render`, the front.
- :mod:`~dmv_fast.render.preview`: the plot of a song's vectors and a preview sheet of the
  frames a render makes, before it runs.
- :mod:`~dmv_fast.render.demo`: the demo render and its contact sheet.
"""
