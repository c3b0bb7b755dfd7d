// A spoken question in two presses: the microphone button (or Alt+Shift+R held down) starts
// recording, a second press (or letting go) stops it and sends it, the message box staying
// where it is, with any photo and words already in it. The recording goes to the server as
// a file in the box, as an upload would (mmchat/web/chat.py transcribes and answers it).
(() => {
  let recorder = null, chunks = [], stream = null;
  const button = () => document.getElementById("record-button");
  const say = (key) => window.mmchat?.word(key) || key;
  const show = (recording) => {
    const mic = button();
    if (!mic) return;
    mic.setAttribute("aria-pressed", String(recording));
    mic.setAttribute("aria-label", say(recording ? "record_stop" : "record_start"));
    mic.title = mic.getAttribute("aria-label");
    mic.classList.toggle("recording", recording);
  };
  // The box's file input takes the recording as if it were picked, and Send is pressed once
  // the box shows it (Gradio uploads it first).
  const send = (file) => {
    const input = document.querySelector('#message input[type="file"]');
    if (!input) return;
    const files = new DataTransfer();
    files.items.add(file);
    input.files = files.files;
    input.dispatchEvent(new Event("change", {bubbles: true}));
    const since = Date.now(), waiting = setInterval(() => {
      const attached = [...document.querySelectorAll("#message .thumbnail-item, #message audio")].length > 0;
      if (attached || Date.now() - since > 30000) {
        clearInterval(waiting);
        if (attached) document.querySelector("#message .submit-button")?.click();
      }
    }, 100);
  };
  const start = async () => {
    if (recorder) return;
    if (!navigator.mediaDevices) return;  // the microphone needs https (or this computer)
    window.mmchat?.silence();  // talking over the answer stops it, as in voice mode
    try {
      stream = await navigator.mediaDevices.getUserMedia({audio: {echoCancellation: true, noiseSuppression: true}});
    } catch (error) {
      window.mmchat?.announce(say("record_no_microphone") + " " + error.message);
      return;
    }
    chunks = [];
    recorder = new MediaRecorder(stream);
    recorder.ondataavailable = (event) => { if (event.data.size) chunks.push(event.data); };
    recorder.onstop = () => {
      stream.getTracks().forEach((track) => track.stop());
      const type = recorder.mimeType || "audio/webm";
      recorder = stream = null;
      show(false);
      if (chunks.length) send(new File(chunks, "question." + (type.includes("ogg") ? "ogg" : "webm"), {type}));
    };
    recorder.start();
    show(true);
  };
  const stop = () => { if (recorder && recorder.state !== "inactive") recorder.stop(); };
  document.addEventListener("click", (event) => {
    if (!event.target.closest?.("#record-button")) return;
    if (recorder) stop(); else start();
  });
  // Hold to talk: Alt+Shift+R down starts, letting go of any of the three sends.
  let held = false;
  document.addEventListener("keydown", (event) => {
    // (Not in voice mode, which hides the button: it listens all along, on the same microphone.)
    if (event.altKey && event.shiftKey && event.code === "KeyR" && !event.repeat && button()?.offsetParent) {
      event.preventDefault();
      held = true;
      start();
    }
  });
  document.addEventListener("keyup", (event) => {
    if (held && ["KeyR", "AltLeft", "AltRight", "ShiftLeft", "ShiftRight"].includes(event.code)) {
      held = false;
      stop();
    }
  });
  new MutationObserver(() => { const mic = button(); if (mic && !mic.hasAttribute("aria-pressed")) show(false); })
    .observe(document.documentElement, {childList: true, subtree: true});
})();
