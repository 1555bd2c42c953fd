/* interp.c — the interpreter registry, the thread-state cache, and entering
 * an interpreter from any thread.
 *
 *   registry (process-global)            one thread's cache (thread-local)
 *   ┌──────────────────────────┐         ┌──────────────────────────────┐
 *   │ mg_interp id=0 (main)    │◄────────│ mg_tnode: interp, tstate     │
 *   │ mg_interp id=3 ──nodes──►│ mg_tnode│ mg_tnode: interp, tstate     │
 *   │ mg_interp id=4           │         └──────────────────────────────┘
 *   └──────────────────────────┘
 *
 * A thread that enters interpreter I for the first time creates one
 * PyThreadState for (thread, I) and keeps it: entering again costs one
 * PyThreadState_Swap and no allocation.  Each node is on two lists: its
 * thread's and its interpreter's.  Closing I clears and deletes every cached
 * thread state of I (other threads' too: they are idle, since nobody is inside
 * I); a node whose thread is gone is reaped by the next thread that enters I.
 */
#include "interp.h"
#include "errors.h"

/*************************************************************************
 * Registry                                                              *
 *************************************************************************/

typedef struct mg_tnode mg_tnode;
typedef struct mg_deferred {
    void (*fn)(void *);
    void *arg;
    struct mg_deferred *next;
} mg_deferred;

struct mg_interp {
    int64_t id;
    PyInterpreterState *istate;
    /* The _core state inside this interpreter; dereferenced only while
     * attached to it.  NULL until _core is imported there. */
    mg_state *state;
    const char *whence;
    int owned;            /* created by multigil: closed by multigil */
    int closing;          /* close in progress: nobody may enter */
    atomic_long busy;     /* threads inside through mg_enter */
    long exports;         /* live zero-copy exports of its objects */
    long ngone;           /* nodes whose thread has exited */
    mg_tnode *nodes;      /* cached thread states of this interpreter */
    mg_deferred *deferred;
    atomic_int has_deferred;
    struct mg_interp *next;
};

struct mg_tnode {
    mg_interp *interp;    /* NULL once the interpreter was closed */
    PyThreadState *tstate;
    int thread_gone;
    mg_tnode *next_in_thread;
    mg_tnode *next_in_interp;
};

/* The registry.  Owner: this file.  Lock: registry_lock guards every field of
 * every mg_interp and mg_tnode, and the lists, except `busy` (atomic) and the
 * thread-local list heads, which only their thread reads or writes. */
static pthread_mutex_t registry_lock = PTHREAD_MUTEX_INITIALIZER;
static mg_interp *registry_head = NULL;

/* The thread-state cache's key.  Owner: this file; created once, under
 * tls_once; each thread's value (its mg_tnode list head) is its own. */
static pthread_once_t tls_once = PTHREAD_ONCE_INIT;
static pthread_key_t tls_key;

#define LOCK() pthread_mutex_lock(&registry_lock)
#define UNLOCK() pthread_mutex_unlock(&registry_lock)

/* Runs when a thread that used the cache exits.  Its nodes for closed
 * interpreters are freed; the others are marked gone, and the next thread
 * that enters their interpreter deletes their thread states there. */
static void
thread_exit(void *head)
{
    LOCK();
    mg_tnode *n = (mg_tnode *)head;
    while (n) {
        mg_tnode *next = n->next_in_thread;
        if (n->interp == NULL) {
            PyMem_RawFree(n);
        }
        else {
            n->thread_gone = 1;
            n->next_in_thread = NULL;
            n->interp->ngone++;
        }
        n = next;
    }
    UNLOCK();
}

static void
tls_init(void)
{
    if (pthread_key_create(&tls_key, thread_exit) != 0) {
        Py_FatalError("multigil: cannot create a thread-local key");
    }
}

static mg_interp *
find_locked(int64_t id)
{
    for (mg_interp *ip = registry_head; ip; ip = ip->next) {
        if (ip->id == id) {
            return ip;
        }
    }
    return NULL;
}

static mg_interp *
new_entry_locked(PyInterpreterState *istate, const char *whence, int owned)
{
    mg_interp *ip = PyMem_RawCalloc(1, sizeof(*ip));
    if (ip == NULL) {
        return NULL;
    }
    ip->id = PyInterpreterState_GetID(istate);
    ip->istate = istate;
    ip->whence = whence;
    ip->owned = owned;
    atomic_init(&ip->busy, 0);
    atomic_init(&ip->has_deferred, 0);
    ip->next = registry_head;
    registry_head = ip;
    return ip;
}

static void
remove_entry_locked(mg_interp *ip)
{
    for (mg_interp **pp = &registry_head; *pp; pp = &(*pp)->next) {
        if (*pp == ip) {
            *pp = ip->next;
            break;
        }
    }
    /* What was deferred to it can no longer run there: the objects it would
     * have released died with the interpreter.  Free the records only. */
    mg_deferred *d = ip->deferred;
    while (d) {
        mg_deferred *next = d->next;
        PyMem_RawFree(d);
        d = next;
    }
    PyMem_RawFree(ip);
}

mg_interp *
mg_interp_current(void)
{
    PyInterpreterState *istate = PyInterpreterState_Get();
    int64_t id = PyInterpreterState_GetID(istate);
    LOCK();
    mg_interp *ip = find_locked(id);
    if (ip == NULL) {
        const char *whence =
            istate == PyInterpreterState_Main() ? "runtime init" : "unknown";
        ip = new_entry_locked(istate, whence, 0);
    }
    UNLOCK();
    if (ip == NULL) {
        PyErr_NoMemory();
    }
    return ip;
}

int64_t
mg_interp_id(const mg_interp *ip)
{
    return ip->id;
}

/*************************************************************************
 * Deferred release (objects kept alive for other interpreters)          *
 *************************************************************************/

int
mg_interp_defer(int64_t owner_id, void (*fn)(void *), void *arg)
{
    mg_deferred *d = PyMem_RawMalloc(sizeof(*d));
    if (d == NULL) {
        return -1;
    }
    d->fn = fn;
    d->arg = arg;
    LOCK();
    mg_interp *ip = find_locked(owner_id);
    if (ip == NULL) {
        UNLOCK();
        PyMem_RawFree(d);
        return -1;
    }
    d->next = ip->deferred;
    ip->deferred = d;
    atomic_store(&ip->has_deferred, 1);
    UNLOCK();
    return 0;
}

void
mg_interp_run_deferred_of(mg_interp *ip)
{
    if (ip == NULL || !atomic_load_explicit(&ip->has_deferred, memory_order_relaxed)) {
        return;
    }
    LOCK();
    mg_deferred *d = ip->deferred;
    ip->deferred = NULL;
    atomic_store(&ip->has_deferred, 0);
    UNLOCK();
    PyObject *exc = PyErr_GetRaisedException();
    while (d) {
        mg_deferred *next = d->next;
        d->fn(d->arg);
        PyMem_RawFree(d);
        d = next;
    }
    PyErr_SetRaisedException(exc);
}

void
mg_interp_run_deferred(void)
{
    mg_interp *ip = mg_interp_current();
    if (ip == NULL) {
        PyErr_Clear();
        return;
    }
    mg_interp_run_deferred_of(ip);
}

void
mg_interp_exports_add(int64_t owner_id, long delta)
{
    LOCK();
    mg_interp *ip = find_locked(owner_id);
    if (ip) {
        ip->exports += delta;
    }
    UNLOCK();
}

long
mg_interp_exports(int64_t id)
{
    LOCK();
    mg_interp *ip = find_locked(id);
    long n = ip ? ip->exports : -1;
    UNLOCK();
    return n;
}

/*************************************************************************
 * Entering an interpreter                                               *
 *************************************************************************/

/* Delete the cached thread states of exited threads.  Attached to `ip`. */
static void
reap_gone_threads(mg_interp *ip)
{
    enum { BATCH = 16 };
    PyThreadState *dead[BATCH];
    int ndead = 0;
    LOCK();
    for (mg_tnode **pp = &ip->nodes; *pp && ndead < BATCH;) {
        mg_tnode *n = *pp;
        if (n->thread_gone) {
            *pp = n->next_in_interp;
            dead[ndead++] = n->tstate;
            ip->ngone--;
            PyMem_RawFree(n);
        }
        else {
            pp = &n->next_in_interp;
        }
    }
    UNLOCK();
    for (int i = 0; i < ndead; i++) {
        PyThreadState_Clear(dead[i]);
        PyThreadState_Delete(dead[i]);
    }
}

/* The cached thread state of this thread for `ip`, or NULL.  Locked. */
static mg_tnode *
tls_find_locked(mg_interp *ip)
{
    mg_tnode *head = pthread_getspecific(tls_key);
    mg_tnode *prev = NULL, *found = NULL;
    for (mg_tnode *n = head; n;) {
        mg_tnode *next = n->next_in_thread;
        if (n->interp == NULL) {
            /* its interpreter was closed: drop the node */
            if (prev) {
                prev->next_in_thread = next;
            }
            else {
                head = next;
            }
            PyMem_RawFree(n);
        }
        else {
            if (n->interp == ip) {
                found = n;
            }
            prev = n;
        }
        n = next;
    }
    pthread_setspecific(tls_key, head);
    return found;
}

/* Make `ts` this thread's cached thread state for `ip`, through `n`. */
static void
link_node_locked(mg_tnode *n, mg_interp *ip, PyThreadState *ts)
{
    n->interp = ip;
    n->tstate = ts;
    n->next_in_thread = pthread_getspecific(tls_key);
    pthread_setspecific(tls_key, n);
    n->next_in_interp = ip->nodes;
    ip->nodes = n;
}

static PyThreadState *
thread_state_for(mg_interp *ip)
{
    LOCK();
    mg_tnode *n = tls_find_locked(ip);
    UNLOCK();
    if (n) {
        return n->tstate;
    }
    PyThreadState *ts = PyThreadState_New(ip->istate);
    if (ts == NULL) {
        return NULL;
    }
    n = PyMem_RawCalloc(1, sizeof(*n));
    if (n == NULL) {
        PyThreadState_Clear(ts);   /* never attached: safe to clear here */
        PyThreadState_Delete(ts);
        return NULL;
    }
    LOCK();
    link_node_locked(n, ip, ts);
    UNLOCK();
    return ts;
}

/* Look `id` up and mark it busy.  Locked inside.  NULL with an exception. */
static mg_interp *
acquire(mg_state *st, int64_t id)
{
    LOCK();
    mg_interp *ip = find_locked(id);
    if (ip != NULL && !ip->owned && ip->istate != PyInterpreterState_Main()
        && ip->istate != PyInterpreterState_Get()) {
        /* A cached thread state would make its creator's Py_EndInterpreter
         * abort ("not the last thread"). */
        UNLOCK();
        mg_raise(st, MG_ERR_INTERPRETER, "interpreter %lld was not created by "
                 "multigil; multigil cannot enter it", (long long)id);
        return NULL;
    }
    if (ip == NULL || ip->closing) {
        int closing = ip != NULL;
        UNLOCK();
        if (closing) {
            mg_raise(st, MG_ERR_INTERPRETER_NOT_FOUND,
                     "interpreter %lld is being closed", (long long)id);
        }
        else {
            mg_raise(st, MG_ERR_INTERPRETER_NOT_FOUND,
                     "interpreter %lld does not exist (it was closed, or never "
                     "created); create a new one with multigil.interpreters.create()",
                     (long long)id);
        }
        return NULL;
    }
    atomic_fetch_add(&ip->busy, 1);
    UNLOCK();
    return ip;
}

int
mg_enter(mg_state *st, int64_t id, mg_session *s)
{
    pthread_once(&tls_once, tls_init);
    mg_interp *ip = acquire(st, id);
    if (ip == NULL) {
        return -1;
    }
    s->interp = ip;
    s->saved = NULL;
    if (ip->istate == PyInterpreterState_Get()) {
        return 0;   /* already there */
    }
    PyThreadState *ts = thread_state_for(ip);
    if (ts == NULL) {
        atomic_fetch_sub(&ip->busy, 1);
        PyErr_NoMemory();
        return -1;
    }
    s->saved = PyThreadState_Swap(ts);
    if (ip->ngone) {
        reap_gone_threads(ip);
    }
    mg_interp_run_deferred_of(ip);
    return 0;
}

void
mg_leave(mg_session *s)
{
    if (s->saved) {
        PyThreadState_Swap(s->saved);
        s->saved = NULL;
        mg_interp_run_deferred();
    }
    atomic_fetch_sub(&s->interp->busy, 1);
}

mg_state *
mg_session_state(const mg_session *s)
{
    /* Attached to the target: its state may be read now. */
    return s->interp->state;
}

/*************************************************************************
 * Creating and closing                                                  *
 *************************************************************************/

int64_t
mg_interp_create(mg_state *st, const char *bootstrap)
{
    pthread_once(&tls_once, tls_init);
    char *error = NULL;         /* the bootstrap's error, as text */
    PyInterpreterConfig config = {
        .use_main_obmalloc = 0,
        .allow_fork = 0,
        .allow_exec = 0,
        .allow_threads = 1,
        .allow_daemon_threads = 0,
        .check_multi_interp_extensions = 1,
        .gil = PyInterpreterConfig_OWN_GIL,
    };
    PyThreadState *saved = PyThreadState_Get();
    PyThreadState *ts = NULL;
    PyStatus status = Py_NewInterpreterFromConfig(&ts, &config);
    if (PyStatus_Exception(status) || ts == NULL) {
        /* Py_NewInterpreterFromConfig leaves the caller detached on failure */
        PyThreadState_Swap(saved);
        mg_raise(st, MG_ERR_INTERPRETER, "cannot create an interpreter: %s",
                 status.err_msg ? status.err_msg : "unknown error");
        return -1;
    }
    /* Attached to the new interpreter now. */
    PyInterpreterState *istate = PyThreadState_GetInterpreter(ts);
    mg_tnode *n = PyMem_RawCalloc(1, sizeof(*n));
    LOCK();
    mg_interp *ip = n ? new_entry_locked(istate, "C-API", 1) : NULL;
    if (ip) {
        ip->closing = 1;   /* nobody enters until the bootstrap ran */
        link_node_locked(n, ip, ts);
    }
    UNLOCK();
    int64_t id = ip ? ip->id : -1;
    int failed = ip == NULL;
    if (!failed) {
        PyObject *globals = PyDict_New();
        PyObject *res = globals ? PyRun_String(bootstrap, Py_file_input, globals, globals) : NULL;
        Py_XDECREF(globals);
        if (res == NULL) {
            failed = 1;
            PyObject *exc = PyErr_GetRaisedException();
            PyObject *text = exc ? PyObject_Str(exc) : NULL;
            const char *msg = text ? PyUnicode_AsUTF8(text) : NULL;
            const char *tname = exc ? Py_TYPE(exc)->tp_name : "error";
            size_t len = strlen(tname) + (msg ? strlen(msg) : 0) + 4;
            error = PyMem_RawMalloc(len);
            if (error) {
                snprintf(error, len, "%s: %s", tname, msg ? msg : "");
            }
            PyErr_Clear();
            Py_XDECREF(text);
            Py_XDECREF(exc);
        }
        Py_XDECREF(res);
    }
    if (failed) {
        /* Keep the entry (closing) until the interpreter is gone: its _core
         * module, if the bootstrap imported it, reaches it from core_free. */
        LOCK();
        if (ip) {
            ip->nodes = NULL;
            ip->state = NULL;
            n->interp = NULL;   /* the thread list drops it */
        }
        else {
            PyMem_RawFree(n);
        }
        UNLOCK();
        Py_EndInterpreter(ts);
        PyThreadState_Swap(saved);
        if (ip) {
            LOCK();
            remove_entry_locked(ip);
            UNLOCK();
        }
        mg_interp_run_deferred();
        if (error == NULL) {
            PyErr_NoMemory();
        }
        else {
            mg_raise(st, MG_ERR_INTERPRETER, "a new interpreter failed to start: %s", error);
            PyMem_RawFree(error);
        }
        return -1;
    }
    PyThreadState_Swap(saved);
    LOCK();
    ip->closing = 0;
    UNLOCK();
    return id;
}

/* Clear and delete every cached thread state of `ip` but `keep`.  Attached
 * to `ip` (through `keep`), with nobody else inside it. */
static void
drop_thread_states(mg_interp *ip, PyThreadState *keep)
{
    for (;;) {
        PyThreadState *other = NULL;
        LOCK();
        for (mg_tnode **pp = &ip->nodes; *pp;) {
            mg_tnode *nd = *pp;
            if (nd->tstate == keep) {
                pp = &nd->next_in_interp;
                continue;
            }
            *pp = nd->next_in_interp;
            other = nd->tstate;
            if (nd->thread_gone) {
                ip->ngone--;
                PyMem_RawFree(nd);
            }
            else {
                nd->interp = NULL;    /* its thread drops it */
            }
            break;
        }
        UNLOCK();
        if (other == NULL) {
            break;
        }
        PyThreadState_Clear(other);
        PyThreadState_Delete(other);
    }
}

/* Claim interpreter `id` for closing (check_lends: 1) or for renewing its
 * thread states: nobody else is inside, and nobody may enter until
 * unclaim().  NULL with the error set if it cannot be claimed now. */
static mg_interp *
claim(mg_state *st, int64_t id, int check_lends)
{
    LOCK();
    mg_interp *ip = find_locked(id);
    const char *problem = NULL;
    if (ip == NULL || ip->closing) {
        UNLOCK();
        mg_raise(st, MG_ERR_INTERPRETER_NOT_FOUND,
                 "interpreter %lld does not exist (already closed?)", (long long)id);
        return NULL;
    }
    if (!ip->owned) {
        problem = "was not created by multigil, so multigil does not close it";
    }
    else if (ip->istate == PyInterpreterState_Get()) {
        problem = "is the current interpreter: close it from another one";
    }
    else if (atomic_load(&ip->busy) > 0) {
        problem = "is running in another thread; wait for that call to return "
                  "(or stop the executor using it) before closing it";
    }
    else if (check_lends && ip->exports > 0 && !atomic_load(&ip->has_deferred)) {
        problem = "still lends buffers (memoryviews) to other interpreters; "
                  "release those views first";
    }
    if (problem) {
        UNLOCK();
        mg_raise(st, MG_ERR_INTERPRETER, "interpreter %lld %s", (long long)id, problem);
        return NULL;
    }
    ip->closing = 1;
    atomic_fetch_add(&ip->busy, 1);
    UNLOCK();
    return ip;
}

static void
unclaim(mg_interp *ip)
{
    LOCK();
    ip->closing = 0;
    atomic_fetch_sub(&ip->busy, 1);
    UNLOCK();
}

int
mg_interp_renew_thread_states(mg_state *st, int64_t id)
{
    pthread_once(&tls_once, tls_init);
    mg_interp *ip = claim(st, id, 0);
    if (ip == NULL) {
        return -1;
    }
    PyThreadState *fresh = PyThreadState_New(ip->istate);
    mg_tnode *n = fresh ? PyMem_RawCalloc(1, sizeof(*n)) : NULL;
    if (n == NULL) {
        if (fresh != NULL) {
            PyThreadState_Clear(fresh);   /* never attached: safe to clear here */
            PyThreadState_Delete(fresh);
        }
        unclaim(ip);
        PyErr_NoMemory();
        return -1;
    }
    PyThreadState *saved = PyThreadState_Swap(fresh);
    drop_thread_states(ip, fresh);
    PyThreadState_Swap(saved);
    LOCK();
    link_node_locked(n, ip, fresh);     /* this thread's cached state now */
    UNLOCK();
    unclaim(ip);
    return 0;
}

int
mg_interp_close(mg_state *st, int64_t id)
{
    pthread_once(&tls_once, tls_init);
    mg_interp *ip = claim(st, id, 1);
    if (ip == NULL) {
        return -1;
    }
    PyThreadState *ts = thread_state_for(ip);
    if (ts == NULL) {
        unclaim(ip);
        PyErr_NoMemory();
        return -1;
    }
    PyThreadState *saved = PyThreadState_Swap(ts);
    mg_interp_run_deferred_of(ip);
    LOCK();
    long lent = ip->exports;
    UNLOCK();
    if (lent > 0) {
        PyThreadState_Swap(saved);
        unclaim(ip);
        mg_raise(st, MG_ERR_INTERPRETER, "interpreter %lld still lends buffers (memoryviews) "
                 "to other interpreters; release those views first", (long long)id);
        return -1;
    }
    /* The function caches keep module globals alive, and the finalisation of
     * a 3.12/3.13 interpreter does not always free what they hold: objects
     * whose release matters (views of other interpreters' buffers, shared
     * buffers) go now, while their destructors can still run. */
    if (ip->state != NULL) {
        mg_state_drop_caches(ip->state);
    }

    /* Every other cached thread state of it goes now: Py_EndInterpreter
     * insists on being left with the last one. */
    drop_thread_states(ip, ts);

    LOCK();
    for (mg_tnode *nd = ip->nodes; nd; nd = nd->next_in_interp) {
        nd->interp = NULL;            /* ours: Py_EndInterpreter deletes it */
    }
    ip->nodes = NULL;
    ip->state = NULL;
    UNLOCK();
    Py_EndInterpreter(ts);
    PyThreadState_Swap(saved);
    LOCK();
    remove_entry_locked(ip);
    UNLOCK();
    /* Its finalisation dropped views of the caller's buffers: release them. */
    mg_interp_run_deferred();
    return 0;
}

/*************************************************************************
 * Queries, and the module's own entry                                   *
 *************************************************************************/

PyObject *
mg_interp_list(void)
{
    PyObject *result = PyList_New(0);
    if (result == NULL) {
        return NULL;
    }
    LOCK();
    size_t n = 0;
    for (mg_interp *ip = registry_head; ip; ip = ip->next) {
        n++;
    }
    struct { int64_t id; const char *whence; } *items =
        PyMem_RawMalloc((n ? n : 1) * sizeof(*items));
    size_t i = 0;
    if (items) {
        for (mg_interp *ip = registry_head; ip; ip = ip->next) {
            if (!ip->closing) {
                items[i].id = ip->id;
                items[i].whence = ip->whence;
                i++;
            }
        }
    }
    UNLOCK();
    if (items == NULL) {
        Py_DECREF(result);
        return PyErr_NoMemory();
    }
    /* registry order is newest first; list oldest first */
    while (i-- > 0) {
        PyObject *t = Py_BuildValue("(Ls)", (long long)items[i].id, items[i].whence);
        if (t == NULL || PyList_Append(result, t) < 0) {
            Py_XDECREF(t);
            Py_CLEAR(result);
            break;
        }
        Py_DECREF(t);
    }
    PyMem_RawFree(items);
    return result;
}

/* -1: no such interpreter; else the number of threads inside it. */
long
mg_interp_busy(int64_t id, const char **whence)
{
    LOCK();
    mg_interp *ip = find_locked(id);
    long busy = -1;
    if (ip && !ip->closing) {
        busy = atomic_load(&ip->busy);
        if (whence) {
            *whence = ip->whence;
        }
    }
    UNLOCK();
    return busy;
}

int
mg_interp_init(mg_state *st)
{
    pthread_once(&tls_once, tls_init);
    st->interp = mg_interp_current();
    if (st->interp == NULL) {
        return -1;
    }
    LOCK();
    st->interp->state = st;
    UNLOCK();
    return 0;
}

void
mg_interp_forget(mg_state *st)
{
    mg_interp *ip = st->interp;
    if (ip == NULL) {
        return;
    }
    st->interp = NULL;
    /* The module is being freed in this interpreter.  Entries multigil did
     * not create are dropped: their interpreter may be destroyed by others.
     * Another, newer instance of _core may own the entry: leave it alone. */
    LOCK();
    if (ip->state != st) {
        UNLOCK();
        return;
    }
    ip->state = NULL;
    if (!ip->owned && ip->istate != PyInterpreterState_Main() && !ip->closing) {
        remove_entry_locked(ip);
    }
    UNLOCK();
}
