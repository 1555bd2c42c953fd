/* interp.h — entering, creating and closing interpreters (interp.c), for
 * module.c and worker.c. */
#ifndef MULTIGIL_INTERP_H
#define MULTIGIL_INTERP_H
#include "mg.h"

/* One visit of the calling thread to an interpreter. */
typedef struct {
    mg_interp *interp;
    PyThreadState *saved;   /* the caller's thread state; NULL if no switch */
} mg_session;

/* Attach the calling thread to interpreter `id` (its cached thread state) and
 * mark the interpreter busy.  Returns -1 with an exception set in the caller's
 * interpreter.  Every successful mg_enter is paired with mg_leave. */
int mg_enter(mg_state *st, int64_t id, mg_session *s);
void mg_leave(mg_session *s);
/* The _core state inside the entered interpreter, or NULL with ImportError
 * set there. */
mg_state *mg_session_state(mg_state *caller, mg_session *s);

/* Create an isolated, own-GIL interpreter and run `bootstrap` (Python source)
 * in it.  Returns its id, or -1: then either an exception is set, or *error
 * holds the bootstrap's error text (PyMem_RawFree it). */
int64_t mg_interp_create(mg_state *st, const char *bootstrap, char **error);
int mg_interp_close(mg_state *st, int64_t id);

/* The _core state inside `ip`: use only while attached to `ip`. */
mg_state *mg_interp_state(const mg_interp *ip);
void mg_interp_set_state(mg_interp *ip, mg_state *st);
void mg_interp_forget_current(mg_interp *ip, mg_state *st);
PyObject *mg_interp_list(void);          /* [(id, whence)], oldest first */
PyObject *mg_interp_owned_ids(void);
long mg_interp_busy(int64_t id, const char **whence);

#endif
