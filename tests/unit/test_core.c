/* SPDX-License-Identifier: MIT */
/*
 * test_core.c - errors, allocation helpers, bounded buffers and the log level specs.
 */
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "frichebot/alloc.h"
#include "frichebot/buf.h"
#include "frichebot/err.h"
#include "frichebot/log.h"
#include "task.h"

TEST_IMPL(err_names_and_messages)
{
    ASSERT_STR_EQ(fb_err_name(FB_ETIMEDOUT), "FB_ETIMEDOUT");
    ASSERT_STR_EQ(fb_err_name(0), "OK");
    ASSERT_STR_EQ(fb_strerror(FB_ECONFLICT),
                  "version conflict: the record changed since it was read");
    ASSERT_STR_EQ(fb_err_name(-1), "FB_E?");
    return 0;
}

TEST_IMPL(buf_bounded_growth)
{
    fb_buf_t b;
    fb_buf_init(&b, 10);
    ASSERT_STR_EQ(fb_buf_str(&b), "");
    ASSERT_OK(fb_buf_puts(&b, "hello"));
    ASSERT_OK(fb_buf_printf(&b, "%d", 1234));
    ASSERT_STR_EQ(b.data, "hello1234");
    ASSERT_EQ(b.len, 9);
    ASSERT_OK(fb_buf_puts(&b, "!"));
    ASSERT_EQ(b.len, 10);
    /* One byte past the maximum frees the buffer and reports it. */
    ASSERT_EQ(fb_buf_puts(&b, "x"), FB_ETOOBIG);
    ASSERT_NULL(b.data);
    ASSERT_EQ(b.len, 0);
    ASSERT_EQ(fb_buf_printf(&b, "%s", "01234567890"), FB_ETOOBIG);
    ASSERT_OK(fb_buf_puts(&b, "again"));
    char *s = fb_buf_take(&b);
    ASSERT_STR_EQ(s, "again");
    ASSERT_NULL(b.data);
    fb_free(s);
    return 0;
}

TEST_IMPL(log_spec_parsing)
{
    const char *bad = NULL;
    fb_log_set_level_all(FB_LOG_INFO);
    ASSERT_OK(fb_log_apply_spec("notice,http=debug,redis=trace", &bad));
    ASSERT_EQ(fb__log_levels[FB_SUB_HTTP], FB_LOG_DEBUG);
    ASSERT_EQ(fb__log_levels[FB_SUB_REDIS], FB_LOG_TRACE);
    ASSERT_EQ(fb__log_levels[FB_SUB_CORE], FB_LOG_NOTICE);
    /* A bad item changes nothing and is pointed at. */
    const char *spec = "warn,nosuch=debug";
    ASSERT_EQ(fb_log_apply_spec(spec, &bad), FB_EINVAL);
    ASSERT_STR_EQ(bad, "nosuch=debug");
    ASSERT_EQ(fb__log_levels[FB_SUB_CORE], FB_LOG_NOTICE);
    ASSERT_EQ(fb_log_apply_spec("http=loud", &bad), FB_EINVAL);
    ASSERT_EQ(fb_log_level_parse("TRACE"), FB_LOG_TRACE);
    ASSERT_EQ(fb_log_level_parse("nope"), -1);
    return 0;
}

static int evaluated;
static int side_effect(void)
{
    evaluated++;
    return 1;
}

TEST_IMPL(log_arguments_not_evaluated_when_disabled)
{
    fb_log_set_level_all(FB_LOG_WARN);
    FB_DEBUG(CORE, "value %d", side_effect());
    ASSERT_EQ(evaluated, 0);
    FB_WARN(CORE, "value %d", side_effect());
    ASSERT_EQ(evaluated, 1);
    return 0;
}

TEST_IMPL(log_json_lines_stay_valid_utf8)
{
    /* A message with invalid UTF-8 and a character cut by the 2 KiB message limit: the JSON line
     * written to stderr must hold only valid UTF-8 (checked by jansson's strict decoder). */
    int fds[2];
    ASSERT_EQ(pipe(fds), 0);
    int saved = dup(STDERR_FILENO);
    dup2(fds[1], STDERR_FILENO);
    fb_log_set_format(FB_LOG_FORMAT_JSON);
    fb_log_set_level_all(FB_LOG_INFO);
    char big[2100];
    memset(big, 'a', sizeof(big));
    memcpy(big + 2044, "\xc3\xa9\xc3\xa9", 4); /* "éé" straddling the 2048-byte limit */
    big[sizeof(big) - 1] = '\0';
    FB_INFO(CORE, "bad \xff\xfe utf8 %s", "ok");
    FB_INFO(CORE, "%s", big);
    fflush(stderr);
    dup2(saved, STDERR_FILENO);
    close(fds[1]);
    char out[8192];
    ssize_t n = read(fds[0], out, sizeof(out) - 1);
    close(fds[0]);
    ASSERT_GT(n, 0);
    out[n] = '\0';
    fb_log_set_format(FB_LOG_FORMAT_PLAIN);
    char *line = out;
    int lines = 0;
    for (char *nl; (nl = strchr(line, '\n')) != NULL; line = nl + 1, lines++) {
        json_error_t err;
        json_t *j = json_loadb(line, (size_t)(nl - line), 0, &err);
        if (!j)
            FB_TEST_FAIL("log line %d is not valid JSON: %s", lines + 1, err.text);
        json_decref(j);
    }
    ASSERT_EQ(lines, 2);
    ASSERT_NOT_NULL(strstr(out, "bad \\ufffd\\ufffd utf8 ok"));
    return 0;
}
