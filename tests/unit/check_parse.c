/*
 * check_parse.c - unit tests of duration and config parsing
 * (host/duration.c, host/conf.c), including their error messages, and of
 * names (host/names.c).
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../../host/conf.h"
#include "../../host/duration.h"
#include "../../host/names.h"

START_TEST(durations_parse_in_every_unit)
{
	static const struct { const char *text; int64_t ms; } rows[] = {
		{ "250ms", 250 }, { "0s", 0 }, { "60s", 60000 }, { "5m", 300000 },
		{ "1h", 3600000 }, { "3d", 259200000 }, { "72h", 259200000 },
	};
	char err[160];

	for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
		int64_t ms = -1;

		ck_assert_msg(duration_parse(rows[i].text, &ms, err, sizeof err) == 0,
			      "row %zu (%s): %s", i, rows[i].text, err);
		ck_assert_msg(ms == rows[i].ms, "row %zu (%s): got %lld", i, rows[i].text,
			      (long long)ms);
	}
}
END_TEST

START_TEST(bad_durations_say_why)
{
	static const struct { const char *text; const char *reason; } rows[] = {
		{ "60", "has no unit" }, { "abc", "is not a duration" }, { "5w", "unknown unit 'w'" },
		{ "-5s", "is not a duration" }, { "1.5s", "is not a whole number: use a smaller unit (1500ms, not 1.5s)" },
		{ "99999999999999d", "too large" }, { "", "is not a duration" },
	};
	char err[160];

	for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
		int64_t ms;

		ck_assert_msg(duration_parse(rows[i].text, &ms, err, sizeof err) == -1,
			      "row %zu (%s) was accepted", i, rows[i].text);
		ck_assert_msg(strstr(err, rows[i].reason), "row %zu (%s): '%s' lacks '%s'", i,
			      rows[i].text, err, rows[i].reason);
	}
}
END_TEST

START_TEST(durations_format_in_the_largest_exact_unit)
{
	char out[32];

	ck_assert_str_eq(duration_format(90000, out, sizeof out), "90s");
	ck_assert_str_eq(duration_format(3600000, out, sizeof out), "1h");
	ck_assert_str_eq(duration_format(250, out, sizeof out), "250ms");
	ck_assert_str_eq(duration_format(259200000, out, sizeof out), "3d");
}
END_TEST

START_TEST(empty_config_gives_the_documented_defaults)
{
	struct host_conf c;
	const struct queue_conf *q;
	char err[256];

	ck_assert_int_eq(conf_parse("t.conf", "", "/etc", &c, err, sizeof err), 0);
	ck_assert_str_eq(c.listen_host, "127.0.0.1");
	ck_assert_int_eq(c.listen_port, 8610);
	ck_assert_str_eq(c.data_dir, DATADIR_DEFAULT);
	ck_assert_str_eq(c.backup_dir, DATADIR_DEFAULT ".backups");
	ck_assert_int_eq(c.backup_keep, 0);
	q = conf_queue(&c, "default");
	ck_assert_ptr_nonnull(q);
	ck_assert_int_eq(q->retry.interval_ms, 60000);
	ck_assert(q->retry.factor == 1.5);
	ck_assert_int_eq(q->retry.max_interval_ms, 3600000);
	ck_assert_int_eq(q->retry.lifetime_ms, 259200000);
	conf_release(&c);
}
END_TEST

START_TEST(full_config_is_read)
{
	const char *text =
		"# comment\n"
		"[host]\n"
		"listen = 0.0.0.0:9000\n"
		"token = 0123456789abcdef-secret\n"
		"worker_memory_limit = 512M\n"
		"worker_cpu_limit = 10s\n"
		"header_timeout = 5s\n"
		"data_dir = data\n"
		"plugin_dir = /srv/plugins\n"
		"workers = 3\n"
		"max_body_size = 64k\n"
		"\n"
		"[queue billing]\n"
		"retry_interval = 250ms\n"
		"retry_factor = 2\n"
		"retry_jitter = 0.2\n"
		"retry_max_interval = 10s\n"
		"lifetime = 1h\n"
		"attempt_timeout = 5s\n"
		"concurrency = 4\n"
		"wake_on_new_version = no\n"
		"[queue default]\n"
		"lifetime = 1d\n";
	struct host_conf c;
	const struct queue_conf *q;
	char err[256];

	ck_assert_msg(conf_parse("t.conf", text, "/etc/cage", &c, err, sizeof err) == 0, "%s", err);
	ck_assert_str_eq(c.listen_host, "0.0.0.0");
	ck_assert_int_eq(c.listen_port, 9000);
	ck_assert_str_eq(c.data_dir, "/etc/cage/data");
	ck_assert_str_eq(c.backup_dir, "/etc/cage/data.backups");	/* beside data_dir */
	ck_assert_str_eq(c.plugin_dir, "/srv/plugins");
	ck_assert_int_eq(c.workers, 3);
	ck_assert_uint_eq(c.max_body_size, 65536);
	ck_assert_str_eq(c.token, "0123456789abcdef-secret");
	ck_assert_uint_eq(c.worker_memory_limit, 512u << 20);
	ck_assert_int_eq(c.worker_cpu_limit_ms, 10000);
	ck_assert_int_eq(c.header_timeout_ms, 5000);
	q = conf_queue(&c, "billing");
	ck_assert_ptr_nonnull(q);
	ck_assert_int_eq(q->retry.interval_ms, 250);
	ck_assert(q->retry.factor == 2.0);
	ck_assert(q->retry.jitter == 0.2);
	ck_assert(conf_queue(&c, "default")->retry.jitter == 0.0);
	ck_assert_int_eq(q->retry.max_interval_ms, 10000);
	ck_assert_int_eq(q->attempt_timeout_ms, 5000);
	ck_assert_int_eq(q->concurrency, 4);
	ck_assert(!q->wake_on_new_version);
	ck_assert_int_eq(conf_queue(&c, "default")->retry.lifetime_ms, 86400000);
	conf_release(&c);
}
END_TEST

START_TEST(config_errors_name_file_and_line)
{
	static const struct { const char *text; const char *error; } rows[] = {
		{ "[host]\nbogus = 1\n", "t.conf:2: unknown key 'bogus' in [host]" },
		{ "[host]\nworkers = many\n", "t.conf:2: workers: 'many' is not a whole number" },
		{ "[host]\nworkers = 0\n", "t.conf:2: workers: 0 is out of range 1..256" },
		{ "[host]\nbackup_keep = -1\n", "t.conf:2: backup_keep: -1 is out of range 0..100000" },
		{ "[queue q]\nretry_interval = 60\n", "t.conf:2: retry_interval: duration '60' has no unit" },
		{ "[queue q]\n\n\nretry_factor = 0.5\n", "t.conf:4: retry_factor: '0.5' is not a number from 1 to 100" },
		{ "[queue q]\nretry_jitter = 1.5\n", "t.conf:2: retry_jitter: '1.5' is not a number from 0 to 1" },
		{ "[queue q]\nretry_jitter = 10%\n", "t.conf:2: retry_jitter: '10%' is not a number from 0 to 1" },
		{ "[queue q]\nlifetime = 3w\n", "t.conf:2: lifetime: duration '3w' has an unknown unit" },
		{ "workers = 2\n", "t.conf:1: 'workers' is outside any section" },
		{ "[host\n", "t.conf:1: malformed section header" },
		{ "[hosts]\n", "t.conf:1: unknown section [hosts]" },
		{ "[queue a/b]\n", "t.conf:1: invalid queue name 'a/b'" },
		{ "[queue x]\n[queue x]\n", "t.conf:2: queue 'x' is defined twice" },
		{ "[host]\nlisten = 8610\n", "t.conf:2: listen: '8610' is not ADDRESS:PORT" },
		{ "[host]\njust words\n", "t.conf:2: expected 'key = value'" },
		{ "[queue q]\nconcurrency = -1\n", "t.conf:2: concurrency: -1 is out of range" },
		{ "[queue q]\nretry_interval = 2h\n", "t.conf:1: [queue q]: retry_max_interval (1h) is shorter than retry_interval (2h)" },
		{ "[host]\nworkers = 3\n\nworkers = 5\n", "t.conf:4: workers is set twice in [host] (first on line 2)" },
		{ "[queue q]\nlifetime = 1d\n[queue r]\nlifetime = 2d\n[queue q ]\n", "t.conf:5: queue 'q' is defined twice" },
		{ "[queue q]\nlifetime = 1d\n[queue r]\nlifetime = 2d\nlifetime = 3d\n", "t.conf:5: lifetime is set twice in [queue r] (first on line 4)" },
		{ "[host]\nworkers = 2\n[queue a]\n[host]\nworkers = 3\n", "t.conf:5: workers is set twice in [host] (first on line 2)" },
		{ "[host]\nsync_timeout = 2s # two seconds\n", "t.conf:2: sync_timeout: duration '2s # two seconds' has an unknown unit 's # two seconds' (use ms, s, m, h, d) (a comment must be on a line of its own)" },
		{ "[host]\nmax_body_size = 12X\n", "t.conf:2: max_body_size: '12X' has an unknown unit" },
		{ "[queue q]\nwake_on_new_version = maybe\n", "t.conf:2: wake_on_new_version: 'maybe' is not yes or no" },
		{ "[host]\ntoken = short\n", "t.conf:2: token: use 16 to 255 characters" },
		{ "[host]\ntoken = has a space in it ok\n", "t.conf:2: token: only printable characters, no spaces" },
		{ "[host]\nuser = ../root\n", "t.conf:2: user: '../root' is not a user name" },
		{ "[queue q]\n[cage eu]\n", "t.conf:2: [cage eu]: no url" },
		{ "[cage a/b]\n", "t.conf:1: invalid cage name 'a/b'" },
		{ "[cage x]\nurl = http://h:1\n[cage x]\n", "t.conf:3: cage 'x' is defined twice" },
		{ "[cage x]\nurl = https://h:1\n", "t.conf:2: url: 'https://h:1' is not http://HOST:PORT" },
		{ "[cage x]\nurl = h\n", "t.conf:2: url: 'h' is not http://HOST:PORT" },
		{ "[cage x]\nurl = http://h:1/v1\n", "t.conf:2: url: 'http://h:1/v1' is not http://HOST:PORT" },
		{ "[cage x]\nurl = http://h:99999\n", "t.conf:2: url: 'http://h:99999' has no valid port" },
		{ "[cage x]\nurl = http://a:1 http://b:1 http://c:1 http://d:1 http://e:1\n",
		  "t.conf:2: url: more than 4 addresses for cage x" },
		{ "[cage x]\nurl = http://h:1\nretry = 1\n", "t.conf:3: unknown key 'retry' in [cage x]" },
	};
	char err[256];

	for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
		struct host_conf c;

		ck_assert_msg(conf_parse("t.conf", rows[i].text, "/", &c, err, sizeof err) == -1,
			      "row %zu was accepted", i);
		ck_assert_msg(strstr(err, rows[i].error) == err, "row %zu: got '%s', expected '%s'",
			      i, err, rows[i].error);
	}
}
END_TEST

START_TEST(too_many_settings_are_refused)
{
	static char text[64 * 1024];
	struct host_conf c;
	char err[256];
	size_t n = 0;

	/* 300 queues of 2 settings: past the 512 the duplicate check follows */
	for (int i = 0; i < 300; i++)
		n += (size_t)snprintf(text + n, sizeof text - n,
				      "[queue q%d]\nlifetime = 1d\nconcurrency = 1\n", i);
	ck_assert_int_eq(conf_parse("t.conf", text, "/", &c, err, sizeof err), -1);
	ck_assert_msg(strstr(err, "t.conf:") == err && strstr(err, ": more than 512 settings in one file"),
		      "%s", err);
}
END_TEST

START_TEST(cage_sections_are_read)
{
	const char *text = "[cage eu]\nurl = http://10.0.0.7:8610, http://eu2.example:8611\n"
			   "token = 0123456789abcdef\n[queue q]\n[cage local]\nurl = http://127.0.0.1:1\n";
	const struct cage_conf *eu, *local;
	struct host_conf c;
	char err[256];

	ck_assert_msg(conf_parse("t.conf", text, "/", &c, err, sizeof err) == 0, "%s", err);
	eu = conf_cage(&c, "eu");
	local = conf_cage(&c, "local");
	ck_assert_ptr_nonnull(eu);
	ck_assert_ptr_nonnull(local);
	ck_assert_ptr_null(conf_cage(&c, "q"));
	ck_assert_int_eq(eu->url_count, 2);
	ck_assert_str_eq(eu->urls[0].host, "10.0.0.7");
	ck_assert_int_eq(eu->urls[0].port, 8610);
	ck_assert_str_eq(eu->urls[1].host, "eu2.example");
	ck_assert_int_eq(eu->urls[1].port, 8611);
	ck_assert_str_eq(eu->token, "0123456789abcdef");
	ck_assert_int_eq(local->url_count, 1);
	ck_assert_str_eq(local->token, "");
	ck_assert_ptr_nonnull(conf_queue(&c, "q"));
	conf_release(&c);
}
END_TEST

START_TEST(missing_config_file_is_reported)
{
	struct host_conf c;
	char err[256];

	ck_assert_int_eq(conf_load("/nonexistent/cagehost.conf", &c, err, sizeof err), -1);
	ck_assert_str_eq(err, "/nonexistent/cagehost.conf: cannot open: No such file or directory");
}
END_TEST

/* conf_load() of text written to a file; fills err. */
static int load_text(const char *text, char *err, size_t err_size)
{
	char path[] = "/tmp/check_parse.XXXXXX";
	int fd = mkstemp(path), rc;
	struct host_conf c;
	FILE *f = fd >= 0 ? fdopen(fd, "w") : NULL;

	ck_assert_ptr_nonnull(f);
	fputs(text, f);
	fclose(f);
	rc = conf_load(path, &c, err, err_size);
	if (rc == 0)
		conf_release(&c);
	unlink(path);
	/* the file's name varies: keep what follows it */
	memmove(err, strchr(err, ':') ? strchr(err, ':') : err, strlen(err) + 1);
	return rc;
}

START_TEST(listen_is_checked_on_load)
{
	char err[512] = "";

	ck_assert_int_eq(load_text("[host]\nworkers = 2\nlisten = 0.0.0.0:8610\n", err, sizeof err), -1);
	ck_assert_msg(strstr(err, ":3: listen: 0.0.0.0 is reachable from other hosts; set token") == err,
		      "%s", err);
	ck_assert_int_eq(load_text("[host]\nlisten = [::]:8610\n", err, sizeof err), -1);
	ck_assert_msg(strstr(err, ":2: listen: :: is reachable from other hosts") == err, "%s", err);
	ck_assert_int_eq(load_text("[host]\nlisten = [::]:8610\ntoken = 0123456789abcdef\n", err,
				   sizeof err), 0);
	ck_assert_int_eq(load_text("[host]\nlisten = localhost:8610\n", err, sizeof err), 0);
	/* a name that does not resolve: said before the missing token (a
	 * lookup that cannot reach a name server gives up within seconds) */
	setenv("RES_OPTIONS", "timeout:1 attempts:1", 1);
	ck_assert_int_eq(load_text("[host]\n\nlisten = nosuchhost.invalid:8610\n", err, sizeof err), -1);
	ck_assert_msg(strstr(err, ":3: listen: cannot resolve 'nosuchhost.invalid': ") == err, "%s", err);
}
END_TEST

Suite *duration_suite(void)
{
	Suite *s = suite_create("duration");
	TCase *tc = tcase_create("parse");

	tcase_add_test(tc, durations_parse_in_every_unit);
	tcase_add_test(tc, bad_durations_say_why);
	tcase_add_test(tc, durations_format_in_the_largest_exact_unit);
	suite_add_tcase(s, tc);
	return s;
}

START_TEST(a_name_set_tells_each_name_once_and_its_overflow_once)
{
	struct name_set set = { 0 };
	char name[16];

	ck_assert_int_eq(name_set_add(&set, "eu"), NAME_NEW);
	ck_assert_int_eq(name_set_add(&set, "eu"), NAME_SEEN);
	for (int i = 1; i < NAME_SET_MAX; i++) {
		snprintf(name, sizeof name, "cage%d", i);
		ck_assert_int_eq(name_set_add(&set, name), NAME_NEW);
	}
	/* full: the first name that does not fit is told as such, once */
	ck_assert_int_eq(name_set_add(&set, "one-too-many"), NAME_SET_FULL);
	ck_assert_int_eq(name_set_add(&set, "another"), NAME_SEEN);
	ck_assert_int_eq(name_set_add(&set, "one-too-many"), NAME_SEEN);
	ck_assert_int_eq(name_set_add(&set, "cage7"), NAME_SEEN);
}
END_TEST

Suite *conf_suite(void)
{
	Suite *s = suite_create("conf");
	TCase *tc = tcase_create("parse");

	tcase_add_test(tc, empty_config_gives_the_documented_defaults);
	tcase_add_test(tc, cage_sections_are_read);
	tcase_add_test(tc, too_many_settings_are_refused);
	tcase_add_test(tc, full_config_is_read);
	tcase_add_test(tc, config_errors_name_file_and_line);
	tcase_add_test(tc, missing_config_file_is_reported);
	tcase_add_test(tc, listen_is_checked_on_load);
	tcase_add_test(tc, a_name_set_tells_each_name_once_and_its_overflow_once);
	tcase_set_timeout(tc, 30);	/* the lookup of a name that does not exist */
	suite_add_tcase(s, tc);
	return s;
}
