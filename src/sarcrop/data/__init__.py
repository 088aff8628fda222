"""Stage 1 of the data's path: scenes → composites → labelled, normalised patches.

- :mod:`sarcrop.data.scenes` opens any supported layout as one :class:`SceneStack`.
- :mod:`sarcrop.data.composite` turns a stack into 20-day mean composites.
- :mod:`sarcrop.data.prepare` tiles composites and labels into a dataset store.
- :mod:`sarcrop.data.dataset` reads a store as a map-style PyTorch dataset.
- :mod:`sarcrop.data.simulate` writes physically plausible Sentinel-1 regions.
"""
