// The page: choose files, POST them as FormData to /api/predict, render the JSON answer.
// Every text that comes from the upload (file names) is set with textContent, never as HTML.
"use strict";

// answer: the last result shown; heatmaps: the request for its heat maps, once asked for
const state = { files: [], limits: null, threshold: null, answer: null, heatmaps: null };
const $ = (id) => document.getElementById(id);

function el(tag, props = {}, children = []) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (key === "text") node.textContent = value;
    else if (key === "dataset") Object.assign(node.dataset, value);
    else node.setAttribute(key, value);
  }
  for (const child of children) if (child) node.append(child);
  return node;
}

// Same rounding as the server's messages (serving/web/uploads.py: megabytes).
function megabytes(bytes) {
  if (bytes < 1e5) return `${Math.max(1, Math.round(bytes / 1e3))} kB`;
  return (bytes / 1e6).toFixed(1).replace(/\.0$/, "") + " MB";
}

// "study/series/MR.0001.dcm" -> the file's own name, and the folders it came from.
function fileName(name, suffix = "") {
  const cut = name.lastIndexOf("/");
  const base = name.slice(cut + 1) + suffix;
  const folder = cut < 0 ? "" : name.slice(0, cut + 1);
  // the end of the path tells series apart; the full path is in the tooltip
  const shown = folder.length > 34 ? "…" + folder.slice(-33) : folder;
  return [el("span", { class: "file-name", text: base, title: name }),
    folder ? el("span", { class: "file-folder", text: "in " + shown, title: name }) : null];
}

function showError(message) {
  $("error").textContent = message;
  $("error").hidden = false;
}

function clearOutput() {
  state.answer = null;  // a heat map request still running for it stops there
  state.heatmaps = null;
  $("error").hidden = true;
  $("result").hidden = true;
  $("status").hidden = true;
}

function quoted(labels) {
  return (labels || []).map((label) => `"${label}"`).join(", ");
}

// Which version, and why that one: a label asked for, the server's default, or the rollout.
function describeVersion(name, version, labels, requestedLabel, routedTo, fellBack) {
  let which;
  if (fellBack) which = 'the canary rollout chose "canary", which failed; "stable" answered';
  else if (routedTo) which = `label "${routedTo}", chosen by the canary rollout`;
  else if (requestedLabel) which = `version label "${requestedLabel}"`;
  else which = "the server's default version; " +
    (labels && labels.length ? `label ${quoted(labels)}` : "no version label");
  return `${name} version ${version} (${which})`;
}

function describeRouting(routing) {
  if (!routing) return "";
  return ` Canary rollout in progress: about ${Math.round(routing.weight * 100)}% of studies ` +
    "are scored by the canary version.";
}

async function loadInfo() {
  try {
    const response = await fetch("/api/info");
    const info = await response.json();
    state.limits = info.limits;
    state.threshold = info.threshold;
    $("limits").textContent = `Up to ${megabytes(info.limits.max_upload_bytes)} and ` +
      `${info.limits.max_files} files per upload. Files are processed in memory and discarded ` +
      "when the answer is sent; nothing is stored, and file names are never logged.";
    if (info.model) {
      const model = info.model;
      $("model-line").textContent = "Model server connected: " + describeVersion(model.name,
        model.version, model.labels, info.requested_label, null, false) + "." +
        describeRouting(model.routing);
    } else {
      $("model-line").textContent = info.error || "The model server does not answer.";
      $("model-line").classList.add("warn");
    }
  } catch (error) {
    $("model-line").textContent = "Could not reach this page's server: " + error.message;
    $("model-line").classList.add("warn");
  }
}

function chooseFiles(fileList) {
  state.files = Array.from(fileList);
  const total = state.files.reduce((sum, file) => sum + file.size, 0);
  $("chosen").textContent = state.files.length === 0 ? "No file chosen."
    : state.files.length === 1 ? `${state.files[0].name} (${megabytes(total)})`
      : `${state.files.length} files (${megabytes(total)})`;
  $("analyse").disabled = state.files.length === 0;
  $("clear").hidden = state.files.length === 0;
  clearOutput();
}

async function analyse(event) {
  event.preventDefault();
  clearOutput();
  $("analyse").disabled = true;
  document.body.dataset.state = "busy";
  try {
    await upload();
  } finally {
    $("status").hidden = true;
    $("analyse").disabled = state.files.length === 0;
    document.body.dataset.state = "done";
  }
}

async function upload() {
  const total = state.files.reduce((sum, file) => sum + file.size, 0);
  if (state.limits && total > state.limits.max_upload_bytes) {
    showError(`The upload is ${megabytes(total)}; the limit is ` +
      `${megabytes(state.limits.max_upload_bytes)} per upload. Upload one study at a time ` +
      "(a zip of the study folder is smaller). Nothing was sent.");
    return;
  }
  const form = new FormData();
  for (const file of state.files) form.append("files", file, file.webkitRelativePath || file.name);
  $("status").textContent = `Uploading and analysing ${state.files.length} file(s), ` +
    `${megabytes(total)}…`;
  $("status").hidden = false;
  try {
    const response = await fetch("/api/predict", { method: "POST", body: form });
    const answer = await response.json().catch(() => ({
      error: `The page's server answered HTTP ${response.status} without an explanation.` }));
    if (!response.ok || answer.error) showError(answer.error);
    else renderResult(answer);
  } catch (error) {
    showError("The upload did not reach the page's server (" + error.message + "). Check the " +
      "connection and try again.");
  }
}

function renderResult(answer) {
  const model = answer.model;
  $("answered-by").textContent = `Model ${model.name} · input ${model.image_size}×` +
    `${model.image_size} pixels · ${answer.files_received} file(s) received.` +
    describeRouting(model.routing);
  $("notices").replaceChildren(...answer.notices.map((text) => el("li", { text })));
  $("studies").replaceChildren(...answer.studies.map((study) => renderStudy(study, answer)));
  state.answer = answer;
  state.heatmaps = null;
  $("show-heatmaps").checked = false;
  document.body.classList.remove("heatmaps-on");
  $("heatmap-toggle").hidden = !answer.studies.some((study) => study.explainable);
  renderRejections(answer.rejections);
  $("result").hidden = false;
}

const THRESHOLD_SOURCES = {
  model: "the model's own operating threshold, chosen on validation studies of its training " +
    "data (its sensitivity and specificity on the eval studies are in the evaluation report)",
  fallback: "the fixed fallback threshold: this model was exported without a chosen one",
  operator: "the threshold set by the page's operator",
};

// Two decimals, or as many more as keep a threshold near 0 or 1 from reading as 0.00 or 1.00
// (a threshold of 0.9993 shown as "1.00" would say nothing can be above it).
function formatThreshold(value) {
  for (let digits = 2; digits <= 6; digits += 1) {
    const text = value.toFixed(digits);
    if (Number(text) !== 0 && Number(text) !== 1) return text;
  }
  return value.toFixed(6);
}

function renderStudy(study, answer) {
  const threshold = formatThreshold(study.threshold);
  const side = study.above_threshold ? "Above"
    : study.probability === study.threshold ? "At" : "Below";
  const source = study.kind === "dicom"
    ? `${study.file_count} file(s), ${study.series_count} axial series`
    : `${study.file_count} image(s)`;
  const summary = `Mean of the ${study.slice_count} slice probabilities below (${source}). ` +
    `${side} the decision threshold of ${threshold}, ${THRESHOLD_SOURCES[study.threshold_source]}; ` +
    `a probability above ${threshold} counts as MS-like.`;
  const label = study.kind === "dicom" ? "Study-level probability" : "Mean probability";
  const by = study.answered_by;
  const answeredBy = "Answered by " + describeVersion(answer.model.name, by.version, by.labels,
    answer.model.requested_label, by.routed_to, by.fell_back) + ".";
  return el("article", {
    class: "card study", dataset: {
      kind: study.kind, probability: String(study.probability),
      aboveThreshold: String(study.above_threshold) } }, [
    el("h2", { text: study.title }),
    el("div", { class: "headline" }, [
      el("div", { class: "big-number" }, [
        el("span", { class: "big-label", text: label }),
        el("span", { class: "study-probability", text: study.probability.toFixed(3) }),
      ]),
      probabilityBar(study.probability, study.threshold),
    ]),
    el("p", { class: "study-summary", text: summary }),
    el("p", { class: "study-answered-by", text: answeredBy }),
    el("p", { class: "not-diagnosis", text: "Research output, not a diagnosis." }),
    el("h3", { text: `Images the model received (${answer.model.image_size}×` +
      `${answer.model.image_size}, exactly as sent), with each slice's probability` }),
    el("div", { class: "grid" }, study.slices.map(renderSlice)),
  ]);
}

function probabilityBar(probability, threshold) {
  const bar = el("div", { class: "bar", role: "img",
    "aria-label": `probability ${probability.toFixed(3)}, threshold ${formatThreshold(threshold)}` });
  const fill = el("div", { class: "bar-fill" });
  fill.style.width = `${(probability * 100).toFixed(1)}%`;
  const mark = el("div", { class: "bar-threshold", title: `threshold ${formatThreshold(threshold)}` });
  mark.style.left = `${(threshold * 100).toFixed(1)}%`;
  const scale = el("div", { class: "bar-scale" }, [
    el("span", { text: "0" }), el("span", { text: `threshold ${formatThreshold(threshold)}` }),
    el("span", { text: "1" })]);
  scale.children[1].style.left = `${(threshold * 100).toFixed(1)}%`;
  bar.append(fill, mark);
  return el("div", { class: "bar-wrap" }, [bar, scale]);
}

function frameSuffix(item) {
  return item.frames_in_file > 1 && item.frame_index !== null
    ? ` (frame ${item.frame_index + 1})` : "";
}

function sliceCaption(slice) {
  return slice.name + frameSuffix(slice);
}

// The Grad-CAM layer over a slice (a transparent PNG from the server).
function heatmapLayer(slice) {
  return el("img", { class: "heatmap", src: slice.heatmap,
    alt: `where the model looked in ${sliceCaption(slice)}` });
}

// Heat maps cost the model server ~7x a probability, so they are asked for only when the user
// turns them on: each study's thumbnails (the exact tensors) go back to /api/explain with the
// version that scored them, a few at a time, and every slice gets its layer. Asked once per
// result.
function toggleHeatmaps(on) {
  document.body.classList.toggle("heatmaps-on", on);
  if (on && !state.heatmaps && state.answer) state.heatmaps = loadHeatmaps(state.answer);
}

async function loadHeatmaps(answer) {
  const studies = answer.studies.filter((study) => study.explainable);
  const count = studies.reduce((sum, study) => sum + study.slices.length, 0);
  document.body.dataset.heatmaps = "loading";
  $("status").textContent = `Computing where the model looked in ${count} slice(s)…`;
  $("status").hidden = false;
  // the server takes explain_batch thumbnails a request (/api/info); layers appear as they come
  const batch = state.limits ? state.limits.explain_batch : 1;
  try {
    for (const study of studies) {
      const missing = study.slices.filter((slice) => !slice.heatmap);  // all but a failed try's
      for (let start = 0; start < missing.length; start += batch) {
        const chunk = missing.slice(start, start + batch);
        const response = await fetch("/api/explain", {
          method: "POST", headers: { "Content-Type": "application/json" },
          body: JSON.stringify({ version: study.answered_by.version,
            images: chunk.map((slice) => slice.thumbnail) }) });
        const reply = await response.json().catch(() => ({
          error: `The page's server answered HTTP ${response.status} without an explanation.` }));
        if (state.answer !== answer) return;  // a new result replaced this one meanwhile
        if (!response.ok || reply.error) throw new Error(reply.error);
        chunk.forEach((slice, index) => {
          slice.heatmap = reply.heatmaps[index];
          slice.figure.querySelector(".thumb-wrap").append(heatmapLayer(slice));
        });
      }
    }
    document.body.dataset.heatmaps = "done";
  } catch (error) {
    state.heatmaps = null;  // the toggle may ask again
    document.body.dataset.heatmaps = "failed";
    if (state.answer === answer) showError("Heat maps: " + error.message);
  } finally {
    if (state.answer === answer) $("status").hidden = true;
  }
}

function renderSlice(slice) {
  const image = el("div", { class: "thumb-wrap" }, [
    el("img", { class: "thumbnail", src: slice.thumbnail, alt: sliceCaption(slice) })]);
  const figure = el("figure", { class: "slice", tabindex: "0", role: "button",
    "aria-label": `${sliceCaption(slice)}, probability ${slice.probability.toFixed(3)}: ` +
      "open larger", dataset: {
    name: slice.name, frame: String(slice.frame_index),
    probability: String(slice.probability) } }, [
    image,
    el("figcaption", {}, [
      el("span", { class: "slice-probability", text: slice.probability.toFixed(3) }),
      ...fileName(slice.name, frameSuffix(slice)),
    ]),
  ]);
  slice.figure = figure;  // where its heat map layer goes, once asked for
  const open = () => openViewer(slice);
  figure.addEventListener("click", open);
  figure.addEventListener("keydown", (event) => {  // as a button: Enter and Space
    if (event.key === "Enter" || event.key === " ") {
      event.preventDefault();
      open();
    }
  });
  return figure;
}

function openViewer(slice) {
  $("viewer-image").src = slice.thumbnail;
  $("viewer-heatmap").hidden = !slice.heatmap;
  if (slice.heatmap) $("viewer-heatmap").src = slice.heatmap;
  $("viewer-caption").textContent = `${sliceCaption(slice)}: probability ` +
    `${slice.probability.toFixed(3)} (original ${slice.rows}×${slice.cols}, ` +
    `${slice.orientation})`;
  $("viewer").showModal();
}

// One row per file or frame; the plain reason once per group of rows that share it.
function renderRejections(rejections) {
  $("rejections").hidden = rejections.length === 0;
  $("rejections-title").textContent = `Files set aside (${rejections.length})`;
  $("rejection-rows").replaceChildren(...rejections.map((item, index) => {
    const cells = [];
    if (index === 0 || rejections[index - 1].reason !== item.reason) {
      const count = rejections.filter((other) => other.reason === item.reason).length;
      cells.push(el("td", { class: "rejection-message", rowspan: String(count),
        text: item.message }));
    }
    cells.push(el("td", { class: "rejection-name" }, fileName(item.name, frameSuffix(item))));
    cells.push(el("td", { class: "rejection-detail", text: `${item.reason}: ${item.detail}` }));
    return el("tr", { class: "rejection", dataset: { reason: item.reason, name: item.name } },
      cells);
  }));
}

function setUp() {
  $("files").addEventListener("change", (event) => chooseFiles(event.target.files));
  $("folder").addEventListener("change", (event) => chooseFiles(event.target.files));
  $("choose-folder").addEventListener("click", () => $("folder").click());
  $("clear").addEventListener("click", () => {
    $("upload-form").reset();
    chooseFiles([]);
  });
  $("upload-form").addEventListener("submit", analyse);
  // a native checkbox: Tab reaches it, Space toggles it
  $("show-heatmaps").addEventListener("change", (event) => toggleHeatmaps(event.target.checked));
  const zone = $("drop-zone");
  zone.addEventListener("dragover", (event) => {
    event.preventDefault();
    zone.classList.add("over");
  });
  zone.addEventListener("dragleave", () => zone.classList.remove("over"));
  zone.addEventListener("drop", (event) => {
    event.preventDefault();
    zone.classList.remove("over");
    chooseFiles(event.dataTransfer.files);
  });
  document.body.dataset.state = "ready";
  loadInfo();
}

document.addEventListener("DOMContentLoaded", setUp);
