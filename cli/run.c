/* SPDX-License-Identifier: MIT */
/*
 * udpweave run [OPTIONS] [--] CMD ARGS...: CMD under the library.
 *
 * Every option is checked before anything starts: bad input is one line
 * and exit status 2, never a half-started child. Then CMD runs with
 * LD_PRELOAD and the UDPWEAVE_* variables set, SIGINT, SIGTERM and SIGHUP
 * are passed on to it, its exit status becomes ours (128 + signal when a
 * signal killed it), and the stats it wrote at exit are summed up.
 *
 * For the summary the library writes into a private directory
 * (UDPWEAVE_STATS=DIR/stats.%p.json): the file of CMD's pid is CMD's own,
 * any other is a process CMD forked.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "json.h"

#define MAX_ENV		8
#define STATS_FILE_MAX	(64 * 1024)

static const char run_usage_head[] =
	"usage: udpweave run [OPTIONS] [--] CMD [ARGS...]\n"
	"\n"
	"Run CMD with its UDP sends batched by libudpweave.so (LD_PRELOAD), return\n"
	"its exit status, and print a summary of what the library did on stderr.\n"
	"\n";
static const char run_usage[] =
	"  --max-delay-us N     longest a datagram may wait, 0..10000000 (default 2000)\n"
	"  --interval-us N      flush on a fixed grid of N us, 1..10000000\n"
	"  --arena-kb N         staging memory, 256..1048576 KiB (default 4096)\n"
	"  --rules R            per-destination metrics (UDPWEAVE_RULES)\n"
	"  --stats FILE|-       write the stats JSON to FILE (%p: the pid; a forked\n"
	"                       child writes FILE.PID), '-' to stdout, 'stderr' to\n"
	"                       stderr, instead of printing the summary\n"
	"  --summary            print the summary with --stats too\n"
	"  --log LEVEL          error, warn, info or debug (default warn)\n"
	"  --lib PATH           the library to preload (default: next to this program,\n"
	"                       then ../lib/udpweave, then " UW_LIBDIR ")\n"
	"  -h, --help           this text\n"
	"\n"
	"Options left out keep the UDPWEAVE_* value already in the environment.\n"
	"Exit status: CMD's; 128+N if signal N killed it; 126 or 127 if it could not\n"
	"be run; 2 for bad options (CMD is then never started).\n";

enum stats_mode {
	STATS_SUMMARY,		/* private directory, summary on stderr */
	STATS_STDOUT,		/* private directory, JSON on stdout */
	STATS_STDERR,		/* private directory, JSON on stderr */
	STATS_FILE,		/* the library writes where the user said */
};

struct env_var {
	const char *name;
	const char *value;
};

struct run_opts {
	struct env_var env[MAX_ENV];
	size_t nenv;
	enum stats_mode mode;
	bool summary;
	const char *lib_opt;
	char lib[PATH_MAX];
	char stats_tmpl[PATH_MAX];	/* UDPWEAVE_STATS: file, or DIR/stats.%p.json */
	char tmpdir[PATH_MAX - 64];	/* the private directory, if any */
	char **cmd;
};

struct child {
	pid_t pid;
	int status;
	struct timespec start;		/* coarse wall clock: file times compare */
};

static volatile pid_t child_pid;

/* ------------------------------------------------------------- options */

struct numeric_option {
	int val;
	const char *env;
	uint32_t lo, hi;
	const char *unit;
};

enum {
	OPT_BACKEND = 256, OPT_MAX_DELAY, OPT_INTERVAL, OPT_ARENA, OPT_RULES,
	OPT_STATS, OPT_SUMMARY, OPT_LOG, OPT_LIB,
};

static const struct numeric_option numeric_options[] = {
	{ OPT_MAX_DELAY, "UDPWEAVE_MAX_DELAY_US", 0,   10000000, "microseconds" },
	{ OPT_INTERVAL,  "UDPWEAVE_INTERVAL_US",  1,   10000000, "microseconds" },
	{ OPT_ARENA,     "UDPWEAVE_ARENA_KB",     256, 1048576,  "KiB" },
};

static const struct option run_longopts[] = {
	{ "backend",      required_argument, NULL, OPT_BACKEND },
	{ "max-delay-us", required_argument, NULL, OPT_MAX_DELAY },
	{ "interval-us",  required_argument, NULL, OPT_INTERVAL },
	{ "arena-kb",     required_argument, NULL, OPT_ARENA },
	{ "rules",        required_argument, NULL, OPT_RULES },
	{ "stats",        required_argument, NULL, OPT_STATS },
	{ "summary",      no_argument,       NULL, OPT_SUMMARY },
	{ "log",          required_argument, NULL, OPT_LOG },
	{ "lib",          required_argument, NULL, OPT_LIB },
	{ "help",         no_argument,       NULL, 'h' },
	{ NULL, 0, NULL, 0 },
};

static const char *long_name(int val)
{
	for (const struct option *o = run_longopts; o->name; o++)
		if (o->val == val)
			return o->name;
	return "?";
}

static void set_env(struct run_opts *o, const char *name, const char *value)
{
	for (size_t i = 0; i < o->nenv; i++) {
		if (!strcmp(o->env[i].name, name)) {
			o->env[i].value = value;
			return;
		}
	}
	o->env[o->nenv++] = (struct env_var){ name, value };
}

static int take_numeric(struct run_opts *o, int val, const char *arg)
{
	for (size_t i = 0; i < UW_ARRAY_SIZE(numeric_options); i++) {
		const struct numeric_option *n = &numeric_options[i];
		uint32_t v;

		if (n->val != val)
			continue;
		if (uw_parse_u32(arg, n->lo, n->hi, &v))
			return uw_usage_error("run", "--%s %s: expected %s, %u..%u", long_name(val),
					      arg, n->unit, n->lo, n->hi);
		set_env(o, n->env, arg);
		return 0;
	}
	return uw_usage_error("run", "internal: option %d", val);
}

static int take_log_level(struct run_opts *o, const char *arg)
{
	static const char *const levels[] = { "error", "warn", "info", "debug" };

	for (size_t i = 0; i < UW_ARRAY_SIZE(levels); i++) {
		if (!strcmp(arg, levels[i])) {
			set_env(o, "UDPWEAVE_LOG", arg);
			return 0;
		}
	}
	return uw_usage_error("run", "--log %s: expected error, warn, info or debug", arg);
}

/* The directory a stats file goes to must exist and take new files. */
static int check_stats_dir(const char *path)
{
	char dir[PATH_MAX];
	char *slash;
	struct stat st;

	snprintf(dir, sizeof(dir), "%s", path);
	slash = strrchr(dir, '/');
	if (slash == dir)
		slash[1] = '\0';
	else
		*slash = '\0';
	if (strstr(dir, "%p"))
		return 0;	/* one directory per process: the library's business */
	if (stat(dir, &st))
		return uw_usage_error("run", "--stats %s: directory %s: %s", path, dir,
				      strerror(errno));
	if (!S_ISDIR(st.st_mode))
		return uw_usage_error("run", "--stats %s: %s is not a directory", path, dir);
	if (access(dir, W_OK | X_OK))
		return uw_usage_error("run", "--stats %s: directory %s is not writable", path, dir);
	/* the library renames a new file over the path: never over a device */
	if (!strstr(path, "%p") && !lstat(path, &st) && !S_ISREG(st.st_mode))
		return uw_usage_error("run", "--stats %s: exists and is not a regular file (the stats file replaces it)",
				      path);
	return 0;
}

/* FILE made absolute (the library resolves it in CMD's working directory,
 * which CMD may change), its directory checked. */
static int take_stats(struct run_opts *o, const char *arg)
{
	char cwd[PATH_MAX];
	int w;

	if (!strcmp(arg, "-")) {
		o->mode = STATS_STDOUT;
		return 0;
	}
	if (!strcmp(arg, "stderr")) {
		o->mode = STATS_STDERR;
		return 0;
	}
	if (!*arg)
		return uw_usage_error("run", "--stats: expected a file name or '-'");
	if (arg[0] == '/')
		w = snprintf(o->stats_tmpl, sizeof(o->stats_tmpl), "%s", arg);
	else if (getcwd(cwd, sizeof(cwd)))
		w = snprintf(o->stats_tmpl, sizeof(o->stats_tmpl), "%s/%s", cwd, arg);
	else
		return uw_usage_error("run", "--stats %s: cannot resolve the current directory: %s",
				      arg, strerror(errno));
	if (w < 0 || (size_t)w >= sizeof(o->stats_tmpl) - 32)
		return uw_usage_error("run", "--stats %s: path too long", arg);
	o->mode = STATS_FILE;
	return check_stats_dir(o->stats_tmpl);
}

static int take_option(struct run_opts *o, int c, const char *arg, char **argv)
{
	switch (c) {
	case OPT_BACKEND:
		if (uw_check_backend_option("run", arg))
			return UW_EXIT_USAGE;
		set_env(o, "UDPWEAVE_BACKEND", arg);
		return 0;
	case OPT_MAX_DELAY:
	case OPT_INTERVAL:
	case OPT_ARENA:
		return take_numeric(o, c, arg);
	case OPT_RULES:
		if (!*arg)
			return uw_usage_error("run", "--rules: expected destination rules");
		set_env(o, "UDPWEAVE_RULES", arg);
		return 0;
	case OPT_STATS:
		return take_stats(o, arg);
	case OPT_SUMMARY:
		o->summary = true;
		return 0;
	case OPT_LOG:
		return take_log_level(o, arg);
	case OPT_LIB:
		o->lib_opt = arg;
		return 0;
	default:
		return uw_option_error("run", c, argv);
	}
}

/* -1: go on and run; else the exit status (help, or bad input). */
static int parse_run_options(int argc, char **argv, struct run_opts *o)
{
	char why[PATH_MAX + 256];
	int c, ret;

	opterr = 0;
	/* '+': the first word that is not an option is CMD */
	while ((c = getopt_long(argc, argv, "+:h", run_longopts, NULL)) != -1) {
		if (c == 'h') {
			fputs(run_usage_head, stdout);
			uw_backend_help(stdout, "--backend B", "auto");
			fputs(run_usage, stdout);
			return UW_EXIT_OK;
		}
		ret = take_option(o, c, optarg, argv);
		if (ret)
			return ret;
	}
	if (optind >= argc)
		return uw_usage_error("run", "missing CMD to run");
	o->cmd = argv + optind;
	if (uw_find_library(o->lib_opt, o->lib, sizeof(o->lib), why, sizeof(why))) {
		uw_err("%s", why);
		return UW_EXIT_USAGE;
	}
	return -1;
}

/* ------------------------------------------------------------- environment */

static bool is_sanitizer_runtime(const char *path)
{
	static const char *const names[] = { "libasan", "libtsan", "libubsan", "liblsan",
					     "libhwasan", "libclang_rt." };
	const char *base = strrchr(path, '/');

	base = base ? base + 1 : path;
	for (size_t i = 0; i < UW_ARRAY_SIZE(names); i++)
		if (!strncmp(base, names[i], strlen(names[i])))
			return true;
	return false;
}

static void append_word(char *out, const char *w, size_t wlen)
{
	size_t n = strlen(out);

	if (n)
		out[n++] = ':';
	memcpy(out + n, w, wlen);
	out[n + wlen] = '\0';
}

/*
 * The library in front of what LD_PRELOAD already holds, except that a
 * sanitizer runtime must stay first (it refuses to run otherwise).
 */
static char *compose_preload(const char *lib, const char *old)
{
	size_t cap = strlen(lib) + (old ? strlen(old) : 0) + 4;
	char *out = malloc(cap);

	if (!out)
		return NULL;
	out[0] = '\0';
	for (int pass = 0; pass < 2; pass++) {
		const char *p = old ? old : "";

		if (pass == 1)
			append_word(out, lib, strlen(lib));
		while (*p) {
			size_t len = strcspn(p, " :\t");
			char word[PATH_MAX];

			if (len && len < sizeof(word)) {
				memcpy(word, p, len);
				word[len] = '\0';
				if (is_sanitizer_runtime(word) == !pass && strcmp(word, lib))
					append_word(out, word, len);
			}
			p += len;
			p += strspn(p, " :\t");
		}
	}
	return out;
}

/* In the child, between fork and exec. */
static int child_environment(const struct run_opts *o)
{
	char *preload = compose_preload(o->lib, getenv("LD_PRELOAD"));

	if (!preload || setenv("LD_PRELOAD", preload, 1))
		return -ENOMEM;
	free(preload);
	for (size_t i = 0; i < o->nenv; i++)
		if (setenv(o->env[i].name, o->env[i].value, 1))
			return -ENOMEM;
	if (setenv("UDPWEAVE_STATS", o->stats_tmpl, 1))
		return -ENOMEM;
	return 0;
}

/* ------------------------------------------------------------- the child */

static const int forwarded_signals[] = { SIGINT, SIGTERM, SIGHUP };

/*
 * Pass the signal on. A ^C typed at the terminal (SIGINT from the kernel)
 * already went to the whole foreground process group, CMD included.
 */
static void forward_signal(int sig, siginfo_t *si, void *ctx)
{
	int saved = errno;

	if (child_pid > 0 && !(sig == SIGINT && si->si_code == SI_KERNEL))
		kill(child_pid, sig);
	errno = saved;
}

static void install_forwarding(void)
{
	struct sigaction sa = { .sa_sigaction = forward_signal, .sa_flags = SA_SIGINFO };

	sigemptyset(&sa.sa_mask);
	for (size_t i = 0; i < UW_ARRAY_SIZE(forwarded_signals); i++)
		sigaction(forwarded_signals[i], &sa, NULL);
}

static void block_forwarded(sigset_t *old)
{
	sigset_t set;

	sigemptyset(&set);
	for (size_t i = 0; i < UW_ARRAY_SIZE(forwarded_signals); i++)
		sigaddset(&set, forwarded_signals[i]);
	sigprocmask(SIG_BLOCK, &set, old);
}

static void restore_default_signals(const sigset_t *old)
{
	for (size_t i = 0; i < UW_ARRAY_SIZE(forwarded_signals); i++)
		signal(forwarded_signals[i], SIG_DFL);
	sigprocmask(SIG_SETMASK, old, NULL);
}

/* The child: environment, exec; on failure its errno through the pipe. */
static __attribute__((noreturn)) void child_exec(const struct run_opts *o, int errfd,
						 const sigset_t *old)
{
	int err;

	restore_default_signals(old);
	err = -child_environment(o);
	if (!err) {
		execvp(o->cmd[0], o->cmd);
		err = errno;
	}
	while (write(errfd, &err, sizeof(err)) < 0 && errno == EINTR)
		;
	_exit(127);
}

/* 0 once CMD is running; else the errno of its failed exec. */
static int exec_result(int errfd)
{
	ssize_t n;
	int err;

	do
		n = read(errfd, &err, sizeof(err));
	while (n < 0 && errno == EINTR);
	return n == (ssize_t)sizeof(err) ? err : 0;
}

static int wait_child(struct child *c)
{
	pid_t r;

	do
		r = waitpid(c->pid, &c->status, 0);
	while (r < 0 && errno == EINTR);
	return r < 0 ? -errno : 0;
}

/* Like a shell: 127 when CMD is not found, 126 when it is there but not runnable. */
static int report_exec_failure(const char *cmd, int err)
{
	uw_err("cannot run '%s': %s", cmd, strerror(err));
	return err == ENOENT || err == ENOTDIR ? 127 : 126;
}

static int start_child(const struct run_opts *o, struct child *c)
{
	int pipefd[2], err;
	sigset_t old;

	if (pipe2(pipefd, O_CLOEXEC)) {
		uw_err("cannot start '%s': pipe: %s", o->cmd[0], strerror(errno));
		return UW_EXIT_USAGE;
	}
	install_forwarding();
	block_forwarded(&old);
	clock_gettime(CLOCK_REALTIME_COARSE, &c->start);
	fflush(NULL);
	c->pid = fork();
	if (c->pid == 0) {
		close(pipefd[0]);
		child_exec(o, pipefd[1], &old);
	}
	err = errno;
	child_pid = c->pid;
	sigprocmask(SIG_SETMASK, &old, NULL);
	close(pipefd[1]);
	if (c->pid < 0) {
		close(pipefd[0]);
		uw_err("cannot start '%s': fork: %s", o->cmd[0], strerror(err));
		return UW_EXIT_USAGE;
	}
	err = exec_result(pipefd[0]);
	close(pipefd[0]);
	if (err) {
		wait_child(c);
		return report_exec_failure(o->cmd[0], err);
	}
	return -1;
}

static int exit_status_of(int status)
{
	if (WIFEXITED(status))
		return WEXITSTATUS(status);
	if (WIFSIGNALED(status))
		return 128 + WTERMSIG(status);
	return UW_EXIT_FAIL;
}

/* ------------------------------------------------------------- the stats files */

struct stats_files {
	struct uw_json *main;		/* CMD's own, or NULL */
	char *main_text;		/* as written */
	struct uw_others others;	/* processes it forked */
	size_t unreadable;
};

static void expand_pid(const char *tmpl, pid_t pid, char *out, size_t len)
{
	size_t n = 0;

	for (const char *p = tmpl; *p && n + 1 < len; p++) {
		if (p[0] == '%' && p[1] == 'p') {
			n += (size_t)snprintf(out + n, len - n, "%d", (int)pid);
			p++;
			continue;
		}
		out[n++] = *p;
	}
	out[n < len ? n : len - 1] = '\0';
}

static bool written_since(const struct stat *st, const struct timespec *t)
{
	if (st->st_mtim.tv_sec != t->tv_sec)
		return st->st_mtim.tv_sec > t->tv_sec;
	return st->st_mtim.tv_nsec >= t->tv_nsec;
}

/* A stats file written during this run, parsed; -ENOENT if none. */
static int load_stats(const char *path, const struct timespec *since, struct uw_json **out,
		      char **text)
{
	struct stat st;
	size_t len;
	char *buf;
	int ret;

	if (lstat(path, &st))
		return -errno;
	if (!S_ISREG(st.st_mode) || !written_since(&st, since))
		return -ENOENT;
	buf = malloc(STATS_FILE_MAX);
	*out = calloc(1, sizeof(**out));
	ret = buf && *out ? uw_read_file(path, buf, STATS_FILE_MAX, &len) : -ENOMEM;
	if (!ret && uw_json_parse(*out, buf, len))
		ret = -EINVAL;
	if (ret || !text) {
		free(buf);
		buf = NULL;
	}
	if (ret) {
		free(*out);
		*out = NULL;
	}
	if (text)
		*text = buf;
	return ret;
}

/* Does name match prefix DIGITS suffix, with a pid other than main's? */
static bool other_process_file(const char *name, const char *prefix, const char *suffix,
			       pid_t main_pid)
{
	size_t pl = strlen(prefix), sl = strlen(suffix), nl = strlen(name), dl;
	pid_t pid;
	char digits[16];

	if (nl <= pl + sl || strncmp(name, prefix, pl) || strcmp(name + nl - sl, suffix))
		return false;
	dl = nl - pl - sl;
	if (dl >= sizeof(digits))
		return false;
	memcpy(digits, name + pl, dl);
	digits[dl] = '\0';
	return !uw_parse_pid(digits, &pid) && pid != main_pid;
}

/*
 * The files of the other processes: the template with %p, or without one
 * the path plus ".PID" (where the library puts a forked child's).
 */
static void load_others(const char *tmpl, pid_t main_pid, const struct timespec *since,
			struct stats_files *sf)
{
	char dir[PATH_MAX], prefix[NAME_MAX + 2], suffix[NAME_MAX + 1], path[PATH_MAX + NAME_MAX];
	const char *base = strrchr(tmpl, '/') + 1, *pct = strstr(base, "%p");
	struct dirent *de;
	DIR *d;

	snprintf(dir, sizeof(dir), "%.*s", (int)(base - tmpl), tmpl);
	if (strstr(dir, "%p"))
		return;
	if (pct) {
		snprintf(prefix, sizeof(prefix), "%.*s", (int)(pct - base), base);
		snprintf(suffix, sizeof(suffix), "%s", pct + 2);
	} else {
		snprintf(prefix, sizeof(prefix), "%s.", base);
		suffix[0] = '\0';
	}
	d = opendir(dir);
	if (!d)
		return;
	while ((de = readdir(d))) {
		struct uw_json *j;

		if (!other_process_file(de->d_name, prefix, suffix, main_pid))
			continue;
		snprintf(path, sizeof(path), "%s%s", dir, de->d_name);
		if (load_stats(path, since, &j, NULL)) {
			sf->unreadable++;
			continue;
		}
		uw_summary_add_other(&sf->others, j);
		free(j);
	}
	closedir(d);
}

static void load_stats_files(const struct run_opts *o, const struct child *c,
			     struct stats_files *sf)
{
	char path[PATH_MAX + 16];

	expand_pid(o->stats_tmpl, c->pid, path, sizeof(path));
	if (load_stats(path, &c->start, &sf->main, &sf->main_text) == -EINVAL)
		uw_err("%s: not a stats JSON object", path);
	load_others(o->stats_tmpl, c->pid, &c->start, sf);
}

static void free_stats_files(struct stats_files *sf)
{
	free(sf->main);
	free(sf->main_text);
}

/* ------------------------------------------------------------- reporting */

static void describe_status(const struct child *c, char *buf, size_t len)
{
	if (WIFEXITED(c->status))
		snprintf(buf, len, "exited with status %d", WEXITSTATUS(c->status));
	else if (WIFSIGNALED(c->status))
		snprintf(buf, len, "was killed by signal %d (SIG%s)", WTERMSIG(c->status),
			 sigabbrev_np(WTERMSIG(c->status)) ? sigabbrev_np(WTERMSIG(c->status)) : "?");
	else
		snprintf(buf, len, "stopped");
}

static void explain_missing_stats(const struct run_opts *o, const struct child *c)
{
	if (WIFSIGNALED(c->status))
		uw_err("%s wrote no stats: a signal killed it before it could (datagrams still queued were lost)",
		       o->cmd[0]);
	else
		uw_err("%s wrote no stats: it never loaded the library (a static or set-user-ID program?), or the library was inactive (UDPWEAVE_DISABLE=1, or a bad UDPWEAVE_* value)",
		       o->cmd[0]);
}

static void print_summary(const struct run_opts *o, const struct child *c,
			  const struct stats_files *sf)
{
	char how[64];

	describe_status(c, how, sizeof(how));
	fprintf(stderr, "udpweave: %s (pid %d) %s\n", o->cmd[0], (int)c->pid, how);
	if (sf->main)
		uw_summary_print(stderr, sf->main, NULL);
	else
		explain_missing_stats(o, c);
	uw_summary_print_others(stderr, &sf->others);
	if (sf->unreadable)
		uw_err("%zu stats files of other processes could not be read", sf->unreadable);
}

static void print_json(FILE *f, const char *text)
{
	size_t n = strlen(text);

	while (n && strchr(" \t\r\n", text[n - 1]))
		n--;
	fprintf(f, "%.*s\n", (int)n, text);
	fflush(f);
}

static void report(const struct run_opts *o, const struct child *c)
{
	struct stats_files sf = { 0 };
	bool want_summary = o->mode == STATS_SUMMARY || o->summary;

	if (o->mode == STATS_FILE && !want_summary)
		return;
	load_stats_files(o, c, &sf);
	if (o->mode == STATS_STDOUT || o->mode == STATS_STDERR) {
		if (sf.main_text)
			print_json(o->mode == STATS_STDOUT ? stdout : stderr, sf.main_text);
		else
			explain_missing_stats(o, c);
		if (sf.others.n)
			uw_err("%zu processes %s forked wrote stats too (not shown: use --stats FILE to keep them)",
			       sf.others.n, o->cmd[0]);
	}
	if (want_summary)
		print_summary(o, c, &sf);
	free_stats_files(&sf);
}

/* ------------------------------------------------------------- private directory */

static int make_private_dir(struct run_opts *o)
{
	const char *tmp = getenv("TMPDIR");

	if (!tmp || tmp[0] != '/' || strlen(tmp) > sizeof(o->tmpdir) - 32)
		tmp = "/tmp";
	snprintf(o->tmpdir, sizeof(o->tmpdir), "%s/udpweave.XXXXXX", tmp);
	if (!mkdtemp(o->tmpdir)) {
		uw_err("cannot create a directory for the stats in %s: %s", tmp, strerror(errno));
		o->tmpdir[0] = '\0';
		return -errno;
	}
	snprintf(o->stats_tmpl, sizeof(o->stats_tmpl), "%s/stats.%%p.json", o->tmpdir);
	return 0;
}

static void remove_private_dir(const struct run_opts *o)
{
	struct dirent *de;
	DIR *d;
	int dfd;

	if (!o->tmpdir[0])
		return;
	d = opendir(o->tmpdir);
	if (d) {
		dfd = dirfd(d);
		while ((de = readdir(d)))
			if (strcmp(de->d_name, ".") && strcmp(de->d_name, ".."))
				unlinkat(dfd, de->d_name, 0);
		closedir(d);
	}
	rmdir(o->tmpdir);
}

/* ------------------------------------------------------------- run */

int cmd_run(int argc, char **argv)
{
	struct run_opts o = { .mode = STATS_SUMMARY };
	struct child c = { 0 };
	int ret;

	ret = parse_run_options(argc, argv, &o);
	if (ret >= 0)
		return ret;
	if (o.mode != STATS_FILE && make_private_dir(&o))
		return UW_EXIT_USAGE;
	ret = start_child(&o, &c);
	if (ret >= 0) {
		remove_private_dir(&o);
		return ret;
	}
	if (wait_child(&c)) {
		uw_err("lost track of '%s' (pid %d): %s", o.cmd[0], (int)c.pid, strerror(errno));
		remove_private_dir(&o);
		return UW_EXIT_FAIL;
	}
	child_pid = 0;
	for (size_t i = 0; i < UW_ARRAY_SIZE(forwarded_signals); i++)
		signal(forwarded_signals[i], SIG_DFL);
	signal(SIGPIPE, SIG_IGN);
	report(&o, &c);
	remove_private_dir(&o);
	return exit_status_of(c.status);
}
