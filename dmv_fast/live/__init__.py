"""Live: frames from music as it plays.

- :mod:`~dmv_fast.live.session`: :class:`LiveSession`, audio in, the newest frame out.
- :mod:`~dmv_fast.live.pacer`: the media clock.
- :mod:`~dmv_fast.live.sources`: stdin and sound-card input.
- :mod:`~dmv_fast.live.sinks`: the :class:`Sink` protocol, the MP4 file, the raw pipe.
- :mod:`~dmv_fast.live.runner`: a session's frames to its sinks.
"""
