/* queue.c — a blocking FIFO of encoded values shared between interpreters.
 *
 * The raw mg_queue holds encoded values (mg_blob: interpreter-free bytes plus
 * shared handles), never a PyObject, so an item outlives the interpreter that
 * put it and can be taken by any other.  put() encodes in the sender; get()
 * decodes in the receiver.
 *
 * Waiting is condvar signalling with the GIL released (wait.h): a blocked
 * get() costs nothing until a put() signals it, and put()/get() signal only
 * when the other side has a sleeper.  That is what makes a ping-pong between
 * two interpreters a few microseconds instead of CPython 3.14's 10 ms poll.
 *
 * An item must cost what it holds: a work queue can hold millions, and a
 * queued small int used to pin ~350 bytes.  Each item is one 16-byte ring slot
 * holding, by size of its encoded stream:
 *   - up to 15 bytes without handles (an int, a float, a short str, a small
 *     tuple of those): the stream itself, no allocation at all;
 *   - up to ITEM_MAX bytes, from put(): a qitem, one allocation of an 8-byte
 *     header, the handles and the stream (a 20-char str: 48 bytes);
 *   - else, or from mg_queue_put_blob: a heap blob (mg_blob_move_to_heap sizes
 *     it to its content).
 */
#include "mg.h"
#include "errors.h"
#include "wait.h"

#include <string.h>

/*************************************************************************
 * Queued items                                                          *
 *************************************************************************/

#define SLOT_INLINE 15
#define ITEM_MAX 4096

/* A compact queued value: the handles (one reference each), then the stream,
 * in the same allocation.  Both 8-byte aligned, as the decoder wants the
 * stream (it aligns UCS2/UCS4 relative to it). */
typedef struct {
    uint32_t size;              /* stream bytes, <= ITEM_MAX */
    uint32_t nhandles;
} qitem;

#define ITEM_HANDLES(it) ((mg_shared **)((char *)(it) + sizeof(qitem)))
#define ITEM_DATA(it) ((char *)ITEM_HANDLES(it) + (it)->nhandles * sizeof(mg_shared *))

/* One ring slot.  len 1..SLOT_INLINE: the stream is in data; SLOT_BLOB or
 * SLOT_ITEM: data holds an mg_blob* or a qitem* (memcpy'd: the bytes are not
 * aligned for a pointer). */
typedef struct {
    unsigned char len;
    unsigned char data[SLOT_INLINE];
} qslot;

#define SLOT_BLOB 0
#define SLOT_ITEM 0xff

_Static_assert(sizeof(void *) <= SLOT_INLINE, "a slot holds a pointer");
_Static_assert(sizeof(qslot) == 16, "slots are 16 bytes");
_Static_assert(sizeof(qitem) % sizeof(void *) == 0, "qitem keeps its handles aligned");

static inline void
slot_set_ptr(qslot *s, unsigned char kind, void *p)
{
    s->len = kind;
    memcpy(s->data, &p, sizeof(p));
}

static inline void *
slot_ptr(const qslot *s)
{
    void *p;
    memcpy(&p, s->data, sizeof(p));
    return p;
}

/* 1 if the stream of `b` can be copied out of it: it points into no
 * sender's object (MG_ENCODE_BORROW, never queued anyway). */
static inline int
copyable(const mg_blob *b)
{
    return !(b->flags & MG_ENCODE_BORROW);
}

/* 1 if the stream of `b` fits in a slot: short, and owning nothing else. */
static inline int
slot_fits(const mg_blob *b)
{
    return b->nhandles == 0 && b->size > 0 && b->size <= SLOT_INLINE && copyable(b);
}

/* Store `b` (a stack blob just encoded) in `s`: in the slot, or as a qitem,
 * or moved to the heap.  `b` is left empty.  -1 with MemoryError. */
static int
slot_store(qslot *s, mg_blob *b)
{
    if (slot_fits(b)) {
        s->len = (unsigned char)b->size;
        memcpy(s->data, b->data, b->size);
        mg_blob_clear(b);
        return 0;
    }
    if (b->size <= ITEM_MAX && copyable(b) && b->nhandles <= UINT32_MAX) {
        size_t hbytes = b->nhandles * sizeof(mg_shared *);
        qitem *it = PyMem_RawMalloc(sizeof(qitem) + hbytes + b->size);
        if (it == NULL) {
            mg_blob_clear(b);
            PyErr_NoMemory();
            return -1;
        }
        it->size = (uint32_t)b->size;
        it->nhandles = (uint32_t)b->nhandles;
        if (hbytes > 0) {
            memcpy(ITEM_HANDLES(it), b->handles, hbytes);
        }
        memcpy(ITEM_DATA(it), b->data, b->size);
        b->nhandles = 0;        /* the references moved to the item */
        mg_blob_clear(b);
        slot_set_ptr(s, SLOT_ITEM, it);
        return 0;
    }
    mg_blob *hb = mg_blob_move_to_heap(b);
    if (hb == NULL) {
        mg_blob_clear(b);
        PyErr_NoMemory();
        return -1;
    }
    slot_set_ptr(s, SLOT_BLOB, hb);
    return 0;
}

/* A blob that reads what `s` holds, owning nothing (the slot still owns it).
 * `buf` keeps an inline stream aligned. */
static void
slot_view(const qslot *s, mg_blob *view, uint64_t buf[2])
{
    mg_blob_init(view);
    if (s->len == SLOT_BLOB) {
        *view = *(const mg_blob *)slot_ptr(s);
    }
    else if (s->len == SLOT_ITEM) {
        qitem *it = slot_ptr(s);
        view->handles = ITEM_HANDLES(it);
        view->nhandles = it->nhandles;
        view->data = ITEM_DATA(it);
        view->size = view->capacity = it->size;
    }
    else {
        memcpy(buf, s->data, s->len);
        view->data = (char *)buf;
        view->size = view->capacity = s->len;
    }
}

/* Drop what a slot owns.  No Python API: freeing only drops raw references. */
static void
slot_clear(qslot *s)
{
    if (s->len == SLOT_BLOB) {
        mg_blob_free(slot_ptr(s));
    }
    else if (s->len == SLOT_ITEM) {
        qitem *it = slot_ptr(s);
        for (uint32_t i = 0; i < it->nhandles; i++) {
            mg_shared_decref(ITEM_HANDLES(it)[i]);
        }
        PyMem_RawFree(it);
    }
    s->len = 1;     /* holds nothing now */
}

/*************************************************************************
 * Raw queue                                                             *
 *************************************************************************/

struct mg_queue {
    mg_shared head;
    pthread_mutex_t mu;         /* guards every field below */
    pthread_cond_t not_empty;   /* getters sleep here */
    pthread_cond_t not_full;    /* putters sleep here (bounded queues) */
    int n_getters, n_putters;   /* sleepers on each condvar */
    /* Ring buffer of slots: items are ring[(first + i) % cap], i < count.
     * Grown by doubling (capped at maxsize), dropped when the queue empties
     * after a burst, allocated with PyMem_RawMalloc (no GIL, any thread). */
    qslot *ring;
    size_t cap, first, count;
    Py_ssize_t maxsize;         /* as given; <= 0 means unbounded */
    int closed;
};

/* A ring larger than this is freed when the queue drains, so that a burst of
 * a million items does not pin memory forever. */
#define RING_KEEP 256

static void
queue_destroy(mg_shared *s)
{
    mg_queue *q = (mg_queue *)s;
    size_t i;
    /* Last reference: nobody else can see q, no lock needed.  Freeing a blob
     * only drops raw references (mg_blob_clear), no Python API. */
    for (i = 0; i < q->count; i++) {
        slot_clear(&q->ring[(q->first + i) % q->cap]);
    }
    PyMem_RawFree(q->ring);
    pthread_cond_destroy(&q->not_empty);
    pthread_cond_destroy(&q->not_full);
    pthread_mutex_destroy(&q->mu);
    PyMem_RawFree(q);
}

static PyObject *queue_wrap(mg_state *st, mg_shared *raw);

/* Process-global constant table (read-only, no lock needed). */
static const mg_shared_kind queue_kind = {"Queue", queue_destroy, queue_wrap};

static mg_queue *
queue_raw_new(Py_ssize_t maxsize)
{
    mg_queue *q = PyMem_RawCalloc(1, sizeof(*q));
    if (q == NULL) {
        PyErr_NoMemory();
        return NULL;
    }
    mg_shared_init(&q->head, &queue_kind);
    pthread_mutex_init(&q->mu, NULL);
    mg_cond_init(&q->not_empty);
    mg_cond_init(&q->not_full);
    q->maxsize = maxsize;
    return q;
}

/* Make room for one more item; mu held.  0, or -1 on no memory. */
static int
ring_reserve(mg_queue *q)
{
    size_t newcap, i;
    qslot *ring;

    if (q->count < q->cap) {
        return 0;
    }
    newcap = q->cap ? q->cap * 2 : 8;
    if (q->maxsize > 0 && newcap > (size_t)q->maxsize) {
        newcap = (size_t)q->maxsize;
    }
    if (newcap <= q->cap || newcap > PY_SSIZE_T_MAX / sizeof(qslot)) {
        return -1;
    }
    ring = PyMem_RawMalloc(newcap * sizeof(qslot));
    if (ring == NULL) {
        return -1;
    }
    for (i = 0; i < q->count; i++) {
        ring[i] = q->ring[(q->first + i) % q->cap];
    }
    PyMem_RawFree(q->ring);
    q->ring = ring;
    q->cap = newcap;
    q->first = 0;
    return 0;
}

/* Attempt results (wait.h: > 0 ends the wait). */
#define Q_DONE 1
#define Q_CLOSED 2
#define Q_NOMEM 3

typedef struct {
    mg_queue *q;
    qslot slot;
} queue_attempt_arg;

static int
put_attempt(void *arg)
{
    queue_attempt_arg *a = arg;
    mg_queue *q = a->q;
    if (q->closed) {
        return Q_CLOSED;
    }
    if (q->maxsize > 0 && q->count >= (size_t)q->maxsize) {
        return 0;
    }
    if (ring_reserve(q) < 0) {
        return Q_NOMEM;
    }
    q->ring[(q->first + q->count) % q->cap] = a->slot;
    q->count++;
    if (q->n_getters > 0) {
        pthread_cond_signal(&q->not_empty);
    }
    return Q_DONE;
}

static int
get_attempt(void *arg)
{
    queue_attempt_arg *a = arg;
    mg_queue *q = a->q;
    if (q->count == 0) {
        return q->closed ? Q_CLOSED : 0;
    }
    a->slot = q->ring[q->first];
    q->first = (q->first + 1) % q->cap;
    q->count--;
    if (q->count == 0) {
        q->first = 0;
        if (q->cap > RING_KEEP) {
            PyMem_RawFree(q->ring);
            q->ring = NULL;
            q->cap = 0;
        }
    }
    if (q->n_putters > 0) {
        pthread_cond_signal(&q->not_full);
    }
    return Q_DONE;
}

/*************************************************************************
 * Taking and appending slots                                            *
 *************************************************************************/

/* Wait for the next item and take its slot; results as mg_queue_get_blob. */
static int
queue_take(mg_queue *q, int64_t deadline, qslot *out)
{
    queue_attempt_arg a = {.q = q};
    int rc = mg_wait(&q->mu, &q->not_empty, &q->n_getters, deadline, get_attempt, &a);
    switch (rc) {
    case Q_DONE:
        *out = a.slot;
        return 0;
    case Q_CLOSED:
        return 2;
    case 0:
        return 1;
    default:
        return -1;
    }
}

/* Append the item in `slot`; results as mg_queue_put_blob (the slot is
 * taken on 0). */
static int
queue_append(mg_queue *q, const qslot *slot, int64_t deadline)
{
    queue_attempt_arg a = {q, *slot};
    int rc = mg_wait(&q->mu, &q->not_full, &q->n_putters, deadline, put_attempt, &a);
    switch (rc) {
    case Q_DONE:
        return 0;
    case Q_CLOSED:
        return 2;
    case Q_NOMEM:
        PyErr_NoMemory();
        return -1;
    case 0:
        return 1;
    default:
        return -1;
    }
}

/*************************************************************************
 * C API (mg.h)                                                          *
 *************************************************************************/

int
mg_queue_get_blob(mg_queue *q, int64_t deadline, mg_blob **out)
{
    qslot slot;
    int rc = queue_take(q, deadline, &slot);
    if (rc != 0) {
        return rc;
    }
    if (slot.len == SLOT_BLOB) {
        *out = slot_ptr(&slot);
        return 0;
    }
    /* The caller wants a heap blob: copy the item into one (worker tasks come
     * from mg_queue_put_blob and are heap blobs already). */
    uint64_t buf[2];
    mg_blob view, tmp;
    slot_view(&slot, &view, buf);
    mg_blob_init(&tmp);
    tmp.data = PyMem_RawMalloc(view.size);
    tmp.handles = view.nhandles ? PyMem_RawMalloc(view.nhandles * sizeof(mg_shared *)) : NULL;
    if (tmp.data == NULL || (view.nhandles && tmp.handles == NULL)) {
        mg_blob_clear(&tmp);
        slot_clear(&slot);
        PyErr_NoMemory();
        return -1;
    }
    memcpy(tmp.data, view.data, view.size);
    tmp.size = tmp.capacity = view.size;
    for (size_t i = 0; i < view.nhandles; i++) {
        tmp.handles[i] = view.handles[i];
        mg_shared_incref(view.handles[i]);
    }
    tmp.nhandles = tmp.hcapacity = view.nhandles;
    slot_clear(&slot);
    *out = mg_blob_move_to_heap(&tmp);
    if (*out == NULL) {
        mg_blob_clear(&tmp);
        PyErr_NoMemory();
        return -1;
    }
    return 0;
}

int
mg_queue_put_blob(mg_queue *q, mg_blob *b, int64_t deadline)
{
    qslot slot;
    int small = slot_fits(b);
    if (small) {
        slot.len = (unsigned char)b->size;
        memcpy(slot.data, b->data, b->size);
    }
    else {
        slot_set_ptr(&slot, SLOT_BLOB, b);
    }
    int rc = queue_append(q, &slot, deadline);
    if (rc == 0 && small) {
        mg_blob_free(b);        /* taken: the slot holds a copy */
    }
    return rc;
}

void
mg_queue_close(mg_queue *q)
{
    pthread_mutex_lock(&q->mu);
    if (!q->closed) {
        q->closed = 1;
        /* Every sleeper must see it: getters drain or get QueueClosed,
         * putters get QueueClosed. */
        if (q->n_getters > 0) {
            pthread_cond_broadcast(&q->not_empty);
        }
        if (q->n_putters > 0) {
            pthread_cond_broadcast(&q->not_full);
        }
    }
    pthread_mutex_unlock(&q->mu);
}

mg_queue *
mg_queue_from_object(mg_state *st, PyObject *obj)
{
    if (st == NULL || st->QueueType == NULL || !Py_IS_TYPE(obj, st->QueueType)) {
        PyErr_Format(PyExc_TypeError, "expected a multigil Queue, not %.100s",
                     Py_TYPE(obj)->tp_name);
        return NULL;
    }
    return (mg_queue *)((mg_wrapper *)obj)->raw;
}

/*************************************************************************
 * Python type Queue                                                     *
 *************************************************************************/

typedef struct {
    MG_WRAPPER_HEAD
} queue_obj;

#define QUEUE_RAW(self) ((mg_queue *)((mg_wrapper *)(self))->raw)

static mg_state *
queue_state(PyObject *self)
{
    return (mg_state *)PyType_GetModuleState(Py_TYPE(self));
}

PyDoc_STRVAR(queue_doc,
"Queue(maxsize=0)\n"
"--\n"
"\n"
"A FIFO queue shared by every interpreter it is sent to.\n"
"\n"
"Shaped like :class:`concurrent.interpreters.Queue` (Python 3.14) and\n"
":class:`queue.Queue`: pass the queue to other interpreters (as an argument,\n"
"a result, or an item of another queue) and every copy is the *same* queue.\n"
"\n"
"``put()`` stores an interpreter-free copy of the value (natively for\n"
"None, bool, int, float, complex, str, bytes, containers of those, and\n"
"shared objects such as queues, locks and SharedBuffers; by pickle for the\n"
"rest); ``get()`` rebuilds it in the caller's interpreter.  Because items are\n"
"copies that belong to no interpreter, they stay valid after the\n"
"interpreter that put them is closed: nothing like 3.14's ``unbounditems``\n"
"is needed, no item is ever lost or replaced.  (Zero-copy views of an\n"
"interpreter's memory are the exception by design: while one is queued,\n"
"that interpreter cannot be closed.)\n"
"\n"
"Blocking calls release the GIL and are woken by the other side directly\n"
"(no polling); timeouts are honoured exactly, fractions of a second\n"
"included; in the main thread Ctrl-C interrupts them.\n"
"\n"
"Parameters\n"
"----------\n"
"maxsize : int\n"
"    Upper bound on the number of items; <= 0 means unbounded.\n"
"\n"
"Attributes\n"
"----------\n"
"id : int\n"
"    Process-unique id; equal ids mean the same queue.\n"
"maxsize : int\n"
"    As given to the constructor.\n"
"closed : bool\n"
"    True once :meth:`close` was called.\n"
"\n"
"Examples\n"
"--------\n"
">>> q = multigil.Queue()\n"
">>> q.put([1, 'two', b'3'])\n"
">>> q.get()\n"
"[1, 'two', b'3']\n");

static PyObject *
queue_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"maxsize", NULL};
    Py_ssize_t maxsize = 0;
    mg_queue *q;
    PyObject *self;

    if (!PyArg_ParseTupleAndKeywords(args, kwds, "|n:Queue", kwlist, &maxsize)) {
        return NULL;
    }
    q = queue_raw_new(maxsize);
    if (q == NULL) {
        return NULL;
    }
    self = type->tp_alloc(type, 0);
    if (self != NULL) {
        ((mg_wrapper *)self)->raw = &q->head;   /* takes the creation reference */
    }
    else {
        mg_shared_decref(&q->head);
    }
    return self;
}

static PyObject *
queue_wrap(mg_state *st, mg_shared *raw)
{
    return mg_wrapper_new(st->QueueType, raw);
}

static PyObject *
queue_put_impl(PyObject *self, PyObject *obj, int64_t deadline)
{
    mg_state *st = queue_state(self);
    mg_queue *q = QUEUE_RAW(self);
    mg_blob blob;
    qslot slot;
    int rc;

    /* A closed queue fails fast, before paying for the encoding. */
    pthread_mutex_lock(&q->mu);
    rc = q->closed;
    pthread_mutex_unlock(&q->mu);
    if (rc) {
        return mg_raise(st, MG_ERR_QUEUE_CLOSED, "queue %lld is closed", (long long)q->head.id);
    }
    /* No MG_ENCODE_BORROW: put() returns long before anyone decodes. */
    mg_blob_init(&blob);
    if (mg_encode(st, obj, &blob, 0) < 0) {
        return NULL;
    }
    if (slot_store(&slot, &blob) < 0) {
        return NULL;
    }
    rc = queue_append(q, &slot, deadline);
    if (rc == 0) {
        Py_RETURN_NONE;
    }
    slot_clear(&slot);
    switch (rc) {
    case 1:
        return mg_raise(st, MG_ERR_QUEUE_FULL, "queue %lld is full (maxsize %zd)",
                        (long long)q->head.id, q->maxsize);
    case 2:
        return mg_raise(st, MG_ERR_QUEUE_CLOSED, "queue %lld is closed", (long long)q->head.id);
    default:
        return NULL;
    }
}

static PyObject *
queue_get_impl(PyObject *self, int64_t deadline)
{
    mg_state *st = queue_state(self);
    mg_queue *q = QUEUE_RAW(self);
    qslot slot;
    PyObject *res;

    switch (queue_take(q, deadline, &slot)) {
    case 0:
        break;
    case 1:
        return mg_raise(st, MG_ERR_QUEUE_EMPTY, "queue %lld is empty", (long long)q->head.id);
    case 2:
        return mg_raise(st, MG_ERR_QUEUE_CLOSED, "queue %lld is closed and empty",
                        (long long)q->head.id);
    default:
        return NULL;
    }
    /* The item left the queue: if decoding fails (e.g. an unpicklable
     * module is missing here) it is dropped and the error propagates. */
    uint64_t buf[2];
    mg_blob view;
    slot_view(&slot, &view, buf);
    res = mg_decode(st, &view);
    slot_clear(&slot);
    return res;
}

PyDoc_STRVAR(queue_put_doc,
"put($self, obj, block=True, timeout=None)\n"
"--\n"
"\n"
"Add a copy of obj to the end of the queue.\n"
"\n"
"Parameters\n"
"----------\n"
"obj : object\n"
"    Any shareable or picklable value.\n"
"block : bool\n"
"    If false, fail at once when the queue is full (timeout is ignored).\n"
"timeout : float or None\n"
"    Seconds to wait for room at most (exactly); None waits forever.\n"
"\n"
"Raises\n"
"------\n"
"QueueFull\n"
"    No room before the timeout (or at once, non-blocking).\n"
"QueueClosed\n"
"    The queue is closed, or was closed while waiting.\n"
"NotShareableError\n"
"    obj cannot be copied to another interpreter.\n");

static PyObject *
queue_put(PyObject *self, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    static const char *const kwlist[] = {"obj", "block", "timeout", NULL};
    PyObject *argv[3] = {NULL, NULL, NULL};
    int64_t deadline = MG_FOREVER;

    if (nargs == 1 && kwnames == NULL) {
        return queue_put_impl(self, args[0], MG_FOREVER);
    }
    if (mg_parse_args("put", args, nargs, kwnames, kwlist, 3, argv) < 0) {
        return NULL;
    }
    if (argv[0] == NULL) {
        PyErr_SetString(PyExc_TypeError, "put() missing required argument 'obj'");
        return NULL;
    }
    if (mg_deadline(argv[1], argv[2], 0, &deadline) < 0) {
        return NULL;
    }
    return queue_put_impl(self, argv[0], deadline);
}

static PyObject *
queue_put_nowait(PyObject *self, PyObject *obj)
{
    return queue_put_impl(self, obj, 0);
}

PyDoc_STRVAR(queue_get_doc,
"get($self, block=True, timeout=None)\n"
"--\n"
"\n"
"Remove the first item and return it, rebuilt in this interpreter.\n"
"\n"
"Parameters\n"
"----------\n"
"block : bool\n"
"    If false, fail at once when the queue is empty (timeout is ignored).\n"
"timeout : float or None\n"
"    Seconds to wait for an item at most (exactly); None waits forever.\n"
"\n"
"Raises\n"
"------\n"
"QueueEmpty\n"
"    No item before the timeout (or at once, non-blocking).\n"
"QueueClosed\n"
"    The queue is closed and drained (items put before close() are still\n"
"    returned first).\n");

static PyObject *
queue_get(PyObject *self, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    static const char *const kwlist[] = {"block", "timeout", NULL};
    PyObject *argv[2] = {NULL, NULL};
    int64_t deadline = MG_FOREVER;

    if (nargs != 0 || kwnames != NULL) {
        if (mg_parse_args("get", args, nargs, kwnames, kwlist, 2, argv) < 0 ||
            mg_deadline(argv[0], argv[1], 0, &deadline) < 0) {
            return NULL;
        }
    }
    return queue_get_impl(self, deadline);
}

static PyObject *
queue_get_nowait(PyObject *self, PyObject *Py_UNUSED(ignored))
{
    return queue_get_impl(self, 0);
}

static PyObject *
queue_close(PyObject *self, PyObject *Py_UNUSED(ignored))
{
    mg_queue_close(QUEUE_RAW(self));
    Py_RETURN_NONE;
}

static size_t
queue_count(mg_queue *q)
{
    size_t n;
    pthread_mutex_lock(&q->mu);
    n = q->count;
    pthread_mutex_unlock(&q->mu);
    return n;
}

static PyObject *
queue_qsize(PyObject *self, PyObject *Py_UNUSED(ignored))
{
    return PyLong_FromSize_t(queue_count(QUEUE_RAW(self)));
}

static PyObject *
queue_empty(PyObject *self, PyObject *Py_UNUSED(ignored))
{
    return PyBool_FromLong(queue_count(QUEUE_RAW(self)) == 0);
}

static PyObject *
queue_full(PyObject *self, PyObject *Py_UNUSED(ignored))
{
    mg_queue *q = QUEUE_RAW(self);
    return PyBool_FromLong(q->maxsize > 0 && queue_count(q) >= (size_t)q->maxsize);
}

static PyObject *
queue_get_maxsize(PyObject *self, void *Py_UNUSED(closure))
{
    return PyLong_FromSsize_t(QUEUE_RAW(self)->maxsize);
}

static PyObject *
queue_get_closed(PyObject *self, void *Py_UNUSED(closure))
{
    mg_queue *q = QUEUE_RAW(self);
    int closed;
    pthread_mutex_lock(&q->mu);
    closed = q->closed;
    pthread_mutex_unlock(&q->mu);
    return PyBool_FromLong(closed);
}

static PyObject *
queue_repr(PyObject *self)
{
    mg_queue *q = QUEUE_RAW(self);
    size_t n;
    int closed;
    pthread_mutex_lock(&q->mu);
    n = q->count;
    closed = q->closed;
    pthread_mutex_unlock(&q->mu);
    return PyUnicode_FromFormat("<multigil.Queue id=%lld maxsize=%zd qsize=%zu%s>",
                                (long long)q->head.id, q->maxsize, n,
                                closed ? " closed" : "");
}

static PyMethodDef queue_methods[] = {
    {"put", (PyCFunction)(void (*)(void))queue_put, METH_FASTCALL | METH_KEYWORDS,
     queue_put_doc},
    {"put_nowait", queue_put_nowait, METH_O,
     "put_nowait($self, obj, /)\n--\n\nLike put(obj, block=False): QueueFull if there is no room.\n"},
    {"get", (PyCFunction)(void (*)(void))queue_get, METH_FASTCALL | METH_KEYWORDS,
     queue_get_doc},
    {"get_nowait", queue_get_nowait, METH_NOARGS,
     "get_nowait($self, /)\n--\n\nLike get(block=False): QueueEmpty if there is no item.\n"},
    {"qsize", queue_qsize, METH_NOARGS,
     "qsize($self, /)\n--\n\nNumber of items now (a snapshot: other interpreters may change it).\n"},
    {"empty", queue_empty, METH_NOARGS,
     "empty($self, /)\n--\n\nTrue if the queue holds no item now (a snapshot).\n"},
    {"full", queue_full, METH_NOARGS,
     "full($self, /)\n--\n\nTrue if a bounded queue holds maxsize items now (a snapshot).\n"},
    {"close", queue_close, METH_NOARGS,
     "close($self, /)\n--\n\nClose the queue in every interpreter.\n\n"
     "Blocked and later put() calls raise QueueClosed; get() still returns the\n"
     "items already queued, then raises QueueClosed.  Closing twice is harmless.\n"},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef queue_getset[] = {
    {"id", mg_wrapper_get_id, NULL, "Process-unique id of the queue.", NULL},
    {"maxsize", queue_get_maxsize, NULL, "Maximum size given at creation (<= 0: unbounded).",
     NULL},
    {"closed", queue_get_closed, NULL, "True once close() was called.", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyType_Slot queue_slots[] = {
    {Py_tp_doc, (void *)queue_doc},
    {Py_tp_new, queue_new},
    {Py_tp_dealloc, mg_wrapper_dealloc},
    {Py_tp_repr, queue_repr},
    {Py_tp_hash, mg_wrapper_hash},
    {Py_tp_richcompare, mg_wrapper_richcompare},
    {Py_tp_methods, queue_methods},
    {Py_tp_getset, queue_getset},
    {0, NULL},
};

static PyType_Spec queue_spec = {
    .name = "multigil._core.Queue",
    .basicsize = sizeof(queue_obj),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_IMMUTABLETYPE,
    .slots = queue_slots,
};

/*************************************************************************
 * Module registration                                                   *
 *************************************************************************/

int
mg_queue_init(PyObject *module, mg_state *st)
{
    st->QueueType = mg_add_type(module, &queue_spec, NULL);
    return st->QueueType == NULL ? -1 : 0;
}
