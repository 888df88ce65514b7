/* SPDX-License-Identifier: MIT */
/*
 * test_paths.c - where the daemon finds its data (daemon/io/paths.c): the installed data directory
 * beside a made-up executable, and the build tree's paths for the test runner, which has no data
 * directory beside it. tests/integration/test_install.py runs a really installed binary.
 */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "io/paths.h"
#include "task.h"

static void make_dirs(const char *path)
{
    char buf[PATH_MAX];
    snprintf(buf, sizeof(buf), "%s", path);
    for (char *p = buf + 1; *p; p++) {
        if (*p == '/') {
            *p = '\0';
            mkdir(buf, 0700);
            *p = '/';
        }
    }
    mkdir(buf, 0700);
}

static void remove_tree(const char *root)
{
    char cmd[PATH_MAX + 16];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", root);
    ASSERT_EQ(system(cmd), 0);
}

TEST_IMPL(paths_data_dir_beside_exe)
{
    char root[] = "/tmp/fb-paths.XXXXXX";
    ASSERT_NOT_NULL(mkdtemp(root));
    char real_root[PATH_MAX], exe[PATH_MAX], data[PATH_MAX], out[PATH_MAX];
    ASSERT_NOT_NULL(realpath(root, real_root));
    snprintf(exe, sizeof(exe), "%s/prefix/bin/frichebot", root);

    /* No data directory: ENOENT, and the output is empty. */
    make_dirs(exe);
    ASSERT_EQ(fb__data_dir_for(exe, out, sizeof(out)), FB_ENOENT);
    ASSERT_STR_EQ(out, "");

    /* The data directory FB_DATA_RELDIR from bin/: found, resolved (no "..", no symlink). */
    snprintf(data, sizeof(data), "%s/prefix/bin/%s", root, FB_DATA_RELDIR);
    make_dirs(data);
    ASSERT_OK(fb__data_dir_for(exe, out, sizeof(out)));
    char expected[PATH_MAX];
    ASSERT_NOT_NULL(realpath(data, expected));
    ASSERT_STR_EQ(out, expected);
    ASSERT_EQ(strncmp(out, real_root, strlen(real_root)), 0);
    ASSERT_NULL(strstr(out, ".."));

    /* Through a symbolic link to the prefix (a relocated install): the link is resolved. */
    char link[512], via_link[1024];
    snprintf(link, sizeof(link), "%s/link", root);
    snprintf(data, sizeof(data), "%s/prefix", root);
    ASSERT_EQ(symlink(data, link), 0);
    snprintf(via_link, sizeof(via_link), "%s/bin/frichebot", link);
    ASSERT_OK(fb__data_dir_for(via_link, out, sizeof(out)));
    ASSERT_STR_EQ(out, expected);

    /* Too small an output buffer, a relative executable path. */
    ASSERT_EQ(fb__data_dir_for(exe, out, 8), FB_EINVAL);
    ASSERT_EQ(fb__data_dir_for("bin/frichebot", out, sizeof(out)), FB_EINVAL);

    /* A file where the directory should be is no data directory. */
    remove_tree(expected);
    FILE *f = fopen(expected, "w");
    ASSERT_NOT_NULL(f);
    fclose(f);
    ASSERT_EQ(fb__data_dir_for(exe, out, sizeof(out)), FB_ENOENT);
    remove_tree(root);
    return 0;
}

TEST_IMPL(paths_build_tree_defaults)
{
    /* The runner lives in the build tree, with no data directory beside it: the defaults are
     * the source and build trees' files, which the other unit tests read. */
    ASSERT_NULL(fb_data_dir());
    ASSERT_STR_EQ(fb_data_path(FB_DATA_DIALOG), FB_SOURCE_DIR "/dialogs/friche.yaml");
    ASSERT_STR_EQ(fb_data_path(FB_DATA_GEO), FB_BINARY_DIR "/data/communes.fbgeo");
    ASSERT_STR_EQ(fb_data_path(FB_DATA_WEB), FB_BINARY_DIR "/web/static");
    ASSERT_STR_EQ(fb_data_path(FB_DATA_DSFR), FB_BINARY_DIR "/web/dsfr");
    const char *exe = fb_data_exe();
    ASSERT_EQ(exe[0], '/');
    ASSERT_NOT_NULL(strstr(exe, "fb_tests"));
    return 0;
}
