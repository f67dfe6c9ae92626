// The playground speaks only the API's public routes (and, in the local run, POST /dev/token),
// so it works against a deployed stack too: give its API URL and its streaming URL.
"use strict";

const $ = (id) => document.getElementById(id);
const settings = {
  get api() { return ($("api-base").value || location.origin).replace(/\/+$/, ""); },
  get stream() { return ($("stream-base").value || this.api).replace(/\/+$/, ""); },
  get token() { return $("token").value.trim(); },
};
const state = { dialect: "chatter", conversation: null, chat: null, busy: false, running: null };

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
  remember(c);
  state.dialect = "chatter";
  $("chat-title").textContent = c ? c.title : "New conversation";
  $("messages").replaceChildren();
  let running = null;
  if (c) {
    const messages = await json("GET", "/api/v1/chat/conversations/" + c.id + "/messages?limit=100");
    for (const m of messages) {
      if (m.role === "tool") continue;
      const body = bubble(m.role, m.content);
      messageControls(body, c.id, m);
      if (m.status === "streaming") running = body;
    }
  }
  await loadConversations();
  $("message").focus();
  // An answer still being written (the page was reloaded, or another tab asked): follow it.
  if (running && !state.busy) await resumeAnswer(c.id, running);
}

/// The conversation the page shows, kept for a reload of the tab.
function remember(c) {
  state.conversation = c;
  if (c) sessionStorage.setItem("playground.conversation", JSON.stringify(c));
  else sessionStorage.removeItem("playground.conversation");
}

/// Under a message: the versions it has (its siblings) to move between, and regenerate (an
/// answer) or edit (a question); answers get their rating too.
function messageControls(body, conversationId, m) {
  const bar = document.createElement("div");
  bar.className = "message-actions";
  bar.setAttribute("role", "group");
  bar.setAttribute("aria-label", m.role + " message actions");
  const siblings = m.sibling_ids || [];
  const at = siblings.indexOf(m.id);
  if (siblings.length > 1) {
    const step = (delta, text, name) => action(text, name,
      at + delta < 0 || at + delta >= siblings.length,
      () => switchBranch(conversationId, siblings[at + delta]));
    const position = document.createElement("span");
    position.className = "version";
    position.textContent = (at + 1) + "/" + siblings.length;
    bar.append(step(-1, "\u2039", "Previous version"), position, step(1, "\u203A", "Next version"));
  }
  if (m.role === "assistant" && m.status !== "streaming") {
    bar.append(action("Regenerate", "Regenerate this answer", false,
      () => branchTurn({ conversation_id: conversationId, regenerate_message_id: m.id })));
  } else if (m.role === "user") {
    bar.append(action("Edit", "Edit this message", false, () => {
      const text = prompt("Edit the message (its new answer becomes another branch)", m.content);
      if (!text || !text.trim()) return undefined;
      return branchTurn({ conversation_id: conversationId, edit_message_id: m.id, message: text.trim() });
    }));
  }
  body.parentElement.append(bar);
  if (m.role === "assistant" && m.status !== "streaming") {
    showSources(body, m.metadata?.sources);
    rating(body, conversationId, m.id, m.feedback);
  }
}

function action(text, name, disabled, handler) {
  const button = document.createElement("button");
  button.type = "button";
  button.className = "small";
  button.textContent = text;
  button.disabled = disabled;
  button.setAttribute("aria-label", name);
  button.addEventListener("click", guarded(async () => {
    if (!state.busy) await handler();
  }));
  return button;
}

async function switchBranch(conversationId, messageId) {
  await json("PUT", "/api/v1/chat/conversations/" + conversationId, { active_message_id: messageId });
  await openConversation(state.conversation);
  say("Showing another version.");
}

/// A regenerate or an edit: streamed like any turn, then the conversation shown on its new
/// branch.
async function branchTurn(body) {
  await answering(async () => {
    if (body.message) bubble("user", body.message);
    await streamChatter(body);
  });
  await openConversation(state.conversation);
}

/// Follows the conversation's running answer from its start, on whichever instance runs it.
async function resumeAnswer(conversationId, answer) {
  const response = await call("GET", "/api/v1/chat/conversations/" + conversationId + "/stream",
    undefined, settings.stream);
  if (response.status === 204) return;
  answer.textContent = "";
  await answering(async () => {
    say("Resuming the answer being written…");
    await readChunks(response, answer, conversationId);
  });
  await openConversation(state.conversation);
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
  const fresh = !state.conversation;
  await streamChatter(body);
  if (fresh && state.conversation) remember({ ...state.conversation, title: text.slice(0, 50) });
  // Shown again as stored: with each message's versions, actions and rating.
  await openConversation(state.conversation);
}

/// One Chatter turn through /streaming, its answer growing in a new bubble; returns the
/// conversation it ran in.
async function streamChatter(body) {
  const answer = bubble("assistant", "");
  const response = await call("POST", "/api/v1/chat/streaming", body, settings.stream);
  return readChunks(response, answer, body.conversation_id);
}

/// Shows a stream's chunks in `answer`; meanwhile its conversation's turn can be stopped.
async function readChunks(response, answer, conversationId) {
  let id = conversationId;
  await readEvents(response, (data) => {
    if (data === "[DONE]") return;
    const chunk = JSON.parse(data);
    id = chunk.conversation_id || id;
    state.running = id;
    // A new conversation is known from the first chunk on, so a reload can come back to it.
    if (!state.conversation && id) remember({ id, title: "New conversation" });
    if (chunk.type === "token") answer.textContent += chunk.content;
    else if (chunk.type === "end") {
      showSources(answer, chunk.metadata?.sources);
      if (chunk.metadata?.finish_reason === "cancelled") say("Stopped; the answer so far is kept.");
      else rating(answer, id, chunk.message_id);
    } else if (chunk.type === "error") {
      answer.parentElement.classList.add("error");
      say(chunk.content, "error");
    }
  });
  return id;
}

/// Asks the running turn to stop through the API: it may run on another instance.
async function stop() {
  if (!state.running) return;
  const response = await call("POST", "/api/v1/chat/conversations/" + state.running + "/stop");
  say(response.status === 202 ? "Stopping…" : "Nothing is running.");
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
  state.running = state.chat.id;
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
  // A reload comes back to the conversation it showed, and to its answer if one is running.
  const open = sessionStorage.getItem("playground.conversation");
  if (open) {
    await openConversation(JSON.parse(open)).catch(() => openConversation(null));
  }
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
  $("message").value = "";
  await answering(async () => {
    if (state.dialect === "freechat") await sendFreeChat(text);
    else await sendChatter(text);
  });
}

/// Runs one answer: sending is off and Stop is on until it ends.
async function answering(work) {
  state.busy = true;
  $("send").disabled = true;
  $("stop").hidden = false;
  say("Answering…");
  try {
    await work();
    if (!$("status").textContent.startsWith("Stopped")) say("Answered.");
  } finally {
    state.busy = false;
    state.running = null;
    $("send").disabled = false;
    $("stop").hidden = true;
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
$("stop").addEventListener("click", guarded(stop));
$("message").addEventListener("keydown", (e) => {
  if (e.key === "Enter" && !e.shiftKey) {
    e.preventDefault();
    $("composer").requestSubmit();
  }
});
$("tab-chatter").addEventListener("click", () => selectTab("chatter"));
$("tab-freechat").addEventListener("click", () => selectTab("freechat"));
if (settings.token) guarded(connect)();
