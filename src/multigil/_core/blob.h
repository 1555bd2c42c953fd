/* blob.h — blobs: the interpreter-free form of a value, a byte stream plus
 * the shared raw objects it references, and the primitives that write and
 * read the stream.
 *
 * A blob is built in the sender (xidata.h: mg_encode) and rebuilt in the
 * receiver (mg_decode); it is made of raw memory only, so it may outlive the
 * interpreter that built it.  The stream never leaves the process, so numbers
 * are stored in native byte order and widths; it is still bounds-checked on
 * reading, because a corrupt blob must raise, not crash.
 */
#ifndef MULTIGIL_BLOB_H
#define MULTIGIL_BLOB_H

#include "base.h"

#include <string.h>

typedef struct mg_blob {
    char *data;                 /* PyMem_RawMalloc'd */
    size_t size, capacity;
    mg_shared **handles;        /* each one reference owned by the blob */
    size_t nhandles, hcapacity;
    int flags;                  /* the MG_ENCODE_* flags it was built with,
                                   plus private bits of blob.c (storage) */
} mg_blob;

/* MG_ENCODE_BORROW: the blob may point into objects reachable from the encoded
 * value instead of copying them (large bytes/str payloads).  Only for the
 * synchronous call path, where the sender blocks until the receiver decoded,
 * and only below immutable containers, which keep the payloads alive.
 * MG_ENCODE_LEND: large bytes/str payloads anywhere in the value (that
 * BORROW does not take) travel as lends (shm.h): handles that keep the
 * sender's object alive until the receiver copied it, released by the
 * sender's interpreter.  For blobs that outlive the sender's call (task
 * queues) or whose containers may change (lists, dicts). */
#define MG_ENCODE_BORROW 0x1
#define MG_ENCODE_LEND 0x2
/* bytes/str payloads at least this big are borrowed or lent */
#define MG_BORROW_MIN 4096

void mg_blob_init(mg_blob *b);
void mg_blob_clear(mg_blob *b);          /* frees data, drops handle refs */
/* Empty `b` for a new stream built with `flags`, keeping its buffers. */
void mg_blob_reset(mg_blob *b, int flags);
/* Heap blobs, for queues: move `b` to the heap (NULL on no memory; on
 * success `b` is left empty), and clear and free one. */
mg_blob *mg_blob_move_to_heap(mg_blob *b);
void mg_blob_free(mg_blob *b);

/*************************************************************************
 * Stream format                                                         *
 *************************************************************************
 *
 * Every value is a tag byte followed by its payload.  "n" is an unsigned
 * LEB128 varint; "ptr" is a native pointer (8 bytes on 64-bit).
 *
 *   NONE TRUE FALSE             -
 *   INT8/16/32/64               the value in 1/2/4/8 bytes
 *   BIGINT_LE                   n, then n bytes two's complement little endian (3.13+)
 *   BIGINT_HEX                  n, then n ASCII bytes as int(x, 16) reads them (3.12)
 *   FLOAT                       8 bytes;  COMPLEX: 16 bytes
 *   STR1/STR2/STR4              n code points, padding to the kind's alignment,
 *                               then the PEP 393 data (so lone surrogates survive)
 *   STR_REF                     kind byte, n code points, ptr   (MG_ENCODE_BORROW)
 *   BYTES, BYTEARRAY            n, then n bytes
 *   BYTES_REF                   n, ptr                          (MG_ENCODE_BORROW)
 *   TUPLE LIST SET FROZENSET    n, then n values
 *   DICT                        n, then n (key, value) pairs
 *   HANDLE                      n = index into blob->handles
 *   PICKLE                      n, n bytes of pickle, then the count of
 *                               out-of-band buffers, each INLINE (n, n bytes)
 *                               or CHUNK (a HANDLE)       (pickle.c)
 *   PICKLE_REF                  n = index into the value's pickle table
 *
 * A value whose containers hold non-native items is a table blob: TABLE, the
 * length L of the stream in 7 bytes (little endian), the stream (L bytes, its
 * non-native items written as PICKLE_REF), then one PICKLE of the list of
 * those items, the table, which the decoder unpickles when it reaches the
 * first PICKLE_REF (the native items before it are rebuilt even if the table
 * cannot be).  TABLE appears only as the first byte of a blob; a non-native
 * value at the top is a plain PICKLE.
 */
enum {
    MG_T_NONE = 1,
    MG_T_TRUE,
    MG_T_FALSE,
    MG_T_INT8,
    MG_T_INT16,
    MG_T_INT32,
    MG_T_INT64,
    MG_T_BIGINT_LE,
    MG_T_BIGINT_HEX,
    MG_T_FLOAT,
    MG_T_COMPLEX,
    MG_T_STR1,
    MG_T_STR2,
    MG_T_STR4,
    MG_T_STR_REF,
    MG_T_BYTES,
    MG_T_BYTES_REF,
    MG_T_BYTEARRAY,
    MG_T_TUPLE,
    MG_T_LIST,
    MG_T_DICT,
    MG_T_SET,
    MG_T_FROZENSET,
    MG_T_HANDLE,
    MG_T_PICKLE,
    MG_T_PICKLE_REF,
    MG_T_TABLE,
};

/* MG_T_TABLE's header: the tag and the stream's length in 7 bytes.  A multiple
 * of 8, so that moving the stream behind it keeps the STR2/STR4 alignment. */
#define MG_TABLE_HEADER 8

/*************************************************************************
 * Writing                                                               *
 *************************************************************************/

/* Make room for `need` more bytes (geometric growth).  -1 with MemoryError. */
int mg_blob_grow(mg_blob *b, size_t need);

static inline int
mg_reserve(mg_blob *b, size_t n)
{
    return (b->capacity - b->size >= n) ? 0 : mg_blob_grow(b, n);
}

/* The mg_put_* helpers assume mg_reserve() made room: MG_VARINT_MAX bytes
 * for a varint. */
#define MG_VARINT_MAX 10

static inline void
mg_put_u8(mg_blob *b, unsigned v)
{
    b->data[b->size++] = (char)v;
}

static inline void
mg_put_varint(mg_blob *b, uint64_t v)
{
    while (v >= 0x80) {
        b->data[b->size++] = (char)(v | 0x80);
        v >>= 7;
    }
    b->data[b->size++] = (char)v;
}

static inline void
mg_put_raw(mg_blob *b, const void *p, size_t n)
{
    if (n > 0) {
        memcpy(b->data + b->size, p, n);
        b->size += n;
    }
}

static inline void
mg_put_ptr(mg_blob *b, const void *p)
{
    memcpy(b->data + b->size, &p, sizeof(p));
    b->size += sizeof(p);
}

/* Append a HANDLE to `raw`, taking the reference (dropped on failure). */
int mg_put_handle(mg_blob *b, mg_shared *raw);

/*************************************************************************
 * Reading                                                               *
 *************************************************************************/

/* A position in the stream of a blob. */
typedef struct {
    const mg_blob *b;
    const unsigned char *p, *end;
} mg_reader;

/* Raise ValueError for a corrupt stream; NULL. */
PyObject *mg_malformed(const char *what);

static inline size_t
mg_remaining(const mg_reader *r)
{
    return (size_t)(r->end - r->p);
}

static inline int
mg_get_varint(mg_reader *r, uint64_t *out)
{
    uint64_t v = 0;
    for (int shift = 0; shift < 64; shift += 7) {
        if (r->p >= r->end) {
            break;
        }
        unsigned c = *r->p++;
        if (shift == 63 && (c & 0x7e)) {
            break;      /* more than 64 bits */
        }
        v |= (uint64_t)(c & 0x7f) << shift;
        if (!(c & 0x80)) {
            *out = v;
            return 0;
        }
    }
    mg_malformed("bad length");
    return -1;
}

/* A length, checked to fit in what is left when each unit takes `unit` bytes. */
static inline int
mg_get_len(mg_reader *r, size_t unit, size_t *out)
{
    uint64_t n;
    if (mg_get_varint(r, &n) < 0) {
        return -1;
    }
    if (n > mg_remaining(r) / unit) {
        mg_malformed("truncated");
        return -1;
    }
    *out = (size_t)n;
    return 0;
}

static inline int
mg_get_raw(mg_reader *r, void *dst, size_t n)
{
    if (mg_remaining(r) < n) {
        mg_malformed("truncated");
        return -1;
    }
    memcpy(dst, r->p, n);
    r->p += n;
    return 0;
}

/* The shared object of a HANDLE's index (after its tag), borrowed from the
 * blob; NULL with ValueError. */
mg_shared *mg_get_handle(mg_reader *r);

#endif /* MULTIGIL_BLOB_H */
