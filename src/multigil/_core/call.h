/* call.h — running a function in an interpreter (module.c), shared with the
 * executor's worker loop (worker.c). */
#ifndef MULTIGIL_CALL_H
#define MULTIGIL_CALL_H
#include "mg.h"

/* How a function crosses: (token, pickled bytes).  Functions importable by
 * name get a process-unique token and are pickled once per sending
 * interpreter; the receiver keeps the unpickled function by token.  Others
 * (lambdas, closures, functions of __main__) travel by value every time,
 * with token 0.  New reference or NULL. */
PyObject *mg_function_ref(mg_state *st, PyObject *fn);
/* The function for (token, pickled) in the current interpreter; `pickled` is
 * bytes, or (shared object, method name).  New ref. */
PyObject *mg_function_resolve(mg_state *st, PyObject *token, PyObject *pickled);

/* Encode the exception being raised (and clear it) into `out` as the tuple
 * built by multigil._remote.capture().  Never fails: falls back to a plain
 * description.  Returns 1 if it was SystemExit or KeyboardInterrupt. */
int mg_capture_exception(mg_state *st, mg_blob *out);

/* Whether the module-level `fn` of an importable module is the object found
 * by importing it; used to choose between by-name and by-value. */
PyObject *mg_remote(mg_state *st);   /* multigil._remote, imported lazily; borrowed */

#endif
