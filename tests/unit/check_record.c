/*
 * check_record.c - unit tests of the on-disk record encoding
 * (host/record.c) and the worker message framing (host/wire.c).
 */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "../../host/clock.h"
#include "../../host/record.h"
#include "../../host/wire.h"

static struct call_record sample(void)
{
	struct call_record r;

	memset(&r, 0, sizeof r);
	r.state = CALL_PENDING;
	clock_parse_iso("2026-11-27T21:03:00.000Z", 24, &r.when_ms);
	clock_parse_iso("2026-11-27T21:00:00.000Z", 24, &r.enqueued_ms);
	strcpy(r.id, "0194f3a2b1c00001");
	strcpy(r.queue, "default");
	strcpy(r.module, "billing");
	strcpy(r.method, "charge");
	r.attempts = 2;
	strcpy(r.version, "1.0+9f3c01ab");
	strcpy(r.error, "bad \"quote\" and \\ backslash");
	strcpy(r.idem_key, "order 42");
	r.payload = "{\"amount\": 5}\n\0tail";
	r.payload_len = 19;
	return r;
}

START_TEST(call_record_reads_as_text)
{
	struct call_record r = sample();
	size_t len;
	char *bytes = record_encode_call(&r, 1, &len);
	const char *expected =
		"cagecall/1 next=2026-11-27T21:03:00.000Z id=0194f3a2b1c00001 queue=default "
		"module=billing method=charge attempts=2 enqueued=2026-11-27T21:00:00.000Z "
		"idem=\"order 42\" version=1.0+9f3c01ab error=\"bad \\\"quote\\\" and \\\\ backslash\" "
		"payload=";

	ck_assert_ptr_nonnull(bytes);
	ck_assert_uint_eq(len, strlen(expected) + 19);
	ck_assert_msg(memcmp(bytes, expected, strlen(expected)) == 0, "got %.*s", (int)len, bytes);
	ck_assert(memcmp(bytes + strlen(expected), r.payload, 19) == 0);
	free(bytes);
}
END_TEST

START_TEST(a_call_to_another_cage_names_it)
{
	struct call_record r = sample(), back;
	const char *name;
	size_t len, name_len;
	char err[128];
	char *bytes;

	strcpy(r.cage, "billing-eu");
	bytes = record_encode_call(&r, 1, &len);
	ck_assert_ptr_nonnull(bytes);
	ck_assert_ptr_nonnull(memmem(bytes, len, " id=0194f3a2b1c00001 cage=billing-eu queue=default ", 51));
	ck_assert_int_eq(record_decode_call(bytes, len, &back, err, sizeof err), 0);
	ck_assert_str_eq(back.cage, "billing-eu");
	ck_assert_str_eq(back.queue, "default");
	/* where the index of calls by cage finds it */
	ck_assert_int_eq(record_cage_of(bytes, len, &name, &name_len), 0);
	ck_assert_int_eq((int)name_len, 10);
	ck_assert(memcmp(name, "billing-eu", 10) == 0);
	ck_assert_int_eq(record_cage_of(bytes, 60, &name, &name_len), 1);
	free(bytes);
	r = sample();
	bytes = record_encode_call(&r, 1, &len);
	ck_assert_int_eq(record_decode_call(bytes, len, &back, err, sizeof err), 0);
	ck_assert_str_eq(back.cage, "");
	ck_assert_ptr_null(memmem(bytes, len, "cage=", 5));
	ck_assert_int_eq(record_cage_of(bytes, len, &name, &name_len), 1);
	free(bytes);
}
END_TEST

START_TEST(call_record_round_trips)
{
	struct call_record r = sample(), back;
	char err[128];
	size_t len;
	char *bytes = record_encode_call(&r, 1, &len);

	ck_assert_int_eq(record_decode_call(bytes, len, &back, err, sizeof err), 0);
	ck_assert_int_eq(back.state, CALL_PENDING);
	ck_assert_int_eq(back.when_ms, r.when_ms);
	ck_assert_int_eq(back.enqueued_ms, r.enqueued_ms);
	ck_assert_str_eq(back.id, r.id);
	ck_assert_str_eq(back.queue, r.queue);
	ck_assert_str_eq(back.module, r.module);
	ck_assert_str_eq(back.method, r.method);
	ck_assert_uint_eq(back.attempts, 2);
	ck_assert_str_eq(back.version, r.version);
	ck_assert_str_eq(back.error, r.error);
	ck_assert_str_eq(back.idem_key, r.idem_key);
	ck_assert_uint_eq(back.payload_len, r.payload_len);
	ck_assert(memcmp(back.payload, r.payload, r.payload_len) == 0);
	free(bytes);
}
END_TEST

START_TEST(dead_and_done_records_keep_their_state)
{
	struct call_record r = sample(), back;
	char err[128];
	size_t len;
	char *bytes;

	r.state = CALL_DEAD;
	bytes = record_encode_call(&r, 1, &len);
	ck_assert(strncmp(bytes, "cagecall/1 dead=", 16) == 0);
	ck_assert_int_eq(record_decode_call(bytes, len, &back, err, sizeof err), 0);
	ck_assert_int_eq(back.state, CALL_DEAD);
	free(bytes);
	r.state = CALL_DONE;
	bytes = record_encode_call(&r, 0, &len);
	ck_assert_int_eq(record_decode_call(bytes, len, &back, err, sizeof err), 0);
	ck_assert_int_eq(back.state, CALL_DONE);
	ck_assert_uint_eq(back.payload_len, 0);
	free(bytes);
}
END_TEST

START_TEST(control_characters_in_errors_become_spaces)
{
	struct call_record r = sample(), back;
	char err[128];
	size_t len;
	char *bytes;

	strcpy(r.error, "line1\nline2\ttab");
	bytes = record_encode_call(&r, 0, &len);
	ck_assert_ptr_null(memchr(bytes, '\n', len));
	ck_assert_int_eq(record_decode_call(bytes, len, &back, err, sizeof err), 0);
	ck_assert_str_eq(back.error, "line1 line2 tab");
	free(bytes);
}
END_TEST

START_TEST(unknown_fields_are_ignored_and_garbage_refused)
{
	const char *newer = "cagecall/1 next=2026-11-27T21:03:00.000Z id=0194f3a2b1c00001 "
			    "queue=q module=m method=f attempts=0 enqueued=2026-11-27T21:00:00.000Z "
			    "future=\"x y\" payload=hi";
	struct call_record back;
	char err[128];

	ck_assert_int_eq(record_decode_call(newer, strlen(newer), &back, err, sizeof err), 0);
	ck_assert_uint_eq(back.payload_len, 2);
	ck_assert_int_eq(record_decode_call("cagecall/2 x", 12, &back, err, sizeof err), -1);
	ck_assert_int_eq(record_decode_call("garbage", 7, &back, err, sizeof err), -1);
	ck_assert_int_eq(record_decode_call("cagecall/1 id=x", 15, &back, err, sizeof err), -1);
	ck_assert_str_eq(err, "record lacks a required field");
}
END_TEST

START_TEST(attempt_record_round_trips)
{
	struct attempt_record a = { 0 }, back;
	size_t len;
	char *bytes;

	a.at_ms = 1795000000123;
	strcpy(a.version, "2+0011aabb");
	a.outcome = OUTCOME_RETRY;
	strcpy(a.error, "worker killed by SIGSEGV in crashy@1+00000000");
	bytes = record_encode_attempt(&a, &len);
	ck_assert(strncmp(bytes, "cageattempt/1 at=", 17) == 0);
	ck_assert_int_eq(record_decode_attempt(bytes, len, &back), 0);
	ck_assert_int_eq(back.at_ms, a.at_ms);
	ck_assert_str_eq(back.version, a.version);
	ck_assert_int_eq(back.outcome, OUTCOME_RETRY);
	ck_assert_str_eq(back.error, a.error);
	free(bytes);
}
END_TEST

START_TEST(iso_times_sort_like_numbers)
{
	char a[32], b[32];
	int64_t back;

	clock_format_iso(999, a, sizeof a);
	clock_format_iso(1795000000000, b, sizeof b);
	ck_assert_str_eq(a, "1970-01-01T00:00:00.999Z");
	ck_assert_int_lt(strcmp(a, b), 0);
	ck_assert_int_eq(clock_parse_iso(b, strlen(b), &back), 0);
	ck_assert_int_eq(back, 1795000000000);
	ck_assert_int_eq(clock_parse_iso("2026-13-01T00:00:00.000Z", 24, &back), -1);
}
END_TEST

/* the formatter caches seconds: times that alternate, repeat and move on
 * must each come out as they are */
START_TEST(iso_times_stay_right_when_they_alternate)
{
	static const int64_t times[] = {
		1795000000123, 1795003600456, 1795000000789, 1795003600000, 1795003600999,
		1795007200001, 1795000000002, 86399999, 86400000,
	};
	static const char *const expected[] = {
		"2026-11-18T11:06:40.123Z", "2026-11-18T12:06:40.456Z",
		"2026-11-18T11:06:40.789Z", "2026-11-18T12:06:40.000Z",
		"2026-11-18T12:06:40.999Z", "2026-11-18T13:06:40.001Z",
		"2026-11-18T11:06:40.002Z", "1970-01-01T23:59:59.999Z",
		"1970-01-02T00:00:00.000Z",
	};
	char out[32];

	for (size_t i = 0; i < sizeof times / sizeof times[0]; i++)
		ck_assert_str_eq(clock_format_iso(times[i], out, sizeof out), expected[i]);
}
END_TEST

/* a deadline is now + ms, with the nanoseconds carried into the seconds */
START_TEST(mono_deadlines_lie_ms_ahead)
{
	static const int64_t ahead[] = { 0, 1, 999, 1000, 1500, 86400000 };

	for (size_t i = 0; i < sizeof ahead / sizeof ahead[0]; i++) {
		int64_t before = clock_mono_ms();
		struct timespec at = clock_mono_deadline(ahead[i]);
		int64_t after = clock_mono_ms();
		int64_t at_ms = (int64_t)at.tv_sec * 1000 + at.tv_nsec / 1000000;

		ck_assert(at.tv_nsec >= 0 && at.tv_nsec < 1000000000);
		ck_assert_int_ge(at_ms, before + ahead[i]);
		ck_assert_int_le(at_ms, after + ahead[i]);
	}
}
END_TEST

START_TEST(wire_frames_round_trip_and_reject_truncation)
{
	struct wire_out w;
	struct wire_in r;
	char text[16];
	size_t len;
	const char *bytes;

	wire_out_init(&w);
	wire_out_u32(&w, 7);
	wire_out_str(&w, "hello");
	wire_out_bytes(&w, "a\0b", 3);
	ck_assert_int_eq(wire_out_finish(&w), 0);
	ck_assert_uint_eq(wire_frame_len((unsigned char *)w.data), w.len - 4);
	wire_in_init(&r, w.data + 4, w.len - 4);
	ck_assert_uint_eq(wire_in_u32(&r), 7);
	wire_in_str(&r, text, sizeof text);
	ck_assert_str_eq(text, "hello");
	bytes = wire_in_bytes(&r, &len);
	ck_assert_uint_eq(len, 3);
	ck_assert(memcmp(bytes, "a\0b", 3) == 0);
	ck_assert(!r.failed);
	wire_in_bytes(&r, &len);
	ck_assert(r.failed);	/* no fourth field */
	wire_in_init(&r, w.data + 4, w.len - 6);	/* cut short */
	wire_in_u32(&r);
	wire_in_str(&r, text, sizeof text);
	wire_in_bytes(&r, &len);
	ck_assert(r.failed);
	wire_out_free(&w);
}
END_TEST

Suite *record_suite(void)
{
	Suite *s = suite_create("record");
	TCase *tc = tcase_create("encoding");

	tcase_add_test(tc, call_record_reads_as_text);
	tcase_add_test(tc, call_record_round_trips);
	tcase_add_test(tc, a_call_to_another_cage_names_it);
	tcase_add_test(tc, dead_and_done_records_keep_their_state);
	tcase_add_test(tc, control_characters_in_errors_become_spaces);
	tcase_add_test(tc, unknown_fields_are_ignored_and_garbage_refused);
	tcase_add_test(tc, attempt_record_round_trips);
	tcase_add_test(tc, iso_times_sort_like_numbers);
	tcase_add_test(tc, iso_times_stay_right_when_they_alternate);
	tcase_add_test(tc, mono_deadlines_lie_ms_ahead);
	suite_add_tcase(s, tc);
	return s;
}

Suite *wire_suite(void)
{
	Suite *s = suite_create("wire");
	TCase *tc = tcase_create("frames");

	tcase_add_test(tc, wire_frames_round_trip_and_reject_truncation);
	suite_add_tcase(s, tc);
	return s;
}
