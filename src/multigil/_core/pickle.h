/* pickle.h — pickle, the fallback of the encoding: values that do not cross
 * natively, as a PICKLE in a blob's stream (blob.h), and back.
 */
#ifndef MULTIGIL_PICKLE_H
#define MULTIGIL_PICKLE_H

#include "base.h"
#include "blob.h"

/* Append `obj` as a PICKLE.  0, or -1 with NotShareableError naming its type
 * (or an error that says nothing about the value: interrupts, MemoryError, a
 * NotShareableError from a nested encode). */
int mg_pickle_put(mg_state *st, mg_blob *b, PyObject *obj);

/* The two halves of mg_pickle_put, for a caller that writes between them
 * (the encoder's table blobs): pickle.dumps(obj, 5, buffer_callback=...) ->
 * a new reference to the pickle and its out-of-band buffers in a new list
 * *buffers (NULL with the pickler's exception), then append both. */
PyObject *mg_pickle_dumps(mg_state *st, PyObject *obj, PyObject **buffers);
int mg_put_pickled(mg_blob *b, PyObject *data, PyObject *buffers);

/* Pickling the list `table` (the non-native items of a value) failed: raise
 * NotShareableError naming the first item that fails alone, as sending it
 * alone would.  Returns -1. */
int mg_pickle_table_error(mg_state *st, PyObject *table);

/* Turn the pending exception into NotShareableError naming obj's type, with
 * the original as __cause__; `how` prefixes the reason.  Returns -1. */
int mg_not_shareable(mg_state *st, PyObject *obj, const char *how);

/* Unpickle the PICKLE at `r` (after its tag); a new reference or NULL. */
PyObject *mg_pickle_read(mg_state *st, mg_reader *r);

/* pickle.loads(data) in the current interpreter (function references). */
PyObject *mg_pickle_loads(mg_state *st, PyObject *data);

#endif /* MULTIGIL_PICKLE_H */
