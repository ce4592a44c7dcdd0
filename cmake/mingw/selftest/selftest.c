/* Self-test of the mingw toolchain and dependencies (cmake/mingw/): APR threads, a
 * mutex, a child process (this program again) talking over pipes, a winpthreads
 * thread, all inside CMocka tests. Runs under wine through ctest, and on Linux. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include <apr_general.h>
#include <apr_pools.h>
#include <apr_thread_proc.h>
#include <apr_thread_mutex.h>
#include <apr_file_io.h>
#include <apr_strings.h>

#include <pthread.h>

#ifdef _WIN32
#include <windows.h>
#else
#include <unistd.h>
#endif

#define CHILD_EXIT 7
#define THREADS 4
#define ROUNDS 20000

static apr_pool_t *pool;
static char self_path[4096];

/* ------------------------------------------------------------ the child */

/* Reads one line from stdin and answers "pong: LINE" on stdout; exits with CHILD_EXIT. */
static int child_main(void)
{
    apr_file_t *in, *out;
    char line[256];
    apr_size_t n;

    if (apr_file_open_stdin(&in, pool) != APR_SUCCESS ||
        apr_file_open_stdout(&out, pool) != APR_SUCCESS)
        return 90;
    if (apr_file_gets(line, sizeof line, in) != APR_SUCCESS)
        return 91;
    line[strcspn(line, "\r\n")] = '\0';
    n = (apr_size_t)apr_snprintf(NULL, 0, "pong: %s\n", line);
    if (apr_file_printf(out, "pong: %s\n", line) != (int)n)
        return 92;
    apr_file_flush(out);
    return CHILD_EXIT;
}

/* ------------------------------------------------------------ the tests */

static void test_cmocka_runs(void **state)
{
    (void)state;
    assert_int_equal(1 + 1, 2);
}

struct counter {
    apr_thread_mutex_t *mutex;
    long value;
};

static void *APR_THREAD_FUNC count_up(apr_thread_t *thread, void *data)
{
    struct counter *c = data;
    for (int i = 0; i < ROUNDS; i++) {
        apr_thread_mutex_lock(c->mutex);
        c->value++;
        apr_thread_mutex_unlock(c->mutex);
    }
    apr_thread_exit(thread, APR_SUCCESS);
    return NULL;
}

static void test_apr_threads_and_mutex(void **state)
{
    (void)state;
    struct counter c = {NULL, 0};
    apr_thread_t *threads[THREADS];

    assert_int_equal(apr_thread_mutex_create(&c.mutex, APR_THREAD_MUTEX_DEFAULT, pool), APR_SUCCESS);
    for (int i = 0; i < THREADS; i++)
        assert_int_equal(apr_thread_create(&threads[i], NULL, count_up, &c, pool), APR_SUCCESS);
    for (int i = 0; i < THREADS; i++) {
        apr_status_t rv = APR_EGENERAL;
        assert_int_equal(apr_thread_join(&rv, threads[i]), APR_SUCCESS);
        assert_int_equal(rv, APR_SUCCESS);
    }
    assert_int_equal(c.value, (long)THREADS * ROUNDS);
    apr_thread_mutex_destroy(c.mutex);
}

static void *double_it(void *arg)
{
    *(int *)arg *= 2;
    return arg;
}

/* The pthread API, which mproc's tests use: winpthreads, linked statically. */
static void test_pthread(void **state)
{
    (void)state;
    pthread_t t;
    int value = 21;
    void *ret = NULL;

    assert_int_equal(pthread_create(&t, NULL, double_it, &value), 0);
    assert_int_equal(pthread_join(t, &ret), 0);
    assert_ptr_equal(ret, &value);
    assert_int_equal(value, 42);
}

static void test_apr_proc_create_with_pipes(void **state)
{
    (void)state;
    apr_procattr_t *attr;
    apr_proc_t proc;
    const char *args[] = {self_path, "child", NULL};
    char answer[256] = "";
    apr_size_t len = 0;
    int exitcode = -1;
    apr_exit_why_e why = 0;

    assert_int_equal(apr_procattr_create(&attr, pool), APR_SUCCESS);
    assert_int_equal(apr_procattr_io_set(attr, APR_FULL_BLOCK, APR_FULL_BLOCK, APR_NO_PIPE),
                     APR_SUCCESS);
    assert_int_equal(apr_procattr_cmdtype_set(attr, APR_PROGRAM), APR_SUCCESS);
    assert_int_equal(apr_proc_create(&proc, self_path, args, NULL, attr, pool), APR_SUCCESS);

    assert_int_equal(apr_file_puts("ping\n", proc.in), APR_SUCCESS);
    assert_int_equal(apr_file_close(proc.in), APR_SUCCESS);
    for (;;) {
        apr_size_t n = sizeof answer - 1 - len;
        apr_status_t rv = apr_file_read(proc.out, answer + len, &n);
        len += n;
        if (rv == APR_EOF || len == sizeof answer - 1)
            break;
        assert_int_equal(rv, APR_SUCCESS);
    }
    answer[len] = '\0';
    apr_file_close(proc.out);

    assert_int_equal(apr_proc_wait(&proc, &exitcode, &why, APR_WAIT), APR_CHILD_DONE);
    assert_int_equal(why, APR_PROC_EXIT);
    assert_int_equal(exitcode, CHILD_EXIT);
    answer[strcspn(answer, "\r\n")] = '\0';
    assert_string_equal(answer, "pong: ping");
}

/* ------------------------------------------------------------ main */

static int find_self(const char *argv0)
{
#ifdef _WIN32
    (void)argv0;
    DWORD n = GetModuleFileNameA(NULL, self_path, (DWORD)sizeof self_path);
    return n > 0 && n < sizeof self_path ? 0 : -1;
#else
    ssize_t n = readlink("/proc/self/exe", self_path, sizeof self_path - 1);
    if (n <= 0) {
        apr_cpystrn(self_path, argv0, sizeof self_path);
        return 0;
    }
    self_path[n] = '\0';
    return 0;
#endif
}

int main(int argc, char **argv)
{
    int rc;

    if (apr_initialize() != APR_SUCCESS || apr_pool_create(&pool, NULL) != APR_SUCCESS) {
        fprintf(stderr, "selftest: APR does not initialise\n");
        return 2;
    }
    if (argc > 1 && strcmp(argv[1], "child") == 0) {
        rc = child_main();
    } else {
        const struct CMUnitTest tests[] = {
            cmocka_unit_test(test_cmocka_runs),
            cmocka_unit_test(test_apr_threads_and_mutex),
            cmocka_unit_test(test_pthread),
            cmocka_unit_test(test_apr_proc_create_with_pipes),
        };
        if (find_self(argv[0]) != 0) {
            fprintf(stderr, "selftest: cannot find the program's own path\n");
            return 2;
        }
        rc = cmocka_run_group_tests_name("mingw-selftest", tests, NULL, NULL);
    }
    apr_pool_destroy(pool);
    apr_terminate();
    return rc;
}
