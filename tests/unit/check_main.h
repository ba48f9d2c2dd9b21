/* The main of every unit test program: run the suite in fork mode, print
 * TAP for automake's tap driver, and fail the program if a test failed. */
#ifndef GR_TESTS_CHECK_MAIN_H
#define GR_TESTS_CHECK_MAIN_H

#include <check.h>
#include <stdlib.h>

/* What time bounds in tests are multiplied by: GR_TEST_TIME_SCALE, default
 * 1.  scripts/valgrind-check sets it, since memcheck runs everything tens
 * of times slower (and CK_TIMEOUT_MULTIPLIER for Check's own timeouts). */
static inline double gr_test_time_scale (void)
{
    const char *s = getenv ("GR_TEST_TIME_SCALE");
    double v = s ? atof (s) : 1;
    return v >= 1 ? v : 1;
}

static inline int gr_check_main (Suite *s)
{
    SRunner *sr = srunner_create (s);
    srunner_set_tap (sr, "-");
    srunner_run_all (sr, CK_SILENT);
    int failed = srunner_ntests_failed (sr);
    srunner_free (sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}

#endif
