/* mg.h — what the C files of multigil._core still share beyond base.h (being
 * split into the headers of their layers). */
#ifndef MULTIGIL_MG_H
#define MULTIGIL_MG_H

#include "base.h"
#include "wait.h"
#include "interp.h"
#include "blob.h"
#include "shm.h"
#include "xidata.h"

/* ======================================================================
 * Module pieces: each file exposes its types/functions to module.c
 * ====================================================================== */
int mg_queue_init(PyObject *module, mg_state *st);    /* queue.c */
int mg_worker_init(PyObject *module, mg_state *st);   /* worker.c */

/* Raw queue of blobs used by Queue objects and by executor workers (queue.c) */
typedef struct mg_queue mg_queue;
/* Take the next blob, waiting until deadline (GIL released while waiting).
 * Returns 0 and sets *out, 1 on timeout, 2 if the queue is closed and empty,
 * -1 with an exception set (e.g. KeyboardInterrupt). */
int mg_queue_get_blob(mg_queue *q, int64_t deadline, mg_blob **out);
/* Append b, waiting for room until deadline (bounded queues).  Returns 0 (b
 * taken), 1 on timeout (full), 2 if closed, -1 with an exception set. */
int mg_queue_put_blob(mg_queue *q, mg_blob *b, int64_t deadline);  /* takes b on 0 */
mg_queue *mg_queue_from_object(mg_state *st, PyObject *obj);     /* borrowed raw or NULL+TypeError */
/* Close: wakes every waiter; later puts get 2, gets drain then get 2.  No GIL needed. */
void mg_queue_close(mg_queue *q);

#endif
