/* SPDX-License-Identifier: MIT */
/*
 * daemon.c - wires the subsystems onto one libuv loop and runs it.
 *
 * Life of the process: start the Redis client (it connects and reconnects by itself), the HTTP
 * server with /healthz and /metrics, and the outgoing HTTP client; run the loop. On SIGTERM or
 * SIGINT: stop taking requests (new ones get 503), wait until no request, Redis command or
 * outgoing request is in flight, or until the shutdown deadline; then close everything, let the
 * close callbacks run, and check that uv_loop_close() returns 0. A second signal cuts the drain
 * short. SIGHUP reloads the log settings and the services.
 *
 * The daemon-wide jobs (the router and its outbox, the reminders, the statistics) are services:
 * entries of the services[] table, which every step above iterates.
 */
#include "daemon.h"

#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <uv.h>

#include "common/dsfr.h"
#include "core/adapters.h"
#include "core/keys.h"
#include "core/router.h"
#include "core/store.h"
#include "engine/engine.h"
#include "engine/geo.h"
#include "features/escalation.h"
#include "features/mailcopy.h"
#include "features/reminders.h"
#include "features/stats.h"
#include "frichebot/alloc.h"
#include "frichebot/buf.h"
#include "frichebot/clock.h"
#include "frichebot/err.h"
#include "frichebot/log.h"
#include "io/durability.h"
#include "io/fds.h"
#include "io/http_client.h"
#include "io/http_server.h"
#include "io/metrics.h"
#include "io/redis.h"
#include "io/sd_notify.h"

#define DRAIN_POLL_MS  20
#define READY_RETRY_MS 250 /* between two readiness PINGs for the service manager */

enum state { RUNNING, DRAINING, CLOSING };

/*
 * A daemon-wide service: a long-lived job on the loop (the router and its outbox, the reminder
 * scheduler, the statistics) that the daemon creates, starts, drains, reports on and reloads the
 * same way. Each is one entry of services[] below; the daemon iterates the table, so adding a
 * service is writing its ops and adding that entry. Every op runs on the loop thread; all but
 * `create` are optional (NULL: nothing to do).
 */
struct service_ops {
    const char *name; /* for the logs */
    /* Creates the service into *self (OUT). Returns 0, with *self NULL when the configuration
     * leaves it off, or a negative code that fails the start-up (the error is logged). Called in
     * table order, after the Redis client, the store and the HTTP server and client exist. */
    int (*create)(fb_daemon_t *d, void **self);
    /* Starts its work once the HTTP server listens and the Redis client runs; table order. A
     * negative code fails the start-up. */
    int (*start)(void *self);
    /* Stops taking new work; `done(arg)` fires exactly once when nothing is left in flight.
     * Called once, in reverse table order, at the start of the drain (or after a failed
     * start-up); the drain waits for every `done`. */
    void (*stop)(void *self, void (*done)(void *arg), void *arg);
    /* Work still in flight, for the shutdown-deadline warning ("conversation event(s)"). */
    size_t (*pending)(const void *self);
    /* Adds its parts' states to /healthz's "adapters" object (borrowed). */
    void (*health)(const void *self, json_t *adapters);
    /* Appends its /metrics lines to `out`; returns 0 or a negative code (the scrape fails). */
    int (*metrics)(const void *self, fb_buf_t *out);
    /* SIGHUP, in table order; a failure is logged and ends the reload there: the later
     * services, which may depend on this one, keep what they serve. */
    int (*reload)(void *self);
    /* Frees it after the loop ran dry, in reverse table order. */
    void (*destroy)(void *self);
};

/* A service's run-time state, beside its ops. */
struct service {
    void *self;   /* NULL: not created (off, or the start-up failed before it) */
    bool stopped; /* its stop's done fired */
};

struct fb_daemon_s {
    uv_loop_t loop;
    const fb_config_t *cfg;
    const char *config_path;
    enum state state;
    fb_http_server_t *http;
    fb_http_client_t *client;
    fb_redis_t *redis;
    fb_durability_t *durability; /* Redis's persistence, checked at every connection */
    bool refused;                /* the first Redis does not persist (AOF): exit status 1 */
    fb_store_t *store;
    fb_geo_t *geo;       /* the router's communes index */
    fb_router_t *router; /* the "router" service, for /healthz and /stats' step titles */
    fb_stats_t *stats;   /* the "stats" service, for /metrics and /stats */
    uv_signal_t sig_term, sig_int, sig_hup;
    uv_timer_t drain;
    uint64_t drain_deadline;
    uv_timer_t ready_retry;     /* the next readiness PING (sd_notify READY=1) */
    bool notified_ready;        /* READY=1 sent */
    fb_sd_watchdog_t *watchdog; /* WATCHDOG=1 pings, when systemd asks for them */
    bool stopping;              /* the services were asked to stop */
    uint64_t reloads;
    struct service svc[]; /* one per entry of services[], same order */
};

/* ---- the services ---- */

/* Loads the communes index; without it, dialogs that ask for a commune are refused. */
static fb_geo_t *load_geo(const char *path)
{
    fb_buf_t errors;
    fb_buf_init(&errors, 1u << 16);
    fb_geo_t *g = fb_geo_load(path, &errors);
    if (!g)
        FB_WARN(CORE, "communes index not loaded (%s): %s", path, fb_buf_str(&errors));
    fb_buf_free(&errors);
    return g;
}

/* Registers the router's features (core/feature.h): escalation when enabled, the stats. */
static int add_features(fb_daemon_t *d)
{
    fb_buf_t errors;
    fb_buf_init(&errors, 1u << 16);
    fb_esc_t *esc = NULL;
    int rc = fb_esc_create(&d->loop, d->cfg, d->store, d->geo, &esc, &errors);
    if (rc != 0)
        FB_ERR(CORE, "escalation cannot start:\n%s", fb_buf_str(&errors));
    fb_buf_free(&errors);
    if (rc == 0 && esc && fb_router_add_feature(d->router, &fb_esc_feature, esc) != 0) {
        fb_esc_destroy(esc);
        rc = FB_EINVAL;
    }
    if (rc == 0 && !esc)
        rc = fb_router_add_feature(d->router, &fb_esc_delivery_feature, NULL);
    /* the engine never promises an advisor the rooms do not cover (none when disabled: esc is
     * NULL); the router owns esc from here and outlives every step */
    if (rc == 0)
        fb_router_set_has_advisor(d->router, fb_esc_has_advisor, esc);
    if (rc == 0)
        rc = fb_router_add_feature(d->router, &fb_stats_feature, NULL);
    /* always, even with email.enabled false: a forget must still erase an address given while
     * it was on */
    if (rc == 0)
        rc = fb_router_add_feature(d->router, &fb_mailcopy_feature, NULL);
    return rc;
}

/* The router on the dialog, with its features and every built-in adapter registered. */
static int router_create(fb_daemon_t *d, void **self)
{
    d->geo = load_geo(d->cfg->dialogs.geo_path);
    fb_buf_t errors;
    fb_buf_init(&errors, 1u << 20);
    fb_router_deps_t deps = {&d->loop, d->cfg, d->redis, d->store, d->http, d->client, d->geo};
    d->router = fb_router_create(&deps, &errors);
    if (!d->router) {
        FB_ERR(CORE, "cannot start the conversation pipeline (dialog %s):\n%s",
               d->cfg->dialogs.path, fb_buf_str(&errors));
        fb_buf_free(&errors);
        return FB_ECONFIG;
    }
    fb_buf_free(&errors);
    *self = d->router;
    if (add_features(d) != 0)
        return FB_ECONFIG;
    for (size_t i = 0; fb_builtin_adapters[i]; i++) {
        int rc = fb_router_add_adapter(d->router, fb_builtin_adapters[i]);
        if (rc == FB_DECLINED) {
            FB_INFO(CORE, "adapter %s disabled by the configuration", fb_builtin_adapters[i]->name);
        } else if (rc) {
            return rc;
        }
    }
    return 0;
}

static int router_start(void *self)
{
    return fb_router_start(self);
}

static void router_stop(void *self, void (*done)(void *arg), void *arg)
{
    fb_router_stop(self, done, arg);
}

static size_t router_pending(const void *self)
{
    return fb_router_pending(self);
}

static void router_health(const void *self, json_t *adapters)
{
    fb_router_health(self, adapters);
}

static int router_metrics(const void *self, fb_buf_t *out)
{
    return fb_router_metrics_render(self, out);
}

/* SIGHUP: the dialog file again (a broken one is refused and the old version keeps serving). */
static int router_reload(void *self)
{
    return fb_router_reload(self, NULL);
}

static void router_destroy(void *self)
{
    fb_router_destroy(self);
}

static const struct service_ops router_service = {
    .name = "router",
    .create = router_create,
    .start = router_start,
    .stop = router_stop,
    .pending = router_pending,
    .health = router_health,
    .metrics = router_metrics,
    .reload = router_reload,
    .destroy = router_destroy,
};

/* The reminder scheduler; it hands the reminders due to the router. */
static int reminders_create(fb_daemon_t *d, void **self)
{
    fb_reminders_deps_t deps = {&d->loop, d->cfg, d->store, d->router, NULL};
    *self = fb_reminders_create(&deps);
    return 0;
}

static int reminders_start(void *self)
{
    return fb_reminders_start(self);
}

static void reminders_stop(void *self, void (*done)(void *arg), void *arg)
{
    fb_reminders_stop(self, done, arg);
}

static int reminders_metrics(const void *self, fb_buf_t *out)
{
    return fb_reminders_metrics_render(self, out);
}

static void reminders_destroy(void *self)
{
    fb_reminders_destroy(self);
}

static const struct service_ops reminders_service = {
    .name = "reminders",
    .create = reminders_create,
    .start = reminders_start,
    .stop = reminders_stop,
    .metrics = reminders_metrics,
    .destroy = reminders_destroy,
};

/* /stats names the steps with the titles of the dialog currently served. */
static const char *step_title(void *arg, const char *ref)
{
    const fb_daemon_t *d = arg;
    return d->router ? fb_dialog_item_title(fb_router_dialog(d->router), ref) : NULL;
}

/* The statistics (/stats, /stats.json and their /metrics part, served from daemon.c's handlers
 * because they are computed from Redis on request). */
static int stats_create(fb_daemon_t *d, void **self)
{
    d->stats = d->store ? fb_stats_create(d->store, &d->cfg->stats) : NULL;
    if (d->stats)
        fb_stats_set_titles(d->stats, step_title, d);
    *self = d->stats;
    return 0;
}

/* After the router's reload: the new dialog's step titles on /stats. */
static int stats_reload(void *self)
{
    fb_stats_invalidate(self);
    return 0;
}

static void stats_destroy(void *self)
{
    fb_stats_destroy(self);
}

static const struct service_ops stats_service = {
    .name = "stats",
    .create = stats_create,
    .reload = stats_reload,
    .destroy = stats_destroy,
};

/* The services, in start order (they stop and are freed in the reverse order). A service may use
 * the ones above it. */
static const struct service_ops *const services[] = {
    &router_service,
    &reminders_service,
    &stats_service,
};

#define NSERVICES (sizeof(services) / sizeof(services[0]))

/* ---- /healthz ---- */

struct health {
    fb_daemon_t *d;
    fb_http_req_t *req;
    uint64_t start;
};

/* What "ok" means, for /healthz and for the service manager's READY=1: Redis has just answered a
 * PING (`redis_ok`), the daemon is running, not draining, Redis is known to persist with AOF
 * (unless redis.allow_volatile) and was not found to have lost its data in the last minutes
 * (fb_durability_ok()). */
static bool serving_ok(const fb_daemon_t *d, bool redis_ok)
{
    return redis_ok && d->state == RUNNING && (!d->durability || fb_durability_ok(d->durability));
}

static void health_answer(struct health *h, int redis_status, double ping_ms)
{
    fb_daemon_t *d = h->d;
    bool redis_ok = redis_status == 0;
    bool ok = serving_ok(d, redis_ok);
    fb_buf_t b;
    fb_buf_init(&b, 4096);
    int rc =
        fb_buf_printf(&b,
                      "{\"status\":\"%s\",\"version\":\"%s\",\"draining\":%s,"
                      "\"redis\":{\"connected\":%s,\"ping\":\"%s\"",
                      ok ? "ok" : "degraded", FB_VERSION, d->state == RUNNING ? "false" : "true",
                      fb_redis_connected(d->redis) ? "true" : "false",
                      redis_ok ? "ok" : fb_err_name(redis_status));
    if (!rc && redis_ok)
        rc = fb_buf_printf(&b, ",\"ping_ms\":%.3f", ping_ms);
    if (!rc && d->durability)
        rc = fb_durability_health(d->durability, &b);
    json_t *adapters = json_object();
    for (size_t i = 0; i < NSERVICES; i++)
        if (d->svc[i].self && services[i]->health)
            services[i]->health(d->svc[i].self, adapters);
    char *ad = json_dumps(adapters, JSON_COMPACT);
    json_decref(adapters);
    if (!rc)
        rc = fb_buf_printf(&b, "},\"adapters\":%s}\n", ad ? ad : "{}");
    free(ad); /* fb-lint: allow free (jansson's allocation) */
    if (rc)
        fb_http_respond(h->req, 500, "application/json", "{\"status\":\"error\"}\n", 19, NULL);
    else
        fb_http_respond(h->req, ok ? 200 : 503, "application/json", b.data, b.len, NULL);
    fb_buf_free(&b);
    fb_free(h);
}

static void health_ping_done(fb_redis_t *r, int status, struct redisReply *reply, void *arg)
{
    struct health *h = arg;
    (void)r;
    if (status == 0 && !fb_redis_reply_is_status(reply))
        status = FB_EPROTO;
    health_answer(h, status, (double)(fb_mono_ns() - h->start) / 1e6);
}

static int on_healthz(fb_http_req_t *req, void *arg)
{
    fb_daemon_t *d = arg;
    struct health *h = fb_calloc(1, sizeof(*h));
    h->d = d;
    h->req = req;
    h->start = fb_mono_ns();
    if (!fb_redis_connected(d->redis)) {
        health_answer(h, FB_EUNAVAIL, 0);
        return 0;
    }
    int rc = fb_redis_command(d->redis, 0, health_ping_done, h, "PING", NULL);
    if (rc) {
        health_answer(h, rc, 0);
        return 0;
    }
    return FB_EAGAIN;
}

/* ---- the service manager (sd_notify.h) ---- */

/* The STATUS= text that `systemctl status` shows while the daemon serves. */
static const char *ready_status(const fb_daemon_t *d)
{
    static char text[512];
    snprintf(text, sizeof(text), "serving on %s port %d, Redis %s", d->cfg->server.listen_host,
             d->cfg->server.listen_port, fb_redis_address(d->redis));
    return text;
}

static void ready_probe(fb_daemon_t *d);

static void ready_retry(uv_timer_t *t)
{
    ready_probe(t->data);
}

static void ready_ping_done(fb_redis_t *r, int status, struct redisReply *reply, void *arg)
{
    fb_daemon_t *d = arg;
    (void)r;
    if (d->state != RUNNING)
        return; /* draining, or closing (FB_ECANCELED): never ready now */
    if (serving_ok(d, status == 0 && fb_redis_reply_is_status(reply))) {
        d->notified_ready = true;
        if (fb_sd_notifyf("READY=1\nSTATUS=%s", ready_status(d)) == 0)
            FB_INFO(CORE, "service manager notified: ready");
        return;
    }
    uv_timer_start(&d->ready_retry, ready_retry, READY_RETRY_MS, 0);
}

/*
 * Sends READY=1 to the service manager once the daemon is really ready: it listens (the probe
 * starts after the HTTP server did) and serving_ok() holds after a PING's round trip to Redis,
 * which is when /healthz first answers "ok". The PING waits in the Redis client's queue until a
 * connection is up or the write deadline passes; a failed one is tried again READY_RETRY_MS
 * later.
 */
static void ready_probe(fb_daemon_t *d)
{
    if (d->state != RUNNING)
        return;
    if (fb_redis_command(d->redis, 0, ready_ping_done, d, "PING", NULL) != 0)
        uv_timer_start(&d->ready_retry, ready_retry, READY_RETRY_MS, 0);
}

/* ---- /metrics, /stats, /stats.json ---- */

enum stats_view { VIEW_METRICS, VIEW_HTML, VIEW_JSON };

struct stats_req {
    fb_daemon_t *d;
    fb_http_req_t *req;
    enum stats_view view;
};

static const char *const no_cache[] = {"Cache-Control: no-cache", NULL};

static void metrics_answer(fb_daemon_t *d, fb_http_req_t *req, const json_t *doc)
{
    fb_buf_t b;
    fb_buf_init(&b, 1u << 20);
    int rc = fb_metrics_render(&b);
    if (!rc && d->durability)
        rc = fb_durability_metrics_render(d->durability, &b);
    for (size_t i = 0; !rc && i < NSERVICES; i++)
        if (d->svc[i].self && services[i]->metrics)
            rc = services[i]->metrics(d->svc[i].self, &b);
    if (!rc && doc)
        rc = fb_stats_render_metrics(doc, &b);
    if (rc)
        fb_http_respond(req, 500, "text/plain; charset=utf-8", "error\n", 6, NULL);
    else
        fb_http_respond(req, 200, "text/plain; version=0.0.4; charset=utf-8", b.data, b.len, NULL);
    fb_buf_free(&b);
}

static void stats_done(int status, const json_t *doc, void *arg)
{
    struct stats_req *sr = arg;
    if (sr->view == VIEW_METRICS) {
        metrics_answer(sr->d, sr->req, status ? NULL : doc); /* the rest without Redis */
    } else if (status) {
        static const char unavailable[] = "Statistiques momentanément indisponibles.\n";
        fb_http_respond(sr->req, 503, "text/plain; charset=utf-8", unavailable,
                        sizeof(unavailable) - 1, no_cache);
    } else if (sr->view == VIEW_JSON) {
        char *text = json_dumps(doc, JSON_INDENT(1) | JSON_PRESERVE_ORDER);
        if (text)
            fb_http_respond(sr->req, 200, "application/json", text, strlen(text), no_cache);
        else
            fb_http_respond(sr->req, 500, "text/plain; charset=utf-8", "error\n", 6, NULL);
        free(text); /* fb-lint: allow free (jansson's allocation) */
    } else {
        fb_buf_t b;
        fb_buf_init(&b, 1u << 22);
        if (fb_stats_render_html(doc, &b) == 0)
            fb_http_respond(sr->req, 200, "text/html; charset=utf-8", b.data, b.len, no_cache);
        else
            fb_http_respond(sr->req, 500, "text/plain; charset=utf-8", "error\n", 6, NULL);
        fb_buf_free(&b);
    }
    fb_free(sr);
}

static int stats_request(fb_http_req_t *req, fb_daemon_t *d, enum stats_view view)
{
    struct stats_req *sr = fb_calloc(1, sizeof(*sr));
    sr->d = d;
    sr->req = req;
    sr->view = view;
    int rc = d->stats ? fb_stats_get(d->stats, fb_wall_ms(), stats_done, sr) : FB_EUNAVAIL;
    if (rc)
        stats_done(rc, NULL, sr);
    /* answered now (cached figures, an error) or later: the server handles both after EAGAIN */
    return FB_EAGAIN;
}

static int on_metrics(fb_http_req_t *req, void *arg)
{
    return stats_request(req, arg, VIEW_METRICS);
}

static int on_stats(fb_http_req_t *req, void *arg)
{
    return stats_request(req, arg, VIEW_HTML);
}

static int on_stats_json(fb_http_req_t *req, void *arg)
{
    return stats_request(req, arg, VIEW_JSON);
}

/* ---- /feuille-de-route/TOKEN: the roadmap page ---- */

/* The page around the engine's body (dialogs/friche.yaml page_feuille_de_route): the State's
 * design system, a skip link and landmarks, lang="fr"; /static/feuille-de-route.css holds the
 * print stylesheet (the way to a PDF: the browser prints the page, docs/internals/WEB.md). No
 * script. Not cached, not indexed: the address is the user's to share, not the world's. */
static const char roadmap_head[] = FB_DSFR_DOC_START
    "<meta name=\"robots\" content=\"noindex, nofollow\">\n"
    "<title>Feuille de route - Assistant friches</title>\n" FB_DSFR_ASSETS
    "<link rel=\"stylesheet\" href=\"/static/feuille-de-route.css\">\n" FB_DSFR_BODY_START
    "<main role=\"main\" id=\"contenu\" tabindex=\"-1\" class=\"fr-container fb-roadmap\">\n";

static const char roadmap_foot[] =
    FB_DSFR_FOOT_START "Cette page est établie à partir de vos réponses à l'assistant. Toute "
                       "personne qui a son adresse peut la lire : « oublier mes données », dans la "
                       "conversation, l'efface." FB_DSFR_DOC_END;

static const char roadmap_missing[] =
    "<h1>Feuille de route introuvable</h1>\n<p>Cette adresse ne correspond à aucune feuille de "
    "route : elle a pu être effacée (« oublier mes données ») ou avoir expiré. Dans la "
    "conversation, « ma feuille de route » donne son adresse actuelle.</p>\n";

static const char *const roadmap_headers[] = {"Cache-Control: no-store", NULL};

static void roadmap_answer(fb_http_req_t *req, int status, const char *body)
{
    fb_buf_t b;
    fb_buf_init(&b, 1u << 21);
    int code = status == 0 ? 200 : status == FB_ENOENT ? 404 : 503;
    static const char unavailable[] =
        "<h1>Feuille de route momentanément indisponible</h1>\n<p>Réessayez dans quelques "
        "minutes.</p>\n";
    int rc = fb_buf_puts(&b, roadmap_head);
    rc = rc ? rc
            : fb_buf_puts(&b, code == 200   ? body
                              : code == 404 ? roadmap_missing
                                            : unavailable);
    rc = rc ? rc : fb_buf_puts(&b, roadmap_foot);
    if (rc)
        fb_http_respond(req, 500, "text/plain; charset=utf-8", "error\n", 6, NULL);
    else
        fb_http_respond(req, code, "text/html; charset=utf-8", b.data, b.len, roadmap_headers);
    fb_buf_free(&b);
}

static void roadmap_done(void *arg, int status, const char *body_html)
{
    roadmap_answer(arg, status, body_html);
}

static int on_roadmap_page(fb_http_req_t *req, void *arg)
{
    fb_daemon_t *d = arg;
    const char *token = fb_http_req_path(req) + strlen("/feuille-de-route/");
    int rc = d->router ? fb_router_roadmap_page(d->router, token, roadmap_done, req) : FB_EUNAVAIL;
    if (rc)
        roadmap_answer(req, rc, NULL);
    return FB_EAGAIN; /* answered now or later */
}

/* ---- shutdown ---- */

static void service_stopped(void *arg)
{
    struct service *sv = arg;
    sv->stopped = true;
}

/* Asks every service to stop, in reverse table order (once). */
static void stop_services(fb_daemon_t *d)
{
    if (d->stopping)
        return;
    d->stopping = true;
    for (size_t i = NSERVICES; i-- > 0;) {
        struct service *sv = &d->svc[i];
        if (!sv->self || !services[i]->stop)
            sv->stopped = true;
        else
            services[i]->stop(sv->self, service_stopped, sv);
    }
}

/* Whether every service has stopped (all their `done` fired). */
static bool services_stopped(const fb_daemon_t *d)
{
    for (size_t i = 0; i < NSERVICES; i++)
        if (!d->svc[i].stopped)
            return false;
    return true;
}

static void redis_closed(void *arg)
{
    fb_daemon_t *d = arg;
    d->redis = NULL;
}

static void client_closed(void *arg)
{
    fb_daemon_t *d = arg;
    d->client = NULL;
}

/* Closes every handle; uv_run() returns once their close callbacks have run. */
static void close_all(fb_daemon_t *d)
{
    if (d->state == CLOSING)
        return;
    bool drained = d->state == DRAINING; /* else a start-up failure: nothing was served */
    d->state = CLOSING;
    size_t in_http = fb_http_server_inflight(d->http);
    size_t in_redis = fb_redis_pending(d->redis);
    size_t in_client = fb_http_client_pending(d->client);
    size_t unfinished = 0, in_services = 0; /* services still stopping, their work in flight */
    for (size_t i = 0; d->stopping && i < NSERVICES; i++) {
        if (d->svc[i].stopped)
            continue;
        unfinished++;
        if (services[i]->pending)
            in_services += services[i]->pending(d->svc[i].self);
    }
    if (!drained)
        FB_DEBUG(CORE, "closing after a start-up failure");
    else if (in_http || in_redis || in_client || unfinished)
        FB_WARN(CORE,
                "shutdown deadline reached: abandoning %zu request(s), %zu Redis command(s), "
                "%zu outgoing request(s), %zu conversation event(s)",
                in_http, in_redis, in_client, in_services);
    else
        FB_NOTICE(CORE, "drained: nothing in flight");
    stop_services(d); /* start-up failures come here without a drain */
    uv_timer_stop(&d->drain);
    uv_close((uv_handle_t *)&d->drain, NULL);
    uv_close((uv_handle_t *)&d->ready_retry, NULL);
    fb_sd_watchdog_close(d->watchdog);
    d->watchdog = NULL;
    uv_close((uv_handle_t *)&d->sig_term, NULL);
    uv_close((uv_handle_t *)&d->sig_int, NULL);
    uv_close((uv_handle_t *)&d->sig_hup, NULL);
    fb_http_server_destroy(d->http);
    d->http = NULL;
    fb_http_client_close(d->client, client_closed, d);
    fb_durability_close(d->durability);
    fb_redis_close(d->redis, redis_closed, d);
}

static void drain_tick(uv_timer_t *t)
{
    fb_daemon_t *d = t->data;
    bool idle = fb_http_server_inflight(d->http) == 0 && fb_redis_pending(d->redis) == 0 &&
                fb_store_pending(d->store) == 0 && fb_http_client_pending(d->client) == 0 &&
                services_stopped(d);
    if (idle || uv_now(&d->loop) >= d->drain_deadline)
        close_all(d);
}

static void begin_shutdown(fb_daemon_t *d, int signum)
{
    if (d->state == DRAINING) {
        FB_NOTICE(CORE, "second signal %d: stopping now", signum);
        close_all(d);
        return;
    }
    if (d->state != RUNNING)
        return;
    d->state = DRAINING;
    unsigned secs = d->cfg->server.shutdown_deadline_s;
    if (signum)
        FB_NOTICE(CORE, "signal %d: no longer accepting work, draining for up to %u s", signum,
                  secs);
    else
        FB_NOTICE(CORE, "stopping: no longer accepting work, draining for up to %u s", secs);
    (void)fb_sd_notifyf("STOPPING=1\nSTATUS=draining for up to %u s", secs);
    fb_http_server_drain(d->http);
    stop_services(d);
    d->drain_deadline = uv_now(&d->loop) + (uint64_t)secs * 1000;
    uv_timer_start(&d->drain, drain_tick, 0, DRAIN_POLL_MS);
}

/* The first Redis does not persist with AOF and redis.allow_volatile is not set (durability.c
 * logged why): stop, exit status 1. */
static void on_refused(void *arg)
{
    fb_daemon_t *d = arg;
    d->refused = true;
    begin_shutdown(d, 0);
}

/* SIGHUP: re-read the log settings, then reload the services in table order. */
static void reload(fb_daemon_t *d)
{
    d->reloads++;
    FB_NOTICE(CORE, "SIGHUP: reloading");
    if (d->config_path) {
        fb_buf_t errors;
        fb_buf_init(&errors, 1u << 16);
        fb_config_t *cfg = fb_config_load(d->config_path, &errors);
        if (!cfg) {
            FB_ERR(CORE, "reload: %s is invalid, keeping the running configuration:\n%s",
                   d->config_path, fb_buf_str(&errors));
        } else {
            fb_log_set_level_all(FB_LOG_INFO);
            if (fb_log_apply_spec(cfg->log.level, NULL) == 0)
                FB_NOTICE(CORE, "reload: log level now '%s' (other settings need a restart)",
                          cfg->log.level);
            fb_config_free(cfg);
        }
        fb_buf_free(&errors);
    }
    for (size_t i = 0; i < NSERVICES; i++) {
        if (!d->svc[i].self || !services[i]->reload)
            continue;
        int rc = services[i]->reload(d->svc[i].self);
        if (rc) {
            FB_ERR(CORE, "reload of %s failed: %s; still serving the previous version",
                   services[i]->name, fb_strerror(rc));
            break;
        }
    }
}

static void on_signal(uv_signal_t *s, int signum)
{
    fb_daemon_t *d = s->data;
    if (signum != SIGHUP) {
        begin_shutdown(d, signum);
        return;
    }
    /* The reload is synchronous: the service manager sees it begin and end. */
    bool notify = d->notified_ready && d->state == RUNNING;
    if (notify)
        (void)fb_sd_notifyf("RELOADING=1\nSTATUS=reloading\nMONOTONIC_USEC=%" PRIu64,
                            fb_mono_ns() / 1000);
    reload(d);
    if (notify)
        (void)fb_sd_notifyf("READY=1\nSTATUS=%s", ready_status(d));
}

static void walk_leaks(uv_handle_t *h, void *arg)
{
    (void)arg;
    FB_ERR(CORE, "handle still open at exit: %s (active=%d, closing=%d)",
           uv_handle_type_name(h->type), uv_is_active(h), uv_is_closing(h));
}

int fb_daemon_run(const fb_config_t *cfg, const char *config_path)
{
    fb_daemon_t *d = fb_calloc(1, sizeof(*d) + NSERVICES * sizeof(d->svc[0]));
    int status = 1;
    int rc = uv_loop_init(&d->loop);
    if (rc) {
        FB_ERR(CORE, "uv_loop_init: %s", uv_strerror(rc));
        fb_free(d);
        return 1;
    }
    d->cfg = cfg;
    d->config_path = config_path;
    signal(SIGPIPE, SIG_IGN);
    fb_metrics_init();
    (void)fb_fds_raise_limit(); /* before the HTTP server: lws sizes its tables from it */

    d->redis = fb_redis_create(&d->loop, &cfg->redis);
    d->client = fb_http_client_create(&d->loop, &cfg->http_client);
    d->http = fb_http_server_create(&d->loop, &cfg->server);
    if (!d->redis || !d->client || !d->http) {
        FB_ERR(CORE, "cannot create the subsystems");
        goto early_fail;
    }
    d->store = fb_store_create(d->redis, &cfg->store);
    if (cfg->redis.require_aof)
        FB_WARN(REDIS,
                "redis.require_aof is deprecated and ignored: a Redis that does not persist with "
                "AOF is now always refused at start, unless redis.allow_volatile: true (for "
                "throw-away setups only)%s; remove require_aof from %s",
                strcmp(cfg->redis.require_aof, "false") == 0
                    ? " (require_aof: false no longer accepts such a Redis)"
                    : "",
                config_path ? config_path : "the configuration");
    d->durability = fb_durability_create(&d->loop, d->redis, cfg->store.key_prefix,
                                         cfg->redis.allow_volatile, on_refused, d);
    /* The global keys' move under {g}, before anything else touches them (REDIS.md). */
    fb_durability_set_migration(d->durability, FB_KEYS_MIGRATE_LUA, FB_KEY_LAYOUT);
    fb_http_server_route(d->http, "/healthz", FB_HTTP_GET, "healthz", on_healthz, d);
    fb_http_server_route(d->http, "/metrics", FB_HTTP_GET, "metrics", on_metrics, d);
    fb_http_server_route(d->http, "/stats", FB_HTTP_GET, "stats", on_stats, d);
    fb_http_server_route(d->http, "/stats.json", FB_HTTP_GET, "stats_json", on_stats_json, d);
    fb_http_server_route_prefix(d->http, "/feuille-de-route/", FB_HTTP_GET, "roadmap_page",
                                on_roadmap_page, d);

    uv_timer_init(&d->loop, &d->drain);
    d->drain.data = d;
    uv_timer_init(&d->loop, &d->ready_retry);
    d->ready_retry.data = d;
    uv_signal_t *sigs[] = {&d->sig_term, &d->sig_int, &d->sig_hup};
    int signums[] = {SIGTERM, SIGINT, SIGHUP};
    for (int i = 0; i < 3; i++) {
        uv_signal_init(&d->loop, sigs[i]);
        sigs[i]->data = d;
        uv_signal_start(sigs[i], on_signal, signums[i]);
    }

    rc = 0;
    for (size_t i = 0; rc == 0 && i < NSERVICES; i++)
        rc = services[i]->create(d, &d->svc[i].self);
    if (rc == 0)
        rc = fb_http_server_start(d->http);
    if (rc == 0)
        rc = fb_redis_start(d->redis);
    for (size_t i = 0; rc == 0 && i < NSERVICES; i++)
        if (d->svc[i].self && services[i]->start)
            rc = services[i]->start(d->svc[i].self);
    if (rc) {
        const char *why = fb_http_server_listen_error(d->http);
        FB_ERR(CORE, "start-up failed: %s", why ? why : fb_strerror(rc));
        close_all(d);
    } else {
        FB_NOTICE(CORE, "frichebot %s ready (pid %d)", FB_VERSION, (int)getpid());
        status = 0;
        if (fb_sd_enabled()) {
            d->watchdog = fb_sd_watchdog_start(&d->loop);
            ready_probe(d);
        }
    }

    uv_run(&d->loop, UV_RUN_DEFAULT);
    for (size_t i = NSERVICES; i-- > 0;)
        if (d->svc[i].self && services[i]->destroy)
            services[i]->destroy(d->svc[i].self);
    fb_geo_free(d->geo);
    fb_store_destroy(d->store);
    fb_durability_destroy(d->durability);
    if (d->refused)
        status = 1;
    rc = uv_loop_close(&d->loop);
    if (rc) {
        uv_walk(&d->loop, walk_leaks, NULL);
        FB_ERR(CORE, "loop closed with handles left open (uv_loop_close=%d: %s)", rc,
               uv_err_name(rc));
        status = 1;
    } else {
        FB_NOTICE(CORE, "stopped cleanly (uv_loop_close=0)");
    }
    fb_free(d);
    return status;

early_fail:
    if (d->http)
        fb_http_server_destroy(d->http);
    if (d->client)
        fb_http_client_close(d->client, client_closed, d);
    if (d->redis)
        fb_redis_close(d->redis, redis_closed, d);
    uv_run(&d->loop, UV_RUN_DEFAULT);
    uv_loop_close(&d->loop);
    fb_free(d);
    return 1;
}
