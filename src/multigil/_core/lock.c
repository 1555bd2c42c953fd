/* lock.c — the raw synchronisation object, Lock and RLock.
 *
 * Lock, RLock, Event, Semaphore and BoundedSemaphore are each one raw struct
 * (mg_sync_raw: mg_shared head + pthread mutex + CLOCK_MONOTONIC condvar)
 * that every interpreter sees through its own small wrapper object.  The
 * encoder ships wrappers between interpreters as mg_shared handles, so
 * acquiring "the same" Lock in two interpreters really contends on one mutex.
 *
 * Nothing here holds a PyObject* of another interpreter, and the raw structs
 * hold no PyObject* at all: they are freed by kind->destroy from whichever
 * thread drops the last reference, with or without a GIL.
 */
#include "sync.h"
#include "wait.h"

/*************************************************************************
 * The raw object                                                        *
 *************************************************************************/

void
mg_sync_raw_destroy(mg_shared *s)
{
    mg_sync_raw *r = (mg_sync_raw *)s;
    pthread_cond_destroy(&r->cond);
    pthread_mutex_destroy(&r->mu);
    PyMem_RawFree(r);
}

mg_sync_raw *
mg_sync_raw_new(const mg_shared_kind *kind, long long value, long long bound)
{
    mg_sync_raw *r = PyMem_RawCalloc(1, sizeof(*r));
    if (r == NULL) {
        PyErr_NoMemory();
        return NULL;
    }
    mg_shared_init(&r->head, kind);
    pthread_mutex_init(&r->mu, NULL);
    mg_cond_init(&r->cond);
    r->value = value;
    r->bound = bound;
    return r;
}

long long
mg_sync_value(mg_sync_raw *r)
{
    long long v;
    pthread_mutex_lock(&r->mu);
    v = r->value;
    pthread_mutex_unlock(&r->mu);
    return v;
}

PyObject *
mg_sync_new_without_arguments(PyTypeObject *type, PyObject *args, PyObject *kwds,
                              const mg_shared_kind *kind, const char *name)
{
    if (PyTuple_GET_SIZE(args) || (kwds && PyDict_GET_SIZE(kwds))) {
        PyErr_Format(PyExc_TypeError, "%s() takes no arguments", name);
        return NULL;
    }
    mg_sync_raw *r = mg_sync_raw_new(kind, 0, -1);
    if (r == NULL) {
        return NULL;
    }
    PyObject *self = mg_wrapper_new(type, &r->head);
    mg_shared_decref(&r->head);
    return self;
}

static PyObject *lock_wrap(mg_state *st, mg_shared *raw);
static PyObject *rlock_wrap(mg_state *st, mg_shared *raw);

/* Process-global constant tables (read-only, no lock needed). */
static const mg_shared_kind lock_kind = {"Lock", mg_sync_raw_destroy, lock_wrap};
const mg_shared_kind mg_rlock_kind = {"RLock", mg_sync_raw_destroy, rlock_wrap};

static const char *const acquire_kwlist[] = {"blocking", "timeout", NULL};

/*************************************************************************
 * Lock and RLock: the raw operations                                    *
 *************************************************************************/

/* The owner of an RLock is the OS thread, whatever interpreter it is in: a
 * thread that holds it and calls into another interpreter must not deadlock
 * on itself there. */
typedef struct {
    mg_sync_raw *r;
    unsigned long thread;
} rlock_attempt_arg;

static int
lock_attempt(void *arg)
{
    mg_sync_raw *r = arg;
    if (r->value == 0) {
        r->value = 1;
        return 1;
    }
    return 0;
}

static int
rlock_attempt(void *arg)
{
    rlock_attempt_arg *a = arg;
    mg_sync_raw *r = a->r;
    if (r->value == 0) {
        r->value = 1;
        r->owner_thread = a->thread;
        return 1;
    }
    if (r->owner_thread == a->thread) {
        if (r->value == LLONG_MAX) {
            return 2;           /* overflow, reported by the caller */
        }
        r->value++;
        return 1;
    }
    return 0;
}

int
mg_lock_acquire(mg_sync_raw *r, int64_t deadline)
{
    if (r->head.kind == &mg_rlock_kind) {
        rlock_attempt_arg a = {r, PyThread_get_thread_ident()};
        int rc = mg_wait(&r->mu, &r->cond, &r->nwaiters, deadline, rlock_attempt, &a);
        if (rc == 2) {
            PyErr_SetString(PyExc_OverflowError, "internal lock count overflowed");
            return -1;
        }
        return rc;
    }
    return mg_wait(&r->mu, &r->cond, &r->nwaiters, deadline, lock_attempt, r);
}

/* One level, for an RLock. */
int
mg_lock_release(mg_sync_raw *r)
{
    if (r->head.kind == &mg_rlock_kind) {
        unsigned long thread = PyThread_get_thread_ident();
        pthread_mutex_lock(&r->mu);
        if (r->value == 0 || r->owner_thread != thread) {
            pthread_mutex_unlock(&r->mu);
            PyErr_SetString(PyExc_RuntimeError, "cannot release un-acquired lock");
            return -1;
        }
        if (--r->value == 0) {
            r->owner_thread = 0;
            if (r->nwaiters > 0) {
                pthread_cond_signal(&r->cond);
            }
        }
        pthread_mutex_unlock(&r->mu);
        return 0;
    }
    pthread_mutex_lock(&r->mu);
    if (r->value == 0) {
        pthread_mutex_unlock(&r->mu);
        PyErr_SetString(PyExc_RuntimeError, "release unlocked lock");
        return -1;
    }
    r->value = 0;
    if (r->nwaiters > 0) {
        pthread_cond_signal(&r->cond);
    }
    pthread_mutex_unlock(&r->mu);
    return 0;
}

/* "Held by someone" is the best available answer for a plain Lock, which
 * has no owner (threading.Condition does the same). */
int
mg_lock_is_owned(mg_sync_raw *r)
{
    int owned;
    int is_rlock = r->head.kind == &mg_rlock_kind;
    unsigned long thread = is_rlock ? PyThread_get_thread_ident() : 0;
    pthread_mutex_lock(&r->mu);
    owned = r->value > 0 && (!is_rlock || r->owner_thread == thread);
    pthread_mutex_unlock(&r->mu);
    return owned;
}

/*************************************************************************
 * Lock                                                                  *
 *************************************************************************/

PyDoc_STRVAR(lock_doc,
"Lock()\n"
"--\n"
"\n"
"A mutual-exclusion lock shared by every interpreter it is sent to.\n"
"\n"
"It behaves like :class:`threading.Lock`, but it can be passed to other\n"
"interpreters (as an argument, a result or a queue item) and every copy is\n"
"the *same* lock: acquiring it in one interpreter blocks acquirers in all.\n"
"Waiting releases the caller's GIL, and in the main thread a wait can be\n"
"interrupted with Ctrl-C.\n"
"\n"
"Any thread may release it, as with :class:`threading.Lock`.\n"
"\n"
"Attributes\n"
"----------\n"
"id : int\n"
"    Process-unique id; equal ids mean the same lock.\n"
"\n"
"Examples\n"
"--------\n"
">>> lock = multigil.Lock()\n"
">>> with lock:\n"
"...     pass\n");

static PyObject *
lock_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    return mg_sync_new_without_arguments(type, args, kwds, &lock_kind, "Lock");
}

static PyObject *
lock_wrap(mg_state *st, mg_shared *raw)
{
    return mg_wrapper_new(st->LockType, raw);
}

PyDoc_STRVAR(lock_acquire_doc,
"acquire($self, blocking=True, timeout=-1)\n"
"--\n"
"\n"
"Acquire the lock, waiting (GIL released) while another holder has it.\n"
"\n"
"Parameters\n"
"----------\n"
"blocking : bool\n"
"    If false, return at once; a timeout may then not be given.\n"
"timeout : float\n"
"    Seconds to wait at most; -1 (or None) waits forever.\n"
"\n"
"Returns\n"
"-------\n"
"bool\n"
"    True if the lock was acquired, False if the timeout expired.\n");

PyObject *
mg_lock_py_acquire(PyObject *self, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    PyObject *argv[2] = {NULL, NULL};
    int64_t deadline = MG_FOREVER;
    int rc;

    if (nargs != 0 || kwnames != NULL) {
        if (mg_parse_args("acquire", args, nargs, kwnames, acquire_kwlist, 2, argv) < 0 ||
            mg_deadline(argv[0], argv[1],
                        MG_TIMEOUT_MINUS_ONE_IS_FOREVER | MG_NONBLOCKING_REFUSES_TIMEOUT,
                        &deadline) < 0) {
            return NULL;
        }
    }
    rc = mg_lock_acquire(MG_SYNC_RAW(self), deadline);
    if (rc < 0) {
        return NULL;
    }
    return PyBool_FromLong(rc);
}

PyObject *
mg_lock_py_enter(PyObject *self, PyObject *Py_UNUSED(ignored))
{
    int rc = mg_lock_acquire(MG_SYNC_RAW(self), MG_FOREVER);
    if (rc < 0) {
        return NULL;
    }
    return PyBool_FromLong(rc);
}

PyDoc_STRVAR(lock_release_doc,
"release($self, /)\n"
"--\n"
"\n"
"Release the lock.\n"
"\n"
"Raises\n"
"------\n"
"RuntimeError\n"
"    If the lock is not held.\n");

PyObject *
mg_lock_py_release(PyObject *self, PyObject *Py_UNUSED(ignored))
{
    if (mg_lock_release(MG_SYNC_RAW(self)) < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
}

PyObject *
mg_lock_py_exit(PyObject *self, PyObject *const *Py_UNUSED(args), Py_ssize_t Py_UNUSED(nargs))
{
    return mg_lock_py_release(self, NULL);
}

PyDoc_STRVAR(lock_locked_doc,
"locked($self, /)\n"
"--\n"
"\n"
"Return True if the lock is held (by anyone, in any interpreter).\n");

static PyObject *
lock_locked(PyObject *self, PyObject *Py_UNUSED(ignored))
{
    return PyBool_FromLong(mg_sync_value(MG_SYNC_RAW(self)) > 0);
}

static PyObject *
lock_repr(PyObject *self)
{
    mg_sync_raw *r = MG_SYNC_RAW(self);
    return PyUnicode_FromFormat("<multigil.Lock id=%lld %s>", (long long)r->head.id,
                                mg_sync_value(r) ? "locked" : "unlocked");
}

static PyMethodDef lock_methods[] = {
    {"acquire", (PyCFunction)(void (*)(void))mg_lock_py_acquire, METH_FASTCALL | METH_KEYWORDS,
     lock_acquire_doc},
    {"release", mg_lock_py_release, METH_NOARGS, lock_release_doc},
    {"locked", lock_locked, METH_NOARGS, lock_locked_doc},
    {"__enter__", mg_lock_py_enter, METH_NOARGS, "Acquire the lock (blocking)."},
    {"__exit__", (PyCFunction)(void (*)(void))mg_lock_py_exit, METH_FASTCALL,
     "Release the lock."},
    {NULL, NULL, 0, NULL},
};

static PyType_Slot lock_slots[] = {
    {Py_tp_doc, (void *)lock_doc},
    {Py_tp_new, lock_new},
    {Py_tp_dealloc, mg_wrapper_dealloc},
    {Py_tp_repr, lock_repr},
    {Py_tp_hash, mg_wrapper_hash},
    {Py_tp_richcompare, mg_wrapper_richcompare},
    {Py_tp_methods, lock_methods},
    {Py_tp_getset, mg_wrapper_getset},
    {0, NULL},
};

static PyType_Spec lock_spec = {
    .name = "multigil._core.Lock",
    .basicsize = sizeof(mg_wrapper),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_IMMUTABLETYPE,
    .slots = lock_slots,
};

/*************************************************************************
 * RLock                                                                 *
 *************************************************************************/

PyDoc_STRVAR(rlock_doc,
"RLock()\n"
"--\n"
"\n"
"A reentrant lock shared by every interpreter it is sent to.\n"
"\n"
"Like :class:`threading.RLock`: the owner may acquire it again, and must\n"
"release it as many times.  The owner is the OS thread, in whichever\n"
"interpreter it runs: a thread that holds it and calls into another\n"
"interpreter still owns it there, and cannot deadlock on itself.\n"
"\n"
"Attributes\n"
"----------\n"
"id : int\n"
"    Process-unique id; equal ids mean the same lock.\n");

static PyObject *
rlock_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    return mg_sync_new_without_arguments(type, args, kwds, &mg_rlock_kind, "RLock");
}

static PyObject *
rlock_wrap(mg_state *st, mg_shared *raw)
{
    return mg_wrapper_new(st->RLockType, raw);
}

static PyObject *
rlock_is_owned(PyObject *self, PyObject *Py_UNUSED(ignored))
{
    return PyBool_FromLong(mg_lock_is_owned(MG_SYNC_RAW(self)));
}

static PyObject *
rlock_repr(PyObject *self)
{
    mg_sync_raw *r = MG_SYNC_RAW(self);
    long long v;
    unsigned long thread;
    pthread_mutex_lock(&r->mu);
    v = r->value;
    thread = r->owner_thread;
    pthread_mutex_unlock(&r->mu);
    if (v == 0) {
        return PyUnicode_FromFormat("<multigil.RLock id=%lld unlocked>",
                                    (long long)r->head.id);
    }
    return PyUnicode_FromFormat(
        "<multigil.RLock id=%lld locked owner=(thread %lu) count=%lld>",
        (long long)r->head.id, thread, v);
}

static PyMethodDef rlock_methods[] = {
    {"acquire", (PyCFunction)(void (*)(void))mg_lock_py_acquire, METH_FASTCALL | METH_KEYWORDS,
     lock_acquire_doc},
    {"release", mg_lock_py_release, METH_NOARGS,
     "release($self, /)\n--\n\nRelease one level; RuntimeError if the caller is not the owner.\n"},
    {"locked", lock_locked, METH_NOARGS, lock_locked_doc},
    {"_is_owned", rlock_is_owned, METH_NOARGS,
     "Return True if the calling thread holds the lock."},
    {"__enter__", mg_lock_py_enter, METH_NOARGS, "Acquire the lock (blocking)."},
    {"__exit__", (PyCFunction)(void (*)(void))mg_lock_py_exit, METH_FASTCALL,
     "Release the lock."},
    {NULL, NULL, 0, NULL},
};

static PyType_Slot rlock_slots[] = {
    {Py_tp_doc, (void *)rlock_doc},
    {Py_tp_new, rlock_new},
    {Py_tp_dealloc, mg_wrapper_dealloc},
    {Py_tp_repr, rlock_repr},
    {Py_tp_hash, mg_wrapper_hash},
    {Py_tp_richcompare, mg_wrapper_richcompare},
    {Py_tp_methods, rlock_methods},
    {Py_tp_getset, mg_wrapper_getset},
    {0, NULL},
};

static PyType_Spec rlock_spec = {
    .name = "multigil._core.RLock",
    .basicsize = sizeof(mg_wrapper),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_IMMUTABLETYPE,
    .slots = rlock_slots,
};

/*************************************************************************
 * Module registration                                                   *
 *************************************************************************/

int
mg_lock_init(PyObject *module, mg_state *st)
{
    st->LockType = mg_add_type(module, &lock_spec, NULL);
    st->RLockType = st->LockType ? mg_add_type(module, &rlock_spec, NULL) : NULL;
    return st->RLockType == NULL ? -1 : 0;
}
