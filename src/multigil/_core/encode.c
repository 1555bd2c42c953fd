/* encode.c — mg_encode: a value, walked in the sender, as a blob.
 *
 * Built-in value types (exact types only) are written natively; shared objects
 * (queues, locks, SharedBuffer) travel as handles; a memoryview travels as an
 * export of its memory (no copy); everything else goes through pickle
 * (pickle.h).  The non-native items of a container are set aside during the
 * walk and pickled together in one call at the end: a pickle call costs
 * microseconds of fixed overhead (cloudpickle's Pickler is partly Python), so
 * ten thousand Fractions in a list must be one call, not ten thousand.
 */
#include "xidata.h"
#include "errors.h"
#include "shm.h"
#include "pickle.h"

/*************************************************************************
 * Encoding                                                             *
 *************************************************************************/

typedef struct {
    mg_state *st;
    mg_blob *b;
    int borrow;         /* MG_ENCODE_BORROW was passed */
    int lend;           /* MG_ENCODE_LEND was passed */
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

/* A large bytes or str that is not borrowed: lent, if the caller asked. */
static int
enc_lend(enc_t *e, PyObject *o)
{
    mg_shared *raw = mg_lend_new(o);
    return raw == NULL ? -1 : mg_put_handle(e->b, raw);
}

static int
enc_str(enc_t *e, PyObject *o, int borrow)
{
    mg_blob *b = e->b;
    Py_ssize_t n = PyUnicode_GET_LENGTH(o);
    unsigned kind = PyUnicode_KIND(o);
    const void *data = PyUnicode_DATA(o);
    size_t nbytes = (size_t)n * kind;
    if (!borrow && e->lend && nbytes >= MG_BORROW_MIN) {
        return enc_lend(e, o);
    }
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

/* `o` is lent when it is an exact bytes (never a bytearray: another thread
 * of the sender may resize it) that is not borrowed, with MG_ENCODE_LEND. */
static int
enc_bytes(enc_t *e, PyObject *o, int tag, const char *p, size_t n, int borrow)
{
    mg_blob *b = e->b;
    if (!borrow && e->lend && tag == MG_T_BYTES && n >= MG_BORROW_MIN) {
        return enc_lend(e, o);
    }
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

/* What a value is to the encoder: one of the exact built-in types that cross
 * natively, a shared object, or anything else (pickled).  The one dispatch
 * of mg_encode and mg_is_natively_shareable, in the order of how common each
 * kind is. */
typedef enum {
    K_INT, K_STR, K_FLOAT, K_CONST /* None, True, False */, K_BYTES, K_BYTEARRAY,
    K_COMPLEX, K_MEMORYVIEW, K_SHARED, K_OTHER,
    K_TUPLE, K_LIST, K_DICT, K_SET, K_FROZENSET,   /* the containers, last */
} kind_t;

#define IS_CONTAINER(kind) ((kind) >= K_TUPLE)

static inline kind_t
kind_of(mg_state *st, PyObject *o)
{
    PyTypeObject *tp = Py_TYPE(o);
    if (tp == &PyLong_Type) {
        return K_INT;
    }
    if (tp == &PyUnicode_Type) {
        return K_STR;
    }
    if (tp == &PyFloat_Type) {
        return K_FLOAT;
    }
    if (o == Py_None || tp == &PyBool_Type) {
        return K_CONST;
    }
    if (tp == &PyTuple_Type) {
        return K_TUPLE;
    }
    if (tp == &PyList_Type) {
        return K_LIST;
    }
    if (tp == &PyDict_Type) {
        return K_DICT;
    }
    if (tp == &PyBytes_Type) {
        return K_BYTES;
    }
    if (tp == &PyByteArray_Type) {
        return K_BYTEARRAY;
    }
    if (tp == &PyComplex_Type) {
        return K_COMPLEX;
    }
    if (tp == &PySet_Type) {
        return K_SET;
    }
    if (tp == &PyFrozenSet_Type) {
        return K_FROZENSET;
    }
    if (tp == &PyMemoryView_Type) {
        return K_MEMORYVIEW;
    }
    return is_wrapper_type(st, tp) ? K_SHARED : K_OTHER;
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
    mg_blob *b = e->b;
    kind_t kind = kind_of(e->st, o);

    if (IS_CONTAINER(kind) && depth >= MG_MAX_DEPTH) {
        return too_deep(e);
    }
    switch (kind) {
    case K_INT:
        return enc_int(e, o);
    case K_STR:
        return enc_str(e, o, borrow);
    case K_FLOAT: {
        double d = PyFloat_AS_DOUBLE(o);
        if (mg_reserve(b, 1 + sizeof(d)) < 0) {
            return -1;
        }
        mg_put_u8(b, MG_T_FLOAT);
        mg_put_raw(b, &d, sizeof(d));
        return 0;
    }
    case K_CONST:
        if (mg_reserve(b, 1) < 0) {
            return -1;
        }
        mg_put_u8(b, o == Py_None ? MG_T_NONE : o == Py_True ? MG_T_TRUE : MG_T_FALSE);
        return 0;
    case K_TUPLE:
        return enc_tuple(e, o, depth, borrow);
    case K_LIST:
        return enc_list(e, o, depth);
    case K_DICT:
        return enc_dict(e, o, depth);
    case K_BYTES:
        return enc_bytes(e, o, MG_T_BYTES, PyBytes_AS_STRING(o), (size_t)PyBytes_GET_SIZE(o),
                         borrow);
    case K_BYTEARRAY:
        /* Never borrowed: another thread of the sender may resize it. */
        return enc_bytes(e, o, MG_T_BYTEARRAY, PyByteArray_AS_STRING(o),
                         (size_t)PyByteArray_GET_SIZE(o), 0);
    case K_COMPLEX: {
        Py_complex c = PyComplex_AsCComplex(o);
        if (mg_reserve(b, 1 + sizeof(c)) < 0) {
            return -1;
        }
        mg_put_u8(b, MG_T_COMPLEX);
        mg_put_raw(b, &c, sizeof(c));
        return 0;
    }
    case K_SET:
        return enc_set(e, o, MG_T_SET, depth, 0);
    case K_FROZENSET:
        return enc_set(e, o, MG_T_FROZENSET, depth, borrow);
    case K_MEMORYVIEW:
        return enc_memoryview(e, o);
    case K_SHARED:
        return enc_wrapper(e, o);
    case K_OTHER:
        break;
    }
    /* Pickled: alone at the top, else with the value's other such items. */
    return depth == 0 ? mg_pickle_put(e->st, b, o) : enc_defer(e, o);
}

/* Encode `obj`, or (items != NULL) the tuple of the n `items` without
 * building it: the same stream either way. */
static int
encode_top(mg_state *st, PyObject *obj, PyObject *const *items, Py_ssize_t n, mg_blob *out,
           int flags)
{
    /* Reuse the caller's capacity, if any; start from an empty stream. */
    mg_blob_reset(out, flags);
    enc_t e = {st, out, (flags & MG_ENCODE_BORROW) != 0, (flags & MG_ENCODE_LEND) != 0, NULL};
    int rc;
    if (items == NULL) {
        rc = enc(&e, obj, 0, e.borrow);
    }
    else {
        /* As enc_tuple: the items one level down, borrowed like its own. */
        rc = put_header(&e, MG_T_TUPLE, n);
        for (Py_ssize_t i = 0; rc == 0 && i < n; i++) {
            rc = enc(&e, items[i], 1, e.borrow);
        }
    }
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

int
mg_encode(mg_state *st, PyObject *obj, mg_blob *out, int flags)
{
    return encode_top(st, obj, NULL, 0, out, flags);
}

int
mg_encode_items(mg_state *st, PyObject *const *items, Py_ssize_t n, mg_blob *out, int flags)
{
    return encode_top(st, NULL, items, n, out, flags);
}

/*************************************************************************
 * Native shareability                                                  *
 *************************************************************************/

static int
native(mg_state *st, PyObject *o, int depth)
{
    kind_t kind = kind_of(st, o);
    if (IS_CONTAINER(kind) && depth >= MG_MAX_DEPTH) {
        return 0;
    }
    /* No Python code runs below, so the containers can't change under us. */
    switch (kind) {
    case K_SHARED:
        return ((mg_wrapper *)o)->raw != NULL;
    case K_OTHER:
        return 0;
    case K_TUPLE:
    case K_LIST: {
        Py_ssize_t n = PySequence_Fast_GET_SIZE(o);
        PyObject **items = PySequence_Fast_ITEMS(o);
        for (Py_ssize_t i = 0; i < n; i++) {
            if (!native(st, items[i], depth + 1)) {
                return 0;
            }
        }
        return 1;
    }
    case K_DICT: {
        Py_ssize_t pos = 0;
        PyObject *k, *v;
        while (PyDict_Next(o, &pos, &k, &v)) {
            if (!native(st, k, depth + 1) || !native(st, v, depth + 1)) {
                return 0;
            }
        }
        return 1;
    }
    case K_SET:
    case K_FROZENSET: {
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
    default:
        return 1;       /* the scalars and memoryview */
    }
}

int
mg_is_natively_shareable(mg_state *st, PyObject *obj)
{
    return native(st, obj, 0);
}

