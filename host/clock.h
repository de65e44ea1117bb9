/*
 * clock.h - the two clocks the host uses.  Wall-clock milliseconds since
 * the epoch are stored on disk (due times, attempt times) and shown as
 * ISO 8601 UTC; monotonic milliseconds measure timeouts and durations.
 */
#ifndef CAGEHOST_CLOCK_H
#define CAGEHOST_CLOCK_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

/* Length of "2026-11-27T20:42:31.123Z" without the NUL. */
#define CLOCK_ISO_LEN 24

int64_t clock_wall_ms(void);
int64_t clock_mono_ms(void);

/* The monotonic time ms from now, as pthread_cond_timedwait() takes it for
 * a condition variable set to CLOCK_MONOTONIC. */
struct timespec clock_mono_deadline(int64_t ms);

/*
 * Writes ms as "YYYY-MM-DDTHH:MM:SS.mmmZ" (always CLOCK_ISO_LEN chars, so
 * such strings sort like the times they name).  size must be at least
 * CLOCK_ISO_LEN + 1.  Returns out.
 */
char *clock_format_iso(int64_t ms, char *out, size_t size);

/* Parses the exact format above.  Returns 0 and sets *ms, or -1. */
int clock_parse_iso(const char *text, size_t len, int64_t *ms);

#endif
