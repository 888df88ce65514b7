/* SPDX-License-Identifier: MIT */
/*
 * err.h - frichebot's error codes.
 *
 * Every function that can fail returns an int: 0 on success, a negative FB_E* code on failure.
 * The codes live in one X-macro so that the enum, fb_strerror() and fb_err_name() can never
 * drift apart (libuv's UV_ERRNO_MAP). Two codes are not failures but dispatch answers:
 * FB_EAGAIN (try again later) and FB_DECLINED (not mine, try the next handler).
 *
 * The async contract, everywhere: if a function that takes a callback returns an error, the
 * callback is never called; if it returns 0, the callback is called exactly once, with
 * FB_ECANCELED when the operation is cancelled or the daemon shuts down.
 */
#ifndef FRICHEBOT_ERR_H
#define FRICHEBOT_ERR_H

#define FB_ERRNO_MAP(XX)                                                                           \
    XX(EAGAIN, -4001, "resource temporarily unavailable, try again later")                         \
    XX(DECLINED, -4002, "not handled here, try the next handler")                                  \
    XX(ECANCELED, -4003, "operation canceled")                                                     \
    XX(EINVAL, -4004, "invalid argument")                                                          \
    XX(ENOENT, -4005, "no such entry")                                                             \
    XX(ETIMEDOUT, -4006, "operation timed out")                                                    \
    XX(EIO, -4007, "input/output error")                                                           \
    XX(ECONFLICT, -4008, "version conflict: the record changed since it was read")                 \
    XX(ETOOBIG, -4009, "value too large")                                                          \
    XX(EPROTO, -4010, "protocol error")                                                            \
    XX(ECLOSING, -4011, "shutting down")                                                           \
    XX(EUNAVAIL, -4012, "service unavailable")                                                     \
    XX(EHTTP, -4013, "HTTP error status")                                                          \
    XX(ECONFIG, -4014, "configuration error")                                                      \
    XX(EEXIST, -4015, "entry already exists")                                                      \
    XX(ECONNECT, -4016, "cannot connect")                                                          \
    XX(ESYS, -4017, "system call failed")                                                          \
    XX(ELISTEN, -4018, "cannot listen on the address")                                             \
    XX(ENOTYET, -4019, "not yet: try again after the given delay")

/** Error codes; all negative. 0 is success. */
typedef enum fb_errno_e {
#define FB__ERR_ENUM(name, val, msg) FB_##name = (val),
    FB_ERRNO_MAP(FB__ERR_ENUM)
#undef FB__ERR_ENUM
} fb_errno_t;

/** Returns a static English description of `err` (0 gives "success"); never NULL. */
const char *fb_strerror(int err);

/** Returns the static symbolic name of `err` ("FB_ETIMEDOUT"); never NULL. */
const char *fb_err_name(int err);

#endif /* FRICHEBOT_ERR_H */
