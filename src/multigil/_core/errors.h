/* errors.h — raising the exceptions of multigil._errors from C.
 *
 * Each type is looked up by name once per interpreter, on its first use, and
 * kept in mg_state.errors: raising costs no import and no attribute lookup.
 * (Not all at module init: _core is imported before multigil._errors can be,
 * and QueueFull is built on first use, importing the queue module.)
 */
#ifndef MULTIGIL_ERRORS_H
#define MULTIGIL_ERRORS_H

#include "base.h"

/* The type of `e` in the current interpreter (borrowed), or NULL with the
 * import error set. */
PyObject *mg_error_type(mg_state *st, mg_error e);

/* Raise `e` with the formatted message (PyUnicode_FromFormat), chained to the
 * exception being handled, if any, as its __cause__.  Returns NULL. */
PyObject *mg_raise(mg_state *st, mg_error e, const char *fmt, ...);

/* 1 if `exc` is an instance of `e` (0 if that type cannot be loaded: then
 * nothing is an instance of it). */
int mg_error_matches(mg_state *st, PyObject *exc, mg_error e);

#endif /* MULTIGIL_ERRORS_H */
