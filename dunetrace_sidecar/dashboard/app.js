"use strict";
/*
 * Dunetrace Sidecar dashboard: one hash-routed page over the daemon's own JSON API.
 *
 * Plain hand-written JavaScript, nothing loaded from elsewhere. Every string that comes from
 * the API is put on the page as text (textContent / text nodes), never parsed as HTML; links
 * from the API are used only when they are http(s). With api.keys set, the key is asked for
 * once, kept in this tab's sessionStorage and sent as "Authorization: Bearer"; it never goes
 * into a URL, a cookie or the console.
 */
(function () {
  const KEY_STORAGE = "dunetrace.apiKey";
  const LIVE_INTERVAL_MS = 1000;
  const SEVERITIES = ["CRITICAL", "HIGH", "MEDIUM", "LOW"];
  const RUN_STATUSES = ["running", "completed", "errored", "stalled"];
  const TRIGGERS = [
    "tool_call_count", "step_count", "cost_usd", "error_count", "finish_reason", "llm_latency_ms", "signal",
  ];
  const NUMERIC_TRIGGERS = new Set(["tool_call_count", "step_count", "cost_usd", "error_count", "llm_latency_ms"]);
  const OPERATORS = ["gt", "gte", "lt", "lte", "eq", "neq", "contains"];
  const ACTIONS = ["stop", "switch_model", "inject_prompt", "log"];
  // The time windows the pages offer: [hash value, label, seconds back from now or null for all].
  const WINDOWS = [
    ["1h", "1 h", 3600],
    ["24h", "24 h", 86400],
    ["7d", "7 d", 7 * 86400],
    ["30d", "30 d", 30 * 86400],
    ["all", "All", null],
  ];

  const app = document.getElementById("app");
  const keyPrompt = document.getElementById("key-prompt");
  const keyForm = document.getElementById("key-form");
  const keyInput = document.getElementById("key-input");
  const keyMessage = document.getElementById("key-message");
  const forgetKey = document.getElementById("forget-key");

  let generation = 0; // bumped on every navigation: answers for an older page are dropped
  let timers = [];
  let flash = null; // a message for the next page ({text, kind})

  // --- DOM ----------------------------------------------------------------------------------

  function append(el, children) {
    for (const child of children.flat(Infinity)) {
      if (child === null || child === undefined || child === false) continue;
      el.append(child instanceof Node ? child : String(child)); // strings become text nodes
    }
    return el;
  }

  function h(tag, attrs, ...children) {
    const el = document.createElement(tag);
    for (const [name, value] of Object.entries(attrs || {})) {
      if (value === undefined || value === null || value === false) continue;
      if (name.startsWith("on") && typeof value === "function") el.addEventListener(name.slice(2), value);
      else if (name === "class") el.className = value;
      else if (name === "testid") el.setAttribute("data-testid", value);
      else if (name === "value") el.value = String(value);
      else if (name === "checked" || name === "disabled" || name === "hidden" || name === "selected") el[name] = true;
      else el.setAttribute(name, value === true ? "" : String(value));
    }
    return append(el, children);
  }

  function safeUrl(text) {
    try {
      const url = new URL(String(text));
      return url.protocol === "https:" || url.protocol === "http:" ? url.href : null;
    } catch (_) {
      return null;
    }
  }

  function option(value, label, selected) {
    return h("option", { value, selected: selected === value }, label === undefined ? value : label);
  }

  function select(attrs, values, current, blankLabel) {
    const options = values.map((v) => option(v, v, current));
    if (blankLabel !== undefined) options.unshift(option("", blankLabel, current || ""));
    return h("select", attrs, options);
  }

  function field(label, control, testid) {
    return h("label", { class: "field", testid }, h("span", { class: "field-label" }, label), control);
  }

  function table(testid, headers, rows, empty) {
    if (!rows.length) return h("p", { class: "empty", testid: testid + "-empty" }, empty || "Nothing yet.");
    return h(
      "table",
      { class: "grid", testid },
      h("thead", null, h("tr", null, headers.map((x) => h("th", null, x)))),
      h("tbody", null, rows)
    );
  }

  function dl(pairs, testid) {
    const items = [];
    for (const [term, value, id] of pairs) {
      if (value === undefined || value === null || value === "") continue;
      items.push(h("dt", null, term), h("dd", { testid: id }, value));
    }
    return h("dl", { class: "facts", testid }, items);
  }

  function badge(text, kind) {
    return h("span", { class: "badge badge-" + String(kind || text).toLowerCase().replace(/[^a-z_]/g, "") }, text);
  }

  function section(title, testid, ...children) {
    return h("section", { class: "card", testid }, h("h2", null, title), children);
  }

  function notice(text, kind, testid) {
    return h("p", { class: "notice notice-" + (kind || "info"), testid, role: kind === "error" ? "alert" : null }, text);
  }

  // --- formatting ---------------------------------------------------------------------------

  function fmtTime(iso) {
    if (!iso) return "—";
    const text = String(iso);
    return text.replace("T", " ").replace(/(\.\d{3})\d*/, "$1").replace(/\+00:00$|Z$/, " UTC");
  }

  function ms(iso) {
    const value = iso ? Date.parse(String(iso)) : NaN;
    return Number.isFinite(value) ? value : null;
  }

  function fmtDuration(milliseconds) {
    if (milliseconds === null || milliseconds === undefined || !Number.isFinite(milliseconds)) return "—";
    if (milliseconds < 1000) return Math.round(milliseconds) + " ms";
    if (milliseconds < 60000) return (milliseconds / 1000).toFixed(1) + " s";
    return (milliseconds / 60000).toFixed(1) + " min";
  }

  function fmtNumber(value) {
    return value === null || value === undefined ? "—" : String(value);
  }

  function shortId(id) {
    return String(id).slice(0, 8);
  }

  function shortHash(hash) {
    const text = String(hash);
    const colon = text.indexOf(":");
    return (colon >= 0 ? text.slice(0, colon + 1) : "") + text.slice(colon + 1, colon + 13);
  }

  function json(value) {
    return JSON.stringify(value, null, 2);
  }

  // --- the API ------------------------------------------------------------------------------

  class ApiError extends Error {
    constructor(status, code, message) {
      super(message);
      this.status = status;
      this.code = code;
    }
  }

  function storedKey() {
    try {
      return sessionStorage.getItem(KEY_STORAGE);
    } catch (_) {
      return null;
    }
  }

  function storeKey(key) {
    try {
      if (key) sessionStorage.setItem(KEY_STORAGE, key);
      else sessionStorage.removeItem(KEY_STORAGE);
    } catch (_) {
      /* storage disabled: the key lives as long as nothing asks again */
    }
    forgetKey.hidden = !key;
  }

  async function api(method, path, body) {
    const headers = { Accept: "application/json" };
    const key = storedKey();
    if (key) headers.Authorization = "Bearer " + key;
    const init = { method, headers, cache: "no-store", credentials: "omit", redirect: "error" };
    if (body !== undefined) {
      headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    let response;
    try {
      response = await fetch(path, init);
    } catch (_) {
      throw new ApiError(0, "unreachable", "The sidecar did not answer; is it running?");
    }
    if (response.status === 401) {
      askForKey(key ? "That key was refused (401). Check it and enter it again." : "This sidecar's API needs a key.");
      throw new ApiError(401, "unauthorized", "An API key is needed.");
    }
    const text = await response.text();
    let data = null;
    if (text) {
      try {
        data = JSON.parse(text);
      } catch (_) {
        data = null;
      }
    }
    if (!response.ok) {
      const error = data && data.error ? data.error : {};
      throw new ApiError(response.status, error.code || "http_" + response.status, error.message || "HTTP " + response.status);
    }
    return data;
  }

  function query(params) {
    const search = new URLSearchParams();
    for (const [name, value] of Object.entries(params)) {
      if (value !== undefined && value !== null && value !== "") search.set(name, String(value));
    }
    const text = search.toString();
    return text ? "?" + text : "";
  }

  // --- time windows -------------------------------------------------------------------------

  function windowKey(params, fallback) {
    const key = params.get("window");
    return WINDOWS.some(([k]) => k === key) ? key : fallback;
  }

  /** The window's lower bound as RFC 3339, "" for "all" (or no window). */
  function windowSince(key) {
    const found = WINDOWS.find(([k]) => k === key);
    return found && found[2] !== null ? new Date(Date.now() - found[2] * 1000).toISOString() : "";
  }

  function windowLabel(key) {
    const found = WINDOWS.find(([k]) => k === key);
    return !found || found[2] === null ? "all time" : "last " + found[1];
  }

  /** Preset links; `hrefFor(key)` is the page's hash with that window. */
  function windowPicker(current, hrefFor) {
    return h(
      "nav",
      { class: "windows", testid: "window-picker", "aria-label": "Time window" },
      WINDOWS.map(([key, label]) =>
        h(
          "a",
          {
            href: hrefFor(key),
            testid: "window-" + key,
            class: key === current ? "active" : null,
            "aria-current": key === current ? "true" : null,
          },
          label
        )
      )
    );
  }

  // --- the key ------------------------------------------------------------------------------

  function askForKey(message) {
    storeKey(null);
    keyMessage.textContent = message;
    keyMessage.className = message.startsWith("That key") ? "notice notice-error" : "";
    keyPrompt.hidden = false;
    keyInput.value = "";
    keyInput.focus();
  }

  keyForm.addEventListener("submit", (event) => {
    event.preventDefault();
    const key = keyInput.value.trim();
    keyInput.value = "";
    if (!key) {
      keyMessage.textContent = "Enter a key.";
      return;
    }
    storeKey(key);
    keyPrompt.hidden = true;
    route();
  });

  forgetKey.addEventListener("click", () => {
    storeKey(null);
    route();
  });

  // --- routing ------------------------------------------------------------------------------

  function parseHash() {
    const raw = location.hash.replace(/^#/, "") || "/";
    const cut = raw.indexOf("?");
    const path = cut >= 0 ? raw.slice(0, cut) : raw;
    const params = new URLSearchParams(cut >= 0 ? raw.slice(cut + 1) : "");
    const parts = path
      .split("/")
      .filter(Boolean)
      .map((part) => {
        try {
          return decodeURIComponent(part);
        } catch (_) {
          return part;
        }
      });
    return { parts, params };
  }

  function go(hash) {
    if (location.hash === hash) route();
    else location.hash = hash;
  }

  function later(gen, fn, delay) {
    const id = setTimeout(() => {
      timers = timers.filter((t) => t !== id);
      if (gen === generation) fn();
    }, delay);
    timers.push(id);
  }

  function mount(gen, ...nodes) {
    if (gen !== generation) return false;
    const shown = [];
    if (flash) {
      shown.push(notice(flash.text, flash.kind, "flash"));
      flash = null;
    }
    app.replaceChildren(...shown, ...nodes.filter(Boolean));
    return true;
  }

  function showError(gen, error) {
    if (gen !== generation) return;
    if (error instanceof ApiError && error.status === 401) {
      app.replaceChildren(notice("Enter the API key to see this page.", "info", "needs-key"));
      return;
    }
    const text = error instanceof ApiError ? error.message + " (" + error.code + ")" : String(error);
    app.replaceChildren(notice(text, "error", "page-error"));
  }

  const ROUTES = {
    overview: (gen, parts, params) => renderOverview(gen, params),
    signals: (gen, parts, params) => (parts[1] ? renderSignal(gen, parts[1]) : renderSignals(gen, params)),
    runs: (gen, parts, params) => (parts[1] ? renderRun(gen, parts[1]) : renderRuns(gen, params)),
    policies: (gen, parts) => (parts[1] ? renderPolicyForm(gen, parts[1]) : renderPolicies(gen)),
  };

  async function route() {
    generation += 1;
    const gen = generation;
    for (const id of timers) clearTimeout(id);
    timers = [];
    const { parts, params } = parseHash();
    const page = parts[0] || "overview";
    for (const link of document.querySelectorAll("[data-nav]")) {
      link.classList.toggle("active", link.getAttribute("data-nav") === page);
    }
    const render = Object.prototype.hasOwnProperty.call(ROUTES, page) ? ROUTES[page] : null;
    if (render === null) {
      mount(gen, notice("No such page.", "error", "page-error"));
      return;
    }
    document.title = "Dunetrace Sidecar · " + page.charAt(0).toUpperCase() + page.slice(1);
    app.replaceChildren(h("p", { class: "loading", testid: "loading" }, "Loading…"));
    try {
      await render(gen, parts, params);
    } catch (error) {
      showError(gen, error);
    }
    if (gen === generation) {
      // For the render benchmark (bench/dashboard.py) and anyone timing the page: this
      // navigation's content is on the page.
      app.dataset.rendered = String(gen);
      performance.mark("dunetrace:rendered");
      window.dispatchEvent(new CustomEvent("dunetrace:rendered", { detail: { page } }));
    }
  }

  // --- Overview -----------------------------------------------------------------------------

  async function probe(path) {
    try {
      const response = await fetch(path, { cache: "no-store", credentials: "omit" });
      return response.ok ? "ok" : "HTTP " + response.status;
    } catch (_) {
      return "no answer";
    }
  }

  async function renderOverview(gen, params) {
    const windowed = windowKey(params, "24h");
    const since = windowSince(windowed);
    const [agents, signals, healthz, readyz] = await Promise.all([
      api("GET", "/v1/agents" + query({ since })),
      api("GET", "/v1/signals" + query({ since, limit: 10 })),
      probe("/healthz"),
      probe("/readyz"),
    ]);
    const agentRows = agents.agents.map((agent) =>
      h(
        "tr",
        { testid: "agent-row", "data-agent-id": agent.agent_id },
        h("td", null, h("a", { href: "#/runs" + query({ agent_id: agent.agent_id, window: windowed }) }, agent.agent_id)),
        h("td", { class: "num" }, fmtNumber(agent.run_count)),
        h("td", { class: "num" }, fmtNumber(agent.running_runs)),
        h(
          "td",
          { class: "num" },
          h("a", { href: "#/signals" + query({ agent_id: agent.agent_id, window: windowed }) }, fmtNumber(agent.signal_count))
        ),
        h(
          "td",
          { class: "num", testid: "agent-failure-rate" },
          agent.run_count ? Math.round((100 * agent.failed_runs) / agent.run_count) + " %" : "—"
        ),
        h("td", null, fmtTime(agent.last_seen)),
        h("td", null, agent.last_deploy ? agent.last_deploy.version + " (" + fmtTime(agent.last_deploy.deployed_at) + ")" : "—")
      )
    );
    mount(
      gen,
      h("h1", null, "Overview"),
      windowPicker(windowed, (key) => "#/" + query({ window: key })),
      section(
        "Daemon",
        "health",
        dl([
          ["Process (/healthz)", badge(healthz, healthz === "ok" ? "ok" : "bad"), "health-live"],
          ["Store (/readyz)", badge(readyz, readyz === "ok" ? "ok" : "bad"), "health-ready"],
          ["Agents", String(agents.agents.length)],
        ])
      ),
      section(
        "Agents — runs started and signals raised, " + windowLabel(windowed),
        "agents",
        table(
          "agents-table",
          ["Agent", "Runs", "Running now", "Signals", "Failure rate", "Last seen", "Last deploy"],
          agentRows,
          "No agent has sent a run yet. Point an OTLP exporter at the receiver."
        )
      ),
      section("Newest signals, " + windowLabel(windowed), "newest-signals", signalTable(signals.signals))
    );
  }

  // --- Signals ------------------------------------------------------------------------------

  function signalRow(signal) {
    const href = "#/signals/" + encodeURIComponent(signal.signal_id);
    return h(
      "tr",
      {
        class: "clickable",
        testid: "signal-row",
        "data-signal-id": signal.signal_id,
        "data-failure-type": signal.failure_type,
        onclick: (event) => {
          if (!(event.target instanceof HTMLAnchorElement)) go(href);
        },
      },
      h("td", null, fmtTime(signal.detected_at)),
      h("td", null, badge(signal.severity)),
      h("td", null, h("a", { href, testid: "signal-link" }, signal.failure_type), signal.shadow ? badge("shadow") : null),
      h("td", null, signal.agent_id),
      h("td", null, h("a", { href: "#/runs/" + encodeURIComponent(signal.run_id), class: "mono" }, shortId(signal.run_id))),
      h("td", null, signal.explanation ? signal.explanation.title : "")
    );
  }

  function signalTable(signals) {
    return table(
      "signals-table",
      ["Detected", "Severity", "Type", "Agent", "Run", "What"],
      signals.map(signalRow),
      "No signals."
    );
  }

  function localInputToIso(value) {
    if (!value) return "";
    const date = new Date(value); // datetime-local: the browser's time zone
    return Number.isFinite(date.getTime()) ? date.toISOString() : "";
  }

  function isoToLocalInput(iso) {
    const date = iso ? new Date(iso) : null;
    if (!date || !Number.isFinite(date.getTime())) return "";
    const pad = (n) => String(n).padStart(2, "0");
    return (
      date.getFullYear() + "-" + pad(date.getMonth() + 1) + "-" + pad(date.getDate()) +
      "T" + pad(date.getHours()) + ":" + pad(date.getMinutes())
    );
  }

  async function agentIds() {
    try {
      return (await api("GET", "/v1/agents")).agents.map((a) => a.agent_id);
    } catch (error) {
      if (error instanceof ApiError && error.status === 401) throw error;
      return [];
    }
  }

  async function renderSignals(gen, params) {
    const filters = {
      agent_id: params.get("agent_id") || "",
      failure_type: params.get("failure_type") || "",
      severity: params.get("severity") || "",
      since: params.get("since") || "",
      until: params.get("until") || "",
      include_shadow: params.get("include_shadow") === "true" ? "true" : "",
    };
    // A preset window, unless an explicit range was entered (the form drops the window).
    const windowed = filters.since || filters.until ? "" : windowKey(params, "all");
    if (windowed) filters.since = windowSince(windowed);
    const [agents, page] = await Promise.all([agentIds(), api("GET", "/v1/signals" + query({ ...filters, limit: 50 }))]);
    if (filters.agent_id && !agents.includes(filters.agent_id)) agents.push(filters.agent_id);
    const types = new Set(page.signals.map((s) => s.failure_type));
    const form = h(
      "form",
      { class: "filters", testid: "signal-filters" },
      field("Agent", select({ name: "agent_id", testid: "filter-agent" }, agents, filters.agent_id, "any")),
      field(
        "Type",
        h("input", { name: "failure_type", testid: "filter-type", value: filters.failure_type, list: "failure-types", placeholder: "e.g. TOOL_LOOP" })
      ),
      h("datalist", { id: "failure-types" }, [...types].sort().map((t) => h("option", { value: t }))),
      field("Severity", select({ name: "severity", testid: "filter-severity" }, SEVERITIES, filters.severity, "any")),
      field("Since", h("input", { name: "since", type: "datetime-local", testid: "filter-since", value: windowed ? "" : isoToLocalInput(filters.since) })),
      field("Until", h("input", { name: "until", type: "datetime-local", testid: "filter-until", value: isoToLocalInput(filters.until) })),
      h(
        "label",
        { class: "check" },
        h("input", { type: "checkbox", name: "include_shadow", testid: "filter-shadow", checked: filters.include_shadow === "true" }),
        " shadow"
      ),
      h("button", { type: "submit", testid: "filter-apply" }, "Filter"),
      h("a", { href: "#/signals", class: "button-link" }, "Clear")
    );
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      const data = new FormData(form);
      go(
        "#/signals" +
          query({
            agent_id: data.get("agent_id"),
            failure_type: String(data.get("failure_type") || "").trim().toUpperCase(),
            severity: data.get("severity"),
            since: localInputToIso(data.get("since")),
            until: localInputToIso(data.get("until")),
            include_shadow: data.get("include_shadow") ? "true" : "",
            // an entered range replaces the preset window; otherwise the window stays
            window: data.get("since") || data.get("until") || windowed === "all" ? "" : windowed,
          })
      );
    });
    const list = h("div", { testid: "signals-list" }, signalTable(page.signals));
    const presets = windowPicker(windowed, (key) =>
      "#/signals" + query({ ...filters, since: "", until: "", window: key === "all" ? "" : key })
    );
    mount(gen, h("h1", null, "Signals"), presets, form, list, moreButton(gen, page.next_cursor, list, async (cursor) => {
      const next = await api("GET", "/v1/signals" + query({ ...filters, limit: 50, cursor }));
      return { rows: next.signals.map(signalRow), cursor: next.next_cursor };
    }));
  }

  /** A "More" button that appends the next page's rows to the table inside `container`. */
  function moreButton(gen, cursor, container, load) {
    if (!cursor) return null;
    let next = cursor;
    const button = h("button", { type: "button", testid: "load-more", class: "secondary" }, "More");
    button.addEventListener("click", async () => {
      button.disabled = true;
      try {
        const page = await load(next);
        if (gen !== generation) return;
        const body = container.querySelector("tbody");
        if (body) append(body, page.rows);
        next = page.cursor;
        button.hidden = !next;
      } catch (error) {
        button.after(notice(error.message, "error"));
      } finally {
        button.disabled = false;
      }
    });
    return button;
  }

  function stepName(event) {
    const p = event.payload || {};
    return p.tool_name || p.model || p.index_name || p.policy_name || p.exit_reason || p.error_type || "";
  }

  function stepGraph(events, signal) {
    const involved = new Set(
      Array.isArray(signal.evidence && signal.evidence.step_indices) ? signal.evidence.step_indices : []
    );
    if (!events.length) return h("p", { class: "empty", testid: "step-graph-empty" }, "The run has no events.");
    const nodes = events.map((event) => {
      const marked = event.step_index === signal.step_index;
      const classes = ["step", "step-" + event.event_type.split(".")[0]];
      if (marked) classes.push("marked");
      else if (involved.has(event.step_index)) classes.push("involved");
      return h(
        "li",
        {
          class: classes.join(" "),
          testid: marked ? "signal-step" : "step-node",
          "data-step": event.step_index,
          title: marked ? "the step that proves the signal" : null,
        },
        h("span", { class: "step-index" }, String(event.step_index)),
        h("span", { class: "step-type" }, event.event_type),
        h("span", { class: "step-name" }, stepName(event))
      );
    });
    return h("ol", { class: "step-graph", testid: "step-graph" }, nodes);
  }

  function blockedReason(answer) {
    if (answer.fix_type === "code_change") {
      return "Blocked: " + answer.failure_type + " needs a change to the agent's code, not a prompt sentence, so it is not published to Langfuse.";
    }
    if (answer.fix_type === "no_auto_apply") {
      return "Blocked: fixes for " + answer.failure_type + " are never applied automatically; review the prompt by hand.";
    }
    return "Blocked by the server.";
  }

  function appliedLink(applied) {
    const url = safeUrl(applied.prompt_url);
    const text = (applied.already_applied ? "Already applied as v" : "Applied as v") + applied.new_version + " in Langfuse ↗";
    const link = url
      ? h("a", { href: url, target: "_blank", rel: "noopener noreferrer", testid: "applied-link" }, text)
      : h("span", { testid: "applied-link" }, text);
    return h(
      "p",
      { class: "notice notice-ok", testid: "applied" },
      link,
      " — " + applied.langfuse_prompt_name + ", label " + applied.label + " moved from v" + applied.old_version + "."
    );
  }

  function explainResult(signal, answer, onApplied) {
    const applyArea = h("div", { class: "apply", testid: "apply-area" });
    if (answer.apply_blocked) {
      applyArea.append(notice(blockedReason(answer), "warn", "apply-blocked"));
    } else if (!answer.langfuse_prompt_name) {
      applyArea.append(
        notice("No Langfuse prompt is known for this run's generations, so there is nothing to publish to.", "info", "apply-no-prompt")
      );
    } else {
      const status = h("div", { testid: "apply-status" });
      const button = h(
        "button",
        { type: "button", testid: "apply-button" },
        "Apply to " + answer.langfuse_prompt_name
      );
      button.addEventListener("click", async () => {
        button.disabled = true;
        status.replaceChildren(h("p", { class: "loading" }, "Publishing…"));
        try {
          const applied = await api("POST", "/v1/signals/" + encodeURIComponent(signal.signal_id) + "/apply-fix", {
            fix_content: answer.fix_content,
            langfuse_prompt_name: answer.langfuse_prompt_name,
          });
          status.replaceChildren(appliedLink(applied));
          button.textContent = "Applied"; // stays disabled: the same sentence publishes once
          onApplied();
        } catch (error) {
          status.replaceChildren(notice(error.message + " (" + error.code + ")", "error", "apply-error"));
          button.disabled = false;
        }
      });
      applyArea.append(button, status);
    }
    return h(
      "div",
      { class: "explain-result", testid: "explain-result" },
      dl([
        ["Root cause", answer.root_cause, "explain-root-cause"],
        ["Fix", h("blockquote", { class: "fix" }, answer.fix_content), "explain-fix"],
        ["Fix type", answer.fix_type, "explain-fix-type"],
        ["Apply", answer.apply_blocked ? "blocked" : "allowed", "explain-blocked"],
        [
          "Prompt",
          answer.langfuse_prompt_name
            ? answer.langfuse_prompt_name + (answer.langfuse_prompt_version !== null ? " v" + answer.langfuse_prompt_version : "")
            : null,
          "explain-prompt",
        ],
        ["Source", answer.source, "explain-source"],
        ["Explainer", answer.explainer, "explain-explainer"],
        ["LLM not used", answer.fallback_reason, "explain-fallback"],
        ["Langfuse not used", answer.langfuse_error, "explain-langfuse-error"],
      ]),
      applyArea
    );
  }

  async function loadFixStatus(gen, signalId, container) {
    let status;
    try {
      status = await api("GET", "/v1/signals/" + encodeURIComponent(signalId) + "/fix-status");
    } catch (error) {
      if (gen === generation) container.replaceChildren(notice(error.message, "error", "fix-status-error"));
      return;
    }
    if (gen !== generation) return;
    if (!status.fix_applied) {
      container.replaceChildren(h("p", { class: "empty", testid: "fix-none" }, status.message || "No fix applied."));
      return;
    }
    const url = safeUrl(status.prompt_url);
    const parts = [
      dl([
        [
          "Prompt",
          url
            ? h("a", { href: url, target: "_blank", rel: "noopener noreferrer", testid: "fix-prompt-link" },
                status.langfuse_prompt_name + " v" + status.new_version + " in Langfuse ↗")
            : status.langfuse_prompt_name,
          "fix-prompt",
        ],
        ["Versions", "v" + status.old_version + " → v" + status.new_version, "fix-versions"],
        ["Rolled back", status.rolled_back ? "yes" : "no", "fix-rolled-back"],
        ["Runs since", fmtNumber(status.runs_after_fix), "fix-runs-after"],
        ["Recurrences", fmtNumber(status.recurrences_after_fix), "fix-recurrences"],
        ["Adopted runs", fmtNumber(status.adopted_runs), "fix-adopted"],
        ["Verdict", status.verdict ? badge(status.verdict) : null, "fix-verdict"],
      ]),
    ];
    if (!status.rolled_back) {
      const result = h("div", { testid: "rollback-status" });
      const button = h("button", { type: "button", class: "secondary", testid: "rollback-button" }, "Roll back");
      button.addEventListener("click", async () => {
        button.disabled = true;
        try {
          const rolled = await api("POST", "/v1/signals/" + encodeURIComponent(signalId) + "/rollback-fix");
          flashInto(
            result,
            "Rolled back: the label is on v" + rolled.rolled_back_to_version + " of " + rolled.langfuse_prompt_name +
              " again (v" + rolled.withdrawn_version + " withdrawn).",
            "ok",
            "rollback-result"
          );
          await loadFixStatus(gen, signalId, container);
          container.prepend(result);
        } catch (error) {
          result.replaceChildren(notice(error.message + " (" + error.code + ")", "error", "rollback-error"));
          button.disabled = false;
        }
      });
      parts.push(button, result);
    }
    container.replaceChildren(...parts);
  }

  function flashInto(container, text, kind, testid) {
    container.replaceChildren(notice(text, kind, testid));
  }

  async function renderSignal(gen, signalId) {
    const path = "/v1/signals/" + encodeURIComponent(signalId);
    const signal = await api("GET", path);
    let run = null;
    let runError = null;
    try {
      run = await api("GET", "/v1/runs/" + encodeURIComponent(signal.run_id));
    } catch (error) {
      if (error instanceof ApiError && error.status === 401) throw error;
      runError = error;
    }
    const explanation = signal.explanation || {};
    const fixes = (explanation.suggested_fixes || []).map((fix) =>
      h("li", null, h("p", null, fix.description), fix.code ? h("pre", { class: "code" }, fix.code) : null)
    );
    const explainArea = h("div", { testid: "explain-area" });
    const fixStatus = h("div", { testid: "fix-status" }, h("p", { class: "loading" }, "Loading…"));
    const explainButton = h("button", { type: "button", testid: "explain-button" }, "Explain");
    explainButton.addEventListener("click", async () => {
      explainButton.disabled = true;
      explainArea.replaceChildren(h("p", { class: "loading", testid: "explaining" }, "Explaining… (this can take a while when an LLM is asked)"));
      try {
        const answer = await api("POST", path + "/explain");
        if (gen !== generation) return;
        explainArea.replaceChildren(explainResult(signal, answer, () => loadFixStatus(gen, signal.signal_id, fixStatus)));
      } catch (error) {
        if (gen === generation) explainArea.replaceChildren(notice(error.message + " (" + error.code + ")", "error", "explain-error"));
      } finally {
        explainButton.disabled = false;
      }
    });
    mount(
      gen,
      h("p", { class: "crumbs" }, h("a", { href: "#/signals" }, "Signals"), " / ", signal.failure_type),
      h(
        "h1",
        { testid: "signal-title" },
        h("span", { testid: "signal-type" }, signal.failure_type),
        " ",
        badge(signal.severity),
        signal.shadow ? badge("shadow") : null
      ),
      dl([
        ["Agent", signal.agent_id, "signal-agent"],
        ["Run", h("a", { href: "#/runs/" + encodeURIComponent(signal.run_id), class: "mono", testid: "signal-run-link" }, signal.run_id)],
        ["Step", String(signal.step_index), "signal-step-index"],
        ["Confidence", Number(signal.confidence).toFixed(2)],
        ["Detected", fmtTime(signal.detected_at) + " (" + signal.mode + ")"],
        ["Signal id", h("span", { class: "mono" }, signal.signal_id)],
      ], "signal-facts"),
      section(
        explanation.title || "Explanation",
        "explanation",
        h("p", { testid: "explanation-what" }, explanation.what),
        h("p", { class: "muted" }, explanation.why_it_matters),
        h("p", { testid: "explanation-evidence" }, explanation.evidence_summary),
        fixes.length ? h("h3", null, "Suggested fixes") : null,
        fixes.length ? h("ul", { class: "fixes" }, fixes) : null,
        h("details", null, h("summary", null, "Evidence"), h("pre", { class: "code", testid: "evidence" }, json(signal.evidence)))
      ),
      section(
        "Steps",
        "steps",
        run ? stepGraph(run.events, signal) : notice("The run could not be read: " + (runError ? runError.message : ""), "error")
      ),
      section(
        "Root cause and fix",
        "explain",
        h("p", { class: "muted" }, "Explain asks the daemon for the root cause and one fix (from Langfuse's trace and an LLM when configured, else from the run's own events)."),
        explainButton,
        explainArea
      ),
      section("Fix status", "fix-status-card", fixStatus)
    );
    await loadFixStatus(gen, signal.signal_id, fixStatus);
  }

  // --- Runs ---------------------------------------------------------------------------------

  function runDuration(run) {
    const start = ms(run.started_at);
    const end = ms(run.ended_at) ?? ms(run.last_event_at);
    return start !== null && end !== null ? end - start : null;
  }

  function runRow(run) {
    const href = "#/runs/" + encodeURIComponent(run.run_id);
    return h(
      "tr",
      {
        class: "clickable",
        testid: "run-row",
        "data-run-id": run.run_id,
        onclick: (event) => {
          if (!(event.target instanceof HTMLAnchorElement)) go(href);
        },
      },
      h("td", null, fmtTime(run.started_at)),
      h("td", null, h("a", { href, class: "mono", testid: "run-link" }, shortId(run.run_id))),
      h("td", null, run.agent_id),
      h("td", { testid: "run-row-status" }, badge(run.status)),
      h("td", { class: "num" }, String(run.step_count)),
      h("td", { class: "num" }, String(run.llm_calls)),
      h("td", { class: "num" }, String(run.tool_calls)),
      h("td", { class: "num" }, String(run.errors)),
      h("td", { class: "num" }, String(run.prompt_tokens + run.completion_tokens)),
      h("td", { class: "num" }, fmtDuration(runDuration(run)))
    );
  }

  async function renderRuns(gen, params) {
    const windowed = windowKey(params, "all");
    const filters = {
      agent_id: params.get("agent_id") || "",
      status: params.get("status") || "",
      since: windowSince(windowed),
    };
    const [agents, page] = await Promise.all([agentIds(), api("GET", "/v1/runs" + query({ ...filters, limit: 50 }))]);
    if (filters.agent_id && !agents.includes(filters.agent_id)) agents.push(filters.agent_id);
    const form = h(
      "form",
      { class: "filters", testid: "run-filters" },
      field("Agent", select({ name: "agent_id", testid: "filter-agent" }, agents, filters.agent_id, "any")),
      field("Status", select({ name: "status", testid: "filter-status" }, RUN_STATUSES, filters.status, "any")),
      h("button", { type: "submit", testid: "filter-apply" }, "Filter"),
      h("a", { href: "#/runs", class: "button-link" }, "Clear")
    );
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      const data = new FormData(form);
      go("#/runs" + query({ agent_id: data.get("agent_id"), status: data.get("status"), window: params.get("window") }));
    });
    const headers = ["Started", "Run", "Agent", "Status", "Steps", "LLM", "Tools", "Errors", "Tokens", "Duration"];
    const list = h("div", { testid: "runs-list" }, table("runs-table", headers, page.runs.map(runRow), "No runs."));
    const presets = windowPicker(windowed, (key) =>
      "#/runs" + query({ agent_id: filters.agent_id, status: filters.status, window: key === "all" ? "" : key })
    );
    mount(gen, h("h1", null, "Runs"), presets, form, list, moreButton(gen, page.next_cursor, list, async (cursor) => {
      const next = await api("GET", "/v1/runs" + query({ ...filters, limit: 50, cursor }));
      return { rows: next.runs.map(runRow), cursor: next.next_cursor };
    }));
    // The newest page refreshes itself while a run on it is still running.
    if (!params.get("cursor") && page.runs.some((r) => r.status === "running")) {
      later(gen, () => refreshRunsList(gen, filters, list), LIVE_INTERVAL_MS * 2);
    }
  }

  async function refreshRunsList(gen, filters, list) {
    try {
      const page = await api("GET", "/v1/runs" + query({ ...filters, limit: 50 }));
      if (gen !== generation) return;
      const headers = ["Started", "Run", "Agent", "Status", "Steps", "LLM", "Tools", "Errors", "Tokens", "Duration"];
      list.replaceChildren(table("runs-table", headers, page.runs.map(runRow), "No runs."));
      if (page.runs.some((r) => r.status === "running")) later(gen, () => refreshRunsList(gen, filters, list), LIVE_INTERVAL_MS * 2);
    } catch (_) {
      later(gen, () => refreshRunsList(gen, filters, list), LIVE_INTERVAL_MS * 5);
    }
  }

  const HASH_KEYS = ["input_hash", "prompt_hash", "output_hash", "args_hash", "error_hash", "query_hash"];
  const LENGTH_KEYS = ["input_length", "prompt_length", "output_length", "args_length"];

  function eventRow(event, startMs, markedSteps) {
    const p = event.payload || {};
    const at = ms(event.timestamp);
    const tokens = [];
    if (p.prompt_tokens !== undefined) tokens.push("in " + p.prompt_tokens);
    if (p.completion_tokens !== undefined) tokens.push("out " + p.completion_tokens);
    const lengths = LENGTH_KEYS.filter((k) => p[k] !== undefined).map((k) => k.replace("_length", "") + " " + p[k]);
    const hashes = HASH_KEYS.filter((k) => p[k]).map((k) =>
      h("span", { class: "hash mono", title: k + " " + p[k] }, k.replace("_hash", "") + " " + shortHash(p[k]))
    );
    const errors = [];
    if (p.success === false) errors.push("failed");
    if (p.error_type) errors.push(p.error_type);
    let detail = null;
    if (event.event_type === "policy.triggered") {
      detail = h(
        "span",
        { class: "policy-event", testid: "policy-event" },
        "policy " + (p.policy_name || p.policy_id) + ": " + p.trigger + " " + p.operator + " " + json(p.value) +
          " (observed " + json(p.observed) + ") → " + p.action_type
      );
    } else if (Array.isArray(p.tool_calls_requested) && p.tool_calls_requested.length) {
      detail = "requests " + p.tool_calls_requested.join(", ");
    } else if (p.result_count !== undefined) {
      detail = p.result_count + " results" + (p.top_score !== undefined ? ", top " + p.top_score : "");
    } else if (p.injection) {
      detail = "injection: " + (p.injection.matched_patterns || []).join(", ");
    }
    const classes = ["event-" + event.event_type.split(".")[0]];
    if (markedSteps.has(event.step_index)) classes.push("marked");
    if (errors.length) classes.push("failed");
    return h(
      "tr",
      { class: classes.join(" "), testid: "event-row", "data-event-type": event.event_type, "data-step": event.step_index },
      h("td", { class: "num" }, String(event.step_index)),
      h("td", { class: "num" }, at !== null && startMs !== null ? "+" + fmtDuration(at - startMs) : "—"),
      h("td", null, event.event_type),
      h("td", null, stepName(event)),
      h("td", { class: "num" }, p.latency_ms !== undefined ? fmtDuration(p.latency_ms) : ""),
      h("td", null, tokens.join(" / ")),
      h("td", null, p.finish_reason || ""),
      h("td", null, lengths.join(", ")),
      h("td", null, hashes),
      h("td", { class: errors.length ? "error-cell" : null }, errors.join(" ")),
      h("td", null, detail)
    );
  }

  async function loadRunEvents(run) {
    const events = run.events.slice();
    let cursor = run.events_next_cursor;
    for (let pages = 0; cursor && pages < 20; pages += 1) {
      const page = await api("GET", "/v1/runs/" + encodeURIComponent(run.run_id) + "/events" + query({ cursor }));
      events.push(...page.events);
      cursor = page.next_cursor;
    }
    return { events, more: Boolean(cursor) };
  }

  function runView(run, events, more) {
    const startMs = ms(run.started_at) ?? (events.length ? ms(events[0].timestamp) : null);
    const markedSteps = new Set(run.signals.map((s) => s.step_index));
    const live = run.status === "running" || run.end_pending;
    const notSeen = {
      tool_names: "tool names (tool calls known only from a finish reason)",
      content: "content (LLM calls with no prompt or output)",
      root_span: "the root span",
    };
    return [
      h("p", { class: "crumbs" }, h("a", { href: "#/runs" }, "Runs"), " / ", shortId(run.run_id)),
      h(
        "h1",
        null,
        "Run ",
        h("span", { class: "mono" }, shortId(run.run_id)),
        " ",
        h("span", { testid: "run-status", "data-status": run.status }, badge(run.status)),
        live ? h("span", { class: "live", testid: "live" }, "live") : null
      ),
      dl([
        ["Run id", h("span", { class: "mono" }, run.run_id)],
        ["Agent", h("a", { href: "#/runs" + query({ agent_id: run.agent_id }) }, run.agent_id), "run-agent"],
        ["Service", run.service_name],
        ["Source", run.source],
        ["Started", fmtTime(run.started_at)],
        ["Ended", run.ended_at ? fmtTime(run.ended_at) : null],
        ["Exit", run.exit_reason],
        ["Duration", fmtDuration(runDuration(run))],
        ["Steps", String(run.step_count), "run-steps"],
        ["LLM calls", String(run.llm_calls)],
        ["Tool calls", String(run.tool_calls), "run-tool-calls"],
        ["Retrievals", String(run.retrievals)],
        ["Errors", String(run.errors)],
        ["Tokens", run.prompt_tokens + " in / " + run.completion_tokens + " out"],
      ], "run-facts"),
      run.end_pending ? notice("End-of-run detectors are still waiting for late spans.", "info", "end-pending") : null,
      run.not_seen.length
        ? notice("Not sent by the instrumentation, so no detector could judge it: " + run.not_seen.map((k) => notSeen[k] || k).join("; ") + ".", "warn", "not-seen")
        : null,
      section(
        "Signals",
        "run-signals",
        run.signals.length
          ? h(
              "ul",
              { class: "plain" },
              run.signals.map((s) =>
                h(
                  "li",
                  { testid: "run-signal" },
                  badge(s.severity),
                  " ",
                  h("a", { href: "#/signals/" + encodeURIComponent(s.signal_id) }, s.failure_type),
                  " at step " + s.step_index + " — " + (s.explanation ? s.explanation.title : "")
                )
              )
            )
          : h("p", { class: "empty", testid: "run-signals-empty" }, "No signals.")
      ),
      section(
        "Timeline",
        "run-timeline",
        table(
          "run-events",
          ["Step", "At", "Event", "Name", "Latency", "Tokens", "Finish", "Lengths", "Hashes", "Error", "Detail"],
          events.map((e) => eventRow(e, startMs, markedSteps)),
          "No events yet."
        ),
        more ? notice("Only the first " + events.length + " events are shown.", "info") : null
      ),
    ];
  }

  async function renderRun(gen, runId) {
    const path = "/v1/runs/" + encodeURIComponent(runId);
    const run = await api("GET", path);
    const { events, more } = await loadRunEvents(run);
    mount(gen, ...runView(run, events, more));
    if (run.status === "running" || run.end_pending) later(gen, () => refreshRun(gen, path), LIVE_INTERVAL_MS);
  }

  async function refreshRun(gen, path) {
    let run;
    try {
      run = await api("GET", path);
      const { events, more } = await loadRunEvents(run);
      if (gen !== generation) return;
      const scrollY = window.scrollY;
      app.replaceChildren(...runView(run, events, more).filter(Boolean));
      window.scrollTo(0, scrollY);
    } catch (error) {
      if (error instanceof ApiError && error.status === 401) return;
      later(gen, () => refreshRun(gen, path), LIVE_INTERVAL_MS * 5);
      return;
    }
    if (run.status === "running" || run.end_pending) later(gen, () => refreshRun(gen, path), LIVE_INTERVAL_MS);
  }

  // --- Policies -----------------------------------------------------------------------------

  function conditionText(condition) {
    return condition.trigger + " " + condition.operator + " " + json(condition.value);
  }

  function actionText(action) {
    const params = action.params || {};
    if (action.type === "switch_model" && params.model !== undefined) return "switch_model → " + params.model;
    if (action.type === "inject_prompt" && params.prompt !== undefined) return "inject_prompt: “" + params.prompt + "”";
    return Object.keys(params).length ? action.type + " " + json(params) : action.type;
  }

  async function renderPolicies(gen) {
    const data = await api("GET", "/v1/policies");
    const status = h("div", { testid: "policies-status" });
    const rows = data.policies.map((policy) => {
      const base = "/v1/policies/" + encodeURIComponent(policy.id);
      const toggle = h(
        "button",
        {
          type: "button",
          class: policy.enabled ? "toggle on" : "toggle",
          testid: "policy-toggle",
          "aria-pressed": policy.enabled ? "true" : "false",
        },
        policy.enabled ? "Enabled" : "Disabled"
      );
      toggle.addEventListener("click", async () => {
        toggle.disabled = true;
        try {
          const updated = await api("PATCH", base + "/toggle", { enabled: !policy.enabled });
          flash = { text: "Policy “" + updated.name + "” " + (updated.enabled ? "enabled." : "disabled."), kind: "ok" };
          route();
        } catch (error) {
          status.replaceChildren(notice(error.message, "error", "policies-error"));
          toggle.disabled = false;
        }
      });
      const remove = h("button", { type: "button", class: "danger", testid: "policy-delete" }, "Delete");
      remove.addEventListener("click", async () => {
        if (remove.getAttribute("data-confirm") !== "yes") {
          remove.setAttribute("data-confirm", "yes");
          remove.setAttribute("data-testid", "policy-delete-confirm");
          remove.textContent = "Really delete?";
          return;
        }
        remove.disabled = true;
        try {
          await api("DELETE", base);
          flash = { text: "Policy “" + policy.name + "” deleted.", kind: "ok" };
          route();
        } catch (error) {
          status.replaceChildren(notice(error.message, "error", "policies-error"));
          remove.disabled = false;
        }
      });
      return h(
        "tr",
        { testid: "policy-row", "data-policy-id": policy.id, "data-policy-name": policy.name, class: policy.enabled ? null : "disabled" },
        h("td", { class: "num" }, String(policy.priority)),
        h("td", { testid: "policy-name-cell" }, policy.name),
        h("td", null, policy.agent_id),
        h("td", { testid: "policy-condition" }, conditionText(policy.condition)),
        h("td", { testid: "policy-action" }, actionText(policy.action)),
        h("td", null, toggle),
        h(
          "td",
          { class: "actions" },
          h("a", { href: "#/policies/" + encodeURIComponent(policy.id), class: "button-link", testid: "policy-edit" }, "Edit"),
          remove
        )
      );
    });
    mount(
      gen,
      h("h1", null, "Policies"),
      h(
        "p",
        { class: "muted" },
        "Rules evaluated on every run's stream after each tool call, tool result and LLM answer, lower priority first. ",
        h("a", { href: "#/policies/new", class: "button-link primary", testid: "policy-new" }, "New policy")
      ),
      status,
      table("policies-table", ["Priority", "Name", "Agent", "Condition", "Action", "State", ""], rows, "No policies yet.")
    );
  }

  function fieldBox(path, label, control, hint) {
    return h(
      "div",
      { class: "form-field", "data-field": path },
      h("label", null, h("span", { class: "field-label" }, label), control),
      hint ? h("span", { class: "hint" }, hint) : null,
      h("span", { class: "field-error", testid: "field-error-" + path, role: "alert", hidden: true })
    );
  }

  async function renderPolicyForm(gen, which) {
    const creating = which === "new";
    const existing = creating ? null : await api("GET", "/v1/policies/" + encodeURIComponent(which));
    const current = existing || {
      name: "",
      agent_id: "*",
      condition: { trigger: "tool_call_count", operator: "gt", value: "" },
      action: { type: "stop", params: {} },
      priority: 100,
      enabled: true,
    };
    const params = current.action.params || {};
    const controls = {
      name: h("input", { name: "name", testid: "policy-name", value: current.name, required: true, maxlength: 256 }),
      agent_id: h("input", { name: "agent_id", testid: "policy-agent", value: current.agent_id }),
      trigger: select({ name: "trigger", testid: "policy-trigger" }, TRIGGERS, current.condition.trigger),
      operator: select({ name: "operator", testid: "policy-operator" }, OPERATORS, current.condition.operator),
      value: h("input", { name: "value", testid: "policy-value", value: current.condition.value }),
      action: select({ name: "action", testid: "policy-action-type" }, ACTIONS, current.action.type),
      model: h("input", { name: "model", testid: "policy-model", value: params.model ?? "", placeholder: "e.g. gpt-4o-mini" }),
      prompt: h("textarea", { name: "prompt", testid: "policy-prompt", rows: 3 }),
      priority: h("input", { name: "priority", testid: "policy-priority", value: current.priority, inputmode: "numeric" }),
      enabled: h("input", { type: "checkbox", name: "enabled", testid: "policy-enabled", checked: current.enabled }),
    };
    controls.prompt.value = params.prompt ?? "";
    const modelBox = fieldBox("action.params.model", "Model to switch to", controls.model);
    const promptBox = fieldBox("action.params.prompt", "Prompt to inject", controls.prompt);
    const paramsBox = h("div", { class: "form-field", "data-field": "action.params" },
      h("span", { class: "field-error", testid: "field-error-action.params", role: "alert", hidden: true }));
    const showParams = () => {
      modelBox.hidden = controls.action.value !== "switch_model";
      promptBox.hidden = controls.action.value !== "inject_prompt";
    };
    controls.action.addEventListener("change", showParams);
    showParams();
    const formError = h("div", { testid: "form-error" });
    const save = h("button", { type: "submit", testid: "policy-save" }, creating ? "Create policy" : "Save policy");
    const form = h(
      "form",
      { class: "policy-form", testid: "policy-form", novalidate: true },
      formError,
      fieldBox("name", "Name", controls.name),
      fieldBox("agent_id", "Agent", controls.agent_id, "* for every agent"),
      h(
        "fieldset",
        null,
        h("legend", null, "Condition"),
        fieldBox("condition.trigger", "Trigger", controls.trigger),
        fieldBox("condition.operator", "Operator", controls.operator),
        fieldBox("condition.value", "Value", controls.value, "a number, or a name for finish_reason and signal (e.g. TOOL_LOOP)")
      ),
      h("fieldset", null, h("legend", null, "Action"), fieldBox("action.type", "Type", controls.action), modelBox, promptBox, paramsBox),
      fieldBox("priority", "Priority", controls.priority, "lower runs first"),
      fieldBox("enabled", "Enabled", controls.enabled),
      h("div", { class: "form-buttons" }, save, h("a", { href: "#/policies", class: "button-link", testid: "policy-cancel" }, "Cancel"))
    );

    function clearErrors() {
      formError.replaceChildren();
      for (const box of form.querySelectorAll("[data-field]")) box.classList.remove("invalid");
      for (const el of form.querySelectorAll(".field-error")) {
        el.textContent = "";
        el.hidden = true;
      }
    }

    function showFieldError(message) {
      // The API's 400 names the field first: "condition.trigger: Input should be …".
      const match = /^([A-Za-z_][\w.]*): ([\s\S]*)$/.exec(message);
      if (match) {
        const segments = match[1].split(".");
        while (segments.length) {
          const box = form.querySelector('[data-field="' + segments.join(".") + '"]');
          if (box && !box.hidden) {
            const slot = box.querySelector(".field-error");
            slot.textContent = match[2];
            slot.hidden = false;
            box.classList.add("invalid");
            const control = box.querySelector("input, select, textarea");
            if (control) control.focus();
            return;
          }
          segments.pop();
        }
      }
      formError.replaceChildren(notice(message, "error", "form-error-message"));
    }

    function numberOrText(text) {
      const trimmed = text.trim();
      if (trimmed !== "" && /^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$/.test(trimmed)) return Number(trimmed);
      return text; // not a number: sent as typed, and the API says what is wrong with it
    }

    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      clearErrors();
      const trigger = controls.trigger.value;
      const value = NUMERIC_TRIGGERS.has(trigger) ? numberOrText(controls.value.value) : controls.value.value.trim();
      const actionType = controls.action.value;
      const actionParams = {};
      for (const [k, v] of Object.entries(params)) if (k !== "model" && k !== "prompt") actionParams[k] = v;
      if (actionType === "switch_model") actionParams.model = controls.model.value.trim();
      if (actionType === "inject_prompt") actionParams.prompt = controls.prompt.value.trim();
      const priorityText = controls.priority.value.trim();
      const body = {
        name: controls.name.value,
        agent_id: controls.agent_id.value.trim() || "*",
        condition: { trigger, operator: controls.operator.value, value },
        action: { type: actionType, params: actionParams },
        enabled: controls.enabled.checked,
      };
      if (priorityText !== "") body.priority = /^[-+]?\d+$/.test(priorityText) ? Number(priorityText) : priorityText;
      save.disabled = true;
      try {
        const saved = creating
          ? await api("POST", "/v1/policies", body)
          : await api("PUT", "/v1/policies/" + encodeURIComponent(current.id), body);
        flash = { text: "Policy “" + saved.name + "” " + (creating ? "created." : "saved."), kind: "ok" };
        go("#/policies");
      } catch (error) {
        if (gen !== generation) return;
        if (error instanceof ApiError && error.status === 400) showFieldError(error.message);
        else if (!(error instanceof ApiError && error.status === 401)) formError.replaceChildren(notice(error.message, "error", "form-error-message"));
        save.disabled = false;
      }
    });
    mount(
      gen,
      h("p", { class: "crumbs" }, h("a", { href: "#/policies" }, "Policies"), " / ", creating ? "new" : current.name),
      h("h1", null, creating ? "New policy" : "Edit policy"),
      form
    );
    controls.name.focus();
  }

  // --- start --------------------------------------------------------------------------------

  window.addEventListener("hashchange", route);
  forgetKey.hidden = !storedKey();
  route();
})();
