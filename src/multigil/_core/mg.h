/* mg.h — the contract shared by the C files of multigil._core.
 *
 * Ground rules (see docs/architecture.md):
 *   - No interpreter ever touches another interpreter's PyObject*.  Anything that
 *     crosses is raw memory allocated with PyMem_RawMalloc (never PyMem_Malloc:
 *     each isolated interpreter has its own obmalloc).
 *   - No static PyObject* anywhere: per-interpreter state lives in mg_state,
 *     reached from the module object (PyModule_GetState) or, for code that runs
 *     on behalf of another interpreter, through mg_current_state().
 *   - Every process-global structure has one lock and one owner, named where it
 *     is defined.
 */
#ifndef MULTIGIL_MG_H
#define MULTIGIL_MG_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdatomic.h>
#include <stdint.h>
#include <pthread.h>

#if PY_VERSION_HEX < 0x030C0000
#  error "multigil needs CPython 3.12 or later (per-interpreter GIL, PEP 684)"
#endif

/* ======================================================================
 * Shared raw objects
 * ======================================================================
 * A value that is the *same* object in every interpreter (a queue, a shared
 * buffer, a lock) is a raw C struct that starts with mg_shared.  Each
 * interpreter sees it through its own wrapper object, whose layout starts with
 * MG_WRAPPER_HEAD; the wrapper owns one reference to the raw struct.
 * The struct is freed, from whichever thread drops the last reference, by
 * kind->destroy, which must not touch any PyObject.
 */
typedef struct mg_shared mg_shared;
typedef struct mg_state mg_state;

typedef struct mg_shared_kind {
    const char *name;                 /* "Queue", "SharedBuffer", ... */
    void (*destroy)(mg_shared *);     /* free raw memory; no Python API */
    /* Build a new wrapper for `raw` in the current interpreter; the wrapper
     * takes a *new* reference (call mg_shared_incref inside). */
    PyObject *(*wrap)(mg_state *st, mg_shared *raw);
} mg_shared_kind;

struct mg_shared {
    atomic_long refcnt;
    const mg_shared_kind *kind;
    int64_t id;                       /* process-unique, from mg_next_id() */
};

#define MG_WRAPPER_HEAD PyObject_HEAD mg_shared *raw;
typedef struct { MG_WRAPPER_HEAD } mg_wrapper;

/* Shared by the wrapper types: construction from a raw object (a new
 * reference to it), dealloc, and identity (the raw object's id). */
PyObject *mg_wrapper_new(PyTypeObject *type, mg_shared *raw);
void mg_wrapper_dealloc(PyObject *self);
Py_hash_t mg_wrapper_hash(PyObject *self);
PyObject *mg_wrapper_richcompare(PyObject *a, PyObject *b, int op);
PyObject *mg_wrapper_get_id(PyObject *self, void *closure);

void mg_shared_init(mg_shared *s, const mg_shared_kind *kind);
void mg_shared_incref(mg_shared *s);
void mg_shared_decref(mg_shared *s);
int64_t mg_next_id(void);

/* ======================================================================
 * Encoded values ("blobs")
 * ======================================================================
 * The interpreter-free form of a Python value: a byte string plus the shared
 * raw objects it references.  Built in the sender, rebuilt in the receiver.
 */
typedef struct mg_blob {
    char *data;                 /* PyMem_RawMalloc'd */
    size_t size, capacity;
    mg_shared **handles;        /* each one reference owned by the blob */
    size_t nhandles, hcapacity;
    int flags;                  /* the MG_ENCODE_* flags it was built with,
                                   plus private bits of xidata.c (storage) */
    size_t nborrowed;           /* payloads pointing into the sender's objects
                                   (MG_ENCODE_BORROW): the sender must keep the
                                   encoded value alive until the blob is decoded */
} mg_blob;

/* MG_ENCODE_BORROW: the blob may point into objects reachable from the encoded
 * value instead of copying them (large bytes/str payloads).  Only for the
 * synchronous call path, where the sender blocks until the receiver decoded. */
#define MG_ENCODE_BORROW 0x1

void mg_blob_init(mg_blob *b);
void mg_blob_clear(mg_blob *b);          /* frees data, drops handle refs */
/* Encode `obj` into `out` (initialized by the caller).  Returns 0, or -1 with
 * an exception set (NotShareableError naming the type) and `out` cleared. */
int mg_encode(mg_state *st, PyObject *obj, mg_blob *out, int flags);
/* Rebuild the value in the current interpreter; new reference or NULL.
 * Does not consume the blob. */
PyObject *mg_decode(mg_state *st, const mg_blob *b);
/* 1 if `obj` crosses natively (no pickle), else 0. */
int mg_is_natively_shareable(mg_state *st, PyObject *obj);
/* Heap blob helpers for queues: move `b` to the heap and back. */
mg_blob *mg_blob_move_to_heap(mg_blob *b);      /* NULL on no memory; b left empty on success */
void mg_blob_free(mg_blob *b);                  /* clear + free */

/* ======================================================================
 * Interpreters: registry and thread-state cache (interp.c)
 * ====================================================================== */
typedef struct mg_interp mg_interp;

/* The registry entry of the interpreter the calling thread is attached to;
 * registered on first use.  Never NULL while _core is imported there. */
mg_interp *mg_interp_current(void);
int64_t mg_interp_id(const mg_interp *ip);

/* Run `fn(arg)` later, attached to interpreter `owner_id` (the owner of the
 * PyObject that `arg` keeps alive).  Used to release objects kept alive for
 * other interpreters: only their owner may drop them.  Returns 0 if queued,
 * -1 if the owner is gone (then fn is not called and arg must be leaked or
 * freed without Python API). Thread-safe, needs no GIL. */
int mg_interp_defer(int64_t owner_id, void (*fn)(void *), void *arg);
/* Run what was deferred to the current interpreter. Needs its GIL. */
void mg_interp_run_deferred(void);
/* Count of live exports of the owner's objects to other interpreters; an
 * interpreter with live exports cannot be closed. */
void mg_interp_exports_add(int64_t owner_id, long delta);

/* ======================================================================
 * Per-interpreter module state (module.c)
 * ====================================================================== */
struct mg_state {
    /* heap types */
    PyTypeObject *QueueType;
    PyTypeObject *SharedBufferType;
    PyTypeObject *ForeignBufferType;   /* zero-copy view of another interpreter's buffer */
    PyTypeObject *LockType;
    PyTypeObject *RLockType;
    PyTypeObject *EventType;
    PyTypeObject *SemaphoreType;
    PyTypeObject *ConditionType;
    /* lazily imported helpers (NULL until first use) */
    PyObject *errors_module;           /* multigil._errors */
    PyObject *pickle_dumps;            /* cloudpickle.dumps (falls back to pickle.dumps) */
    PyObject *pickle_loads;            /* pickle.loads */
    PyObject *PickleBufferType;        /* pickle.PickleBuffer */
    PyObject *remote_module;           /* multigil._remote */
    /* call path caches */
    PyObject *fn_by_blob;              /* dict: encoded function bytes -> function */
    PyObject *blob_by_fn;              /* dict: function -> encoded bytes */
    mg_interp *interp;                 /* this interpreter's registry entry */
};

/* The _core state of the interpreter the calling thread is attached to, or NULL
 * with ImportError set if _core was never imported there. */
mg_state *mg_current_state(void);

/* Raise multigil._errors.<name>(msg...) ; returns NULL for convenience. */
PyObject *mg_raise(mg_state *st, const char *name, const char *fmt, ...);
PyObject *mg_get_error(mg_state *st, const char *name);   /* borrowed-like: new ref */

/* ======================================================================
 * Blocking waits that release the GIL (sync.c)
 * ======================================================================
 * Absolute deadlines in CLOCK_MONOTONIC nanoseconds; MG_FOREVER = no timeout.
 */
#define MG_FOREVER INT64_MAX
int64_t mg_now_ns(void);
/* timeout: None -> MG_FOREVER; a non-negative float/int in seconds -> now+t.
 * -1 with ValueError/TypeError on bad input. */
int mg_deadline_from_timeout(PyObject *timeout, int64_t *deadline);
/* Wait on cond/mutex (mutex held by the caller) until woken or deadline.
 * Returns 0 when woken (maybe spuriously), 1 on timeout. */
int mg_cond_wait_until(pthread_cond_t *cond, pthread_mutex_t *mutex, int64_t deadline);
void mg_cond_init(pthread_cond_t *cond);     /* CLOCK_MONOTONIC condvar */

/* Wait slices: blocking calls made with the GIL held wake at least every
 * MG_SIGNAL_CHECK_NS to run PyErr_CheckSignals() in the main thread, so
 * Ctrl-C interrupts them. */
#define MG_SIGNAL_CHECK_NS 50000000LL

/* ======================================================================
 * Module pieces: each file exposes its types/functions to module.c
 * ====================================================================== */
int mg_xidata_init(PyObject *module, mg_state *st);   /* xidata.c */
int mg_queue_init(PyObject *module, mg_state *st);    /* queue.c */
int mg_shm_init(PyObject *module, mg_state *st);      /* shm.c */
int mg_sync_init(PyObject *module, mg_state *st);     /* sync.c */
int mg_worker_init(PyObject *module, mg_state *st);   /* worker.c */
int mg_interp_module_init(PyObject *module, mg_state *st); /* interp.c */
int mg_state_traverse(mg_state *st, visitproc visit, void *arg);
void mg_state_clear(mg_state *st);

/* Raw queue of blobs used by Queue objects and by executor workers (queue.c) */
typedef struct mg_queue mg_queue;
/* Take the next blob, waiting until deadline (GIL released while waiting).
 * Returns 0 and sets *out, 1 on timeout, 2 if the queue is closed and empty,
 * -1 with an exception set (e.g. KeyboardInterrupt). */
int mg_queue_get_blob(mg_queue *q, int64_t deadline, mg_blob **out);
/* Append b, waiting for room until deadline (bounded queues).  Returns 0 (b
 * taken), 1 on timeout (full), 2 if closed, -1 with an exception set. */
int mg_queue_put_blob(mg_queue *q, mg_blob *b, int64_t deadline);  /* takes b on 0 */
mg_queue *mg_queue_from_object(mg_state *st, PyObject *obj);     /* borrowed raw or NULL+TypeError */
/* Close: wakes every waiter; later puts get 2, gets drain then get 2.  No GIL needed. */
void mg_queue_close(mg_queue *q);

#endif
