"""Settings: what a render asks for, checked once, and the plan that settles every ``auto``.

- :mod:`~dmv_fast.settings.choices`: every choice list, default, range and fixed size.
- :mod:`~dmv_fast.settings.spec`: :class:`ModelSpec`, the model settings.
- :mod:`~dmv_fast.settings.options`: :class:`RenderOptions`, the per-render settings.
- :mod:`~dmv_fast.settings.plan`: :class:`Plan` and :func:`resolve` (no ``auto`` left).
"""
