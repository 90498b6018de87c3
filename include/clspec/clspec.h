/* clspec.h: the public engine API of libclspec.
 * Every function that can fail returns an int status (CLSPEC_OK or a negative
 * enum clspec_status) and, where it takes one, fills a caller-owned message
 * buffer with a human-readable explanation ("file: what: where"). */
#ifndef CLSPEC_CLSPEC_H
#define CLSPEC_CLSPEC_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define CLSPEC_VERSION_MAJOR 0
#define CLSPEC_VERSION_MINOR 1
#define CLSPEC_VERSION_PATCH 0

/* Recommended size of the message buffers the API fills. */
#define CLSPEC_ERRLEN 512

enum clspec_status {
    CLSPEC_OK = 0,
    CLSPEC_E_IO = -1,          /* a file or socket could not be read or written */
    CLSPEC_E_FORMAT = -2,      /* malformed input: truncated/hostile GGUF, bad JSON, ... */
    CLSPEC_E_NOMEM = -3,       /* host allocation failed */
    CLSPEC_E_INVAL = -4,       /* bad argument or configuration value */
    CLSPEC_E_UNSUPPORTED = -5, /* valid, but not something clspec implements */
    CLSPEC_E_CL = -6,          /* an OpenCL call failed */
    CLSPEC_E_RANGE = -7,       /* an index, size or length out of range */
    CLSPEC_E_NOTFOUND = -8,    /* a key, tensor, device or file does not exist */
    CLSPEC_E_KV_FULL = -9,     /* the KV cache has no free cell for this sequence */
    CLSPEC_E_CONTEXT = -10,    /* the prompt does not fit the context */
    CLSPEC_E_PLUGIN = -11,     /* a speculator plugin failed to load or initialise */
    CLSPEC_E_BUSY = -12,       /* a queue or pool is full */
    CLSPEC_E_CANCELLED = -13,  /* the request was cancelled */
    CLSPEC_E_SHUTDOWN = -14,   /* the server is draining and takes no new work */
};

/* A static, never-NULL description of a status code. */
const char *clspec_strerror(int status);

/* The library version as "MAJOR.MINOR.PATCH". */
const char *clspec_version(void);

#ifdef __cplusplus
}
#endif
#endif
