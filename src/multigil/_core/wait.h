/* wait.h — blocking with the GIL released: clock and deadlines, condvars,
 * the wait loop, and the arguments of blocking calls.
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

#include "base.h"

#include <signal.h>

/*************************************************************************
 * Clock, deadlines, condvars                                            *
 *************************************************************************/

/* Absolute deadlines in CLOCK_MONOTONIC nanoseconds; MG_FOREVER = no
 * timeout; a deadline <= mg_now_ns() means "try once, don't block". */
#define MG_FOREVER INT64_MAX
int64_t mg_now_ns(void);

void mg_cond_init(pthread_cond_t *cond);     /* a CLOCK_MONOTONIC condvar */
/* Wait on cond/mutex (mutex held by the caller) until woken or deadline.
 * Returns 0 when woken (maybe spuriously), 1 on timeout. */
int mg_cond_wait_until(pthread_cond_t *cond, pthread_mutex_t *mutex, int64_t deadline);

/* Wait slices: blocking calls made with the GIL held wake at least every
 * MG_SIGNAL_CHECK_NS to run PyErr_CheckSignals() in the main thread, so
 * Ctrl-C interrupts them. */
#define MG_SIGNAL_CHECK_NS 50000000LL

/* 1 if the calling thread runs Python signal handlers (the main thread of the
 * main interpreter), else 0.  Needs the GIL. */
int mg_thread_handles_signals(void);
/* Learn which thread that is: called by every initialisation of _core (it
 * acts only in the main interpreter).  0, or -1 with an exception set. */
int mg_wait_init(void);
/* That thread's PyThread_get_thread_ident() (0 until mg_wait_init ran), in
 * whichever interpreter it is now.  No GIL needed. */
unsigned long mg_main_thread(void);
/* Keep SIGINT (Ctrl-C) away from the calling thread, saving its mask in
 * `saved`; mg_signals_restore undoes it.  For threads that never handle signals (the executor's workers, and the
 * threads their tasks start, which inherit the mask): the kernel delivers a
 * process signal to any thread that does not block it, and one delivered to
 * such a thread wakes no wait of the main thread, which then handles Ctrl-C
 * late, or two presses as one. */
void mg_signals_block(sigset_t *saved);
void mg_signals_restore(const sigset_t *saved);

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
 * exception set when a signal handler raised (KeyboardInterrupt on Ctrl-C) or
 * the thread was interrupted (mg_wait_interrupt).
 *
 * `nwaiters` counts the threads sleeping on `cond` (changed only under `mu`),
 * so that the side that makes progress possible signals only when someone
 * actually waits: the common uncontended case makes no futex wake call.
 *
 * In the thread that handles signals the sleep is cut into slices of
 * MG_SIGNAL_CHECK_NS: at the end of each one the thread re-takes the GIL and
 * runs PyErr_CheckSignals().  No other thread ever polls: it sleeps until
 * signalled, interrupted, or until the real deadline.
 */
int mg_wait_blocking(pthread_mutex_t *mu, pthread_cond_t *cond, int *nwaiters,
                     int64_t deadline, mg_attempt_fn attempt, void *arg);

static inline int
mg_wait(pthread_mutex_t *mu, pthread_cond_t *cond, int *nwaiters,
        int64_t deadline, mg_attempt_fn attempt, void *arg)
{
    /* Fast path: GIL held, no switch. */
    pthread_mutex_lock(mu);
    int r = attempt(arg);
    pthread_mutex_unlock(mu);
    if (r != 0 || (deadline != MG_FOREVER && deadline <= mg_now_ns())) {
        return r;
    }
    return mg_wait_blocking(mu, cond, nwaiters, deadline, attempt, arg);
}

/*************************************************************************
 * Interrupting a wait                                                   *
 *************************************************************************/
/* A thread blocked in mg_wait sleeps on a condvar with its GIL released, so
 * an asynchronous exception (PyThreadState_SetAsyncExc: a task's timeout or
 * cancellation, Ctrl-C forwarded into a call) would wait for the wake-up it
 * sleeps for.  So every thread that sleeps in mg_wait says on what (a
 * per-thread record, registered while it sleeps), and whoever sets an
 * asynchronous exception on a thread then calls mg_wait_interrupt(): the
 * record is flagged and its condvar broadcast; the sleeper sees the flag,
 * takes its GIL back and raises the pending exception.  No polling: a
 * sleeper costs nothing until someone wakes it.
 */

/* Wake thread `ident`'s mg_wait, if it sleeps in one now or is about to, so
 * that it raises the asynchronous exception just set on its thread state.
 * Call it after PyThreadState_SetAsyncExc() succeeded.  Any thread, with or
 * without a GIL. */
void mg_wait_interrupt(unsigned long ident);

/* Raise the asynchronous exception pending on the current thread state, if
 * there is one: -1 with it set; else 0.  Needs the GIL. */
int mg_raise_pending_async_exc(void);

/*************************************************************************
 * The arguments of blocking calls                                       *
 *************************************************************************/

/* How a call reads its block/timeout arguments (flags of mg_deadline). */
/* timeout=-1 waits forever, as in threading.Lock.acquire(). */
#define MG_TIMEOUT_MINUS_ONE_IS_FOREVER 0x1
/* block=False with a timeout is a ValueError, as in threading; without this
 * flag block=False ignores the timeout, as in queue.Queue. */
#define MG_NONBLOCKING_REFUSES_TIMEOUT 0x2

/* The one parser of block/timeout arguments, and its one set of messages.
 * `block` (NULL: blocking) and `timeout` (NULL or None: no timeout; else
 * seconds, int or float, used exactly) become an absolute *deadline.
 * Returns 0, or -1 with TypeError/ValueError. */
int mg_deadline(PyObject *block, PyObject *timeout, int flags, int64_t *deadline);

/* PyArg_ParseTupleAndKeywords needs a tuple and a dict: building them costs
 * more than a whole uncontended Lock.acquire().  This does the same job on the
 * vectorcall arguments of a METH_FASTCALL | METH_KEYWORDS method.  `names` is
 * NULL-terminated; the first `maxpos` may be passed positionally.  Missing
 * arguments are left as the caller set them (defaults); all are borrowed
 * references.  Returns 0, or -1 with TypeError. */
int mg_parse_args(const char *fname, PyObject *const *args, Py_ssize_t nargs,
                  PyObject *kwnames, const char *const *names, Py_ssize_t maxpos,
                  PyObject **out);

#endif /* MULTIGIL_WAIT_H */
