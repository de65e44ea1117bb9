/*
 * worker_channel.c - the worker's end of its channel to the host (see
 * worker_channel.h and the protocol in worker.h): job frames read into a
 * buffer and used in place, the host's skip requests noted as they arrive,
 * results written back.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "wire.h"
#include "worker.h"
#include "worker_channel.h"

/*
 * Jobs arrive pipelined, several per read: the input is buffered, and a
 * job's frame is used in place until the next one is read.
 */
static struct {
	char *data;
	size_t start, len, cap;		/* unread bytes: data[start, start+len) */
	size_t consumed;		/* size of the frame handed out last */
	char saved;			/* byte after it, replaced by a NUL */
	uint32_t jobs;			/* job frames read so far */
} in;

/* Jobs the host asked this worker to skip, by number (see worker.h); the
 * host holds at most a few dozen jobs on a worker, so few are pending. */
#define SKIPS_MAX 256
static struct {
	uint32_t seq[SKIPS_MAX];
	int count;
} skips;

/* Makes room for `want` unread bytes and one byte more; -1 out of memory. */
static int make_room(size_t want)
{
	if (want + 1 <= in.cap - in.start)
		return 0;
	if (in.start > 0) {
		memmove(in.data, in.data + in.start, in.len);
		in.start = 0;
	}
	if (want + 1 > in.cap) {
		size_t cap = in.cap ? in.cap : 65536;
		char *grown;

		while (cap < want + 1)
			cap *= 2;
		grown = realloc(in.data, cap);
		if (!grown)
			return -1;
		in.data = grown;
		in.cap = cap;
	}
	return 0;
}

/* Makes at least `want` unread bytes available, with room for one byte
 * more after them; -1 at EOF or error. */
static int fill(int fd, size_t want)
{
	if (make_room(want) < 0)
		return -1;
	while (in.len < want) {
		ssize_t n = read(fd, in.data + in.start + in.len, in.cap - in.start - in.len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return -1;
		in.len += (size_t)n;
	}
	return 0;
}

/* Reads what the host has sent so far without waiting for more, up to
 * READ_AHEAD_MAX buffered (a channel a plugin swapped for an endless file
 * must not fill the worker's memory); -1 at EOF or error. */
#define READ_AHEAD_MAX (WIRE_MAX_FRAME + 65536)
static int read_sent(int fd)
{
	while (in.len < READ_AHEAD_MAX) {
		ssize_t n;

		if (make_room(in.len + 65536) < 0)
			return -1;
		n = recv(fd, in.data + in.start + in.len, in.cap - in.start - in.len - 1,
			 MSG_DONTWAIT);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return 0;
		if (n <= 0)
			return -1;
		in.len += (size_t)n;
	}
	return 0;
}

/* Is job number a later than b?  (Numbers wrap after 2^32 jobs.) */
static bool seq_after(uint32_t a, uint32_t b)
{
	return (int32_t)(a - b) > 0;
}

static void note_skip(uint32_t seq)
{
	if (!seq_after(seq, in.jobs))
		return;		/* started already */
	for (int i = 0; i < skips.count; i++)
		if (skips.seq[i] == seq)
			return;
	if (skips.count < SKIPS_MAX)
		skips.seq[skips.count++] = seq;
}

/* Was job number seq to be skipped?  Forgets the skips up to it. */
bool channel_skip_asked(uint32_t seq)
{
	bool asked = false;
	int kept = 0;

	for (int i = 0; i < skips.count; i++) {
		if (skips.seq[i] == seq)
			asked = true;
		if (seq_after(skips.seq[i], seq))
			skips.seq[kept++] = skips.seq[i];
	}
	skips.count = kept;
	return asked;
}

/* Notes the skips among the whole frames read so far. */
static void note_skips_read(void)
{
	size_t at = in.start;

	while (in.start + in.len - at >= 4) {
		uint32_t len = wire_frame_len((unsigned char *)in.data + at);
		struct wire_in r;

		if (len > WIRE_MAX_FRAME || in.start + in.len - at - 4 < len)
			return;
		wire_in_init(&r, in.data + at + 4, len);
		if (wire_in_u32(&r) == JOB_SKIP) {
			uint32_t seq = wire_in_u32(&r);

			if (!r.failed)
				note_skip(seq);
		}
		at += 4 + (size_t)len;
	}
}

/* Reads the next job (its number in job->seq), noting the skips sent so
 * far; its strings and payload live in the input buffer. */
int channel_read_job(int fd, struct job *job)
{
	struct wire_in r;
	uint32_t len;

	if (in.consumed) {
		in.data[in.start] = in.saved;	/* undo the previous job's NUL */
		in.consumed = 0;
	}
	for (;;) {
		if (fill(fd, 4) < 0)
			return -1;
		len = wire_frame_len((unsigned char *)in.data + in.start);
		if (len > WIRE_MAX_FRAME || fill(fd, 4 + (size_t)len) < 0)
			return -1;
		/* the frame is whole: skips sent after it may name it */
		if (read_sent(fd) < 0)
			return -1;
		note_skips_read();
		memset(job, 0, sizeof *job);
		wire_in_init(&r, in.data + in.start + 4, len);
		job->kind = (enum job_kind)wire_in_u32(&r);
		if (job->kind != JOB_SKIP)
			break;
		wire_in_u32(&r);	/* its job number: noted by the scan above */
		if (r.failed)
			return -1;
		in.start += 4 + (size_t)len;
		in.len -= 4 + (size_t)len;
	}
	wire_in_str(&r, job->path, sizeof job->path);
	wire_in_str(&r, job->module, sizeof job->module);
	wire_in_str(&r, job->method, sizeof job->method);
	wire_in_str(&r, job->version, sizeof job->version);
	wire_in_str(&r, job->id, sizeof job->id);
	wire_in_str(&r, job->queue, sizeof job->queue);
	job->attempt = wire_in_u32(&r);
	job->payload = (char *)wire_in_bytes(&r, &job->payload_len);
	if (r.failed)
		return -1;
	job->seq = ++in.jobs;
	in.start += 4 + (size_t)len;
	in.len -= 4 + (size_t)len;
	in.consumed = 4 + (size_t)len;
	in.saved = in.data[in.start];
	in.data[in.start] = '\0';	/* the payload ends the frame */
	return 0;
}

static int write_full(int fd, const void *buf, size_t len)
{
	const char *p = buf;

	while (len > 0) {
		ssize_t n = write(fd, p, len);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

int channel_send_result(int fd, const struct job_result *res)
{
	struct wire_out w;
	int rc;

	wire_out_init(&w);
	wire_out_u32(&w, (uint32_t)res->status | (res->printed ? WORKER_PRINTED_FLAG : 0));
	wire_out_bytes(&w, res->reply ? res->reply : "", res->reply ? res->reply_len : 0);
	wire_out_str(&w, res->error);
	wire_out_str(&w, res->version);
	wire_out_str(&w, res->methods);
	wire_out_u32(&w, (uint32_t)res->outgoing_count);
	for (int i = 0; i < res->outgoing_count; i++) {
		const struct outgoing_call *o = &res->outgoing[i];

		wire_out_str(&w, o->cage);
		wire_out_str(&w, o->queue);
		wire_out_str(&w, o->module);
		wire_out_str(&w, o->method);
		wire_out_bytes(&w, o->payload, o->payload_len);
	}
	rc = wire_out_finish(&w) < 0 || write_full(fd, w.data, w.len) < 0 ? -1 : 0;
	wire_out_free(&w);
	return rc;
}
