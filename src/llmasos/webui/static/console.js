/* The frame's behaviour: the CSRF token on every change, sign in / first run / sign out
   through the API (JSON bodies, so another site's form cannot do it), readable errors. */
"use strict";
(function () {
  const LLMasOS = (window.LLMasOS = window.LLMasOS || {});

  LLMasOS.csrf = function () {
    const meta = document.querySelector('meta[name="csrf-token"]');
    return meta ? meta.content : "";
  };

  /** The message of an API error response, in either dialect (OpenAI or Ollama). */
  LLMasOS.errorMessage = async function (response) {
    let message = response.status + " " + response.statusText;
    try {
      const body = await response.json();
      if (body && body.error) {
        message = typeof body.error === "string" ? body.error : body.error.message || message;
      }
    } catch (ignored) { /* not JSON: keep the status line */ }
    return message;
  };

  /** fetch() against the API with the session's CSRF token; JSON in, JSON out. */
  LLMasOS.api = async function (method, path, body, options) {
    const headers = { "X-CSRF-Token": LLMasOS.csrf(), Accept: "application/json" };
    const init = Object.assign({ method: method, headers: headers, credentials: "same-origin" }, options || {});
    if (body instanceof FormData) {
      init.body = body;
    } else if (body !== undefined) {
      headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    const response = await fetch(path, init);
    if (!response.ok) {
      const error = new Error(await LLMasOS.errorMessage(response));
      error.status = response.status;
      throw error;
    }
    return response.status === 204 ? null : response.json();
  };

  LLMasOS.flash = function (text) {
    const flash = document.getElementById("flash");
    if (flash) flash.textContent = text;
  };

  function showFormError(form, text) {
    const box = form.querySelector("[data-form-error]");
    if (!box) return LLMasOS.flash(text);
    box.textContent = text;
    box.hidden = !text;
  }

  function bindAuthForm(form) {
    form.addEventListener("submit", async function (event) {
      event.preventDefault();
      const name = form.elements.name.value.trim();
      const password = form.elements.password.value;
      const confirm = form.elements.confirm;
      showFormError(form, "");
      if (confirm && confirm.value !== password) {
        showFormError(form, form.dataset.mismatch);
        return;
      }
      const button = form.querySelector("button[type=submit]");
      button.disabled = true;
      try {
        await LLMasOS.api("POST", form.dataset.authForm, { name: name, password: password });
        window.location.assign(form.dataset.next || "/chat");
      } catch (error) {
        showFormError(form, error.message);
        form.elements.password.focus();
      } finally {
        button.disabled = false;
      }
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll("form[data-auth-form]").forEach(bindAuthForm);
    document.querySelectorAll("[data-sign-out]").forEach(function (button) {
      button.addEventListener("click", async function () {
        try {
          await LLMasOS.api("POST", "/auth/sign-out");
        } catch (error) {
          return LLMasOS.flash(error.message);
        }
        window.location.assign("/sign-in");
      });
    });
    // htmx: a refused change shows the server's readable fragment in the flash area
    document.body.addEventListener("htmx:responseError", function (event) {
      const page = new DOMParser().parseFromString(event.detail.xhr.responseText, "text/html");
      LLMasOS.flash(page.body.textContent.trim() || event.detail.xhr.statusText);
    });
    document.body.addEventListener("htmx:sendError", function () {
      LLMasOS.flash(document.body.dataset.offline || "The server cannot be reached");
    });
  });
})();
