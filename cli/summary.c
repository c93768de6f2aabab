/* SPDX-License-Identifier: MIT */
/*
 * The human form of a stats object, one counter per line:
 *   "  datagrams out:            12000  [rate]  [note]"
 * Exact integers (a script may compare them with the JSON), a rate per
 * second when an earlier sample is given, a dash for a key this version
 * of the library does not report.
 */
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "json.h"

enum row_kind { ROW_COUNT, ROW_BYTES, ROW_US };

struct row {
	const char *label;
	const char *key;	/* NULL: computed by fill */
	enum row_kind kind;
	bool rate;
	/* the note (and, for computed rows, the value); false: value missing */
	bool (*fill)(const struct uw_json *j, uint64_t *value, char *note, size_t len);
};

struct out {
	FILE *f;
	const struct uw_json *j;
	const struct uw_rates *r;
};

/* "name N, name N" of the non-zero members of an object; their sum. */
static bool sum_members(const struct uw_json *j, const char *obj, uint64_t *sum,
			char *note, size_t len)
{
	size_t n = 0;
	bool found = uw_json_find(j, obj) != NULL;
	const char *name;

	*sum = 0;
	if (len)
		note[0] = '\0';
	for (size_t i = 0; i < j->n; i++) {
		const struct uw_json_value *v = &j->v[i];
		uint64_t u;

		if (!uw_json_is_child(v, obj, &name) || !uw_json_u64(j, v->key, &u))
			continue;
		*sum += u;
		if (u && n < len)
			n += (size_t)snprintf(note + n, len - n, "%s%s %llu", n ? ", " : "",
					      name, (unsigned long long)u);
	}
	return found;
}

static bool fill_syscalls(const struct uw_json *j, uint64_t *value, char *note, size_t len)
{
	uint64_t out, sync = 0;

	if (!uw_json_u64(j, "syscalls", value))
		return false;
	uw_json_u64(j, "sync_datagrams", &sync);	/* went out by the app's own calls */
	if (*value && uw_json_u64(j, "datagrams_out", &out) && out >= sync)
		snprintf(note, len, "%.1f datagrams per syscall",
			 (double)(out - sync) / (double)*value);
	return true;
}

/* Segments per run is datagrams per GSO run: gso_segments / gso_runs (the
 * library's segments_per_run.mean is per message, single datagrams
 * included); that mean only when there were no GSO runs to divide by. */
static bool fill_gso_runs(const struct uw_json *j, uint64_t *value, char *note, size_t len)
{
	uint64_t segs, max;
	double mean;
	bool have_mean, have_max;

	if (!uw_json_u64(j, "gso_runs", value))
		return false;
	if (*value && uw_json_u64(j, "gso_segments", &segs)) {
		mean = (double)segs / (double)*value;
		have_mean = true;
	} else {
		have_mean = uw_json_num(j, "segments_per_run.mean", &mean);
	}
	have_max = uw_json_u64(j, "segments_per_run.max", &max);
	if (!have_max)
		have_max = uw_json_u64(j, "segments_max", &max);
	if (have_mean || have_max) {
		char m[32] = "", x[32] = "";

		if (have_mean)
			snprintf(m, sizeof(m), "%.2f", mean);
		if (have_max)
			snprintf(x, sizeof(x), "%llu", (unsigned long long)max);
		snprintf(note, len, "segments per run: mean %s, max %s",
			 have_mean ? m : uw_dash(), have_max ? x : uw_dash());
	}
	return true;
}

static bool fill_flushes(const struct uw_json *j, uint64_t *value, char *note, size_t len)
{
	return sum_members(j, "flushes_by_reason", value, note, len);
}

/* Every fallback of every backend: the core's (fallbacks, or fallbacks_gso
 * from a library without it), packet's fallback_datagrams by reason, and
 * uring's batches sent by mmsg, ring failures and copied zero-copy sends. */
static const struct fallback_source {
	const char *key;	/* an object: its members are summed */
	const char *prefix;	/* of the note's names */
} fallback_objects[] = {
	{ "fallbacks", "" },
	{ "backend_counters.packet.fallback_datagrams", "packet " },
};
static const struct fallback_source fallback_counts[] = {
	{ "backend_counters.uring.mmsg_batches", "uring mmsg_batches" },
	{ "backend_counters.uring.ring_failures", "uring ring_failures" },
	{ "backend_counters.uring.zc_copied", "uring zc_copied" },
};

static void note_append(char *note, size_t len, const char *prefix, const char *part)
{
	size_t n = strlen(note);

	if (part[0] && n < len)
		snprintf(note + n, len - n, "%s%s%s", n ? ", " : "", prefix, part);
}

static bool fill_fallbacks(const struct uw_json *j, uint64_t *value, char *note, size_t len)
{
	char part[256], count[64];
	bool found = false;
	uint64_t sum;

	*value = 0;
	if (len)
		note[0] = '\0';
	for (size_t i = 0; i < UW_ARRAY_SIZE(fallback_objects); i++) {
		if (!sum_members(j, fallback_objects[i].key, &sum, part, sizeof(part)))
			continue;
		found = true;
		*value += sum;
		/* "packet local 9, packet above_mtu 1" */
		for (char *p = part, *end; *p; p = end) {
			end = p + strcspn(p, ",");
			snprintf(count, sizeof(count), "%.*s", (int)(end - p), p);
			note_append(note, len, fallback_objects[i].prefix, count);
			while (*end == ',' || *end == ' ')
				end++;
		}
	}
	if (!found && uw_json_u64(j, "fallbacks_gso", &sum)) {
		found = true;
		*value += sum;
	}
	for (size_t i = 0; i < UW_ARRAY_SIZE(fallback_counts); i++) {
		if (!uw_json_u64(j, fallback_counts[i].key, &sum))
			continue;
		found = true;
		*value += sum;
		if (sum) {
			snprintf(count, sizeof(count), " %llu", (unsigned long long)sum);
			note_append(note, len, fallback_counts[i].prefix, count);
		}
	}
	return found;
}

static bool fill_async_errors(const struct uw_json *j, uint64_t *value, char *note, size_t len)
{
	uint64_t sum;
	bool by_errno = sum_members(j, "async_errors_by_errno", &sum, note, len);

	if (uw_json_u64(j, "async_errors", value))
		return true;
	*value = sum;
	return by_errno;
}

static const struct row rows[] = {
	{ "datagrams in",	"datagrams_in",		ROW_COUNT, true, NULL },
	{ "bytes in",		"bytes_in",		ROW_BYTES, true, NULL },
	{ "datagrams out",	"datagrams_out",	ROW_COUNT, true, NULL },
	{ "bytes out",		"bytes_out",		ROW_BYTES, true, NULL },
	{ "datagrams dropped",	"datagrams_dropped",	ROW_COUNT, true, NULL },
	{ "passthrough calls",	"passthrough_calls",	ROW_COUNT, true, NULL },
	{ "sync sends",		"sync_calls",		ROW_COUNT, true, NULL },
	{ "syscalls",		NULL,			ROW_COUNT, true, fill_syscalls },
	{ "batches",		"batches",		ROW_COUNT, true, NULL },
	{ "GSO runs",		NULL,			ROW_COUNT, true, fill_gso_runs },
	{ "GSO segments",	"gso_segments",		ROW_COUNT, true, NULL },
	{ "flushes",		NULL,			ROW_COUNT, true, fill_flushes },
	{ "fallbacks",		NULL,			ROW_COUNT, true, fill_fallbacks },
	{ "retries",		"retries",		ROW_COUNT, true, NULL },
	{ "async errors",	NULL,			ROW_COUNT, true, fill_async_errors },
	{ "max queue delay",	"max_queue_delay_us",	ROW_US,    false, NULL },
	{ "max flush late",	"max_flush_thread_late_us", ROW_US, false, NULL },
	{ "arena high water",	"arena_high_water_bytes", ROW_BYTES, false, NULL },
};

static bool row_value(const struct row *row, const struct uw_json *j, uint64_t *v,
		      char *note, size_t len)
{
	note[0] = '\0';
	if (row->fill)
		return row->fill(j, v, note, len);
	return uw_json_u64(j, row->key, v);
}

/* "1234/s" or "12.3 Mbit/s" from the change since the earlier sample. */
static void row_rate(const struct out *o, const struct row *row, uint64_t now,
		     char *buf, size_t len)
{
	char ignored[8];
	uint64_t then;

	buf[0] = '\0';
	if (!o->r || !o->r->prev || !row->rate || o->r->secs <= 0)
		return;
	if (!row_value(row, o->r->prev, &then, ignored, 0) || then > now)
		return;		/* a new image of the process: counters restarted */
	if (row->kind == ROW_BYTES)
		snprintf(buf, len, "%.1f Mbit/s", (double)(now - then) * 8 / 1e6 / o->r->secs);
	else
		snprintf(buf, len, "%.0f/s", (double)(now - then) / o->r->secs);
}

static void print_line(const struct out *o, const char *label, const char *value,
		       const char *rate, const char *note)
{
	char l[40];

	snprintf(l, sizeof(l), "%s:", label);
	fprintf(o->f, "  %-20s %14s", l, value);
	if (o->r && o->r->prev && (rate[0] || note[0]))
		fprintf(o->f, "  %13s", rate);
	if (note[0])
		fprintf(o->f, "  (%s)", note);
	fputc('\n', o->f);
}

static void print_row(const struct out *o, const struct row *row)
{
	char value[32], rate[32] = "", note[256], human[32];
	uint64_t v;
	size_t n;

	if (!row_value(row, o->j, &v, note, sizeof(note))) {
		print_line(o, row->label, uw_dash(), "", "");
		return;
	}
	snprintf(value, sizeof(value), "%llu", (unsigned long long)v);
	row_rate(o, row, v, rate, sizeof(rate));
	if (row->kind == ROW_BYTES && v >= 1024 && !note[0]) {
		uw_fmt_bytes(human, sizeof(human), (double)v);
		snprintf(note, sizeof(note), "%s", human);
	} else if (row->kind == ROW_US) {
		n = strlen(value);
		snprintf(value + n, sizeof(value) - n, " us");
	}
	print_line(o, row->label, value, rate, note);
}

/* One line per group of backend_counters: "mmsg: sendmmsg_calls 40, ..." */
static void print_backend_counters(const struct out *o)
{
	const char *name;

	for (size_t i = 0; i < o->j->n; i++) {
		const struct uw_json_value *g = &o->j->v[i];
		char label[64], key[UW_JSON_KEY_MAX + 8], note[256];
		uint64_t sum;

		if (g->type != UW_JSON_OBJECT || !uw_json_is_child(g, "backend_counters", &name))
			continue;
		snprintf(key, sizeof(key), "%s", g->key);
		if (!sum_members(o->j, key, &sum, note, sizeof(note)) || !sum)
			continue;
		snprintf(label, sizeof(label), "%s counters:", name);
		fprintf(o->f, "  %-20s %s\n", label, note);
	}
}

void uw_summary_print(FILE *f, const struct uw_json *j, const struct uw_rates *r)
{
	const struct out o = { .f = f, .j = j, .r = r };
	const char *backend = uw_json_str(j, "backend");

	print_line(&o, "backend", backend ? backend : uw_dash(), "", "");
	for (size_t i = 0; i < UW_ARRAY_SIZE(rows); i++)
		print_row(&o, &rows[i]);
	print_backend_counters(&o);
}

/* Another process of the command (one it forked): its totals join the rest. */
void uw_summary_add_other(struct uw_others *o, const struct uw_json *j)
{
	uint64_t v;

	o->n++;
	if (uw_json_u64(j, "datagrams_in", &v))
		o->datagrams_in += v;
	if (uw_json_u64(j, "datagrams_out", &v))
		o->datagrams_out += v;
	if (uw_json_u64(j, "bytes_out", &v))
		o->bytes_out += v;
	if (uw_json_u64(j, "syscalls", &v))
		o->syscalls += v;
}

/* The processes a command forked, in one line: how many, what they sent. */
void uw_summary_print_others(FILE *f, const struct uw_others *others)
{
	const struct out o = { .f = f };
	char count[24], note[256];

	if (!others->n)
		return;
	snprintf(count, sizeof(count), "%zu", others->n);
	snprintf(note, sizeof(note),
		 "their totals: datagrams_in %llu, datagrams_out %llu, bytes_out %llu, syscalls %llu",
		 (unsigned long long)others->datagrams_in,
		 (unsigned long long)others->datagrams_out,
		 (unsigned long long)others->bytes_out, (unsigned long long)others->syscalls);
	print_line(&o, "other processes", count, "", note);
}
