/* base.c — the module state, shared raw objects and their wrappers. */
#include "base.h"

/*************************************************************************
 * Module state                                                          *
 *************************************************************************/

#define MG_STATE_OBJECTS(X) \
    X(SharedBufferType) X(ForeignBufferType) X(LockType) X(RLockType) X(EventType) \
    X(SemaphoreType) X(BoundedSemaphoreType) X(ConditionType) X(QueueType) \
    X(pickle_dumps) X(pickle_loads) X(remote_module) X(fn_by_token) X(ref_by_fn) \
    X(main_frame_code)

int
mg_state_traverse(mg_state *st, visitproc visit, void *arg)
{
#define VISIT(field) Py_VISIT(st->field);
    MG_STATE_OBJECTS(VISIT)
#undef VISIT
    for (int i = 0; i < MG_ERROR_COUNT; i++) {
        Py_VISIT(st->errors[i]);
    }
    return 0;
}

void
mg_state_clear(mg_state *st)
{
#define CLEAR(field) Py_CLEAR(st->field);
    MG_STATE_OBJECTS(CLEAR)
#undef CLEAR
    for (int i = 0; i < MG_ERROR_COUNT; i++) {
        Py_CLEAR(st->errors[i]);
    }
    st->fn_cache_bytes = 0;
}

void
mg_state_drop_caches(mg_state *st)
{
    Py_CLEAR(st->fn_by_token);
    st->fn_cache_bytes = 0;
    Py_CLEAR(st->ref_by_fn);
}

/*************************************************************************
 * Shared raw objects                                                    *
 *************************************************************************/

/* Process-global.  Owner: this file.  Lock: none, it is atomic. */
static atomic_llong next_id = 1;

int64_t
mg_next_id(void)
{
    return atomic_fetch_add(&next_id, 1);
}

void
mg_shared_init(mg_shared *s, const mg_shared_kind *kind)
{
    atomic_init(&s->refcnt, 1);
    s->kind = kind;
    s->id = mg_next_id();
}

void
mg_shared_incref(mg_shared *s)
{
    atomic_fetch_add_explicit(&s->refcnt, 1, memory_order_relaxed);
}

int
mg_shared_tryincref(mg_shared *s)
{
    long n = atomic_load_explicit(&s->refcnt, memory_order_relaxed);
    while (n > 0) {
        if (atomic_compare_exchange_weak_explicit(&s->refcnt, &n, n + 1, memory_order_acq_rel,
                                                  memory_order_relaxed)) {
            return 1;
        }
    }
    return 0;
}

void
mg_shared_decref(mg_shared *s)
{
    if (atomic_fetch_sub_explicit(&s->refcnt, 1, memory_order_acq_rel) == 1) {
        s->kind->destroy(s);
    }
}

/*************************************************************************
 * Wrappers                                                              *
 *************************************************************************/

/* How every interpreter gets its own object for the same raw queue or lock. */
PyObject *
mg_wrapper_new(PyTypeObject *type, mg_shared *raw)
{
    if (type == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "multigil._core is not initialised here");
        return NULL;
    }
    mg_wrapper *w = (mg_wrapper *)type->tp_alloc(type, 0);
    if (w == NULL) {
        return NULL;
    }
    mg_shared_incref(raw);
    w->raw = raw;
    return (PyObject *)w;
}

void
mg_wrapper_dealloc(PyObject *self)
{
    PyTypeObject *tp = Py_TYPE(self);
    mg_shared *raw = ((mg_wrapper *)self)->raw;
    if (raw != NULL) {
        mg_shared_decref(raw);
    }
    tp->tp_free(self);
    Py_DECREF(tp);
}

/* Two wrappers (in one interpreter, or sent back and forth) of the same raw
 * object compare equal and hash alike. */
Py_hash_t
mg_wrapper_hash(PyObject *self)
{
    Py_hash_t h = (Py_hash_t)((mg_wrapper *)self)->raw->id;
    return h == -1 ? -2 : h;
}

PyObject *
mg_wrapper_richcompare(PyObject *a, PyObject *b, int op)
{
    if ((op != Py_EQ && op != Py_NE) || Py_TYPE(a) != Py_TYPE(b)) {
        Py_RETURN_NOTIMPLEMENTED;
    }
    int eq = ((mg_wrapper *)a)->raw->id == ((mg_wrapper *)b)->raw->id;
    return PyBool_FromLong(op == Py_EQ ? eq : !eq);
}

PyObject *
mg_wrapper_get_id(PyObject *self, void *Py_UNUSED(closure))
{
    return PyLong_FromLongLong(((mg_wrapper *)self)->raw->id);
}

/* Process-global constant table (never written, no lock needed). */
PyGetSetDef mg_wrapper_getset[] = {
    {"id", mg_wrapper_get_id, NULL, "Process-unique id of the shared object.", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

PyTypeObject *
mg_add_type(PyObject *module, PyType_Spec *spec, PyTypeObject *base)
{
    PyTypeObject *tp = (PyTypeObject *)PyType_FromModuleAndSpec(module, spec, (PyObject *)base);
    if (tp == NULL) {
        return NULL;
    }
    if (PyModule_AddType(module, tp) < 0) {
        Py_DECREF(tp);
        return NULL;
    }
    return tp;
}

PyObject *
mg_run_source(const char *source, int start, PyObject *globals, PyObject *locals)
{
    PyObject *code = Py_CompileString(source, "<string>", start);
    if (code == NULL) {
        return NULL;
    }
    PyObject *result = PyEval_EvalCode(code, globals, locals);
    Py_DECREF(code);
    return result;
}
