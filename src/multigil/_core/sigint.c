/* sigint.c — Ctrl-C in a call that the main thread makes into another
 * interpreter: forwarded into the call. */
#include "interp.h"
#include "wait.h"

#include <errno.h>
#include <semaphore.h>
#include <signal.h>

/* Python runs signal handlers only in the main thread of the main
 * interpreter.  While that thread runs a call in another interpreter, the
 * handler waits for the call to return: Ctrl-C during a long call arrived
 * late, and its result was lost.  So, as the executor does for its workers,
 * the interrupt is forwarded into the call: multigil's SIGINT handler runs
 * the one it replaced (Python's) and, if the main thread is inside another
 * interpreter, wakes a forwarding thread, which checks that SIGINT's Python
 * handler is the default one (it raises KeyboardInterrupt; another handler
 * runs after the call, as before) and raises KeyboardInterrupt in the main
 * thread's state there (PyThreadState_SetAsyncExc), waking it if it sleeps in
 * a multigil wait.  The call ends with it, and the caller's pending handler
 * raises KeyboardInterrupt when it returns.
 *
 * Process-global.  Owner: this file.  sigint_target (atomic) is written only
 * by the main thread, holding the GIL of the interpreter it names (or of the
 * one it leaves), so that the forwarder, holding that GIL, reads it exactly.
 * The hook (sigint_prev, hook_checked_ns, forwarder_started) is changed only
 * by the main thread; sigint_wake is a semaphore (posted from the handler).
 */
#define SIGINT_NOWHERE (-1)     /* the main thread runs in the main interpreter */

static atomic_llong sigint_target = SIGINT_NOWHERE;
static struct sigaction sigint_prev;
static atomic_int sigint_hooked = 0;
static sem_t sigint_wake;
static int forwarder_started = 0;
static int64_t hook_checked_ns = 0;

/* Check the hook again at most this often: someone may have set SIGINT's
 * handler since (signal.signal() installs Python's C handler over ours). */
#define SIGINT_HOOK_CHECK_NS 1000000000LL

static void
sigint_handler(int sig, siginfo_t *info, void *context)
{
    int saved_errno = errno;
    if (sigint_prev.sa_flags & SA_SIGINFO) {
        sigint_prev.sa_sigaction(sig, info, context);
    }
    else if (sigint_prev.sa_handler != SIG_DFL && sigint_prev.sa_handler != SIG_IGN) {
        sigint_prev.sa_handler(sig);
    }
    if (atomic_load(&sigint_target) >= 0) {
        sem_post(&sigint_wake);
    }
    errno = saved_errno;
}

/* Whether SIGINT's Python handler is signal.default_int_handler.  Attached
 * to the main interpreter. */
static int
sigint_raises_keyboard_interrupt(void)
{
    PyObject *signal = PyImport_ImportModule("signal");
    PyObject *current = signal ? PyObject_CallMethod(signal, "getsignal", "i", SIGINT) : NULL;
    PyObject *dflt = signal ? PyObject_GetAttrString(signal, "default_int_handler") : NULL;
    int is_default = current != NULL && current == dflt;
    Py_XDECREF(current);
    Py_XDECREF(dflt);
    Py_XDECREF(signal);
    PyErr_Clear();
    return is_default;
}

/* Attached to the main interpreter: raise KeyboardInterrupt in the main
 * thread inside interpreter `id`, if it is still there.  1 if done or no
 * longer needed, 0 if the main thread has moved on to another one. */
static int
forward_sigint_into(mg_state *st, int64_t id)
{
    mg_session s;
    if (mg_enter(st, id, &s) < 0) {
        PyErr_Clear();
        return 1;               /* being closed, or gone: the call is over */
    }
    int here = atomic_load(&sigint_target) == id;
    if (here) {
        unsigned long main_ident = mg_main_thread();
        if (PyThreadState_SetAsyncExc(main_ident, PyExc_KeyboardInterrupt) > 0) {
            mg_wait_interrupt(main_ident);
        }
    }
    mg_leave(&s);
    return here || atomic_load(&sigint_target) < 0;
}

static void *
sigint_forwarder(void *unused)
{
    (void)unused;
    sigset_t all;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, NULL);     /* never the one to get SIGINT */
    for (;;) {
        if (sem_wait(&sigint_wake) < 0) {
            continue;           /* EINTR */
        }
        if (atomic_load(&sigint_target) < 0) {
            continue;           /* the call returned meanwhile */
        }
        PyGILState_STATE g = PyGILState_Ensure();   /* the main interpreter */
        mg_interp *main_ip = mg_interp_current();
        mg_registry_lock();
        mg_state *st = main_ip ? main_ip->state : NULL;
        mg_registry_unlock();
        PyErr_Clear();
        if (st != NULL && sigint_raises_keyboard_interrupt()) {
            for (int tries = 0; tries < 8; tries++) {
                int64_t id = atomic_load(&sigint_target);
                if (id < 0 || forward_sigint_into(st, id)) {
                    break;
                }
            }
        }
        PyGILState_Release(g);
    }
    return NULL;
}

static void
sigint_after_fork(void)
{
    forwarder_started = 0;      /* the child has no such thread */
    atomic_store(&sigint_target, SIGINT_NOWHERE);
}

int64_t
mg_sigint_enter(int64_t id)
{
    return atomic_exchange(&sigint_target, id);
}

void
mg_sigint_hook(void)
{
    int64_t now = mg_now_ns();
    if (now - hook_checked_ns < SIGINT_HOOK_CHECK_NS && hook_checked_ns != 0) {
        return;
    }
    hook_checked_ns = now;
    struct sigaction current;
    if (sigaction(SIGINT, NULL, &current) < 0) {
        return;
    }
    if ((current.sa_flags & SA_SIGINFO) && current.sa_sigaction == sigint_handler) {
        return;                 /* still ours */
    }
    if (!(current.sa_flags & SA_SIGINFO)
        && (current.sa_handler == SIG_DFL || current.sa_handler == SIG_IGN)) {
        return;                 /* no Python handler: Ctrl-C ends the process, or nothing */
    }
    if (!forwarder_started) {
        pthread_t t;
        pthread_attr_t attr;
        if (sem_init(&sigint_wake, 0, 0) < 0) {
            return;
        }
        pthread_attr_init(&attr);
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        int rc = pthread_create(&t, &attr, sigint_forwarder, NULL);
        pthread_attr_destroy(&attr);
        if (rc != 0) {
            return;
        }
        forwarder_started = 1;
        if (!atomic_exchange(&sigint_hooked, 1)) {
            pthread_atfork(NULL, NULL, sigint_after_fork);
        }
    }
    struct sigaction ours = current;
    ours.sa_flags |= SA_SIGINFO;
    ours.sa_sigaction = sigint_handler;
    sigint_prev = current;      /* set before ours can run */
    sigaction(SIGINT, &ours, NULL);
}

