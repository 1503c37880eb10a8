"""Live: frames from music as it plays, steered while it plays.

- :mod:`~dmv_fast.live.session`: :class:`LiveSession`, audio in, the newest frame out.
- :mod:`~dmv_fast.live.control`: the control surface (API, OSC, window keys) of a session.
- :mod:`~dmv_fast.live.pacer`: the media clock.
- :mod:`~dmv_fast.live.sources`: stdin and sound-card input.
- :mod:`~dmv_fast.live.sinks`: the :class:`Sink` protocol, the MP4 file, the raw pipe.
- :mod:`~dmv_fast.live.feed`: each sink on its own thread, behind its own bounded queue.
- :mod:`~dmv_fast.live.window`, :mod:`~dmv_fast.live.ndi`: the preview window, NDI out.
- :mod:`~dmv_fast.live.osc`: OSC messages in.
- :mod:`~dmv_fast.live.runner`: a session's frames to its sinks.
"""
