// Broadcasting pages: the notice editor's live check, recording in the browser, the schedule preview.
// Every page works without this file; it only adds feedback while typing and the recorder.
"use strict";

(function () {
  const csrf = () => (window.cunxiangCsrf ? window.cunxiangCsrf() : "");

  function debounce(fn, ms) {
    let timer = null;
    return (...args) => {
      clearTimeout(timer);
      timer = setTimeout(() => fn(...args), ms);
    };
  }

  async function postJson(url, body) {
    const response = await fetch(url, {
      method: "POST",
      headers: { "Content-Type": "application/json", "X-CSRF-Token": csrf() },
      credentials: "same-origin",
      body: JSON.stringify(body),
    });
    return { ok: response.ok, body: await response.json() };
  }

  // -- notice editor: spoken text and privacy findings as you type --------------------------
  document.querySelectorAll("form[data-notice-editor]").forEach((form) => {
    const title = form.querySelector("[name=title]");
    const body = form.querySelector("[name=body]");
    const spoken = form.querySelector("[data-spoken]");
    const findings = form.querySelector("[data-findings]");
    const check = debounce(async () => {
      const result = await postJson("/api/v1/notices/check", { title: title.value, body: body.value });
      if (!result.ok) return;
      spoken.textContent = result.body.spoken || result.body.spoken_error || "";
      findings.textContent = "";
      result.body.findings.forEach((finding) => {
        const item = document.createElement("li");
        item.className = finding.blocking ? "error" : "warn";
        item.textContent = (finding.blocking ? "不能通过审核：" : "提醒：") + finding.message + "（" + finding.masked + "）";
        findings.appendChild(item);
      });
    }, 400);
    title.addEventListener("input", check);
    body.addEventListener("input", check);
    check();
  });

  // -- recording: upload a file, or record with MediaRecorder ---------------------------------
  document.querySelectorAll("[data-recorder]").forEach((box) => {
    const noticeId = box.getAttribute("data-notice");
    const status = box.querySelector("[data-recorder-status]");
    const send = async (blob, name) => {
      status.textContent = "正在上传…";
      const data = new FormData();
      data.append("recording", blob, name);
      const response = await fetch(`/api/v1/notices/${noticeId}/recording`, {
        method: "POST",
        headers: { "X-CSRF-Token": csrf() },
        credentials: "same-origin",
        body: data,
      });
      const result = await response.json();
      if (response.ok) {
        status.textContent = "录音已保存，请提交审核。";
        window.location.reload();
      } else {
        status.textContent = result.error ? result.error.message : "上传失败";
      }
    };
    box.querySelector("[data-upload]").addEventListener("submit", (event) => {
      event.preventDefault();
      const file = event.target.querySelector("input[type=file]").files[0];
      if (file) send(file, file.name);
    });
    const start = box.querySelector("[data-record]");
    const stop = box.querySelector("[data-stop]");
    if (!window.MediaRecorder || !navigator.mediaDevices) {
      start.disabled = true;
      status.textContent = "这个浏览器不能直接录音，请上传录音文件。";
      return;
    }
    let recorder = null;
    let chunks = [];
    start.addEventListener("click", async () => {
      try {
        const stream = await navigator.mediaDevices.getUserMedia({ audio: true });
        recorder = new MediaRecorder(stream);
        chunks = [];
        recorder.ondataavailable = (event) => chunks.push(event.data);
        recorder.onstop = () => {
          stream.getTracks().forEach((track) => track.stop());
          const type = recorder.mimeType || "audio/webm";
          send(new Blob(chunks, { type }), type.includes("ogg") ? "recording.ogg" : "recording.webm");
        };
        recorder.start();
        start.disabled = true;
        stop.disabled = false;
        status.textContent = "正在录音…说完后点“停止并保存”。";
      } catch (error) {
        status.textContent = "无法使用麦克风：" + error.message;
      }
    });
    stop.addEventListener("click", () => {
      if (recorder && recorder.state !== "inactive") recorder.stop();
      start.disabled = false;
      stop.disabled = true;
    });
  });

  // -- schedule editor: the next occurrences as you fill it in -------------------------------
  document.querySelectorAll("form[data-schedule-editor]").forEach((form) => {
    const list = form.querySelector("[data-preview]");
    const error = form.querySelector("[data-preview-error]");
    const values = (name) => Array.from(form.querySelectorAll(`[name=${name}]`)).flatMap((field) =>
      field.tagName === "SELECT" ? Array.from(field.selectedOptions).map((o) => o.value)
        : field.type === "checkbox" ? (field.checked ? [field.value] : []) : [field.value]).filter((v) => v !== "");
    const preview = debounce(async () => {
      const kind = form.querySelector("[name=kind]").value;
      const body = {
        notice_id: Number(form.querySelector("[name=notice_id]").value || 0),
        kind,
        times: (form.querySelector("[name=times]").value || "").split(/[,，、\s]+/).filter(Boolean),
        weekdays: values("weekdays").map(Number),
        targets: [],
        count: 8,
      };
      const once = form.querySelector("[name=once_at]").value;
      if (kind === "once" && once) body.once_at = once;
      const start = form.querySelector("[name=start_date]").value;
      const end = form.querySelector("[name=end_date]").value;
      if (start) body.start_date = start;
      if (end) body.end_date = end;
      const result = await postJson("/api/v1/schedules/preview", body);
      list.textContent = "";
      error.textContent = "";
      if (!result.ok) {
        error.textContent = result.body.error ? result.body.error.message : "";
        return;
      }
      result.body.occurrences.forEach((text) => {
        const item = document.createElement("li");
        item.textContent = text;
        list.appendChild(item);
      });
    }, 400);
    form.addEventListener("input", preview);
    form.addEventListener("change", preview);
    preview();
  });
})();
