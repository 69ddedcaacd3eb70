/*
 * console.c - GET /console: the web console, one static page and its
 * script and style sheet, embedded in the binary (console.h). The page
 * calls the REST API of this bridge only; see rest-bridge/console/.
 *
 * Every file goes out with a Content-Security-Policy that lets it load
 * scripts, styles and data from this origin only and nothing inline, so an
 * event rendered by mistake as markup still could not run a script.
 */
#include <stdlib.h>
#include <string.h>

#include "bridge.h"
#include "console.h"

/* The page's policy: its own script, style sheet and API; no inline code,
 * no frames, no plugins, forms and <base> disabled. */
#define CONSOLE_CSP                                                                                \
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "                \
    "img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

static const char *media_type(const char *name)
{
    static const struct {
        const char *ext, *type;
    } types[] = {{".html", "text/html; charset=utf-8"},
                 {".js", "text/javascript; charset=utf-8"},
                 {".css", "text/css; charset=utf-8"},
                 {".png", "image/png"},
                 {".svg", "image/svg+xml"}};
    const char *dot = strrchr(name, '.');

    for (size_t i = 0; dot != NULL && i < sizeof(types) / sizeof(types[0]); i++)
        if (strcmp(dot, types[i].ext) == 0)
            return types[i].type;
    return "application/octet-stream";
}

static const tsb_asset *find_asset(const char *name)
{
    for (size_t i = 0; i < tsb_console_assets_count; i++)
        if (strcmp(tsb_console_assets[i].name, name) == 0)
            return &tsb_console_assets[i];
    return NULL;
}

/* GET /console, /console/ (the page) and /console/{file}. */
void tsb_handle_console(tsb_request *req, tsb_response *resp)
{
    const char *name = req->param[0] != '\0' ? req->param : "index.html";
    const tsb_asset *a = find_asset(name);

    if (a == NULL) {
        tsb_reply_error(resp, TSE_NOT_FOUND, NULL, "No console file at %s (see GET /console).",
                        req->path);
        return;
    }
    free(resp->body);
    if ((resp->body = malloc(a->size + 1)) == NULL) {
        tsb_reply_nomem(resp);
        return;
    }
    memcpy(resp->body, a->bytes, a->size + 1);
    resp->len = a->size;
    tsb_reply_status(resp, TSE_OK);
    resp->content_type = media_type(a->name);
    json_decref(resp->headers);
    resp->headers = json_pack("{s:s, s:s, s:s, s:s, s:s}", "Content-Security-Policy", CONSOLE_CSP,
                              "X-Content-Type-Options", "nosniff", "Referrer-Policy", "no-referrer",
                              "X-Frame-Options", "DENY", "Cache-Control", "no-cache");
    if (resp->headers == NULL)
        tsb_reply_nomem(resp); /* never a page without its policy */
}
