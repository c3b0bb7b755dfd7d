// The page's own behaviour, beside Gradio's: a live region for finished answers, names and
// keys that Gradio leaves out, the keyboard shortcuts, the interface language, and the
// Export download. Loaded once in the page's <head> (mmchat/web/page.py).
(() => {
  // The page's words in its language (window.mmchatWords: mmchat/web/page.py puts them in the head).
  const word = (key) => {
    const tables = window.mmchatWords || {};
    const table = document.documentElement.lang.startsWith("zh") ? tables["zh-CN"] : tables.en;
    return table?.[key] || tables.en?.[key] || key;
  };
  // Each message named as people say it ("You: photo, What colour is it?", "mmchat: red"),
  // not as Gradio does ("user's message: a component of type image").
  const nameMessages = () => {
    const log = document.querySelector('#conversation [role="log"]');
    const chatName = document.querySelector('#conversation [data-testid="block-label"]')?.textContent.trim();
    if (log && chatName && log.getAttribute("aria-label") !== chatName) log.setAttribute("aria-label", chatName);
    document.querySelectorAll('#conversation [data-testid="user"], #conversation [data-testid="bot"]').forEach((message) => {
      const parts = [];
      if (message.querySelector("img")) parts.push(word("photo"));
      // (Gradio's player keeps its <audio> in a shadow root: its own test id is what shows.)
      if (message.querySelector('audio, [data-testid^="waveform"]')) parts.push(word("recording"));
      const text = message.querySelector(".message-content")?.innerText.trim();  // not a player's "0:00 / 0:03"
      if (text) parts.push(text);
      const name = word(message.dataset.testid === "user" ? "you" : "assistant_name") + ": " + parts.join(", ");
      if (message.getAttribute("aria-label") !== name) message.setAttribute("aria-label", name);
    });
  };
  const setup = () => {
    // A polite live region for finished answers; the chat log's own is muted, or it
    // would read every token.
    if (!document.getElementById("mmchat-live")) {
      const live = document.createElement("div");
      live.id = "mmchat-live";
      live.setAttribute("role", "status");
      live.setAttribute("aria-live", "polite");
      live.setAttribute("aria-atomic", "true");
      live.className = "mmchat-sr-only";
      document.body.appendChild(live);
    }
    // The first Tab stop skips the sidebar, straight to the message box (WCAG 2.4.1): the
    // sidebar comes first in the page, so without it the conversation is a dozen stops away.
    if (!document.getElementById("mmchat-skip")) {
      const skip = document.createElement("a");
      skip.id = "mmchat-skip";
      skip.href = "#message";
      skip.className = "mmchat-skip";
      skip.addEventListener("click", (event) => {
        event.preventDefault();
        document.querySelector("#message textarea")?.focus();
      });
      document.body.prepend(skip);
    }
    const skip = document.getElementById("mmchat-skip");
    if (skip.textContent !== word("skip_to_message")) skip.textContent = word("skip_to_message");
    document.querySelectorAll('[role="log"][aria-live]').forEach((log) => log.setAttribute("aria-live", "off"));
    // Gradio's chat drops the alt text of photos; a photo button without a name is a blank to a screen reader.
    document.querySelectorAll('[data-testid="user"] img[alt=""], [data-testid="user"] img:not([alt])')
      .forEach((img) => { img.alt = word("photo_you_sent"); });
    nameMessages();
    // A toast's title is its type's English name in Gradio ("Warning"): in the page's language.
    document.querySelectorAll(".toast-title").forEach((title) => {
      const type = ["warning", "info", "error"].find((each) => title.classList.contains(each));
      const english = type && type[0].toUpperCase() + type.slice(1);
      for (const node of title.childNodes) {
        if (type && node.nodeType === Node.TEXT_NODE && node.textContent.trim() === english) {
          node.textContent = word("toast_" + type) + " ";
        }
      }
    });
    // The empty chat's examples are buttons in a "list" without list items (an ARIA error): a named group.
    document.querySelectorAll('#conversation .examples[role="list"]').forEach((examples) => {
      examples.setAttribute("role", "group");
      examples.setAttribute("aria-label", word("examples"));
    });
    // The message box is named by its placeholder alone: Gradio does not tie its label to it.
    const box = document.querySelector("#message textarea");
    const boxName = document.querySelector('#message [data-testid="block-info"]')?.textContent.trim();
    if (box && boxName && box.getAttribute("aria-label") !== boxName) box.setAttribute("aria-label", boxName);
    // The empty spoken-answer player has an aria-label on an element without a role (not allowed).
    document.querySelectorAll("#speech .empty[aria-label]:not([role])").forEach((e) => e.removeAttribute("aria-label"));
    const describe = document.getElementById("describe-button");
    if (describe && !describe.hasAttribute("aria-keyshortcuts")) describe.setAttribute("aria-keyshortcuts", "Alt+Shift+D");
  };
  new MutationObserver(setup).observe(document.documentElement, {childList: true, subtree: true});
  window.addEventListener("DOMContentLoaded", setup);

  // While anything of an answer is still being spoken (the spoken-answer player, or voice
  // mode's audio: static/voice.js), Stop stays (page.css), for the text may be done long before.
  const speakers = new Set();
  const speaking = (who, on) => {
    if (on) speakers.add(who); else speakers.delete(who);
    document.getElementById("composer")?.toggleAttribute("data-speaking", speakers.size > 0);
  };
  const fromPlayer = (event) => event.target instanceof HTMLMediaElement && event.target.closest("#speech");
  document.addEventListener("playing", (event) => { if (fromPlayer(event)) speaking(event.target, true); }, true);
  for (const type of ["pause", "ended", "emptied", "abort"]) {
    document.addEventListener(type, (event) => { if (fromPlayer(event)) speaking(event.target, false); }, true);
  }
  const stopShown = () => {
    const stop = document.querySelector("#stop-button");
    return stop && getComputedStyle(stop).display !== "none" ? stop : null;
  };

  // One Enter, one question: the box keeps its words for a moment after Enter (until the server
  // empties it), and a second Enter then would send them again, stopping the first.
  // (A refused question keeps its words in the box: once the refusal shows, or after 1.5 s,
  // the same words are a deliberate second try.)
  let sent = null;  // the words just sent, until the box is emptied or a toast says why not
  const sending = (event, box) => {
    if (sent && box.value === sent) { event.preventDefault(); event.stopImmediatePropagation(); return; }
    if (!box.value.trim()) return;
    sent = box.value;
    const since = Date.now(), toasts = document.querySelectorAll(".toast-body").length;
    const watch = setInterval(() => {
      const answered = !box.isConnected || !box.value || document.querySelectorAll(".toast-body").length > toasts;
      if (answered || Date.now() - since > 1500) { sent = null; clearInterval(watch); }
    }, 50);
  };
  document.addEventListener("keydown", (event) => {
    if (event.target.matches?.("#message textarea") && event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      sending(event, event.target);
    }
  }, true);
  document.addEventListener("click", (event) => {
    const box = event.target.closest?.("#message .submit-button") && document.querySelector("#message textarea");
    if (box) sending(event, box);
  }, true);
  // A menu's list closes when the keyboard leaves the menu (Gradio leaves it open over the page
  // when Tab moves on): it is told Escape, as a person would press it.
  document.addEventListener("focusout", (event) => {
    const menu = event.target.matches?.('input[role="combobox"]') ? event.target.closest(".block") : null;
    if (menu && !menu.contains(event.relatedTarget)) {
      event.target.dispatchEvent(new KeyboardEvent("keydown", {key: "Escape", code: "Escape", bubbles: true}));
    }
  }, true);
  // A photo's thumbnail in the chat opens it full size, as its Fullscreen button does.
  document.addEventListener("click", (event) => {
    const photo = event.target.closest?.('#conversation [data-testid="user"] img');
    const message = photo?.closest('[data-testid="user"]');
    if (message && !document.fullscreenElement) message.querySelector('button[aria-label="Fullscreen"]')?.click();
  });
  // A file that is named as a photo but is none (a text file renamed .png) shows as a broken
  // picture in the box: it says what it is instead, before sending refuses it. ("error" does
  // not bubble: it is caught on its way down.)
  document.addEventListener("error", (event) => {
    const photo = event.target instanceof HTMLImageElement && event.target.closest("#message") ? event.target : null;
    if (!photo || photo.dataset.notAPhoto) return;
    const name = decodeURIComponent(photo.getAttribute("src")?.split(/[/=]/).pop() || "");
    const label = document.createElement("span");
    label.className = "mmchat-not-photo";
    label.textContent = word("not_a_photo").replace("{name}", name);
    photo.dataset.notAPhoto = "true";
    photo.hidden = true;
    photo.after(label);
  }, true);
  // The same photo picked again is taken again: a file input that keeps its last value
  // ignores it, so the value is emptied as the file picker opens.
  document.addEventListener("click", (event) => {
    if (event.target.matches?.('#message input[type="file"]')) event.target.value = "";
  }, true);

  // Escape stops the answer from anywhere on the page, for keyboard and screen-reader users;
  // Alt+Shift+D describes (by the key's place: on a Mac, Option+Shift+D types a letter).
  document.addEventListener("keydown", (event) => {
    if (event.key === "Escape" && event.isTrusted) stopShown()?.click();  // (not the menus' own Escape below)
    // Up in the empty message box brings the last message back into it to be edited.
    const box = event.target.matches?.("#message textarea") ? event.target : null;
    if (box && !box.value && event.key === "ArrowUp" && !event.shiftKey && !event.altKey && !event.ctrlKey
        && !event.metaKey) {
      event.preventDefault();
      document.querySelector("#edit-last")?.click();
    }
    if (event.altKey && event.shiftKey && !event.ctrlKey && !event.metaKey && event.code === "KeyD") {
      event.preventDefault();
      document.querySelector("#describe-button")?.click();
    }
  });

  // The interface language chosen in Settings ("auto": the browser's). Gradio picks its
  // words by the browser's language; changeLocale (exported by Gradio's core module) changes
  // them in place. The choice is kept in this browser, and told to the server in a cookie.
  const setLanguage = async (choice) => {
    localStorage.setItem("mmchat-language", choice || "auto");
    const language = choice && choice !== "auto" ? choice : (navigator.language || "en");
    document.cookie = "mmchat-language=" + encodeURIComponent(choice || "auto") +
      "; path=/; max-age=31536000; samesite=lax";
    document.documentElement.lang = language.toLowerCase().startsWith("zh") ? "zh-CN" : "en";
    const core = performance.getEntriesByType("resource").map((e) => e.name).find((n) => /\/core-[^/]*\.js$/.test(n));
    if (core) (await import(core)).changeLocale(document.documentElement.lang);
  };
  const chosen = localStorage.getItem("mmchat-language");
  if (chosen && chosen !== "auto") {  // this script may run before or after the page's load event
    const apply = () => setTimeout(() => setLanguage(chosen), 0);
    if (document.readyState === "complete") apply(); else window.addEventListener("load", apply);
  }

  window.mmchat = {
    setLanguage,
    speaking,
    word,
    // The spoken answer stops at once, before the server even hears of the Stop.
    silence: () => document.querySelectorAll("#speech audio").forEach((a) => a.pause()),  // its "pause" ends speaking
    // Said to screen readers; emptied first, so the same words twice are heard twice.
    announce: (text) => {
      const live = document.getElementById("mmchat-live");
      if (!live) return;
      live.textContent = "";
      setTimeout(() => { live.textContent = text; }, 50);
    },
    // The export is written when asked for; its file then downloads as a link would.
    download: (selector) => {
      const target = document.querySelector(selector);  // Gradio's DownloadButton is the button itself
      (target?.matches("a, button") ? target : target?.querySelector("a[download], button"))?.click();
    },
    logOut: () => fetch("/logout", {method: "POST"}).finally(() => { window.location.href = "/login"; }),
  };
})();
