/*
 * retry.c - the retry schedule (see retry.h for the rules).
 */
#include <math.h>

#include "retry.h"

void retry_policy_default(struct retry_policy *policy)
{
	policy->interval_ms = RETRY_DEFAULT_INTERVAL_MS;
	policy->factor = RETRY_DEFAULT_FACTOR;
	policy->max_interval_ms = RETRY_DEFAULT_MAX_INTERVAL_MS;
	policy->lifetime_ms = RETRY_DEFAULT_LIFETIME_MS;
	policy->jitter = 0;
}

int64_t retry_delay_ms(const struct retry_policy *policy, uint32_t failed_attempts)
{
	double delay = (double)policy->interval_ms;

	for (uint32_t n = 1; n < failed_attempts && delay < (double)policy->max_interval_ms; n++)
		delay *= policy->factor;
	if (delay > (double)policy->max_interval_ms)
		return policy->max_interval_ms;
	return (int64_t)llround(delay);
}

bool retry_next_due(const struct retry_policy *policy, int64_t enqueued_ms,
		    uint32_t failed_attempts, int64_t planned_ms,
		    int64_t started_ms, double random, int64_t *next_ms)
{
	int64_t delay = retry_delay_ms(policy, failed_attempts);
	int64_t slack = delay > RETRY_ON_PLAN_MS ? delay : RETRY_ON_PLAN_MS;
	int64_t anchor = planned_ms;

	if (started_ms - planned_ms > slack)
		anchor = started_ms;
	if (policy->jitter > 0 && random > 0 && random < 1)
		delay -= (int64_t)((double)delay * policy->jitter * random);
	if (anchor + delay > enqueued_ms + policy->lifetime_ms)
		return false;
	*next_ms = anchor + delay;
	return true;
}
