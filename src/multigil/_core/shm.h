/* shm.h — memory that several interpreters see at once, without copying:
 * SharedBuffer, and the zero-copy kinds the encoder sends (exports of a
 * memoryview's buffer, chunks of pickle's out-of-band buffers), viewed by the
 * receiver through a ForeignBuffer; and lends, large bytes and str that the
 * receiver copies straight out of the sender's object.
 */
#ifndef MULTIGIL_SHM_H
#define MULTIGIL_SHM_H

#include "base.h"

/* An "export": the buffer of `exporter` (a memoryview, in practice), taken now
 * in the current interpreter, kept alive for other interpreters.  Its wrap()
 * builds a memoryview (over a ForeignBuffer) with the same format, shape,
 * strides and read-only flag.  Writable buffers stay writable.  When the last
 * reference goes, the Py_buffer is released by the owner interpreter (through
 * mg_interp_defer); the owner counts it in mg_interp_exports_add meanwhile.
 * Returns a new reference, or NULL with an exception set (BufferError,
 * ValueError for a released memoryview, MemoryError). */
mg_shared *mg_export_new(PyObject *exporter);

/* A "lend": an exact bytes or str of the current interpreter (the owner),
 * kept alive for other interpreters until they copied it.  Its wrap() builds
 * an equal bytes or str, copied straight out of the owner's object: the one
 * copy of the value.  It counts as an export of the owner; when the last
 * reference goes, the owner drops the object (at once if the thread is
 * attached to it, else through mg_interp_defer).  Returns a new reference, or
 * NULL with an exception set. */
mg_shared *mg_lend_new(PyObject *obj);

/* A "chunk": a raw, refcounted, 64-byte aligned copy of n bytes.  Its wrap()
 * builds a read-only ForeignBuffer over the copy (no second copy), alive as
 * long as that object is.  Used for pickle's out-of-band buffers.  Returns a
 * new reference, or NULL with MemoryError set. */
mg_shared *mg_chunk_new(const void *data, size_t n);
extern const mg_shared_kind mg_chunk_kind;

/* Add SharedBuffer to the module; make the ForeignBuffer type. */
int mg_shm_init(PyObject *module, mg_state *st);

#endif
