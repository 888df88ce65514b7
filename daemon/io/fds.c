/* SPDX-License-Identifier: MIT */
/*
 * fds.c - see fds.h. The classic start-up step of network daemons (nginx's
 * worker_rlimit_nofile, Redis's adjustOpenFilesLimit): without it the daemon runs with whatever
 * soft limit its parent had, 1024 from a shell, and one client holding connections open
 * exhausts it.
 */
#include "io/fds.h"

#include <errno.h>
#include <string.h>
#include <sys/resource.h>

#include "frichebot/log.h"

long fb_fds_limit(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur == RLIM_INFINITY)
        return 1L << 20;
    return (long)rl.rlim_cur;
}

long fb_fds_raise_limit(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0) {
        FB_WARN(CORE, "cannot read the descriptor limit: %s", strerror(errno));
        return fb_fds_limit();
    }
    rlim_t before = rl.rlim_cur;
    /* Not beyond FB_FDS_RAISE_MAX: libwebsockets sizes its tables from the limit (about 16 bytes
     * a descriptor), and a hard limit of 2^30 (LimitNOFILE=infinity) would ask for 16 GiB. */
    rlim_t want = rl.rlim_max < FB_FDS_RAISE_MAX ? rl.rlim_max : FB_FDS_RAISE_MAX;
    if (rl.rlim_cur < want) {
        rl.rlim_cur = want;
        if (setrlimit(RLIMIT_NOFILE, &rl) != 0) {
            FB_WARN(CORE, "cannot raise the descriptor limit from %lu to %lu: %s",
                    (unsigned long)before, (unsigned long)want, strerror(errno));
            rl.rlim_cur = before;
        }
    }
    long now = fb_fds_limit();
    if (rl.rlim_cur != before)
        FB_NOTICE(CORE, "descriptor limit: %ld (raised from %lu, toward the hard limit)", now,
                  (unsigned long)before);
    else
        FB_NOTICE(CORE, "descriptor limit: %ld", now);
    if (now < FB_FDS_WARN_BELOW)
        FB_WARN(CORE,
                "the descriptor limit (%ld) is low: every open connection takes one; raise it "
                "(LimitNOFILE= in the systemd unit, ulimit -n) to at least %d",
                now, FB_FDS_WARN_BELOW);
    return now;
}
