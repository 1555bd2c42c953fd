/* blob.c — blobs: storage, heap blobs for queues, and the stream's
 * primitives that are not inline. */
#include "blob.h"

#define MG_BLOB_MIN_CAPACITY 256
/* mg_blob_move_to_heap copies streams up to this big into the allocation of
 * the heap blob itself; bigger ones keep their buffer, trimmed of slack. */
#define MG_COMPACT_MAX 4096

/* A private bit of mg_blob.flags (MG_ENCODE_* use the low bits): the data and
 * handles of the blob live in the blob's own allocation (see
 * mg_blob_move_to_heap), so they are freed with it, never on their own. */
#define MG_BLOB_COMPACT 0x40000000

/*************************************************************************
 * Storage                                                               *
 *************************************************************************/

void
mg_blob_init(mg_blob *b)
{
    memset(b, 0, sizeof(*b));
}

void
mg_blob_clear(mg_blob *b)
{
    for (size_t i = 0; i < b->nhandles; i++) {
        mg_shared_decref(b->handles[i]);
    }
    if (!(b->flags & MG_BLOB_COMPACT)) {
        PyMem_RawFree(b->handles);
        PyMem_RawFree(b->data);
    }
    mg_blob_init(b);
}

/* A heap blob waits in a queue for as long as nobody takes it, so it must
 * cost what it holds, not what encoding it took: the stream buffer starts at
 * MG_BLOB_MIN_CAPACITY and grows by doubling, and a queued small int used to
 * hold ~350 bytes.  A small stream is copied, with its handles, into the
 * allocation of the heap blob itself (one malloc: 80 bytes for a small int;
 * Queue.put() does better still, see queue.c); a big one keeps its buffer,
 * shrunk to its size in place when the slack is large. */
mg_blob *
mg_blob_move_to_heap(mg_blob *b)
{
    mg_blob *h;
    int compact = (b->flags & MG_BLOB_COMPACT) != 0;
    if (b->size <= MG_COMPACT_MAX || compact) {
        /* Laid out [mg_blob][handles][data]: both stay pointer-aligned, as the
         * decoder wants the data (it aligns UCS2/UCS4 relative to it). */
        size_t hbytes = b->nhandles * sizeof(mg_shared *);
        h = (mg_blob *)PyMem_RawMalloc(sizeof(*h) + hbytes + b->size);
        if (h == NULL) {
            return NULL;
        }
        char *tail = (char *)(h + 1);
        *h = *b;
        h->handles = NULL;
        h->hcapacity = 0;
        h->data = NULL;
        h->capacity = 0;
        if (b->nhandles > 0) {
            memcpy(tail, b->handles, hbytes);   /* the references move along */
            h->handles = (mg_shared **)tail;
            h->hcapacity = b->nhandles;
        }
        if (b->size > 0) {
            memcpy(tail + hbytes, b->data, b->size);
            h->data = tail + hbytes;
            h->capacity = b->size;
        }
        h->flags |= MG_BLOB_COMPACT;
        if (!compact) {
            PyMem_RawFree(b->handles);
            PyMem_RawFree(b->data);
        }
        mg_blob_init(b);
        return h;
    }
    h = (mg_blob *)PyMem_RawMalloc(sizeof(*h));
    if (h == NULL) {
        return NULL;
    }
    /* Doubling leaves up to half the buffer unused; a big single write leaves
     * an eighth (mg_blob_grow), not worth a realloc.  Shrinking reallocs are done
     * in place (glibc splits the chunk or mremaps), no copy. */
    if (b->capacity - b->size > b->capacity / 8) {
        char *p = (char *)PyMem_RawRealloc(b->data, b->size);
        if (p != NULL) {
            b->data = p;
            b->capacity = b->size;
        }
    }
    *h = *b;
    mg_blob_init(b);
    return h;
}

void
mg_blob_free(mg_blob *b)
{
    if (b != NULL) {
        mg_blob_clear(b);
        PyMem_RawFree(b);
    }
}

void
mg_blob_reset(mg_blob *b, int flags)
{
    for (size_t i = 0; i < b->nhandles; i++) {
        mg_shared_decref(b->handles[i]);
    }
    if (b->flags & MG_BLOB_COMPACT) {
        /* That storage is part of the blob's allocation: it can't grow. */
        b->data = NULL;
        b->handles = NULL;
        b->capacity = b->hcapacity = 0;
    }
    b->nhandles = 0;
    b->size = 0;
    b->flags = flags;
}

/*************************************************************************
 * Writing and reading                                                   *
 *************************************************************************/

/* Geometric growth: amortized O(1) per byte however the blob is written. */
int
mg_blob_grow(mg_blob *b, size_t need)
{
    if (need > (size_t)PY_SSIZE_T_MAX - b->size) {
        PyErr_NoMemory();
        return -1;
    }
    size_t cap = MG_BLOB_MIN_CAPACITY;
    if (b->capacity) {
        cap = b->capacity <= (size_t)PY_SSIZE_T_MAX / 2 ? 2 * b->capacity : (size_t)PY_SSIZE_T_MAX;
    }
    /* One big write (a large bytes) gets what it needs, not twice that:
     * doubling 16 MiB past glibc's mmap threshold would fault in fresh
     * pages on every send.  An eighth more leaves room for what follows. */
    if (cap - b->size < need) {
        size_t want = b->size + need;
        cap = want + (want <= (size_t)PY_SSIZE_T_MAX - want / 8 ? want / 8 : 0);
    }
    char *p = (char *)PyMem_RawRealloc(b->data, cap);
    if (p == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    b->data = p;
    b->capacity = cap;
    return 0;
}

int
mg_put_handle(mg_blob *b, mg_shared *raw)
{
    if (b->nhandles == b->hcapacity) {
        size_t cap = b->hcapacity ? 2 * b->hcapacity : 4;
        mg_shared **h = (mg_shared **)PyMem_RawRealloc(b->handles, cap * sizeof(*h));
        if (h == NULL) {
            mg_shared_decref(raw);
            PyErr_NoMemory();
            return -1;
        }
        b->handles = h;
        b->hcapacity = cap;
    }
    size_t idx = b->nhandles;
    b->handles[b->nhandles++] = raw;
    if (mg_reserve(b, 1 + MG_VARINT_MAX) < 0) {
        return -1;      /* the handle stays in the blob, cleared with it */
    }
    mg_put_u8(b, MG_T_HANDLE);
    mg_put_varint(b, idx);
    return 0;
}


PyObject *
mg_malformed(const char *what)
{
    PyErr_Format(PyExc_ValueError, "multigil: malformed cross-interpreter data (%s)", what);
    return NULL;
}

mg_shared *
mg_get_handle(mg_reader *r)
{
    uint64_t idx;
    if (mg_get_varint(r, &idx) < 0) {
        return NULL;
    }
    if (idx >= r->b->nhandles) {
        mg_malformed("bad handle");
        return NULL;
    }
    return r->b->handles[idx];
}
