// The history sidebar's behaviour (mmchat/web/sidebar.py): installed once the page has loaded.
// The list (static/conversation_list.html) is a navigation list of buttons, grouped by day:
// a click, or Enter, opens a conversation and goes on to the message box; the arrow keys,
// Home and End go through the list without opening anything. On a phone the open sidebar
// covers the chat: it starts closed there, and closes again once a conversation is chosen.
window.mmchatSidebar = {};

// The list's js_on_load: `element` is the list, `trigger` sends a Gradio event with its data.
window.mmchatSidebar.list = (element, trigger) => {
  const buttons = () => Array.from(element.querySelectorAll("button.conversation"));
  element.addEventListener("click", (event) => {
    const chosen = event.target.closest("button.conversation");
    if (!chosen) return;
    buttons().forEach((button) => button.removeAttribute("aria-current"));  // at once, before the server answers
    chosen.setAttribute("aria-current", "true");
    trigger("select", {id: chosen.dataset.id});
  });
  element.addEventListener("keydown", (event) => {
    const all = buttons();
    const at = all.indexOf(document.activeElement);
    if (at === -1) return;
    const next = {ArrowDown: at + 1, ArrowUp: at - 1, Home: 0, End: all.length - 1}[event.key];
    if (next === undefined) return;
    event.preventDefault();
    all[Math.max(0, Math.min(all.length - 1, next))].focus();
  });
};

window.mmchatSidebar.setup = () => {
  const panel = document.getElementById("history");
  if (!panel || window.mmchatSidebar.toChat) return;
  const toggle = () => panel.querySelector(".toggle-button");
  const narrow = () => window.matchMedia("(max-width: 767px)").matches;
  const tidy = () => {
    const chinese = document.documentElement.lang.startsWith("zh");  // the page's language (mmchat/i18n.py)
    const button = toggle();
    if (!button) return;
    const label = chinese ? "对话侧栏" : "Conversations sidebar";
    const expanded = String(panel.classList.contains("open"));
    if (button.getAttribute("aria-label") !== label) button.setAttribute("aria-label", label);
    if (button.getAttribute("aria-expanded") !== expanded) button.setAttribute("aria-expanded", expanded);
  };
  new MutationObserver(tidy).observe(panel, {attributes: true, attributeFilter: ["class"]});
  new MutationObserver(tidy).observe(document.documentElement, {attributes: true, attributeFilter: ["lang"]});
  tidy();
  const toChat = () => {
    if (narrow() && panel.classList.contains("open")) toggle()?.click();
    setTimeout(() => document.querySelector("#message textarea")?.focus(), 50);
  };
  window.mmchatSidebar.toChat = toChat;
  if (narrow() && panel.classList.contains("open")) toggle()?.click();
};
window.mmchatSidebar.focusUndo = () => { setTimeout(() => document.querySelector("#undo-delete")?.focus(), 100); };
