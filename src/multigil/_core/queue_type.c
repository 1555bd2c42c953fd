/* queue_type.c — the Python type Queue over the raw queue, and the one table
 * from a queue status to the exception it raises. */
#include "queue.h"
#include "errors.h"
#include "wait.h"
#include "xidata.h"
#include "interp.h"

#include <unistd.h>

#define QUEUE_RAW(self) ((mg_queue *)((mg_wrapper *)(self))->raw)

/*************************************************************************
 * Statuses as exceptions                                                *
 *************************************************************************/

/* Process-global constant table (read-only, no lock needed).  Every format
 * takes the queue's id, then its maxsize. */
static const struct {
    mg_error error;
    const char *format;
} status_errors[2][3] = {
    [MG_QUEUE_PUT] = {
        [MG_QUEUE_TIMEOUT] = {MG_ERR_QUEUE_FULL, "queue %lld is full (maxsize %zd)"},
        [MG_QUEUE_CLOSED] = {MG_ERR_QUEUE_CLOSED, "queue %lld is closed"},
    },
    [MG_QUEUE_GET] = {
        [MG_QUEUE_TIMEOUT] = {MG_ERR_QUEUE_EMPTY, "queue %lld is empty"},
        [MG_QUEUE_CLOSED] = {MG_ERR_QUEUE_CLOSED, "queue %lld is closed and empty"},
    },
};

PyObject *
mg_queue_raise(mg_state *st, mg_queue *q, mg_queue_op op, mg_queue_status status)
{
    if (status == MG_QUEUE_TIMEOUT || status == MG_QUEUE_CLOSED) {
        return mg_raise(st, status_errors[op][status].error, status_errors[op][status].format,
                        (long long)mg_queue_id(q), mg_queue_maxsize(q));
    }
    if (!PyErr_Occurred()) {
        PyErr_SetString(PyExc_SystemError, "multigil: a queue operation failed without an error");
    }
    return NULL;
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
 * The type                                                              *
 *************************************************************************/

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
    q = mg_queue_new(maxsize);
    if (q == NULL) {
        return NULL;
    }
    self = type->tp_alloc(type, 0);
    if (self != NULL) {
        ((mg_wrapper *)self)->raw = (mg_shared *)q;     /* takes the creation reference */
    }
    else {
        mg_shared_decref((mg_shared *)q);
    }
    return self;
}

static PyObject *
queue_put_impl(PyObject *self, PyObject *obj, int64_t deadline)
{
    mg_state *st = queue_state(self);
    mg_queue *q = QUEUE_RAW(self);
    mg_blob blob;
    int closed;

    /* A closed queue fails fast, before paying for the encoding. */
    mg_queue_count(q, &closed);
    if (closed) {
        return mg_queue_raise(st, q, MG_QUEUE_PUT, MG_QUEUE_CLOSED);
    }
    /* No MG_ENCODE_BORROW: put() returns long before anyone decodes.  The
     * main interpreter lends large bytes and str, since it outlives every
     * item (multigil never closes it); any other interpreter may be closed
     * while its items wait, and items belong to no interpreter, so they are
     * copied.  Each put() of the main interpreter drops what the takers
     * copied since the last one. */
    int lend = PyInterpreterState_Get() == PyInterpreterState_Main();
    if (lend) {
        mg_interp_run_deferred_of(st->interp);
    }
    mg_blob_init(&blob);
    if (mg_encode(st, obj, &blob, lend ? MG_ENCODE_LEND : 0) < 0) {
        return NULL;
    }
    mg_queue_status rc = mg_queue_put(q, &blob, deadline);
    if (rc != MG_QUEUE_OK) {
        return mg_queue_raise(st, q, MG_QUEUE_PUT, rc);
    }
    Py_RETURN_NONE;
}

static PyObject *
queue_get_impl(PyObject *self, int64_t deadline)
{
    mg_state *st = queue_state(self);
    mg_queue *q = QUEUE_RAW(self);
    mg_queue_item item;

    mg_queue_status rc = mg_queue_get(q, deadline, &item);
    if (rc != MG_QUEUE_OK) {
        return mg_queue_raise(st, q, MG_QUEUE_GET, rc);
    }
    /* The item left the queue: if decoding fails (e.g. an unpicklable
     * module is missing here) it is dropped and the error propagates. */
    uint64_t buf[2];
    mg_blob view;
    mg_queue_item_view(&item, &view, buf);
    PyObject *res = mg_decode(st, &view);
    mg_queue_item_clear(&item);
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

static PyObject *
queue_qsize(PyObject *self, PyObject *Py_UNUSED(ignored))
{
    return PyLong_FromSize_t(mg_queue_count(QUEUE_RAW(self), NULL));
}

static PyObject *
queue_empty(PyObject *self, PyObject *Py_UNUSED(ignored))
{
    return PyBool_FromLong(mg_queue_count(QUEUE_RAW(self), NULL) == 0);
}

static PyObject *
queue_full(PyObject *self, PyObject *Py_UNUSED(ignored))
{
    mg_queue *q = QUEUE_RAW(self);
    Py_ssize_t maxsize = mg_queue_maxsize(q);
    return PyBool_FromLong(maxsize > 0 && mg_queue_count(q, NULL) >= (size_t)maxsize);
}

static PyObject *
queue_get_maxsize(PyObject *self, void *Py_UNUSED(closure))
{
    return PyLong_FromSsize_t(mg_queue_maxsize(QUEUE_RAW(self)));
}

static PyObject *
queue_get_closed(PyObject *self, void *Py_UNUSED(closure))
{
    int closed;
    mg_queue_count(QUEUE_RAW(self), &closed);
    return PyBool_FromLong(closed);
}

static PyObject *
queue_repr(PyObject *self)
{
    mg_queue *q = QUEUE_RAW(self);
    int closed;
    size_t n = mg_queue_count(q, &closed);
    return PyUnicode_FromFormat("<multigil.Queue id=%lld maxsize=%zd qsize=%zu%s>",
                                (long long)mg_queue_id(q), mg_queue_maxsize(q), n,
                                closed ? " closed" : "");
}

/* Pickling: a queue pickles as its id and the process's, and unpickles, in
 * any interpreter of this process, to the same queue (as the stdlib's), if
 * it still exists then: the pickle holds no reference to it. */

static PyObject *
queue_reduce(PyObject *self, PyObject *Py_UNUSED(ignored))
{
    PyObject *module = PyType_GetModule(Py_TYPE(self));     /* borrowed */
    PyObject *from_id = module ? PyObject_GetAttrString(module, "_queue_from_id") : NULL;
    if (from_id == NULL) {
        return NULL;
    }
    return Py_BuildValue("(N(Ll))", from_id, (long long)mg_queue_id(QUEUE_RAW(self)),
                         (long)getpid());
}

PyDoc_STRVAR(queue_from_id__doc__,
"_queue_from_id($module, id, pid, /)\n--\n\n"
"The Queue with this id, in the process `pid` (this one): how a pickled\n"
"Queue is rebuilt.  ValueError if it does not exist (any more).");

static PyObject *
queue_from_id(PyObject *module, PyObject *args)
{
    long long id;
    long pid;
    if (!PyArg_ParseTuple(args, "Ll:_queue_from_id", &id, &pid)) {
        return NULL;
    }
    if (pid != (long)getpid()) {
        return PyErr_Format(PyExc_ValueError,
                            "multigil queue %lld was pickled in another process (%ld): a queue "
                            "is shared by the interpreters of one process only", id, pid);
    }
    mg_queue *q = mg_queue_lookup(id);
    if (q == NULL) {
        return PyErr_Format(PyExc_ValueError,
                            "multigil queue %lld no longer exists: a pickled queue does not keep "
                            "it alive; keep a reference to the queue until it is unpickled", id);
    }
    mg_state *st = PyModule_GetState(module);
    PyObject *obj = mg_wrapper_new(st->QueueType, (mg_shared *)q);
    mg_shared_decref((mg_shared *)q);       /* the wrapper took its own reference */
    return obj;
}

static PyMethodDef queue_functions[] = {
    {"_queue_from_id", queue_from_id, METH_VARARGS, queue_from_id__doc__},
    {NULL, NULL, 0, NULL},
};

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
    {"__reduce__", queue_reduce, METH_NOARGS,
     "__reduce__($self, /)\n--\n\nPickled, a queue is its id: it unpickles to the same queue, "
     "in any\ninterpreter of this process, while the queue exists.\n"},
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
    .basicsize = sizeof(mg_wrapper),
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
    if (st->QueueType == NULL) {
        return -1;
    }
    return PyModule_AddFunctions(module, queue_functions);
}
