/*
 * cage.h - the whole SDK for cagehost handler modules.
 *
 * A module is a shared object (NAME.so) that exports one descriptor,
 * `cage_module`, declared with CAGE_MODULE().  The descriptor names the
 * module's version and its methods.  cagehost loads the module in a worker
 * process (never in the host itself) and calls a method's handler once per
 * attempt.  The handler reads its input through the accessors below, may set
 * a reply or an error message, and returns an outcome:
 *
 *   CAGE_OK     done; the reply (if any) goes back to the caller.
 *   CAGE_RETRY  transient failure; a queued call is retried later, with the
 *               newest version of the module found on disk at that time.
 *   CAGE_FAIL   permanent failure (bad input); a queued call goes to the dead
 *               store with the error message, a sync call gets an error.
 *
 * A crash, an exit(), or running past the queue's attempt_timeout counts as
 * CAGE_RETRY for the call and never harms the host.
 *
 * The header is self-contained: a module links against nothing from the host.
 * Build with
 *     cc -shared -fPIC $(pkg-config --cflags cage) -o billing.so billing.c
 * and install with `mv` or `install` into the host's plugin_dir.
 *
 * Rules for handlers: no threads that outlive the call, no reliance on
 * global state between calls (a worker may be replaced at any time), and
 * handlers must tolerate running more than once for one call (a call is
 * delivered at least once).
 */
#ifndef CAGE_H
#define CAGE_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#ifdef __cplusplus
extern "C" {
#endif

/*
 * ABI version spoken by this header.  The host refuses a module whose
 * descriptor carries another number, naming both ("built for ABI 2, host
 * speaks ABI 1").  Bumped whenever struct cage_module or struct cage_ops
 * change incompatibly.
 */
#define CAGE_ABI_VERSION 1

/* What a handler returns. */
typedef enum cage_outcome {
	CAGE_OK = 0,
	CAGE_RETRY = 1,
	CAGE_FAIL = 2,
} cage_outcome;

/* Log levels for cage_log(). */
enum cage_log_level {
	CAGE_LOG_ERROR = 0,
	CAGE_LOG_WARNING = 1,
	CAGE_LOG_INFO = 2,
	CAGE_LOG_DEBUG = 3,
};

/*
 * One attempt of one call.  Opaque: use the accessors below.  Valid only
 * during the handler invocation it was passed to.
 */
typedef struct cage_call cage_call;

typedef cage_outcome (*cage_handler)(cage_call *call);

struct cage_method {
	const char *name;	/* [A-Za-z0-9_.-], 1..64 bytes */
	cage_handler handler;
};

/*
 * The module descriptor.  Declare it with CAGE_MODULE(); never fill
 * abi_version or struct_size by hand.
 */
struct cage_module {
	uint32_t abi_version;	/* CAGE_ABI_VERSION the module was built with */
	uint32_t struct_size;	/* sizeof(struct cage_module) at build time */
	const char *version;	/* the module's own version: [A-Za-z0-9_.-], 1..32 */
	const struct cage_method *methods; /* terminated by { NULL, NULL } */
};

/*
 * The descriptor every module exports.  Declared here (with C linkage) so
 * that a C++ module's definition is exported under this exact name.
 */
extern __attribute__((visibility("default"))) const struct cage_module cage_module;

/*
 * CAGE_MODULE(version, methods) defines the exported descriptor:
 *
 *     static const struct cage_method methods[] = {
 *         { "charge", charge },
 *         { NULL, NULL },
 *     };
 *     CAGE_MODULE("1.2", methods);
 */
#define CAGE_MODULE(version_, methods_)                                       \
	const struct cage_module cage_module = {                              \
		CAGE_ABI_VERSION, sizeof(struct cage_module), (version_),     \
		(methods_)                                                    \
	}

/* Name of the exported descriptor symbol, for hosts and tools. */
#define CAGE_MODULE_SYMBOL "cage_module"

/*
 * ABI details: a cage_call begins with a pointer to the host's function
 * table.  Plugins use the inline accessors below instead of these.
 */
struct cage_ops {
	uint32_t size;	/* sizeof(struct cage_ops) on the host side */
	const void *(*payload)(const cage_call *call, size_t *len);
	const char *(*str)(const cage_call *call, int which);
	uint32_t (*attempt)(const cage_call *call);
	int (*reply)(cage_call *call, const void *data, size_t len);
	void (*errorv)(cage_call *call, const char *fmt, va_list ap);
	void (*logv)(cage_call *call, int level, const char *fmt, va_list ap);
	int (*enqueue)(cage_call *call, const char *cage, const char *queue,
		       const char *module, const char *method, const void *payload,
		       size_t len);
};

struct cage_call_head {
	const struct cage_ops *ops;
};

enum cage_call_str {
	CAGE__ID = 0,
	CAGE__QUEUE = 1,
	CAGE__MODULE = 2,
	CAGE__METHOD = 3,
	CAGE__VERSION = 4,
};

static inline const struct cage_ops *cage__ops(const cage_call *call)
{
	return ((const struct cage_call_head *)(const void *)call)->ops;
}

/*
 * The call's payload: the raw request body, not NUL-terminated (though the
 * host puts a NUL after the last byte, so text payloads may be used as C
 * strings).  *len receives its length when len is not NULL.  Owned by the
 * host; valid until the handler returns.
 */
static inline const void *cage_payload(const cage_call *call, size_t *len)
{
	return cage__ops(call)->payload(call, len);
}

/* The call id ("" for a synchronous call).  Host-owned, valid until return. */
static inline const char *cage_call_id(const cage_call *call)
{
	return cage__ops(call)->str(call, CAGE__ID);
}

/* The queue the call came from ("" for a synchronous call). */
static inline const char *cage_queue(const cage_call *call)
{
	return cage__ops(call)->str(call, CAGE__QUEUE);
}

/* The module and method names as the caller addressed them. */
static inline const char *cage_module_name(const cage_call *call)
{
	return cage__ops(call)->str(call, CAGE__MODULE);
}

static inline const char *cage_method(const cage_call *call)
{
	return cage__ops(call)->str(call, CAGE__METHOD);
}

/*
 * The module version being run: the descriptor's version, "+", and the first
 * 8 hex digits of the .so file's content hash ("1.2+9f3c01ab"), so two
 * builds that claim the same version are still told apart.
 */
static inline const char *cage_module_version(const cage_call *call)
{
	return cage__ops(call)->str(call, CAGE__VERSION);
}

/* 1 for the first attempt, 2 for the first retry, and so on. */
static inline uint32_t cage_attempt(const cage_call *call)
{
	return cage__ops(call)->attempt(call);
}

/*
 * Sets the reply, copying len bytes from data (a later call replaces it).
 * Returns 0, or -1 when the reply is larger than the host accepts (the
 * reply is then left unset).
 */
static inline int cage_reply(cage_call *call, const void *data, size_t len)
{
	return cage__ops(call)->reply(call, data, len);
}

/* cage_reply() of a NUL-terminated string, without the NUL. */
static inline int cage_reply_str(cage_call *call, const char *text)
{
	return cage__ops(call)->reply(call, text, strlen(text));
}

/*
 * Sets the error message recorded for a CAGE_RETRY or CAGE_FAIL outcome and
 * shown to the caller (printf format; truncated to 1 KiB; a later call
 * replaces it).
 */
__attribute__((format(printf, 2, 3)))
static inline void cage_error(cage_call *call, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	cage__ops(call)->errorv(call, fmt, ap);
	va_end(ap);
}

/*
 * Writes one line to the host's log, prefixed with the module, its version
 * and the call id.  level is a CAGE_LOG_* value.
 */
__attribute__((format(printf, 3, 4)))
static inline void cage_log(cage_call *call, int level, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	cage__ops(call)->logv(call, level, fmt, ap);
	va_end(ap);
}

/*
 * Enqueues a call on another cage: `cage` names a [cage NAME] section of
 * the host's config, and queue, module and method are that cage's.  The
 * payload is copied.  Nothing is sent while the handler runs: the calls a
 * handler enqueued are stored together with its outcome, in one
 * transaction, and only if it returns CAGE_OK (on RETRY or FAIL they are
 * dropped, and the next attempt enqueues them afresh).  The host then
 * delivers each one with retries, on the queue's retry policy; the other
 * cage stores it exactly once however often a delivery is repeated.
 * Returns 0, or -1 for an invalid name, more than 64 calls, or payloads
 * over 32 MiB in all (or a host too old to know cage_enqueue).  A cage
 * the host's config does not name is not refused here: such calls wait,
 * retried, until a restart with that [cage] section delivers them (the
 * host logs this once per cage), and expire with their queue's lifetime.
 */
static inline int cage_enqueue(cage_call *call, const char *cage, const char *queue,
			       const char *module, const char *method,
			       const void *payload, size_t len)
{
	const struct cage_ops *ops = cage__ops(call);

	if (ops->size < offsetof(struct cage_ops, enqueue) + sizeof ops->enqueue)
		return -1;
	return ops->enqueue(call, cage, queue, module, method, payload, len);
}

#ifdef __cplusplus
}
#endif

#endif /* CAGE_H */
