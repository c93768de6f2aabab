/* SPDX-License-Identifier: MIT */
/* udpweave: run a program under the UDP batching library, check the host,
 * show live counters. One subcommand per file: run.c, check.c, stats.c. */
#include <locale.h>
#include <stdio.h>
#include <string.h>

#include "cli.h"

static const char main_usage[] =
	"usage: udpweave COMMAND [ARGS...]\n"
	"\n"
	"Batch the UDP sends of an unmodified program (an LD_PRELOAD library).\n"
	"\n"
	"  run [OPTIONS] [--] CMD ARGS...   run CMD under the library, print a summary\n"
	"  check [--backend B]              what this host supports, OK/NO per item\n"
	"  stats PID [--watch] [--json]     live counters of a process running under it\n"
	"\n"
	"  -h, --help      this text ('udpweave COMMAND --help' for a command)\n"
	"  -V, --version   the version\n"
	"\n"
	"See udpweave(1) and udpweave(7).\n";

struct subcommand {
	const char *name;
	int (*fn)(int argc, char **argv);
};

static const struct subcommand subcommands[] = {
	{ "run",   cmd_run   },
	{ "check", cmd_check },
	{ "stats", cmd_stats },
};

int main(int argc, char **argv)
{
	const char *cmd = argc > 1 ? argv[1] : NULL;

	setlocale(LC_CTYPE, "");
	if (!cmd)
		return uw_usage_error(NULL, "missing command: run, check or stats");
	if (!strcmp(cmd, "-h") || !strcmp(cmd, "--help") || !strcmp(cmd, "help")) {
		fputs(main_usage, stdout);
		return UW_EXIT_OK;
	}
	if (!strcmp(cmd, "-V") || !strcmp(cmd, "--version")) {
		printf("udpweave %s\n", UW_VERSION);
		return UW_EXIT_OK;
	}
	for (size_t i = 0; i < UW_ARRAY_SIZE(subcommands); i++)
		if (!strcmp(cmd, subcommands[i].name))
			return subcommands[i].fn(argc - 1, argv + 1);
	if (cmd[0] == '-')
		return uw_usage_error(NULL, "unknown option '%s'", cmd);
	return uw_usage_error(NULL, "unknown command '%s': run, check or stats", cmd);
}
