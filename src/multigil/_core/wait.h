/* wait.h — blocking with the GIL released, shared by sync.c and queue.c.
 *
 * Every cross-interpreter object (Lock, Event, Queue, ...) is a raw struct
 * guarded by one pthread mutex, with one or more CLOCK_MONOTONIC condvars.
 * A blocking operation is written as an *attempt*: a small function that runs
 * with that mutex held, never touches a PyObject, and either completes the
 * operation (returns > 0) or says "not yet" (returns 0).  mg_wait() runs the
 * attempt once with the GIL held (the uncontended fast path costs one mutex
 * round trip and no GIL switch), and only if that fails releases the GIL and
 * sleeps on the condvar until the attempt succeeds, the deadline passes, or a
 * signal handler raises.
 *
 * Lock order, the one rule that keeps this deadlock-free: a thread may lock an
 * object's mutex while holding a GIL (critical sections are a few dozen
 * instructions and never block), but must never wait for a GIL while holding
 * an object's mutex.  So mg_wait() unlocks the mutex before every
 * PyEval_RestoreThread().
 */
#ifndef MULTIGIL_WAIT_H
#define MULTIGIL_WAIT_H

#include "mg.h"

/* 1 if the calling thread runs Python signal handlers (the main thread of the
 * main interpreter), else 0.  Needs the GIL.  Defined in sync.c. */
int mg_thread_handles_signals(void);

/* Runs with the object's mutex held and possibly without the GIL: no Python
 * API.  Returns 0 for "not yet, keep waiting", or a positive result code. */
typedef int (*mg_attempt_fn)(void *arg);

/*************************************************************************
 * mg_wait                                                               *
 *************************************************************************/
/* Called with the GIL held and `mu` NOT held; returns the same way.
 *
 * Returns the attempt's positive result, 0 if the deadline passed first (a
 * deadline <= mg_now_ns() means "try once, don't block"), or -1 with an
 * exception set when a signal handler raised (KeyboardInterrupt on Ctrl-C).
 *
 * `nwaiters` counts the threads sleeping on `cond` (changed only under `mu`),
 * so that the side that makes progress possible signals only when someone
 * actually waits: the common uncontended case makes no futex wake call.
 *
 * In the thread that handles signals the sleep is cut into slices of
 * MG_SIGNAL_CHECK_NS: at the end of each one the thread re-takes the GIL and
 * runs PyErr_CheckSignals().  No other thread ever polls: it sleeps until
 * signalled or until the real deadline.
 */
static inline int
mg_wait(pthread_mutex_t *mu, pthread_cond_t *cond, int *nwaiters,
        int64_t deadline, mg_attempt_fn attempt, void *arg)
{
    int r, check_signals;
    PyThreadState *ts;

    /* Fast path: GIL held, no switch. */
    pthread_mutex_lock(mu);
    r = attempt(arg);
    pthread_mutex_unlock(mu);
    if (r != 0 || (deadline != MG_FOREVER && deadline <= mg_now_ns())) {
        return r;
    }

    check_signals = mg_thread_handles_signals();
    ts = PyEval_SaveThread();
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
            pthread_mutex_unlock(mu);
            PyEval_RestoreThread(ts);
            if (PyErr_CheckSignals() < 0) {
                return -1;
            }
            ts = PyEval_SaveThread();
            pthread_mutex_lock(mu);
        }
    }
    pthread_mutex_unlock(mu);
    PyEval_RestoreThread(ts);
    return r;
}

/*************************************************************************
 * Argument parsing for METH_FASTCALL | METH_KEYWORDS methods            *
 *************************************************************************/
/* PyArg_ParseTupleAndKeywords needs a tuple and a dict: building them costs
 * more than a whole uncontended Lock.acquire().  This does the same job on the
 * vectorcall arguments.  `names` is NULL-terminated; the first `maxpos` may be
 * passed positionally.  Missing arguments are left as the caller set them
 * (defaults); all are borrowed references.  Returns 0, or -1 with TypeError.
 */
static inline int
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

#endif /* MULTIGIL_WAIT_H */
