"""Video: frames and the song's audio into H.264/AAC files.

- :mod:`~dmv_fast.video.writer`: :class:`VideoWriter` (libx264 or NVENC), published atomically.
- :mod:`~dmv_fast.video.nvenc`: NVENC through PyNvVideoCodec.
- :mod:`~dmv_fast.video.yuv`: the host RGB to YUV 4:2:0 reference.
- :mod:`~dmv_fast.video.segments`: segments cut on frame boundaries, encoded apart, joined.
"""
