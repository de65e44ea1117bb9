/*
 * record.h - the on-disk form of calls and attempts.
 *
 * Records are single-line text so that `db5.3_dump -p` shows them as a
 * person would write them.  A call record:
 *
 *   cagecall/1 next=2026-11-27T21:03:00.000Z id=0194f3a2b1c00001
 *     queue=default module=billing method=charge attempts=2
 *     enqueued=2026-11-27T21:00:00.000Z version=1.0+9f3c01ab
 *     error="currency converter not configured" payload={"amount":5}
 *
 * (one line on disk).  A call a handler enqueued on another cage has
 * `cage=NAME` before its queue: its queue, module and method are the other
 * cage's, and an attempt is a delivery there.  The first field says the state and its time: `next=`
 * (pending: when the next attempt is planned), `done=` or `dead=`.  A done
 * record, kept only for status and de-duplication, leaves out the id (its
 * key), the enqueue time (the id's first 12 hex digits) and the payload.  Quoted
 * values escape '"' and '\' with a backslash; control characters in them are
 * stored as spaces.  `payload=` is always last and runs, as raw bytes, to
 * the end of the record.  Unknown fields are ignored when reading, so
 * fields can be added without a format bump; changing or removing one
 * means bumping the "/1" and keeping a reader for the old form.
 *
 * An attempt record (one per attempt, key "ID/NNNN"):
 *
 *   cageattempt/1 at=2026-11-27T21:01:00.012Z version=1.0+9f3c01ab
 *     outcome=retry error="..."
 */
#ifndef CAGEHOST_RECORD_H
#define CAGEHOST_RECORD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "names.h"

#define CALL_ID_LEN 16
#define RECORD_ERROR_MAX 1024
#define RECORD_IDEM_MAX 200
#define RECORD_VERSION_MAX 64

/* "cagecall/1 next=" precedes the due time in a pending record. */
#define RECORD_NEXT_PREFIX "cagecall/1 next="
#define RECORD_NEXT_PREFIX_LEN 16

enum call_state { CALL_PENDING, CALL_DONE, CALL_DEAD };

enum attempt_outcome { OUTCOME_OK, OUTCOME_RETRY, OUTCOME_FAIL };

struct call_record {
	enum call_state state;
	int64_t when_ms;		/* next attempt, or when done/dead */
	char id[CALL_ID_LEN + 1];
	char cage[NAME_MAX_LEN + 1];	/* "" = runs here; else delivered there */
	char queue[NAME_MAX_LEN + 1];
	char module[NAME_MAX_LEN + 1];
	char method[NAME_MAX_LEN + 1];
	uint32_t attempts;		/* attempts made so far */
	int64_t enqueued_ms;
	char idem_key[RECORD_IDEM_MAX + 1];	/* "" when none */
	char version[RECORD_VERSION_MAX + 1];	/* of the last attempt, "" before */
	char error[RECORD_ERROR_MAX + 1];	/* last error or dead reason */
	const void *payload;		/* borrowed; see record_decode */
	size_t payload_len;
	/*
	 * Not stored: the call came from another cage (a delivery, see
	 * relay.h), so its idem_key is kept in delivered.db until that cage
	 * says it will not send the call again, not with the finished call.
	 */
	bool delivery;
};

struct attempt_record {
	int64_t at_ms;
	char version[RECORD_VERSION_MAX + 1];
	enum attempt_outcome outcome;
	char error[RECORD_ERROR_MAX + 1];
};

/*
 * Encodes r (payload included when include_payload).  Returns a malloc'd
 * buffer of *len bytes (no NUL terminator stored), or NULL when out of
 * memory.  The caller frees it.
 */
char *record_encode_call(const struct call_record *r, int include_payload, size_t *len);

/*
 * Decodes len bytes at data into *r.  r->payload points into data, so data
 * must outlive the use of the payload.  Returns 0, or -1 with a reason in
 * err when the bytes are not a call record of a known format.
 */
int record_decode_call(const void *data, size_t len, struct call_record *r,
		       char *err, size_t err_size);

char *record_encode_attempt(const struct attempt_record *a, size_t *len);
int record_decode_attempt(const void *data, size_t len, struct attempt_record *a);

/* "ok", "retry", "fail". */
const char *record_outcome_name(enum attempt_outcome outcome);

/* "pending", "done", "dead". */
const char *record_state_name(enum call_state state);

/*
 * The cage named by the pending record of len bytes at data (the index of
 * calls by cage reads it there): *name points into data, *name_len bytes.
 * Returns 0, or 1 when the record names none (the call runs here).
 */
int record_cage_of(const void *data, size_t len, const char **name, size_t *name_len);

/* The enqueue time (ms) a call id starts with. */
int64_t record_id_time(const char *id);

/*
 * The time of a call record's first field (next=, done= or dead=), from
 * its first RECORD_WHEN_BYTES bytes or more: a sweep reads no further.
 * Returns 0, or -1 when they do not hold one.
 */
#define RECORD_WHEN_BYTES 48
int record_when(const void *data, size_t len, int64_t *when_ms);

/* Copies text into out (size bytes) with control characters made spaces. */
void record_clean_text(char *out, size_t size, const char *text);

#endif
