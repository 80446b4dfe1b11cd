#ifndef CARGON2_SHIM_H
#define CARGON2_SHIM_H
// Debian's libargon2 (libargon2-dev), the reference implementation of RFC 9106.
#include <argon2.h>
#endif
