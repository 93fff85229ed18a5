// Broadcasting pages: the notice editor's live check, recording in the browser, the schedule preview,
// and the zone picker (tick a whole township or village, filter by name, count the speakers chosen).
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

  // -- notice editor: the spoken text, with personal numbers marked in place, as you type --------
  const KIND_LABELS = { resident_id: "身份证号", bank_card: "银行卡号", mobile_phone: "手机号码", masked: "已隐去的号码" };
  function markedText(target, text, marks) {
    target.textContent = "";
    let position = 0;
    marks
      .filter((mark) => mark.start !== null && mark.end !== null)
      .sort((a, b) => a.start - b.start)
      .forEach((mark) => {
        if (mark.start < position) return;
        target.appendChild(document.createTextNode(text.slice(position, mark.start)));
        const element = document.createElement("mark");
        element.className = "finding " + mark.tone;
        element.textContent = text.slice(mark.start, mark.end);
        target.appendChild(element);
        position = mark.end;
      });
    target.appendChild(document.createTextNode(text.slice(position)));
  }
  document.querySelectorAll("form[data-notice-editor]").forEach((form) => {
    const title = form.querySelector("[name=title]");
    const body = form.querySelector("[name=body]");
    const spoken = form.querySelector("[data-spoken]");
    const findings = form.querySelector("[data-findings]");
    const noticeId = Number(form.getAttribute("data-notice") || 0) || null;
    const check = debounce(async () => {
      const result = await postJson("/api/v1/notices/check", { title: title.value, body: body.value, notice_id: noticeId });
      if (!result.ok) return;
      const marks = result.body.findings.map((finding) => ({
        start: finding.spoken_start, end: finding.spoken_end, tone: finding.tone,
      }));
      if (result.body.spoken) markedText(spoken, result.body.spoken, marks);
      else spoken.textContent = result.body.spoken_error || "";
      findings.textContent = "";
      result.body.findings.forEach((finding) => {
        const item = document.createElement("li");
        item.className = { blocking: "error", undecided: "warn" }[finding.tone] || finding.tone;
        const label = KIND_LABELS[finding.kind] || "号码";
        item.textContent = {
          blocking: `不能提交：${label} ${finding.text} 必须隐去（${finding.masked}）`,
          kept: `${label} ${finding.text}：已决定保留，逐位读出`,
          masked: `${label} ${finding.text}：已隐去，念作“已隐去”`,
          undecided: `${label} ${finding.text}：保存后请决定保留（公开电话）还是隐去`,
        }[finding.tone];
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

  // -- zone picker: township → village → zone ---------------------------------------------------
  document.querySelectorAll("[data-zone-picker]").forEach((picker) => {
    const count = picker.querySelector("[data-zp-count]");
    const boxes = (scope, level) => Array.from(scope.querySelectorAll(`input[data-zp-level=${level}]`));
    const townships = Array.from(picker.querySelectorAll("[data-zp-township]"));
    const villageOf = (box) => box.closest("[data-zp-village]");
    const townshipOf = (box) => box.closest("[data-zp-township]");
    const sync = (box, children) => {
      const ticked = children.filter((child) => child.checked).length;
      box.checked = children.length > 0 && ticked === children.length;
      box.indeterminate = ticked > 0 && ticked < children.length;
    };
    const refresh = () => {
      townships.forEach((township) => {
        Array.from(township.querySelectorAll("[data-zp-village]")).forEach((village) => {
          sync(boxes(village, "village")[0], boxes(village, "zone"));
        });
        sync(boxes(township, "township")[0], boxes(township, "zone"));
      });
      const zones = boxes(picker, "zone").filter((box) => box.checked);
      const villages = new Set(zones.map((box) => villageOf(box)));
      const speakers = zones.reduce((sum, box) => sum + Number(box.getAttribute("data-speakers") || 0), 0);
      count.textContent = zones.length
        ? `已选 ${villages.size} 个村、${zones.length} 个分区，共 ${speakers} 个喇叭`
        : "尚未选择播出分区";
    };
    const tickBelow = (box, level) => {
      if (level === "township") {
        boxes(townshipOf(box), "zone").concat(boxes(townshipOf(box), "village")).forEach((child) => {
          child.checked = box.checked;
        });
      } else if (level === "village") {
        boxes(villageOf(box), "zone").forEach((child) => {
          child.checked = box.checked;
        });
      }
    };
    picker.addEventListener("change", (event) => {
      const box = event.target;
      const level = box.getAttribute && box.getAttribute("data-zp-level");
      tickBelow(box, level);
      if (level) refresh();
    });
    picker.addEventListener("zp-refresh", refresh);
    const search = picker.querySelector("[data-zp-search]");
    search.addEventListener("input", () => {
      const wanted = search.value.trim();
      townships.forEach((township) => {
        const whole = wanted && township.getAttribute("data-name").includes(wanted);
        let shown = 0;
        township.querySelectorAll("[data-zp-village]").forEach((village) => {
          const hit = !wanted || whole || village.getAttribute("data-name").includes(wanted);
          village.hidden = !hit;
          shown += hit ? 1 : 0;
        });
        township.hidden = shown === 0;
        if (wanted && shown) township.open = true;
      });
    });
    // A search is not a submit: Enter in the search box filters, it does not send the form.
    search.addEventListener("keydown", (event) => {
      if (event.key === "Enter") event.preventDefault();
    });
    // A township or village ticked before this script ran (a quick click while a slow page loads, or the
    // browser restoring the form after 返回) means its zones: tick them before counting, so the first
    // count does not untick what the person chose.
    ["township", "village"].forEach((level) => {
      boxes(picker, level).filter((box) => box.checked).forEach((box) => tickBelow(box, level));
    });
    refresh();
    picker.setAttribute("data-zp-ready", "");
  });

  // -- a broadcast's result: follows it until every speaker has finished ------------------------
  document.querySelectorAll("[data-live-result]").forEach(() => {
    const parts = ["#result", "[data-speakers]"];
    const follow = async () => {
      let next = 2000;
      try {
        const response = await fetch(window.location.pathname, { credentials: "same-origin" });
        if (response.ok) {
          const fresh = new DOMParser().parseFromString(await response.text(), "text/html");
          parts.forEach((selector) => {
            const old = document.querySelector(selector);
            const found = fresh.querySelector(selector);
            if (old && found) old.replaceWith(document.importNode(found, true));
          });
          if (!fresh.querySelector("[data-live-result]")) return;
        } else {
          next = 5000;
        }
      } catch (error) {
        next = 5000;
      }
      setTimeout(follow, next);
    };
    setTimeout(follow, 2000);
  });

  // -- schedule editor: fields for the chosen mode; next times, refusal and overlaps as you fill it in --
  document.querySelectorAll("form[data-schedule-editor]").forEach((form) => {
    const list = form.querySelector("[data-preview]");
    const error = form.querySelector("[data-preview-error]");
    const warnings = form.querySelector("[data-preview-warnings]");
    const kindField = form.querySelector("[name=kind]");
    const noticeField = form.querySelector("[name=notice_id]");
    const scheduleId = Number(form.getAttribute("data-schedule") || 0) || null;
    const checked = (name) => Array.from(form.querySelectorAll(`input[name=${name}]:checked`)).map((box) => Number(box.value));
    const showMode = () => {
      form.querySelectorAll("[data-for-kinds]").forEach((group) => {
        group.hidden = !group.getAttribute("data-for-kinds").split(" ").includes(kindField.value);
      });
    };
    // A township's notice plays in that township only: the picker shows just it (a county notice, all of them).
    const showTownships = () => {
      const option = noticeField.selectedOptions[0];
      const township = option ? option.getAttribute("data-township") : "";
      form.querySelectorAll("[data-zp-township]").forEach((group) => {
        const other = township && group.getAttribute("data-zp-township") !== township;
        group.hidden = Boolean(other);
        if (other) group.querySelectorAll("input[type=checkbox]").forEach((box) => { box.checked = false; });
      });
      form.querySelectorAll("[data-zone-picker]").forEach((picker) => picker.dispatchEvent(new Event("zp-refresh")));
    };
    const preview = debounce(async () => {
      const kind = kindField.value;
      const targets = [
        ...checked("township_ids").map((id) => ({ level: "township", id })),
        ...checked("village_ids").map((id) => ({ level: "village", id })),
        ...checked("zone_ids").map((id) => ({ level: "zone", id })),
      ];
      const body = { notice_id: Number(noticeField.value || 0), kind, targets, count: 8, schedule_id: scheduleId };
      if (kind === "once") {
        const once = form.querySelector("[name=once_at]").value;
        if (once) body.once_at = once;
      } else {
        body.times = (form.querySelector("[name=times]").value || "").split(/[,，、\s]+/).filter(Boolean);
        if (kind === "weekly") body.weekdays = checked("weekdays");
        const start = form.querySelector("[name=start_date]").value;
        const end = form.querySelector("[name=end_date]").value;
        if (start) body.start_date = start;
        if (end) body.end_date = end;
      }
      const result = await postJson("/api/v1/schedules/preview", body);
      list.textContent = "";
      error.textContent = "";
      warnings.textContent = "";
      if (!result.ok) {
        error.textContent = result.body.error ? result.body.error.message : "";
        return;
      }
      result.body.labels.forEach((text) => {
        const item = document.createElement("li");
        item.textContent = text;
        list.appendChild(item);
      });
      if (result.body.quiet) error.textContent = "保存时会被拒绝：" + result.body.quiet;
      result.body.warnings.forEach((text) => {
        const item = document.createElement("li");
        item.textContent = text + "（可以保存；同时到点时优先级高的先播，另一条等待）";
        warnings.appendChild(item);
      });
    }, 400);
    kindField.addEventListener("change", showMode);
    noticeField.addEventListener("change", showTownships);
    form.addEventListener("input", preview);
    form.addEventListener("change", preview);
    showMode();
    showTownships();
    preview();
  });
})();
