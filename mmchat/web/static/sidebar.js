// The history sidebar's behaviour (mmchat/web/sidebar.py): installed once the page has loaded.
// Gradio's radio list has no name for screen readers and gives each choice a group of its
// own; one name makes it one radio group ("2 of 5", arrow keys). A choice opens its
// conversation as it is checked: with the arrow keys that is each one passed on the way, so
// focus stays in the list then, while a click, or Enter on a choice, goes on to the message
// box. On a phone the open sidebar covers the chat: it starts closed there, and closes again
// once a conversation is chosen.
window.mmchatSidebar = {byKeys: false};
window.mmchatSidebar.setup = () => {
  const panel = document.getElementById("history");
  if (!panel || window.mmchatSidebar.toChat) return;
  const toggle = () => panel.querySelector(".toggle-button");
  const narrow = () => window.matchMedia("(max-width: 767px)").matches;
  const set = (element, name, value) => {
    if (element && element.getAttribute(name) !== value) element.setAttribute(name, value);
  };
  const tidy = () => {
    const list = document.getElementById("conversation-list");
    const chinese = document.documentElement.lang.startsWith("zh");  // the page's language (mmchat/i18n.py)
    set(list, "role", "radiogroup");
    set(list, "aria-label", chinese ? "对话列表" : "Conversations");
    list?.querySelectorAll("input[type=radio]").forEach((input) => set(input, "name", "mmchat-conversation"));
    set(toggle(), "aria-label", chinese ? "对话侧栏" : "Conversations sidebar");
    set(toggle(), "aria-expanded", String(panel.classList.contains("open")));
  };
  new MutationObserver(tidy).observe(panel, {childList: true, subtree: true, attributes: true,
                                             attributeFilter: ["class", "name"]});
  new MutationObserver(tidy).observe(document.documentElement, {attributes: true, attributeFilter: ["lang"]});
  tidy();
  const toChat = () => {
    if (narrow() && panel.classList.contains("open")) toggle()?.click();
    setTimeout(() => document.querySelector("#message textarea")?.focus(), 50);
  };
  const inList = (event) => event.target.closest && event.target.closest("#conversation-list");
  document.addEventListener("keydown", (event) => {
    if (!inList(event)) return;
    if (event.key.startsWith("Arrow")) window.mmchatSidebar.byKeys = true;
    if (event.key === "Enter") { event.preventDefault(); toChat(); }
  }, true);
  document.addEventListener("pointerdown", () => { window.mmchatSidebar.byKeys = false; }, true);
  Object.assign(window.mmchatSidebar, {toChat, byKeys: false});
  if (narrow() && panel.classList.contains("open")) toggle()?.click();
};
// After a conversation was opened: on to the message box, unless the arrow keys are going through the list.
window.mmchatSidebar.afterOpen = () => { if (!window.mmchatSidebar.byKeys) window.mmchatSidebar.toChat?.(); };
window.mmchatSidebar.focusUndo = () => { setTimeout(() => document.querySelector("#undo-delete")?.focus(), 100); };
