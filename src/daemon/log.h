/* log.h: clspecd's log: one line per message, "2026-12-02T21:04:05.123Z LEVEL
 * [req-12] text", to standard error or a file opened for appending. Leveled
 * (error < warn < info < debug), thread-safe (one mutex), and the file can be
 * reopened (SIGHUP, after log rotation). The log is process-wide state owned
 * by this module: cs_log_open once at start-up, cs_log_close at exit. */
#ifndef CS_DAEMON_LOG_H
#define CS_DAEMON_LOG_H

#include <stddef.h>

#include "base/common.h"

enum cs_log_level { CS_LOG_ERROR = 0, CS_LOG_WARN = 1, CS_LOG_INFO = 2, CS_LOG_DEBUG = 3 };

/* "error", "warn", "info", "debug" -> level; CLSPEC_E_INVAL otherwise. */
int cs_log_level_parse(const char *name, enum cs_log_level *out);

/* path NULL or "": standard error. CLSPEC_E_IO when the file cannot be
 * opened (the log then stays on standard error). */
int cs_log_open(const char *path, enum cs_log_level level, char *err, size_t errlen);
/* Reopens the file (no-op on standard error). On failure the old file stays. */
int cs_log_reopen(char *err, size_t errlen);
void cs_log_close(void);
/* Whether a message at level would be written. */
int cs_log_enabled(enum cs_log_level level);

/* req: request id or NULL. Newlines in the text are written as "\n". */
void cs_log(enum cs_log_level level, const char *req, const char *fmt, ...) CS_PRINTF(3, 4);

#endif
