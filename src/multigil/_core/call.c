/* call.c — running code in another interpreter: functions crossing, the
 * typed payload of a call, outcomes, and mg_run_in. */
#include "call.h"
#include "errors.h"
#include "pickle.h"
#include "xidata.h"

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

/* Both caches are cleared when they reach this size: a program that makes
 * functions without end must not grow without end. */
#define FN_CACHE_MAX 4096

/* (fn_token, fn_pickled) for `fn`, from the cache or _remote.pickle_function. */
static PyObject *
function_ref(mg_state *st, PyObject *fn)
{
    if (st->ref_by_fn == NULL && (st->ref_by_fn = PyDict_New()) == NULL) {
        return NULL;
    }
    PyObject *ref = PyDict_GetItemWithError(st->ref_by_fn, fn);
    if (ref) {
        return Py_NewRef(ref);
    }
    PyErr_Clear();   /* unhashable callables are simply not cached */
    PyObject *remote = mg_remote(st);
    if (remote == NULL) {
        return NULL;
    }
    /* -> (cacheable, pickled) */
    PyObject *res = PyObject_CallMethod(remote, "pickle_function", "O", fn);
    if (res == NULL) {
        return NULL;
    }
    int cacheable = PyObject_IsTrue(PyTuple_GET_ITEM(res, 0));
    if (cacheable < 0) {
        Py_DECREF(res);
        return NULL;
    }
    PyObject *token = cacheable ? PyLong_FromLongLong(mg_next_id()) : PyLong_FromLong(0);
    ref = token ? PyTuple_Pack(2, token, PyTuple_GET_ITEM(res, 1)) : NULL;
    Py_XDECREF(token);
    Py_DECREF(res);
    if (ref && cacheable) {
        if (PyDict_GET_SIZE(st->ref_by_fn) >= FN_CACHE_MAX) {
            PyDict_Clear(st->ref_by_fn);
        }
        if (PyDict_SetItem(st->ref_by_fn, fn, ref) < 0) {
            PyErr_Clear();
        }
    }
    return ref;
}

/* The function for (token, pickled) in the current interpreter. */
static PyObject *
function_resolve(mg_state *st, PyObject *token, PyObject *pickled)
{
    int cacheable = PyObject_IsTrue(token);
    if (cacheable) {
        if (st->fn_by_token == NULL && (st->fn_by_token = PyDict_New()) == NULL) {
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
        /* (shared object, method name): see _remote.pickle_function */
        return PyObject_GetAttr(PyTuple_GET_ITEM(pickled, 0), PyTuple_GET_ITEM(pickled, 1));
    }
    PyObject *fn = mg_pickle_loads(st, pickled);
    if (fn && cacheable) {
        if (PyDict_GET_SIZE(st->fn_by_token) >= FN_CACHE_MAX) {
            PyDict_Clear(st->fn_by_token);
        }
        if (PyDict_SetItem(st->fn_by_token, token, fn) < 0) {
            Py_CLEAR(fn);
        }
    }
    return fn;
}

/*************************************************************************
 * The payload of a call                                                 *
 *************************************************************************/

/* The items of a call in its blob, in order. */
enum { W_TASK_ID, W_CHUNKED, W_FN_TOKEN, W_FN_PICKLED, W_ARGS, W_KWARGS, W_SIZE };

/* The checks of a call's items, one message each: 0, or -1 with TypeError.
 * The task id and chunked flag are checked only when decoded (the caller
 * gives C values for them). */
static int
call_check(PyObject *const *items, int decoded)
{
    const char *bad = NULL;
    PyObject *got = NULL;
    if (decoded && !PyLong_Check(got = items[W_TASK_ID])) {
        bad = "the task id of a call must be an int";
    }
    else if (decoded && !PyBool_Check(got = items[W_CHUNKED])) {
        bad = "the chunked flag of a call must be a bool";
    }
    else if (!PyLong_Check(got = items[W_FN_TOKEN])) {
        bad = "the function token of a call must be an int";
    }
    else if (items[W_CHUNKED] == Py_False && !PyTuple_Check(got = items[W_ARGS])) {
        bad = "the arguments of a call must be a tuple";
    }
    else if ((got = items[W_KWARGS]) != Py_None && !PyDict_Check(got)) {
        bad = "the keyword arguments of a call must be a dict or None";
    }
    if (bad != NULL) {
        PyErr_Format(PyExc_TypeError, "%s, not %.100s", bad, Py_TYPE(got)->tp_name);
        return -1;
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
    if (call_check(items, 0) < 0) {
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
mg_call_decode(mg_state *st, const mg_blob *b, mg_call *c)
{
    PyObject *items[W_SIZE], *other;
    call_init(c);
    switch (mg_decode_items(st, b, W_SIZE, items, &other)) {
    case 0:
        break;
    case 1:
        PyErr_Format(PyExc_TypeError,
                     "a call is the tuple (task_id, chunked, fn_token, fn_pickled, args, "
                     "kwargs) that submit_task() builds, not %.100s", Py_TYPE(other)->tp_name);
        Py_DECREF(other);
        return -1;
    default:
        return -1;
    }
    int rc = call_check(items, 1);
    if (rc == 0) {
        c->task_id = PyLong_AsLongLong(items[W_TASK_ID]);
        rc = c->task_id == -1 && PyErr_Occurred() ? -1 : 0;
    }
    if (rc < 0) {
        for (int i = 0; i < W_SIZE; i++) {
            Py_DECREF(items[i]);
        }
        return -1;
    }
    c->chunked = items[W_CHUNKED] == Py_True;
    Py_DECREF(items[W_TASK_ID]);
    Py_DECREF(items[W_CHUNKED]);
    c->fn_token = items[W_FN_TOKEN];          /* the references move */
    c->fn_pickled = items[W_FN_PICKLED];
    c->args = items[W_ARGS];
    c->kwargs = items[W_KWARGS];
    return 0;
}

void
mg_call_clear(mg_call *c)
{
    Py_CLEAR(c->fn_token);
    Py_CLEAR(c->fn_pickled);
    Py_CLEAR(c->args);
    Py_CLEAR(c->kwargs);
}

PyObject *
mg_call_invoke(mg_state *sub, const mg_call *c)
{
    PyObject *fn = function_resolve(sub, c->fn_token, c->fn_pickled);
    if (fn == NULL) {
        return NULL;
    }
    PyObject *result;
    if (c->chunked) {
        PyObject *remote = mg_remote(sub);
        result = remote == NULL ? NULL
                                : PyObject_CallMethod(remote, "run_chunk", "OO", fn, c->args);
    }
    else {
        result = PyObject_Call(fn, c->args, c->kwargs == Py_None ? NULL : c->kwargs);
    }
    Py_DECREF(fn);
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
        info = Py_BuildValue("(ssOOOO)", exc ? Py_TYPE(exc)->tp_name : "SystemError",
                             exc ? Py_TYPE(exc)->tp_name : "SystemError",
                             Py_None, msg ? msg : Py_None, Py_None, Py_None);
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
}

void
mg_outcome_set(mg_state *sub, PyObject *result, mg_outcome *o, int flags)
{
    if (result != NULL) {
        int rc = mg_encode(sub, result, &o->value, flags);
        Py_DECREF(result);
        if (rc == 0) {
            o->ok = 1;
            o->fatal = 0;
            return;
        }
    }
    o->ok = 0;
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
        /* Results are copied twice: lent, they would stay alive in the
         * target until a thread next enters it. */
        mg_outcome_set(sub, job(sub, in, arg), out, 0);
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
    return 0;
}
