/*
 * check_main.c - runs every unit suite of the host (one suite per module).
 * Output goes through Check's TAP log so `make check` shows each test.
 */
#include <check.h>
#include <stdlib.h>

Suite *retry_suite(void);
Suite *duration_suite(void);
Suite *conf_suite(void);
Suite *record_suite(void);
Suite *elf_check_suite(void);
Suite *wire_suite(void);
Suite *store_suite(void);
Suite *log_suite(void);
Suite *http_guard_suite(void);

int main(void)
{
	SRunner *sr = srunner_create(retry_suite());
	int failed;

	srunner_add_suite(sr, duration_suite());
	srunner_add_suite(sr, conf_suite());
	srunner_add_suite(sr, record_suite());
	srunner_add_suite(sr, elf_check_suite());
	srunner_add_suite(sr, wire_suite());
	srunner_add_suite(sr, store_suite());
	srunner_add_suite(sr, log_suite());
	srunner_add_suite(sr, http_guard_suite());
	srunner_run_all(sr, CK_ENV);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
