/* The JSON control protocol of `wsserve --pubsub` (described in wsserve(1)): requests parsed,
 * replies and deliveries built.  Bytes in, bytes out: no sockets.  cJSON is used here and
 * nowhere else.
 *
 * Requests (text messages):
 *   {"op":"subscribe","topic":"a"}     or "topics":["a","b"]    optional "id": number or string
 *       "since":{"offset":O,"epoch":E}: resume after offset O of epoch E (one topic, no pattern)
 *   {"op":"unsubscribe","topic":"a"}   or "topics"
 *   {"op":"publish","topic":"a","data":"text"}    "binary":true: data is base64, sent as binary;
 *                                                 "retain":true: kept for new subscribers
 *   {"op":"list"}   {"op":"ping"}
 *   {"op":"topics","filter":"orders.>","limit":100}   both optional
 *   {"op":"presence","topic":"a"}
 * Replies carry the request's id: {"type":"ack","op":...,"id":...,...} or
 * {"type":"error","id":...,"error":CODE,"message":TEXT}.  Deliveries:
 * {"type":"message","topic":T,"data":...} (with "binary":true and base64 data for binary, and
 * "retained":true for a retained message handed over at subscribe). */
#ifndef WSK_JSONPROTO_H
#define WSK_JSONPROTO_H

#include <stddef.h>
#include <stdint.h>

#define JP_ID_MAX 80 /* longest id echoed, as JSON text */

enum jp_op {
    JP_SUBSCRIBE = 1,
    JP_UNSUBSCRIBE,
    JP_PUBLISH,
    JP_LIST,
    JP_PING,
    JP_TOPICS,
    JP_PRESENCE,
    JP_OP_LAST = JP_PRESENCE
};

/* Why a request was refused: the "error" member of the reply is jp_error_name(code). */
enum jp_err {
    JP_OK = 0,
    JP_EBADJSON = -1,   /* "bad_json": not a JSON object */
    JP_EBADREQ = -2,    /* "bad_request": a member is missing or of the wrong type */
    JP_EUNKNOWN = -3,   /* "unknown_op" */
    JP_ETOPIC = -4,     /* "bad_topic": the server's topic rules (serve_pubsub.c) */
    JP_EFORBIDDEN = -5, /* "forbidden": publishing or subscribing needs the token */
    JP_ELIMIT = -6,     /* "too_many_subscriptions" */
    JP_ENOMEM = -7,     /* "internal" */
};

struct jp_topic {
    const char *name; /* NUL-terminated */
    size_t len;
};

/* A parsed request.  Every pointer is owned by it until jp_request_free. */
typedef struct jp_request {
    int op;                  /* a jp_op */
    char id[JP_ID_MAX + 1];  /* the "id" member as JSON text, "" when absent or unusable */
    struct jp_topic *topics; /* "topic", or the elements of "topics" */
    size_t ntopics;
    const uint8_t *data; /* publish: the payload (decoded from base64 when binary) */
    size_t len;
    int binary;    /* publish: "binary": true */
    int retain;    /* publish: "retain": true */
    int has_since; /* subscribe: "since" given */
    unsigned long long since_offset;
    char since_epoch[17]; /* "" when absent */
    const char *filter;   /* topics: "filter", NULL when absent */
    size_t limit;         /* topics: "limit", 0 when absent */
    char why[160];        /* a refused request: what was wrong, for the reply */
    void *doc_;           /* parsed document and decoded payload (private) */
    uint8_t *decoded_;
} jp_request;

/* Parses one request msg[0..len) (need not be NUL-terminated).  JP_OK and *rq filled, or a
 * negative jp_err with rq->why and, when it could be read, rq->id set.  "topics" may hold at
 * most max_topics names.  Text data may not contain U+0000 (cJSON strings end there): such
 * requests are refused with a hint to send base64.  Call jp_request_free whatever it returns. */
int jp_parse(const void *msg, size_t len, size_t max_topics, jp_request *rq);
void jp_request_free(jp_request *rq);
/* "bad_json", "bad_request", ... for a jp_err; "internal" for anything else. */
const char *jp_error_name(int err);
/* "subscribe", "unsubscribe", ... for a jp_op. */
const char *jp_op_name(int op);

/* Replies and deliveries: NUL-terminated JSON text in a malloc'd string, for free(); its length
 * in *len when len is not NULL.  NULL when memory is short. */
/* {"type":"ack","op":"publish","id":ID,"topic":T,"receivers":N}, and on a bridged server
 * "bridged":true,"nodes":M (nodes >= 0: subscriptions on other nodes that got it),
 * "bridged":true alone (JP_UNCOUNTED: forwarded, the engine cannot count) or "bridged":false
 * (JP_UNBRIDGED: it was not forwarded); JP_NO_BRIDGE: neither.  JP_LATE: forwarded, but the
 * engine did not count it in time: "bridged":true and JP_LATE_REASON as "reason". */
#define JP_UNBRIDGED   (-1)
#define JP_NO_BRIDGE   (-2)
#define JP_UNCOUNTED   (-3)
#define JP_LATE        (-4)
#define JP_LATE_REASON "the engine did not count it in time"
char *jp_ack_publish(const char *id, const char *topic, size_t tlen, long receivers, long nodes,
                     size_t *len);
/* {"type":"ack","op":OP,"id":ID,"topics":[...],"subscriptions":N} for subscribe, unsubscribe and
 * list (subscriptions: how many the socket has now). */
char *jp_ack_topics(int op, const char *id, const struct jp_topic *t, size_t n,
                    size_t subscriptions, size_t *len);
/* The same for a subscribe with "since", adding "recovered":true/false and where the topic
 * stands: "epoch":E,"offset":O. */
char *jp_ack_recovery(const char *id, const struct jp_topic *t, size_t subscriptions, int recovered,
                      const char *epoch, unsigned long long offset, size_t *len);
/* One topic as "topics" describes it. */
typedef struct jp_topic_info {
    const char *name;
    size_t len;
    size_t subscribers; /* raw and JSON */
    int retained;
    size_t history; /* messages kept */
} jp_topic_info;
/* One subscriber as "presence" describes it. */
typedef struct jp_presence {
    unsigned long id;    /* the broker's number for the connection */
    const char *address; /* "IP:PORT" */
    const char *user;    /* what the client gave as ?user= at upgrade, "" for none */
    int json;            /* subscribed through the control protocol */
} jp_presence;
/* What the broker keeps, all topics together. */
typedef struct jp_kept {
    size_t retained, retained_bytes;                        /* retained messages */
    size_t history_topics, history_messages, history_bytes; /* history */
} jp_kept;
/* {"type":"ack","op":"topics","id":ID,"topics":[{"topic":T,"subscribers":N,"retained":B,
 * "history":H},...],"total":M,"kept":{"retained":R,"retained_bytes":RB,"history_topics":HT,
 * "history_messages":HM,"history_bytes":HB}} (total: before the limit); with http set, the
 * same without type, op and id (GET /topics). */
char *jp_topics_reply(const char *id, int http, const jp_topic_info *t, size_t n, size_t total,
                      const jp_kept *kept, size_t *len);
/* {"type":"ack","op":"presence","id":ID,"topic":T,"subscribers":N,"retained":B,"history":H,
 * "connections":[{"id":N,"address":A,"user":U,"json":B},...]} and, with history, "offset":O,
 * "epoch":E; with threads > 1, "threads":{"of":threads,"answered":answered} (and "partial":true
 * when some did not answer in time); with http set, without type, op and id (GET /topics/T). */
char *jp_presence_reply(const char *id, int http, const jp_topic_info *t, const jp_presence *p,
                        size_t n, unsigned long long offset, const char *epoch, unsigned threads,
                        unsigned answered, size_t *len);
/* {"type":"ack","op":"ping","id":ID} */
char *jp_ack_ping(const char *id, size_t *len);
/* {"type":"error","id":ID,"error":jp_error_name(err),"message":MSG} */
char *jp_error(const char *id, int err, const char *msg, size_t *len);
/* {"type":"message","topic":T,"data":...}: text data must be UTF-8 (any code point, U+0000
 * included); binary data goes as base64 with "binary":true. */
char *jp_delivery(const char *topic, size_t tlen, const void *data, size_t dlen, int binary,
                  size_t *len);
/* The same with more members: extra is JSON text that goes after "data" (",\"retained\":true"),
 * "" for none. */
char *jp_delivery_with(const char *topic, size_t tlen, const void *data, size_t dlen, int binary,
                       const char *extra, size_t *len);
/* The answers to POST /publish/TOPIC: {"topic":T,"receivers":N} and {"error":CODE,"message":M}. */
/* nodes as in jp_ack_publish: "bridged" and "nodes" the same way. */
char *jp_http_published(const char *topic, size_t tlen, long receivers, long nodes, size_t *len);
char *jp_http_error(const char *code, const char *msg, size_t *len);

/* A client's request {"op":"publish","topic":T,"data":...,"id":id} (text data must be UTF-8;
 * binary goes as base64 with "binary":true; retain adds "retain":true), built by hand like a
 * delivery. */
char *jp_publish_request(const char *topic, size_t tlen, const void *data, size_t dlen, int binary,
                         int retain, unsigned long id, size_t *len);

/* A reply as a client (wspub) reads it. */
enum jp_reply_type { JP_R_OTHER = 0, JP_R_ACK, JP_R_ERROR, JP_R_MESSAGE };
typedef struct jp_reply {
    int type;               /* a jp_reply_type */
    char id[JP_ID_MAX + 1]; /* "id" as JSON text, "" when absent */
    char op[16];            /* ack: the operation */
    long receivers;         /* ack of a publish: receivers; -1 when absent */
    long nodes;             /* ack of a bridged publish: subscriptions on other nodes; -1 when
                             * absent (not bridged, or the bridge was down) */
    int bridged;            /* ack: "bridged" (1 true, 0 false), -1 when absent */
    int recovered;          /* ack of a subscribe with since: 1, 0; -1 when absent */
    char error[32];         /* error: the code */
    char message[160];      /* error: the text */
} jp_reply;

/* Parses a server message; JP_OK, or JP_EBADJSON when it is not a JSON object. */
int jp_parse_reply(const void *msg, size_t len, jp_reply *r);

/* A delivery as a client (wscat --subscribe) reads it. */
typedef struct jp_message {
    char *topic; /* NUL-terminated */
    uint8_t *data;
    size_t len;
    int binary, retained;
    unsigned long long offset; /* 0 when absent */
    char epoch[17];            /* "" when absent */
} jp_message;
/* Parses {"type":"message",...}: JP_OK and m filled (free with jp_message_free), or
 * JP_EBADJSON for anything else. */
int jp_parse_message(const void *msg, size_t len, jp_message *m);
void jp_message_free(jp_message *m);
/* A client's {"op":"subscribe","topic":T} with "since":{"offset":O,"epoch":E} when since is
 * set; NULL when memory is short. */
char *jp_subscribe_request(const char *topic, int since, unsigned long long offset,
                           const char *epoch, size_t *len);

#endif
