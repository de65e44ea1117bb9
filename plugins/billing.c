/*
 * billing.c - the module of the README walk-through: a charge that fails
 * until a fixed build is dropped into the plugin directory.
 *
 * One source, two builds:
 *   -DBILLING_FIXED=0  version "1.0": charge always returns CAGE_RETRY with a
 *                      transient-looking error, so queued calls pile up and
 *                      wait (this is the build installed by `make install`).
 *   -DBILLING_FIXED=1  version "1.1": charge reads a payload such as
 *                      {"customer":"acme","amount":12.50} and replies
 *                      "charged acme 12.50 EUR (attempt 3)".
 * Without -D the buggy 1.0 build is made.
 *
 * There is no JSON library here: the fixed build scans the payload for the
 * keys it needs.  That is enough for a demonstration, not a JSON parser.
 */
#include <inttypes.h>
#include <stdio.h>

#include "cage.h"

#ifndef BILLING_FIXED
#define BILLING_FIXED 0
#endif

#if BILLING_FIXED

#define CUSTOMER_MAX 64		/* longest customer name we accept, bytes */
#define AMOUNT_DIGITS_MAX 12	/* digits before the decimal point */

/*
 * Finds the value of "key" in the len bytes at p: returns a pointer just
 * past the ':' (and any blanks after it), or NULL.  A match that is not
 * followed by ':' (a string value that happens to equal the key) is skipped.
 */
static const char *find_value(const char *p, size_t len, const char *key)
{
	size_t klen = strlen(key);
	const char *end = p + len;

	for (; (size_t)(end - p) >= klen + 2; p++) {
		const char *q;

		if (p[0] != '"' || memcmp(p + 1, key, klen) != 0 ||
		    p[klen + 1] != '"')
			continue;
		q = p + klen + 2;
		while (q < end && (*q == ' ' || *q == '\t' || *q == '\n' ||
		    *q == '\r'))
			q++;
		if (q == end || *q != ':')
			continue;
		q++;
		while (q < end && (*q == ' ' || *q == '\t' || *q == '\n' ||
		    *q == '\r'))
			q++;
		return q;
	}
	return NULL;
}

/*
 * Parses a non-negative decimal with at most two decimals ("12", "12.5",
 * "12.50") into cents.  Returns 0, or -1 when the text at p is not such a
 * number or is followed by more number-like characters ("1e3", "1.234").
 */
static int parse_cents(const char *p, const char *end, uint64_t *cents)
{
	uint64_t units = 0, frac = 0;
	int digits = 0, fdigits = 0;

	while (p < end && *p >= '0' && *p <= '9') {
		if (++digits > AMOUNT_DIGITS_MAX)
			return -1;
		units = units * 10 + (uint64_t)(*p++ - '0');
	}
	if (digits == 0)
		return -1;
	if (p < end && *p == '.') {
		p++;
		while (p < end && *p >= '0' && *p <= '9') {
			if (++fdigits > 2)
				return -1;
			frac = frac * 10 + (uint64_t)(*p++ - '0');
		}
		if (fdigits == 0)
			return -1;
		if (fdigits == 1)
			frac *= 10;
	}
	if (p < end && (*p == '.' || *p == 'e' || *p == 'E' ||
	    (*p >= '0' && *p <= '9')))
		return -1;
	*cents = units * 100 + frac;
	return 0;
}

/*
 * Copies the string value of "customer" into buf (NUL-terminated).  Returns
 * 0, or -1 when the key is missing, is not a plain string of 1..CUSTOMER_MAX
 * printable characters, or uses escapes.
 */
static int parse_customer(const char *payload, size_t len, char *buf)
{
	const char *end = payload + len;
	const char *p = find_value(payload, len, "customer");
	size_t n = 0;

	if (p == NULL || p == end || *p != '"')
		return -1;
	for (p++; p < end && *p != '"'; p++) {
		if (*p == '\\' || *p < ' ' || *p > '~' || n == CUSTOMER_MAX)
			return -1;
		buf[n++] = *p;
	}
	if (p == end || n == 0)
		return -1;
	buf[n] = '\0';
	return 0;
}

static cage_outcome charge(cage_call *call)
{
	size_t len;
	const char *payload = cage_payload(call, &len);
	const char *amount = find_value(payload, len, "amount");
	char customer[CUSTOMER_MAX + 1];
	char reply[160];
	uint64_t cents;

	if (amount == NULL || parse_cents(amount, payload + len, &cents) < 0) {
		cage_error(call, "payload has no amount");
		return CAGE_FAIL;
	}
	if (cents == 0) {
		cage_error(call, "amount must be greater than zero");
		return CAGE_FAIL;
	}
	if (parse_customer(payload, len, customer) < 0) {
		cage_error(call, "payload has no customer");
		return CAGE_FAIL;
	}
	snprintf(reply, sizeof(reply),
	    "charged %s %" PRIu64 ".%02" PRIu64 " EUR (attempt %" PRIu32 ")",
	    customer, cents / 100, cents % 100, cage_attempt(call));
	cage_log(call, CAGE_LOG_INFO, "%s", reply);
	cage_reply_str(call, reply);
	return CAGE_OK;
}

#define BILLING_VERSION "1.1"

#else /* !BILLING_FIXED */

/* The shipped bug: a transient-looking failure that no retry can cure. */
static cage_outcome charge(cage_call *call)
{
	cage_log(call, CAGE_LOG_WARNING,
	    "charge attempt %" PRIu32 " failed: currency converter not configured",
	    cage_attempt(call));
	cage_error(call, "currency converter not configured (billing 1.0 bug)");
	return CAGE_RETRY;
}

#define BILLING_VERSION "1.0"

#endif /* BILLING_FIXED */

static const struct cage_method methods[] = {
	{ "charge", charge },
	{ NULL, NULL },
};

CAGE_MODULE(BILLING_VERSION, methods);
