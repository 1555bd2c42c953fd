/* lifecycle.c — creating and closing interpreters, and the threads that run
 * in one: who they are (for messages), waiting for them, interrupting them,
 * their frames.
 *
 * Closing ends everything in the interpreter, so it first makes sure that
 * nothing runs there: Py_EndInterpreter aborts the process when it is not left
 * with the last thread state ("not the last thread"), and the finalisation
 * of the main interpreter aborts when a sub-interpreter is left ("remaining
 * subinterpreters", 3.12).  A close that cannot stop or wait for what runs
 * refuses with an InterpreterError that names the threads.
 */
#include "interp.h"
#include "errors.h"
#include "wait.h"

#include <time.h>

#define LOCK() mg_registry_lock()
#define UNLOCK() mg_registry_unlock()

/*************************************************************************
 * Creating and closing                                                  *
 *************************************************************************/

int64_t
mg_interp_create(mg_state *st, const char *bootstrap)
{
    mg_registry_init();
    char *error = NULL;         /* the bootstrap's error, as text */
    PyInterpreterConfig config = {
        .use_main_obmalloc = 0,
        .allow_fork = 0,
        .allow_exec = 0,
        .allow_threads = 1,
        .allow_daemon_threads = 0,
        .check_multi_interp_extensions = 1,
        .gil = PyInterpreterConfig_OWN_GIL,
    };
    PyThreadState *saved = PyThreadState_Get();
    PyThreadState *ts = NULL;
    PyStatus status = Py_NewInterpreterFromConfig(&ts, &config);
    if (PyStatus_Exception(status) || ts == NULL) {
        /* Py_NewInterpreterFromConfig leaves the caller detached on failure */
        PyThreadState_Swap(saved);
        mg_raise(st, MG_ERR_INTERPRETER, "cannot create an interpreter: %s",
                 status.err_msg ? status.err_msg : "unknown error");
        return -1;
    }
    /* Attached to the new interpreter now. */
    PyInterpreterState *istate = PyThreadState_GetInterpreter(ts);
    mg_tnode *n = PyMem_RawCalloc(1, sizeof(*n));
    LOCK();
    mg_interp *ip = n ? mg_registry_add_locked(istate, "C-API", 1) : NULL;
    if (ip) {
        ip->closing = 1;   /* nobody enters until the bootstrap ran */
        mg_tnode_add_locked(ip, n, ts);
    }
    UNLOCK();
    int64_t id = ip ? ip->id : -1;
    int failed = ip == NULL;
    if (!failed) {
        PyObject *globals = PyDict_New();
        PyObject *res = globals ? mg_run_source(bootstrap, Py_file_input, globals, globals) : NULL;
        Py_XDECREF(globals);
        if (res == NULL) {
            failed = 1;
            PyObject *exc = PyErr_GetRaisedException();
            PyObject *text = exc ? PyObject_Str(exc) : NULL;
            const char *msg = text ? PyUnicode_AsUTF8(text) : NULL;
            const char *tname = exc ? Py_TYPE(exc)->tp_name : "error";
            size_t len = strlen(tname) + (msg ? strlen(msg) : 0) + 4;
            error = PyMem_RawMalloc(len);
            if (error) {
                snprintf(error, len, "%s: %s", tname, msg ? msg : "");
            }
            PyErr_Clear();
            Py_XDECREF(text);
            Py_XDECREF(exc);
        }
        Py_XDECREF(res);
    }
    if (failed) {
        /* Keep the entry (closing) until the interpreter is gone: its _core
         * module, if the bootstrap imported it, reaches it from core_free. */
        LOCK();
        if (ip) {
            ip->nodes = NULL;
            ip->state = NULL;
            n->interp = NULL;   /* the thread list drops it */
        }
        else {
            PyMem_RawFree(n);
        }
        UNLOCK();
        Py_EndInterpreter(ts);
        PyThreadState_Swap(saved);
        if (ip) {
            LOCK();
            mg_registry_remove_locked(ip);
            UNLOCK();
        }
        mg_interp_run_deferred();
        if (error == NULL) {
            PyErr_NoMemory();
        }
        else {
            mg_raise(st, MG_ERR_INTERPRETER, "a new interpreter failed to start: %s", error);
            PyMem_RawFree(error);
        }
        return -1;
    }
    PyThreadState_Swap(saved);
    LOCK();
    ip->closing = 0;
    UNLOCK();
    return id;
}

/* Threads that run in an interpreter: labels for messages, waiting for
 * them, interrupting them. */

#define LABELS_MAX 400

/* Append a label for thread `ident` of the current interpreter to `buf`: its
 * name, as its threading module knows it, or its ident.  Errors are
 * swallowed. */
static void
label_thread(unsigned long ident, char *buf, size_t size)
{
    size_t used = strlen(buf);
    const char *name = NULL;
    PyObject *exc = PyErr_GetRaisedException();
    PyObject *modname = PyUnicode_FromString("threading");
    PyObject *mod = modname ? PyImport_GetModule(modname) : NULL;
    Py_XDECREF(modname);
    PyObject *active = mod ? PyObject_GetAttrString(mod, "_active") : NULL;
    PyObject *key = PyLong_FromUnsignedLong(ident);
    PyObject *thread = active && key && PyDict_Check(active)
                       ? PyDict_GetItemWithError(active, key) : NULL;   /* borrowed */
    PyObject *tname = thread ? PyObject_GetAttrString(thread, "name") : NULL;
    if (tname && PyUnicode_Check(tname)) {
        name = PyUnicode_AsUTF8(tname);
    }
    if (used < size) {
        const char *sep = used ? ", " : "";
        if (name != NULL) {
            snprintf(buf + used, size - used, "%s'%s'", sep, name);
        }
        else if (ident == 0) {
            snprintf(buf + used, size - used, "%sa thread that is starting", sep);
        }
        else {
            snprintf(buf + used, size - used, "%sthread %lu", sep, ident);
        }
    }
    Py_XDECREF(tname);
    Py_XDECREF(key);
    Py_XDECREF(active);
    Py_XDECREF(mod);
    PyErr_Clear();
    PyErr_SetRaisedException(exc);
}

/* The threads that entered `ip` and are inside it now, except `self`: up to
 * `max` idents into `idents`; returns how many.  Locked. */
static int
callers_locked(mg_interp *ip, const mg_tnode *self, unsigned long *idents, int max)
{
    int n = 0;
    for (mg_tnode *nd = ip->nodes; nd && n < max; nd = nd->next_in_interp) {
        if (nd != self && atomic_load(&nd->inside) > 0) {
            idents[n++] = nd->ident;
        }
    }
    return n;
}

/* Labels of `n` threads of the current interpreter, or of "a thread of its
 * own" if none is known. */
static void
label_threads(const unsigned long *idents, int n, char *buf, size_t size)
{
    buf[0] = '\0';
    for (int i = 0; i < n; i++) {
        label_thread(idents[i], buf, size);
    }
    if (n == 0) {
        snprintf(buf, size, "a thread of its own");
    }
}

/* The threads of `ip` that are not multigil's cached states, i.e. that it
 * started itself, except `self`: their idents in a new raw array (*count of
 * them), or NULL if there are none (or no memory).  Attached to `ip`: its
 * threads cannot start or end meanwhile. */
static unsigned long *
own_threads(mg_interp *ip, PyThreadState *self, int *count)
{
    unsigned long *idents = NULL;
    int n = 0, cap = 0;
    LOCK();
    for (PyThreadState *t = PyInterpreterState_ThreadHead(ip->istate); t;
         t = PyThreadState_Next(t)) {
        int cached = t == self;
        for (mg_tnode *nd = ip->nodes; nd && !cached; nd = nd->next_in_interp) {
            cached = nd->tstate == t;
        }
        if (cached) {
            continue;
        }
        if (n == cap) {
            int more = cap ? 2 * cap : 8;
            unsigned long *grown = PyMem_RawRealloc(idents, (size_t)more * sizeof(*idents));
            if (grown == NULL) {
                break;
            }
            idents = grown;
            cap = more;
        }
        idents[n++] = t->thread_id;
    }
    UNLOCK();
    *count = n;
    if (n == 0) {
        PyMem_RawFree(idents);
        return NULL;
    }
    return idents;
}

/* Raise SystemExit in thread `ident` of the current interpreter, waking it if
 * it sleeps in one of multigil's waits. */
static void
interrupt_thread(unsigned long ident)
{
    if (PyThreadState_SetAsyncExc(ident, PyExc_SystemExit) > 0) {
        mg_wait_interrupt(ident);
    }
}

/* Attached to nothing but the caller's interpreter (its GIL released):
 * enter `ip` as `n`'s thread state, raise SystemExit in every thread that
 * entered it, leave. */
static void
interrupt_callers(mg_interp *ip, mg_tnode *n)
{
    PyThreadState *saved = PyThreadState_Swap(n->tstate);
    enum { MAX = 64 };
    unsigned long idents[MAX];
    LOCK();
    int count = callers_locked(ip, n, idents, MAX);
    UNLOCK();
    for (int i = 0; i < count; i++) {
        interrupt_thread(idents[i]);
    }
    PyThreadState_Swap(saved);
}

/* Attached to `ip`: wait until it runs no thread of its own but `self`, or
 * until `deadline`; with `interrupt`, raise SystemExit in them first.  0, or
 * -1 with the labels of those left in `buf`. */
static int
wait_for_own_threads(mg_interp *ip, PyThreadState *self, int64_t deadline, int interrupt,
                     char *buf, size_t size)
{
    int64_t pause = 1000000;    /* 1 ms, doubling to 20 ms */
    int interrupted = 0;
    for (;;) {
        int n;
        unsigned long *idents = own_threads(ip, self, &n);
        if (idents == NULL) {
            return 0;
        }
        if (interrupt && !interrupted) {
            for (int i = 0; i < n; i++) {
                interrupt_thread(idents[i]);
            }
            interrupted = 1;
        }
        if (mg_now_ns() >= deadline) {
            label_threads(idents, n < 8 ? n : 8, buf, size);
            PyMem_RawFree(idents);
            return -1;
        }
        PyMem_RawFree(idents);
        /* No event tells that a thread of CPython's own has gone: look again
         * soon, with this interpreter's GIL released for its threads. */
        Py_BEGIN_ALLOW_THREADS
        struct timespec t = {0, (long)pause};
        nanosleep(&t, NULL);
        Py_END_ALLOW_THREADS
        if (pause < 20000000) {
            pause *= 2;
        }
    }
}

/* Clear and delete every cached thread state of `ip` but `keep`.  Attached
 * to `ip` (through `keep`), with nobody else inside it. */
static void
drop_thread_states(mg_interp *ip, PyThreadState *keep)
{
    for (;;) {
        PyThreadState *other = NULL;
        LOCK();
        for (mg_tnode **pp = &ip->nodes; *pp;) {
            mg_tnode *nd = *pp;
            if (nd->tstate == keep) {
                pp = &nd->next_in_interp;
                continue;
            }
            *pp = nd->next_in_interp;
            other = nd->tstate;
            if (nd->thread_gone) {
                ip->ngone--;
                PyMem_RawFree(nd);
            }
            else {
                nd->interp = NULL;    /* its thread drops it */
            }
            break;
        }
        UNLOCK();
        if (other == NULL) {
            break;
        }
        PyThreadState_Clear(other);
        PyThreadState_Delete(other);
    }
}

/* End a close (or a reset) that marked `ip` closing and busy, and did not
 * end it. */
static void
unclaim(mg_interp *ip)
{
    LOCK();
    ip->closing = 0;
    UNLOCK();
    mg_interp_release(ip);
}

/* Interpreter `id`, to close or reset it (`what` says which): NULL with the
 * error set if it does not exist, was not created by multigil or is the
 * current one; else its entry, with the registry locked. */
static mg_interp *
find_own_locked(mg_state *st, int64_t id, const char *what)
{
    mg_registry_init();
    LOCK();
    mg_interp *ip = mg_registry_find_locked(id);
    if (ip == NULL || ip->closing) {
        UNLOCK();
        mg_raise(st, MG_ERR_INTERPRETER_NOT_FOUND,
                 "interpreter %lld does not exist (already closed?)", (long long)id);
        return NULL;
    }
    if (!ip->owned) {
        UNLOCK();
        mg_raise(st, MG_ERR_INTERPRETER, "interpreter %lld was not created by multigil, so "
                 "multigil does not %s it", (long long)id, what);
        return NULL;
    }
    if (ip->istate == PyInterpreterState_Get()) {
        UNLOCK();
        mg_raise(st, MG_ERR_INTERPRETER, "interpreter %lld is the current interpreter: %s it "
                 "from another one", (long long)id, what);
        return NULL;
    }
    return ip;
}

int
mg_interp_close(mg_state *st, int64_t id, int64_t deadline, int flags)
{
    char labels[LABELS_MAX];
    mg_interp *ip = find_own_locked(st, id, "close");
    if (ip == NULL) {
        return -1;
    }
    const char *problem = NULL;
    if (ip->exports > 0 && !atomic_load(&ip->has_deferred)
        && !(flags & MG_CLOSE_ABANDON_EXPORTS)) {
        problem = "still lends buffers (memoryviews) to other interpreters; "
                  "release those views first";
    }
    enum { NAMED = 8 };
    unsigned long callers[NAMED];
    int ncallers = 0;
    long inside = atomic_load(&ip->busy);
    if (problem == NULL && (inside == 0 || (flags & MG_CLOSE_WAIT_CALLERS))) {
        ip->closing = 1;        /* nobody enters any more */
    }
    else if (problem == NULL) {
        ncallers = callers_locked(ip, NULL, callers, NAMED);
    }
    UNLOCK();
    if (problem) {
        mg_raise(st, MG_ERR_INTERPRETER, "interpreter %lld %s", (long long)id, problem);
        return -1;
    }

    mg_tnode *n = inside > 0 && !(flags & MG_CLOSE_WAIT_CALLERS) ? NULL : mg_tnode_for(ip);
    if (n != NULL && inside > 0) {
        if (flags & MG_CLOSE_INTERRUPT) {
            PyThreadState *caller = PyEval_SaveThread();
            interrupt_callers(ip, n);
            PyEval_RestoreThread(caller);
        }
        mg_interp_wait_idle(ip, deadline);
    }
    if (inside > 0 && (n == NULL || atomic_load(&ip->busy) > 0)) {
        /* Closing stops no call: refuse, naming who is inside. */
        if (n != NULL) {
            LOCK();
            ncallers = callers_locked(ip, n, callers, NAMED);
            ip->closing = 0;
            UNLOCK();
        }
        label_threads(callers, ncallers, labels, sizeof(labels));
        if (n != NULL) {
            mg_raise(st, MG_ERR_INTERPRETER, "interpreter %lld still runs a call in another "
                     "thread (%s): it did not return in time (a call blocked in C code, "
                     "such as a sleep or a read, cannot be interrupted)", (long long)id,
                     labels);
        }
        else {
            mg_raise(st, MG_ERR_INTERPRETER, "interpreter %lld is running in another thread "
                     "(%s); wait for that call to return (or stop the executor using it) "
                     "before closing it", (long long)id, labels);
        }
        return -1;
    }
    if (n == NULL) {
        LOCK();
        ip->closing = 0;
        UNLOCK();
        PyErr_NoMemory();
        return -1;
    }
    atomic_fetch_add(&ip->busy, 1);

    PyThreadState *ts = n->tstate;
    PyThreadState *saved = PyThreadState_Swap(ts);
    mg_interp_run_deferred_of(ip);
    LOCK();
    long lent = ip->exports;
    UNLOCK();
    if (lent > 0 && !(flags & MG_CLOSE_ABANDON_EXPORTS)) {
        PyThreadState_Swap(saved);
        unclaim(ip);
        mg_raise(st, MG_ERR_INTERPRETER, "interpreter %lld still lends buffers (memoryviews) "
                 "to other interpreters; release those views first", (long long)id);
        return -1;
    }
    /* Py_EndInterpreter insists on being left with the last thread state: a
     * thread the interpreter started and that still runs is waited for (with
     * threading.Thread, CPython would wait for it without end; with
     * _thread.start_new_thread, abort the process). */
    if (wait_for_own_threads(ip, ts, deadline, flags & MG_CLOSE_INTERRUPT,
                             labels, sizeof(labels)) < 0) {
        PyThreadState_Swap(saved);
        unclaim(ip);
        mg_raise(st, MG_ERR_INTERPRETER, "interpreter %lld still runs threads it started "
                 "(%s); end them (join them in it) before closing it", (long long)id, labels);
        return -1;
    }
    /* The function caches keep module globals alive, and the finalisation of
     * a 3.12/3.13 interpreter does not always free what they hold: objects
     * whose release matters (views of other interpreters' buffers, shared
     * buffers) go now, while their destructors can still run. */
    if (ip->state != NULL) {
        mg_state_drop_caches(ip->state);
    }

    /* Every other cached thread state of it goes now: Py_EndInterpreter
     * insists on being left with the last one. */
    drop_thread_states(ip, ts);

    LOCK();
    for (mg_tnode *nd = ip->nodes; nd; nd = nd->next_in_interp) {
        nd->interp = NULL;            /* ours: Py_EndInterpreter deletes it */
    }
    ip->nodes = NULL;
    ip->state = NULL;
    UNLOCK();
    Py_EndInterpreter(ts);
    PyThreadState_Swap(saved);
    LOCK();
    mg_registry_remove_locked(ip);
    UNLOCK();
    /* Its finalisation dropped views of the caller's buffers: release them. */
    mg_interp_run_deferred();
    return 0;
}

/* How long a reset waits for a thread that is inside the interpreter. */
#define RENEW_WAIT_NS 10000000000LL

int
mg_interp_renew_thread_states(mg_state *st, int64_t id)
{
    mg_interp *ip = find_own_locked(st, id, "reset");
    if (ip == NULL) {
        return -1;
    }
    ip->closing = 1;            /* nobody enters meanwhile */
    UNLOCK();
    /* Whoever is inside is about to leave (the pool's interrupter, which
     * enters a worker's interpreter for a moment): wait for it. */
    if (!mg_interp_wait_idle(ip, mg_now_ns() + RENEW_WAIT_NS)) {
        LOCK();
        ip->closing = 0;
        UNLOCK();
        mg_raise(st, MG_ERR_INTERPRETER, "interpreter %lld is running in another thread; wait "
                 "for that call to return (or stop the executor using it) before resetting it",
                 (long long)id);
        return -1;
    }
    atomic_fetch_add(&ip->busy, 1);
    PyThreadState *fresh = PyThreadState_New(ip->istate);
    mg_tnode *n = fresh ? PyMem_RawCalloc(1, sizeof(*n)) : NULL;
    if (n == NULL) {
        if (fresh != NULL) {
            PyThreadState_Clear(fresh);   /* never attached: safe to clear here */
            PyThreadState_Delete(fresh);
        }
        unclaim(ip);
        PyErr_NoMemory();
        return -1;
    }
    PyThreadState *saved = PyThreadState_Swap(fresh);
    drop_thread_states(ip, fresh);
    PyThreadState_Swap(saved);
    LOCK();
    mg_tnode_add_locked(ip, n, fresh);  /* this thread's cached state now */
    UNLOCK();
    unclaim(ip);
    return 0;
}

int
mg_interp_running(mg_state *st, int64_t id)
{
    long busy = mg_interp_busy(id, NULL);
    if (busy != 0) {
        if (busy > 0) {
            return 1;
        }
        mg_raise(st, MG_ERR_INTERPRETER_NOT_FOUND,
                 "interpreter %lld does not exist (it was closed, or never created)",
                 (long long)id);
        return -1;
    }
    /* Nobody entered it: does it run threads of its own?  Its thread list
     * may be read only by a thread attached to it. */
    mg_session s;
    if (mg_enter(st, id, &s) < 0) {
        return -1;
    }
    int count = 0;
    unsigned long *idents = s.node ? own_threads(s.interp, s.node->tstate, &count) : NULL;
    PyMem_RawFree(idents);
    mg_leave(&s);
    return count > 0;
}

/* The exception a thread state is handling, as sys._current_exceptions() has
 * it: the innermost item of its exception stack that holds one. */
static PyObject *
handled_exception(PyThreadState *t)
{
    _PyErr_StackItem *item = t->exc_info;
    while (item && (item->exc_value == NULL || item->exc_value == Py_None)
           && item->previous_item != NULL) {
        item = item->previous_item;
    }
    return item && item->exc_value ? item->exc_value : Py_None;
}

PyObject *
mg_interp_thread_frames(int exceptions)
{
    PyObject *result = PyDict_New();
    if (result == NULL) {
        return NULL;
    }
    /* Holding this interpreter's GIL: its own threads are stopped, and the
     * threads that use a cached state of it are elsewhere, so none of these
     * states changes meanwhile (and each thread has one state here). */
    for (PyThreadState *t = PyInterpreterState_ThreadHead(PyInterpreterState_Get()); t;
         t = PyThreadState_Next(t)) {
        PyObject *value;
        if (exceptions) {
            value = Py_NewRef(handled_exception(t));
        }
        else {
            value = (PyObject *)PyThreadState_GetFrame(t);
            if (value == NULL) {
                if (PyErr_Occurred()) {
                    Py_DECREF(result);
                    return NULL;
                }
                continue;       /* it runs no Python code here now */
            }
        }
        PyObject *key = PyLong_FromUnsignedLong(t->thread_id);
        int rc = key ? PyDict_SetItem(result, key, value) : -1;
        Py_XDECREF(key);
        Py_DECREF(value);
        if (rc < 0) {
            Py_DECREF(result);
            return NULL;
        }
    }
    return result;
}

