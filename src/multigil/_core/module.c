/* module.c — multigil._core: the module, its functions for creating, calling
 * into and closing interpreters, and its initialisation, which asks every
 * layer below to add its types and functions.
 *
 * The module uses multi-phase init and per-module state only, and declares
 * Py_MOD_PER_INTERPRETER_GIL_SUPPORTED: every interpreter multigil creates
 * imports its own copy.
 */
#include "module.h"
#include "errors.h"
#include "wait.h"
#include "interp.h"
#include "shm.h"
#include "sync.h"
#include "xidata.h"
#include "queue.h"
#include "call.h"
#include "worker.h"

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

/* sys._current_frames() and sys._current_exceptions() of CPython 3.12-3.14
 * walk the threads of every interpreter and make frame objects, with the
 * calling interpreter's allocator, of frames that belong to the others, which
 * later free them with theirs: the process aborts ("free(): invalid pointer")
 * once another interpreter runs Python code.  pytest-timeout, profilers and
 * Dask's profiler call them.  So an interpreter multigil creates, and one
 * that creates interpreters, gets versions that read only its own threads
 * (mg_interp_thread_frames).  0, or -1 with an exception set. */
static int
install_frame_readers(PyObject *module)
{
    static const char *const names[][2] = {
        {"_current_frames", "current_frames"},
        {"_current_exceptions", "current_exceptions"},
    };
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        PyObject *fn = PyObject_GetAttrString(module, names[i][1]);
        int rc = fn ? PySys_SetObject(names[i][0], fn) : -1;
        Py_XDECREF(fn);
        if (rc < 0) {
            return -1;
        }
    }
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
    if (bootstrap == NULL || install_frame_readers(module) < 0) {
        return NULL;
    }
    int64_t id = mg_interp_create(st, bootstrap);
    if (id < 0) {
        return NULL;
    }
    return PyLong_FromLongLong(id);
}

PyDoc_STRVAR(destroy__doc__,
"destroy($module, id, /, timeout=0.0, *, wait_callers=False, interrupt=False,\n"
"        abandon_exports=False)\n--\n\n"
"Close the interpreter `id` (created by multigil), ending everything in it.\n"
"Threads it started are waited for `timeout` seconds (None: no limit); with\n"
"`wait_callers`, so are threads inside it through a call, which otherwise\n"
"make it fail at once; `interrupt` raises SystemExit in all of them first;\n"
"`abandon_exports` ends it although it lends buffers (their memory is then\n"
"never freed).  InterpreterError names the threads still running.");

static PyObject *
core_destroy(PyObject *module, PyObject *args, PyObject *kwargs)
{
    static char *kwlist[] = {"", "timeout", "wait_callers", "interrupt",
                             "abandon_exports", NULL};
    PyObject *idobj, *timeout = NULL;
    int wait_callers = 0, interrupt = 0, abandon = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "O|O$ppp:destroy", kwlist, &idobj,
                                     &timeout, &wait_callers, &interrupt, &abandon)) {
        return NULL;
    }
    int64_t id, deadline = 0;
    if (id_from_object(idobj, &id) < 0) {
        return NULL;
    }
    if (timeout != NULL && mg_deadline(NULL, timeout, 0, &deadline) < 0) {
        return NULL;
    }
    int flags = (wait_callers ? MG_CLOSE_WAIT_CALLERS : 0) | (interrupt ? MG_CLOSE_INTERRUPT : 0)
                | (abandon ? MG_CLOSE_ABANDON_EXPORTS : 0);
    if (mg_interp_close(PyModule_GetState(module), id, deadline, flags) < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
}

PyDoc_STRVAR(is_running__doc__,
"is_running($module, id, /)\n--\n\n"
"Whether some thread runs in interpreter `id`: a call, or a thread it started.");

static PyObject *
core_is_running(PyObject *module, PyObject *arg)
{
    int64_t id;
    if (id_from_object(arg, &id) < 0) {
        return NULL;
    }
    int running = mg_interp_running(PyModule_GetState(module), id);
    return running < 0 ? NULL : PyBool_FromLong(running);
}

PyDoc_STRVAR(current_frames__doc__,
"current_frames($module, /)\n--\n\n"
"sys._current_frames() for the threads of the current interpreter only: the\n"
"stdlib's reads every interpreter's frames, which crashes CPython 3.12-3.14\n"
"while other interpreters run.  multigil installs it as sys._current_frames.");

static PyObject *
core_current_frames(PyObject *module, PyObject *unused)
{
    (void)module;
    (void)unused;
    return mg_interp_thread_frames(0);
}

PyDoc_STRVAR(current_exceptions__doc__,
"current_exceptions($module, /)\n--\n\n"
"sys._current_exceptions() for the threads of the current interpreter only\n"
"(see current_frames).");

static PyObject *
core_current_exceptions(PyObject *module, PyObject *unused)
{
    (void)module;
    (void)unused;
    return mg_interp_thread_frames(1);
}

PyDoc_STRVAR(renew_thread_states__doc__,
"_renew_thread_states($module, id, /)\n--\n\n"
"Replace the thread states multigil keeps for interpreter `id` by one new\n"
"one, this thread's: what they held (contextvars, ...) goes.  Nobody may be\n"
"inside `id`.  Part of resetting a worker's interpreter.");

static PyObject *
core_renew_thread_states(PyObject *module, PyObject *arg)
{
    int64_t id;
    if (id_from_object(arg, &id) < 0) {
        return NULL;
    }
    if (mg_interp_renew_thread_states(PyModule_GetState(module), id) < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
}

/* The jobs of call(), exec() and set_main_attrs(), run in the target by
 * mg_run_in. */

static PyObject *
call_job(mg_state *sub, const mg_blob *in, const void *Py_UNUSED(arg), mg_stage *stage)
{
    mg_call c;
    mg_stage failed;
    if (mg_call_decode(sub, in, &c, &failed) < 0) {
        *stage = failed == MG_STAGE_FUNCTION ? MG_STAGE_FUNCTION : MG_STAGE_ARGUMENTS;
        return mg_not_rebuilt(sub, *stage == MG_STAGE_FUNCTION ? "func" : "args");
    }
    PyObject *result = mg_call_invoke(sub, &c, stage);
    if (result == NULL && *stage == MG_STAGE_FUNCTION) {
        mg_not_rebuilt(sub, "func");
    }
    mg_call_clear(&c);
    return result;
}

/* The source of exec(): the UTF-8 of a str that the caller keeps alive. */
typedef struct {
    const char *text;
    Py_ssize_t len;
} exec_source;

static PyObject *
exec_job(mg_state *Py_UNUSED(sub), const mg_blob *Py_UNUSED(in), const void *arg,
         mg_stage *Py_UNUSED(stage))
{
    const exec_source *source = arg;
    PyObject *main_mod = PyImport_AddModule("__main__");     /* borrowed */
    if (main_mod == NULL) {
        return NULL;
    }
    PyObject *ns = PyModule_GetDict(main_mod);
    if (memchr(source->text, '\0', (size_t)source->len) == NULL) {
        return mg_run_source(source->text, Py_file_input, ns, ns);
    }
    /* Compiling a C string would stop at the NUL: let the built-in exec()
     * say what it says of such source. */
    PyObject *text = PyUnicode_DecodeUTF8(source->text, source->len, NULL);
    PyObject *exec = PyDict_GetItemString(PyEval_GetBuiltins(), "exec");   /* borrowed */
    if (exec == NULL && !PyErr_Occurred()) {
        PyErr_SetString(PyExc_RuntimeError, "exec(): the interpreter has no built-in exec");
    }
    PyObject *res = text && exec ? PyObject_CallFunctionObjArgs(exec, text, ns, NULL) : NULL;
    Py_XDECREF(text);
    return res;
}

static PyObject *
set_main_attrs_job(mg_state *sub, const mg_blob *in, const void *Py_UNUSED(arg),
                   mg_stage *stage)
{
    PyObject *ns = mg_decode(sub, in);
    if (ns == NULL) {
        *stage = MG_STAGE_ARGUMENTS;
        return mg_not_rebuilt(sub, "values");
    }
    PyObject *main_mod = PyImport_AddModule("__main__");     /* borrowed */
    int rc = main_mod == NULL ? -1 : PyDict_Update(PyModule_GetDict(main_mod), ns);
    Py_DECREF(ns);
    if (rc < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
}

PyDoc_STRVAR(call__doc__,
"call($module, id, fn, args, kwargs, /)\n--\n\n"
"Call fn(*args, **kwargs) in interpreter `id` from this thread.  Returns\n"
"(True, result), (False, excinfo) if the call raised, or (None, excinfo) if\n"
"fn, the arguments or the result could not cross (a NotShareableError); an\n"
"excinfo is the tuple multigil._remote.capture makes.");

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
    mg_call c;
    if (mg_call_pack(st, &c, 0, 0, args[1], args[2], args[3]) < 0) {
        return NULL;
    }
    mg_blob in;
    mg_blob_init(&in);
    mg_outcome out;
    /* `c` stays alive until the call returned, so the blob may point into
     * it instead of copying large arguments; those in lists and dicts, which
     * may change meanwhile, are lent. */
    int rc = mg_call_encode(st, &c, &in, MG_ENCODE_BORROW | MG_ENCODE_LEND);
    if (rc == 0) {
        rc = mg_run_in(st, id, call_job, &in, NULL, &out);
    }
    mg_call_clear(&c);
    if (rc < 0) {
        return NULL;
    }
    PyObject *value = mg_outcome_take(st, &out);
    if (value == NULL) {
        return out.ok ? mg_not_rebuilt(st, "result") : NULL;
    }
    PyObject *res = PyTuple_Pack(2, out.ok ? Py_True : out.stage != MG_STAGE_CALL ? Py_None : Py_False, value);
    Py_DECREF(value);
    return res;
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
    /* The source crosses as the raw UTF-8 of a str the caller keeps alive. */
    exec_source src;
    src.text = PyUnicode_AsUTF8AndSize(args[1], &src.len);
    mg_outcome out;
    if (src.text == NULL || mg_run_in(st, id, exec_job, NULL, &src, &out) < 0) {
        return NULL;
    }
    return mg_outcome_take(st, &out);       /* None, or the excinfo */
}

PyDoc_STRVAR(set_main_attrs__doc__,
"set_main_attrs($module, id, ns, /)\n--\n\n"
"Bind the names of `ns` in the __main__ module of interpreter `id`.  Returns\n"
"None, or the excinfo tuple of the NotShareableError raised there if a value\n"
"could not be rebuilt there.");

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
    mg_blob in;
    mg_blob_init(&in);
    mg_outcome out;
    if (mg_encode(st, args[1], &in, MG_ENCODE_BORROW | MG_ENCODE_LEND) < 0 ||
        mg_run_in(st, id, set_main_attrs_job, &in, NULL, &out) < 0) {
        return NULL;
    }
    return mg_outcome_take(st, &out);       /* None, or the excinfo */
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

PyDoc_STRVAR(forget_functions__doc__,
"_forget_functions($module, /)\n--\n\n"
"Drop this interpreter's caches of the functions sent to it and from it\n"
"(they keep their modules alive).  Functions sent later are rebuilt.");

static PyObject *
core_forget_functions(PyObject *module, PyObject *Py_UNUSED(unused))
{
    mg_state_drop_caches(PyModule_GetState(module));
    Py_RETURN_NONE;
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
    {"destroy", (PyCFunction)(void (*)(void))core_destroy, METH_VARARGS | METH_KEYWORDS,
     destroy__doc__},
    {"is_running", core_is_running, METH_O, is_running__doc__},
    {"current_frames", core_current_frames, METH_NOARGS, current_frames__doc__},
    {"current_exceptions", core_current_exceptions, METH_NOARGS, current_exceptions__doc__},
    {"call", (PyCFunction)(void (*)(void))core_call, METH_FASTCALL, call__doc__},
    {"exec", (PyCFunction)(void (*)(void))core_exec, METH_FASTCALL, exec__doc__},
    {"set_main_attrs", (PyCFunction)(void (*)(void))core_set_main_attrs,
     METH_FASTCALL, set_main_attrs__doc__},
    {"import_in_main", core_import_in_main, METH_O, import_in_main__doc__},
    {"_forget_functions", core_forget_functions, METH_NOARGS, forget_functions__doc__},
    {"_renew_thread_states", core_renew_thread_states, METH_O, renew_thread_states__doc__},
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
    /* Lowest layer first. */
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
    if (PyInterpreterState_Get() != PyInterpreterState_Main()) {
        return install_frame_readers(module);
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
