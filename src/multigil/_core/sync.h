/* sync.h — the synchronisation types shared between interpreters: Lock and
 * RLock (lock.c), Event (event.c), Semaphore and BoundedSemaphore
 * (semaphore.c), Condition (condition.c).
 *
 * All but Condition are one raw layout, mg_sync_raw, told apart by its kind;
 * lock.c owns it.  Each blocking method is an attempt run by mg_wait (wait.h).
 */
#ifndef MULTIGIL_SYNC_H
#define MULTIGIL_SYNC_H

#include "base.h"

/* All fields after `mu` are guarded by `mu`. */
typedef struct {
    mg_shared head;
    pthread_mutex_t mu;
    pthread_cond_t cond;
    int nwaiters;               /* threads asleep on cond */
    /* Lock: 0/1.  RLock: recursion count.  Event: flag.  Semaphore: counter. */
    long long value;
    long long bound;            /* BoundedSemaphore: initial value; else -1 */
    unsigned long owner_thread; /* RLock owner, meaningful while value > 0 */
    /* Event: bumped by every set() that changes the flag, so that a waiter
     * woken by set() returns True even if clear() ran before it woke up. */
    unsigned long long generation;
} mg_sync_raw;

#define MG_SYNC_RAW(self) ((mg_sync_raw *)((mg_wrapper *)(self))->raw)

mg_sync_raw *mg_sync_raw_new(const mg_shared_kind *kind, long long value, long long bound);
void mg_sync_raw_destroy(mg_shared *s);         /* the kinds' destroy */
long long mg_sync_value(mg_sync_raw *r);        /* `value` now (a snapshot) */
/* tp_new of a type whose raw object takes no arguments (Lock, RLock, Event). */
PyObject *mg_sync_new_without_arguments(PyTypeObject *type, PyObject *args, PyObject *kwds,
                                        const mg_shared_kind *kind, const char *name);

/* Lock and RLock (told apart by kind); Condition waits on them. */
extern const mg_shared_kind mg_rlock_kind;
/* 1 acquired, 0 timed out, -1 with an exception set. */
int mg_lock_acquire(mg_sync_raw *r, int64_t deadline);
/* 0, or -1 with RuntimeError (not held; RLock: not by the caller). */
int mg_lock_release(mg_sync_raw *r);
/* Does the caller hold it?  For a plain Lock, which has no owner: held at all. */
int mg_lock_is_owned(mg_sync_raw *r);
/* The methods of a Lock or RLock wrapper, which a Condition forwards to. */
PyObject *mg_lock_py_acquire(PyObject *self, PyObject *const *args, Py_ssize_t nargs,
                             PyObject *kwnames);
PyObject *mg_lock_py_enter(PyObject *self, PyObject *ignored);
PyObject *mg_lock_py_release(PyObject *self, PyObject *ignored);
PyObject *mg_lock_py_exit(PyObject *self, PyObject *const *args, Py_ssize_t nargs);

/* Add the types to the module (and mg_state). */
int mg_lock_init(PyObject *module, mg_state *st);
int mg_event_init(PyObject *module, mg_state *st);
int mg_semaphore_init(PyObject *module, mg_state *st);
int mg_condition_init(PyObject *module, mg_state *st);

#endif /* MULTIGIL_SYNC_H */
