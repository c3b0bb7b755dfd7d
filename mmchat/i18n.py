"""The page's words in English and Chinese.

- Labels and static help are translated in the browser by Gradio's own i18n
  (mmchat/web/labels.py), which also translates Gradio's built-in words. The browser's
  language picks the table; Settings → Language changes it in place (the page script's
  `mmchat.setLanguage` calls Gradio's exported `changeLocale`, and keeps the choice in
  the browser and in a cookie the server reads).
- Messages made on the server (the model's status, announcements, answer markers, the
  waiting line, describe mode's refusals) are made with `say(key, language)` in the
  session's language; menus' entries too (mmchat/web/describe.py says why).

Keys name the English text; a key missing from Chinese falls back to English (a test
keeps the tables complete).
"""

from __future__ import annotations

ENGLISH, CHINESE = "en", "zh-CN"
LANGUAGES = (ENGLISH, CHINESE)
LANGUAGE_NAMES = {ENGLISH: "English", CHINESE: "中文"}

_EN: dict[str, str] = {
    # --- the page ---
    "tagline": "# mmchat\nAsk about your photos and clips, by typing or by voice.",
    "log_out": "Log out",
    "signed_in_as": "Signed in as **{name}**",
    "conversation": "Conversation",
    "you": "You",
    "assistant_name": "mmchat",
    "photo": "photo",
    "recording": "recording",
    "photo_you_sent": "Photo you sent",
    "skip_to_message": "Skip to the message box",
    "today": "today",
    "yesterday": "yesterday",
    "record_start": "Record a question (or hold Alt+Shift+R)",
    "record_stop": "Stop recording and send",
    "record_no_microphone": "The microphone could not be opened:",
    "toast_warning": "Warning",
    "toast_info": "Note",
    "toast_error": "Error",
    "timings_empty": "Each answer's timings appear here.",
    "timings_intro": "Seconds from the end of each question (for a spoken one, the end of your speech):",
    "timings_question": "question",
    "stage_transcript": "transcript",
    "stage_first_token": "first token",
    "stage_first_audio": "first audio",
    "stage_done": "answer done",
    "chat_placeholder": "Add a photo or a video clip and ask about it. Answers appear here.",
    "spoken_answer": "Spoken answer",
    "message": "Message",
    "message_placeholder": "Ask about your photos…",
    "shortcut_line": "Enter sends · Shift+Enter adds a line · ↑ edits your last message · Esc stops · "
                     "Alt+Shift+D describes · hold Alt+Shift+R to talk",
    "edit_label": "Edit your last message (its photos are kept)",
    "describe_button": "Describe (Alt+Shift+D)",
    "task": "Task",
    "detail": "Detail",
    "stop": "Stop",
    "edit_last": "Edit last message",
    "export": "Export (Markdown, .zip)",
    "voice_mode": "Voice mode",
    "voice_mode_info": "Talk hands-free: the camera's view goes with each question, answers are spoken, "
                       "and talking interrupts them",
    "voice_needs_stt": "Needs speech recognition (--stt-backend).",
    "voice_help": "Just talk; it answers aloud. Say **stop** to silence the answer, **new chat** to start over, "
                  "**describe** for a description of what the camera sees (or **read this**, **what is this?**, "
                  "**how bright is it?**), and **what changed?** to compare with the previous question's view.",
    "examples": "Examples",
    "timings": "Timings",
    "settings": "Settings",
    "longest_answer": "Longest answer (tokens)",
    "temperature": "Temperature (0 = always the same answer)",
    "speak": "Speak answers aloud with mmchat's voice",
    "speak_info": "A spoken answer is not also sent to your screen reader, so the two never talk at once.",
    "voice": "Voice",
    "speaking_rate": "Speaking rate (1 = normal)",
    "language": "Language",
    "language_auto": "The browser's",
    # --- the sidebar ---
    "history": "History",
    "new_chat": "New chat",
    "search": "Search conversations",
    "search_placeholder": "Words in a title or message",
    "conversations": "Conversations",
    "nothing_yet": "Your conversations appear here after their first question.",
    "not_a_photo": "Not a photo: {name}",
    "version_previous": "‹ Answer {number} of {count}",
    "version_next": "Answer {number} of {count} ›",
    "version_shown": "Showing answer {number} of {count}.",
    "version_busy": "Wait for the answer to finish (or stop it) before choosing another version.",
    "group_today": "Today",
    "group_yesterday": "Yesterday",
    "group_week": "Previous 7 days",
    "group_month": "Previous 30 days",
    "group_month_of": "{month} {year}",
    "months": "January February March April May June July August September October November December",
    "months_short": "Jan Feb Mar Apr May Jun Jul Aug Sep Oct Nov Dec",
    "day_of_month": "{month} {day}",
    "this_conversation": "This conversation",
    "title": "Title",
    "title_placeholder": "Ask a question first",
    "title_info": "Type a new title and press Enter; empty brings back the automatic one.",
    "rename": "Rename",
    "delete": "Delete this conversation",
    "undo": "Undo",
    "import": "Import conversation (.zip or .json)",
    # --- tasks (describe mode's presets) and detail ---
    "preset_describe": "Describe",
    "preset_read_text": "Read text",
    "preset_read_document": "Read a page",
    "preset_chart": "Explain a chart",
    "preset_exercise": "Solve an exercise",
    "preset_compare": "Compare two photos",
    "preset_identify": "Identify object and colour",
    "preset_happening": "What is happening",
    "preset_light": "Light level",
    "brief": "Brief",
    "normal": "Normal",
    "detailed": "Detailed",
    # --- messages made on the server ---
    "model_ready": "Model: {name} · ready",
    "stopped_marker": "*(stopped)*",
    "failed_marker": "*(the answer failed)*",
    "stopped": "Stopped.",
    "new_chat_started": "New chat started.",
    "waiting_one": "Waiting for a free place: 1 person ahead of you…",
    "waiting_many": "Waiting for a free place: {count} people ahead of you…",
    "check_words": "Check the words, then press Enter to send.",
    "no_photo": "There is nothing to describe yet: add a photo to the message box, or turn on voice mode "
                "to use the camera.",
    "heard_in_clip": "Heard in the clip:",
    "no_clip": "What is happening needs a video clip: add one to the message box, or turn on voice mode and "
               "let the camera run for a few seconds.",
    "need_two": "Compare needs two photos: add both to the message box (the earlier one first), or send "
                "one and then the other.",
    # --- the sidebar's messages ---
    "most_recent": "The {count} most recent; search to find older ones.",
    "none_holds": "No conversation holds “{query}”.",
    "gone": "That conversation is no longer there; it may have been deleted in another tab.",
    "opened": "Opened “{title}”.",
    "rename_first": "Ask a question first: a conversation can be renamed once it has one.",
    "renamed": "Renamed to “{title}”.",
    "title_back": "The title is “{title}” again, from the first question.",
    "nothing_to_delete": "There is nothing to delete: this conversation has no question yet.",
    "deleted": "Deleted “{title}”. Undo brings it back.",
    "nothing_to_export": "There is nothing to export yet: ask a question first.",
    "export_failed": "The export could not be written ({reason}).",
    "undo_title": "Undo: bring back “{title}”",
    "too_late": "It is too late to undo: a deleted conversation can be brought back for {minutes} minutes.",
    "brought_back": "Brought back “{title}”.",
    "imported": "Imported “{title}”; it is open.",
    "imported_suffix": " (imported)",  # after an imported conversation's title
    # --- the chat's messages ---
    "one_recording": "One recording per message, please: this one has {count}. "
                     "Remove all but one, or send them one at a time.",
    "no_files_in_edit": "Photos and recordings can't be added while editing; the message keeps its photos.",
    "unsupported_files": "mmchat can't take {names} yet: it takes photos (JPEG, PNG, WebP, GIF, BMP, TIFF, HEIC), "
                         "video clips (MP4, WebM, MOV, MKV) and recordings (WAV, MP3, OGG, FLAC, M4A, WebM). Your "
                         "message is still in the box.",
    "unsupported_files_photos": "mmchat can't take {names} yet: it takes photos (JPEG, PNG, WebP, GIF, BMP, TIFF, "
                                "HEIC) and video clips (MP4, WebM, MOV, MKV). Your message is still in the box.",
    "only_last_edit": "Only your last message can be edited.",
    "nothing_to_edit": "There is no message to edit yet.",
    "model_unavailable": "Model unavailable.",
}

_ZH: dict[str, str] = {
    "tagline": "# mmchat\n用文字或语音询问你的照片和视频。",
    "log_out": "退出登录",
    "signed_in_as": "已登录：**{name}**",
    "conversation": "对话",
    "you": "你",
    "assistant_name": "mmchat",
    "photo": "照片",
    "recording": "录音",
    "photo_you_sent": "你发送的照片",
    "skip_to_message": "跳到消息输入框",
    "today": "今天",
    "yesterday": "昨天",
    "record_start": "录一个问题（或按住 Alt+Shift+R）",
    "record_stop": "停止录音并发送",
    "record_no_microphone": "无法打开麦克风：",
    "toast_warning": "警告",
    "toast_info": "提示",
    "toast_error": "错误",
    "timings_empty": "每个回答的用时会显示在这里。",
    "timings_intro": "从每个问题结束（语音提问则从你说完）算起的秒数：",
    "timings_question": "问题",
    "stage_transcript": "转写",
    "stage_first_token": "首个字",
    "stage_first_audio": "首段语音",
    "stage_done": "回答完成",
    "chat_placeholder": "添加一张照片或一段视频并提问。回答会显示在这里。",
    "spoken_answer": "语音回答",
    "message": "消息",
    "message_placeholder": "询问你的照片…",
    "shortcut_line": "Enter 发送 · Shift+Enter 换行 · ↑ 编辑上一条消息 · Esc 停止 · Alt+Shift+D 描述 · 按住 Alt+Shift+R 说话",
    "edit_label": "编辑你的上一条消息（照片会保留）",
    "describe_button": "描述 (Alt+Shift+D)",
    "task": "任务",
    "detail": "详细程度",
    "stop": "停止",
    "edit_last": "编辑上一条消息",
    "export": "导出（Markdown，.zip）",
    "voice_mode": "语音模式",
    "voice_mode_info": "免提对话：每个问题都会附上摄像头画面，回答会朗读出来，说话即可打断",
    "voice_needs_stt": "需要语音识别（--stt-backend）。",
    "voice_help": "直接说话，它会用语音回答。说 **停** 让它安静，说 **新对话** 重新开始，说 **描述** 描述摄像头看到的内容"
                  "（或 **读一下**、**这是什么**、**亮度**），说 **有什么变化** 与上一个问题的画面比较。",
    "examples": "示例",
    "timings": "耗时",
    "settings": "设置",
    "longest_answer": "最长回答（词元）",
    "temperature": "温度（0 = 每次回答相同）",
    "speak": "用 mmchat 的声音朗读回答",
    "speak_info": "朗读过的回答不会再发送给屏幕阅读器，两者不会同时说话。",
    "voice": "声音",
    "speaking_rate": "语速（1 = 正常）",
    "language": "语言",
    "language_auto": "跟随浏览器",
    "history": "历史",
    "new_chat": "新对话",
    "search": "搜索对话",
    "search_placeholder": "标题或消息中的词",
    "conversations": "对话列表",
    "nothing_yet": "提出第一个问题后，对话会出现在这里。",
    "not_a_photo": "不是照片：{name}",
    "version_previous": "‹ 第 {number} 个回答（共 {count} 个）",
    "version_next": "第 {number} 个回答（共 {count} 个）›",
    "version_shown": "正在显示第 {number} 个回答（共 {count} 个）。",
    "version_busy": "请等回答写完（或停止它）再选择其他版本。",
    "group_today": "今天",
    "group_yesterday": "昨天",
    "group_week": "过去 7 天",
    "group_month": "过去 30 天",
    "group_month_of": "{year}年{month}",
    "months": "1月 2月 3月 4月 5月 6月 7月 8月 9月 10月 11月 12月",
    "months_short": "1月 2月 3月 4月 5月 6月 7月 8月 9月 10月 11月 12月",
    "day_of_month": "{month}{day}日",
    "this_conversation": "当前对话",
    "title": "标题",
    "title_placeholder": "请先提一个问题",
    "title_info": "输入新标题后按 Enter；留空则恢复自动标题。",
    "rename": "重命名",
    "delete": "删除此对话",
    "undo": "撤销",
    "import": "导入对话（.zip 或 .json）",
    "preset_describe": "描述",
    "preset_read_text": "读文字",
    "preset_read_document": "读整页",
    "preset_chart": "解释图表",
    "preset_exercise": "解题",
    "preset_compare": "比较两张照片",
    "preset_identify": "识别物体和颜色",
    "preset_happening": "正在发生什么",
    "preset_light": "亮度",
    "brief": "简短",
    "normal": "一般",
    "detailed": "详细",
    "model_ready": "模型：{name} · 已就绪",
    "stopped_marker": "*（已停止）*",
    "failed_marker": "*（回答失败）*",
    "stopped": "已停止。",
    "new_chat_started": "已开始新对话。",
    "waiting_one": "正在排队：前面还有 1 人…",
    "waiting_many": "正在排队：前面还有 {count} 人…",
    "check_words": "请检查文字，然后按 Enter 发送。",
    "no_photo": "还没有可描述的内容：请在消息框中添加照片，或打开语音模式使用摄像头。",
    "need_two": "比较需要两张照片：请把两张都添加到消息框（先放较早的一张），或先后发送。",
    "heard_in_clip": "视频中听到的话：",
    "no_clip": "“正在发生什么”需要一段视频：请在消息框中添加一段，或打开语音模式使用摄像头几秒钟。",
    "most_recent": "最近的 {count} 个；更早的请搜索。",
    "none_holds": "没有对话包含“{query}”。",
    "gone": "那个对话已经不在了，可能已在另一个标签页中删除。",
    "opened": "已打开“{title}”。",
    "rename_first": "请先提一个问题：对话有了问题之后才能重命名。",
    "renamed": "已重命名为“{title}”。",
    "title_back": "标题已恢复为“{title}”，取自第一个问题。",
    "nothing_to_delete": "没有可删除的内容：这个对话还没有问题。",
    "deleted": "已删除“{title}”。撤销可以恢复。",
    "nothing_to_export": "还没有可导出的内容：请先提一个问题。",
    "export_failed": "无法写入导出文件（{reason}）。",
    "undo_title": "撤销：恢复“{title}”",
    "too_late": "已无法撤销：删除的对话只能在 {minutes} 分钟内恢复。",
    "brought_back": "已恢复“{title}”。",
    "imported": "已导入“{title}”，现已打开。",
    "imported_suffix": "（已导入）",
    "one_recording": "每条消息只能有一段录音，这条有 {count} 段。请只保留一段，或分开发送。",
    "no_files_in_edit": "编辑时不能添加照片或录音；消息保留原来的照片。",
    "unsupported_files": "mmchat 暂时还不能接收 {names}：它接收照片（JPEG、PNG、WebP、GIF、BMP、TIFF、HEIC）、"
                         "视频片段（MP4、WebM、MOV、MKV）和录音（WAV、MP3、OGG、FLAC、M4A、WebM）。你的消息仍在输入框中。",
    "unsupported_files_photos": "mmchat 暂时还不能接收 {names}：它接收照片（JPEG、PNG、WebP、GIF、BMP、TIFF、HEIC）"
                                "和视频片段（MP4、WebM、MOV、MKV）。你的消息仍在输入框中。",
    "only_last_edit": "只能编辑你的最后一条消息。",
    "nothing_to_edit": "还没有可编辑的消息。",
    "model_unavailable": "模型不可用。",
}

# Refusals made deeper down (errors.UserFacingError's key): their English is where they
# are made, in the code; here only their other languages.
_ZH.update({
    "photo_unreadable": "照片 {name} 无法读取，请重新发送。",
    "photo_empty": "照片 {name} 是空的（0 字节），请重新发送。",
    "photo_too_big": "照片 {name} 有 {megabytes} MB，上限是 {limit} MB。",
    "photo_format": "{name} 是 {kind} 格式，不被接受；请发送 {formats_zh} 格式的照片。",
    "photo_too_many_pixels": "照片 {name} 为 {width}x{height} 像素（{megapixels} MP），上限是 {limit} MP。请发送小一些的照片。",
    "photo_far_too_many_pixels": "照片 {name} 的像素多得无法打开。请发送小一些的照片。",
    "photo_damaged": "照片 {name} 已损坏或不完整（可能被截断），无法读取。请重新发送，或换一份。",
    "photo_gone": "照片 {name} 已不在服务器上，请重新发送。",
    "photo_too_thin": "照片 {name} 为 {width}x{height} 像素，对模型来说太细长：长边最多是短边的 {ratio} 倍。请把它裁成短一些的几段。",
    "photo_no_heic": "{name} 是 HEIC 照片，但这台服务器无法打开 HEIC（未安装 pillow-heif，管理员可以用 pip install pillow-heif 安装）。请改用 {formats_zh} 格式发送。",
    "photo_svg": "{name} 是 SVG 图形，不是照片；请发送 {formats_zh} 格式的照片。",
    "photo_html": "{name} 是网页（HTML），不是照片；请发送 {formats_zh} 格式的照片。",
    "photo_not_image": "{name} 不是照片（不是本应用能读取的图像格式）；请发送 {formats_zh} 格式的照片。",
    "text_too_long": "你的消息有 {length} 个字符，上限是 {limit}。请缩短一些。",
    "too_many_photos": "你发送了 {sent} 张照片；一条消息最多 {most} 张。",
    "no_question_photo": "请输入或说出关于这张照片的问题。",
    "no_question": "请输入或说出一个问题。",
    "no_question_clip": "请输入或说出关于这段视频的问题。",
    "needs_clip": "这个任务需要一段视频：请添加一段，或在语音模式下打开摄像头。",
    "too_many_clips": "你发送了 {sent} 段视频；一条消息最多 {most} 段。",
    "clip_unreadable": "{name} 不是视频片段，或已损坏得无法播放。请发送 MP4、WebM、MOV 或 MKV 视频，或动图 GIF。",
    "clip_sound_only": "{name} 没有画面，只有声音。请把它作为录音发送。",
    "clip_no_video": "{name} 没有活动的画面：它是空的，或是一张静止的图片（照片请作为照片发送）。",
    "clip_no_frames": "{name} 没有画面：它是空的，或已损坏得无法播放。",
    "clip_empty": "视频 {name} 是空的（0 字节），请重新发送。",
    "clip_too_big": "视频 {name} 有 {megabytes} MB，上限是 {limit} MB。",
    "clip_too_large": "{name} 的画面为 {size} 像素；mmchat 接收每边最多 {most} 像素的视频。请发送小一些的版本（4K 或以下）。",
    "clip_too_many_frames": "{name} 每秒有 {rate} 帧；mmchat 接收每秒最多 240 帧的视频。",
    "clip_too_slow": "读取 {name} 超过了 {seconds} 秒；请发送短一些或小一些的视频。",
    "recording_too_big": "录音有 {megabytes} MB，上限是 {limit} MB。",
    "nothing_heard": "录音里没有听到声音。请靠近麦克风再试一次。",
    "too_fast": "你发送问题的速度超过了这台服务器允许的上限：每分钟 {per_minute} 个。请 {seconds} 秒后再试。",
    "out_of_memory": "GPU 内存不足，无法回答这个问题。请减少照片数量或换小一些的照片、缩短回答长度，或开始新对话（长对话也需要内存）。",
})
# The keys of refusals made deeper down, which only their other languages list.
ERROR_KEYS = frozenset(set(_ZH) - set(_EN))

TABLES = {ENGLISH: _EN, CHINESE: _ZH}
def language_of(tag: str | None) -> str:
    """The interface language for a browser language tag ("zh-TW", "zh", "en-GB", ...)."""
    return CHINESE if (tag or "").lower().startswith("zh") else ENGLISH


def say(key: str, language: str | None = ENGLISH, **values) -> str:
    """A server-made message in `language` (English when it has no translation)."""
    table = TABLES.get(language_of(language), _EN)
    return table.get(key, _EN[key]).format(**values)


def translated(message: str, key: str | None, language: str | None, values: dict) -> str:
    """A refusal made deeper down (mmchat.errors) in `language`: its entry under `key`, or
    the English `message` it was made with when there is none."""
    table = TABLES.get(language_of(language))
    if key is None or table is None or table is _EN or key not in table:
        return message
    return table[key].format(**values)


def missing_translations() -> list[str]:
    """Keys that Chinese lacks (a test keeps this empty)."""
    return sorted(set(_EN) - set(_ZH))


# The words the page's own script says (static/page.js names the chat's messages with them).
PAGE_SCRIPT_WORDS = {language: {key: TABLES[language].get(key, _EN[key])
                                for key in ("you", "assistant_name", "photo", "recording", "photo_you_sent", "examples",
                                            "toast_warning", "toast_info", "toast_error", "record_start",
                                            "record_stop", "record_no_microphone", "skip_to_message", "not_a_photo")}
                     for language in LANGUAGES}


# Voice mode's state line, by the state the voice socket names (mmchat/voice/loop.py).
VOICE_STATE_WORDS = {
    ENGLISH: {"listening": "Listening", "hearing": "Hearing you", "thinking": "Thinking",
              "speaking": "Speaking (talk to interrupt)"},
    CHINESE: {"listening": "正在听", "hearing": "正在听你说", "thinking": "正在思考", "speaking": "正在说（说话即可打断）"},
}
