/* interp.h — the interpreter registry, entering an interpreter from any
 * thread, creating and closing interpreters.
 *
 * Every interpreter multigil sees has one registry entry (mg_interp): the ones
 * it created (it closes them), the main one, and others that imported _core.
 * A thread enters an interpreter through its cached thread state for it.
 *
 * The layer's files: interp.c (the registry, the thread-state cache, entering
 * and leaving, deferred releases), lifecycle.c (creating and closing, the
 * threads that run in an interpreter, their frames) and sigint.c (Ctrl-C in a
 * call made from the main thread).  What they share is at the end of this
 * header; other layers use only the functions above it.
 */
#ifndef MULTIGIL_INTERP_H
#define MULTIGIL_INTERP_H

#include "base.h"

/*************************************************************************
 * Registry                                                              *
 *************************************************************************/

/* The registry entry of the interpreter the calling thread is attached to;
 * registered on first use.  NULL only with MemoryError set. */
mg_interp *mg_interp_current(void);
int64_t mg_interp_id(const mg_interp *ip);

/* Register the interpreter that is initialising _core, with its state; and
 * forget that state when the module is freed.  (Called by module init.) */
int mg_interp_init(mg_state *st);
void mg_interp_forget(mg_state *st);

/* [(id, whence)] of every live interpreter, oldest first. */
PyObject *mg_interp_list(void);
/* -1: no such interpreter; else the number of threads inside it (and its
 * `whence`, if asked). */
long mg_interp_busy(int64_t id, const char **whence);
/* Whether some thread runs in interpreter `id`: one that entered it, or one
 * it started itself.  1 or 0, or -1 with an exception set (no such
 * interpreter).  `st` is the caller's state. */
int mg_interp_running(mg_state *st, int64_t id);

/* {thread id: frame} (or {thread id: the exception being handled}, with
 * `exceptions`) of the threads of the current interpreter only: what
 * sys._current_frames() and sys._current_exceptions() give, without reading
 * the other interpreters' frames, which CPython 3.12-3.14 turn into frame
 * objects with the caller's allocator.  A new dict, or NULL. */
PyObject *mg_interp_thread_frames(int exceptions);

/*************************************************************************
 * Releasing objects kept alive for other interpreters                   *
 *************************************************************************/

/* Run `fn(arg)` later, attached to interpreter `owner_id` (the owner of the
 * PyObject that `arg` keeps alive): only the owner may drop it.  Returns 0 if
 * queued, -1 if the owner is gone (then fn is not called and arg must be
 * leaked or freed without Python API).  Thread-safe, needs no GIL. */
int mg_interp_defer(int64_t owner_id, void (*fn)(void *), void *arg);
/* Run what was deferred to the current interpreter.  Needs its GIL. */
void mg_interp_run_deferred(void);
/* The same for `ip`, the registry entry of the interpreter the calling thread
 * is attached to (a module state's `interp`, a session's): one atomic load
 * when nothing is owed.  For threads that stay attached to an interpreter and
 * never enter it again (the executor's workers). */
void mg_interp_run_deferred_of(mg_interp *ip);
/* Count of live exports of the owner's objects to other interpreters; an
 * interpreter with live exports cannot be closed. */
void mg_interp_exports_add(int64_t owner_id, long delta);
/* That count for interpreter `id` (releases deferred but not yet run
 * included), or -1 if there is no such interpreter. */
long mg_interp_exports(int64_t id);

/*************************************************************************
 * Entering, creating, closing                                           *
 *************************************************************************/

typedef struct mg_tnode mg_tnode;  /* a cached thread state (below) */

/* One visit of the calling thread to an interpreter. */
typedef struct {
    mg_interp *interp;
    PyThreadState *saved;   /* the caller's thread state; NULL if no switch */
    mg_tnode *node;        /* the cached thread state entered; NULL if no switch */
    int c_budget, py_budget; /* 3.12/3.13: the entered state's own recursion budgets */
    int64_t sigint_prev;    /* main thread: where Ctrl-C went before; else MG_NOT_MAIN */
} mg_session;

/* Nested entries of one OS thread (A calls into B, which calls into C, ...)
 * share its one C stack: past this depth mg_enter raises RecursionError. */
#define MG_MAX_NESTED_ENTRIES 200

/* Attach the calling thread to interpreter `id` (its cached thread state) and
 * mark the interpreter busy.  Returns -1 with an exception set in the caller's
 * interpreter (`st` is the caller's state): InterpreterNotFoundError, or
 * RecursionError past MG_MAX_NESTED_ENTRIES or when the caller's recursion
 * budgets are spent (3.12/3.13: the entered state gets no more of them than
 * the caller has left).  Every successful mg_enter is paired with mg_leave on every path
 * (tests/test_c_layers.py checks it).  A thread that handles signals (the
 * main thread) is watched for Ctrl-C while it is inside: KeyboardInterrupt is
 * raised inside the call, at its next bytecode or in multigil's own waits. */
int mg_enter(mg_state *st, int64_t id, mg_session *s);
void mg_leave(mg_session *s);
/* The _core state inside the entered interpreter, or NULL if _core is not
 * imported there (no exception set).  Its registry entry is s->interp. */
mg_state *mg_session_state(const mg_session *s);

/* Create an isolated, own-GIL interpreter and run `bootstrap` (Python source)
 * in it.  Returns its id, or -1 with an exception set (InterpreterError with
 * the bootstrap's error, if it raised). */
int64_t mg_interp_create(mg_state *st, const char *bootstrap);
/* Replace every cached thread state of interpreter `id` (one multigil
 * created) by one new thread state, the calling thread's: what the old ones
 * held (the context of contextvars, ...) goes.  A thread inside is waited
 * for.  0, or -1 with InterpreterError set (someone stayed inside 10 s). */
int mg_interp_renew_thread_states(mg_state *st, int64_t id);
/* How mg_interp_close treats what still runs in the interpreter.  Without
 * flags, a thread that entered it (a call from another thread) makes the
 * close fail at once; threads it started itself are waited for until the
 * deadline. */
#define MG_CLOSE_WAIT_CALLERS   0x1  /* wait for the threads that entered it too */
#define MG_CLOSE_INTERRUPT      0x2  /* raise SystemExit in every thread running in it */
#define MG_CLOSE_ABANDON_EXPORTS 0x4 /* end it although it lends buffers: their memory
                                      * stays allocated (leaked), the views stay valid */

/* Close interpreter `id` (one multigil created), waiting until `deadline`
 * (mg_now_ns() clock) for what runs in it as `flags` say.  0, or -1 with
 * InterpreterError set, naming the threads that still run in it or saying
 * what else prevents it (it lends buffers, it is the current one, ...). */
int mg_interp_close(mg_state *st, int64_t id, int64_t deadline, int flags);


/*************************************************************************
 * Shared by the files of this layer only                                *
 *************************************************************************/

typedef struct mg_deferred {
    void (*fn)(void *);
    void *arg;
    struct mg_deferred *next;
} mg_deferred;

struct mg_interp {
    int64_t id;
    PyInterpreterState *istate;
    /* The _core state inside this interpreter; dereferenced only while
     * attached to it.  NULL until _core is imported there. */
    mg_state *state;
    const char *whence;
    int owned;            /* created by multigil: closed by multigil */
    int closing;          /* close in progress: nobody may enter */
    atomic_long busy;     /* threads inside through mg_enter */
    atomic_int close_waits; /* a close waits for `busy` to drop (busy_cond) */
    long exports;         /* live zero-copy exports of its objects */
    long ngone;           /* nodes whose thread has exited */
    mg_tnode *nodes;      /* cached thread states of this interpreter */
    mg_deferred *deferred;
    atomic_int has_deferred;
    struct mg_interp *next;
};

struct mg_tnode {
    mg_interp *interp;    /* NULL once the interpreter was closed */
    PyThreadState *tstate;
    unsigned long ident;  /* its thread's PyThread_get_thread_ident() */
    atomic_int inside;    /* entries of its thread now running (written by its thread) */
    int thread_gone;
    mg_tnode *next_in_thread;
    mg_tnode *next_in_interp;
};


/* The registry and the thread-state cache (interp.c).  Lock: the registry
 * lock guards every field of every mg_interp and mg_tnode, and the lists,
 * except the atomics and the thread-local list heads, which only their thread
 * reads or writes.  mg_registry_init() before any of these. */
void mg_registry_init(void);
void mg_registry_lock(void);
void mg_registry_unlock(void);
mg_interp *mg_registry_find_locked(int64_t id);
mg_interp *mg_registry_add_locked(PyInterpreterState *istate, const char *whence, int owned);
/* Unlink and free an entry (and what was deferred to it, unrun). */
void mg_registry_remove_locked(mg_interp *ip);
/* The calling thread's cached thread state for `ip` (made on first use);
 * NULL without memory. */
mg_tnode *mg_tnode_for(mg_interp *ip);
/* Make `n` the calling thread's cached state `ts` for `ip`. */
void mg_tnode_add_locked(mg_interp *ip, mg_tnode *n, PyThreadState *ts);
/* Undo the `busy` mark of an entry; wakes a close that waits for it. */
void mg_interp_release(mg_interp *ip);
/* Wait, with the caller's GIL released, until nobody is inside `ip` (whose
 * close is in progress: nobody new enters) or `deadline`.  1 if empty. */
int mg_interp_wait_idle(mg_interp *ip, int64_t deadline);

/* Ctrl-C in calls from the main thread (sigint.c). */
#define MG_NOT_MAIN (-2)        /* mg_session.sigint_prev of another thread */
/* Main thread, about to enter another interpreter: make sure SIGINT reaches
 * sigint.c's handler (re-checked at most once a second). */
void mg_sigint_hook(void);
/* Main thread: it runs in interpreter `id` now (-1: the main one).  Called
 * holding the GIL of the interpreter entered, or of the one left.  Returns
 * where it ran before. */
int64_t mg_sigint_enter(int64_t id);

#endif /* MULTIGIL_INTERP_H */
