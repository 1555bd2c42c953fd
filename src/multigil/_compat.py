"""Work-arounds for known bugs of the CPython versions multigil supports.

CPython 3.12.0–3.12.3 (gh-119213, fixed in 3.12.4): the first call *with
keyword arguments* of a function of a C extension module lazily builds a tuple
of keyword names, and does so in whichever interpreter makes that call.  If
that is a sub-interpreter, the main interpreter frees the tuple at exit with
the wrong allocator and the process aborts ("free(): invalid pointer").  The
call is safe once it was made in the main interpreter first.  So, on those
versions, multigil

* makes the keyword calls its own machinery makes in interpreters (pickle)
  once in the main interpreter, before the first interpreter starts;
* imports every standard-library module in the main interpreter before a
  sub-interpreter imports it, so that calls made at import time (``hashlib``
  makes some) are made in the main interpreter first.

Keyword calls that *your* code makes into C extensions inside interpreters are
not covered: on 3.12.0–3.12.3, make them once in the main interpreter, or
upgrade to 3.12.4 or later.
"""

from __future__ import annotations

import sys

KWTUPLE_BUG = (3, 12) <= sys.version_info[:3] < (3, 12, 4)

_primed = False


def prime_main_interpreter() -> None:
    """Run in the main interpreter before the first sub-interpreter starts."""
    global _primed
    if _primed or not KWTUPLE_BUG:
        return
    _primed = True
    import hashlib  # noqa: F401  (its import makes keyword calls)
    import io
    import pickle

    data = pickle.dumps(None, protocol=5, fix_imports=True, buffer_callback=None)
    pickle.loads(data, fix_imports=True, encoding="ASCII", errors="strict", buffers=())
    pickle.Pickler(io.BytesIO(), protocol=5, fix_imports=True, buffer_callback=None)
    pickle.Unpickler(io.BytesIO(data), fix_imports=True, encoding="ASCII", errors="strict",
                     buffers=())
