// xhelpers dashboard: the pages' live parts. Plain JavaScript, no library, no build step.
// Pages poll the server's JSON (the cookie carries the token) and redraw what changed.
"use strict";

(function () {
  const POLL_MS = 1000;
  const body = document.body;
  const live = document.getElementById("live");

  // The token came in the URL once; the cookie holds it now, so the address bar drops it.
  const here = new URL(window.location.href);
  if (here.searchParams.has("token")) {
    here.searchParams.delete("token");
    window.history.replaceState(null, "", here.pathname + here.search + here.hash);
  }

  function el(tag, attrs, text) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function quoteName(name) {
    return name.split("/").map(encodeURIComponent).join("/");
  }

  function setLive(ok) {
    if (!live) return;
    live.classList.toggle("on", ok);
    live.classList.toggle("off", !ok);
  }

  // Polls fn (a promise) every POLL_MS, each poll starting after the last one ended.
  function poll(fn) {
    const step = () =>
      fn()
        .then(() => setLive(true))
        .catch(() => setLive(false))
        .finally(() => window.setTimeout(step, POLL_MS));
    step();
  }

  async function getJSON(url) {
    const response = await fetch(url, { credentials: "same-origin", cache: "no-store" });
    if (!response.ok) throw new Error(response.status + " " + url);
    return response.json();
  }

  function badges(counts) {
    const box = document.createDocumentFragment();
    for (const [status, n] of Object.entries(counts)) {
      box.appendChild(el("span", { class: "badge s-" + status }, n + " " + status));
      box.appendChild(document.createTextNode(" "));
    }
    return box;
  }

  // -- the groups -----------------------------------------------------------------------
  let groupsDrawn = "";

  function groupsPage() {
    poll(async () => {
      const data = await getJSON("/api/groups");
      const tbody = document.querySelector("#groups tbody");
      const signature = JSON.stringify(data);
      if (signature === groupsDrawn) return;
      groupsDrawn = signature;
      tbody.replaceChildren(
        ...data.groups.map((g) => {
          const tr = el("tr", { "data-group": g.name });
          const name = el("td");
          name.appendChild(el("a", { href: "/g/" + encodeURIComponent(g.name) }, g.name));
          const counts = el("td", { class: "counts" });
          counts.appendChild(badges(g.counts));
          tr.append(name, el("td", { class: "num total" }, String(g.total)), counts);
          return tr;
        })
      );
    });
  }

  // -- a group's table ------------------------------------------------------------------
  function tablePage() {
    const group = body.dataset.group;
    const form = document.getElementById("filters");
    const table = document.getElementById("experiments");
    const state = new URLSearchParams(window.location.search);
    const ticked = new Set();
    let columnsKey = "";
    let last = null;

    for (const box of form.querySelectorAll("input[name=status]")) {
      box.checked = state.getAll("status").includes(box.value);
    }
    document.getElementById("name-filter").value = state.get("name") || "";
    if (state.get("size")) document.getElementById("size").value = state.get("size");

    function changed(resetPage) {
      const next = new URLSearchParams();
      for (const box of form.querySelectorAll("input[name=status]:checked")) {
        next.append("status", box.value);
      }
      const name = document.getElementById("name-filter").value.trim();
      if (name) next.set("name", name);
      for (const input of table.querySelectorAll("input[data-param]")) {
        if (input.value.trim()) next.set("p." + input.dataset.param, input.value.trim());
      }
      for (const key of ["sort", "desc"]) if (state.get(key)) next.set(key, state.get(key));
      if (!resetPage && state.get("page")) next.set("page", state.get("page"));
      next.set("size", document.getElementById("size").value);
      [...state.keys()].forEach((k) => state.delete(k));
      next.forEach((v, k) => state.append(k, v));
      window.history.replaceState(null, "", "?" + state.toString());
      refresh();
    }

    function header(columns) {
      const thead = table.querySelector("thead");
      const names = [""].concat(columns.base, columns.parameters, columns.metrics);
      const kinds = [""].concat(
        columns.base.map(() => "base"),
        columns.parameters.map(() => "param"),
        columns.metrics.map(() => "metric")
      );
      const top = el("tr");
      const filters = el("tr", { class: "filter-row" });
      names.forEach((name, i) => {
        const th = el("th", { class: kinds[i] + (name ? " sortable" : "") }, name);
        if (name) {
          th.dataset.column = name;
          th.addEventListener("click", () => {
            const same = state.get("sort") === name;
            state.set("sort", name);
            if (same && state.get("desc") !== "1") state.set("desc", "1");
            else state.delete("desc");
            changed(true);
          });
        }
        top.appendChild(th);
        const cell = el("th");
        if (kinds[i] === "param") {
          const input = el("input", {
            type: "search",
            "data-param": name,
            placeholder: "=",
            title: "only rows whose " + name + " is this",
          });
          input.value = state.get("p." + name) || "";
          input.addEventListener("change", () => changed(true));
          cell.appendChild(input);
        }
        filters.appendChild(cell);
      });
      thead.replaceChildren(top, filters);
    }

    let drawn = "";

    function draw(data) {
      const signature = JSON.stringify(data);
      if (signature === drawn) return; // unchanged: keep the rows (and what is ticked)
      drawn = signature;
      const key = JSON.stringify(data.columns);
      if (key !== columnsKey) {
        columnsKey = key;
        header(data.columns);
      }
      for (const th of table.querySelectorAll("thead th[data-column]")) {
        th.classList.remove("sorted-asc", "sorted-desc");
        if (th.dataset.column === state.get("sort")) {
          th.classList.add(state.get("desc") === "1" ? "sorted-desc" : "sorted-asc");
        }
      }
      const statusAt = 1 + data.columns.base.indexOf("status");
      const tbody = table.querySelector("tbody");
      tbody.replaceChildren(
        ...data.rows.map((row) => {
          const tr = el("tr", { "data-name": row.name, "data-status": row.status });
          const tick = el("input", { type: "checkbox", title: "tick two to compare them" });
          tick.checked = ticked.has(row.name);
          tick.addEventListener("change", () => {
            if (tick.checked) ticked.add(row.name);
            else ticked.delete(row.name);
            compareButton();
          });
          const first = el("td");
          first.appendChild(tick);
          tr.appendChild(first);
          row.cells.forEach((text, i) => {
            const td = el("td");
            if (i === 0) {
              td.appendChild(
                el("a", { href: "/g/" + encodeURIComponent(group) + "/x/" + quoteName(row.name) }, text)
              );
            } else if (i + 1 === statusAt) {
              td.appendChild(el("span", { class: "badge s-" + text }, text));
            } else {
              td.textContent = text;
            }
            tr.appendChild(td);
          });
          return tr;
        })
      );
      const counts = document.getElementById("counts");
      counts.replaceChildren(badges(data.counts));
      // a status that appeared since the page opened (a run started) gets its box too
      const boxes = document.getElementById("statuses");
      for (const status of Object.keys(data.counts)) {
        if (boxes.querySelector("input[value='" + status + "']")) continue;
        const label = el("label", { class: "badge s-" + status });
        const box = el("input", { type: "checkbox", name: "status", value: status });
        label.append(box, " " + status);
        boxes.append(label, " ");
      }
      const pages = Math.max(1, Math.ceil(data.matching / data.size));
      document.getElementById("matching").textContent =
        data.matching + " of " + data.total + " shown by the filters";
      document.getElementById("pageinfo").textContent = "page " + (data.page + 1) + " of " + pages;
      document.getElementById("prev").disabled = data.page <= 0;
      document.getElementById("next").disabled = data.page + 1 >= pages;
      table.dataset.version = String(data.version);
      last = data;
    }

    function compareButton() {
      const button = document.getElementById("compare");
      button.disabled = ticked.size !== 2;
    }

    async function refresh() {
      const data = await getJSON("/api/g/" + encodeURIComponent(group) + "/rows?" + state.toString());
      draw(data);
    }

    form.addEventListener("change", (event) => {
      if (event.target.name === "status" || event.target.id === "size") changed(true);
    });
    document.getElementById("name-filter").addEventListener("input", () => changed(true));
    form.addEventListener("submit", (event) => event.preventDefault());
    document.getElementById("prev").addEventListener("click", () => {
      state.set("page", String(Math.max(0, (last ? last.page : 0) - 1)));
      refresh();
    });
    document.getElementById("next").addEventListener("click", () => {
      state.set("page", String((last ? last.page : 0) + 1));
      refresh();
    });
    document.getElementById("compare").addEventListener("click", () => {
      const [a, b] = [...ticked];
      const query = new URLSearchParams({ a: a, b: b });
      window.location.href = "/g/" + encodeURIComponent(group) + "/diff?" + query.toString();
    });
    poll(refresh);
  }

  // -- one experiment -------------------------------------------------------------------
  function experimentPage() {
    const group = body.dataset.group;
    const name = body.dataset.name;
    const log = document.getElementById("log");
    let offset = -1;
    let placeholder = false;
    poll(async () => {
      const query = new URLSearchParams({ name: name, offset: String(offset) });
      const data = await getJSON("/api/g/" + encodeURIComponent(group) + "/state?" + query);
      const status = document.getElementById("status");
      status.textContent = data.status;
      status.className = "badge s-" + data.status;
      for (const key of ["duration", "finished", "where", "error"]) {
        const cell = document.getElementById("cell-" + key);
        if (cell) cell.textContent = data[key];
      }
      if (data.traceback) {
        document.getElementById("traceback").textContent = data.traceback;
        document.getElementById("traceback-section").hidden = false;
      }
      const chunk = data.log;
      if (chunk.reset || (placeholder && chunk.exists)) {
        log.textContent = "";
        placeholder = false;
      }
      if (chunk.text) {
        const follow = log.scrollTop + log.clientHeight >= log.scrollHeight - 4;
        log.textContent += chunk.text;
        if (follow) log.scrollTop = log.scrollHeight;
      }
      if (!chunk.exists && !log.textContent) {
        log.textContent = "(no experiment.log yet)";
        placeholder = true;
      }
      offset = chunk.offset;
    });
  }

  const pages = { groups: groupsPage, table: tablePage, experiment: experimentPage };
  const start = pages[body.dataset.page];
  if (start) start();
})();
