"""The page's colours: Gradio's Soft theme, darkened where its text fails WCAG 2.2 AA contrast.

Soft writes labels in indigo-500 (#6366f1) on indigo-100 (#e0e7ff), 3.6:1, and hints and
placeholders in gray-400 (#9ca3af) on white, 2.5:1; normal text needs 4.5:1 (WCAG 1.4.3).
Its checkboxes and text boxes are edged in gray-100 and gray-50, all but invisible on white;
a control's edge needs 3:1 (1.4.11), which axe-core does not check.
Each override below names the pair it fixes and the ratio it gets; tests/test_accessibility.py
runs axe-core on the page to keep it so.
"""

from __future__ import annotations

import gradio as gr


def page_theme() -> gr.themes.Base:
    return gr.themes.Soft().set(
        # labels of blocks ("Message", "Conversation", "Examples"): indigo-700 on indigo-100, 6.4:1
        block_label_text_color="*primary_700",
        block_title_text_color="*primary_700",
        # hints under a control, the slider's ends, placeholders: gray-600 on white, 7.6:1
        body_text_color_subdued="*neutral_600",
        input_placeholder_color="*neutral_600",
        # white on the primary button and on a chosen radio option: white on indigo-600, 6.3:1
        # (on indigo-500 it is 4.46:1; hover goes darker, not lighter as in Soft)
        button_primary_background_fill="*primary_600",
        button_primary_background_fill_hover="*primary_700",
        checkbox_label_background_fill_selected="*primary_600",
        # the edge of a checkbox and of a text box: gray-500 on white, 4.8:1
        checkbox_border_color="*neutral_500",
        input_border_color="*neutral_500",
    )
