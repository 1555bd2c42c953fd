/* queue.c — a blocking FIFO of encoded values shared between interpreters.
 *
 * The raw mg_queue holds heap blobs (mg_blob: interpreter-free bytes plus
 * shared handles), never a PyObject, so an item outlives the interpreter that
 * put it and can be taken by any other.  put() encodes in the sender; get()
 * decodes in the receiver.
 *
 * Waiting is condvar signalling with the GIL released (wait.h): a blocked
 * get() costs nothing until a put() signals it, and put()/get() signal only
 * when the other side has a sleeper.  That is what makes a ping-pong between
 * two interpreters a few microseconds instead of CPython 3.14's 10 ms poll.
 */
#include "mg.h"
#include "wait.h"

/*************************************************************************
 * Raw queue                                                             *
 *************************************************************************/

struct mg_queue {
    mg_shared head;
    pthread_mutex_t mu;         /* guards every field below */
    pthread_cond_t not_empty;   /* getters sleep here */
    pthread_cond_t not_full;    /* putters sleep here (bounded queues) */
    int n_getters, n_putters;   /* sleepers on each condvar */
    /* Ring buffer of heap blobs: items are ring[(first + i) % cap], i < count.
     * Grown by doubling (capped at maxsize), dropped when the queue empties
     * after a burst, allocated with PyMem_RawMalloc (no GIL, any thread). */
    mg_blob **ring;
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
        mg_blob_free(q->ring[(q->first + i) % q->cap]);
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
    mg_blob **ring;

    if (q->count < q->cap) {
        return 0;
    }
    newcap = q->cap ? q->cap * 2 : 8;
    if (q->maxsize > 0 && newcap > (size_t)q->maxsize) {
        newcap = (size_t)q->maxsize;
    }
    if (newcap <= q->cap || newcap > PY_SSIZE_T_MAX / sizeof(mg_blob *)) {
        return -1;
    }
    ring = PyMem_RawMalloc(newcap * sizeof(mg_blob *));
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
    mg_blob *blob;
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
    q->ring[(q->first + q->count) % q->cap] = a->blob;
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
    a->blob = q->ring[q->first];
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
 * C API (mg.h)                                                          *
 *************************************************************************/

int
mg_queue_get_blob(mg_queue *q, int64_t deadline, mg_blob **out)
{
    queue_attempt_arg a = {q, NULL};
    int rc = mg_wait(&q->mu, &q->not_empty, &q->n_getters, deadline, get_attempt, &a);
    switch (rc) {
    case Q_DONE:
        *out = a.blob;
        return 0;
    case Q_CLOSED:
        return 2;
    case 0:
        return 1;
    default:
        return -1;
    }
}

int
mg_queue_put_blob(mg_queue *q, mg_blob *b, int64_t deadline)
{
    queue_attempt_arg a = {q, b};
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
    PyTypeObject *type = st->QueueType;
    PyObject *self;
    if (type == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "multigil._core is not initialised here");
        return NULL;
    }
    self = type->tp_alloc(type, 0);
    if (self == NULL) {
        return NULL;
    }
    mg_shared_incref(raw);
    ((mg_wrapper *)self)->raw = raw;
    return self;
}

static void
queue_dealloc(PyObject *self)
{
    PyTypeObject *tp = Py_TYPE(self);
    mg_shared *raw = ((mg_wrapper *)self)->raw;
    if (raw != NULL) {
        mg_shared_decref(raw);
    }
    tp->tp_free(self);
    Py_DECREF(tp);
}

/* block/timeout in the queue.Queue style: block=False ignores timeout. */
static int
queue_deadline(PyObject *block_obj, PyObject *timeout_obj, int64_t *deadline)
{
    int block = 1;
    if (block_obj != NULL) {
        block = PyObject_IsTrue(block_obj);
        if (block < 0) {
            return -1;
        }
    }
    if (!block) {
        *deadline = 0;
        return 0;
    }
    return mg_deadline_from_timeout(timeout_obj, deadline);
}

static PyObject *
queue_put_impl(PyObject *self, PyObject *obj, int64_t deadline)
{
    mg_state *st = queue_state(self);
    mg_queue *q = QUEUE_RAW(self);
    mg_blob blob, *hb;
    int rc;

    /* A closed queue fails fast, before paying for the encoding. */
    pthread_mutex_lock(&q->mu);
    rc = q->closed;
    pthread_mutex_unlock(&q->mu);
    if (rc) {
        return mg_raise(st, "QueueClosed", "queue %lld is closed", (long long)q->head.id);
    }
    /* No MG_ENCODE_BORROW: put() returns long before anyone decodes. */
    mg_blob_init(&blob);
    if (mg_encode(st, obj, &blob, 0) < 0) {
        return NULL;
    }
    hb = mg_blob_move_to_heap(&blob);
    if (hb == NULL) {
        mg_blob_clear(&blob);
        return PyErr_NoMemory();
    }
    rc = mg_queue_put_blob(q, hb, deadline);
    if (rc == 0) {
        Py_RETURN_NONE;
    }
    mg_blob_free(hb);
    switch (rc) {
    case 1:
        return mg_raise(st, "QueueFull", "queue %lld is full (maxsize %zd)",
                        (long long)q->head.id, q->maxsize);
    case 2:
        return mg_raise(st, "QueueClosed", "queue %lld is closed", (long long)q->head.id);
    default:
        return NULL;
    }
}

static PyObject *
queue_get_impl(PyObject *self, int64_t deadline)
{
    mg_state *st = queue_state(self);
    mg_queue *q = QUEUE_RAW(self);
    mg_blob *b = NULL;
    PyObject *res;

    switch (mg_queue_get_blob(q, deadline, &b)) {
    case 0:
        break;
    case 1:
        return mg_raise(st, "QueueEmpty", "queue %lld is empty", (long long)q->head.id);
    case 2:
        return mg_raise(st, "QueueClosed", "queue %lld is closed and empty",
                        (long long)q->head.id);
    default:
        return NULL;
    }
    /* The item left the queue: if decoding fails (e.g. an unpicklable
     * module is missing here) it is dropped and the error propagates. */
    res = mg_decode(st, b);
    mg_blob_free(b);
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
    if (queue_deadline(argv[1], argv[2], &deadline) < 0) {
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
            queue_deadline(argv[0], argv[1], &deadline) < 0) {
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
queue_get_id(PyObject *self, void *Py_UNUSED(closure))
{
    return PyLong_FromLongLong(QUEUE_RAW(self)->head.id);
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

static Py_hash_t
queue_hash(PyObject *self)
{
    Py_hash_t h = (Py_hash_t)QUEUE_RAW(self)->head.id;
    return h == -1 ? -2 : h;
}

static PyObject *
queue_richcompare(PyObject *a, PyObject *b, int op)
{
    int eq;
    if ((op != Py_EQ && op != Py_NE) || Py_TYPE(a) != Py_TYPE(b)) {
        Py_RETURN_NOTIMPLEMENTED;
    }
    eq = QUEUE_RAW(a)->head.id == QUEUE_RAW(b)->head.id;
    return PyBool_FromLong(op == Py_EQ ? eq : !eq);
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
    {"id", queue_get_id, NULL, "Process-unique id of the queue.", NULL},
    {"maxsize", queue_get_maxsize, NULL, "Maximum size given at creation (<= 0: unbounded).",
     NULL},
    {"closed", queue_get_closed, NULL, "True once close() was called.", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyType_Slot queue_slots[] = {
    {Py_tp_doc, (void *)queue_doc},
    {Py_tp_new, queue_new},
    {Py_tp_dealloc, queue_dealloc},
    {Py_tp_repr, queue_repr},
    {Py_tp_hash, queue_hash},
    {Py_tp_richcompare, queue_richcompare},
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
    PyTypeObject *tp = (PyTypeObject *)PyType_FromModuleAndSpec(module, &queue_spec, NULL);
    if (tp == NULL) {
        return -1;
    }
    if (PyModule_AddType(module, tp) < 0) {
        Py_DECREF(tp);
        return -1;
    }
    st->QueueType = tp;         /* the new reference goes to mg_state */
    return 0;
}
