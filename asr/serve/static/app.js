// asr-serve's page: the microphone streamed to /ws (Vosk's protocol), and a file sent to
// /v1/audio/transcriptions. No build step, no library: plain browser APIs (Chromium and Firefox).
"use strict";

// Words under this confidence (the recognizer's: the mean posterior peak of their letters) are marked.
const LOW_CONFIDENCE = 0.5;
// The PCM the page streams: 16 kHz 16-bit mono (the server resamples to the model's rate), in 100 ms frames
// (a partial transcript ten times a second).
const TARGET_RATE = 16000;
const FRAME_MS = 100;
const KEY_STORAGE = "asr-serve-api-key";
// What the server's close codes mean (asr/serve/ws.py).
const CLOSE_MEANINGS = {
  1003: "the server did not understand a message",
  1007: "the server refused the stream's settings",
  1009: "the recording reached the server's length limit",
  1011: "the server failed",
  1013: "the server is busy (too many streams at once); try again later",
  4401: "the API key is missing or wrong (set it under 'API key')",
  4408: "the stream was idle for too long",
};

const $ = (id) => document.getElementById(id);
let apiKey = localStorage.getItem(KEY_STORAGE) || "";
let modelName = "";
let live = null; // the recording: {context, media, node, socket}

function authHeaders() {
  return apiKey ? { Authorization: `Bearer ${apiKey}` } : {};
}

function setState(state) {
  document.body.dataset.state = state;
  $("record").textContent = state === "recording" ? "Stop" : "Record";
  $("record").disabled = state === "starting" || state === "finishing";
}

function say(element, message, isError = false) {
  element.textContent = message;
  element.classList.toggle("error", isError);
}

function clock(seconds) {
  const minutes = Math.floor(seconds / 60);
  return `${minutes}:${(seconds - minutes * 60).toFixed(1).padStart(4, "0")}`;
}

// A segment as a list item: its times (when its words have them) and its words, unsure ones marked.
function segmentItem(text, words) {
  const item = document.createElement("li");
  if (words && words.length) {
    const time = document.createElement("time");
    time.textContent = `${clock(words[0].start)}–${clock(words[words.length - 1].end)}`;
    item.append(time);
    words.forEach((word, index) => {
      if (index) item.append(" ");
      if (word.confidence < LOW_CONFIDENCE) {
        const mark = document.createElement("mark");
        mark.className = "low";
        mark.title = `confidence ${word.confidence.toFixed(2)}`;
        mark.textContent = word.word;
        item.append(mark);
      } else {
        item.append(word.word);
      }
    });
  } else {
    item.append(text);
  }
  return item;
}

async function loadModel() {
  let response;
  try {
    response = await fetch("/v1/models", { headers: authHeaders() });
  } catch (error) {
    say($("model"), `The server cannot be reached: ${error.message}`, true);
    return;
  }
  if (response.status === 401) {
    say($("model"), "This server needs an API key: enter it under 'API key' below.", true);
    $("settings").open = true;
    return;
  }
  const body = await response.json();
  const model = body.data[0];
  modelName = model.id;
  say($("model"), `Model ${model.id}: ${model.sample_rate} Hz, ${model.vocabulary.length} letters` +
    (model.has_lm ? ", with a language model" : ""));
  $("record").disabled = false;
}

// The microphone's failures, in words a user can act on.
function microphoneProblem(error) {
  if (error.name === "NotAllowedError" || error.name === "SecurityError") {
    return "Microphone access was refused. Allow it for this site (the icon in the address bar), then press Record again.";
  }
  if (error.name === "NotFoundError" || error.name === "OverconstrainedError") {
    return "No microphone was found. Connect one, then press Record again.";
  }
  if (error.name === "NotReadableError") {
    return "The microphone is in use by another program or cannot be opened.";
  }
  return `The microphone could not be opened: ${error.name}: ${error.message}`;
}

async function startRecording() {
  if (!window.isSecureContext || !navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
    say($("status"), "This browser allows the microphone only on https:// pages or on http://localhost and " +
      "http://127.0.0.1: open the page at one of those.", true);
    return;
  }
  setState("starting");
  // Created inside the click: an AudioContext started without one stays suspended and captures nothing.
  const context = new AudioContext();
  let media;
  try {
    media = await navigator.mediaDevices.getUserMedia({
      audio: { echoCancellation: false, noiseSuppression: false, autoGainControl: false, channelCount: 1 },
    });
  } catch (error) {
    context.close();
    setState("idle");
    say($("status"), microphoneProblem(error), true);
    return;
  }
  await context.resume();
  await context.audioWorklet.addModule("/static/worklet.js");
  const protocols = ["vosk"];
  if (apiKey) protocols.push(`bearer.${apiKey}`);
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  const socket = new WebSocket(`${scheme}//${location.host}/ws`, protocols);
  socket.binaryType = "arraybuffer";
  const node = new AudioWorkletNode(context, "pcm-capture", {
    processorOptions: { targetRate: TARGET_RATE, frameSamples: (TARGET_RATE * FRAME_MS) / 1000 },
  });
  live = { context, media, node, socket, queued: [], flushed: false };
  $("segments").replaceChildren();
  $("partial").textContent = "";
  $("transcript").textContent = "";
  node.port.onmessage = (event) => {
    if (live.flushed) return; // the worklet's frames after the end of the stream
    if (event.data === "flushed") {
      live.flushed = true;
      socket.send(JSON.stringify({ eof: 1 }));
    } else if (socket.readyState === WebSocket.OPEN) {
      socket.send(event.data);
    } else {
      live.queued.push(event.data);
    }
  };
  socket.onopen = () => {
    socket.send(JSON.stringify({ config: { sample_rate: TARGET_RATE, words: true } }));
    live.queued.forEach((frame) => socket.send(frame));
    live.queued = [];
  };
  socket.onmessage = (event) => showResult(JSON.parse(event.data));
  socket.onclose = (event) => {
    stopAudio();
    setState(event.code === 1000 ? "done" : "error");
    if (event.code === 1000) {
      say($("status"), "Done.");
    } else {
      const meaning = CLOSE_MEANINGS[event.code] || "the connection was lost";
      say($("status"), `Stopped: ${meaning}${event.reason ? ` (${event.reason})` : ""}.`, true);
    }
  };
  const source = context.createMediaStreamSource(media);
  source.connect(node);
  node.connect(context.destination); // pulled by the graph; the processor outputs silence
  setState("recording");
  say($("status"), `Listening (the device gives ${context.sampleRate} Hz)…`);
}

function showResult(message) {
  if ("partial" in message) {
    $("partial").textContent = message.partial;
    return;
  }
  $("partial").textContent = "";
  if (message.text) {
    const words = (message.result || []).map((w) => ({ word: w.word, start: w.start, end: w.end, confidence: w.conf }));
    $("segments").append(segmentItem(message.text, words));
    const soFar = $("transcript").textContent;
    $("transcript").textContent = soFar ? `${soFar} ${message.text}` : message.text;
  }
}

function stopAudio() {
  if (!live) return;
  live.media.getTracks().forEach((track) => track.stop());
  live.context.close();
  live = null;
}

function stopRecording() {
  setState("finishing");
  say($("status"), "Finishing…");
  // The worklet's last partial frame is posted before "flushed", and "flushed" sends the end of the stream.
  live.node.port.postMessage("flush");
}

$("record").addEventListener("click", () => {
  if (live && document.body.dataset.state === "recording") {
    stopRecording();
  } else {
    startRecording().catch((error) => {
      stopAudio();
      setState("error");
      say($("status"), `Recording failed: ${error.message}`, true);
    });
  }
});

async function transcribeFile(format) {
  const file = $("file").files[0];
  const form = new FormData();
  form.append("file", file);
  form.append("model", modelName || "default");
  form.append("response_format", format);
  if (format === "verbose_json") {
    form.append("timestamp_granularities[]", "segment");
    form.append("timestamp_granularities[]", "word");
  }
  const response = await fetch("/v1/audio/transcriptions", { method: "POST", headers: authHeaders(), body: form });
  if (!response.ok) {
    const body = await response.json().catch(() => ({ error: { message: response.statusText } }));
    throw new Error(`${response.status}: ${body.error.message}`);
  }
  return response;
}

$("upload").addEventListener("submit", async (event) => {
  event.preventDefault();
  say($("file-status"), "Transcribing…");
  $("file-segments").replaceChildren();
  $("downloads").hidden = true;
  try {
    const result = await (await transcribeFile("verbose_json")).json();
    for (const segment of result.segments) {
      const words = result.words
        .filter((w) => w.start >= segment.start && w.end <= segment.end)
        .map((w) => ({ word: w.word, start: w.start, end: w.end, confidence: w.probability }));
      $("file-segments").append(segmentItem(segment.text, words));
    }
    say($("file-status"), `${result.duration.toFixed(1)} s of audio: ${result.text || "(no speech)"}`);
    $("downloads").hidden = false;
  } catch (error) {
    say($("file-status"), error.message, true);
  }
});

// Downloads: the server writes each format (the same subtitles as the API gives).
$("downloads").addEventListener("click", async (event) => {
  const format = event.target.dataset.format;
  if (!format) return;
  try {
    const blob = await (await transcribeFile(format)).blob();
    const link = document.createElement("a");
    link.href = URL.createObjectURL(blob);
    link.download = `${$("file").files[0].name.replace(/\.[^.]*$/, "")}.${format === "text" ? "txt" : format}`;
    link.click();
    setTimeout(() => URL.revokeObjectURL(link.href), 60000); // after the download has started
  } catch (error) {
    say($("file-status"), error.message, true);
  }
});

$("key").value = apiKey;
$("save-key").addEventListener("click", () => {
  apiKey = $("key").value.trim();
  localStorage.setItem(KEY_STORAGE, apiKey);
  loadModel();
});

loadModel();
