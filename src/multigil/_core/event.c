/* event.c — Event: a flag shared by every interpreter it is sent to. */
#include "sync.h"
#include "wait.h"

static PyObject *event_wrap(mg_state *st, mg_shared *raw);

/* Process-global constant table (read-only, no lock needed). */
static const mg_shared_kind event_kind = {"Event", mg_sync_raw_destroy, event_wrap};

PyDoc_STRVAR(event_doc,
"Event()\n"
"--\n"
"\n"
"A flag shared by every interpreter it is sent to, like :class:`threading.Event`.\n"
"\n"
"``set()`` wakes every thread waiting in any interpreter.  Waiting releases\n"
"the GIL; in the main thread Ctrl-C interrupts it.\n"
"\n"
"Attributes\n"
"----------\n"
"id : int\n"
"    Process-unique id; equal ids mean the same event.\n");

static PyObject *
event_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    return mg_sync_new_without_arguments(type, args, kwds, &event_kind, "Event");
}

static PyObject *
event_wrap(mg_state *st, mg_shared *raw)
{
    return mg_wrapper_new(st->EventType, raw);
}

static PyObject *
event_set(PyObject *self, PyObject *Py_UNUSED(ignored))
{
    mg_sync_raw *r = MG_SYNC_RAW(self);
    pthread_mutex_lock(&r->mu);
    if (!r->value) {
        r->value = 1;
        r->generation++;
        if (r->nwaiters > 0) {
            pthread_cond_broadcast(&r->cond);
        }
    }
    pthread_mutex_unlock(&r->mu);
    Py_RETURN_NONE;
}

static PyObject *
event_clear(PyObject *self, PyObject *Py_UNUSED(ignored))
{
    mg_sync_raw *r = MG_SYNC_RAW(self);
    pthread_mutex_lock(&r->mu);
    r->value = 0;
    pthread_mutex_unlock(&r->mu);
    Py_RETURN_NONE;
}

static PyObject *
event_is_set(PyObject *self, PyObject *Py_UNUSED(ignored))
{
    return PyBool_FromLong(mg_sync_value(MG_SYNC_RAW(self)) != 0);
}

typedef struct {
    mg_sync_raw *r;
    unsigned long long generation;
} event_attempt_arg;

static int
event_attempt(void *arg)
{
    event_attempt_arg *a = arg;
    return a->r->value != 0 || a->r->generation != a->generation;
}

static int
event_attempt_first(void *arg)
{
    /* First look, under the mutex: remember the generation to wait past. */
    event_attempt_arg *a = arg;
    a->generation = a->r->generation;
    return a->r->value != 0;
}

PyDoc_STRVAR(event_wait_doc,
"wait($self, timeout=None)\n"
"--\n"
"\n"
"Block until the flag is set, or the timeout expires.\n"
"\n"
"Parameters\n"
"----------\n"
"timeout : float or None\n"
"    Seconds to wait at most (honoured exactly, fractions included); None\n"
"    waits forever.  Negative values raise ValueError.\n"
"\n"
"Returns\n"
"-------\n"
"bool\n"
"    True if the flag was set (or set while waiting), False on timeout.\n");

static PyObject *
event_wait(PyObject *self, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    static const char *const kwlist[] = {"timeout", NULL};
    PyObject *argv[1] = {NULL};
    event_attempt_arg a;
    int64_t deadline;
    int rc;

    if (mg_parse_args("wait", args, nargs, kwnames, kwlist, 1, argv) < 0 ||
        mg_deadline(NULL, argv[0], 0, &deadline) < 0) {
        return NULL;
    }
    a.r = MG_SYNC_RAW(self);
    a.generation = 0;
    pthread_mutex_lock(&a.r->mu);
    rc = event_attempt_first(&a);
    pthread_mutex_unlock(&a.r->mu);
    if (rc == 0) {
        rc = mg_wait(&a.r->mu, &a.r->cond, &a.r->nwaiters, deadline, event_attempt, &a);
        if (rc < 0) {
            return NULL;
        }
    }
    return PyBool_FromLong(rc);
}

static PyObject *
event_repr(PyObject *self)
{
    mg_sync_raw *r = MG_SYNC_RAW(self);
    return PyUnicode_FromFormat("<multigil.Event id=%lld %s>", (long long)r->head.id,
                                mg_sync_value(r) ? "set" : "unset");
}

static PyMethodDef event_methods[] = {
    {"set", event_set, METH_NOARGS,
     "set($self, /)\n--\n\nSet the flag and wake every waiter, in every interpreter.\n"},
    {"clear", event_clear, METH_NOARGS, "clear($self, /)\n--\n\nReset the flag to false.\n"},
    {"is_set", event_is_set, METH_NOARGS, "is_set($self, /)\n--\n\nReturn True if the flag is set.\n"},
    {"wait", (PyCFunction)(void (*)(void))event_wait, METH_FASTCALL | METH_KEYWORDS,
     event_wait_doc},
    {NULL, NULL, 0, NULL},
};

static PyType_Slot event_slots[] = {
    {Py_tp_doc, (void *)event_doc},
    {Py_tp_new, event_new},
    {Py_tp_dealloc, mg_wrapper_dealloc},
    {Py_tp_repr, event_repr},
    {Py_tp_hash, mg_wrapper_hash},
    {Py_tp_richcompare, mg_wrapper_richcompare},
    {Py_tp_methods, event_methods},
    {Py_tp_getset, mg_wrapper_getset},
    {0, NULL},
};

static PyType_Spec event_spec = {
    .name = "multigil._core.Event",
    .basicsize = sizeof(mg_wrapper),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_IMMUTABLETYPE,
    .slots = event_slots,
};

int
mg_event_init(PyObject *module, mg_state *st)
{
    st->EventType = mg_add_type(module, &event_spec, NULL);
    return st->EventType == NULL ? -1 : 0;
}
