/* call.h — running code in another interpreter: the one path that
 * interpreters.call/exec/set_main_attrs (module.c) and the executor's
 * workers (worker.c) share.
 *
 *   caller                                   target interpreter
 *   ──────                                   ──────────────────
 *   mg_call_pack + mg_call_encode ─ blob ─►  mg_call_decode, mg_call_invoke
 *                                            mg_outcome_set: the result, or
 *                                            the error captured as an excinfo
 *   mg_outcome_take ◄──────────── blob ───┘
 *
 * mg_run_in() does the whole trip for one piece of work: enter, check that the
 * target has _core, run, capture the error, leave.  A worker enters once and
 * runs many calls, so it uses the same pieces around its own loop.
 */
#ifndef MULTIGIL_CALL_H
#define MULTIGIL_CALL_H

#include "base.h"
#include "blob.h"
#include "interp.h"

/*************************************************************************
 * The payload of a call                                                 *
 *************************************************************************/

/* A call, typed.  In a blob it is the tuple (task_id, chunked, fn_token,
 * fn_pickled, args, kwargs), written and read without building the tuple by
 * mg_call_encode/mg_call_decode, the only code that knows that layout (the
 * executor's queue carries it, and tests build one by hand).
 *
 * A function crosses as (fn_token, fn_pickled).  Callables importable by name
 * get a process-unique token and are pickled once per sending interpreter;
 * the receiver keeps the unpickled function by token.  Callables sent by
 * value (lambdas, closures, functions of __main__) are kept by content by
 * multigil._pickler.function_ref, under a token too: pickled once, their
 * payload travels with every call and is rebuilt once per receiver.  Token
 * 0: not kept.  fn_pickled is bytes, a SharedBuffer (a big payload, shared
 * instead of copied), or (shared object, method name). */
typedef struct {
    long long task_id;      /* > 0: an executor task; 0: a direct call */
    int chunked;            /* fn applies to each argument tuple of the list args */
    /* Owned references (NULL when empty): */
    PyObject *fn_token;     /* int */
    PyObject *fn_pickled;
    PyObject *args;         /* a tuple (chunked: a list of tuples) */
    PyObject *kwargs;       /* a dict, or None */
} mg_call;

/* Where running a call failed, told to the caller with the outcome: whether
 * the call's own code ran (FUNCTION, ARGUMENTS: it did not) or not. */
typedef enum {
    MG_STAGE_NONE = 0,      /* it did not fail */
    MG_STAGE_FUNCTION,      /* rebuilding the function (importing its module included) */
    MG_STAGE_ARGUMENTS,     /* rebuilding the arguments */
    MG_STAGE_CALL,          /* the function raised */
    MG_STAGE_RESULT,        /* the result could not be encoded (or rebuilt by the caller) */
} mg_stage;

/* Build the call fn(*args, **kwargs) in the caller.  0, or -1 with an
 * exception set (NotShareableError if fn cannot cross). */
int mg_call_pack(mg_state *st, mg_call *c, long long task_id, int chunked, PyObject *fn,
                 PyObject *args, PyObject *kwargs);
/* Encode `c` into `out` (flags as mg_encode: with MG_ENCODE_BORROW, keep `c`
 * until the blob is decoded). */
int mg_call_encode(mg_state *st, const mg_call *c, mg_blob *out, int flags);
/* Rebuild a call from a blob in the current interpreter: its header (task
 * id, chunked flag, function) first, then its payload (the arguments).  0, or
 * -1 with an exception set (TypeError if the blob holds something else).  On
 * -1, *failed says what failed after the task id came through
 * (MG_STAGE_FUNCTION, MG_STAGE_ARGUMENTS; c->task_id is then that id), so
 * that the caller can report the failure as that task's; it is
 * MG_STAGE_NONE for a blob that names no task. */
int mg_call_decode(mg_state *st, const mg_blob *b, mg_call *c, mg_stage *failed);
void mg_call_clear(mg_call *c);

/* "function", "arguments", "call", "result"; NULL for MG_STAGE_NONE. */
const char *mg_stage_name(mg_stage stage);

/* In the target: resolve the function and call it (a chunk: apply it to each
 * argument tuple, in C).  A callable that may need a frame (eval, exec,
 * globals, ...) is called in module-level code whose namespace is __main__'s.
 * The result (a new reference), or NULL with its exception set and *stage
 * (if not NULL) set to MG_STAGE_FUNCTION or MG_STAGE_CALL. */
PyObject *mg_call_invoke(mg_state *sub, const mg_call *c, mg_stage *stage);
/* In the target, when what was sent (`what`: "args", "func", ...) could not
 * be decoded there: NotShareableError "<what> not shareable", as the stdlib
 * says it, the decoding error as its __cause__ -- unless that error is an
 * ImportError, MemoryError or interrupt, which stays.  Returns NULL. */
PyObject *mg_not_rebuilt(mg_state *sub, const char *what);

/*************************************************************************
 * Outcomes                                                              *
 *************************************************************************/

/* What came of running code in the target, encoded there for the caller. */
typedef struct {
    mg_blob value;      /* the result, or the excinfo of its error */
    int ok;             /* 1: value is the result; 0: an excinfo */
    int fatal;          /* the error was SystemExit or KeyboardInterrupt */
    mg_stage stage;     /* where it failed (MG_STAGE_NONE when ok); at any stage
                         * but MG_STAGE_CALL the error is the crossing's (what
                         * was sent could not be rebuilt, or the result could
                         * not be encoded), not the code's */
} mg_outcome;

void mg_outcome_init(mg_outcome *o);
/* In the target: encode `result` (a reference it steals) with `flags` (as
 * mg_encode: MG_ENCODE_LEND where the target runs the releases owed to it
 * soon), or, when it is NULL or cannot be encoded, the exception being
 * raised, as the tuple built by multigil._remote.capture() (the exception is
 * cleared).  `stage` is where a NULL result failed; a result that cannot be
 * encoded is MG_STAGE_RESULT.  Never fails: a description that cannot be
 * built falls back to plain strings. */
void mg_outcome_set(mg_state *sub, PyObject *result, mg_stage stage, mg_outcome *o, int flags);
/* In the caller: the value (result or excinfo), rebuilt; the blob is
 * cleared, `ok` and `fatal` stay. */
PyObject *mg_outcome_take(mg_state *st, mg_outcome *o);

/*************************************************************************
 * The one way in                                                        *
 *************************************************************************/

/* Work run inside the target interpreter (attached, with its _core state
 * `sub`), reading `in` (or NULL) and `arg`: a new reference to the result,
 * or NULL with the exception set and *stage (MG_STAGE_CALL when the job is
 * called) saying where it failed: a job that fails because what it was sent
 * cannot be rebuilt there sets MG_STAGE_FUNCTION or MG_STAGE_ARGUMENTS. */
typedef PyObject *(*mg_job)(mg_state *sub, const mg_blob *in, const void *arg, mg_stage *stage);

/* Run `job` in interpreter `id` and leave its outcome in *out (initialised
 * here).  `in` (may be NULL) is cleared while still in the target, so that
 * zero-copy exports of the caller's buffers are released as soon as this
 * returns.  Returns 0, or -1 with an exception set in the caller: the target
 * does not exist or cannot be entered, or has no _core (mg_no_core). */
int mg_run_in(mg_state *st, int64_t id, mg_job job, mg_blob *in, const void *arg,
              mg_outcome *out);

/* Raise, in the caller, the InterpreterError for a target `id` whose
 * session found no _core state there (mg_session_state() is NULL; leave it
 * first).  Returns NULL. */
PyObject *mg_no_core(mg_state *st, int64_t id);

/* multigil._remote in the current interpreter, imported on first use
 * (borrowed), or NULL with the import error. */
PyObject *mg_remote(mg_state *st);

#endif /* MULTIGIL_CALL_H */
