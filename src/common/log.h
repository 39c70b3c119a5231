/* The one logger, owned by the daemon. Core modules return errors instead of
 * logging; the daemon, API and network layers log. One line per event:
 * timestamp, level, module, message, on stderr (as etcd). */
#ifndef LSKV_COMMON_LOG_H
#define LSKV_COMMON_LOG_H

enum log_level { LOG_LEVEL_DEBUG, LOG_LEVEL_INFO, LOG_LEVEL_WARN, LOG_LEVEL_ERROR, LOG_LEVEL_FATAL };

extern enum log_level log_min_level;

/* Parse etcd's --log-level names (debug, info, warn, error, panic, fatal).
 * Returns 0, or LSKV_EINVAL for an unknown name. */
int log_level_parse(const char *name, enum log_level *out);

void log_write(enum log_level level, const char *module, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* The level is checked before the arguments are evaluated. */
#define LOG(level, module, ...)                                  \
    do {                                                         \
        if ((level) >= log_min_level)                            \
            log_write((level), (module), __VA_ARGS__);           \
    } while (0)
#define LOG_DEBUG(module, ...) LOG(LOG_LEVEL_DEBUG, module, __VA_ARGS__)
#define LOG_INFO(module, ...) LOG(LOG_LEVEL_INFO, module, __VA_ARGS__)
#define LOG_WARN(module, ...) LOG(LOG_LEVEL_WARN, module, __VA_ARGS__)
#define LOG_ERROR(module, ...) LOG(LOG_LEVEL_ERROR, module, __VA_ARGS__)

#endif
