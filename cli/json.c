/* SPDX-License-Identifier: MIT */
/* A small JSON reader: see json.h. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "json.h"

struct parser {
	const char *p, *end;
	struct uw_json *j;
	int depth;
};

static void skip_space(struct parser *ps)
{
	while (ps->p < ps->end && strchr(" \t\r\n", *ps->p))
		ps->p++;
}

static bool at(struct parser *ps, char c)
{
	skip_space(ps);
	return ps->p < ps->end && *ps->p == c;
}

static int expect(struct parser *ps, char c)
{
	if (!at(ps, c))
		return -EINVAL;
	ps->p++;
	return 0;
}

/* A new value under key, or NULL when it is not to be kept (inside an
 * array, a key too long, the table full): parsing goes on either way. */
static struct uw_json_value *add_value(struct parser *ps, const char *key,
				       enum uw_json_type type)
{
	struct uw_json_value *v;

	if (!key || ps->j->n >= UW_JSON_MAX_VALUES)
		return NULL;
	v = &ps->j->v[ps->j->n++];
	memset(v, 0, sizeof(*v));
	strcpy(v->key, key);
	v->type = type;
	return v;
}

static void put_char(char *out, size_t cap, size_t *n, char c)
{
	if (out && *n + 1 < cap)
		out[(*n)++] = c;
}

static void put_utf8(char *out, size_t cap, size_t *n, unsigned int cp)
{
	if (cp < 0x80) {
		put_char(out, cap, n, (char)cp);
	} else if (cp < 0x800) {
		put_char(out, cap, n, (char)(0xc0 | (cp >> 6)));
		put_char(out, cap, n, (char)(0x80 | (cp & 0x3f)));
	} else if (cp < 0x10000) {
		put_char(out, cap, n, (char)(0xe0 | (cp >> 12)));
		put_char(out, cap, n, (char)(0x80 | ((cp >> 6) & 0x3f)));
		put_char(out, cap, n, (char)(0x80 | (cp & 0x3f)));
	} else {
		put_char(out, cap, n, (char)(0xf0 | (cp >> 18)));
		put_char(out, cap, n, (char)(0x80 | ((cp >> 12) & 0x3f)));
		put_char(out, cap, n, (char)(0x80 | ((cp >> 6) & 0x3f)));
		put_char(out, cap, n, (char)(0x80 | (cp & 0x3f)));
	}
}

static int parse_hex4(struct parser *ps, unsigned int *cp)
{
	*cp = 0;
	if (ps->end - ps->p < 4)
		return -EINVAL;
	for (int i = 0; i < 4; i++) {
		char c = *ps->p++;

		*cp <<= 4;
		if (c >= '0' && c <= '9')
			*cp |= (unsigned int)(c - '0');
		else if (c >= 'a' && c <= 'f')
			*cp |= (unsigned int)(c - 'a' + 10);
		else if (c >= 'A' && c <= 'F')
			*cp |= (unsigned int)(c - 'A' + 10);
		else
			return -EINVAL;
	}
	return 0;
}

/* \uXXXX, with a following low surrogate when XXXX is a high one. */
static int parse_unicode_escape(struct parser *ps, unsigned int *cp)
{
	unsigned int lo;

	if (parse_hex4(ps, cp))
		return -EINVAL;
	if (*cp < 0xd800 || *cp > 0xdfff)
		return 0;
	if (*cp <= 0xdbff && ps->end - ps->p >= 6 && ps->p[0] == '\\' && ps->p[1] == 'u') {
		ps->p += 2;
		if (parse_hex4(ps, &lo))
			return -EINVAL;
		if (lo >= 0xdc00 && lo <= 0xdfff) {
			*cp = 0x10000 + ((*cp - 0xd800) << 10) + (lo - 0xdc00);
			return 0;
		}
	}
	*cp = '?';
	return 0;
}

/* A string into out (truncated to cap, NUL-terminated); out may be NULL. */
static int parse_string(struct parser *ps, char *out, size_t cap)
{
	size_t n = 0;
	unsigned int cp;

	if (expect(ps, '"'))
		return -EINVAL;
	while (ps->p < ps->end && *ps->p != '"') {
		char c = *ps->p++;

		if ((unsigned char)c < 0x20)
			return -EINVAL;
		if (c != '\\') {
			put_char(out, cap, &n, c);
			continue;
		}
		if (ps->p >= ps->end)
			return -EINVAL;
		c = *ps->p++;
		switch (c) {
		case '"': case '\\': case '/':
			put_char(out, cap, &n, c);
			break;
		case 'b': put_char(out, cap, &n, '\b'); break;
		case 'f': put_char(out, cap, &n, '\f'); break;
		case 'n': put_char(out, cap, &n, '\n'); break;
		case 'r': put_char(out, cap, &n, '\r'); break;
		case 't': put_char(out, cap, &n, '\t'); break;
		case 'u':
			if (parse_unicode_escape(ps, &cp))
				return -EINVAL;
			put_utf8(out, cap, &n, cp);
			break;
		default:
			return -EINVAL;
		}
	}
	if (ps->p >= ps->end)
		return -EINVAL;
	ps->p++;
	if (out && cap)
		out[n] = '\0';
	return 0;
}

static int parse_number(struct parser *ps, struct uw_json_value *v)
{
	char buf[64], *end;
	size_t n = 0;
	bool digits_only = true;
	double d;

	while (ps->p < ps->end && strchr("+-0123456789.eE", *ps->p)) {
		if (n + 1 >= sizeof(buf))
			return -EINVAL;
		if (*ps->p < '0' || *ps->p > '9')
			digits_only = false;
		buf[n++] = *ps->p++;
	}
	buf[n] = '\0';
	if (!n)
		return -EINVAL;
	d = strtod(buf, &end);

	if (*end)
		return -EINVAL;
	if (!v)
		return 0;
	v->d = d;
	if (digits_only) {
		errno = 0;
		v->u = strtoull(buf, &end, 10);
		v->is_uint = !errno && !*end;
	}
	return 0;
}

static int parse_literal(struct parser *ps, const char *word)
{
	size_t n = strlen(word);

	if ((size_t)(ps->end - ps->p) < n || memcmp(ps->p, word, n))
		return -EINVAL;
	ps->p += n;
	return 0;
}

static int parse_value(struct parser *ps, const char *key);

static int parse_object(struct parser *ps, const char *key)
{
	char name[UW_JSON_KEY_MAX], child[UW_JSON_KEY_MAX];
	int ret;

	if (expect(ps, '{'))
		return -EINVAL;
	if (at(ps, '}'))
		return expect(ps, '}');
	do {
		if (parse_string(ps, name, sizeof(name)) || expect(ps, ':'))
			return -EINVAL;
		if (!key)
			ret = parse_value(ps, NULL);
		else if (!*key)
			ret = parse_value(ps, name);
		else if (snprintf(child, sizeof(child), "%s.%s", key, name) < (int)sizeof(child))
			ret = parse_value(ps, child);
		else
			ret = parse_value(ps, NULL);
		if (ret)
			return ret;
	} while (at(ps, ',') && !expect(ps, ','));
	return expect(ps, '}');
}

static int parse_array(struct parser *ps)
{
	if (expect(ps, '['))
		return -EINVAL;
	if (at(ps, ']'))
		return expect(ps, ']');
	do {
		if (parse_value(ps, NULL))
			return -EINVAL;
	} while (at(ps, ',') && !expect(ps, ','));
	return expect(ps, ']');
}

static int parse_nested(struct parser *ps, const char *key, bool object)
{
	int ret;

	if (++ps->depth > UW_JSON_MAX_DEPTH)
		return -EINVAL;
	if (object) {
		add_value(ps, key, UW_JSON_OBJECT);
		ret = parse_object(ps, key);
	} else {
		ret = parse_array(ps);
	}
	ps->depth--;
	return ret;
}

static int parse_value(struct parser *ps, const char *key)
{
	struct uw_json_value *v;

	skip_space(ps);
	if (ps->p >= ps->end)
		return -EINVAL;
	switch (*ps->p) {
	case '{':
		return parse_nested(ps, key, true);
	case '[':
		return parse_nested(ps, key, false);
	case '"':
		v = add_value(ps, key, UW_JSON_STRING);
		return parse_string(ps, v ? v->str : NULL, sizeof(v->str));
	case 't':
		v = add_value(ps, key, UW_JSON_BOOL);
		if (v)
			v->d = 1;
		return parse_literal(ps, "true");
	case 'f':
		add_value(ps, key, UW_JSON_BOOL);
		return parse_literal(ps, "false");
	case 'n':
		add_value(ps, key, UW_JSON_NULL);
		return parse_literal(ps, "null");
	default:
		return parse_number(ps, add_value(ps, key, UW_JSON_NUMBER));
	}
}

/* The text must be one JSON object (trailing white space allowed). */
int uw_json_parse(struct uw_json *j, const char *text, size_t len)
{
	struct parser ps = { .p = text, .end = text + len, .j = j };

	j->n = 0;
	if (!at(&ps, '{') || parse_nested(&ps, "", true))
		return -EINVAL;
	skip_space(&ps);
	if (ps.p != ps.end && !(ps.end - ps.p == 1 && *ps.p == '\0'))
		return -EINVAL;
	/* the root's own marker (empty key) is of no use to readers */
	if (j->n && !j->v[0].key[0]) {
		memmove(&j->v[0], &j->v[1], (j->n - 1) * sizeof(j->v[0]));
		j->n--;
	}
	return 0;
}

const struct uw_json_value *uw_json_find(const struct uw_json *j, const char *key)
{
	for (size_t i = 0; i < j->n; i++)
		if (!strcmp(j->v[i].key, key))
			return &j->v[i];
	return NULL;
}

bool uw_json_u64(const struct uw_json *j, const char *key, uint64_t *out)
{
	const struct uw_json_value *v = uw_json_find(j, key);

	if (!v || v->type != UW_JSON_NUMBER)
		return false;
	if (v->is_uint)
		*out = v->u;
	else if (v->d >= 0 && v->d < 18446744073709551616.0)
		*out = (uint64_t)v->d;
	else
		return false;
	return true;
}

bool uw_json_num(const struct uw_json *j, const char *key, double *out)
{
	const struct uw_json_value *v = uw_json_find(j, key);

	if (!v || v->type != UW_JSON_NUMBER)
		return false;
	*out = v->d;
	return true;
}

const char *uw_json_str(const struct uw_json *j, const char *key)
{
	const struct uw_json_value *v = uw_json_find(j, key);

	return v && v->type == UW_JSON_STRING ? v->str : NULL;
}

/* Is v a direct member of the object parent? Its member name in *name. */
bool uw_json_is_child(const struct uw_json_value *v, const char *parent, const char **name)
{
	size_t n = strlen(parent);

	if (strncmp(v->key, parent, n) || v->key[n] != '.' || strchr(v->key + n + 1, '.'))
		return false;
	*name = v->key + n + 1;
	return true;
}
