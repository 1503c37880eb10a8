"""The model: weights, the exported ONNX graph and the session that runs it.

- :mod:`~dmv_fast.model.weights`: where weights come from (pretrained, a folder, random), the
  download and its cache.
- :mod:`~dmv_fast.model.cache`: the ONNX graph cache; the one seam to the export package.
- :mod:`~dmv_fast.model.runtime`: :class:`Generator`, one ONNX Runtime session.
- :mod:`~dmv_fast.model.truncation`: the BatchNorm statistics of a truncation.
"""
