"""Adapters that plug multigil's interpreters into other engines: Dask
(``multigil.dask``) and joblib (``multigil.joblib``).

Nothing here is imported with ``multigil``.  Only ``_calls`` is ever imported
inside an interpreter: it must stay standard-library only, since neither Dask's
``distributed`` nor joblib imports in an isolated interpreter.
"""
