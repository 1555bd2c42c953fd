/* worker.c — the executor's worker loop.
 *
 *   main interpreter                      worker's interpreter
 *   ───────────────                       ────────────────────
 *   submit_task() ── encode ──► task queue ──► decode, resolve fn
 *                                                  │
 *   on_start(task_id) ◄─── (worker thread attaches to main) ◄┘
 *                                                  │ run fn(*args)
 *   on_done(task_id, ok, value, stage) ◄─ encode result ─┘
 *
 * A worker is one OS thread that enters its interpreter once and stays there,
 * taking tasks from a native queue shared by all workers of a pool.  It
 * attaches to the main interpreter only for the moment it takes to mark the
 * future running and to complete it: no dispatcher thread, no extra hand-off.
 * A task is an mg_call; it is decoded, run and its outcome encoded by the
 * same functions as interpreters.call() (call.h).  Large bytes and str in
 * tasks and results are lent (shm.h): copied once, by the receiver, straight
 * out of the sender's object, which its own interpreter then drops.
 */
#include "worker.h"
#include "errors.h"
#include "wait.h"
#include "interp.h"
#include "queue.h"
#include "call.h"

#include <sched.h>

/*************************************************************************
 * Spinning instead of sleeping, briefly                                 *
 *************************************************************************
 * A round trip submit(f).result() is two hand-offs: main -> worker through
 * the task queue, worker -> main through the future.  Sleeping on a futex
 * and being woken costs each side several microseconds of kernel time, about
 * as much as the rest of the round trip.  So both sides spin a little first,
 * yielding the CPU on each turn (on 2 CPUs a spinner must not keep the thread
 * it waits for off the CPU):
 *
 *   - a worker, after a task, polls the queue for WORKER_SPIN_NS before it
 *     sleeps.  It holds only its own interpreter's GIL, which no one else
 *     needs, so its spinning costs the main interpreter nothing;
 *   - a caller in result() spins with the GIL released on `completions`,
 *     which a worker bumps once it has left the caller's interpreter: the
 *     caller then takes its GIL uncontended (InterpreterFuture.result).
 *
 * Measured in benchmarks/bench_executor.py; docs/executor.md has the figures.
 */

/* Long enough to see the next task of a caller that submits right after each
 * result (a few tens of microseconds here), short enough not to matter after
 * the last one. */
#define WORKER_SPIN_NS 100000LL

/* How many tasks workers have finished, process-wide.  Owner: this file;
 * atomic, no lock; only ever incremented. */
static atomic_ullong completions;

/* The next task: spin on the queue, then sleep on it. */
static mg_queue_status
take_task(mg_queue *q, mg_blob **blob)
{
    int64_t end = mg_now_ns() + WORKER_SPIN_NS;
    do {
        mg_queue_status r = mg_queue_get_blob(q, 0, blob);   /* 0: don't block */
        if (r != MG_QUEUE_TIMEOUT) {
            return r;
        }
        sched_yield();
    } while (mg_now_ns() < end);
    return mg_queue_get_blob(q, MG_FOREVER, blob);
}

PyDoc_STRVAR(completions__doc__,
"completions($module, /)\n--\n\n"
"How many tasks executor workers have finished in this process.");

static PyObject *
core_completions(PyObject *Py_UNUSED(module), PyObject *Py_UNUSED(unused))
{
    return PyLong_FromUnsignedLongLong(atomic_load(&completions));
}

PyDoc_STRVAR(spin_for_completion__doc__,
"spin_for_completion($module, seen, seconds, /)\n--\n\n"
"Spin, with the GIL released and yielding the CPU on each turn, until\n"
"completions() is no longer `seen` or `seconds` passed.  Returns\n"
"completions().");

static PyObject *
core_spin_for_completion(PyObject *Py_UNUSED(module), PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "spin_for_completion(seen, seconds)");
        return NULL;
    }
    unsigned long long seen = PyLong_AsUnsignedLongLong(args[0]);
    double secs = PyFloat_AsDouble(args[1]);
    if (PyErr_Occurred()) {
        return NULL;
    }
    unsigned long long now_seen = atomic_load(&completions);
    if (now_seen == seen && secs > 0) {
        int64_t end = mg_now_ns() + (int64_t)(secs < 1.0 ? secs * 1e9 : 1e9);
        Py_BEGIN_ALLOW_THREADS
        while ((now_seen = atomic_load(&completions)) == seen && mg_now_ns() < end) {
            sched_yield();
        }
        Py_END_ALLOW_THREADS
    }
    return PyLong_FromUnsignedLongLong(now_seen);
}

/*************************************************************************
 * Worker                                                                *
 *************************************************************************/

/* Raw so that the worker thread reads and writes it from inside its own
 * interpreter without touching the main interpreter's Worker object.  Owner:
 * the Worker object that allocated it; current_task is written only with the
 * worker interpreter's GIL held, which is what makes interrupt() exact. */
typedef struct {
    int64_t interp_id;
    long max_tasks;            /* 0: unlimited */
    atomic_llong current_task; /* 0 when idle */
    atomic_ulong thread_ident; /* the worker thread, once running */
    atomic_int interrupted;    /* interrupt() raised into the current task */
} mg_worker_raw;

typedef struct {
    PyObject_HEAD
    mg_worker_raw *raw;
    PyObject *queue;
    PyObject *on_start;
    PyObject *on_done;
    int running;
} WorkerObject;

static int
Worker_init(WorkerObject *self, PyObject *args, PyObject *kwargs)
{
    static char *kwlist[] = {"interp_id", "queue", "on_start", "on_done", "max_tasks", NULL};
    long long interp_id;
    long max_tasks = 0;
    PyObject *queue, *on_start, *on_done;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "LOOO|l:Worker", kwlist, &interp_id,
                                     &queue, &on_start, &on_done, &max_tasks)) {
        return -1;
    }
    mg_state *st = PyType_GetModuleState(Py_TYPE(self));
    if (self->running) {
        PyErr_SetString(PyExc_RuntimeError, "cannot re-initialise a running Worker");
        return -1;
    }
    if (mg_queue_from_object(st, queue) == NULL) {
        return -1;
    }
    if (self->raw == NULL) {
        self->raw = PyMem_RawCalloc(1, sizeof(mg_worker_raw));
        if (self->raw == NULL) {
            PyErr_NoMemory();
            return -1;
        }
    }
    self->raw->interp_id = interp_id;
    self->raw->max_tasks = max_tasks < 0 ? 0 : max_tasks;
    Py_XSETREF(self->queue, Py_NewRef(queue));
    Py_XSETREF(self->on_start, Py_NewRef(on_start));
    Py_XSETREF(self->on_done, Py_NewRef(on_done));
    return 0;
}

static int
Worker_traverse(WorkerObject *self, visitproc visit, void *arg)
{
    Py_VISIT(Py_TYPE(self));
    Py_VISIT(self->queue);
    Py_VISIT(self->on_start);
    Py_VISIT(self->on_done);
    return 0;
}

static int
Worker_clear(WorkerObject *self)
{
    Py_CLEAR(self->queue);
    Py_CLEAR(self->on_start);
    Py_CLEAR(self->on_done);
    return 0;
}

static void
Worker_dealloc(WorkerObject *self)
{
    PyTypeObject *tp = Py_TYPE(self);
    PyObject_GC_UnTrack(self);
    Worker_clear(self);
    PyMem_RawFree(self->raw);
    tp->tp_free((PyObject *)self);
    Py_DECREF(tp);
}

/* The worker thread switches between its interpreter and the caller's (the
 * main one) without entering either again, so each side runs on arrival the
 * releases owed to it: the caller's objects lent as arguments (the worker
 * has copied them), the worker's lent as results or viewed by memoryviews
 * that the caller dropped. */
static PyThreadState *
to_caller(mg_state *st, const mg_session *s)
{
    PyThreadState *worker_ts = PyThreadState_Swap(s->saved);
    mg_interp_run_deferred_of(st->interp);
    return worker_ts;
}

static void
to_worker(const mg_session *s, PyThreadState *worker_ts)
{
    PyThreadState_Swap(worker_ts);
    mg_interp_run_deferred_of(s->interp);
}

/* Attached to the main interpreter: tell it a task starts.  1: run it. */
static int
notify_start(WorkerObject *self, long long task_id)
{
    if (self->on_start == Py_None) {
        return 1;
    }
    PyObject *go = PyObject_CallFunction(self->on_start, "L", task_id);
    if (go == NULL) {
        PyErr_WriteUnraisable(self->on_start);
        return 0;
    }
    int run = PyObject_IsTrue(go);
    Py_DECREF(go);
    if (run < 0) {
        PyErr_WriteUnraisable(self->on_start);
        return 0;
    }
    return run;
}

/* Attached to the main interpreter: rebuild the result and complete. */
static void
notify_done(WorkerObject *self, mg_state *st, long long task_id, mg_outcome *out)
{
    PyObject *value = mg_outcome_take(st, out);
    PyObject *res;
    if (value == NULL) {
        /* ok=None tells the pool that the value is the error met here */
        PyObject *exc = PyErr_GetRaisedException();
        res = PyObject_CallFunction(self->on_done, "LOOs", task_id, Py_None, exc,
                                    mg_stage_name(MG_STAGE_RESULT));
        Py_XDECREF(exc);
    }
    else {
        /* "z": the stage is None when the task succeeded */
        res = PyObject_CallFunction(self->on_done, "LOOz", task_id,
                                    out->ok ? Py_True : Py_False, value,
                                    mg_stage_name(out->stage));
        Py_DECREF(value);
    }
    if (res == NULL) {
        PyErr_WriteUnraisable(self->on_done);
    }
    Py_XDECREF(res);
    mg_interp_run_deferred_of(st->interp);
}

/* Inside the worker's interpreter, after a task that interrupt() hit: an
 * interrupt that arrived as the task ended must not hit the next task.  Done
 * only then: on 3.12, PyThreadState_SetAsyncExc(id, NULL) leaves the
 * interpreter's eval breaker set for good, so every bytecode boundary takes
 * the slow path afterwards (tasks ran 20-30% slower when it was done after
 * every task). */
static void
drop_pending_interrupt(WorkerObject *self)
{
    PyObject *saved = PyErr_GetRaisedException();
#if PY_VERSION_HEX < 0x030D0000
    /* Let it fire instead: handling it is what resets the eval breaker on
     * 3.12. */
    if (mg_raise_pending_async_exc() < 0) {
        PyErr_Clear();
    }
    (void)self;
#else
    PyThreadState_SetAsyncExc(atomic_load(&self->raw->thread_ident), NULL);
#endif
    PyErr_SetRaisedException(saved);
}

/* Inside the worker's interpreter: the current task is over (Worker_run made
 * it current before it started), or was skipped. */
static void
task_over(WorkerObject *self)
{
    atomic_store(&self->raw->current_task, 0);
    if (atomic_exchange(&self->raw->interrupted, 0)) {
        drop_pending_interrupt(self);
    }
}

PyDoc_STRVAR(Worker_run__doc__,
"run($self, /)\n--\n\n"
"Enter the worker's interpreter and run tasks from the queue until it is\n"
"closed ('closed'), max_tasks were done ('max_tasks'), or a task raised\n"
"SystemExit or KeyboardInterrupt ('fatal').  Blocks the calling thread.");

static PyObject *
Worker_run(WorkerObject *self, PyObject *Py_UNUSED(ignored))
{
    mg_state *st = PyType_GetModuleState(Py_TYPE(self));
    if (self->raw == NULL || self->queue == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "Worker was not initialised");
        return NULL;
    }
    if (self->running) {
        PyErr_SetString(PyExc_RuntimeError, "this Worker is already running");
        return NULL;
    }
    mg_queue *q = mg_queue_from_object(st, self->queue);
    if (q == NULL) {
        return NULL;
    }
    /* Set before mg_enter releases our GIL: a second run() must see it. */
    self->running = 1;
    PyObject *qobj = Py_NewRef(self->queue);   /* keeps q alive for the loop */
    mg_session s;
    if (mg_enter(st, self->raw->interp_id, &s) < 0) {
        self->running = 0;
        Py_DECREF(qobj);
        return NULL;
    }
    mg_state *sub = mg_session_state(&s);
    if (sub == NULL || s.saved == NULL) {
        /* Without _core there, or in the caller's own interpreter (a worker
         * switches back to its caller's to report). */
        mg_leave(&s);
        self->running = 0;
        Py_DECREF(qobj);
        if (sub == NULL) {
            return mg_no_core(st, self->raw->interp_id);
        }
        return mg_raise(st, MG_ERR_INTERPRETER,
                        "a Worker cannot run in its own interpreter (%lld): call run() "
                        "from another one", (long long)self->raw->interp_id);
    }
    sigset_t signals;
    mg_signals_block(&signals);     /* the main thread's to handle */
    atomic_store(&self->raw->thread_ident, PyThread_get_thread_ident());
    const char *reason = "closed";
    long done = 0;
    for (;;) {
        mg_blob *blob = NULL;
        mg_queue_status r = take_task(q, &blob);
        if (r == MG_QUEUE_CLOSED) {
            break;
        }
        if (r != MG_QUEUE_OK) {
            if (r == MG_QUEUE_ERROR) {
                PyErr_WriteUnraisable(NULL);
            }
            continue;
        }
        mg_call task;
        mg_stage stage;
        int rc = mg_call_decode(sub, blob, &task, &stage);
        mg_blob_free(blob);
        if (rc < 0 && (stage == MG_STAGE_NONE || task.task_id <= 0)) {
            /* Names no task (not built by submit_task): report it, skip it.
             * Not as self->queue's: that belongs to the caller's interpreter. */
            PyErr_WriteUnraisable(NULL);
            continue;
        }
        long long task_id = task.task_id;
        /* A task whose function or arguments could not be rebuilt fails with
         * that error, kept (an object of this interpreter) while we report
         * to main. */
        PyObject *payload_error = rc < 0 ? PyErr_GetRaisedException() : NULL;

        /* Current from before its future turns RUNNING in on_start: whoever
         * sees it running can interrupt it, even before it has started. */
        atomic_store(&self->raw->current_task, task_id);
        PyThreadState *worker_ts = to_caller(st, &s);
        int go = notify_start(self, task_id);
        to_worker(&s, worker_ts);
        if (!go) {
            task_over(self);
            Py_XDECREF(payload_error);
            mg_call_clear(&task);
            continue;
        }

        PyObject *result = NULL;
        if (payload_error != NULL) {
            PyErr_SetRaisedException(payload_error);
        }
        else {
            result = mg_call_invoke(sub, &task, &stage);
        }
        /* Over before its result is encoded: no interrupt may hit that. */
        task_over(self);
        mg_outcome out;
        mg_outcome_init(&out);
        /* Large results are lent: the worker drops them on its way back. */
        mg_outcome_set(sub, result, stage, &out, MG_ENCODE_LEND);
        mg_call_clear(&task);

        worker_ts = to_caller(st, &s);
        notify_done(self, st, task_id, &out);
        to_worker(&s, worker_ts);
        atomic_fetch_add(&completions, 1);      /* out of the caller's GIL now */

        done++;
        if (out.fatal) {
            reason = "fatal";
            break;
        }
        if (self->raw->max_tasks && done >= self->raw->max_tasks) {
            reason = "max_tasks";
            break;
        }
    }
    atomic_store(&self->raw->thread_ident, 0);
    mg_signals_restore(&signals);
    mg_leave(&s);
    self->running = 0;
    Py_DECREF(qobj);
    return PyUnicode_FromString(reason);
}

PyDoc_STRVAR(Worker_interrupt__doc__,
"interrupt($self, task_id, /)\n--\n\n"
"Raise TaskCancelled in the worker's thread at its next bytecode boundary (or\n"
"at once if it waits in a multigil Queue, Lock, Event, Semaphore or Condition),\n"
"if it is running task `task_id` now.  Returns whether it was.");

static PyObject *
Worker_interrupt(WorkerObject *self, PyObject *arg)
{
    long long task_id = PyLong_AsLongLong(arg);
    if (task_id == -1 && PyErr_Occurred()) {
        return NULL;
    }
    if (self->raw == NULL || task_id == 0 ||
        atomic_load(&self->raw->current_task) != task_id) {
        Py_RETURN_FALSE;
    }
    mg_state *st = PyType_GetModuleState(Py_TYPE(self));
    mg_session s;
    if (mg_enter(st, self->raw->interp_id, &s) < 0) {
        return NULL;
    }
    int hit = 0;
    mg_state *sub = mg_session_state(&s);
    /* Holding the worker interpreter's GIL: current_task cannot change now. */
    if (sub && atomic_load(&self->raw->current_task) == task_id) {
        PyObject *exc = mg_error_type(sub, MG_ERR_TASK_CANCELLED);
        if (exc) {
            unsigned long ident = atomic_load(&self->raw->thread_ident);
            hit = PyThreadState_SetAsyncExc(ident, exc) > 0;
            if (hit) {
                atomic_store(&self->raw->interrupted, 1);
                /* A task blocked in a multigil wait (Queue.get, Lock, ...)
                 * raises it now, not when the wait ends. */
                mg_wait_interrupt(ident);
            }
        }
    }
    PyErr_Clear();
    mg_leave(&s);
    return PyBool_FromLong(hit);
}

static PyMethodDef Worker_methods[] = {
    {"run", (PyCFunction)Worker_run, METH_NOARGS, Worker_run__doc__},
    {"interrupt", (PyCFunction)Worker_interrupt, METH_O, Worker_interrupt__doc__},
    {NULL, NULL, 0, NULL},
};

PyDoc_STRVAR(Worker__doc__,
"Worker(interp_id, queue, on_start, on_done, max_tasks=0)\n--\n\n"
"One executor worker: `run()` (in a dedicated thread) takes tasks built by\n"
"submit_task() from `queue` and runs them in interpreter `interp_id`.\n"
"on_start(task_id) -> bool is called in the main interpreter before a task\n"
"runs (False skips it; None: always run); on_done(task_id, ok, value, stage)\n"
"after: ok True and the result, stage None; ok False and the excinfo of the\n"
"error, stage 'function', 'arguments', 'call' or 'result' (where it failed);\n"
"ok None and the error met rebuilding the result here, stage 'result'.");

static PyType_Slot Worker_slots[] = {
    {Py_tp_doc, (void *)Worker__doc__},
    {Py_tp_new, PyType_GenericNew},
    {Py_tp_init, Worker_init},
    {Py_tp_traverse, Worker_traverse},
    {Py_tp_clear, Worker_clear},
    {Py_tp_dealloc, Worker_dealloc},
    {Py_tp_methods, Worker_methods},
    {0, NULL},
};

static PyType_Spec Worker_spec = {
    .name = "multigil._core.Worker",
    .basicsize = sizeof(WorkerObject),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_IMMUTABLETYPE,
    .slots = Worker_slots,
};

/*************************************************************************
 * Submitting                                                            *
 *************************************************************************/

PyDoc_STRVAR(submit_task__doc__,
"submit_task($module, queue, task_id, fn, args, kwargs, chunked, /)\n--\n\n"
"Encode a task and put it on a worker queue.  A chunked task applies fn to\n"
"each argument tuple of the list `args` and returns (results, excinfo|None).\n"
"Returns whether some of the arguments were pickled.");

static PyObject *
core_submit_task(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 6) {
        PyErr_SetString(PyExc_TypeError,
                        "submit_task(queue, task_id, fn, args, kwargs, chunked)");
        return NULL;
    }
    mg_state *st = PyModule_GetState(module);
    mg_queue *q = mg_queue_from_object(st, args[0]);
    if (q == NULL) {
        return NULL;
    }
    long long task_id = PyLong_AsLongLong(args[1]);
    if (task_id == -1 && PyErr_Occurred()) {
        return NULL;
    }
    if (task_id <= 0) {
        PyErr_SetString(PyExc_ValueError, "task ids are positive integers");
        return NULL;
    }
    int chunked = PyObject_IsTrue(args[5]);
    if (chunked < 0) {
        return NULL;
    }
    mg_call task;
    if (mg_call_pack(st, &task, task_id, chunked, args[2], args[3], args[4]) < 0) {
        return NULL;
    }
    mg_blob blob;
    mg_blob_init(&blob);
    /* Large arguments are lent: the worker copies them out of the caller's
     * objects, which the caller drops when the worker next attaches to it. */
    int rc = mg_call_encode(st, &task, &blob, MG_ENCODE_LEND);
    mg_call_clear(&task);
    if (rc < 0) {
        return NULL;
    }
    /* A table blob: some arguments were pickled (blob.h). */
    int pickled = blob.size > 0 && (unsigned char)blob.data[0] == MG_T_TABLE;
    mg_blob *heap = mg_blob_move_to_heap(&blob);
    if (heap == NULL) {
        mg_blob_clear(&blob);
        return PyErr_NoMemory();
    }
    mg_queue_status status = mg_queue_put_blob(q, heap, MG_FOREVER);
    if (status != MG_QUEUE_OK) {
        mg_blob_free(heap);
        return mg_queue_raise(st, q, MG_QUEUE_PUT, status);
    }
    return PyBool_FromLong(pickled);
}

static PyMethodDef worker_functions[] = {
    {"submit_task", (PyCFunction)(void (*)(void))core_submit_task, METH_FASTCALL,
     submit_task__doc__},
    {"completions", core_completions, METH_NOARGS, completions__doc__},
    {"spin_for_completion", (PyCFunction)(void (*)(void))core_spin_for_completion, METH_FASTCALL,
     spin_for_completion__doc__},
    {NULL, NULL, 0, NULL},
};

int
mg_worker_init(PyObject *module, mg_state *Py_UNUSED(st))
{
    PyTypeObject *type = mg_add_type(module, &Worker_spec, NULL);
    if (type == NULL) {
        return -1;
    }
    Py_DECREF(type);            /* the module keeps it alive */
    return PyModule_AddFunctions(module, worker_functions);
}
