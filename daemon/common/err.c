/* SPDX-License-Identifier: MIT */
/*
 * err.c - descriptions and names of the error codes declared by the X-macro in err.h.
 */
#include "frichebot/err.h"

const char *fb_strerror(int err)
{
    switch (err) {
    case 0:
        return "success";
#define FB__ERR_MSG(name, val, msg)                                                                \
    case (val):                                                                                    \
        return msg;
        FB_ERRNO_MAP(FB__ERR_MSG)
#undef FB__ERR_MSG
    default:
        return "unknown error";
    }
}

const char *fb_err_name(int err)
{
    switch (err) {
    case 0:
        return "OK";
#define FB__ERR_NAME(name, val, msg)                                                               \
    case (val):                                                                                    \
        return "FB_" #name;
        FB_ERRNO_MAP(FB__ERR_NAME)
#undef FB__ERR_NAME
    default:
        return "FB_E?";
    }
}
