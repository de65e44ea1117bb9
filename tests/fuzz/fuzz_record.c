/*
 * fuzz_record.c - libFuzzer target for the on-disk records (host/record.c):
 * the bytes a store read from disk, which may be damaged or written by
 * another version.  Each input is decoded both as a call record and as an
 * attempt record.  What must hold:
 *   - no crash, no read past the input, no undefined behaviour, no leak;
 *   - a refused call record comes with a reason;
 *   - a record that decodes is written back (record_encode_*) into bytes
 *     that decode again to the same fields, and writing those fields gives
 *     the same bytes (a fixed point), so a call survives any number of
 *     read-modify-write cycles unchanged.  "The same fields" allows what
 *     record.h documents: control characters in quoted values become
 *     spaces, a done record drops its id and enqueue time, and an attempt
 *     without a version is written with version "-".
 *
 * Known asymmetries of the decoder (it accepts values the encoder cannot
 * write back) are reported in tests/fuzz/README, "Findings".  They are
 * tolerated here so the fuzzer can go on looking for worse; set
 * CAGE_FUZZ_STRICT=1 to make them fatal (e.g. to replay a reproducer):
 *   - a time outside 1970-01-01 .. 9999-12-31 (the encoder clamps or cuts
 *     it, so the record no longer decodes the same, or at all);
 *   - a bare field (id, queue, module, method, version) read from a quoted
 *     value that holds a space or starts with '"'; the encoder writes these
 *     fields unquoted.  The host only writes names checked by
 *     name_is_valid() and version labels checked on load, so only damaged
 *     or hand-made records have them.
 */
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "record.h"

/* 10000-01-01T00:00:00.000Z: the first time that needs a 5-digit year. */
#define YEAR_10000_MS INT64_C(253402300800000)

static bool strict;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	const char *s = getenv("CAGE_FUZZ_STRICT");

	(void)argc;
	(void)argv;
	strict = s && s[0] == '1';
	return 0;
}

__attribute__((format(printf, 1, 2), noreturn))
static void fail(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "fuzz_record: ");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, "\n");
	abort();
}

static bool time_writable(int64_t ms)
{
	return ms >= 0 && ms < YEAR_10000_MS;
}

/* True when the encoder's unquoted form of s reads back as s. */
static bool bare_writable(const char *s)
{
	return s[0] != '"' && !strchr(s, ' ');
}

/* What out_quoted() followed by in_value() makes of s. */
static void cleaned(char *out, size_t size, const char *s)
{
	record_clean_text(out, size, s);
}

static void expect_str(const char *what, const char *got, const char *want)
{
	if (strcmp(got, want) != 0)
		fail("%s changed in the round trip: \"%s\" became \"%s\"", what, want, got);
}

static void expect_num(const char *what, long long got, long long want)
{
	if (got != want)
		fail("%s changed in the round trip: %lld became %lld", what, want, got);
}

static void call_round_trip(const struct call_record *r1)
{
	char err[256], clean[RECORD_ERROR_MAX + 1];
	struct call_record r2;
	size_t len1, len2;
	char *b1, *b2;

	if (!strict) {
		if (!time_writable(r1->when_ms) ||
		    (r1->state != CALL_DONE && !time_writable(r1->enqueued_ms)))
			return;
		if (!bare_writable(r1->cage) || !bare_writable(r1->queue) || !bare_writable(r1->module) ||
		    !bare_writable(r1->method) || !bare_writable(r1->version) ||
		    (r1->state != CALL_DONE && !bare_writable(r1->id)))
			return;
	}
	b1 = record_encode_call(r1, 1, &len1);
	if (!b1)
		fail("record_encode_call failed");
	if (record_decode_call(b1, len1, &r2, err, sizeof err) < 0)
		fail("a written record does not decode: %s: \"%.*s\"", err, (int)len1, b1);
	expect_num("state", r2.state, r1->state);
	expect_num("when_ms", r2.when_ms, r1->when_ms);
	if (r1->state != CALL_DONE) {
		expect_str("id", r2.id, r1->id);
		expect_num("enqueued_ms", r2.enqueued_ms, r1->enqueued_ms);
	} else {
		expect_str("id of a done record", r2.id, "");
	}
	expect_str("cage", r2.cage, r1->cage);
	expect_str("queue", r2.queue, r1->queue);
	expect_str("module", r2.module, r1->module);
	expect_str("method", r2.method, r1->method);
	expect_num("attempts", r2.attempts, r1->attempts);
	expect_str("version", r2.version, r1->version);
	cleaned(clean, sizeof clean, r1->idem_key);
	expect_str("idem", r2.idem_key, clean);
	cleaned(clean, sizeof clean, r1->error);
	expect_str("error", r2.error, clean);
	if (r2.payload_len != r1->payload_len ||
	    memcmp(r2.payload, r1->payload, r1->payload_len) != 0)
		fail("payload changed in the round trip (%zu bytes became %zu)", r1->payload_len,
		     r2.payload_len);
	b2 = record_encode_call(&r2, 1, &len2);
	if (!b2)
		fail("record_encode_call failed");
	if (len2 != len1 || memcmp(b1, b2, len1) != 0)
		fail("writing a record is not a fixed point: \"%.*s\" then \"%.*s\"", (int)len1, b1,
		     (int)len2, b2);
	free(b2);
	free(b1);

	/* the form without payload (done records are stored so) */
	b1 = record_encode_call(r1, 0, &len1);
	if (!b1)
		fail("record_encode_call failed");
	if (record_decode_call(b1, len1, &r2, err, sizeof err) < 0)
		fail("a record written without payload does not decode: %s", err);
	if (r2.payload_len != 0)
		fail("a record written without payload has %zu payload bytes", r2.payload_len);
	free(b1);
}

static void attempt_round_trip(const struct attempt_record *a1)
{
	char clean[RECORD_ERROR_MAX + 1];
	struct attempt_record a2;
	size_t len1, len2;
	char *b1, *b2;

	if (!strict && (!time_writable(a1->at_ms) || !bare_writable(a1->version)))
		return;
	b1 = record_encode_attempt(a1, &len1);
	if (!b1)
		fail("record_encode_attempt failed");
	if (record_decode_attempt(b1, len1, &a2) < 0)
		fail("a written attempt does not decode: \"%.*s\"", (int)len1, b1);
	expect_num("at_ms", a2.at_ms, a1->at_ms);
	expect_str("attempt version", a2.version, a1->version[0] ? a1->version : "-");
	expect_num("outcome", a2.outcome, a1->outcome);
	cleaned(clean, sizeof clean, a1->error);
	expect_str("attempt error", a2.error, clean);
	b2 = record_encode_attempt(&a2, &len2);
	if (!b2)
		fail("record_encode_attempt failed");
	if (len2 != len1 || memcmp(b1, b2, len1) != 0)
		fail("writing an attempt is not a fixed point: \"%.*s\" then \"%.*s\"", (int)len1,
		     b1, (int)len2, b2);
	free(b2);
	free(b1);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct call_record r;
	struct attempt_record a;
	const char *cage;
	size_t cage_len;
	char err[256];

	/* libFuzzer's data is a heap copy of exactly size bytes: any read
	 * past the record is caught */
	err[0] = '\0';
	if (record_decode_call(data, size, &r, err, sizeof err) == 0) {
		if ((unsigned)r.state > CALL_DEAD)
			fail("decoded state %d", (int)r.state);
		if (!r.payload || (r.payload_len &&
				   ((const uint8_t *)r.payload < data ||
				    (const uint8_t *)r.payload + r.payload_len > data + size)))
			fail("payload does not point into the record");
		(void)record_state_name(r.state);
		call_round_trip(&r);
	} else if (!err[0]) {
		fail("record_decode_call failed without a reason");
	}
	/* the index of calls by cage reads any record calls.db holds */
	if (record_cage_of(data, size, &cage, &cage_len) == 0 &&
	    (cage < (const char *)data || cage + cage_len > (const char *)data + size ||
	     cage_len == 0))
		fail("the cage is not inside the record");
	if (record_decode_attempt(data, size, &a) == 0) {
		if ((unsigned)a.outcome > OUTCOME_FAIL)
			fail("decoded outcome %d", (int)a.outcome);
		(void)record_outcome_name(a.outcome);
		attempt_round_trip(&a);
	}
	return 0;
}
