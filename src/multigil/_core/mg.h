/* mg.h — what the C files of multigil._core still share beyond base.h (being
 * split into the headers of their layers). */
#ifndef MULTIGIL_MG_H
#define MULTIGIL_MG_H

#include "base.h"
#include "wait.h"
#include "interp.h"
#include "blob.h"
#include "shm.h"
#include "xidata.h"
#include "queue.h"

/* ======================================================================
 * Module pieces: each file exposes its types/functions to module.c
 * ====================================================================== */
int mg_worker_init(PyObject *module, mg_state *st);   /* worker.c */

#endif
