/* SPDX-License-Identifier: MIT */
/*
 * The udpweave command-line tool: shared helpers of its subcommands
 * (run, check, stats). Helpers return 0 or -errno; only the subcommand
 * entry points turn results into exit statuses.
 */
#ifndef UW_CLI_H
#define UW_CLI_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>

#ifndef UW_VERSION
#define UW_VERSION "0.1.0"
#endif

/* Where `make install` puts the library; see uw_find_library(). */
#ifndef UW_LIBDIR
#define UW_LIBDIR "/usr/local/lib/udpweave"
#endif

#define UW_LIB_NAME	"libudpweave.so"
#define UW_ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

enum uw_exit {
	UW_EXIT_OK	= 0,
	UW_EXIT_FAIL	= 1,	/* the thing asked about is not there */
	UW_EXIT_USAGE	= 2,	/* bad input: nothing was started */
};

/* The backends the library knows by name: the one list that --backend,
 * the help of run and check, and check's verdicts are made from. */
struct uw_backend_name {
	const char *name;
	const char *help;	/* one line of --help */
	bool txtime;		/* attaches departure times (SCM_TXTIME) */
};

extern const struct uw_backend_name uw_backend_names[];
extern const size_t uw_backend_count;

int cmd_run(int argc, char **argv);
int cmd_check(int argc, char **argv);
int cmd_stats(int argc, char **argv);

/* util.c */
void uw_err(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
int uw_usage_error(const char *cmd, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
int uw_option_error(const char *cmd, int c, char **argv);
int uw_parse_u32(const char *s, uint32_t lo, uint32_t hi, uint32_t *out);
int uw_parse_pid(const char *s, pid_t *out);
const struct uw_backend_name *uw_backend_lookup(const char *name);
int uw_check_backend_option(const char *cmd, const char *name);
void uw_backend_help(FILE *f, const char *option, const char *dflt);
int uw_find_library(const char *opt, char *out, size_t len, char *why, size_t whylen);
void uw_fmt_bytes(char *buf, size_t len, double bytes);
const char *uw_dash(void);
int uw_read_file(const char *path, char *buf, size_t cap, size_t *len);

/* summary.c: the human form of a stats object */
struct uw_json;
struct uw_rates {
	const struct uw_json *prev;	/* earlier sample of the same process */
	double secs;			/* time between the two */
};
void uw_summary_print(FILE *f, const struct uw_json *j, const struct uw_rates *r);
struct uw_others {
	size_t n;
	uint64_t datagrams_in, datagrams_out, bytes_out, syscalls;
};
void uw_summary_add_other(struct uw_others *o, const struct uw_json *j);
void uw_summary_print_others(FILE *f, const struct uw_others *o);

#endif
