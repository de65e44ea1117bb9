/*
 * duration.h - durations as written in the config file: a positive integer
 * and a unit, "250ms", "60s", "5m", "1h", "3d".  Kept in milliseconds.
 */
#ifndef CAGEHOST_DURATION_H
#define CAGEHOST_DURATION_H

#include <stddef.h>
#include <stdint.h>

/*
 * Parses text into *ms.  Returns 0, or -1 with a reason in err (err_size
 * bytes) such as "missing unit (ms, s, m, h, d)".  Zero is accepted ("0s");
 * the caller decides whether it makes sense.
 */
int duration_parse(const char *text, int64_t *ms, char *err, size_t err_size);

/* Writes ms in the largest unit that divides it exactly ("90s", "1h"). */
char *duration_format(int64_t ms, char *out, size_t size);

#endif
