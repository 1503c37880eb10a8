"""Vectors: the class and noise trajectories that steer BigGAN-deep.

- :mod:`~dmv_fast.vectors.classes`: ImageNet classes by index or name.
- :mod:`~dmv_fast.vectors.trajectory`: the offline vectors of a whole song (numba kernels).
- :mod:`~dmv_fast.vectors.reference`: SPEC §4 as written, the kernels' yardstick.
- :mod:`~dmv_fast.vectors.online`: the causal engine for live input, kernels beside their
  reference.
"""
