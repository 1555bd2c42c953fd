/* base.h — the shared types of multigil._core: the module state, shared raw
 * objects and the wrappers through which interpreters see them.
 *
 * The C core is cut into layers, one header each, lowest first.  A C file
 * includes its own layer's header first, then only headers of the layers
 * below it; a header includes only headers below its own.  So there are no
 * include cycles and no calls upward.  tests/test_c_layers.py reads this
 * table and checks every #include against it; docs/architecture.md lists it.
 *
 * layers:
 *   base.h     base.c        the module state, shared raw objects, wrappers
 *   errors.h   errors.c      the exception types of multigil._errors, raising
 *   wait.h     wait.c        clock, condvars, the wait loop, block/timeout args
 *   interp.h   interp.c lifecycle.c sigint.c
 *                            the registry of interpreters, entering, create/close,
 *                            Ctrl-C forwarded into calls from the main thread
 *   blob.h     blob.c        blobs: the stream of an encoded value, its primitives
 *   shm.h      shm.c         SharedBuffer, zero-copy exports and chunks
 *   sync.h     lock.c event.c semaphore.c condition.c
 *                            Lock, RLock, Event, Semaphore, Condition
 *   pickle.h   pickle.c      pickle, the fallback of the encoding
 *   xidata.h   encode.c decode.c xidata.c
 *                            values as blobs and back; is_shareable
 *   queue.h    queue.c queue_type.c
 *                            the raw queue of blobs, the Queue type
 *   call.h     call.c        running code in another interpreter: the one path
 *   worker.h   worker.c      the executor's worker loop, submit_task
 *   module.h   module.c      the module: create/call/exec/close, init
 * end of layers
 *
 * Ground rules (see docs/architecture.md):
 *   - No interpreter ever touches another interpreter's PyObject*.  Anything that
 *     crosses is raw memory allocated with PyMem_RawMalloc (never PyMem_Malloc:
 *     each isolated interpreter has its own obmalloc).
 *   - No static PyObject* anywhere: per-interpreter state lives in mg_state,
 *     reached from the module object (PyModule_GetState), from a type
 *     (PyType_GetModuleState) or, for code that runs on behalf of another
 *     interpreter, from that interpreter's registry entry (interp.h).
 *   - Every process-global structure has one lock and one owner, named where it
 *     is defined.
 */
#ifndef MULTIGIL_BASE_H
#define MULTIGIL_BASE_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdatomic.h>
#include <stdint.h>
#include <pthread.h>

#if PY_VERSION_HEX < 0x030C0000
#  error "multigil needs CPython 3.12 or later (per-interpreter GIL, PEP 684)"
#endif

typedef struct mg_state mg_state;
typedef struct mg_interp mg_interp;     /* a registry entry: interp.h */

/*************************************************************************
 * Module state                                                          *
 *************************************************************************/

/* The exceptions of multigil._errors that the C code raises.  errors.c names
 * them and caches each type in mg_state.errors on its first use. */
typedef enum {
    MG_ERR_INTERPRETER,             /* InterpreterError */
    MG_ERR_INTERPRETER_NOT_FOUND,   /* InterpreterNotFoundError */
    MG_ERR_NOT_SHAREABLE,           /* NotShareableError */
    MG_ERR_QUEUE_EMPTY,             /* QueueEmpty */
    MG_ERR_QUEUE_FULL,              /* QueueFull */
    MG_ERR_QUEUE_CLOSED,            /* QueueClosed */
    MG_ERR_TASK_CANCELLED,          /* TaskCancelled */
    MG_ERROR_COUNT
} mg_error;

/* The per-interpreter state of _core.  Each field is filled by the layer named
 * beside it and released by mg_state_clear. */
struct mg_state {
    /* heap types */
    PyTypeObject *SharedBufferType;     /* shm.c */
    PyTypeObject *ForeignBufferType;    /* shm.c: zero-copy view of another interpreter's buffer */
    PyTypeObject *LockType;             /* lock.c */
    PyTypeObject *RLockType;            /* lock.c */
    PyTypeObject *EventType;            /* event.c */
    PyTypeObject *SemaphoreType;        /* semaphore.c */
    PyTypeObject *BoundedSemaphoreType; /* semaphore.c */
    PyTypeObject *ConditionType;        /* condition.c */
    PyTypeObject *QueueType;            /* queue_type.c */
    /* exception types, fetched on first use (errors.c) */
    PyObject *errors[MG_ERROR_COUNT];
    /* lazily imported helpers (NULL until first use) */
    PyObject *pickle_dumps;             /* pickle.c: cloudpickle.dumps (or pickle.dumps) */
    PyObject *pickle_loads;             /* pickle.c: pickle.loads */
    PyObject *remote_module;            /* call.c: multigil._remote */
    /* function caches of the call path (call.c) */
    PyObject *fn_by_token;              /* dict: token of a function sent here -> function */
    Py_ssize_t fn_cache_bytes;          /* the size of their pickles */
    PyObject *ref_by_fn;                /* dict: function sent from here -> (token, pickled) */
    PyObject *main_frame_code;          /* call.c: the frame C callables are called in */
    mg_interp *interp;                  /* interp.c: this interpreter's registry entry */
};

int mg_state_traverse(mg_state *st, visitproc visit, void *arg);
void mg_state_clear(mg_state *st);
/* Drop the function caches: they keep module globals alive, which must go
 * while their destructors can still run (interp.c, before closing). */
void mg_state_drop_caches(mg_state *st);

/*************************************************************************
 * Shared raw objects                                                    *
 *************************************************************************
 * A value that is the *same* object in every interpreter (a queue, a shared
 * buffer, a lock) is a raw C struct that starts with mg_shared.  Each
 * interpreter sees it through its own wrapper object, whose layout starts with
 * MG_WRAPPER_HEAD; the wrapper owns one reference to the raw struct.
 * The struct is freed, from whichever thread drops the last reference, by
 * kind->destroy, which must not touch any PyObject.
 */
typedef struct mg_shared mg_shared;

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

void mg_shared_init(mg_shared *s, const mg_shared_kind *kind);
void mg_shared_incref(mg_shared *s);
/* Take a reference unless the last one is gone (`s` is being destroyed):
 * 1 if taken.  For registries that find objects they hold no reference to. */
int mg_shared_tryincref(mg_shared *s);
void mg_shared_decref(mg_shared *s);
/* Process-unique ids (shared objects, function tokens), never 0. */
int64_t mg_next_id(void);

/*************************************************************************
 * Wrappers                                                              *
 *************************************************************************/

#define MG_WRAPPER_HEAD PyObject_HEAD mg_shared *raw;
typedef struct { MG_WRAPPER_HEAD } mg_wrapper;

/* A new wrapper of `type` for `raw`, taking a reference to it. */
PyObject *mg_wrapper_new(PyTypeObject *type, mg_shared *raw);
/* Slots shared by the wrapper types: dealloc drops the reference; identity
 * (hash, ==, the `id` attribute) is the raw object's id. */
void mg_wrapper_dealloc(PyObject *self);
Py_hash_t mg_wrapper_hash(PyObject *self);
PyObject *mg_wrapper_richcompare(PyObject *a, PyObject *b, int op);
PyObject *mg_wrapper_get_id(PyObject *self, void *closure);
/* The getset table of a wrapper type whose only attribute is `id`. */
extern PyGetSetDef mg_wrapper_getset[];

/* Create the heap type of `spec` (with `base`, or NULL) for `module` and add
 * it to the module.  A new reference (for mg_state), or NULL. */
PyTypeObject *mg_add_type(PyObject *module, PyType_Spec *spec, PyTypeObject *base);

/* Run `source` (`start`: Py_file_input or Py_eval_input) in `globals` and
 * `locals`, as PyRun_String does, except that a KeyboardInterrupt it raises
 * does not mark the whole process as ended by Ctrl-C: PyRun_String records
 * that in the runtime, shared by every interpreter, and the main interpreter
 * would then kill its process with SIGINT at exit, though it caught the
 * error.  The result, or NULL with an exception set. */
PyObject *mg_run_source(const char *source, int start, PyObject *globals, PyObject *locals);

#endif /* MULTIGIL_BASE_H */
