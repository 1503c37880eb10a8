"""Audio: the song decoded, the features that drive the video, and the song's own track.

- :mod:`~dmv_fast.audio.decode`: any audio file's header, its signal as the analysis wants
  it, and blocks at its own rate for live input.
- :mod:`~dmv_fast.audio.features`: :class:`AudioFeatures` and :func:`analyze` (SPEC §1).
- :mod:`~dmv_fast.audio.track`: the song's audio as AAC, encoded as the frames arrive.
- :mod:`~dmv_fast.audio.synth`: a piece synthesized in code (the demo, calibration, benchmarks).
"""
