/* SPDX-License-Identifier: MIT */
/*
 * A small JSON reader for the library's stats object: nested objects are
 * flattened into dotted keys ("flushes_by_reason.deadline"), each value
 * keeps its place in document order, arrays are parsed and skipped.
 * Bounded: the object comes from a one-page segment or a small file.
 */
#ifndef UW_CLI_JSON_H
#define UW_CLI_JSON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define UW_JSON_KEY_MAX		96
#define UW_JSON_STR_MAX		64
#define UW_JSON_MAX_VALUES	512
#define UW_JSON_MAX_DEPTH	8

enum uw_json_type {
	UW_JSON_NUMBER,
	UW_JSON_STRING,
	UW_JSON_BOOL,
	UW_JSON_NULL,
	UW_JSON_OBJECT,		/* a marker: its members follow as "key.member" */
};

struct uw_json_value {
	char key[UW_JSON_KEY_MAX];
	enum uw_json_type type;
	bool is_uint;		/* a number that is an integer 0..UINT64_MAX */
	uint64_t u;
	double d;		/* numbers and bools */
	char str[UW_JSON_STR_MAX];
};

struct uw_json {
	size_t n;
	struct uw_json_value v[UW_JSON_MAX_VALUES];
};

int uw_json_parse(struct uw_json *j, const char *text, size_t len);
const struct uw_json_value *uw_json_find(const struct uw_json *j, const char *key);
bool uw_json_u64(const struct uw_json *j, const char *key, uint64_t *out);
bool uw_json_num(const struct uw_json *j, const char *key, double *out);
const char *uw_json_str(const struct uw_json *j, const char *key);
bool uw_json_is_child(const struct uw_json_value *v, const char *parent, const char **name);

#endif
