// systolab web front end: small helpers shared by the pages (no framework, nothing fetched
// from outside this server).
"use strict";
const $ = (sel, root = document) => root.querySelector(sel);
const esc = s => String(s ?? "").replace(/[&<>"']/g, c => ({"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;"}[c]));
const num = (v, digits) => v === null || v === undefined ? "–" :
  (typeof v === "number" ? (digits !== undefined ? v.toFixed(digits) : v.toLocaleString("en-US")) : String(v));

async function api(method, url, body) {
  const opts = {method, headers: {}};
  if (body !== undefined) {
    if (body instanceof Blob) { opts.body = body; opts.headers["Content-Type"] = "application/octet-stream"; }
    else { opts.body = JSON.stringify(body); opts.headers["Content-Type"] = "application/json"; }
  }
  const r = await fetch(url, opts);
  const text = await r.text();
  let data;
  try { data = JSON.parse(text); } catch { data = text; }
  if (!r.ok) {
    const e = new Error(data && data.error ? data.error : `${r.status} ${r.statusText}`);
    e.status = r.status;
    throw e;
  }
  return data;
}

function table(headers, rows, {id = "", cls = "", raw = false} = {}) {
  const cell = v => raw ? v : esc(typeof v === "number" ? num(v) : v);
  return `<table ${id ? `id="${id}"` : ""} class="${cls}"><thead><tr>${headers.map(h => `<th>${esc(h)}</th>`).join("")}</tr></thead>` +
    `<tbody>${rows.map(r => `<tr>${r.map(v => `<td>${cell(v)}</td>`).join("")}</tr>`).join("")}</tbody></table>`;
}

// the config the pages work on: kept in the browser, checked by the server
function currentConfig() {
  try { return JSON.parse(localStorage.getItem("systolab.config")) || {}; } catch { return {}; }
}
function setCurrentConfig(yaml, source, hash) {
  localStorage.setItem("systolab.config", JSON.stringify({yaml, source, hash}));
  showCurrentConfig();
}
async function ensureConfig() {
  let c = currentConfig();
  if (!c.yaml) {
    const t = await api("GET", "/api/file?path=configs/default.yaml");
    c = {yaml: t.text, source: "configs/default.yaml"};
    const f = await api("POST", "/api/config/check", c);
    setCurrentConfig(c.yaml, c.source, f.hash);
    c.hash = f.hash;
  }
  return c;
}
function showCurrentConfig() {
  const c = currentConfig(), el = document.getElementById("current-config");
  if (el) el.textContent = c.hash ? `config ${c.source} · ${c.hash}` : "";
}
document.addEventListener("DOMContentLoaded", showCurrentConfig);

// read ?key=value from the page's address
const param = k => new URLSearchParams(location.search).get(k);

// poll a job until it ends; onUpdate(job) on every poll
async function followJob(id, onUpdate, everyMs = 700) {
  for (;;) {
    const j = await api("GET", `/api/jobs/${id}`);
    onUpdate(j);
    if (j.state !== "running") return j;
    await new Promise(r => setTimeout(r, everyMs));
  }
}

function jobLine(j) {
  const p = j.progress || {};
  const frac = p.total ? ` ${p.done ?? 0}/${p.total}` : "";
  return `${j.state} · ${p.stage || ""}${frac} · ${num(j.elapsed_s, 1)} s`;
}

// the workload form shared by Compile and Run: gemm:MxKxN or an uploaded .onnx
async function workloadBody(form) {
  const body = {...(await ensureConfig()), seed: Number($(".seed", form).value || 0)};
  delete body.hash;
  const file = $(".model-file", form).files[0];
  if ($(".kind-onnx", form).checked) {
    if (!file && !form.dataset.model) throw new Error("choose a quantized .onnx model to upload");
    if (file) {
      const name = file.name.replace(/[^A-Za-z0-9_.-]/g, "_");
      const up = await api("PUT", `/api/uploads/${encodeURIComponent(name)}`, file);
      form.dataset.model = up.path;
    }
    body.model = form.dataset.model;
  } else {
    body.workload = $(".workload", form).value.trim();
  }
  return body;
}
