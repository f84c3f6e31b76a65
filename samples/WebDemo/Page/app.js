// The WebDemo page: lists the loaded SPMs, shows each one's gate for the typed prompt (POST /api/gates), and
// generates the base and erased images side by side (POST /api/generate). No framework, no build step.
"use strict";

const $ = (id) => document.getElementById(id);
let spms = [];
let gatesSeq = 0;
let gatesTimer = 0;

function enabledFlags() {
  return spms.map((s) => $("spm-" + s.index).checked);
}

async function postJson(url, body) {
  const response = await fetch(url, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify(body),
  });
  const data = await response.json().catch(() => ({}));
  // Refusals are RFC 9457 problems: "detail" names each wrong field ("steps: must be 1..100, got 0.").
  if (!response.ok) throw new Error(data.detail || data.title || response.statusText);
  return data;
}

function fmt(x) {
  return Number.isFinite(x) ? x.toFixed(3) : "-";
}

function showGates(gates, prompt) {
  for (const g of gates) {
    const row = document.querySelector(`#gates tr[data-index="${g.index}"]`);
    row.classList.toggle("off", !g.enabled);
    row.querySelector(".gamma").textContent = fmt(g.gamma);
    row.querySelector(".gate").innerHTML = "";
    const bar = document.createElement("span");
    bar.className = "bar";
    bar.style.width = Math.round(Math.max(0, Math.min(1, g.gate)) * 80) + "px";
    row.querySelector(".gate").append(bar, document.createTextNode(fmt(g.gate)));
    row.querySelector(".applied").textContent = fmt(g.applied);
  }
  // Lets a reader (or a test) see which prompt and which on/off state the shown gates belong to.
  $("gates").dataset.prompt = prompt;
  $("gates").dataset.enabled = enabledFlags().map((e) => (e ? "1" : "0")).join("");
}

async function refreshGates() {
  if (spms.length === 0) return;
  const seq = ++gatesSeq;
  const prompt = $("prompt").value;
  try {
    const gates = await postJson("/api/gates", { prompt, enabled: enabledFlags() });
    if (seq === gatesSeq) showGates(gates, prompt); // drop answers overtaken by a newer request
  } catch (e) {
    setStatus(e.message, true);
  }
}

function scheduleGates() {
  clearTimeout(gatesTimer);
  gatesTimer = setTimeout(refreshGates, 200);
}

function setStatus(text, isError) {
  $("status").textContent = text;
  $("status").classList.toggle("error", !!isError);
}

async function generate() {
  const button = $("generate");
  if (button.disabled) return; // Enter while a generation runs
  button.disabled = true;
  setStatus("generating\u2026");
  const enabled = enabledFlags();
  const body = {
    prompt: $("prompt").value,
    enabled,
    seed: Number($("seed").value),
    steps: Number($("steps").value),
    size: Number($("size").value),
  };
  try {
    const answer = await postJson("/api/generate", body);
    $("base-image").src = answer.base;
    $("erased-image").src = answer.erased;
    $("erased-image").dataset.enabled = enabled.map((e) => (e ? "1" : "0")).join("");
    $("erased-caption").textContent = "erased (" + (spms.filter((s, i) => enabled[i]).map((s) => s.name).join(", ") || "no SPM on") + ")";
    $("parameters").textContent = answer.parameters;
    showGates(answer.gates, body.prompt);
    setStatus(`${answer.width}x${answer.height}, ${answer.seconds.toFixed(2)} s for both images`);
  } catch (e) {
    setStatus(e.message, true);
  } finally {
    button.disabled = false;
  }
}

async function start() {
  const info = await (await fetch("/api/info")).json();
  spms = info.spms;
  $("model").textContent = `model ${info.model} on ${info.provider}, ${spms.length} SPM(s) loaded`;
  $("steps").value = info.steps;
  $("size").value = info.size;
  // The model draws sides that are multiples of this only (VAE factor x 2 per UNet down-sampling level).
  $("size").step = info.sizeMultiple;
  $("size").min = info.sizeMultiple;
  const body = document.querySelector("#gates tbody");
  for (const s of spms) {
    const row = document.createElement("tr");
    row.dataset.index = s.index;
    const on = document.createElement("td");
    const box = document.createElement("input");
    box.type = "checkbox";
    box.id = "spm-" + s.index;
    box.checked = true;
    box.addEventListener("change", refreshGates);
    on.append(box);
    const name = document.createElement("td");
    const label = document.createElement("label");
    label.htmlFor = box.id;
    label.textContent = s.name;
    name.append(label);
    const concepts = document.createElement("td");
    concepts.textContent = s.concepts.join(", ");
    row.append(on, name, concepts);
    for (const cls of ["gamma", "gate", "applied"]) {
      const cell = document.createElement("td");
      cell.className = "num " + cls;
      row.append(cell);
    }
    body.append(row);
  }
  $("no-spms").hidden = spms.length > 0;
  $("prompt").addEventListener("input", scheduleGates);
  $("prompt").addEventListener("keydown", (e) => { if (e.key === "Enter") generate(); });
  $("generate").addEventListener("click", generate);
  $("generate").disabled = false;
  document.body.dataset.ready = "1";
  refreshGates();
}

start().catch((e) => setStatus("cannot load: " + e.message, true));
