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


def page_data(study: str, trials: Sequence[dict[str, Any]], class_names: Sequence[str], left_images: Sequence[str],
              right_images: Sequence[str]) -> dict[str, Any]:
    """What the page embeds: the study id and, per trial, its number, the target's name and the two images.
    Nothing here tells the models apart."""
    def name(k: int) -> str:
        return class_names[k] if 0 <= k < len(class_names) else str(k)

    return {"study": study, "trials": [
        {"trial": t["trial"], "target": name(int(t["target"])), "left": lu, "right": ru}
        for t, lu, ru in zip(trials, left_images, right_images)
    ]}


def render(data: dict[str, Any]) -> str:
    """The questionnaire page for :func:`page_data`'s ``data``."""
    embedded = json.dumps(data, ensure_ascii=True).replace("</", "<\\/")
    return _PAGE.replace("@SHOWN@", str(SHOWN_PIXELS)).replace("@N@", str(len(data["trials"]))).replace(
        "@DATA@", embedded).replace("@SCRIPT@", SCRIPT)


#: The page's logic. The functions above the DOM wiring are plain JavaScript that the tests run with node.
SCRIPT = r"""
function csvField(value) {
  const text = String(value);
  return /[",\r\n]/.test(text) ? '"' + text.replace(/"/g, '""') + '"' : text;
}

function answersCsv(study, participant, answers) {
  const rows = ["study,participant,trial,choice,seconds"];
  Object.keys(answers).map(Number).sort((a, b) => a - b).forEach(function (trial) {
    const a = answers[trial];
    rows.push([study, participant, trial, a.choice, a.seconds.toFixed(2)].map(csvField).join(","));
  });
  return rows.join("\r\n") + "\r\n";
}

function firstUnanswered(trials, answers) {
  for (let i = 0; i < trials.length; i++) {
    if (!(trials[i].trial in answers)) return i;
  }
  return trials.length;
}

if (typeof module !== "undefined") module.exports = { csvField, answersCsv, firstUnanswered };

if (typeof document !== "undefined") {
  const STUDY = JSON.parse(document.getElementById("study-data").textContent);
  const $ = (id) => document.getElementById(id);
  let participant = "", answers = {}, index = 0, shownAt = 0;
  const storeKey = () => "igbench-study-" + STUDY.study + "-" + participant;

  function save() {
    try { localStorage.setItem(storeKey(), JSON.stringify(answers)); } catch (e) { /* private mode: kept in memory */ }
    const csv = answersCsv(STUDY.study, participant, answers);
    const link = $("download");
    if (link.href) URL.revokeObjectURL(link.href);
    link.href = URL.createObjectURL(new Blob([csv], { type: "text/csv" }));
    link.download = "answers-" + STUDY.study + "-" + participant.replace(/[^A-Za-z0-9_-]+/g, "_") + ".csv";
    $("partial").href = link.href;
    $("partial").download = link.download;
  }

  function show() {
    if (index >= STUDY.trials.length) {
      $("trial").hidden = true;
      $("done").hidden = false;
      return;
    }
    const t = STUDY.trials[index];
    $("done").hidden = true;
    $("trial").hidden = false;
    $("progress").textContent = "Trial " + (index + 1) + " of " + STUDY.trials.length;
    $("target").textContent = t.target;
    $("left-img").src = t.left;
    $("right-img").src = t.right;
    $("back").disabled = index === 0;
    shownAt = performance.now();
  }

  function choose(side) {
    if ($("trial").hidden) return;
    const t = STUDY.trials[index];
    answers[t.trial] = { choice: side, seconds: (performance.now() - shownAt) / 1000 };
    save();
    index += 1;
    show();
  }

  $("begin").addEventListener("click", function () {
    participant = $("participant").value.trim();
    if (!participant) { $("need-code").hidden = false; return; }
    try { answers = JSON.parse(localStorage.getItem(storeKey()) || "{}"); } catch (e) { answers = {}; }
    index = firstUnanswered(STUDY.trials, answers);
    $("start").hidden = true;
    save();
    show();
  });
  $("left").addEventListener("click", () => choose("left"));
  $("right").addEventListener("click", () => choose("right"));
  $("back").addEventListener("click", function () { if (index > 0) { index -= 1; show(); } });
  document.addEventListener("keydown", function (e) {
    if (e.key === "ArrowLeft") choose("left");
    if (e.key === "ArrowRight") choose("right");
  });
}
"""

_PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>Image study</title>
<style>
  body { font-family: system-ui, sans-serif; max-width: 40rem; margin: 2rem auto; padding: 0 1rem; }
  .pair { display: flex; gap: 2rem; justify-content: center; margin: 1.5rem 0; }
  .pair button { border: 2px solid #888; background: #fff; padding: 0.5rem; cursor: pointer; }
  .pair button:hover, .pair button:focus { border-color: #06c; }
  .pair img { width: @SHOWN@px; height: @SHOWN@px; image-rendering: pixelated; display: block; }
  h2 { text-align: center; }
  .small { color: #555; font-size: 0.9rem; }
</style>
</head>
<body>
<section id="start">
  <h1>Image study</h1>
  <p>You will see @N@ pairs of small images. Each time, pick the image that looks more like the named
  class. There are no right answers: go with your first impression. Your answers stay in this browser
  until you save them at the end.</p>
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
  <p class="small">Click an image, or press the left or right arrow key.
  <button id="back">Back</button> <a id="partial" href="#">Save answers so far</a></p>
</section>
<section id="done" hidden>
  <h2>Thank you</h2>
  <p><a id="download" href="#">Download your answers</a> and send the file to the person running the study.</p>
</section>
<script id="study-data" type="application/json">@DATA@</script>
<script>@SCRIPT@</script>
</body>
</html>
"""
