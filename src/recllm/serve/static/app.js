// recllm web page: chat with the recommender, see explained cards, like/dislike them (stored as feedback,
// which changes the "For you" list at once), and open the per-aspect breakdown of any card.
"use strict";

const state = {
  user: localStorage.getItem("recllm-user") || `web-${Math.random().toString(36).slice(2, 10)}`,
  session: localStorage.getItem("recllm-session"),
  hasFeedback: localStorage.getItem("recllm-has-feedback") === "1",
};
localStorage.setItem("recllm-user", state.user);

const $ = (id) => document.getElementById(id);

async function api(method, path, body) {
  const response = await fetch(path, {
    method,
    headers: body ? { "content-type": "application/json" } : {},
    body: body ? JSON.stringify(body) : undefined,
  });
  const data = await response.json().catch(() => ({ error: `HTTP ${response.status}` }));
  if (!response.ok) throw new Error(data.error || `HTTP ${response.status}`);
  return data;
}

function addMessage(role, text) {
  const li = document.createElement("li");
  li.className = role;
  li.textContent = text;
  $("messages").appendChild(li);
  li.scrollIntoView({ block: "nearest" });
}

function card(item, where) {
  const div = document.createElement("div");
  div.className = "card";
  div.dataset.item = item.item;
  const title = document.createElement("div");
  title.className = "title";
  title.textContent = item.year ? `${item.title} (${item.year})` : item.title;
  const genres = document.createElement("div");
  genres.className = "genres";
  genres.textContent = (item.genres || []).join(", ");
  div.append(title, genres);
  if (item.reason) {
    const reason = document.createElement("div");
    reason.className = "reason";
    reason.textContent = item.reason;
    div.appendChild(reason);
  }
  const actions = document.createElement("div");
  actions.className = "actions";
  for (const [label, kind] of [["Like", "like"], ["Dislike", "dislike"]]) {
    const button = document.createElement("button");
    button.textContent = label;
    button.className = kind;
    button.addEventListener("click", () => feedback(item.item, kind, div));
    actions.appendChild(button);
  }
  const why = document.createElement("button");
  why.textContent = "Why?";
  why.className = "why";
  why.addEventListener("click", () => showAspects(item.item));
  actions.appendChild(why);
  div.appendChild(actions);
  div.dataset.where = where;
  return div;
}

function render(container, items, where) {
  container.replaceChildren(...items.map((item) => card(item, where)));
}

async function feedback(item, kind, element) {
  try {
    await api("POST", "/feedback", { user: state.user, item, kind });
    state.hasFeedback = true;
    localStorage.setItem("recllm-has-feedback", "1");
    element.classList.add(kind === "like" ? "liked" : "disliked");
    await refreshRecommendations();
  } catch (error) {
    addMessage("error", `Could not save that: ${error.message}`);
  }
}

async function refreshRecommendations() {
  $("user-label").textContent = `(${state.user})`;
  try {
    const data = state.hasFeedback
      ? await api("GET", `/users/${encodeURIComponent(state.user)}/recommendations?k=8`)
      : await api("POST", "/recommendations", { history: [], k: 8 });
    render($("recs"), data.items, "recs");
  } catch (error) {
    $("recs").textContent = `Could not load recommendations: ${error.message}`;
  }
}

async function showAspects(item) {
  try {
    const data = state.hasFeedback
      ? await api("GET", `/users/${encodeURIComponent(state.user)}/aspects/${encodeURIComponent(item)}`)
      : await api("POST", "/aspects", { item, history: [] });
    $("aspects-title").textContent = data.title;
    $("aspects-score").textContent = `Overall match: ${(100 * data.score).toFixed(0)}%`;
    const rows = data.aspects.map((aspect) => {
      const tr = document.createElement("tr");
      const name = document.createElement("td");
      name.textContent = aspect.name;
      const score = document.createElement("td");
      const bar = document.createElement("span");
      bar.className = "bar";
      bar.style.width = `${Math.round(60 * aspect.score)}px`;
      score.append(bar, ` ${(100 * aspect.score).toFixed(0)}%`);
      const reason = document.createElement("td");
      reason.textContent = aspect.reason;
      tr.append(name, score, reason);
      return tr;
    });
    $("aspects-table").querySelector("tbody").replaceChildren(...rows);
    const list = (items) => items.map((text) => Object.assign(document.createElement("li"), { textContent: text }));
    $("pros").replaceChildren(...list(data.pros));
    $("cons").replaceChildren(...list(data.cons));
    $("aspects-dialog").showModal();
  } catch (error) {
    addMessage("error", `Could not explain that: ${error.message}`);
  }
}

async function sendChat(event) {
  event.preventDefault();
  const message = $("chat-input").value.trim();
  if (!message) return;
  $("chat-input").value = "";
  addMessage("user", message);
  $("chat-send").disabled = true;
  try {
    const body = { message, user: state.user };  // one identity for the chat, the cards and the feedback
    if (state.session) body.session_id = state.session;
    const data = await api("POST", "/chat", body);
    state.session = data.session_id;
    localStorage.setItem("recllm-session", state.session);
    addMessage(data.degraded ? "assistant degraded" : "assistant", data.reply);
    render($("chat-items"), data.items, "chat");
    if (data.degraded) await refreshStatus();  // the status line says what the reply said
  } catch (error) {
    addMessage("error", error.message);
  } finally {
    $("chat-send").disabled = false;
  }
}

async function refreshStatus() {
  try {
    const health = await api("GET", "/health");
    const problem = health.llm_problem ? ` (${health.llm_problem})` : "";
    $("status").textContent =
      `${health.dataset}: ${health.items.toLocaleString()} movies; language model ${health.llm}${problem}`;
    $("status").classList.toggle("degraded", health.status === "degraded");
  } catch (error) {
    $("status").textContent = `service unavailable: ${error.message}`;
  }
}

async function start() {
  $("chat-form").addEventListener("submit", sendChat);
  await refreshStatus();
  setInterval(refreshStatus, 30000);  // the model's state is checked, so a recovery shows without a reload
  await refreshRecommendations();
}

start();
