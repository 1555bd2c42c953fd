/* pickle.c — pickle, the fallback for values that do not cross natively.
 *
 * Protocol 5, with multigil._pickler.dumps (cloudpickle: it pickles lambdas,
 * closures and __main__ functions by value); out-of-band buffers of at least
 * MG_CHUNK_MIN bytes go into raw chunks (shm.h) that the receiver's unpickler
 * views in place, smaller ones are copied into the stream.  A value that
 * cannot be pickled raises NotShareableError naming its type.
 */
#include "pickle.h"
#include "errors.h"
#include "shm.h"

/* Pickle out-of-band buffers at least this big go into their own raw chunk,
 * viewed in place by the receiver; smaller ones are copied into the stream. */
#define MG_CHUNK_MIN (64 * 1024)
#define MG_PICKLE_PROTOCOL 5

/* How an out-of-band buffer follows a PICKLE in the stream. */
enum { PB_INLINE = 1, PB_CHUNK = 2 };

static PyObject *
import_attr(const char *module, const char *name)
{
    PyObject *mod = PyImport_ImportModule(module);
    if (mod == NULL) {
        return NULL;
    }
    PyObject *attr = PyObject_GetAttrString(mod, name);
    Py_DECREF(mod);
    return attr;
}

/* Fill the lazily imported pickle helpers of this interpreter's state.
 * Decoding needs only pickle.loads: importing cloudpickle (slow, ~ms) is left
 * to the first encode that needs it. */
static int
load_pickle(mg_state *st, int for_dumps)
{
    /* _pickle, not pickle: the Python module imports re, struct and more
     * into every interpreter that decodes its first pickled value. */
    if (st->pickle_loads == NULL && (st->pickle_loads = import_attr("_pickle", "loads")) == NULL) {
        return -1;
    }
    if (for_dumps && st->pickle_dumps == NULL) {
        /* cloudpickle, with functions of __main__ rebuilt in the receiver's
         * __main__: lambdas, closures and __main__ functions travel by value. */
        st->pickle_dumps = import_attr("multigil._pickler", "dumps");
        if (st->pickle_dumps == NULL) {
            return -1;
        }
    }
    return 0;
}

/* The pending exception, taken, if it says something about the value being
 * sent; else NULL, and it stays set.  Interrupts, MemoryError and a
 * NotShareableError raised by a nested encode (e.g. in a __reduce__, which
 * says it best) say nothing about the value: they pass unchanged. */
static PyObject *
take_value_error(mg_state *st)
{
    PyObject *exc = PyErr_GetRaisedException();
    if (exc != NULL && (!PyErr_GivenExceptionMatches(exc, PyExc_Exception)
                        || PyErr_GivenExceptionMatches(exc, PyExc_MemoryError)
                        || mg_error_matches(st, exc, MG_ERR_NOT_SHAREABLE))) {
        PyErr_SetRaisedException(exc);
        return NULL;
    }
    return exc;
}

/* Turn the pending exception into NotShareableError naming obj's type, with
 * the original as __cause__ (unless it passes unchanged: take_value_error). */
int
mg_not_shareable(mg_state *st, PyObject *obj, const char *how)
{
    PyObject *exc = take_value_error(st);
    if (exc == NULL) {
        return -1;
    }

    PyObject *name = PyType_GetQualName(Py_TYPE(obj));
    PyObject *reason = PyObject_Str(exc);
    if (name == NULL || reason == NULL) {
        Py_XDECREF(name);
        Py_XDECREF(reason);
        Py_DECREF(exc);
        return -1;
    }
    /* Built here, passed as "%s": mg_raise's formatter needs nothing more. */
    Py_ssize_t rlen = PyUnicode_GET_LENGTH(reason);
    if (rlen > 0 && PyUnicode_READ_CHAR(reason, rlen - 1) == '.') {
        Py_SETREF(reason, PyUnicode_Substring(reason, 0, rlen - 1));
    }
    PyObject *msg = reason == NULL ? NULL : PyUnicode_FromFormat(
        "cannot send an object of type '%U' to another interpreter: %s%U. "
        "Send picklable data, a memoryview, or a multigil.SharedBuffer.",
        name, how, reason);
    const char *cmsg = msg == NULL ? NULL : PyUnicode_AsUTF8(msg);
    Py_DECREF(name);
    Py_XDECREF(reason);
    if (cmsg == NULL) {
        Py_XDECREF(msg);
        Py_DECREF(exc);
        return -1;
    }
    mg_raise(st, MG_ERR_NOT_SHAREABLE, "%s", cmsg);
    Py_DECREF(msg);

    PyObject *nexc = PyErr_GetRaisedException();
    if (nexc != NULL) {
        PyException_SetContext(nexc, Py_NewRef(exc));
        PyException_SetCause(nexc, exc);     /* steals exc */
        PyErr_SetRaisedException(nexc);
    }
    else {
        Py_DECREF(exc);
    }
    return -1;
}

/* Append the out-of-band buffer `pb` (a PickleBuffer) to the stream. */
static int
put_pickle_buffer(mg_blob *b, PyObject *pb)
{
    Py_buffer view;
    if (PyObject_GetBuffer(pb, &view, PyBUF_FULL_RO) < 0) {
        return -1;
    }
    int rc = -1;
    if (!PyBuffer_IsContiguous(&view, 'A')) {
        PyErr_SetString(PyExc_BufferError, "out-of-band pickle buffer is not contiguous");
        goto done;
    }
    size_t n = (size_t)view.len;
    if (n >= MG_CHUNK_MIN) {
        mg_shared *chunk = mg_chunk_new(view.buf, n);
        if (chunk == NULL) {
            goto done;
        }
        if (mg_reserve(b, 1) < 0) {
            mg_shared_decref(chunk);
            goto done;
        }
        mg_put_u8(b, PB_CHUNK);
        /* put_handle writes MG_T_HANDLE + index: read back as such. */
        rc = mg_put_handle(b, chunk);
    }
    else {
        if (mg_reserve(b, 1 + MG_VARINT_MAX + n) < 0) {
            goto done;
        }
        mg_put_u8(b, PB_INLINE);
        mg_put_varint(b, n);
        mg_put_raw(b, view.buf, n);
        rc = 0;
    }
done:
    PyBuffer_Release(&view);
    return rc;
}

/* pickle.dumps(obj, 5, buffer_callback=buffers.append): a new reference to
 * the pickle, and the out-of-band buffers in a new list *buffers.  NULL with
 * the exception the pickler raised. */
PyObject *
mg_pickle_dumps(mg_state *st, PyObject *obj, PyObject **buffers)
{
    *buffers = NULL;
    if (load_pickle(st, 1) < 0) {
        return NULL;
    }
    PyObject *bufs = PyList_New(0);
    if (bufs == NULL) {
        return NULL;
    }
    PyObject *data = NULL;
    PyObject *callback = PyObject_GetAttrString(bufs, "append");
    PyObject *kwnames = Py_BuildValue("(s)", "buffer_callback");
    PyObject *protocol = PyLong_FromLong(MG_PICKLE_PROTOCOL);
    if (callback != NULL && kwnames != NULL && protocol != NULL) {
        PyObject *args[3] = {obj, protocol, callback};
        data = PyObject_Vectorcall(st->pickle_dumps, args, 2, kwnames);
    }
    Py_XDECREF(callback);
    Py_XDECREF(kwnames);
    Py_XDECREF(protocol);
    if (data == NULL) {
        Py_DECREF(bufs);
        return NULL;
    }
    *buffers = bufs;
    return data;
}

/* Append a MG_T_PICKLE: the pickle `data` and its out-of-band `buffers`. */
int
mg_put_pickled(mg_blob *b, PyObject *data, PyObject *buffers)
{
    char *p;
    Py_ssize_t n;
    if (PyBytes_AsStringAndSize(data, &p, &n) < 0) {
        return -1;
    }
    Py_ssize_t nbuf = PyList_GET_SIZE(buffers);
    if (mg_reserve(b, 1 + 2 * MG_VARINT_MAX + (size_t)n) < 0) {
        return -1;
    }
    mg_put_u8(b, MG_T_PICKLE);
    mg_put_varint(b, (uint64_t)n);
    mg_put_raw(b, p, (size_t)n);
    mg_put_varint(b, (uint64_t)nbuf);
    for (Py_ssize_t i = 0; i < nbuf; i++) {
        if (put_pickle_buffer(b, PyList_GET_ITEM(buffers, i)) < 0) {
            return -1;
        }
    }
    return 0;
}

int
mg_pickle_put(mg_state *st, mg_blob *b, PyObject *obj)
{
    PyObject *buffers;
    PyObject *data = mg_pickle_dumps(st, obj, &buffers);
    if (data == NULL) {
        return mg_not_shareable(st, obj, "");
    }
    int rc = mg_put_pickled(b, data, buffers);
    Py_DECREF(data);
    Py_DECREF(buffers);
    /* MemoryError passes unchanged; a bad out-of-band buffer is the value's. */
    return rc < 0 ? mg_not_shareable(st, obj, "") : 0;
}

/* Pickling the table (the non-native items of a value, together) failed: say
 * which item, as sending it alone would.  Each is pickled alone, again, until
 * one fails: that raises NotShareableError naming its type.  This runs only on
 * the error path; errors that pass unchanged say nothing about any item. */
int
mg_pickle_table_error(mg_state *st, PyObject *table)
{
    PyObject *exc = take_value_error(st);
    if (exc == NULL) {
        return -1;
    }
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(table); i++) {
        PyObject *item = Py_NewRef(PyList_GET_ITEM(table, i));
        mg_blob scratch;
        mg_blob_init(&scratch);
        int rc = mg_pickle_put(st, &scratch, item);
        mg_blob_clear(&scratch);
        Py_DECREF(item);
        if (rc < 0) {
            Py_DECREF(exc);
            return -1;
        }
    }
    /* Each one pickles alone: blame the lot. */
    PyErr_SetRaisedException(exc);
    return mg_not_shareable(st, table, "");
}

PyObject *
mg_pickle_read(mg_state *st, mg_reader *r)
{
    size_t n, nbuf;
    if (mg_get_len(r, 1, &n) < 0) {
        return NULL;
    }
    const unsigned char *data = r->p;
    r->p += n;
    if (mg_get_len(r, 1, &nbuf) < 0) {
        return NULL;
    }
    if (load_pickle(st, 0) < 0) {
        return NULL;
    }
    PyObject *buffers = NULL, *mv = NULL, *res = NULL, *kwnames = NULL;
    if (nbuf > 0) {
        buffers = PyList_New((Py_ssize_t)nbuf);
        if (buffers == NULL) {
            return NULL;
        }
        for (size_t i = 0; i < nbuf; i++) {
            unsigned char kind;
            PyObject *buf = NULL;
            if (mg_get_raw(r, &kind, 1) < 0) {
                goto done;
            }
            if (kind == PB_INLINE) {
                size_t len;
                if (mg_get_len(r, 1, &len) < 0) {
                    goto done;
                }
                buf = PyBytes_FromStringAndSize((const char *)r->p, (Py_ssize_t)len);
                r->p += len;
            }
            else if (kind == PB_CHUNK) {
                unsigned char tag;
                if (mg_get_raw(r, &tag, 1) < 0) {
                    goto done;
                }
                mg_shared *raw = tag == MG_T_HANDLE ? mg_get_handle(r) : NULL;
                if (raw == NULL || raw->kind != &mg_chunk_kind) {
                    if (!PyErr_Occurred()) {
                        mg_malformed("bad pickle buffer");
                    }
                    goto done;
                }
                buf = raw->kind->wrap(st, raw);
            }
            else {
                mg_malformed("bad pickle buffer");
                goto done;
            }
            if (buf == NULL) {
                goto done;
            }
            PyList_SET_ITEM(buffers, (Py_ssize_t)i, buf);
        }
    }
    /* Unpickle straight from the blob: it outlives this call, and the
     * unpickler copies whatever it keeps. */
    mv = PyMemoryView_FromMemory((char *)data, (Py_ssize_t)n, PyBUF_READ);
    if (mv == NULL) {
        goto done;
    }
    if (buffers == NULL) {
        res = PyObject_CallOneArg(st->pickle_loads, mv);
    }
    else {
        kwnames = Py_BuildValue("(s)", "buffers");
        if (kwnames == NULL) {
            goto done;
        }
        PyObject *args[2] = {mv, buffers};
        res = PyObject_Vectorcall(st->pickle_loads, args, 1, kwnames);
    }
done:
    if (mv != NULL) {
        /* Nothing may read the blob through it once we return. */
        PyObject *exc = PyErr_GetRaisedException();
        PyObject *ok = PyObject_CallMethod(mv, "release", NULL);
        if (ok == NULL) {
            PyErr_Clear();
        }
        Py_XDECREF(ok);
        PyErr_SetRaisedException(exc);
        Py_DECREF(mv);
    }
    Py_XDECREF(kwnames);
    Py_XDECREF(buffers);
    return res;
}

PyObject *
mg_pickle_loads(mg_state *st, PyObject *data)
{
    if (load_pickle(st, 0) < 0) {
        return NULL;
    }
    return PyObject_CallOneArg(st->pickle_loads, data);
}
