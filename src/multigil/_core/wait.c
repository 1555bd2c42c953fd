/* wait.c — clock and deadlines, condvars, sleepers and their interruption,
 * the wait loop (its fast path is inline: wait.h), the signal-handling
 * thread, and the arguments of blocking calls. */
#include "wait.h"

#include <errno.h>
#include <math.h>
#include <time.h>

/*************************************************************************
 * Clock and condvars                                                    *
 *************************************************************************/

int64_t
mg_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

void
mg_cond_init(pthread_cond_t *cond)
{
    pthread_condattr_t attr;
    /* CLOCK_MONOTONIC: deadlines must not move when the wall clock does. */
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_cond_init(cond, &attr);
    pthread_condattr_destroy(&attr);
}

int
mg_cond_wait_until(pthread_cond_t *cond, pthread_mutex_t *mutex, int64_t deadline)
{
    struct timespec ts;
    int rc;

    if (deadline == MG_FOREVER) {
        pthread_cond_wait(cond, mutex);
        return 0;
    }
    if (deadline < 0) {
        deadline = 0;
    }
    ts.tv_sec = (time_t)(deadline / 1000000000LL);
    ts.tv_nsec = (long)(deadline % 1000000000LL);
    rc = pthread_cond_timedwait(cond, mutex, &ts);
    return rc == ETIMEDOUT ? 1 : 0;
}

/*************************************************************************
 * Sleepers, and waking them for an asynchronous exception               *
 *************************************************************************/

/* One per OS thread that has slept in mg_wait, registered on its first sleep
 * and freed when the thread exits. */
typedef struct mg_sleeper {
    unsigned long ident;          /* PyThread_get_thread_ident() of its thread */
    /* What it sleeps on now (NULL when awake); guarded by sleepers_lock. */
    pthread_mutex_t *mu;
    pthread_cond_t *cond;
    /* Set by mg_wait_interrupt: an asynchronous exception may be pending. */
    atomic_int interrupted;
    struct mg_sleeper *next;
} mg_sleeper;

/* The sleepers of the process.  Owner: this file.  Lock: sleepers_lock guards
 * the list and every record's mu/cond.  Lock order: sleepers_lock, then an
 * object's mutex (a sleeper takes sleepers_lock only while not holding its
 * object's mutex). */
static pthread_mutex_t sleepers_lock = PTHREAD_MUTEX_INITIALIZER;
static mg_sleeper *sleepers = NULL;
static pthread_once_t sleeper_once = PTHREAD_ONCE_INIT;
static pthread_key_t sleeper_key;

static void
sleeper_exit(void *arg)
{
    mg_sleeper *me = arg;
    pthread_mutex_lock(&sleepers_lock);
    for (mg_sleeper **pp = &sleepers; *pp; pp = &(*pp)->next) {
        if (*pp == me) {
            *pp = me->next;
            break;
        }
    }
    pthread_mutex_unlock(&sleepers_lock);
    PyMem_RawFree(me);
}

static void
sleeper_key_init(void)
{
    if (pthread_key_create(&sleeper_key, sleeper_exit) != 0) {
        Py_FatalError("multigil: cannot create a thread-local key");
    }
}

/* The calling thread's record, registered on first use; NULL without memory
 * (the wait then cannot be interrupted, only signalled). */
static mg_sleeper *
sleeper_self(void)
{
    pthread_once(&sleeper_once, sleeper_key_init);
    mg_sleeper *me = pthread_getspecific(sleeper_key);
    if (me != NULL) {
        return me;
    }
    me = PyMem_RawCalloc(1, sizeof(*me));
    if (me == NULL) {
        return NULL;
    }
    me->ident = PyThread_get_thread_ident();
    atomic_init(&me->interrupted, 0);
    pthread_mutex_lock(&sleepers_lock);
    me->next = sleepers;
    sleepers = me;
    pthread_mutex_unlock(&sleepers_lock);
    pthread_setspecific(sleeper_key, me);
    return me;
}

static void
sleeper_on(mg_sleeper *me, pthread_mutex_t *mu, pthread_cond_t *cond)
{
    if (me != NULL) {
        pthread_mutex_lock(&sleepers_lock);
        me->mu = mu;
        me->cond = cond;
        pthread_mutex_unlock(&sleepers_lock);
    }
}

void
mg_wait_interrupt(unsigned long ident)
{
    pthread_mutex_lock(&sleepers_lock);
    for (mg_sleeper *s = sleepers; s; s = s->next) {
        if (s->ident != ident) {
            continue;
        }
        /* Flag first: a sleeper that has not registered its condvar yet
         * sees the flag before it sleeps; one that sleeps is woken here (it
         * keeps the object alive while it is registered). */
        atomic_store(&s->interrupted, 1);
        if (s->mu != NULL) {
            pthread_mutex_lock(s->mu);
            pthread_cond_broadcast(s->cond);
            pthread_mutex_unlock(s->mu);
        }
        break;
    }
    pthread_mutex_unlock(&sleepers_lock);
}

int
mg_raise_pending_async_exc(void)
{
    if (PyThreadState_Get()->async_exc == NULL) {
        return 0;
    }
    /* Let the eval loop raise it, in a throw-away evaluation: that is also
     * what resets the eval breaker it set (taking async_exc by hand would
     * leave it set on 3.12, and every bytecode would take the slow path). */
    PyObject *globals = PyDict_New();
    if (globals == NULL) {
        return -1;
    }
    PyObject *r = mg_run_source("None", Py_eval_input, globals, globals);
    Py_DECREF(globals);
    if (r == NULL) {
        return -1;
    }
    Py_DECREF(r);
    return 0;
}

/*************************************************************************
 * The wait loop                                                         *
 *************************************************************************/

/* In the wait loop, holding `mu` without the GIL: let go of `mu`, take the
 * GIL back and run `check` (signal handlers, a pending asynchronous
 * exception).  -1 if it raised: the GIL is held then, `mu` is not.  Else 0,
 * back as before (`*ts` saved again). */
static int
with_gil(mg_sleeper *me, pthread_mutex_t *mu, pthread_cond_t *cond, PyThreadState **ts,
         int (*check)(void))
{
    pthread_mutex_unlock(mu);
    sleeper_on(me, NULL, NULL);
    PyEval_RestoreThread(*ts);
    if (check() < 0) {
        return -1;
    }
    *ts = PyEval_SaveThread();
    sleeper_on(me, mu, cond);
    pthread_mutex_lock(mu);
    return 0;
}

int
mg_wait_blocking(pthread_mutex_t *mu, pthread_cond_t *cond, int *nwaiters,
                 int64_t deadline, mg_attempt_fn attempt, void *arg)
{
    int r;
    int check_signals = mg_thread_handles_signals();
    mg_sleeper *me = sleeper_self();
    PyThreadState *ts = PyEval_SaveThread();
    sleeper_on(me, mu, cond);
    pthread_mutex_lock(mu);
    for (;;) {
        int64_t now, until;
        int timed_out;

        /* Attempt before looking at the clock: a wakeup that raced with the
         * deadline still takes what it was woken for, so a signal consumed
         * by this thread is never lost. */
        r = attempt(arg);
        if (r != 0) {
            break;
        }
        if (me != NULL && atomic_exchange(&me->interrupted, 0)) {
            /* Someone set an asynchronous exception on this thread (or did,
             * before it last ran bytecode: then none is pending). */
            if (with_gil(me, mu, cond, &ts, mg_raise_pending_async_exc) < 0) {
                return -1;
            }
            continue;
        }
        until = deadline;
        if (deadline != MG_FOREVER || check_signals) {
            now = mg_now_ns();
            if (now >= deadline) {
                break;  /* r == 0: timeout */
            }
            if (check_signals && deadline - now > MG_SIGNAL_CHECK_NS) {
                until = now + MG_SIGNAL_CHECK_NS;
            }
        }
        ++*nwaiters;
        timed_out = mg_cond_wait_until(cond, mu, until);
        --*nwaiters;
        if (timed_out && until != deadline) {
            /* End of a signal-check slice (main thread only). */
            r = attempt(arg);
            if (r != 0) {
                break;
            }
            if (with_gil(me, mu, cond, &ts, PyErr_CheckSignals) < 0) {
                return -1;
            }
        }
    }
    pthread_mutex_unlock(mu);
    sleeper_on(me, NULL, NULL);
    PyEval_RestoreThread(ts);
    return r;
}

/*************************************************************************
 * Which thread handles signals                                          *
 *************************************************************************/
/* Python runs signal handlers only in the main thread of the main
 * interpreter, so only that thread needs to wake up periodically while it
 * waits.  The public C API has no "is main thread" call; mg_wait_init records
 * threading.main_thread().ident the first time _core is initialised in the
 * main interpreter.
 *
 * Process-global.  Owner: this file (mg_wait_init in the main interpreter).
 * Lock: none needed — an atomic written with the same value by every
 * initialisation of _core in the main interpreter, read with relaxed loads.
 */
static atomic_ulong mg_main_thread_ident;

int
mg_thread_handles_signals(void)
{
    unsigned long main_ident;

    if (PyInterpreterState_Get() != PyInterpreterState_Main()) {
        return 0;
    }
    main_ident = mg_main_thread();
    return main_ident != 0 && PyThread_get_thread_ident() == main_ident;
}

unsigned long
mg_main_thread(void)
{
    return atomic_load_explicit(&mg_main_thread_ident, memory_order_relaxed);
}

void
mg_signals_block(sigset_t *saved)
{
    /* SIGINT only: the mask is inherited by the threads a task starts and by
     * the processes they start (a forkserver needs SIGCHLD, a pool's workers
     * SIGTERM). */
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    pthread_sigmask(SIG_BLOCK, &set, saved);
}

void
mg_signals_restore(const sigset_t *saved)
{
    pthread_sigmask(SIG_SETMASK, saved, NULL);
}

int
mg_wait_init(void)
{
    PyObject *threading, *main_thread, *ident;
    unsigned long value;

    if (PyInterpreterState_Get() != PyInterpreterState_Main()) {
        return 0;
    }
    threading = PyImport_ImportModule("threading");
    if (threading == NULL) {
        return -1;
    }
    main_thread = PyObject_CallMethod(threading, "main_thread", NULL);
    Py_DECREF(threading);
    if (main_thread == NULL) {
        return -1;
    }
    ident = PyObject_GetAttrString(main_thread, "ident");
    Py_DECREF(main_thread);
    if (ident == NULL) {
        return -1;
    }
    value = PyLong_AsUnsignedLong(ident);
    Py_DECREF(ident);
    if (value == (unsigned long)-1 && PyErr_Occurred()) {
        return -1;
    }
    atomic_store_explicit(&mg_main_thread_ident, value, memory_order_relaxed);
    return 0;
}

/*************************************************************************
 * The arguments of blocking calls                                       *
 *************************************************************************/

/* Seconds from a timeout argument: int, float or anything with __float__ or
 * __index__. */
static int
timeout_seconds(PyObject *timeout, double *secs)
{
    *secs = PyFloat_AsDouble(timeout);
    if (*secs == -1.0 && PyErr_Occurred()) {
        if (PyErr_ExceptionMatches(PyExc_TypeError)) {
            PyErr_Format(PyExc_TypeError,
                         "timeout must be None or a number of seconds, not %.100s",
                         Py_TYPE(timeout)->tp_name);
        }
        return -1;
    }
    return 0;
}

int
mg_deadline(PyObject *block, PyObject *timeout, int flags, int64_t *deadline)
{
    int blocking = 1;
    double secs, ns;
    int64_t now;

    if (block != NULL && (blocking = PyObject_IsTrue(block)) < 0) {
        return -1;
    }
    if (timeout == Py_None) {
        timeout = NULL;
    }
    if (!blocking) {
        *deadline = 0;
        if (timeout == NULL || !(flags & MG_NONBLOCKING_REFUSES_TIMEOUT)) {
            return 0;
        }
        if (flags & MG_TIMEOUT_MINUS_ONE_IS_FOREVER) {
            if (timeout_seconds(timeout, &secs) < 0) {
                return -1;
            }
            if (secs == -1) {
                return 0;       /* the default: no timeout given */
            }
        }
        PyErr_SetString(PyExc_ValueError, "can't specify a timeout for a non-blocking call");
        return -1;
    }
    if (timeout == NULL) {
        *deadline = MG_FOREVER;
        return 0;
    }
    if (timeout_seconds(timeout, &secs) < 0) {
        return -1;
    }
    if (secs == -1 && (flags & MG_TIMEOUT_MINUS_ONE_IS_FOREVER)) {
        *deadline = MG_FOREVER;
        return 0;
    }
    if (isnan(secs)) {
        PyErr_SetString(PyExc_ValueError, "timeout must be a number, not NaN");
        return -1;
    }
    if (secs < 0) {
        PyErr_SetString(PyExc_ValueError, "timeout must be a non-negative number");
        return -1;
    }
    /* Used exactly (get(timeout=0.5) waits 0.5 s, not 0), rounded up, so that
     * a wait never ends before the full timeout elapsed. */
    now = mg_now_ns();
    ns = ceil(secs * 1e9);
    if (ns >= (double)(MG_FOREVER - now)) {
        *deadline = MG_FOREVER;   /* a timeout of centuries is no timeout */
    }
    else {
        *deadline = now + (int64_t)ns;
    }
    return 0;
}

int
mg_parse_args(const char *fname, PyObject *const *args, Py_ssize_t nargs,
              PyObject *kwnames, const char *const *names, Py_ssize_t maxpos,
              PyObject **out)
{
    Py_ssize_t i, j, nkw, nnames = 0;

    while (names[nnames] != NULL) {
        nnames++;
    }
    if (nargs > maxpos) {
        PyErr_Format(PyExc_TypeError,
                     "%s() takes at most %zd positional argument%s (%zd given)",
                     fname, maxpos, maxpos == 1 ? "" : "s", nargs);
        return -1;
    }
    for (i = 0; i < nargs; i++) {
        out[i] = args[i];
    }
    if (kwnames == NULL) {
        return 0;
    }
    nkw = PyTuple_GET_SIZE(kwnames);
    for (i = 0; i < nkw; i++) {
        PyObject *key = PyTuple_GET_ITEM(kwnames, i);
        for (j = 0; j < nnames; j++) {
            if (PyUnicode_CompareWithASCIIString(key, names[j]) == 0) {
                break;
            }
        }
        if (j == nnames) {
            PyErr_Format(PyExc_TypeError,
                         "%s() got an unexpected keyword argument '%U'", fname, key);
            return -1;
        }
        if (j < nargs) {
            PyErr_Format(PyExc_TypeError,
                         "%s() got multiple values for argument '%s'", fname, names[j]);
            return -1;
        }
        out[j] = args[nargs + i];
    }
    return 0;
}
