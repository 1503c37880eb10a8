"""Seeing a render before it runs: the plot of the vectors that steer it and contact sheets.

- :mod:`~dmv_fast.preview.figure`: :class:`PlotData` (the curves per video frame, from the
  features and the vectors) and its matplotlib figure (the optional ``plot`` extra).
- :mod:`~dmv_fast.preview.sheet`: frames tiled into a labelled contact sheet (PIL).

The commands that run them (analysis, vectors, a few generated frames, the record) are
:func:`dmv_fast.render.preview.plot_song` and :func:`dmv_fast.render.preview.preview_song`.
"""
