/* The models page: pull and create stream their NDJSON progress from /api/pull and
   /api/create; a line with "error" ends it with that message. */
"use strict";
(function () {
  let texts = {};

  async function readLines(response, onLine) {
    const reader = response.body.getReader();
    const decoder = new TextDecoder();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (value) buffer += decoder.decode(value, { stream: !done });
      let end;
      while ((end = buffer.indexOf("\n")) >= 0) {
        const line = buffer.slice(0, end).trim();
        buffer = buffer.slice(end + 1);
        if (line) onLine(JSON.parse(line));
      }
      if (done) break;
    }
    if (buffer.trim()) onLine(JSON.parse(buffer));
  }

  function bind(form) {
    const status = form.querySelector("[data-stream-status]");
    const error = form.querySelector("[data-form-error]");
    const progress = form.querySelector("progress");
    form.addEventListener("submit", async function (event) {
      event.preventDefault();
      const button = form.querySelector("button[type=submit]");
      const body = { stream: true };
      new FormData(form).forEach(function (value, key) { body[key] = String(value).trim(); });
      error.hidden = true;
      status.textContent = texts.working;
      button.disabled = true;
      if (progress) { progress.hidden = false; progress.removeAttribute("value"); }
      try {
        const response = await fetch(form.dataset.streamForm, {
          method: "POST",
          credentials: "same-origin",
          headers: { "Content-Type": "application/json", "X-CSRF-Token": window.LLMasOS.csrf() },
          body: JSON.stringify(body),
        });
        if (!response.ok) throw new Error(await window.LLMasOS.errorMessage(response));
        await readLines(response, function (line) {
          if (line.error) throw new Error(line.error);
          status.textContent = line.status || "";
          if (progress && line.total) {
            progress.max = line.total;
            progress.value = line.completed || 0;
          }
        });
        status.textContent = texts.done;
        form.dataset.done = "true";
        document.body.dispatchEvent(new Event("refresh-models"));
      } catch (failure) {
        status.textContent = "";
        error.textContent = failure.message;
        error.hidden = false;
      } finally {
        button.disabled = false;
        if (progress) progress.hidden = true;
      }
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    texts = JSON.parse(document.getElementById("models-data").textContent).texts;
    document.querySelectorAll("form[data-stream-form]").forEach(bind);
  });
})();
