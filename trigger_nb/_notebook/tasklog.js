// trigger_nb task log and runs table (SPEC §8): renders the `state` trait of one anywidget
// model. No build step, no network: plain DOM. Python decides what is shown (rows, groups,
// controls); this module draws it, ticks countdowns, and sends clicks back as messages.

const LABELS = {
  retry: "Retry",
  retry_now: "Retry now",
  resume_now: "Resume now",
  send: "Send",
  send_event: "Send event",
  cancel: "Cancel run",
  invalidate: "Invalidate",
  complete: "Complete with value",
};
const CHANGED_HINT = "the task's function changed since its output was stored: this execution replayed the old output";
// Controls that send the JSON typed in the text area beside them.
const NEEDS_VALUE = { send: true, send_event: true, complete: true };
const SYMBOLS = {
  COMPLETED: "✓", SUCCESS: "✓", ERRORED: "✗", FAILURE: "✗", WAITING: "○", RUNNING: "↻",
  EXECUTING: "↻", PENDING: "·", QUEUED: "·", CANCELED: "·", TIMED_OUT: "✗", INTERRUPTED: "✗",
};
const KIND_ICONS = {
  wait: "◷", wait_for_request: "↪", wait_for_event: "✉", log: "≡", status: "◐", fetch: "⇅",
  "fetch-response": "⇅", poll: "↻", random: "#", uuid: "#", now: "◷", send_event: "✉",
  parallel: "⇉", attempt: "·",
};

function h(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "class") node.className = v;
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else if (k === "dataset") Object.assign(node.dataset, v);
    else node.setAttribute(k, v === true ? "" : v);
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.appendChild(typeof child === "string" || typeof child === "number" ? document.createTextNode(String(child)) : child);
  }
  return node;
}

function seconds(s) {
  if (s === null || s === undefined) return "—";
  if (s < 1) return `${Math.round(s * 1000)} ms`;
  if (s < 60) return `${s.toFixed(1)} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min ${Math.floor(s % 60)} s`;
  return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`;
}

function clock(s) {
  s = Math.max(0, Math.ceil(s));
  const hh = Math.floor(s / 3600), mm = Math.floor((s % 3600) / 60), ss = s % 60;
  const two = (n) => String(n).padStart(2, "0");
  return hh ? `${hh}:${two(mm)}:${two(ss)}` : `${mm}:${two(ss)}`;
}

function pretty(text) {
  try { return JSON.stringify(JSON.parse(text), null, 2); } catch (e) { return text; }
}

function badge(status, text) {
  return h("span", { class: `tnb-badge tnb-st-${status}` }, `${SYMBOLS[status] || "·"} ${text || status}`);
}

function countdown(prefix, at) {
  return h("span", { class: "tnb-countdown", dataset: { at: String(at), prefix } }, prefix);
}

function render({ model, el }) {
  const ui = { drafts: {}, errors: {}, busy: {}, req: 0, pending: {}, filter: { status: "", job: "" } };
  let offset = 0; // server clock minus browser clock, so countdowns agree with the kernel
  const root = h("div", { class: "tnb" });
  el.appendChild(root);

  const now = () => Date.now() / 1000 + offset;

  function send(message) {
    model.send(message);
  }

  // -- controls ---------------------------------------------------------------------------
  function draftArea(draftKey, placeholder) {
    const area = h("textarea", {
      class: "tnb-json",
      rows: "2",
      spellcheck: "false",
      placeholder,
      "aria-label": "JSON value",
      dataset: { draft: draftKey },
      oninput: (e) => { ui.drafts[draftKey] = e.target.value; },
    });
    area.value = ui.drafts[draftKey] ?? "";
    return area;
  }

  function control(cmd, taskId, draftKey, title) {
    const key = `${cmd}:${taskId || ""}`;
    const button = h("button", {
      class: `tnb-btn tnb-btn-${cmd}${cmd === "retry" || cmd === "send" ? " tnb-primary" : ""}`,
      type: "button",
      title,
      disabled: !!ui.busy[key],
      onclick: () => {
        const message = { cmd, task_id: taskId || null, req: ++ui.req };
        if (NEEDS_VALUE[cmd]) {
          const text = ui.drafts[draftKey] ?? "";
          try {
            if (!text.trim()) throw new Error("type a JSON value first");
            JSON.parse(text);
          } catch (err) {
            ui.errors[key] = `Invalid JSON: ${err.message}. Nothing was sent.`;
            draw();
            return;
          }
          message.value = text;
        }
        delete ui.errors[key];
        ui.busy[key] = true;
        ui.pending[message.req] = key;
        button.disabled = true;
        button.classList.add("tnb-busy");
        send(message);
      },
    }, LABELS[cmd]);
    return button;
  }

  function controlError(cmd, taskId) {
    const text = ui.errors[`${cmd}:${taskId || ""}`];
    return text ? h("div", { class: "tnb-inline-error", role: "alert" }, text) : null;
  }

  // -- the run log -------------------------------------------------------------------------
  function header(view) {
    const run = view.run;
    const waiting = view.rows.find((r) => r.wait);
    let why = null;
    if (run.status === "WAITING" && waiting) why = h("span", { class: "tnb-why" }, waitLine(waiting.wait, false));
    const controls = run.controls.map((c) => control(c, null));
    const live = run.status === "EXECUTING" || run.status === "WAITING" || run.status === "QUEUED";
    const span = live ? h("span", { class: "tnb-ticking", dataset: { base: String(run.span), since: String(view.now) } }, seconds(run.span)) : seconds(run.span);
    return h("div", { class: "tnb-header" },
      h("div", { class: "tnb-title" },
        h("b", { class: "tnb-job" }, run.job_id), " ",
        h("code", { class: "tnb-runid", title: "run id" }, run.id),
        run.job_version ? h("span", { class: "tnb-muted" }, ` · v${run.job_version}`) : null, " ",
        h("span", { class: `tnb-status tnb-badge tnb-st-${run.status}` }, `${run.symbol} ${run.status}`), " ",
        why,
      ),
      h("div", { class: "tnb-meta" },
        h("span", {}, `${run.executions} execution${run.executions === 1 ? "" : "s"} · active ${seconds(run.active)} · span `), span,
        h("span", { class: "tnb-muted" }, ` · ${run.progress.done.toLocaleString()} of ${run.progress.seen.toLocaleString()} tasks finished`),
        h("span", { class: "tnb-controls" }, controls),
      ),
      run.controls.map((c) => controlError(c, null)),
      run.statuses.map((s) => h("div", { class: `tnb-run-status tnb-state-${s.state || "none"}` },
        `${s.state === "loading" ? "◌" : s.state === "success" ? "✓" : s.state === "failure" ? "✗" : "◐"} ${s.label}`,
        s.state ? h("span", { class: "tnb-muted" }, ` [${s.state}]`) : null,
        s.data ? h("code", { class: "tnb-muted" }, ` ${JSON.stringify(s.data)}`) : null)),
      run.invalidated.length ? h("div", { class: "tnb-note" },
        `Invalidated: ${run.invalidated.join(", ")} — the next execution runs ${run.invalidated.length === 1 ? "it" : "them"} again (Retry, or re-execute the cell).`) : null,
      h("div", { class: "tnb-progress", role: "progressbar", "aria-valuemin": "0", "aria-valuemax": String(run.progress.seen), "aria-valuenow": String(run.progress.done) },
        h("div", { class: `tnb-progress-bar tnb-st-${run.status}`, style: `width:${run.progress.seen ? (100 * run.progress.done / run.progress.seen).toFixed(1) : 0}%` })),
    );
  }

  function executionsStrip(view) {
    if (!view.executions.length) return null;
    return h("div", { class: "tnb-execs" },
      h("span", { class: "tnb-muted" }, "Executions "),
      view.executions.map((e) => h("button", {
        type: "button",
        class: `tnb-exec tnb-exec-${e.status}${e.n === view.shown ? " tnb-selected" : ""}`,
        title: `execution ${e.n}: ${e.status}, started ${new Date(e.started_at * 1000).toLocaleTimeString()}`,
        onclick: () => send({ cmd: "show_execution", n: e.n === view.latest ? null : e.n }),
      }, `${e.n} · ${SYMBOLS[e.status] || ""} ${e.status.toLowerCase()} · ran ${e.ran} · replayed ${e.replayed}${e.failed ? ` · ✗ ${e.failed}` : ""}${e.retrying ? ` · ↻ ${e.retrying} retrying` : ""}${e.code_changed ? ` · ${e.code_changed} code changed` : ""}`)),
      view.shown !== view.latest ? h("div", { class: "tnb-note tnb-history-note" },
        `Execution ${view.shown} as it happened then (history does not change). `,
        h("a", { href: "#", onclick: (ev) => { ev.preventDefault(); send({ cmd: "show_execution", n: null }); } }, "Show the latest")) : null,
    );
  }

  function waitLine(wait, withUrl) {
    const parts = [];
    if (wait.kind === "callback") {
      parts.push(withUrl ? "the first JSON body POSTed here becomes the output" : "waiting for a callback");
      if (wait.timeout_at) parts.push(" · ", countdown("times out in ", wait.timeout_at));
    } else if (wait.kind === "retry") {
      parts.push(`attempt ${wait.attempt}${wait.limit ? ` of ${wait.limit}` : ""}, `, countdown("next in ", wait.due_at));
    } else if (wait.kind === "delay") {
      parts.push(countdown("resumes in ", wait.due_at));
    } else if (wait.kind === "event") {
      parts.push(`waiting for event ${wait.names.join(" | ")}`);
      if (wait.filter) parts.push(h("span", {}, " matching "), h("code", {}, JSON.stringify(wait.filter)));
      if (wait.source) parts.push(` from ${wait.source}`);
      if (wait.timeout_at) parts.push(" · ", countdown("times out in ", wait.timeout_at));
    } else if (wait.kind === "operation") {
      parts.push(`running in the background · ${wait.attempts} attempt${wait.attempts === 1 ? "" : "s"} so far`);
    } else {
      parts.push("waiting");
    }
    return parts;
  }

  function waitBox(row) {
    const wait = row.wait;
    const box = [];
    if (wait.kind === "callback") {
      const url = h("input", { class: "tnb-url", readonly: true, value: wait.url || "", "aria-label": "callback URL", onfocus: (e) => e.target.select() });
      url.value = wait.url || "";
      box.push(h("div", { class: "tnb-wait" },
        h("span", { class: "tnb-label" }, "Callback URL "), url, " ",
        h("button", { type: "button", class: "tnb-btn tnb-copy", onclick: (e) => copy(wait.url, e.target) }, "Copy"), " ",
        h("span", { class: "tnb-muted" }, waitLine(wait, true))));
    } else {
      box.push(h("div", { class: "tnb-wait" }, waitLine(wait, false)));
    }
    for (const cmd of row.controls) {
      if (cmd === "send" || cmd === "send_event") {
        const draftKey = `${cmd}:${row.id}`;
        const hint = cmd === "send" ? "POSTs through the receiver, like the real caller would" : `sends event ${wait.names[0]} with this payload`;
        box.push(h("div", { class: "tnb-sendbox" },
          draftArea(draftKey, cmd === "send" ? '{"approved": true}' : '{"payload": "..."}'), " ", control(cmd, row.id, draftKey), " ",
          h("span", { class: "tnb-muted" }, hint), controlError(cmd, row.id)));
      }
    }
    return box;
  }

  function errorBox(row) {
    const err = row.error;
    return h("pre", { class: "tnb-error" }, `${err.name}: ${err.message}${err.stack ? "\n" + err.stack : ""}`);
  }

  function taskControls(row) {
    const out = [];
    const plain = row.controls.filter((c) => c !== "send" && c !== "send_event" && c !== "invalidate" && c !== "complete");
    if (row.controls.includes("complete")) {
      const draftKey = `complete:${row.id}`;
      out.push(h("div", { class: "tnb-actions" },
        plain.map((c) => control(c, row.id)),
        draftArea(draftKey, "the output to use instead, as JSON"), " ", control("complete", row.id, draftKey),
        plain.map((c) => controlError(c, row.id)), controlError("complete", row.id)));
    } else if (plain.length) {
      out.push(h("div", { class: "tnb-actions" }, plain.map((c) => control(c, row.id)), plain.map((c) => controlError(c, row.id))));
    }
    if (row.code_changed && row.controls.includes("invalidate")) {
      out.push(h("div", { class: "tnb-actions tnb-changed-actions" },
        h("span", { class: "tnb-changed-note" }, "The function changed since this output was stored: replayed, not run."), " ",
        control("invalidate", row.id, null, "forget this output: the next execution runs the task again"),
        h("span", { class: "tnb-muted" }, " Invalidate: the next execution runs it again · or re-run the cell with --rerun-changed"),
        controlError("invalidate", row.id)));
    }
    return out;
  }

  function detailBox(row) {
    const d = row.detail;
    const props = [...(d.properties || []), ...(d.output_properties || [])];
    return h("div", { class: "tnb-detail" },
      d.description ? h("div", {}, d.description) : null,
      props.length ? h("div", { class: "tnb-props" }, props.map((p) => h("span", { class: "tnb-prop" }, h("b", {}, `${p.label}: `), String(p.text)))) : null,
      d.params !== null && d.params !== undefined ? h("div", {}, h("div", { class: "tnb-label" }, "params"), h("pre", {}, d.params)) : null,
      d.output !== undefined ? h("div", {}, h("div", { class: "tnb-label" }, "output"), h("pre", {}, d.output)) : null,
      d.redacted.length ? h("div", { class: "tnb-muted" }, `redacted: ${d.redacted.join(", ")} (shown as [REDACTED])`) : null,
      h("div", { class: "tnb-muted" }, `idempotency key ${d.idempotency_key}`),
      row.controls.includes("invalidate") && !row.code_changed ? h("div", { class: "tnb-actions" }, control("invalidate", row.id),
        h("span", { class: "tnb-muted" }, " forget this result: the next execution runs the task again"), controlError("invalidate", row.id)) : null,
    );
  }

  function icon(row) {
    const glyph = KIND_ICONS[row.kind] || (row.icon ? row.icon[0].toUpperCase() : "•");
    return h("span", { class: "tnb-icon", title: row.icon || row.kind }, glyph);
  }

  function taskRow(row) {
    const pad = `padding-left:${0.4 + 1.4 * row.depth}em`;
    if (row.type === "more") {
      return h("div", { class: "tnb-row tnb-more", dataset: { id: row.group }, onclick: () => send({ cmd: "more_of_group", id: row.group }), title: "list more of this group" },
        h("span", { class: "tnb-cell tnb-name tnb-muted", style: pad },
          `… ${row.hidden.toLocaleString()} more — `, h("a", { href: "#", onclick: (e) => e.preventDefault() }, `show ${row.next.toLocaleString()} more`)));
    }
    if (row.type === "group") {
      const counts = Object.entries(row.counts).map(([s, n]) => `${n.toLocaleString()} ${s.toLowerCase()}`).join(", ");
      const attempts = row.attempts[0] === row.attempts[1] ? `${row.attempts[0]} attempt${row.attempts[0] === 1 ? "" : "s"}` : `${row.attempts[0]}–${row.attempts[1]} attempts`;
      return h("div", { class: "tnb-row tnb-group", dataset: { id: row.id }, onclick: () => send({ cmd: "toggle_group", id: row.id }), title: row.open ? "close the group" : "list every task of the group" },
        h("span", { class: "tnb-cell tnb-name", style: pad },
          h("span", { class: "tnb-toggle" }, row.open ? "▾" : "▸"), " ", icon(row), " ", h("b", {}, row.name), ` × ${row.count.toLocaleString()}`,
          row.replayed ? h("span", { class: "tnb-tag tnb-tag-replayed" }, row.replayed === row.count ? "replayed" : `${row.replayed.toLocaleString()} replayed`) : null,
          row.code_changed ? h("span", { class: "tnb-tag tnb-tag-changed", title: CHANGED_HINT }, `${row.code_changed.toLocaleString()} code changed`) : null),
        h("span", { class: "tnb-cell tnb-stat" }, h("span", { class: `tnb-badge tnb-st-${row.status}` }, `${SYMBOLS[row.status] || "·"} ${counts}`)),
        h("span", { class: "tnb-cell tnb-att" }, attempts),
        h("span", { class: "tnb-cell tnb-dur" }, seconds(row.ms / 1000)));
    }
    const expandable = true;
    const parts = [h("div", {
      class: `tnb-row tnb-task tnb-row-${row.status}${row.detail ? " tnb-open" : ""}${row.code_changed ? " tnb-changed" : ""}`,
      dataset: { id: row.id, key: row.key },
      onclick: (e) => { if (expandable && !e.target.closest("button,textarea,input,a")) send({ cmd: "toggle_row", id: row.id }); },
    },
      h("span", { class: "tnb-cell tnb-name", style: pad },
        h("span", { class: "tnb-toggle" }, row.detail ? "▾" : "▸"), " ", icon(row), " ", h("b", {}, row.name),
        row.key && row.key !== row.name ? h("span", { class: "tnb-key" }, ` ${row.key}`) : null,
        row.replayed ? h("span", { class: "tnb-tag tnb-tag-replayed", title: "the output came from the store: the function did not run in this execution" }, "replayed") :
          row.outcome === "ran" ? h("span", { class: "tnb-tag tnb-tag-ran" }, "ran") : null,
        row.code_changed ? h("span", { class: "tnb-tag tnb-tag-changed", title: CHANGED_HINT }, "code changed") : null,
        row.resolved_by === "manual" ? h("span", { class: "tnb-tag" }, "completed by hand") : null),
      h("span", { class: "tnb-cell tnb-stat" }, badge(row.status)),
      h("span", { class: "tnb-cell tnb-att" }, row.noop ? "" : `${row.attempts} attempt${row.attempts === 1 ? "" : "s"}`),
      h("span", { class: "tnb-cell tnb-dur" }, row.ms === null ? "—" : seconds(row.ms / 1000)))];
    const extra = [];
    if (row.error) extra.push(errorBox(row));
    if (row.wait) extra.push(...waitBox(row));
    extra.push(...taskControls(row));
    if (row.detail) extra.push(detailBox(row));
    if (extra.length) parts.push(h("div", { class: "tnb-extra", style: `margin-left:${1.6 + 1.4 * row.depth}em` }, extra));
    return parts;
  }

  // Time axis of the timeline: each execution gets a segment (idle time between executions
  // is cut out, drawn as a narrow break) so that millisecond tasks stay visible beside an
  // hour-long wait.
  function timeAxis(view, t, left, width) {
    let segs = view.executions.filter((e) => e.started_at).map((e) => ({ n: e.n, s: e.started_at, e: e.ended_at || t }));
    const live = view.run.status === "EXECUTING";
    if (live && (!segs.length || segs[segs.length - 1].e < t - 0.001)) segs.push({ n: view.latest, s: view.run.started_at && segs.length ? segs[segs.length - 1].e : (view.run.started_at || t), e: t });
    if (!segs.length) segs = [{ n: view.latest, s: view.run.started_at || t, e: t }];
    if (view.run.status === "WAITING") segs.push({ waiting: true, s: segs[segs.length - 1].e + 1e-6, e: t });
    const gap = segs.length > 1 ? 18 : 0; // (the waiting tail follows its execution directly)
    const total = segs.reduce((a, g) => a + Math.max(0, g.e - g.s), 0) || 1;
    const weights = segs.map((g) => Math.max(g.e - g.s, total * 0.15));
    const sumW = weights.reduce((a, b) => a + b, 0);
    const avail = width - gap * (segs.length - 1);
    let cursor = left;
    segs.forEach((g, i) => { g.x = cursor; g.w = (weights[i] / sumW) * avail; cursor += g.w + gap; });
    const x = (v) => {
      if (v <= segs[0].s) return segs[0].x;
      for (let i = 0; i < segs.length; i++) {
        const g = segs[i];
        if (v <= g.e) return g.x + ((v - g.s) / Math.max(g.e - g.s, 1e-9)) * g.w;
        const next = segs[i + 1];
        if (next && v < next.s) return g.x + g.w + gap * ((v - g.e) / (next.s - g.e));
      }
      const last = segs[segs.length - 1];
      return last.x + last.w;
    };
    return { segs, x, gap };
  }

  function timeline(view) {
    const bars = view.rows.filter((r) => r.start && (r.type === "group" || !r.group) && r.depth <= 1).slice(0, 40);
    if (!bars.length) return null;
    const t = now();
    const W = 1000, left = 160, rowH = 14, top = 16;
    const axis = timeAxis(view, t, left, W - left - 10);
    const NS = "http://www.w3.org/2000/svg";
    const s = (tag, attrs, text) => {
      const node = document.createElementNS(NS, tag);
      for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
      if (text !== undefined) node.textContent = text;
      return node;
    };
    const height = top + bars.length * rowH + 6;
    const svg = s("svg", { viewBox: `0 0 ${W} ${height}`, class: "tnb-timeline", role: "img", "aria-label": "timeline of the tasks, one segment per execution" });
    axis.segs.forEach((g, i) => {
      svg.appendChild(s("rect", { x: g.x, y: 12, width: Math.max(1, g.w), height: 2, class: "tnb-tl-active" }));
      svg.appendChild(s("line", { x1: g.x, x2: g.x, y1: 0, y2: height, class: "tnb-tl-exec" }));
      svg.appendChild(s("text", { x: g.x + 3, y: 10, class: "tnb-tl-label" }, g.waiting ? `waiting · ${seconds(g.e - g.s)}` : `exec ${g.n} · ${seconds(g.e - g.s)}`));
      if (i > 0 && !g.waiting) {
        const gx = axis.segs[i - 1].x + axis.segs[i - 1].w;
        const idle = g.s - axis.segs[i - 1].e;
        const gapRect = s("rect", { x: gx, y: 0, width: axis.gap, height, class: "tnb-tl-gap" });
        gapRect.appendChild(s("title", {}, `idle for ${seconds(idle)} between executions`));
        svg.appendChild(gapRect);
      }
    });
    bars.forEach((b, i) => {
      const y = top + i * rowH;
      const end = b.end || t;
      const label = b.type === "group" ? `${b.name} × ${b.count}` : `${b.name} ${b.key && b.key !== b.name ? b.key : ""}`;
      svg.appendChild(s("text", { x: 4 + 8 * b.depth, y: y + 10, class: "tnb-tl-name" }, label.length > 26 ? label.slice(0, 25) + "…" : label));
      const cls = b.status === "WAITING" ? "tnb-tl-wait" : `tnb-tl-bar tnb-fill-${b.status}`;
      const x0 = axis.x(b.start);
      const rect = s("rect", { x: x0, y: y + 2, width: Math.max(2, axis.x(end) - x0), height: rowH - 4, class: cls });
      rect.appendChild(s("title", {}, `${label}: ${b.status}${b.replayed ? " (replayed)" : ""}`));
      svg.appendChild(rect);
      if (b.status === "WAITING") svg.appendChild(s("text", { x: x0 + 4, y: y + 10, class: "tnb-tl-label" }, "waiting…"));
    });
    return h("div", { class: "tnb-timeline-wrap" }, svg);
  }

  // Stored tasks the latest execution no longer reaches (a renamed key, a deleted step):
  // greyed under the log, each with Invalidate (which deletes it: no execution uses it).
  function notReached(view) {
    const rows = view.not_reached || [];
    if (!rows.length) return null;
    const more = (view.not_reached_total || 0) - rows.length;
    return h("div", { class: "tnb-unreached" },
      h("div", { class: "tnb-unreached-title" },
        `not reached by execution ${view.run.executions}: stored, no longer used by the code · `,
        h("code", {}, `%job prune ${view.run.id}`), " deletes them all"),
      rows.map((row) => h("div", { class: "tnb-row tnb-not-reached", dataset: { id: row.id, key: row.key } },
        h("span", { class: "tnb-cell tnb-name", style: `padding-left:${0.4 + 1.4 * row.depth}em` },
          h("span", { class: "tnb-toggle" }, ""), " ", icon(row), " ", h("b", {}, row.name),
          row.key && row.key !== row.name ? h("span", { class: "tnb-key" }, ` ${row.key}`) : null,
          h("span", { class: "tnb-tag tnb-tag-unreached" }, "not reached")),
        h("span", { class: "tnb-cell tnb-stat" }, row.status.toLowerCase()),
        h("span", { class: "tnb-cell tnb-att" }, row.controls.map((c) => control(c, row.id, null, "delete this stored task: no execution uses it"))),
        h("span", { class: "tnb-cell tnb-dur" }, row.controls.map((c) => controlError(c, row.id))))),
      more > 0 ? h("div", { class: "tnb-muted tnb-empty" }, `… and ${more.toLocaleString()} more`) : null);
  }

  function runLog(view) {
    const run = view.run;
    const rows = view.rows.flatMap(taskRow);
    return h("div", { class: `tnb-log tnb-run-${run.status}`, dataset: { run: run.id } },
      header(view),
      executionsStrip(view),
      h("div", { class: "tnb-rows" }, rows.length ? rows : h("div", { class: "tnb-muted tnb-empty" }, "No tasks yet.")),
      notReached(view),
      // the run's error, unless a task row above already shows it
      run.error && view.shown === view.latest && !view.rows.some((r) => r.status === "ERRORED" && r.error) ? h("pre", { class: "tnb-error tnb-run-error" },
        `Error${run.error.task ? ` in task ${run.error.task}` : ""}: ${run.error.name}: ${run.error.message}${run.error.stack ? "\n" + run.error.stack : ""}`) : null,
      run.output !== null && run.output !== undefined && view.shown === view.latest ? h("div", { class: "tnb-output" }, h("span", { class: "tnb-label" }, "Output "), h("pre", {}, pretty(run.output))) : null,
      timeline(view),
      h("div", { class: "tnb-legend" },
        "replayed = the output came from the store; the task's function did not run. Code outside tasks runs again in every execution."),
    );
  }

  // -- the runs table ------------------------------------------------------------------------
  function runsTable(view) {
    const f = ui.filter;
    const runs = view.runs.filter((r) => (!f.status || r.status === f.status) && (!f.job || r.job_id === f.job));
    const select = (name, values, label) => {
      const node = h("select", { class: `tnb-filter-${name}`, "aria-label": label, onchange: (e) => { ui.filter[name] = e.target.value; draw(); } },
        h("option", { value: "" }, `all ${label}`), values.map((v) => h("option", { value: v }, v)));
      node.value = f[name];
      return node;
    };
    const openId = view.open && view.open.run ? view.open.run.id : null;
    return h("div", { class: "tnb-runs" },
      view.title ? h("div", { class: "tnb-title" }, h("b", {}, view.title)) : null,
      view.note ? h("div", { class: "tnb-muted" }, view.note) : null,
      h("div", { class: "tnb-toolbar" },
        select("status", view.statuses, "statuses"), " ", select("job", view.jobs, "jobs"),
        h("span", { class: "tnb-muted" }, ` ${runs.length} of ${view.total} run${view.total === 1 ? "" : "s"}${view.total > view.runs.length ? ` (newest ${view.runs.length} listed)` : ""} · click a run to open its log`)),
      h("table", { class: "tnb-runs-table" },
        h("thead", {}, h("tr", {}, ["job", "run id", "status", "started", "executions", "active"].map((c) => h("th", {}, c)))),
        h("tbody", {}, runs.map((r) => h("tr", {
          class: `tnb-run-row${r.id === openId ? " tnb-selected" : ""}`,
          dataset: { run: r.id },
          onclick: () => send({ cmd: "open_run", run_id: r.id === openId ? null : r.id }),
        },
          h("td", {}, r.job_id), h("td", {}, h("code", {}, r.id)), h("td", {}, badge(r.status)),
          h("td", {}, r.started_at || r.created_at ? new Date((r.started_at || r.created_at) * 1000).toLocaleString() : "—"),
          h("td", {}, String(r.executions)), h("td", {}, seconds(r.active)))))),
      runs.length ? null : h("div", { class: "tnb-muted tnb-empty" }, "No runs."),
      view.open && view.open.kind === "run" ? h("div", { class: "tnb-open-run" }, runLog(view.open)) : null,
    );
  }

  // -- drawing, ticking, messages ----------------------------------------------------------
  function copy(text, button) {
    const done = () => { button.textContent = "Copied"; setTimeout(() => { button.textContent = "Copy"; }, 1200); };
    if (navigator.clipboard && window.isSecureContext) navigator.clipboard.writeText(text).then(done, done);
    else {
      const area = h("textarea", {}, text);
      document.body.appendChild(area); area.select();
      try { document.execCommand("copy"); } catch (e) { /* selection stays: copy by hand */ }
      area.remove(); done();
    }
  }

  function tick() {
    const t = now();
    for (const node of root.querySelectorAll(".tnb-countdown")) {
      const left = Number(node.dataset.at) - t;
      node.textContent = left > 0 ? `${node.dataset.prefix}${clock(left)}` : `${node.dataset.prefix}0:00 (due)`;
    }
    for (const node of root.querySelectorAll(".tnb-ticking")) {
      node.textContent = seconds(Number(node.dataset.base) + t - Number(node.dataset.since));
    }
  }

  function draw() {
    const state = model.get("state") || {};
    if (state.now) offset = state.now - Date.now() / 1000;
    const active = document.activeElement;
    const focused = active && root.contains(active) && active.dataset ? active.dataset.draft : null;
    const selection = focused ? [active.selectionStart, active.selectionEnd] : null;
    let body;
    if (state.kind === "runs") body = runsTable(state);
    else if (state.kind === "run") body = runLog(state);
    else body = h("div", { class: "tnb-muted" }, state.run_id ? `Run ${state.run_id} is no longer in the store.` : "…");
    root.replaceChildren(body);
    if (focused) {
      const again = root.querySelector(`textarea[data-draft="${CSS.escape(focused)}"]`);
      if (again) { again.focus(); again.setSelectionRange(selection[0], selection[1]); }
    }
    tick();
  }

  model.on("change:state", draw);
  model.on("msg:custom", (msg) => {
    if (!msg || msg.type !== "ack") return;
    const key = ui.pending[msg.req];
    delete ui.pending[msg.req];
    if (!key) return;
    delete ui.busy[key];
    if (msg.error) ui.errors[key] = msg.error;
    else {
      delete ui.errors[key];
      const draftKey = key; // a sent value is done with: clear its text area
      if (NEEDS_VALUE[key.split(":")[0]]) delete ui.drafts[draftKey];
    }
    draw();
  });
  const timer = setInterval(tick, 1000);
  draw();
  return () => clearInterval(timer);
}

export default { render };
