/*
 * dlrun: call dlopen() a few times with the real glibc ld.so and report, as JSON lines, what
 * every call did and which objects it brought into the process.
 *
 * Built by tests/ldso/runner.py (build_dlrun) with the host gcc, without any RPATH/RUNPATH:
 *     gcc -O2 -Wall -o dlrun dlrun.c -ldl
 *
 * Usage:
 *     dlrun STEP...            one step per argument, run in order
 *     dlrun -f PLAN            steps read from PLAN, one per line ('#' lines and blank lines
 *                              are ignored)
 *
 * A step is "FLAGS TARGET": FLAGS is a comma-separated list of now, lazy, global, local,
 * noload, nodelete (at least one of now/lazy), one space, then TARGET up to the end of the
 * argument or line (a path, or a name searched the way ld.so searches it). The call made is
 * dlopen(TARGET, flags); TARGET "-" passes NULL.
 *
 * Output, one JSON object per line on standard output, flushed after every line:
 *
 *     {"op":"initial","objects":[OBJ,...]}     before the first call: every object of the
 *                                              process, in dl_iterate_phdr order (= load
 *                                              order)
 *     {"op":"dlopen","step":1,"target":"...","flags":"now,global","ok":true,
 *      "object":OBJ,"new":[OBJ,...]}           success: the object the handle refers to and
 *                                              the objects that were not there before, in
 *                                              dl_iterate_phdr order
 *     {"op":"dlopen",...,"ok":false,"error":"<dlerror() text>","new":[...]}
 *                                              failure ("new" is normally empty: ld.so
 *                                              unloads what a failed dlopen mapped)
 *     {"done":N}                               all N steps ran
 *
 * OBJ is {"name":"<dlpi_name / l_name as ld.so stored it>","real":"<realpath or null>"}. The
 * main program's dlpi_name is "": it is reported as the realpath of /proc/self/exe. realpath
 * runs in this process, so a relative l_name (found through an empty or relative search path
 * entry) resolves against this process's working directory.
 *
 * On standard error, each call is bracketed by "dlrun: step N" and "dlrun: end N" lines
 * (written with write(2), unbuffered), so that ld.so's own LD_DEBUG lines, which go to the same
 * file descriptor, can be attributed to the call that caused them: a dlopen() of an object that
 * is already loaded prints no LD_DEBUG line at all.
 *
 * Nothing is ever dlclose()d: every call sees the objects the earlier calls left.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <link.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ---- a growable line buffer ---------------------------------------------------------- */

typedef struct {
    char *data;
    size_t len, cap;
} buf_t;

static void buf_put(buf_t *b, const char *s, size_t n)
{
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (b->len + n + 1 > cap) cap *= 2;
        b->data = realloc(b->data, cap);
        if (!b->data) exit(90);
        b->cap = cap;
    }
    memcpy(b->data + b->len, s, n);
    b->len += n;
    b->data[b->len] = 0;
}

static void buf_str(buf_t *b, const char *s) { buf_put(b, s, strlen(s)); }

static void buf_json(buf_t *b, const char *s)
{
    const unsigned char *p;
    if (!s) {
        buf_str(b, "null");
        return;
    }
    buf_put(b, "\"", 1);
    for (p = (const unsigned char *)s; *p; p++) {
        if (*p == '"' || *p == '\\') {
            char esc[2] = {'\\', (char)*p};
            buf_put(b, esc, 2);
        } else if (*p < 0x20 || *p >= 0x7f) {
            /* bytes, not code points: the reader decodes \u00XX back to one byte */
            char esc[8];
            snprintf(esc, sizeof esc, "\\u%04x", *p);
            buf_put(b, esc, 6);
        } else {
            buf_put(b, (const char *)p, 1);
        }
    }
    buf_put(b, "\"", 1);
}

static void buf_line(buf_t *b)
{
    buf_put(b, "\n", 1);
    fwrite(b->data, 1, b->len, stdout);
    fflush(stdout);
    b->len = 0;
}

/* ---- the objects of the process ------------------------------------------------------ */

typedef struct {
    uintptr_t addr;
    char *name;
} obj_t;

typedef struct {
    obj_t *items;
    size_t n, cap;
} objlist_t;

static int collect(struct dl_phdr_info *info, size_t size, void *data)
{
    objlist_t *l = data;
    (void)size;
    if (l->n == l->cap) {
        l->cap = l->cap ? l->cap * 2 : 32;
        l->items = realloc(l->items, l->cap * sizeof(obj_t));
        if (!l->items) exit(90);
    }
    l->items[l->n].addr = (uintptr_t)info->dlpi_addr;
    l->items[l->n].name = strdup(info->dlpi_name ? info->dlpi_name : "");
    l->n++;
    return 0;
}

static void snapshot(objlist_t *l)
{
    l->n = 0;
    dl_iterate_phdr(collect, l);
}

static int contains(const objlist_t *l, const obj_t *o)
{
    size_t i;
    for (i = 0; i < l->n; i++)
        if (l->items[i].addr == o->addr && strcmp(l->items[i].name, o->name) == 0) return 1;
    return 0;
}

static void buf_obj(buf_t *b, const char *name)
{
    char real[PATH_MAX];
    const char *shown = name;
    char exe[PATH_MAX];
    if (!name[0]) {  /* the main program */
        if (realpath("/proc/self/exe", exe)) shown = exe;
    }
    buf_str(b, "{\"name\":");
    buf_json(b, shown);
    buf_str(b, ",\"real\":");
    buf_json(b, realpath(shown, real) ? real : NULL);
    buf_str(b, "}");
}

static void buf_objects(buf_t *b, const char *key, const objlist_t *now, const objlist_t *before)
{
    size_t i;
    int first = 1;
    buf_str(b, ",\"");
    buf_str(b, key);
    buf_str(b, "\":[");
    for (i = 0; i < now->n; i++) {
        if (before && contains(before, &now->items[i])) continue;
        if (!first) buf_str(b, ",");
        first = 0;
        buf_obj(b, now->items[i].name);
    }
    buf_str(b, "]");
}

/* ---- steps ---------------------------------------------------------------------------- */

static int parse_flags(const char *text, size_t len, int *flags)
{
    size_t i = 0;
    int mode = 0, have_binding = 0;
    while (i < len) {
        size_t j = i;
        while (j < len && text[j] != ',') j++;
#define IS(word) (j - i == sizeof(word) - 1 && strncmp(text + i, word, j - i) == 0)
        if (IS("now")) mode |= RTLD_NOW, have_binding = 1;
        else if (IS("lazy")) mode |= RTLD_LAZY, have_binding = 1;
        else if (IS("global")) mode |= RTLD_GLOBAL;
        else if (IS("local")) mode |= RTLD_LOCAL;
        else if (IS("noload")) mode |= RTLD_NOLOAD;
        else if (IS("nodelete")) mode |= RTLD_NODELETE;
        else return -1;
#undef IS
        i = j + 1;
    }
    if (!have_binding) return -1;
    *flags = mode;
    return 0;
}

static objlist_t before_list, after_list;

static void mark(const char *what, int step)
{
    char line[64];
    int n = snprintf(line, sizeof line, "dlrun: %s %d\n", what, step);
    if (n > 0 && write(2, line, (size_t)n) < 0) { /* nothing to do */ }
}
static buf_t out;

static int run_step(int step, const char *spec)
{
    const char *space = strchr(spec, ' ');
    const char *target;
    int flags;
    void *handle;
    if (!space || parse_flags(spec, (size_t)(space - spec), &flags) != 0) {
        buf_str(&out, "{\"op\":\"bad-step\",\"spec\":");
        buf_json(&out, spec);
        buf_str(&out, "}");
        buf_line(&out);
        return -1;
    }
    target = space + 1;
    snapshot(&before_list);
    mark("step", step);
    dlerror();
    handle = dlopen(strcmp(target, "-") == 0 ? NULL : target, flags);
    mark("end", step);
    {
        const char *err = handle ? NULL : dlerror();
        char step_text[32];
        snapshot(&after_list);
        snprintf(step_text, sizeof step_text, "%d", step);
        buf_str(&out, "{\"op\":\"dlopen\",\"step\":");
        buf_str(&out, step_text);
        buf_str(&out, ",\"target\":");
        buf_json(&out, target);
        buf_str(&out, ",\"flags\":");
        {
            char flag_text[64];
            size_t n = (size_t)(space - spec);
            if (n >= sizeof flag_text) n = sizeof flag_text - 1;
            memcpy(flag_text, spec, n);
            flag_text[n] = 0;
            buf_json(&out, flag_text);
        }
        if (handle) {
            struct link_map *map = NULL;
            buf_str(&out, ",\"ok\":true,\"object\":");
            if (dlinfo(handle, RTLD_DI_LINKMAP, &map) == 0 && map)
                buf_obj(&out, map->l_name ? map->l_name : "");
            else
                buf_str(&out, "null");
        } else {
            buf_str(&out, ",\"ok\":false,\"error\":");
            buf_json(&out, err ? err : "");
        }
        buf_objects(&out, "new", &after_list, &before_list);
        buf_str(&out, "}");
        buf_line(&out);
    }
    return 0;
}

static char *read_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    char *text;
    long size;
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    size = ftell(f);
    fseek(f, 0, SEEK_SET);
    text = malloc((size_t)size + 1);
    if (!text) exit(90);
    size = (long)fread(text, 1, (size_t)size, f);
    text[size] = 0;
    fclose(f);
    return text;
}

int main(int argc, char **argv)
{
    objlist_t initial = {0};
    int steps = 0, i;
    snapshot(&initial);
    buf_str(&out, "{\"op\":\"initial\"");
    buf_objects(&out, "objects", &initial, NULL);
    buf_str(&out, "}");
    buf_line(&out);

    if (argc == 3 && strcmp(argv[1], "-f") == 0) {
        char *text = read_file(argv[2]);
        char *line, *save = NULL;
        if (!text) {
            buf_str(&out, "{\"fatal\":\"cannot read plan\"}");
            buf_line(&out);
            return 2;
        }
        for (line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
            size_t n = strlen(line);
            if (n && line[n - 1] == '\r') line[--n] = 0;
            if (!n || line[0] == '#') continue;
            if (run_step(++steps, line) != 0) return 2;
        }
    } else {
        for (i = 1; i < argc; i++)
            if (run_step(++steps, argv[i]) != 0) return 2;
    }
    {
        char done[64];
        snprintf(done, sizeof done, "{\"done\":%d}", steps);
        buf_str(&out, done);
        buf_line(&out);
    }
    return 0;
}
