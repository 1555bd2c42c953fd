/* module.h — the top of the C core: the module multigil._core itself. */
#ifndef MULTIGIL_MODULE_H
#define MULTIGIL_MODULE_H

#include "base.h"

PyMODINIT_FUNC PyInit__core(void);

#endif /* MULTIGIL_MODULE_H */
