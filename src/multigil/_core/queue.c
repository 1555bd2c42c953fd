/* queue.c — a blocking FIFO of encoded values shared between interpreters.
 *
 * The raw mg_queue holds encoded values (mg_blob: interpreter-free bytes plus
 * shared handles), never a PyObject, so an item outlives the interpreter that
 * put it and can be taken by any other.  put() encodes in the sender; get()
 * decodes in the receiver.
 *
 * Waiting is condvar signalling with the GIL released (wait.h): a blocked
 * get() costs nothing until a put() signals it, and put()/get() signal only
 * when the other side has a sleeper.  That is what makes a ping-pong between
 * two interpreters a few microseconds instead of CPython 3.14's 10 ms poll.
 *
 * An item must cost what it holds: a work queue can hold millions, and a
 * queued small int used to pin ~350 bytes.  Each item is one 16-byte ring slot
 * holding, by size of its encoded stream:
 *   - up to 15 bytes without handles (an int, a float, a short str, a small
 *     tuple of those): the stream itself, no allocation at all;
 *   - up to ITEM_MAX bytes, from put(): a qitem, one allocation of an 8-byte
 *     header, the handles and the stream (a 20-char str: 48 bytes);
 *   - else, or from mg_queue_put_blob: a heap blob (mg_blob_move_to_heap sizes
 *     it to its content).
 */
#include "queue.h"
#include "wait.h"

/*************************************************************************
 * Queued items                                                          *
 *************************************************************************/

#define SLOT_INLINE 15
#define ITEM_MAX 4096

/* A compact queued value: the handles (one reference each), then the stream,
 * in the same allocation.  Both 8-byte aligned, as the decoder wants the
 * stream (it aligns UCS2/UCS4 relative to it). */
typedef struct {
    uint32_t size;              /* stream bytes, <= ITEM_MAX */
    uint32_t nhandles;
} qitem;

#define ITEM_HANDLES(it) ((mg_shared **)((char *)(it) + sizeof(qitem)))
#define ITEM_DATA(it) ((char *)ITEM_HANDLES(it) + (it)->nhandles * sizeof(mg_shared *))

/* One ring slot (mg_queue_item).  len 1..SLOT_INLINE: the stream is in data;
 * SLOT_BLOB or SLOT_ITEM: data holds an mg_blob* or a qitem* (memcpy'd: the
 * bytes are not aligned for a pointer). */

#define SLOT_BLOB 0
#define SLOT_ITEM 0xff

_Static_assert(sizeof(void *) <= SLOT_INLINE, "a slot holds a pointer");
_Static_assert(sizeof(mg_queue_item) == 16, "slots are 16 bytes");
_Static_assert(sizeof(((mg_queue_item *)0)->data) == SLOT_INLINE, "inline streams fill a slot");
_Static_assert(sizeof(qitem) % sizeof(void *) == 0, "qitem keeps its handles aligned");

static inline void
slot_set_ptr(mg_queue_item *s, unsigned char kind, void *p)
{
    s->len = kind;
    memcpy(s->data, &p, sizeof(p));
    s->data[sizeof(p)] = 0;
}

/* A SLOT_BLOB or SLOT_ITEM slot flags, after its pointer, whether the value
 * holds a queue (queues_of() finds cycles through those). */
#define SLOT_HOLDS_QUEUE(s) ((s)->data[sizeof(void *)])

static inline void *
slot_ptr(const mg_queue_item *s)
{
    void *p;
    memcpy(&p, s->data, sizeof(p));
    return p;
}

/* 1 if the stream of `b` can be copied out of it: it points into no
 * sender's object (MG_ENCODE_BORROW, never queued anyway). */
static inline int
copyable(const mg_blob *b)
{
    return !(b->flags & MG_ENCODE_BORROW);
}

/* 1 if the stream of `b` fits in a slot: short, and owning nothing else. */
static inline int
slot_fits(const mg_blob *b)
{
    return b->nhandles == 0 && b->size > 0 && b->size <= SLOT_INLINE && copyable(b);
}

/* Store `b` (a stack blob just encoded) in `s`: in the slot, or as a qitem,
 * or moved to the heap.  `b` is left empty.  -1 with MemoryError. */
static int
slot_store(mg_queue_item *s, mg_blob *b)
{
    if (slot_fits(b)) {
        s->len = (unsigned char)b->size;
        memcpy(s->data, b->data, b->size);
        mg_blob_clear(b);
        return 0;
    }
    if (b->size <= ITEM_MAX && copyable(b) && b->nhandles <= UINT32_MAX) {
        size_t hbytes = b->nhandles * sizeof(mg_shared *);
        qitem *it = PyMem_RawMalloc(sizeof(qitem) + hbytes + b->size);
        if (it == NULL) {
            mg_blob_clear(b);
            PyErr_NoMemory();
            return -1;
        }
        it->size = (uint32_t)b->size;
        it->nhandles = (uint32_t)b->nhandles;
        if (hbytes > 0) {
            memcpy(ITEM_HANDLES(it), b->handles, hbytes);
        }
        memcpy(ITEM_DATA(it), b->data, b->size);
        b->nhandles = 0;        /* the references moved to the item */
        mg_blob_clear(b);
        slot_set_ptr(s, SLOT_ITEM, it);
        return 0;
    }
    mg_blob *hb = mg_blob_move_to_heap(b);
    if (hb == NULL) {
        mg_blob_clear(b);
        PyErr_NoMemory();
        return -1;
    }
    slot_set_ptr(s, SLOT_BLOB, hb);
    return 0;
}

void
mg_queue_item_view(const mg_queue_item *s, mg_blob *view, uint64_t buf[2])
{
    mg_blob_init(view);
    if (s->len == SLOT_BLOB) {
        *view = *(const mg_blob *)slot_ptr(s);
    }
    else if (s->len == SLOT_ITEM) {
        qitem *it = slot_ptr(s);
        view->handles = ITEM_HANDLES(it);
        view->nhandles = it->nhandles;
        view->data = ITEM_DATA(it);
        view->size = view->capacity = it->size;
    }
    else {
        memcpy(buf, s->data, s->len);
        view->data = (char *)buf;
        view->size = view->capacity = s->len;
    }
}

/* No Python API: freeing only drops raw references. */
void
mg_queue_item_clear(mg_queue_item *s)
{
    if (s->len == SLOT_BLOB) {
        mg_blob_free(slot_ptr(s));
    }
    else if (s->len == SLOT_ITEM) {
        qitem *it = slot_ptr(s);
        for (uint32_t i = 0; i < it->nhandles; i++) {
            mg_shared_decref(ITEM_HANDLES(it)[i]);
        }
        PyMem_RawFree(it);
    }
    s->len = 1;     /* holds nothing now */
}

/*************************************************************************
 * Raw queue                                                             *
 *************************************************************************/

struct mg_queue {
    mg_shared head;
    pthread_mutex_t mu;         /* guards every field below */
    size_t holding_queues;      /* items that hold a queue (SLOT_HOLDS_QUEUE) */
    pthread_cond_t not_empty;   /* getters sleep here */
    pthread_cond_t not_full;    /* putters sleep here (bounded queues) */
    int n_getters, n_putters;   /* sleepers on each condvar */
    /* Ring buffer of slots: items are ring[(first + i) % cap], i < count.
     * Grown by doubling (capped at maxsize), dropped when the queue empties
     * after a burst, allocated with PyMem_RawMalloc (no GIL, any thread). */
    mg_queue_item *ring;
    size_t cap, first, count;
    Py_ssize_t maxsize;         /* as given; <= 0 means unbounded */
    int closed;
    mg_queue *live_prev, *live_next;    /* the list of live queues (live_lock) */
};

/* Every live queue, so that an unpickled queue finds its raw queue by id
 * (mg_queue_lookup).  Process-global.  Owner: this file.  Lock: live_lock,
 * which guards live_head and the live_prev/live_next links of every queue. */
static pthread_mutex_t live_lock = PTHREAD_MUTEX_INITIALIZER;
static mg_queue *live_head = NULL;

/* A ring larger than this is freed when the queue drains, so that a burst of
 * a million items does not pin memory forever. */
#define RING_KEEP 256

static void
queue_destroy(mg_shared *s)
{
    mg_queue *q = (mg_queue *)s;
    size_t i;
    pthread_mutex_lock(&live_lock);
    if (q->live_prev != NULL) {
        q->live_prev->live_next = q->live_next;
    }
    else {
        live_head = q->live_next;
    }
    if (q->live_next != NULL) {
        q->live_next->live_prev = q->live_prev;
    }
    pthread_mutex_unlock(&live_lock);
    /* Last reference: nobody else can see q (a lookup that found it before
     * it was unlinked could not take a reference), no lock needed.  Freeing a
     * blob only drops raw references (mg_blob_clear), no Python API. */
    for (i = 0; i < q->count; i++) {
        mg_queue_item_clear(&q->ring[(q->first + i) % q->cap]);
    }
    PyMem_RawFree(q->ring);
    pthread_cond_destroy(&q->not_empty);
    pthread_cond_destroy(&q->not_full);
    pthread_mutex_destroy(&q->mu);
    PyMem_RawFree(q);
}

static PyObject *
queue_wrap(mg_state *st, mg_shared *raw)
{
    return mg_wrapper_new(st->QueueType, raw);
}

/* Process-global constant table (read-only, no lock needed). */
static const mg_shared_kind queue_kind = {"Queue", queue_destroy, queue_wrap};

mg_queue *
mg_queue_new(Py_ssize_t maxsize)
{
    mg_queue *q = PyMem_RawCalloc(1, sizeof(*q));
    if (q == NULL) {
        PyErr_NoMemory();
        return NULL;
    }
    mg_shared_init(&q->head, &queue_kind);
    pthread_mutex_init(&q->mu, NULL);
    mg_cond_init(&q->not_empty);
    mg_cond_init(&q->not_full);
    q->maxsize = maxsize;
    pthread_mutex_lock(&live_lock);
    q->live_next = live_head;
    if (live_head != NULL) {
        live_head->live_prev = q;
    }
    live_head = q;
    pthread_mutex_unlock(&live_lock);
    return q;
}

mg_queue *
mg_queue_lookup(int64_t id)
{
    mg_queue *found = NULL;
    pthread_mutex_lock(&live_lock);
    for (mg_queue *q = live_head; q != NULL; q = q->live_next) {
        if (q->head.id == id) {
            found = mg_shared_tryincref(&q->head) ? q : NULL;
            break;
        }
    }
    pthread_mutex_unlock(&live_lock);
    return found;
}

/* Make room for one more item; mu held.  0, or -1 on no memory. */
static int
ring_reserve(mg_queue *q)
{
    size_t newcap, i;
    mg_queue_item *ring;

    if (q->count < q->cap) {
        return 0;
    }
    newcap = q->cap ? q->cap * 2 : 8;
    if (q->maxsize > 0 && newcap > (size_t)q->maxsize) {
        newcap = (size_t)q->maxsize;
    }
    if (newcap <= q->cap || newcap > PY_SSIZE_T_MAX / sizeof(mg_queue_item)) {
        return -1;
    }
    ring = PyMem_RawMalloc(newcap * sizeof(mg_queue_item));
    if (ring == NULL) {
        return -1;
    }
    for (i = 0; i < q->count; i++) {
        ring[i] = q->ring[(q->first + i) % q->cap];
    }
    PyMem_RawFree(q->ring);
    q->ring = ring;
    q->cap = newcap;
    q->first = 0;
    return 0;
}

/* Attempt results (wait.h: > 0 ends the wait). */
#define Q_DONE 1
#define Q_CLOSED 2
#define Q_NOMEM 3

typedef struct {
    mg_queue *q;
    mg_queue_item slot;
} queue_attempt_arg;

static int
put_attempt(void *arg)
{
    queue_attempt_arg *a = arg;
    mg_queue *q = a->q;
    if (q->closed) {
        return Q_CLOSED;
    }
    if (q->maxsize > 0 && q->count >= (size_t)q->maxsize) {
        return 0;
    }
    if (ring_reserve(q) < 0) {
        return Q_NOMEM;
    }
    q->ring[(q->first + q->count) % q->cap] = a->slot;
    q->count++;
    if (a->slot.len == SLOT_BLOB || a->slot.len == SLOT_ITEM) {
        q->holding_queues += SLOT_HOLDS_QUEUE(&a->slot);
    }
    if (q->n_getters > 0) {
        pthread_cond_signal(&q->not_empty);
    }
    return Q_DONE;
}

static int
get_attempt(void *arg)
{
    queue_attempt_arg *a = arg;
    mg_queue *q = a->q;
    if (q->count == 0) {
        return q->closed ? Q_CLOSED : 0;
    }
    a->slot = q->ring[q->first];
    q->first = (q->first + 1) % q->cap;
    q->count--;
    if (a->slot.len == SLOT_BLOB || a->slot.len == SLOT_ITEM) {
        q->holding_queues -= SLOT_HOLDS_QUEUE(&a->slot);
    }
    if (q->count == 0) {
        q->first = 0;
        if (q->cap > RING_KEEP) {
            PyMem_RawFree(q->ring);
            q->ring = NULL;
            q->cap = 0;
        }
    }
    if (q->n_putters > 0) {
        pthread_cond_signal(&q->not_full);
    }
    return Q_DONE;
}

/*************************************************************************
 * Queues holding queues                                                 *
 *************************************************************************/
/* A queue is freed when its last reference goes, and the items it holds keep
 * references of their own: a queue that holds itself, or queues that hold
 * each other, would never be freed, with everything queued in them.  So put()
 * refuses an item through which the queue would reach itself. */

static int
is_queue(const mg_shared *h)
{
    return h->kind == &queue_kind;
}

/* The handles of what slot `s` holds. */
static mg_shared *const *
slot_handles(const mg_queue_item *s, size_t *n)
{
    if (s->len == SLOT_BLOB) {
        const mg_blob *b = slot_ptr(s);
        *n = b->nhandles;
        return b->handles;
    }
    if (s->len == SLOT_ITEM) {
        qitem *it = slot_ptr(s);
        *n = it->nhandles;
        return ITEM_HANDLES(it);
    }
    *n = 0;
    return NULL;
}

/* A growing list of queues, one reference each. */
typedef struct {
    mg_queue **items;
    size_t n, cap;
    int failed;                 /* no memory */
} queue_list;

static int
queue_list_has(const queue_list *l, const mg_queue *q)
{
    for (size_t i = 0; i < l->n; i++) {
        if (l->items[i] == q) {
            return 1;
        }
    }
    return 0;
}

static void
queue_list_add_handles(queue_list *l, mg_shared *const *handles, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        mg_queue *q = (mg_queue *)handles[i];
        if (!is_queue(handles[i]) || queue_list_has(l, q)) {
            continue;
        }
        if (l->n == l->cap) {
            size_t cap = l->cap ? 2 * l->cap : 8;
            mg_queue **grown = PyMem_RawRealloc(l->items, cap * sizeof(*grown));
            if (grown == NULL) {
                l->failed = 1;
                return;
            }
            l->items = grown;
            l->cap = cap;
        }
        mg_shared_incref(&q->head);
        l->items[l->n++] = q;
    }
}

/* 1 if `target` is reachable from the queues among `handles` (through what
 * they hold, and so on), else 0; -1 without memory.  Locks one queue at a
 * time; needs no GIL. */
static int
reaches(const mg_queue *target, mg_shared *const *handles, size_t n)
{
    queue_list seen = {NULL, 0, 0, 0};
    int found = 0;
    queue_list_add_handles(&seen, handles, n);
    for (size_t i = 0; i < seen.n && !found && !seen.failed; i++) {
        mg_queue *q = seen.items[i];
        if (q == target) {
            found = 1;
            break;
        }
        pthread_mutex_lock(&q->mu);
        for (size_t k = 0; k < q->count && q->holding_queues > 0 && !seen.failed; k++) {
            const mg_queue_item *s = &q->ring[(q->first + k) % q->cap];
            size_t nh;
            mg_shared *const *hs = slot_handles(s, &nh);
            if (hs != NULL && SLOT_HOLDS_QUEUE(s)) {
                queue_list_add_handles(&seen, hs, nh);
            }
        }
        pthread_mutex_unlock(&q->mu);
    }
    for (size_t i = 0; i < seen.n; i++) {
        mg_shared_decref(&seen.items[i]->head);
    }
    PyMem_RawFree(seen.items);
    return seen.failed && !found ? -1 : found;
}

/* Before `slot` is appended to `q`: flag it if it holds a queue, and refuse
 * it (-1 with ValueError, or MemoryError) if `q` would then hold itself. */
static int
check_holds(mg_queue *q, mg_queue_item *slot)
{
    size_t n;
    mg_shared *const *handles = slot_handles(slot, &n);
    int holds = 0;
    for (size_t i = 0; i < n && !holds; i++) {
        holds = is_queue(handles[i]);
    }
    if (!holds) {
        return 0;
    }
    SLOT_HOLDS_QUEUE(slot) = 1;
    switch (reaches(q, handles, n)) {
    case 0:
        return 0;
    case 1:
        PyErr_Format(PyExc_ValueError,
                     "queue %lld cannot hold this item: it holds queue %lld itself, or a "
                     "queue that (through what is queued in it) does, and queues that hold "
                     "each other are never freed; send something else, or take the inner "
                     "queue's items out first", (long long)q->head.id, (long long)q->head.id);
        return -1;
    default:
        PyErr_NoMemory();
        return -1;
    }
}

/*************************************************************************
 * Taking and appending slots                                            *
 *************************************************************************/

mg_queue_status
mg_queue_get(mg_queue *q, int64_t deadline, mg_queue_item *item)
{
    queue_attempt_arg a = {.q = q};
    int rc = mg_wait(&q->mu, &q->not_empty, &q->n_getters, deadline, get_attempt, &a);
    switch (rc) {
    case Q_DONE:
        *item = a.slot;
        return MG_QUEUE_OK;
    case Q_CLOSED:
        return MG_QUEUE_CLOSED;
    case 0:
        return MG_QUEUE_TIMEOUT;
    default:
        return MG_QUEUE_ERROR;
    }
}

/* Append the item in `slot` (taken on MG_QUEUE_OK). */
static mg_queue_status
queue_append(mg_queue *q, const mg_queue_item *slot, int64_t deadline)
{
    queue_attempt_arg a = {q, *slot};
    int rc = mg_wait(&q->mu, &q->not_full, &q->n_putters, deadline, put_attempt, &a);
    switch (rc) {
    case Q_DONE:
        return MG_QUEUE_OK;
    case Q_CLOSED:
        return MG_QUEUE_CLOSED;
    case Q_NOMEM:
        PyErr_NoMemory();
        return MG_QUEUE_ERROR;
    case 0:
        return MG_QUEUE_TIMEOUT;
    default:
        return MG_QUEUE_ERROR;
    }
}

mg_queue_status
mg_queue_put(mg_queue *q, mg_blob *b, int64_t deadline)
{
    mg_queue_item slot;
    if (slot_store(&slot, b) < 0) {
        return MG_QUEUE_ERROR;
    }
    mg_queue_status rc = check_holds(q, &slot) < 0 ? MG_QUEUE_ERROR
                                                    : queue_append(q, &slot, deadline);
    if (rc != MG_QUEUE_OK) {
        mg_queue_item_clear(&slot);
    }
    return rc;
}

/*************************************************************************
 * Heap blobs, and the rest of the API                                   *
 *************************************************************************/

mg_queue_status
mg_queue_get_blob(mg_queue *q, int64_t deadline, mg_blob **out)
{
    mg_queue_item slot;
    mg_queue_status rc = mg_queue_get(q, deadline, &slot);
    if (rc != MG_QUEUE_OK) {
        return rc;
    }
    if (slot.len == SLOT_BLOB) {
        *out = slot_ptr(&slot);
        return MG_QUEUE_OK;
    }
    /* The caller wants a heap blob: copy the item into one (worker tasks come
     * from mg_queue_put_blob and are heap blobs already). */
    uint64_t buf[2];
    mg_blob view, tmp;
    mg_queue_item_view(&slot, &view, buf);
    mg_blob_init(&tmp);
    tmp.data = PyMem_RawMalloc(view.size);
    tmp.handles = view.nhandles ? PyMem_RawMalloc(view.nhandles * sizeof(mg_shared *)) : NULL;
    if (tmp.data == NULL || (view.nhandles && tmp.handles == NULL)) {
        mg_blob_clear(&tmp);
        mg_queue_item_clear(&slot);
        PyErr_NoMemory();
        return MG_QUEUE_ERROR;
    }
    memcpy(tmp.data, view.data, view.size);
    tmp.size = tmp.capacity = view.size;
    for (size_t i = 0; i < view.nhandles; i++) {
        tmp.handles[i] = view.handles[i];
        mg_shared_incref(view.handles[i]);
    }
    tmp.nhandles = tmp.hcapacity = view.nhandles;
    mg_queue_item_clear(&slot);
    *out = mg_blob_move_to_heap(&tmp);
    if (*out == NULL) {
        mg_blob_clear(&tmp);
        PyErr_NoMemory();
        return MG_QUEUE_ERROR;
    }
    return MG_QUEUE_OK;
}

mg_queue_status
mg_queue_put_blob(mg_queue *q, mg_blob *b, int64_t deadline)
{
    mg_queue_item slot;
    int small = slot_fits(b);
    if (small) {
        slot.len = (unsigned char)b->size;
        memcpy(slot.data, b->data, b->size);
    }
    else {
        slot_set_ptr(&slot, SLOT_BLOB, b);
    }
    mg_queue_status rc = check_holds(q, &slot) < 0 ? MG_QUEUE_ERROR
                                                    : queue_append(q, &slot, deadline);
    if (rc == MG_QUEUE_OK && small) {
        mg_blob_free(b);        /* taken: the slot holds a copy */
    }
    return rc;
}

void
mg_queue_close(mg_queue *q)
{
    pthread_mutex_lock(&q->mu);
    if (!q->closed) {
        q->closed = 1;
        /* Every sleeper must see it: getters drain or get QueueClosed,
         * putters get QueueClosed. */
        if (q->n_getters > 0) {
            pthread_cond_broadcast(&q->not_empty);
        }
        if (q->n_putters > 0) {
            pthread_cond_broadcast(&q->not_full);
        }
    }
    pthread_mutex_unlock(&q->mu);
}

int64_t
mg_queue_id(const mg_queue *q)
{
    return q->head.id;
}

Py_ssize_t
mg_queue_maxsize(const mg_queue *q)
{
    return q->maxsize;
}

size_t
mg_queue_count(mg_queue *q, int *closed)
{
    size_t n;
    pthread_mutex_lock(&q->mu);
    n = q->count;
    if (closed != NULL) {
        *closed = q->closed;
    }
    pthread_mutex_unlock(&q->mu);
    return n;
}
