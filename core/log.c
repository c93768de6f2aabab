/* SPDX-License-Identifier: MIT */
/* One line per message on stderr, written with the real write(2). */
#include <stdarg.h>
#include <stdio.h>

#include "uw.h"

static const struct uw_sys *log_sys;
static enum uw_log_level log_level = UW_LOG_WARN;

void uw_log_init(const struct uw_sys *sys, enum uw_log_level level)
{
	log_sys = sys;
	log_level = level;
}

void uw_log(enum uw_log_level level, const char *fmt, ...)
{
	char line[512];
	va_list ap;
	int n;

	if (level > log_level || !log_sys || !log_sys->log_write)
		return;
	n = snprintf(line, sizeof(line), "udpweave: ");
	va_start(ap, fmt);
	n += vsnprintf(line + n, sizeof(line) - (size_t)n - 1, fmt, ap);
	va_end(ap);
	if (n > (int)sizeof(line) - 2)
		n = (int)sizeof(line) - 2;
	line[n++] = '\n';
	log_sys->log_write(line, (size_t)n);
}
