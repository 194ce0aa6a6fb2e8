// The two interactive bits of the web app, no library: picking two runs to compare, and "try it".
"use strict";

const compareButton = document.getElementById("compare-button");
if (compareButton) {
  compareButton.addEventListener("click", () => {
    const picked = [...document.querySelectorAll("input[name=pick]:checked")].map((box) => box.value);
    if (picked.length !== 2) { alert("Tick exactly two runs."); return; }
    location.href = `/compare?a=${encodeURIComponent(picked[0])}&b=${encodeURIComponent(picked[1])}`;
  });
}

const form = document.getElementById("try-form");
if (form) {
  const run = form.dataset.run;
  const canvas = document.getElementById("canvas");
  const context = canvas.getContext("2d");
  const slider = document.getElementById("threshold");
  const status = document.getElementById("status");
  let image = null;
  let answer = null;

  const colors = ["#e6194b", "#3cb44b", "#4363d8", "#f58231", "#911eb4", "#46f0f0", "#f032e6", "#bcf60c"];

  function draw() {
    if (!image) return;
    canvas.width = image.naturalWidth;
    canvas.height = image.naturalHeight;
    context.drawImage(image, 0, 0);
    if (!answer) return;
    const threshold = parseFloat(slider.value);
    document.getElementById("threshold-value").textContent = threshold.toFixed(2);
    const rows = [];
    context.lineWidth = Math.max(2, canvas.width / 300);
    context.font = `${Math.max(12, canvas.width / 50)}px sans-serif`;
    answer.boxes.forEach((box, i) => {
      const score = answer.scores[i];
      if (score < threshold) return;
      const color = colors[answer.category_ids[i] % colors.length];
      const [x0, y0, x1, y1] = box;
      context.strokeStyle = color;
      context.strokeRect(x0, y0, x1 - x0, y1 - y0);
      const label = `${answer.category_names[i]} ${score.toFixed(2)}`;
      context.fillStyle = color;
      context.fillRect(x0, Math.max(0, y0 - 18), context.measureText(label).width + 6, 18);
      context.fillStyle = "#fff";
      context.fillText(label, x0 + 3, Math.max(14, y0 - 4));
      rows.push(`<tr><td>${answer.category_names[i]}</td><td class="num">${score.toFixed(3)}</td><td>${box.map((v) => v.toFixed(1)).join(", ")}</td></tr>`);
    });
    document.getElementById("detections").innerHTML = "<tr><th>class</th><th>score</th><th>box (x0, y0, x1, y1)</th></tr>" + rows.join("");
    canvas.dataset.drawn = String(rows.length);
    status.textContent = `${rows.length} of ${answer.boxes.length} detections at score ≥ ${threshold.toFixed(2)}`;
  }

  async function predict(body, source) {
    status.textContent = "predicting…";
    answer = null;
    const loaded = new Promise((resolve) => { image = new Image(); image.onload = resolve; image.src = source; });
    const response = await fetch(`/api/predict?id=${encodeURIComponent(run)}`, { method: "POST", body });
    const payload = await response.json();
    await loaded;
    if (!response.ok) { status.textContent = `error: ${payload.detail}`; draw(); return; }
    answer = payload;
    draw();
  }

  document.getElementById("photo").addEventListener("change", (event) => {
    const file = event.target.files[0];
    if (!file) return;
    const body = new FormData();
    body.append("file", file);
    predict(body, URL.createObjectURL(file));
  });
  const valImage = document.getElementById("val-image");
  if (valImage) {
    valImage.addEventListener("change", () => {
      if (!valImage.value) return;
      const body = new FormData();
      body.append("val_image", valImage.value);
      predict(body, `/valimage?id=${encodeURIComponent(run)}&name=${encodeURIComponent(valImage.value)}`);
    });
  }
  slider.addEventListener("input", draw);
}
