/* shm.c — memory that several interpreters see at once, without copying.
 *
 * Three raw kinds live here, all mg_shared structs of plain raw memory:
 *
 *   SharedBuffer  memory allocated by us, zero-filled, 64-byte aligned, shared
 *                 by every interpreter holding a SharedBuffer wrapper for it.
 *   export        another object's buffer (a memoryview sent by value), held
 *                 by its owner interpreter and viewed by the others.
 *   chunk         a raw copy of one of pickle's out-of-band buffers, viewed in
 *                 place by the receiver's unpickler.
 *
 * The receiver's view of an export or a chunk is a ForeignBuffer: a small
 * wrapper that serves a region described once, in raw memory, by the raw
 * struct itself (buf, format, shape, strides), so that no interpreter ever
 * reads another's objects to build a Py_buffer.
 */
#include "shm.h"
#include "interp.h"

#include <stddef.h>
#include <string.h>

/* 64 bytes: a cache line, and enough for any SIMD load numpy may use. */
#define MG_SHM_ALIGN 64

static char *
align_up(char *p)
{
    uintptr_t u = (uintptr_t)p;
    return p + ((MG_SHM_ALIGN - (u % MG_SHM_ALIGN)) % MG_SHM_ALIGN);
}

/*************************************************************************
 * Regions: a Py_buffer's description, in raw memory                   *
 *************************************************************************/

/* What a ForeignBuffer serves.  Everything it points to lives in the same raw
 * allocation as the region, so it is valid while the raw struct is. */
typedef struct {
    void *buf;
    Py_ssize_t len;
    Py_ssize_t itemsize;
    int readonly;
    int ndim;
    char *format;
    Py_ssize_t *shape;
    Py_ssize_t *strides;
} mg_region;

/* The common head of the raw kinds a ForeignBuffer can view. */
typedef struct {
    mg_shared base;
    mg_region region;
} region_raw;

/*************************************************************************
 * ForeignBuffer: the receiving side of exports and chunks              *
 *************************************************************************/

typedef struct {
    MG_WRAPPER_HEAD
    const mg_region *region;   /* inside *raw */
} ForeignBufferObject;

static PyObject *
foreign_new(mg_state *st, mg_shared *raw)
{
    ForeignBufferObject *self = (ForeignBufferObject *)mg_wrapper_new(st->ForeignBufferType, raw);
    if (self != NULL) {
        self->region = &((region_raw *)raw)->region;
    }
    return (PyObject *)self;
}

/* Serve the region the way memoryview serves its own view: honour every
 * request flag the consumer passed, refuse the ones the region can't meet. */
static int
foreign_getbuffer(PyObject *op, Py_buffer *view, int flags)
{
    ForeignBufferObject *self = (ForeignBufferObject *)op;
    const mg_region *r = self->region;
    const char *why = NULL;

    view->obj = NULL;
    if ((flags & PyBUF_WRITABLE) && r->readonly) {
        PyErr_SetString(PyExc_BufferError, "ForeignBuffer: the sender's buffer is read-only");
        return -1;
    }
    view->buf = r->buf;
    view->len = r->len;
    view->readonly = r->readonly;
    view->itemsize = r->itemsize;
    view->format = r->format;
    view->ndim = r->ndim;
    view->shape = r->shape;
    view->strides = r->strides;
    view->suboffsets = NULL;
    view->internal = NULL;

    if ((flags & PyBUF_C_CONTIGUOUS) == PyBUF_C_CONTIGUOUS && !PyBuffer_IsContiguous(view, 'C')) {
        why = "ForeignBuffer: the buffer is not C-contiguous";
    }
    else if ((flags & PyBUF_F_CONTIGUOUS) == PyBUF_F_CONTIGUOUS && !PyBuffer_IsContiguous(view, 'F')) {
        why = "ForeignBuffer: the buffer is not Fortran contiguous";
    }
    else if ((flags & PyBUF_ANY_CONTIGUOUS) == PyBUF_ANY_CONTIGUOUS && !PyBuffer_IsContiguous(view, 'A')) {
        why = "ForeignBuffer: the buffer is not contiguous";
    }
    else if ((flags & PyBUF_STRIDES) != PyBUF_STRIDES && !PyBuffer_IsContiguous(view, 'C')) {
        why = "ForeignBuffer: the buffer is not C-contiguous";
    }
    if (why != NULL) {
        PyErr_SetString(PyExc_BufferError, why);
        return -1;
    }
    if (!(flags & PyBUF_FORMAT)) {
        /* NULL means unsigned bytes; len still counts them all. */
        view->format = NULL;
    }
    if ((flags & PyBUF_STRIDES) != PyBUF_STRIDES) {
        view->strides = NULL;
    }
    if ((flags & PyBUF_ND) != PyBUF_ND) {
        if (view->format != NULL) {
            PyErr_SetString(PyExc_BufferError,
                            "ForeignBuffer: cannot cast to unsigned bytes if the format flag is present");
            return -1;
        }
        view->ndim = 1;
        view->shape = NULL;
    }
    view->obj = Py_NewRef(op);
    return 0;
}

static PyObject *
foreign_repr(PyObject *op)
{
    ForeignBufferObject *self = (ForeignBufferObject *)op;
    return PyUnicode_FromFormat("<multigil.ForeignBuffer id=%lld nbytes=%zd%s>",
                                (long long)self->raw->id, self->region->len,
                                self->region->readonly ? " readonly" : "");
}

static PyObject *
foreign_get_nbytes(PyObject *op, void *Py_UNUSED(closure))
{
    return PyLong_FromSsize_t(((ForeignBufferObject *)op)->region->len);
}

static PyObject *
foreign_get_readonly(PyObject *op, void *Py_UNUSED(closure))
{
    return PyBool_FromLong(((ForeignBufferObject *)op)->region->readonly);
}

static PyGetSetDef foreign_getset[] = {
    {"nbytes", foreign_get_nbytes, NULL, "Size of the viewed memory in bytes.", NULL},
    {"readonly", foreign_get_readonly, NULL, "Whether the sender's buffer is read-only.", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

PyDoc_STRVAR(foreign_doc,
"Memory owned by another interpreter, viewed in place.\n"
"\n"
"A ``memoryview`` sent to another interpreter arrives as a ``memoryview``\n"
"over one of these, and pickle's out-of-band buffers are served by them.\n"
"The memory stays alive, and its owner cannot be closed, as long as this\n"
"object exists.  Not created directly.\n"
"\n"
"Attributes\n"
"----------\n"
"nbytes : int\n"
"    Size of the memory in bytes.\n"
"readonly : bool\n"
"    Whether the memory is read-only.\n");

static PyType_Slot foreign_slots[] = {
    {Py_tp_dealloc, mg_wrapper_dealloc},
    {Py_tp_repr, foreign_repr},
    {Py_tp_getset, foreign_getset},
    {Py_tp_doc, (void *)foreign_doc},
    {Py_bf_getbuffer, foreign_getbuffer},
    {0, NULL},
};

static PyType_Spec foreign_spec = {
    .name = "multigil.ForeignBuffer",
    .basicsize = sizeof(ForeignBufferObject),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_IMMUTABLETYPE | Py_TPFLAGS_DISALLOW_INSTANTIATION,
    .slots = foreign_slots,
};

/*************************************************************************
 * Exports: another interpreter's buffer, held for the receivers       *
 *************************************************************************/

typedef struct {
    region_raw head;
    int64_t owner;          /* interpreter id that took, and must release, view */
    Py_buffer view;         /* its obj is owned by `owner`: never touched elsewhere */
    /* shape[ndim], strides[ndim], format string follow */
} export_raw;

/* Runs attached to the owner: the only place view.obj is dropped. */
static void
export_release(void *arg)
{
    export_raw *ex = (export_raw *)arg;
    PyBuffer_Release(&ex->view);
    mg_interp_exports_add(ex->owner, -1);
    PyMem_RawFree(ex);
}

/* Any thread, any interpreter, maybe none: hand the release to the owner. */
static void
export_destroy(mg_shared *raw)
{
    export_raw *ex = (export_raw *)raw;
    if (mg_interp_defer(ex->owner, export_release, ex) < 0) {
        /* The owner is gone, and with it the object: only our memory is left. */
        PyMem_RawFree(ex);
    }
}

/* Fill the parts of `ex` every export has, from `view` (taken in the
 * current interpreter, which becomes the owner): the region's shape and
 * strides point at `shape` and `strides`, its format at `fmt`. */
static void
export_fill(export_raw *ex, const mg_shared_kind *kind, Py_buffer *view, Py_ssize_t *shape,
            Py_ssize_t *strides, char *fmt)
{
    mg_shared_init(&ex->head.base, kind);
    mg_region *r = &ex->head.region;
    r->buf = view->buf;
    r->len = view->len;
    r->itemsize = view->itemsize;
    r->readonly = view->readonly ? 1 : 0;
    r->ndim = view->ndim;
    r->format = fmt;
    r->shape = view->ndim > 0 ? shape : NULL;
    r->strides = view->ndim > 0 ? strides : NULL;
    ex->view = *view;
    ex->owner = mg_interp_id(mg_interp_current());
    mg_interp_exports_add(ex->owner, +1);
}

static PyObject *
export_wrap(mg_state *st, mg_shared *raw)
{
    PyObject *fb = foreign_new(st, raw);
    if (fb == NULL) {
        return NULL;
    }
    PyObject *mv = PyMemoryView_FromObject(fb);
    Py_DECREF(fb);
    return mv;
}

/* Process-global constant table (read-only, no lock needed). */
static const mg_shared_kind export_kind = {
    .name = "export",
    .destroy = export_destroy,
    .wrap = export_wrap,
};

mg_shared *
mg_export_new(PyObject *exporter)
{
    Py_buffer view;
    /* Writable first, so that a writable view stays writable on the other side. */
    if (PyObject_GetBuffer(exporter, &view, PyBUF_RECORDS) < 0) {
        if (!PyErr_ExceptionMatches(PyExc_BufferError)) {
            return NULL;
        }
        PyErr_Clear();
        /* Not PyBUF_FULL_RO: suboffsets (PIL-style arrays) are refused here
         * rather than half-served on the other side. */
        if (PyObject_GetBuffer(exporter, &view, PyBUF_RECORDS_RO) < 0) {
            return NULL;
        }
    }

    int ndim = view.ndim;
    const char *format = view.format != NULL ? view.format : "B";
    size_t fmtlen = strlen(format) + 1;
    size_t head = sizeof(export_raw);
    head += (sizeof(Py_ssize_t) - head % sizeof(Py_ssize_t)) % sizeof(Py_ssize_t);
    size_t total = head + 2 * (size_t)ndim * sizeof(Py_ssize_t) + fmtlen;

    export_raw *ex = (export_raw *)PyMem_RawCalloc(1, total);
    if (ex == NULL) {
        PyBuffer_Release(&view);
        PyErr_NoMemory();
        return NULL;
    }
    Py_ssize_t *shape = (Py_ssize_t *)((char *)ex + head);
    Py_ssize_t *strides = shape + ndim;
    char *fmt = (char *)(strides + ndim);
    memcpy(fmt, format, fmtlen);
    if (ndim > 0) {
        if (view.shape != NULL) {
            memcpy(shape, view.shape, (size_t)ndim * sizeof(Py_ssize_t));
        }
        else {
            /* Only possible for ndim == 1 from an exporter that ignores PyBUF_ND. */
            shape[0] = view.itemsize > 0 ? view.len / view.itemsize : view.len;
        }
        if (view.strides != NULL) {
            memcpy(strides, view.strides, (size_t)ndim * sizeof(Py_ssize_t));
        }
        else {
            PyBuffer_FillContiguousStrides(ndim, shape, strides, (int)view.itemsize, 'C');
        }
    }

    export_fill(ex, &export_kind, &view, shape, strides, fmt);
    return &ex->head.base;
}

/*************************************************************************
 * Lends: a bytes or str, held by its owner until the receivers copied it *
 *************************************************************************/

/* A lend is an export of a bytes' or str's payload (a str has no buffer
 * protocol: its view is filled by hand).  Receivers never view it: wrap()
 * builds their own bytes or str, copied straight out of the owner's object,
 * the one copy of the value.  The region's itemsize is the str's kind. */

/* 1 if the calling thread is attached to interpreter `id` (holds its GIL). */
static int
attached_to(int64_t id)
{
#if PY_VERSION_HEX >= 0x030D0000
    PyThreadState *ts = PyThreadState_GetUnchecked();
#else
    PyThreadState *ts = _PyThreadState_UncheckedGet();
#endif
    return ts != NULL && PyInterpreterState_GetID(PyThreadState_GetInterpreter(ts)) == id;
}

/* Dropping a bytes or str runs no Python code, so a thread attached to the
 * owner releases it at once (a thread of the owner that frees the blob);
 * any other defers it to the owner. */
static void
lend_destroy(mg_shared *raw)
{
    export_raw *ex = (export_raw *)raw;
    if (attached_to(ex->owner)) {
        export_release(ex);
    }
    else {
        export_destroy(raw);
    }
}

static PyObject *
lend_wrap_bytes(mg_state *Py_UNUSED(st), mg_shared *raw)
{
    const mg_region *r = &((export_raw *)raw)->head.region;
    return PyBytes_FromStringAndSize(r->buf, r->len);
}

static PyObject *
lend_wrap_str(mg_state *Py_UNUSED(st), mg_shared *raw)
{
    const mg_region *r = &((export_raw *)raw)->head.region;
    return PyUnicode_FromKindAndData((int)r->itemsize, r->buf, r->len / r->itemsize);
}

/* Process-global constant tables (read-only, no lock needed). */
static const mg_shared_kind lend_bytes_kind = {
    .name = "lent bytes",
    .destroy = lend_destroy,
    .wrap = lend_wrap_bytes,
};
static const mg_shared_kind lend_str_kind = {
    .name = "lent str",
    .destroy = lend_destroy,
    .wrap = lend_wrap_str,
};

mg_shared *
mg_lend_new(PyObject *obj)
{
    Py_buffer view;
    const mg_shared_kind *kind;
    if (PyBytes_CheckExact(obj)) {
        if (PyObject_GetBuffer(obj, &view, PyBUF_SIMPLE) < 0) {
            return NULL;
        }
        kind = &lend_bytes_kind;
    }
    else if (PyUnicode_CheckExact(obj)) {
        int k = PyUnicode_KIND(obj);
        if (PyBuffer_FillInfo(&view, obj, PyUnicode_DATA(obj), PyUnicode_GET_LENGTH(obj) * k,
                              1, PyBUF_SIMPLE) < 0) {
            return NULL;
        }
        view.itemsize = k;
        kind = &lend_str_kind;
    }
    else {
        PyErr_Format(PyExc_TypeError, "only bytes and str are lent, not %.100s",
                     Py_TYPE(obj)->tp_name);
        return NULL;
    }
    export_raw *ex = (export_raw *)PyMem_RawCalloc(1, sizeof(export_raw));
    if (ex == NULL) {
        PyBuffer_Release(&view);
        PyErr_NoMemory();
        return NULL;
    }
    export_fill(ex, kind, &view, NULL, NULL, NULL);
    return &ex->head.base;
}

/*************************************************************************
 * Chunks: raw copies of pickle's out-of-band buffers                   *
 *************************************************************************/

typedef struct {
    region_raw head;
    Py_ssize_t shape0;
    Py_ssize_t stride0;
    /* the data follows, aligned to MG_SHM_ALIGN */
} chunk_raw;

/* Process-global and read-only (no lock needed): the format of every chunk. */
static char chunk_format[] = "B";

static void
chunk_destroy(mg_shared *raw)
{
    PyMem_RawFree(raw);
}

static PyObject *
chunk_wrap(mg_state *st, mg_shared *raw)
{
    return foreign_new(st, raw);
}

/* Process-global constant table (read-only, no lock needed). */
const mg_shared_kind mg_chunk_kind = {
    .name = "chunk",
    .destroy = chunk_destroy,
    .wrap = chunk_wrap,
};

mg_shared *
mg_chunk_new(const void *data, size_t n)
{
    if (n > (size_t)PY_SSIZE_T_MAX - sizeof(chunk_raw) - MG_SHM_ALIGN) {
        PyErr_NoMemory();
        return NULL;
    }
    chunk_raw *c = (chunk_raw *)PyMem_RawMalloc(sizeof(chunk_raw) + MG_SHM_ALIGN + n);
    if (c == NULL) {
        PyErr_NoMemory();
        return NULL;
    }
    mg_shared_init(&c->head.base, &mg_chunk_kind);
    char *mem = align_up((char *)(c + 1));
    if (n > 0) {
        memcpy(mem, data, n);
    }
    c->shape0 = (Py_ssize_t)n;
    c->stride0 = 1;
    mg_region *r = &c->head.region;
    r->buf = mem;
    r->len = (Py_ssize_t)n;
    r->itemsize = 1;
    r->readonly = 1;
    r->ndim = 1;
    r->format = chunk_format;
    r->shape = &c->shape0;
    r->strides = &c->stride0;
    return &c->head.base;
}

/*************************************************************************
 * SharedBuffer: raw memory shared by every interpreter                 *
 *************************************************************************/

typedef struct {
    mg_shared base;
    Py_ssize_t size;
    char *mem;              /* MG_SHM_ALIGN-aligned, inside this allocation */
} shbuf_raw;

typedef struct {
    MG_WRAPPER_HEAD         /* NULL once released */
    Py_ssize_t exports;     /* live Py_buffers handed out by this wrapper */
    int64_t id;             /* kept after release, so == and hash() never change */
} SharedBufferObject;

static void
shbuf_destroy(mg_shared *raw)
{
    PyMem_RawFree(raw);
}

static PyObject *
shbuf_wrap(mg_state *st, mg_shared *raw)
{
    SharedBufferObject *self = (SharedBufferObject *)mg_wrapper_new(st->SharedBufferType, raw);
    if (self != NULL) {
        self->id = raw->id;     /* exports: 0, as tp_alloc left it */
    }
    return (PyObject *)self;
}

/* Process-global constant table (read-only, no lock needed). */
static const mg_shared_kind shbuf_kind = {
    .name = "SharedBuffer",
    .destroy = shbuf_destroy,
    .wrap = shbuf_wrap,
};

#define SHBUF_RAW(self) ((shbuf_raw *)((SharedBufferObject *)(self))->raw)

/* The raw memory of a live wrapper, or NULL with ValueError. */
static shbuf_raw *
shbuf_live(PyObject *op)
{
    SharedBufferObject *self = (SharedBufferObject *)op;
    if (self->raw == NULL) {
        PyErr_Format(PyExc_ValueError,
                     "SharedBuffer %lld was released: create a new one, or use "
                     "another wrapper of the same memory", (long long)self->id);
        return NULL;
    }
    return (shbuf_raw *)self->raw;
}

static PyObject *
shbuf_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"size", NULL};
    Py_ssize_t size;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "n:SharedBuffer", kwlist, &size)) {
        return NULL;
    }
    if (size < 0) {
        PyErr_Format(PyExc_ValueError, "SharedBuffer size must be >= 0, not %zd", size);
        return NULL;
    }
    if ((size_t)size > (size_t)PY_SSIZE_T_MAX - sizeof(shbuf_raw) - MG_SHM_ALIGN) {
        return PyErr_NoMemory();
    }
    SharedBufferObject *self = (SharedBufferObject *)type->tp_alloc(type, 0);
    if (self == NULL) {
        return NULL;
    }
    /* calloc: large sizes come from fresh zero pages, touched only when used. */
    shbuf_raw *raw = (shbuf_raw *)PyMem_RawCalloc(1, sizeof(shbuf_raw) + MG_SHM_ALIGN + (size_t)size);
    if (raw == NULL) {
        Py_DECREF(self);
        return PyErr_NoMemory();
    }
    mg_shared_init(&raw->base, &shbuf_kind);
    raw->size = size;
    raw->mem = align_up((char *)(raw + 1));
    self->raw = &raw->base;
    self->exports = 0;
    self->id = raw->base.id;
    return (PyObject *)self;
}

static int
shbuf_getbuffer(PyObject *op, Py_buffer *view, int flags)
{
    shbuf_raw *raw = shbuf_live(op);
    view->obj = NULL;
    if (raw == NULL || PyBuffer_FillInfo(view, op, raw->mem, raw->size, 0, flags) < 0) {
        return -1;
    }
    ((SharedBufferObject *)op)->exports++;
    return 0;
}

static void
shbuf_releasebuffer(PyObject *op, Py_buffer *Py_UNUSED(view))
{
    ((SharedBufferObject *)op)->exports--;
}

static Py_ssize_t
shbuf_length(PyObject *op)
{
    shbuf_raw *raw = shbuf_live(op);
    return raw == NULL ? -1 : raw->size;
}

PyDoc_STRVAR(shbuf_release_doc,
"release($self, /)\n"
"--\n"
"\n"
"Drop this object's reference to the memory.\n"
"\n"
"The memory itself is freed once no SharedBuffer in any interpreter, and no\n"
"value in flight, refers to it any more.  Releasing twice does nothing.\n"
"\n"
"Raises\n"
"------\n"
"BufferError\n"
"    If views of this object (``memoryview``, numpy arrays, ...) still\n"
"    exist: release those first.\n");

static PyObject *
shbuf_release(PyObject *op, PyObject *Py_UNUSED(ignored))
{
    SharedBufferObject *self = (SharedBufferObject *)op;
    if (self->raw == NULL) {
        Py_RETURN_NONE;
    }
    if (self->exports > 0) {
        PyErr_Format(PyExc_BufferError,
                     "SharedBuffer %lld cannot be released: %zd view%s of it still "
                     "exist%s (release them first, e.g. memoryview.release())",
                     (long long)self->id, self->exports,
                     self->exports == 1 ? "" : "s", self->exports == 1 ? "s" : "");
        return NULL;
    }
    mg_shared *raw = self->raw;
    self->raw = NULL;
    mg_shared_decref(raw);
    Py_RETURN_NONE;
}

static PyObject *
shbuf_enter(PyObject *op, PyObject *Py_UNUSED(ignored))
{
    if (shbuf_live(op) == NULL) {
        return NULL;
    }
    return Py_NewRef(op);
}

static PyObject *
shbuf_exit(PyObject *op, PyObject *const *Py_UNUSED(args), Py_ssize_t Py_UNUSED(nargs))
{
    return shbuf_release(op, NULL);
}

static PyObject *
shbuf_get_size(PyObject *op, void *Py_UNUSED(closure))
{
    shbuf_raw *raw = shbuf_live(op);
    return raw == NULL ? NULL : PyLong_FromSsize_t(raw->size);
}

static PyObject *
shbuf_get_id(PyObject *op, void *Py_UNUSED(closure))
{
    if (shbuf_live(op) == NULL) {
        return NULL;
    }
    return PyLong_FromLongLong(((SharedBufferObject *)op)->id);
}

static PyObject *
shbuf_get_released(PyObject *op, void *Py_UNUSED(closure))
{
    return PyBool_FromLong(((SharedBufferObject *)op)->raw == NULL);
}

static PyObject *
shbuf_repr(PyObject *op)
{
    SharedBufferObject *self = (SharedBufferObject *)op;
    if (self->raw == NULL) {
        return PyUnicode_FromFormat("<multigil.SharedBuffer id=%lld released>", (long long)self->id);
    }
    return PyUnicode_FromFormat("<multigil.SharedBuffer id=%lld size=%zd>",
                                (long long)self->id, SHBUF_RAW(self)->size);
}

static PyObject *
shbuf_richcompare(PyObject *a, PyObject *b, int op)
{
    if (!Py_IS_TYPE(b, Py_TYPE(a)) || (op != Py_EQ && op != Py_NE)) {
        Py_RETURN_NOTIMPLEMENTED;
    }
    int eq = ((SharedBufferObject *)a)->id == ((SharedBufferObject *)b)->id;
    return PyBool_FromLong(op == Py_EQ ? eq : !eq);
}

static Py_hash_t
shbuf_hash(PyObject *op)
{
    Py_hash_t h = (Py_hash_t)((SharedBufferObject *)op)->id;
    return h == -1 ? -2 : h;
}

static PyMethodDef shbuf_methods[] = {
    {"release", shbuf_release, METH_NOARGS, shbuf_release_doc},
    {"__enter__", shbuf_enter, METH_NOARGS, NULL},
    {"__exit__", (PyCFunction)(void (*)(void))shbuf_exit, METH_FASTCALL, NULL},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef shbuf_getset[] = {
    {"size", shbuf_get_size, NULL, "Size of the memory in bytes.", NULL},
    {"nbytes", shbuf_get_size, NULL, "Size of the memory in bytes (as memoryview.nbytes).", NULL},
    {"id", shbuf_get_id, NULL,
     "Process-unique id of the memory: the same in every interpreter.", NULL},
    {"released", shbuf_get_released, NULL, "Whether release() was called on this object.", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

PyDoc_STRVAR(shbuf_doc,
"SharedBuffer(size)\n"
"--\n"
"\n"
"Memory shared by every interpreter of the process, without copying.\n"
"\n"
"Sending a SharedBuffer to another interpreter (as an argument, a result or\n"
"a queue item) gives it a SharedBuffer over the same memory: writes on one\n"
"side are seen on the other.  It supports the buffer protocol, so\n"
"``memoryview(buf)``, ``numpy.frombuffer(buf, ...)``, ``struct.pack_into``\n"
"and file ``readinto`` all work in place.  Access from several interpreters\n"
"at once is not synchronized: use a multigil lock or queue for that.\n"
"\n"
"Parameters\n"
"----------\n"
"size : int\n"
"    Size in bytes (>= 0).  The memory is zero-filled and 64-byte aligned.\n"
"\n"
"Attributes\n"
"----------\n"
"size, nbytes : int\n"
"    Size in bytes.\n"
"id : int\n"
"    Process-unique id of the memory; two SharedBuffers are equal when they\n"
"    share the same memory.\n"
"\n"
"Notes\n"
"-----\n"
"The memory is freed when the last SharedBuffer referring to it, in any\n"
"interpreter, is released or garbage-collected.  ``release()`` (or leaving a\n"
"``with`` block) drops this object's reference early; using the object\n"
"afterwards raises ValueError.\n"
"\n"
"Examples\n"
"--------\n"
">>> buf = SharedBuffer(16)\n"
">>> memoryview(buf)[:4] = b'abcd'\n"
">>> bytes(memoryview(buf)[:4])\n"
"b'abcd'\n");

static PyType_Slot shbuf_slots[] = {
    {Py_tp_new, shbuf_new},
    {Py_tp_dealloc, mg_wrapper_dealloc},
    {Py_tp_repr, shbuf_repr},
    {Py_tp_richcompare, shbuf_richcompare},
    {Py_tp_hash, shbuf_hash},
    {Py_tp_methods, shbuf_methods},
    {Py_tp_getset, shbuf_getset},
    {Py_tp_doc, (void *)shbuf_doc},
    {Py_mp_length, shbuf_length},
    {Py_bf_getbuffer, shbuf_getbuffer},
    {Py_bf_releasebuffer, shbuf_releasebuffer},
    {0, NULL},
};

static PyType_Spec shbuf_spec = {
    .name = "multigil.SharedBuffer",
    .basicsize = sizeof(SharedBufferObject),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_IMMUTABLETYPE,
    .slots = shbuf_slots,
};

/*************************************************************************
 * Module init                                                          *
 *************************************************************************/

int
mg_shm_init(PyObject *module, mg_state *st)
{
    st->SharedBufferType = (PyTypeObject *)PyType_FromModuleAndSpec(module, &shbuf_spec, NULL);
    if (st->SharedBufferType == NULL) {
        return -1;
    }
    st->ForeignBufferType = (PyTypeObject *)PyType_FromModuleAndSpec(module, &foreign_spec, NULL);
    if (st->ForeignBufferType == NULL) {
        return -1;
    }
    return PyModule_AddType(module, st->SharedBufferType);
}
