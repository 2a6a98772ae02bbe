// hpcrun IndeX viewer page: talks JSON-RPC 2.0 over /ws, shows the pushed JPEG frames.
// The viewer pushes a "frame" notification followed by one binary message (the JPEG);
// every control here is one JSON-RPC call, so scripts can do whatever the page does.
"use strict";

(() => {
  const $ = (id) => document.getElementById(id);
  const ROI_IDS = ["roi-x0", "roi-y0", "roi-z0", "roi-x1", "roi-y1", "roi-z1"];
  let ws = null;
  let nextId = 1;
  const pending = new Map();
  let shownUrl = null;
  let sceneRoi = null;
  let statusTimer = null;

  function setConnection(text, ok) {
    const el = $("connection");
    el.textContent = text;
    el.className = ok ? "good" : "bad";
  }

  function say(text) {
    $("message").textContent = text || "";
  }

  function call(method, params = {}) {
    return new Promise((resolve, reject) => {
      if (!ws || ws.readyState !== WebSocket.OPEN) {
        reject(new Error("not connected to the viewer"));
        return;
      }
      const id = nextId++;
      pending.set(id, { resolve, reject });
      ws.send(JSON.stringify({ jsonrpc: "2.0", id, method, params }));
    });
  }

  // Calls from controls: errors show under the image instead of vanishing.
  function act(method, params) {
    return call(method, params).then((result) => { say(""); return result; },
      (err) => { say(err.message); throw err; });
  }

  function onText(text) {
    let msg;
    try { msg = JSON.parse(text); } catch (err) { return; }
    if (msg.method === "frame") {
      showFrameInfo(msg.params);
      return;
    }
    const waiter = pending.get(msg.id);
    if (!waiter) return;
    pending.delete(msg.id);
    if (msg.error) waiter.reject(new Error(msg.error.message));
    else waiter.resolve(msg.result);
  }

  function onImage(blob) {
    const url = URL.createObjectURL(blob);
    const img = $("frame");
    const previous = shownUrl;
    img.onload = () => { if (previous) URL.revokeObjectURL(previous); };
    shownUrl = url;
    img.src = url;
  }

  // The level of detail of the frame on show: "full", or "preview 1/N" while the
  // camera moves (the image is then smaller and drawn at the view's full size).
  function levelText(level) {
    if (level === undefined || level === 1) return "full";
    return `preview 1/${Math.round(level * 10) / 10}`;
  }

  function showFrameInfo(info) {
    $("frame-number").textContent = String(info.frame);
    $("level").textContent = levelText(info.level);
    const img = $("frame");
    img.dataset.level = String(info.level === undefined ? 1 : info.level);
    if (info.view_width) {
      img.style.width = `${info.view_width}px`;
      img.style.aspectRatio = `${info.view_width} / ${info.view_height}`;
    }
    $("fps").textContent = Number(info.fps).toFixed(1);
    $("agents").textContent = String(info.agents);
    $("nodes").textContent = String(info.nodes);
    $("frame").dataset.frame = String(info.frame);
  }

  function showStatus(status) {
    $("agents").textContent = String(status.agents);
    $("nodes").textContent = String(status.nodes.length);
    $("fps").textContent = Number(status.fps).toFixed(1);
    $("node-list").textContent = status.nodes.length
      ? `${status.agents} agents on ${status.nodes.join(", ")}` : "no render agents yet";
    const legend = $("legend");
    legend.replaceChildren(...status.agent_list.map((agent) => {
      const item = document.createElement("li");
      const swatch = document.createElement("span");
      swatch.className = "swatch";
      swatch.style.background = agent.color;
      const ms = agent.last_ms === null ? "-" : `${Math.round(agent.last_ms)} ms`;
      const label = document.createElement("span");
      label.textContent = `${agent.node} (job ${agent.job_id}, rank ${agent.rank}): ` +
        `${agent.bricks} bricks, ${ms}`;
      item.append(swatch, label);
      return item;
    }));
  }

  async function refreshStatus() {
    try { showStatus(await call("get_status")); } catch (err) { /* reconnect handles it */ }
  }

  function showRoi(roi) {
    ROI_IDS.forEach((id, i) => { $(id).value = String(Math.round(roi[i] * 100) / 100); });
  }

  async function init() {
    const [maps, view, scene] = await Promise.all(
      [call("list_colormaps"), call("get_view"), call("get_scene")]);
    const select = $("colormap");
    select.replaceChildren(...maps.colormaps.map((name) => new Option(name, name)));
    select.value = maps.current;
    $("mode").value = view.mode;
    $("show-bricks").checked = view.show_bricks;
    $("resolution").value = String(view.width);
    showRamp(view.opacity || []);
    sceneRoi = scene.region_of_interest;
    showRoi(view.roi);
    $("scene-name").textContent = scene.name;
    $("scene-description").textContent = scene.description;
    document.title = `${scene.name} - hpcrun IndeX viewer`;
    await refreshStatus();
    clearInterval(statusTimer);
    statusTimer = setInterval(refreshStatus, 2000);
  }

  function connect() {
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    ws = new WebSocket(`${scheme}//${location.host}/ws`);
    ws.binaryType = "blob";
    ws.onopen = () => {
      setConnection("live", true);
      init().catch((err) => say(err.message));
    };
    ws.onmessage = (event) => {
      if (typeof event.data === "string") onText(event.data);
      else onImage(event.data);
    };
    ws.onclose = () => {
      setConnection("reconnecting", false);
      for (const waiter of pending.values()) waiter.reject(new Error("connection lost"));
      pending.clear();
      clearInterval(statusTimer);
      setTimeout(connect, 1000);
    };
  }

  // Orbit and zoom: input events accumulate; at most one call is in flight, so a fast
  // drag sends few, larger steps instead of a queue the viewer would have to work off.
  // Moves say `interactive` (the viewer answers with quick previews); releasing the
  // button sends one last move without it, so the full-resolution frame starts at once.
  const motion = { azimuth: 0, elevation: 0, zoom: 1, busy: false, still: false };

  function flushMotion() {
    if (motion.busy) return;
    let method = null;
    let params = null;
    if (motion.azimuth !== 0 || motion.elevation !== 0) {
      method = "orbit";
      params = { azimuth: motion.azimuth, elevation: motion.elevation };
      motion.azimuth = 0;
      motion.elevation = 0;
    } else if (motion.zoom !== 1) {
      method = "zoom";
      params = { factor: Math.min(100, Math.max(0.01, motion.zoom)) };
      motion.zoom = 1;
    }
    if (!method && motion.still) {
      method = "orbit";
      params = { azimuth: 0, elevation: 0 };
    }
    if (!method) return;
    params.interactive = !motion.still;
    motion.still = false;
    motion.busy = true;
    act(method, params).catch(() => {}).finally(() => { motion.busy = false; flushMotion(); });
  }

  function bindCamera() {
    const img = $("frame");
    let drag = null;
    img.addEventListener("pointerdown", (event) => {
      drag = { x: event.clientX, y: event.clientY };
      img.setPointerCapture(event.pointerId);
      img.classList.add("dragging");
    });
    img.addEventListener("pointermove", (event) => {
      if (!drag) return;
      motion.azimuth -= (event.clientX - drag.x) * 0.4;
      motion.elevation += (event.clientY - drag.y) * 0.4;
      drag = { x: event.clientX, y: event.clientY };
      flushMotion();
    });
    const end = () => {
      if (!drag) return;
      drag = null;
      img.classList.remove("dragging");
      motion.still = true;
      flushMotion();
    };
    img.addEventListener("pointerup", end);
    img.addEventListener("pointercancel", end);
    img.addEventListener("wheel", (event) => {
      event.preventDefault();
      motion.zoom *= Math.pow(1.0015, -event.deltaY);
      flushMotion();
    }, { passive: false });
    $("reset-camera").addEventListener("click", () => act("reset_camera").catch(() => {}));
  }

  // The opacity ramp: 0 up to start, rising to gain at end, gain above; sent as the
  // [[value, gain], ...] points every agent applies. Start = end = 0, gain 1: no ramp.
  function rampPoints() {
    const start = Number($("ramp-start").value);
    const end = Math.max(start, Number($("ramp-end").value));
    const gain = Number($("ramp-gain").value);
    if (start === 0 && end === 0 && gain === 1) return [];
    if (end === start) return [[start, 0], [start, gain], [1, gain]];
    return [[start, 0], [end, gain], [1, gain]];
  }

  function showRamp(points) {
    let start = 0;
    let end = 0;
    let gain = 1;
    if (points.length >= 2) {
      start = points[0][0];
      end = points[points.length - 2][0];
      gain = points[points.length - 1][1];
    }
    $("ramp-start").value = String(start);
    $("ramp-end").value = String(end);
    $("ramp-gain").value = String(gain);
    showRampValues();
  }

  function showRampValues() {
    $("ramp-start-value").textContent = Number($("ramp-start").value).toFixed(2);
    $("ramp-end-value").textContent = Number($("ramp-end").value).toFixed(2);
    $("ramp-gain-value").textContent = Number($("ramp-gain").value).toFixed(2);
  }

  // Sliders fire "input" continuously: at most one call in flight, the latest wins.
  const ramp = { busy: false, dirty: false };

  function sendRamp() {
    if (ramp.busy) { ramp.dirty = true; return; }
    ramp.busy = true;
    ramp.dirty = false;
    act("set_opacity_ramp", { points: rampPoints() }).catch(() => {})
      .finally(() => { ramp.busy = false; if (ramp.dirty) sendRamp(); });
  }

  function readRoi() {
    return ROI_IDS.map((id) => Number($(id).value));
  }

  function bindControls() {
    $("colormap").addEventListener("change", (e) =>
      act("set_colormap", { name: e.target.value }).catch(() => {}));
    $("mode").addEventListener("change", (e) =>
      act("set_mode", { mode: e.target.value }).catch(() => {}));
    $("show-bricks").addEventListener("change", (e) =>
      act("set_show_bricks", { enabled: e.target.checked }).catch(() => {}));
    $("resolution").addEventListener("change", (e) => {
      const size = Number(e.target.value);
      act("set_resolution", { width: size, height: size }).catch(() => {});
    });
    for (const id of ROI_IDS) {
      $(id).addEventListener("change", () =>
        act("set_roi", { roi: readRoi() }).then((r) => showRoi(r.roi)).catch(() => {}));
    }
    for (const id of ["ramp-start", "ramp-end", "ramp-gain"]) {
      $(id).addEventListener("input", () => { showRampValues(); sendRamp(); });
    }
    $("reset-ramp").addEventListener("click", () => { showRamp([]); sendRamp(); });
    $("reset-roi").addEventListener("click", () => {
      if (!sceneRoi) return;
      act("set_roi", { roi: sceneRoi }).then((r) => showRoi(r.roi)).catch(() => {});
    });
  }

  bindCamera();
  bindControls();
  connect();
})();
