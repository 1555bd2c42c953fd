/* sync.c — cross-interpreter synchronisation primitives.
 *
 * Lock, RLock, Event, Semaphore, BoundedSemaphore and Condition are each one
 * raw struct (mg_shared head + pthread mutex + CLOCK_MONOTONIC condvar) that
 * every interpreter sees through its own small wrapper object.  The encoder
 * ships wrappers between interpreters as mg_shared handles, so acquiring "the
 * same" Lock in two interpreters really contends on one mutex.
 *
 * Nothing here holds a PyObject* of another interpreter, and the raw structs
 * hold no PyObject* at all: they are freed by kind->destroy from whichever
 * thread drops the last reference, with or without a GIL.
 */
#include "mg.h"
#include "wait.h"


/*************************************************************************
 * Raw objects                                                           *
 *************************************************************************/
/* One raw layout serves Lock, RLock, Event, Semaphore and BoundedSemaphore;
 * the kind tells them apart.  All fields after `mu` are guarded by `mu`.
 */
typedef struct {
    mg_shared head;
    pthread_mutex_t mu;
    pthread_cond_t cond;
    int nwaiters;               /* threads asleep on cond */
    /* Lock: 0/1.  RLock: recursion count.  Event: flag.  Semaphore: counter. */
    long long value;
    long long bound;            /* BoundedSemaphore: initial value; else -1 */
    /* RLock owner, meaningful while value > 0. */
    int64_t owner_interp;
    unsigned long owner_thread;
    /* Event: bumped by every set() that changes the flag, so that a waiter
     * woken by set() returns True even if clear() ran before it woke up. */
    unsigned long long generation;
} sync_raw;

/* Condition: waiters queue up as nodes on their own stacks (FIFO, so notify(n)
 * wakes the n longest waiters, as threading.Condition does). */
typedef struct cond_waiter {
    struct cond_waiter *next;
    int notified;
} cond_waiter;

typedef struct {
    mg_shared head;
    pthread_mutex_t mu;
    pthread_cond_t cond;
    int nwaiters;
    cond_waiter *first, *last;  /* guarded by mu */
    sync_raw *lock;             /* one reference owned; a Lock or an RLock */
} cond_raw;

static void
sync_raw_destroy(mg_shared *s)
{
    sync_raw *r = (sync_raw *)s;
    pthread_cond_destroy(&r->cond);
    pthread_mutex_destroy(&r->mu);
    PyMem_RawFree(r);
}

static void
cond_raw_destroy(mg_shared *s)
{
    cond_raw *c = (cond_raw *)s;
    mg_shared_decref(&c->lock->head);
    pthread_cond_destroy(&c->cond);
    pthread_mutex_destroy(&c->mu);
    PyMem_RawFree(c);
}

static PyObject *lock_wrap(mg_state *st, mg_shared *raw);
static PyObject *rlock_wrap(mg_state *st, mg_shared *raw);
static PyObject *event_wrap(mg_state *st, mg_shared *raw);
static PyObject *semaphore_wrap(mg_state *st, mg_shared *raw);
static PyObject *condition_wrap(mg_state *st, mg_shared *raw);

/* Process-global constant tables (read-only, no lock needed). */
static const mg_shared_kind lock_kind = {"Lock", sync_raw_destroy, lock_wrap};
static const mg_shared_kind rlock_kind = {"RLock", sync_raw_destroy, rlock_wrap};
static const mg_shared_kind event_kind = {"Event", sync_raw_destroy, event_wrap};
static const mg_shared_kind semaphore_kind = {"Semaphore", sync_raw_destroy, semaphore_wrap};
static const mg_shared_kind bsemaphore_kind = {"BoundedSemaphore", sync_raw_destroy,
                                               semaphore_wrap};
static const mg_shared_kind condition_kind = {"Condition", cond_raw_destroy, condition_wrap};

static sync_raw *
sync_raw_new(const mg_shared_kind *kind, long long value, long long bound)
{
    sync_raw *r = PyMem_RawCalloc(1, sizeof(*r));
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

/*************************************************************************
 * Wrappers: common parts                                                *
 *************************************************************************/

typedef struct {
    MG_WRAPPER_HEAD
} sync_obj;

typedef struct {
    MG_WRAPPER_HEAD
    PyObject *lock;             /* this interpreter's wrapper of raw->lock */
} cond_obj;

#define SYNC_RAW(self) ((sync_raw *)((mg_wrapper *)(self))->raw)
#define COND_RAW(self) ((cond_raw *)((mg_wrapper *)(self))->raw)

static const char *const acquire_kwlist[] = {"blocking", "timeout", NULL};

/*************************************************************************
 * Lock and RLock: the raw operations                                    *
 *************************************************************************/

typedef struct {
    sync_raw *r;
    int64_t interp;
    unsigned long thread;
} rlock_attempt_arg;

static int
lock_attempt(void *arg)
{
    sync_raw *r = arg;
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
    sync_raw *r = a->r;
    if (r->value == 0) {
        r->value = 1;
        r->owner_interp = a->interp;
        r->owner_thread = a->thread;
        return 1;
    }
    if (r->owner_interp == a->interp && r->owner_thread == a->thread) {
        if (r->value == LLONG_MAX) {
            return 2;           /* overflow, reported by the caller */
        }
        r->value++;
        return 1;
    }
    return 0;
}

/* The owner of an RLock is the OS thread, whatever interpreter it is in: a
 * thread that holds it and calls into another interpreter must not deadlock
 * on itself there.  (`interp` stays in the struct for the repr; it is 0.) */
static void
current_owner(int64_t *interp, unsigned long *thread)
{
    *interp = 0;
    *thread = PyThread_get_thread_ident();
}

/* Acquire a Lock or RLock (by kind).  1 acquired, 0 timed out, -1 error. */
static int
raw_lock_acquire(sync_raw *r, int64_t deadline)
{
    if (r->head.kind == &rlock_kind) {
        rlock_attempt_arg a;
        int rc;
        a.r = r;
        current_owner(&a.interp, &a.thread);
        rc = mg_wait(&r->mu, &r->cond, &r->nwaiters, deadline, rlock_attempt, &a);
        if (rc == 2) {
            PyErr_SetString(PyExc_OverflowError, "internal lock count overflowed");
            return -1;
        }
        return rc;
    }
    return mg_wait(&r->mu, &r->cond, &r->nwaiters, deadline, lock_attempt, r);
}

/* Release one level.  0, or -1 with RuntimeError. */
static int
raw_lock_release(sync_raw *r)
{
    if (r->head.kind == &rlock_kind) {
        int64_t interp;
        unsigned long thread;
        current_owner(&interp, &thread);
        pthread_mutex_lock(&r->mu);
        if (r->value == 0 || r->owner_interp != interp || r->owner_thread != thread) {
            pthread_mutex_unlock(&r->mu);
            PyErr_SetString(PyExc_RuntimeError, "cannot release un-acquired lock");
            return -1;
        }
        if (--r->value == 0) {
            r->owner_interp = 0;
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

/* Does the caller hold it?  For a plain Lock, which has no owner, "held by
 * someone" is the best available answer (threading.Condition does the same). */
static int
raw_lock_is_owned(sync_raw *r)
{
    int owned;
    int64_t interp = 0;
    unsigned long thread = 0;
    int is_rlock = r->head.kind == &rlock_kind;
    if (is_rlock) {
        current_owner(&interp, &thread);
    }
    pthread_mutex_lock(&r->mu);
    owned = r->value > 0 &&
            (!is_rlock || (r->owner_interp == interp && r->owner_thread == thread));
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

/* The constructor of a type whose raw object takes no arguments. */
static PyObject *
new_without_arguments(PyTypeObject *type, PyObject *args, PyObject *kwds,
                      const mg_shared_kind *kind, const char *name)
{
    if (PyTuple_GET_SIZE(args) || (kwds && PyDict_GET_SIZE(kwds))) {
        PyErr_Format(PyExc_TypeError, "%s() takes no arguments", name);
        return NULL;
    }
    sync_raw *r = sync_raw_new(kind, 0, -1);
    if (r == NULL) {
        return NULL;
    }
    PyObject *self = mg_wrapper_new(type, &r->head);
    mg_shared_decref(&r->head);
    return self;
}

static PyObject *
lock_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    return new_without_arguments(type, args, kwds, &lock_kind, "Lock");
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

static PyObject *
sync_acquire(PyObject *self, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    PyObject *argv[2] = {NULL, NULL};
    int64_t deadline = MG_FOREVER;
    int rc;

    if (nargs != 0 || kwnames != NULL) {
        if (mg_parse_args("acquire", args, nargs, kwnames, acquire_kwlist, 2, argv) < 0 ||
            mg_deadline(argv[0], argv[1], MG_TIMEOUT_MINUS_ONE_IS_FOREVER | MG_NONBLOCKING_REFUSES_TIMEOUT,
                        &deadline) < 0) {
            return NULL;
        }
    }
    rc = raw_lock_acquire(SYNC_RAW(self), deadline);
    if (rc < 0) {
        return NULL;
    }
    return PyBool_FromLong(rc);
}

static PyObject *
sync_enter(PyObject *self, PyObject *Py_UNUSED(ignored))
{
    int rc = raw_lock_acquire(SYNC_RAW(self), MG_FOREVER);
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

static PyObject *
sync_release(PyObject *self, PyObject *Py_UNUSED(ignored))
{
    if (raw_lock_release(SYNC_RAW(self)) < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
}

static PyObject *
sync_exit(PyObject *self, PyObject *const *Py_UNUSED(args), Py_ssize_t Py_UNUSED(nargs))
{
    if (raw_lock_release(SYNC_RAW(self)) < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
}

PyDoc_STRVAR(lock_locked_doc,
"locked($self, /)\n"
"--\n"
"\n"
"Return True if the lock is held (by anyone, in any interpreter).\n");

static PyObject *
sync_locked(PyObject *self, PyObject *Py_UNUSED(ignored))
{
    sync_raw *r = SYNC_RAW(self);
    long long v;
    pthread_mutex_lock(&r->mu);
    v = r->value;
    pthread_mutex_unlock(&r->mu);
    return PyBool_FromLong(v > 0);
}

static PyObject *
lock_repr(PyObject *self)
{
    sync_raw *r = SYNC_RAW(self);
    long long v;
    pthread_mutex_lock(&r->mu);
    v = r->value;
    pthread_mutex_unlock(&r->mu);
    return PyUnicode_FromFormat("<multigil.Lock id=%lld %s>", (long long)r->head.id,
                                v ? "locked" : "unlocked");
}

static PyMethodDef lock_methods[] = {
    {"acquire", (PyCFunction)(void (*)(void))sync_acquire, METH_FASTCALL | METH_KEYWORDS,
     lock_acquire_doc},
    {"release", sync_release, METH_NOARGS, lock_release_doc},
    {"locked", sync_locked, METH_NOARGS, lock_locked_doc},
    {"__enter__", sync_enter, METH_NOARGS, "Acquire the lock (blocking)."},
    {"__exit__", (PyCFunction)(void (*)(void))sync_exit, METH_FASTCALL,
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
    .basicsize = sizeof(sync_obj),
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
    return new_without_arguments(type, args, kwds, &rlock_kind, "RLock");
}

static PyObject *
rlock_wrap(mg_state *st, mg_shared *raw)
{
    return mg_wrapper_new(st->RLockType, raw);
}

static PyObject *
rlock_is_owned(PyObject *self, PyObject *Py_UNUSED(ignored))
{
    return PyBool_FromLong(raw_lock_is_owned(SYNC_RAW(self)));
}

static PyObject *
rlock_repr(PyObject *self)
{
    sync_raw *r = SYNC_RAW(self);
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
    {"acquire", (PyCFunction)(void (*)(void))sync_acquire, METH_FASTCALL | METH_KEYWORDS,
     lock_acquire_doc},
    {"release", sync_release, METH_NOARGS,
     "release($self, /)\n--\n\nRelease one level; RuntimeError if the caller is not the owner.\n"},
    {"locked", sync_locked, METH_NOARGS, lock_locked_doc},
    {"_is_owned", rlock_is_owned, METH_NOARGS,
     "Return True if the calling (interpreter, thread) holds the lock."},
    {"__enter__", sync_enter, METH_NOARGS, "Acquire the lock (blocking)."},
    {"__exit__", (PyCFunction)(void (*)(void))sync_exit, METH_FASTCALL,
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
    .basicsize = sizeof(sync_obj),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_IMMUTABLETYPE,
    .slots = rlock_slots,
};

/*************************************************************************
 * Event                                                                 *
 *************************************************************************/

PyDoc_STRVAR(event_doc,
"Event()\n"
"--\n"
"\n"
"A flag shared by every interpreter it is sent to, like :class:`threading.Event`.\n"
"\n"
"``set()`` wakes every thread waiting in any interpreter.  Waiting releases\n"
"the GIL; in the main thread Ctrl-C interrupts it.\n"
"\n"
"Attributes\n"
"----------\n"
"id : int\n"
"    Process-unique id; equal ids mean the same event.\n");

static PyObject *
event_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    return new_without_arguments(type, args, kwds, &event_kind, "Event");
}

static PyObject *
event_wrap(mg_state *st, mg_shared *raw)
{
    return mg_wrapper_new(st->EventType, raw);
}

static PyObject *
event_set(PyObject *self, PyObject *Py_UNUSED(ignored))
{
    sync_raw *r = SYNC_RAW(self);
    pthread_mutex_lock(&r->mu);
    if (!r->value) {
        r->value = 1;
        r->generation++;
        if (r->nwaiters > 0) {
            pthread_cond_broadcast(&r->cond);
        }
    }
    pthread_mutex_unlock(&r->mu);
    Py_RETURN_NONE;
}

static PyObject *
event_clear(PyObject *self, PyObject *Py_UNUSED(ignored))
{
    sync_raw *r = SYNC_RAW(self);
    pthread_mutex_lock(&r->mu);
    r->value = 0;
    pthread_mutex_unlock(&r->mu);
    Py_RETURN_NONE;
}

static PyObject *
event_is_set(PyObject *self, PyObject *Py_UNUSED(ignored))
{
    sync_raw *r = SYNC_RAW(self);
    long long v;
    pthread_mutex_lock(&r->mu);
    v = r->value;
    pthread_mutex_unlock(&r->mu);
    return PyBool_FromLong(v != 0);
}

typedef struct {
    sync_raw *r;
    unsigned long long generation;
} event_attempt_arg;

static int
event_attempt(void *arg)
{
    event_attempt_arg *a = arg;
    return a->r->value != 0 || a->r->generation != a->generation;
}

static int
event_attempt_first(void *arg)
{
    /* First look, under the mutex: remember the generation to wait past. */
    event_attempt_arg *a = arg;
    a->generation = a->r->generation;
    return a->r->value != 0;
}

PyDoc_STRVAR(event_wait_doc,
"wait($self, timeout=None)\n"
"--\n"
"\n"
"Block until the flag is set, or the timeout expires.\n"
"\n"
"Parameters\n"
"----------\n"
"timeout : float or None\n"
"    Seconds to wait at most (honoured exactly, fractions included); None\n"
"    waits forever.  Negative values raise ValueError.\n"
"\n"
"Returns\n"
"-------\n"
"bool\n"
"    True if the flag was set (or set while waiting), False on timeout.\n");

static PyObject *
event_wait(PyObject *self, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    static const char *const kwlist[] = {"timeout", NULL};
    PyObject *argv[1] = {NULL};
    event_attempt_arg a;
    int64_t deadline;
    int rc;

    if (mg_parse_args("wait", args, nargs, kwnames, kwlist, 1, argv) < 0 ||
        mg_deadline(NULL, argv[0], 0, &deadline) < 0) {
        return NULL;
    }
    a.r = SYNC_RAW(self);
    a.generation = 0;
    pthread_mutex_lock(&a.r->mu);
    rc = event_attempt_first(&a);
    pthread_mutex_unlock(&a.r->mu);
    if (rc == 0) {
        rc = mg_wait(&a.r->mu, &a.r->cond, &a.r->nwaiters, deadline, event_attempt, &a);
        if (rc < 0) {
            return NULL;
        }
    }
    return PyBool_FromLong(rc);
}

static PyObject *
event_repr(PyObject *self)
{
    sync_raw *r = SYNC_RAW(self);
    long long v;
    pthread_mutex_lock(&r->mu);
    v = r->value;
    pthread_mutex_unlock(&r->mu);
    return PyUnicode_FromFormat("<multigil.Event id=%lld %s>", (long long)r->head.id,
                                v ? "set" : "unset");
}

static PyMethodDef event_methods[] = {
    {"set", event_set, METH_NOARGS,
     "set($self, /)\n--\n\nSet the flag and wake every waiter, in every interpreter.\n"},
    {"clear", event_clear, METH_NOARGS, "clear($self, /)\n--\n\nReset the flag to false.\n"},
    {"is_set", event_is_set, METH_NOARGS, "is_set($self, /)\n--\n\nReturn True if the flag is set.\n"},
    {"wait", (PyCFunction)(void (*)(void))event_wait, METH_FASTCALL | METH_KEYWORDS,
     event_wait_doc},
    {NULL, NULL, 0, NULL},
};

static PyType_Slot event_slots[] = {
    {Py_tp_doc, (void *)event_doc},
    {Py_tp_new, event_new},
    {Py_tp_dealloc, mg_wrapper_dealloc},
    {Py_tp_repr, event_repr},
    {Py_tp_hash, mg_wrapper_hash},
    {Py_tp_richcompare, mg_wrapper_richcompare},
    {Py_tp_methods, event_methods},
    {Py_tp_getset, mg_wrapper_getset},
    {0, NULL},
};

static PyType_Spec event_spec = {
    .name = "multigil._core.Event",
    .basicsize = sizeof(sync_obj),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_IMMUTABLETYPE,
    .slots = event_slots,
};

/*************************************************************************
 * Semaphore and BoundedSemaphore                                        *
 *************************************************************************/
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
    sync_raw *r;
    PyObject *self;

    if (!PyArg_ParseTupleAndKeywords(args, kwds, "|L", kwlist, &value)) {
        return NULL;
    }
    if (value < 0) {
        PyErr_SetString(PyExc_ValueError, "semaphore initial value must be >= 0");
        return NULL;
    }
    r = sync_raw_new(bounded ? &bsemaphore_kind : &semaphore_kind, value,
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
    PyTypeObject *type = st->SemaphoreType;
    if (raw->kind == &bsemaphore_kind && type != NULL) {
        /* mg_state has no slot for the BoundedSemaphore type: find it in the
         * module.  If someone replaced that attribute, a plain Semaphore
         * wrapper still behaves right: the bound lives in the raw object. */
        PyObject *mod = PyType_GetModule(type);
        PyObject *bt = mod ? PyObject_GetAttrString(mod, "BoundedSemaphore") : NULL;
        if (bt != NULL && PyType_Check(bt) &&
            PyType_IsSubtype((PyTypeObject *)bt, type) &&
            ((PyTypeObject *)bt)->tp_basicsize == type->tp_basicsize) {
            PyObject *res = mg_wrapper_new((PyTypeObject *)bt, raw);
            Py_DECREF(bt);
            return res;
        }
        Py_XDECREF(bt);
        PyErr_Clear();
    }
    return mg_wrapper_new(type, raw);
}

static int
semaphore_attempt(void *arg)
{
    sync_raw *r = arg;
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
    sync_raw *r = SYNC_RAW(self);
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
    sync_raw *r = SYNC_RAW(self);
    int rc = mg_wait(&r->mu, &r->cond, &r->nwaiters, MG_FOREVER, semaphore_attempt, r);
    if (rc < 0) {
        return NULL;
    }
    return PyBool_FromLong(rc);
}

static int
semaphore_release_n(sync_raw *r, long long n)
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
    if (semaphore_release_n(SYNC_RAW(self), n) < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
}

static PyObject *
semaphore_exit(PyObject *self, PyObject *const *Py_UNUSED(args),
               Py_ssize_t Py_UNUSED(nargs))
{
    if (semaphore_release_n(SYNC_RAW(self), 1) < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
}

static PyObject *
semaphore_get_value(PyObject *self, void *Py_UNUSED(closure))
{
    sync_raw *r = SYNC_RAW(self);
    long long v;
    pthread_mutex_lock(&r->mu);
    v = r->value;
    pthread_mutex_unlock(&r->mu);
    return PyLong_FromLongLong(v);
}

static PyObject *
semaphore_repr(PyObject *self)
{
    sync_raw *r = SYNC_RAW(self);
    long long v, bound;
    pthread_mutex_lock(&r->mu);
    v = r->value;
    bound = r->bound;
    pthread_mutex_unlock(&r->mu);
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
    .basicsize = sizeof(sync_obj),
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
    .basicsize = sizeof(sync_obj),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_IMMUTABLETYPE,
    .slots = bsemaphore_slots,
};

/*************************************************************************
 * Condition                                                             *
 *************************************************************************/
/* wait(): queue a node on the condition, release the user lock completely,
 * sleep until the node is notified, re-acquire the lock.  The node is queued
 * *before* the lock is released, so a notify() issued by whoever takes the
 * lock next cannot be missed.
 */

PyDoc_STRVAR(condition_doc,
"Condition(lock=None)\n"
"--\n"
"\n"
"A condition variable shared by every interpreter it is sent to.\n"
"\n"
"Like :class:`threading.Condition`.  The underlying lock must be a\n"
"multigil :class:`Lock` or :class:`RLock` (a new RLock if None), and travels\n"
"with the condition: every interpreter sees the same lock.\n"
"\n"
"Parameters\n"
"----------\n"
"lock : Lock, RLock or None\n"
"\n"
"Attributes\n"
"----------\n"
"id : int\n"
"    Process-unique id; equal ids mean the same condition.\n");

static PyObject *
condition_from_raw(PyTypeObject *type, mg_state *st, cond_raw *c)
{
    cond_obj *self;
    PyObject *lock = c->lock->head.kind->wrap(st, &c->lock->head);
    if (lock == NULL) {
        return NULL;
    }
    self = (cond_obj *)mg_wrapper_new(type, &c->head);
    if (self == NULL) {
        Py_DECREF(lock);
        return NULL;
    }
    self->lock = lock;
    return (PyObject *)self;
}

static PyObject *
condition_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"lock", NULL};
    PyObject *lock = Py_None, *self;
    mg_state *st = PyType_GetModuleState(type);
    sync_raw *lr;
    cond_raw *c;

    if (!PyArg_ParseTupleAndKeywords(args, kwds, "|O:Condition", kwlist, &lock)) {
        return NULL;
    }
    if (st == NULL) {
        return NULL;
    }
    if (lock == Py_None) {
        lr = sync_raw_new(&rlock_kind, 0, -1);
        if (lr == NULL) {
            return NULL;
        }
    }
    else if (Py_IS_TYPE(lock, st->LockType) || Py_IS_TYPE(lock, st->RLockType)) {
        lr = SYNC_RAW(lock);
        mg_shared_incref(&lr->head);
    }
    else {
        PyErr_Format(PyExc_TypeError,
                     "Condition() needs a multigil Lock or RLock (it is shared "
                     "between interpreters), not %.100s",
                     Py_TYPE(lock)->tp_name);
        return NULL;
    }
    c = PyMem_RawCalloc(1, sizeof(*c));
    if (c == NULL) {
        mg_shared_decref(&lr->head);
        return PyErr_NoMemory();
    }
    mg_shared_init(&c->head, &condition_kind);
    pthread_mutex_init(&c->mu, NULL);
    mg_cond_init(&c->cond);
    c->lock = lr;               /* takes the reference */
    self = condition_from_raw(type, st, c);
    mg_shared_decref(&c->head);
    return self;
}

static PyObject *
condition_wrap(mg_state *st, mg_shared *raw)
{
    return condition_from_raw(st->ConditionType, st, (cond_raw *)raw);
}

static void
condition_dealloc(PyObject *self)
{
    Py_CLEAR(((cond_obj *)self)->lock);
    mg_wrapper_dealloc(self);
}

static int
cond_waiter_attempt(void *arg)
{
    return ((cond_waiter *)arg)->notified;
}

/* Wait on `c` until notified or `deadline`.  1 notified, 0 timeout, -1 error.
 * The caller must hold the lock; it holds it again on return, errors included. */
static int
condition_wait_raw(cond_raw *c, int64_t deadline)
{
    sync_raw *lr = c->lock;
    int is_rlock = lr->head.kind == &rlock_kind;
    long long saved_count = 1;
    cond_waiter node = {NULL, 0};
    PyObject *exc = NULL;
    int rc;

    if (!raw_lock_is_owned(lr)) {
        PyErr_SetString(PyExc_RuntimeError, "cannot wait on un-acquired lock");
        return -1;
    }
    pthread_mutex_lock(&c->mu);
    if (c->last) {
        c->last->next = &node;
    }
    else {
        c->first = &node;
    }
    c->last = &node;
    pthread_mutex_unlock(&c->mu);

    /* Release the lock completely (all RLock levels). */
    pthread_mutex_lock(&lr->mu);
    if (is_rlock) {
        saved_count = lr->value;
        lr->owner_interp = 0;
        lr->owner_thread = 0;
    }
    lr->value = 0;
    if (lr->nwaiters > 0) {
        pthread_cond_signal(&lr->cond);
    }
    pthread_mutex_unlock(&lr->mu);

    rc = mg_wait(&c->mu, &c->cond, &c->nwaiters, deadline, cond_waiter_attempt, &node);
    if (rc <= 0) {
        /* Timed out or interrupted: unqueue the node unless a notify() got to
         * it in the meantime, in which case the notification counts. */
        pthread_mutex_lock(&c->mu);
        if (node.notified) {
            if (rc == 0) {
                rc = 1;
            }
        }
        else {
            cond_waiter **pp = &c->first, *prev = NULL;
            while (*pp != &node) {
                prev = *pp;
                pp = &(*pp)->next;
            }
            *pp = node.next;
            if (c->last == &node) {
                c->last = prev;
            }
        }
        pthread_mutex_unlock(&c->mu);
        if (rc < 0) {
            exc = PyErr_GetRaisedException();
        }
    }

    /* Re-acquire whatever happens: callers (`with cond:`) release it next.
     * A Ctrl-C here is kept and re-raised once the lock is held again. */
    for (;;) {
        int got = raw_lock_acquire(lr, MG_FOREVER);
        if (got > 0) {
            break;
        }
        if (got < 0) {
            if (exc == NULL) {
                exc = PyErr_GetRaisedException();
            }
            else {
                PyErr_Clear();
            }
        }
    }
    if (is_rlock) {
        pthread_mutex_lock(&lr->mu);
        lr->value = saved_count;
        pthread_mutex_unlock(&lr->mu);
    }
    if (exc != NULL) {
        PyErr_SetRaisedException(exc);
        return -1;
    }
    return rc;
}

PyDoc_STRVAR(condition_wait_doc,
"wait($self, timeout=None)\n"
"--\n"
"\n"
"Release the lock, wait until notified or the timeout expires, re-acquire.\n"
"\n"
"Parameters\n"
"----------\n"
"timeout : float or None\n"
"    Seconds to wait at most (exactly); None waits forever.\n"
"\n"
"Returns\n"
"-------\n"
"bool\n"
"    False if the timeout expired, else True.\n"
"\n"
"Raises\n"
"------\n"
"RuntimeError\n"
"    If the caller does not hold the lock.\n");

static PyObject *
condition_wait(PyObject *self, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    static const char *const kwlist[] = {"timeout", NULL};
    PyObject *argv[1] = {NULL};
    int64_t deadline;
    int rc;

    if (mg_parse_args("wait", args, nargs, kwnames, kwlist, 1, argv) < 0 ||
        mg_deadline(NULL, argv[0], 0, &deadline) < 0) {
        return NULL;
    }
    rc = condition_wait_raw(COND_RAW(self), deadline);
    if (rc < 0) {
        return NULL;
    }
    return PyBool_FromLong(rc);
}

PyDoc_STRVAR(condition_wait_for_doc,
"wait_for($self, predicate, timeout=None)\n"
"--\n"
"\n"
"Wait until ``predicate()`` is true, or the timeout expires.\n"
"\n"
"Returns\n"
"-------\n"
"object\n"
"    The last value returned by predicate.\n");

static PyObject *
condition_wait_for(PyObject *self, PyObject *const *args, Py_ssize_t nargs,
                   PyObject *kwnames)
{
    static const char *const kwlist[] = {"predicate", "timeout", NULL};
    PyObject *argv[2] = {NULL, NULL};
    PyObject *result;
    int64_t deadline;

    if (mg_parse_args("wait_for", args, nargs, kwnames, kwlist, 2, argv) < 0) {
        return NULL;
    }
    if (argv[0] == NULL) {
        PyErr_SetString(PyExc_TypeError, "wait_for() missing required argument 'predicate'");
        return NULL;
    }
    if (mg_deadline(NULL, argv[1], 0, &deadline) < 0) {
        return NULL;
    }
    result = PyObject_CallNoArgs(argv[0]);
    for (;;) {
        int truth;
        if (result == NULL) {
            return NULL;
        }
        truth = PyObject_IsTrue(result);
        if (truth < 0) {
            Py_DECREF(result);
            return NULL;
        }
        if (truth || (deadline != MG_FOREVER && mg_now_ns() >= deadline)) {
            return result;
        }
        Py_DECREF(result);
        if (condition_wait_raw(COND_RAW(self), deadline) < 0) {
            return NULL;
        }
        result = PyObject_CallNoArgs(argv[0]);
    }
}

static int
condition_notify_n(cond_raw *c, Py_ssize_t n)
{
    Py_ssize_t woken = 0;
    if (!raw_lock_is_owned(c->lock)) {
        PyErr_SetString(PyExc_RuntimeError, "cannot notify on un-acquired lock");
        return -1;
    }
    pthread_mutex_lock(&c->mu);
    while (c->first != NULL && woken < n) {
        cond_waiter *w = c->first;
        c->first = w->next;
        if (c->first == NULL) {
            c->last = NULL;
        }
        w->next = NULL;
        w->notified = 1;
        woken++;
    }
    /* All waiters share one condvar; each checks its own node. */
    if (woken > 0 && c->nwaiters > 0) {
        pthread_cond_broadcast(&c->cond);
    }
    pthread_mutex_unlock(&c->mu);
    return 0;
}

static PyObject *
condition_notify(PyObject *self, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    static const char *const kwlist[] = {"n", NULL};
    PyObject *argv[1] = {NULL};
    Py_ssize_t n = 1;

    if (mg_parse_args("notify", args, nargs, kwnames, kwlist, 1, argv) < 0) {
        return NULL;
    }
    if (argv[0] != NULL) {
        n = PyLong_AsSsize_t(argv[0]);
        if (n == -1 && PyErr_Occurred()) {
            return NULL;
        }
    }
    if (condition_notify_n(COND_RAW(self), n) < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
}

static PyObject *
condition_notify_all(PyObject *self, PyObject *Py_UNUSED(ignored))
{
    if (condition_notify_n(COND_RAW(self), PY_SSIZE_T_MAX) < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
}

static PyObject *
condition_acquire(PyObject *self, PyObject *const *args, Py_ssize_t nargs,
                  PyObject *kwnames)
{
    return sync_acquire(((cond_obj *)self)->lock, args, nargs, kwnames);
}

static PyObject *
condition_enter(PyObject *self, PyObject *Py_UNUSED(ignored))
{
    return sync_enter(((cond_obj *)self)->lock, NULL);
}

static PyObject *
condition_release(PyObject *self, PyObject *Py_UNUSED(ignored))
{
    return sync_release(((cond_obj *)self)->lock, NULL);
}

static PyObject *
condition_exit(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    return sync_exit(((cond_obj *)self)->lock, args, nargs);
}

static PyObject *
condition_get_lock(PyObject *self, void *Py_UNUSED(closure))
{
    return Py_NewRef(((cond_obj *)self)->lock);
}

static PyObject *
condition_repr(PyObject *self)
{
    return PyUnicode_FromFormat("<multigil.Condition id=%lld lock=%R>",
                                (long long)COND_RAW(self)->head.id,
                                ((cond_obj *)self)->lock);
}

static PyMethodDef condition_methods[] = {
    {"acquire", (PyCFunction)(void (*)(void))condition_acquire,
     METH_FASTCALL | METH_KEYWORDS, "acquire($self, blocking=True, timeout=-1)\n--\n\n"
     "Acquire the underlying lock."},
    {"release", condition_release, METH_NOARGS,
     "release($self, /)\n--\n\nRelease the underlying lock."},
    {"__enter__", condition_enter, METH_NOARGS, "Acquire the underlying lock."},
    {"__exit__", (PyCFunction)(void (*)(void))condition_exit, METH_FASTCALL,
     "Release the underlying lock."},
    {"wait", (PyCFunction)(void (*)(void))condition_wait, METH_FASTCALL | METH_KEYWORDS,
     condition_wait_doc},
    {"wait_for", (PyCFunction)(void (*)(void))condition_wait_for,
     METH_FASTCALL | METH_KEYWORDS, condition_wait_for_doc},
    {"notify", (PyCFunction)(void (*)(void))condition_notify,
     METH_FASTCALL | METH_KEYWORDS,
     "notify($self, n=1)\n--\n\nWake up to n threads waiting on the condition, in any "
     "interpreter.\nThe caller must hold the lock.\n"},
    {"notify_all", condition_notify_all, METH_NOARGS,
     "notify_all($self, /)\n--\n\nWake every thread waiting on the condition.\n"},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef condition_getset[] = {
    {"id", mg_wrapper_get_id, NULL, "Process-unique id of the shared object.", NULL},
    {"lock", condition_get_lock, NULL, "The underlying Lock or RLock.", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyType_Slot condition_slots[] = {
    {Py_tp_doc, (void *)condition_doc},
    {Py_tp_new, condition_new},
    {Py_tp_dealloc, condition_dealloc},
    {Py_tp_repr, condition_repr},
    {Py_tp_hash, mg_wrapper_hash},
    {Py_tp_richcompare, mg_wrapper_richcompare},
    {Py_tp_methods, condition_methods},
    {Py_tp_getset, condition_getset},
    {0, NULL},
};

static PyType_Spec condition_spec = {
    .name = "multigil._core.Condition",
    .basicsize = sizeof(cond_obj),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_IMMUTABLETYPE,
    .slots = condition_slots,
};

/*************************************************************************
 * Module registration                                                   *
 *************************************************************************/

int
mg_sync_init(PyObject *module, mg_state *st)
{
    PyTypeObject *bsem;

    if ((st->LockType = mg_add_type(module, &lock_spec, NULL)) == NULL ||
        (st->RLockType = mg_add_type(module, &rlock_spec, NULL)) == NULL ||
        (st->EventType = mg_add_type(module, &event_spec, NULL)) == NULL ||
        (st->SemaphoreType = mg_add_type(module, &semaphore_spec, NULL)) == NULL ||
        (st->ConditionType = mg_add_type(module, &condition_spec, NULL)) == NULL) {
        return -1;
    }
    bsem = mg_add_type(module, &bsemaphore_spec, st->SemaphoreType);
    if (bsem == NULL) {
        return -1;
    }
    Py_DECREF(bsem);            /* the module keeps it alive */
    return 0;
}
