// The playground speaks only the API's public routes (and, in the local run, POST /dev/token),
// so it works against a deployed stack too: give its API URL and its streaming URL.
"use strict";

const $ = (id) => document.getElementById(id);
const settings = {
  get api() { return ($("api-base").value || location.origin).replace(/\/+$/, ""); },
  get stream() { return ($("stream-base").value || this.api).replace(/\/+$/, ""); },
  get token() { return $("token").value.trim(); },
};
const state = { dialect: "chatter", conversation: null, chat: null, busy: false };

function say(text, kind) {
  const status = $("status");
  status.textContent = text;
  status.className = kind === "error" ? "error" : "";
}

/// An API call; a problem+json answer becomes an Error carrying its detail.
async function call(method, path, body, base) {
  const headers = { Authorization: "Bearer " + settings.token };
  let payload = body;
  if (body !== undefined && !(body instanceof FormData)) {
    headers["Content-Type"] = "application/json";
    payload = JSON.stringify(body);
  }
  const response = await fetch((base || settings.api) + path, { method, headers, body: payload });
  if (!response.ok) throw await failure(response);
  return response;
}

async function failure(response) {
  let detail = response.statusText;
  try {
    const problem = await response.json();
    detail = problem.detail || problem.title || detail;
  } catch (_) { /* not JSON */ }
  return new Error(response.status + ": " + detail);
}

async function json(method, path, body) {
  const response = await call(method, path, body);
  const type = response.headers.get("content-type") || "";
  return type.includes("json") ? response.json() : response.text();
}

/// Reads a Server-Sent Events body, calling `onData` with each event's data as it arrives.
async function readEvents(response, onData) {
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += decoder.decode(value, { stream: true }).replace(/\r\n/g, "\n");
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const event = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      const data = event.split("\n").filter((l) => l.startsWith("data:"))
        .map((l) => l.slice(5).replace(/^ /, "")).join("\n");
      if (data) onData(data);
    }
  }
}

function item(label, actions) {
  const li = document.createElement("li");
  const open = document.createElement("button");
  open.className = "open";
  open.type = "button";
  open.textContent = label;
  li.append(open);
  for (const [text, name, handler] of actions) {
    const button = document.createElement("button");
    button.type = "button";
    button.className = "small";
    button.textContent = text;
    button.setAttribute("aria-label", name);
    button.addEventListener("click", handler);
    li.append(button);
  }
  return [li, open];
}

function bubble(role, text) {
  const li = document.createElement("li");
  li.className = role;
  const who = document.createElement("span");
  who.className = "role";
  who.textContent = role;
  const body = document.createElement("span");
  body.className = "text";
  body.textContent = text;
  li.append(who, body);
  $("messages").append(li);
  li.scrollIntoView({ block: "end" });
  return body;
}

function showSources(body, sources) {
  if (!sources || !sources.length) return;
  const list = document.createElement("ol");
  list.className = "sources";
  list.setAttribute("aria-label", "Sources");
  for (const s of sources) {
    const li = document.createElement("li");
    li.textContent = (s.title || s.document_id) + " (chunk " + s.chunk_index + ", score " +
      Number(s.score).toFixed(2) + ")";
    list.append(li);
  }
  body.parentElement.append(list);
}

/// Thumbs up and down under an answer, pressed as it is rated; pressing the pressed one again
/// withdraws the rating.
function rating(body, conversationId, messageId, feedback) {
  const group = document.createElement("div");
  group.className = "rating";
  group.setAttribute("role", "group");
  group.setAttribute("aria-label", "Rate this answer");
  const buttons = [["up", "Good answer", "\u{1F44D}"], ["down", "Bad answer", "\u{1F44E}"]]
    .map(([value, label, symbol]) => {
      const button = document.createElement("button");
      button.type = "button";
      button.className = "small";
      button.textContent = symbol;
      button.value = value;
      button.setAttribute("aria-label", label);
      return button;
    });
  const show = (current) => {
    for (const b of buttons) b.setAttribute("aria-pressed", String(b.value === current));
  };
  for (const button of buttons) {
    button.addEventListener("click", guarded(async () => {
      const next = button.getAttribute("aria-pressed") === "true" ? null : button.value;
      const message = await json("PUT", "/api/v1/chat/conversations/" + conversationId +
        "/messages/" + messageId + "/feedback", { rating: next });
      show(message.feedback?.rating);
      say(next ? "Rated " + next + "." : "Rating withdrawn.");
    }));
  }
  show(feedback?.rating);
  group.append(...buttons);
  body.parentElement.append(group);
}

/// Saves the conversation as a file, named as the API names it.
async function exportConversation(c) {
  const format = $("export-format").value;
  const response = await call("GET", "/api/v1/chat/conversations/" + c.id +
    "/export?format=" + format);
  const disposition = response.headers.get("content-disposition") || "";
  const name = /filename="([^"]+)"/.exec(disposition)?.[1] ||
    "conversation." + (format === "json" ? "json" : "md");
  const url = URL.createObjectURL(await response.blob());
  const link = document.createElement("a");
  link.href = url;
  link.download = name;
  document.body.append(link);
  link.click();
  link.remove();
  // The download has its own copy once started; the page's can go.
  setTimeout(() => URL.revokeObjectURL(url), 10000);
  say("Exported " + name + ".");
}

// ---- Chatter: conversations, documents, templates ----

async function loadConversations() {
  const page = await json("GET", "/api/v1/chat/conversations?limit=100");
  const list = $("conversations");
  list.replaceChildren();
  for (const c of page.conversations) {
    const [li, open] = item(c.title, [
      ["Rename", "Rename " + c.title, () => renameConversation(c)],
      ["Export", "Export " + c.title, guarded(() => exportConversation(c))],
      ["Delete", "Delete " + c.title, () => deleteConversation(c)],
    ]);
    open.setAttribute("aria-current", String(c.id === state.conversation?.id));
    open.addEventListener("click", () => openConversation(c));
    list.append(li);
  }
}

async function openConversation(c) {
  state.conversation = c;
  state.dialect = "chatter";
  $("chat-title").textContent = c ? c.title : "New conversation";
  $("messages").replaceChildren();
  if (c) {
    const messages = await json("GET", "/api/v1/chat/conversations/" + c.id + "/messages");
    for (const m of messages) {
      if (m.role === "tool") continue;
      const body = bubble(m.role, m.content);
      if (m.role === "assistant") rating(body, c.id, m.id, m.feedback);
    }
  }
  await loadConversations();
  $("message").focus();
}

async function renameConversation(c) {
  const title = prompt("New title", c.title);
  if (!title) return;
  await json("PUT", "/api/v1/chat/conversations/" + c.id, { title });
  if (state.conversation?.id === c.id) $("chat-title").textContent = title;
  await loadConversations();
  say("Renamed.");
}

async function deleteConversation(c) {
  if (!confirm("Delete “" + c.title + "” and its messages?")) return;
  await json("DELETE", "/api/v1/chat/conversations/" + c.id);
  if (state.conversation?.id === c.id) await openConversation(null);
  else await loadConversations();
  say("Deleted.");
}

async function loadTemplates() {
  const { templates } = await json("GET", "/api/v1/chat/templates");
  const select = $("template");
  select.replaceChildren(new Option("none", ""));
  for (const [name, t] of Object.entries(templates)) {
    select.append(new Option(name + " (" + t.workflow_type + ")", name));
  }
}

async function loadDocuments() {
  const { documents } = await json("GET", "/api/v1/documents?limit=100");
  const list = $("documents");
  list.replaceChildren();
  for (const d of documents) {
    const [li] = item(d.title + " — " + d.status, [
      ["Delete", "Delete document " + d.title, async () => {
        await json("DELETE", "/api/v1/documents/" + d.id);
        await loadDocuments();
      }],
    ]);
    list.append(li);
  }
}

async function sendChatter(text) {
  const body = { message: text };
  if (state.conversation) body.conversation_id = state.conversation.id;
  if ($("workflow").value) body.workflow = $("workflow").value;
  if ($("template").value) body.workflow_template = $("template").value;
  if ($("use-documents").checked) body.enable_retrieval = true;
  bubble("user", text);
  const answer = bubble("assistant", "");
  const response = await call("POST", "/api/v1/chat/streaming", body, settings.stream);
  let conversationId = state.conversation?.id;
  await readEvents(response, (data) => {
    if (data === "[DONE]") return;
    const chunk = JSON.parse(data);
    conversationId = chunk.conversation_id || conversationId;
    if (chunk.type === "token") answer.textContent += chunk.content;
    else if (chunk.type === "end") {
      showSources(answer, chunk.metadata?.sources);
      rating(answer, conversationId, chunk.message_id);
    }
    else if (chunk.type === "error") {
      answer.parentElement.classList.add("error");
      say(chunk.content, "error");
    }
  });
  if (!state.conversation && conversationId) {
    state.conversation = { id: conversationId, title: text.slice(0, 50) };
    $("chat-title").textContent = state.conversation.title;
  }
  await loadConversations();
}

// ---- FreeChat: characters and their chats ----

async function loadChats() {
  const chats = await json("GET", "/api/v1/chat");
  const list = $("chats");
  list.replaceChildren();
  for (const chat of chats) {
    const id = chat.context.chatId;
    const name = chat.character?.name || "character";
    const [li, open] = item(name, [
      ["Delete", "Delete the chat with " + name, async () => {
        if (!confirm("Delete the chat with " + name + "?")) return;
        await json("DELETE", "/api/v1/chat/" + id);
        if (state.chat?.id === id) state.chat = null;
        await loadChats();
      }],
    ]);
    open.setAttribute("aria-current", String(id === state.chat?.id));
    open.addEventListener("click", () => openChat({ id, name }));
    list.append(li);
  }
}

async function openChat(chat) {
  state.chat = chat;
  state.dialect = "freechat";
  $("chat-title").textContent = "Chat with " + chat.name;
  $("messages").replaceChildren();
  const records = await json("GET", "/api/v1/chat/messages/" + chat.id);
  for (const r of records) {
    bubble(r.message.role, (r.message.contents || []).map((c) => c.content).join(""));
  }
  await loadChats();
  $("message").focus();
}

async function createCharacter(event) {
  event.preventDefault();
  const character = { name: $("character-name").value.trim() };
  if ($("character-profile").value.trim()) character.profile = $("character-profile").value.trim();
  if ($("character-greeting").value.trim()) character.greeting = $("character-greeting").value.trim();
  const id = await json("POST", "/api/v1/character", character);
  const summary = await json("GET", "/api/v1/character/summary/" + id);
  await json("POST", "/api/v1/character/backend/" + summary.characterUid, {});
  const chatId = await json("POST", "/api/v1/chat", { characterUid: summary.characterUid });
  event.target.reset();
  await openChat({ id: String(chatId).trim(), name: character.name });
}

async function sendFreeChat(text) {
  bubble("user", text);
  const answer = bubble("assistant", "");
  const response = await call("POST", "/api/v1/chat/send/stream/" + state.chat.id,
    { contents: [{ type: "text", content: text }] }, settings.stream);
  await readEvents(response, (data) => {
    const frame = JSON.parse(data);
    if (typeof frame.text === "string") answer.textContent += frame.text;
    if (frame.error) {
      answer.parentElement.classList.add("error");
      say(frame.error.message || String(frame.error), "error");
    }
  });
}

// ---- wiring ----

function guarded(handler) {
  return async (event) => {
    try {
      await handler(event);
    } catch (error) {
      say(error.message, "error");
    }
  };
}

async function connect() {
  for (const id of ["api-base", "stream-base", "token", "user-id"]) {
    localStorage.setItem("playground." + id, $(id).value);
  }
  if (!settings.token) {
    say("Paste a token, or get a local one.");
    return;
  }
  await Promise.all([loadConversations(), loadTemplates(), loadDocuments(), loadChats()]);
  say("Connected as the token's user.");
}

async function mintToken() {
  const response = await fetch(settings.api + "/dev/token", {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ user_id: $("user-id").value }),
  });
  if (!response.ok) throw await failure(response);
  $("token").value = (await response.json()).token;
  await connect();
}

function selectTab(dialect) {
  for (const name of ["chatter", "freechat"]) {
    $("tab-" + name).setAttribute("aria-selected", String(name === dialect));
    $("panel-" + name).hidden = name !== dialect;
  }
  $("chatter-options").hidden = dialect !== "chatter";
  if (dialect === "chatter") openConversation(state.conversation).catch((e) => say(e.message, "error"));
  else if (state.chat) openChat(state.chat).catch((e) => say(e.message, "error"));
  else {
    state.dialect = "freechat";
    $("chat-title").textContent = "Create a character, or pick a chat";
    $("messages").replaceChildren();
  }
}

async function send(event) {
  event.preventDefault();
  const text = $("message").value.trim();
  if (!text || state.busy) return;
  if (state.dialect === "freechat" && !state.chat) {
    say("Create a character or pick a chat first.", "error");
    return;
  }
  state.busy = true;
  $("send").disabled = true;
  $("message").value = "";
  say("Answering…");
  try {
    if (state.dialect === "freechat") await sendFreeChat(text);
    else await sendChatter(text);
    say("Answered.");
  } finally {
    state.busy = false;
    $("send").disabled = false;
    $("message").focus();
  }
}

for (const id of ["api-base", "stream-base", "token", "user-id"]) {
  const saved = localStorage.getItem("playground." + id);
  if (saved !== null) $(id).value = saved;
}
$("settings-form").addEventListener("submit", guarded(async (e) => { e.preventDefault(); await connect(); }));
$("mint-token").addEventListener("click", guarded(mintToken));
$("new-conversation").addEventListener("submit", guarded(async (e) => {
  e.preventDefault();
  const title = $("new-title").value.trim() || "New conversation";
  const created = await json("POST", "/api/v1/chat/conversations", { title });
  $("new-title").value = "";
  await openConversation(created);
}));
$("upload").addEventListener("submit", guarded(async (e) => {
  e.preventDefault();
  const file = $("document-file").files[0];
  const form = new FormData();
  form.append("file", file);
  form.append("title", file.name);
  say("Uploading " + file.name + "…");
  await json("POST", "/api/v1/documents/upload", form);
  e.target.reset();
  await loadDocuments();
  $("use-documents").checked = true;
  say("Uploaded; answers now draw on your documents.");
}));
$("import").addEventListener("submit", guarded(async (e) => {
  e.preventDefault();
  const file = $("import-file").files[0];
  const created = await json("POST", "/api/v1/chat/conversations/import",
    JSON.parse(await file.text()));
  e.target.reset();
  await openConversation(created);
  say("Imported " + file.name + ".");
}));
$("new-character").addEventListener("submit", guarded(createCharacter));
$("composer").addEventListener("submit", guarded(send));
$("message").addEventListener("keydown", (e) => {
  if (e.key === "Enter" && !e.shiftKey) {
    e.preventDefault();
    $("composer").requestSubmit();
  }
});
$("tab-chatter").addEventListener("click", () => selectTab("chatter"));
$("tab-freechat").addEventListener("click", () => selectTab("freechat"));
if (settings.token) guarded(connect)();
