/* module.c — multigil._core: module state, errors, and the functions that
 * create, call into and close interpreters.
 *
 * The module uses multi-phase init and per-module state only, and declares
 * Py_MOD_PER_INTERPRETER_GIL_SUPPORTED: every interpreter multigil creates
 * imports its own copy.
 */
#include "mg.h"
#include "errors.h"
#include "interp.h"
#include "call.h"
#include "sync.h"
#include "pickle.h"

/*************************************************************************
 * State and errors                                                      *
 *************************************************************************/

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

PyObject *
mg_function_ref(mg_state *st, PyObject *fn)
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

PyObject *
mg_function_resolve(mg_state *st, PyObject *token, PyObject *pickled)
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

int
mg_capture_exception(mg_state *st, mg_blob *out)
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

/*************************************************************************
 * Interpreter functions                                                 *
 *************************************************************************/

static int
id_from_object(PyObject *obj, int64_t *id)
{
    long long v = PyLong_AsLongLong(obj);
    if (v == -1 && PyErr_Occurred()) {
        return -1;
    }
    if (v < 0) {
        PyErr_SetString(PyExc_ValueError, "interpreter ids are non-negative");
        return -1;
    }
    *id = v;
    return 0;
}

PyDoc_STRVAR(create__doc__,
"create($module, bootstrap, /)\n--\n\n"
"Create an isolated interpreter with its own GIL, run the Python source\n"
"`bootstrap` in it and return its id.");

static PyObject *
core_create(PyObject *module, PyObject *arg)
{
    mg_state *st = PyModule_GetState(module);
    const char *bootstrap = PyUnicode_AsUTF8(arg);
    if (bootstrap == NULL) {
        return NULL;
    }
    int64_t id = mg_interp_create(st, bootstrap);
    if (id < 0) {
        return NULL;
    }
    return PyLong_FromLongLong(id);
}

PyDoc_STRVAR(destroy__doc__,
"destroy($module, id, /)\n--\n\n"
"Close the interpreter `id` (created by multigil), ending everything in it.");

static PyObject *
core_destroy(PyObject *module, PyObject *arg)
{
    int64_t id;
    if (id_from_object(arg, &id) < 0) {
        return NULL;
    }
    if (mg_interp_close(PyModule_GetState(module), id) < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
}

/* In the target interpreter: rebuild (token, pickled, args, kwargs), call,
 * encode the result into `out`.  Returns 1 on success, 0 if `out` holds a
 * captured exception. */
static int
run_call(mg_state *sub, const mg_blob *payload, mg_blob *out)
{
    PyObject *call = mg_decode(sub, payload);
    PyObject *result = NULL;
    if (call) {
        if (!PyTuple_Check(call) || PyTuple_GET_SIZE(call) != 4) {
            PyErr_SetString(PyExc_SystemError, "malformed call payload");
        }
        else {
            PyObject *fn = mg_function_resolve(sub, PyTuple_GET_ITEM(call, 0),
                                               PyTuple_GET_ITEM(call, 1));
            if (fn) {
                PyObject *kwargs = PyTuple_GET_ITEM(call, 3);
                result = PyObject_Call(fn, PyTuple_GET_ITEM(call, 2),
                                       kwargs == Py_None ? NULL : kwargs);
                Py_DECREF(fn);
            }
        }
        Py_DECREF(call);
    }
    if (result && mg_encode(sub, result, out, 0) == 0) {
        Py_DECREF(result);
        return 1;
    }
    Py_XDECREF(result);
    mg_capture_exception(sub, out);
    return 0;
}

/* Decode a reply in the caller: -> (ok, value). */
static PyObject *
reply(mg_state *st, int ok, mg_blob *out)
{
    PyObject *value = mg_decode(st, out);
    mg_blob_clear(out);
    if (value == NULL) {
        return NULL;
    }
    PyObject *res = PyTuple_Pack(2, ok ? Py_True : Py_False, value);
    Py_DECREF(value);
    return res;
}

PyDoc_STRVAR(call__doc__,
"call($module, id, fn, args, kwargs, /)\n--\n\n"
"Call fn(*args, **kwargs) in interpreter `id` from this thread.  Returns\n"
"(True, result) or (False, excinfo tuple from multigil._remote.capture).");

static PyObject *
core_call(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 4 || !PyTuple_Check(args[2]) ||
        (args[3] != Py_None && !PyDict_Check(args[3]))) {
        PyErr_SetString(PyExc_TypeError, "call(id, fn, args: tuple, kwargs: dict | None)");
        return NULL;
    }
    mg_state *st = PyModule_GetState(module);
    int64_t id;
    if (id_from_object(args[0], &id) < 0) {
        return NULL;
    }
    PyObject *ref = mg_function_ref(st, args[1]);
    if (ref == NULL) {
        return NULL;
    }
    PyObject *payload = PyTuple_Pack(4, PyTuple_GET_ITEM(ref, 0),
                                     PyTuple_GET_ITEM(ref, 1), args[2], args[3]);
    Py_DECREF(ref);
    if (payload == NULL) {
        return NULL;
    }
    mg_blob in, out;
    mg_blob_init(&in);
    mg_blob_init(&out);
    /* `payload` stays alive until the call returned, so the blob may point
     * into it instead of copying large arguments. */
    if (mg_encode(st, payload, &in, MG_ENCODE_BORROW) < 0) {
        Py_DECREF(payload);
        return NULL;
    }
    mg_session s;
    if (mg_enter(st, id, &s) < 0) {
        mg_blob_clear(&in);
        Py_DECREF(payload);
        return NULL;
    }
    int ok;
    mg_state *sub = mg_session_state(&s);
    if (sub == NULL) {
        /* no _core there: describe the ImportError with a bare tuple */
        PyErr_Clear();
        ok = -1;
    }
    else {
        ok = run_call(sub, &in, &out);
    }
    /* Dropped while still in the callee: zero-copy exports of the caller's
     * buffers are then released by the caller as soon as mg_leave returns. */
    mg_blob_clear(&in);
    mg_leave(&s);
    Py_DECREF(payload);
    if (ok < 0) {
        return mg_raise(st, MG_ERR_INTERPRETER,
                        "interpreter %lld cannot run calls: multigil._core is "
                        "not imported there", (long long)id);
    }
    return reply(st, ok, &out);
}

PyDoc_STRVAR(exec__doc__,
"exec($module, id, source, /)\n--\n\n"
"Run `source` in the __main__ module of interpreter `id`.  Returns None, or\n"
"the excinfo tuple of the exception it raised.");

static PyObject *
core_exec(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2 || !PyUnicode_Check(args[1])) {
        PyErr_SetString(PyExc_TypeError, "exec(id, source: str)");
        return NULL;
    }
    mg_state *st = PyModule_GetState(module);
    int64_t id;
    if (id_from_object(args[0], &id) < 0) {
        return NULL;
    }
    Py_ssize_t len;
    const char *src = PyUnicode_AsUTF8AndSize(args[1], &len);
    if (src == NULL) {
        return NULL;
    }
    /* The source is raw UTF-8 of a str the caller keeps alive. */
    mg_session s;
    if (mg_enter(st, id, &s) < 0) {
        return NULL;
    }
    mg_blob out;
    mg_blob_init(&out);
    int ok = 1;
    mg_state *sub = mg_session_state(&s);
    PyObject *main_mod = sub ? PyImport_AddModule("__main__") : NULL;  /* borrowed */
    if (main_mod) {
        PyObject *ns = PyModule_GetDict(main_mod);
        PyObject *res = PyRun_String(src, Py_file_input, ns, ns);
        if (res == NULL) {
            ok = 0;
            mg_capture_exception(sub, &out);
        }
        Py_XDECREF(res);
    }
    else {
        PyErr_Clear();
        ok = -1;
    }
    mg_leave(&s);
    if (ok < 0) {
        return mg_raise(st, MG_ERR_INTERPRETER,
                        "interpreter %lld has no __main__ module", (long long)id);
    }
    if (ok) {
        Py_RETURN_NONE;
    }
    PyObject *res = mg_decode(st, &out);
    mg_blob_clear(&out);
    return res;
}

PyDoc_STRVAR(set_main_attrs__doc__,
"set_main_attrs($module, id, ns, /)\n--\n\n"
"Bind the names of `ns` in the __main__ module of interpreter `id`.  Returns\n"
"None, or the excinfo tuple if a value could not be rebuilt there.");

static PyObject *
core_set_main_attrs(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2 || !PyDict_Check(args[1])) {
        PyErr_SetString(PyExc_TypeError, "set_main_attrs(id, ns: dict)");
        return NULL;
    }
    mg_state *st = PyModule_GetState(module);
    int64_t id;
    if (id_from_object(args[0], &id) < 0) {
        return NULL;
    }
    mg_blob in, out;
    mg_blob_init(&in);
    mg_blob_init(&out);
    if (mg_encode(st, args[1], &in, MG_ENCODE_BORROW) < 0) {
        return NULL;
    }
    mg_session s;
    if (mg_enter(st, id, &s) < 0) {
        mg_blob_clear(&in);
        return NULL;
    }
    int ok = 1;
    mg_state *sub = mg_session_state(&s);
    if (sub == NULL) {
        PyErr_Clear();
        ok = -1;
    }
    else {
        PyObject *ns = mg_decode(sub, &in);
        PyObject *main_mod = ns ? PyImport_AddModule("__main__") : NULL;
        if (main_mod == NULL || PyDict_Update(PyModule_GetDict(main_mod), ns) < 0) {
            ok = 0;
            mg_capture_exception(sub, &out);
        }
        Py_XDECREF(ns);
    }
    mg_blob_clear(&in);
    mg_leave(&s);
    if (ok < 0) {
        return mg_raise(st, MG_ERR_INTERPRETER,
                        "multigil._core is not imported in interpreter %lld", (long long)id);
    }
    if (ok) {
        Py_RETURN_NONE;
    }
    PyObject *res = mg_decode(st, &out);
    mg_blob_clear(&out);
    return res;
}

PyDoc_STRVAR(import_in_main__doc__,
"import_in_main($module, name, /)\n--\n\n"
"Import module `name` in the main interpreter (from any interpreter).\n"
"Extension modules are imported there first, so that a module which refuses\n"
"sub-interpreters fails with a clean ImportError instead of aborting the\n"
"process (CPython 3.12/3.13).  Returns whether the import succeeded.");

static PyObject *
core_import_in_main(PyObject *module, PyObject *arg)
{
    mg_state *st = PyModule_GetState(module);
    Py_ssize_t len;
    const char *name = PyUnicode_AsUTF8AndSize(arg, &len);
    if (name == NULL) {
        return NULL;
    }
    int64_t main_id = PyInterpreterState_GetID(PyInterpreterState_Main());
    mg_session s;
    if (mg_enter(st, main_id, &s) < 0) {
        return NULL;
    }
    PyObject *mod = PyImport_ImportModule(name);
    int ok = mod != NULL;
    Py_XDECREF(mod);
    PyErr_Clear();
    mg_leave(&s);
    return PyBool_FromLong(ok);
}

static PyObject *
core_list_all(PyObject *module, PyObject *unused)
{
    (void)module;
    (void)unused;
    return mg_interp_list();
}

static PyObject *
core_get_current(PyObject *module, PyObject *unused)
{
    (void)module;
    (void)unused;
    return PyLong_FromLongLong(PyInterpreterState_GetID(PyInterpreterState_Get()));
}

static PyObject *
core_get_main(PyObject *module, PyObject *unused)
{
    (void)module;
    (void)unused;
    return PyLong_FromLongLong(PyInterpreterState_GetID(PyInterpreterState_Main()));
}

PyDoc_STRVAR(status__doc__,
"status($module, id, /)\n--\n\n"
"(whence, threads running inside) of interpreter `id`, or None if it is gone.");

static PyObject *
core_status(PyObject *module, PyObject *arg)
{
    (void)module;
    int64_t id;
    if (id_from_object(arg, &id) < 0) {
        return NULL;
    }
    const char *whence = NULL;
    long busy = mg_interp_busy(id, &whence);
    if (busy < 0) {
        Py_RETURN_NONE;
    }
    return Py_BuildValue("(sl)", whence, busy);
}

static PyMethodDef core_methods[] = {
    {"create", core_create, METH_O, create__doc__},
    {"destroy", core_destroy, METH_O, destroy__doc__},
    {"call", (PyCFunction)(void (*)(void))core_call, METH_FASTCALL, call__doc__},
    {"exec", (PyCFunction)(void (*)(void))core_exec, METH_FASTCALL, exec__doc__},
    {"set_main_attrs", (PyCFunction)(void (*)(void))core_set_main_attrs,
     METH_FASTCALL, set_main_attrs__doc__},
    {"import_in_main", core_import_in_main, METH_O, import_in_main__doc__},
    {"list_all", core_list_all, METH_NOARGS,
     "list_all($module, /)\n--\n\n(id, whence) of every known interpreter."},
    {"get_current", core_get_current, METH_NOARGS,
     "get_current($module, /)\n--\n\nThe id of the current interpreter."},
    {"get_main", core_get_main, METH_NOARGS,
     "get_main($module, /)\n--\n\nThe id of the main interpreter."},
    {"status", core_status, METH_O, status__doc__},
    {NULL, NULL, 0, NULL},
};

/*************************************************************************
 * Module definition                                                     *
 *************************************************************************/

static int
core_exec_module(PyObject *module)
{
    mg_state *st = PyModule_GetState(module);
    if (mg_wait_init() < 0 ||
        mg_interp_init(st) < 0 ||
        mg_xidata_init(module, st) < 0 ||
        mg_shm_init(module, st) < 0 ||
        mg_lock_init(module, st) < 0 ||
        mg_event_init(module, st) < 0 ||
        mg_semaphore_init(module, st) < 0 ||
        mg_condition_init(module, st) < 0 ||
        mg_queue_init(module, st) < 0 ||
        mg_worker_init(module, st) < 0) {
        return -1;
    }
    return 0;
}

static int
core_traverse(PyObject *module, visitproc visit, void *arg)
{
    return mg_state_traverse(PyModule_GetState(module), visit, arg);
}

static int
core_clear(PyObject *module)
{
    mg_state_clear(PyModule_GetState(module));
    return 0;
}

static void
core_free(void *module)
{
    mg_state *st = PyModule_GetState((PyObject *)module);
    mg_interp_forget(st);
    mg_state_clear(st);
}

static PyModuleDef_Slot core_slots[] = {
    {Py_mod_exec, core_exec_module},
    {Py_mod_multiple_interpreters, Py_MOD_PER_INTERPRETER_GIL_SUPPORTED},
    {0, NULL},
};

static struct PyModuleDef core_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "multigil._core",
    .m_doc = "The C core of multigil: interpreters, cross-interpreter data, "
             "queues, shared memory and locks.",
    .m_size = sizeof(mg_state),
    .m_methods = core_methods,
    .m_slots = core_slots,
    .m_traverse = core_traverse,
    .m_clear = core_clear,
    .m_free = core_free,
};

PyMODINIT_FUNC
PyInit__core(void)
{
    return PyModuleDef_Init(&core_module);
}
