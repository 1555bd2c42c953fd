/* interp.h — the interpreter registry, and entering an interpreter from any
 * thread.
 *
 * Every interpreter multigil sees has one registry entry (mg_interp): the ones
 * it created (it closes them), the main one, and others that imported _core.
 * A thread enters an interpreter through its cached thread state for it.
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

/* One visit of the calling thread to an interpreter. */
typedef struct {
    mg_interp *interp;
    PyThreadState *saved;   /* the caller's thread state; NULL if no switch */
} mg_session;

/* Attach the calling thread to interpreter `id` (its cached thread state) and
 * mark the interpreter busy.  Returns -1 with an exception set in the caller's
 * interpreter (`st` is the caller's state).  Every successful mg_enter is
 * paired with mg_leave on every path (tests/test_c_layers.py checks it). */
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
 * held (the context of contextvars, ...) goes.  Nobody may be inside.  0, or
 * -1 with InterpreterError set. */
int mg_interp_renew_thread_states(mg_state *st, int64_t id);
/* Close interpreter `id` (one multigil created).  0, or -1 with
 * InterpreterError (it is busy, lends buffers, ...) set. */
int mg_interp_close(mg_state *st, int64_t id);

#endif /* MULTIGIL_INTERP_H */
