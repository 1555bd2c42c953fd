/* condition.c — Condition: a condition variable shared by every interpreter
 * it is sent to, over a shared Lock or RLock. */
#include "sync.h"
#include "wait.h"

/* Waiters queue up as nodes on their own stacks (FIFO, so notify(n) wakes the
 * n longest waiters, as threading.Condition does). */
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
    mg_sync_raw *lock;          /* one reference owned; a Lock or an RLock */
} cond_raw;

typedef struct {
    MG_WRAPPER_HEAD
    PyObject *lock;             /* this interpreter's wrapper of raw->lock */
} cond_obj;

#define COND_RAW(self) ((cond_raw *)((mg_wrapper *)(self))->raw)

static void
cond_raw_destroy(mg_shared *s)
{
    cond_raw *c = (cond_raw *)s;
    mg_shared_decref(&c->lock->head);
    pthread_cond_destroy(&c->cond);
    pthread_mutex_destroy(&c->mu);
    PyMem_RawFree(c);
}

static PyObject *condition_wrap(mg_state *st, mg_shared *raw);

/* Process-global constant table (read-only, no lock needed). */
static const mg_shared_kind condition_kind = {"Condition", cond_raw_destroy, condition_wrap};

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
    mg_sync_raw *lr;
    cond_raw *c;

    if (!PyArg_ParseTupleAndKeywords(args, kwds, "|O:Condition", kwlist, &lock)) {
        return NULL;
    }
    if (st == NULL) {
        return NULL;
    }
    if (lock == Py_None) {
        lr = mg_sync_raw_new(&mg_rlock_kind, 0, -1);
        if (lr == NULL) {
            return NULL;
        }
    }
    else if (Py_IS_TYPE(lock, st->LockType) || Py_IS_TYPE(lock, st->RLockType)) {
        lr = MG_SYNC_RAW(lock);
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
    mg_sync_raw *lr = c->lock;
    int is_rlock = lr->head.kind == &mg_rlock_kind;
    long long saved_count = 1;
    cond_waiter node = {NULL, 0};
    PyObject *exc = NULL;
    int rc;

    if (!mg_lock_is_owned(lr)) {
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
        int got = mg_lock_acquire(lr, MG_FOREVER);
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
    if (!mg_lock_is_owned(c->lock)) {
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
    return mg_lock_py_acquire(((cond_obj *)self)->lock, args, nargs, kwnames);
}

static PyObject *
condition_enter(PyObject *self, PyObject *Py_UNUSED(ignored))
{
    return mg_lock_py_enter(((cond_obj *)self)->lock, NULL);
}

static PyObject *
condition_release(PyObject *self, PyObject *Py_UNUSED(ignored))
{
    return mg_lock_py_release(((cond_obj *)self)->lock, NULL);
}

static PyObject *
condition_exit(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    return mg_lock_py_exit(((cond_obj *)self)->lock, args, nargs);
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

int
mg_condition_init(PyObject *module, mg_state *st)
{
    st->ConditionType = mg_add_type(module, &condition_spec, NULL);
    return st->ConditionType == NULL ? -1 : 0;
}
