/* xidata.h — cross-interpreter data: values as blobs (blob.h).
 *
 * A value crosses in two steps.  mg_encode() walks it in the sender and writes
 * a byte stream, plus references to shared raw objects, into an mg_blob made
 * of raw memory only (encode.c); mg_decode() rebuilds an equal value from the
 * blob in the receiver (decode.c).  Neither side ever sees the other's
 * objects.  xidata.c adds the module functions of this layer.
 */
#ifndef MULTIGIL_XIDATA_H
#define MULTIGIL_XIDATA_H

#include "base.h"
#include "blob.h"

/* Deeper values are refused: it bounds the C stack, and stops self-referencing
 * containers, which would otherwise recurse forever. */
#define MG_MAX_DEPTH 1000

/* Encode `obj` into `out` (initialized by the caller; its buffers are
 * reused).  flags: MG_ENCODE_BORROW and/or MG_ENCODE_LEND (blob.h), or 0.
 * Returns 0, or -1 with an exception set (NotShareableError naming the type)
 * and `out` cleared. */
int mg_encode(mg_state *st, PyObject *obj, mg_blob *out, int flags);
/* Rebuild the value in the current interpreter; new reference or NULL.
 * Does not consume the blob. */
PyObject *mg_decode(mg_state *st, const mg_blob *b);

/* The same for a tuple of n `items` that is never built: mg_encode_items
 * writes the stream mg_encode writes for the tuple, and mg_decode_items
 * rebuilds such a stream's n items into items[] (new references) and returns
 * 0; a stream of any other value it rebuilds into *other (a new reference)
 * and returns 1.  -1 with an exception set.  The items are rebuilt in order,
 * and pickled values only when the first item that holds one is reached: on
 * -1, the items rebuilt before the one that failed stay in items[] (new
 * references, the caller's to drop; the others are NULL), so that a caller
 * knows what came through (a call's header, when its arguments did not). */
int mg_encode_items(mg_state *st, PyObject *const *items, Py_ssize_t n, mg_blob *out, int flags);
int mg_decode_items(mg_state *st, const mg_blob *b, Py_ssize_t n, PyObject **items,
                    PyObject **other);
/* 1 if `obj` crosses natively (no pickle), else 0. */
int mg_is_natively_shareable(mg_state *st, PyObject *obj);

/* Add is_shareable and the test helpers (_roundtrip, ...) to the module. */
int mg_xidata_init(PyObject *module, mg_state *st);

#endif /* MULTIGIL_XIDATA_H */
