/* worker.h — the executor's worker: a thread that enters one interpreter and
 * runs tasks from a native queue there (Worker, submit_task).
 */
#ifndef MULTIGIL_WORKER_H
#define MULTIGIL_WORKER_H

#include "base.h"

/* Add Worker and submit_task to the module. */
int mg_worker_init(PyObject *module, mg_state *st);

#endif /* MULTIGIL_WORKER_H */
