/*
 * wire.c - framing of host <-> worker messages (see wire.h).
 */
#include <stdlib.h>
#include <string.h>

#include "wire.h"

static void put_le32(char *p, uint32_t v)
{
	p[0] = (char)(v & 0xff);
	p[1] = (char)((v >> 8) & 0xff);
	p[2] = (char)((v >> 16) & 0xff);
	p[3] = (char)((v >> 24) & 0xff);
}

uint32_t wire_frame_len(const unsigned char h[4])
{
	return (uint32_t)h[0] | (uint32_t)h[1] << 8 | (uint32_t)h[2] << 16 | (uint32_t)h[3] << 24;
}

static void append(struct wire_out *w, const void *data, size_t len)
{
	if (w->failed)
		return;
	if (w->len + len > WIRE_MAX_FRAME) {
		w->failed = true;
		return;
	}
	if (w->len + len > w->cap) {
		size_t cap = w->cap ? w->cap : 256;
		char *grown;

		while (cap < w->len + len)
			cap *= 2;
		grown = realloc(w->data, cap);
		if (!grown) {
			w->failed = true;
			return;
		}
		w->data = grown;
		w->cap = cap;
	}
	memcpy(w->data + w->len, data, len);
	w->len += len;
}

void wire_out_init(struct wire_out *w)
{
	memset(w, 0, sizeof *w);
	append(w, "\0\0\0\0", 4);
}

void wire_out_bytes(struct wire_out *w, const void *data, size_t len)
{
	char header[4];

	put_le32(header, (uint32_t)len);
	append(w, header, 4);
	append(w, data, len);
}

void wire_out_str(struct wire_out *w, const char *s)
{
	wire_out_bytes(w, s, strlen(s));
}

void wire_out_u32(struct wire_out *w, uint32_t v)
{
	char bytes[4];

	put_le32(bytes, v);
	wire_out_bytes(w, bytes, 4);
}

int wire_out_finish(struct wire_out *w)
{
	if (w->failed)
		return -1;
	put_le32(w->data, (uint32_t)(w->len - 4));
	return 0;
}

void wire_out_free(struct wire_out *w)
{
	free(w->data);
	memset(w, 0, sizeof *w);
}

void wire_in_init(struct wire_in *r, const void *body, size_t len)
{
	r->p = body;
	r->end = (const char *)body + len;
	r->failed = false;
}

const char *wire_in_bytes(struct wire_in *r, size_t *len)
{
	uint32_t n;
	const char *data;

	if (r->failed || r->end - r->p < 4) {
		r->failed = true;
		*len = 0;
		return "";
	}
	n = wire_frame_len((const unsigned char *)r->p);
	if ((size_t)(r->end - r->p - 4) < n) {
		r->failed = true;
		*len = 0;
		return "";
	}
	data = r->p + 4;
	r->p += 4 + n;
	*len = n;
	return data;
}

void wire_in_str(struct wire_in *r, char *out, size_t size)
{
	size_t len;
	const char *data = wire_in_bytes(r, &len);

	if (len >= size)
		len = size - 1;
	memcpy(out, data, len);
	out[len] = '\0';
}

uint32_t wire_in_u32(struct wire_in *r)
{
	size_t len;
	const char *data = wire_in_bytes(r, &len);

	if (len != 4) {
		r->failed = true;
		return 0;
	}
	return wire_frame_len((const unsigned char *)data);
}
