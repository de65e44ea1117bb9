/*
 * wire.h - messages between the host and its worker processes.
 *
 * A message is a frame: a 4-byte little-endian length of the body, then the
 * body: a sequence of fields, each a 4-byte little-endian length and that
 * many bytes.  Both sides read fields in a fixed order per message kind
 * (see worker.h).  Frames are limited to WIRE_MAX_FRAME bytes.
 */
#ifndef CAGEHOST_WIRE_H
#define CAGEHOST_WIRE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define WIRE_MAX_FRAME ((size_t)64 << 20)

struct wire_out {
	char *data;	/* 4-byte length, then the body */
	size_t len, cap;
	bool failed;	/* out of memory; the frame is unusable */
};

/* Starts a frame (reserving its length).  wire_out_free() releases it. */
void wire_out_init(struct wire_out *w);
void wire_out_bytes(struct wire_out *w, const void *data, size_t len);
void wire_out_str(struct wire_out *w, const char *s);
void wire_out_u32(struct wire_out *w, uint32_t v);
/* Fills in the length; returns 0, or -1 if the frame is unusable or too big. */
int wire_out_finish(struct wire_out *w);
void wire_out_free(struct wire_out *w);

struct wire_in {
	const char *p, *end;
	bool failed;	/* a field was missing or malformed */
};

/* Reads fields from a frame body of len bytes. */
void wire_in_init(struct wire_in *r, const void *body, size_t len);
/* The next field's bytes (not NUL-terminated); *len gets its size. */
const char *wire_in_bytes(struct wire_in *r, size_t *len);
/* The next field copied into out as a C string (truncated to size - 1). */
void wire_in_str(struct wire_in *r, char *out, size_t size);
uint32_t wire_in_u32(struct wire_in *r);

/* Decodes a 4-byte little-endian length. */
uint32_t wire_frame_len(const unsigned char header[4]);

#endif
