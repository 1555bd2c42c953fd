/* semaphore.c — Semaphore and BoundedSemaphore shared by every interpreter
 * they are sent to. */
#include "sync.h"
#include "wait.h"

static PyObject *semaphore_wrap(mg_state *st, mg_shared *raw);

/* Process-global constant tables (read-only, no lock needed). */
static const mg_shared_kind semaphore_kind = {"Semaphore", mg_sync_raw_destroy, semaphore_wrap};
static const mg_shared_kind bsemaphore_kind = {"BoundedSemaphore", mg_sync_raw_destroy,
                                               semaphore_wrap};

static const char *const acquire_kwlist[] = {"blocking", "timeout", NULL};

/* One Python type for both (a BoundedSemaphore is a Semaphore whose raw
 * object has a bound), so that isinstance(BoundedSemaphore(), Semaphore)
 * holds as in threading; the constructor BoundedSemaphore is a subclass
 * that only changes __new__.
 */

PyDoc_STRVAR(semaphore_doc,
"Semaphore(value=1)\n"
"--\n"
"\n"
"A counting semaphore shared by every interpreter it is sent to.\n"
"\n"
"Like :class:`threading.Semaphore`: ``acquire()`` decrements the counter,\n"
"waiting (GIL released) while it is zero; ``release(n)`` increments it.\n"
"\n"
"Parameters\n"
"----------\n"
"value : int\n"
"    Initial counter, >= 0.\n"
"\n"
"Attributes\n"
"----------\n"
"id : int\n"
"    Process-unique id; equal ids mean the same semaphore.\n");

PyDoc_STRVAR(bsemaphore_doc,
"BoundedSemaphore(value=1)\n"
"--\n"
"\n"
"A :class:`Semaphore` that raises ValueError when released above its initial\n"
"value, like :class:`threading.BoundedSemaphore`.\n");

static PyObject *
semaphore_create(PyTypeObject *type, PyObject *args, PyObject *kwds, int bounded)
{
    static char *kwlist[] = {"value", NULL};
    long long value = 1;
    mg_sync_raw *r;
    PyObject *self;

    if (!PyArg_ParseTupleAndKeywords(args, kwds, "|L", kwlist, &value)) {
        return NULL;
    }
    if (value < 0) {
        PyErr_SetString(PyExc_ValueError, "semaphore initial value must be >= 0");
        return NULL;
    }
    r = mg_sync_raw_new(bounded ? &bsemaphore_kind : &semaphore_kind, value,
                     bounded ? value : -1);
    if (r == NULL) {
        return NULL;
    }
    self = mg_wrapper_new(type, &r->head);
    mg_shared_decref(&r->head);
    return self;
}

static PyObject *
semaphore_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    return semaphore_create(type, args, kwds, 0);
}

static PyObject *
bsemaphore_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    return semaphore_create(type, args, kwds, 1);
}

static PyObject *
semaphore_wrap(mg_state *st, mg_shared *raw)
{
    PyTypeObject *type = raw->kind == &bsemaphore_kind ? st->BoundedSemaphoreType
                                                       : st->SemaphoreType;
    return mg_wrapper_new(type, raw);
}

static int
semaphore_attempt(void *arg)
{
    mg_sync_raw *r = arg;
    if (r->value > 0) {
        r->value--;
        return 1;
    }
    return 0;
}

PyDoc_STRVAR(semaphore_acquire_doc,
"acquire($self, blocking=True, timeout=None)\n"
"--\n"
"\n"
"Decrement the counter, waiting while it is zero.\n"
"\n"
"Parameters\n"
"----------\n"
"blocking : bool\n"
"    If false, return at once; a timeout may then not be given.\n"
"timeout : float or None\n"
"    Seconds to wait at most (exactly); None waits forever.\n"
"\n"
"Returns\n"
"-------\n"
"bool\n"
"    True if decremented, False if the timeout expired (or, non-blocking,\n"
"    the counter was zero).\n");

static PyObject *
semaphore_acquire(PyObject *self, PyObject *const *args, Py_ssize_t nargs,
                  PyObject *kwnames)
{
    PyObject *argv[2] = {NULL, NULL};
    mg_sync_raw *r = MG_SYNC_RAW(self);
    int64_t deadline = MG_FOREVER;
    int rc;

    if (nargs != 0 || kwnames != NULL) {
        if (mg_parse_args("acquire", args, nargs, kwnames, acquire_kwlist, 2, argv) < 0 ||
            mg_deadline(argv[0], argv[1], MG_NONBLOCKING_REFUSES_TIMEOUT, &deadline) < 0) {
            return NULL;
        }
    }
    rc = mg_wait(&r->mu, &r->cond, &r->nwaiters, deadline, semaphore_attempt, r);
    if (rc < 0) {
        return NULL;
    }
    return PyBool_FromLong(rc);
}

static PyObject *
semaphore_enter(PyObject *self, PyObject *Py_UNUSED(ignored))
{
    mg_sync_raw *r = MG_SYNC_RAW(self);
    int rc = mg_wait(&r->mu, &r->cond, &r->nwaiters, MG_FOREVER, semaphore_attempt, r);
    if (rc < 0) {
        return NULL;
    }
    return PyBool_FromLong(rc);
}

static int
semaphore_release_n(mg_sync_raw *r, long long n)
{
    pthread_mutex_lock(&r->mu);
    if (n > LLONG_MAX - r->value || (r->bound >= 0 && r->value + n > r->bound)) {
        pthread_mutex_unlock(&r->mu);
        PyErr_SetString(PyExc_ValueError, "Semaphore released too many times");
        return -1;
    }
    r->value += n;
    if (r->nwaiters > 0) {
        if (n == 1) {
            pthread_cond_signal(&r->cond);
        }
        else {
            pthread_cond_broadcast(&r->cond);
        }
    }
    pthread_mutex_unlock(&r->mu);
    return 0;
}

PyDoc_STRVAR(semaphore_release_doc,
"release($self, n=1)\n"
"--\n"
"\n"
"Increment the counter by n, waking up to n waiters.\n"
"\n"
"Raises\n"
"------\n"
"ValueError\n"
"    If n < 1, or a BoundedSemaphore would exceed its initial value.\n");

static PyObject *
semaphore_release(PyObject *self, PyObject *const *args, Py_ssize_t nargs,
                  PyObject *kwnames)
{
    static const char *const kwlist[] = {"n", NULL};
    PyObject *argv[1] = {NULL};
    long long n = 1;

    if (nargs != 0 || kwnames != NULL) {
        if (mg_parse_args("release", args, nargs, kwnames, kwlist, 1, argv) < 0) {
            return NULL;
        }
        if (argv[0] != NULL) {
            n = PyLong_AsLongLong(argv[0]);
            if (n == -1 && PyErr_Occurred()) {
                return NULL;
            }
        }
        if (n < 1) {
            PyErr_SetString(PyExc_ValueError, "n must be one or more");
            return NULL;
        }
    }
    if (semaphore_release_n(MG_SYNC_RAW(self), n) < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
}

static PyObject *
semaphore_exit(PyObject *self, PyObject *const *Py_UNUSED(args),
               Py_ssize_t Py_UNUSED(nargs))
{
    if (semaphore_release_n(MG_SYNC_RAW(self), 1) < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
}

static PyObject *
semaphore_get_value(PyObject *self, void *Py_UNUSED(closure))
{
    return PyLong_FromLongLong(mg_sync_value(MG_SYNC_RAW(self)));
}

static PyObject *
semaphore_repr(PyObject *self)
{
    mg_sync_raw *r = MG_SYNC_RAW(self);
    long long v = mg_sync_value(r), bound = r->bound;     /* bound never changes */
    if (bound >= 0) {
        return PyUnicode_FromFormat("<multigil.BoundedSemaphore id=%lld value=%lld/%lld>",
                                    (long long)r->head.id, v, bound);
    }
    return PyUnicode_FromFormat("<multigil.Semaphore id=%lld value=%lld>",
                                (long long)r->head.id, v);
}

static PyMethodDef semaphore_methods[] = {
    {"acquire", (PyCFunction)(void (*)(void))semaphore_acquire,
     METH_FASTCALL | METH_KEYWORDS, semaphore_acquire_doc},
    {"release", (PyCFunction)(void (*)(void))semaphore_release,
     METH_FASTCALL | METH_KEYWORDS, semaphore_release_doc},
    {"__enter__", semaphore_enter, METH_NOARGS, "Acquire (blocking)."},
    {"__exit__", (PyCFunction)(void (*)(void))semaphore_exit, METH_FASTCALL,
     "Release once."},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef semaphore_getset[] = {
    {"id", mg_wrapper_get_id, NULL, "Process-unique id of the shared object.", NULL},
    {"_value", semaphore_get_value, NULL,
     "Current counter (a snapshot: other interpreters may change it at once).", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyType_Slot semaphore_slots[] = {
    {Py_tp_doc, (void *)semaphore_doc},
    {Py_tp_new, semaphore_new},
    {Py_tp_dealloc, mg_wrapper_dealloc},
    {Py_tp_repr, semaphore_repr},
    {Py_tp_hash, mg_wrapper_hash},
    {Py_tp_richcompare, mg_wrapper_richcompare},
    {Py_tp_methods, semaphore_methods},
    {Py_tp_getset, semaphore_getset},
    {0, NULL},
};

static PyType_Spec semaphore_spec = {
    .name = "multigil._core.Semaphore",
    .basicsize = sizeof(mg_wrapper),
    /* BASETYPE only so that BoundedSemaphore can derive from it. */
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_IMMUTABLETYPE | Py_TPFLAGS_BASETYPE,
    .slots = semaphore_slots,
};

static PyType_Slot bsemaphore_slots[] = {
    {Py_tp_doc, (void *)bsemaphore_doc},
    {Py_tp_new, bsemaphore_new},
    {0, NULL},
};

static PyType_Spec bsemaphore_spec = {
    .name = "multigil._core.BoundedSemaphore",
    .basicsize = sizeof(mg_wrapper),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_IMMUTABLETYPE,
    .slots = bsemaphore_slots,
};

int
mg_semaphore_init(PyObject *module, mg_state *st)
{
    st->SemaphoreType = mg_add_type(module, &semaphore_spec, NULL);
    if (st->SemaphoreType == NULL) {
        return -1;
    }
    st->BoundedSemaphoreType = mg_add_type(module, &bsemaphore_spec, st->SemaphoreType);
    return st->BoundedSemaphoreType == NULL ? -1 : 0;
}
