// The seqlab playground: plain JavaScript over the server's own API, no build step and nothing
// fetched from elsewhere. Each panel calls one endpoint: /generate (SSE), /score, /inspect,
// /translate, /tag.
"use strict";

const $ = (id) => document.getElementById(id);
let models = {};          // id -> /v1/models entry
let controller = null;    // aborts the running generation
let lastText = "";        // the text shown in the output (prompt + generation)

function current() { return models[$("model").value]; }

function showError(message) {
  const box = $("error");
  box.textContent = message || "";
  box.hidden = !message;
}

async function post(path, body) {
  const r = await fetch(path, {method: "POST", headers: {"Content-Type": "application/json"},
                               body: JSON.stringify({model: current().id, ...body})});
  const data = await r.json();
  if (!r.ok) throw new Error(`${r.status}: ${data.error ? data.error.message : r.statusText}`);
  return data;
}

function numberOrNull(id) {
  const v = $(id).value.trim();
  return v === "" ? null : Number(v);
}

// --- models -------------------------------------------------------------------------------
async function loadModels() {
  const r = await fetch("/v1/models");
  const list = (await r.json()).data;
  for (const m of list) {
    models[m.id] = m;
    const o = document.createElement("option");
    o.value = m.id;
    o.textContent = `${m.id} (${m.task}, ${m.model})`;
    $("model").appendChild(o);
  }
  selectModel();
}

function selectModel() {
  const m = current();
  if (!m) return;
  const has = (e) => m.endpoints.includes(e);
  $("lm-panel").hidden = !has("generate");
  $("inspect-panel").hidden = !has("inspect");
  $("translate-panel").hidden = !has("translate");
  $("tag-panel").hidden = !has("tag");
  $("model-info").textContent = m.cell ? `${m.cell}, ${m.layers} x ${m.hidden}` : m.family;
  if (has("inspect")) {
    $("layer").innerHTML = "";
    for (let i = 1; i <= m.layers; i++) $("layer").add(new Option(String(i), String(i)));
    $("unit").max = m.hidden - 1;
    const signals = {lstm: ["h", "c", "i", "f", "o", "g"], gru: ["h", "r", "z", "n"],
                     rnn: ["h"]}[m.cell] || ["h"];
    $("signal").innerHTML = "";
    for (const s of signals) $("signal").add(new Option(s, s));
  }
  showError("");
}

// --- generation: server-sent events over fetch (EventSource cannot POST) -------------------
async function generate() {
  showError("");
  if (controller) controller.abort();
  controller = new AbortController();
  $("generate").disabled = true;
  $("stop").disabled = false;
  const out = $("output");
  out.textContent = "";
  out.dataset.state = "streaming";
  const body = {prompt: $("prompt").value, temperature: numberOrNull("temperature"),
                top_k: numberOrNull("top_k"), top_p: numberOrNull("top_p"),
                max_tokens: numberOrNull("max_tokens"), seed: numberOrNull("seed")};
  let text = "";
  try {
    const r = await fetch("/generate", {method: "POST", signal: controller.signal,
      headers: {"Content-Type": "application/json"},
      body: JSON.stringify({model: current().id, ...body})});
    if (!r.ok) {
      const e = await r.json();
      throw new Error(`${r.status}: ${e.error.message}`);
    }
    const reader = r.body.getReader();
    const decoder = new TextDecoder();
    let buffer = "";
    for (;;) {
      const {value, done} = await reader.read();
      if (done) break;
      buffer += decoder.decode(value, {stream: true});
      let cut;
      while ((cut = buffer.indexOf("\n\n")) >= 0) {
        const event = parseEvent(buffer.slice(0, cut));
        buffer = buffer.slice(cut + 2);
        if (event.type === "error") throw new Error(event.data.error.message);
        if (event.type === "prompt" || event.type === "message") {
          text += event.data.text;
          out.textContent = text;
        }
      }
    }
  } catch (e) {
    if (e.name !== "AbortError") showError(String(e.message || e));
  } finally {
    $("generate").disabled = false;
    $("stop").disabled = true;
    controller = null;
  }
  lastText = text;
  out.dataset.state = "done";
  if (text) {
    await scoreText(text);
    if (!$("inspect-panel").hidden) await inspect();
  }
}

function parseEvent(block) {
  let type = "message", data = "";
  for (const line of block.split("\n")) {
    if (line.startsWith("event: ")) type = line.slice(7);
    else if (line.startsWith("data: ")) data += line.slice(6);
  }
  return {type, data: JSON.parse(data)};
}

// --- surprise colouring -------------------------------------------------------------------
function surpriseColour(bits) {
  const x = Math.min(bits / 8, 1);  // 0 bits white, 8 bits and more full red
  return `hsl(0, 85%, ${100 - 45 * x}%)`;
}

function valueColour(v) {
  const x = Math.max(-1, Math.min(1, v));
  return x >= 0 ? `hsl(0, 85%, ${100 - 45 * x}%)` : `hsl(220, 85%, ${100 + 45 * x}%)`;
}

async function scoreText(text) {
  try {
    const r = await post("/score", {text, top_k: 5});
    const out = $("output");
    out.textContent = "";
    for (const t of r.tokens) {
      const span = document.createElement("span");
      span.className = "tok";
      span.textContent = t.text;
      span.style.background = surpriseColour(t.bits);
      span.dataset.tip = `${JSON.stringify(t.text)}  ${t.bits.toFixed(2)} bits\n` +
        t.top.map((a) => `${JSON.stringify(a.token).padEnd(8)} ${(100 * a.prob).toFixed(1)}%`)
          .join("\n");
      out.appendChild(span);
    }
    out.dataset.state = "scored";
    $("legend").textContent = r.bits_per_token === null ? "" :
      `${r.tokens.length} tokens, ${r.bits_per_token.toFixed(3)} bits per token ` +
      "(white 0 bits, red 8 or more)";
  } catch (e) { showError(String(e.message || e)); }
}

// --- activations and gates ----------------------------------------------------------------
async function inspect() {
  const text = lastText || $("prompt").value;
  if (!text) return;
  try {
    const r = await post("/inspect", {text, layer: Number($("layer").value),
                                      unit: Number($("unit").value), signal: $("signal").value});
    const box = $("activations");
    box.textContent = "";
    r.tokens.forEach((t, i) => {
      const span = document.createElement("span");
      const v = r.activation.values[i];
      span.className = "tok";
      span.textContent = t.text;
      span.style.background = valueColour(v);
      span.dataset.tip = `${JSON.stringify(t.text)}  ${r.activation.signal}` +
        `[${r.activation.layer}, ${r.activation.unit}] = ${v.toFixed(3)}`;
      box.appendChild(span);
    });
    box.dataset.state = "rendered";
    drawGates(r.layers);
  } catch (e) { showError(String(e.message || e)); }
}

function drawGates(layers) {
  const box = $("gates");
  box.textContent = "";
  for (const layer of layers) {
    for (const [name, g] of Object.entries(layer.gates)) {
      const div = document.createElement("div");
      div.className = "gate";
      const canvas = document.createElement("canvas");
      canvas.width = 160;
      canvas.height = 70;
      const ctx = canvas.getContext("2d");
      const top = Math.max(1, ...g.histogram);
      const w = canvas.width / g.histogram.length;
      g.histogram.forEach((c, i) => {
        const h = (canvas.height - 2) * c / top;
        ctx.fillStyle = i < 2 || i >= g.histogram.length - 2 ? "#c44" : "#48a";
        ctx.fillRect(i * w + 1, canvas.height - h, w - 2, h);
      });
      const mean = (a) => a.reduce((s, x) => s + x, 0) / Math.max(1, a.length);
      const caption = document.createElement("div");
      caption.textContent = `layer ${layer.layer} gate ${name}: ` +
        `${(100 * mean(g.left)).toFixed(0)}% < 0.1, ${(100 * mean(g.right)).toFixed(0)}% > 0.9`;
      div.append(canvas, caption);
      box.appendChild(div);
    }
  }
}

function stepUnit(d) {
  const u = Math.max(0, Math.min(Number($("unit").max || 0), Number($("unit").value) + d));
  $("unit").value = u;
  inspect();
}

// --- translation: n-best and the attention heatmap ----------------------------------------
async function translate() {
  showError("");
  try {
    const r = await post("/translate", {source: $("source").value,
                                        beam_size: numberOrNull("beam_size")});
    $("translation").textContent = r.translation;
    const box = $("attention");
    box.textContent = "";
    if (!r.attention) return;
    const table = document.createElement("table");
    table.className = "heat";
    const head = table.insertRow();
    head.insertCell().textContent = "";
    for (const s of r.source_tokens) {
      const th = document.createElement("th");
      th.textContent = s;
      head.appendChild(th);
    }
    r.attention.forEach((row, i) => {
      const tr = table.insertRow();
      const th = document.createElement("th");
      th.textContent = r.target_tokens[i];
      tr.appendChild(th);
      for (const a of row) {
        const td = tr.insertCell();
        td.style.background = `hsl(210, 70%, ${100 - 60 * a}%)`;
        td.title = a.toFixed(3);
      }
    });
    box.appendChild(table);
  } catch (e) { showError(String(e.message || e)); }
}

// --- tagging: tags with their marginals ---------------------------------------------------
async function tag() {
  showError("");
  try {
    const r = await post("/tag", {text: $("sentence").value});
    const box = $("tags");
    box.textContent = "";
    r.tokens.forEach((w, i) => {
      const d = document.createElement("div");
      d.className = "tagged";
      const word = document.createElement("div");
      word.className = "word";
      word.textContent = w;
      const label = document.createElement("div");
      label.className = "label";
      label.textContent = `${r.tags[i]} ${r.confidence[i].toFixed(2)}`;
      const bar = document.createElement("div");
      bar.className = "bar";
      bar.style.width = `${Math.round(100 * r.confidence[i])}%`;
      d.dataset.tip = Object.entries(r.marginals[i]).sort((a, b) => b[1] - a[1])
        .map(([t, p]) => `${t.padEnd(8)} ${(100 * p).toFixed(1)}%`).join("\n");
      d.append(word, label, bar);
      box.appendChild(d);
    });
  } catch (e) { showError(String(e.message || e)); }
}

// --- hover tips ---------------------------------------------------------------------------
document.addEventListener("mouseover", (e) => {
  const el = e.target.closest("[data-tip]");
  const tip = $("tooltip");
  if (!el) { tip.hidden = true; return; }
  tip.textContent = el.dataset.tip;
  tip.hidden = false;
});
document.addEventListener("mousemove", (e) => {
  const tip = $("tooltip");
  tip.style.left = `${e.clientX + 12}px`;
  tip.style.top = `${e.clientY + 12}px`;
});

$("model").addEventListener("change", selectModel);
$("generate").addEventListener("click", generate);
$("stop").addEventListener("click", () => controller && controller.abort());
$("score").addEventListener("click", () => {
  lastText = $("output").textContent || $("prompt").value;
  scoreText(lastText);
});
$("inspect").addEventListener("click", inspect);
$("unit-prev").addEventListener("click", () => stepUnit(-1));
$("unit-next").addEventListener("click", () => stepUnit(1));
$("translate").addEventListener("click", translate);
$("tag").addEventListener("click", tag);
loadModels().catch((e) => showError(String(e)));
