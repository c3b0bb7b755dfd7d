// Voice mode in the page: the microphone (20 ms of 16-bit PCM at a time) and a camera frame
// a second go to the server over the voice socket (mmchat/voice/websocket.py, which says why
// not Gradio's streaming microphone); the server says what it hears. Barge-in stops the
// spoken answer here at once, before the server's stop reaches the model.
window.mmchatVoice = (() => {
  // The state's words in each language, put beside the state line by mmchat/web/voice_panel.py.
  const said = (state) => {
    const words = JSON.parse(document.getElementById("voice-state")?.dataset.words || "{}");
    return (document.documentElement.lang.startsWith("zh") ? words["zh-CN"] : words.en)?.[state] || state;
  };
  const TAP = "class Tap extends AudioWorkletProcessor { process(inputs) {" +
    " const channel = inputs[0][0]; if (channel) this.port.postMessage(channel.slice(0)); return true; } }" +
    " registerProcessor('mmchat-tap', Tap);";
  let socket = null, stream = null, context = null, frames = null;
  const show = (words) => { const state = document.getElementById("voice-state"); if (state) state.textContent = words; };
  const silence = () => document.querySelectorAll("#speech audio").forEach((a) => a.pause());
  const send = (kind, payload) => {
    if (!socket || socket.readyState !== WebSocket.OPEN) return;
    const message = new Uint8Array(1 + payload.byteLength);
    message[0] = kind;
    message.set(new Uint8Array(payload), 1);
    socket.send(message);
  };
  const media = async () => {
    const audio = {echoCancellation: true, noiseSuppression: true, autoGainControl: true, channelCount: 1};
    try {
      return await navigator.mediaDevices.getUserMedia({audio, video: {width: {ideal: 640}, height: {ideal: 480}}});
    } catch (error) {  // no camera (or no permission for it): voice alone still works
      return await navigator.mediaDevices.getUserMedia({audio});
    }
  };
  async function start(token) {
    stop();
    if (!token) return;
    if (!navigator.mediaDevices) {  // browsers give the microphone only to https pages and localhost
      show("Voice mode needs the page over https (or at http://127.0.0.1 on this computer) to use the microphone.");
      return;
    }
    try {
      stream = await media();
    } catch (error) {
      show("Voice mode needs the microphone: " + error.message);
      return;
    }
    context = new AudioContext({latencyHint: "interactive"});
    await context.resume();
    await context.audioWorklet.addModule(URL.createObjectURL(new Blob([TAP], {type: "application/javascript"})));
    const rate = context.sampleRate, size = Math.round(rate / 50);  // 20 ms
    const url = new URL("voice/" + token, document.baseURI);
    url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
    socket = new WebSocket(url);
    socket.onopen = () => socket.send(JSON.stringify({type: "hello", sample_rate: rate}));
    socket.binaryType = "arraybuffer";
    socket.onmessage = (event) => {
      const heard = JSON.parse(event.data);
      show(said(heard.state));
      if (heard.barged_in || heard.state === "hearing") silence();
      if (heard.turn !== null) document.querySelector("#voice-answer")?.click();
    };
    socket.onclose = (event) => { if (socket && event.target === socket) show("Voice mode is disconnected; turn it off and on again."); };
    const tap = new AudioWorkletNode(context, "mmchat-tap");
    const mute = context.createGain();
    mute.gain.value = 0;  // the tap must reach the output to be run; nothing is heard
    context.createMediaStreamSource(stream).connect(tap).connect(mute).connect(context.destination);
    let pending = new Float32Array(0);
    tap.port.onmessage = (event) => {
      const joined = new Float32Array(pending.length + event.data.length);
      joined.set(pending); joined.set(event.data, pending.length);
      pending = joined;
      while (pending.length >= size) {
        const pcm = new Int16Array(size);
        for (let i = 0; i < size; i++) pcm[i] = Math.max(-1, Math.min(1, pending[i])) * 32767;
        send(1, pcm.buffer);
        pending = pending.slice(size);
      }
    };
    const preview = document.getElementById("voice-preview");
    if (preview && stream.getVideoTracks().length) {
      preview.srcObject = stream;
      const canvas = document.createElement("canvas");
      frames = setInterval(() => {
        if (!preview.videoWidth) return;
        const scale = Math.min(1, 640 / preview.videoWidth);
        canvas.width = Math.round(preview.videoWidth * scale);
        canvas.height = Math.round(preview.videoHeight * scale);
        canvas.getContext("2d").drawImage(preview, 0, 0, canvas.width, canvas.height);
        canvas.toBlob((blob) => blob && blob.arrayBuffer().then((jpeg) => send(2, jpeg)), "image/jpeg", 0.85);
      }, 1000);
    }
    show(said("listening"));
  }
  function stop() {
    const closing = socket;
    socket = null;
    if (closing) closing.close();
    if (frames) clearInterval(frames);
    if (stream) stream.getTracks().forEach((track) => track.stop());
    if (context) context.close();
    stream = context = frames = null;
    const preview = document.getElementById("voice-preview");
    if (preview) preview.srcObject = null;
    show("");
  }
  return {start, stop};
})();
