/* The metrics formatter (lib/metrics.c): Prometheus text format 0.0.4 from a wsk_stats, with
 * snprintf's contract on a short buffer.  That the counters move with traffic is checked end
 * to end, through Prometheus's own parser, by tests/integration/test_metrics.py. */
#include "test.h"

#include <stddef.h>

/* The line `want` (without its newline) is in text. */
static int has_line(const char *text, const char *want)
{
    size_t n = strlen(want);
    for (const char *p = text; (p = strstr(p, want)); p++)
        if ((p == text || p[-1] == '\n') && p[n] == '\n') return 1;
    return 0;
}

/* The text of *st with the uint64_t at byte offset `off` set to a value no other field has. */
static void format_with(const wsk_stats *st, size_t off, char *buf, size_t cap)
{
    wsk_stats t = *st;
    uint64_t v = 987654321;
    memcpy((char *)&t + off, &v, sizeof v);
    wsk_stats_format(&t, buf, cap);
}

/* Every uint64_t field of wsk_stats (the gauges, and every counter from `accepted` to the end,
 * a field added there included) shows in the text: setting it alone changes what is written.
 * handshake_ms alone is left out: the histogram's sum is its finer twin, handshake_us. */
static void every_field_shown(const wsk_stats *st)
{
    static const size_t gauges[] = {
        offsetof(wsk_stats, sockets),        offsetof(wsk_stats, open),
        offsetof(wsk_stats, queued_bytes),   offsetof(wsk_stats, topics),
        offsetof(wsk_stats, subscriptions),  offsetof(wsk_stats, bridge_forwarded),
        offsetof(wsk_stats, bridge_failed),  offsetof(wsk_stats, bridge_received),
        offsetof(wsk_stats, bridge_outages),
    };
    static char base[16384], text[16384];
    wsk_stats b = *st;
    b.bridged = 1;
    wsk_stats_format(&b, base, sizeof base);
    int missing = 0, fields = 0;
    for (size_t i = 0; i < sizeof gauges / sizeof *gauges; i++, fields++) {
        format_with(&b, gauges[i], text, sizeof text);
        missing += !EXPECT(strcmp(text, base) != 0, "the field at byte %zu", gauges[i]);
    }
    for (size_t off = offsetof(wsk_stats, accepted); off < sizeof b; off += sizeof(uint64_t)) {
        if (off == offsetof(wsk_stats, handshake_ms)) continue;
        fields++;
        format_with(&b, off, text, sizeof text);
        missing += !EXPECT(strcmp(text, base) != 0, "the field at byte %zu", off);
    }
    format_with(&b, offsetof(wsk_stats, handoffs_failed), text, sizeof text);
    CHECK(missing == 0 && has_line(text, "wsk_accept_handoffs_failed_total 987654321"),
          "every field of wsk_stats has its metric family (%d fields, %d not shown)", fields,
          missing);
}

int main(void)
{
    wsk_loop *loop = wsk_loop_new(ev_loop_new(0));
    wsk_server *srv = wsk_server_new(loop, NULL, &(wsk_handlers){0}, NULL);
    wsk_stats st;
    CHECK(wsk_server_stats(srv, NULL, sizeof st) == WSK_ERR_INVAL, "st NULL refused");
    CHECK(wsk_server_stats(srv, &st, 1) == WSK_ERR_INVAL, "a size without room for size");
    memset(&st, 0xAB, sizeof st);
    CHECK(wsk_server_stats(srv, &st, sizeof st) == 0 && st.size == sizeof st,
          "filled, size says how much");
    CHECK(st.accepted == 0 && st.open == 0 && st.messages_in[0] == 0 && !st.bridged,
          "a new server counts nothing");

    st.messages_in[0] = 3;
    st.bytes_in[0] = 300;
    st.messages_out[1] = 7;
    st.close_received[0] = 2;                     /* 1000 */
    st.close_sent[8] = 1;                         /* 1008 */
    st.close_sent[WSK_STATS_CLOSE_CODES - 1] = 4; /* 4000 and the like */
    st.refused[WSK_REFUSED_UNAUTHORIZED] = 5;
    st.size_buckets[0] = 1;                      /* <= 64 */
    st.size_buckets[1] = 2;                      /* <= 256 */
    st.size_buckets[WSK_STATS_SIZE_BUCKETS] = 1; /* > 16 MiB */
    st.handshake_buckets[0] = 2;                 /* <= 1 ms */
    st.handshake_buckets[3] = 1;                 /* <= 25 ms */
    st.handshake_ms = 1500;
    st.handshake_us = 1500000;
    st.tls_handshakes = 5;
    st.tls_resumed = 2;
    char buf[16384];
    long n = wsk_stats_format(&st, buf, sizeof buf);
    CHECK(n > 0 && (size_t)n < sizeof buf && strlen(buf) == (size_t)n, "formatted: %ld bytes", n);
    CHECK(has_line(buf, "# TYPE wsk_messages_received_total counter") &&
              has_line(buf, "# HELP wsk_messages_received_total Messages received, by type."),
          "HELP and TYPE lines");
    CHECK(has_line(buf, "wsk_messages_received_total{type=\"text\"} 3") &&
              has_line(buf, "wsk_messages_received_total{type=\"binary\"} 0") &&
              has_line(buf, "wsk_messages_sent_total{type=\"binary\"} 7"),
          "messages by type");
    CHECK(has_line(buf, "wsk_close_codes_received_total{code=\"1000\"} 2") &&
              has_line(buf, "wsk_close_codes_sent_total{code=\"1008\"} 1") &&
              has_line(buf, "wsk_close_codes_sent_total{code=\"other\"} 4") &&
              !strstr(buf, "code=\"1011\""),
          "close codes: those seen, and other");
    CHECK(has_line(buf, "wsk_connections_refused_total{reason=\"unauthorized\"} 5"),
          "refusals by reason");
    int named = 0;
    for (const char *p = buf; (p = strstr(p, "wsk_connections_refused_total{reason=\"")); p++)
        named += p[38] != '"' && strncmp(p + 38, "(null)", 6) != 0;
    CHECK(named == WSK_REFUSED_COUNT, "every refusal has its name: %d", named);
    CHECK(has_line(buf, "# TYPE wsk_message_received_size_bytes histogram") &&
              has_line(buf, "wsk_message_received_size_bytes_bucket{le=\"64\"} 1") &&
              has_line(buf, "wsk_message_received_size_bytes_bucket{le=\"256\"} 3") &&
              has_line(buf, "wsk_message_received_size_bytes_bucket{le=\"16777216\"} 3") &&
              has_line(buf, "wsk_message_received_size_bytes_bucket{le=\"+Inf\"} 4") &&
              has_line(buf, "wsk_message_received_size_bytes_sum 300") &&
              has_line(buf, "wsk_message_received_size_bytes_count 4"),
          "the size histogram is cumulative");
    CHECK(has_line(buf, "# TYPE wsk_handshake_duration_seconds histogram") &&
              has_line(buf, "wsk_handshake_duration_seconds_bucket{le=\"0.001\"} 2") &&
              has_line(buf, "wsk_handshake_duration_seconds_bucket{le=\"0.01\"} 2") &&
              has_line(buf, "wsk_handshake_duration_seconds_bucket{le=\"0.025\"} 3") &&
              has_line(buf, "wsk_handshake_duration_seconds_bucket{le=\"10\"} 3") &&
              has_line(buf, "wsk_handshake_duration_seconds_bucket{le=\"+Inf\"} 3") &&
              has_line(buf, "wsk_handshake_duration_seconds_sum 1.5") &&
              has_line(buf, "wsk_handshake_duration_seconds_count 3"),
          "the handshake histogram, in seconds");
    CHECK(has_line(buf, "wsk_tls_handshakes_total{kind=\"full\"} 3") &&
              has_line(buf, "wsk_tls_handshakes_total{kind=\"resumed\"} 2"),
          "TLS handshakes, full and resumed");
    CHECK(!strstr(buf, "wsk_bridge_"), "no bridge families without a bridge");
    CHECK(buf[n - 1] == '\n', "ends with a newline");

    st.bridged = 1;
    st.bridge_links = 2;
    st.bridge_links_up = 1;
    st.bridge_forwarded = 9;
    st.bridge_copies = 4;
    n = wsk_stats_format(&st, buf, sizeof buf);
    CHECK(has_line(buf, "wsk_bridge_links 2") && has_line(buf, "wsk_bridge_links_up 1") &&
              has_line(buf, "wsk_bridge_forwarded_total 9") &&
              has_line(buf, "wsk_bridge_copies_total 4") &&
              has_line(buf, "# TYPE wsk_bridge_outages_total counter"),
          "a bridged server: the bridge's links and counters");
    st.bridged = 0;
    n = wsk_stats_format(&st, buf, sizeof buf);

    every_field_shown(&st);

    char small[32];
    CHECK(wsk_stats_format(&st, small, sizeof small) == n && strlen(small) == sizeof small - 1 &&
              !memcmp(small, buf, sizeof small - 1),
          "a short buffer: cut and NUL-terminated, the whole length returned");
    CHECK(wsk_stats_format(&st, NULL, 0) == n, "NULL, 0 measures");
    CHECK(wsk_stats_format(&st, NULL, 10) == WSK_ERR_INVAL, "NULL with a cap refused");
    st.size--;
    CHECK(wsk_stats_format(&st, buf, sizeof buf) == WSK_ERR_INVAL, "another version's struct");

    wsk_server_free(srv);
    struct ev_loop *ev = wsk_loop_ev(loop);
    wsk_loop_free(loop);
    ev_loop_destroy(ev);
    printf("1..%d\n", test_n);
    return test_failed != 0;
}
