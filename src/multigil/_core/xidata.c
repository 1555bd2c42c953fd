/* xidata.c — the module functions of the encoding: is_shareable, and the
 * helpers with which tests and benchmarks exercise it in one interpreter. */
#include "xidata.h"
#include "interp.h"

/*************************************************************************
 * Module functions (tests and benchmarks)                              *
 *************************************************************************/

static int
flags_arg(PyObject *const *args, Py_ssize_t nargs, const char *fname, int *flags)
{
    *flags = 0;
    if (nargs < 1 || nargs > 2) {
        PyErr_Format(PyExc_TypeError, "%s() takes 1 or 2 arguments (%zd given)", fname, nargs);
        return -1;
    }
    if (nargs == 2) {
        long v = PyLong_AsLong(args[1]);
        if (v == -1 && PyErr_Occurred()) {
            return -1;
        }
        *flags = (int)v;
    }
    return 0;
}

PyDoc_STRVAR(roundtrip_doc,
"_roundtrip(obj, flags=0, /)\n"
"--\n"
"\n"
"Encode ``obj`` as for another interpreter and decode it here.\n"
"\n"
"Exercises the whole cross-interpreter encoding without a second\n"
"interpreter.  ``flags`` are ENCODE_BORROW and ENCODE_LEND.\n");

static PyObject *
xi_roundtrip(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    int flags;
    if (flags_arg(args, nargs, "_roundtrip", &flags) < 0) {
        return NULL;
    }
    mg_state *st = (mg_state *)PyModule_GetState(module);
    mg_blob b;
    mg_blob_init(&b);
    if (mg_encode(st, args[0], &b, flags) < 0) {
        return NULL;
    }
    PyObject *res = mg_decode(st, &b);
    mg_blob_clear(&b);
    /* Exports dropped by the clear were deferred to us: release them now. */
    mg_interp_run_deferred();
    return res;
}

PyDoc_STRVAR(run_deferred_doc,
"_run_deferred()\n"
"--\n"
"\n"
"Run the releases other interpreters deferred to this one now.\n"
"\n"
"Views of this interpreter's buffers dropped elsewhere are released here\n"
"the next time this interpreter enters multigil; tests call this instead.\n");

static PyObject *
xi_run_deferred(PyObject *Py_UNUSED(module), PyObject *Py_UNUSED(ignored))
{
    mg_interp_run_deferred();
    if (PyErr_Occurred()) {
        return NULL;
    }
    Py_RETURN_NONE;
}

PyDoc_STRVAR(exports_doc,
"_exports(id, /)\n"
"--\n"
"\n"
"How many of interpreter ``id``'s objects other interpreters hold now.\n"
"\n"
"Counts the memoryviews of its buffers and the bytes and str lent to be\n"
"copied, whose releases have not run yet in ``id``; -1 if ``id`` does not\n"
"exist.  For tests of lifetimes.\n");

static PyObject *
xi_exports(PyObject *Py_UNUSED(module), PyObject *arg)
{
    long long id = PyLong_AsLongLong(arg);
    if (id == -1 && PyErr_Occurred()) {
        return NULL;
    }
    return PyLong_FromLong(mg_interp_exports(id));
}

PyDoc_STRVAR(encoded_size_doc,
"_encoded_size(obj, flags=0, /)\n"
"--\n"
"\n"
"Size in bytes of the encoded form of ``obj`` (handles not counted).\n");

static PyObject *
xi_encoded_size(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    int flags;
    if (flags_arg(args, nargs, "_encoded_size", &flags) < 0) {
        return NULL;
    }
    mg_state *st = (mg_state *)PyModule_GetState(module);
    mg_blob b;
    mg_blob_init(&b);
    if (mg_encode(st, args[0], &b, flags) < 0) {
        return NULL;
    }
    size_t n = b.size;
    mg_blob_clear(&b);
    return PyLong_FromSize_t(n);
}

PyDoc_STRVAR(encode_raw_doc,
"_encode_raw(obj, /)\n"
"--\n"
"\n"
"The encoded stream of ``obj`` as bytes (for tests of the decoder).\n"
"\n"
"Raises ValueError if ``obj`` needs handles (shared objects, memoryviews,\n"
"large pickle buffers), which bytes cannot carry.\n");

static PyObject *
xi_encode_raw(PyObject *module, PyObject *obj)
{
    mg_state *st = (mg_state *)PyModule_GetState(module);
    mg_blob b;
    mg_blob_init(&b);
    if (mg_encode(st, obj, &b, 0) < 0) {
        return NULL;
    }
    PyObject *res = NULL;
    if (b.nhandles > 0) {
        PyErr_SetString(PyExc_ValueError, "_encode_raw: the value needs handles");
    }
    else {
        res = PyBytes_FromStringAndSize(b.data, (Py_ssize_t)b.size);
    }
    mg_blob_clear(&b);
    return res;
}

PyDoc_STRVAR(decode_raw_doc,
"_decode_raw(data, /)\n"
"--\n"
"\n"
"Decode a stream made by ``_encode_raw`` (or any bytes: a malformed\n"
"stream raises ValueError, it never crashes).\n");

static PyObject *
xi_decode_raw(PyObject *module, PyObject *arg)
{
    mg_state *st = (mg_state *)PyModule_GetState(module);
    Py_buffer view;
    if (PyObject_GetBuffer(arg, &view, PyBUF_SIMPLE) < 0) {
        return NULL;
    }
    mg_blob b;
    mg_blob_init(&b);
    PyObject *res = NULL;
    /* A private copy: the decoder relies on the blob's malloc alignment. */
    b.data = (char *)PyMem_RawMalloc(view.len > 0 ? (size_t)view.len : 1);
    if (b.data == NULL) {
        PyErr_NoMemory();
    }
    else {
        memcpy(b.data, view.buf, (size_t)view.len);
        b.size = b.capacity = (size_t)view.len;
        res = mg_decode(st, &b);
    }
    PyBuffer_Release(&view);
    mg_blob_clear(&b);
    return res;
}

PyDoc_STRVAR(is_shareable_doc,
"_is_natively_shareable(obj, /)\n"
"--\n"
"\n"
"True if ``obj`` crosses interpreters without pickle.\n");

static PyObject *
xi_is_natively_shareable(PyObject *module, PyObject *obj)
{
    mg_state *st = (mg_state *)PyModule_GetState(module);
    return PyBool_FromLong(mg_is_natively_shareable(st, obj));
}

static PyMethodDef xidata_methods[] = {
    {"_roundtrip", (PyCFunction)(void (*)(void))xi_roundtrip, METH_FASTCALL, roundtrip_doc},
    {"_encoded_size", (PyCFunction)(void (*)(void))xi_encoded_size, METH_FASTCALL, encoded_size_doc},
    {"_encode_raw", xi_encode_raw, METH_O, encode_raw_doc},
    {"_decode_raw", xi_decode_raw, METH_O, decode_raw_doc},
    {"is_shareable", xi_is_natively_shareable, METH_O,
     "is_shareable($module, obj, /)\n--\n\nWhether obj crosses interpreters natively (no pickle)."},
    {"_is_natively_shareable", xi_is_natively_shareable, METH_O, is_shareable_doc},
    {"_run_deferred", xi_run_deferred, METH_NOARGS, run_deferred_doc},
    {"_exports", xi_exports, METH_O, exports_doc},
    {NULL, NULL, 0, NULL},
};

int
mg_xidata_init(PyObject *module, mg_state *Py_UNUSED(st))
{
    if (PyModule_AddFunctions(module, xidata_methods) < 0) {
        return -1;
    }
    if (PyModule_AddIntConstant(module, "ENCODE_BORROW", MG_ENCODE_BORROW) < 0) {
        return -1;
    }
    return PyModule_AddIntConstant(module, "ENCODE_LEND", MG_ENCODE_LEND);
}
