// SPDX-License-Identifier: MIT
//
// The web chat page of frichebot: speaks the websocket protocol of docs/web-protocol.md.
//
// - The conversation token lives in localStorage ("frichebot.token"); every connection starts
//   with hello {token, since} where since is the last seq this page shows (0 after a reload: the
//   server then sends the whole history).
// - Every message the user sends is kept (in memory and in localStorage, so a reload keeps it)
//   until the server acks it, and resent with the same id after each welcome; the server
//   de-duplicates by id. A history entry whose seq the page already has is ignored.
// - ping every 25 s (more often if welcome.limits.idle_timeout_s asks for it); no pong within
//   10 s closes the socket; reconnection with exponential backoff (1 s, 2 s, 4 s ... 30 s) and
//   jitter, after any close (1001 on a server restart, 4000 when the conversation is gone...).
// - Bot messages are rendered from the server's escaped `html`, rebuilt node by node through an
//   allow-list (never assigned to innerHTML); user text is only ever text.
//
// No inline script and no inline style: the page works under a strict Content-Security-Policy.
(function () {
    "use strict";

    var TOKEN_KEY = "frichebot.token";
    var PENDING_KEY = "frichebot.pending";
    var PING_MS = 25000;
    var PONG_TIMEOUT_MS = 10000;
    var BACKOFF_MIN_MS = 1000;
    var BACKOFF_MAX_MS = 30000;
    var DEFAULT_RETRY_S = 5;
    var FORGET_TEXT = "oublier mes données";

    var el = {
        status: document.getElementById("fb-status"),
        messages: document.getElementById("fb-messages"),
        notice: document.getElementById("fb-notice"),
        noticeText: document.getElementById("fb-notice-text"),
        form: document.getElementById("fb-form"),
        input: document.getElementById("fb-input"),
        forget: document.getElementById("fb-forget"),
        newer: document.getElementById("fb-newer"),
    };

    var state = {
        ws: null,
        welcomed: false,
        token: storageGet(TOKEN_KEY),
        lastSeq: 0,
        seen: new Set(),
        pending: loadPending(), // [{id, frame}] in sending order
        limits: null,
        attempt: 0,
        reconnectTimer: null,
        pingTimer: null,
        pongTimer: null,
        retryTimers: new Map(), // id -> timer of a resend after rate_limited / unavailable
        forgetId: null,
    };

    // ---- storage (may be unavailable: private mode, disabled storage) ----

    function storageGet(key) {
        try {
            return window.localStorage.getItem(key);
        } catch (e) {
            return null;
        }
    }

    function storageSet(key, value) {
        try {
            if (value === null)
                window.localStorage.removeItem(key);
            else
                window.localStorage.setItem(key, value);
        } catch (e) {
            /* the conversation still works, it just won't survive a reload */
        }
    }

    function loadPending() {
        var raw = storageGet(PENDING_KEY);
        if (!raw)
            return [];
        try {
            var list = JSON.parse(raw);
            if (!Array.isArray(list))
                return [];
            return list.filter(function (p) {
                return p && typeof p.id === "string" && p.frame && typeof p.frame.type === "string";
            });
        } catch (e) {
            return [];
        }
    }

    function savePending() {
        storageSet(PENDING_KEY, state.pending.length ? JSON.stringify(state.pending) : null);
    }

    // ---- small helpers ----

    // A client message id: 128 random bits, base64url ([A-Za-z0-9_-], 22 characters).
    // crypto.getRandomValues works outside secure contexts too (unlike randomUUID).
    function newId() {
        var b = new Uint8Array(16);
        window.crypto.getRandomValues(b);
        var s = "";
        for (var i = 0; i < b.length; i++)
            s += String.fromCharCode(b[i]);
        return btoa(s).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
    }

    function utf8Length(s) {
        return new TextEncoder().encode(s).length;
    }

    function setStatus(kind, text) {
        el.status.dataset.state = kind;
        if (el.status.textContent !== text)
            el.status.textContent = text;
    }

    // One notice at a time, under the conversation; `tag` says what it is about, so that it can
    // be taken away when that is over (a resend that went through).
    function showNotice(text, kind, tag) {
        el.notice.className = "fr-alert fr-alert--sm fb-notice fr-alert--" + (kind || "info");
        el.notice.dataset.tag = tag || "";
        el.noticeText.textContent = text;
        el.notice.hidden = false;
    }

    function hideNotice(tag) {
        if (tag !== undefined && el.notice.dataset.tag !== tag)
            return;
        el.notice.hidden = true;
        el.noticeText.textContent = "";
    }

    var timeFormat = new Intl.DateTimeFormat("fr-FR", {hour: "2-digit", minute: "2-digit"});

    // ---- rendering of bot HTML through an allow-list ----

    var ALLOWED_TAGS = {
        P: 1, BR: 1, STRONG: 1, EM: 1, B: 1, I: 1, UL: 1, OL: 1, LI: 1, A: 1,
        H2: 1, H3: 1, H4: 1, CODE: 1, BLOCKQUOTE: 1,
    };

    function safeHref(href) {
        return typeof href === "string" && /^(https?:\/\/|mailto:)/i.test(href.trim());
    }

    // Copies the allowed parts of `src` (a node of an inert parsed document) under `dst`.
    // Unknown elements are dropped but their text is kept; attributes are dropped except a safe
    // href. Headings of the bot's content sit below the page's h2, so h2 becomes h3, and so on.
    function copyAllowed(src, dst) {
        for (var n = src.firstChild; n; n = n.nextSibling) {
            if (n.nodeType === Node.TEXT_NODE) {
                dst.appendChild(document.createTextNode(n.nodeValue));
            } else if (n.nodeType === Node.ELEMENT_NODE) {
                var tag = n.tagName.toUpperCase();
                if (!ALLOWED_TAGS[tag]) {
                    if (tag !== "SCRIPT" && tag !== "STYLE" && tag !== "TEMPLATE")
                        copyAllowed(n, dst);
                    continue;
                }
                var name = tag;
                if (tag === "H2")
                    name = "H3";
                else if (tag === "H3")
                    name = "H4";
                else if (tag === "H4")
                    name = "H5";
                var out = document.createElement(name);
                if (tag === "A") {
                    var href = n.getAttribute("href");
                    if (safeHref(href)) {
                        out.setAttribute("href", href.trim());
                        if (/^https?:/i.test(href.trim())) {
                            out.setAttribute("target", "_blank");
                            out.setAttribute("rel", "noopener noreferrer");
                        }
                    }
                }
                copyAllowed(n, out);
                if (tag === "A" && out.getAttribute("target") === "_blank") {
                    var hint = document.createElement("span");
                    hint.className = "fr-sr-only";
                    hint.textContent = " (nouvelle fenêtre)";
                    out.appendChild(hint);
                }
                dst.appendChild(out);
            }
        }
    }

    function renderBotBody(body, msg) {
        if (typeof msg.html === "string" && msg.html.length) {
            // DOMParser builds an inert document: no script runs, no resource loads.
            var doc = new DOMParser().parseFromString("<!doctype html><body>" + msg.html, "text/html");
            copyAllowed(doc.body, body);
        } else {
            var p = document.createElement("p");
            p.textContent = typeof msg.text === "string" ? msg.text : "";
            body.appendChild(p);
        }
    }

    // ---- following the conversation ----

    // Room kept between what is brought into view and the viewport's edges, in CSS pixels.
    var EDGE_PX = 8;

    function viewportHeight() {
        return window.innerHeight || document.documentElement.clientHeight;
    }

    // True while the reader follows the conversation: the composer's top edge is inside the
    // viewport, or above it. Scrolled up into the history, it is below. (Not the document's
    // bottom: the privacy note and the footer under the composer are not the conversation.)
    function following() {
        return el.form.getBoundingClientRect().top < viewportHeight();
    }

    // Brings the newest question into view: the block from the top of the last bot message (the
    // question, with its choices) down to the bottom of the composer. When the block fits in the
    // viewport it is shown whole, the page moving as little as it can (so the reader keeps as much
    // of what came before as fits). When it is taller than the viewport, the composer's bottom is
    // put at the viewport's bottom: the text field and the last choices stay visible, the
    // question starting as high as it can (its first lines above the top edge, one short scroll
    // away), since what the reader needs to answer is the choices and the field.
    // The scroll is instant (window.scrollBy with no behaviour: the page sets no smooth
    // scrolling), so that the next message's following() sees where the page really is.
    function showNewest() {
        hideNewer();
        var vh = viewportHeight();
        var last = lastBotItem();
        var bottom = el.form.getBoundingClientRect().bottom;
        var top = last ? last.getBoundingClientRect().top : el.form.getBoundingClientRect().top;
        var delta = 0;
        if (bottom - top > vh - 2 * EDGE_PX || bottom > vh - EDGE_PX)
            delta = bottom - (vh - EDGE_PX);
        else if (top < EDGE_PX)
            delta = top - EDGE_PX;
        if (Math.abs(delta) >= 1)
            window.scrollBy(0, delta);
    }

    // After a new entry: brings it into view if the reader was following (`wasFollowing`, taken
    // before the entry changed the page), else offers the « Nouveaux messages » button and leaves
    // the reader where they are.
    function followNewest(wasFollowing) {
        if (wasFollowing)
            showNewest();
        else
            showNewer();
    }

    // The button lives in a polite live region (role="status"): showing it is announced once,
    // after the log's own announcement of the message, without interrupting.
    function showNewer() {
        if (el.newer && el.newer.hidden)
            el.newer.hidden = false;
    }

    function hideNewer() {
        if (el.newer && !el.newer.hidden)
            el.newer.hidden = true;
    }

    if (el.newer) {
        el.newer.addEventListener("click", function () {
            var hadFocus = document.activeElement === el.newer;
            showNewest();
            // The button is gone: the focus goes to the newest bot message (read out by a screen
            // reader; Tab then reaches its choices), never back to the page. No text field focus:
            // on a phone it would open the keyboard over what was just brought into view.
            var last = lastBotItem();
            if (hadFocus && last) {
                last.setAttribute("tabindex", "-1");
                last.focus({preventScroll: true});
            }
        });
        // The reader who scrolls back down to the composer has caught up.
        window.addEventListener("scroll", function () {
            if (!el.newer.hidden && following())
                hideNewer();
        }, {passive: true});
    }

    // ---- the message list ----

    function firstPendingItem() {
        return el.messages.querySelector("li.fb-msg[data-pending]");
    }

    function buildItem(from, ts) {
        var li = document.createElement("li");
        li.className = "fb-msg fb-msg--" + from;
        var who = document.createElement("p");
        who.className = "fb-msg__who";
        var name = document.createElement("span");
        name.textContent = from === "bot" ? "Assistant" : "Vous";
        who.appendChild(name);
        var when = document.createElement("time");
        when.className = "fb-msg__time";
        var d = new Date(typeof ts === "number" ? ts : Date.now());
        when.setAttribute("datetime", d.toISOString());
        when.textContent = timeFormat.format(d);
        who.appendChild(document.createTextNode(" "));
        who.appendChild(when);
        li.appendChild(who);
        var body = document.createElement("div");
        body.className = "fb-msg__body";
        li.appendChild(body);
        return li;
    }

    function setDelivery(li, text) {
        var s = li.querySelector(".fb-msg__state");
        if (!text) {
            if (s)
                s.remove();
            return;
        }
        if (!s) {
            s = document.createElement("p");
            s.className = "fb-msg__state";
            li.appendChild(s);
        }
        s.textContent = text;
    }

    // A user's own message, shown at once and marked as waiting until the server has it.
    function showPendingUser(p) {
        var li = buildItem("user", p.ts);
        li.dataset.pending = "";
        li.dataset.id = p.id;
        var t = document.createElement("p");
        t.textContent = p.frame.type === "choice" ? p.frame.label : p.frame.text;
        li.querySelector(".fb-msg__body").appendChild(t);
        setDelivery(li, "Envoi en cours…");
        el.messages.appendChild(li);
        followNewest(true);
    }

    function removeChoices() {
        var focused = document.activeElement;
        var groups = el.messages.querySelectorAll(".fb-choices");
        var hadFocus = false;
        groups.forEach(function (g) {
            if (g.contains(focused))
                hadFocus = true;
            g.remove();
        });
        return hadFocus;
    }

    function renderChoices(li, choices) {
        var ul = document.createElement("ul");
        ul.className = "fr-btns-group fr-btns-group--inline fr-btns-group--left fr-btns-group--sm fb-choices";
        ul.setAttribute("aria-label", "Réponses proposées");
        choices.forEach(function (c) {
            if (!c || typeof c.id !== "string" || typeof c.label !== "string")
                return;
            var item = document.createElement("li");
            var b = document.createElement("button");
            b.type = "button";
            b.className = "fr-btn fr-btn--secondary";
            b.textContent = c.label;
            b.addEventListener("click", function () {
                // One answer per question: the buttons go, the focus goes to the text field.
                ul.remove();
                el.input.focus();
                sendChoice(c.id, c.label);
            });
            item.appendChild(b);
            ul.appendChild(item);
        });
        if (ul.childNodes.length)
            li.appendChild(ul);
    }

    function onHistory(msg) {
        if (typeof msg.seq !== "number" || state.seen.has(msg.seq))
            return; // already shown (several tabs, resends, replays)
        var wasFollowing = following();
        state.seen.add(msg.seq);
        if (msg.seq > state.lastSeq)
            state.lastSeq = msg.seq;

        var from = msg.from === "bot" ? "bot" : "user";
        var li = null;
        if (from === "user" && typeof msg.id === "string") {
            // Our own message coming back: the pending bubble becomes the history entry.
            li = el.messages.querySelector('li.fb-msg[data-id="' + CSS.escape(msg.id) + '"]');
            if (li) {
                delete li.dataset.pending;
                setDelivery(li, null);
            }
        }
        if (!li) {
            li = buildItem(from, msg.ts);
            var body = li.querySelector(".fb-msg__body");
            if (from === "bot") {
                renderBotBody(body, msg);
            } else {
                var p = document.createElement("p");
                p.textContent = typeof msg.text === "string" ? msg.text : "";
                body.appendChild(p);
            }
            if (typeof msg.id === "string")
                li.dataset.id = msg.id;
        }
        li.dataset.seq = String(msg.seq);

        // Keep the history in seq order, before the messages still waiting for the server.
        var before = null;
        var items = el.messages.children;
        for (var i = 0; i < items.length; i++) {
            var it = items[i];
            if (it === li)
                continue;
            if (it.dataset.pending !== undefined || Number(it.dataset.seq) > msg.seq) {
                before = it;
                break;
            }
        }
        if (li.parentNode !== el.messages || li.nextSibling !== before)
            el.messages.insertBefore(li, before);

        if (from === "bot") {
            // Only the last bot message's choices are active.
            var last = lastBotItem();
            if (last === li) {
                var hadFocus = removeChoices();
                if (Array.isArray(msg.choices) && msg.choices.length)
                    renderChoices(li, msg.choices);
                if (hadFocus)
                    el.input.focus();
            }
        }
        followNewest(wasFollowing);
    }

    function lastBotItem() {
        var bots = el.messages.querySelectorAll("li.fb-msg--bot");
        return bots.length ? bots[bots.length - 1] : null;
    }

    function clearHistory() {
        el.messages.querySelectorAll("li.fb-msg:not([data-pending])").forEach(function (li) {
            li.remove();
        });
        state.seen.clear();
        state.lastSeq = 0;
    }

    // ---- sending ----

    function send(frame) {
        if (!state.ws || state.ws.readyState !== WebSocket.OPEN)
            return false;
        state.ws.send(JSON.stringify(frame));
        return true;
    }

    function enqueue(frame) {
        var p = {id: frame.id, frame: frame, ts: Date.now()};
        state.pending.push(p);
        savePending();
        showPendingUser(p);
        if (state.welcomed)
            send(frame);
        else
            markWaiting();
        return p;
    }

    function markWaiting() {
        state.pending.forEach(function (p) {
            var li = el.messages.querySelector('li.fb-msg[data-id="' + CSS.escape(p.id) + '"]');
            if (li && li.dataset.pending !== undefined)
                setDelivery(li, "En attente de connexion…");
        });
    }

    function sendText(text) {
        if (state.limits && typeof state.limits.max_message_bytes === "number" &&
            utf8Length(text) > state.limits.max_message_bytes) {
            showNotice("Votre message est trop long : raccourcissez-le (" +
                       state.limits.max_message_bytes + " octets au maximum).", "warning");
            return null;
        }
        hideNotice();
        return enqueue({type: "message", id: newId(), text: text});
    }

    function sendChoice(id, label) {
        hideNotice();
        enqueue({type: "choice", id: newId(), choice: id, label: label});
    }

    function dropPending(id) {
        var t = state.retryTimers.get(id);
        if (t) {
            clearTimeout(t);
            state.retryTimers.delete(id);
        }
        var before = state.pending.length;
        state.pending = state.pending.filter(function (p) {
            return p.id !== id;
        });
        if (state.pending.length !== before)
            savePending();
    }

    function resendAll() {
        state.pending.forEach(function (p) {
            send(p.frame);
            var li = el.messages.querySelector('li.fb-msg[data-id="' + CSS.escape(p.id) + '"]');
            if (li && li.dataset.pending !== undefined)
                setDelivery(li, "Envoi en cours…");
        });
    }

    function scheduleResend(id, seconds) {
        var old = state.retryTimers.get(id);
        if (old)
            clearTimeout(old);
        var s = typeof seconds === "number" && seconds > 0 ? seconds : DEFAULT_RETRY_S;
        state.retryTimers.set(id, setTimeout(function () {
            state.retryTimers.delete(id);
            var p = state.pending.find(function (q) {
                return q.id === id;
            });
            if (p && state.welcomed)
                send(p.frame);
        }, s * 1000));
    }

    // ---- incoming frames ----

    function onWelcome(f) {
        if (f.new)
            clearHistory(); // a new conversation (the old one expired or was forgotten): start afresh
        if (typeof f.token === "string") {
            state.token = f.token;
            storageSet(TOKEN_KEY, f.token);
        }
        if (f.limits && typeof f.limits === "object")
            state.limits = f.limits;
        schedulePing();
        state.welcomed = true;
        state.attempt = 0;
        setStatus("online", "Connecté");
        resendAll();
        if (state.pending.length === 0)
            hideNotice("retry"); // a refused hello (service unavailable) is over
    }

    function onAck(f) {
        if (typeof f.id !== "string")
            return;
        dropPending(f.id);
        if (state.retryTimers.size === 0)
            hideNotice("retry");
        var li = el.messages.querySelector('li.fb-msg[data-id="' + CSS.escape(f.id) + '"]');
        if (li && li.dataset.pending !== undefined) {
            // Recorded by the server; its history entry will replace the mark.
            setDelivery(li, null);
        }
        if (f.id === state.forgetId) {
            // The server has erased the conversation: the browser forgets the token as well.
            state.forgetId = null;
            state.token = null;
            storageSet(TOKEN_KEY, null);
        }
    }

    function onError(f) {
        var code = f.code;
        var text = typeof f.message === "string" && f.message ? f.message : null;
        var li = typeof f.id === "string"
            ? el.messages.querySelector('li.fb-msg[data-id="' + CSS.escape(f.id) + '"]')
            : null;
        switch (code) {
        case "bad_request":
            // A bug of this page: nothing to tell the user, the message is dropped.
            if (typeof f.id === "string") {
                dropPending(f.id);
                if (li && li.dataset.pending !== undefined)
                    setDelivery(li, "Message non envoyé.");
            }
            if (window.console)
                console.warn("frichebot: bad_request", f.message);
            break;
        case "too_big":
            if (typeof f.id === "string") {
                dropPending(f.id);
                if (li && li.dataset.pending !== undefined)
                    setDelivery(li, "Message non envoyé : trop long.");
            }
            showNotice(text || "Votre message est trop long : raccourcissez-le.", "warning");
            break;
        case "rate_limited":
        case "unavailable":
            showNotice(text || (code === "unavailable"
                ? "Le service est momentanément indisponible. Votre message sera renvoyé."
                : "Vous envoyez beaucoup de messages : patientez un instant."), "info", "retry");
            if (typeof f.id === "string") {
                if (li && li.dataset.pending !== undefined)
                    setDelivery(li, "Nouvel envoi dans quelques secondes…");
                scheduleResend(f.id, f.retry_after);
            }
            break;
        case "too_many_connections":
            showNotice(text || "Trop de connexions ouvertes depuis votre adresse.", "warning");
            break;
        case "too_many_conversations":
            // The server closes the socket; the reconnection backoff tries again later.
            showNotice(text || "Trop de nouvelles conversations depuis votre adresse : patientez.",
                "warning");
            break;
        default:
            if (text)
                showNotice(text, "info");
        }
    }

    function onFrame(ev) {
        var f;
        try {
            f = JSON.parse(ev.data);
        } catch (e) {
            return;
        }
        if (!f || typeof f !== "object")
            return;
        schedulePing(); // any frame shows the connection is alive
        switch (f.type) {
        case "welcome":
            onWelcome(f);
            break;
        case "msg":
            onHistory(f);
            break;
        case "ack":
            onAck(f);
            break;
        case "error":
            onError(f);
            break;
        case "pong":
            break;
        default:
            break; // unknown frames are ignored
        }
    }

    // ---- connection life ----

    function clearTimers() {
        clearTimeout(state.pingTimer);
        clearTimeout(state.pongTimer);
        state.pingTimer = null;
        state.pongTimer = null;
    }

    // Every 25 s, or at half the server's idle timeout when that is shorter.
    function pingInterval() {
        var idle = state.limits && state.limits.idle_timeout_s;
        if (typeof idle === "number" && idle > 0)
            return Math.max(500, Math.min(PING_MS, idle * 500));
        return PING_MS;
    }

    function schedulePing() {
        clearTimeout(state.pingTimer);
        clearTimeout(state.pongTimer);
        state.pongTimer = null;
        state.pingTimer = setTimeout(function () {
            if (!send({type: "ping"}))
                return;
            state.pongTimer = setTimeout(function () {
                // No answer at all: the network is gone without the socket noticing.
                if (state.ws)
                    state.ws.close();
                onClose();
            }, PONG_TIMEOUT_MS);
        }, pingInterval());
    }

    function connect() {
        clearTimeout(state.reconnectTimer);
        state.reconnectTimer = null;
        if (state.ws)
            return;
        setStatus("connecting", state.attempt ? "Connexion perdue, nouvelle tentative…"
                                              : "Connexion en cours…");
        var scheme = window.location.protocol === "https:" ? "wss://" : "ws://";
        var ws;
        try {
            ws = new WebSocket(scheme + window.location.host + "/ws");
        } catch (e) {
            scheduleReconnect();
            return;
        }
        state.ws = ws;
        state.welcomed = false;
        ws.onopen = function () {
            if (state.ws !== ws)
                return;
            send({type: "hello", token: state.token, since: state.lastSeq});
            schedulePing();
        };
        ws.onmessage = function (ev) {
            if (state.ws === ws)
                onFrame(ev);
        };
        ws.onclose = function () {
            if (state.ws === ws)
                onClose();
        };
        ws.onerror = function () {
            /* onclose follows */
        };
    }

    function onClose() {
        if (state.ws) {
            var ws = state.ws;
            ws.onopen = ws.onmessage = ws.onclose = ws.onerror = null;
            state.ws = null;
        }
        state.welcomed = false;
        clearTimers();
        setStatus("offline", "Connexion perdue, nouvelle tentative…");
        markWaiting();
        scheduleReconnect();
    }

    function scheduleReconnect() {
        if (state.reconnectTimer)
            return;
        // 1 s, 2 s, 4 s ... 30 s, each between 50 % and 100 % of its step (jitter), so that the
        // pages of a restarted server do not all come back at the same instant.
        var step = Math.min(BACKOFF_MAX_MS, BACKOFF_MIN_MS * Math.pow(2, state.attempt));
        var delay = step / 2 + Math.random() * step / 2;
        state.attempt++;
        state.reconnectTimer = setTimeout(connect, delay);
    }

    // ---- user interface ----

    el.form.addEventListener("submit", function (ev) {
        ev.preventDefault();
        var text = el.input.value.trim();
        if (!text) {
            el.input.focus();
            return;
        }
        if (sendText(text))
            el.input.value = "";
        el.input.focus();
    });

    el.forget.addEventListener("click", function () {
        if (!window.confirm("Effacer toute la conversation et vos réponses ? Cette action est définitive."))
            return;
        var p = sendText(FORGET_TEXT);
        if (p)
            state.forgetId = p.id;
    });

    window.addEventListener("online", function () {
        // Back online: try now instead of waiting for the end of the backoff.
        state.attempt = 0;
        if (!state.ws)
            connect();
    });

    // A reload resumes at the end of the conversation: the browser's own scroll restoration would
    // put the page back where it was before the history is replayed (so, nowhere useful); the page
    // starts at the top, with the composer in view, and follows the replay down to its end.
    if ("scrollRestoration" in window.history)
        window.history.scrollRestoration = "manual";
    // Web fonts arriving after the first messages change the text's height: keep the newest in view.
    if (document.fonts && document.fonts.ready) {
        document.fonts.ready.then(function () {
            if (following() && el.newer && el.newer.hidden)
                showNewest();
        });
    }

    // The messages a previous page left unsent are shown at once and resent after welcome.
    state.pending.forEach(showPendingUser);
    markWaiting();
    connect();
})();
