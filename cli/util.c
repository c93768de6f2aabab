/* SPDX-License-Identifier: MIT */
/* Helpers shared by the subcommands: messages, numbers, finding the library. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <langinfo.h>
#include <limits.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli.h"

const struct uw_backend_name uw_backend_names[] = {
	{ .name = "auto", .txtime = true,
	  .help = "the default: uring for batches of 4 sockets or more, mmsg for\n"
		  "smaller ones (mmsg for all without io_uring)" },
	{ .name = "mmsg", .txtime = true,
	  .help = "sendmmsg(2) batches with UDP GSO runs" },
	{ .name = "packet", .txtime = false,
	  .help = "AF_PACKET TX_RING frames built by the library (needs CAP_NET_RAW;\n"
		  "falls back to the socket for loopback, broadcast and the like)" },
	{ .name = "uring", .txtime = true,
	  .help = "io_uring sendmsg SQEs with UDP GSO runs (mmsg when io_uring is off)" },
	{ .name = "passthrough", .txtime = true,
	  .help = "every send as the application made it: no batching (for comparison)" },
};
const size_t uw_backend_count = UW_ARRAY_SIZE(uw_backend_names);

/* One line on stderr: "udpweave: ...". */
void uw_err(const char *fmt, ...)
{
	va_list ap;

	fputs("udpweave: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

/* Bad input to a subcommand: one line naming the remedy, exit status 2. */
int uw_usage_error(const char *cmd, const char *fmt, ...)
{
	va_list ap;

	fputs("udpweave: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, " (see 'udpweave %s%s--help')\n", cmd ? cmd : "", cmd ? " " : "");
	return UW_EXIT_USAGE;
}

/* What getopt_long stopped at ('?' unknown, ':' missing value), in one line. */
int uw_option_error(const char *cmd, int c, char **argv)
{
	const char *arg = argv[optind - 1];
	char name[64];

	if (!strncmp(arg, "--", 2))
		snprintf(name, sizeof(name), "%.*s", (int)strcspn(arg, "="), arg);
	else
		snprintf(name, sizeof(name), "-%c", optopt ? optopt : '?');
	if (c == ':')
		return uw_usage_error(cmd, "option '%s' needs a value", name);
	if (optopt && !strncmp(arg, "--", 2) && strchr(arg, '='))
		return uw_usage_error(cmd, "option '%s' takes no value", name);
	return uw_usage_error(cmd, "unknown option '%s'", name);
}

/* Decimal digits only, lo..hi. */
int uw_parse_u32(const char *s, uint32_t lo, uint32_t hi, uint32_t *out)
{
	unsigned long long v;
	char *end;

	if (*s < '0' || *s > '9')
		return -EINVAL;
	errno = 0;
	v = strtoull(s, &end, 10);
	if (*end)
		return -EINVAL;
	if (errno || v < lo || v > hi)
		return -ERANGE;
	*out = (uint32_t)v;
	return 0;
}

int uw_parse_pid(const char *s, pid_t *out)
{
	uint32_t v;
	int ret = uw_parse_u32(s, 1, INT_MAX, &v);

	if (!ret)
		*out = (pid_t)v;
	return ret;
}

const struct uw_backend_name *uw_backend_lookup(const char *name)
{
	for (size_t i = 0; i < uw_backend_count; i++)
		if (!strcmp(uw_backend_names[i].name, name))
			return &uw_backend_names[i];
	return NULL;
}

static void backend_list(char *buf, size_t len)
{
	size_t n = 0;

	buf[0] = '\0';
	for (size_t i = 0; i < uw_backend_count; i++)
		if (n < len)
			n += (size_t)snprintf(buf + n, len - n, "%s%s", n ? ", " : "",
					      uw_backend_names[i].name);
}

/* The --backend lines of a subcommand's help: the option, then each
 * backend with its line (continuations indented under it). */
void uw_backend_help(FILE *f, const char *option, const char *dflt)
{
	fprintf(f, "  %-20s one of (default %s):\n", option, dflt);
	for (size_t i = 0; i < uw_backend_count; i++) {
		const char *h = uw_backend_names[i].help;

		fprintf(f, "    %-18s ", uw_backend_names[i].name);
		for (const char *nl; (nl = strchr(h, '\n')); h = nl + 1)
			fprintf(f, "%.*s\n%23s", (int)(nl - h), h, "");
		fprintf(f, "%s\n", h);
	}
}

/* A --backend value the library can run; else the usage error's status. */
int uw_check_backend_option(const char *cmd, const char *name)
{
	const struct uw_backend_name *b = uw_backend_lookup(name);
	char list[64];

	backend_list(list, sizeof(list));
	if (!b)
		return uw_usage_error(cmd, "--backend %s: unknown backend (one of %s)",
				      name, list);
	return 0;
}

/* A readable regular file that starts like an ELF object. */
static int library_usable(const char *path)
{
	unsigned char magic[4];
	struct stat st;
	ssize_t n;
	int fd;

	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	if (fstat(fd, &st) || !S_ISREG(st.st_mode)) {
		close(fd);
		return -EISDIR;
	}
	n = read(fd, magic, sizeof(magic));
	close(fd);
	if (n != (ssize_t)sizeof(magic) || memcmp(magic, "\177ELF", 4))
		return -ENOEXEC;
	return 0;
}

static const char *library_problem(int err)
{
	switch (err) {
	case -EISDIR:	return "not a regular file";
	case -ENOEXEC:	return "not an ELF shared object";
	default:	return strerror(-err);
	}
}

/* Absolute form of path: LD_PRELOAD must survive a chdir of the program.
 * glibc splits LD_PRELOAD at spaces and colons, so a path cannot hold one. */
static int library_take(const char *path, char *out, size_t len)
{
	char abs[PATH_MAX];

	if (!realpath(path, abs))
		return -errno;
	if (strpbrk(abs, " :\t\n"))
		return -EINVAL;
	if (strlen(abs) >= len)
		return -ENAMETOOLONG;
	strcpy(out, abs);
	return 0;
}

static int exe_dir(char *out, size_t len)
{
	ssize_t n = readlink("/proc/self/exe", out, len - 1);
	char *slash;

	if (n < 0)
		return -errno;
	out[n] = '\0';
	slash = strrchr(out, '/');
	if (!slash)
		return -ENOENT;
	*slash = '\0';
	return 0;
}

/*
 * The library to preload, in this order: --lib; next to this executable
 * (a build tree); ../lib/udpweave relative to it (an installed tree moved
 * with its prefix); the install location compiled in (UW_LIBDIR).
 * On failure, why says where it looked.
 */
int uw_find_library(const char *opt, char *out, size_t len, char *why, size_t whylen)
{
	char dir[PATH_MAX], cand[3][PATH_MAX + 32];
	size_t ncand = 0;
	int ret;

	if (opt) {
		ret = library_usable(opt);
		if (!ret)
			ret = library_take(opt, out, len);
		if (ret)
			snprintf(why, whylen, "--lib %s: %s", opt,
				 ret == -EINVAL ? "LD_PRELOAD cannot carry a path with a space or a colon"
						: library_problem(ret));
		return ret;
	}
	if (!exe_dir(dir, sizeof(dir))) {
		snprintf(cand[ncand++], sizeof(cand[0]), "%s/%s", dir, UW_LIB_NAME);
		snprintf(cand[ncand++], sizeof(cand[0]), "%s/../lib/udpweave/%s", dir, UW_LIB_NAME);
	}
	snprintf(cand[ncand++], sizeof(cand[0]), "%s/%s", UW_LIBDIR, UW_LIB_NAME);
	for (size_t i = 0; i < ncand; i++)
		if (!library_usable(cand[i]) && !library_take(cand[i], out, len))
			return 0;
	snprintf(why, whylen, "cannot find %s (looked in %s%s%s); give its path with --lib",
		 UW_LIB_NAME, ncand > 1 ? dir : UW_LIBDIR, ncand > 1 ? ", ../lib/udpweave, " : "",
		 ncand > 1 ? UW_LIBDIR : "");
	return -ENOENT;
}

/* 1536 -> "1.5 KiB" */
void uw_fmt_bytes(char *buf, size_t len, double bytes)
{
	static const char *const unit[] = { "B", "KiB", "MiB", "GiB", "TiB", "PiB" };
	size_t u = 0;

	while (bytes >= 1024 && u + 1 < UW_ARRAY_SIZE(unit)) {
		bytes /= 1024;
		u++;
	}
	if (u)
		snprintf(buf, len, "%.1f %s", bytes, unit[u]);
	else
		snprintf(buf, len, "%.0f B", bytes);
}

/* What a missing value looks like: an en dash where the locale can show it. */
const char *uw_dash(void)
{
	const char *cs = nl_langinfo(CODESET);

	return cs && !strcmp(cs, "UTF-8") ? "\u2013" : "-";
}

/* A whole small file into buf (NUL-terminated); -EFBIG when it does not fit. */
int uw_read_file(const char *path, char *buf, size_t cap, size_t *len)
{
	size_t n = 0;
	ssize_t r;
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);

	if (fd < 0)
		return -errno;
	while ((r = read(fd, buf + n, cap - 1 - n)) > 0)
		n += (size_t)r;
	close(fd);
	if (r < 0)
		return -EIO;
	if (n == cap - 1)
		return -EFBIG;
	buf[n] = '\0';
	*len = n;
	return 0;
}
