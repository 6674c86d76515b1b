/*
 * loadplan: execute a "load plan" with the real Windows (here: Wine) loader and report, as JSON
 * lines, what every step did and which file every module of the process came from.
 *
 * Built by tests/wine/runner.py (build_loadplan, flags in CFLAGS) with mingw-w64, e.g.
 *     x86_64-w64-mingw32-gcc -municode -O2 -Wall -s -o loadplan.exe loadplan.c
 *
 * Usage:
 *     loadplan.exe PLAN                 run one plan in this process
 *     loadplan.exe --batch LIST         run many plans, each in a fresh child process
 *
 * A plan is a UTF-8 text file (BOM allowed), one directive per line: a keyword, one space, and
 * the argument up to the end of the line (no quoting: Windows paths may hold spaces). Blank
 * lines and lines starting with '#' are ignored. Directives run in file order:
 *
 *     env NAME=VALUE         SetEnvironmentVariableW(NAME, VALUE)      (PATH, for instance)
 *     cwd DIR                SetCurrentDirectoryW(DIR)
 *     setdlldir DIR          SetDllDirectoryW(DIR); "setdlldir" with no argument passes L""
 *     defaultdirs FLAGS      SetDefaultDllDirectories(FLAGS)          (FLAGS: 0x... or decimal)
 *     adddir DIR             AddDllDirectory(DIR)
 *     preload PATH           LoadLibraryExW(PATH, NULL, 0)
 *     load FLAGS TARGET      LoadLibraryExW(TARGET, NULL, FLAGS)
 *     loadw TARGET           LoadLibraryW(TARGET)
 *     proc SYMBOL MODULE     GetProcAddress(GetModuleHandleW(MODULE), SYMBOL); "#N" is ordinal N
 *     delay MODULE           for each delay-load descriptor of the loaded MODULE (a full path or
 *                            a name for GetModuleHandleW): LoadLibraryExA(dll, NULL, 0), as the
 *                            MSVC delay-load helper does, then GetProcAddress for every name and
 *                            ordinal it imports
 *
 * Every directive prints one JSON object on its own line to standard output:
 *
 *     {"step":3,"op":"load","arg":"T:\\s1\\a.dll","flags":4352,"ok":true,"error":0,
 *      "modules":["C:\\windows\\system32\\ntdll.dll", ...]}
 *
 * "error" is GetLastError() after a failed call (0 on success). "modules" (load, loadw,
 * preload only) lists every module of the process after the step, from EnumProcessModules and
 * GetModuleFileNameW, so the caller sees which file each module name is bound to. "delay" adds
 *
 *     "delay":[{"dll":"x.dll","ok":true,"error":0,"path":"T:\\s1\\x.dll","missing":["f","#3"]}]
 *
 * (one entry per descriptor: the load outcome, the file it bound to, and the imports that
 * GetProcAddress did not find). A plan ends with {"done":N}.
 *
 * Batch mode reads LIST (UTF-8): one "EXE<TAB>PLAN" line per plan. For each it prints
 * {"begin":"PLAN"}, starts "EXE PLAN" as a child process that inherits standard output and
 * error, waits (30 s at most, then the child is killed) and prints {"end":"PLAN","exit":CODE}.
 * EXE is a copy of this program placed in the folder that is to be the application
 * directory. One wine invocation with many plans keeps the wineserver warm: that is what makes
 * hundreds of plans cheap, and each plan still starts from a pristine process.
 *
 * Output is written with WriteFile on the standard handles, unbuffered, so that Wine's own
 * debug lines (WINEDEBUG=warn+module, written to the same file by the test harness) appear
 * right before the JSON line of the step that caused them.
 */
#define WIN32_LEAN_AND_MEAN
#define PSAPI_VERSION 2
#include <windows.h>
#include <psapi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <wchar.h>

#ifndef LOAD_LIBRARY_SEARCH_DEFAULT_DIRS
#define LOAD_LIBRARY_SEARCH_DEFAULT_DIRS 0x00001000
#endif

static HANDLE out_handle;

static void out_bytes(const char *data, size_t len)
{
    DWORD written;
    while (len > 0) {
        if (!WriteFile(out_handle, data, (DWORD)len, &written, NULL) || written == 0) return;
        data += written;
        len -= written;
    }
}

/* A growable byte buffer for one JSON line. */
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
        if (!b->data) ExitProcess(90);
        b->cap = cap;
    }
    memcpy(b->data + b->len, s, n);
    b->len += n;
    b->data[b->len] = 0;
}

static void buf_str(buf_t *b, const char *s) { buf_put(b, s, strlen(s)); }

static void buf_fmt(buf_t *b, const char *fmt, unsigned long long v)
{
    char tmp[64];
    int n = snprintf(tmp, sizeof tmp, fmt, v);
    buf_put(b, tmp, (size_t)n);
}

/* A JSON string from a UTF-16 string (lone surrogates become U+FFFD via the conversion). */
static void buf_json_w(buf_t *b, const WCHAR *w)
{
    int n = WideCharToMultiByte(CP_UTF8, 0, w, -1, NULL, 0, NULL, NULL);
    char *u = malloc(n > 0 ? (size_t)n : 1);
    const unsigned char *p;
    if (!u) ExitProcess(90);
    if (n <= 0) u[0] = 0;
    else WideCharToMultiByte(CP_UTF8, 0, w, -1, u, n, NULL, NULL);
    buf_put(b, "\"", 1);
    for (p = (const unsigned char *)u; *p; p++) {
        if (*p == '"' || *p == '\\') {
            char esc[2] = {'\\', (char)*p};
            buf_put(b, esc, 2);
        } else if (*p < 0x20) {
            char esc[8];
            snprintf(esc, sizeof esc, "\\u%04x", *p);
            buf_put(b, esc, 6);
        } else {
            buf_put(b, (const char *)p, 1);
        }
    }
    buf_put(b, "\"", 1);
    free(u);
}

static void buf_flush_line(buf_t *b)
{
    buf_put(b, "\n", 1);
    out_bytes(b->data, b->len);
    b->len = 0;
}

static void buf_modules(buf_t *b)
{
    HMODULE mods[1024];
    DWORD needed = 0, i, count;
    WCHAR name[32768];
    buf_str(b, ",\"modules\":[");
    if (K32EnumProcessModules(GetCurrentProcess(), mods, sizeof mods, &needed)) {
        count = needed / sizeof(HMODULE);
        if (count > 1024) count = 1024;
        for (i = 0; i < count; i++) {
            DWORD n = GetModuleFileNameW(mods[i], name, 32768);
            if (n == 0 || n >= 32768) wcscpy(name, L"?");
            if (i) buf_str(b, ",");
            buf_json_w(b, name);
        }
    }
    buf_str(b, "]");
}

/* Read a whole UTF-8 file into a NUL-terminated UTF-16 string. */
static WCHAR *read_utf8_file(const WCHAR *path)
{
    HANDLE h = CreateFileW(path, GENERIC_READ, FILE_SHARE_READ, NULL, OPEN_EXISTING, 0, NULL);
    DWORD size, got;
    char *raw;
    WCHAR *text;
    int n, skip = 0;
    if (h == INVALID_HANDLE_VALUE) return NULL;
    size = GetFileSize(h, NULL);
    raw = malloc(size + 1);
    if (!raw || !ReadFile(h, raw, size, &got, NULL)) {
        CloseHandle(h);
        return NULL;
    }
    CloseHandle(h);
    raw[got] = 0;
    if (got >= 3 && (unsigned char)raw[0] == 0xEF && (unsigned char)raw[1] == 0xBB &&
        (unsigned char)raw[2] == 0xBF)
        skip = 3;
    n = MultiByteToWideChar(CP_UTF8, 0, raw + skip, (int)got - skip, NULL, 0);
    text = malloc(((size_t)n + 1) * sizeof(WCHAR));
    if (!text) ExitProcess(90);
    MultiByteToWideChar(CP_UTF8, 0, raw + skip, (int)got - skip, text, n);
    text[n] = 0;
    free(raw);
    return text;
}

/* Split text into lines in place (CR LF or LF); returns the next line or NULL. */
static WCHAR *next_line(WCHAR **cursor)
{
    WCHAR *line = *cursor, *end;
    if (!line || !*line) return NULL;
    end = wcschr(line, L'\n');
    if (end) {
        *end = 0;
        *cursor = end + 1;
    } else {
        *cursor = line + wcslen(line);
    }
    end = line + wcslen(line);
    if (end > line && end[-1] == L'\r') end[-1] = 0;
    return line;
}

static DWORD parse_flags(const WCHAR *s, const WCHAR **rest)
{
    WCHAR *end;
    DWORD v = (DWORD)wcstoul(s, &end, 0);
    while (*end == L' ') end++;
    if (rest) *rest = end;
    return v;
}

static void begin_step(buf_t *b, int step, const char *op, const WCHAR *arg)
{
    buf_fmt(b, "{\"step\":%llu,\"op\":\"", (unsigned long long)step);
    buf_str(b, op);
    buf_str(b, "\",\"arg\":");
    buf_json_w(b, arg);
}

static void end_step(buf_t *b, BOOL ok, DWORD err, BOOL modules)
{
    buf_str(b, ok ? ",\"ok\":true" : ",\"ok\":false");
    buf_fmt(b, ",\"error\":%llu", ok ? 0ULL : (unsigned long long)err);
    if (modules) buf_modules(b);
    buf_str(b, "}");
    buf_flush_line(b);
}

static void buf_json_a(buf_t *b, const char *s)
{
    WCHAR w[1024];
    if (!MultiByteToWideChar(CP_ACP, 0, s, -1, w, 1024)) w[0] = 0;
    buf_json_w(b, w);
}

/* Resolve the delay imports of a loaded module the way the MSVC delay helper does. */
static BOOL buf_delay(buf_t *b, HMODULE m)
{
    BYTE *base = (BYTE *)m;
    IMAGE_NT_HEADERS *nt = (IMAGE_NT_HEADERS *)(base + ((IMAGE_DOS_HEADER *)base)->e_lfanew);
    IMAGE_DATA_DIRECTORY dir =
        nt->OptionalHeader.DataDirectory[IMAGE_DIRECTORY_ENTRY_DELAY_IMPORT];
    IMAGE_DELAYLOAD_DESCRIPTOR *d;
    WCHAR path[32768];
    BOOL first = TRUE;
    buf_str(b, ",\"delay\":[");
    if (!dir.VirtualAddress) {
        buf_str(b, "]");
        return TRUE;
    }
    for (d = (IMAGE_DELAYLOAD_DESCRIPTOR *)(base + dir.VirtualAddress); d->DllNameRVA; d++) {
        const char *name = (const char *)(base + d->DllNameRVA);
        IMAGE_THUNK_DATA *t = (IMAGE_THUNK_DATA *)(base + d->ImportNameTableRVA);
        HMODULE h;
        DWORD err;
        BOOL any = FALSE;
        SetLastError(0);
        h = LoadLibraryExA(name, NULL, 0);
        err = GetLastError();
        if (!first) buf_str(b, ",");
        first = FALSE;
        buf_str(b, "{\"dll\":");
        buf_json_a(b, name);
        buf_str(b, h ? ",\"ok\":true" : ",\"ok\":false");
        buf_fmt(b, ",\"error\":%llu", h ? 0ULL : (unsigned long long)err);
        if (h && GetModuleFileNameW(h, path, 32768)) {
            buf_str(b, ",\"path\":");
            buf_json_w(b, path);
        }
        buf_str(b, ",\"missing\":[");
        for (; h && t->u1.AddressOfData; t++) {
            FARPROC p;
            char sym[600];
            if (IMAGE_SNAP_BY_ORDINAL(t->u1.Ordinal)) {
                WORD ord = (WORD)IMAGE_ORDINAL(t->u1.Ordinal);
                p = GetProcAddress(h, (LPCSTR)(ULONG_PTR)ord);
                snprintf(sym, sizeof sym, "#%u", ord);
            } else {
                IMAGE_IMPORT_BY_NAME *ibn = (IMAGE_IMPORT_BY_NAME *)(base + t->u1.AddressOfData);
                p = GetProcAddress(h, (LPCSTR)ibn->Name);
                snprintf(sym, sizeof sym, "%s", (const char *)ibn->Name);
            }
            if (!p) {
                if (any) buf_str(b, ",");
                any = TRUE;
                buf_json_a(b, sym);
            }
        }
        buf_str(b, "]}");
    }
    buf_str(b, "]");
    return TRUE;
}

static int run_plan(const WCHAR *plan_path)
{
    WCHAR *text = read_utf8_file(plan_path), *cursor = text, *line;
    buf_t b = {0};
    int step = 0;
    if (!text) {
        buf_str(&b, "{\"fatal\":\"cannot read plan\",\"plan\":");
        buf_json_w(&b, plan_path);
        buf_str(&b, "}");
        buf_flush_line(&b);
        return 2;
    }
    while ((line = next_line(&cursor)) != NULL) {
        WCHAR *arg;
        BOOL ok;
        DWORD err;
        if (!*line || *line == L'#') continue;
        arg = wcschr(line, L' ');
        if (arg) *arg++ = 0;
        else arg = line + wcslen(line);
        SetLastError(0);
        if (!wcscmp(line, L"env")) {
            WCHAR *eq = wcschr(arg, L'=');
            begin_step(&b, step, "env", arg);
            if (eq) {
                *eq = 0;
                ok = SetEnvironmentVariableW(arg, eq + 1);
                *eq = L'=';
            } else {
                ok = SetEnvironmentVariableW(arg, NULL);
            }
            end_step(&b, ok, GetLastError(), FALSE);
        } else if (!wcscmp(line, L"cwd")) {
            begin_step(&b, step, "cwd", arg);
            ok = SetCurrentDirectoryW(arg);
            end_step(&b, ok, GetLastError(), FALSE);
        } else if (!wcscmp(line, L"setdlldir")) {
            begin_step(&b, step, "setdlldir", arg);
            ok = SetDllDirectoryW(arg);
            end_step(&b, ok, GetLastError(), FALSE);
        } else if (!wcscmp(line, L"defaultdirs")) {
            DWORD flags = parse_flags(arg, NULL);
            begin_step(&b, step, "defaultdirs", arg);
            buf_fmt(&b, ",\"flags\":%llu", flags);
            ok = SetDefaultDllDirectories(flags);
            end_step(&b, ok, GetLastError(), FALSE);
        } else if (!wcscmp(line, L"adddir")) {
            begin_step(&b, step, "adddir", arg);
            ok = AddDllDirectory(arg) != NULL;
            end_step(&b, ok, GetLastError(), FALSE);
        } else if (!wcscmp(line, L"preload") || !wcscmp(line, L"loadw") ||
                   !wcscmp(line, L"load")) {
            const WCHAR *target = arg;
            DWORD flags = 0;
            HMODULE h;
            char op[16];
            WideCharToMultiByte(CP_UTF8, 0, line, -1, op, sizeof op, NULL, NULL);
            if (!wcscmp(line, L"load")) flags = parse_flags(arg, &target);
            begin_step(&b, step, op, target);
            buf_fmt(&b, ",\"flags\":%llu", flags);
            if (!wcscmp(line, L"loadw")) h = LoadLibraryW(target);
            else h = LoadLibraryExW(target, NULL, flags);
            err = GetLastError();
            end_step(&b, h != NULL, err, TRUE);
        } else if (!wcscmp(line, L"proc")) {
            WCHAR *module = wcschr(arg, L' ');
            char sym[512];
            HMODULE m;
            FARPROC p = NULL;
            if (module) *module++ = 0;
            else module = arg + wcslen(arg);
            WideCharToMultiByte(CP_ACP, 0, arg, -1, sym, sizeof sym, NULL, NULL);
            begin_step(&b, step, "proc", module);
            buf_str(&b, ",\"symbol\":");
            buf_json_w(&b, arg);
            m = GetModuleHandleW(module);
            if (m) p = GetProcAddress(m, sym[0] == '#' ? (LPCSTR)(ULONG_PTR)atoi(sym + 1) : sym);
            err = GetLastError();
            end_step(&b, p != NULL, err, FALSE);
        } else if (!wcscmp(line, L"delay")) {
            HMODULE m = GetModuleHandleW(arg);
            err = GetLastError();
            begin_step(&b, step, "delay", arg);
            if (m) buf_delay(&b, m);
            end_step(&b, m != NULL, err, TRUE);
        } else {
            begin_step(&b, step, "unknown", line);
            end_step(&b, FALSE, ERROR_INVALID_FUNCTION, FALSE);
        }
        step++;
    }
    buf_fmt(&b, "{\"done\":%llu}", (unsigned long long)step);
    buf_flush_line(&b);
    return 0;
}

static int run_batch(const WCHAR *list_path)
{
    WCHAR *text = read_utf8_file(list_path), *cursor = text, *line;
    buf_t b = {0};
    if (!text) {
        buf_str(&b, "{\"fatal\":\"cannot read batch list\"}");
        buf_flush_line(&b);
        return 2;
    }
    while ((line = next_line(&cursor)) != NULL) {
        WCHAR *tab, *cmd;
        STARTUPINFOW si;
        PROCESS_INFORMATION pi;
        DWORD code = 0xFFFFFFFF;
        size_t n;
        if (!*line || *line == L'#') continue;
        tab = wcschr(line, L'\t');
        if (!tab) continue;
        *tab = 0;
        buf_str(&b, "{\"begin\":");
        buf_json_w(&b, tab + 1);
        buf_str(&b, "}");
        buf_flush_line(&b);
        n = wcslen(line) + wcslen(tab + 1) + 8;
        cmd = malloc(n * sizeof(WCHAR));
        if (!cmd) ExitProcess(90);
        swprintf(cmd, n, L"\"%ls\" \"%ls\"", line, tab + 1);
        memset(&si, 0, sizeof si);
        si.cb = sizeof si;
        si.dwFlags = STARTF_USESTDHANDLES;
        si.hStdInput = GetStdHandle(STD_INPUT_HANDLE);
        si.hStdOutput = GetStdHandle(STD_OUTPUT_HANDLE);
        si.hStdError = GetStdHandle(STD_ERROR_HANDLE);
        if (CreateProcessW(line, cmd, NULL, NULL, TRUE, 0, NULL, NULL, &si, &pi)) {
            if (WaitForSingleObject(pi.hProcess, 30000) != WAIT_OBJECT_0) {
                TerminateProcess(pi.hProcess, 0xDEAD);
                WaitForSingleObject(pi.hProcess, 5000);
            }
            GetExitCodeProcess(pi.hProcess, &code);
            CloseHandle(pi.hThread);
            CloseHandle(pi.hProcess);
        } else {
            code = 0x10000 + GetLastError();
        }
        free(cmd);
        buf_str(&b, "{\"end\":");
        buf_json_w(&b, tab + 1);
        buf_fmt(&b, ",\"exit\":%llu}", code);
        buf_flush_line(&b);
    }
    return 0;
}

int wmain(int argc, WCHAR **argv)
{
    SetErrorMode(SEM_FAILCRITICALERRORS | SEM_NOOPENFILEERRORBOX);
    out_handle = GetStdHandle(STD_OUTPUT_HANDLE);
    if (argc == 3 && !wcscmp(argv[1], L"--batch")) return run_batch(argv[2]);
    if (argc == 2) return run_plan(argv[1]);
    out_bytes("usage: loadplan PLAN | loadplan --batch LIST\n", 45);
    return 2;
}
