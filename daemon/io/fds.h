/* SPDX-License-Identifier: MIT */
/*
 * fds.h - the process's descriptor limit (RLIMIT_NOFILE), raised and logged at start.
 */
#ifndef FB_FDS_H
#define FB_FDS_H

/** Below this soft limit the daemon warns: a few hundred web clients would exhaust it. */
#define FB_FDS_WARN_BELOW 4096
/** The highest soft limit fb_fds_raise_limit() sets (libwebsockets sizes its tables from it). */
#define FB_FDS_RAISE_MAX (1 << 20)

/**
 * Raises the soft RLIMIT_NOFILE to the hard one (the unit sets LimitNOFILE=65536; a shell's
 * default soft limit is 1024; at most FB_FDS_RAISE_MAX), logs the limit, and warns when it stays
 * under FB_FDS_WARN_BELOW. Call before the HTTP server starts: libwebsockets sizes its tables from
 * the limit it sees then. Returns the soft limit in force afterwards.
 */
long fb_fds_raise_limit(void);

/** The soft RLIMIT_NOFILE now (the number of descriptors the process may hold). */
long fb_fds_limit(void);

#endif /* FB_FDS_H */
