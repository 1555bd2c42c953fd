/* interp.c — the interpreter registry, the thread-state cache, entering an
 * interpreter from any thread, and releases deferred to an interpreter.
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
#include "wait.h"


/*************************************************************************
 * Registry                                                              *
 *************************************************************************/

/* The registry.  Owner: this file (and the layer's other files, through the
 * functions of interp.h's last section).  Lock: registry_lock guards every
 * field of every mg_interp and mg_tnode, and the lists, except the atomics and
 * the thread-local list heads, which only their thread reads or writes. */
static pthread_mutex_t registry_lock = PTHREAD_MUTEX_INITIALIZER;
static mg_interp *registry_head = NULL;
/* Signalled (under registry_lock) when an interpreter whose close waits
 * (close_waits) is left by a thread. */
static pthread_cond_t busy_cond;        /* initialised with tls_key (tls_init) */

/* How deep the calling thread is in nested entries (mg_enter that switched).
 * Thread-local: only its thread reads or writes it. */
static _Thread_local int nested_entries = 0;

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
    mg_cond_init(&busy_cond);
}

void
mg_registry_init(void)
{
    pthread_once(&tls_once, tls_init);
}

void
mg_registry_lock(void)
{
    LOCK();
}

void
mg_registry_unlock(void)
{
    UNLOCK();
}

mg_interp *
mg_registry_find_locked(int64_t id)
{
    for (mg_interp *ip = registry_head; ip; ip = ip->next) {
        if (ip->id == id) {
            return ip;
        }
    }
    return NULL;
}

mg_interp *
mg_registry_add_locked(PyInterpreterState *istate, const char *whence, int owned)
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
    atomic_init(&ip->close_waits, 0);
    atomic_init(&ip->has_deferred, 0);
    ip->next = registry_head;
    registry_head = ip;
    return ip;
}

void
mg_registry_remove_locked(mg_interp *ip)
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
    mg_interp *ip = mg_registry_find_locked(id);
    if (ip == NULL) {
        const char *whence =
            istate == PyInterpreterState_Main() ? "runtime init" : "unknown";
        ip = mg_registry_add_locked(istate, whence, 0);
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
    mg_interp *ip = mg_registry_find_locked(owner_id);
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
    mg_interp *ip = mg_registry_find_locked(owner_id);
    if (ip) {
        ip->exports += delta;
    }
    UNLOCK();
}

long
mg_interp_exports(int64_t id)
{
    LOCK();
    mg_interp *ip = mg_registry_find_locked(id);
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

void
mg_tnode_add_locked(mg_interp *ip, mg_tnode *n, PyThreadState *ts)
{
    n->interp = ip;
    n->tstate = ts;
    n->ident = PyThread_get_thread_ident();
    atomic_init(&n->inside, 0);
    n->next_in_thread = pthread_getspecific(tls_key);
    pthread_setspecific(tls_key, n);
    n->next_in_interp = ip->nodes;
    ip->nodes = n;
}

mg_tnode *
mg_tnode_for(mg_interp *ip)
{
    LOCK();
    mg_tnode *n = tls_find_locked(ip);
    UNLOCK();
    if (n) {
        return n;
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
    mg_tnode_add_locked(ip, n, ts);
    UNLOCK();
    return n;
}

/* Look `id` up and mark it busy.  Locked inside.  NULL with an exception. */
static mg_interp *
acquire(mg_state *st, int64_t id)
{
    LOCK();
    mg_interp *ip = mg_registry_find_locked(id);
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

void
mg_interp_release(mg_interp *ip)
{
    if (atomic_fetch_sub(&ip->busy, 1) == 1 && atomic_load(&ip->close_waits)) {
        LOCK();
        pthread_cond_broadcast(&busy_cond);
        UNLOCK();
    }
}

/* Wait until nobody is inside `ip` (its close is in progress, so nobody new
 * enters) or `deadline`.  Called with the caller's GIL held. */
int
mg_interp_wait_idle(mg_interp *ip, int64_t deadline)
{
    int empty;
    Py_BEGIN_ALLOW_THREADS
    LOCK();
    atomic_store(&ip->close_waits, 1);
    while (atomic_load(&ip->busy) > 0) {
        if (mg_cond_wait_until(&busy_cond, &registry_lock, deadline) && deadline <= mg_now_ns()) {
            break;
        }
    }
    atomic_store(&ip->close_waits, 0);
    empty = atomic_load(&ip->busy) == 0;
    UNLOCK();
    Py_END_ALLOW_THREADS
    return empty;
}

/* 3.12 and 3.13 count recursion per thread state, Python frames and C calls
 * apart, and each interpreter's state of one OS thread comes with full
 * budgets: calls that recurse through many interpreters would overflow the
 * one C stack they share.  So an entered state gets no more of either budget
 * than its caller has left (and its own back when the session ends).  3.14
 * and later check the stack's address for C calls, which every state of the
 * thread shares already. */
#if PY_VERSION_HEX < 0x030E0000
#  define MG_SHARE_BUDGETS 1
/* What an entry leaves to its caller: enough to describe the RecursionError
 * it raises (multigil._remote.capture) and send it back. */
#  define MG_C_BUDGET_RESERVE 200
#  define MG_PY_BUDGET_RESERVE 50
#endif

static int
nesting_error(mg_interp *ip, int budget)
{
    if (budget) {
        PyErr_Format(PyExc_RecursionError,
                     "maximum recursion depth exceeded while calling into interpreter %lld "
                     "(%d nested interpreter calls deep): calls made through interpreters "
                     "share one C stack, and its recursion limit", (long long)ip->id,
                     nested_entries);
    }
    else {
        PyErr_Format(PyExc_RecursionError,
                     "maximum depth of nested interpreter calls exceeded: this thread is %d "
                     "calls deep (an interpreter calling into another one, and so on) and "
                     "cannot enter interpreter %lld; the calls share one C stack",
                     nested_entries, (long long)ip->id);
    }
    return -1;
}

int
mg_enter(mg_state *st, int64_t id, mg_session *s)
{
    mg_registry_init();
    mg_interp *ip = acquire(st, id);
    if (ip == NULL) {
        return -1;
    }
    s->interp = ip;
    s->saved = NULL;
    s->node = NULL;
    s->c_budget = s->py_budget = 0;
    s->sigint_prev = MG_NOT_MAIN;
    if (ip->istate == PyInterpreterState_Get()) {
        return 0;   /* already there */
    }
    /* Entries into the main interpreter are not counted: multigil's own
     * (the import guard's) must work at the limit too, to report it. */
    int counted = ip->istate != PyInterpreterState_Main();
    if (counted && nested_entries >= MG_MAX_NESTED_ENTRIES) {
        mg_interp_release(ip);
        return nesting_error(ip, 0);
    }
    mg_tnode *n = mg_tnode_for(ip);
    if (n == NULL) {
        mg_interp_release(ip);
        PyErr_NoMemory();
        return -1;
    }
#ifdef MG_SHARE_BUDGETS
    PyThreadState *caller = PyThreadState_Get(), *ts = n->tstate;
    if (caller->c_recursion_remaining <= MG_C_BUDGET_RESERVE
        || caller->py_recursion_remaining <= MG_PY_BUDGET_RESERVE) {
        mg_interp_release(ip);
        return nesting_error(ip, 1);
    }
    s->c_budget = ts->c_recursion_remaining;
    s->py_budget = ts->py_recursion_remaining;
    if (ts->c_recursion_remaining >= caller->c_recursion_remaining) {
        ts->c_recursion_remaining = caller->c_recursion_remaining - 1;
    }
    if (ts->py_recursion_remaining >= caller->py_recursion_remaining) {
        ts->py_recursion_remaining = caller->py_recursion_remaining - 1;
    }
#endif
    atomic_fetch_add(&n->inside, 1);
    s->node = n;
    nested_entries += counted;
    int main_thread = n->ident == mg_main_thread();
    if (main_thread && ip->istate != PyInterpreterState_Main()) {
        mg_sigint_hook();
    }
    s->saved = PyThreadState_Swap(n->tstate);
    if (main_thread) {
        /* Holding the entered interpreter's GIL, as mg_sigint_enter wants. */
        s->sigint_prev = mg_sigint_enter(ip->istate == PyInterpreterState_Main() ? -1 : ip->id);
    }
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
        if (s->sigint_prev != MG_NOT_MAIN) {
            mg_sigint_enter(s->sigint_prev);
        }
        PyThreadState_Swap(s->saved);
        s->saved = NULL;
        nested_entries -= s->interp->istate != PyInterpreterState_Main();
#ifdef MG_SHARE_BUDGETS
        s->node->tstate->c_recursion_remaining = s->c_budget;
        s->node->tstate->py_recursion_remaining = s->py_budget;
#endif
        atomic_fetch_sub(&s->node->inside, 1);
        mg_interp_run_deferred();
    }
    mg_interp_release(s->interp);
}

mg_state *
mg_session_state(const mg_session *s)
{
    /* Attached to the target: its state may be read now. */
    return s->interp->state;
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
    mg_interp *ip = mg_registry_find_locked(id);
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
        mg_registry_remove_locked(ip);
    }
    UNLOCK();
}
