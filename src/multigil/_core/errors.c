/* errors.c — the exception types of multigil._errors, cached per interpreter. */
#include "errors.h"

/* Process-global constant table (never written, no lock needed). */
static const char *const error_names[MG_ERROR_COUNT] = {
    [MG_ERR_INTERPRETER] = "InterpreterError",
    [MG_ERR_INTERPRETER_NOT_FOUND] = "InterpreterNotFoundError",
    [MG_ERR_NOT_SHAREABLE] = "NotShareableError",
    [MG_ERR_QUEUE_EMPTY] = "QueueEmpty",
    [MG_ERR_QUEUE_FULL] = "QueueFull",
    [MG_ERR_QUEUE_CLOSED] = "QueueClosed",
    [MG_ERR_TASK_CANCELLED] = "TaskCancelled",
};

PyObject *
mg_error_type(mg_state *st, mg_error e)
{
    if (st->errors[e] == NULL) {
        PyObject *mod = PyImport_ImportModule("multigil._errors");
        if (mod == NULL) {
            return NULL;
        }
        st->errors[e] = PyObject_GetAttrString(mod, error_names[e]);
        Py_DECREF(mod);
    }
    return st->errors[e];
}

PyObject *
mg_raise(mg_state *st, mg_error e, const char *fmt, ...)
{
    va_list vargs;
    va_start(vargs, fmt);
    PyObject *msg = PyUnicode_FromFormatV(fmt, vargs);
    va_end(vargs);
    if (msg == NULL) {
        return NULL;
    }
    /* Chain to whatever is being handled, so callers can add context. */
    PyObject *cause = PyErr_GetRaisedException();
    PyObject *type = mg_error_type(st, e);
    if (type == NULL) {
        Py_XDECREF(cause);
        Py_DECREF(msg);
        return NULL;
    }
    PyErr_SetObject(type, msg);
    Py_DECREF(msg);
    if (cause) {
        PyObject *exc = PyErr_GetRaisedException();
        PyException_SetCause(exc, cause);   /* steals cause */
        PyErr_SetRaisedException(exc);
    }
    return NULL;
}

int
mg_error_matches(mg_state *st, PyObject *exc, mg_error e)
{
    PyObject *saved = PyErr_GetRaisedException();
    PyObject *type = mg_error_type(st, e);
    int match = type != NULL && PyErr_GivenExceptionMatches(exc, type);
    if (type == NULL) {
        PyErr_Clear();
    }
    PyErr_SetRaisedException(saved);
    return match;
}
