#include "evkit/fmt.h"

#include "evkit/err.h"

#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

enum piece_kind { P_TEXT, P_SEQ, P_TOPIC, P_EVENT, P_PAYLOAD, P_TS, P_PATH };

struct piece {
	enum piece_kind kind;
	size_t off, len; /* P_TEXT: bytes in text; P_PATH: the path in text */
};

struct evk_fmt {
	struct piece *pieces;
	size_t n;
	bool needs_payload; /* some %{payload...} */
	char text[];        /* literal text and paths, unescaped */
};

struct evk_fmt *
evk_fmt_new(const char *tmpl, const char **why)
{
	size_t tl = strlen(tmpl);
	struct evk_fmt *f = calloc(1, sizeof(*f) + tl + 1);
	size_t w = 0;

	if (f == NULL || (f->pieces = calloc(tl + 1, sizeof(*f->pieces))) == NULL) {
		free(f);
		*why = "out of memory";
		return NULL;
	}
	for (const char *p = tmpl; *p;) {
		struct piece *pc = &f->pieces[f->n];
		if (*p == '%') {
			char c = p[1];
			enum piece_kind k;
			switch (c) {
			case 's': k = P_SEQ; break;
			case 't': k = P_TOPIC; break;
			case 'e': k = P_EVENT; break;
			case 'p': k = P_PAYLOAD; break;
			case 'T': k = P_TS; break;
			case '%': k = P_TEXT; break;
			case '{': k = P_PATH; break;
			default:
				*why = c ? "unknown field after '%' (%s %t %e %p %T %{payload.x} %%)"
					 : "template ends with '%'";
				evk_fmt_free(f);
				return NULL;
			}
			if (k == P_TEXT) {
				/* joins the text run below */
			} else if (k == P_PATH) {
				const char *close = strchr(p + 2, '}');
				size_t pl = close ? (size_t)(close - (p + 2)) : 0;
				if (close == NULL || pl < 7 || strncmp(p + 2, "payload", 7) != 0 ||
				    (pl > 7 && p[9] != '.')) {
					*why = "a field is written %{payload} or %{payload.name...}";
					evk_fmt_free(f);
					return NULL;
				}
				pc->kind = P_PATH;
				pc->off = w;
				pc->len = pl;
				memcpy(f->text + w, p + 2, pl);
				w += pl;
				f->needs_payload = true;
				f->n++;
				p = close + 1;
				continue;
			} else {
				pc->kind = k;
				f->n++;
				p += 2;
				continue;
			}
		}
		/* Literal text up to the next field, with escapes resolved. */
		if (f->n == 0 || f->pieces[f->n - 1].kind != P_TEXT) {
			pc->kind = P_TEXT;
			pc->off = w;
			pc->len = 0;
			f->n++;
		}
		pc = &f->pieces[f->n - 1];
		char out;
		if (*p == '%') {
			out = '%';
			p += 2;
		} else if (*p == '\\' && (p[1] == 't' || p[1] == 'n' || p[1] == '\\')) {
			out = p[1] == 't' ? '\t' : p[1] == 'n' ? '\n' : '\\';
			p += 2;
		} else {
			out = *p++;
		}
		f->text[w++] = out;
		pc->len++;
	}
	return f;
}

void
evk_fmt_free(struct evk_fmt *f)
{
	if (f == NULL)
		return;
	free(f->pieces);
	free(f);
}

/* The value at path ("payload" or "payload.a.0.b") in payload, or NULL. */
static const cJSON *
lookup(const cJSON *payload, const char *path, size_t len)
{
	const cJSON *v = payload;
	const char *p = path + 7, *end = path + len; /* past "payload" */
	char name[256];

	while (v && p < end) {
		p++; /* the '.' */
		const char *dot = memchr(p, '.', (size_t)(end - p));
		size_t n = dot ? (size_t)(dot - p) : (size_t)(end - p);
		if (n >= sizeof(name))
			return NULL;
		memcpy(name, p, n);
		name[n] = '\0';
		if (cJSON_IsArray(v)) {
			char *e;
			long i = strtol(name, &e, 10);
			v = (n > 0 && *e == '\0' && i >= 0) ? cJSON_GetArrayItem(v, (int)i) : NULL;
		} else if (cJSON_IsObject(v)) {
			v = cJSON_GetObjectItemCaseSensitive(v, name);
		} else {
			v = NULL;
		}
		p += n;
	}
	return v;
}

static int
add_value(struct evk_buf *out, const cJSON *v)
{
	if (v == NULL)
		return EVK_OK;
	if (cJSON_IsString(v)) {
		size_t mark = out->len;
		int rv = evk_buf_add_json_string(out, v->valuestring, strlen(v->valuestring));
		if (rv != EVK_OK)
			return rv;
		/* Drop the quotes: "a\"b" -> a\"b */
		memmove(out->p + mark, out->p + mark + 1, out->len - mark - 2);
		out->len -= 2;
		return EVK_OK;
	}
	char *s = cJSON_PrintUnformatted(v);
	if (s == NULL)
		return EVK_ENOMEM;
	int rv = evk_buf_addstr(out, s);
	cJSON_free(s);
	return rv;
}

int
evk_fmt_render(const struct evk_fmt *f, const struct evk_event *ev,
	       struct evk_buf *out)
{
	cJSON *payload = NULL;
	int rv = EVK_OK;

	if (f->needs_payload)
		payload = cJSON_ParseWithLength(ev->payload, ev->payload_len);
	for (size_t i = 0; i < f->n && rv == EVK_OK; i++) {
		const struct piece *pc = &f->pieces[i];
		switch (pc->kind) {
		case P_TEXT: rv = evk_buf_add(out, f->text + pc->off, pc->len); break;
		case P_SEQ: rv = evk_buf_add_u64(out, ev->seq); break;
		case P_TOPIC: rv = evk_buf_add(out, ev->topic, ev->topic_len); break;
		case P_EVENT: rv = evk_buf_add(out, ev->event, ev->event_len); break;
		case P_PAYLOAD: rv = evk_buf_add(out, ev->payload, ev->payload_len); break;
		case P_TS: rv = evk_buf_add(out, ev->ts, EVK_TS_LEN); break;
		case P_PATH:
			rv = add_value(out, lookup(payload, f->text + pc->off, pc->len));
			break;
		}
	}
	cJSON_Delete(payload);
	return rv;
}
