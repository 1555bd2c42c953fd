/* decode.c — mg_decode: a blob, rebuilt in the receiver as an equal value.
 *
 * Every read is bounds-checked: a corrupt blob raises ValueError, it never
 * crashes.
 */
#include "xidata.h"
#include "pickle.h"

/*************************************************************************
 * Decoding                                                             *
 *************************************************************************/

typedef struct {
    mg_reader r;
    mg_state *st;
    /* A table blob's table: the PICKLE behind the stream (tab.b NULL when the
     * blob has none), unpickled by the first PICKLE_REF that needs it, so the
     * items of a stream before that reference are rebuilt even when the
     * table cannot be (a call's header, ahead of its arguments). */
    mg_reader tab;
    PyObject *table;    /* the unpickled table (owned), NULL until then */
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

/* Unpickle the table of `d`'s blob into d->table.  0, or -1. */
static int
dec_load_table(dec_t *d)
{
    if (d->tab.b == NULL) {
        mg_malformed("bad pickle reference");
        return -1;
    }
    dec_t t = {d->tab, d->st, {NULL, NULL, NULL}, NULL};
    if (t.r.p >= t.r.end || *t.r.p != MG_T_PICKLE) {
        mg_malformed("bad pickle table");
        return -1;
    }
    PyObject *table = dec(&t, 0);
    if (table == NULL) {
        return -1;
    }
    if (!PyList_CheckExact(table)) {
        Py_DECREF(table);
        mg_malformed("bad pickle table");
        return -1;
    }
    if (t.r.p != t.r.end) {
        Py_DECREF(table);
        mg_malformed("trailing data");
        return -1;
    }
    d->table = table;
    return 0;
}

static PyObject *
dec_pickle_ref(dec_t *d)
{
    uint64_t idx;
    if (mg_get_varint(&d->r, &idx) < 0) {
        return NULL;
    }
    if (d->table == NULL && dec_load_table(d) < 0) {
        return NULL;
    }
    if (idx >= (uint64_t)PyList_GET_SIZE(d->table)) {
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

/* What is rebuilt from the top of a stream: one value, or (n >= 0) the n
 * items of a tuple, without the tuple (all NULL until rebuilt). */
typedef struct {
    Py_ssize_t n;
    PyObject **items;
    PyObject *value;    /* the value; also when the top is not a tuple of n items */
} top_t;

static void
top_clear(top_t *t)
{
    Py_CLEAR(t->value);
    for (Py_ssize_t i = 0; t->items != NULL && i < t->n; i++) {
        Py_CLEAR(t->items[i]);
    }
}

/* Decode the top of `d`'s stream, which must use it up, into `t`.  When an
 * item fails, those before it stay in t->items (mg_decode_items). */
static int
dec_top(dec_t *d, top_t *t)
{
    if (t->n >= 0 && d->r.p < d->r.end && *d->r.p == MG_T_TUPLE) {
        mg_reader tuple = d->r;
        size_t len;
        d->r.p++;
        if (mg_get_len(&d->r, 1, &len) < 0) {
            return -1;
        }
        if (len == (size_t)t->n) {
            for (Py_ssize_t i = 0; i < t->n; i++) {
                if ((t->items[i] = dec(d, 1)) == NULL) {
                    return -1;
                }
            }
            goto done;
        }
        d->r = tuple;   /* another tuple: rebuilt as a value */
    }
    t->value = dec(d, 0);
    if (t->value == NULL) {
        return -1;
    }
done:
    if (d->r.p != d->r.end) {
        top_clear(t);
        mg_malformed("trailing data");
        return -1;
    }
    return 0;
}

/* A table blob: decode the stream, whose PICKLE_REFs index into the table
 * behind it (unpickled by the first of them). */
static int
dec_table_blob(mg_state *st, const mg_blob *b, top_t *top)
{
    const unsigned char *start = (const unsigned char *)b->data;
    const unsigned char *end = start + b->size;
    if (b->size < MG_TABLE_HEADER) {
        mg_malformed("truncated");
        return -1;
    }
    uint64_t n = 0;
    for (int i = 0; i < MG_TABLE_HEADER - 1; i++) {
        n |= (uint64_t)start[1 + i] << (8 * i);
    }
    if (n > b->size - MG_TABLE_HEADER) {
        mg_malformed("truncated");
        return -1;
    }
    const unsigned char *mid = start + MG_TABLE_HEADER + n;
    dec_t d = {{b, start + MG_TABLE_HEADER, mid}, st, {b, mid, end}, NULL};
    int rc = dec_top(&d, top);
    Py_XDECREF(d.table);
    return rc;
}

static int
decode_top(mg_state *st, const mg_blob *b, top_t *top)
{
    top->value = NULL;
    if (b->data == NULL || b->size == 0) {
        mg_malformed("empty");
        return -1;
    }
    if ((unsigned char)b->data[0] == MG_T_TABLE) {
        return dec_table_blob(st, b, top);
    }
    dec_t d = {{b, (const unsigned char *)b->data, (const unsigned char *)b->data + b->size},
               st, {NULL, NULL, NULL}, NULL};
    return dec_top(&d, top);
}

PyObject *
mg_decode(mg_state *st, const mg_blob *b)
{
    top_t top = {-1, NULL, NULL};
    return decode_top(st, b, &top) < 0 ? NULL : top.value;
}

int
mg_decode_items(mg_state *st, const mg_blob *b, Py_ssize_t n, PyObject **items,
                PyObject **other)
{
    top_t top = {n, items, NULL};
    *other = NULL;
    for (Py_ssize_t i = 0; i < n; i++) {
        items[i] = NULL;
    }
    if (decode_top(st, b, &top) < 0) {
        return -1;
    }
    *other = top.value;
    return top.value == NULL ? 0 : 1;
}
