/* call.c — running code in another interpreter: functions crossing, the
 * typed payload of a call, outcomes, and mg_run_in. */
#include "call.h"
#include "errors.h"
#include "pickle.h"
#include "xidata.h"
#include "wait.h"

PyObject *
mg_remote(mg_state *st)
{
    if (st->remote_module == NULL) {
        st->remote_module = PyImport_ImportModule("multigil._remote");
    }
    return st->remote_module;
}

/*************************************************************************
 * Functions crossing interpreters                                       *
 *************************************************************************/

/* Both caches are cleared when they reach this size, and a receiver's when
 * the pickles of what it keeps reach FN_CACHE_BYTES: a program that makes
 * functions without end must not grow without end. */
#define FN_CACHE_MAX 4096
#define FN_CACHE_BYTES ((Py_ssize_t)64 * 1024 * 1024)

/* The cache dict in *slot, made if there is none.  Looked up again after
 * any call into Python: that may have dropped the caches
 * (_core._forget_functions, which _pickler calls when its own cache is full). */
static PyObject *
cache(PyObject **slot)
{
    if (*slot == NULL) {
        *slot = PyDict_New();
    }
    return *slot;
}

/* Whether `fn`, kept by object with `guard` (_pickler.function_ref), would
 * still pickle to the same content:
 *   (code, defaults, kwdefaults): a function of __main__ without closure or
 *       attributes (its globals are the receiver's business) that has them;
 *   (func, args, keywords, values of keywords): a functools.partial, of plain
 *       values that never change, that still holds these very objects. */
static int
still_the_same(PyObject *fn, PyObject *guard)
{
    if (!PyTuple_Check(guard)) {
        return 0;
    }
    PyObject *const *g = &PyTuple_GET_ITEM(guard, 0);
    if (PyTuple_GET_SIZE(guard) == 3) {
        if (!PyFunction_Check(fn)) {
            return 0;
        }
        PyObject *defaults = PyFunction_GET_DEFAULTS(fn);
        PyObject *kwdefaults = PyFunction_GET_KW_DEFAULTS(fn);
        PyObject *attrs = ((PyFunctionObject *)fn)->func_dict;
        return PyFunction_GET_CODE(fn) == g[0] && (defaults ? defaults : Py_None) == g[1] &&
               (kwdefaults ? kwdefaults : Py_None) == g[2] &&
               PyFunction_GET_CLOSURE(fn) == NULL &&
               (attrs == NULL || PyDict_GET_SIZE(attrs) == 0);
    }
    if (PyTuple_GET_SIZE(guard) != 4 || !PyDict_Check(g[2]) || !PyTuple_Check(g[3])) {
        return 0;
    }
    static const char *const names[] = {"func", "args", "keywords"};
    int same = 1;
    for (int i = 0; i < 3 && same; i++) {
        PyObject *now = PyObject_GetAttrString(fn, names[i]);
        if (now == NULL) {
            PyErr_Clear();
            return 0;
        }
        same = now == g[i];
        Py_DECREF(now);
    }
    if (!same || PyDict_GET_SIZE(g[2]) != PyTuple_GET_SIZE(g[3])) {
        return 0;
    }
    Py_ssize_t pos = 0, i = 0;
    PyObject *key, *value;
    while (PyDict_Next(g[2], &pos, &key, &value)) {
        if (value != PyTuple_GET_ITEM(g[3], i++)) {
            return 0;
        }
    }
    return 1;
}

/* (fn_token, fn_pickled) for `fn`: from the cache of callables kept by
 * object, or from _remote.function_ref (multigil._pickler), which keeps the
 * callables it sends by content itself. */
static PyObject *
function_ref(mg_state *st, PyObject *fn)
{
    if (cache(&st->ref_by_fn) == NULL) {
        return NULL;
    }
    PyObject *ref = PyDict_GetItemWithError(st->ref_by_fn, fn);
    if (ref && (PyTuple_GET_SIZE(ref) == 2 || still_the_same(fn, PyTuple_GET_ITEM(ref, 2)))) {
        return PyTuple_GetSlice(ref, 0, 2);
    }
    PyErr_Clear();   /* unhashable callables are simply not cached */
    PyObject *remote = mg_remote(st);
    if (remote == NULL) {
        return NULL;
    }
    /* -> (by_object, token, payload); the token offered is used if fn is new.
     * by_object: True (by name), or a guard (kept while still_the_same). */
    PyObject *res = PyObject_CallMethod(remote, "function_ref", "OL", fn,
                                        (long long)mg_next_id());
    if (res == NULL) {
        return NULL;
    }
    if (!PyTuple_Check(res) || PyTuple_GET_SIZE(res) != 3) {
        Py_DECREF(res);
        PyErr_SetString(PyExc_SystemError, "_remote.function_ref() must return a 3-tuple");
        return NULL;
    }
    PyObject *by_object = PyTuple_GET_ITEM(res, 0);
    ref = PyTuple_GetSlice(res, 1, 3);
    PyObject *kept = NULL;
    if (ref != NULL && by_object == Py_True) {
        kept = Py_NewRef(ref);
    }
    else if (ref != NULL && PyTuple_Check(by_object)) {
        kept = PyTuple_Pack(3, PyTuple_GET_ITEM(res, 1), PyTuple_GET_ITEM(res, 2), by_object);
    }
    Py_DECREF(res);
    /* A strong reference: clearing it may run code that drops the caches. */
    PyObject *by_fn = kept != NULL ? Py_XNewRef(cache(&st->ref_by_fn)) : NULL;
    if (by_fn != NULL) {
        if (PyDict_GET_SIZE(by_fn) >= FN_CACHE_MAX) {
            PyDict_Clear(by_fn);
        }
        if (PyDict_SetItem(by_fn, fn, kept) < 0) {
            PyErr_Clear();
        }
        Py_DECREF(by_fn);
    }
    Py_XDECREF(kept);
    if (ref != NULL) {
        PyErr_Clear();  /* a guard that could not be kept costs a call next time */
    }
    return ref;
}

/* The function for (token, pickled) in the current interpreter. */
static PyObject *
function_resolve(mg_state *st, PyObject *token, PyObject *pickled)
{
    int cacheable = PyObject_IsTrue(token);
    if (cacheable) {
        if (cache(&st->fn_by_token) == NULL) {
            return NULL;
        }
        PyObject *fn = PyDict_GetItemWithError(st->fn_by_token, token);
        if (fn) {
            return Py_NewRef(fn);
        }
        if (PyErr_Occurred()) {
            return NULL;
        }
    }
    if (PyTuple_Check(pickled) && PyTuple_GET_SIZE(pickled) == 2) {
        /* (shared object, method name): see _pickler.function_ref */
        return PyObject_GetAttr(PyTuple_GET_ITEM(pickled, 0), PyTuple_GET_ITEM(pickled, 1));
    }
    PyObject *fn = mg_pickle_loads(st, pickled);    /* bytes, or a SharedBuffer */
    /* A strong reference: clearing it may run code that drops the caches. */
    PyObject *by_token = fn && cacheable ? Py_XNewRef(cache(&st->fn_by_token)) : NULL;
    if (fn && cacheable && by_token == NULL) {
        PyErr_Clear();      /* not kept: rebuilt again next time */
    }
    else if (by_token != NULL) {
        /* What the kept functions hold is about what their pickles held. */
        Py_ssize_t size = PyObject_Length(pickled);
        if (size < 0) {
            PyErr_Clear();
            size = 0;
        }
        if (PyDict_GET_SIZE(by_token) >= FN_CACHE_MAX ||
            st->fn_cache_bytes + size > FN_CACHE_BYTES) {
            PyDict_Clear(by_token);
            st->fn_cache_bytes = 0;
        }
        if (size <= FN_CACHE_BYTES) {
            if (PyDict_SetItem(by_token, token, fn) < 0) {
                Py_CLEAR(fn);
            }
            st->fn_cache_bytes += size;
        }
        Py_DECREF(by_token);
    }
    return fn;
}

/*************************************************************************
 * The payload of a call                                                 *
 *************************************************************************/

/* The items of a call in its blob, in order. */
enum { W_TASK_ID, W_CHUNKED, W_FN_TOKEN, W_FN_PICKLED, W_ARGS, W_KWARGS, W_SIZE };

/* The checks of a call's items, one message each: 0, or -1 with TypeError.
 * The header (task id, chunked flag, function token) and the payload (the
 * arguments) are checked apart, as they are decoded.  The task id and
 * chunked flag are checked only when decoded (the caller gives C values for
 * them). */
static int
check_failed(const char *bad, PyObject *got)
{
    PyErr_Format(PyExc_TypeError, "%s, not %.100s", bad, Py_TYPE(got)->tp_name);
    return -1;
}

static int
header_check(PyObject *const *items, int decoded)
{
    if (decoded && !PyLong_Check(items[W_TASK_ID])) {
        return check_failed("the task id of a call must be an int", items[W_TASK_ID]);
    }
    if (decoded && !PyBool_Check(items[W_CHUNKED])) {
        return check_failed("the chunked flag of a call must be a bool", items[W_CHUNKED]);
    }
    if (!PyLong_Check(items[W_FN_TOKEN])) {
        return check_failed("the function token of a call must be an int", items[W_FN_TOKEN]);
    }
    return 0;
}

static int
payload_check(PyObject *const *items)
{
    if (items[W_CHUNKED] == Py_False && !PyTuple_Check(items[W_ARGS])) {
        return check_failed("the arguments of a call must be a tuple", items[W_ARGS]);
    }
    if (items[W_KWARGS] != Py_None && !PyDict_Check(items[W_KWARGS])) {
        return check_failed("the keyword arguments of a call must be a dict or None",
                            items[W_KWARGS]);
    }
    return 0;
}

static void
call_init(mg_call *c)
{
    c->task_id = 0;
    c->chunked = 0;
    c->fn_token = c->fn_pickled = c->args = c->kwargs = NULL;
}

int
mg_call_pack(mg_state *st, mg_call *c, long long task_id, int chunked, PyObject *fn,
             PyObject *args, PyObject *kwargs)
{
    call_init(c);
    PyObject *ref = function_ref(st, fn);
    if (ref == NULL) {
        return -1;
    }
    /* Checked here as the receiver checks them: a bad one fails in the caller. */
    PyObject *const items[W_SIZE] = {
        [W_TASK_ID] = NULL, [W_CHUNKED] = chunked ? Py_True : Py_False,
        [W_FN_TOKEN] = PyTuple_GET_ITEM(ref, 0), [W_FN_PICKLED] = PyTuple_GET_ITEM(ref, 1),
        [W_ARGS] = args, [W_KWARGS] = kwargs,
    };
    if (header_check(items, 0) < 0 || payload_check(items) < 0) {
        Py_DECREF(ref);
        return -1;
    }
    c->task_id = task_id;
    c->chunked = chunked != 0;
    c->fn_token = Py_NewRef(items[W_FN_TOKEN]);
    c->fn_pickled = Py_NewRef(items[W_FN_PICKLED]);
    c->args = Py_NewRef(args);
    c->kwargs = Py_NewRef(kwargs);
    Py_DECREF(ref);
    return 0;
}

int
mg_call_encode(mg_state *st, const mg_call *c, mg_blob *out, int flags)
{
    PyObject *task_id = PyLong_FromLongLong(c->task_id);
    if (task_id == NULL) {
        return -1;
    }
    PyObject *const items[W_SIZE] = {
        [W_TASK_ID] = task_id,
        [W_CHUNKED] = c->chunked ? Py_True : Py_False,
        [W_FN_TOKEN] = c->fn_token,
        [W_FN_PICKLED] = c->fn_pickled,
        [W_ARGS] = c->args,
        [W_KWARGS] = c->kwargs,
    };
    int rc = mg_encode_items(st, items, W_SIZE, out, flags);
    Py_DECREF(task_id);
    return rc;
}

int
mg_call_decode(mg_state *st, const mg_blob *b, mg_call *c, mg_stage *failed)
{
    PyObject *items[W_SIZE], *other;
    call_init(c);
    *failed = MG_STAGE_NONE;
    int rc = mg_decode_items(st, b, W_SIZE, items, &other);
    if (rc == 1) {
        PyErr_Format(PyExc_TypeError,
                     "a call is the tuple (task_id, chunked, fn_token, fn_pickled, args, "
                     "kwargs) that submit_task() builds, not %.100s", Py_TYPE(other)->tp_name);
        Py_DECREF(other);
        return -1;
    }
    /* The items are rebuilt in order: once the task id and the chunked flag
     * came through, the call names its task, whatever fails after them. */
    long long task_id = -1;
    if (items[W_CHUNKED] != NULL && PyLong_Check(items[W_TASK_ID]) &&
        PyBool_Check(items[W_CHUNKED])) {
        PyObject *error = PyErr_GetRaisedException();     /* NULL if rc == 0 */
        task_id = PyLong_AsLongLong(items[W_TASK_ID]);
        PyErr_Clear();
        PyErr_SetRaisedException(error);
    }
    if (task_id < 0) {
        if (rc == 0 && header_check(items, 1) == 0) {
            PyErr_SetString(PyExc_ValueError, "the task id of a call must be >= 0");
        }
        goto fail;
    }
    c->task_id = task_id;
    if (rc < 0) {
        /* the first item that did not come through is where it failed */
        *failed = items[W_FN_PICKLED] == NULL ? MG_STAGE_FUNCTION : MG_STAGE_ARGUMENTS;
        goto fail;
    }
    if (header_check(items, 1) < 0) {
        *failed = MG_STAGE_FUNCTION;
        goto fail;
    }
    if (payload_check(items) < 0) {
        *failed = MG_STAGE_ARGUMENTS;
        goto fail;
    }
    c->chunked = items[W_CHUNKED] == Py_True;
    c->fn_token = items[W_FN_TOKEN];          /* the references move */
    c->fn_pickled = items[W_FN_PICKLED];
    c->args = items[W_ARGS];
    c->kwargs = items[W_KWARGS];
    Py_DECREF(items[W_TASK_ID]);
    Py_DECREF(items[W_CHUNKED]);
    return 0;
fail:
    for (int i = 0; i < W_SIZE; i++) {
        Py_XDECREF(items[i]);
    }
    return -1;
}

void
mg_call_clear(mg_call *c)
{
    Py_CLEAR(c->fn_token);
    Py_CLEAR(c->fn_pickled);
    Py_CLEAR(c->args);
    Py_CLEAR(c->kwargs);
}

const char *
mg_stage_name(mg_stage stage)
{
    switch (stage) {
    case MG_STAGE_FUNCTION:
        return "function";
    case MG_STAGE_ARGUMENTS:
        return "arguments";
    case MG_STAGE_CALL:
        return "call";
    case MG_STAGE_RESULT:
        return "result";
    default:
        return NULL;
    }
}

/* A chunk of a map: fn(*item) for each argument tuple of the list `items`.
 * (results, None), or (the results before the item that raised, excinfo).
 * SystemExit and KeyboardInterrupt are not caught: they end the worker's
 * interpreter (mg_outcome_set marks them fatal). */
static PyObject *
run_chunk(mg_state *sub, PyObject *fn, PyObject *items)
{
    if (!PyList_Check(items)) {
        return PyErr_Format(PyExc_TypeError, "the items of a chunk must be a list, not %.100s",
                            Py_TYPE(items)->tp_name);
    }
    Py_ssize_t n = PyList_GET_SIZE(items);
    PyObject *results = PyList_New(n);
    if (results == NULL) {
        return NULL;
    }
    Py_ssize_t i = 0;
    for (; i < n; i++) {
        PyObject *args = PySequence_Tuple(PyList_GET_ITEM(items, i));
        PyObject *r = args ? PyObject_Call(fn, args, NULL) : NULL;
        Py_XDECREF(args);
        if (r == NULL) {
            break;
        }
        PyList_SET_ITEM(results, i, r);
    }
    if (i == n) {
        PyObject *res = PyTuple_Pack(2, results, Py_None);
        Py_DECREF(results);
        return res;
    }
    PyObject *done = PyList_GetSlice(results, 0, i);
    Py_DECREF(results);         /* the slots after i are NULL: list_dealloc skips them */
    if (done == NULL || PyErr_ExceptionMatches(PyExc_SystemExit) ||
        PyErr_ExceptionMatches(PyExc_KeyboardInterrupt)) {
        Py_XDECREF(done);
        return NULL;
    }
    PyObject *exc = PyErr_GetRaisedException();
    PyObject *remote = mg_remote(sub);
    PyObject *info = remote ? PyObject_CallMethod(remote, "capture", "O", exc) : NULL;
    Py_DECREF(exc);
    PyObject *res = info ? PyTuple_Pack(2, done, info) : NULL;
    Py_XDECREF(info);
    Py_DECREF(done);
    return res;
}

/* The call itself, in whatever frame is current. */
static PyObject *
call_now(mg_state *sub, PyObject *fn, const mg_call *c)
{
    if (c->chunked) {
        return run_chunk(sub, fn, c->args);
    }
    return PyObject_Call(fn, c->args, c->kwargs == Py_None ? NULL : c->kwargs);
}

/* Some C callables need a frame: eval, exec, globals, locals, vars and dir
 * raise SystemError "frame does not exist" without one.  A call that may
 * reach them runs in a frame of its own: module-level code whose globals and
 * locals are __main__'s dict, which is what those builtins use in CPython
 * 3.14 when there is no frame.  Python functions bring their own frame (and
 * globals), and other builtin functions need none: those are called directly,
 * so that a call of them costs nothing more.  Anything else (a class, a
 * functools.partial, a callable object) may call those builtins, and gets the
 * frame.
 *
 * The code is `<const>()`, its constant the C function run_pending below,
 * which runs the call that call_in_main_frame left pending for this thread
 * (the code cannot name it: any name would show in __main__'s namespace). */

/* Process-global constant table (read-only, no lock needed). */
static const char *const frame_builtins[] = {"eval", "exec", "globals", "locals", "vars", "dir"};

/* A call left for run_pending, on call_in_main_frame's stack. */
typedef struct {
    const mg_call *call;        /* NULL once run_pending took it */
    PyObject *fn;               /* borrowed */
    PyObject *result;           /* what it returned (a new reference) */
} pending_call;

/* The call this thread's main-frame code runs next.  Thread-local: each
 * thread runs its own calls, and calls nested in one (through another
 * interpreter) save and restore it.  Owner: the thread itself; no lock. */
static _Thread_local pending_call *pending = NULL;

static int
needs_frame(PyObject *fn)
{
    if (PyFunction_Check(fn)) {
        return 0;
    }
    if (PyMethod_Check(fn)) {
        return !PyFunction_Check(PyMethod_GET_FUNCTION(fn));
    }
    if (!PyCFunction_Check(fn)) {
        return 1;
    }
    const char *name = ((PyCFunctionObject *)fn)->m_ml->ml_name;
    for (size_t i = 0; i < sizeof(frame_builtins) / sizeof(frame_builtins[0]); i++) {
        if (strcmp(name, frame_builtins[i]) == 0) {
            PyObject *self = PyCFunction_GET_SELF(fn);
            const char *mod = self && PyModule_Check(self) ? PyModule_GetName(self) : NULL;
            if (mod == NULL) {
                PyErr_Clear();
            }
            return mod != NULL && strcmp(mod, "builtins") == 0;
        }
    }
    return 0;
}

static PyObject *
run_pending(PyObject *capsule, PyObject *Py_UNUSED(ignored))
{
    mg_state *sub = PyCapsule_GetPointer(capsule, NULL);
    pending_call *p = pending;
    if (sub == NULL || p == NULL || p->call == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "multigil: no call is pending");
        return NULL;
    }
    const mg_call *c = p->call;
    p->call = NULL;             /* taken: it runs once */
    PyObject *result = call_now(sub, p->fn, c);
    if (result == NULL) {
        return NULL;
    }
    Py_XSETREF(p->result, result);
    Py_RETURN_NONE;
}

static PyMethodDef run_pending_def = {
    "run_pending", run_pending, METH_NOARGS, "Run the call multigil left pending (internal).",
};

static PyObject *
main_frame_code(mg_state *sub)
{
    if (sub->main_frame_code != NULL) {
        return sub->main_frame_code;
    }
    PyObject *remote = mg_remote(sub);
    if (remote == NULL) {
        return NULL;
    }
    /* The capsule holds a raw pointer to the state that owns the code. */
    PyObject *capsule = PyCapsule_New(sub, NULL, NULL);
    PyObject *invoke = capsule ? PyCFunction_New(&run_pending_def, capsule) : NULL;
    Py_XDECREF(capsule);
    if (invoke == NULL) {
        return NULL;
    }
    PyObject *code = PyObject_CallMethod(remote, "main_frame_code", "O", invoke);
    Py_DECREF(invoke);
    /* That call may have let another thread of this interpreter build it too. */
    if (code != NULL && sub->main_frame_code == NULL) {
        sub->main_frame_code = code;
    }
    else {
        Py_XDECREF(code);
    }
    return code == NULL ? NULL : sub->main_frame_code;
}

static PyObject *
call_in_main_frame(mg_state *sub, PyObject *fn, const mg_call *c)
{
    PyObject *code = main_frame_code(sub);
    PyObject *main_mod = code ? PyImport_AddModule("__main__") : NULL;     /* borrowed */
    if (main_mod == NULL) {
        return NULL;
    }
    PyObject *ns = PyModule_GetDict(main_mod);
    pending_call p = {c, fn, NULL};
    pending_call *outer = pending;
    pending = &p;
    PyObject *none = PyEval_EvalCode(code, ns, ns);
    pending = outer;
    PyObject *result = p.result;
    if (none != NULL) {
        Py_DECREF(none);
        if (result == NULL) {
            PyErr_SetString(PyExc_RuntimeError,
                            "multigil: the main-frame code of this interpreter did not run "
                            "its call");
        }
        return result;
    }
    Py_XDECREF(result);
    /* The traceback starts at that frame, which is ours, not the caller's. */
    PyObject *exc = PyErr_GetRaisedException();
    PyObject *tb = exc ? PyException_GetTraceback(exc) : NULL;
    if (tb != NULL) {
        PyTracebackObject *head = (PyTracebackObject *)tb;
        PyCodeObject *head_code = head->tb_frame ? PyFrame_GetCode(head->tb_frame) : NULL;
        if ((PyObject *)head_code == code) {
            PyException_SetTraceback(exc, head->tb_next ? (PyObject *)head->tb_next : Py_None);
        }
        Py_XDECREF(head_code);
        Py_DECREF(tb);
    }
    PyErr_SetRaisedException(exc);
    return NULL;
}

PyObject *
mg_not_rebuilt(mg_state *sub, const char *what)
{
    /* An ImportError (a module that does not import here, such as one that
     * refuses isolated interpreters) says it best, and the process fallback
     * looks for it: it passes unchanged, as interrupts and MemoryError do. */
    if (!PyErr_ExceptionMatches(PyExc_Exception) || PyErr_ExceptionMatches(PyExc_ImportError)
        || PyErr_ExceptionMatches(PyExc_MemoryError)) {
        return NULL;
    }
    return mg_raise(sub, MG_ERR_NOT_SHAREABLE,
                    "%s not shareable: could not be rebuilt (unpickled) in interpreter %lld",
                    what, (long long)PyInterpreterState_GetID(PyInterpreterState_Get()));
}

PyObject *
mg_call_invoke(mg_state *sub, const mg_call *c, mg_stage *stage)
{
    PyObject *fn = function_resolve(sub, c->fn_token, c->fn_pickled);
    if (fn == NULL) {
        if (stage != NULL) {
            *stage = MG_STAGE_FUNCTION;
        }
        return NULL;
    }
    PyObject *result = needs_frame(fn) ? call_in_main_frame(sub, fn, c) : call_now(sub, fn, c);
    Py_DECREF(fn);
    if (result == NULL && stage != NULL) {
        *stage = MG_STAGE_CALL;
    }
    return result;
}

/*************************************************************************
 * Outcomes                                                              *
 *************************************************************************/

/* Encode the exception being raised (and clear it) into `out`.  Returns 1 if
 * it was SystemExit or KeyboardInterrupt. */
static int
capture_exception(mg_state *st, mg_blob *out)
{
    PyObject *exc = PyErr_GetRaisedException();
    int fatal = exc && (PyErr_GivenExceptionMatches(exc, PyExc_SystemExit) ||
                        PyErr_GivenExceptionMatches(exc, PyExc_KeyboardInterrupt));
    PyObject *info = NULL;
    PyObject *remote = mg_remote(st);
    if (remote && exc) {
        info = PyObject_CallMethod(remote, "capture", "O", exc);
    }
    mg_blob_clear(out);
    mg_blob_init(out);
    if (info == NULL || mg_encode(st, info, out, 0) < 0) {
        /* Last resort: the type name and message as plain strings. */
        PyErr_Clear();
        PyObject *msg = exc ? PyObject_Str(exc) : NULL;
        if (msg == NULL) {
            PyErr_Clear();
        }
        Py_XDECREF(info);
        info = Py_BuildValue("(ssOOOOO)", exc ? Py_TYPE(exc)->tp_name : "SystemError",
                             exc ? Py_TYPE(exc)->tp_name : "SystemError",
                             Py_None, msg ? msg : Py_None, Py_None, Py_None, Py_None);
        Py_XDECREF(msg);
        if (info == NULL || mg_encode(st, info, out, 0) < 0) {
            PyErr_Clear();
            mg_blob_init(out);
        }
    }
    Py_XDECREF(info);
    Py_XDECREF(exc);
    return fatal;
}

void
mg_outcome_init(mg_outcome *o)
{
    mg_blob_init(&o->value);
    o->ok = 0;
    o->fatal = 0;
    o->stage = MG_STAGE_NONE;
}

void
mg_outcome_set(mg_state *sub, PyObject *result, mg_stage stage, mg_outcome *o, int flags)
{
    if (result != NULL) {
        int rc = mg_encode(sub, result, &o->value, flags);
        Py_DECREF(result);
        if (rc == 0) {
            o->ok = 1;
            o->fatal = 0;
            o->stage = MG_STAGE_NONE;
            return;
        }
        stage = MG_STAGE_RESULT;
    }
    o->ok = 0;
    o->stage = stage;
    o->fatal = capture_exception(sub, &o->value);
}

PyObject *
mg_outcome_take(mg_state *st, mg_outcome *o)
{
    PyObject *value = mg_decode(st, &o->value);
    mg_blob_clear(&o->value);
    return value;
}

/*************************************************************************
 * The one way in                                                        *
 *************************************************************************/

PyObject *
mg_no_core(mg_state *st, int64_t id)
{
    return mg_raise(st, MG_ERR_INTERPRETER,
                    "interpreter %lld cannot run code sent by multigil: multigil._core is "
                    "not imported there (interpreters made by multigil.interpreters.create() "
                    "import it when they start)", (long long)id);
}

int
mg_run_in(mg_state *st, int64_t id, mg_job job, mg_blob *in, const void *arg,
          mg_outcome *out)
{
    mg_session s;
    mg_outcome_init(out);
    if (mg_enter(st, id, &s) < 0) {
        if (in != NULL) {
            mg_blob_clear(in);
        }
        return -1;
    }
    mg_state *sub = mg_session_state(&s);
    if (sub != NULL) {
        mg_stage stage = MG_STAGE_CALL;
        PyObject *result = job(sub, in, arg, &stage);
        /* Results are copied twice: lent, they would stay alive in the
         * target until a thread next enters it. */
        mg_outcome_set(sub, result, stage, out, 0);
    }
    /* Dropped while still in the target: zero-copy exports of the caller's
     * buffers are then released by the caller as soon as mg_leave returns. */
    if (in != NULL) {
        mg_blob_clear(in);
    }
    mg_leave(&s);
    if (sub == NULL) {
        mg_no_core(st, id);
        return -1;
    }
    /* Ctrl-C stopped the call (see interp.c): KeyboardInterrupt here, now,
     * from the caller's handler, rather than at its next bytecode. */
    if (out->fatal && mg_thread_handles_signals() && PyErr_CheckSignals() < 0) {
        mg_blob_clear(&out->value);
        return -1;
    }
    return 0;
}
