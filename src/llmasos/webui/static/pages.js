/* Behaviour of the memory, knowledge, files, apps, tasks, workflows and admin pages that a
   form post cannot do: uploads straight to the API (FormData or the raw body), calls of a
   running app's routes, and the live task and workflow-run views, which follow the API's
   event stream and re-fetch their server-rendered part on each event. Everything else is
   plain forms and htmx. Text from the server is set with textContent, never as HTML; the
   live part is HTML the server rendered, swapped by htmx. */
"use strict";
(function () {
  const LLMasOS = (window.LLMasOS = window.LLMasOS || {});

  function fail(form, error) {
    const box = form.querySelector("[data-form-error]");
    if (box) { box.textContent = error.message; box.hidden = false; } else { LLMasOS.flash(error.message); }
  }

  function clearError(form) {
    const box = form.querySelector("[data-form-error]");
    if (box) { box.textContent = ""; box.hidden = true; }
  }

  /* Apps: review an uploaded archive, then install it with the review's id. */
  function bindAppUpload(form) {
    const panel = document.querySelector("[data-upload-review]");
    let reviewed = null;
    form.addEventListener("submit", async function (event) {
      event.preventDefault();
      clearError(form);
      const file = form.elements.file.files[0];
      if (!file) return;
      const data = new FormData();
      data.append("file", file);
      try {
        reviewed = await LLMasOS.api("POST", "/v1/apps/review", data);
      } catch (error) { panel.hidden = true; return fail(form, error); }
      panel.querySelector("[data-review-title]").textContent = reviewed.name + " " + reviewed.version;
      panel.querySelector("[data-review-description]").textContent = reviewed.description;
      const list = panel.querySelector("[data-review-permissions]");
      list.replaceChildren();
      reviewed.permission_lines.forEach(function (line) {
        const item = document.createElement("li");
        item.textContent = line;
        list.appendChild(item);
      });
      panel.querySelector("[data-review-confinement]").textContent = reviewed.confinement.summary;
      panel.hidden = false;
    });
    panel.querySelector("[data-confirm-upload]").addEventListener("click", async function () {
      const data = new FormData();
      data.append("file", form.elements.file.files[0]);
      data.append("review_id", reviewed.review_id);
      try {
        const installed = await LLMasOS.api("POST", "/v1/apps", data);
        window.location.assign("/app-store#app-" + installed.name);
      } catch (error) { fail(form, error); }
    });
  }

  /* Apps: call one route of a running app through the server's proxy. */
  function bindAppCall(form) {
    form.addEventListener("submit", async function (event) {
      event.preventDefault();
      const out = form.querySelector("[data-app-result]");
      const values = {};
      form.querySelectorAll("[name]").forEach(function (field) {
        const type = field.dataset.type;
        if (type === "boolean") values[field.name] = field.checked;
        else if (field.value === "") return;
        else if (type === "integer" || type === "number") values[field.name] = Number(field.value);
        else if (type === "array" || type === "object") {
          try { values[field.name] = JSON.parse(field.value); } catch (e) { values[field.name] = field.value; }
        } else values[field.name] = field.value;
      });
      out.textContent = "…";
      const get = form.dataset.method === "GET";
      const url = get ? form.dataset.appCall + "?" + new URLSearchParams(values) : form.dataset.appCall;
      const init = { method: get ? "GET" : "POST", credentials: "same-origin",
        headers: { "X-CSRF-Token": LLMasOS.csrf() } };
      if (!get) { init.headers["Content-Type"] = "application/json"; init.body = JSON.stringify(values); }
      try {
        const response = await fetch(url, init);
        const body = await response.text();
        out.textContent = (response.ok ? "" : response.status + " ") + body;
      } catch (error) { out.textContent = error.message; }
    });
  }

  /* Knowledge: upload a file, then add it to the store; the page polls its progress. */
  function bindStoreUpload(form) {
    form.addEventListener("submit", async function (event) {
      event.preventDefault();
      clearError(form);
      const button = form.querySelector("button[type=submit]");
      button.disabled = true;
      try {
        for (const file of form.elements.file.files) {
          const data = new FormData();
          data.append("purpose", "assistants");
          data.append("file", file);
          const uploaded = await LLMasOS.api("POST", "/v1/files", data);
          await LLMasOS.api("POST", "/v1/vector_stores/" + form.dataset.storeUpload + "/files",
            { file_id: uploaded.id });
        }
        form.reset();
        document.body.dispatchEvent(new Event("files-changed"));
      } catch (error) { fail(form, error); } finally { button.disabled = false; }
    });
  }

  /* Files: store an uploaded file at DIR/NAME (a new version if it is there). */
  function bindFileUpload(form) {
    form.addEventListener("submit", async function (event) {
      event.preventDefault();
      clearError(form);
      const file = form.elements.file.files[0];
      if (!file) return;
      const folder = form.dataset.fileUpload.replace(/\/+$/, "");
      const path = (folder + "/" + file.name).replace(/^\/+/, "");
      try {
        const response = await fetch("/v1/fs/files/" + path.split("/").map(encodeURIComponent).join("/"), {
          method: "PUT", body: file, credentials: "same-origin",
          headers: { "X-CSRF-Token": LLMasOS.csrf() } });
        if (!response.ok) throw new Error(await LLMasOS.errorMessage(response));
        window.location.reload();
      } catch (error) { fail(form, error); }
    });
  }

  /* Tasks and workflow runs: the holder names the API's SSE stream (data-live-events), its
     named events (data-live-kinds) and the part to refresh (data-live-part). Each event
     re-fetches that part of this page (bursts coalesce into one fetch at a time); the
     stream's "[DONE]" (the task or run ended, or waits for a person) closes it, with a last
     refresh. The browser reconnects a dropped stream by itself (the API replays the steps);
     a refused one (404, 403) closes. data-stream tells the state: open, closed. */
  function followEvents(holder) {
    const part = holder.dataset.livePart;
    let busy = false;
    let again = false;
    function refresh() {
      if (busy) { again = true; return; }
      busy = true;
      const done = function () {
        busy = false;
        if (again) { again = false; refresh(); }
      };
      window.htmx.ajax("GET", window.location.pathname, { target: part, select: part, swap: "outerHTML" })
        .then(done, done);
    }
    const source = new EventSource(holder.dataset.liveEvents);
    function close() {
      source.close();
      holder.dataset.stream = "closed";
      refresh();
    }
    holder.dataset.stream = "open";
    source.onmessage = function (event) { if (event.data === "[DONE]") close(); else refresh(); };
    (holder.dataset.liveKinds || "").split(" ").filter(Boolean).forEach(function (kind) {
      source.addEventListener(kind, refresh);
    });
    source.onerror = function () { if (source.readyState === EventSource.CLOSED) close(); };
  }

  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll("[data-live-events]").forEach(followEvents);
    document.querySelectorAll("form[data-app-upload]").forEach(bindAppUpload);
    document.querySelectorAll("form[data-app-call]").forEach(bindAppCall);
    document.querySelectorAll("form[data-store-upload]").forEach(bindStoreUpload);
    document.querySelectorAll("form[data-file-upload]").forEach(bindFileUpload);
  });
})();
