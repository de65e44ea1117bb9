/*
 * record.c - encoding and decoding of call and attempt records (format in
 * record.h).
 */
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "record.h"

struct out {
	char *data;
	size_t len, cap;
	bool failed;
};

static void out_grow(struct out *o, size_t more)
{
	size_t cap = o->cap ? o->cap : 256;
	char *data;

	if (o->failed || o->len + more <= o->cap)
		return;
	while (cap < o->len + more)
		cap *= 2;
	data = realloc(o->data, cap);
	if (!data) {
		o->failed = true;
		return;
	}
	o->data = data;
	o->cap = cap;
}

static void out_bytes(struct out *o, const void *bytes, size_t n)
{
	out_grow(o, n);
	if (o->failed || n == 0)
		return;
	memcpy(o->data + o->len, bytes, n);
	o->len += n;
}

static void out_str(struct out *o, const char *s)
{
	out_bytes(o, s, strlen(s));
}

static void out_uint(struct out *o, uint32_t n)
{
	char digits[10];
	int i = sizeof digits;

	do {
		digits[--i] = (char)('0' + n % 10);
		n /= 10;
	} while (n);
	out_bytes(o, digits + i, sizeof digits - (size_t)i);
}

static void out_time(struct out *o, const char *key, int64_t ms)
{
	char iso[CLOCK_ISO_LEN + 1];

	out_str(o, key);
	out_str(o, clock_format_iso(ms, iso, sizeof iso));
}

/* key="value" with '"' and '\' escaped; control characters become spaces. */
static void out_quoted(struct out *o, const char *key, const char *value)
{
	out_str(o, key);
	out_bytes(o, "\"", 1);
	for (const char *p = value; *p; p++) {
		char c = *p;

		if (c == '"' || c == '\\')
			out_bytes(o, "\\", 1);
		if ((unsigned char)c < 0x20 || c == 0x7f)
			c = ' ';
		out_bytes(o, &c, 1);
	}
	out_bytes(o, "\"", 1);
}

static char *out_finish(struct out *o, size_t *len)
{
	if (o->failed) {
		free(o->data);
		return NULL;
	}
	*len = o->len;
	return o->data;
}

char *record_encode_call(const struct call_record *r, int include_payload, size_t *len)
{
	static const char *const when_keys[] = { " next=", " done=", " dead=" };
	struct out o = { 0 };

	/* room for the fields and the payload: one allocation */
	out_grow(&o, 320 + (include_payload ? r->payload_len : 0));
	out_str(&o, "cagecall/1");
	out_time(&o, when_keys[r->state], r->when_ms);
	if (r->state != CALL_DONE) {
		/* a done record is kept small: its key is the id, which also
		 * holds the enqueue time (see record_id_time) */
		out_str(&o, " id=");
		out_str(&o, r->id);
	}
	if (r->cage[0]) {
		out_str(&o, " cage=");
		out_str(&o, r->cage);
	}
	out_str(&o, " queue=");
	out_str(&o, r->queue);
	out_str(&o, " module=");
	out_str(&o, r->module);
	out_str(&o, " method=");
	out_str(&o, r->method);
	out_str(&o, " attempts=");
	out_uint(&o, r->attempts);
	if (r->state != CALL_DONE)
		out_time(&o, " enqueued=", r->enqueued_ms);
	if (r->idem_key[0])
		out_quoted(&o, " idem=", r->idem_key);
	if (r->version[0]) {
		out_str(&o, " version=");
		out_str(&o, r->version);
	}
	if (r->error[0])
		out_quoted(&o, " error=", r->error);
	if (include_payload) {
		out_str(&o, " payload=");
		out_bytes(&o, r->payload, r->payload_len);
	}
	return out_finish(&o, len);
}

struct in {
	const char *p, *end;
};

/*
 * Reads the next "key=" into key (NUL-terminated).  Returns 0, 1 at the
 * end of the record, or -1 when malformed.
 */
static int in_key(struct in *in, char *key, size_t size)
{
	size_t n = 0;

	while (in->p < in->end && *in->p == ' ')
		in->p++;
	if (in->p == in->end)
		return 1;
	key[0] = '\0';
	while (in->p < in->end && *in->p != '=' && *in->p != ' ') {
		if (n + 1 >= size)
			break;
		key[n++] = *in->p++;
	}
	key[n] = '\0';	/* also on failure: the caller's message shows it */
	if (in->p == in->end || *in->p != '=')
		return -1;
	in->p++;
	key[n] = '\0';
	return 0;
}

/* Copies value into dst, cut to what dst holds (a record's fields fit
 * their buffers unless the record was written by something else). */
static void copy_text(char *dst, size_t size, const char *value)
{
	size_t n = strnlen(value, size - 1);

	memcpy(dst, value, n);
	dst[n] = '\0';
}

/* Reads a bare or quoted value into out (truncating at size - 1). */
static int in_value(struct in *in, char *out, size_t size)
{
	size_t n = 0;

	if (in->p < in->end && *in->p == '"') {
		in->p++;
		while (in->p < in->end && *in->p != '"') {
			if (*in->p == '\\' && in->p + 1 < in->end)
				in->p++;
			if (n + 1 < size)
				out[n++] = *in->p;
			in->p++;
		}
		if (in->p == in->end)
			return -1;
		in->p++;
	} else {
		while (in->p < in->end && *in->p != ' ') {
			if (n + 1 < size)
				out[n++] = *in->p;
			in->p++;
		}
	}
	out[n] = '\0';
	return 0;
}

static int parse_time(const char *text, int64_t *ms)
{
	return clock_parse_iso(text, strlen(text), ms);
}

int record_when(const void *data, size_t len, int64_t *when_ms)
{
	static const char *const prefixes[] = { "cagecall/1 next=", "cagecall/1 done=",
						"cagecall/1 dead=" };
	const char *p = data, *end;

	for (size_t i = 0; i < 3; i++) {
		size_t n = strlen(prefixes[i]);

		if (len <= n || memcmp(p, prefixes[i], n) != 0)
			continue;
		end = memchr(p + n, ' ', len - n);
		return clock_parse_iso(p + n, (size_t)((end ? end : p + len) - (p + n)), when_ms);
	}
	return -1;
}

int record_decode_call(const void *data, size_t len, struct call_record *r,
		       char *err, size_t err_size)
{
	static const char *const when_keys[] = { "next", "done", "dead" };
	struct in in = { data, (const char *)data + len };
	char key[32], value[RECORD_ERROR_MAX + 1];
	bool have_when = false, have_id = false;

	memset(r, 0, sizeof *r);
	if (len < 11 || memcmp(data, "cagecall/1 ", 11) != 0) {
		snprintf(err, err_size, "not a cagecall/1 record");
		return -1;
	}
	in.p += 11;
	for (;;) {
		int rc = in_key(&in, key, sizeof key);

		if (rc == 1)
			break;
		if (rc < 0)
			goto malformed;
		if (!strcmp(key, "payload")) {
			r->payload = in.p;
			r->payload_len = (size_t)(in.end - in.p);
			break;
		}
		if (in_value(&in, value, sizeof value) < 0)
			goto malformed;
		for (int s = 0; s < 3; s++) {
			if (!strcmp(key, when_keys[s])) {
				r->state = (enum call_state)s;
				if (parse_time(value, &r->when_ms) < 0)
					goto malformed;
				have_when = true;
			}
		}
		if (!strcmp(key, "id")) {
			copy_text(r->id, sizeof r->id, value);
			have_id = true;
		} else if (!strcmp(key, "cage")) {
			copy_text(r->cage, sizeof r->cage, value);
		} else if (!strcmp(key, "queue")) {
			copy_text(r->queue, sizeof r->queue, value);
		} else if (!strcmp(key, "module")) {
			copy_text(r->module, sizeof r->module, value);
		} else if (!strcmp(key, "method")) {
			copy_text(r->method, sizeof r->method, value);
		} else if (!strcmp(key, "attempts")) {
			r->attempts = (uint32_t)strtoul(value, NULL, 10);
		} else if (!strcmp(key, "enqueued")) {
			if (parse_time(value, &r->enqueued_ms) < 0)
				goto malformed;
		} else if (!strcmp(key, "idem")) {
			copy_text(r->idem_key, sizeof r->idem_key, value);
		} else if (!strcmp(key, "version")) {
			copy_text(r->version, sizeof r->version, value);
		} else if (!strcmp(key, "error")) {
			copy_text(r->error, sizeof r->error, value);
		}
	}
	if (!have_when || (!have_id && r->state != CALL_DONE) || !r->queue[0] || !r->module[0] ||
	    !r->method[0]) {
		snprintf(err, err_size, "record lacks a required field");
		return -1;
	}
	if (!r->payload)
		r->payload = "";
	return 0;
malformed:
	snprintf(err, err_size, "malformed field '%s' at byte %zu", key,
		 (size_t)(in.p - (const char *)data));
	return -1;
}

static const char *const outcome_names[] = { "ok", "retry", "fail" };

const char *record_outcome_name(enum attempt_outcome outcome)
{
	return outcome_names[outcome];
}

const char *record_state_name(enum call_state state)
{
	static const char *const names[] = { "pending", "done", "dead" };

	return names[state];
}

char *record_encode_attempt(const struct attempt_record *a, size_t *len)
{
	struct out o = { 0 };

	out_str(&o, "cageattempt/1");
	out_time(&o, " at=", a->at_ms);
	out_str(&o, " version=");
	out_str(&o, a->version[0] ? a->version : "-");
	out_str(&o, " outcome=");
	out_str(&o, outcome_names[a->outcome]);
	if (a->error[0])
		out_quoted(&o, " error=", a->error);
	return out_finish(&o, len);
}

int record_decode_attempt(const void *data, size_t len, struct attempt_record *a)
{
	struct in in = { data, (const char *)data + len };
	char key[32], value[RECORD_ERROR_MAX + 1];

	memset(a, 0, sizeof *a);
	if (len < 14 || memcmp(data, "cageattempt/1 ", 14) != 0)
		return -1;
	in.p += 14;
	for (;;) {
		int rc = in_key(&in, key, sizeof key);

		if (rc == 1)
			return 0;
		if (rc < 0 || in_value(&in, value, sizeof value) < 0)
			return -1;
		if (!strcmp(key, "at")) {
			if (parse_time(value, &a->at_ms) < 0)
				return -1;
		} else if (!strcmp(key, "version")) {
			snprintf(a->version, sizeof a->version, "%.*s", RECORD_VERSION_MAX, value);
		} else if (!strcmp(key, "outcome")) {
			for (int i = 0; i < 3; i++)
				if (!strcmp(value, outcome_names[i]))
					a->outcome = (enum attempt_outcome)i;
		} else if (!strcmp(key, "error")) {
			snprintf(a->error, sizeof a->error, "%s", value);
		}
	}
}

int record_cage_of(const void *data, size_t len, const char **name, size_t *name_len)
{
	/* "cagecall/1 next=TIME id=ID cage=NAME ...": the writer's order */
	static const char cage_key[] = " cage=";
	const size_t at = RECORD_NEXT_PREFIX_LEN + CLOCK_ISO_LEN + strlen(" id=") + CALL_ID_LEN;
	const char *p = data, *start, *end = p + len;

	if (len < at + strlen(cage_key) || memcmp(p, RECORD_NEXT_PREFIX, RECORD_NEXT_PREFIX_LEN) ||
	    memcmp(p + at, cage_key, strlen(cage_key)))
		return 1;
	start = p + at + strlen(cage_key);
	for (p = start; p < end && *p != ' '; p++)
		;
	if (p == start)
		return 1;
	*name = start;
	*name_len = (size_t)(p - start);
	return 0;
}

int64_t record_id_time(const char *id)
{
	char ms[13];

	memcpy(ms, id, 12);
	ms[12] = '\0';
	return (int64_t)strtoll(ms, NULL, 16);
}

void record_clean_text(char *out, size_t size, const char *text)
{
	size_t n = 0;

	for (; *text && n + 1 < size; text++)
		out[n++] = ((unsigned char)*text < 0x20 || *text == 0x7f) ? ' ' : *text;
	out[n] = '\0';
}
