/*
 * relay.h - delivery of calls to other cages.
 *
 * A handler may enqueue a call on another cage (cage_enqueue in the SDK,
 * a [cage NAME] section in the config).  The call is stored here, with
 * the handler's OK, as a pending call whose record names the cage; the
 * scheduler runs its attempts like any other call's, with the queue's
 * retry policy, but an attempt is a delivery: relay_run() POSTs the call
 * to the other cage's /v1/enqueue/QUEUE/MODULE/METHOD and turns the answer
 * into a job result:
 *
 *   202                    WORKER_OK (the other cage has stored it)
 *   400, 413               WORKER_FAIL (it will never take it as it is)
 *   anything else, no      WORKER_RETRY with the reason (down, 503, 404
 *   answer, timeout        of a queue not configured there yet, ...)
 *
 * Each delivery carries "Idempotency-Key: cage-IDENTITY-CAGE-ID", IDENTITY
 * being this host's own random id (data_dir/identity, made at the first
 * start), CAGE the [cage] name and ID the call's: a delivery repeated
 * because an answer was lost is recognised by the other cage, which stores
 * the call once.  The other cage keeps such a key (in its delivered.db)
 * until this host says it has the answer: each delivery also carries
 * "Cage-Answered-Below: FLOOR", the id of this host's oldest pending call
 * for that [cage] (at most the call's own id): every delivery below it was
 * answered or went dead, and is not sent again (unless an operator requeues
 * a dead one; see the README).  So the keys kept there are bounded by the
 * calls waiting here, whatever the traffic and however long a delivery
 * waits for its retry (two [cage] names for one host each have their own
 * keys and floor).  A cage's copies (several urls) share the calls: each
 * call goes to one of them, chosen by its id at its first attempt, and
 * every later attempt goes where the last one went (job->version, set by
 * the scheduler to the last attempt's "CAGE@HOST:PORT") while that copy is
 * in the config, since only that copy's store knows the key.  An attempt
 * ends after the queue's attempt_timeout at most, waiting for a connection
 * included.
 */
#ifndef CAGEHOST_RELAY_H
#define CAGEHOST_RELAY_H

#include "conf.h"
#include "record.h"
#include "worker.h"

struct event_base;
struct relay;

/* Keep-alive connections the relay may open to each url of a [cage]. */
#define RELAY_CONNS_PER_URL 32

/*
 * The relay of a host with data_dir conf->data_dir (where the identity
 * is kept).  Returns NULL (and logs why) on failure, which includes a
 * missing identity file while deliveries_waiting: a new identity would give
 * their repeated deliveries new keys, which other cages would store again.
 */
struct relay *relay_new(struct event_base *base, const struct host_conf *conf,
			bool deliveries_waiting);
void relay_free(struct relay **relay);

/*
 * Delivers one attempt of job (its cage, queue, module, method, id,
 * payload, and as version its last attempt's) to the cage job->cage;
 * job->done() runs later, never from inside relay_run, with the result
 * (the reply is the other cage's answer).
 */
void relay_run(struct relay *relay, struct job *job);

/* Deliveries started and not completed yet. */
int relay_in_flight(const struct relay *relay);

/*
 * Sets the floor sent to cage: the id of the oldest call pending for it
 * (see above; the scheduler reads it from the store before it starts
 * deliveries).  Until the first, "0000000000000000" (forget nothing).
 */
void relay_set_floor(struct relay *relay, const char *cage, const char id[CALL_ID_LEN + 1]);

#endif
