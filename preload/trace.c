/* SPDX-License-Identifier: MIT */
/*
 * LTTng-UST by dynamic linkage (lttng-ust(3), "Dynamically loading the
 * tracepoint provider"): the tracepoints are defined here and the library
 * links nothing of lttng-ust; the probes live in libudpweave-lttng.so,
 * installed beside the library, and are loaded only when tracing can
 * happen. Without them a tracepoint stays a predicted branch, and the
 * process gets none of liblttng-ust's listener threads, its base-address
 * statedump or its memory.
 *
 * UDPWEAVE_TRACE=auto (the default) loads the provider when a session
 * daemon is reachable at start: the root daemon's application socket in
 * /var/run/lttng, or the user's in $LTTNG_HOME/.lttng (else $HOME/.lttng).
 * 1 loads it always (a daemon started later still sees the process), 0
 * never. Loaded from the library's constructor once the library is
 * initialised: liblttng-ust's own constructor calls socket() through the
 * interposers.
 */
#ifdef UW_HAVE_LTTNG
#define LTTNG_UST_TRACEPOINT_DEFINE
#define LTTNG_UST_TRACEPOINT_PROBE_DYNAMIC_LINKAGE
#include "udpweave_tp.h"
#endif

#include <dirent.h>
#include <dlfcn.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "preload.h"

#define UW_TP_PROVIDER	"libudpweave-lttng.so"
#define UW_LTTNG_RUNDIR	"/var/run/lttng"
#define UW_UST_SOCK	"lttng-ust-sock-"	/* + the ABI's major version */

#ifdef UW_HAVE_LTTNG
/* A session daemon's application socket in dir (any ABI version). */
static bool has_app_socket(const char *dir)
{
	struct dirent *d;
	bool found = false;
	DIR *dp = opendir(dir);

	if (!dp)
		return false;
	while (!found && (d = readdir(dp))) {
		struct stat st;

		found = !strncmp(d->d_name, UW_UST_SOCK, strlen(UW_UST_SOCK)) &&
			!fstatat(dirfd(dp), d->d_name, &st, 0) && S_ISSOCK(st.st_mode);
	}
	closedir(dp);
	return found;
}

static bool sessiond_reachable(void)
{
	const char *home = getenv("LTTNG_HOME");
	char dir[PATH_MAX];

	if (has_app_socket(UW_LTTNG_RUNDIR))
		return true;
	if (!home || !*home)
		home = getenv("HOME");
	if (!home || !*home)
		return false;
	if (snprintf(dir, sizeof(dir), "%s/.lttng", home) >= (int)sizeof(dir))
		return false;
	return has_app_socket(dir);
}

/* The provider beside this library (the directory dladdr names), or by
 * the loader's search path when the library was named without one. */
static void provider_path(char *out, size_t len)
{
	const char *slash = NULL;
	Dl_info info;

	if (dladdr((void *)provider_path, &info) && info.dli_fname)
		slash = strrchr(info.dli_fname, '/');
	if (slash)
		snprintf(out, len, "%.*s/%s", (int)(slash - info.dli_fname), info.dli_fname,
			 UW_TP_PROVIDER);
	else
		snprintf(out, len, "%s", UW_TP_PROVIDER);
}
#endif

void uw_trace_load(enum uw_trace_mode mode)
{
#ifdef UW_HAVE_LTTNG
	char path[PATH_MAX];

	if (mode == UW_TRACE_OFF || (mode == UW_TRACE_AUTO && !sessiond_reachable()))
		return;
	provider_path(path, sizeof(path));
	if (dlopen(path, RTLD_NOW | RTLD_LOCAL | RTLD_NODELETE)) {
		uw_info("tracing: %s loaded", path);
		return;
	}
	uw_log(mode == UW_TRACE_ON ? UW_LOG_WARN : UW_LOG_INFO,
	       "no tracing: cannot load %s: %s", path, dlerror());
#else
	if (mode == UW_TRACE_ON)
		uw_warn("no tracing: UDPWEAVE_TRACE=1, but this library was built without LTTng-UST");
#endif
}
