/* The chat page: streams a reply from /v1/chat/completions (fetch + ReadableStream) with a
   stop button, keeps the conversation in /v1/conversations, attaches files to the
   conversation's knowledge base, and swaps a finished reply for the server's safe rendering
   (markdown, citations linked to their chunk, memories used). Model text is only ever put
   into the page as textContent; HTML comes from /chat/render, which escapes it. */
"use strict";
(function () {
  const api = function () { return window.LLMasOS.api.apply(null, arguments); };
  let data, form, messages, prompt, sendButton, stopButton, errorBox, controller = null;

  function showError(text) {
    errorBox.textContent = text || "";
    errorBox.hidden = !text;
  }

  function addMessage(role, text) {
    const article = document.createElement("article");
    article.className = "message " + role;
    const label = document.createElement("div");
    label.className = "role";
    label.textContent = data.texts[role];
    const body = document.createElement("div");
    body.className = role === "assistant" ? "streaming" : "body";
    body.textContent = text;
    article.append(label, body);
    messages.append(article);
    return article;
  }

  function numberOrNull(value) {
    return value === "" || value === null ? null : Number(value);
  }

  let createdNow = false; // the conversation was made for a first message that then failed

  async function ensureConversation(firstText) {
    createdNow = false;
    if (form.dataset.conversation) return form.dataset.conversation;
    createdNow = true;
    const conversation = await api("POST", "/v1/conversations", {
      metadata: { title: firstText.slice(0, 80) },
    });
    form.dataset.conversation = conversation.id;
    document.getElementById("chat-heading").textContent = conversation.metadata.title;
    window.history.replaceState(null, "", "/chat/" + conversation.id);
    document.body.dispatchEvent(new Event("refresh-conversations"));
    return conversation.id;
  }

  async function forgetEmptyConversation(conversationId) {
    if (!createdNow || data.history.length) return;
    createdNow = false;
    try {
      await api("DELETE", "/v1/conversations/" + conversationId);
    } catch (ignored) { return; }
    delete form.dataset.conversation;
    window.history.replaceState(null, "", "/chat");
    document.body.dispatchEvent(new Event("refresh-conversations"));
  }

  function requestBody(text) {
    const body = { model: form.elements.model.value, stream: true, messages: [] };
    const system = form.elements.system.value.trim();
    if (system) body.messages.push({ role: "system", content: system });
    data.history.forEach(function (m) { body.messages.push({ role: m.role, content: m.text }); });
    body.messages.push({ role: "user", content: text });
    const temperature = numberOrNull(form.elements.temperature.value);
    const maxTokens = numberOrNull(form.elements.max_tokens.value);
    if (temperature !== null) body.temperature = temperature;
    if (maxTokens !== null) body.max_tokens = maxTokens;
    if (form.elements.json.checked) body.response_format = { type: "json_object" };
    const metadata = { memory: form.elements.memory.checked ? "true" : "false" };
    if (form.dataset.vectorStore) metadata.vector_store_ids = form.dataset.vectorStore;
    body.metadata = metadata;
    return body;
  }

  /** Reads server-sent events from a fetch response; calls onEvent with each parsed data. */
  async function readEvents(response, onEvent) {
    const reader = response.body.getReader();
    const decoder = new TextDecoder();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += decoder.decode(value, { stream: true });
      let end;
      while ((end = buffer.indexOf("\n\n")) >= 0) {
        const event = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        const payload = event.split("\n").filter(function (l) { return l.startsWith("data:"); })
          .map(function (l) { return l.slice(5).trimStart(); }).join("\n");
        if (!payload || payload === "[DONE]") continue;
        onEvent(JSON.parse(payload));
      }
    }
  }

  async function renderReply(article, reply) {
    const response = await fetch("/chat/render", {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-CSRF-Token": window.LLMasOS.csrf() },
      body: JSON.stringify(reply),
    });
    if (!response.ok) return; // the streamed text stays, as plain text
    const html = await response.text(); // escaped by the server: no model text as markup
    const holder = document.createElement("div");
    holder.className = "rendered";
    holder.innerHTML = html;
    article.querySelector(".streaming").replaceWith(holder);
  }

  /* The assistant's item as the conversation keeps it: its text, each source it was given
     as a file_citation annotation (at its first [n] marker, else at the end) and the ids
     of the memories it used, so a reopened conversation shows them again. */
  function storedReply(reply) {
    const annotations = reply.citations.map(function (c) {
      const marker = reply.text.indexOf("[" + c.number + "]");
      return {
        type: "file_citation", index: marker >= 0 ? marker : reply.text.length,
        file_id: c.file_id, filename: c.filename, chunk_id: c.chunk_id,
        vector_store_id: c.vector_store_id, number: c.number, page: c.page, headings: c.headings,
      };
    });
    return {
      type: "message", role: "assistant", memory_ids: reply.memory_ids,
      content: [{ type: "output_text", text: reply.text, annotations: annotations }],
    };
  }

  async function send(event) {
    event.preventDefault();
    const text = prompt.value.trim();
    if (!text || controller) return;
    showError("");
    let conversationId;
    try {
      conversationId = await ensureConversation(text);
    } catch (error) {
      return showError(error.message);
    }
    prompt.value = "";
    addMessage("user", text);
    const article = addMessage("assistant", "");
    const streaming = article.querySelector(".streaming");
    const reply = { text: "", citations: [], memory_ids: [], stopped: false };
    controller = new AbortController();
    sendButton.disabled = true;
    stopButton.disabled = false;
    article.setAttribute("aria-busy", "true");
    try {
      const response = await fetch("/v1/chat/completions", {
        method: "POST",
        credentials: "same-origin",
        signal: controller.signal,
        headers: { "Content-Type": "application/json", "X-CSRF-Token": window.LLMasOS.csrf() },
        body: JSON.stringify(requestBody(text)),
      });
      if (!response.ok) {
        const message = await window.LLMasOS.errorMessage(response);
        throw new Error(response.status === 429 ? data.texts.limited + " " + message : message);
      }
      await readEvents(response, function (chunk) {
        if (chunk.error) throw new Error(chunk.error.message || String(chunk.error));
        if (chunk.citations) reply.citations = chunk.citations;
        if (chunk.memory_ids) reply.memory_ids = chunk.memory_ids;
        (chunk.choices || []).forEach(function (choice) {
          const piece = choice.delta && choice.delta.content;
          if (piece) {
            reply.text += piece;
            streaming.textContent = reply.text;
          }
        });
      });
    } catch (error) {
      if (error.name === "AbortError") {
        reply.stopped = true;
      } else {
        showError(error.message);
        if (!reply.text) {
          article.remove();
          await forgetEmptyConversation(conversationId);
        }
      }
    } finally {
      controller = null;
      sendButton.disabled = false;
      stopButton.disabled = true;
      article.removeAttribute("aria-busy");
    }
    if (!article.isConnected) return;
    data.history.push({ role: "user", text: text }, { role: "assistant", text: reply.text });
    await renderReply(article, reply);
    try {
      await api("POST", "/v1/conversations/" + conversationId + "/items", {
        items: [
          { type: "message", role: "user", content: text },
          storedReply(reply),
        ],
      });
    } catch (error) {
      showError(error.message);
    }
    article.dataset.done = "true";
  }

  async function waitIndexed(storeId, fileId, status) {
    for (;;) {
      const file = await api("GET", "/v1/vector_stores/" + storeId + "/files/" + fileId);
      if (file.status === "completed") return;
      if (file.status !== "in_progress") {
        throw new Error(data.texts.index_failed + ": " + ((file.last_error || {}).message || file.status));
      }
      const progress = file.progress || {};
      status.textContent = data.texts.indexing + (progress.chunks_total ? " " + progress.chunks_done + "/" + progress.chunks_total : "");
      await new Promise(function (resolve) { setTimeout(resolve, 400); });
    }
  }

  async function attach() {
    const input = document.getElementById("attachment");
    const status = document.getElementById("attachments");
    const file = input.files[0];
    if (!file) return;
    showError("");
    try {
      status.textContent = data.texts.uploading + " " + file.name;
      const conversationId = await ensureConversation(file.name);
      const upload = new FormData();
      upload.append("purpose", "assistants");
      upload.append("file", file);
      const uploaded = await api("POST", "/v1/files", upload);
      if (!form.dataset.vectorStore) {
        const store = await api("POST", "/v1/vector_stores", { name: "chat " + conversationId });
        form.dataset.vectorStore = store.id;
        const conversation = await api("GET", "/v1/conversations/" + conversationId);
        const metadata = Object.assign({}, conversation.metadata || {}, { vector_store_id: store.id });
        await api("POST", "/v1/conversations/" + conversationId, { metadata: metadata });
      }
      await api("POST", "/v1/vector_stores/" + form.dataset.vectorStore + "/files", { file_id: uploaded.id });
      await waitIndexed(form.dataset.vectorStore, uploaded.id, status);
      status.textContent = data.texts.indexed + ": " + file.name;
      status.dataset.ready = "true";
    } catch (error) {
      status.textContent = "";
      showError(error.message);
    } finally {
      input.value = "";
    }
  }

  function filterConversations(event) {
    const wanted = event.target.value.trim().toLowerCase();
    document.querySelectorAll("#conversation-list li[data-title]").forEach(function (item) {
      item.hidden = wanted !== "" && !item.dataset.title.includes(wanted);
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    data = JSON.parse(document.getElementById("chat-data").textContent);
    form = document.getElementById("chat-form");
    messages = document.getElementById("messages");
    prompt = document.getElementById("prompt");
    sendButton = document.getElementById("send");
    stopButton = document.getElementById("stop");
    errorBox = document.getElementById("chat-error");
    form.addEventListener("submit", send);
    stopButton.addEventListener("click", function () { if (controller) controller.abort(); });
    prompt.addEventListener("keydown", function (event) {
      if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
        event.preventDefault();
        form.requestSubmit();
      }
    });
    document.getElementById("attachment").addEventListener("change", attach);
    document.getElementById("conversation-search").addEventListener("input", filterConversations);
    document.body.addEventListener("htmx:afterSwap", function () {
      const search = document.getElementById("conversation-search");
      if (search.value) filterConversations({ target: search });
    });
  });
})();
