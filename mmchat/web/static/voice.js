// Voice mode in the page: the microphone (20 ms of 16-bit PCM at a time) and a camera frame
// a second go to the server over the voice socket (mmchat/voice/websocket.py, which says why
// not Gradio's streaming microphone, and what it sends back); the spoken answer comes back on
// it and is played here, each piece right after the one before. Barge-in, Stop, Esc and New
// chat stop it here at once, before the server's stop reaches the model.
window.mmchatVoice = (() => {
  // The state's words in each language, put beside the state line by mmchat/web/voice_panel.py.
  const said = (state) => {
    const words = JSON.parse(document.getElementById("voice-state")?.dataset.words || "{}");
    return (document.documentElement.lang.startsWith("zh") ? words["zh-CN"] : words.en)?.[state] || state;
  };
  // Cuts the microphone into 20 ms of 16-bit PCM, on the audio thread.
  const TAP = `class Tap extends AudioWorkletProcessor {
    pcm = new Int16Array(Math.round(sampleRate / 50));
    filled = 0;
    process(inputs) {
      for (const sample of inputs[0][0] || []) {
        this.pcm[this.filled++] = Math.max(-1, Math.min(1, sample)) * 32767;
        if (this.filled === this.pcm.length) { this.port.postMessage(this.pcm.slice().buffer); this.filled = 0; }
      }
      return true;
    }
  }
  registerProcessor("mmchat-tap", Tap);`;
  let socket = null, stream = null, context = null, frames = null;
  let turn = 0, playing = [], playhead = 0;  // the newest answer's number, its audio sources, its end
  const show = (words) => { const state = document.getElementById("voice-state"); if (state) state.textContent = words; };
  const send = (kind, payload) => socket?.readyState === WebSocket.OPEN && socket.send(new Blob([new Uint8Array([kind]), payload]));
  const hush = () => {
    playing.forEach((source) => source.stop());
    playing = []; playhead = 0;
    window.mmchat?.speaking("voice", false);
  };
  const play = (data) => {  // 0x03, turn (uint32), sample rate (uint32), int16 samples
    const head = new DataView(data, 1, 8), samples = new Int16Array(data.slice(9));
    if (head.getUint32(0, true) !== turn || !samples.length) return;  // an answer since stopped
    const buffer = context.createBuffer(1, samples.length, head.getUint32(4, true));
    buffer.getChannelData(0).set(Float32Array.from(samples, (s) => s / 32768));
    const source = new AudioBufferSourceNode(context, {buffer});
    source.connect(context.destination);
    source.start(playhead = Math.max(playhead, context.currentTime));  // right after the piece before
    playhead += buffer.duration;
    playing.push(source);
    window.mmchat?.speaking("voice", true);  // Stop stays while it plays (static/page.js)
    source.onended = () => {
      playing = playing.filter((each) => each !== source);
      if (!playing.length) window.mmchat?.speaking("voice", false);
    };
  };
  const heard = (message) => {
    if (message.type === "state") show(said(message.state));
    if (message.type === "heard") { hush(); turn = message.turn; }
    if (message.type === "barge_in" || message.state === "hearing" ||
        (message.type === "done" && message.turn === turn && message.status !== "complete")) hush();
  };
  const silence = window.mmchat?.silence;  // Stop, Esc and New chat call it (static/page.js)
  if (window.mmchat) window.mmchat.silence = () => { silence?.(); hush(); };
  const AUDIO = {echoCancellation: true, noiseSuppression: true, autoGainControl: true, channelCount: 1};
  // Without a camera (or leave to use it), voice alone still works.
  const media = () => navigator.mediaDevices.getUserMedia({audio: AUDIO, video: {width: {ideal: 640}, height: {ideal: 480}}})
    .catch(() => navigator.mediaDevices.getUserMedia({audio: AUDIO}));
  async function start(token) {
    stop();
    if (!token) return;
    if (!navigator.mediaDevices) {  // browsers give the microphone only to https pages and localhost
      show("Voice mode needs the page over https (or at http://127.0.0.1 on this computer) to use the microphone.");
      return;
    }
    stream = await media().catch((error) => { show("Voice mode needs the microphone: " + error.message); });
    if (!stream) return;
    context = new AudioContext({latencyHint: "interactive"});
    await context.resume();
    await context.audioWorklet.addModule(URL.createObjectURL(new Blob([TAP], {type: "application/javascript"})));
    const url = new URL("voice/" + token, document.baseURI);
    url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
    socket = new WebSocket(url);
    socket.binaryType = "arraybuffer";
    socket.onopen = () => socket.send(JSON.stringify({type: "hello", sample_rate: context.sampleRate}));
    socket.onmessage = (event) => typeof event.data === "string" ? heard(JSON.parse(event.data)) : play(event.data);
    socket.onclose = (event) => { if (socket && event.target === socket) show("Voice mode is disconnected; turn it off and on again."); };
    const tap = new AudioWorkletNode(context, "mmchat-tap", {numberOfOutputs: 0});  // run for its input alone
    tap.port.onmessage = (event) => send(1, event.data);
    context.createMediaStreamSource(stream).connect(tap);
    const preview = document.getElementById("voice-preview");
    if (preview && stream.getVideoTracks().length) {
      preview.srcObject = stream;
      const canvas = document.createElement("canvas");
      frames = setInterval(() => {
        if (!preview.videoWidth) return;
        const scale = Math.min(1, 640 / preview.videoWidth);  // at most 640 wide
        [canvas.width, canvas.height] = [preview.videoWidth, preview.videoHeight].map((side) => Math.round(side * scale));
        canvas.getContext("2d").drawImage(preview, 0, 0, canvas.width, canvas.height);
        canvas.toBlob((jpeg) => jpeg && send(2, jpeg), "image/jpeg", 0.85);
      }, 500);  // twice a second: the camera's last seconds are a clip at the clips' rate (--video-fps)
    }
    show(said("listening"));
  }
  function stop() {
    hush();
    const closing = socket;
    socket = null;  // first: its close is then no disconnection to show
    if (closing) closing.close();
    clearInterval(frames);
    stream?.getTracks().forEach((track) => track.stop());
    context?.close();
    stream = context = frames = null;
    const preview = document.getElementById("voice-preview");
    if (preview) preview.srcObject = null;
    show("");
  }
  return {start, stop};
})();
