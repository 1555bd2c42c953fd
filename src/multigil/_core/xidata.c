/* xidata.c — cross-interpreter data: values as interpreter-free bytes.
 *
 * A value crosses in two steps.  mg_encode() walks it in the sender and writes
 * a byte stream, plus references to shared raw objects, into an mg_blob made of
 * raw memory only; mg_decode() rebuilds an equal value from the blob in the
 * receiver.  Neither side ever sees the other's objects.
 *
 * Built-in value types (exact types only) are written natively; shared objects
 * (queues, locks, SharedBuffer) travel as handles; a memoryview travels as an
 * export of its memory (no copy); everything else goes through pickle
 * protocol 5, with large out-of-band buffers in raw chunks (one copy).  The
 * non-native items of a container are set aside during the walk and pickled
 * together in one call at the end: a pickle call costs microseconds of fixed
 * overhead (cloudpickle's Pickler is partly Python), so ten thousand
 * Fractions in a list must be one call, not ten thousand.
 *
 * The stream never leaves the process, so numbers are stored in native byte
 * order and widths; it is still bounds-checked on decode, because a corrupt
 * blob must raise, not crash.
 */
#include "mg.h"
#include "errors.h"
#include "shm.h"
#include "pickle.h"

#include <stddef.h>
#include <string.h>

/* Deeper values are refused: it bounds the C stack, and stops self-referencing
 * containers, which would otherwise recurse forever. */
#define MG_MAX_DEPTH 1000
/* With MG_ENCODE_BORROW, bytes/str payloads at least this big are referenced
 * in place instead of copied into the blob. */
#define MG_BORROW_MIN 4096
/*************************************************************************
 * Encoding                                                             *
 *************************************************************************/

typedef struct {
    mg_state *st;
    mg_blob *b;
    int borrow;         /* MG_ENCODE_BORROW was passed */
    PyObject *table;    /* list of the non-native items set aside, or NULL */
} enc_t;

static int enc(enc_t *e, PyObject *o, int depth, int borrow);

static int
too_deep(enc_t *e)
{
    mg_raise(e->st, MG_ERR_NOT_SHAREABLE,
             "cannot send a value nesting deeper than %d levels to another interpreter "
             "(is a container inside itself?)", MG_MAX_DEPTH);
    return -1;
}

static int
changed_size(const char *what)
{
    PyErr_Format(PyExc_RuntimeError, "%s changed size while it was being sent", what);
    return -1;
}

static int
enc_bigint(enc_t *e, PyObject *o)
{
    mg_blob *b = e->b;
#if PY_VERSION_HEX >= 0x030D0000
    Py_ssize_t n = PyLong_AsNativeBytes(o, NULL, 0, Py_ASNATIVEBYTES_LITTLE_ENDIAN);
    if (n < 0) {
        return -1;
    }
    if (mg_reserve(b, 1 + MG_VARINT_MAX + (size_t)n) < 0) {
        return -1;
    }
    mg_put_u8(b, MG_T_BIGINT_LE);
    mg_put_varint(b, (uint64_t)n);
    Py_ssize_t got = PyLong_AsNativeBytes(o, b->data + b->size, n, Py_ASNATIVEBYTES_LITTLE_ENDIAN);
    if (got < 0) {
        return -1;
    }
    if (got > n) {
        PyErr_SetString(PyExc_SystemError, "multigil: int changed size while encoding");
        return -1;
    }
    b->size += (size_t)n;
    return 0;
#else
    /* Hex is linear both ways (power-of-two base) and not subject to the
     * int/str digit limit. */
    PyObject *hex = PyNumber_ToBase(o, 16);
    if (hex == NULL) {
        return -1;
    }
    Py_ssize_t n;
    const char *s = PyUnicode_AsUTF8AndSize(hex, &n);
    if (s == NULL || mg_reserve(b, 1 + MG_VARINT_MAX + (size_t)n) < 0) {
        Py_DECREF(hex);
        return -1;
    }
    mg_put_u8(b, MG_T_BIGINT_HEX);
    mg_put_varint(b, (uint64_t)n);
    mg_put_raw(b, s, (size_t)n);
    Py_DECREF(hex);
    return 0;
#endif
}

static inline int
enc_int(enc_t *e, PyObject *o)
{
    long long v;
    /* Most ints are "compact" (one 30-bit digit): read inline, no call. */
    if (PyUnstable_Long_IsCompact((PyLongObject *)o)) {
        v = (long long)PyUnstable_Long_CompactValue((PyLongObject *)o);
    }
    else {
        int overflow;
        v = PyLong_AsLongLongAndOverflow(o, &overflow);
        if (overflow) {
            return enc_bigint(e, o);
        }
        if (v == -1 && PyErr_Occurred()) {
            return -1;
        }
    }
    mg_blob *b = e->b;
    if (mg_reserve(b, 9) < 0) {
        return -1;
    }
    if (v >= INT8_MIN && v <= INT8_MAX) {
        int8_t x = (int8_t)v;
        mg_put_u8(b, MG_T_INT8);
        mg_put_raw(b, &x, 1);
    }
    else if (v >= INT16_MIN && v <= INT16_MAX) {
        int16_t x = (int16_t)v;
        mg_put_u8(b, MG_T_INT16);
        mg_put_raw(b, &x, 2);
    }
    else if (v >= INT32_MIN && v <= INT32_MAX) {
        int32_t x = (int32_t)v;
        mg_put_u8(b, MG_T_INT32);
        mg_put_raw(b, &x, 4);
    }
    else {
        int64_t x = (int64_t)v;
        mg_put_u8(b, MG_T_INT64);
        mg_put_raw(b, &x, 8);
    }
    return 0;
}

static int
enc_str(enc_t *e, PyObject *o, int borrow)
{
    mg_blob *b = e->b;
    Py_ssize_t n = PyUnicode_GET_LENGTH(o);
    unsigned kind = PyUnicode_KIND(o);
    const void *data = PyUnicode_DATA(o);
    size_t nbytes = (size_t)n * kind;
    if (borrow && nbytes >= MG_BORROW_MIN) {
        if (mg_reserve(b, 2 + MG_VARINT_MAX + sizeof(void *)) < 0) {
            return -1;
        }
        mg_put_u8(b, MG_T_STR_REF);
        mg_put_u8(b, kind);
        mg_put_varint(b, (uint64_t)n);
        mg_put_ptr(b, data);
        return 0;
    }
    if (mg_reserve(b, 1 + MG_VARINT_MAX + 3 + nbytes) < 0) {
        return -1;
    }
    mg_put_u8(b, kind == 1 ? MG_T_STR1 : kind == 2 ? MG_T_STR2 : MG_T_STR4);
    mg_put_varint(b, (uint64_t)n);
    /* UCS2/UCS4 data is read in place by PyUnicode_FromKindAndData: align it. */
    while (b->size & (kind - 1)) {
        mg_put_u8(b, 0);
    }
    mg_put_raw(b, data, nbytes);
    return 0;
}

static int
enc_bytes(enc_t *e, int tag, const char *p, size_t n, int borrow)
{
    mg_blob *b = e->b;
    if (borrow && n >= MG_BORROW_MIN) {
        if (mg_reserve(b, 1 + MG_VARINT_MAX + sizeof(void *)) < 0) {
            return -1;
        }
        mg_put_u8(b, MG_T_BYTES_REF);
        mg_put_varint(b, n);
        mg_put_ptr(b, p);
        return 0;
    }
    if (mg_reserve(b, 1 + MG_VARINT_MAX + n) < 0) {
        return -1;
    }
    mg_put_u8(b, (unsigned)tag);
    mg_put_varint(b, n);
    mg_put_raw(b, p, n);
    return 0;
}

static inline int
put_header(enc_t *e, int tag, Py_ssize_t n)
{
    if (mg_reserve(e->b, 1 + MG_VARINT_MAX) < 0) {
        return -1;
    }
    mg_put_u8(e->b, (unsigned)tag);
    mg_put_varint(e->b, (uint64_t)n);
    return 0;
}

static int
enc_tuple(enc_t *e, PyObject *o, int depth, int borrow)
{
    Py_ssize_t n = PyTuple_GET_SIZE(o);
    if (put_header(e, MG_T_TUPLE, n) < 0) {
        return -1;
    }
    /* A tuple can't change, and the caller holds it: its items are safe. */
    for (Py_ssize_t i = 0; i < n; i++) {
        if (enc(e, PyTuple_GET_ITEM(o, i), depth + 1, borrow) < 0) {
            return -1;
        }
    }
    return 0;
}

static int
enc_list(enc_t *e, PyObject *o, int depth)
{
    Py_ssize_t n = PyList_GET_SIZE(o);
    if (put_header(e, MG_T_LIST, n) < 0) {
        return -1;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        /* No Python code runs during the walk (pickling waits for its end),
         * but the walk must not rely on it: a later change may call out, and
         * it costs nothing.  Check the size, and hold the item. */
        if (i >= PyList_GET_SIZE(o)) {
            return changed_size("list");
        }
        PyObject *item = PyList_GET_ITEM(o, i);
        Py_INCREF(item);
        int rc = enc(e, item, depth + 1, 0);
        Py_DECREF(item);
        if (rc < 0) {
            return -1;
        }
    }
    if (PyList_GET_SIZE(o) != n) {
        return changed_size("list");
    }
    return 0;
}

static int
enc_dict(enc_t *e, PyObject *o, int depth)
{
    Py_ssize_t n = PyDict_GET_SIZE(o), pos = 0, count = 0;
    PyObject *k, *v;
    if (put_header(e, MG_T_DICT, n) < 0) {
        return -1;
    }
    while (PyDict_Next(o, &pos, &k, &v)) {
        if (count == n) {
            return changed_size("dict");
        }
        Py_INCREF(k);
        Py_INCREF(v);
        int rc = enc(e, k, depth + 1, 0);
        if (rc == 0) {
            rc = enc(e, v, depth + 1, 0);
        }
        Py_DECREF(k);
        Py_DECREF(v);
        if (rc < 0) {
            return -1;
        }
        count++;
    }
    if (count != n) {
        return changed_size("dict");
    }
    return 0;
}

static int
enc_set(enc_t *e, PyObject *o, int tag, int depth, int borrow)
{
    Py_ssize_t n = PySet_GET_SIZE(o), count = 0;
    if (put_header(e, tag, n) < 0) {
        return -1;
    }
    PyObject *it = PyObject_GetIter(o);
    if (it == NULL) {
        return -1;
    }
    PyObject *item;
    while ((item = PyIter_Next(it)) != NULL) {
        int rc = count < n ? enc(e, item, depth + 1, borrow) : changed_size("set");
        Py_DECREF(item);
        if (rc < 0) {
            Py_DECREF(it);
            return -1;
        }
        count++;
    }
    Py_DECREF(it);
    if (PyErr_Occurred()) {
        return -1;
    }
    if (count != n) {
        return changed_size("set");
    }
    return 0;
}

/* The wrapper types whose instances travel as handles (NULL: not built yet).
 * Subtypes count too (BoundedSemaphore derives from Semaphore): they extend
 * the wrapper layout, and the raw object's kind decides what is rebuilt. */
static int
is_wrapper_type(mg_state *st, PyTypeObject *tp)
{
    PyTypeObject *types[] = {st->SharedBufferType, st->QueueType, st->LockType, st->RLockType,
                             st->EventType, st->SemaphoreType, st->ConditionType};
    const size_t n = sizeof(types) / sizeof(types[0]);
    for (size_t i = 0; i < n; i++) {
        if (tp == types[i]) {
            return 1;
        }
    }
    for (size_t i = 0; i < n; i++) {
        if (types[i] != NULL && PyType_IsSubtype(tp, types[i])) {
            return 1;
        }
    }
    return 0;
}

static int
enc_wrapper(enc_t *e, PyObject *o)
{
    mg_shared *raw = ((mg_wrapper *)o)->raw;
    if (raw == NULL) {
        PyObject *name = PyType_GetQualName(Py_TYPE(o));
        mg_raise(e->st, MG_ERR_NOT_SHAREABLE,
                 "cannot send a released or closed %s to another interpreter",
                 name != NULL ? PyUnicode_AsUTF8(name) : "object");
        Py_XDECREF(name);
        return -1;
    }
    mg_shared_incref(raw);
    return mg_put_handle(e->b, raw);
}

static int
enc_memoryview(enc_t *e, PyObject *o)
{
    mg_shared *raw = mg_export_new(o);
    if (raw == NULL) {
        return mg_not_shareable(e->st, o, "cannot share its memory: ");
    }
    return mg_put_handle(e->b, raw);
}

/* A non-native item inside a container: set it aside in the table, to be
 * pickled with all the others in one call once the walk is done (enc_table),
 * and write its index.  The containers around it stay native, with their exact
 * types, and so do shared objects and memoryviews anywhere in the value, which
 * pickle could not carry.  The table holds a reference to the item. */
static int
enc_defer(enc_t *e, PyObject *o)
{
    if (e->table == NULL && (e->table = PyList_New(0)) == NULL) {
        return -1;
    }
    size_t idx = (size_t)PyList_GET_SIZE(e->table);
    if (mg_reserve(e->b, 1 + MG_VARINT_MAX) < 0 || PyList_Append(e->table, o) < 0) {
        return -1;
    }
    mg_put_u8(e->b, MG_T_PICKLE_REF);
    mg_put_varint(e->b, idx);
    return 0;
}

/* The walk is done and set items aside: make the blob a table blob (see the
 * stream format).  The stream moves behind the header (one memmove, cheap next
 * to any pickling), then the table is pickled behind it, in one call.  Shared
 * references between the items survive it, as in one pickle.dumps. */
static int
enc_table(enc_t *e)
{
    mg_blob *b = e->b;
    size_t n = b->size;
    if ((uint64_t)n >> 56) {
        PyErr_NoMemory();
        return -1;
    }
    PyObject *buffers;
    PyObject *data = mg_pickle_dumps(e->st, e->table, &buffers);
    if (data == NULL) {
        return mg_pickle_table_error(e->st, e->table);
    }
    int rc = mg_reserve(b, MG_TABLE_HEADER);
    if (rc == 0) {
        memmove(b->data + MG_TABLE_HEADER, b->data, n);
        b->data[0] = (char)MG_T_TABLE;
        for (int i = 0; i < MG_TABLE_HEADER - 1; i++) {
            b->data[1 + i] = (char)(unsigned char)(n >> (8 * i));
        }
        b->size += MG_TABLE_HEADER;
        rc = mg_put_pickled(b, data, buffers);
    }
    Py_DECREF(data);
    Py_DECREF(buffers);
    return rc < 0 ? mg_pickle_table_error(e->st, e->table) : 0;
}

/* borrow: MG_ENCODE_BORROW, and every container above `o` is immutable, so
 * that `o` stays alive while the sender waits. */
static int
enc(enc_t *e, PyObject *o, int depth, int borrow)
{
    PyTypeObject *tp = Py_TYPE(o);
    mg_blob *b = e->b;

    if (tp == &PyLong_Type) {
        return enc_int(e, o);
    }
    if (tp == &PyUnicode_Type) {
        return enc_str(e, o, borrow);
    }
    if (tp == &PyFloat_Type) {
        double d = PyFloat_AS_DOUBLE(o);
        if (mg_reserve(b, 1 + sizeof(d)) < 0) {
            return -1;
        }
        mg_put_u8(b, MG_T_FLOAT);
        mg_put_raw(b, &d, sizeof(d));
        return 0;
    }
    if (o == Py_None || tp == &PyBool_Type) {
        if (mg_reserve(b, 1) < 0) {
            return -1;
        }
        mg_put_u8(b, o == Py_None ? MG_T_NONE : o == Py_True ? MG_T_TRUE : MG_T_FALSE);
        return 0;
    }
    if (tp == &PyTuple_Type) {
        return depth >= MG_MAX_DEPTH ? too_deep(e) : enc_tuple(e, o, depth, borrow);
    }
    if (tp == &PyList_Type) {
        return depth >= MG_MAX_DEPTH ? too_deep(e) : enc_list(e, o, depth);
    }
    if (tp == &PyDict_Type) {
        return depth >= MG_MAX_DEPTH ? too_deep(e) : enc_dict(e, o, depth);
    }
    if (tp == &PyBytes_Type) {
        return enc_bytes(e, MG_T_BYTES, PyBytes_AS_STRING(o), (size_t)PyBytes_GET_SIZE(o), borrow);
    }
    if (tp == &PyByteArray_Type) {
        /* Never borrowed: another thread of the sender may resize it. */
        return enc_bytes(e, MG_T_BYTEARRAY, PyByteArray_AS_STRING(o),
                         (size_t)PyByteArray_GET_SIZE(o), 0);
    }
    if (tp == &PyComplex_Type) {
        Py_complex c = PyComplex_AsCComplex(o);
        if (mg_reserve(b, 1 + sizeof(c)) < 0) {
            return -1;
        }
        mg_put_u8(b, MG_T_COMPLEX);
        mg_put_raw(b, &c, sizeof(c));
        return 0;
    }
    if (tp == &PySet_Type) {
        return depth >= MG_MAX_DEPTH ? too_deep(e) : enc_set(e, o, MG_T_SET, depth, 0);
    }
    if (tp == &PyFrozenSet_Type) {
        return depth >= MG_MAX_DEPTH ? too_deep(e) : enc_set(e, o, MG_T_FROZENSET, depth, borrow);
    }
    if (tp == &PyMemoryView_Type) {
        return enc_memoryview(e, o);
    }
    if (is_wrapper_type(e->st, tp)) {
        return enc_wrapper(e, o);
    }
    /* Pickled: alone at the top, else with the value's other such items. */
    return depth == 0 ? mg_pickle_put(e->st, b, o) : enc_defer(e, o);
}

int
mg_encode(mg_state *st, PyObject *obj, mg_blob *out, int flags)
{
    /* Reuse the caller's capacity, if any; start from an empty stream. */
    mg_blob_reset(out, flags);
    enc_t e = {st, out, (flags & MG_ENCODE_BORROW) != 0, NULL};
    int rc = enc(&e, obj, 0, e.borrow);
    if (rc == 0 && e.table != NULL) {
        rc = enc_table(&e);
    }
    Py_XDECREF(e.table);
    if (rc < 0) {
        mg_blob_clear(out);
        return -1;
    }
    return 0;
}

/*************************************************************************
 * Native shareability                                                  *
 *************************************************************************/

static int
native(mg_state *st, PyObject *o, int depth)
{
    PyTypeObject *tp = Py_TYPE(o);
    if (tp == &PyLong_Type || tp == &PyUnicode_Type || tp == &PyFloat_Type || o == Py_None
        || tp == &PyBool_Type || tp == &PyBytes_Type || tp == &PyByteArray_Type
        || tp == &PyComplex_Type || tp == &PyMemoryView_Type) {
        return 1;
    }
    int seq = tp == &PyTuple_Type || tp == &PyList_Type;
    int set = tp == &PySet_Type || tp == &PyFrozenSet_Type;
    if (!seq && !set && tp != &PyDict_Type) {
        return is_wrapper_type(st, tp) && ((mg_wrapper *)o)->raw != NULL;
    }
    if (depth >= MG_MAX_DEPTH) {
        return 0;
    }
    /* No Python code runs below, so the containers can't change under us. */
    if (seq) {
        Py_ssize_t n = PySequence_Fast_GET_SIZE(o);
        PyObject **items = PySequence_Fast_ITEMS(o);
        for (Py_ssize_t i = 0; i < n; i++) {
            if (!native(st, items[i], depth + 1)) {
                return 0;
            }
        }
        return 1;
    }
    if (!set) {
        Py_ssize_t pos = 0;
        PyObject *k, *v;
        while (PyDict_Next(o, &pos, &k, &v)) {
            if (!native(st, k, depth + 1) || !native(st, v, depth + 1)) {
                return 0;
            }
        }
        return 1;
    }
    PyObject *it = PyObject_GetIter(o);
    if (it == NULL) {
        PyErr_Clear();
        return 0;
    }
    PyObject *item;
    int ok = 1;
    while (ok && (item = PyIter_Next(it)) != NULL) {
        ok = native(st, item, depth + 1);
        Py_DECREF(item);
    }
    Py_DECREF(it);
    if (PyErr_Occurred()) {
        PyErr_Clear();
        return 0;
    }
    return ok;
}

int
mg_is_natively_shareable(mg_state *st, PyObject *obj)
{
    return native(st, obj, 0);
}

/*************************************************************************
 * Decoding                                                             *
 *************************************************************************/

typedef struct {
    mg_reader r;
    mg_state *st;
    PyObject *table;    /* the unpickled table of a table blob (borrowed), or NULL */
} dec_t;

static PyObject *dec(dec_t *d, int depth);

static PyObject *
dec_bigint(dec_t *d, int tag)
{
    size_t n;
    if (mg_get_len(&d->r, 1, &n) < 0) {
        return NULL;
    }
    const unsigned char *p = d->r.p;
    d->r.p += n;
    if (tag == MG_T_BIGINT_LE) {
#if PY_VERSION_HEX >= 0x030D0000
        return PyLong_FromNativeBytes(p, n, Py_ASNATIVEBYTES_LITTLE_ENDIAN);
#else
        return mg_malformed("int encoded by a newer Python");
#endif
    }
    /* PyLong_FromString wants a NUL-terminated string. */
    char *s = (char *)PyMem_RawMalloc(n + 1);
    if (s == NULL) {
        return PyErr_NoMemory();
    }
    memcpy(s, p, n);
    s[n] = '\0';
    char *endp = NULL;
    PyObject *v = PyLong_FromString(s, &endp, 16);
    if (v != NULL && endp != s + n) {
        Py_CLEAR(v);
        mg_malformed("bad int");
    }
    PyMem_RawFree(s);
    return v;
}

/* A UCS4 payload must hold code points only: a corrupted stream must not
 * build an invalid str (PyUnicode_FromKindAndData does not check). */
static int
ucs4_valid(const void *data, size_t n)
{
    const unsigned char *p = data;
    for (size_t i = 0; i < n; i++) {
        Py_UCS4 c;
        memcpy(&c, p + i * 4, 4);
        if (c > 0x10FFFF) {
            return 0;
        }
    }
    return 1;
}

static PyObject *
dec_str(dec_t *d, int kind)
{
    size_t n;
    if (mg_get_len(&d->r, (size_t)kind, &n) < 0) {
        return NULL;
    }
    /* Skip the alignment padding (the blob data is malloc-aligned). */
    if (kind > 1) {
        size_t pad = (size_t)(-((const char *)d->r.p - d->r.b->data)) & (size_t)(kind - 1);
        if (pad > mg_remaining(&d->r)) {
            return mg_malformed("truncated");
        }
        d->r.p += pad;
    }
    if (n > mg_remaining(&d->r) / (size_t)kind) {
        return mg_malformed("truncated");
    }
    const unsigned char *p = d->r.p;
    d->r.p += n * (size_t)kind;
    if (kind == 4 && !ucs4_valid(p, n)) {
        return mg_malformed("bad code point");
    }
    return PyUnicode_FromKindAndData(kind, p, (Py_ssize_t)n);
}

static PyObject *
dec_str_ref(dec_t *d)
{
    unsigned char kind;
    uint64_t n;
    const void *p;
    if (mg_get_raw(&d->r, &kind, 1) < 0 || mg_get_varint(&d->r, &n) < 0 || mg_get_raw(&d->r, &p, sizeof(p)) < 0) {
        return NULL;
    }
    if ((kind != 1 && kind != 2 && kind != 4) || n > (uint64_t)PY_SSIZE_T_MAX / 4) {
        return mg_malformed("bad string");
    }
    if (kind == 4 && !ucs4_valid(p, (size_t)n)) {
        return mg_malformed("bad code point");
    }
    return PyUnicode_FromKindAndData(kind, p, (Py_ssize_t)n);
}

static PyObject *
dec_bytes(dec_t *d, int tag)
{
    size_t n;
    const char *p;
    if (tag == MG_T_BYTES_REF) {
        uint64_t n64;
        if (mg_get_varint(&d->r, &n64) < 0 || mg_get_raw(&d->r, &p, sizeof(p)) < 0) {
            return NULL;
        }
        if (n64 > (uint64_t)PY_SSIZE_T_MAX) {
            return mg_malformed("bad bytes");
        }
        n = (size_t)n64;
    }
    else {
        if (mg_get_len(&d->r, 1, &n) < 0) {
            return NULL;
        }
        p = (const char *)d->r.p;
        d->r.p += n;
    }
    if (tag == MG_T_BYTEARRAY) {
        return PyByteArray_FromStringAndSize(p, (Py_ssize_t)n);
    }
    /* One copy, straight from the source into the new object. */
    return PyBytes_FromStringAndSize(p, (Py_ssize_t)n);
}

static PyObject *
dec_seq(dec_t *d, int tag, int depth)
{
    size_t n;
    if (depth >= MG_MAX_DEPTH) {
        return mg_malformed("too deep");
    }
    if (mg_get_len(&d->r, 1, &n) < 0) {
        return NULL;
    }
    PyObject *seq = tag == MG_T_TUPLE ? PyTuple_New((Py_ssize_t)n) : PyList_New((Py_ssize_t)n);
    if (seq == NULL) {
        return NULL;
    }
    for (size_t i = 0; i < n; i++) {
        PyObject *item = dec(d, depth + 1);
        if (item == NULL) {
            Py_DECREF(seq);
            return NULL;
        }
        if (tag == MG_T_TUPLE) {
            PyTuple_SET_ITEM(seq, (Py_ssize_t)i, item);
        }
        else {
            PyList_SET_ITEM(seq, (Py_ssize_t)i, item);
        }
    }
    return seq;
}

static PyObject *
dec_dict(dec_t *d, int depth)
{
    size_t n;
    if (depth >= MG_MAX_DEPTH) {
        return mg_malformed("too deep");
    }
    if (mg_get_len(&d->r, 2, &n) < 0) {
        return NULL;
    }
    PyObject *dict = PyDict_New();
    if (dict == NULL) {
        return NULL;
    }
    for (size_t i = 0; i < n; i++) {
        PyObject *k = dec(d, depth + 1);
        if (k == NULL) {
            goto fail;
        }
        PyObject *v = dec(d, depth + 1);
        if (v == NULL) {
            Py_DECREF(k);
            goto fail;
        }
        int rc = PyDict_SetItem(dict, k, v);
        Py_DECREF(k);
        Py_DECREF(v);
        if (rc < 0) {
            goto fail;
        }
    }
    return dict;
fail:
    Py_DECREF(dict);
    return NULL;
}

static PyObject *
dec_set(dec_t *d, int tag, int depth)
{
    size_t n;
    if (depth >= MG_MAX_DEPTH) {
        return mg_malformed("too deep");
    }
    if (mg_get_len(&d->r, 1, &n) < 0) {
        return NULL;
    }
    /* PySet_Add may fill a frozenset that nobody else has seen yet. */
    PyObject *set = tag == MG_T_SET ? PySet_New(NULL) : PyFrozenSet_New(NULL);
    if (set == NULL) {
        return NULL;
    }
    for (size_t i = 0; i < n; i++) {
        PyObject *item = dec(d, depth + 1);
        if (item == NULL) {
            Py_DECREF(set);
            return NULL;
        }
        int rc = PySet_Add(set, item);
        Py_DECREF(item);
        if (rc < 0) {
            Py_DECREF(set);
            return NULL;
        }
    }
    return set;
}

static PyObject *
dec_handle(dec_t *d)
{
    mg_shared *raw = mg_get_handle(&d->r);
    if (raw == NULL) {
        return NULL;
    }
    return raw->kind->wrap(d->st, raw);
}

static PyObject *
dec_pickle_ref(dec_t *d)
{
    uint64_t idx;
    if (mg_get_varint(&d->r, &idx) < 0) {
        return NULL;
    }
    if (d->table == NULL || idx >= (uint64_t)PyList_GET_SIZE(d->table)) {
        return mg_malformed("bad pickle reference");
    }
    return Py_NewRef(PyList_GET_ITEM(d->table, (Py_ssize_t)idx));
}

static PyObject *
dec(dec_t *d, int depth)
{
    if (d->r.p >= d->r.end) {
        return mg_malformed("truncated");
    }
    int tag = *d->r.p++;
    switch (tag) {
    case MG_T_NONE:
        Py_RETURN_NONE;
    case MG_T_TRUE:
        Py_RETURN_TRUE;
    case MG_T_FALSE:
        Py_RETURN_FALSE;
    case MG_T_INT8: {
        int8_t x;
        return mg_get_raw(&d->r, &x, 1) < 0 ? NULL : PyLong_FromLong(x);
    }
    case MG_T_INT16: {
        int16_t x;
        return mg_get_raw(&d->r, &x, 2) < 0 ? NULL : PyLong_FromLong(x);
    }
    case MG_T_INT32: {
        int32_t x;
        return mg_get_raw(&d->r, &x, 4) < 0 ? NULL : PyLong_FromLong(x);
    }
    case MG_T_INT64: {
        int64_t x;
        return mg_get_raw(&d->r, &x, 8) < 0 ? NULL : PyLong_FromLongLong(x);
    }
    case MG_T_BIGINT_LE:
    case MG_T_BIGINT_HEX:
        return dec_bigint(d, tag);
    case MG_T_FLOAT: {
        double x;
        return mg_get_raw(&d->r, &x, sizeof(x)) < 0 ? NULL : PyFloat_FromDouble(x);
    }
    case MG_T_COMPLEX: {
        Py_complex c;
        return mg_get_raw(&d->r, &c, sizeof(c)) < 0 ? NULL : PyComplex_FromCComplex(c);
    }
    case MG_T_STR1:
        return dec_str(d, 1);
    case MG_T_STR2:
        return dec_str(d, 2);
    case MG_T_STR4:
        return dec_str(d, 4);
    case MG_T_BYTES:
    case MG_T_BYTEARRAY:
        return dec_bytes(d, tag);
    case MG_T_STR_REF:
    case MG_T_BYTES_REF:
        /* Pointers are only trusted in a blob built to carry them. */
        if (!(d->r.b->flags & MG_ENCODE_BORROW)) {
            return mg_malformed("unexpected reference");
        }
        return tag == MG_T_STR_REF ? dec_str_ref(d) : dec_bytes(d, tag);
    case MG_T_TUPLE:
    case MG_T_LIST:
        return dec_seq(d, tag, depth);
    case MG_T_DICT:
        return dec_dict(d, depth);
    case MG_T_SET:
    case MG_T_FROZENSET:
        return dec_set(d, tag, depth);
    case MG_T_HANDLE:
        return dec_handle(d);
    case MG_T_PICKLE:
        return mg_pickle_read(d->st, &d->r);
    case MG_T_PICKLE_REF:
        return dec_pickle_ref(d);
    default:    /* MG_T_TABLE too: it is only ever the first byte */
        return mg_malformed("unknown tag");
    }
}

/* A table blob: unpickle the table behind the stream first, then decode the
 * stream, whose PICKLE_REFs index into it. */
static PyObject *
dec_table_blob(mg_state *st, const mg_blob *b)
{
    const unsigned char *start = (const unsigned char *)b->data;
    const unsigned char *end = start + b->size;
    if (b->size < MG_TABLE_HEADER) {
        return mg_malformed("truncated");
    }
    uint64_t n = 0;
    for (int i = 0; i < MG_TABLE_HEADER - 1; i++) {
        n |= (uint64_t)start[1 + i] << (8 * i);
    }
    if (n > b->size - MG_TABLE_HEADER) {
        return mg_malformed("truncated");
    }
    const unsigned char *mid = start + MG_TABLE_HEADER + n;
    dec_t t = {{b, mid, end}, st, NULL};
    if (t.r.p >= t.r.end || *t.r.p != MG_T_PICKLE) {
        return mg_malformed("bad pickle table");
    }
    PyObject *table = dec(&t, 0);
    if (table == NULL) {
        return NULL;
    }
    PyObject *v = NULL;
    if (!PyList_CheckExact(table)) {
        mg_malformed("bad pickle table");
    }
    else if (t.r.p != t.r.end) {
        mg_malformed("trailing data");
    }
    else {
        dec_t d = {{b, start + MG_TABLE_HEADER, mid}, st, table};
        v = dec(&d, 0);
        if (v != NULL && d.r.p != d.r.end) {
            Py_CLEAR(v);
            mg_malformed("trailing data");
        }
    }
    Py_DECREF(table);
    return v;
}

PyObject *
mg_decode(mg_state *st, const mg_blob *b)
{
    if (b->data == NULL || b->size == 0) {
        return mg_malformed("empty");
    }
    if ((unsigned char)b->data[0] == MG_T_TABLE) {
        return dec_table_blob(st, b);
    }
    dec_t d = {{b, (const unsigned char *)b->data, (const unsigned char *)b->data + b->size},
               st, NULL};
    PyObject *v = dec(&d, 0);
    if (v != NULL && d.r.p != d.r.end) {
        Py_DECREF(v);
        return mg_malformed("trailing data");
    }
    return v;
}

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
"interpreter.  ``flags=1`` is MG_ENCODE_BORROW.\n");

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
    {"_is_natively_shareable", xi_is_natively_shareable, METH_O, is_shareable_doc},
    {"_run_deferred", xi_run_deferred, METH_NOARGS, run_deferred_doc},
    {NULL, NULL, 0, NULL},
};

int
mg_xidata_init(PyObject *module, mg_state *Py_UNUSED(st))
{
    if (PyModule_AddFunctions(module, xidata_methods) < 0) {
        return -1;
    }
    return PyModule_AddIntConstant(module, "ENCODE_BORROW", MG_ENCODE_BORROW);
}
