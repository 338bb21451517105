/* wsbench's charts: a small SVG writer (axes with ticks, lines, bars, whiskers, a legend) for
 * the HTML report (bench_html.c).  Everything is written as it is drawn, with presentation
 * attributes rather than CSS, so each chart reads the same inline or saved on its own.  See
 * bench.h. */
#include "bench.h"

#include <math.h>
#include <string.h>

/* Plot area margins, in pixels. */
#define LEFT   72
#define RIGHT  16
#define TOP    30
#define BOTTOM 44

static const char *const palette[] = {"#1f77b4", "#d62728", "#2ca02c", "#ff7f0e",
                                      "#9467bd", "#8c564b", "#e377c2", "#17becf"};

const char *wb_svg_colour(unsigned series)
{
    return palette[series % (sizeof palette / sizeof palette[0])];
}

void wb_xml_text(FILE *f, const char *s)
{
    for (; *s; s++) {
        switch (*s) {
        case '&': fputs("&amp;", f); break;
        case '<': fputs("&lt;", f); break;
        case '>': fputs("&gt;", f); break;
        case '"': fputs("&quot;", f); break;
        default:
            /* Control characters are not allowed in XML 1.0 text. */
            if ((unsigned char)*s < 0x20 && *s != '\n' && *s != '\t')
                fputc('?', f);
            else
                fputc(*s, f);
        }
    }
}

/* An axis position of v: its log10 on a log axis (values <= 0 sit at the bottom). */
static double axis_pos(const wb_axis *a, double v)
{
    if (!a->log) return v;
    return v > 0 ? log10(v) : log10(a->min);
}

double wb_svg_x(const wb_svg *s, double v)
{
    double lo = axis_pos(&s->x, s->x.min), hi = axis_pos(&s->x, s->x.max);
    double t = hi > lo ? (axis_pos(&s->x, v) - lo) / (hi - lo) : 0;
    if (t < 0) t = 0;
    if (t > 1) t = 1;
    return LEFT + t * (s->w - LEFT - RIGHT);
}

double wb_svg_y(const wb_svg *s, double v)
{
    double lo = axis_pos(&s->y, s->y.min), hi = axis_pos(&s->y, s->y.max);
    double t = hi > lo ? (axis_pos(&s->y, v) - lo) / (hi - lo) : 0;
    if (t < 0) t = 0;
    if (t > 1) t = 1;
    return s->h - BOTTOM - t * (s->h - TOP - BOTTOM);
}

static void text(wb_svg *s, double x, double y, const char *anchor, const char *str)
{
    fprintf(s->f, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"%s\">", x, y, anchor);
    wb_xml_text(s->f, str);
    fputs("</text>\n", s->f);
}

static void label(const wb_axis *a, char *buf, size_t cap, double v)
{
    if (a->fmt)
        a->fmt(buf, cap, v);
    else
        snprintf(buf, cap, "%g", v);
}

/* Tick values of an axis: powers of ten on a log axis, steps of 1, 2 or 5 x 10^k otherwise. */
static unsigned ticks(const wb_axis *a, double *out, unsigned cap)
{
    unsigned n = 0;
    if (a->hide) return 0;
    if (a->log) {
        for (double p = floor(log10(a->min)); p <= log10(a->max) + 1e-9 && n < cap; p++)
            if (p >= log10(a->min) - 1e-9) out[n++] = pow(10, p);
        return n;
    }
    double range = a->max - a->min;
    if (range <= 0) return 0;
    double step = pow(10, floor(log10(range / 5)));
    if (range / step > 25)
        step *= 5;
    else if (range / step > 10)
        step *= 2;
    if (a->whole && step < 1) step = 1;
    for (double v = ceil(a->min / step) * step; v <= a->max + step * 1e-9 && n < cap; v += step)
        out[n++] = v;
    return n;
}

void wb_svg_begin(wb_svg *s, FILE *f, int w, int h, const char *title)
{
    memset(s, 0, sizeof *s);
    s->f = f;
    s->w = w;
    s->h = h;
    fprintf(f,
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" "
            "viewBox=\"0 0 %d %d\" role=\"img\" font-family=\"sans-serif\" font-size=\"11\">\n",
            w, h, w, h);
    fputs("<title>", f);
    wb_xml_text(f, title);
    fputs("</title>\n", f);
    fprintf(f, "<text x=\"%d\" y=\"18\" font-size=\"13\" font-weight=\"bold\">", LEFT);
    wb_xml_text(f, title);
    fputs("</text>\n", f);
}

void wb_svg_axes(wb_svg *s, const wb_axis *x, const wb_axis *y)
{
    s->x = *x;
    s->y = *y;
    /* A log axis needs a positive range; an empty one gets a unit range. */
    for (wb_axis *a = &s->x; a; a = a == &s->x ? &s->y : NULL) {
        if (a->log && a->min <= 0) a->min = 1;
        if (!(a->max > a->min)) a->max = a->log ? a->min * 10 : a->min + 1;
    }
    double t[64], x0 = LEFT, x1 = s->w - RIGHT, y0 = s->h - BOTTOM, y1 = TOP;
    char b[48];
    fputs("<g stroke=\"#ddd\" stroke-width=\"1\">\n", s->f);
    unsigned n = ticks(&s->y, t, 64);
    for (unsigned i = 0; i < n; i++)
        fprintf(s->f, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\"/>\n", x0,
                wb_svg_y(s, t[i]), x1, wb_svg_y(s, t[i]));
    unsigned m = ticks(&s->x, t + n, 64 - n);
    for (unsigned i = n; i < n + m; i++)
        fprintf(s->f, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\"/>\n",
                wb_svg_x(s, t[i]), y0, wb_svg_x(s, t[i]), y1);
    fputs("</g>\n", s->f);
    fprintf(s->f,
            "<path d=\"M%.1f %.1fV%.1fH%.1f\" fill=\"none\" stroke=\"#333\" "
            "stroke-width=\"1\"/>\n",
            x0, y1, y0, x1);
    fputs("<g fill=\"#333\">\n", s->f);
    for (unsigned i = 0; i < n; i++) {
        label(&s->y, b, sizeof b, t[i]);
        text(s, x0 - 6, wb_svg_y(s, t[i]) + 4, "end", b);
    }
    for (unsigned i = n; i < n + m; i++) {
        label(&s->x, b, sizeof b, t[i]);
        text(s, wb_svg_x(s, t[i]), y0 + 16, "middle", b);
    }
    if (s->x.name) text(s, (x0 + x1) / 2, s->h - 8, "middle", s->x.name);
    if (s->y.name) {
        fprintf(s->f, "<text transform=\"translate(14 %.1f) rotate(-90)\" text-anchor=\"middle\">",
                (y0 + y1) / 2);
        wb_xml_text(s->f, s->y.name);
        fputs("</text>\n", s->f);
    }
    fputs("</g>\n", s->f);
}

void wb_svg_line(wb_svg *s, const double *x, const double *y, size_t n, unsigned series)
{
    if (!n) return;
    fprintf(s->f, "<polyline fill=\"none\" stroke=\"%s\" stroke-width=\"1.5\" points=\"",
            wb_svg_colour(series));
    for (size_t i = 0; i < n; i++)
        fprintf(s->f, "%s%.1f,%.1f", i ? " " : "", wb_svg_x(s, x[i]), wb_svg_y(s, y[i]));
    fputs("\"/>\n", s->f);
}

void wb_svg_bar(wb_svg *s, double x0, double x1, double y0, double y1, unsigned series)
{
    double top = wb_svg_y(s, y1), base = wb_svg_y(s, y0);
    double l = wb_svg_x(s, x0), r = wb_svg_x(s, x1);
    fprintf(s->f,
            "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" fill=\"%s\" "
            "fill-opacity=\"0.8\"/>\n",
            l, top, r - l, base - top, wb_svg_colour(series));
}

void wb_svg_whisker(wb_svg *s, double x, double lo, double hi)
{
    double px = wb_svg_x(s, x), a = wb_svg_y(s, lo), b = wb_svg_y(s, hi);
    fprintf(s->f,
            "<path d=\"M%.1f %.1fV%.1fM%.1f %.1fH%.1fM%.1f %.1fH%.1f\" stroke=\"#000\" "
            "stroke-width=\"1.5\" fill=\"none\"/>\n",
            px, a, b, px - 6, a, px + 6, px - 6, b, px + 6);
}

void wb_svg_note(wb_svg *s, double x, double y, const char *str)
{
    fprintf(s->f, "<g fill=\"#333\">\n");
    text(s, wb_svg_x(s, x), wb_svg_y(s, y) - 4, "middle", str);
    fputs("</g>\n", s->f);
}

void wb_svg_legend(wb_svg *s, const char *const *names, unsigned n)
{
    double x = s->w - RIGHT;
    for (unsigned i = n; i-- > 0;) {
        x -= 14 + 7 * (double)strlen(names[i]);
        fprintf(s->f, "<rect x=\"%.1f\" y=\"9\" width=\"10\" height=\"10\" fill=\"%s\"/>\n", x,
                wb_svg_colour(i));
        fprintf(s->f, "<text x=\"%.1f\" y=\"18\" fill=\"#333\">", x + 13);
        wb_xml_text(s->f, names[i]);
        fputs("</text>\n", s->f);
        x -= 8;
    }
}

void wb_svg_end(wb_svg *s)
{
    fputs("</svg>\n", s->f);
}
