/* queue.h — a blocking FIFO of blobs shared between interpreters: the raw
 * queue (queue.c), and the Python type Queue over it (queue_type.c).
 *
 * The raw queue holds encoded values, never a PyObject, so an item outlives
 * the interpreter that put it and can be taken by any other.  Waiting is
 * condvar signalling with the GIL released (wait.h).
 */
#ifndef MULTIGIL_QUEUE_H
#define MULTIGIL_QUEUE_H

#include "base.h"
#include "blob.h"

typedef struct mg_queue mg_queue;

/* What a queue operation ended with. */
typedef enum {
    MG_QUEUE_ERROR = -1,        /* an exception is set (MemoryError, KeyboardInterrupt) */
    MG_QUEUE_OK = 0,
    MG_QUEUE_TIMEOUT = 1,       /* get: no item came; put: no room came */
    MG_QUEUE_CLOSED = 2,        /* put: closed; get: closed and drained */
} mg_queue_status;

typedef enum { MG_QUEUE_PUT, MG_QUEUE_GET } mg_queue_op;

/*************************************************************************
 * The raw queue (queue.c)                                               *
 *************************************************************************/

/* A new queue (one reference, for its first wrapper), or NULL with
 * MemoryError.  maxsize <= 0: unbounded. */
mg_queue *mg_queue_new(Py_ssize_t maxsize);
/* The live queue with this id (a new reference), or NULL: none, or it is
 * being destroyed.  No exception is set.  (A pickled queue is its id.) */
mg_queue *mg_queue_lookup(int64_t id);
int64_t mg_queue_id(const mg_queue *q);
Py_ssize_t mg_queue_maxsize(const mg_queue *q);
/* The number of items now; *closed (if not NULL) whether it is closed. */
size_t mg_queue_count(mg_queue *q, int *closed);
/* Close: wakes every waiter; later puts get MG_QUEUE_CLOSED, gets drain
 * then get it.  No GIL needed. */
void mg_queue_close(mg_queue *q);

/* One queued item, as taken: a small stream inline, or a pointer to storage
 * that the item owns. */
typedef struct {
    unsigned char len;
    unsigned char data[15];
} mg_queue_item;

/* Append the value just encoded into `b` (a stack blob, left empty): stored
 * in the least memory that holds it.  Waits for room until deadline. */
mg_queue_status mg_queue_put(mg_queue *q, mg_blob *b, int64_t deadline);
/* Take the next item, waiting until deadline (GIL released while waiting). */
mg_queue_status mg_queue_get(mg_queue *q, int64_t deadline, mg_queue_item *item);
/* A blob that reads `item` and owns nothing; `buf` keeps an inline stream
 * aligned.  Then drop what the item owns (no Python API). */
void mg_queue_item_view(const mg_queue_item *item, mg_blob *view, uint64_t buf[2]);
void mg_queue_item_clear(mg_queue_item *item);

/* The same with heap blobs, for the executor's workers: put takes `b` on
 * MG_QUEUE_OK; get sets *out to a heap blob (mg_blob_free it). */
mg_queue_status mg_queue_put_blob(mg_queue *q, mg_blob *b, int64_t deadline);
mg_queue_status mg_queue_get_blob(mg_queue *q, int64_t deadline, mg_blob **out);

/*************************************************************************
 * The Python type (queue_type.c)                                        *
 *************************************************************************/

/* The raw queue of a Queue object (borrowed), or NULL with TypeError. */
mg_queue *mg_queue_from_object(mg_state *st, PyObject *obj);
/* The one table from a status to the exception it raises: QueueFull,
 * QueueEmpty or QueueClosed naming `q` (MG_QUEUE_ERROR: the exception set
 * stays).  Returns NULL. */
PyObject *mg_queue_raise(mg_state *st, mg_queue *q, mg_queue_op op, mg_queue_status status);
/* Add Queue to the module. */
int mg_queue_init(PyObject *module, mg_state *st);

#endif /* MULTIGIL_QUEUE_H */
