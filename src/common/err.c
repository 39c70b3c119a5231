#include "common/err.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

const char *lskv_strerror(int code)
{
    switch (code) {
#define LSKV_ERR_STR(name, c, msg) \
    case c:                        \
        return msg;
        LSKV_ERR_MAP(LSKV_ERR_STR)
#undef LSKV_ERR_STR
    }
    if (code < 0 && code > -4096)
        return strerror(-code);
    return "unknown error";
}

const char *lskv_errname(int code)
{
    switch (code) {
#define LSKV_ERR_NAME(name, c, msg) \
    case c:                         \
        return "LSKV_" #name;
        LSKV_ERR_MAP(LSKV_ERR_NAME)
#undef LSKV_ERR_NAME
    }
    if (code < 0 && code > -4096) {
        const char *n = strerrorname_np(-code);
        return n ? n : "EUNKNOWN";
    }
    return "UNKNOWN";
}

void errmsg_printf(char *errmsg, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(errmsg, LSKV_ERRMSG_SIZE, fmt, ap);
    va_end(ap);
}

void errmsg_wrapf(char *errmsg, const char *fmt, ...)
{
    char prefix[LSKV_ERRMSG_SIZE];
    char old[LSKV_ERRMSG_SIZE];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof prefix, fmt, ap);
    va_end(ap);
    memcpy(old, errmsg, sizeof old);
    old[sizeof old - 1] = '\0';
    size_t n = strlen(prefix);
    memcpy(errmsg, prefix, n);
    if (n + 2 < LSKV_ERRMSG_SIZE) {
        memcpy(errmsg + n, ": ", 2);
        n += 2;
        size_t rest = strlen(old);
        if (rest > LSKV_ERRMSG_SIZE - 1 - n)
            rest = LSKV_ERRMSG_SIZE - 1 - n;
        memcpy(errmsg + n, old, rest);
        n += rest;
    }
    errmsg[n] = '\0';
}
