// The page's own behaviour, beside Gradio's: a live region for finished answers, names and
// keys that Gradio leaves out, the keyboard shortcuts, the interface language, and the
// Export download. Loaded once in the page's <head> (mmchat/web/page.py).
(() => {
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
    document.querySelectorAll('[role="log"][aria-live]').forEach((log) => log.setAttribute("aria-live", "off"));
    // Gradio's chat drops the alt text of photos; a photo button without a name is a blank to a screen reader.
    document.querySelectorAll('[data-testid="user"] img[alt=""], [data-testid="user"] img:not([alt])')
      .forEach((img) => { img.alt = "Photo you sent"; });
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

  // Escape stops the answer from anywhere on the page, for keyboard and screen-reader users;
  // Alt+Shift+D describes (by the key's place: on a Mac, Option+Shift+D types a letter).
  document.addEventListener("keydown", (event) => {
    if (event.key === "Escape") document.querySelector("#stop-button")?.click();
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
    // The spoken answer stops at once, before the server even hears of the Stop.
    silence: () => document.querySelectorAll("#speech audio").forEach((a) => a.pause()),
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
