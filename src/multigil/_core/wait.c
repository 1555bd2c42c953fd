/* wait.c — clock and deadlines, condvars, the signal-handling thread, and the
 * arguments of blocking calls (the wait loop itself is inline: wait.h). */
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
    main_ident = atomic_load_explicit(&mg_main_thread_ident, memory_order_relaxed);
    return main_ident != 0 && PyThread_get_thread_ident() == main_ident;
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
