/* The JSON control protocol of wsserve --pubsub: see jsonproto.h and wsserve(1).
 *
 * Requests are parsed with cJSON and copied into a jp_request; replies are built with cJSON.
 * Deliveries are escaped by hand: they are the hot path of a broker, and a message may hold
 * U+0000, which cJSON's NUL-terminated strings cannot carry. */
#include "jsonproto.h"
#include "wskit.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ----- requests ------------------------------------------------------------------------------ */

static const char *const op_names[] = {NULL,   "subscribe", "unsubscribe", "publish",
                                       "list", "ping",      "topics",      "presence"};

const char *jp_op_name(int op)
{
    return op >= JP_SUBSCRIBE && op <= JP_OP_LAST ? op_names[op] : "unknown";
}

const char *jp_error_name(int err)
{
    switch (err) {
    case JP_EBADJSON: return "bad_json";
    case JP_EBADREQ: return "bad_request";
    case JP_EUNKNOWN: return "unknown_op";
    case JP_ETOPIC: return "bad_topic";
    case JP_EFORBIDDEN: return "forbidden";
    case JP_ELIMIT: return "too_many_subscriptions";
    default: return "internal";
    }
}

static int refuse(jp_request *rq, int err, const char *why)
{
    snprintf(rq->why, sizeof rq->why, "%s", why);
    return err;
}

/* cJSON ends strings at U+0000: an escaped NUL inside a string would silently cut a topic or
 * a message.  Outside strings a backslash is a syntax error anyway, so a plain scan that skips
 * escaped backslashes finds every \u0000. */
static int has_escaped_nul(const char *p, size_t n)
{
    for (size_t i = 0; i + 1 < n; i++) {
        if (p[i] != '\\') continue;
        if (p[i + 1] == 'u' && i + 5 < n && !memcmp(p + i + 2, "0000", 4)) return 1;
        i++; /* the escaped character, a backslash included */
    }
    return 0;
}

/* An id (a number or a string) as JSON text in out.  Whole numbers, the usual ids, are printed
 * here: cJSON prints every number with sprintf and reads it back with sscanf, which costs more
 * than the rest of a request.  JP_OK, JP_EBADREQ (longer than JP_ID_MAX) or JP_ENOMEM. */
static int print_id(const cJSON *id, char out[JP_ID_MAX + 1])
{
    double v = id->valuedouble;
    if (cJSON_IsNumber(id) && v == floor(v) && fabs(v) < 9007199254740992.0) {
        snprintf(out, JP_ID_MAX + 1, "%lld", (long long)v);
        return JP_OK;
    }
    char *text = cJSON_PrintUnformatted(id);
    if (!text) return JP_ENOMEM;
    size_t n = strlen(text);
    int r = n <= JP_ID_MAX ? JP_OK : JP_EBADREQ;
    if (r == JP_OK) memcpy(out, text, n + 1);
    cJSON_free(text);
    return r;
}

static int read_id(const cJSON *doc, jp_request *rq)
{
    const cJSON *id = cJSON_GetObjectItemCaseSensitive(doc, "id");
    if (!id) return JP_OK;
    /* cJSON prints an out-of-range number (1e999) as null: refuse it rather than echo null. */
    if (!(cJSON_IsNumber(id) && isfinite(id->valuedouble)) && !cJSON_IsString(id))
        return refuse(rq, JP_EBADREQ, "\"id\" must be a number or a string");
    int r = print_id(id, rq->id);
    if (r == JP_ENOMEM) return refuse(rq, r, "out of memory");
    if (r < 0) return refuse(rq, JP_EBADREQ, "\"id\" is too long");
    return JP_OK;
}

static int read_topics(const cJSON *doc, jp_request *rq, size_t max_topics)
{
    const cJSON *one = cJSON_GetObjectItemCaseSensitive(doc, "topic");
    const cJSON *many = cJSON_GetObjectItemCaseSensitive(doc, "topics");
    if (one && many) return refuse(rq, JP_EBADREQ, "give \"topic\" or \"topics\", not both");
    if (rq->op == JP_PUBLISH && many) return refuse(rq, JP_EBADREQ, "publish takes one \"topic\"");
    if (one) {
        if (!cJSON_IsString(one)) return refuse(rq, JP_EBADREQ, "\"topic\" must be a string");
        rq->topics = malloc(sizeof *rq->topics);
        if (!rq->topics) return refuse(rq, JP_ENOMEM, "out of memory");
        rq->topics[0].name = one->valuestring;
        rq->topics[0].len = strlen(one->valuestring);
        rq->ntopics = 1;
        return JP_OK;
    }
    if (!many) return refuse(rq, JP_EBADREQ, "missing \"topic\"");
    if (!cJSON_IsArray(many)) return refuse(rq, JP_EBADREQ, "\"topics\" must be an array");
    size_t n = (size_t)cJSON_GetArraySize(many);
    if (!n) return refuse(rq, JP_EBADREQ, "\"topics\" is empty");
    if (n > max_topics) return refuse(rq, JP_ELIMIT, "too many topics in one request");
    rq->topics = malloc(n * sizeof *rq->topics);
    if (!rq->topics) return refuse(rq, JP_ENOMEM, "out of memory");
    const cJSON *t;
    cJSON_ArrayForEach(t, many)
    {
        if (!cJSON_IsString(t)) return refuse(rq, JP_EBADREQ, "\"topics\" must hold strings");
        rq->topics[rq->ntopics].name = t->valuestring;
        rq->topics[rq->ntopics].len = strlen(t->valuestring);
        rq->ntopics++;
    }
    return JP_OK;
}

static int read_data(const cJSON *doc, jp_request *rq)
{
    const cJSON *data = cJSON_GetObjectItemCaseSensitive(doc, "data");
    const cJSON *bin = cJSON_GetObjectItemCaseSensitive(doc, "binary");
    const cJSON *retain = cJSON_GetObjectItemCaseSensitive(doc, "retain");
    if (bin && !cJSON_IsBool(bin)) return refuse(rq, JP_EBADREQ, "\"binary\" must be a boolean");
    if (retain && !cJSON_IsBool(retain))
        return refuse(rq, JP_EBADREQ, "\"retain\" must be a boolean");
    rq->retain = cJSON_IsTrue(retain);
    if (!cJSON_IsString(data)) return refuse(rq, JP_EBADREQ, "publish needs \"data\", a string");
    size_t n = strlen(data->valuestring);
    rq->binary = cJSON_IsTrue(bin);
    if (!rq->binary) {
        rq->data = (const uint8_t *)data->valuestring;
        rq->len = n;
        return JP_OK;
    }
    rq->decoded_ = malloc(n / 4 * 3 + 1);
    if (!rq->decoded_) return refuse(rq, JP_ENOMEM, "out of memory");
    long d = wsk_base64_decode(data->valuestring, n, rq->decoded_);
    if (d < 0) return refuse(rq, JP_EBADREQ, "\"data\" is not base64 (with \"binary\": true)");
    rq->data = rq->decoded_;
    rq->len = (size_t)d;
    return JP_OK;
}

static int read_since(const cJSON *doc, jp_request *rq)
{
    const cJSON *since = cJSON_GetObjectItemCaseSensitive(doc, "since");
    if (!since) return JP_OK;
    const cJSON *off = cJSON_GetObjectItemCaseSensitive(since, "offset");
    const cJSON *ep = cJSON_GetObjectItemCaseSensitive(since, "epoch");
    double v = cJSON_IsNumber(off) ? off->valuedouble : -1;
    if (!cJSON_IsObject(since) || v < 0 || v != floor(v) || v > 9007199254740992.0 ||
        (ep && (!cJSON_IsString(ep) || strlen(ep->valuestring) >= sizeof rq->since_epoch)))
        return refuse(rq, JP_EBADREQ,
                      "\"since\" is {\"offset\": a whole number, \"epoch\": a string}");
    if (rq->ntopics != 1) return refuse(rq, JP_EBADREQ, "\"since\" takes one \"topic\"");
    rq->has_since = 1;
    rq->since_offset = (unsigned long long)v;
    if (ep) memcpy(rq->since_epoch, ep->valuestring, strlen(ep->valuestring) + 1);
    return JP_OK;
}

static int read_filter(const cJSON *doc, jp_request *rq)
{
    const cJSON *f = cJSON_GetObjectItemCaseSensitive(doc, "filter");
    const cJSON *l = cJSON_GetObjectItemCaseSensitive(doc, "limit");
    if (f && !cJSON_IsString(f)) return refuse(rq, JP_EBADREQ, "\"filter\" must be a string");
    if (l && !(cJSON_IsNumber(l) && l->valuedouble >= 1 && l->valuedouble <= 1e9))
        return refuse(rq, JP_EBADREQ, "\"limit\" must be a number from 1");
    rq->filter = f ? f->valuestring : NULL;
    rq->limit = l ? (size_t)l->valuedouble : 0;
    return JP_OK;
}

int jp_parse(const void *msg, size_t len, size_t max_topics, jp_request *rq)
{
    memset(rq, 0, sizeof *rq);
    const char *text = msg, *end = NULL;
    cJSON *doc = cJSON_ParseWithLengthOpts(text, len, &end, 0);
    if (!doc) return refuse(rq, JP_EBADJSON, "not valid JSON");
    rq->doc_ = doc;
    for (; end && end < text + len; end++)
        if (*end != ' ' && *end != '\t' && *end != '\n' && *end != '\r')
            return refuse(rq, JP_EBADJSON, "text after the JSON value");
    if (!cJSON_IsObject(doc)) return refuse(rq, JP_EBADJSON, "a request is a JSON object");
    int r = read_id(doc, rq);
    if (r < 0) return r;
    if (has_escaped_nul(text, len))
        return refuse(rq, JP_EBADREQ,
                      "strings may not contain \\u0000: send such data as base64 with "
                      "\"binary\": true");

    const cJSON *op = cJSON_GetObjectItemCaseSensitive(doc, "op");
    if (!cJSON_IsString(op)) return refuse(rq, JP_EBADREQ, "missing \"op\" (a string)");
    for (int i = JP_SUBSCRIBE; i <= JP_OP_LAST; i++)
        if (!strcmp(op->valuestring, op_names[i])) rq->op = i;
    if (!rq->op) {
        snprintf(rq->why, sizeof rq->why, "unknown op \"%.64s\"", op->valuestring);
        return JP_EUNKNOWN;
    }
    if (rq->op == JP_TOPICS) return read_filter(doc, rq);
    if (rq->op == JP_PRESENCE) return read_topics(doc, rq, 1);
    if (rq->op == JP_SUBSCRIBE || rq->op == JP_UNSUBSCRIBE || rq->op == JP_PUBLISH) {
        if ((r = read_topics(doc, rq, max_topics)) < 0) return r;
    }
    if (rq->op == JP_SUBSCRIBE && (r = read_since(doc, rq)) < 0) return r;
    if (rq->op == JP_PUBLISH) return read_data(doc, rq);
    return JP_OK;
}

void jp_request_free(jp_request *rq)
{
    cJSON_Delete(rq->doc_);
    free(rq->topics);
    free(rq->decoded_);
    rq->doc_ = NULL;
    rq->topics = NULL;
    rq->decoded_ = NULL;
}

/* ----- replies (cJSON) ----------------------------------------------------------------------- */

/* Adds key: p[0..n) as a string (cJSON wants it NUL-terminated). */
static int add_strn(cJSON *obj, const char *key, const char *p, size_t n)
{
    char small[256], *s = n < sizeof small ? small : malloc(n + 1);
    if (!s) return -1;
    if (n) memcpy(s, p, n);
    s[n] = '\0';
    int ok = cJSON_AddStringToObject(obj, key, s) != NULL;
    if (s != small) free(s);
    return ok ? 0 : -1;
}

static cJSON *reply(const char *type, const char *op, const char *id)
{
    cJSON *o = cJSON_CreateObject();
    if (!o) return NULL;
    int ok = cJSON_AddStringToObject(o, "type", type) != NULL;
    if (ok && op) ok = cJSON_AddStringToObject(o, "op", op) != NULL;
    /* id is JSON text this module printed from the request (a number or a string). */
    if (ok && id && *id) ok = cJSON_AddRawToObject(o, "id", id) != NULL;
    if (!ok) {
        cJSON_Delete(o);
        return NULL;
    }
    return o;
}

static char *finish(cJSON *o, int ok, size_t *len)
{
    char *s = o && ok ? cJSON_PrintUnformatted(o) : NULL;
    cJSON_Delete(o);
    if (s && len) *len = strlen(s);
    return s;
}

static cJSON *ack_topics(int op, const char *id, const struct jp_topic *t, size_t n,
                         size_t subscriptions)
{
    cJSON *o = reply("ack", jp_op_name(op), id);
    cJSON *arr = o ? cJSON_AddArrayToObject(o, "topics") : NULL;
    int ok = arr != NULL;
    for (size_t i = 0; ok && i < n; i++) {
        cJSON *s = cJSON_CreateString(t[i].name);
        ok = s && cJSON_AddItemToArray(arr, s);
    }
    if (ok && cJSON_AddNumberToObject(o, "subscriptions", (double)subscriptions)) return o;
    cJSON_Delete(o);
    return NULL;
}

char *jp_ack_topics(int op, const char *id, const struct jp_topic *t, size_t n,
                    size_t subscriptions, size_t *len)
{
    return finish(ack_topics(op, id, t, n, subscriptions), 1, len);
}

char *jp_ack_recovery(const char *id, const struct jp_topic *t, size_t subscriptions, int recovered,
                      const char *epoch, unsigned long long offset, size_t *len)
{
    cJSON *o = ack_topics(JP_SUBSCRIBE, id, t, 1, subscriptions);
    int ok = o && cJSON_AddBoolToObject(o, "recovered", recovered) &&
             cJSON_AddStringToObject(o, "epoch", epoch) &&
             cJSON_AddNumberToObject(o, "offset", (double)offset);
    return finish(o, ok, len);
}

static cJSON *info_reply(const char *op, const char *id, int http)
{
    return http ? cJSON_CreateObject() : reply("ack", op, id);
}

static int add_info(cJSON *o, const jp_topic_info *t)
{
    return !add_strn(o, "topic", t->name, t->len) &&
           cJSON_AddNumberToObject(o, "subscribers", (double)t->subscribers) &&
           cJSON_AddBoolToObject(o, "retained", t->retained) &&
           cJSON_AddNumberToObject(o, "history", (double)t->history);
}

char *jp_topics_reply(const char *id, int http, const jp_topic_info *t, size_t n, size_t total,
                      const jp_kept *kept, size_t *len)
{
    cJSON *o = info_reply("topics", id, http);
    cJSON *arr = o ? cJSON_AddArrayToObject(o, "topics") : NULL;
    int ok = arr != NULL;
    for (size_t i = 0; ok && i < n; i++) {
        cJSON *e = cJSON_CreateObject();
        ok = e && cJSON_AddItemToArray(arr, e) && add_info(e, &t[i]);
    }
    ok = ok && cJSON_AddNumberToObject(o, "total", (double)total);
    cJSON *k = ok ? cJSON_AddObjectToObject(o, "kept") : NULL;
    ok = k && cJSON_AddNumberToObject(k, "retained", (double)kept->retained) &&
         cJSON_AddNumberToObject(k, "retained_bytes", (double)kept->retained_bytes) &&
         cJSON_AddNumberToObject(k, "history_topics", (double)kept->history_topics) &&
         cJSON_AddNumberToObject(k, "history_messages", (double)kept->history_messages) &&
         cJSON_AddNumberToObject(k, "history_bytes", (double)kept->history_bytes);
    return finish(o, ok, len);
}

char *jp_presence_reply(const char *id, int http, const jp_topic_info *t, const jp_presence *p,
                        size_t n, unsigned long long offset, const char *epoch, unsigned threads,
                        unsigned answered, size_t *len)
{
    cJSON *o = info_reply("presence", id, http);
    int ok = o && add_info(o, t);
    cJSON *arr = ok ? cJSON_AddArrayToObject(o, "connections") : NULL;
    ok = arr != NULL;
    for (size_t i = 0; ok && i < n; i++) {
        cJSON *e = cJSON_CreateObject();
        ok = e && cJSON_AddItemToArray(arr, e) &&
             cJSON_AddNumberToObject(e, "id", (double)p[i].id) &&
             cJSON_AddStringToObject(e, "address", p[i].address) &&
             cJSON_AddStringToObject(e, "user", p[i].user) &&
             cJSON_AddBoolToObject(e, "json", p[i].json);
    }
    if (ok && offset)
        ok = cJSON_AddNumberToObject(o, "offset", (double)offset) &&
             cJSON_AddStringToObject(o, "epoch", epoch);
    cJSON *th = ok && threads > 1 ? cJSON_AddObjectToObject(o, "threads") : NULL;
    if (ok && threads > 1)
        ok = th && cJSON_AddNumberToObject(th, "of", threads) &&
             cJSON_AddNumberToObject(th, "answered", answered) &&
             (answered >= threads || cJSON_AddBoolToObject(o, "partial", 1));
    return finish(o, ok, len);
}

char *jp_ack_ping(const char *id, size_t *len)
{
    return finish(reply("ack", "ping", id), 1, len);
}

char *jp_error(const char *id, int err, const char *msg, size_t *len)
{
    cJSON *o = reply("error", NULL, id);
    int ok = o && cJSON_AddStringToObject(o, "error", jp_error_name(err)) &&
             cJSON_AddStringToObject(o, "message", msg ? msg : "");
    return finish(o, ok, len);
}

char *jp_http_published(const char *topic, size_t tlen, long receivers, long nodes, size_t *len)
{
    cJSON *o = cJSON_CreateObject();
    int ok =
        o && !add_strn(o, "topic", topic, tlen) &&
        cJSON_AddNumberToObject(o, "receivers", (double)receivers) &&
        (nodes == JP_NO_BRIDGE || cJSON_AddBoolToObject(o, "bridged", nodes != JP_UNBRIDGED)) &&
        (nodes < 0 || cJSON_AddNumberToObject(o, "nodes", (double)nodes)) &&
        (nodes != JP_LATE || cJSON_AddStringToObject(o, "reason", JP_LATE_REASON));
    return finish(o, ok, len);
}

char *jp_http_error(const char *code, const char *msg, size_t *len)
{
    cJSON *o = cJSON_CreateObject();
    int ok = o && cJSON_AddStringToObject(o, "error", code) &&
             cJSON_AddStringToObject(o, "message", msg ? msg : "");
    return finish(o, ok, len);
}

/* ----- deliveries (by hand) ------------------------------------------------------------------ */

/* Bytes of p[0..n) as the inside of a JSON string (RFC 8259 section 7: '"', '\' and controls
 * escaped; UTF-8 passes through), written to out when it is not NULL. */
static size_t escape(const uint8_t *p, size_t n, char *out)
{
    static const char hex[] = "0123456789abcdef";
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        uint8_t ch = p[i];
        const char *rep = NULL;
        switch (ch) {
        case '"': rep = "\\\""; break;
        case '\\': rep = "\\\\"; break;
        case '\n': rep = "\\n"; break;
        case '\r': rep = "\\r"; break;
        case '\t': rep = "\\t"; break;
        case '\b': rep = "\\b"; break;
        case '\f': rep = "\\f"; break;
        default: break;
        }
        if (rep) {
            if (out) memcpy(out + o, rep, 2);
            o += 2;
        } else if (ch < 0x20) {
            if (out) {
                memcpy(out + o, "\\u00", 4);
                out[o + 4] = hex[ch >> 4];
                out[o + 5] = hex[ch & 15];
            }
            o += 6;
        } else {
            if (out) out[o] = (char)ch;
            o++;
        }
    }
    return o;
}

/* {a}topic{b}data{c}, topic and data escaped (data as base64 when binary). */
static char *wrap(const char *a, const char *b, const char *c, const char *topic, size_t tlen,
                  const void *data, size_t dlen, int binary, size_t *len)
{
    const uint8_t *t = (const uint8_t *)topic, *d = data;
    size_t al = strlen(a), bl = strlen(b), cl = strlen(c);
    size_t te = escape(t, tlen, NULL);
    size_t de = binary ? (dlen + 2) / 3 * 4 : escape(d, dlen, NULL);
    size_t total = al + te + bl + de + cl;
    char *s = malloc(total + 1), *o = s;
    if (!s) return NULL;
    memcpy(o, a, al);
    o += al;
    o += escape(t, tlen, o);
    memcpy(o, b, bl);
    o += bl;
    o += binary ? wsk_base64_encode(d, dlen, o) : escape(d, dlen, o);
    memcpy(o, c, cl + 1);
    if (len) *len = total;
    return s;
}

char *jp_delivery(const char *topic, size_t tlen, const void *data, size_t dlen, int binary,
                  size_t *len)
{
    return wrap("{\"type\":\"message\",\"topic\":\"", "\",\"data\":\"",
                binary ? "\",\"binary\":true}" : "\"}", topic, tlen, data, dlen, binary, len);
}

char *jp_delivery_with(const char *topic, size_t tlen, const void *data, size_t dlen, int binary,
                       const char *extra, size_t *len)
{
    char c[256];
    snprintf(c, sizeof c, "\"%s%s}", binary ? ",\"binary\":true" : "", extra);
    return wrap("{\"type\":\"message\",\"topic\":\"", "\",\"data\":\"", c, topic, tlen, data, dlen,
                binary, len);
}

char *jp_publish_request(const char *topic, size_t tlen, const void *data, size_t dlen, int binary,
                         int retain, unsigned long id, size_t *len)
{
    char c[80];
    snprintf(c, sizeof c, "\",%s%s\"id\":%lu}", binary ? "\"binary\":true," : "",
             retain ? "\"retain\":true," : "", id);
    return wrap("{\"op\":\"publish\",\"topic\":\"", "\",\"data\":\"", c, topic, tlen, data, dlen,
                binary, len);
}

/* The acknowledgement of every publish: built like a delivery, for the same reason. */
char *jp_ack_publish(const char *id, const char *topic, size_t tlen, long receivers, long nodes,
                     size_t *len)
{
    char a[JP_ID_MAX + 64], c[160], b[96] = "";
    snprintf(a, sizeof a, "{\"type\":\"ack\",\"op\":\"publish\"%s%s,\"topic\":\"",
             id && *id ? ",\"id\":" : "", id && *id ? id : "");
    if (nodes >= 0)
        snprintf(b, sizeof b, ",\"bridged\":true,\"nodes\":%ld", nodes);
    else if (nodes == JP_LATE)
        snprintf(b, sizeof b, ",\"bridged\":true,\"reason\":\"%s\"", JP_LATE_REASON);
    else if (nodes == JP_UNBRIDGED || nodes == JP_UNCOUNTED)
        snprintf(b, sizeof b, ",\"bridged\":%s", nodes == JP_UNCOUNTED ? "true" : "false");
    snprintf(c, sizeof c, "\",\"receivers\":%ld%s}", receivers, b);
    return wrap(a, c, "", topic, tlen, "", 0, 0, len);
}

/* ----- replies as a client reads them -------------------------------------------------------- */

static void copy_str(const cJSON *item, char *dst, size_t cap)
{
    if (cJSON_IsString(item)) snprintf(dst, cap, "%s", item->valuestring);
}

/* A count from a reply, or -1 when it is not a number a long holds (casting one outside that
 * range is undefined behaviour: a broker could send "receivers": 1e40). */
static long reply_count(const cJSON *n)
{
    if (!cJSON_IsNumber(n) || !(n->valuedouble > -9.2e18 && n->valuedouble < 9.2e18)) return -1;
    return (long)n->valuedouble;
}

int jp_parse_reply(const void *msg, size_t len, jp_reply *r)
{
    memset(r, 0, sizeof *r);
    r->receivers = r->nodes = -1;
    cJSON *doc = cJSON_ParseWithLength(msg, len);
    if (!cJSON_IsObject(doc)) {
        cJSON_Delete(doc);
        return JP_EBADJSON;
    }
    char type[16] = "";
    copy_str(cJSON_GetObjectItemCaseSensitive(doc, "type"), type, sizeof type);
    r->type = !strcmp(type, "ack")       ? JP_R_ACK
              : !strcmp(type, "error")   ? JP_R_ERROR
              : !strcmp(type, "message") ? JP_R_MESSAGE
                                         : JP_R_OTHER;
    const cJSON *id = cJSON_GetObjectItemCaseSensitive(doc, "id");
    if (cJSON_IsNumber(id) || cJSON_IsString(id)) print_id(id, r->id);
    copy_str(cJSON_GetObjectItemCaseSensitive(doc, "op"), r->op, sizeof r->op);
    r->receivers = reply_count(cJSON_GetObjectItemCaseSensitive(doc, "receivers"));
    r->nodes = reply_count(cJSON_GetObjectItemCaseSensitive(doc, "nodes"));
    const cJSON *n = cJSON_GetObjectItemCaseSensitive(doc, "bridged");
    r->bridged = cJSON_IsBool(n) ? cJSON_IsTrue(n) : -1;
    n = cJSON_GetObjectItemCaseSensitive(doc, "recovered");
    r->recovered = cJSON_IsBool(n) ? cJSON_IsTrue(n) : -1;
    copy_str(cJSON_GetObjectItemCaseSensitive(doc, "error"), r->error, sizeof r->error);
    copy_str(cJSON_GetObjectItemCaseSensitive(doc, "message"), r->message, sizeof r->message);
    cJSON_Delete(doc);
    return JP_OK;
}

int jp_parse_message(const void *msg, size_t len, jp_message *m)
{
    memset(m, 0, sizeof *m);
    cJSON *doc = cJSON_ParseWithLength(msg, len);
    const cJSON *type = cJSON_GetObjectItemCaseSensitive(doc, "type");
    const cJSON *topic = cJSON_GetObjectItemCaseSensitive(doc, "topic");
    const cJSON *data = cJSON_GetObjectItemCaseSensitive(doc, "data");
    int r = JP_EBADJSON;
    if (cJSON_IsString(type) && !strcmp(type->valuestring, "message") && cJSON_IsString(topic) &&
        cJSON_IsString(data)) {
        size_t n = strlen(data->valuestring);
        m->binary = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(doc, "binary"));
        m->retained = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(doc, "retained"));
        m->topic = strdup(topic->valuestring);
        m->data = malloc(n + 1);
        long d = !m->data    ? -1
                 : m->binary ? wsk_base64_decode(data->valuestring, n, m->data)
                             : (memcpy(m->data, data->valuestring, n), (long)n);
        const cJSON *off = cJSON_GetObjectItemCaseSensitive(doc, "offset");
        if (cJSON_IsNumber(off) && off->valuedouble >= 0 && off->valuedouble < 1.8e19)
            m->offset = (unsigned long long)off->valuedouble;
        copy_str(cJSON_GetObjectItemCaseSensitive(doc, "epoch"), m->epoch, sizeof m->epoch);
        m->len = d > 0 ? (size_t)d : 0;
        r = m->topic && d >= 0 ? JP_OK : JP_EBADJSON;
    }
    cJSON_Delete(doc);
    if (r != JP_OK) jp_message_free(m);
    return r;
}

void jp_message_free(jp_message *m)
{
    free(m->topic);
    free(m->data);
    m->topic = NULL;
    m->data = NULL;
}

char *jp_subscribe_request(const char *topic, int since, unsigned long long offset,
                           const char *epoch, size_t *len)
{
    cJSON *o = cJSON_CreateObject(), *s = NULL;
    int ok = o && cJSON_AddStringToObject(o, "op", "subscribe") &&
             cJSON_AddStringToObject(o, "topic", topic);
    if (ok && since)
        ok = (s = cJSON_AddObjectToObject(o, "since")) &&
             cJSON_AddNumberToObject(s, "offset", (double)offset) &&
             cJSON_AddStringToObject(s, "epoch", epoch);
    return finish(o, ok, len);
}
