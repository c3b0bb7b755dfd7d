// The log-in page's one behaviour (mmchat/users/web.py): every log-in starts on a new chat,
// with the history in the sidebar (a reload reopens the chat that was open). The page keeps
// that chat's id in this browser under this key (mmchat/web/page.py).
localStorage.removeItem("mmchat-conversation-id");
