"""The participants' questionnaire: one self-contained HTML page (images inline, no server, works offline)
that shows the trials one at a time, asks which of two images looks more like the target class, keeps the
answers in the browser while a participant works (a reload resumes) and saves them as the CSV that
``igbench study score`` reads. The page holds no model name: which model made which side is only in the key.
"""

from __future__ import annotations

import base64
import io
import json
from typing import Any, Sequence

#: Width in CSS pixels at which each image is shown (enlarged without smoothing).
SHOWN_PIXELS = 224


def png_data_uri(image, lo: float, hi: float) -> str:
    """A ``(C, H, W)`` image with values in ``[lo, hi]`` as a ``data:image/png`` URI (grey for one channel,
    RGB for three), each value rounded to one of 256 levels."""
    import numpy as np
    import torch
    from PIL import Image

    arr = image.detach().float().cpu().clamp(lo, hi)
    arr = ((arr - lo) / ((hi - lo) or 1.0) * 255).round().to(torch.uint8).numpy()
    pic = Image.fromarray(arr[0], mode="L") if arr.shape[0] == 1 else Image.fromarray(np.transpose(arr[:3], (1, 2, 0)), mode="RGB")
    buf = io.BytesIO()
    pic.save(buf, format="PNG", optimize=True)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def page_data(study: str, shown: Sequence[tuple[int, int, str, str]], class_names: Sequence[str],
              intro: str | None = None, completion_code: str | None = None, checks: bool = False) -> dict[str, Any]:
    """What the page embeds: the study id, the researcher's intro text and completion code (or None), and per
    trial (``(number, target class, left image URI, right image URI)``, attention checks among them) its
    number, the target's name and the two images; ``checks``: whether some trials have a right answer (the
    instructions then say so). Nothing here tells the models, or the checks, apart."""
    def name(k: int) -> str:
        return class_names[k] if 0 <= k < len(class_names) else str(k)

    return {"study": study, "intro": intro, "completion_code": completion_code, "checks": checks, "trials": [
        {"trial": number, "target": name(int(target)), "left": left, "right": right}
        for number, target, left, right in sorted(shown)
    ]}


def render(data: dict[str, Any]) -> str:
    """The questionnaire page for :func:`page_data`'s ``data``. The data is embedded as JSON with ``<``,
    ``>`` and ``&`` escaped, so no class name can end or reopen the script block, and the placeholders are
    filled in one pass, so no inserted text is read as a placeholder."""
    import re

    embedded = json.dumps(data, ensure_ascii=True)
    for char, escaped in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026")):
        embedded = embedded.replace(char, escaped)
    values = {"SHOWN": str(SHOWN_PIXELS), "N": str(len(data["trials"])), "DATA": embedded, "SCRIPT": SCRIPT}
    return re.sub(r"@(SHOWN|N|DATA|SCRIPT)@", lambda m: values[m[1]], _PAGE)


#: Milliseconds after a trial appears during which a click or key press is ignored (a double click or a
#: held key would otherwise answer the next trial unseen).
MIN_MS = 300

#: The page's logic. The functions above the DOM wiring are plain JavaScript that the tests also run with
#: node. Each participant gets an order of trials and a side mirroring of their own, drawn from their code
#: (so a reload restores both); every answer records whether its sides were mirrored.
SCRIPT = r"""
function csvField(value) {
  const text = String(value);
  return /[",;\r\n\t]/.test(text) ? '"' + text.replace(/"/g, '""') + '"' : text;
}

function cleanCode(text) {
  // no control or line-separator characters; a leading = + - @ would run as a formula in a spreadsheet
  const code = String(text).replace(/[\u0000-\u001f\u007f-\u009f\u2028\u2029]/g, "").trim();
  return /^[=+\-@]/.test(code) ? "'" + code : code;
}

function answersCsv(study, participant, answers) {
  const rows = ["study,participant,trial,choice,mirrored,seconds"];
  Object.keys(answers).map(Number).sort((a, b) => a - b).forEach(function (trial) {
    const a = answers[trial];
    rows.push([study, participant, trial, a.choice, a.mirrored ? 1 : 0, a.seconds.toFixed(2)].map(csvField).join(","));
  });
  return rows.join("\r\n") + "\r\n";
}

function seededRandom(text) {
  let h = 2166136261;  // FNV-1a of the text, then mulberry32
  for (let i = 0; i < text.length; i++) { h ^= text.charCodeAt(i); h = Math.imul(h, 16777619) >>> 0; }
  return function () {
    h = (h + 0x6D2B79F5) >>> 0;
    let t = h;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function participantLayout(study, participant, n) {
  const random = seededRandom(study + "\n" + participant);
  const order = Array.from({ length: n }, (_, i) => i);
  for (let i = n - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1));
    [order[i], order[j]] = [order[j], order[i]];
  }
  return { order: order, mirrored: random() < 0.5 };
}

function firstUnanswered(trials, order, answers) {
  for (let i = 0; i < order.length; i++) {
    if (!(trials[order[i]].trial in answers)) return i;
  }
  return order.length;
}

function storedAnswers(text) {
  try {
    const parsed = JSON.parse(text || "{}");
    if (!parsed || typeof parsed !== "object" || Array.isArray(parsed)) return {};
    const kept = {};
    Object.keys(parsed).forEach(function (k) {
      const a = parsed[k];
      if (a && (a.choice === "left" || a.choice === "right") && typeof a.seconds === "number") kept[k] = a;
    });
    return kept;
  } catch (e) {
    return {};
  }
}

if (typeof module !== "undefined") {
  module.exports = { csvField, cleanCode, answersCsv, seededRandom, participantLayout, firstUnanswered, storedAnswers };
}

if (typeof document !== "undefined") {
  const STUDY = JSON.parse(document.getElementById("study-data").textContent);
  const $ = (id) => document.getElementById(id);
  let participant = "", answers = {}, layout = null, index = 0, shownAt = 0;
  const storeKey = () => "igbench-study-" + STUDY.study + "-" + participant;

  function save() {
    try { localStorage.setItem(storeKey(), JSON.stringify(answers)); } catch (e) { /* private mode: kept in memory */ }
    const csv = answersCsv(STUDY.study, participant, answers);
    const link = $("download");
    if (link.href && link.href.startsWith("blob:")) URL.revokeObjectURL(link.href);
    link.href = URL.createObjectURL(new Blob([csv], { type: "text/csv" }));
    const stem = "answers-" + STUDY.study + "-" + participant.replace(/[^A-Za-z0-9_-]+/g, "_");
    link.download = stem + ".csv";
    $("partial").href = link.href;
    $("partial").download = stem + "-partial.csv";
  }

  function show() {
    if (index >= layout.order.length) {
      $("trial").hidden = true;
      $("done").hidden = false;
      return;
    }
    const t = STUDY.trials[layout.order[index]];
    const given = answers[t.trial];
    $("done").hidden = true;
    $("trial").hidden = false;
    $("progress").textContent = "Trial " + (index + 1) + " of " + layout.order.length;
    $("target").textContent = t.target;
    $("left-img").src = layout.mirrored ? t.right : t.left;
    $("right-img").src = layout.mirrored ? t.left : t.right;
    $("left").className = given && given.choice === "left" ? "chosen" : "";
    $("right").className = given && given.choice === "right" ? "chosen" : "";
    $("back").disabled = index === 0;
    $("to-end").hidden = firstUnanswered(STUDY.trials, layout.order, answers) < layout.order.length;
    shownAt = performance.now();
  }

  function choose(side) {
    if ($("trial").hidden || performance.now() - shownAt < @MIN_MS@) return;
    const t = STUDY.trials[layout.order[index]];
    const earlier = answers[t.trial];  // an answer changed after Back keeps the time of the first judgement
    const seconds = earlier ? earlier.seconds : (performance.now() - shownAt) / 1000;
    answers[t.trial] = { choice: side, mirrored: layout.mirrored, seconds: seconds };
    if (document.activeElement && document.activeElement.blur) document.activeElement.blur();  // no Enter/Space replay
    save();
    index = firstUnanswered(STUDY.trials, layout.order, answers);  // after a Back: where the participant was
    show();
  }

  if (STUDY.intro) {
    STUDY.intro.split(/\n\s*\n/).forEach(function (text) {
      const p = document.createElement("p");
      p.textContent = text;
      $("intro").appendChild(p);
    });
  }
  if (STUDY.checks) {
    $("no-right-answers").textContent = "A few pairs have a clear answer; for the rest there is none: go with your " +
      "first impression.";
  }
  $("download").addEventListener("click", function () {  // the code only once the answers are saved
    if (STUDY.completion_code) {
      $("completion").hidden = false;
      $("completion-code").textContent = STUDY.completion_code;
    }
  });

  $("begin").addEventListener("click", function () {
    participant = cleanCode($("participant").value);
    if (!participant) { $("need-code").hidden = false; return; }
    let stored = null;
    try { stored = localStorage.getItem(storeKey()); } catch (e) { stored = null; }
    answers = storedAnswers(stored);
    layout = participantLayout(STUDY.study, participant, STUDY.trials.length);
    index = firstUnanswered(STUDY.trials, layout.order, answers);
    $("start").hidden = true;
    save();
    show();
  });
  $("left").addEventListener("click", () => choose("left"));
  $("right").addEventListener("click", () => choose("right"));
  $("back").addEventListener("click", function () { if (index > 0) { index -= 1; show(); } });
  $("review").addEventListener("click", function () { if (layout) { index = layout.order.length - 1; show(); } });
  $("to-end").addEventListener("click", function () { if (layout) { index = layout.order.length; show(); } });
  document.addEventListener("keydown", function (e) {
    if (e.key !== "ArrowLeft" && e.key !== "ArrowRight") return;
    if ($("trial").hidden || e.altKey || e.ctrlKey || e.metaKey || e.shiftKey) return;  // typing, or browser keys
    if (e.preventDefault) e.preventDefault();
    if (e.repeat) return;
    choose(e.key === "ArrowLeft" ? "left" : "right");
  });
}
""".replace("@MIN_MS@", str(MIN_MS))

_PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Image study</title>
<style>
  body { font-family: system-ui, sans-serif; max-width: 40rem; margin: 2rem auto; padding: 0 1rem; }
  .pair { display: flex; gap: 1rem; justify-content: center; margin: 1.5rem 0; }
  .pair button { border: 3px solid #888; background: #fff; padding: 0.5rem; cursor: pointer; }
  .pair button:hover, .pair button:focus { border-color: #06c; }
  .pair button.chosen { border-color: #c60; }
  .pair img { width: min(@SHOWN@px, 38vw); height: auto; aspect-ratio: 1; image-rendering: pixelated; display: block; }
  h2 { text-align: center; }
  .small { color: #555; font-size: 0.9rem; }
</style>
</head>
<body>
<section id="start">
  <h1>Image study</h1>
  <div id="intro"></div>
  <p>You will see @N@ pairs of small images. Each time, pick the image that looks more like the named
  class. <span id="no-right-answers">There are no right answers: go with your first impression.</span></p>
  <p>Your answers stay in this browser until you save them. Save this file on your computer before you
  open it, and use "Save answers so far" if you stop before the end.</p>
  <p><label>Your participant code: <input id="participant" autocomplete="off"></label>
  <button id="begin">Begin</button></p>
  <p id="need-code" hidden>Please enter the participant code you were given.</p>
</section>
<section id="trial" hidden>
  <p id="progress" class="small"></p>
  <h2>Which image looks more like <strong id="target"></strong>?</h2>
  <div class="pair">
    <button id="left" aria-label="left image"><img id="left-img" alt="left image"></button>
    <button id="right" aria-label="right image"><img id="right-img" alt="right image"></button>
  </div>
  <p class="small">Click an image, or press the left or right arrow key. Back shows your earlier answers
  (outlined); answering one again returns you to where you were.
  <button id="back">Back</button> <button id="to-end" hidden>To the end</button>
  <a id="partial" href="#">Save answers so far</a></p>
</section>
<section id="done" hidden>
  <h2>Thank you</h2>
  <p><a id="download" href="#">Download your answers</a> and send the file to the person running the study.</p>
  <p id="completion" hidden>Your completion code: <strong id="completion-code"></strong>. Send the answer file
  as well: the code alone carries no answers.</p>
  <p class="small"><button id="review">Review my answers</button></p>
</section>
<script id="study-data" type="application/json">@DATA@</script>
<script>@SCRIPT@</script>
</body>
</html>
"""
